"""The sample buckets' generated bucket policies (and the keys' key policies) replayed through the
independent IAM oracle (tests/oracle.py): the bucket policy as ``resourcePolicy``, ``resourceAccount``
set (S3 ARNs carry no account), every caller holding an allow-all identity policy.

* every observed call is allowed (as the role and as a session of it);
* the same calls over plain HTTP are denied; the pinned principals' calls without the endpoint are
  denied; uploads without / with another SSE-KMS header are denied where the header is required;
* strangers (another account, and an owner-account role never seen) get nothing from outside;
* the cross-account reader gets only its actions on its prefixes;
* the root and the break-glass role keep Get/Put/DeleteBucketPolicy;
* KMS: observed uses allowed, the same use without the service denied, admins keep PutKeyPolicy.

iamtrim's evaluator must agree with the oracle on every request. One oracle invocation.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from iamtrim.evaluate import Request, evaluate
from iamtrim.ingest import load_events
from iamtrim.model import Outcome, UsageRow
from iamtrim.model.policy import Policy
from iamtrim.synth.bucket import BUCKET_POLICY_ACTIONS, BucketOptions, generate_bucket_policy, replay_context
from iamtrim.synth.kms import generate_key_policy
from iamtrim.synth.resource_policy import allow_all, session_arn
from iamtrim.verify import request_context
from tests.conftest import SAMPLES
from tests.oracle import decision_of, run_oracle

pytestmark = pytest.mark.oracle

ACCT = "444455556666"
BREAK_GLASS = f"arn:aws:iam::{ACCT}:role/break-glass-admin"
PARTNER = "arn:aws:iam::777788889999:role/partner-analytics"
STRANGER = "arn:aws:iam::111122223333:role/stranger"
VPCE = "vpce-0a1b2c3d4e5f60718"
BUCKETS = ("acme-ml-datasets", "acme-ml-artifacts", "acme-ml-scratch")
KEYS = (
    f"arn:aws:kms:us-east-1:{ACCT}:key/1a2b3c4d-5e6f-7a8b-9c0d-1e2f3a4b5c6d",
    f"arn:aws:kms:us-east-1:{ACCT}:key/9f8e7d6c-5b4a-3928-1716-0f1e2d3c4b5a",
)
OTHER_KEY = f"arn:aws:kms:us-east-1:{ACCT}:key/00000000-1111-2222-3333-444444444444"
ALLOW_ALL = allow_all().to_json()

Expect = tuple[str, str, dict[str, Any]]  # (label, expected decision, request)


def _req(principal: str, action: str, resource: str, ctx: dict[str, Any]) -> dict[str, Any]:
    return {"principal": principal, "action": action, "resource": resource, "context": ctx}


def _forms(principal: str) -> list[str]:
    return [p for p in (principal, session_arn(principal, "oracle")) if p]


def _dedupe(expects: list[Expect]) -> list[Expect]:
    seen: dict[str, Expect] = {}
    for e in expects:
        seen.setdefault(json.dumps([e[1], e[2]], sort_keys=True), e)
    return list(seen.values())


def _bucket_expectations(bucket: str, used: list[UsageRow], pinned: set[str]) -> list[Expect]:
    out: list[Expect] = []
    for row in used:
        ctx = replay_context(row)
        resource = row.resource or ""
        for who in _forms(row.principal):
            out.append(("observed", "allowed", _req(who, row.action, resource, ctx)))
            out.append(
                (
                    "plain-http",
                    "explicit-deny",
                    _req(who, row.action, resource, {**ctx, "aws:SecureTransport": "false"}),
                )
            )
            if row.principal in pinned and not row.context.invoked_by:
                off = {k: v for k, v in ctx.items() if k != "aws:SourceVpce"}
                off["aws:SourceIp"] = "192.0.2.44"
                out.append(("outside-endpoint", "explicit-deny", _req(who, row.action, resource, off)))
                other = {**ctx, "aws:SourceVpce": "vpce-0ffffffffffffffff"}
                out.append(("other-endpoint", "explicit-deny", _req(who, row.action, resource, other)))
        # Strangers from another account never get in; a never-seen owner role is not pinned.
        out.append(("stranger", "implicit-deny", _req(STRANGER, row.action, resource, ctx)))
    arn = f"arn:aws:s3:::{bucket}"
    tls = {"aws:SecureTransport": "true", "aws:ViaAWSService": "false"}
    for who in [f"arn:aws:iam::{ACCT}:root", *_forms(BREAK_GLASS)]:
        for action in BUCKET_POLICY_ACTIONS:
            out.append(("break-glass", "allowed", _req(who, action, arn, tls)))
            out.append(
                ("break-glass-vpce", "allowed", _req(who, action, arn, {**tls, "aws:SourceVpce": VPCE}))
            )
    return out


def _sse_expectations(bucket: str) -> list[Expect]:
    """Uploads by the notebook (every upload sent aws:kms + the key) and the training role (some without
    a header) to the artifacts bucket."""
    notebook = f"arn:aws:iam::{ACCT}:role/service-role/ml-notebook-execution"
    training = f"arn:aws:iam::{ACCT}:role/ml-training-job"
    obj = f"arn:aws:s3:::{bucket}/models/x/output/new.bin"
    base = {"aws:SecureTransport": "true", "aws:SourceVpce": VPCE, "aws:ViaAWSService": "false"}
    key = KEYS[1]
    kms = {"s3:x-amz-server-side-encryption": "aws:kms"}
    key_hdr = {"s3:x-amz-server-side-encryption-aws-kms-key-id": key}
    other_key = {"s3:x-amz-server-side-encryption-aws-kms-key-id": OTHER_KEY}
    aes = {"s3:x-amz-server-side-encryption": "AES256"}
    out: list[Expect] = []
    for who in _forms(notebook):
        out += [
            ("sse-ok", "allowed", _req(who, "s3:PutObject", obj, {**base, **kms, **key_hdr})),
            ("sse-missing", "explicit-deny", _req(who, "s3:PutObject", obj, base)),
            ("sse-aes", "explicit-deny", _req(who, "s3:PutObject", obj, {**base, **aes})),
            ("sse-no-key", "explicit-deny", _req(who, "s3:PutObject", obj, {**base, **kms})),
            ("sse-other-key", "explicit-deny", _req(who, "s3:PutObject", obj, {**base, **kms, **other_key})),
        ]
    for who in _forms(training):
        out += [
            ("sse-default", "allowed", _req(who, "s3:PutObject", obj, base)),
            ("sse-aes", "explicit-deny", _req(who, "s3:PutObject", obj, {**base, **aes})),
            ("sse-other-key", "explicit-deny", _req(who, "s3:PutObject", obj, {**base, **kms, **other_key})),
        ]
    return out


def _partner_expectations(bucket: str) -> list[Expect]:
    ctx = {"aws:SecureTransport": "true", "aws:ViaAWSService": "false", "aws:SourceIp": "192.0.2.150"}
    out: list[Expect] = []
    for who in _forms(PARTNER):
        out += [
            (
                "partner-prefix",
                "allowed",
                _req(who, "s3:GetObject", f"arn:aws:s3:::{bucket}/exports/weekly/2026-11-02/p.parquet", ctx),
            ),
            (
                "partner-other-prefix",
                "implicit-deny",
                _req(who, "s3:GetObject", f"arn:aws:s3:::{bucket}/models/x/output/model.tar.gz", ctx),
            ),
            (
                "partner-write",
                "implicit-deny",
                _req(who, "s3:PutObject", f"arn:aws:s3:::{bucket}/exports/weekly/x", ctx),
            ),
            (
                "partner-delete",
                "implicit-deny",
                _req(who, "s3:DeleteObject", f"arn:aws:s3:::{bucket}/exports/weekly/x", ctx),
            ),
            (
                "partner-policy",
                "implicit-deny",
                _req(who, "s3:GetBucketPolicy", f"arn:aws:s3:::{bucket}", ctx),
            ),
        ]
    return out


def _key_expectations(key: str, used: list[UsageRow]) -> list[Expect]:
    out: list[Expect] = []
    for row in used:
        ctx = request_context(row.action, row.context, row.source_ips[0] if row.source_ips else "")
        for who in _forms(row.principal):
            out.append(("kms-observed", "allowed", _req(who, row.action, key, ctx)))
            if "kms:ViaService" in ctx:
                direct = {k: v for k, v in ctx.items() if k != "kms:ViaService"}
                out.append(("kms-without-service", "implicit-deny", _req(who, row.action, key, direct)))
        out.append(("kms-stranger", "implicit-deny", _req(STRANGER, row.action, key, ctx)))
        out.append(
            (
                "kms-unseen-owner-role",
                "implicit-deny",
                _req(f"arn:aws:iam::{ACCT}:role/ml-batch-worker", row.action, key, ctx),
            )
        )
    tls = {"aws:SecureTransport": "true"}
    for who in (f"arn:aws:iam::{ACCT}:root", BREAK_GLASS):
        for action in ("kms:GetKeyPolicy", "kms:PutKeyPolicy"):
            out.append(("kms-admin", "allowed", _req(who, action, key, tls)))
    return out


def _ours(doc: dict[str, Any], policy: Policy, req: dict[str, Any]) -> str:
    request = Request.make(
        req["principal"],
        req["action"],
        req["resource"],
        req["context"],
        resource_account=doc["resourceAccount"],
    )
    return str(evaluate(request, [allow_all()], resource_policy=policy).decision)


def test_generated_policies_through_the_oracle() -> None:
    with load_events([SAMPLES / "AWSLogs"]) as st:
        rows = st.usage()
    docs: list[dict[str, Any]] = []
    meta: list[tuple[Policy, list[Expect]]] = []
    for bucket in BUCKETS:
        g = generate_bucket_policy(bucket, rows, BucketOptions(break_glass=(BREAK_GLASS,), account=ACCT))
        used = [
            r
            for r in rows
            if r.outcome is Outcome.USED and (r.resource or "").split("/")[0] == f"arn:aws:s3:::{bucket}"
        ]
        pinned = {p for s in g.statements if s.kind == "pin-vpce" for p in s.principals}
        expects = _bucket_expectations(bucket, used, pinned)
        if bucket == "acme-ml-artifacts":
            expects += _sse_expectations(bucket) + _partner_expectations(bucket)
        expects = _dedupe(expects)
        docs.append(
            {
                "identityPolicies": [ALLOW_ALL],
                "resourcePolicy": g.policy.to_json(),
                "resourceAccount": ACCT,
                "requests": [e[2] for e in expects],
            }
        )
        meta.append((g.policy, expects))
    for key in KEYS:
        k = generate_key_policy(key, rows, (BREAK_GLASS,))
        used = [r for r in rows if r.outcome is Outcome.USED and r.resource == key]
        expects = _dedupe(_key_expectations(key, used))
        docs.append(
            {
                "identityPolicies": [ALLOW_ALL],
                "resourcePolicy": k.policy.to_json(),
                "resourceAccount": ACCT,
                "requests": [e[2] for e in expects],
            }
        )
        meta.append((k.policy, expects))

    results = run_oracle(docs)
    by_doc: dict[int, list[dict[str, Any]]] = {}
    for r in results:
        by_doc.setdefault(int(r["doc"]), []).append(r)
    wrong: list[str] = []
    disagree: list[str] = []
    counts: dict[str, int] = {}
    for d, (policy, expects) in enumerate(meta):
        for (label, expected, req), res in zip(
            expects, sorted(by_doc[d], key=lambda r: int(r["i"])), strict=True
        ):
            got = decision_of(res)
            counts[label] = counts.get(label, 0) + 1
            # Both deny kinds mean "does not get in" for strangers and out-of-prefix requests.
            ok = got == expected or (expected == "implicit-deny" and got == "explicit-deny")
            if not ok:
                wrong.append(f"{label}: expected {expected}, oracle {got}: {json.dumps(req)}")
            ours = _ours(docs[d], policy, req)
            if ours != got:
                disagree.append(f"{label}: oracle {got}, iamtrim {ours}: {json.dumps(req)}")
    assert not wrong, f"{len(wrong)} wrong of {len(results)}:\n" + "\n".join(wrong[:15])
    assert not disagree, f"{len(disagree)} disagreements:\n" + "\n".join(disagree[:15])
    for label in (
        "observed",
        "plain-http",
        "outside-endpoint",
        "stranger",
        "break-glass",
        "sse-missing",
        "partner-prefix",
        "partner-other-prefix",
        "kms-observed",
        "kms-without-service",
        "kms-admin",
    ):
        assert counts.get(label), f"no {label} requests were checked"
