"""The diff of a principal's current policies against what it did (and against the proposal).

* **granted** — catalog actions the current policies allow (by meaning: :mod:`iamtrim.review.granted`);
* **used** — actions of calls that passed authorization in the usage data;
* **unused** — granted but not seen used, with access level, risk classes, when last attempted, and
  the *evidence* for calling it unused (:mod:`iamtrim.evidence`): only an entry whose class is
  ``NOT_USED_OBSERVABLE_SINCE`` is safe to remove; one that no source could have shown
  (``NOT_OBSERVABLE``) or that Access Advisor shows used (``USED_ACCESS_ADVISOR``,
  ``SERVICE_USED_ACTION_UNKNOWN``) is to be reviewed, never called unused;
* **narrowing** — used actions granted through wildcard resource patterns far wider than the
  resources used (the patterns are those of the Allow statements that let the observed calls in);
* **missing** — calls that were denied, and calls that were made but that the current policies
  would not allow, each naming the policy that would have to change;
* **proposed** — generate-policy's proposal for the same usage (keeping, like generate-policy,
  the actions Access Advisor shows used), the granted actions it removes, how many of those are
  risky and how many it removes without evidence of non-use.

Without a :class:`~iamtrim.evidence.PrincipalEvidence` (a diff built from rows alone) nothing is
known about what the records could have shown: every unused action is ``NOT_OBSERVABLE(no-trail)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from iamtrim import catalog
from iamtrim.errors import IamtrimError, PrincipalError
from iamtrim.evaluate import Decision, Evaluation, evaluate
from iamtrim.evidence import Evidence, Observability, PrincipalEvidence, coverage_from_rows, for_principal
from iamtrim.model import Outcome, Principal, TimeWindow, UsageRow
from iamtrim.model.finding import Finding
from iamtrim.model.policy import Effect, Policy
from iamtrim.model.profile import ProfileRoles, instance_profile_of
from iamtrim.query import resolve_principal_name
from iamtrim.review.current import CurrentPolicies, principal_for
from iamtrim.review.granted import GrantedSet, allowed_under_unlogged_keys, granted_actions
from iamtrim.store import Store
from iamtrim.synth import AdvisedGrant, GeneratedPolicy, SynthOptions, generate_identity_policy
from iamtrim.synth.passrole import PASS_ROLE
from iamtrim.verify import account_trust_policy, request_for

__all__ = [
    "Diff",
    "Missing",
    "Narrowing",
    "Proposed",
    "UnusedAction",
    "class_label",
    "diff_principal",
    "diff_stored_principal",
    "evidence_from_rows",
]


def class_label(obs: Observability) -> str:
    """``NOT_USED_OBSERVABLE_SINCE(2026-10-01)``, ``NOT_OBSERVABLE(never-logged)``,
    ``USED_ACCESS_ADVISOR``, … — the class as docs/evidence.md names it."""
    if obs.evidence is Evidence.NOT_USED_OBSERVABLE_SINCE:
        return f"{obs.evidence.name}({obs.since or '?'})"
    if obs.evidence is Evidence.NOT_OBSERVABLE:
        return f"{obs.evidence.name}({obs.reason or '?'})"
    return obs.evidence.name


@dataclass(frozen=True, slots=True)
class UnusedAction:
    action: str
    service: str
    access_level: str
    risk: tuple[str, ...]
    last_seen: str | None  # last denied attempt in CloudTrail, else Access Advisor's last attempt
    #                        (action level); None: no source shows an attempt
    granted_by: str  # the identity policy whose Allow grants it
    conditional: bool  # granted only under the statement's conditions
    evidence: Observability  # how iamtrim knows it was not used; .removable: safe to remove

    @property
    def removable(self) -> bool:
        return self.evidence.removable


@dataclass(frozen=True, slots=True)
class Narrowing:
    action: str
    granted_on: tuple[str, ...]  # Resource patterns of the Allow statements that let the calls in
    used_on: tuple[str, ...]  # resources the calls named
    calls: int
    proposed_on: tuple[str, ...]  # resources of the proposal's statement(s) for this action
    # The only Allow that let (some of) the calls in holds under condition keys CloudTrail does
    # not record (s3:ExistingObjectTag/…, aws:ResourceTag/…): the calls rest on conditions the
    # trail cannot show, and the proposal, built from the trail, grants them without those keys.
    conditional: bool = False
    condition_keys: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Missing:
    """Calls of one action refused for one reason (resources grouped)."""

    action: str
    resources: tuple[str, ...]  # "(unknown)" when a record named none
    kind: str  # "denied" (refused in the records) | "not-allowed" (made, but current policies refuse)
    count: int
    last_seen: str
    decision: str  # the evaluator's decision under the current policies
    reason: str
    change: tuple[str, ...]  # the policies that would have to change
    note: str = ""  # e.g. Access Advisor counting these denied attempts as access


@dataclass(frozen=True, slots=True)
class Proposed:
    policies: tuple[Policy, ...]
    granted: int
    removes: tuple[str, ...]  # currently granted actions the proposal does not grant
    removes_risky: tuple[str, ...]
    adds: tuple[str, ...]  # actions the proposal grants that the current policies do not
    error: str = ""  # why no proposal could be made
    removes_unproven: tuple[str, ...] = ()  # removed without evidence of non-use (review them)


@dataclass(frozen=True, slots=True)
class Diff:
    principal: str
    current: tuple[str, ...]  # names of the policies compared (boundary last)
    granted: int
    used: tuple[str, ...]
    unused: tuple[UnusedAction, ...]
    narrowing: tuple[Narrowing, ...]
    missing: tuple[Missing, ...]
    proposed: Proposed | None
    unknown_patterns: tuple[str, ...]  # Allow patterns matching no catalog action (newer than it)
    findings: tuple[Finding, ...]
    catalog: str
    basis: tuple[str, ...] = ()  # what the evidence rests on: CloudTrail window, Access Advisor report
    caveats: tuple[str, ...] = ()  # the evidence's caveats over every unused entry

    @property
    def risky_unused(self) -> tuple[UnusedAction, ...]:
        return tuple(u for u in self.unused if u.risk)

    @property
    def removable(self) -> tuple[UnusedAction, ...]:
        """Unused with evidence of non-use (``NOT_USED_OBSERVABLE_SINCE``): safe to remove."""
        return tuple(u for u in self.unused if u.removable)

    @property
    def risky_removable(self) -> tuple[UnusedAction, ...]:
        return tuple(u for u in self.unused if u.removable and u.risk)

    @property
    def to_review(self) -> tuple[UnusedAction, ...]:
        """Not seen used, but nothing shows it unused: not observable, or used per Access Advisor."""
        return tuple(u for u in self.unused if not u.removable)

    @property
    def removable_since(self) -> str:
        """The day since which *every* removable entry is known unused (the latest of their
        ``since`` days); "" when none is removable."""
        return max((u.evidence.since for u in self.removable), default="")


_LOGGED: tuple[str, ...] = ()


def _evaluate(
    principal: str, row: UsageRow, current: CurrentPolicies, granted: GrantedSet
) -> tuple[Evaluation, tuple[str, ...]] | None:
    """The current policies' decision on an observed call, with the condition keys the record
    lacks that the allowing statement needed (``()`` when none did); ``None`` when the resource
    is unknown and the action is granted somewhere (the call may well have been allowed)."""
    request = request_for(principal, row)
    ev = evaluate(
        request,
        current.identity,
        boundary=current.boundary,
        resource_policy=account_trust_policy(request.resource, request.resource_account),
    )
    if not ev.allowed and row.resource is None and row.action in granted.actions:
        return None
    if ev.decision is Decision.IMPLICIT_DENY:
        # The record may lack a condition key the policies test (iam:PassedToService, tags, ...).
        found = allowed_under_unlogged_keys(request, current)
        if found is not None:
            return found
    return ev, _LOGGED


def _change(ev: Evaluation, current: CurrentPolicies) -> tuple[str, ...]:
    if ev.decision is Decision.EXPLICIT_DENY:
        return tuple(
            sorted(
                {
                    f"{m.policy} (Deny{' ' + m.sid if m.sid else ''})"
                    for m in ev.statements
                    if m.effect is Effect.DENY
                }
            )
        )
    if "boundary" in ev.reason and current.boundary is not None:
        return (current.boundary.name,)
    if "resource policy" in ev.reason:
        return ("the resource's policy (key policy / trust policy)",)
    return ("an identity policy (none allows it)",)


def _patterns(policy: Policy, index: int) -> tuple[str, ...]:
    st = policy.statements[index]
    if st.not_resources:
        return tuple(f"NotResource {r}" for r in st.not_resources)
    return st.resources or ("*",)


def _wide(pattern: str) -> bool:
    return "*" in pattern or "?" in pattern or pattern.startswith("NotResource ")


def evidence_from_rows(principal_arn: str, rows: Sequence[UsageRow]) -> PrincipalEvidence:
    """Evidence from usage rows alone: no coverage, no Access Advisor. Nothing is observable."""
    ev = PrincipalEvidence(principal_arn, coverage_from_rows(()))
    for r in rows:
        target = ev.used if r.outcome is Outcome.USED else ev.denied
        target[r.action] = max(target.get(r.action, ""), r.last_seen)
        if r.outcome is Outcome.USED:
            ev.services_used.add(r.action.partition(":")[0])
    return ev


def _basis(ev: PrincipalEvidence) -> tuple[str, ...]:
    account = _account_of(ev.principal)
    window = ev.coverage.management_window(account)
    if window is None:
        ct = f"CloudTrail: no complete trail file for account {account or '?'}"
    else:
        sources = sorted(s.removesuffix(".amazonaws.com") for s in ev.coverage.data_sources(account))
        ct = (
            f"CloudTrail: {window.first_day}..{window.last_day} ({', '.join(window.regions)}; data events: "
            f"{', '.join(sources) or 'none'})"
        )
    advice = (*ev.actions.values(), *ev.services.values())
    reports = sorted({a.generated_at for a in advice if a.generated_at})
    aa = f"Access Advisor: report of {reports[-1]}" if reports else "Access Advisor: none ingested"
    return ct, aa


def _account_of(arn: str) -> str:
    parts = arn.split(":")
    return parts[4] if len(parts) > 5 else ""


def _advised(ev: PrincipalEvidence) -> list[AdvisedGrant]:
    """What generate-policy keeps from Access Advisor (its ``--evidence all``)."""
    return [
        AdvisedGrant(a.action, a.region, a.last_accessed, a.explain, a.denied_in_cloudtrail)
        for a in ev.access_advisor_actions(missing_from_cloudtrail=True)
    ]


# A refused call before grouping: (action, resource, kind, count, last seen, decision, reason, change)
_MissingRow = tuple[str, str | None, str, int, str, str, str, tuple[str, ...]]


@dataclass(slots=True)
class _Observed:
    """What the current policies say about each observed call (built by :func:`_judge_calls`)."""

    missing: list[_MissingRow] = field(default_factory=list)
    granted_on: dict[str, set[str]] = field(default_factory=dict)  # action → Allow patterns
    used_on: dict[str, set[str]] = field(default_factory=dict)  # action → resources named
    calls: dict[str, int] = field(default_factory=dict)
    conditional_on: dict[str, set[str]] = field(default_factory=dict)  # action → unlogged keys
    last_denied: dict[str, str] = field(default_factory=dict)


def _judge_used(
    obs: _Observed, arn: str, used_rows: Sequence[UsageRow], current: CurrentPolicies, granted: GrantedSet
) -> None:
    """Missing, and the Allow statements behind each observed call (for narrowing)."""
    by_name = {p.name: p for p in current.identity}
    for r in used_rows:
        evaluated = _evaluate(arn, r, current, granted)
        if evaluated is None:
            continue
        ev, unlogged = evaluated
        if not ev.allowed:
            obs.missing.append(
                (
                    r.action,
                    r.resource,
                    "not-allowed",
                    r.count,
                    r.last_seen,
                    str(ev.decision),
                    ev.reason,
                    _change(ev, current),
                )
            )
            continue
        for m in ev.statements:
            if m.effect is Effect.ALLOW and m.kind.value == "identity" and m.policy in by_name:
                obs.granted_on.setdefault(r.action, set()).update(_patterns(by_name[m.policy], m.index))
        if unlogged:
            obs.conditional_on.setdefault(r.action, set()).update(unlogged)
        if r.resource and r.resource != "*":
            obs.used_on.setdefault(r.action, set()).add(r.resource)
            obs.calls[r.action] = obs.calls.get(r.action, 0) + r.count
        elif unlogged:
            obs.calls[r.action] = obs.calls.get(r.action, 0) + r.count


def _judge_denied(
    obs: _Observed, arn: str, denied_rows: Sequence[UsageRow], current: CurrentPolicies, granted: GrantedSet
) -> None:
    """Each denied call, with what the current identity policies decide on it."""
    for r in denied_rows:
        obs.last_denied[r.action] = max(obs.last_denied.get(r.action, ""), r.last_seen)
        judged = _evaluate(arn, r, current, granted)
        verdict: tuple[str, str, tuple[str, ...]]
        if judged is None or judged[0].allowed:
            verdict = (
                "allowed",
                "the current identity policies allow it: the denial came from outside them "
                "(SCP, resource or session policy) or the policies changed since",
                (),
            )
        else:
            verdict = (str(judged[0].decision), judged[0].reason, _change(judged[0], current))
        obs.missing.append((r.action, r.resource, "denied", r.count, r.last_seen, *verdict))


def _unused(
    granted: GrantedSet, used: Sequence[str], evidence: PrincipalEvidence, last_denied: dict[str, str]
) -> list[UnusedAction]:
    """Granted actions not seen used, each with the evidence for calling it unused."""
    used_set = set(used)
    unused = []
    for g in granted.grants:
        if g.action in used_set:
            continue
        obs = evidence.classify(g.action)
        aa_last = obs.last_used if obs.evidence is Evidence.USED_ACCESS_ADVISOR else ""
        unused.append(
            UnusedAction(
                g.action,
                g.action.split(":")[0],
                catalog.access_level(g.action),
                catalog.risk_classes(g.action),
                last_denied.get(g.action) or aa_last or None,
                g.policy,
                g.conditional,
                obs,
            )
        )
    return unused


def _with_unproven(proposed: Proposed | None, unused: Sequence[UnusedAction]) -> Proposed | None:
    """The proposal, with the actions it removes without evidence of non-use named."""
    if proposed is None or not proposed.removes:
        return proposed
    removable = {u.action for u in unused if u.removable}
    unproven = tuple(a for a in proposed.removes if a not in removable)
    return Proposed(
        proposed.policies,
        proposed.granted,
        proposed.removes,
        proposed.removes_risky,
        proposed.adds,
        proposed.error,
        unproven,
    )


def _narrowing(obs: _Observed, generated: GeneratedPolicy | None) -> list[Narrowing]:
    """Used actions granted on patterns wider than the resources used, or only under unlogged keys."""
    narrowing = []
    for action in sorted(set(obs.used_on) | set(obs.conditional_on)):
        wide = sorted(p for p in obs.granted_on.get(action, ()) if _wide(p))
        keys = tuple(sorted(obs.conditional_on.get(action, ())))
        if not wide and not keys:
            continue
        prop: set[str] = set()
        if generated is not None:
            for ev_ in generated.statements:
                if action in ev_.actions:
                    prop.update(ev_.resources)
        narrowing.append(
            Narrowing(
                action,
                tuple(sorted(obs.granted_on.get(action, ()))),
                tuple(sorted(obs.used_on.get(action, ()))),
                obs.calls.get(action, 0),
                tuple(sorted(prop)),
                bool(keys),
                keys,
            )
        )
    return narrowing


def _grouped_missing(missing: Sequence[_MissingRow], evidence: PrincipalEvidence) -> tuple[Missing, ...]:
    """Refused calls of one action for one reason, their resources grouped."""
    grouped: dict[tuple[str, str, str, str, tuple[str, ...]], list[tuple[str | None, int, str]]] = {}
    for action, resource, kind, count, last, decision, reason, change in missing:
        grouped.setdefault((kind, action, decision, reason, change), []).append((resource, count, last))
    return tuple(
        Missing(
            action,
            tuple(sorted({r or "(unknown)" for r, _, _ in items})),
            kind,
            sum(c for _, c, _ in items),
            max(t for _, _, t in items),
            decision,
            reason,
            change,
            _missing_note(evidence, action) if kind == "denied" else "",
        )
        for (kind, action, decision, reason, change), items in sorted(grouped.items())
    )


def diff_principal(
    principal: Principal,
    rows: Sequence[UsageRow],
    current: CurrentPolicies,
    options: SynthOptions | None = None,
    propose: bool = True,
    evidence: PrincipalEvidence | None = None,
    profiles: ProfileRoles | None = None,
) -> Diff:
    """The diff of *current* against *rows*. *evidence* (``evidence.for_principal(store, arn)``)
    says which unused actions are safe to remove; without it none is (nothing was observable).
    *profiles*: which role each instance profile held (the proposal's iam:PassRole through one)."""
    arn = principal.arn
    ev_known = evidence is not None
    evidence = evidence if evidence is not None else evidence_from_rows(arn, rows)
    granted = granted_actions(current, arn)
    # iam:PassRole through an instance profile names the profile, not the role AWS checked: judged
    # as a call on an unknown resource (synth/passrole.py resolves it for the proposal).
    judged = [
        replace(r, resource=None) if r.action == PASS_ROLE and instance_profile_of(r.resource) else r
        for r in rows
    ]
    used_rows = [r for r in judged if r.outcome is Outcome.USED]
    denied_rows = [r for r in judged if r.outcome is Outcome.DENIED]
    used = tuple(sorted({r.action for r in used_rows}))

    observed = _Observed()
    _judge_used(observed, arn, used_rows, current, granted)
    _judge_denied(observed, arn, denied_rows, current, granted)
    unused = _unused(granted, used, evidence, observed.last_denied)

    advised = _advised(evidence) if ev_known else []
    proposed, generated = (
        _proposal(principal, rows, current, granted, options, advised, profiles) if propose else (None, None)
    )
    proposed = _with_unproven(proposed, unused)
    narrowing = _narrowing(observed, generated)
    missing_out = _grouped_missing(observed.missing, evidence)
    findings = _findings(arn, unused, narrowing, missing_out, granted)
    return Diff(
        principal=arn,
        current=current.names,
        granted=len(granted.grants),
        used=used,
        unused=tuple(unused),
        narrowing=tuple(narrowing),
        missing=missing_out,
        proposed=proposed,
        unknown_patterns=granted.unknown_patterns,
        findings=findings,
        catalog=catalog.catalog_version(),
        basis=_basis(evidence),
        caveats=tuple(sorted({c for u in unused for c in u.evidence.caveats})),
    )


def diff_stored_principal(
    store: Store,
    name: str,
    window: TimeWindow,
    policies_of: Callable[[str], CurrentPolicies],
    *,
    policies_name_principal: bool,
) -> Diff:
    """The diff of the principal *name* names: its usage in *store* over *window* against
    ``policies_of(arn or name)``, with the store's evidence of what could have been seen.

    A principal the usage data does not know (no call in the window, or none ever) is still
    diffed when its policies come from where principals are named (``--authz``, ``--from-aws``:
    *policies_name_principal*): they resolve the name, and everything they grant is unused.
    Policy documents alone (``--current``) name nobody, so there the usage data must know it.
    """
    p: Principal | None
    stored: list[UsageRow] | None = None  # the rows read, when the store knows the principal
    try:
        p = resolve_principal_name(store, name)
        rows = stored = store.usage(p.arn, window)
    except PrincipalError:
        if not policies_name_principal:
            raise
        p, rows = None, []
    policies = policies_of(p.arn if p else name)
    p = p or principal_for(policies.principal)
    # What the store could have shown (coverage, Access Advisor): only evidence of non-use
    # makes an unused entry safe to remove. --events records coverage from its files too.
    return diff_principal(
        p,
        rows,
        policies,
        evidence=for_principal(store, p.arn, window=window, rows=stored),
        profiles=ProfileRoles(store.profile_changes()),
    )


def _missing_note(ev: PrincipalEvidence, action: str) -> str:
    """Access Advisor counts denied attempts as access: a denied call it reports as accessed."""
    obs = ev.classify(action)
    if obs.evidence is Evidence.USED_ACCESS_ADVISOR and obs.denied_only:
        return (
            f"Access Advisor reports it accessed ({obs.last_used}), but CloudTrail shows only denied "
            "attempts: Access Advisor counts denials as access"
        )
    return ""


def _proposal(
    principal: Principal,
    rows: Sequence[UsageRow],
    current: CurrentPolicies,
    granted: GrantedSet,
    options: SynthOptions | None,
    advised: Sequence[AdvisedGrant] = (),
    profiles: ProfileRoles | None = None,
) -> tuple[Proposed, GeneratedPolicy | None]:
    try:
        generated = generate_identity_policy(principal, rows, options, advised, profiles)
    except IamtrimError as exc:
        return Proposed((), 0, (), (), (), error=str(exc)), None
    docs = tuple(p.policy for p in generated.policies)
    # The proposal replaces the identity policies; the boundary stays.
    theirs = granted_actions(CurrentPolicies(principal.arn, docs, current.boundary), principal.arn).actions
    ours = granted.actions
    removes = tuple(sorted(ours - theirs))
    return Proposed(
        policies=docs,
        granted=len(theirs),
        removes=removes,
        removes_risky=tuple(a for a in removes if catalog.risk_classes(a)),
        adds=tuple(sorted(theirs - ours)),
    ), generated


def _findings(
    arn: str,
    unused: Sequence[UnusedAction],
    narrowing: Sequence[Narrowing],
    missing: Sequence[Missing],
    granted: GrantedSet,
) -> tuple[Finding, ...]:
    out: list[Finding] = []
    for u in unused:
        obs = u.evidence
        if u.removable and u.risk:
            out.append(
                Finding(
                    "UNUSED_RISKY_ACTION",
                    u.action,
                    f"{', '.join(u.risk)}; granted by {u.granted_by}, not used since {obs.since}",
                )
            )
        elif obs.evidence is Evidence.USED_ACCESS_ADVISOR:
            out.append(
                Finding("USED_PER_ACCESS_ADVISOR", u.action, f"granted by {u.granted_by}; {obs.detail}")
            )
        elif not u.removable and u.risk:
            out.append(
                Finding(
                    "UNUSED_UNPROVEN",
                    u.action,
                    f"{', '.join(u.risk)}; granted by {u.granted_by}; {class_label(obs)}: {obs.detail}",
                )
            )
        if obs.denied_only:
            out.append(Finding("ACCESS_ADVISOR_DENIED_ONLY", u.action, obs.detail))
    plain = [u for u in unused if u.removable and not u.risk]
    if plain:
        since = max(u.evidence.since for u in plain)
        out.append(
            Finding(
                "UNUSED_ACTIONS",
                arn,
                f"{len(plain)} granted actions without a risk class not used since {since}",
            )
        )
    unproven: dict[str, int] = {}
    for u in unused:
        if not u.removable and not u.risk and u.evidence.evidence is not Evidence.USED_ACCESS_ADVISOR:
            label = class_label(u.evidence)
            unproven[label] = unproven.get(label, 0) + 1
    for label, count in unproven.items():
        out.append(
            Finding(
                "UNUSED_UNPROVEN",
                arn,
                f"{count} granted actions without a risk class not seen used, but {label}: "
                "review before removing",
                target=label,  # one finding per class; the count is in the message
            )
        )
    for n in narrowing:
        if n.conditional:
            out.append(
                Finding(
                    "UNLOGGED_CONDITIONS",
                    n.action,
                    f"allowed only under {', '.join(n.condition_keys)}, which CloudTrail does not "
                    "record; the proposal grants it without them",
                )
            )
        if any(_wide(p) for p in n.granted_on):
            out.append(
                Finding(
                    "RESOURCE_NARROWING",
                    n.action,
                    f"granted on {', '.join(n.granted_on)}; used on {len(n.used_on)} resource(s)",
                )
            )
    for m in missing:
        code = "DENIED_CALL" if m.kind == "denied" else "CALL_NOT_ALLOWED"
        out.append(
            Finding(
                code,
                m.action,
                f"{len(m.resources)} resource(s), {m.count} call(s): {m.reason}; "
                f"change: {', '.join(m.change) or '-'}",
                target=f"{m.action} {m.decision}",
            )
        )
        if m.note:
            out.append(Finding("ACCESS_ADVISOR_DENIED_ONLY", m.action, m.note))
    for p in granted.unknown_patterns:
        out.append(Finding("UNKNOWN_ACTION_PATTERN", p, "matches no action in the catalog (newer than it?)"))
    return tuple(sorted(replace(f, principal=arn) for f in out))
