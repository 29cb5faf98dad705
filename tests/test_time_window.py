"""--since / --until: evidence is the usage seen in the window, on every reading command."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from iamtrim.errors import OptionsError
from iamtrim.model import Context, TimeWindow
from iamtrim.query import parse_window
from iamtrim.store import Store
from tests.oracle import decision_of, run_oracle
from tests.test_ingest import ROLE, s3_get, write_trail

ROOT = Path(__file__).resolve().parent.parent
RETIRED = "arn:aws:iam::111122223333:role/retired-job"


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "iamtrim", *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )


def at(record: dict[str, Any], when: str, *, action: str = "GetObject") -> dict[str, Any]:
    record["eventTime"] = when
    record["eventName"] = action
    return record


def retired(i: int, when: str) -> dict[str, Any]:
    rec = at(s3_get(i, "old/r.csv"), when)
    ident = rec["userIdentity"]
    ident["arn"] = "arn:aws:sts::111122223333:assumed-role/retired-job/s"
    ident["sessionContext"]["sessionIssuer"]["arn"] = RETIRED
    ident["sessionContext"]["sessionIssuer"]["userName"] = "retired-job"
    return rec


def make_trail(tmp_path: Path) -> Path:
    """etl read old/a.csv and was denied a PutObject in September, reads new/b.csv in October,
    and read shared/c.csv from September into October (one row across the window's start);
    retired-job worked in September only."""
    records = [
        at(s3_get(1, "old/a.csv"), "2026-09-01T10:00:00Z"),
        at(s3_get(2, "old/a.csv"), "2026-09-02T10:00:00Z"),
        at(s3_get(3, "old/denied.csv", error="AccessDenied"), "2026-09-03T10:00:00Z", action="PutObject"),
        at(s3_get(4, "new/b.csv"), "2026-10-20T10:00:00Z"),
        at(s3_get(5, "shared/c.csv"), "2026-09-15T10:00:00Z"),
        at(s3_get(6, "shared/c.csv"), "2026-10-05T10:00:00Z"),
        retired(7, "2026-09-04T10:00:00Z"),
    ]
    return write_trail(tmp_path / "t" / "trail.json", records)


def json_of(res: subprocess.CompletedProcess[str]) -> Any:
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


# -- parsing ---------------------------------------------------------------------------------


def test_window_values_as_users_write_them() -> None:
    now = datetime(2026, 12, 7, 4, 30, 15, tzinfo=UTC)
    assert parse_window("2026-10-01", "2026-10-14", now=now) == TimeWindow(
        "2026-10-01T00:00:00Z", "2026-10-14T23:59:59Z"
    )
    # A timestamp in another zone is the same instant in UTC; a naive one is UTC (eventTime is).
    assert parse_window("2026-10-01T02:00:00+02:00", None, now=now).since == "2026-10-01T00:00:00Z"
    assert parse_window("2026-10-01T12:30", None, now=now).since == "2026-10-01T12:30:00Z"
    assert parse_window("2026-10-01T12:30:05.250Z", None, now=now).since == "2026-10-01T12:30:05Z"
    assert parse_window("90d", None, now=now).since == (now - timedelta(days=90)).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )
    assert parse_window(None, "12h", now=now).until == "2026-12-06T16:30:15Z"
    assert parse_window(None, None, now=now).is_open
    for since, until in (
        ("yesterday", None),
        (None, "2026-02-30"),
        ("-5d", None),
        ("2026-10-14", "2026-10-01"),
    ):
        with pytest.raises(OptionsError):
            parse_window(since, until, now=now)


def test_store_window_is_the_overlap_rule_on_random_rows() -> None:
    """The SQL condition keeps exactly the rows whose [first_seen, last_seen] overlaps the window,
    and coverage exactly the days inside it."""
    rng = random.Random(7)
    start = datetime(2026, 9, 1, tzinfo=UTC)

    def stamp() -> str:
        return (start + timedelta(seconds=rng.randrange(60 * 86400))).strftime("%Y-%m-%dT%H:%M:%SZ")

    st = Store(":memory:")
    rows = []
    coverage = []
    for i in range(400):
        a, b = sorted((stamp(), stamp()))
        principal = f"arn:aws:iam::111122223333:role/r{i % 3}"
        rows.append(
            (principal, "s3:GetObject", f"arn:aws:s3:::b/k{i}", "used", Context().to_key(), 1, a, b, (), ())
        )
        coverage.append(("111122223333", "us-east-1", a[:10], "", True, 1))
    st.commit_batch([], [], rows, [], coverage)
    for _ in range(40):
        lo, hi = sorted((stamp(), stamp()))
        window = rng.choice([TimeWindow(lo, hi), TimeWindow(lo, ""), TimeWindow("", hi)])
        expected = {r[2] for r in rows if window.overlaps(r[6], r[7])}
        assert {r.resource for r in st.usage(window=window)} == expected
        mine = {r[2] for r in rows if r[0].endswith("/r1") and window.overlaps(r[6], r[7])}
        assert {r.resource for r in st.usage("arn:aws:iam::111122223333:role/r1", window)} == mine
        days = {c[2] for c in coverage if window.includes_day(c[2])}
        assert {c.day for c in st.coverage(window=window)} == days


# -- the commands ----------------------------------------------------------------------------


def test_usage_and_principals_age_out_old_use(tmp_path: Path) -> None:
    make_trail(tmp_path)
    assert run("ingest", "t", "--store", "s.sqlite", "--quiet", cwd=tmp_path).returncode == 0
    everyone = json_of(run("principals", "--store", "s.sqlite", "--format", "json", cwd=tmp_path))
    assert {p["principal"] for p in everyone} == {ROLE, RETIRED}
    res = run("principals", "--store", "s.sqlite", "--format", "json", "--since", "2026-10-01", cwd=tmp_path)
    assert [p["principal"] for p in json_of(res)] == [ROLE]
    assert "window 2026-10-01T00:00:00Z .. the last record" in res.stderr

    doc = json_of(
        run("usage", "etl", "--store", "s.sqlite", "--format", "json", "--since", "2026-10-01", cwd=tmp_path)
    )
    # The row of shared/c.csv overlaps the window: it counts whole (both calls, first seen in September).
    assert {(u["resource"], u["count"], u["first_seen"]) for u in doc["used"]} == {
        ("arn:aws:s3:::data/new/b.csv", 1, "2026-10-20T10:00:00Z"),
        ("arn:aws:s3:::data/shared/c.csv", 2, "2026-09-15T10:00:00Z"),
    }
    assert doc["denied"] == []
    doc = json_of(
        run("usage", "etl", "--store", "s.sqlite", "--format", "json", "--until", "2026-09-30", cwd=tmp_path)
    )
    assert {u["resource"] for u in doc["used"]} == {
        "arn:aws:s3:::data/old/a.csv",
        "arn:aws:s3:::data/shared/c.csv",
    }
    assert [d["resource"] for d in doc["denied"]] == ["arn:aws:s3:::data/old/denied.csv"]
    # A window inside one day, with times: only the call of 2026-09-02 (the old/a.csv row spans it).
    doc = json_of(
        run(
            "usage", "etl", "--store", "s.sqlite", "--format", "json",
            "--since", "2026-09-02T09:00:00Z", "--until", "2026-09-02T11:00:00Z", cwd=tmp_path,
        )
    )  # fmt: skip
    assert [u["resource"] for u in doc["used"]] == ["arn:aws:s3:::data/old/a.csv"] and doc["denied"] == []

    # Stateless reading applies the same window.
    stateless = run(
        "usage", "etl", "--events", "t", "--format", "json", "--since", "2026-10-01", cwd=tmp_path
    )
    stored = run(
        "usage", "etl", "--store", "s.sqlite", "--format", "json", "--since", "2026-10-01", cwd=tmp_path
    )
    assert json_of(stateless) == json_of(stored)
    # A span back from now: far enough covers everything, zero covers nothing.
    assert json_of(
        run("principals", "--events", "t", "--format", "json", "--since", "100000d", cwd=tmp_path)
    ) == (json_of(run("principals", "--events", "t", "--format", "json", cwd=tmp_path)))
    assert (
        json_of(run("principals", "--events", "t", "--format", "json", "--since", "0d", cwd=tmp_path)) == []
    )


def test_bad_window_values_are_one_line_usage_errors(tmp_path: Path) -> None:
    make_trail(tmp_path)
    for args in (
        ("usage", "etl", "--since", "last-tuesday"),
        ("generate-policy", "etl", "--until", "2026-13-01"),
        ("principals", "--since", "2026-10-14", "--until", "2026-10-01"),
        ("diff", "etl", "--current", "p.json", "--since", "9x"),
    ):
        res = run(*args, "--events", "t", cwd=tmp_path)
        assert res.returncode == 2, (args, res.stderr)
        assert res.stderr.strip().count("\n") == 0 and "Traceback" not in res.stderr, res.stderr
        assert "--since" in res.stderr or "--until" in res.stderr


@pytest.mark.oracle
def test_generate_policy_grants_only_what_the_window_saw(tmp_path: Path) -> None:
    make_trail(tmp_path)
    res = run(
        "generate-policy", "etl", "--events", "t", "--format", "json", "--since", "2026-10-01", cwd=tmp_path
    )
    doc = json_of(res)
    policies = [p["document"] for p in doc["policies"]]
    requests = [
        {"principal": ROLE, "action": "s3:GetObject", "resource": f"arn:aws:s3:::data/{key}"}
        for key in ("new/b.csv", "shared/c.csv", "old/a.csv")
    ] + [{"principal": ROLE, "action": "s3:PutObject", "resource": "arn:aws:s3:::data/old/denied.csv"}]
    for r in requests:
        r["context"] = {"aws:SourceVpce": "vpce-0123456789abcdef0", "aws:SecureTransport": "true"}
    decisions = [decision_of(r) for r in run_oracle([{"identityPolicies": policies, "requests": requests}])]
    assert decisions == ["allowed", "allowed", "implicit-deny", "implicit-deny"], decisions
    # The September denial is outside the window: not reported.
    assert doc["denied"] == []
    # Nothing authorized in the window: a usage error that names the window.
    res = run("generate-policy", "retired-job", "--events", "t", "--since", "2026-10-01", cwd=tmp_path)
    assert res.returncode == 2 and "no authorized call between 2026-10-01T00:00:00Z" in res.stderr


def test_diff_and_who_used_take_the_window(tmp_path: Path) -> None:
    make_trail(tmp_path)
    (tmp_path / "p.json").write_text(
        json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}],
            }
        )
    )
    full = json_of(
        run("diff", "etl", "--events", "t", "--current", "p.json", "--format", "json", cwd=tmp_path)
    )
    recent = json_of(
        run(
            "diff",
            "etl",
            "--events",
            "t",
            "--current",
            "p.json",
            "--format",
            "json",
            "--since",
            "2026-10-01",
            cwd=tmp_path,
        )
    )
    assert "s3:PutObject" in {m["action"] for m in full["missing"]}
    assert recent["missing"] == []  # the old denial aged out
    assert recent["used_actions"] == full["used_actions"] == ["s3:GetObject"]

    pattern = "arn:aws:s3:::data/old/*"
    old = json_of(run("who-used", pattern, "--events", "t", "--format", "json", cwd=tmp_path))
    assert {p["principal"] for p in old["principals"]} == {ROLE, RETIRED}
    now = json_of(
        run("who-used", pattern, "--events", "t", "--format", "json", "--since", "2026-10-01", cwd=tmp_path)
    )
    assert now["principals"] == []


def test_bucket_policy_pins_only_the_callers_of_the_window(tmp_path: Path) -> None:
    make_trail(tmp_path)

    def pinned(*window: str) -> set[str]:
        doc = json_of(
            run("bucket-policy", "data", "--events", "t", "--format", "json", *window, cwd=tmp_path)
        )
        return {p for s in doc["statements"] if s["kind"] == "pin-vpce" for p in s["principals"]}

    assert pinned() == {ROLE, RETIRED}
    assert pinned("--since", "2026-10-01") == {ROLE}  # the retired job is no longer pinned


def test_graph_export_keeps_the_window(tmp_path: Path) -> None:
    make_trail(tmp_path)
    res = run("graph", "export", "--events", "t", "--format", "json", "--since", "2026-10-01", cwd=tmp_path)
    nodes = {n["id"] for n in json_of(res)["nodes"]}
    assert f"principal:{ROLE}" in nodes and f"principal:{RETIRED}" not in nodes
    assert (
        "resource:arn:aws:s3:::data/old/a.csv" not in nodes
        and "resource:arn:aws:s3:::data/new/b.csv" in nodes
    )
    # A selection with no usage in the window is a usage error that says so.
    res = run(
        "graph",
        "export",
        "--events",
        "t",
        "--principal",
        "retired-job",
        "--since",
        "2026-10-01",
        cwd=tmp_path,
    )
    assert res.returncode == 2 and "between 2026-10-01T00:00:00Z" in res.stderr
