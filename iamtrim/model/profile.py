"""What is known of EC2 instance profiles: which role each holds, and since when.

A call that passes an instance profile (EC2 ``RunInstances`` ``iamInstanceProfile``, EMR
``jobFlowRole``, OpsWorks ``defaultInstanceProfileArn``) passes the role inside it, and AWS checks
``iam:PassRole`` on that role, which the record does not name
(https://docs.aws.amazon.com/IAM/latest/UserGuide/id_roles_use_switch-role-ec2.html#roles-usingrole-ec2instance-permissions,
https://docs.aws.amazon.com/IAM/latest/UserGuide/id_roles_use_passrole.html). Normalization
records such a pass as ``iam:PassRole`` on the *instance profile's* ARN; the role comes from the
evidence here: the membership changes CloudTrail logged (``CreateInstanceProfile``,
``AddRoleToInstanceProfile``, ``RemoveRoleFromInstanceProfile``, ``DeleteInstanceProfile``) and
the instance profiles of IAM authorization details.

An instance profile holds at most one role
(https://docs.aws.amazon.com/IAM/latest/APIReference/API_AddRoleToInstanceProfile.html): a
successful ``AddRoleToInstanceProfile`` shows the profile was empty just before it, a
``RemoveRoleFromInstanceProfile`` that it held that role. So from its first logged change on, a
profile's role is known at every moment, and before it as well.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

# arn:PARTITION:iam::ACCOUNT:instance-profile/PATH/NAME; a profile's name is unique in its
# account whatever its path (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_identifiers.html).
_PROFILE_ARN = re.compile(r"^arn:(aws[a-z-]*):iam::([^:]*):instance-profile/(?:[^:]*/)?([^/:]+)$")


def instance_profile_of(resource: str | None) -> tuple[str, str, str] | None:
    """``(partition, account, name)`` when *resource* is an instance profile's ARN."""
    if not resource or ":instance-profile/" not in resource:
        return None
    m = _PROFILE_ARN.match(resource)
    return (m.group(1), m.group(2), m.group(3)) if m else None


class ProfileChangeKind(StrEnum):
    CREATE = "create"  # CreateInstanceProfile: a new, empty profile
    ADD = "add"  # AddRoleToInstanceProfile
    REMOVE = "remove"  # RemoveRoleFromInstanceProfile
    DELETE = "delete"  # DeleteInstanceProfile


@dataclass(frozen=True, slots=True, order=True)
class ProfileChange:
    """One successful change of an instance profile, as CloudTrail logged it."""

    time: str  # eventTime, ISO 8601 UTC (sorts as text)
    account: str
    profile: str  # the profile's name
    kind: ProfileChangeKind
    role: str = ""  # the role's ARN (ADD, REMOVE)
    event_id: str = ""


@dataclass(frozen=True, slots=True)
class ProfileRoles:
    """The instance profile evidence a policy may use.

    ``changes``: CloudTrail's history (the store's). ``current``: ``(account, profile, roles)``
    from IAM authorization details (what the profile holds now), named by ``current_source``.
    """

    changes: tuple[ProfileChange, ...] = ()
    current: tuple[tuple[str, str, tuple[str, ...]], ...] = ()
    current_source: str = ""

    def roles_for(self, account: str, profile: str, first: str, last: str) -> tuple[tuple[str, ...], str]:
        """The roles *profile* held at some moment from *first* to *last*, and where that is from
        (``((), why not)`` when the evidence does not tell)."""
        roles: set[str] = set()
        sources: list[str] = []
        history = sorted(c for c in self.changes if c.account == account and c.profile == profile)
        if history:
            held = _held_between(history, first, last)
            if held is None:
                sources_note = "its logged changes start after the calls"
            elif held:
                roles.update(held)
                sources.append("the CloudTrail history of the profile")
                sources_note = ""
            else:
                sources_note = "its logged changes show no role at the time of the calls"
        else:
            sources_note = "no change of it is in the store"
        for acct, name, current in self.current:
            if acct == account and name == profile and current:
                roles.update(current)
                sources.append(self.current_source or "IAM authorization details")
        if roles:
            return tuple(sorted(roles)), " and ".join(sources)
        why = sources_note
        if not self.current:
            why += "; no IAM authorization details given (--authz, --from-aws)"
        else:
            why += "; the IAM authorization details name no role in it"
        return (), why


def _held_between(history: list[ProfileChange], first: str, last: str) -> set[str] | None:
    """Roles the profile held at any moment of [first, last] by its change history, or ``None``
    when part of that span lies before what the history can tell."""
    start = history[0]
    # What the profile held before its first logged change (at most one role, see the module).
    if start.kind is ProfileChangeKind.REMOVE:
        before: set[str] | None = {start.role}
    elif start.kind in (ProfileChangeKind.ADD, ProfileChangeKind.CREATE):
        before = set()
    else:  # DELETE first: what it held before is not logged
        before = None
    state = before
    held: set[str] = set()
    if first < start.time:
        if state is None:
            return None
        held |= state
    for i, change in enumerate(history):
        if change.kind is ProfileChangeKind.ADD:
            state = {change.role}
        elif change.kind is ProfileChangeKind.REMOVE:
            state = set()
        else:
            state = set()  # created empty, or deleted
        end = history[i + 1].time if i + 1 < len(history) else None
        # The state holds from change.time until the next change (or on).
        if change.time <= last and (end is None or end > first):
            held |= state
    return held
