"""iam:PassRole through an instance profile: from the profile to the role(s) it held.

Normalization records a call that passed an instance profile (EC2 ``RunInstances``, EMR
``RunJobFlow``'s ``jobFlowRole``, OpsWorks ``defaultInstanceProfileArn``) as ``iam:PassRole`` on
the profile's ARN, since AWS checks PassRole on the role inside the profile, which the record does
not name (https://docs.aws.amazon.com/IAM/latest/UserGuide/id_roles_use_switch-role-ec2.html#roles-usingrole-ec2instance-permissions).
A policy grants PassRole on roles, never on a profile
(https://docs.aws.amazon.com/IAM/latest/UserGuide/id_roles_use_passrole.html), so each such row
becomes rows on the role(s) the profile held while the calls were made (``model/profile.py``:
its logged changes, IAM authorization details), or, where the evidence does not say, on
``arn:PARTITION:iam::ACCOUNT:role/*`` of the profile's account, listed with its reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from iamtrim.model import Outcome, UsageRow
from iamtrim.model.profile import ProfileRoles, instance_profile_of
from iamtrim.model.usage import SAMPLE_EVENT_IDS, SAMPLE_SOURCE_IPS

PASS_ROLE = "iam:PassRole"


@dataclass(frozen=True, slots=True)
class ProfilePass:
    """How the passes of one instance profile were resolved."""

    profile: str  # the profile's ARN, as recorded
    roles: tuple[str, ...]  # the roles granted: exact ARNs, a role under any path, or role/*
    source: str  # where the roles come from, or why they are unknown
    resolved: bool  # False: the fallback role/* of the profile's account
    path_free: tuple[str, ...] = ()  # role/*/NAME patterns: a role logged by name, any path


def resolve_instance_profiles(
    rows: Sequence[UsageRow], profiles: ProfileRoles | None
) -> tuple[list[UsageRow], list[ProfilePass]]:
    """*rows* with every PassRole on an instance profile replaced by PassRole on its role(s)."""
    out: list[UsageRow] = []
    passes: dict[str, ProfilePass] = {}
    evidence = profiles or ProfileRoles()
    confirmed = {r for *_, current in evidence.current for r in current}  # roles IAM details name
    for row in rows:
        where = instance_profile_of(row.resource) if row.action == PASS_ROLE else None
        if where is None or row.outcome is not Outcome.USED or row.resource is None:
            out.append(row)
            continue
        partition, account, name = where
        roles, source = evidence.roles_for(account, name, row.first_seen, row.last_seen)
        if roles:
            # A role CloudTrail named by name (AddRoleToInstanceProfile's roleName) may have a
            # path in its ARN. A role name is unique in its account whatever the path
            # (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_identifiers.html), so
            # role/*/NAME is that one role under any path.
            path_free = tuple(
                "{}/*/{}".format(*r.split("/", 1)) for r in roles if r not in confirmed and r.count("/") == 1
            )
            p = ProfilePass(row.resource, (*roles, *path_free), source, True, path_free)
        else:
            fallback = f"arn:{partition}:iam::{account}:role/*"
            p = ProfilePass(row.resource, (fallback,), source, False)
        out.extend(replace(row, resource=r) for r in p.roles)
        known = passes.get(row.resource)
        if known is not None:
            p = replace(
                known,
                roles=tuple(sorted(set(known.roles) | set(p.roles))),
                path_free=tuple(sorted(set(known.path_free) | set(p.path_free))),
                source=known.source if known.source == p.source else f"{known.source}; {p.source}",
                resolved=known.resolved and p.resolved,
            )
        passes[row.resource] = p
    return _merged(out), [passes[k] for k in sorted(passes)]


def _merged(rows: list[UsageRow]) -> list[UsageRow]:
    """Rows with the same key (two profiles holding one role) merged, as the store would."""
    by_key: dict[tuple[object, ...], UsageRow] = {}
    for r in rows:
        key = (r.principal, r.action, r.resource, r.outcome, r.context)
        old = by_key.get(key)
        if old is None:
            by_key[key] = r
            continue
        by_key[key] = replace(
            old,
            count=old.count + r.count,
            first_seen=min(old.first_seen, r.first_seen),
            last_seen=max(old.last_seen, r.last_seen),
            event_ids=tuple(dict.fromkeys((*old.event_ids, *r.event_ids)))[:SAMPLE_EVENT_IDS],
            source_ips=tuple(dict.fromkeys((*old.source_ips, *r.source_ips)))[:SAMPLE_SOURCE_IPS],
        )
    return list(by_key.values())
