"""diff and the evidence model: every unused permission carries its observability class, and only
``NOT_USED_OBSERVABLE_SINCE`` is called safe to remove (issue 6, "Use it").

The sample account's trail covers 2026-10-01..2026-10-14 with S3 and Lambda data events; its Access
Advisor reports (samples/access-advisor) cover the notebook role, the data scientist and the CI
user, and show actions used before the trail's window.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from iamtrim import evidence
from iamtrim.evidence import Evidence, NotObservableReason, ingest_access_advisor
from iamtrim.ingest import ingest, load_events
from iamtrim.model.policy import Policy
from iamtrim.query import resolve_principal_name
from iamtrim.render import diff as render_diff
from iamtrim.review.current import CurrentPolicies, current_from_authz, principal_for
from iamtrim.review.diff import Diff, class_label, diff_principal
from iamtrim.store import Store

ROOT = Path(__file__).resolve().parent.parent
AUTHZ = ROOT / "samples" / "authz" / "account-authorization-details.json"
ACCT = "444455556666"
TRAINING = f"arn:aws:iam::{ACCT}:role/ml-training-job"


@pytest.fixture(scope="module")
def store(samples: Path, tmp_path_factory: pytest.TempPathFactory) -> Store:
    """`iamtrim ingest samples/AWSLogs --access-advisor samples/access-advisor`."""
    st = Store(tmp_path_factory.mktemp("ev") / "usage.sqlite")
    ingest([samples / "AWSLogs"], st, workers=1)
    ingest_access_advisor([samples / "access-advisor"], st)
    return st


@pytest.fixture(scope="module")
def management_only(samples: Path, tmp_path_factory: pytest.TempPathFactory) -> Store:
    """The same trail as a trail without data events: every file kept under its CloudTrail name
    (so it counts as coverage), its `eventCategory: Data` records dropped."""
    out = tmp_path_factory.mktemp("mgmt")
    src = samples / "AWSLogs"
    for path in sorted(src.rglob("*.json.gz")):
        doc = json.loads(gzip.decompress(path.read_bytes()))
        doc["Records"] = [r for r in doc["Records"] if r.get("eventCategory") != "Data"]
        target = out / path.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(gzip.compress(json.dumps(doc).encode(), mtime=0))
    st = Store(out / "usage.sqlite")
    ingest([out / ACCT], st, workers=1)
    return st


def sample_diff(st: Store, name: str, current: CurrentPolicies | None = None) -> Diff:
    p = resolve_principal_name(st, name)
    return diff_principal(
        p,
        st.usage(p.arn),
        current or current_from_authz(AUTHZ, p.arn),
        evidence=evidence.for_principal(st, p.arn),
    )


def classes(d: Diff) -> Counter[str]:
    return Counter(class_label(u.evidence) for u in d.unused)


def policy(*actions: str) -> Policy:
    return Policy.from_json(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": list(actions), "Resource": "*"}],
        },
        name="inline:test",
    )


# ---------------------------------------------------------------------------------------------
# The four classes on the samples


def test_used_per_access_advisor_is_never_removable(store: Store) -> None:
    d = sample_diff(store, "ml-notebook-execution")
    u = next(u for u in d.unused if u.action == "s3:GetBucketLocation")
    assert u.evidence.evidence is Evidence.USED_ACCESS_ADVISOR and not u.removable
    # last_seen: Access Advisor's last attempt, CloudTrail having none (before the trail's window)
    assert u.last_seen == "2026-08-27T14:03:00Z"
    assert u in d.to_review and u not in d.removable
    finding = next(f for f in d.findings if f.code == "USED_PER_ACCESS_ADVISOR" and f.subject == u.action)
    assert "2026-08-27T14:03:00Z" in finding.message
    doc = json.loads(render_diff.to_json(d))
    entry = next(e for e in doc["unused"] if e["action"] == "s3:GetBucketLocation")
    assert entry["last_seen"] == "2026-08-27T14:03:00Z"
    assert entry["evidence"] == {
        "class": "used-access-advisor",
        "since": None,
        "last_used": "2026-08-27T14:03:00Z",
        "detail": u.evidence.detail,
        "removable": False,
    }


def test_service_used_action_unknown_is_never_removable(store: Store) -> None:
    d = sample_diff(store, "ml-notebook-execution")
    unknown = [u for u in d.unused if u.evidence.evidence is Evidence.SERVICE_USED_ACTION_UNKNOWN]
    # ec2 was last attempted 2026-07-30 (before the trail): which of its untracked actions, unknown
    assert {u.service for u in unknown} == {"ec2", "s3"}
    assert not any(u.removable for u in unknown)
    assert all(u.last_seen is None for u in unknown)  # the service's time is not the action's
    ec2 = next(u for u in unknown if u.service == "ec2")
    assert ec2.evidence.last_used == "2026-07-30T10:15:00Z"


def test_never_logged_actions_are_not_observable(store: Store) -> None:
    """iam:PassRole (and sts:TagSession) are never logged as the principal's own calls; the training
    role never passed a role in the trail, so neither source could show it."""
    cur = CurrentPolicies(TRAINING, (policy("iam:PassRole", "sts:TagSession", "s3:CreateBucket"),))
    d = sample_diff(store, "ml-training-job", cur)
    got = {u.action: u for u in d.unused}
    for action in ("iam:PassRole", "sts:TagSession"):
        obs = got[action].evidence
        assert (obs.evidence, obs.reason) == (Evidence.NOT_OBSERVABLE, NotObservableReason.NEVER_LOGGED)
        assert not got[action].removable and class_label(obs) == "NOT_OBSERVABLE(never-logged)"
    assert [u.action for u in d.removable] == ["s3:CreateBucket"]
    # the risky unobservable one is named for review, not as unused
    assert any(f.code == "UNUSED_UNPROVEN" and f.subject == "iam:PassRole" for f in d.findings)
    assert not any(f.code == "UNUSED_RISKY_ACTION" and f.subject == "iam:PassRole" for f in d.findings)


def test_object_actions_without_data_events_are_not_observable(management_only: Store) -> None:
    cov = evidence.coverage(management_only)
    assert cov.management_window(ACCT) is not None and cov.data_sources(ACCT) == ()
    d = sample_diff(management_only, "ml-training-job")
    got = {u.action: u.evidence for u in d.unused}
    for action in ("s3:GetObject", "s3:DeleteObject", "s3:PutObjectAcl", "s3:ListBucket"):
        assert (got[action].evidence, got[action].reason) == (
            Evidence.NOT_OBSERVABLE,
            NotObservableReason.DATA_EVENTS_ABSENT,
        ), action
    assert class_label(got["s3:DeleteObject"]) == "NOT_OBSERVABLE(data-events-absent)"
    # management actions stay observable
    assert class_label(got["s3:PutBucketPolicy"]) == "NOT_USED_OBSERVABLE_SINCE(2026-10-01)"
    # and --fail-on risky does not count s3:PutObjectAcl, only the observable risky ones
    assert "s3:PutObjectAcl" not in {u.action for u in d.risky_removable}
    assert "s3:PutBucketPolicy" in {u.action for u in d.risky_removable}


def test_ordinary_unused_management_action_is_removable(store: Store) -> None:
    d = sample_diff(store, "ml-training-job")
    u = next(u for u in d.unused if u.action == "s3:PutBucketPolicy")
    assert (u.evidence.evidence, u.evidence.since) == (Evidence.NOT_USED_OBSERVABLE_SINCE, "2026-10-01")
    assert u.removable and u.last_seen is None and u.risk
    assert class_label(u.evidence) == "NOT_USED_OBSERVABLE_SINCE(2026-10-01)"
    assert any(
        f.code == "UNUSED_RISKY_ACTION" and f.subject == u.action and "2026-10-01" in f.message
        for f in d.findings
    )
    # tracked by Access Advisor and never attempted: non-use known from 400 days before the report
    nb = {u.action: u for u in sample_diff(store, "ml-notebook-execution").unused}
    assert class_label(nb["s3:CreateBucket"].evidence) == "NOT_USED_OBSERVABLE_SINCE(2025-09-10)"
    assert class_label(nb["sagemaker:DeleteEndpoint"].evidence) == "NOT_USED_OBSERVABLE_SINCE(2026-10-01)"


def test_denied_only_actions_access_advisor_reports_as_accessed(store: Store) -> None:
    """Access Advisor counts denied attempts as access: the data scientist's denied
    s3:PutBucketPolicy and iam:CreateAccessKey show as accessed there; the diff says so."""
    d = sample_diff(store, "data-scientist")
    notes = {m.action: m.note for m in d.missing if m.kind == "denied"}
    assert set(notes) == {"s3:PutBucketPolicy", "iam:CreateAccessKey"}
    assert all("counts denials as access" in n for n in notes.values())
    flagged = {f.subject for f in d.findings if f.code == "ACCESS_ADVISOR_DENIED_ONLY"}
    assert flagged == set(notes)
    assert "counts denials as access" in render_diff.to_markdown(d)
    assert all(m.get("note") for m in json.loads(render_diff.to_json(d))["missing"] if m["kind"] == "denied")


# ---------------------------------------------------------------------------------------------
# Counts, headline, proposal

# unused entries per class, per sample role (store with Access Advisor)
EXPECTED = {
    "ml-notebook-execution": {
        "NOT_USED_OBSERVABLE_SINCE(2026-10-01)": 497,
        "NOT_USED_OBSERVABLE_SINCE(2025-09-10)": 68,
        "SERVICE_USED_ACTION_UNKNOWN": 191,
        "USED_ACCESS_ADVISOR": 3,
    },
    "ml-training-job": {"NOT_USED_OBSERVABLE_SINCE(2026-10-01)": 166, "NOT_OBSERVABLE(never-logged)": 6},
    "data-scientist": {
        "NOT_USED_OBSERVABLE_SINCE(2026-10-01)": 1045,
        "NOT_USED_OBSERVABLE_SINCE(2025-09-10)": 3,
        "SERVICE_USED_ACTION_UNKNOWN": 1,
        "USED_ACCESS_ADVISOR": 1,
    },
    # Its service-level report shows lambda and ecr last used on 2026-10-15, the day after the
    # trail ends: a call CloudTrail cannot speak for, so those services' unused actions are unknown.
    "ci-deployer": {"NOT_USED_OBSERVABLE_SINCE(2026-10-01)": 187, "SERVICE_USED_ACTION_UNKNOWN": 135},
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_classes_per_sample_role(store: Store, name: str) -> None:
    d = sample_diff(store, name)
    assert dict(classes(d)) == EXPECTED[name]
    assert len(d.removable) + len(d.to_review) == len(d.unused)
    assert all(u.evidence.evidence is not Evidence.USED_CLOUDTRAIL for u in d.unused)


def test_headline_splits_safe_to_remove_from_review(store: Store) -> None:
    d = sample_diff(store, "ml-notebook-execution")
    assert (len(d.removable), len(d.to_review), d.removable_since) == (565, 194, "2026-10-01")
    text = render_diff.to_text(d)
    assert (
        "565 safe to remove (observable, not used since 2026-10-01; 9 risky), 194 not observable / "
        "used per Access Advisor — review before removing (1 risky)"
    ) in text
    assert "Review before removing (194)" in text
    assert "s3:GetBucketLocation USED_ACCESS_ADVISOR" in text
    md = render_diff.to_markdown(d)
    assert "| ec2 | List | 187 | 185 `SERVICE_USED_ACTION_UNKNOWN`<br>2 `USED_ACCESS_ADVISOR` |  |" in md
    head = json.loads(render_diff.to_json(d))["headline"]
    assert (head["removable"], head["review"], head["removable_since"]) == (565, 194, "2026-10-01")


def test_proposal_keeps_access_advisor_actions_and_counts_unproven_removals(store: Store) -> None:
    d = sample_diff(store, "ml-notebook-execution")
    assert d.proposed is not None and not d.proposed.error
    removes = set(d.proposed.removes)
    assert not removes & {"s3:GetBucketLocation", "ec2:DescribeSubnets", "ec2:DescribeVpcs"}
    assert set(d.proposed.removes_unproven) == removes - {u.action for u in d.removable}
    assert len(d.proposed.removes_unproven) == 191


def test_rows_alone_make_nothing_removable(store: Store) -> None:
    p = resolve_principal_name(store, "ml-training-job")
    d = diff_principal(p, store.usage(p.arn), current_from_authz(AUTHZ, p.arn), propose=False)
    assert d.unused and not d.removable
    assert {u.evidence.evidence for u in d.unused} == {Evidence.NOT_OBSERVABLE}
    assert "CloudTrail: no complete trail file for account 444455556666" in d.basis


def test_events_mode_records_coverage(samples: Path, store: Store) -> None:
    """--events is stateless (no Access Advisor), but its in-memory store records coverage from
    the files it reads: the same classes as a store without Access Advisor reports."""
    mem = load_events([samples / "AWSLogs"], workers=1)
    try:
        assert evidence.coverage(mem) == evidence.coverage(store)
        d = sample_diff(mem, "ml-notebook-execution")
        assert dict(classes(d)) == {
            "NOT_USED_OBSERVABLE_SINCE(2026-10-01)": 753,
            "NOT_OBSERVABLE(never-logged)": 6,
        }
        assert "Access Advisor: none ingested" in d.basis
    finally:
        mem.close()


# ---------------------------------------------------------------------------------------------
# CLI


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "iamtrim", *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )


def test_cli_fail_on_counts_only_removable_entries(tmp_path: Path) -> None:
    trail = str(ROOT / "samples" / "AWSLogs")
    doc = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Resource": "*",
                "Action": [
                    "s3:GetObject",
                    "s3:ReplicateObject",
                    "s3:ObjectOwnerOverrideToBucketOwner",
                    "iam:PassRole",
                ],
            }
        ],
    }
    (tmp_path / "unobservable.json").write_text(json.dumps(doc))
    doc["Statement"][0]["Action"].append("s3:PutBucketPolicy")  # type: ignore[index]
    (tmp_path / "observable.json").write_text(json.dumps(doc))
    base = ("ml-training-job", "--events", trail, "--current")
    res = run("diff", *base, "unobservable.json", "--format", "json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert {u["action"]: u["evidence"]["class"] for u in out["unused"]} == {
        "s3:ReplicateObject": "not-observable",
        "s3:ObjectOwnerOverrideToBucketOwner": "not-observable",
        "iam:PassRole": "not-observable",
    }
    assert all(
        u["evidence"]["reason"] == "never-logged" and not u["evidence"]["removable"] for u in out["unused"]
    )
    # unused, but nothing shown unused: no gate fires
    for gate in ("unused", "risky"):
        assert run("diff", *base, "unobservable.json", "--fail-on", gate, cwd=tmp_path).returncode == 0
        assert run("diff", *base, "observable.json", "--fail-on", gate, cwd=tmp_path).returncode == 1


def test_cli_store_with_access_advisor(tmp_path: Path) -> None:
    db = str(tmp_path / "u.sqlite")
    res = run(
        "ingest",
        str(ROOT / "samples" / "AWSLogs"),
        "--access-advisor",
        str(ROOT / "samples" / "access-advisor"),
        "--store",
        db,
        "--quiet",
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr
    res = run(
        "diff",
        "ml-notebook-execution",
        "--store",
        db,
        "--authz",
        str(AUTHZ),
        "--format",
        "json",
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    loc = next(u for u in out["unused"] if u["action"] == "s3:GetBucketLocation")
    assert loc["last_seen"] == "2026-08-27T14:03:00Z" and loc["evidence"]["class"] == "used-access-advisor"
    assert out["headline"]["removable"] == 565 and out["headline"]["review"] == 194
    assert set(out["unused"][0]["evidence"]) >= {"class", "since", "last_used", "detail", "removable"}


def test_principal_unknown_to_the_store_is_classified_by_its_account(store: Store) -> None:
    """An idle role (no usage): its account's coverage still shows its non-use."""
    cur = current_from_authz(AUTHZ, f"arn:aws:iam::{ACCT}:role/ml-batch-worker")
    p = principal_for(cur.principal)
    d = diff_principal(p, [], cur, evidence=evidence.for_principal(store, p.arn), propose=False)
    assert dict(classes(d)) == {
        "NOT_USED_OBSERVABLE_SINCE(2026-10-01)": 89,
        "NOT_OBSERVABLE(never-logged)": 1,
    }


def test_one_regions_caveat_per_principal(store: Store) -> None:
    # The trail's management events cover eu-west-1 and us-east-1; S3 data events came from
    # us-east-1 only. The diff's caveats once held both "regions covered: eu-west-1, us-east-1"
    # and "regions covered: us-east-1"; the data-event regions now travel with the data caveat.
    d = sample_diff(store, "ml-training-job")
    regions = [c for c in d.caveats if c.startswith("regions covered")]
    assert regions == ["regions covered: eu-west-1, us-east-1"], d.caveats
    data = [c for c in d.caveats if "s3.amazonaws.com data events" in c]
    assert len(data) == 1 and data[0].endswith("in us-east-1"), d.caveats
