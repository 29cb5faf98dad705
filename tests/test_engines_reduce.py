"""The reduction, computed by the pure-Python reference engine and normalized with its weights,
builds the store a local ingest builds from the same records (docs/scale.md, "The contract")."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from iamtrim.engines.reduce import KEY_COLUMNS, reduce_paths, store_reduction
from iamtrim.ingest import ingest
from iamtrim.store import Store
from tests.awsparts import cli_here as cli
from tests.engine_compare import (
    BATCH_ROLE,
    PROFILE_CHANGES,
    WEB_ROLE,
    assert_same_store,
    bench_trail,
    profile_changes_table,
    profile_trail,
    usage_table,
)
from tests.factories import ROLE_ARN
from tests.test_passrole_profiles import pass_role_resources

__all__ = ["bench_trail"]  # a fixture

ROOT = Path(__file__).resolve().parent.parent


def _both(paths: list[Path], tmp_path: Path) -> tuple[Store, Store, int, int]:
    local = Store(tmp_path / "local.sqlite")
    ingest(paths, local, workers=1)
    engine = Store(tmp_path / "engine.sqlite")
    reduction = reduce_paths(paths)
    store_reduction(reduction, engine)
    return engine, local, reduction.records_in, len(reduction.rows)


def test_samples_same_store(samples: Path, tmp_path: Path) -> None:
    engine, local, records, rows = _both([samples / "AWSLogs", samples / "other-formats"], tmp_path)
    assert_same_store(engine, local)
    assert rows < records  # it reduces
    assert len(usage_table(local)) > 20


@pytest.mark.corpus
def test_corpus_same_store(corpus: Path, tmp_path: Path) -> None:
    engine, local, records, _ = _both([corpus / "cloudtrail"], tmp_path)
    assert records > 500
    assert_same_store(engine, local)


def test_benchmark_trail_same_store(bench_trail: Path, tmp_path: Path) -> None:
    """A synthetic trail with many shapes and high-cardinality S3 keys (folds happen)."""
    engine, local, records, _ = _both([bench_trail], tmp_path)
    assert records >= 5000
    assert_same_store(engine, local)
    assert any(k[2].endswith("/*") for k in usage_table(local))  # the fold was exercised
    # and every fold carries the sketch of its keys, equal in both stores (assert_same_store)
    assert all(v[3] for k, v in usage_table(local).items() if ":s3:::" in k[2] and k[2].endswith("/*"))


def test_duplicates_and_bad_times_same_store(tmp_path: Path) -> None:
    """Duplicate event ids across files, a record without eventID seen twice, bad and missing
    times, a fractional time in another form, an S3 object key folder past the fold bound."""
    ident = {
        "type": "AssumedRole",
        "arn": "arn:aws:sts::111122223333:assumed-role/app/s1",
        "accountId": "111122223333",
        "sessionContext": {
            "sessionIssuer": {"type": "Role", "arn": "arn:aws:iam::111122223333:role/app", "userName": "app"}
        },
    }

    def rec(i: int, **over: object) -> dict[str, object]:
        base: dict[str, object] = {
            "eventVersion": "1.09",
            "eventTime": f"2026-10-01T10:{i % 60:02}:00Z",
            "eventSource": "s3.amazonaws.com",
            "eventName": "GetObject",
            "eventType": "AwsApiCall",
            "eventCategory": "Data",
            "awsRegion": "us-east-1",
            "sourceIPAddress": f"10.0.0.{i % 7}",
            "recipientAccountId": "111122223333",
            "eventID": f"e-{i}",
            "userIdentity": ident,
            "requestParameters": {"bucketName": "b", "key": f"data/{i % 40}.csv"},
            "resources": [{"ARN": f"arn:aws:s3:::b/data/{i % 40}.csv"}],
        }
        base.update(over)
        return base

    a = [rec(i) for i in range(60)]
    a.append(rec(100, eventTime="2026-10-01 10:00:01.500"))
    a.append(rec(101, eventTime="2026-10-01T25:00:00Z"))
    a.append(rec(102, eventTime="1999-01-01T00:00:00Z"))
    a.append(rec(103, eventTime=None))
    a.append(rec(104, eventID=None))
    a.append(rec(105, errorCode="NoSuchKey", requestParameters={"bucketName": "b", "key": "gone/x"}))
    a.append(rec(106, errorCode="AccessDenied", errorMessage="no"))
    b = [rec(i) for i in range(50, 70)] + [rec(104, eventID=None)]
    folder = tmp_path / "AWSLogs" / "111122223333" / "CloudTrail" / "us-east-1" / "2026" / "10" / "01"
    folder.mkdir(parents=True)
    for name, records in (("a", a), ("b", b)):
        path = folder / f"111122223333_CloudTrail_us-east-1_20261001T1000Z_{name}.json.gz"
        path.write_bytes(gzip.compress(json.dumps({"Records": records}).encode()))
    (tmp_path / "download.json").write_text(json.dumps({"Records": [rec(3), rec(200)]}))
    engine, local, _, _ = _both([tmp_path / "AWSLogs", tmp_path / "download.json"], tmp_path)
    assert_same_store(engine, local)
    skips = dict(local.skips())
    assert skips["duplicate-event"] == 12  # 10 ids of b, the eventID-less copy, rec(3) in the download
    assert skips["bad-event-time"] == 2
    assert any(k[2] == "arn:aws:s3:::b/data/*" for k in usage_table(local))


def test_incremental_same_store(samples: Path, tmp_path: Path) -> None:
    """A second run over more files skips what the store already holds, as ingest does."""
    first = [samples / "AWSLogs" / "444455556666" / "CloudTrail" / "eu-west-1"]
    both = [samples / "AWSLogs", samples / "other-formats"]
    local = Store(tmp_path / "local.sqlite")
    ingest(first, local, workers=1)
    ingest(both, local, workers=1)
    engine = Store(tmp_path / "engine.sqlite")
    store_reduction(reduce_paths(first, engine), engine)
    again = reduce_paths(both, engine)
    assert again.files_already == len(list((first[0]).rglob("*.json.gz")))
    store_reduction(again, engine)
    assert_same_store(engine, local)


def test_key_columns_are_what_the_docs_say() -> None:
    text = (ROOT / "docs" / "scale.md").read_text()
    for column in KEY_COLUMNS:
        assert f"`{column}`" in text, column


def test_instance_profile_changes_same_as_local(tmp_path: Path) -> None:
    """Each instance-profile call is its own group (key column ``event_key``): the engine's store
    holds every change with its own time and event id, as local ingest stores them — the same
    AddRoleToInstanceProfile twice in a day is two changes, not one row of count 2."""
    trail = profile_trail(tmp_path / "trail")
    engine, local, records, rows = _both([trail], tmp_path)
    assert profile_changes_table(local) == PROFILE_CHANGES
    assert_same_store(engine, local)  # compares instance_profile_changes too
    assert records == 10 and rows == 9  # 11 read, the copy dropped; each profile call its own row
    # The run-instances calls pass the profile; the store's changes resolve it to its roles.
    code, out, err = cli(
        "generate-policy", ROLE_ARN, "--store", str(tmp_path / "engine.sqlite"), "--format", "json"
    )
    assert code == 0, err
    # Both roles the profile held when passed (under any path: the changes name them by name).
    wild = {r.replace(":role/", ":role/*/") for r in (WEB_ROLE, BATCH_ROLE)}
    assert pass_role_resources(json.loads(out)) == {WEB_ROLE, BATCH_ROLE} | wild
