"""Which actions do a principal's current policies grant? Decided by meaning, through the evaluator.

Text comparison gets this wrong: ``NotAction`` grants everything *but* the listed actions, a
``Deny`` takes actions away, a permissions boundary intersects, and a statement scoped to
``arn:aws:s3:::bucket/*`` grants ``s3:GetObject`` but not ``s3:CreateBucket`` even though its
``Action`` is ``s3:*``. So every candidate action is put to iamtrim's IAM evaluator as concrete
*probe* requests.

**The rule.** Action A is *granted* when at least one probe request for A is ``Allowed``:

1. Candidates: the catalog actions that some identity ``Allow`` statement S covers (its ``Action``
   patterns expanded through the catalog, or every catalog action minus its ``NotAction``
   patterns), intersected with what the boundary's ``Allow`` statements cover, when there is one.
2. For each such S — paired with each boundary ``Allow`` statement B that covers A — one probe per
   resource type of A: an ARN of that type (from the catalog's ARN template) built to fall inside
   S's and B's ``Resource`` patterns (partition, region and account of the principal; ``*`` and
   ``?`` in a pattern filled with ``x``; policy variables from the request context). Actions
   without resource types are probed on ``"*"``. One allowed
   resource type is enough: the catalog marks alternatives (``states:DescribeExecution`` on an
   ``execution`` *or* an ``express`` execution) and co-requisites (``ec2:RunInstances`` needs its
   image, subnet, ... all allowed) the same way, so the two cannot be told apart.
3. The probe's context satisfies S's and B's conditions (values chosen per condition key and
   checked with the evaluator itself). If an explicit ``Deny`` with conditions refuses the probe,
   a key that the ``Allow`` does not constrain is changed so that one of the ``Deny``'s conditions
   is false, and the probe is retried (at most four times): a ``Deny ... unless aws:SourceVpce``
   then still leaves the action granted, through that endpoint.
4. KMS keys and roles in the account are probed with a default key / trust policy that delegates
   to IAM (as replays do), so identity policies count for them.

Every reported grant is therefore backed by one request that the evaluator allows (``witness``).
The search is not exhaustive: a grant that only some unusual resource name or context value
reaches may be missed (an under-report, never an over-report).
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from iamtrim import catalog
from iamtrim.evaluate import Decision, Evaluation, Request, evaluate
from iamtrim.model.policy import Condition, Effect, Policy, Statement
from iamtrim.review.current import CurrentPolicies
from iamtrim.verify import account_trust_policy

__all__ = [
    "Grant",
    "GrantedSet",
    "allowed_under_unlogged_keys",
    "allowed_with_unlogged_keys",
    "granted_actions",
    "statement_actions",
]

_DEFAULT_REGION = "us-east-1"
_OTHER = "iamtrim-other"
_MAX_DENY_ROUNDS = 4
_VAR_RX = re.compile(r"\$\{([^}]*)\}")


@dataclass(frozen=True, slots=True)
class Grant:
    """One granted action, with the request that proves it."""

    action: str
    policy: str  # the identity policy whose Allow let the probe through
    sid: str
    resource: str  # the probe's resource
    context: tuple[tuple[str, tuple[str, ...]], ...]  # the probe's context
    conditional: bool  # the granting statement has conditions


@dataclass(frozen=True, slots=True)
class GrantedSet:
    grants: tuple[Grant, ...]  # sorted by action
    unknown_patterns: tuple[str, ...]  # Allow Action patterns that match no catalog action
    removed: tuple[tuple[str, str], ...]  # (action, why): covered by an Allow but never allowed

    @property
    def actions(self) -> frozenset[str]:
        return frozenset(g.action for g in self.grants)

    def grant(self, action: str) -> Grant | None:
        for g in self.grants:
            if g.action == action:
                return g
        return None


@functools.cache
def statement_actions(statement: Statement) -> frozenset[str]:
    """The catalog actions a statement's ``Action`` / ``NotAction`` covers."""
    if statement.actions:
        return frozenset().union(*(catalog.expand_action_pattern(p) for p in statement.actions))
    excluded = frozenset().union(*(catalog.expand_action_pattern(p) for p in statement.not_actions))
    return frozenset(catalog.all_actions()) - excluded


def _unknown_patterns(policies: Iterable[Policy]) -> tuple[str, ...]:
    out: set[str] = set()
    for p in policies:
        for st in p.statements:
            if st.effect is Effect.ALLOW:
                out.update(a for a in st.actions if not catalog.expand_action_pattern(a))
    return tuple(sorted(out))


# ---------------------------------------------------------------------------------------------
# Context


@dataclass(frozen=True, slots=True)
class _Caller:
    arn: str
    partition: str
    account: str
    base: tuple[tuple[str, str], ...]  # keys a policy variable may name that AWS always sets


def _caller(principal_arn: str) -> _Caller:
    parts = principal_arn.split(":", 5)
    partition = parts[1] if len(parts) == 6 else "aws"
    account = parts[4] if len(parts) == 6 else ""
    base = {"aws:principalarn": principal_arn, "aws:principalaccount": account}
    if len(parts) == 6 and parts[5].startswith("user/"):
        base["aws:username"] = parts[5].rsplit("/", 1)[-1]
    return _Caller(principal_arn, partition, account, tuple(sorted(base.items())))


_Ctx = dict[str, tuple[str, ...]]


def _substitute(text: str, ctx: _Ctx, caller: _Caller) -> str:
    """Replace policy variables with values from *ctx* (pinning unknown keys to ``x`` in *ctx*)."""
    base = dict(caller.base)

    def one(m: re.Match[str]) -> str:
        inner = m.group(1)
        if inner in ("*", "?", "$"):
            return inner
        name, _, default = inner.partition(",")
        key = name.strip().lower()
        if key in ctx and len(ctx[key]) == 1:
            return ctx[key][0]
        if key in base:
            return base[key]
        dflt = default.strip()
        if len(dflt) >= 2 and dflt[0] == dflt[-1] == "'":
            return dflt[1:-1]
        ctx[key] = ("x",)
        return "x"

    return _VAR_RX.sub(one, text)


@functools.cache
def _probe_policy(conditions: tuple[Condition, ...]) -> Policy:
    return Policy(
        (Statement(Effect.ALLOW, actions=("*",), resources=("*",), conditions=conditions),),
        name="iamtrim-condition-probe",
    )


def _holds(conditions: tuple[Condition, ...], ctx: _Ctx, caller: _Caller) -> bool:
    """Whether all *conditions* are true in *ctx*, as the evaluator decides it."""
    request = Request(caller.arn, "iamtrim:ConditionProbe", "*", tuple(sorted(ctx.items())))
    return evaluate(request, [_probe_policy(conditions)]).allowed


def _value_candidates(
    conditions: Sequence[Condition], ctx: _Ctx, caller: _Caller
) -> list[tuple[str, ...] | None]:
    out: list[tuple[str, ...] | None] = [None]
    for c in conditions:
        for raw in c.values:
            v = _substitute(raw, ctx, caller)
            out += [(v,), (v.replace("*", "x").replace("?", "x"),)]
            try:
                n = float(v)
                out += [(_num(n - 1),), (_num(n + 1),)]
            except ValueError:
                pass
            try:
                d = datetime.fromisoformat(v.replace("Z", "+00:00"))
                out += [((d - timedelta(days=1)).isoformat(),), ((d + timedelta(days=1)).isoformat(),)]
            except ValueError:
                pass
            try:
                net = ipaddress.ip_network(v, strict=False)
                out.append((str(net.network_address),))
            except ValueError:
                pass
    out += [("true",), ("false",), (_OTHER,), ("192.0.2.1",), ("203.0.113.254",), ("2001:db8::1",)]
    return list(dict.fromkeys(out))


def _num(n: float) -> str:
    return str(int(n)) if n == int(n) else str(n)


def _satisfy(conditions: Sequence[Condition], ctx: _Ctx, caller: _Caller) -> set[str]:
    """Set keys in *ctx* so that every condition holds (best effort); returns the keys it pinned."""
    by_key: dict[str, list[Condition]] = {}
    for c in conditions:
        by_key.setdefault(c.key.lower(), []).append(c)
    pinned: set[str] = set()
    for key, conds in sorted(by_key.items()):
        group = tuple(conds)
        if _holds(group, ctx, caller):
            pinned.add(key)
            continue
        for cand in _value_candidates(conds, ctx, caller):
            trial = dict(ctx)
            if cand is None:
                trial.pop(key, None)
            else:
                trial[key] = cand
            if _holds(group, trial, caller):
                ctx.clear()
                ctx.update(trial)
                break
        pinned.add(key)
    return pinned


def _falsify(conditions: Sequence[Condition], ctx: _Ctx, pinned: set[str], caller: _Caller) -> bool:
    """Change one unpinned key so that one of *conditions* (AND'ed: one false is enough) is false."""
    for c in conditions:
        key = c.key.lower()
        if key in pinned:
            continue
        for cand in _value_candidates([c], ctx, caller):
            trial = dict(ctx)
            if cand is None:
                trial.pop(key, None)
            else:
                trial[key] = cand
            if not _holds((c,), trial, caller):
                ctx.clear()
                ctx.update(trial)
                pinned.add(key)
                return True
    return False


# ---------------------------------------------------------------------------------------------
# Resources


def _fill_template(template: str, caller: _Caller, region: str) -> str:
    values = {
        "Partition": caller.partition,
        "Region": region,
        "Account": caller.account,
        "AccountId": caller.account,
    }
    return re.sub(r"\$\{([^}]+)\}", lambda m: values.get(m.group(1), "x"), template)


def _concretize(pattern: str, caller: _Caller, region: str, filler: str) -> str:
    """One ARN inside *pattern*: wildcards filled segment by segment."""
    if not pattern.startswith("arn:"):
        return pattern.replace("*", filler).replace("?", "x")
    parts = pattern.split(":", 5)
    while len(parts) < 6:
        parts.append("*")
    fixed = {1: caller.partition, 3: region, 4: caller.account}
    out = []
    for i, seg in enumerate(parts):
        if i in fixed and ("*" in seg or "?" in seg):
            rx = re.compile(re.escape(seg).replace(r"\*", ".*").replace(r"\?", "."))
            seg = fixed[i] if rx.fullmatch(fixed[i]) else seg.replace("*", "").replace("?", "0")
        elif i == 5:
            seg = seg.replace("*", filler).replace("?", "x")
        else:
            seg = seg.replace("*", "x").replace("?", "x")
        out.append(seg)
    return ":".join(out)


def _resource_candidates(
    action: str, template: str | None, statements: Sequence[Statement | None], ctx: _Ctx, caller: _Caller
) -> list[str]:
    """Probe resources for one resource type of *action* (``None``: the action takes ``"*"``)."""
    if template is None:
        return ["*"]
    region = _DEFAULT_REGION
    filled = _fill_template(template, caller, region)
    cands = [filled]
    # A "*" may have to stand for the rest of the template ("log-group:/aws/x/*" holds log
    # streams, "log-group:NAME:log-stream:x"): try the template's tails after each separator.
    tail = filled.split(":", 5)[5] if filled.count(":") >= 5 else filled
    fillers = ["x", "x/x", "x:x"] + ["x" + tail[i:] for i, ch in enumerate(tail) if ch in ":/"]
    for st in statements:
        if st is None:
            continue
        for pattern in st.resources:
            if pattern == "*":
                continue
            text = _substitute(pattern, ctx, caller)
            for filler in dict.fromkeys(fillers):
                cands.append(_concretize(text, caller, region, filler))
    out = [c for c in dict.fromkeys(cands) if catalog.arn_matches_template(c, template)]
    return out


# ---------------------------------------------------------------------------------------------
# Probing


@dataclass(frozen=True, slots=True)
class _Located:
    policy: Policy
    statement: Statement


def _deny_conditions(ev: Evaluation, current: CurrentPolicies) -> list[tuple[Condition, ...]]:
    by_name = {p.name: p for p in current.identity}
    if current.boundary is not None:
        by_name[current.boundary.name] = current.boundary
    out = []
    for m in ev.statements:
        if m.effect is Effect.DENY and m.policy in by_name:
            out.append(by_name[m.policy].statements[m.index].conditions)
    return out


def _run(action: str, resource: str, ctx: _Ctx, current: CurrentPolicies, caller: _Caller) -> Evaluation:
    request = Request(caller.arn, action, resource, tuple(sorted(ctx.items())))
    return evaluate(
        request,
        current.identity,
        boundary=current.boundary,
        resource_policy=account_trust_policy(resource, caller.account),
    )


def _probe_type(
    action: str,
    template: str | None,
    allow: _Located,
    bound: _Located | None,
    current: CurrentPolicies,
    caller: _Caller,
) -> tuple[str, _Ctx, Evaluation] | None:
    ctx: _Ctx = {}
    pinned = _satisfy(allow.statement.conditions + (bound.statement.conditions if bound else ()), ctx, caller)
    stmts = [allow.statement, bound.statement if bound else None]
    last: Evaluation | None = None
    for resource in _resource_candidates(action, template, stmts, ctx, caller):
        for _ in range(_MAX_DENY_ROUNDS + 1):
            ev = _run(action, resource, ctx, current, caller)
            last = ev
            if ev.allowed:
                return resource, ctx, ev
            if ev.decision is not Decision.EXPLICIT_DENY:
                break
            denies = _deny_conditions(ev, current)
            if not denies or not any(d and _falsify(d, ctx, pinned, caller) for d in denies):
                break
    del last
    return None


def _probe(
    action: str, allow: _Located, bound: _Located | None, current: CurrentPolicies, caller: _Caller
) -> Grant | None:
    types = catalog.resource_types(action)
    # Actions without resource types are authorized on "*"; the others always name a resource of
    # one of their types (the catalog's "required" flag does not say otherwise: s3:GetObject's
    # object and access-point types are both optional, yet every GetObject names one).
    templates: list[str | None] = [rt.arn_template for rt in types] or [None]
    hit = None
    for template in templates:
        hit = _probe_type(action, template, allow, bound, current, caller)
        if hit is not None:
            break
    if hit is None:
        return None
    resource, ctx, ev = hit
    policy, sid = allow.policy.name, allow.statement.sid
    for m in ev.statements:
        if m.effect is Effect.ALLOW and m.kind.value == "identity":
            policy, sid = m.policy, m.sid
            break
    return Grant(action, policy, sid, resource, tuple(sorted(ctx.items())), bool(allow.statement.conditions))


def granted_actions(current: CurrentPolicies, principal_arn: str = "") -> GrantedSet:
    """The catalog actions *current* grants to *principal_arn* (see the module docstring)."""
    caller = _caller(principal_arn or current.principal or "arn:aws:iam::123456789012:role/iamtrim-probe")
    allows = [_Located(p, st) for p in current.identity for st in p.statements if st.effect is Effect.ALLOW]
    bounds = []
    if current.boundary is not None:
        bounds = [
            _Located(current.boundary, st) for st in current.boundary.statements if st.effect is Effect.ALLOW
        ]
    candidates: set[str] = set()
    for loc in allows:
        candidates |= statement_actions(loc.statement)
    if current.boundary is not None:
        covered: set[str] = set()
        for loc in bounds:
            covered |= statement_actions(loc.statement)
        candidates &= covered
    grants: list[Grant] = []
    removed: list[tuple[str, str]] = []
    for action in sorted(candidates):
        grant = None
        for allow in (a for a in allows if action in statement_actions(a.statement)):
            pairs: list[_Located | None] = [None]
            if current.boundary is not None:
                pairs = [b for b in bounds if action in statement_actions(b.statement)]
            for bound in pairs:
                grant = _probe(action, allow, bound, current, caller)
                if grant:
                    break
            if grant:
                break
        if grant:
            grants.append(grant)
        else:
            removed.append((action, _why_not(action, current, caller)))
    return GrantedSet(tuple(grants), _unknown_patterns(current.identity), tuple(removed))


def _why_not(action: str, current: CurrentPolicies, caller: _Caller) -> str:
    types = catalog.resource_types(action)
    resource = _fill_template(types[0].arn_template, caller, _DEFAULT_REGION) if types else "*"
    ev = _run(action, resource, {}, current, caller)
    if ev.decision is Decision.EXPLICIT_DENY:
        names = sorted({m.policy for m in ev.statements if m.effect is Effect.DENY})
        return "explicit deny in " + ", ".join(names)
    if ev.reason == "no statement allows":
        return "no Allow reaches a resource this action takes"
    return ev.reason


def allowed_with_unlogged_keys(request: Request, current: CurrentPolicies) -> Evaluation | None:
    """Replay an observed call whose record lacks condition keys the policies test.

    CloudTrail does not log every key a policy may test (``iam:PassedToService`` for the
    ``iam:PassRole`` a ``sagemaker:CreateTrainingJob`` implies, tag keys, ...). Keys the request
    carries keep their values; keys it lacks are chosen, per covering Allow, to satisfy that Allow's
    conditions. Returns the allowing evaluation, or ``None`` when no choice lets the call through.
    """
    found = allowed_under_unlogged_keys(request, current)
    return found[0] if found is not None else None


def allowed_under_unlogged_keys(
    request: Request, current: CurrentPolicies
) -> tuple[Evaluation, tuple[str, ...]] | None:
    """:func:`allowed_with_unlogged_keys`, with the condition keys the allowing statement tests
    that the record does not carry (``s3:ExistingObjectTag/team``, ``aws:ResourceTag/env``):
    the call was let in only if those held, which the trail cannot show."""
    caller = _caller(request.principal_arn)
    observed = {k.lower() for k, _ in request.context}
    for policy in current.identity:
        for st in policy.statements:
            if st.effect is not Effect.ALLOW or request.action not in statement_actions(st):
                continue
            unlogged = tuple(c for c in st.conditions if c.key.lower() not in observed)
            if not unlogged:
                continue
            ctx: _Ctx = {k.lower(): v for k, v in request.context}
            _satisfy(unlogged, ctx, caller)
            ev = evaluate(
                Request(
                    request.principal_arn,
                    request.action,
                    request.resource,
                    tuple(sorted(ctx.items())),
                    request.resource_account,
                ),
                current.identity,
                boundary=current.boundary,
                resource_policy=account_trust_policy(request.resource, caller.account),
            )
            if ev.allowed:
                return ev, tuple(sorted({c.key for c in unlogged}))
    return None
