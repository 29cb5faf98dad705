"""KMS key policies from observed usage: the key's users, their actions, and ``kms:ViaService``.

A key policy is the primary gate of a KMS key: identity policies count only where the key policy
lets the account's IAM policies in (the ``arn:aws:iam::ACCOUNT:root`` principal).
https://docs.aws.amazon.com/kms/latest/developerguide/key-policy-default.html#key-policy-default-allow-root-enable-iam

The proposed policy:

* ``AllowKeyAdministrationThroughIam`` — the account root, for the key-administration actions only
  (never the cryptographic ones), so whoever the account's IAM policies make a key administrator
  keeps managing the key (and can always replace this policy: no unmanageable key);
* ``AllowKeyAdministrators`` — the ``--admin`` principals by name, same actions;
* ``AllowUse…`` — each observed user by ARN, with exactly its observed KMS actions, and
  ``kms:ViaService`` where every use of that action went through an AWS service (S3 SSE-KMS, SSM,
  Secrets Manager, ...).
  https://docs.aws.amazon.com/kms/latest/developerguide/conditions-kms.html#conditions-kms-via-service

Every observed call is replayed against the proposal (owner principals with an allow-all identity
policy); the root and the admins must stay able to read and replace the key policy.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from iamtrim.errors import KeyPolicyError, LockoutError, SynthError
from iamtrim.evaluate import Request, evaluate
from iamtrim.model import Outcome, UsageRow
from iamtrim.model.finding import Finding
from iamtrim.model.policy import Condition, Effect, Policy, Principals, Statement
from iamtrim.synth.limits import KEY_POLICY_BYTES
from iamtrim.synth.merge import CurrentResourcePolicy, Merge
from iamtrim.synth.resource_policy import allow_all, call_evidence, camel, merge_and_check, session_arn
from iamtrim.verify import request_context, via_service

__all__ = [
    "KEY_ADMIN_ACTIONS",
    "KEY_MANAGED_SIDS",
    "GeneratedKeyPolicy",
    "KeyStatement",
    "KeyStatementKind",
    "generate_key_policy",
    "key_lockout_requests",
    "resolve_key",
]

# The Sid prefixes of the statements generate_key_policy writes (replaced on merge).
KEY_MANAGED_SIDS = ("AllowKeyAdministrationThroughIam", "AllowKeyAdministrators", "AllowUse")

# The key-administration actions of AWS's default key policy, written out (no wildcards: kms:Create*
# would include kms:CreateGrant, which delegates *use* of the key).
# https://docs.aws.amazon.com/kms/latest/developerguide/key-policy-default.html#key-policy-default-allow-administrators
KEY_ADMIN_ACTIONS = (
    "kms:CancelKeyDeletion",
    "kms:CreateAlias",
    "kms:DeleteAlias",
    "kms:DescribeKey",
    "kms:DisableKey",
    "kms:DisableKeyRotation",
    "kms:EnableKey",
    "kms:EnableKeyRotation",
    "kms:GetKeyPolicy",
    "kms:GetKeyRotationStatus",
    "kms:ListGrants",
    "kms:ListKeyPolicies",
    "kms:ListKeyRotations",
    "kms:ListResourceTags",
    "kms:PutKeyPolicy",
    "kms:RevokeGrant",
    "kms:RotateKeyOnDemand",
    "kms:ScheduleKeyDeletion",
    "kms:TagResource",
    "kms:UntagResource",
    "kms:UpdateAlias",
    "kms:UpdateKeyDescription",
)
_LOCKOUT_ACTIONS = ("kms:GetKeyPolicy", "kms:PutKeyPolicy", "kms:DescribeKey")


class KeyStatementKind(StrEnum):
    """What one statement of the key policy does (the statements in this module's docstring)."""

    ADMIN_THROUGH_IAM = "admin-through-iam"
    ADMINS = "admins"
    USE = "use"


@dataclass(frozen=True, slots=True)
class KeyStatement:
    sid: str
    kind: KeyStatementKind
    purpose: str
    principals: tuple[str, ...]
    actions: tuple[str, ...]
    conditions: tuple[Condition, ...]
    calls: int
    first_seen: str
    last_seen: str
    event_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class GeneratedKeyPolicy:
    key: str
    account: str
    policy: Policy
    statements: tuple[KeyStatement, ...]
    findings: tuple[Finding, ...]
    denied: tuple[UsageRow, ...]
    replayed: int
    lockout_checked: int
    admins: tuple[str, ...]
    merge: Merge | None = None  # set when merged into the key's current policy


def resolve_key(rows: Iterable[UsageRow], query: str) -> str:
    """A key ARN, or a key id (``1a2b…``, ``key/1a2b…``) unique among the keys seen."""
    keys = sorted(
        {r.resource for r in rows if r.resource and r.action.startswith("kms:") and ":key/" in r.resource}
    )
    if query in keys:
        return query
    suffix = query if query.startswith("key/") else f"key/{query}"
    hits = [k for k in keys if k.endswith(":" + suffix)]
    if len(hits) == 1:
        return hits[0]
    if hits:
        raise KeyPolicyError(f"key {query!r} is ambiguous: {', '.join(hits)}")
    raise KeyPolicyError(f"no KMS key {query!r} in the usage data ({len(keys)} keys seen)")


def key_lockout_requests(key: str, account: str, admins: Sequence[str]) -> list[Request]:
    partition = key.split(":")[1]
    callers = [f"arn:{partition}:iam::{account}:root", *admins]
    return [
        Request.make(c, a, key, {"aws:SecureTransport": "true"}, resource_account=account)
        for c in callers
        for a in _LOCKOUT_ACTIONS
    ]


def generate_key_policy(
    key: str,
    rows: Iterable[UsageRow],
    admins: Sequence[str] = (),
    current: CurrentResourcePolicy | None = None,
) -> GeneratedKeyPolicy:
    """The key policy for *key* from *rows* (any rows: those on other resources are ignored).

    With *current* (the key's policy now), the statements iamtrim does not manage are kept and the
    merged document is what gets verified and returned (``synth/merge.py``)."""
    on_key = [r for r in rows if r.resource == key and r.action.startswith("kms:")]
    used = [r for r in on_key if r.outcome is Outcome.USED]
    denied = tuple(r for r in on_key if r.outcome is Outcome.DENIED)
    if not used:
        raise KeyPolicyError(f"no authorized call on {key} in the usage data: nothing to propose")
    account = key.split(":")[4]
    admins = tuple(sorted(set(admins)))
    findings: list[Finding] = []
    statements = _admin_statements(key, admins)
    statements += _use_statements(key, used, findings)
    policy, merge = merge_and_check(
        Policy(statements=tuple(s for s, _ in statements), name=f"key-policy:{key}"),
        current,
        KEY_MANAGED_SIDS,
        KEY_POLICY_BYTES,
        f"key policy for {key}",
    )
    count = _replay_key(policy, used, key)
    checked = _check_key_lockout(policy, key, admins)
    return GeneratedKeyPolicy(
        key=key,
        account=account,
        policy=policy,
        statements=tuple(ks for _, ks in statements),
        findings=tuple(sorted(set(findings))),
        denied=denied,
        replayed=count,
        lockout_checked=checked,
        admins=admins,
        merge=merge,
    )


def _admin_statements(key: str, admins: tuple[str, ...]) -> list[tuple[Statement, KeyStatement]]:
    """Key administration for the account root (so the account's IAM policies decide who manages
    the key) and for the named administrators; never the cryptographic actions."""
    parts = key.split(":")
    partition, account = parts[1], parts[4]
    root = f"arn:{partition}:iam::{account}:root"
    statements = [
        (
            Statement(
                Effect.ALLOW,
                actions=KEY_ADMIN_ACTIONS,
                resources=("*",),
                principals=Principals.aws(root),
                sid="AllowKeyAdministrationThroughIam",
            ),
            KeyStatement(
                "AllowKeyAdministrationThroughIam",
                KeyStatementKind.ADMIN_THROUGH_IAM,
                f"keeps the key administrators of account {account} (by their IAM policies) and the "
                "root able to manage the key and replace this policy; grants no cryptographic use",
                (root,),
                KEY_ADMIN_ACTIONS,
                (),
                0,
                "",
                "",
                (),
            ),
        )
    ]
    if admins:
        statements.append(
            (
                Statement(
                    Effect.ALLOW,
                    actions=KEY_ADMIN_ACTIONS,
                    resources=("*",),
                    principals=Principals.aws(*admins),
                    sid="AllowKeyAdministrators",
                ),
                KeyStatement(
                    "AllowKeyAdministrators",
                    KeyStatementKind.ADMINS,
                    "the named key administrators",
                    admins,
                    KEY_ADMIN_ACTIONS,
                    (),
                    0,
                    "",
                    "",
                    (),
                ),
            )
        )
    return statements


def _use_conditions(
    used: Sequence[UsageRow], findings: list[Finding]
) -> tuple[dict[tuple[str, str], tuple[Condition, ...]], dict[tuple[str, str], list[UsageRow]]]:
    """Per (principal, action): ``kms:ViaService`` on the services every use went through (none
    when one call was direct, with a finding), and the rows behind it."""
    conds: dict[tuple[str, str], tuple[Condition, ...]] = {}
    by_pa: dict[tuple[str, str], list[UsageRow]] = defaultdict(list)
    for r in used:
        by_pa[(r.principal, r.action)].append(r)
    for (p, action), prow in sorted(by_pa.items()):
        services = {
            via_service(r.context.invoked_by, r.context.region) if r.context.invoked_by else "" for r in prow
        }
        if "" in services:
            conds[(p, action)] = ()
            findings.append(
                Finding(
                    "KEY_USED_DIRECTLY",
                    f"{p} {action}",
                    f"{sum(r.count for r in prow if not via_service(r.context.invoked_by, r.context.region))}"
                    " direct calls",
                )
            )
        else:
            conds[(p, action)] = (Condition("StringEquals", "kms:ViaService", tuple(sorted(services))),)
    return conds, by_pa


def _use_statements(
    key: str, used: Sequence[UsageRow], findings: list[Finding]
) -> list[tuple[Statement, KeyStatement]]:
    """One ``AllowUse…`` statement per (actions, conditions), naming every principal that used
    exactly those actions under those conditions; sorted by Sid."""
    account = key.split(":")[4]
    conds, by_pa = _use_conditions(used, findings)
    # (principal, conditions) → actions; then (actions, conditions) → principals.
    step1: dict[tuple[str, tuple[Condition, ...]], list[str]] = defaultdict(list)
    for (p, action), c in sorted(conds.items()):
        step1[(p, c)].append(action)
    step2: dict[tuple[tuple[str, ...], tuple[Condition, ...]], list[str]] = defaultdict(list)
    for (p, c), acted in sorted(step1.items()):
        step2[(tuple(sorted(acted)), c)].append(p)
    uses: list[tuple[Statement, KeyStatement]] = []
    for (actions, c), principals in sorted(step2.items()):
        body = "|".join([*actions, *principals, *(v for cc in c for v in cc.values)])
        via = "Via" + "".join(camel(v.split(".")[0]) for cc in c for v in cc.values) if c else "Direct"
        sid = f"AllowUse{via}{hashlib.sha256(body.encode()).hexdigest()[:8].upper()}"
        calls, first, last, eids = call_evidence(
            [r for p in principals for a in actions for r in by_pa[(p, a)]]
        )
        purpose = f"{', '.join(principals)}: {', '.join(actions)}"
        purpose += f" only through {', '.join(c[0].values)}" if c else " (called directly)"
        uses.append(
            (
                Statement(
                    Effect.ALLOW,
                    actions=actions,
                    resources=("*",),
                    principals=Principals.aws(*principals),
                    conditions=c,
                    sid=sid,
                ),
                KeyStatement(
                    sid,
                    KeyStatementKind.USE,
                    purpose,
                    tuple(principals),
                    actions,
                    c,
                    calls,
                    first,
                    last,
                    eids,
                ),
            )
        )
        for p in principals:
            if p.split(":")[4] != account:
                findings.append(Finding("CROSS_ACCOUNT_GRANT", p, f"{', '.join(actions)} on {key}"))
    uses.sort(key=lambda pair: pair[0].sid)
    return uses


def _replay_key(policy: Policy, used: Sequence[UsageRow], key: str) -> int:
    """Replay every observed call (as the principal and as a session of a role) with an allow-all
    identity policy; refuse a policy that denies one. Returns how many requests were replayed."""
    account = key.split(":")[4]
    identity = [allow_all()]
    count = 0
    for r in used:
        ctx = request_context(r.action, r.context, r.source_ips[0] if r.source_ips else "")
        for who in filter(None, (r.principal, session_arn(r.principal, "iamtrim-replay"))):
            res = evaluate(
                Request.make(who, r.action, key, ctx, resource_account=account),
                identity,
                resource_policy=policy,
            )
            count += 1
            if not res.allowed:
                raise SynthError(
                    f"refusing to emit: the key policy would deny an observed call ({who} "
                    f"{r.action}: {res.reason})"
                )
    return count


def _check_key_lockout(policy: Policy, key: str, admins: Sequence[str]) -> int:
    """Refuse a policy that locks the root or an administrator out of reading or replacing it."""
    lockout = key_lockout_requests(key, key.split(":")[4], admins)
    identity = [allow_all()]
    for req in lockout:
        res = evaluate(req, identity, resource_policy=policy)
        if not res.allowed:
            raise LockoutError(
                f"refusing to emit: the key policy would lock {req.principal_arn} out of "
                f"{req.action} ({res.reason})"
            )
    return len(lockout)
