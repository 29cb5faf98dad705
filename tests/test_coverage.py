"""Coverage: what the ingested CloudTrail could show (accounts, regions, days, data events), the
observability classes built on it, and the schema-1 → 2 migration that introduced it."""

from __future__ import annotations

import gzip
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from iamtrim import evidence
from iamtrim import store as store_mod
from iamtrim.errors import StoreError
from iamtrim.evidence import Evidence, NotObservableReason
from iamtrim.ingest import ingest
from iamtrim.store import Store

ACCT = "444455556666"
NOTEBOOK = f"arn:aws:iam::{ACCT}:role/service-role/ml-notebook-execution"
CI = f"arn:aws:iam::{ACCT}:user/ci-deployer"
SAMPLES = Path(__file__).resolve().parent.parent / "samples"


def _sample_records() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for path in sorted((SAMPLES / "AWSLogs").rglob("*.json.gz")):
        out.extend(json.loads(gzip.decompress(path.read_bytes()))["Records"])
    return out


def _write_trail(root: Path, records: list[dict[str, Any]], region: str = "us-east-1") -> None:
    """One CloudTrail-named trail file per day, as CloudTrail delivers them."""
    by_day: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        by_day.setdefault(r["eventTime"][:10], []).append(r)
    for day, recs in by_day.items():
        y, m, d = day.split("-")
        path = (
            root
            / "AWSLogs"
            / ACCT
            / "CloudTrail"
            / region
            / y
            / m
            / d
            / (f"{ACCT}_CloudTrail_{region}_{y}{m}{d}T2355Z_abcdefghijklmnop.json.gz")
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(gzip.compress(json.dumps({"Records": recs}).encode(), mtime=0))


def test_trail_with_data_events() -> None:
    with Store(":memory:") as st:
        ingest([SAMPLES / "AWSLogs"], st, workers=1)
        cov = evidence.coverage(st)
    assert cov.accounts == (ACCT,)
    mgmt = cov.management_window(ACCT)
    assert mgmt is not None
    assert (mgmt.first_day, mgmt.last_day, mgmt.days, mgmt.gaps) == ("2026-10-01", "2026-10-14", 14, 0)
    assert mgmt.regions == ("eu-west-1", "us-east-1")
    assert cov.data_sources(ACCT) == ("lambda.amazonaws.com", "s3.amazonaws.com")
    s3 = cov.data_window(ACCT, "s3.amazonaws.com")
    assert s3 is not None and s3.regions == ("us-east-1",)
    assert cov.partial_days == () and cov.unknown_files == 0


def test_record_counts_match_the_trail() -> None:
    records = _sample_records()
    with Store(":memory:") as st:
        report = ingest([SAMPLES / "AWSLogs"], st, workers=1)
        rows = st.coverage()
    assert sum(r.records for r in rows) == report.records == len(records)
    data = sum(1 for r in records if r.get("eventCategory") == "Data")
    assert sum(r.records for r in rows if r.data_source) == data
    assert all(r.complete for r in rows)


def test_parallel_ingest_gives_the_same_coverage() -> None:
    with Store(":memory:") as a, Store(":memory:") as b:
        ingest([SAMPLES / "AWSLogs"], a, workers=1)
        ingest([SAMPLES / "AWSLogs"], b, workers=2)
        assert a.coverage() == b.coverage()


def test_trail_without_data_events(tmp_path: Path) -> None:
    mgmt = [r for r in _sample_records() if r.get("eventCategory") != "Data"]
    _write_trail(tmp_path, mgmt)
    with Store(":memory:") as st:
        ingest([tmp_path], st, workers=1)
        cov = evidence.coverage(st)
        assert cov.data_sources(ACCT) == ()
        nb = evidence.for_principal(st, NOTEBOOK)
        get = nb.classify("s3:GetObject")
        assert get.evidence is Evidence.NOT_OBSERVABLE
        assert get.reason is NotObservableReason.DATA_EVENTS_ABSENT and not get.removable
        assert "s3.amazonaws.com data events" in get.detail
        invoke = evidence.classify(st, CI, "lambda:InvokeFunction")
        assert invoke.reason is NotObservableReason.DATA_EVENTS_ABSENT
        # management events are still observable over the trail's days
        delete = nb.classify("sagemaker:DeleteNotebookInstance")
        assert (delete.evidence, delete.since) == (Evidence.NOT_USED_OBSERVABLE_SINCE, "2026-10-01")
        assert delete.removable


def test_old_records_without_event_category_use_known_data_event_names(tmp_path: Path) -> None:
    records = []
    for r in _sample_records():
        if r["eventSource"] == "s3.amazonaws.com" and r.get("eventCategory") == "Data":
            r = {k: v for k, v in r.items() if k not in ("eventCategory", "managementEvent")}
            r["eventVersion"] = "1.05"
            records.append(r)
    _write_trail(tmp_path, records)
    with Store(":memory:") as st:
        ingest([tmp_path], st, workers=1)
        assert {r.data_source for r in st.coverage()} == {"s3.amazonaws.com"}


def test_downloads_are_not_coverage_unless_trusted() -> None:
    with Store(":memory:") as st:
        ingest([SAMPLES / "other-formats"], st, workers=1)
        assert st.coverage() and not any(r.complete for r in st.coverage())
        cov = evidence.coverage(st)
        assert cov.management == () and dict(cov.partial_days)[ACCT] > 0
        obs = evidence.classify(st, NOTEBOOK, "sagemaker:DeleteNotebookInstance")
        assert (obs.evidence, obs.reason) == (Evidence.NOT_OBSERVABLE, NotObservableReason.NO_TRAIL)
        trusted = evidence.for_principal(st, NOTEBOOK, trust_exports=True)
        assert (
            trusted.classify("sagemaker:DeleteNotebookInstance").evidence
            is Evidence.NOT_USED_OBSERVABLE_SINCE
        )


def test_gaps_and_partial_days_are_caveats(tmp_path: Path) -> None:
    records = [r for r in _sample_records() if r["eventTime"][:10] not in ("2026-10-05", "2026-10-06")]
    _write_trail(tmp_path / "trail", records)
    with Store(":memory:") as st:
        ingest([tmp_path / "trail", SAMPLES / "other-formats"], st, workers=1)
        obs = evidence.classify(st, NOTEBOOK, "sagemaker:DeleteNotebookInstance")
    assert obs.since == "2026-10-01"
    assert any("2 days without records" in c for c in obs.caveats)
    assert any("seen only in downloads/exports" in c for c in obs.caveats)


def test_never_logged_actions_are_not_observable() -> None:
    with Store(":memory:") as st:
        ingest([SAMPLES / "AWSLogs"], st, workers=1)
        ev = evidence.for_principal(st, CI)
        for action in ("iam:PassRole", "es:ESHttpGet", "rds-db:connect", "sts:TagSession"):
            obs = ev.classify(action)
            assert (obs.evidence, obs.reason) == (
                Evidence.NOT_OBSERVABLE,
                NotObservableReason.NEVER_LOGGED,
            ), action
            assert "https://docs.aws.amazon.com/" in obs.detail
        # another account's principal: this trail shows only its calls into this account
        other = evidence.classify(
            st, "arn:aws:iam::777788889999:role/partner-analytics", "s3:PutBucketPolicy"
        )
        assert other.reason is NotObservableReason.NO_TRAIL


def test_data_event_and_never_logged_tables() -> None:
    assert evidence.data_event_source("s3:GetObject") == "s3.amazonaws.com"
    assert evidence.data_event_source("s3:ListBucket") == "s3.amazonaws.com"
    assert evidence.data_event_source("s3:PutBucketPolicy") == ""
    assert evidence.data_event_source("dynamodb:PartiQLSelect") == "dynamodb.amazonaws.com"
    assert evidence.data_event_source("lambda:UpdateFunctionCode") == ""
    assert evidence.never_logged("iam:PassRole").startswith("a permission checked")
    assert evidence.never_logged("iam:CreateRole") == ""
    from iamtrim import catalog

    for pattern in (*evidence.DATA_EVENT_ACTIONS, *evidence.NEVER_LOGGED):
        assert catalog.expand_action_pattern(pattern), f"{pattern} matches no catalog action"


def test_reingest_does_not_double_coverage(tmp_path: Path) -> None:
    with Store(tmp_path / "s.sqlite") as st:
        ingest([SAMPLES / "AWSLogs"], st, workers=1)
        first = st.coverage()
        ingest([SAMPLES / "AWSLogs"], st, workers=1)
        assert st.coverage() == first


# -- schema migration ----------------------------------------------------------------------------


def _v1_store(path: Path) -> None:
    db = sqlite3.connect(path)
    db.executescript(store_mod._SCHEMA)
    db.execute("INSERT INTO meta VALUES ('schema', '1')")
    db.execute(
        "INSERT INTO files VALUES ('d1', 'a.json.gz', 1, 1, 'trail', 3, 0, '', '2026-10-15T00:00:00Z', x'')"
    )
    db.execute(
        "INSERT INTO usage VALUES (?, 'sagemaker:ListTrainingJobs', '*', 'used', '[]', 3, "
        "'2026-10-01T00:00:00Z', '2026-10-02T00:00:00Z', '[]', '[]')",
        (NOTEBOOK,),
    )
    db.commit()
    db.close()


def test_v1_store_is_migrated_in_place(tmp_path: Path) -> None:
    path = tmp_path / "v1.sqlite"
    _v1_store(path)
    with Store(path) as st:
        assert st.meta("schema") == "6" and st.meta("migrated_from") == "1"
        assert st.meta("coverage_unknown_files") == "1"
        assert [r.action for r in st.usage(NOTEBOOK)] == ["sagemaker:ListTrainingJobs"]
        assert st.coverage() == [] and st.access_advisor() == []
        obs = evidence.classify(st, NOTEBOOK, "sagemaker:DeleteEndpoint")
        # nothing says what the old files covered: never "unused"
        assert (obs.evidence, obs.reason) == (Evidence.NOT_OBSERVABLE, NotObservableReason.NO_TRAIL)
        assert any("schema 1" in c for c in obs.caveats)
        assert (
            evidence.classify(st, NOTEBOOK, "sagemaker:ListTrainingJobs").evidence is Evidence.USED_CLOUDTRAIL
        )
        ingest([SAMPLES / "AWSLogs"], st, workers=1)  # the migrated store takes new data
        assert st.coverage()
    with Store(path) as st:  # reopening does not migrate again
        assert st.meta("schema") == "6" and st.meta("coverage_unknown_files") == "1"


def test_unknown_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "v9.sqlite"
    db = sqlite3.connect(path)
    db.executescript(store_mod._SCHEMA)
    db.execute("INSERT INTO meta VALUES ('schema', '9')")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="schema 9"):
        Store(path)


def test_new_store_is_version_6(tmp_path: Path) -> None:
    with Store(tmp_path / "n.sqlite") as st:
        assert st.meta("schema") == store_mod.SCHEMA_VERSION == "6"
        assert st.meta("coverage_unknown_files") == ""
