"""S3 bucket policies from observed usage: guardrails that keep every seen call working.

A bucket policy is a resource policy. For a principal of the bucket owner's account an identity
policy ``Allow`` is already enough (unless an explicit ``Deny`` hits), so for those principals the
bucket policy's job is the ``Deny`` guardrails; principals of other accounts need an explicit
``Allow`` here as well as in their own account.
https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic-cross-account.html

Guardrails (docs/commands/bucket-policy.md):

* ``DenyInsecureTransport`` — every request over plain HTTP (``aws:SecureTransport`` false).
  https://docs.aws.amazon.com/AmazonS3/latest/userguide/security-best-practices.html
* ``DenyAccessOutsideVpce…`` — a principal whose every direct call came through VPC endpoints is
  denied the bucket from anywhere else (``aws:SourceVpce``), scoped by ``aws:PrincipalArn``.
  Calls an AWS service made on its behalf (``invokedBy``) come from the service's network, so when
  such calls were seen the Deny spares them (``aws:ViaAWSService``).
  https://docs.aws.amazon.com/AmazonS3/latest/userguide/example-bucket-policies-vpc-endpoint.html
* ``DenyUploadsWithout…``/``DenyUploadsWithOther…`` — a principal whose uploads all used SSE-KMS
  is denied uploads without the header (only if every upload sent it) or with another encryption
  or key. Uploads that relied on the bucket's default encryption send no header: the header is then
  not required (a finding says so), only a *different* header is refused.
  https://docs.aws.amazon.com/AmazonS3/latest/userguide/specifying-kms-encryption.html
* ``Grant…`` — a principal of another account gets exactly its observed actions, on the bucket
  and on the object prefixes it used.

The lockout rule: no generated statement may deny the ``--break-glass`` principals or the account
root ``s3:GetBucketPolicy`` / ``s3:PutBucketPolicy`` / ``s3:DeleteBucketPolicy``. Each such request
is evaluated against the generated policy and the policy is refused if one is denied.
https://docs.aws.amazon.com/AmazonS3/latest/userguide/example-bucket-policies.html (the root-user
note on locking yourself out)
"""

from __future__ import annotations

import hashlib
import os
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum

from iamtrim.errors import BucketError, LockoutError, SynthError
from iamtrim.evaluate import Evaluation, Request, evaluate
from iamtrim.model import (
    Outcome,
    UsageRow,
    has_escaped,
    has_wildcard,
    is_service_principal,
    literal_of,
    pattern_covers,
)
from iamtrim.model.finding import Finding
from iamtrim.model.policy import Condition, Effect, Policy, Principals, Statement
from iamtrim.synth.limits import BUCKET_POLICY_BYTES
from iamtrim.synth.merge import CurrentResourcePolicy, Merge
from iamtrim.synth.resource_policy import (
    account_of,
    allow_all,
    call_evidence,
    camel,
    merge_and_check,
    principal_arn_forms,
    session_arn,
    short_name,
)
from iamtrim.verify import request_context

__all__ = [
    "BUCKET_MANAGED_SIDS",
    "BUCKET_POLICY_ACTIONS",
    "BucketOptions",
    "BucketStatement",
    "BucketStatementKind",
    "GeneratedBucketPolicy",
    "Guard",
    "Unpinned",
    "bucket_rows",
    "check_lockout",
    "generate_bucket_policy",
    "lockout_requests",
    "replay_context",
]

# The Sid prefixes of the statements generate_bucket_policy writes; a current statement with one
# of them is iamtrim's own and is replaced on merge.
BUCKET_MANAGED_SIDS = ("DenyInsecureTransport", "DenyAccessOutside", "DenyUploadsWith", "Grant")

# What an administrator needs to read and replace a bucket policy.
BUCKET_POLICY_ACTIONS = ("s3:GetBucketPolicy", "s3:PutBucketPolicy", "s3:DeleteBucketPolicy")

_S3_ARN = re.compile(r"arn:(aws[\w-]*):s3:::([^/]+)(?:/(.*))?\Z", re.DOTALL)
_KMS_APPLIED = "KMS"  # additionalEventData.SSEApplied: SSE_KMS, Default_SSE_KMS, SSE_KMS_DSSE, ...


class BucketStatementKind(StrEnum):
    """What one statement of the bucket policy does (the guardrails in this module's docstring)."""

    DENY_INSECURE_TRANSPORT = "deny-insecure-transport"
    PIN_VPCE = "pin-vpce"
    REQUIRE_SSE = "require-sse"
    DENY_OTHER_SSE = "deny-other-sse"
    REQUIRE_KMS_KEY = "require-kms-key"
    DENY_OTHER_KMS_KEY = "deny-other-kms-key"
    CROSS_ACCOUNT_GRANT = "cross-account-grant"


class Guard(StrEnum):
    """The guardrail a principal is left out of (:class:`Unpinned`)."""

    VPCE = "vpce"
    SSE_KMS = "sse-kms"


@dataclass(frozen=True, slots=True)
class BucketOptions:
    break_glass: tuple[str, ...] = ()
    account: str = ""  # the bucket owner; inferred from the callers when empty


@dataclass(frozen=True, slots=True)
class BucketStatement:
    """Why one statement of the bucket policy is there: what it protects or grants, and the
    observed calls behind it."""

    sid: str
    kind: BucketStatementKind
    purpose: str
    principals: tuple[str, ...]
    calls: int
    first_seen: str
    last_seen: str
    event_ids: tuple[str, ...]
    covered: tuple[tuple[str, tuple[str, ...]], ...] = ()  # prefix/* → the resources it stands for


@dataclass(frozen=True, slots=True)
class Unpinned:
    """A principal left out of a guardrail, and why."""

    principal: str
    guard: Guard
    reason: str


@dataclass(frozen=True, slots=True)
class GeneratedBucketPolicy:
    bucket: str
    account: str
    policy: Policy
    statements: tuple[BucketStatement, ...]
    unpinned: tuple[Unpinned, ...]
    findings: tuple[Finding, ...]
    denied: tuple[UsageRow, ...]
    replayed: int
    lockout_checked: int
    break_glass: tuple[str, ...]
    merge: Merge | None = None  # set when merged into the bucket's current policy


# ---------------------------------------------------------------------------------------------
# Helpers (the ones shared with the KMS key policy live in synth/resource_policy.py)


def _sid_for(prefix: str, principals: Sequence[str], extra: str = "") -> str:
    names = [camel(short_name(p)) for p in principals]
    body = "".join(names) if len(names) <= 2 else f"{len(names)}Principals"
    sid = f"{prefix}For{body}" if body else prefix
    if len(names) > 2 or extra:
        sid += hashlib.sha256(("|".join(principals) + extra).encode()).hexdigest()[:6].upper()
    return sid


def bucket_rows(rows: Iterable[UsageRow], bucket: str) -> list[UsageRow]:
    """Rows on *bucket* itself or one of its objects (used and denied)."""
    out = []
    for r in rows:
        m = _S3_ARN.match(r.resource or "")
        if m is not None and m.group(2) == bucket:
            out.append(r)
    return out


def replay_context(row: UsageRow) -> dict[str, str | list[str]]:
    """The request context of an observed S3 call, as AWS would set it for the bucket policy."""
    ctx: dict[str, str | list[str]] = dict(
        request_context(row.action, row.context, row.source_ips[0] if row.source_ips else "")
    )
    # A call a service made on the principal's behalf (Athena reading the data, ...) carries
    # aws:ViaAWSService true and the service in aws:CalledVia.
    # https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-keys.html#condition-keys-viaawsservice
    if row.context.invoked_by:
        ctx["aws:ViaAWSService"] = "true"
        if is_service_principal(row.context.invoked_by):  # never "AWS Internal"
            ctx["aws:CalledVia"] = [row.context.invoked_by]
    else:
        ctx["aws:ViaAWSService"] = "false"
    return ctx


def _kms_applied(row: UsageRow) -> bool:
    return row.context.sse_header.startswith("aws:kms") or _KMS_APPLIED in row.context.sse_applied.upper()


def infer_owner(rows: Sequence[UsageRow]) -> str:
    """The account with the most distinct principals among the callers (ties are refused)."""
    principals: dict[str, set[str]] = defaultdict(set)
    for r in rows:
        acct = account_of(r.principal)
        if acct:
            principals[acct].add(r.principal)
    ranked = sorted(principals.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    if not ranked:
        raise BucketError("cannot tell the bucket owner's account from the callers: pass --account")
    if len(ranked) > 1 and len(ranked[0][1]) == len(ranked[1][1]):
        raise BucketError(
            "the bucket's callers come from several accounts in equal numbers "
            f"({', '.join(a for a, _ in ranked)}): pass --account"
        )
    return ranked[0][0]


# ---------------------------------------------------------------------------------------------
# Object prefixes for cross-account grants


def object_prefixes(keys: Iterable[str]) -> dict[str, str]:
    """Object keys → the narrowest ``prefix*`` per top-level folder that covers them.

    One key alone in its folder is kept exactly; keys at the bucket root are kept exactly.
    """
    groups: dict[str, list[str]] = defaultdict(list)
    mapping: dict[str, str] = {}
    for key in sorted(set(keys)):
        if "/" in key:
            groups[key.split("/", 1)[0]].append(key)
        else:
            mapping[key] = key
    for members in groups.values():
        if len(members) == 1:
            mapping[members[0]] = members[0]
            continue
        prefix = os.path.commonprefix(members)  # noqa: RUF071 - a key prefix, cut back to "/" below
        target = prefix[: prefix.rfind("/") + 1] + "*"
        for key in members:
            mapping[key] = target
    return mapping


# ---------------------------------------------------------------------------------------------
# Synthesis


@dataclass(frozen=True, slots=True)
class _Draft:
    order: int
    statement: Statement
    evidence: BucketStatement


@dataclass(slots=True)
class _Scope:
    """One bucket's synthesis: what every step reads, and the findings and unpinned principals
    the steps add."""

    bucket: str
    bucket_arn: str
    account: str
    break_glass: tuple[str, ...]
    used: list[UsageRow]
    denied: tuple[UsageRow, ...]
    findings: list[Finding]
    unpinned: list[Unpinned] = field(default_factory=list)
    by_principal: dict[str, list[UsageRow]] = field(default_factory=dict)
    bg_forms: set[str] = field(default_factory=set)

    @property
    def resources(self) -> tuple[str, str]:
        return (self.bucket_arn, f"{self.bucket_arn}/*")

    def is_break_glass(self, principal: str) -> bool:
        return bool(set(principal_arn_forms(principal)) & self.bg_forms)


def generate_bucket_policy(
    bucket: str,
    rows: Iterable[UsageRow],
    options: BucketOptions | None = None,
    current: CurrentResourcePolicy | None = None,
) -> GeneratedBucketPolicy:
    """The bucket policy for *bucket* from *rows* (any rows: those on other resources are ignored).

    With *current* (the bucket's policy now), the statements iamtrim does not manage are kept and
    the merged document is what gets verified and returned (``synth/merge.py``)."""
    scope = _scope(bucket, rows, options or BucketOptions())
    drafts = [_transport_draft(scope)]  # 1. plain HTTP, for everybody
    drafts += _vpce_drafts(scope)  # 2. VPC endpoint pins
    drafts += _sse_drafts(scope)  # 3. SSE-KMS on uploads
    for p, prow in sorted(scope.by_principal.items()):  # 4. cross-account grants
        if account_of(p) != scope.account:
            drafts += _grant_drafts(scope, p, prow)
    scope.findings += _wildcard_findings(scope.used)
    final_drafts = _unique_sids(drafts)
    policy, merge = merge_and_check(
        Policy(statements=tuple(d.statement for d in final_drafts), name=f"bucket-policy:{bucket}"),
        current,
        BUCKET_MANAGED_SIDS,
        BUCKET_POLICY_BYTES,
        f"bucket policy for {bucket}",
    )

    # 5. Replay every observed call; refuse a policy that breaks one.
    count, failures = replay_bucket(policy, scope.used, scope.account)
    if failures:
        row, failed = failures[0]
        raise SynthError(
            f"refusing to emit: the bucket policy would deny an observed call ({row.principal} "
            f"{row.action} on {row.resource}: {failed.reason}); {len(failures)} of {count} fail"
        )

    # 6. The lockout rule.
    endpoints = sorted({r.context.vpc_endpoint for r in scope.used if r.context.vpc_endpoint})
    checked = check_lockout(policy, scope.bucket_arn, scope.account, scope.break_glass, endpoints)

    return GeneratedBucketPolicy(
        bucket=bucket,
        account=scope.account,
        policy=policy,
        statements=tuple(d.evidence for d in final_drafts),
        unpinned=tuple(sorted(set(scope.unpinned), key=lambda u: (u.guard, u.principal))),
        findings=tuple(sorted(set(scope.findings))),
        denied=scope.denied,
        replayed=count,
        lockout_checked=checked,
        break_glass=scope.break_glass,
        merge=merge,
    )


def _scope(bucket: str, rows: Iterable[UsageRow], options: BucketOptions) -> _Scope:
    """The bucket's rows, its owner account and its break-glass principals, checked."""
    on_bucket = bucket_rows(rows, bucket)
    used = [r for r in on_bucket if r.outcome is Outcome.USED]
    denied = tuple(r for r in on_bucket if r.outcome is Outcome.DENIED)
    if not used:
        raise BucketError(
            f"no authorized call on bucket {bucket!r} in the usage data "
            f"({len(denied)} denied): nothing to protect or grant"
        )
    m = _S3_ARN.match(used[0].resource or "")
    partition = m.group(1) if m else "aws"
    findings: list[Finding] = []
    account = options.account
    if not account:
        account = infer_owner(used)
        findings.append(
            Finding(
                "BUCKET_OWNER_INFERRED", bucket, f"owner taken to be {account} (the account of most callers)"
            )
        )
    break_glass = tuple(sorted(set(options.break_glass)))
    for bg in break_glass:
        if account_of(bg) != account:
            # Only identities of the bucket owner's account may call the bucket-policy APIs.
            # https://docs.aws.amazon.com/AmazonS3/latest/API/API_PutBucketPolicy.html
            raise BucketError(
                f"--break-glass {bg} is not of the bucket owner's account {account}: "
                "only the owner's identities can read or replace a bucket policy"
            )
    if not break_glass:
        findings.append(
            Finding(
                "NO_BREAK_GLASS", bucket, f"the lockout check covers arn:{partition}:iam::{account}:root only"
            )
        )
    by_principal: dict[str, list[UsageRow]] = defaultdict(list)
    for r in used:
        by_principal[r.principal].append(r)
    return _Scope(
        bucket,
        f"arn:{partition}:s3:::{bucket}",
        account,
        break_glass,
        used,
        denied,
        findings,
        by_principal=dict(by_principal),
        bg_forms={f for bg in break_glass for f in principal_arn_forms(bg)},
    )


def _transport_draft(scope: _Scope) -> _Draft:
    """Plain HTTP is denied to everybody (every observed call used TLS)."""
    calls, first, last, eids = call_evidence(scope.used)
    return _Draft(
        0,
        Statement(
            Effect.DENY,
            actions=("s3:*",),
            resources=scope.resources,
            principals=Principals.star(),
            conditions=(Condition("Bool", "aws:SecureTransport", ("false",)),),
            sid="DenyInsecureTransport",
        ),
        BucketStatement(
            "DenyInsecureTransport",
            BucketStatementKind.DENY_INSECURE_TRANSPORT,
            f"protects {scope.bucket} from requests over plain HTTP (every observed call used TLS)",
            (),
            calls,
            first,
            last,
            eids,
        ),
    )


def _vpce_groups(scope: _Scope) -> dict[tuple[tuple[str, ...], bool], list[str]]:
    """(endpoints, calls by services seen) → the principals pinned to exactly those endpoints;
    every other principal is unpinned, with the reason."""
    pins: dict[tuple[tuple[str, ...], bool], list[str]] = defaultdict(list)
    for p, prow in sorted(scope.by_principal.items()):
        direct = [r for r in prow if not r.context.invoked_by]
        via = sorted({r.context.invoked_by for r in prow if r.context.invoked_by})
        endpoints = {r.context.vpc_endpoint for r in direct}
        if scope.is_break_glass(p):
            scope.unpinned.append(Unpinned(p, Guard.VPCE, "break-glass principal: never named in a Deny"))
        elif not direct:
            scope.unpinned.append(
                Unpinned(p, Guard.VPCE, "only calls made by a service on its behalf (" + ", ".join(via) + ")")
            )
        elif endpoints == {""}:
            n = sum(r.count for r in direct)
            scope.unpinned.append(
                Unpinned(p, Guard.VPCE, f"never came through a VPC endpoint ({n} direct calls)")
            )
        elif "" in endpoints:
            outside = sum(r.count for r in direct if not r.context.vpc_endpoint)
            inside = sum(r.count for r in direct if r.context.vpc_endpoint)
            msg = f"{inside} calls through {', '.join(sorted(endpoints - {''}))} and {outside} from elsewhere"
            scope.unpinned.append(Unpinned(p, Guard.VPCE, "mixed endpoint use: " + msg))
            scope.findings.append(Finding("MIXED_ENDPOINT_USE", p, f"on {scope.bucket}: {msg}"))
        else:
            pins[(tuple(sorted(endpoints)), bool(via))].append(p)
    return pins


def _vpce_drafts(scope: _Scope) -> list[_Draft]:
    """One Deny outside the endpoints per group of principals pinned to the same endpoints."""
    drafts = []
    for (pinned_to, spare_services), principals in sorted(_vpce_groups(scope).items()):
        forms = tuple(sorted({f for p in principals for f in principal_arn_forms(p)}))
        conditions = [
            Condition("StringNotEquals", "aws:SourceVpce", pinned_to),
            Condition("ArnEquals", "aws:PrincipalArn", forms),
        ]
        if spare_services:
            conditions.append(Condition("BoolIfExists", "aws:ViaAWSService", ("false",)))
        sid = _sid_for("DenyAccessOutside" + "".join(camel(e) for e in pinned_to)[:60], principals)
        calls, first, last, eids = call_evidence([r for p in principals for r in scope.by_principal[p]])
        purpose = (
            f"protects {scope.bucket} from {', '.join(principals)} outside {', '.join(pinned_to)} "
            f"(all their direct calls came through it)"
        )
        if spare_services:
            purpose += "; calls AWS services make on their behalf are spared"
        drafts.append(
            _Draft(
                1,
                Statement(
                    Effect.DENY,
                    actions=("s3:*",),
                    resources=scope.resources,
                    principals=Principals.star(),
                    conditions=tuple(sorted(conditions)),
                    sid=sid,
                ),
                BucketStatement(
                    sid, BucketStatementKind.PIN_VPCE, purpose, tuple(principals), calls, first, last, eids
                ),
            )
        )
    return drafts


_SSE_KEY = "s3:x-amz-server-side-encryption"
_KMS_KEY_KEY = "s3:x-amz-server-side-encryption-aws-kms-key-id"
# kind → (Sid prefix, condition key, what is denied)
_SSE_TEXTS = {
    BucketStatementKind.REQUIRE_SSE: ("DenyUploadsWithoutSseKms", _SSE_KEY, "uploads without SSE-KMS"),
    BucketStatementKind.DENY_OTHER_SSE: (
        "DenyUploadsWithOtherEncryption",
        _SSE_KEY,
        "uploads asking for another encryption",
    ),
    BucketStatementKind.REQUIRE_KMS_KEY: (
        "DenyUploadsWithoutKmsKey",
        _KMS_KEY_KEY,
        "uploads without the KMS key",
    ),
    BucketStatementKind.DENY_OTHER_KMS_KEY: (
        "DenyUploadsWithOtherKmsKey",
        _KMS_KEY_KEY,
        "uploads naming another KMS key",
    ),
}
_DENY_OTHER = (BucketStatementKind.DENY_OTHER_SSE, BucketStatementKind.DENY_OTHER_KMS_KEY)
_PINS_KEY = (BucketStatementKind.REQUIRE_KMS_KEY, BucketStatementKind.DENY_OTHER_KMS_KEY)


def _sse_groups(
    scope: _Scope, uploads_of: dict[str, list[UsageRow]]
) -> dict[tuple[BucketStatementKind, tuple[str, ...]], list[str]]:
    """(guardrail, header values) → the principals whose every upload used SSE-KMS that way;
    fills *uploads_of* with each uploader's uploads, and unpins the others with the reason."""
    sse_groups: dict[tuple[BucketStatementKind, tuple[str, ...]], list[str]] = defaultdict(list)
    for p, prow in sorted(scope.by_principal.items()):
        uploads = [r for r in prow if r.action == "s3:PutObject"]
        if not uploads:
            continue
        uploads_of[p] = uploads
        if scope.is_break_glass(p):
            scope.unpinned.append(Unpinned(p, Guard.SSE_KMS, "break-glass principal: never named in a Deny"))
            continue
        kms = [r for r in uploads if _kms_applied(r)]
        other = [r for r in uploads if not _kms_applied(r)]
        if other:
            applied = sorted({r.context.sse_header or r.context.sse_applied or "unknown" for r in other})
            reason = f"{sum(r.count for r in other)} uploads not SSE-KMS ({', '.join(applied)})"
            scope.unpinned.append(Unpinned(p, Guard.SSE_KMS, reason))
            if kms:
                scope.findings.append(
                    Finding(
                        "MIXED_ENCRYPTION",
                        p,
                        f"on {scope.bucket}: {reason}, {sum(r.count for r in kms)} SSE-KMS",
                    )
                )
            continue
        _group_kms_uploads(scope, p, uploads, sse_groups)
    return sse_groups


def _group_kms_uploads(
    scope: _Scope,
    p: str,
    uploads: list[UsageRow],
    sse_groups: dict[tuple[BucketStatementKind, tuple[str, ...]], list[str]],
) -> None:
    """Put *p*, whose uploads all used SSE-KMS, in its encryption-header group and its key group."""
    headers = tuple(sorted({r.context.sse_header for r in uploads if r.context.sse_header}))
    bare = [r for r in uploads if not r.context.sse_header]
    if not bare:
        sse_groups[(BucketStatementKind.REQUIRE_SSE, headers)].append(p)
    else:
        n = sum(r.count for r in bare)
        scope.findings.append(
            Finding(
                "UPLOAD_WITHOUT_SSE_HEADER",
                p,
                f"on {scope.bucket}: {n} of {sum(r.count for r in uploads)} uploads sent no "
                "x-amz-server-side-encryption header (bucket default encryption, or "
                "multipart parts); the header is not required, another one is refused",
            )
        )
        sse_groups[(BucketStatementKind.DENY_OTHER_SSE, headers or ("aws:kms",))].append(p)
    keys = {r.context.sse_kms_key_header for r in uploads}
    named = tuple(sorted(keys - {""}))
    if named and "" not in keys:
        sse_groups[(BucketStatementKind.REQUIRE_KMS_KEY, named)].append(p)
    elif named:
        sse_groups[(BucketStatementKind.DENY_OTHER_KMS_KEY, named)].append(p)
    else:
        scope.unpinned.append(
            Unpinned(
                p,
                Guard.SSE_KMS,
                "no upload named a KMS key (the bucket's default key was used): the key is not pinned",
            )
        )


def _sse_drafts(scope: _Scope) -> list[_Draft]:
    """One upload Deny per (guardrail, header values) group of principals."""
    uploads_of: dict[str, list[UsageRow]] = {}
    drafts = []
    for (kind, values), principals in sorted(_sse_groups(scope, uploads_of).items()):
        prefix, key, what = _SSE_TEXTS[kind]
        forms = tuple(sorted({f for p in principals for f in principal_arn_forms(p)}))
        conditions = [
            Condition("StringNotEquals", key, values),
            Condition("ArnEquals", "aws:PrincipalArn", forms),
        ]
        if kind in _DENY_OTHER:
            # Only when the header is sent: a missing header (default encryption) stays allowed.
            conditions.append(Condition("Null", key, ("false",)))
        sid = _sid_for(prefix, principals, "|".join(values) if kind in _PINS_KEY else "")
        calls, first, last, eids = call_evidence([r for p in principals for r in uploads_of[p]])
        purpose = (
            f"protects {scope.bucket}/* from {what} ({', '.join(values)}) by {', '.join(principals)}, "
            "whose observed uploads all used it"
        )
        drafts.append(
            _Draft(
                2,
                Statement(
                    Effect.DENY,
                    actions=("s3:PutObject",),
                    resources=(f"{scope.bucket_arn}/*",),
                    principals=Principals.star(),
                    conditions=tuple(sorted(conditions)),
                    sid=sid,
                ),
                BucketStatement(sid, kind, purpose, tuple(principals), calls, first, last, eids),
            )
        )
    return drafts


def _grant_targets(
    scope: _Scope, p: str, prow: list[UsageRow]
) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """Action → the bucket or object prefixes granted to *p*, and target → the resources it stands
    for. A key only failed calls named (NoSuchKey: a caller may name anything) is kept exact."""
    succeeded = {r.resource for r in prow if not r.context.error_code}
    exact = {
        m.group(3)
        for r in prow
        if r.resource not in succeeded and (m := _S3_ARN.match(r.resource or "")) and m.group(3) is not None
    }
    object_keys = [
        m.group(3)
        for r in prow
        if (m := _S3_ARN.match(r.resource or "")) and m.group(3) is not None and m.group(3) not in exact
    ]
    prefix_of = object_prefixes(object_keys)
    prefixes = sorted({t for t in prefix_of.values() if has_wildcard(t)})
    for key in sorted(exact):
        # granted exactly, unless a prefix the successful calls made covers it already
        prefix_of[key] = next((t for t in prefixes if pattern_covers(t, key)), key)
        if prefix_of[key] != key:
            continue
        scope.findings.append(
            Finding(
                "FAILED_CALLS_ONLY",
                f"{p} {scope.bucket_arn}/{key}",
                "only failed calls named it; granted exactly",
            )
        )
    final: dict[str, set[str]] = defaultdict(set)
    covered: dict[str, set[str]] = defaultdict(set)
    for r in prow:
        m = _S3_ARN.match(r.resource or "")
        if m is None:
            continue
        target = scope.bucket_arn if m.group(3) is None else f"{scope.bucket_arn}/{prefix_of[m.group(3)]}"
        final[r.action].add(target)
        if r.resource != target:
            covered[target].add(r.resource or "")
    return final, covered


def _grant_drafts(scope: _Scope, p: str, prow: list[UsageRow]) -> list[_Draft]:
    """A principal of another account gets exactly its observed actions, on the prefixes used."""
    final, covered = _grant_targets(scope, p, prow)
    by_resources: dict[tuple[str, ...], list[str]] = defaultdict(list)
    for action, targets in sorted(final.items()):
        by_resources[tuple(sorted(targets))].append(action)
    drafts = []
    for res, actions in sorted(by_resources.items()):
        names = (
            "".join(a.split(":", 1)[1] for a in actions)
            if len(actions) <= 3
            else (hashlib.sha256("|".join(actions).encode()).hexdigest()[:6].upper())
        )
        sid = f"Grant{camel(short_name(p))}{names}"
        calls, first, last, eids = call_evidence([r for r in prow if r.action in actions])
        cov = tuple((t, tuple(sorted(covered[t]))) for t in res if covered.get(t))
        drafts.append(
            _Draft(
                3,
                Statement(
                    Effect.ALLOW, actions=tuple(actions), resources=res, principals=Principals.aws(p), sid=sid
                ),
                BucketStatement(
                    sid,
                    BucketStatementKind.CROSS_ACCOUNT_GRANT,
                    f"grants {p} (account {account_of(p)}) exactly its observed {', '.join(actions)}",
                    (p,),
                    calls,
                    first,
                    last,
                    eids,
                    cov,
                ),
            )
        )
        scope.findings.append(Finding("CROSS_ACCOUNT_GRANT", p, f"{', '.join(actions)} on {', '.join(res)}"))
        for t, members in cov:
            scope.findings.append(
                Finding("OBJECT_KEYS_GENERALIZED", f"{p} {t}", f"{len(members)} objects seen under {t}")
            )
    return drafts


def _wildcard_findings(used: Sequence[UsageRow]) -> list[Finding]:
    """A caller named a literal "*", "?" or "$" (model.escape_literal): never a wildcard."""
    return [
        Finding(
            "WILDCARD_IN_REQUEST", f"{r.action} {r.resource}", f"the request named {literal_of(r.resource)!r}"
        )
        for r in used
        if r.resource and has_escaped(r.resource)
    ]


def _unique_sids(drafts: list[_Draft]) -> list[_Draft]:
    """The drafts in policy order, a repeated Sid numbered (Sids must be unique in a policy)."""
    drafts = sorted(drafts, key=lambda d: (d.order, d.statement.sid))
    seen: dict[str, int] = {}
    out: list[_Draft] = []
    for d in drafts:
        n = seen.get(d.statement.sid, 0)
        seen[d.statement.sid] = n + 1
        if n:
            sid = f"{d.statement.sid}{n + 1}"
            d = _Draft(d.order, replace(d.statement, sid=sid), replace(d.evidence, sid=sid))
        out.append(d)
    return out


def replay_bucket(
    policy: Policy, rows: Sequence[UsageRow], account: str
) -> tuple[int, list[tuple[UsageRow, Evaluation]]]:
    """Replay *rows* (as the role and as a session of it) with an allow-all identity policy."""
    failures: list[tuple[UsageRow, Evaluation]] = []
    count = 0
    identity = [allow_all()]
    for row in rows:
        ctx = replay_context(row)
        for principal in filter(None, (row.principal, session_arn(row.principal, "iamtrim-replay"))):
            target = literal_of(row.resource) if row.resource else "*"  # the stored pattern's request
            req = Request.make(principal, row.action, target, ctx, resource_account=account)
            res = evaluate(req, identity, resource_policy=policy)
            count += 1
            if not res.allowed:
                failures.append((row, res))
    return count, failures


def lockout_requests(
    bucket_arn: str, account: str, break_glass: Sequence[str], endpoints: Sequence[str] = ()
) -> list[Request]:
    """The requests that must stay allowed: root and every break-glass principal (and a session of
    each break-glass role) reading and replacing the bucket policy over TLS, from the internet and
    through each endpoint seen."""
    partition = bucket_arn.split(":")[1]
    callers: list[str] = [f"arn:{partition}:iam::{account}:root"]
    for bg in break_glass:
        callers.append(bg)
        session = session_arn(bg, "break-glass")
        if session:
            callers.append(session)
    contexts: list[Mapping[str, str]] = [{"aws:SecureTransport": "true", "aws:ViaAWSService": "false"}]
    contexts += [
        {"aws:SecureTransport": "true", "aws:ViaAWSService": "false", "aws:SourceVpce": e} for e in endpoints
    ]
    return [
        Request.make(c, a, bucket_arn, ctx, resource_account=account)
        for c in callers
        for a in BUCKET_POLICY_ACTIONS
        for ctx in contexts
    ]


def check_lockout(
    policy: Policy, bucket_arn: str, account: str, break_glass: Sequence[str], endpoints: Sequence[str] = ()
) -> int:
    """Raise :class:`LockoutError` if *policy* denies one of :func:`lockout_requests`; return how many
    requests were checked."""
    requests = lockout_requests(bucket_arn, account, break_glass, endpoints)
    for req in requests:
        outcome = evaluate(req, [allow_all()], resource_policy=policy)
        if not outcome.allowed:
            sids = ", ".join(s.sid for s in outcome.statements) or "no statement"
            raise LockoutError(
                f"refusing to emit: the bucket policy would lock {req.principal_arn} out of "
                f"{req.action} ({outcome.reason}: {sids})"
            )
    return len(requests)
