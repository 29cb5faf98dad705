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
from dataclasses import dataclass
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
from iamtrim.synth.limits import BUCKET_POLICY_BYTES, check_resource_policy
from iamtrim.synth.merge import CurrentResourcePolicy, Merge, merge_current
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
    "allow_all",
    "bucket_rows",
    "check_lockout",
    "generate_bucket_policy",
    "lockout_requests",
    "principal_arn_forms",
    "replay_context",
    "session_arn",
]

# The Sid prefixes of the statements generate_bucket_policy writes; a current statement with one
# of them is iamtrim's own and is replaced on merge.
BUCKET_MANAGED_SIDS = ("DenyInsecureTransport", "DenyAccessOutside", "DenyUploadsWith", "Grant")

# What an administrator needs to read and replace a bucket policy.
BUCKET_POLICY_ACTIONS = ("s3:GetBucketPolicy", "s3:PutBucketPolicy", "s3:DeleteBucketPolicy")

_S3_ARN = re.compile(r"arn:(aws[\w-]*):s3:::([^/]+)(?:/(.*))?\Z", re.DOTALL)
_IAM_ARN = re.compile(r"arn:(aws[\w-]*):iam::(\d{12}):(role|user)/(.+)\Z")
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
# Helpers shared with the KMS key policy and the tests


def allow_all() -> Policy:
    """The broad identity policy the owner's principals are assumed to hold when replaying."""
    return Policy(
        statements=(Statement(Effect.ALLOW, actions=("*",), resources=("*",), sid="AllowAll"),),
        name="assumed-allow-all",
    )


def principal_arn_forms(arn: str) -> tuple[str, ...]:
    """The values ``aws:PrincipalArn`` may take for *arn*.

    For a role session AWS sets ``aws:PrincipalArn`` to the role ARN. IAM documents it with the
    role's path; some evaluators (and older documentation) derive it from the session ARN, which
    carries no path. Role names are unique in an account whatever their path
    (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_identifiers.html#identifiers-friendly-names),
    so naming both forms names the same role and nothing else.
    https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-keys.html#condition-keys-principalarn
    """
    m = _IAM_ARN.match(arn)
    if m is None or m.group(3) != "role" or "/" not in m.group(4):
        return (arn,)
    name = m.group(4).rsplit("/", 1)[1]
    return tuple(sorted({arn, f"arn:{m.group(1)}:iam::{m.group(2)}:role/{name}"}))


def _account_of(arn: str) -> str:
    parts = arn.split(":")
    return parts[4] if len(parts) > 5 and arn.startswith("arn:") else ""


def _camel(text: str) -> str:
    return "".join(p[:1].upper() + p[1:] for p in re.split(r"[^A-Za-z0-9]", text) if p)


def _short_name(arn: str) -> str:
    return arn.rsplit("/", 1)[-1] if "/" in arn else arn.rsplit(":", 1)[-1]


def _sid_for(prefix: str, principals: Sequence[str], extra: str = "") -> str:
    names = [_camel(_short_name(p)) for p in principals]
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


def _evidence(rows: Sequence[UsageRow]) -> tuple[int, str, str, tuple[str, ...]]:
    if not rows:
        return 0, "", "", ()
    eids: list[str] = []
    for r in sorted(rows, key=lambda r: (r.first_seen, r.event_ids)):
        for e in r.event_ids:
            if e not in eids and len(eids) < 5:
                eids.append(e)
    return (
        sum(r.count for r in rows),
        min(r.first_seen for r in rows),
        max(r.last_seen for r in rows),
        tuple(eids),
    )


def _kms_applied(row: UsageRow) -> bool:
    return row.context.sse_header.startswith("aws:kms") or _KMS_APPLIED in row.context.sse_applied.upper()


def infer_owner(rows: Sequence[UsageRow]) -> str:
    """The account with the most distinct principals among the callers (ties are refused)."""
    principals: dict[str, set[str]] = defaultdict(set)
    for r in rows:
        acct = _account_of(r.principal)
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


def generate_bucket_policy(
    bucket: str,
    rows: Iterable[UsageRow],
    options: BucketOptions | None = None,
    current: CurrentResourcePolicy | None = None,
) -> GeneratedBucketPolicy:
    """The bucket policy for *bucket* from *rows* (any rows: those on other resources are ignored).

    With *current* (the bucket's policy now), the statements iamtrim does not manage are kept and
    the merged document is what gets verified and returned (``synth/merge.py``)."""
    options = options or BucketOptions()
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
    bucket_arn = f"arn:{partition}:s3:::{bucket}"
    resources = (bucket_arn, f"{bucket_arn}/*")
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
        if _account_of(bg) != account:
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
    bg_forms = {f for bg in break_glass for f in principal_arn_forms(bg)}

    by_principal: dict[str, list[UsageRow]] = defaultdict(list)
    for r in used:
        by_principal[r.principal].append(r)

    drafts: list[_Draft] = []
    unpinned: list[Unpinned] = []

    # 1. Plain HTTP, for everybody.
    calls, first, last, eids = _evidence(used)
    drafts.append(
        _Draft(
            0,
            Statement(
                Effect.DENY,
                actions=("s3:*",),
                resources=resources,
                principals=Principals.star(),
                conditions=(Condition("Bool", "aws:SecureTransport", ("false",)),),
                sid="DenyInsecureTransport",
            ),
            BucketStatement(
                "DenyInsecureTransport",
                BucketStatementKind.DENY_INSECURE_TRANSPORT,
                f"protects {bucket} from requests over plain HTTP (every observed call used TLS)",
                (),
                calls,
                first,
                last,
                eids,
            ),
        )
    )

    # 2. VPC endpoint pins.
    pins: dict[tuple[tuple[str, ...], bool], list[str]] = defaultdict(list)
    for p, prow in sorted(by_principal.items()):
        direct = [r for r in prow if not r.context.invoked_by]
        via = sorted({r.context.invoked_by for r in prow if r.context.invoked_by})
        endpoints = {r.context.vpc_endpoint for r in direct}
        if set(principal_arn_forms(p)) & bg_forms:
            unpinned.append(Unpinned(p, Guard.VPCE, "break-glass principal: never named in a Deny"))
        elif not direct:
            unpinned.append(
                Unpinned(p, Guard.VPCE, "only calls made by a service on its behalf (" + ", ".join(via) + ")")
            )
        elif endpoints == {""}:
            n = sum(r.count for r in direct)
            unpinned.append(Unpinned(p, Guard.VPCE, f"never came through a VPC endpoint ({n} direct calls)"))
        elif "" in endpoints:
            outside = sum(r.count for r in direct if not r.context.vpc_endpoint)
            inside = sum(r.count for r in direct if r.context.vpc_endpoint)
            msg = f"{inside} calls through {', '.join(sorted(endpoints - {''}))} and {outside} from elsewhere"
            unpinned.append(Unpinned(p, Guard.VPCE, "mixed endpoint use: " + msg))
            findings.append(Finding("MIXED_ENDPOINT_USE", p, f"on {bucket}: {msg}"))
        else:
            pins[(tuple(sorted(endpoints)), bool(via))].append(p)
    for (pinned_to, spare_services), principals in sorted(pins.items()):
        forms = tuple(sorted({f for p in principals for f in principal_arn_forms(p)}))
        conditions = [
            Condition("StringNotEquals", "aws:SourceVpce", pinned_to),
            Condition("ArnEquals", "aws:PrincipalArn", forms),
        ]
        if spare_services:
            conditions.append(Condition("BoolIfExists", "aws:ViaAWSService", ("false",)))
        sid = _sid_for("DenyAccessOutside" + "".join(_camel(e) for e in pinned_to)[:60], principals)
        prow = [r for p in principals for r in by_principal[p]]
        calls, first, last, eids = _evidence(prow)
        purpose = (
            f"protects {bucket} from {', '.join(principals)} outside {', '.join(pinned_to)} "
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
                    resources=resources,
                    principals=Principals.star(),
                    conditions=tuple(sorted(conditions)),
                    sid=sid,
                ),
                BucketStatement(
                    sid, BucketStatementKind.PIN_VPCE, purpose, tuple(principals), calls, first, last, eids
                ),
            )
        )

    # 3. SSE-KMS on uploads.
    sse_groups: dict[tuple[BucketStatementKind, tuple[str, ...]], list[str]] = defaultdict(list)
    sse_rows: dict[str, list[UsageRow]] = {}
    for p, prow in sorted(by_principal.items()):
        uploads = [r for r in prow if r.action == "s3:PutObject"]
        if not uploads:
            continue
        sse_rows[p] = uploads
        if set(principal_arn_forms(p)) & bg_forms:
            unpinned.append(Unpinned(p, Guard.SSE_KMS, "break-glass principal: never named in a Deny"))
            continue
        kms = [r for r in uploads if _kms_applied(r)]
        other = [r for r in uploads if not _kms_applied(r)]
        if other:
            applied = sorted({r.context.sse_header or r.context.sse_applied or "unknown" for r in other})
            reason = f"{sum(r.count for r in other)} uploads not SSE-KMS ({', '.join(applied)})"
            unpinned.append(Unpinned(p, Guard.SSE_KMS, reason))
            if kms:
                findings.append(
                    Finding(
                        "MIXED_ENCRYPTION", p, f"on {bucket}: {reason}, {sum(r.count for r in kms)} SSE-KMS"
                    )
                )
            continue
        headers = tuple(sorted({r.context.sse_header for r in uploads if r.context.sse_header}))
        bare = [r for r in uploads if not r.context.sse_header]
        if not bare:
            sse_groups[(BucketStatementKind.REQUIRE_SSE, headers)].append(p)
        else:
            n = sum(r.count for r in bare)
            findings.append(
                Finding(
                    "UPLOAD_WITHOUT_SSE_HEADER",
                    p,
                    f"on {bucket}: {n} of {sum(r.count for r in uploads)} uploads sent no "
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
            unpinned.append(
                Unpinned(
                    p,
                    Guard.SSE_KMS,
                    "no upload named a KMS key (the bucket's default key was used): the key is not pinned",
                )
            )
    sse_key = "s3:x-amz-server-side-encryption"
    key_key = "s3:x-amz-server-side-encryption-aws-kms-key-id"
    texts = {
        BucketStatementKind.REQUIRE_SSE: ("DenyUploadsWithoutSseKms", sse_key, "uploads without SSE-KMS"),
        BucketStatementKind.DENY_OTHER_SSE: (
            "DenyUploadsWithOtherEncryption",
            sse_key,
            "uploads asking for another encryption",
        ),
        BucketStatementKind.REQUIRE_KMS_KEY: (
            "DenyUploadsWithoutKmsKey",
            key_key,
            "uploads without the KMS key",
        ),
        BucketStatementKind.DENY_OTHER_KMS_KEY: (
            "DenyUploadsWithOtherKmsKey",
            key_key,
            "uploads naming another KMS key",
        ),
    }
    for (kind, values), principals in sorted(sse_groups.items()):
        prefix, key, what = texts[kind]
        forms = tuple(sorted({f for p in principals for f in principal_arn_forms(p)}))
        conditions = [
            Condition("StringNotEquals", key, values),
            Condition("ArnEquals", "aws:PrincipalArn", forms),
        ]
        if kind in (BucketStatementKind.DENY_OTHER_SSE, BucketStatementKind.DENY_OTHER_KMS_KEY):
            # Only when the header is sent: a missing header (default encryption) stays allowed.
            conditions.append(Condition("Null", key, ("false",)))
        pins_key = kind in (BucketStatementKind.REQUIRE_KMS_KEY, BucketStatementKind.DENY_OTHER_KMS_KEY)
        sid = _sid_for(prefix, principals, "|".join(values) if pins_key else "")
        prow = [r for p in principals for r in sse_rows[p]]
        calls, first, last, eids = _evidence(prow)
        purpose = (
            f"protects {bucket}/* from {what} ({', '.join(values)}) by {', '.join(principals)}, "
            "whose observed uploads all used it"
        )
        drafts.append(
            _Draft(
                2,
                Statement(
                    Effect.DENY,
                    actions=("s3:PutObject",),
                    resources=(f"{bucket_arn}/*",),
                    principals=Principals.star(),
                    conditions=tuple(sorted(conditions)),
                    sid=sid,
                ),
                BucketStatement(sid, kind, purpose, tuple(principals), calls, first, last, eids),
            )
        )

    # 4. Cross-account grants: exactly the observed actions, on the prefixes used.
    for p, prow in sorted(by_principal.items()):
        if _account_of(p) == account:
            continue
        # A key only failed calls named (NoSuchKey: a caller may name anything) is kept exact.
        succeeded = {r.resource for r in prow if not r.context.error_code}
        exact = {
            m.group(3)
            for r in prow
            if r.resource not in succeeded
            and (m := _S3_ARN.match(r.resource or ""))
            and m.group(3) is not None
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
            findings.append(
                Finding(
                    "FAILED_CALLS_ONLY",
                    f"{p} {bucket_arn}/{key}",
                    "only failed calls named it; granted exactly",
                )
            )
        final: dict[str, set[str]] = defaultdict(set)
        covered: dict[str, set[str]] = defaultdict(set)
        for r in prow:
            m = _S3_ARN.match(r.resource or "")
            if m is None:
                continue
            target = bucket_arn if m.group(3) is None else f"{bucket_arn}/{prefix_of[m.group(3)]}"
            final[r.action].add(target)
            if r.resource != target:
                covered[target].add(r.resource or "")
        by_resources: dict[tuple[str, ...], list[str]] = defaultdict(list)
        for action, targets in sorted(final.items()):
            by_resources[tuple(sorted(targets))].append(action)
        for res, actions in sorted(by_resources.items()):
            names = (
                "".join(a.split(":", 1)[1] for a in actions)
                if len(actions) <= 3
                else (hashlib.sha256("|".join(actions).encode()).hexdigest()[:6].upper())
            )
            sid = f"Grant{_camel(_short_name(p))}{names}"
            arows = [r for r in prow if r.action in actions]
            calls, first, last, eids = _evidence(arows)
            cov = tuple((t, tuple(sorted(covered[t]))) for t in res if covered.get(t))
            drafts.append(
                _Draft(
                    3,
                    Statement(
                        Effect.ALLOW,
                        actions=tuple(actions),
                        resources=res,
                        principals=Principals.aws(p),
                        sid=sid,
                    ),
                    BucketStatement(
                        sid,
                        BucketStatementKind.CROSS_ACCOUNT_GRANT,
                        f"grants {p} (account {_account_of(p)}) exactly its observed {', '.join(actions)}",
                        (p,),
                        calls,
                        first,
                        last,
                        eids,
                        cov,
                    ),
                )
            )
            findings.append(Finding("CROSS_ACCOUNT_GRANT", p, f"{', '.join(actions)} on {', '.join(res)}"))
            for t, members in cov:
                findings.append(
                    Finding("OBJECT_KEYS_GENERALIZED", f"{p} {t}", f"{len(members)} objects seen under {t}")
                )

    for r in used:
        if r.resource and has_escaped(r.resource):
            # A caller named a literal "*", "?" or "$" (model.escape_literal): never a wildcard.
            findings.append(
                Finding(
                    "WILDCARD_IN_REQUEST",
                    f"{r.action} {r.resource}",
                    f"the request named {literal_of(r.resource)!r}",
                )
            )
    drafts.sort(key=lambda d: (d.order, d.statement.sid))
    seen: dict[str, int] = {}
    final_drafts: list[_Draft] = []
    for d in drafts:  # Sids must be unique in a policy
        n = seen.get(d.statement.sid, 0)
        seen[d.statement.sid] = n + 1
        if n:
            sid = f"{d.statement.sid}{n + 1}"
            st = Statement(
                d.statement.effect,
                d.statement.actions,
                d.statement.not_actions,
                d.statement.resources,
                d.statement.not_resources,
                d.statement.principals,
                d.statement.not_principals,
                d.statement.conditions,
                sid,
            )
            ev = BucketStatement(
                sid,
                d.evidence.kind,
                d.evidence.purpose,
                d.evidence.principals,
                d.evidence.calls,
                d.evidence.first_seen,
                d.evidence.last_seen,
                d.evidence.event_ids,
                d.evidence.covered,
            )
            d = _Draft(d.order, st, ev)
        final_drafts.append(d)
    policy = Policy(statements=tuple(d.statement for d in final_drafts), name=f"bucket-policy:{bucket}")
    merge = None
    if current is not None:
        policy, merge = merge_current(current.policy, policy, BUCKET_MANAGED_SIDS, current.source)
    check_resource_policy(policy, BUCKET_POLICY_BYTES, f"bucket policy for {bucket}")

    # 5. Replay every observed call; refuse a policy that breaks one.
    count, failures = replay_bucket(policy, used, account)
    if failures:
        row, failed = failures[0]
        raise SynthError(
            f"refusing to emit: the bucket policy would deny an observed call ({row.principal} "
            f"{row.action} on {row.resource}: {failed.reason}); {len(failures)} of {count} fail"
        )

    # 6. The lockout rule.
    checked = check_lockout(
        policy,
        bucket_arn,
        account,
        break_glass,
        sorted({r.context.vpc_endpoint for r in used if r.context.vpc_endpoint}),
    )

    return GeneratedBucketPolicy(
        bucket=bucket,
        account=account,
        policy=policy,
        statements=tuple(d.evidence for d in final_drafts),
        unpinned=tuple(sorted(set(unpinned), key=lambda u: (u.guard, u.principal))),
        findings=tuple(sorted(set(findings))),
        denied=denied,
        replayed=count,
        lockout_checked=checked,
        break_glass=break_glass,
        merge=merge,
    )


def session_arn(arn: str, session: str) -> str | None:
    m = _IAM_ARN.match(arn)
    if m is None or m.group(3) != "role":
        return None
    return f"arn:{m.group(1)}:sts::{m.group(2)}:assumed-role/{m.group(4).rsplit('/', 1)[-1]}/{session}"


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
