"""Identity policies from observed usage: the smallest policy that still allows every seen call.

Rules (docs/commands/generate-policy.md):
* only calls that passed authorization are granted; denied attempts are listed, never added;
* resources are the ARNs seen; ``"*"`` only for actions the catalog says take no resource;
  an unknown resource is scoped to the action's ARN format with account and region filled in;
* S3 object keys are generalized to ``folder/*`` where a folder holds more than ``prefix_threshold``
  entries, never over a key only ever denied (the folder's allowed parts are granted instead);
* conditions come only from evidence: ``aws:SourceVpce`` on S3 statements whose every call came
  through VPC endpoints, ``kms:ViaService`` on KMS statements whose every call a service made on
  the principal's behalf;
* statements group actions sharing resources and conditions; a wildcard action is written only
  when it expands today to actions all in the statement;
* names that differ only in a generated part (date, counter, uuid, hex) get the closed pattern
  (``generated-names``);
* the output fits ``max_policies`` managed policies (default one), widened by the least the ladder
  of :mod:`iamtrim.synth.widen` allows; ``widen=False`` splits only, and refuses past the limit;
* every observed call is replayed through the evaluator before anything is returned.
"""

from __future__ import annotations

import bisect
import heapq
import json
import re
from bisect import bisect_left
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from itertools import chain
from operator import attrgetter
from typing import Protocol

from iamtrim import catalog
from iamtrim.errors import PrincipalError, SynthError
from iamtrim.evaluate import evaluate
from iamtrim.keysketch import KeySketch, ObservedKeys
from iamtrim.model import (
    Outcome,
    Principal,
    PrincipalKind,
    UsageRow,
    has_escaped,
    has_wildcard,
    is_s3_object_arn,
    literal_of,
    overlap_witness,
    pattern_covers,
)
from iamtrim.model.finding import Finding
from iamtrim.model.policy import Condition, Effect, Policy, Statement
from iamtrim.model.profile import ProfileRoles
from iamtrim.synth.limits import (
    MANAGED_POLICIES_PER_ENTITY,
    NamedPolicy,
    Packing,
    PackMemo,
    Target,
    pack,
    plan,
)
from iamtrim.synth.minimize import (
    action_wildcards,
    created_resource_patterns,
    creates_resources,
    generalize_by_template,
    generalize_object_arns,
    has_created_patterns,
)
from iamtrim.synth.passrole import PASS_ROLE, ProfilePass, resolve_instance_profiles
from iamtrim.synth.widen import (
    LADDER,
    MERGE_KINDS,
    Candidate,
    LadderMemo,
    PatternIndex,
    StatementShape,
    Widening,
    WideningKind,
    candidates,
    choose,
    generated_name_patterns,
    glob_matches,
)
from iamtrim.verify import account_trust_policy, replay, request_for, via_service


class EvidenceSource(StrEnum):
    CLOUDTRAIL = "cloudtrail"


@dataclass(frozen=True, slots=True)
class SynthOptions:
    conditions: bool = True
    prefix_threshold: int = 10
    target: Target = Target.MANAGED
    wildcards: bool = True
    # None: one managed policy when widening, IAM's default attachment quota (10) without.
    max_policies: int | None = None
    widen: bool = True

    @property
    def policy_limit(self) -> int:
        if self.max_policies is not None:
            return self.max_policies
        return 1 if self.widen else MANAGED_POLICIES_PER_ENTITY


@dataclass(frozen=True, slots=True)
class AdvisedGrant:
    """An action Access Advisor (action level) shows attempted that CloudTrail does not show used.

    ``denied_only``: CloudTrail shows only denied attempts of it, and Access Advisor counts denied
    attempts as access — such an action is reported, never granted.
    https://docs.aws.amazon.com/IAM/latest/UserGuide/access_policies_last-accessed.html
    """

    action: str
    region: str
    last_accessed: str
    note: str
    denied_only: bool = False


class AdvisorAction(Protocol):
    """What synth reads of an Access Advisor action (``evidence.AdvisedAction``)."""

    @property
    def action(self) -> str: ...
    @property
    def region(self) -> str: ...
    @property
    def last_accessed(self) -> str: ...
    @property
    def explain(self) -> str: ...
    @property
    def denied_in_cloudtrail(self) -> bool: ...


class AdvisorEvidence(Protocol):
    """What synth reads of a principal's evidence (``evidence.PrincipalEvidence``): synth does
    not import the evidence stage, which reads the store."""

    def access_advisor_actions(self, *, missing_from_cloudtrail: bool = False) -> Sequence[AdvisorAction]: ...


def advised_grants(evidence: AdvisorEvidence) -> list[AdvisedGrant]:
    """What ``generate-policy --evidence all`` takes from Access Advisor: the actions it shows
    attempted that CloudTrail does not show used (used before the trail's window, or never
    logged), each with the sentence that explains it; those CloudTrail shows only denied are
    marked ``denied_only`` and reported, never granted."""
    return [
        AdvisedGrant(a.action, a.region, a.last_accessed, a.explain, a.denied_in_cloudtrail)
        for a in evidence.access_advisor_actions(missing_from_cloudtrail=True)
    ]


@dataclass(frozen=True, slots=True)
class StatementEvidence:
    sid: str
    actions: tuple[str, ...]
    resources: tuple[str, ...]
    conditions: tuple[Condition, ...]
    calls: int
    first_seen: str
    last_seen: str
    event_ids: tuple[str, ...]
    widened_by: tuple[Widening, ...]


@dataclass(frozen=True, slots=True)
class GeneratedPolicy:
    principal: Principal
    policies: tuple[NamedPolicy, ...]
    statements: tuple[StatementEvidence, ...]
    denied: tuple[UsageRow, ...]
    findings: tuple[Finding, ...]
    replayed: int
    # Every widening the policy has, once per (kind, pattern): the rules' (generated names,
    # object prefixes, created and unnamed resources, store folds, action wildcards, ...), then
    # the ladder steps taken to fit the size limits, in the order taken.
    widenings: tuple[Widening, ...] = ()
    max_policies: int = 1
    # The calls those replayed (action, resource, context) combinations stand for: a store keeps
    # one row per combination with its count, and each row is replayed once.
    replayed_calls: int = 0


def _format_pattern(template: str, region: str, account: str, partition: str) -> str:
    text = template.replace("${Partition}", partition).replace("${Region}", region or "*")
    text = text.replace("${Account}", account or "*").replace("${AccountId}", account or "*")
    text = re.sub(r"\$\{[^}]+\}", "*", text)
    return re.sub(r"\*+", "*", text)


def _unknown_pattern(action: str, region: str, account: str, partition: str) -> tuple[str, ...]:
    """The narrowest patterns the action's ARN formats allow when the resource is unknown."""
    types = catalog.resource_types(action)
    required = [rt for rt in types if rt.required] or list(types)
    out = {_format_pattern(rt.arn_template, region, account, partition) for rt in required}
    # A pattern another one covers adds nothing (API Gateway's ``…::*`` covers ``…::/apis/*``):
    # q covers p when q, read as a pattern, matches p's text (formats have no literal "*").
    covering = {q: re.compile(re.escape(q).replace(r"\*", ".*") + r"\Z") for q in out}
    out = {p for p in out if not any(q != p and rx.match(p) for q, rx in covering.items())}
    return tuple(sorted(out)) or ("*",)


def _account_any_if_aws_owned(resource: str) -> str:
    """``arn:aws:ssm:r::document/AWS-…`` → ``arn:aws:ssm:r:*:document/AWS-…``.

    SSM documents and public parameters AWS owns have no account in their ARN, and their names
    use prefixes customers cannot create (``AWS``, ``Amazon``, ``/aws/``), so ``*`` in the account
    field matches only them — and also matches tools that write the caller's account into the
    ARN. https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_CreateDocument.html
    """
    parts = resource.split(":", 5)
    if len(parts) == 6 and parts[2] == "ssm" and parts[4] == "" and parts[3]:
        return ":".join([*parts[:4], "*", parts[5]])
    return resource


def _conditions(action: str, rows: Sequence[UsageRow], enabled: bool) -> tuple[Condition, ...]:
    if not enabled:
        return ()
    if action.startswith("s3:"):
        endpoints = {r.context.vpc_endpoint for r in rows}
        if endpoints and "" not in endpoints:
            return (Condition("StringEquals", "aws:SourceVpce", tuple(sorted(endpoints))),)
    elif action.startswith("kms:"):
        services = {
            via_service(r.context.invoked_by, r.context.region) if r.context.invoked_by else "" for r in rows
        }
        if services and "" not in services:
            return (Condition("StringEquals", "kms:ViaService", tuple(sorted(services))),)
    return ()


_LEVEL_SHORT = {
    "List": "List",
    "Read": "Read",
    "Write": "Write",
    "Tagging": "Tag",
    "Permissions management": "Perm",
}
_LEVEL_RANK = ["List", "Read", "Tagging", "Write", "Permissions management"]
_SID_MAX = 64


def _camel(text: str) -> str:
    return "".join(p[:1].upper() + p[1:] for p in re.split(r"[^A-Za-z0-9]+", text) if p)


def _resource_hint(action: str, resource: str) -> str:
    """A short readable name for a resource: the bucket, ``Key1a2b3c4d``, the function, the log group."""
    if resource == "*" or not resource.startswith("arn:"):
        return ""
    parts = resource.split(":", 5)
    if len(parts) < 6:
        return ""
    service, rest = parts[2], parts[5]
    if service == "s3":
        return _camel(rest.split("/", 1)[0])
    if service == "kms" and rest.startswith("key/"):
        return "Key" + _camel(rest[4:12])
    rt = catalog.resource_type_for_arn(action, resource)
    values = catalog.arn_variables(rt.arn_template, resource) if rt is not None else None
    if rt is not None and values is not None:
        named = [
            v
            for n, v in values
            if n not in ("Partition", "Region", "Account", "AccountId") and "*" not in v and "?" not in v
        ]
        if not named:
            return "Any" + _camel(rt.name)
        segments = [seg for seg in re.split(r"[/:]", named[-1]) if seg]
        return _camel(segments[-1] if segments else named[-1])[:24]
    segments = [seg for seg in re.split(r"[/:]", rest) if seg and "*" not in seg and "?" not in seg]
    return _camel(segments[-1])[:24] if segments else ""


def _sid(actions: Sequence[str], resources: Sequence[str], conditions: Sequence[Condition]) -> str:
    """A readable Sid derived from content: service, action(s), resource, condition.

    ``S3GetObjectAcmeMlDatasetsVpce``, ``KmsDecryptKey1a2b3c4dViaS3``, ``EcrWrite5Actions...``.
    Sids must be alphanumeric (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_sid.html);
    clashes get a numeric suffix in :func:`_unique_sids`.
    """
    services = sorted({a.split(":")[0] for a in actions})
    name = "".join(_camel(svc) for svc in services[:2]) + ("AndMore" if len(services) > 2 else "")
    names = [a.split(":", 1)[1].replace("*", "") for a in actions]
    if len(actions) <= 2:
        verb = "".join(_camel(n) for n in names)
    else:
        levels = [catalog.access_level(a) for a in actions if "*" not in a]
        top = max(levels, key=lambda lv: _LEVEL_RANK.index(lv) if lv in _LEVEL_RANK else -1) if levels else ""
        verb = f"{_LEVEL_SHORT.get(top, 'Use')}{len(actions)}Actions"
    hint = _resource_hint(actions[0], resources[0]) if resources and "*" not in actions[0] else ""
    if len(resources) > 1:
        hint += f"And{len(resources) - 1}More"
    cond = ""
    for c in conditions:
        if c.key == "kms:ViaService":
            cond += "Via" + "".join(_camel(v.split(".")[0]) for v in c.values)
        elif c.key == "aws:SourceVpce":
            cond += "Vpce"
        else:
            cond += "If"
    sid = f"{name}{verb}"
    room = _SID_MAX - len(sid) - len(cond)
    return (sid + hint[: max(room, 0)] + cond)[:_SID_MAX]


def _unique_sids(sids: Sequence[str]) -> list[str]:
    """Suffix repeated Sids with 2, 3, … in the (deterministic) statement order."""
    seen: dict[str, int] = {}
    out = []
    for sid in sids:
        n = seen.get(sid, 0) + 1
        seen[sid] = n
        out.append(sid if n == 1 else f"{sid[: _SID_MAX - len(str(n))]}{n}")
    return out


@dataclass(slots=True)
class _Grants:
    """The identity policy being built for one principal: what the steps of
    :func:`generate_identity_policy` read, and the grants, widenings and findings they add.

    ``groups`` maps (action, granted resource or pattern) to the rows it stands for; its order,
    like that of each ``widenings`` list, is the order the steps made them (``widened_by`` and the
    ladder keep it)."""

    principal: Principal
    partition: str
    used: list[UsageRow]
    denied: tuple[UsageRow, ...]
    # Resources whose only access was denied, per action: no widening may cover one unless
    # nothing else fits (and then it is reported by name).
    denied_only: dict[str, list[str]]
    findings: list[Finding] = field(default_factory=list)
    final: dict[tuple[str, str | None], str] = field(default_factory=dict)
    widenings: defaultdict[tuple[str, str], list[Widening]] = field(default_factory=lambda: defaultdict(list))
    by_action: defaultdict[str, list[UsageRow]] = field(default_factory=lambda: defaultdict(list))
    created_extra: defaultdict[tuple[str, str], list[UsageRow]] = field(
        default_factory=lambda: defaultdict(list)
    )
    unknown_patterns: dict[tuple[str, str], tuple[str, ...]] = field(default_factory=dict)
    groups: defaultdict[tuple[str, str], list[UsageRow]] = field(default_factory=lambda: defaultdict(list))
    advice_time: dict[tuple[str, str], str] = field(default_factory=dict)
    # Key sketches of the folds the store made (folder/* → one per row, every action): what a
    # store-folded grant covers (docs/store.md, "Distinct keys of a folded row").
    folded_keys: defaultdict[str, list[KeySketch]] = field(default_factory=lambda: defaultdict(list))

    @property
    def account(self) -> str:
        return self.principal.account

    def stand_in(self, row: UsageRow) -> str | None:
        """The resource the replay names for a record that names none (its region's pattern)."""
        if row.resource is not None:
            return None
        return self.unknown_patterns[(row.action, row.context.region)][0]


def generate_identity_policy(
    principal: Principal,
    rows: Iterable[UsageRow],
    options: SynthOptions | None = None,
    advised: Sequence[AdvisedGrant] = (),
    profiles: ProfileRoles | None = None,
) -> GeneratedPolicy:
    """The policy for *principal*'s *rows*. *profiles*: what is known of instance profiles
    (the store's logged changes, IAM authorization details), for PassRole through one."""
    options = options or SynthOptions()
    used_rows, passes = resolve_instance_profiles(list(rows), profiles)
    g = _start(principal, used_rows, advised)
    # 1. Final resource for every (action, resource) seen; records that name none.
    _resolve_resources(g, options.prefix_threshold)
    _unknown_resources(g)
    _profile_passes(g, passes)
    _launch_template_passes(g)
    # 2. Rows per (action, final resource) → conditions.
    _group_rows(g)
    _required_unseen(g)
    _access_advisor(g, advised)
    # 3-4. Statements, packed within IAM's limits; widened by the ladder until they fit.
    statements, packing, ladder = _fit(g, options)
    policies, packing_notes = pack(packing, principal, widened=options.widen)
    for note in packing_notes:
        g.findings.append(Finding("SPLIT_FOR_SIZE", principal.arn, note))
    # 5. Replay every observed call; refuse to emit a policy that breaks one.
    docs = [p.policy for p in policies]
    count = _replay_or_refuse(g, docs)
    _check_denied(g, docs, options)
    return GeneratedPolicy(
        principal=principal,
        policies=tuple(policies),
        statements=tuple(ev for _, ev in statements),
        denied=g.denied,
        findings=tuple(sorted(set(g.findings))),
        replayed=count,
        replayed_calls=sum(r.count for r in g.used),
        widenings=_listed(statements, ladder, g.folded_keys),
        max_policies=options.policy_limit,
    )


def _listed(
    statements: Sequence[tuple[Statement, StatementEvidence]],
    ladder: Sequence[Widening],
    folded_keys: Mapping[str, Sequence[KeySketch]],
) -> tuple[Widening, ...]:
    """Every widening the policy has, once per (kind, pattern), with what it covers across
    actions: the rules' (in statement order), then the ladder's (in the order taken). A rule's
    pattern a ladder step widened again is not in the policy any more and is not listed. A fold
    the store made says how many distinct keys it covers across actions (*folded_keys*)."""
    in_policy = {r for _, ev in statements for r in ev.resources}
    covers: dict[tuple[WideningKind, str], set[str]] = {}
    admits: dict[tuple[WideningKind, str], str] = {}
    for _, ev in statements:
        for w in ev.widened_by:
            if w.kind in LADDER:
                continue
            if w.kind is not WideningKind.ACTION_WILDCARD and w.resource not in in_policy:
                continue
            covers.setdefault((w.kind, w.resource), set()).update(w.covers)
            admits.setdefault((w.kind, w.resource), w.admits)
    rules = [
        _store_folded_widening(pattern, tuple(sorted(c)), ObservedKeys.of(folded_keys.get(pattern, ())))
        if kind is WideningKind.STORE_FOLDED
        else Widening(kind, pattern, tuple(sorted(c)), admits[(kind, pattern)])
        for (kind, pattern), c in covers.items()
    ]
    return (*rules, *ladder)


def _start(principal: Principal, rows: list[UsageRow], advised: Sequence[AdvisedGrant]) -> _Grants:
    """Refuse what no identity policy can serve; split the rows into used and denied."""
    if not principal.is_iam:
        raise PrincipalError(
            f"{principal.arn} is a {principal.kind}, not an IAM identity: no identity policy attaches to it"
        )
    if principal.kind in (PrincipalKind.ROOT, PrincipalKind.FEDERATED_USER):
        # The root user has every permission and takes no identity policy; a federated-user
        # session gets the permissions of the IAM user that called GetFederationToken.
        # https://docs.aws.amazon.com/IAM/latest/UserGuide/id_root-user.html
        raise PrincipalError(
            f"{principal.arn} is the {principal.kind}: no identity policy attaches to it; "
            "generate one for the IAM user or role behind it"
        )
    used = [r for r in rows if r.outcome is Outcome.USED]
    denied = tuple(r for r in rows if r.outcome is Outcome.DENIED)
    kept_advice = [a for a in advised if not a.denied_only and catalog.action_exists(a.action)]
    if not used and not kept_advice:
        raise PrincipalError(
            f"{principal.arn} made no authorized call in this data ({len(denied)} denied); nothing to grant"
        )
    used_keys = {(r.action, r.resource) for r in used}
    denied_only: dict[str, list[str]] = defaultdict(list)
    for r in denied:
        if r.resource is not None and r.resource != "*" and (r.action, r.resource) not in used_keys:
            denied_only[r.action].append(r.resource)
    g = _Grants(principal, principal.arn.split(":")[1], used, denied, denied_only)
    for r in used:
        g.by_action[r.action].append(r)
    return g


def _resolve_resources(g: _Grants, threshold: int) -> None:
    """The final resource (itself, a prefix, a pattern) of every (action, resource) seen."""
    # A resource only calls that failed after authorization ever named (NoSuchKey,
    # ResourceNotFoundException, NoSuchEntity): a caller can name anything there, so it never
    # drives a generalization; it is granted exactly unless one the other resources made covers it.
    succeeded = {r.resource for r in g.used if r.resource and not r.context.error_code}
    failed_only = {r.resource for r in g.used if r.resource and r.resource != "*"} - succeeded
    for action, arows in sorted(g.by_action.items()):
        _resolve_action(g, action, arows, failed_only, threshold)


def _resolve_action(
    g: _Grants, action: str, arows: list[UsageRow], failed_only: set[str], threshold: int
) -> None:
    refused = _Refused(g.denied_only.get(action, ()))
    objects, others, mapping, template_mapping, created = _generalize(
        g, action, arows, failed_only, threshold, refused
    )
    targets = sorted({t for t in [*mapping.values(), *template_mapping.values()] if has_wildcard(t)})
    failed_codes: defaultdict[str, set[str]] = defaultdict(set)
    for r in arows:
        if r.resource in failed_only:
            failed_codes[r.resource].add(r.context.error_code)
    index = PatternIndex(targets)
    for arn in sorted(failed_codes):
        cover = min(index.matching(arn), default=None)  # the first target, in sorted order
        if cover is not None:
            (mapping if is_s3_object_arn(arn) else template_mapping)[arn] = cover
        else:
            codes = sorted(failed_codes[arn])
            g.findings.append(
                Finding(
                    "FAILED_CALLS_ONLY",
                    f"{action} {arn}",
                    f"only calls that failed ({', '.join(codes)}) named it; granted exactly",
                )
            )
    mapping.update(template_mapping)
    # Every name seen takes part, folded or not: the rule does not depend on the threshold, so a
    # larger threshold (fewer folds) never gives a broader policy (see _generated_names).
    names = [a for a in [*objects, *others] if not has_wildcard(a)]
    generated = _generated_names(g, action, names, mapping, refused)
    covered: dict[str, list[str]] = defaultdict(list)
    for arn, target in mapping.items():
        if target != arn and target not in created and target not in generated:
            covered[target].append(arn)
    _record_generalized(g, action, covered, created)
    for (extra_action, extra), _ in sorted(g.created_extra.items()):
        if extra_action == action:
            g.widenings[(action, extra)].append(
                Widening(
                    WideningKind.CREATED_RESOURCE,
                    extra,
                    tuple(sorted({r.resource or "" for r in g.created_extra[(action, extra)]})),
                    "every version of the function",
                )
            )
    _final_resources(g, action, arows, mapping)


def _generalize(
    g: _Grants, action: str, arows: list[UsageRow], failed_only: set[str], threshold: int, refused: _Refused
) -> tuple[list[str], list[str], dict[str, str], dict[str, str], dict[str, list[str]]]:
    """The action's S3 objects and other resources seen, and what each generalizes to: object
    prefixes, template patterns past the threshold, and the patterns of resources it created."""
    seen = {r.resource for r in arows if r.resource} - failed_only
    objects = sorted(a for a in seen if is_s3_object_arn(a))
    # A fold never covers a key this action was only ever denied on: the folder is granted
    # as its allowed parts instead (generalize_object_arns); only a fold the store made can.
    denied_objects = [d for d in g.denied_only.get(action, ()) if is_s3_object_arn(d)]
    mapping = generalize_object_arns(objects, threshold, denied_objects) if objects else {}
    others = sorted(a for a in seen if a != "*" and not is_s3_object_arn(a))
    template_mapping = generalize_by_template(action, others, threshold)
    # A resource the call created (RunInstances → instance/i-…): its AWS-generated id is
    # unknowable before the next call, so grant the ARN format with the caller's names kept.
    created: dict[str, list[str]] = defaultdict(list)
    for arn in others if has_created_patterns(action) else ():
        patterns = created_resource_patterns(action, arn)
        if patterns:
            template_mapping[arn] = patterns[-1]
            created[patterns[-1]].append(arn)
            for extra in patterns[:-1]:
                g.created_extra[(action, extra)].extend(r for r in arows if r.resource == arn)
    # A generalization (past --prefix-threshold) that would allow a resource whose only
    # access was denied is not made: those resources stay exact, and the ladder (if the
    # policy must shrink) looks for a step that leaves the denied one outside.
    for target in {t for a, t in template_mapping.items() if t != a and t not in created}:
        if refused.matched_by(target):
            for arn in [a for a, t in template_mapping.items() if t == target]:
                template_mapping[arn] = arn
    return objects, others, mapping, template_mapping, created


def _generated_names(
    g: _Grants, action: str, names: list[str], mapping: dict[str, str], refused: _Refused
) -> set[str]:
    """Names a program generates per run (log streams, eval-7.json, churn-xgb-2026-10-14-09-21):
    the exact names seen today are not tomorrow's, so two or more of one shape get the shape.

    The shapes come from every name seen, whatever the threshold folded: a name whose fold (or
    pattern) already covers the shape keeps it; the others take the shape. So the shape is in the
    policy at every threshold unless a fold covers it, and a larger threshold never grants more
    (a fold split around a denied key gives ``ctr-features-1/*``, which does not cover
    ``ctr-features-*/part-*.parquet``). The patterns written are returned."""
    by_pattern: dict[tuple[str, str], list[str]] = defaultdict(list)
    for arn, (pattern, admits) in generated_name_patterns(action, names).items():
        by_pattern[(pattern, admits)].append(arn)
    written: set[str] = set()
    for (pattern, admits), group in sorted(by_pattern.items()):
        if refused.matched_by(pattern):
            continue  # a denied-only name of the same shape: keep the names exact
        folds: dict[str, bool] = {}  # many names share one fold: ask each fold once
        arns = [a for a in group if mapping.get(a, a) == a or not _covers(folds, mapping[a], pattern)]
        if not arns:
            continue  # folds that cover the shape already
        written.add(pattern)
        w = Widening(WideningKind.GENERATED_NAMES, pattern, tuple(sorted(group)), admits)
        g.widenings[(action, pattern)].append(w)
        for arn in arns:
            mapping[arn] = pattern
        g.findings.append(
            Finding(
                "GENERATED_NAMES",
                f"{action} {pattern}",
                f"{len(arns)} names seen, of a shape that differs only in generated parts; "
                f"granted on {pattern}",
            )
        )
    return written


class _Refused:
    """The resources an action was only ever denied on, asked whether a pattern matches one.
    Only those that start with the pattern's literal head can (a glob's literal characters
    match themselves), found by bisection: a log group's 648 denied streams are not each
    tried against every pattern of its 30k allowed ones. Escaped literals (``${*}``) are
    matched as what they name, one by one."""

    def __init__(self, resources: Iterable[str]) -> None:
        self.plain = sorted(r for r in resources if "${" not in r)
        self.escaped = [r for r in resources if "${" in r]

    def matched_by(self, pattern: str) -> bool:
        if any(glob_matches(pattern, d) for d in self.escaped):
            return True
        if "${" in pattern:
            return any(glob_matches(pattern, d) for d in self.plain)
        wild = [i for i in (pattern.find("*"), pattern.find("?")) if i >= 0]
        head = pattern[: min(wild, default=len(pattern))]
        plain = self.plain
        i = bisect.bisect_left(plain, head)
        while i < len(plain) and plain[i].startswith(head):
            if glob_matches(pattern, plain[i]):
                return True
            i += 1
        return False


def _covers(answers: dict[str, bool], fold: str, pattern: str) -> bool:
    """``pattern_covers(fold, pattern)``, remembered in *answers* (one *pattern* per dict)."""
    got = answers.get(fold)
    if got is None:
        got = answers[fold] = pattern_covers(fold, pattern)
    return got


def _record_generalized(
    g: _Grants, action: str, covered: dict[str, list[str]], created: dict[str, list[str]]
) -> None:
    """The widening and finding of each prefix, template pattern and created-resource pattern."""
    for target, arns in covered.items():
        kind = WideningKind.OBJECT_PREFIX if is_s3_object_arn(target) else WideningKind.RESOURCE_VARIABLE
        admits = (
            f"any object under {target[:-1]}"
            if kind is WideningKind.OBJECT_PREFIX
            else f"any resource matching {target}"
        )
        g.widenings[(action, target)].append(Widening(kind, target, tuple(sorted(arns)), admits))
        g.findings.append(
            Finding(
                "OBJECT_KEYS_GENERALIZED" if kind is WideningKind.OBJECT_PREFIX else "RESOURCES_GENERALIZED",
                f"{action} {target}",
                f"{len(arns)} resources seen under {target}",
            )
        )
    for target, arns in created.items():
        g.widenings[(action, target)].append(
            Widening(
                WideningKind.CREATED_RESOURCE,
                target,
                tuple(sorted(arns)),
                "the resources this call creates, whose ids AWS generates",
            )
        )
        g.findings.append(
            Finding(
                "RESOURCES_GENERALIZED",
                f"{action} {target}",
                f"{action} created {len(arns)} resource(s) whose AWS-generated id "
                f"the next call cannot know; granted on {target}",
            )
        )


def _store_folded_widening(resource: str, covers: tuple[str, ...], keys: ObservedKeys | None) -> Widening:
    said = f"; {keys.phrase()}" if keys else ""
    return Widening(
        WideningKind.STORE_FOLDED,
        resource,
        covers,
        f"any object under {resource[:-1]} (folded when ingested{said})",
        keys,
    )


def _store_folded(g: _Grants, action: str, resource: str, stored: list[bytes]) -> None:
    """The widening and finding of a fold the store made, with the distinct keys its rows (every
    context: their *stored* sketches) counted."""
    sketches = [KeySketch.from_bytes(b) for b in stored]
    g.folded_keys[resource].extend(sketches)
    keys = ObservedKeys.of(sketches)
    g.widenings[(action, resource)].append(_store_folded_widening(resource, (action,), keys))
    g.findings.append(
        Finding(
            "STORE_FOLDED_KEYS",
            f"{action} {resource}",
            "the store keeps this folder as one row: it held more entries than the "
            "store's per-folder bound (docs/store.md), so no threshold splits it"
            + (f"; it {keys.phrase()}" if keys else ""),
        )
    )


def _final_resources(g: _Grants, action: str, arows: list[UsageRow], mapping: dict[str, str]) -> None:
    """Each row's final resource, with the findings a resource itself calls for."""
    # The stored key sketches of the action's rows, by resource (a fold has a row per context),
    # the resources in the order the rows name them: a resource's facts are the same for each row.
    sketches: dict[str, list[bytes]] = {}
    for r in arows:
        if r.resource is not None:
            got = sketches.get(r.resource)
            if got is None:
                got = sketches[r.resource] = []
            if r.key_sketch:
                got.append(r.key_sketch)
    for res, stored in sketches.items():
        target = mapping.get(res)
        if target is not None:
            g.final[(action, res)] = target
            # Only an S3 fold is the store's: ``stack/name/*`` is the ARN AWS imposes.
            if target == res and res.endswith("/*") and is_s3_object_arn(res):
                _store_folded(g, action, res, stored)
        else:
            g.final[(action, res)] = res
            if res.endswith("-??????") and action.startswith("secretsmanager:"):
                g.findings.append(
                    Finding(
                        "SECRET_SUFFIX_PATTERN",
                        res,
                        "the secret was named without its ARN; '-??????' stands for AWS's suffix",
                    )
                )
        if has_escaped(res):
            # A caller may name "*" or "?" (an S3 key, a secret name): it was written as IAM's
            # literal ${*} / ${?} / ${$}, never as a wildcard; worth a look all the same.
            g.findings.append(
                Finding("WILDCARD_IN_REQUEST", f"{action} {res}", f"the request named {literal_of(res)!r}")
            )
        arn_account = res.split(":")[4] if res.startswith("arn:") and res.count(":") >= 5 else ""
        if arn_account and arn_account != g.account:
            g.findings.append(
                Finding("CROSS_ACCOUNT_RESOURCE", res, f"{action} on a resource of account {arn_account}")
            )


def _unknown_resources(g: _Grants) -> None:
    """Records that name no resource: the action's ARN format in each region a call was made in
    (AWS authorizes the call against a resource of the region it was sent to), in the
    principal's account. The replay stands each such call in for a resource of its own region."""
    for action, arows in sorted(g.by_action.items()):
        regions = sorted({r.context.region for r in arows if r.resource is None})
        for region in regions:
            patterns = _unknown_pattern(action, region, g.account, g.partition)
            g.unknown_patterns[(action, region)] = patterns
            for p in patterns:
                g.widenings[(action, p)].append(
                    Widening(
                        WideningKind.RESOURCE_UNKNOWN,
                        p,
                        (action,),
                        f"any resource of {action}'s ARN format in "
                        f"{region or 'any region'}, account {g.account}: the records name none",
                    )
                )
        if regions:
            all_patterns = sorted({p for rg in regions for p in g.unknown_patterns[(action, rg)]})
            g.findings.append(
                Finding(
                    "RESOURCE_UNKNOWN",
                    action,
                    f"records of {action} name no resource; granted on {', '.join(all_patterns)}",
                )
            )


def _profile_passes(g: _Grants, passes: Sequence[ProfilePass]) -> None:
    """PassRole through an instance profile (synth/passrole.py): the roles it held, or every
    role of the profile's account, each said and, where wider than one role, listed."""
    for p in passes:
        if p.resolved:
            g.findings.append(
                Finding(
                    "INSTANCE_PROFILE_ROLE",
                    f"{PASS_ROLE} {p.profile}",
                    f"the instance profile held {', '.join(r for r in p.roles if r not in p.path_free)} "
                    f"when it was passed (from {p.source}); granted on that role",
                )
            )
        for pattern in p.path_free if p.resolved else p.roles:
            final = g.final.get((PASS_ROLE, pattern), pattern)
            admits = (
                f"the role {pattern.rsplit('/', 1)[1]} under any path: CloudTrail named it without "
                f"its path (instance profile {p.profile}); a role name is unique in its account"
                if p.resolved
                else f"any role of account {pattern.split(':')[4]}: the role inside instance profile "
                f"{p.profile} is unknown ({p.source})"
            )
            g.widenings[(PASS_ROLE, final)].append(
                Widening(WideningKind.RESOURCE_UNKNOWN, final, (PASS_ROLE,), admits)
            )
            if not p.resolved:
                g.findings.append(Finding("RESOURCE_UNKNOWN", f"{PASS_ROLE} {p.profile}", admits))


_RUN_INSTANCES = "ec2:RunInstances"


def _launch_template_passes(g: _Grants) -> None:
    """A launch template may name an instance profile: RunInstances with it then needs
    iam:PassRole on the profile's role (AWS checks it as for ``iamInstanceProfile``), but the
    record names only the template and its version, never the profile. Not granted (nothing says
    which role); each template used is a finding saying how to look it up.
    https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/permission-to-pass-iam-roles.html,
    https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_RequestLaunchTemplateData.html"""
    templates = sorted(
        {
            r.resource
            for r in g.used
            if r.action == _RUN_INSTANCES and r.resource is not None and ":launch-template/" in r.resource
        }
    )
    for arn in templates:
        template = arn.rsplit("/", 1)[1]
        g.findings.append(
            Finding(
                "LAUNCH_TEMPLATE_PROFILE",
                f"{_RUN_INSTANCES} {arn}",
                f"RunInstances launched from launch template {template}; if the version it used names "
                "an IAM instance profile, the call also needs iam:PassRole on that profile's role, "
                "which CloudTrail does not show and this policy does not grant. Look it up with "
                f"`aws ec2 describe-launch-template-versions --launch-template-id {template}` "
                "(LaunchTemplateData.IamInstanceProfile) and add iam:PassRole on the role",
            )
        )


def _group_rows(g: _Grants) -> None:
    """Rows per (action, final resource): what each grant stands for."""
    for r in g.used:
        if r.resource is None:
            for p in g.unknown_patterns[(r.action, r.context.region)]:
                g.groups[(r.action, p)].append(r)
        else:
            g.groups[(r.action, g.final[(r.action, r.resource)])].append(r)
    for key, extra_rows in g.created_extra.items():
        g.groups[key].extend(extra_rows)


def _required_unseen(g: _Grants) -> None:
    """AWS authorizes some calls on several resources at once (ec2:RunInstances: image, instance,
    network interface, security group, subnet — the reference's required "*" types). A type the
    records did not name is granted on its ARN format, scoped to the account and regions seen."""
    for action, arows in sorted(g.by_action.items()):
        if any(r.resource is None for r in arows):
            continue
        # Only for calls that create something: the reference also marks alternatives as
        # required (bedrock:InvokeModel on a foundation model *or* an inference profile *or* ...),
        # and for other calls the record names the one that was used.
        if not creates_resources(action):
            continue
        # One required type is enough: ec2:CreateFlowLogs names the VPC it logs, and is also
        # authorized on the vpc-flow-log it creates, which no record of the call names.
        # https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonec2.html
        required = [rt for rt in catalog.resource_types(action) if rt.required]
        if not required:
            continue
        seen_types = set()
        for resource in dict.fromkeys(g.final.get((action, r.resource), r.resource or "") for r in arows):
            rt = catalog.resource_type_for_arn(action, resource)
            if rt is not None:
                seen_types.add(rt.name)
        if not seen_types:
            continue
        for rt in required:
            if rt.name not in seen_types:
                _grant_unseen_type(g, action, arows, rt.name, rt.arn_template)


def _grant_unseen_type(g: _Grants, action: str, arows: list[UsageRow], name: str, template: str) -> None:
    for region in sorted({r.context.region for r in arows}):
        p = _format_pattern(template, region, g.account, g.partition)
        g.groups[(action, p)].extend(arows)
        g.widenings[(action, p)].append(
            Widening(
                WideningKind.REQUIRED_RESOURCE_UNSEEN,
                p,
                (action,),
                f"any {name} in {region or 'any region'}, account {g.account}",
            )
        )
        g.findings.append(
            Finding(
                "RESOURCE_UNKNOWN",
                action,
                f"AWS also authorizes {action} on a {name}, which the records do not name; granted on {p}",
                target=f"{action} {name}",  # one per resource type, same subject
            )
        )


def _access_advisor(g: _Grants, advised: Sequence[AdvisedGrant]) -> None:
    """Access Advisor (action level) saw these attempted, maybe before the trail's window: kept,
    scoped to the ARN format for the account and the region AWS reported, and flagged."""
    for advice in advised:
        if advice.denied_only:
            g.findings.append(
                Finding("ACCESS_ADVISOR_DENIED_ONLY", advice.action, advice.note + "; not granted")
            )
            continue
        if not catalog.action_exists(advice.action) or advice.action in g.by_action:
            continue
        patterns = (
            ("*",)
            if catalog.is_wildcard_only(advice.action)
            else _unknown_pattern(advice.action, advice.region, g.account, g.partition)
        )
        for p in patterns:
            g.groups.setdefault((advice.action, p), [])
            g.advice_time[(advice.action, p)] = advice.last_accessed
            g.widenings[(advice.action, p)].append(
                Widening(
                    WideningKind.ACCESS_ADVISOR,
                    p,
                    (advice.action,),
                    "what Access Advisor shows attempted; CloudTrail shows no call",
                )
            )
        g.findings.append(
            Finding("ACCESS_ADVISOR_KEPT", advice.action, advice.note + f"; granted on {', '.join(patterns)}")
        )


def _fit(
    g: _Grants, options: SynthOptions
) -> tuple[list[tuple[Statement, StatementEvidence]], Packing, list[Widening]]:
    """The statements and their packing into at most ``policy_limit`` policies, widened by the
    ladder (least widening first) until they fit; the widenings the policy has, in order."""
    limit = options.policy_limit
    merged: set[tuple[str, tuple[Condition, ...]]] = set()
    relaxed: dict[str, tuple[Condition, ...]] = {}  # service → the conditions of rung 6
    ladder: list[Widening] = []
    built = StatementMemo()  # the statements each round rebuilds from the grants
    packed = PackMemo()  # their pieces and sizes
    statements = _statements(g.groups, g.widenings, g.advice_time, merged, options, None, memo=built)
    packing = plan(g.principal, [s for s, _ in statements], options.target, limit, packed)
    rounds = 0
    memo = LadderMemo()  # the steps each round scores
    # Each round replaces resources by fewer patterns or merges statements, so the ladder runs
    # out of steps; the bound only guards against a step that saves nothing once rebuilt.
    sized: dict[Statement, int] = {}  # last round's statements: most are this round's too
    while options.widen and not packing.fits and rounds < _MAX_ROUNDS:
        rounds += 1
        sized = {st: sized[st] if st in sized else packed.statement_size(st) + 1 for st, _ in statements}
        shapes = [StatementShape(ev.actions, ev.resources, ev.conditions, sized[st]) for st, ev in statements]
        steps = choose(
            candidates(g.groups.keys(), shapes, g.denied_only, options.prefix_threshold, memo),
            packing.overflow,
        )
        if not steps:
            break
        # The grants by resource, in their order, once a round: a step finds the grants it moves
        # without scanning all of them (one scan per step was 9 s of 187 s profiled on a 10M-record
        # store's busiest role). Steps of a round cover disjoint resources, so the index holds for
        # every step but one covering a pattern an earlier step of the round wrote: that one scans.
        by_resource: dict[str, list[tuple[int, tuple[str, str]]]] = defaultdict(list)
        if any(step.kind not in MERGE_KINDS for step in steps):  # a merge moves no grant
            for i, key in enumerate(g.groups):
                by_resource[key[1]].append((i, key))
        written: set[str] = set()
        for step in steps:
            index = None if step.covers & written else by_resource
            ladder.append(_take(step, g.groups, g.widenings, merged, relaxed, index, built.changed))
            written.add(step.pattern)
            # The grants, rows and widenings of these resources changed (a merge's: its widening).
            built.touched |= step.covers
            built.touched.add(step.pattern)
            g.findings.append(_step_finding(step))
        statements = _statements(
            g.groups, g.widenings, g.advice_time, merged, options, None, bool(ladder), relaxed, built
        )
        packing = plan(g.principal, [s for s, _ in statements], options.target, limit, packed)
    statements = _statements(
        g.groups, g.widenings, g.advice_time, merged, options, g.findings, bool(ladder), relaxed, built
    )
    # A step a later step widened again (ctr-xgboost-2025-03-* → training-job/*) is not in the
    # policy any more: report the widenings the policy has.
    in_policy = {r for _, ev in statements for r in ev.resources}
    ladder = [w for w in ladder if w.kind in MERGE_KINDS or w.resource in in_policy]
    kept = {w.resource for w in ladder}
    g.findings = [
        f for f in g.findings if f.code not in ("WIDENED_TO_FIT", "DENIED_COVERED") or f.subject in kept
    ]
    return statements, packing, ladder


def _step_finding(step: Candidate) -> Finding:
    """What one ladder step admits; a step that also allows a denied-only resource says which."""
    if step.denied:
        return Finding(
            "DENIED_COVERED",
            step.pattern,
            f"no narrower step fits: {step.kind} {step.pattern} also allows "
            f"{'; '.join(step.denied[:5])}"
            + (f" and {len(step.denied) - 5} more" if len(step.denied) > 5 else "")
            + ", only ever denied (the denial may come from a resource policy, an SCP "
            "or a key policy; check that it stays)",
        )
    return Finding(
        "WIDENED_TO_FIT",
        step.pattern,
        f"{step.kind}: covers {len(step.covers)} resources; admits {step.admits}",
    )


def _replay_or_refuse(g: _Grants, docs: list[Policy]) -> int:
    """Replay every observed call against *docs*; refuse to emit a policy that breaks one."""
    count, failures = replay(g.principal.arn, g.used, docs, g.stand_in)
    if failures:
        f = failures[0]
        raise SynthError(
            f"refusing to emit: the generated policy would deny an observed call "
            f"({f.row.action} on {f.request.resource}: {f.evaluation.reason}); "
            f"{len(failures)} of {count} calls fail"
        )
    return count


def _check_denied(g: _Grants, docs: list[Policy], options: SynthOptions) -> None:
    """Every denied call is reported; one the policy would allow refuses the policy under
    ``--no-widen``, and is otherwise reported with the statements that allow it."""
    used_keys = {(r.action, r.resource) for r in g.used}
    granted_denials: list[UsageRow] = []
    # Denied calls on a resource named by a pattern AWS imposes (a stack by name, ``NAME/*``;
    # a secret by name, ``NAME-??????``) that a grant overlaps: the policy allows the call on
    # some resource it could have named, as an IAM simulator judges a wildcard request.
    overlapping: list[tuple[UsageRow, tuple[str, ...]]] = []
    for r in g.denied:
        g.findings.append(
            Finding(
                "DENIED_NOT_GRANTED",
                f"{r.action} {r.resource or '(unknown)'}",
                f"denied {r.count}x, last {r.last_seen}",
            )
        )
        if (r.action, r.resource) not in used_keys and r.resource is not None:
            if _allows(g, docs, r):
                granted_denials.append(r)
            elif has_wildcard(r.resource) and (covering := _overlapping_grants(g, docs, r)):
                overlapping.append((r, covering))
        elif (
            r.resource is None
            and (stand_in := g.unknown_patterns.get((r.action, r.context.region)))
            and _allows(g, docs, r, stand_in[0])
        ):
            # Named no resource, as the authorized calls of the action in its region: the grant
            # they need (any resource of the action's ARN format there) allows it too.
            overlapping.append((r, stand_in))
    if granted_denials and not options.widen:
        r = granted_denials[0]
        raise SynthError(
            f"refusing to emit: the policy would allow a call that was only ever denied "
            f"({r.action} on {r.resource})"
        )
    _report_denied_covered(g, docs, granted_denials, overlapping)


def _allows(g: _Grants, docs: list[Policy], r: UsageRow, target: str | None = None) -> bool:
    """Whether *docs* allow call *r* (on *target*, a request string, when given)."""
    req = request_for(g.principal.arn, r, target)
    return evaluate(
        req, docs, resource_policy=account_trust_policy(req.resource, req.resource_account)
    ).allowed


def _overlapping_grants(g: _Grants, docs: list[Policy], r: UsageRow) -> tuple[str, ...]:
    """The granted resources that allow denied call *r* (whose resource is a pattern) on some
    resource both match: each checked by evaluating the call on a string both patterns match
    (so the statement's conditions and the key or trust policy count as for any call)."""
    found: set[str] = set()
    action = r.action.lower()
    for doc in docs:
        for s in doc.statements:
            if s.effect is not Effect.ALLOW or not any(glob_matches(a.lower(), action) for a in s.actions):
                continue
            for p in s.resources:
                if p in found or (witness := overlap_witness(p, r.resource or "")) is None:
                    continue
                if _allows(g, docs, r, witness):
                    found.add(p)
    return tuple(sorted(found))


def _report_denied_covered(
    g: _Grants,
    docs: list[Policy],
    granted_denials: list[UsageRow],
    overlapping: Sequence[tuple[UsageRow, tuple[str, ...]]] = (),
) -> None:
    reported = {f.subject for f in g.findings if f.code == "DENIED_COVERED"}
    by_covering: dict[tuple[str, ...], list[UsageRow]] = defaultdict(list)
    found: list[tuple[UsageRow, tuple[str, ...]]] = [
        (r, _covering_patterns(docs, r)) for r in granted_denials
    ]
    for r, covering in [*found, *overlapping]:
        # A fold that covers a denied-only resource: the policy still needs the fold (its calls
        # were authorized), and IAM denied this one for a reason outside the identity policy.
        if not (reported & set(covering)):
            by_covering[covering].append(r)
    for covering, rows_covered in sorted(by_covering.items()):
        named = "; ".join(
            f"{r.action} {r.resource or '(no resource named)'} ({r.count}x)" for r in rows_covered[:5]
        )
        more = f" and {len(rows_covered) - 5} more" if len(rows_covered) > 5 else ""
        folds = [
            f"{p} (folded by the store) {keys.phrase()}"
            for p in covering
            if (keys := ObservedKeys.of(g.folded_keys.get(p, ()))) is not None
        ]
        g.findings.append(
            Finding(
                "DENIED_COVERED",
                ", ".join(covering) or "the policy",
                f"allows {len(rows_covered)} call(s) only ever denied: {named}{more}. The denial came "
                "from outside this identity policy (a bucket policy, an SCP or a key policy); "
                "check that it stays" + (f". {'; '.join(folds)}" if folds else ""),
            )
        )


def _covering_patterns(docs: list[Policy], r: UsageRow) -> tuple[str, ...]:
    """The granted resources of the statements whose actions and resources match call *r*."""
    return tuple(
        sorted(
            {
                p
                for st in docs
                for s in st.statements
                if any(glob_matches(a.lower(), r.action.lower()) for a in s.actions)
                for p in s.resources
                if glob_matches(p, r.resource or "")
            }
        )
    )


_MAX_ROUNDS = 200


def _take(
    step: Candidate,
    groups: dict[tuple[str, str], list[UsageRow]],
    widenings: dict[tuple[str, str], list[Widening]],
    merged: set[tuple[str, tuple[Condition, ...]]],
    relaxed: dict[str, tuple[Condition, ...]],
    by_resource: Mapping[str, list[tuple[int, tuple[str, str]]]] | None = None,
    changed: set[tuple[str, str]] | None = None,
) -> Widening:
    """Apply one ladder step to the grants; the widening it records. *by_resource* lists the
    grants of each resource with their place in *groups* (the keys this step moves are found
    there, in the order of *groups*), or None to scan *groups*. *changed*: gets the grants the
    step removed, added or added rows to."""
    w = Widening(step.kind, step.pattern, tuple(sorted(step.covers)), step.admits)
    if step.kind in MERGE_KINDS:
        if step.kind is WideningKind.SERVICE_MERGE:
            merged.add((step.service, step.conditions))
        else:
            relaxed[step.service] = step.conditions
        prefix = step.service + ":"
        for key in groups:
            if key[1] in step.covers and (key[0].startswith(prefix) or key[0] == step.service):
                widenings[key].append(w)
        return w
    if by_resource is None:
        keys = [k for k in groups if k[1] in step.covers]
    else:
        keys = [k for _, k in sorted(p for r in step.covers for p in by_resource.get(r, ()))]
    # The widenings of each new grant: its own, those of the grants it takes in, then this
    # step's, each once (in that order), gathered and made unique once per new grant.
    gathered: dict[tuple[str, str], list[Widening]] = {}
    for key in keys:
        rows = groups.pop(key)
        new = (key[0], step.pattern)
        if changed is not None:
            changed.update((key, new))
        groups.setdefault(new, []).extend(rows)
        moved = widenings.pop(key, [])
        got = gathered.get(new)
        if got is None:
            gathered[new] = [*widenings.get(new, []), *moved, w]
        else:
            got += moved
    for new, got in gathered.items():
        widenings[new] = list(dict.fromkeys(got))
    return w


@dataclass(slots=True)
class _Built:
    """One statement as :func:`_statements` built it (before its Sid is made unique), with the
    resources it was built from (before covered ones were dropped) and its action wildcards."""

    resources: frozenset[str]
    statement: Statement
    evidence: StatementEvidence
    expansions: list[tuple[str, tuple[str, ...]]]
    every: tuple[str, ...]  # *resources*, sorted


@dataclass(slots=True)
class StatementMemo:
    """What :func:`_statements` keeps from one round of the ladder to the next: the grouping of
    the grants into statements, and each statement built, reused while its resources are the
    same and no step touched one of them (*touched*: the resources a step covered or wrote
    since). A merge round changes one service's statements: the others, with the tens of
    thousands of resources a busy role's statements hold, are not built again. Lives for one
    policy (identity._fit)."""

    built: dict[tuple[tuple[str, ...], tuple[Condition, ...], bool], _Built] = field(default_factory=dict)
    touched: set[str] = field(default_factory=set)
    # The statements' grouping before services are merged, kept up to date from the grants a
    # step removed, added or added rows to since (*changed*, filled by identity._take) and the
    # services whose conditions rung 6 relaxed since: a round moves hundreds of the tens of
    # thousands of grants a busy role has.
    grouping: _Grouping | None = None
    changed: set[tuple[str, str]] = field(default_factory=set)

    def reusable(self) -> dict[tuple[tuple[str, ...], tuple[Condition, ...], bool], _Built]:
        """The statements built before that no step touched since."""
        touched = self.touched
        self.touched = set()
        return {k: b for k, b in self.built.items() if touched.isdisjoint(b.resources)}


def _statements(
    groups: dict[tuple[str, str], list[UsageRow]],
    widenings: dict[tuple[str, str], list[Widening]],
    advice_time: dict[tuple[str, str], str],
    merged: set[tuple[str, tuple[Condition, ...]]],
    options: SynthOptions,
    findings: list[Finding] | None,
    drop_covered: bool = False,
    relaxed: Mapping[str, tuple[Condition, ...]] | None = None,
    memo: StatementMemo | None = None,
) -> list[tuple[Statement, StatementEvidence]]:
    """(resource, conditions) → actions; then (actions, conditions) → resources; statements of
    a merged service are one; a service whose conditions rung 6 merged has those. Sorted, with
    unique Sids. *memo*: the same object for every call of one ladder."""
    relaxed = relaxed or {}
    memo = memo or StatementMemo()
    # A copy of the kept grouping (its sets are shared, never changed here): merging services
    # replaces entries.
    step2 = dict(_grouped(groups, relaxed, options, memo).statements)
    if merged:
        _merge_services(step2, merged)
    reusable = memo.reusable()
    built: dict[tuple[tuple[str, ...], tuple[Condition, ...], bool], _Built] = {}
    statements: list[tuple[Statement, StatementEvidence]] = []
    for (stmt_actions, c), resources in step2.items():
        old = reusable.get((stmt_actions, c, drop_covered))
        if old is not None and old.resources == resources:
            one = old
        else:
            base = _base(memo.built, (stmt_actions, c, drop_covered), resources)
            one = _build_statement(
                stmt_actions, c, resources, groups, widenings, advice_time, options, drop_covered, base
            )
        built[(stmt_actions, c, drop_covered)] = one
        if findings is not None:
            for pattern, expansion in one.expansions:
                findings.append(
                    Finding("ACTION_WILDCARD", pattern, "expands today to " + ", ".join(expansion))
                )
        statements.append((one.statement, one.evidence))
    memo.built = built
    # Order by service, then Sid, then content (Sids may clash before they are made unique).
    # The content (a statement's whole JSON) is written only for statements whose service and
    # Sid clash: the others are ordered without it.
    clash = Counter((st.actions[0].split(":")[0], st.sid) for st, _ in statements)
    statements.sort(
        key=lambda pair: (
            pair[0].actions[0].split(":")[0],
            pair[0].sid,
            json.dumps(pair[0].to_json(), sort_keys=True)
            if clash[(pair[0].actions[0].split(":")[0], pair[0].sid)] > 1
            else "",
        )
    )
    unique = _unique_sids([st.sid for st, _ in statements])
    return [
        (replace(st, sid=sid), replace(ev, sid=sid)) for (st, ev), sid in zip(statements, unique, strict=True)
    ]


_StatementKey = tuple[tuple[str, ...], tuple[Condition, ...]]


def _grouped(
    groups: dict[tuple[str, str], list[UsageRow]],
    relaxed: Mapping[str, tuple[Condition, ...]],
    options: SynthOptions,
    memo: StatementMemo,
) -> _Grouping:
    """(resource, conditions) → actions; then (actions, conditions) → resources: the grouping
    of *memo*, brought up to date with the grants changed since (all of them the first time)."""
    snapshot = tuple(sorted(relaxed.items()))
    memo.changed, stale = set(), memo.changed
    grouping = memo.grouping
    if grouping is None:
        memo.grouping = _Grouping.of(groups, relaxed, options, snapshot)
        return memo.grouping
    was = dict(grouping.relaxed)
    services = {svc for svc, c in snapshot if was.get(svc) != c} | {svc for svc in was if svc not in relaxed}
    grouping.relaxed = snapshot
    if services:
        stale |= {k for k in groups if k[0].split(":")[0] in services}
    if len(stale) > len(groups):
        # A round that folded most grants into few patterns: grouping what is left is less work.
        memo.grouping = _Grouping.of(groups, relaxed, options, snapshot)
        return memo.grouping
    # A grant changed since has new rows, or is new: its conditions are found again.
    for key in stale:
        grouping.remove(key)
        rows = groups.get(key)
        if rows is not None:
            service = key[0].split(":")[0]
            grouping.add(
                key, relaxed[service] if service in relaxed else _conditions(key[0], rows, options.conditions)
            )
    return grouping


@dataclass(slots=True)
class _Grouping:
    """The grants grouped into statements before services are merged: each grant's conditions,
    the actions granted on each (resource, conditions), and the resources of each (actions,
    conditions). Kept up to date one grant at a time (:func:`_grouped`)."""

    relaxed: tuple[tuple[str, tuple[Condition, ...]], ...]
    conditions: dict[tuple[str, str], tuple[Condition, ...]] = field(default_factory=dict)
    # (resource, conditions) → its actions, sorted: the actions of its statement. Tuples, not
    # sets: most resources have one action, and a tuple of strings is not tracked by the
    # garbage collector (tens of thousands of sets were).
    actions: dict[tuple[str, tuple[Condition, ...]], tuple[str, ...]] = field(default_factory=dict)
    statements: dict[_StatementKey, set[str]] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        groups: dict[tuple[str, str], list[UsageRow]],
        relaxed: Mapping[str, tuple[Condition, ...]],
        options: SynthOptions,
        snapshot: tuple[tuple[str, tuple[Condition, ...]], ...],
    ) -> _Grouping:
        """The grouping of every grant at once."""
        enabled = options.conditions
        conds = {
            k: relaxed[k[0].split(":")[0]]
            if relaxed and k[0].split(":")[0] in relaxed
            else _conditions(k[0], v, enabled)
            for k, v in groups.items()
        }
        alone: dict[str, tuple[str, ...]] = {}  # one tuple per action for the resources of one
        actions: dict[tuple[str, tuple[Condition, ...]], tuple[str, ...]] = {}
        for (action, resource), c in conds.items():
            got = actions.get((resource, c))
            if got is None:
                one = alone.get(action)
                if one is None:
                    one = alone[action] = (action,)
                actions[(resource, c)] = one
            else:
                actions[(resource, c)] = tuple(sorted((*got, action)))
        statements: dict[_StatementKey, set[str]] = {}
        for (resource, c), acts in actions.items():
            got_resources = statements.get((acts, c))
            if got_resources is None:
                statements[(acts, c)] = {resource}
            else:
                got_resources.add(resource)
        return cls(snapshot, conds, actions, statements)

    def add(self, key: tuple[str, str], c: tuple[Condition, ...]) -> None:
        action, resource = key
        self.conditions[key] = c
        acts = self.actions.get((resource, c))
        if acts is not None:
            self._leave((acts, c), resource)
            acts = tuple(sorted((*acts, action)))
        else:
            acts = (action,)
        self.actions[(resource, c)] = acts
        self.statements.setdefault((acts, c), set()).add(resource)

    def remove(self, key: tuple[str, str]) -> None:
        c = self.conditions.pop(key, None)
        if c is None:
            return
        action, resource = key
        acts = self.actions[(resource, c)]
        self._leave((acts, c), resource)
        acts = tuple(a for a in acts if a != action)
        if acts:
            self.actions[(resource, c)] = acts
            self.statements.setdefault((acts, c), set()).add(resource)
        else:
            del self.actions[(resource, c)]

    def _leave(self, statement: _StatementKey, resource: str) -> None:
        resources = self.statements[statement]
        resources.discard(resource)
        if not resources:
            del self.statements[statement]


def _build_statement(
    stmt_actions: tuple[str, ...],
    c: tuple[Condition, ...],
    all_resources: set[str],
    groups: dict[tuple[str, str], list[UsageRow]],
    widenings: dict[tuple[str, str], list[Widening]],
    advice_time: dict[tuple[str, str], str],
    options: SynthOptions,
    drop_covered: bool,
    base: _Built | None = None,
) -> _Built:
    """The statement of *stmt_actions* on *all_resources* under *c*, and its evidence. *base*:
    a statement built before with many of the same resources (:func:`_base`)."""
    every = _sorted_from(all_resources, base)
    stmt_resources = every
    if drop_covered and len(every) > 1:
        # After a ladder step a pattern may cover another resource of its statement
        # (workgroup/* and workgroup/ml-analysts): the covered one adds characters only.
        covered = _covered(every)
        if covered:
            stmt_resources = tuple(r for r in every if r not in covered)
    written, expansions = action_wildcards(stmt_actions) if options.wildcards else (stmt_actions, {})
    # The rows and widenings of each grant, by action then resource (the order the evidence
    # lists them in), in one pass over the grants.
    srows: list[UsageRow] = []
    widened: list[Widening] = []
    for a in stmt_actions:
        for rr in every:
            key = (a, rr)
            got = groups.get(key)
            if got is not None:
                srows += got
            moved = widenings.get(key)
            if moved:
                widened += moved
    for pattern, expansion in sorted(expansions.items()):
        widened.append(
            Widening(
                WideningKind.ACTION_WILDCARD,
                pattern,
                expansion,
                "actions added to the service later that match the pattern",
            )
        )
    sid = _sid(written, stmt_resources, c)
    # Resources are IAM patterns already: a literal "$", "*" or "?" from a record was
    # written "${$}", "${*}", "${?}" at normalization (model.escape_literal).
    # (Only an SSM ARN can change: most statements are written as they are.)
    written_resources = stmt_resources
    if [r for r in stmt_resources if ":ssm:" in r]:
        written_resources = tuple(_account_any_if_aws_owned(r) for r in stmt_resources)
    st = Statement(Effect.ALLOW, actions=written, resources=written_resources, conditions=c, sid=sid)
    kept = set(stmt_resources) if len(stmt_resources) < len(every) else all_resources
    acts = set(stmt_actions)
    times = [t for (a, rr), t in advice_time.items() if a in acts and rr in kept]
    return _Built(
        frozenset(all_resources),
        st,
        _statement_evidence(sid, stmt_actions, stmt_resources, c, srows, times, widened),
        sorted(expansions.items()),
        every,
    )


# Below this many resources a statement's resources are sorted again, not merged from a base.
_BASE_MIN = 256


def _base(
    built: Mapping[tuple[tuple[str, ...], tuple[Condition, ...], bool], _Built],
    key: tuple[tuple[str, ...], tuple[Condition, ...], bool],
    resources: set[str],
) -> _Built | None:
    """Of the statements built last round (*built*), the one most like the statement *key* on
    *resources* about to be built: itself as it was (a round moves a few of a busy role's
    28,000 resources), or else the largest whose resources all are among *resources* (the
    statements a service merge joins)."""
    if len(resources) < _BASE_MIN:
        return None
    # The same statement, as the ladder's rounds (drop_covered) or before them built it.
    same = built.get(key) or built.get((key[0], key[1], not key[2]))
    if same is not None:
        return same
    inside = [b for b in built.values() if len(b.resources) <= len(resources) and b.resources <= resources]
    return max(inside, key=lambda b: len(b.resources), default=None)


def _sorted_from(resources: set[str], base: _Built | None) -> tuple[str, ...]:
    """*resources*, sorted: from *base*, the resources it has that are still here, then the new
    ones sorted, merged by one sort of the two sorted runs (a merge, not a sort of tens of
    thousands of ARNs again)."""
    if base is None:
        return tuple(sorted(resources))
    added = resources - base.resources
    if not added and len(resources) == len(base.resources):
        return base.every
    every = [r for r in base.every if r in resources]
    if added:
        every += sorted(added)
        every.sort()
    return tuple(every)


# Where a pattern's literal text ends: its first wildcard or escaped literal.
_PATTERN_HEAD_END = re.compile(r"[*?]|\$\{")


def _covered(resources: Sequence[str]) -> set[str]:
    """The resources of a statement (*resources*, sorted) that another of its patterns covers.

    A resource a pattern matches starts with the pattern's literal head (its text before the
    first ``*``, ``?`` or ``${``) and holds the pattern's other literal parts, unless it names
    an escaped literal itself: only the resources in the sorted range of each head that hold
    the longest other part are asked of the pattern (:func:`widen.glob_matches`, whose answers
    :class:`widen.PatternIndex` gives; a resource naming a literal, of every pattern). A busy
    role's statement of 28,000
    resources holds about 75 patterns: most with a long head (a few resources each), a few
    like ``arn:aws:logs:*:ACCOUNT:log-group:/aws/lambda/*`` (a range of every log resource)."""
    patterns = [p for p in resources if ("*" in p or "?" in p) and has_wildcard(p)]
    if not patterns:
        return set()
    scans = []
    for p in patterns:
        head = _PATTERN_HEAD_END.split(p, 1)[0]
        # A pattern naming a literal is read by its head only.
        parts = [] if "${" in p else _PATTERN_HEAD_END.split(p)[1:]
        lo, hi = _prefix_range(resources, head)
        scans.append((lo, hi, max(parts, key=len, default="")))
    # Reading a resource of a range (a substring test) costs about a twentieth of asking the
    # patterns: ranges that add up to many times the statement are not read.
    if sum(hi - lo for lo, hi, _ in scans) > 16 * len(resources):
        index = PatternIndex(patterns)
        return {r for r in resources if index.covers(r, besides=r)}
    # Each resource of a range that holds the pattern's longest part is asked of that pattern
    # (no index to build: a regular expression of hundreds of patterns, compiled each round).
    covered: set[str] = set()
    for p, (lo, hi, part) in zip(patterns, scans, strict=True):
        for r in [r for r in resources[lo:hi] if part in r and r != p]:
            if r not in covered and glob_matches(p, r):
                covered.add(r)
    for r in resources:
        if "${" in r and r not in covered and any(p != r and glob_matches(p, r) for p in patterns):
            covered.add(r)
    return covered


def _prefix_range(values: Sequence[str], prefix: str) -> tuple[int, int]:
    """Where the values that start with *prefix* are in *values* (sorted)."""
    lo = bisect_left(values, prefix)
    if prefix and prefix[-1] != chr(0x10FFFF):
        # Every string from prefix up to (not including) the prefix with its last character
        # the next one starts with the prefix.
        return lo, bisect_left(values, prefix[:-1] + chr(ord(prefix[-1]) + 1), lo)
    hi = lo
    while hi < len(values) and values[hi].startswith(prefix):
        hi += 1
    return lo, hi


def _merge_services(
    step2: dict[tuple[tuple[str, ...], tuple[Condition, ...]], set[str]],
    merged: set[tuple[str, tuple[Condition, ...]]],
) -> None:
    """Join the statements of each merged (service, conditions) into one, in place."""
    joined: dict[tuple[str, tuple[Condition, ...]], tuple[set[str], set[str]]] = {}
    for (names, c), resources in list(step2.items()):
        services = {a.split(":")[0] for a in names}
        if len(services) != 1 or "*" in resources:
            continue
        service = services.pop()
        if (service, c) in merged:
            del step2[(names, c)]
            got = joined.setdefault((service, c), (set(), set()))
            got[0].update(names)
            got[1].update(resources)
    for (_, c), (acts_set, resources) in joined.items():
        key = (tuple(sorted(acts_set)), c)
        # A new set: step2's sets may be the kept grouping's (_statements).
        step2[key] = step2[key] | resources if key in step2 else resources


_COUNT = attrgetter("count")
_FIRST_SEEN = attrgetter("first_seen")
_LAST_SEEN = attrgetter("last_seen")


def _statement_evidence(
    sid: str,
    actions: tuple[str, ...],
    resources: tuple[str, ...],
    conditions: tuple[Condition, ...],
    rows: Sequence[UsageRow],
    times: Sequence[str],
    widened: Sequence[Widening],
) -> StatementEvidence:
    """The calls behind a statement (and Access Advisor's last-accessed *times*), and its widenings."""
    return StatementEvidence(
        sid=sid,
        actions=actions,
        resources=resources,
        conditions=conditions,
        calls=sum(map(_COUNT, rows)),
        first_seen=min(chain(map(_FIRST_SEEN, rows), times)),
        last_seen=max(chain(map(_LAST_SEEN, rows), times)),
        event_ids=_first_event_ids(rows, 5),
        widened_by=tuple(dict.fromkeys(widened)),
    )


def _first_event_ids(rows: Sequence[UsageRow], limit: int) -> tuple[str, ...]:
    """The first *limit* distinct event ids of *rows* taken in order of first seen (a stable
    sort): the earliest rows only are sorted (heapq.nsmallest is sorted()[:n]), more of them
    when those hold too few ids, instead of every row of a statement of tens of thousands."""
    n = limit
    while True:
        eids: list[str] = []
        for r in heapq.nsmallest(n, rows, key=_FIRST_SEEN):
            for e in r.event_ids:
                if e not in eids and len(eids) < limit:
                    eids.append(e)
        if len(eids) >= limit or n >= len(rows):
            return tuple(eids)
        n *= 4
