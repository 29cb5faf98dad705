"""The periodic permission review: every principal's diff, read as findings, plus what one diff
does not look at — admin-like grants, policies near their size limits, idle principals, denied
attempts at privilege escalation or credentials, and the gaps in what the CloudTrail can show.

One :class:`Review` covers a store and one GetAccountAuthorizationDetails dump. Each principal is
diffed by :func:`iamtrim.review.diff.diff_principal` with the store's evidence (coverage and Access
Advisor), so "safe to remove" means here exactly what it means for ``iamtrim diff``: only
``NOT_USED_OBSERVABLE_SINCE``. History, suppressions and the comparison with the previous run are
:mod:`iamtrim.review.history`'s.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from iamtrim import __version__, catalog, evidence
from iamtrim.errors import PrincipalError
from iamtrim.evidence import Evidence, NotObservableReason, PrincipalEvidence
from iamtrim.model import Principal, PrincipalKind
from iamtrim.model.finding import Finding
from iamtrim.model.policy import Effect
from iamtrim.review.current import (
    AuthzDetails,
    AuthzEntry,
    CurrentPolicies,
    authz_entries,
    authz_from_file,
    authz_principals,
    aws_managed_policy_names,
    current_from_authz_data,
    principal_for,
)
from iamtrim.review.diff import Diff, diff_principal
from iamtrim.store import Store
from iamtrim.synth.limits import INLINE_TOTAL_CHARS, MANAGED_POLICY_CHARS, size_of

__all__ = ["REVIEWED_KINDS", "AccountResult", "PrincipalReview", "Review", "ReviewOptions", "review"]

# Identities policies attach to: what a review can judge (root and federated sessions have none).
REVIEWED_KINDS = frozenset({PrincipalKind.ROLE, PrincipalKind.SSO_ROLE, PrincipalKind.USER})
# The risk classes whose denied attempts look like an intruder's first steps.
_SENSITIVE = (catalog.RISK_PRIVILEGE_ESCALATION, catalog.RISK_CREDENTIALS_EXPOSURE)
_NEAR = 0.9  # share of a size limit from which a policy is reported


@dataclass(frozen=True, slots=True)
class ReviewOptions:
    idle_days: int = 90
    # Below this many days of CloudTrail, "safe to remove" is a short-term claim: every report says
    # so. 90 days is the look-back Repokid and AWS's unused-access analyzer default to.
    short_window_days: int = 90
    principals: tuple[str, ...] = ()  # ARNs or names; () every role and user
    # Repokid's filters: leave alone principals created fewer than this many days before the end of
    # the evidence (too young for their use to show), and those carrying an opt-out tag
    # ("key" or "key=value").
    min_age_days: int = 0
    opt_out_tags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PrincipalReview:
    principal: str
    kind: str
    policies: tuple[str, ...]  # names of the current policies (boundary last)
    granted: int
    used: int
    unused_by_class: tuple[tuple[str, int], ...]  # Evidence value → count, in Evidence order
    removable: int  # NOT_USED_OBSERVABLE_SINCE: safe to remove
    risky_unused: tuple[str, ...]
    missing: int  # denied calls and calls the current policies would refuse (grouped)
    last_activity: str  # latest authorized call in CloudTrail or attempt per Access Advisor; "" none
    findings: tuple[Finding, ...]
    note: str = ""  # why it was not diffed

    @property
    def to_review(self) -> int:
        """Unused permissions of every evidence class but the one that is safe to remove."""
        return sum(n for c, n in self.unused_by_class if c != Evidence.NOT_USED_OBSERVABLE_SINCE)


@dataclass(frozen=True, slots=True)
class AccountResult:
    """One account of an ``--accounts`` review: reviewed (``error`` empty), or not, and why."""

    account: str
    name: str
    role_arn: str
    source: str  # where its current policies came from ("" when they could not be read)
    uri: str  # the account as a SARIF artifact (its root ARN)
    error: str  # the one-line reason it was not reviewed; "" when it was
    principals: tuple[str, ...] = ()  # the ARNs reviewed in it


@dataclass(frozen=True, slots=True)
class Review:
    principals: tuple[PrincipalReview, ...]
    authz: str  # where the current policies came from: the file, or the call and the account
    inputs: tuple[str, ...]  # what the run read, one "name: value" line each
    inputs_digest: str  # sha256 over the content of those inputs and the options
    window: str  # CloudTrail management-event coverage, "first..last" ("" none)
    catalog: str
    caveats: tuple[str, ...]
    skipped: tuple[tuple[str, str], ...] = ()  # (principal, why) left out by --min-age-days / --opt-out-tag
    artifact: str = ""  # the SARIF artifact: the file's path, or the account's root ARN
    accounts: tuple[AccountResult, ...] = ()  # --accounts: every account, reviewed or not

    @property
    def failed_accounts(self) -> tuple[AccountResult, ...]:
        return tuple(a for a in self.accounts if a.error)

    def holds(self, principal: str) -> bool:
        """Whether *principal* keeps its earlier findings unreported: left out by a filter, or of
        an account that could not be read."""
        if any(s == principal for s, _ in self.skipped):
            return True
        account = principal.split(":")[4] if principal.count(":") >= 5 else ""
        return any(a.account == account for a in self.failed_accounts)

    @property
    def findings(self) -> tuple[Finding, ...]:
        return tuple(f for p in self.principals for f in p.findings)


def _select(
    store: Store, authz: AuthzDetails, wanted: Sequence[str], account: str | None = None
) -> tuple[list[Principal], list[str]]:
    """The principals to review, and the store's principals left out (not IAM identities); with
    *account*, only the store's principals of that account."""
    known = {p.arn: p for p in store.principals() if account is None or p.account == account}
    in_authz = authz_principals(authz)
    if wanted:
        out: dict[str, Principal] = {}
        for name in wanted:
            if name in known or name in in_authz:
                out[name] = known.get(name) or principal_for(name)
                continue
            matches = sorted(
                {a for a in (*known, *in_authz) if a.rsplit("/", 1)[-1] == name or a.endswith("/" + name)}
            )
            if len(matches) > 1:
                raise PrincipalError(f"principal {name!r} is ambiguous: {', '.join(matches)}", tuple(matches))
            if not matches:
                raise PrincipalError(f"no role or user {name!r} in the store or in {authz.source}")
            out[matches[0]] = known.get(matches[0]) or principal_for(matches[0])
        return sorted(out.values()), []
    chosen = {a: p for a, p in known.items() if p.kind in REVIEWED_KINDS}
    for arn in in_authz:
        chosen.setdefault(arn, principal_for(arn))
    skipped = sorted(a for a, p in known.items() if p.kind not in REVIEWED_KINDS)
    return sorted(chosen.values()), skipped


def _digest(store: Store, authz: AuthzDetails, options: ReviewOptions) -> tuple[tuple[str, ...], str]:
    return inputs_and_digest(
        store, [f"authz: {authz.source} (sha256 {authz.sha256[:12]})"], [authz.sha256], options
    )


def inputs_and_digest(
    store: Store, lines: Sequence[str], hashed: Sequence[str], options: ReviewOptions
) -> tuple[tuple[str, ...], str]:
    """The run's inputs, one line each (*lines* say where the current policies came from), and a
    digest over *hashed* (their content), the store's files and the options."""
    trail = sorted(f.digest for f in store.files())
    advisor = sorted(f.digest for f in store.access_advisor_files())
    options_lines = (
        "principals: " + (", ".join(options.principals) or "every role and user"),
        f"idle-days: {options.idle_days}",
        f"min-age-days: {options.min_age_days}",
        "opt-out-tags: " + (", ".join(sorted(options.opt_out_tags)) or "none"),
        f"catalog: {catalog.catalog_version()}",
        f"iamtrim: {__version__}",  # another iamtrim may find other things in the same inputs
    )
    inputs = (
        *lines,
        f"store: {store.path} ({len(trail)} CloudTrail files, {len(advisor)} Access Advisor reports)",
        *options_lines,
    )
    h = hashlib.sha256()
    for part in (*hashed, *trail, "|", *advisor, "|", *options_lines):
        h.update(part.encode() + b"\n")
    return inputs, h.hexdigest()


@dataclass(frozen=True, slots=True)
class ReviewPart:
    """One account's share of a review (the whole review without ``--accounts``)."""

    principals: tuple[PrincipalReview, ...]
    skipped_by_filter: tuple[tuple[str, str], ...]
    not_iam: int  # principals of the store that are not IAM roles or users
    windows: frozenset[tuple[str, str]]


def review_part(
    store: Store, authz: AuthzDetails, options: ReviewOptions, account: str | None = None
) -> ReviewPart:
    principals, skipped = _select(store, authz, options.principals, account)
    aws_managed = aws_managed_policy_names(authz)
    authz_arns = set(authz_principals(authz))
    entries = {e.arn: e for e in authz_entries(authz)}
    reviews = []
    skipped_by_filter: list[tuple[str, str]] = []
    windows: set[tuple[str, str]] = set()
    for p in principals:
        rows = store.usage(p.arn)
        ev = evidence.for_principal(store, p.arn, rows=rows)
        window = ev.coverage.management_window(p.account)
        if window is not None:
            windows.add((window.first_day, window.last_day))
        why = _filtered(entries.get(p.arn), window.last_day if window else "", options)
        if why:
            skipped_by_filter.append((p.arn, why))
            continue
        if p.arn not in authz_arns:
            reviews.append(_not_in_authz(p, ev, authz))
            continue
        current = current_from_authz_data(authz.data, p.arn, authz.origin, authz.source)
        d = diff_principal(p, rows, current, propose=False, evidence=ev)
        reviews.append(_principal_review(p, d, current, ev, options, aws_managed))
    return ReviewPart(tuple(reviews), tuple(skipped_by_filter), len(skipped), frozenset(windows))


def window_and_caveats(parts: Sequence[ReviewPart], options: ReviewOptions) -> tuple[str, str, list[str]]:
    """The evidence window over every part, and the caveats every report carries."""
    windows = {w for part in parts for w in part.windows}
    first = min((w[0] for w in windows), default="")
    last = max((w[1] for w in windows), default="")
    caveats = list(_window_caveats(first, last, options))
    not_iam = sum(part.not_iam for part in parts)
    if not_iam:
        caveats.append(
            f"{not_iam} principal(s) of the store are not IAM roles or users (root, federated "
            "sessions): not reviewed"
        )
    left_out = sum(len(part.skipped_by_filter) for part in parts)
    if left_out:
        caveats.append(
            f"{left_out} principal(s) left out by --min-age-days / --opt-out-tag; "
            "their earlier findings are kept as they were"
        )
    return first, last, caveats


def review(store: Store, authz: Path | AuthzDetails, options: ReviewOptions | None = None) -> Review:
    """Review every role and user of *store* and *authz* (or ``options.principals``): an
    ``--authz`` file, or the details read from the account (:func:`authz_from_aws`)."""
    options = options or ReviewOptions()
    if not isinstance(authz, AuthzDetails):
        authz = authz_from_file(authz)
    part = review_part(store, authz, options)
    inputs, digest = _digest(store, authz, options)
    first, last, caveats = window_and_caveats([part], options)
    return Review(
        skipped=part.skipped_by_filter,
        principals=part.principals,
        authz=authz.source,
        artifact=authz.uri,
        inputs=inputs,
        inputs_digest=digest,
        window=f"{first}..{last}" if first else "",
        catalog=catalog.catalog_version(),
        caveats=tuple(caveats),
    )


def _filtered(entry: AuthzEntry | None, end: str, options: ReviewOptions) -> str:
    """Why Repokid-style filters leave the principal alone ("" when they do not)."""
    if entry is None:
        return ""
    for spec in options.opt_out_tags:
        key, eq, value = spec.partition("=")
        if any(k == key and (not eq or v == value) for k, v in entry.tags):
            return f"opt-out tag {spec}"
    if options.min_age_days and entry.created and end:
        try:
            created = date.fromisoformat(entry.created[:10])
        except ValueError:
            return ""
        if created > date.fromisoformat(end) - timedelta(days=options.min_age_days):
            return f"created {entry.created[:10]}, under {options.min_age_days} days before {end}"
    return ""


def _days(first: str, last: str) -> int:
    return (date.fromisoformat(last) - date.fromisoformat(first)).days + 1


def _window_caveats(first: str, last: str, options: ReviewOptions) -> tuple[str, ...]:
    if not first:
        return (
            "no complete CloudTrail trail file was ingested: nothing is known unused, every unused "
            "permission is NOT_OBSERVABLE(no-trail)",
        )
    days = _days(first, last)
    if days >= options.short_window_days:
        return ()
    return (
        f"short evidence window: CloudTrail covers {days} day(s) ({first}..{last}), under "
        f"{options.short_window_days}: 'safe to remove' means not used in those {days} day(s) only — a "
        "monthly or quarterly task would not show yet",
    )


def _not_in_authz(p: Principal, ev: PrincipalEvidence, authz: AuthzDetails) -> PrincipalReview:
    # The same words whichever way the details were read: a report from the account and one from
    # a file of the same account differ only in their inputs line.
    note = "not in the authorization details: its current policies are unknown"
    f = Finding("NO_CURRENT_POLICIES", p.arn, note, p.arn)
    return PrincipalReview(
        p.arn, str(p.kind), (), 0, len(ev.used), (), 0, (), 0, _last_activity(ev), (f,), note
    )


def _last_activity(ev: PrincipalEvidence) -> str:
    advised = [a.last for a in (*ev.actions.values(), *ev.services.values()) if a.last]
    return max([*ev.used.values(), *advised], default="")


def _principal_review(
    p: Principal,
    d: Diff,
    current: CurrentPolicies,
    ev: PrincipalEvidence,
    options: ReviewOptions,
    aws_managed: frozenset[str],
) -> PrincipalReview:
    counts: dict[str, int] = {}
    for u in d.unused:
        counts[u.evidence.evidence.value] = counts.get(u.evidence.evidence.value, 0) + 1
    order = [e.value for e in Evidence]
    last = _last_activity(ev)
    findings = [
        *d.findings,
        *_sensitive_denials(p.arn, d),
        *_admin_like(p.arn, current),
        *_near_limits(p, current, aws_managed),
        *_coverage_gaps(p.arn, d),
        *_idle(p, ev, last, options),
    ]
    return PrincipalReview(
        principal=p.arn,
        kind=str(p.kind),
        policies=d.current,
        granted=d.granted,
        used=len(d.used),
        unused_by_class=tuple(sorted(counts.items(), key=lambda kv: order.index(kv[0]))),
        removable=len(d.removable),
        risky_unused=tuple(u.action for u in d.risky_unused),
        missing=len(d.missing),
        last_activity=last,
        findings=tuple(sorted(_unique(findings))),
    )


def _unique(findings: Sequence[Finding]) -> list[Finding]:
    """One finding per key (the first in order): the key is what history and suppressions track."""
    out: dict[str, Finding] = {}
    for f in sorted(findings):
        out.setdefault(f.key, f)
    return list(out.values())


def _sensitive_denials(arn: str, d: Diff) -> list[Finding]:
    """A denied attempt at privilege escalation or credentials, one finding per resource."""
    out = []
    for m in d.missing:
        risks = [r for r in catalog.risk_classes(m.action) if r in _SENSITIVE]
        if m.kind != "denied" or not risks:
            continue
        for resource in m.resources:
            out.append(
                Finding(
                    "DENIED_SENSITIVE_CALL",
                    f"{m.action} {resource}",
                    f"{', '.join(risks)}; denied {m.count} time(s) on {len(m.resources)} resource(s), "
                    f"last {m.last_seen}",
                    arn,
                )
            )
    return out


def _admin_like(arn: str, current: CurrentPolicies) -> list[Finding]:
    """Allow statements of every action, of all of IAM, or of everything but a list.
    https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_notaction.html"""
    out = []
    for policy in current.identity:
        for i, st in enumerate(policy.statements):
            if st.effect is not Effect.ALLOW:
                continue
            where = f"{policy.name} {st.sid or f'Statement[{i}]'}"
            on = ", ".join(st.resources or tuple(f"NotResource {r}" for r in st.not_resources)) or "*"
            for pattern in st.actions:
                if pattern.lower() in ("*", "*:*", "iam:*"):
                    out.append(
                        Finding(
                            "ADMIN_LIKE_GRANT", where, f"Allow {pattern} on {on}", arn, f"{where} {pattern}"
                        )
                    )
            if st.not_actions:
                out.append(
                    Finding(
                        "ADMIN_LIKE_GRANT",
                        where,
                        f"Allow NotAction {', '.join(st.not_actions)} on {on}: every other action, "
                        "including those AWS adds later",
                        arn,
                        f"{where} NotAction",
                    )
                )
    return out


def _near_limits(p: Principal, current: CurrentPolicies, aws_managed: frozenset[str]) -> list[Finding]:
    """Customer-managed policies and the principal's inline total at 90% of their limits.
    https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html#reference_iam-quotas-entity-length
    Sizes are of the documents as iamtrim re-serializes them, without whitespace (as IAM counts)."""
    out = []
    inline = 0
    for policy in current.identity:
        size = size_of(policy.to_json())
        kind, _, name = policy.name.rpartition(":")
        if kind.endswith("managed") and name not in aws_managed and size >= _NEAR * MANAGED_POLICY_CHARS:
            out.append(_size_finding(p.arn, policy.name, size, MANAGED_POLICY_CHARS, "a managed policy"))
        if kind == "inline":  # the principal's own inline policies, not its groups'
            inline += size
    limit = INLINE_TOTAL_CHARS.get(p.kind)
    if limit and inline >= _NEAR * limit:
        out.append(_size_finding(p.arn, "inline policies", inline, limit, f"inline policies of a {p.kind}"))
    return out


def _size_finding(arn: str, what: str, size: int, limit: int, of: str) -> Finding:
    return Finding(
        "POLICY_NEAR_SIZE_LIMIT",
        what,
        f"{size} of {limit} characters ({100 * size // limit}%), the limit for {of}",
        arn,
    )


def _coverage_gaps(arn: str, d: Diff) -> list[Finding]:
    """Granted actions no ingested source could show, by why: data events the trail lacks (per
    eventSource), or no trail at all for the account."""
    by_source: dict[str, list[str]] = {}
    for u in d.unused:
        reason = u.evidence.reason
        if reason is NotObservableReason.DATA_EVENTS_ABSENT:
            by_source.setdefault(evidence.data_event_source(u.action) or u.service, []).append(u.action)
        elif reason is NotObservableReason.NO_TRAIL:
            by_source.setdefault("(no trail)", []).append(u.action)
    out = []
    for source, actions in sorted(by_source.items()):
        if source == "(no trail)":
            msg = (
                f"no complete CloudTrail trail file for the account: {len(actions)} granted action(s) "
                "cannot be seen used or unused"
            )
        else:
            msg = (
                f"{len(actions)} granted action(s) are {source} data events, and the trail has none of "
                "them: their use cannot be seen (enable data events, or keep them)"
            )
        out.append(Finding("COVERAGE_GAP", source, msg, arn))
    return out


def _idle(p: Principal, ev: PrincipalEvidence, last: str, options: ReviewOptions) -> list[Finding]:
    """No authorized call for more than ``idle_days`` before the end of the evidence (the last day of
    the account's CloudTrail), as far as CloudTrail and Access Advisor show. Measured against the
    evidence, not the clock: a store that stopped being fed does not make everyone idle."""
    window = ev.coverage.management_window(p.account)
    if window is None:
        return []
    end = date.fromisoformat(window.last_day)
    cutoff = end - timedelta(days=options.idle_days)
    if last:
        if date.fromisoformat(last[:10]) >= cutoff:
            return []
        msg = f"last authorized call {last[:10]}, over {options.idle_days} days before {window.last_day}"
    else:
        if date.fromisoformat(window.first_day) > cutoff:
            return []  # the evidence is shorter than --idle-days: no claim either way
        msg = f"no authorized call in CloudTrail ({window.first_day}..{window.last_day}) nor Access Advisor"
    return [Finding("PRINCIPAL_IDLE", p.arn, msg, p.arn)]
