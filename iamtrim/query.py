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


def literal_prefix(pattern: str) -> str:
    """The text every resource *pattern* matches starts with: up to its first ``*``, ``?`` or
    ``$`` (``${*}``); ``""`` when that is not an ARN's start (``*``, ``(unknown)``) or holds a
    character JSON may escape (non-ASCII, quotes, controls: the context's JSON text could then not
    be searched for it)."""
    cut = len(pattern)
    for ch in "*?$":
        at = pattern.find(ch)
        if at != -1:
            cut = min(cut, at)
    prefix = pattern[:cut]
    plain = all(" " <= ch <= "~" and ch not in '"\\' for ch in prefix)  # as JSON writes it
    if not plain or not prefix.startswith("arn:") or len(prefix) < len("arn:aws:s3:::"):
        return ""
    return prefix


def selection_rows(
    store: Store, principals: Sequence[str], resources: Sequence[str], window: TimeWindow | None = None
) -> list[UsageRow]:
    """The rows a graph selection (``who-used``, ``graph --principal/--resource``) may keep: the
    store narrows them by principal and by the resource patterns' literal prefixes, so only
    candidates become objects; ``graph.select_rows`` then matches the patterns exactly."""
    prefixes = [literal_prefix(r) for r in resources]
    if not all(prefixes):
        prefixes = []
    return store.usage_of(principals, prefixes, window)


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
    """What *principal* used and was denied (in *window*), and which of the resources it used others
    used too. Only its own rows are read as objects; who else used its resources is one query."""
    rows = store.usage(principal.arn, window)
    used = tuple(r for r in rows if r.outcome is Outcome.USED)
    denied = tuple(r for r in rows if r.outcome is Outcome.DENIED)
    mine = sorted({r.resource for r in used if r.resource and r.resource != "*"})
    others = dict(store.shared_resources(window, principal.arn))
    me = principal.arn
    shared = tuple((res, tuple(q for q in others[res] if q != me)) for res in mine if res in others)
    only = tuple(res for res in mine if res not in others)
    return PrincipalUsage(principal, used, denied, tuple(sorted(store.skips().items())), shared, only)


def summarize_principals(store: Store, window: TimeWindow | None = None) -> list[PrincipalSummary]:
    """Every principal with usage (in *window*), with its counts: aggregate queries in the store,
    no usage row is turned into an object."""
    totals = {t.principal: t for t in store.principal_totals(window)}
    shared_count: dict[str, int] = {}
    partners: dict[str, set[str]] = {}
    for _, users in store.shared_resources(window):
        for q in users:
            shared_count[q] = shared_count.get(q, 0) + 1
            partners.setdefault(q, set()).update(users)
    out = []
    for p in store.principals():
        t = totals.get(p.arn)
        if t is None:
            continue
        shared = shared_count.get(p.arn, 0)
        out.append(
            PrincipalSummary(
                principal=p,
                actions_used=t.actions_used,
                actions_denied=t.actions_denied,
                calls=t.calls,
                denied_calls=t.denied_calls,
                first_seen=t.first_seen,
                last_seen=t.last_seen,
                services=t.services,
                resources=t.resources,
                shared_resources=shared,
                only_resources=t.resources - shared,
                shares_with=tuple(sorted(partners.get(p.arn, set()) - {p.arn})),
            )
        )
    return out
