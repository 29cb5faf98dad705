"""What the bucket policy (``synth/bucket.py``) and the key policy (``synth/kms.py``) share.

Both are resource policies that name principals by ARN, are replayed with an allow-all identity
policy standing for the owner's principals (as the role and as a session of it), carry the
evidence behind each statement, and are merged into the resource's current policy and held to a
size limit before anything is emitted.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from iamtrim.model import UsageRow
from iamtrim.model.policy import Effect, Policy, Statement
from iamtrim.synth.limits import check_resource_policy
from iamtrim.synth.merge import CurrentResourcePolicy, Merge, merge_current

__all__ = [
    "CallEvidence",
    "account_of",
    "allow_all",
    "call_evidence",
    "camel",
    "merge_and_check",
    "principal_arn_forms",
    "session_arn",
    "short_name",
]

_IAM_ARN = re.compile(r"arn:(aws[\w-]*):iam::(\d{12}):(role|user)/(.+)\Z")

# (calls, first seen, last seen, up to five event ids) behind one statement
CallEvidence = tuple[int, str, str, tuple[str, ...]]


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


def session_arn(arn: str, session: str) -> str | None:
    """The ARN of session *session* of role *arn* (None for anything but a role): the caller a
    replay also tries, since a resource policy naming the role must admit its sessions."""
    m = _IAM_ARN.match(arn)
    if m is None or m.group(3) != "role":
        return None
    return f"arn:{m.group(1)}:sts::{m.group(2)}:assumed-role/{m.group(4).rsplit('/', 1)[-1]}/{session}"


def account_of(arn: str) -> str:
    parts = arn.split(":")
    return parts[4] if len(parts) > 5 and arn.startswith("arn:") else ""


def camel(text: str) -> str:
    # Sids are alphanumeric: every other character (a space, "_", ".", "-") only separates words.
    # https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_sid.html
    return "".join(p[:1].upper() + p[1:] for p in re.split(r"[^A-Za-z0-9]+", text) if p)


def short_name(arn: str) -> str:
    return arn.rsplit("/", 1)[-1] if "/" in arn else arn.rsplit(":", 1)[-1]


def call_evidence(rows: Sequence[UsageRow]) -> CallEvidence:
    """The calls behind a statement: how many, first and last seen, and the first five event ids."""
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


def merge_and_check(
    policy: Policy,
    current: CurrentResourcePolicy | None,
    managed_sids: Sequence[str],
    limit: int,
    what: str,
) -> tuple[Policy, Merge | None]:
    """*policy* merged into the resource's *current* one (when given), refused with
    :class:`~iamtrim.errors.SizeLimitError` past *limit* bytes."""
    merge = None
    if current is not None:
        policy, merge = merge_current(current.policy, policy, managed_sids, current.source)
    check_resource_policy(policy, limit, what)
    return policy, merge
