"""Questions over the usage store: which principals, what one principal used, resolved by name."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from iamtrim.errors import PrincipalError
from iamtrim.model import Outcome, Principal, UsageRow
from iamtrim.store import Store


@dataclass(frozen=True, slots=True)
class PrincipalSummary:
    principal: Principal
    actions_used: int
    actions_denied: int
    calls: int
    denied_calls: int
    first_seen: str
    last_seen: str
    services: tuple[str, ...]
    resources: int = 0  # distinct resources used (ARNs; "*" and unknown left out)
    shared_resources: int = 0  # of those, used by at least one other principal too
    only_resources: int = 0  # of those, used by this principal alone
    shares_with: tuple[str, ...] = ()  # the other principals it shares at least one resource with


@dataclass(frozen=True, slots=True)
class PrincipalUsage:
    principal: Principal
    used: tuple[UsageRow, ...]
    denied: tuple[UsageRow, ...]
    skipped: tuple[tuple[str, int], ...]
    shared: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (resource, other principals that used it)
    only_this: tuple[str, ...] = ()  # resources no other principal used


def resource_users(rows: Iterable[UsageRow]) -> dict[str, set[str]]:
    """Resource ARN → the principals whose calls on it were authorized ("*" and unknown left out)."""
    users: dict[str, set[str]] = {}
    for r in rows:
        if r.outcome is Outcome.USED and r.resource and r.resource != "*":
            users.setdefault(r.resource, set()).add(r.principal)
    return users


def resolve_principal_name(store: Store, query: str) -> Principal:
    """An ARN, or a name unique among the store's principals (role/user name, case-sensitive)."""
    principals = store.principals()
    exact = [p for p in principals if p.arn == query]
    if exact:
        return exact[0]
    by_name = [p for p in principals if p.name == query or p.arn.endswith("/" + query)]
    if len(by_name) == 1:
        return by_name[0]
    if len(by_name) > 1:
        raise PrincipalError(
            f"principal {query!r} is ambiguous: " + ", ".join(p.arn for p in by_name),
            tuple(p.arn for p in by_name),
        )
    folded = [p for p in principals if p.name.lower() == query.lower()]
    hint = f"; did you mean {', '.join(p.arn for p in folded)}" if folded else ""
    raise PrincipalError(
        f"no principal {query!r} in the usage data ({len(principals)} known{hint})",
        tuple(p.arn for p in folded),
    )


def principal_usage(store: Store, principal: Principal) -> PrincipalUsage:
    rows = store.usage(principal.arn)
    used = tuple(r for r in rows if r.outcome is Outcome.USED)
    denied = tuple(r for r in rows if r.outcome is Outcome.DENIED)
    users = resource_users(store.usage())
    mine = sorted({r.resource for r in used if r.resource and r.resource in users})
    shared = tuple((res, tuple(sorted(users[res] - {principal.arn}))) for res in mine if len(users[res]) > 1)
    only = tuple(res for res in mine if len(users[res]) == 1)
    return PrincipalUsage(principal, used, denied, tuple(sorted(store.skips().items())), shared, only)


def summarize_principals(store: Store) -> list[PrincipalSummary]:
    by_principal: dict[str, list[UsageRow]] = {}
    all_rows = store.usage()
    for row in all_rows:
        by_principal.setdefault(row.principal, []).append(row)
    users = resource_users(all_rows)
    out = []
    for p in store.principals():
        rows = by_principal.get(p.arn, [])
        if not rows:
            continue
        used = [r for r in rows if r.outcome is Outcome.USED]
        denied = [r for r in rows if r.outcome is Outcome.DENIED]
        mine = {r.resource for r in used if r.resource and r.resource in users}
        shared = {res for res in mine if len(users[res]) > 1}
        out.append(
            PrincipalSummary(
                principal=p,
                actions_used=len({r.action for r in used}),
                actions_denied=len({r.action for r in denied}),
                calls=sum(r.count for r in used),
                denied_calls=sum(r.count for r in denied),
                first_seen=min(r.first_seen for r in rows),
                last_seen=max(r.last_seen for r in rows),
                services=tuple(sorted({r.action.split(":")[0] for r in rows})),
                resources=len(mine),
                shared_resources=len(shared),
                only_resources=len(mine) - len(shared),
                shares_with=tuple(sorted({q for res in shared for q in users[res]} - {p.arn})),
            )
        )
    return out
