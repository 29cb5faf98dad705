"""``ingest --engine spark``, run for real in Spark local mode: the store it builds equals a local
ingest of the same files, row for row, on the samples (every format), the corpus and a benchmark
trail, and it skips what the store already holds (docs/scale.md, "The contract").

One SparkSession for the whole test session (starting the JVM costs seconds)."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from iamtrim.aws import AwsConfig
from iamtrim.cli import main
from iamtrim.ingest import ingest
from iamtrim.model import Context
from iamtrim.sources.s3 import S3Trail
from iamtrim.store import Store
from tests.awsparts import FAKE_ENV
from tests.awsparts import cli_here as cli
from tests.engine_compare import (
    PROFILE_CHANGES,
    assert_same_store,
    bench_trail,
    profile_changes_table,
    profile_trail,
    usage_table,
)
from tests.test_sources_s3 import ACCOUNT, N_FILES, ORG_TRAIL, TRAIL, buckets, calls, local_files
from tests.test_sources_s3 import LOGS as S3_LOGS

__all__ = ["bench_trail", "buckets"]  # fixtures

pytest.importorskip("pyspark", reason="pyspark (the spark extra; dev installs it) runs the Spark engine")
if shutil.which("java") is None:  # pragma: no cover
    pytest.skip("Spark needs Java (17+) on the PATH", allow_module_level=True)

from iamtrim.engines.spark import ingest_spark, session

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    s = session("local[2]")
    s.sparkContext.setLogLevel("ERROR")
    yield s
    s.stop()


def _compare(paths: list[Path], tmp_path: Path, spark: Any) -> tuple[Store, Store, Any]:
    local = Store(tmp_path / "local.sqlite")
    ingest(paths, local, workers=1)
    engine = Store(tmp_path / "spark.sqlite")
    _, run = ingest_spark(paths, engine, spark=spark)
    return engine, local, run


def test_instance_profile_changes_same_as_local(tmp_path: Path, spark: Any) -> None:
    """Spark groups by ``engines.reduce.record_key``: each instance-profile call its own row, so
    the store's changes, with the times as written, equal local ingest's."""
    engine, local, _ = _compare([profile_trail(tmp_path / "trail")], tmp_path, spark)
    assert profile_changes_table(local) == PROFILE_CHANGES
    assert_same_store(engine, local)


@pytest.mark.corpus
def test_corpus_same_store(corpus: Path, tmp_path: Path, spark: Any) -> None:
    engine, local, run = _compare([corpus / "cloudtrail"], tmp_path, spark)
    assert run.records > 500
    assert_same_store(engine, local)


def test_benchmark_trail_same_store(bench_trail: Path, tmp_path: Path, spark: Any) -> None:
    engine, local, run = _compare([bench_trail], tmp_path, spark)
    assert_same_store(engine, local)
    assert any(k[2].endswith("/*") for k in usage_table(local))
    # and every fold carries the sketch of its keys, equal in both stores (assert_same_store)
    assert all(v[3] for k, v in usage_table(local).items() if ":s3:::" in k[2] and k[2].endswith("/*"))
    assert run.reduction_factor > 1


def test_duplicates_across_files_and_incremental(samples: Path, tmp_path: Path, spark: Any) -> None:
    """A copy of a file (same bytes, other path), an Event-history download overlapping the trail,
    then a second run over more files: each event is counted once, as ingest counts it."""
    src = samples / "AWSLogs"
    work = tmp_path / "in"
    shutil.copytree(src, work / "AWSLogs")
    first = sorted((work / "AWSLogs").rglob("*.json.gz"))[0]
    shutil.copy(first, work / "copy.json.gz")
    part = [work / "AWSLogs" / "444455556666" / "CloudTrail" / "eu-west-1"]
    everything = [work, samples / "other-formats"]
    local = Store(tmp_path / "local.sqlite")
    ingest(part, local, workers=1)
    ingest(everything, local, workers=1)
    engine = Store(tmp_path / "spark.sqlite")
    ingest_spark(part, engine, spark=spark)
    ingest_spark(everything, engine, spark=spark)
    assert_same_store(engine, local)
    assert local.skips().get("duplicate-event", 0) > 0


def test_samples_through_the_cli_same_store(
    samples: Path, tmp_path: Path, spark: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every sample format (trail files, JSON Lines, Event-history JSON and CSV, LookupEvents)."""
    store = tmp_path / "cli.sqlite"
    paths = [samples / "AWSLogs", samples / "other-formats"]
    with pytest.raises(SystemExit) as done:
        main(["ingest", "--engine", "spark", *map(str, paths), "--store", str(store)])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "records reduced to" in out and "usage keys:" in out
    local = Store(tmp_path / "local.sqlite")
    ingest(paths, local, workers=1)
    assert_same_store(Store(store), local)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--table", "db.t"], "--engine spark reads trail PATHs or s3:// URIs; --table is for athena"),
        (["samples", "--until", "2026-10-02"], "--since, --until and --account go with an s3:// trail"),
    ],
)
def test_cli_engine_spark_options(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["ingest", "--engine", "spark", *args])
    assert done.value.code == 2
    assert capsys.readouterr().err == f"iamtrim: {message}\n"


def test_a_failed_spark_job_is_one_line() -> None:
    from iamtrim.engines.spark import _first_line

    message = (
        "An error occurred while calling z:org.apache.spark.api.python.PythonRDD.collectAndServe.\n"
        ": py4j.protocol.Py4JJavaError: Job aborted due to stage failure\n"
        "java.lang.OutOfMemoryError: Java heap space\n"
        "\tat java.base/java.util.Arrays.copyOf(Arrays.java:3537)\n"
    )
    assert _first_line(RuntimeError(message)) == "java.lang.OutOfMemoryError: Java heap space"
    assert _first_line(RuntimeError("")) == "RuntimeError"


# -- s3:// trails: the driver lists, the executors download (moto's server on 127.0.0.1) -----------


@pytest.fixture
def executors(spark: Any, aws_endpoint: str) -> Iterator[dict[str, str]]:
    """The executors' environment (``spark.executorEnv.*``: what their Python workers see), with
    the tests' fake credentials: executors take their credentials from their own environment,
    never from the driver (docs/scale.md)."""
    env: dict[str, str] = spark.sparkContext.environment
    saved = dict(env)
    env.update(FAKE_ENV)
    yield env
    env.clear()
    env.update(saved)


def _files_with_etags(store: Store) -> list[tuple[str, int, str, str]]:
    return sorted((f.path, f.size, f.etag, f.digest) for f in store.files())


def test_s3_trail_same_store_as_local_and_ingest_s3_and_a_rerun_reads_nothing(
    buckets: str, executors: dict[str, str], tmp_path: Path, spark: Any
) -> None:
    """The samples as a trail writes them (gzip, AWSLogs/ACCOUNT/CloudTrail/REGION/YYYY/MM/DD/):
    the store equals a local ingest of the same files (usage, coverage, skips, principals) and an
    ``ingest s3://`` without an engine row for row, files table included (keys, sizes, ETags,
    digests, event hashes); a second run, and a local ``ingest s3://`` after it, read nothing."""
    config = AwsConfig(endpoint_url=buckets)
    local = Store(tmp_path / "local.sqlite")
    ingest([S3_LOGS], local, workers=1)
    s3_local = Store(tmp_path / "s3.sqlite")
    ingest([S3Trail(f"s3://{TRAIL}", config)], s3_local, workers=1)
    engine = Store(tmp_path / "spark.sqlite")
    with calls() as seen:  # this process's calls: the driver lists, the executors download
        report, run = ingest_spark([S3Trail(f"s3://{TRAIL}", config)], engine, spark=spark)
    assert seen[("s3", "ListObjectsV2")] > 0 and seen[("s3", "GetObject")] == 0
    assert (report.files_read, report.files_already, run.files) == (N_FILES, 0, N_FILES)
    assert run.records == sum(f.records for f in local.files()) - local.skips().get("duplicate-event", 0)
    assert_same_store(engine, local, files=False)
    assert_same_store(engine, s3_local)
    assert _files_with_etags(engine) == _files_with_etags(s3_local)
    assert all(
        f.path.startswith(f"s3://{TRAIL}/AWSLogs/{ACCOUNT}/CloudTrail/") and f.etag for f in engine.files()
    )
    before = usage_table(engine)
    again, run = ingest_spark([S3Trail(f"s3://{TRAIL}", config)], engine, spark=spark)
    assert (again.files_read, again.files_already, again.records, run.files) == (0, N_FILES, 0, 0)
    after_local = ingest([S3Trail(f"s3://{TRAIL}", config)], engine, workers=1)
    assert (after_local.files_read, after_local.files_already) == (0, N_FILES)
    assert usage_table(engine) == before


def test_cli_s3_organization_trail_with_filters_equals_ingest_s3(
    buckets: str, executors: dict[str, str], tmp_path: Path
) -> None:
    """An SSE-KMS organization trail under a prefix, the same bytes in two member accounts, and
    ingest's key filters (--account, --region, --since/--until by the key's date), read as a role
    (--role-arn: each partition assumes it): the same objects and the same store as
    ``ingest s3://`` with the same options."""
    uri = f"s3://{ORG_TRAIL}/org"
    window = ["--since", "2026-10-03", "--until", "2026-10-09"]
    role = ["--role-arn", "arn:aws:iam::123456789012:role/iamtrim-trail-reader"]
    common = ["--endpoint-url", buckets, "--region", "us-east-1", *window, *role]
    for extra in ([], ["--account", ACCOUNT]):
        local, engine = tmp_path / f"local{len(extra)}.sqlite", tmp_path / f"spark{len(extra)}.sqlite"
        code, out, err = cli("ingest", uri, "--store", str(local), "--workers", "1", *common, *extra)
        assert code == 0, err
        code, out, err = cli("ingest", "--engine", "spark", uri, "--store", str(engine), *common, *extra)
        assert code == 0, err
        n = local_files("us-east-1", 3, 10)  # the 3rd to the day after the 9th
        assert 0 < n < N_FILES
        # without --account the second member account's copies are the same bytes: not counted
        assert f"files: {n} read, {n if not extra else 0} already ingested, 0 with problems" in out
        assert "records reduced to" in out
        assert_same_store(Store(engine), Store(local))
        assert _files_with_etags(Store(engine)) == _files_with_etags(Store(local))
        code, out, err = cli("ingest", "--engine", "spark", uri, "--store", str(engine), *common, *extra)
        assert code == 0 and f"files: 0 read, {2 * n if not extra else n} already ingested" in out, out + err


def test_cli_s3_errors_are_one_line(buckets: str, executors: dict[str, str], tmp_path: Path) -> None:
    """No such bucket (exit 3), no trail objects for the filters (exit 4), executors without
    credentials (exit 3, after the driver listed): one line each, and the store is untouched."""
    store = tmp_path / "s.sqlite"
    with Store(store) as st:
        ingest([S3_LOGS / ACCOUNT / "CloudTrail" / "eu-west-1"], st, workers=1)
        n = len(st.files())
    base = ["ingest", "--engine", "spark", "--store", str(store), "--endpoint-url", buckets]
    code, _, err = cli(*base, "s3://no-such-trail-bucket")
    assert (code, err) == (3, "iamtrim: no such bucket: no-such-trail-bucket\n")
    code, _, err = cli(*base, f"s3://{TRAIL}", "--region", "ap-south-1")
    assert code == 4 and err == (
        f"iamtrim: no CloudTrail records could be read (s3://{TRAIL}: no log folder under this "
        "prefix for region ap-south-1)\n"
    )
    # Empty values hide any credentials the executors' JVM inherited; no files, no metadata service.
    executors.update({"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_SESSION_TOKEN": ""})
    code, _, err = cli(*base, f"s3://{TRAIL}")
    assert code == 3 and err.startswith("iamtrim: spark executor: no AWS credentials found"), err
    assert err.count("\n") == 1
    with Store(store) as st:
        assert len(st.files()) == n


def test_an_executor_read_error_ends_its_partition_in_one_message(buckets: str) -> None:
    """The partition function, run here against a stubbed client: a GetObject refused by the trail
    key's policy becomes one ("e", message) naming kms:Decrypt, and nothing of the object is kept."""
    from botocore.stub import Stubber

    from iamtrim.aws import Aws
    from iamtrim.engines.spark import _read

    trail = S3Trail(
        f"s3://{TRAIL}/AWSLogs/{ACCOUNT}/CloudTrail/us-east-1/2026/10/01", AwsConfig(endpoint_url=buckets)
    )
    refs = list(trail.list_objects())
    aws = Aws(AwsConfig(endpoint_url=buckets))
    trail._aws, trail._pid = aws, os.getpid()  # the source's seam: its Aws for this process
    message = "User: arn:aws:sts::1:assumed-role/r/s is not authorized to perform: kms:Decrypt on resource: k"

    with Stubber(aws.client("s3")) as stub:
        stub.add_client_error("get_object", "AccessDenied", message, 403)
        out = list(_read([(0, 0, refs[0])], [trail], 1 << 20))
    key = refs[0].uri.removeprefix(f"s3://{TRAIL}/")
    assert out == [
        ("e", f"access denied: iamtrim needs kms:Decrypt (for s3:GetObject on arn:aws:s3:::{TRAIL}/{key}) "
         "(see docs/permissions.md)")
    ]  # fmt: skip


# -- --parquet: the store's usage rows for other tools -------------------------------------------------


def _utc(seconds: float | None) -> str:
    return "" if seconds is None else datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _stored(store: Store) -> list[tuple[Any, ...]]:
    return sorted(
        (
            *(r.principal, r.action, r.resource, r.outcome, r.context, r.count, r.first_seen, r.last_seen),
            *(r.event_ids, r.source_ips),
        )
        for r in store.stored_rows()
    )


def test_cli_parquet_reads_back_as_the_store_rows(
    samples: Path, tmp_path: Path, spark: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--parquet DIR`` read back with Spark equals the store's usage rows exactly (the context's
    columns rebuild its key), with the schema docs/scale.md gives; DuckDB, another reader, reads
    the same rows and times; a second run replaces the files instead of adding to them."""
    store, out_dir = tmp_path / "s.sqlite", tmp_path / "usage-parquet"
    args = ["ingest", "--engine", "spark", str(samples / "AWSLogs"), "--store", str(store)]
    for _ in range(2):
        with pytest.raises(SystemExit) as done:
            main([*args, "--parquet", str(out_dir)])
        assert done.value.code == 0
    want = _stored(Store(store))
    assert f"parquet: {len(want):,} usage rows written to {out_dir}" in capsys.readouterr().out
    frame = spark.read.parquet(str(out_dir))
    assert [(f.name, f.dataType.simpleString()) for f in frame.schema.fields] == documented_parquet_columns()
    got = []
    for r in frame.collect():
        context = Context(**{n: tuple(r[n]) if isinstance(r[n], list) else r[n] for n in Context.__slots__})
        assert context.to_key() == r.context_key
        first, last = (None if t is None else t.timestamp() for t in (r.first_seen, r.last_seen))
        got.append(
            (
                *(r.principal, r.action, r.resource, r.outcome, r.context_key, r["count"]),
                *(_utc(first), _utc(last), tuple(r.event_ids), tuple(r.source_ips)),
            )
        )
    assert sorted(got) == want and len(want) > 500
    assert any(k[4] != Context().to_key() for k in want)  # contexts with fields set are in it
    duckdb = pytest.importorskip("duckdb")
    rows = duckdb.sql(
        "SELECT principal, action, resource, outcome, context_key, count, epoch(first_seen), "
        f"epoch(last_seen) FROM read_parquet('{out_dir}/*.parquet')"
    ).fetchall()
    assert sorted((*r[:6], _utc(r[6]), _utc(r[7])) for r in rows) == [w[:8] for w in want]


def documented_parquet_columns() -> list[tuple[str, str]]:
    """The (column, type) rows of the table under "### Parquet output" in docs/scale.md."""
    section = (ROOT / "docs" / "scale.md").read_text().split("### Parquet output", 1)[1].split("\n#", 1)[0]
    return re.findall(r"^\| `([a-z_]+)` \| `([a-z<>]+)` \|", section, re.M)


def test_parquet_needs_the_spark_engine(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["ingest", "samples/AWSLogs", "--parquet", "out"])
    assert done.value.code == 2
    assert capsys.readouterr().err == "iamtrim: --parquet goes with --engine spark\n"


def test_cli_prints_each_file_problem_as_ingest_does(samples: Path, tmp_path: Path, spark: Any) -> None:
    """A file that is not JSON and a gzip cut short beside good files: one line each on stderr,
    the same lines a local ingest prints, and the good files stored."""
    work = tmp_path / "in"
    shutil.copytree(samples / "other-formats", work)
    (work / "broken.json").write_text("{not json")
    (work / "cut.json.gz").write_bytes((samples / "AWSLogs").rglob("*.json.gz").__next__().read_bytes()[:40])
    lines = []
    for engine in ([], ["--engine", "spark"]):
        code, out, err = cli(
            "ingest", *engine, str(work), "--store", str(tmp_path / f"s{len(engine)}.sqlite")
        )
        assert code == 0 and "2 with problems" in out, out + err
        lines.append(sorted(line for line in err.splitlines() if line.startswith("iamtrim: ")))
    assert lines[0] == lines[1] and len(lines[0]) == 2, lines
    assert_same_store(Store(tmp_path / "s2.sqlite"), Store(tmp_path / "s0.sqlite"))


@pytest.mark.parametrize("legacy", [False, True])
def test_stored_days_and_legacy_hashes_same_as_local(tmp_path: Path, spark: Any, legacy: bool) -> None:
    """A download over days the store holds (its hashes by day, or a migrated store's legacy ones)
    plus new events: Spark sends the executors those days' hashes and counts what ingest counts."""
    from tests.test_event_days import rec, to_schema_5, write_jsonl
    from tests.test_ingest import write_trail

    files = {f"{n}.json": [rec(1 + n, n * 10 + i) for i in range(10)] for n in range(3)}
    for name, records in files.items():
        write_trail(tmp_path / "t" / name, records)
    everything = [r for records in files.values() for r in records]
    write_jsonl(tmp_path / "d" / "0.jsonl", [*everything[::4], rec(2, 500), rec(5, 1)])
    stores = {}
    for name in ("local", "spark"):
        path = tmp_path / f"{name}.sqlite"
        with Store(path) as st:
            ingest([tmp_path / "t"], st, workers=1)
        if legacy:
            to_schema_5(path, files)
        stores[name] = Store(path)
    ingest([tmp_path / "d"], stores["local"], workers=1)
    ingest_spark([tmp_path / "d"], stores["spark"], spark=spark)
    assert_same_store(stores["spark"], stores["local"])
    assert stores["local"].skips()["duplicate-event"] == len(everything[::4])
