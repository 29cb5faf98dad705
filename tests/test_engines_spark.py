"""``ingest --engine spark``, run for real in Spark local mode: the store it builds equals a local
ingest of the same files, row for row, on the samples (every format), the corpus and a benchmark
trail, and it skips what the store already holds (docs/scale.md, "The contract").

One SparkSession for the whole test session (starting the JVM costs seconds)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from iamtrim.cli import main
from iamtrim.ingest import ingest
from iamtrim.store import Store
from tests.engine_compare import assert_same_store, bench_trail, usage_table

__all__ = ["bench_trail"]  # a fixture

pytest.importorskip("pyspark", reason="pyspark (the spark extra; dev installs it) runs the Spark engine")
if shutil.which("java") is None:  # pragma: no cover
    pytest.skip("Spark needs Java (17+) on the PATH", allow_module_level=True)

from iamtrim.engines.spark import ingest_spark, session


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
    "args",
    [
        ["--table", "db.t"],  # athena's option, no PATH
        ["s3://trail-bucket/AWSLogs/"],  # Spark reads local files; S3 goes through ingest s3://
    ],
)
def test_cli_engine_spark_needs_local_paths(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["ingest", "--engine", "spark", *args])
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--engine spark reads local trail PATHs" in err


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
