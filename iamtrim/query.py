"""Questions over the usage store: which principals, what one principal used, resolved by name,
and the time window (``--since`` / ``--until``) evidence is taken from."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from iamtrim.errors import OptionsError, PrincipalError
from iamtrim.model import Outcome, Principal, PrincipalKind, TimeWindow, UsageRow
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


_ROLE_KINDS = frozenset({PrincipalKind.ROLE, PrincipalKind.SSO_ROLE})


@dataclass(frozen=True, slots=True)
class _Wanted:
    """What a principal name, as a user writes it, asks for."""

    name: str
    account: str = ""  # "" = any account
    roles_only: bool = False
    users_only: bool = False


def _wanted(query: str) -> _Wanted | None:
    """Read the forms a user copies from CloudTrail, the console or ``aws sts get-caller-identity``:

    * ``arn:aws:sts::ACCT:assumed-role/NAME/SESSION`` — a session of role NAME; the session ARN
      never carries the role's path (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_identifiers.html#identifiers-arns);
    * ``arn:aws:iam::ACCT:role/NAME`` or ``.../user/NAME`` without the path the role or user was
      created with (``role/service-role/NAME``): an IAM name is unique in its account whatever its
      path (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_identifiers.html#identifiers-friendly-names);
    * ``role/NAME``, ``user/NAME`` (with or without a path) and plain ``NAME``.

    None when the query is an ARN of some other kind (it can only match exactly).
    """
    if query.startswith("arn:"):
        parts = query.split(":", 5)
        if len(parts) != 6:
            return None
        account, resource = parts[4], parts[5]
        if parts[2] == "sts" and resource.startswith("assumed-role/"):
            return _Wanted(resource.split("/")[1], account, roles_only=True)
        if parts[2] == "iam" and resource.startswith(("role/", "user/")):
            return _Wanted(
                resource.rsplit("/", 1)[-1],
                account,
                roles_only=resource.startswith("role/"),
                users_only=resource.startswith("user/"),
            )
        return None
    if query.startswith(("role/", "user/")) and len(query) > 5:
        return _Wanted(
            query.rsplit("/", 1)[-1],
            roles_only=query.startswith("role/"),
            users_only=query.startswith("user/"),
        )
    return _Wanted(query)


def _matches(p: Principal, want: _Wanted) -> bool:
    if want.account and p.account != want.account:
        return False
    if want.roles_only and p.kind not in _ROLE_KINDS:
        return False
    if want.users_only and p.kind is not PrincipalKind.USER:
        return False
    return p.name == want.name or (not p.is_iam and p.arn == want.name)


def _shown(principals: Iterable[Principal]) -> list[str]:
    """Names to offer back: the name where it is unique, else the ARN."""
    ps = sorted(set(principals))
    counts: dict[str, int] = {}
    for p in ps:
        counts[p.name] = counts.get(p.name, 0) + 1
    return [p.name if counts[p.name] == 1 and p.is_iam else p.arn for p in ps]


def resolve_principal_name(store: Store, query: str) -> Principal:
    """The one principal of *store* that *query* names (see :func:`resolve_among`)."""
    return resolve_among(store.principals(), query, "in the usage data")


def resolve_among(principals: Sequence[Principal], query: str, where: str) -> Principal:
    """The one principal *query* names: its ARN, the STS session ARN of a role, a role or user ARN
    without its path, ``role/NAME``, ``user/NAME`` or a plain name (case-sensitive: a name that
    differs only in case is offered back, not guessed). Ambiguous or unknown names raise
    :class:`PrincipalError` naming the candidates (closest names first for a near miss); *where*
    says where they were looked for ("in the usage data")."""
    principals = list(principals)
    exact = [p for p in principals if p.arn == query]
    if exact:
        return exact[0]
    want = _wanted(query)
    found = [p for p in principals if want is not None and _matches(p, want)]
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        raise PrincipalError(
            f"principal {query!r} is ambiguous {where}: {len(found)} principals match: "
            + ", ".join(p.arn for p in found)
            + "; give the ARN",
            tuple(p.arn for p in found),
        )
    raise PrincipalError(
        _unknown_message(query, want, principals, where), tuple(_near(query, want, principals))
    )


def _near(query: str, want: _Wanted | None, principals: list[Principal]) -> list[str]:
    """The closest known names: same name in another case or kind, then difflib's close matches."""
    target = want.name if want is not None else query
    by_name: dict[str, list[Principal]] = {}
    for p in principals:
        by_name.setdefault(p.name, []).append(p)
    folded = [n for n in by_name if n.lower() == target.lower()]
    close = difflib.get_close_matches(target, list(by_name), n=5, cutoff=0.75)
    names = list(dict.fromkeys([*folded, *close]))[:5]
    return _shown(p for n in names for p in by_name[n])


def _unknown_message(query: str, want: _Wanted | None, principals: list[Principal], where: str) -> str:
    near = _near(query, want, principals)
    if near:
        return f"no principal {query!r} {where}; did you mean: {', '.join(near)}?"
    if not principals:
        return f"no principal {query!r} {where}: it names none"
    known = _shown(principals)
    listed = ", ".join(known[:8]) + (f", … (+{len(known) - 8})" if len(known) > 8 else "")
    return f"no principal {query!r} {where}; known: {listed}"


_RELATIVE = re.compile(r"^(\d+)([dh])$")


def parse_when(text: str, *, now: datetime, option: str, end_of_day: bool) -> str:
    """``YYYY-MM-DD``, an ISO 8601 timestamp (UTC unless it says otherwise) or ``Nd`` / ``Nh``
    (that long before *now*) → ``YYYY-MM-DDTHH:MM:SSZ``. A date alone is its first second, or with
    *end_of_day* its last (``--until 2026-10-14`` includes the 14th)."""
    value = text.strip()
    rel = _RELATIVE.match(value)
    if rel:
        amount = int(rel.group(1))
        try:
            delta = timedelta(days=amount) if rel.group(2) == "d" else timedelta(hours=amount)
            when = now.astimezone(UTC) - delta
        except OverflowError:  # further back than datetime reaches: from the first record
            return "0001-01-01T00:00:00Z"
        return _stamp(when)
    try:
        if len(value) == 10:
            day = datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=UTC)
            return _stamp(day.replace(hour=23, minute=59, second=59) if end_of_day else day)
        when = datetime.fromisoformat(value)
    except ValueError:
        raise OptionsError(
            f"{option} {text!r}: give a date (2026-10-01), a UTC timestamp (2026-10-01T12:00:00Z) "
            "or a span back from now (90d, 12h)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)  # CloudTrail's eventTime is UTC
    return _stamp(when.astimezone(UTC))


def _stamp(when: datetime) -> str:
    # Written out rather than strftime: %Y does not pad years before 1000 on every platform.
    return f"{when.year:04d}-{when.month:02d}-{when.day:02d}T" + when.strftime("%H:%M:%SZ")


def parse_window(since: str | None, until: str | None, *, now: datetime | None = None) -> TimeWindow:
    """The window ``--since`` / ``--until`` ask for (open where not given)."""
    at = now or datetime.now(UTC)
    lo = parse_when(since, now=at, option="--since", end_of_day=False) if since else ""
    hi = parse_when(until, now=at, option="--until", end_of_day=True) if until else ""
    if lo and hi and lo > hi:
        raise OptionsError(f"--since {since} is after --until {until}: the window is empty")
    return TimeWindow(lo, hi)


def principal_usage(store: Store, principal: Principal, window: TimeWindow | None = None) -> PrincipalUsage:
    rows = store.usage(principal.arn, window)
    used = tuple(r for r in rows if r.outcome is Outcome.USED)
    denied = tuple(r for r in rows if r.outcome is Outcome.DENIED)
    users = resource_users(store.usage(window=window))
    mine = sorted({r.resource for r in used if r.resource and r.resource in users})
    shared = tuple((res, tuple(sorted(users[res] - {principal.arn}))) for res in mine if len(users[res]) > 1)
    only = tuple(res for res in mine if len(users[res]) == 1)
    return PrincipalUsage(principal, used, denied, tuple(sorted(store.skips().items())), shared, only)


def summarize_principals(store: Store, window: TimeWindow | None = None) -> list[PrincipalSummary]:
    """Every principal with usage (in *window*), with its counts."""
    by_principal: dict[str, list[UsageRow]] = {}
    all_rows = store.usage(window=window)
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
