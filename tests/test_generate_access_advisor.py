"""generate-policy with Access Advisor evidence: kept when used before the trail, never when only denied."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import SAMPLES


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("aa") / "usage.sqlite"
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "iamtrim",
            "ingest",
            str(SAMPLES / "AWSLogs"),
            "--access-advisor",
            str(SAMPLES / "access-advisor"),
            "--store",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr
    return path


def generate(store: Path, principal: str, *extra: str) -> dict[str, object]:
    res = subprocess.run(
        [sys.executable, "-m", "iamtrim", "generate-policy", principal, "--store", str(store), *extra],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr
    doc: dict[str, object] = json.loads(res.stdout)
    return doc


def granted(doc: dict[str, object]) -> set[str]:
    out: set[str] = set()
    for policy in doc["policies"]:  # type: ignore[attr-defined]
        for st in policy["document"]["Statement"]:
            actions = st["Action"]
            out.update([actions] if isinstance(actions, str) else actions)
    return out


def codes(doc: dict[str, object]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for f in doc["findings"]:  # type: ignore[attr-defined]
        out.setdefault(f["code"], []).append(f["subject"])
    return out


def test_action_used_before_the_trail_is_kept_and_flagged(store: Path) -> None:
    doc = generate(store, "ml-notebook-execution")
    # samples/access-advisor: s3:GetBucketLocation last attempted 2026-08-27, before the trail.
    assert "s3:GetBucketLocation" in granted(doc)
    assert "s3:GetBucketLocation" in codes(doc)["ACCESS_ADVISOR_KEPT"]
    statement = next(s for s in doc["statements"] if "s3:GetBucketLocation" in s["actions"])  # type: ignore[attr-defined]
    assert statement["evidence"]["calls"] == 0
    assert {w["kind"] for w in statement["widened_by"]} == {"access-advisor"}
    # Scoped to the ARN format, never "*" for an action that takes resources.
    assert "*" not in statement["resources"]


def test_evidence_cloudtrail_turns_it_off(store: Path) -> None:
    doc = generate(store, "ml-notebook-execution", "--evidence", "cloudtrail")
    assert "s3:GetBucketLocation" not in granted(doc)
    assert "ACCESS_ADVISOR_KEPT" not in codes(doc)


def test_access_advisor_never_adds_what_cloudtrail_shows_only_denied(store: Path) -> None:
    doc = generate(store, "data-scientist")
    assert {"s3:PutBucketPolicy", "iam:CreateAccessKey"} <= set(codes(doc)["ACCESS_ADVISOR_DENIED_ONLY"])
    assert not {"s3:PutBucketPolicy", "iam:CreateAccessKey"} & granted(doc)


def test_advised_grants_is_the_synth_stage_mapping(store: Path) -> None:
    """The library call the CLI makes: Access Advisor actions missing from CloudTrail, with the
    denied-only ones marked (granted by neither generate-policy nor diff)."""
    from iamtrim import evidence
    from iamtrim.model import Outcome
    from iamtrim.query import resolve_principal_name
    from iamtrim.store import Store
    from iamtrim.synth import advised_grants

    with Store(store) as st:
        arn = resolve_principal_name(st, "ml-notebook-execution").arn
        notebook = advised_grants(evidence.for_principal(st, arn))
        used = {r.action for r in st.usage(arn) if r.outcome is Outcome.USED}
        scientist = advised_grants(
            evidence.for_principal(st, resolve_principal_name(st, "data-scientist").arn)
        )
    by_action = {g.action: g for g in notebook}
    kept = by_action["s3:GetBucketLocation"]
    assert not kept.denied_only
    assert kept.last_accessed.startswith("2026-08-27")
    assert "no CloudTrail record of it" in kept.note
    denied = {g.action for g in scientist if g.denied_only}
    assert {"s3:PutBucketPolicy", "iam:CreateAccessKey"} <= denied
    # Sorted by action, and nothing CloudTrail shows used is advised again.
    assert [g.action for g in notebook] == sorted(by_action)
    assert used and not used & set(by_action)
