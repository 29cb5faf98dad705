"""bucket-policy and kms-policy on the sample account: guardrails, pins, grants, lockout, goldens.

Golden files live in tests/golden/bucket-policy/; regenerate them with IAMTRIM_UPDATE_GOLDEN=1.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from iamtrim.errors import BucketError, KeyPolicyError, LockoutError
from iamtrim.evaluate import Request, evaluate
from iamtrim.ingest import load_events
from iamtrim.model import Context, Outcome, UsageRow
from iamtrim.model.policy import Condition, Effect, Policy, Principals, PrincipalType, Statement
from iamtrim.synth.bucket import (
    BucketOptions,
    GeneratedBucketPolicy,
    check_lockout,
    generate_bucket_policy,
    object_prefixes,
)
from iamtrim.synth.kms import generate_key_policy, resolve_key
from iamtrim.synth.resource_policy import allow_all, principal_arn_forms
from tests.conftest import ROOT, SAMPLES

ACCT = "444455556666"
NOTEBOOK = f"arn:aws:iam::{ACCT}:role/service-role/ml-notebook-execution"
TRAINING = f"arn:aws:iam::{ACCT}:role/ml-training-job"
SCIENTIST = f"arn:aws:iam::{ACCT}:role/data-scientist"
PARTNER = "arn:aws:iam::777788889999:role/partner-analytics"
BREAK_GLASS = f"arn:aws:iam::{ACCT}:role/break-glass-admin"
VPCE = "vpce-0a1b2c3d4e5f60718"
ARTIFACTS_KEY = f"arn:aws:kms:us-east-1:{ACCT}:key/9f8e7d6c-5b4a-3928-1716-0f1e2d3c4b5a"
DATASETS_KEY = f"arn:aws:kms:us-east-1:{ACCT}:key/1a2b3c4d-5e6f-7a8b-9c0d-1e2f3a4b5c6d"
BUCKETS = ("acme-ml-datasets", "acme-ml-artifacts", "acme-ml-scratch")
KEYS = (DATASETS_KEY, ARTIFACTS_KEY)
GOLDEN = ROOT / "tests" / "golden" / "bucket-policy"


@pytest.fixture(scope="module")
def rows() -> list[UsageRow]:
    with load_events([SAMPLES / "AWSLogs"]) as st:
        return st.usage()


@pytest.fixture(scope="module")
def policies(rows: list[UsageRow]) -> dict[str, GeneratedBucketPolicy]:
    return {
        b: generate_bucket_policy(b, rows, BucketOptions(break_glass=(BREAK_GLASS,), account=ACCT))
        for b in BUCKETS
    }


def _by_sid(g: GeneratedBucketPolicy) -> dict[str, Statement]:
    return {s.sid: s for s in g.policy.statements}


def _cond(st: Statement, key: str) -> Condition:
    return next(c for c in st.conditions if c.key == key)


def test_every_deny_says_what_it_protects(policies: dict[str, GeneratedBucketPolicy]) -> None:
    for g in policies.values():
        sids = [s.sid for s in g.policy.statements]
        assert len(sids) == len(set(sids))
        assert "DenyInsecureTransport" in sids
        for st in g.policy.statements:
            assert st.sid.isalnum()
            assert st.sid.startswith("Deny" if st.effect is Effect.DENY else "Grant")
        for ev in g.statements:
            assert ev.purpose.startswith(("protects", "grants"))


def test_vpce_pins_only_principals_always_through_the_endpoint(
    policies: dict[str, GeneratedBucketPolicy],
) -> None:
    for bucket in ("acme-ml-datasets", "acme-ml-artifacts"):
        g = policies[bucket]
        pins = [s for s in g.policy.statements if s.sid.startswith("DenyAccessOutside")]
        assert len(pins) == 1
        assert _cond(pins[0], "aws:SourceVpce") == Condition("StringNotEquals", "aws:SourceVpce", (VPCE,))
        pinned = set(_cond(pins[0], "aws:PrincipalArn").values)
        # The role ARN with its path and the path-less form aws:PrincipalArn may take for a session.
        assert pinned == {*principal_arn_forms(NOTEBOOK), TRAINING}
        assert f"arn:aws:iam::{ACCT}:role/ml-notebook-execution" in pinned
    unpinned = {(u.principal, u.guard) for g in policies.values() for u in g.unpinned}
    assert (SCIENTIST, "vpce") in unpinned and (PARTNER, "vpce") in unpinned
    assert not any(
        s.sid.startswith("DenyAccessOutside") for s in policies["acme-ml-scratch"].policy.statements
    )


def test_sse_kms_required_only_where_every_upload_sent_it(policies: dict[str, GeneratedBucketPolicy]) -> None:
    art = _by_sid(policies["acme-ml-artifacts"])
    require = art["DenyUploadsWithoutSseKmsForMlNotebookExecution"]
    assert require.actions == ("s3:PutObject",)
    assert _cond(require, "s3:x-amz-server-side-encryption").values == ("aws:kms",)
    assert not any(c.operator == "Null" for c in require.conditions)
    key = next(s for sid, s in art.items() if sid.startswith("DenyUploadsWithoutKmsKeyForMlNotebook"))
    assert _cond(key, "s3:x-amz-server-side-encryption-aws-kms-key-id").values == (ARTIFACTS_KEY,)
    # The training role's metrics.json/_SUCCESS went without a header: only another header is refused.
    other = art["DenyUploadsWithOtherEncryptionForMlTrainingJob"]
    assert Condition("Null", "s3:x-amz-server-side-encryption", ("false",)) in other.conditions
    assert set(_cond(other, "aws:PrincipalArn").values) == {TRAINING}
    findings = {(f.code, f.subject) for f in policies["acme-ml-artifacts"].findings}
    assert ("UPLOAD_WITHOUT_SSE_HEADER", TRAINING) in findings
    ds = policies["acme-ml-datasets"]
    assert ("UPLOAD_WITHOUT_SSE_HEADER", NOTEBOOK) in {(f.code, f.subject) for f in ds.findings}
    assert not any(s.sid.startswith("DenyUploadsWithout") for s in ds.policy.statements)
    # The scratch bucket is SSE-S3: nothing is enforced there.
    assert not any("Uploads" in s.sid for s in policies["acme-ml-scratch"].policy.statements)


def test_cross_account_gets_exactly_its_actions_and_prefixes(
    policies: dict[str, GeneratedBucketPolicy],
) -> None:
    grants = [s for s in policies["acme-ml-artifacts"].policy.statements if s.effect is Effect.ALLOW]
    assert {(s.actions, s.resources) for s in grants} == {
        (("s3:GetObject",), ("arn:aws:s3:::acme-ml-artifacts/exports/weekly/*",)),
        (("s3:ListBucket",), ("arn:aws:s3:::acme-ml-artifacts",)),
    }
    assert all(s.principals == Principals.aws(PARTNER) for s in grants)
    for b in ("acme-ml-datasets", "acme-ml-scratch"):
        assert not any(s.effect is Effect.ALLOW for s in policies[b].policy.statements)


def test_object_prefixes() -> None:
    assert object_prefixes(["a/b/2026-10-01/x", "a/b/2026-10-08/y", "c/only", "root.txt"]) == {
        "a/b/2026-10-01/x": "a/b/*",
        "a/b/2026-10-08/y": "a/b/*",
        "c/only": "c/only",
        "root.txt": "root.txt",
    }


def _row(principal: str, action: str, resource: str, **ctx: str) -> UsageRow:
    return UsageRow(
        principal,
        action,
        resource,
        Outcome.USED,
        Context(region="us-east-1", **ctx),
        1,
        "2026-10-01T00:00:00Z",
        "2026-10-01T00:00:00Z",
        ("e1",),
        (),
    )


def test_mixed_endpoint_use_is_flagged_not_pinned() -> None:
    role = f"arn:aws:iam::{ACCT}:role/app"
    rows = [
        _row(role, "s3:GetObject", "arn:aws:s3:::b/k", vpc_endpoint=VPCE),
        _row(role, "s3:GetObject", "arn:aws:s3:::b/k2"),
    ]
    g = generate_bucket_policy("b", rows, BucketOptions(account=ACCT))
    assert [f.code for f in g.findings if f.code == "MIXED_ENDPOINT_USE"] == ["MIXED_ENDPOINT_USE"]
    assert not any(s.sid.startswith("DenyAccessOutside") for s in g.policy.statements)
    assert "NO_BREAK_GLASS" in {f.code for f in g.findings}


def test_service_made_calls_are_spared_by_the_pin() -> None:
    role = f"arn:aws:iam::{ACCT}:role/app"
    rows = [
        _row(role, "s3:GetObject", "arn:aws:s3:::b/k", vpc_endpoint=VPCE),
        _row(role, "s3:GetObject", "arn:aws:s3:::b/k", invoked_by="athena.amazonaws.com"),
    ]
    g = generate_bucket_policy("b", rows, BucketOptions(account=ACCT))
    pin = next(s for s in g.policy.statements if s.sid.startswith("DenyAccessOutside"))
    assert Condition("BoolIfExists", "aws:ViaAWSService", ("false",)) in pin.conditions
    direct = Request.make(
        role,
        "s3:GetObject",
        "arn:aws:s3:::b/k",
        {"aws:SecureTransport": "true", "aws:ViaAWSService": "false"},
        resource_account=ACCT,
    )
    assert not evaluate(direct, [allow_all()], resource_policy=g.policy).allowed


def test_break_glass_is_never_pinned_and_lockout_is_checked(rows: list[UsageRow]) -> None:
    g = generate_bucket_policy("acme-ml-datasets", rows, BucketOptions(break_glass=(NOTEBOOK,), account=ACCT))
    assert (NOTEBOOK, "vpce") in {(u.principal, u.guard) for u in g.unpinned}
    pin = next(s for s in g.policy.statements if s.sid.startswith("DenyAccessOutside"))
    assert set(_cond(pin, "aws:PrincipalArn").values) == {TRAINING}
    # root + the role + a session of it, 3 actions, from the internet and through the endpoint
    assert g.lockout_checked == 3 * 3 * 2


def test_lockout_check_refuses_a_policy_that_denies_break_glass() -> None:
    bad = Policy(
        statements=(
            Statement(
                Effect.DENY,
                actions=("s3:*",),
                resources=("arn:aws:s3:::b", "arn:aws:s3:::b/*"),
                principals=Principals.star(),
                conditions=(Condition("StringNotEquals", "aws:SourceVpce", (VPCE,)),),
                sid="DenyOutsideVpce",
            ),
        )
    )
    with pytest.raises(LockoutError, match="lock arn:aws:iam::444455556666:root out"):
        check_lockout(bad, "arn:aws:s3:::b", ACCT, (BREAK_GLASS,))
    tls_only = Policy(
        statements=(
            Statement(
                Effect.DENY,
                actions=("s3:*",),
                resources=("arn:aws:s3:::b",),
                principals=Principals.star(),
                conditions=(Condition("Bool", "aws:SecureTransport", ("false",)),),
                sid="DenyInsecureTransport",
            ),
        )
    )
    assert check_lockout(tls_only, "arn:aws:s3:::b", ACCT, (BREAK_GLASS,), (VPCE,)) == 3 * 3 * 2


def test_refusals(rows: list[UsageRow]) -> None:
    with pytest.raises(BucketError, match="no authorized call"):
        generate_bucket_policy("nope", rows)
    with pytest.raises(BucketError, match="not of the bucket owner's account"):
        generate_bucket_policy("acme-ml-artifacts", rows, BucketOptions(break_glass=(PARTNER,)))
    g = generate_bucket_policy("acme-ml-artifacts", rows)
    assert g.account == ACCT and "BUCKET_OWNER_INFERRED" in {f.code for f in g.findings}
    with pytest.raises(KeyPolicyError):
        resolve_key(rows, "00000000-0000-0000-0000-000000000000")


def test_key_policy_keeps_administration_and_pins_via_service(rows: list[UsageRow]) -> None:
    g = generate_key_policy(resolve_key(rows, "9f8e7d6c-5b4a-3928-1716-0f1e2d3c4b5a"), rows, (BREAK_GLASS,))
    assert g.key == ARTIFACTS_KEY
    sts = {s.sid: s for s in g.policy.statements}
    admin = sts["AllowKeyAdministrationThroughIam"]
    assert admin.principals == Principals.aws(f"arn:aws:iam::{ACCT}:root")
    assert "kms:PutKeyPolicy" in admin.actions and not any(
        a in admin.actions for a in ("kms:Decrypt", "kms:CreateGrant", "kms:*")
    )
    uses = [s for s in g.policy.statements if s.sid.startswith("AllowUse")]
    partner = next(s for s in uses if s.principals and PARTNER in s.principals.values(PrincipalType.AWS))
    assert partner.actions == ("kms:Decrypt",)
    assert partner.conditions == (
        Condition("StringEquals", "kms:ViaService", ("s3.us-east-1.amazonaws.com",)),
    )
    assert "KEY_USED_DIRECTLY" in {f.code for f in g.findings}  # the training role's ReEncrypt


def _golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("IAMTRIM_UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"missing golden {path}: run with IAMTRIM_UPDATE_GOLDEN=1"
    assert text == path.read_text(), f"{name} differs from its golden file"


def test_goldens(policies: dict[str, GeneratedBucketPolicy], rows: list[UsageRow]) -> None:
    for bucket, g in policies.items():
        _golden(f"{bucket}.json", json.dumps(g.policy.to_json(), indent=2) + "\n")
    for key in KEYS:
        g2 = generate_key_policy(key, rows)
        _golden(f"key-{key.rsplit('/', 1)[1]}.json", json.dumps(g2.policy.to_json(), indent=2) + "\n")


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "iamtrim", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_cli_bucket_and_kms_policy(tmp_path: Path) -> None:
    logs = str(SAMPLES / "AWSLogs")
    res = _cli(
        "bucket-policy", "acme-ml-artifacts", "--events", logs, "--break-glass", BREAK_GLASS, cwd=tmp_path
    )
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert set(doc) >= {"bucket", "document", "statements", "findings"}
    assert doc["bucket"] == "acme-ml-artifacts" and doc["document"]["Version"] == "2012-10-17"
    assert (GOLDEN / "acme-ml-artifacts.json").read_text() == json.dumps(doc["document"], indent=2) + "\n"
    res = _cli(
        "bucket-policy", "acme-ml-datasets", "--events", logs, "--format", "policy", "--explain", cwd=tmp_path
    )
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["Statement"][0]["Sid"] == "DenyInsecureTransport"
    assert "left unpinned:" in res.stderr and SCIENTIST in res.stderr
    res = _cli("bucket-policy", "acme-ml-artifacts", "--events", logs, "--break-glass", PARTNER, cwd=tmp_path)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    res = _cli("kms-policy", "9f8e7d6c-5b4a-3928-1716-0f1e2d3c4b5a", "--events", logs, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["key"] == ARTIFACTS_KEY


def test_kinds_and_guards_are_enums_rendered_as_their_values(
    policies: dict[str, GeneratedBucketPolicy], rows: list[UsageRow]
) -> None:
    """The closed vocabularies are StrEnums in the values and plain strings in the JSON."""
    from iamtrim.render.bucket import bucket_json, key_json
    from iamtrim.synth.bucket import BucketStatementKind, Guard
    from iamtrim.synth.kms import KeyStatementKind

    seen_kinds, seen_guards = set(), set()
    for g in policies.values():
        doc = json.loads(bucket_json(g, explain=True))
        assert [s["kind"] for s in doc["statements"]] == [s.kind.value for s in g.statements]
        assert all(type(s["kind"]) is str for s in doc["statements"])
        assert all(isinstance(s.kind, BucketStatementKind) for s in g.statements)
        assert [u["guard"] for u in doc["unpinned"]] == [u.guard.value for u in g.unpinned]
        assert all(isinstance(u.guard, Guard) for u in g.unpinned)
        seen_kinds |= {s.kind for s in g.statements}
        seen_guards |= {u.guard for u in g.unpinned}
    # The samples exercise the transport deny, the pins and the SSE guardrails, and both guards.
    assert {BucketStatementKind.DENY_INSECURE_TRANSPORT, BucketStatementKind.PIN_VPCE} <= seen_kinds
    assert seen_guards == set(Guard)
    for key in KEYS:
        g2 = generate_key_policy(key, rows)
        doc = json.loads(key_json(g2))
        assert [s["kind"] for s in doc["statements"]] == [s.kind.value for s in g2.statements]
        assert {s.kind for s in g2.statements} >= {KeyStatementKind.ADMIN_THROUGH_IAM, KeyStatementKind.USE}
