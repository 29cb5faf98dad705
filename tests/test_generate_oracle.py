"""Generated policies judged by the independent IAM oracle (../shared/oracle/iam-oracle).

For every IAM principal of samples/AWSLogs and of $IAMTRIM_CORPUS/cloudtrail that generate-policy
accepts, every observed authorized call is replayed against the generated policies (with the
request context iamtrim.verify derives, and the account-trusting key/role policy verify assumes):
all must be Allowed. Probes that must NOT be Allowed:

(a) unobserved actions of the services the principal used (sampled from the catalog);
(b) observed actions on another resource (the first naming variable of the ARN replaced: another
    bucket, key, secret, function, a sibling log group);
(c) S3 calls from outside the VPC endpoint where the statement pins aws:SourceVpce;
(d) KMS calls made directly (no kms:ViaService) where the statement requires it;
(e) the principal's denied attempts.

All requests go to the oracle in one invocation. Counts are printed (``pytest -s``) and recorded in
docs/commands/generate-policy.md.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from iamtrim import catalog
from iamtrim.errors import IamtrimError
from iamtrim.evaluate import Request
from iamtrim.ingest import load_events
from iamtrim.model import Outcome, UsageRow
from iamtrim.normalize.tables import permissionless
from iamtrim.synth import GeneratedPolicy, generate_identity_policy
from iamtrim.verify import account_trust_policy, request_for
from tests.conftest import SAMPLES
from tests.factories import make_record_dict
from tests.oracle import decision_of, require_oracle, run_oracle

pytestmark = pytest.mark.oracle

SCOPE = frozenset({"Partition", "Region", "Account", "AccountId"})
# Widenings under which "another resource" is legitimately allowed (the ARN format was granted).
FORMAT_WIDENINGS = frozenset({"resource-unknown", "required-resource-unseen", "created-resource"})


@dataclass(frozen=True)
class Probe:
    kind: str  # replay | unobserved-action | other-resource | outside-vpce | direct-kms | denied
    principal: str
    request: dict[str, Any]
    expect_allowed: bool


def concrete(resource: str) -> str:
    """A real ARN for a pattern: ``-??????`` → a suffix, ``*`` → a name (``"*"`` itself stays),
    ``${*}``/``${?}``/``${$}`` → the literal character a record named."""
    if resource == "*":
        return resource
    return re.sub(
        r"\$\{([*?$])\}|\?{6}|\*|\?",
        lambda m: m.group(1) or {"*": "iamtrim-probe", "?": "x"}.get(m.group(0), "AbCdEf"),
        resource,
    )


def context_dict(request: Request) -> dict[str, Any]:
    return {k: v[0] if len(v) == 1 else list(v) for k, v in request.context}


def _oracle_arn(arn: str, account: str) -> str:
    """The oracle types no account-less SSM ARN ("no.resource.types") although AWS owns such
    resources (arn:aws:ssm:REGION::document/AWS-RunShellScript); ask it about the same resource
    with the caller's account, which the generated policy's ``:*:`` account field also matches."""
    parts = arn.split(":", 5)
    if len(parts) == 6 and parts[2] == "ssm" and parts[4] == "" and account:
        return ":".join([*parts[:4], account, parts[5]])
    return arn


def oracle_request(
    principal: str,
    request: Request,
    resource: str | None = None,
    drop: tuple[str, ...] = (),
    add: dict[str, str] | None = None,
) -> dict[str, Any]:
    target = _oracle_arn(resource or request.resource, request.resource_account)
    ctx = {k: v for k, v in context_dict(request).items() if k not in drop}
    ctx.update(add or {})
    out: dict[str, Any] = {
        "principal": principal,
        "action": request.action,
        "resource": target,
        "context": ctx,
    }
    if request.resource_account:
        out["resourceAccount"] = request.resource_account
    trust = account_trust_policy(target, request.resource_account)
    if trust is not None:
        out["resourcePolicy"] = trust.to_json()
    return out


def _unknown_stand_in(g: GeneratedPolicy, action: str) -> str | None:
    for ev in g.statements:
        if action in ev.actions:
            for w in ev.widened_by:
                if w.kind == "resource-unknown":
                    return w.resource
    return None


def _statement_conditions(g: GeneratedPolicy, action: str, resource: str) -> set[str]:
    """Condition keys on every granted statement for *action* (empty if any grants it unconditioned)."""
    keys: set[str] | None = None
    for ev in g.statements:
        if action in ev.actions:
            these = {c.key for c in ev.conditions}
            keys = these if keys is None else keys & these
    return keys or set()


def _other_resource(action: str, arn: str) -> str | None:
    rt = catalog.resource_type_for_arn(action, arn)
    if rt is None or "*" in arn or "?" in arn:
        return None
    values = catalog.arn_variables(rt.arn_template, arn)
    if values is None:
        return None
    filled = dict(values)
    for name, value in values:
        if name not in SCOPE:
            filled[name] = (
                "00000000-0000-0000-0000-000000000000"
                if name == "KeyId"
                else "/iamtrim/other-group"
                if name == "LogGroupName"
                else f"iamtrim-other-{value.split('/')[-1][:8].lower() or 'x'}"
            )
            break
    else:
        return None
    other = catalog.fill_template(rt.arn_template, filled)
    return other if other != arn else None


_NEEDS_NO_PERMISSION = frozenset(f"{prefix}:{name}" for prefix, name in permissionless())


def _unobserved(
    g: GeneratedPolicy, used: set[str], rng: random.Random, per_service: int = 3
) -> Iterator[tuple[str, str]]:
    region = "us-east-1"
    for service in sorted({a.split(":")[0] for a in used}):
        # Actions AWS never denies (sts:GetCallerIdentity) are no probe of the policy.
        pool = sorted(
            a
            for a in catalog.all_actions()
            if a.split(":")[0] == service and a not in used and a not in _NEEDS_NO_PERMISSION
        )
        for action in rng.sample(pool, min(per_service, len(pool))):
            if catalog.is_wildcard_only(action):
                yield action, "*"
                continue
            types = catalog.resource_types(action)
            if not types:
                continue
            template = types[0].arn_template
            values = {
                "Partition": "aws",
                "Region": region,
                "Account": g.principal.account,
                "AccountId": g.principal.account,
            }
            arn = catalog.fill_template(template, values).replace("*", "iamtrim-probe")
            yield action, arn


def probes_for(g: GeneratedPolicy, rows: list[UsageRow], rng: random.Random) -> list[Probe]:
    arn = g.principal.arn
    out: list[Probe] = []
    used = [r for r in rows if r.outcome is Outcome.USED]
    used_actions = {r.action for r in used}
    granted = {a for ev in g.statements for a in ev.actions}
    format_widened = {
        a for ev in g.statements for a in ev.actions for w in ev.widened_by if w.kind in FORMAT_WIDENINGS
    }
    probed_other: set[tuple[str, str]] = set()
    for r in used:
        stand_in = None
        if r.resource is None:
            stand_in = _unknown_stand_in(g, r.action)
            if stand_in is None:
                continue
        resource = concrete(stand_in or r.resource or "*")
        req = request_for(arn, r, resource)
        out.append(Probe("replay", arn, oracle_request(arn, req), True))
        keys = _statement_conditions(g, r.action, resource)
        if "aws:SourceVpce" in keys:
            out.append(
                Probe(
                    "outside-vpce",
                    arn,
                    oracle_request(arn, req, drop=("aws:SourceVpce",), add={"aws:SourceIp": "203.0.113.9"}),
                    False,
                )
            )
        if "kms:ViaService" in keys:
            out.append(Probe("direct-kms", arn, oracle_request(arn, req, drop=("kms:ViaService",)), False))
        if r.resource and r.action not in format_widened and (r.action, r.resource) not in probed_other:
            other = _other_resource(r.action, r.resource)
            if other is not None:
                probed_other.add((r.action, r.resource))
                out.append(Probe("other-resource", arn, oracle_request(arn, req, resource=other), False))
    for action, resource in _unobserved(g, used_actions | granted, rng):
        fake = UsageRow(arn, action, resource, Outcome.USED, used[0].context, 1, "", "")
        out.append(Probe("unobserved-action", arn, oracle_request(arn, request_for(arn, fake)), False))
    for r in rows:
        if (
            r.outcome is Outcome.DENIED
            and r.resource
            and (r.action, r.resource) not in {(u.action, u.resource) for u in used}
        ):
            out.append(
                Probe("denied", arn, oracle_request(arn, request_for(arn, r, concrete(r.resource))), False)
            )
    return out


def generated(paths: list[Path]) -> Iterator[tuple[GeneratedPolicy, list[UsageRow]]]:
    with load_events(paths) as st:
        for p in st.principals():
            if not p.is_iam:
                continue
            rows = st.usage(p.arn)
            try:
                yield generate_identity_policy(p, rows), rows
            except IamtrimError:
                continue  # not accepted (no usage, refused by verification): nothing emitted to judge


def judge(paths: list[Path]) -> tuple[Counter[str], Counter[str], list[tuple[Probe, str]], int]:
    rng = random.Random(20261001)
    documents, probes = [], []
    principals = 0
    for g, rows in generated(paths):
        principals += 1
        ps = probes_for(g, rows, rng)
        probes.extend(ps)
        documents.append(
            {
                "identityPolicies": [p.policy.to_json() for p in g.policies],
                "requests": [p.request for p in ps],
            }
        )
    results = run_oracle(documents)
    counts: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    wrong = []
    for probe, result in zip(probes, results, strict=True):
        decision = decision_of(result)
        if decision == "error":
            errors[probe.kind] += 1
            continue
        counts[probe.kind] += 1
        if (decision == "allowed") != probe.expect_allowed:
            wrong.append((probe, decision))
    return counts, errors, wrong, principals


def _report(label: str, counts: Counter[str], errors: Counter[str], principals: int) -> None:
    print(
        f"\n{label}: {principals} principals; judged "
        + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
        + ("; oracle errors " + ", ".join(f"{k} {v}" for k, v in sorted(errors.items())) if errors else "")
    )


@pytest.fixture(scope="module")
def oracle_ready() -> None:
    require_oracle()


def test_samples_replay_allowed_and_probes_denied(oracle_ready: None) -> None:
    counts, errors, wrong, principals = judge([SAMPLES / "AWSLogs"])
    _report("samples", counts, errors, principals)
    assert principals == 5
    assert not wrong, [(p.kind, p.request["action"], p.request["resource"], d) for p, d in wrong[:10]]
    assert not errors["replay"], errors
    assert counts["replay"] >= 400
    for kind in ("unobserved-action", "other-resource", "outside-vpce", "direct-kms", "denied"):
        assert counts[kind] > 0, kind


@pytest.mark.corpus
def test_corpus_replay_allowed_and_probes_denied(oracle_ready: None, corpus: Path) -> None:
    counts, errors, wrong, principals = judge([corpus / "cloudtrail"])
    _report("corpus", counts, errors, principals)
    assert principals >= 100
    assert not wrong, [
        (p.principal, p.kind, p.request["action"], p.request["resource"], d) for p, d in wrong[:10]
    ]
    # The oracle refuses a few requests outright (e.g. an ARN matching several resource types);
    # they are counted, and must stay rare.
    assert not errors["replay"], errors
    judged = sum(counts.values())
    assert sum(errors.values()) <= judged // 50, errors
    assert counts["replay"] >= 300


def test_api_gateway_calls_replay_allowed(oracle_ready: None, tmp_path: Path) -> None:
    """API Gateway's management calls (HTTP methods on paths): the generated policy allows each
    REST API call the oracle can judge, and not the same method on another API or stage.

    The oracle's IAM data types REST API paths for the verb actions (``/restapis/...``) but not
    all of them (POST on ``/restapis/{id}/deployments``) nor HTTP API paths (``/apis/...``): it
    answers "no.resource.types" for those, which IAM itself never does (it matches the ARN).
    """
    calls = [
        ("GetResource", {"restApiId": "3rbEXAMPLE", "resourceId": "5tfEXAMPLE", "template": False}),
        ("GetRestApis", {"limit": 25}),
        ("UpdateStage", {"restApiId": "3rbEXAMPLE", "stageName": "prod", "patchOperations": []}),
        ("CreateDeployment", {"restApiId": "3rbEXAMPLE", "stageName": "prod"}),
        ("GetStage", {"apiId": "a1b2c3", "stageName": "$default"}),
        ("CreateRoute", {"apiId": "a1b2c3", "routeKey": "GET /items"}),
    ]
    records = [
        make_record_dict(
            eventSource="apigateway.amazonaws.com",
            eventName=name,
            requestParameters=request,
            resources=None,
            additionalEventData=None,
            eventCategory="Management",
        )
        for name, request in calls
    ]
    trail = tmp_path / "trail.json"
    trail.write_text(json.dumps({"Records": records}))
    (g, rows), *more = list(generated([trail]))
    assert not more
    assert {(r.action, r.resource) for r in rows} >= {
        ("apigateway:GET", "arn:aws:apigateway:us-east-1::/restapis/3rbEXAMPLE/resources/5tfEXAMPLE"),
        ("apigateway:POST", "arn:aws:apigateway:us-east-1::/apis/a1b2c3/routes"),
    }
    replays = [p.request for p in probes_for(g, rows, random.Random(1)) if p.kind == "replay"]
    assert len(replays) == len(calls)
    get = next(r for r in replays if r["resource"].endswith("/resources/5tfEXAMPLE"))
    patch = next(r for r in replays if r["action"] == "apigateway:PATCH")
    others = [
        {**get, "resource": get["resource"].replace("3rbEXAMPLE", "otherapi01")},
        {**patch, "resource": patch["resource"].replace("/stages/prod", "/stages/beta")},
    ]
    document = {"identityPolicies": [p.policy.to_json() for p in g.policies], "requests": replays + others}
    decisions = [decision_of(r) for r in run_oracle([document])]
    judged = dict(zip([r["resource"] for r in replays], decisions, strict=False))
    assert all(d in ("allowed", "error") for d in decisions[: len(replays)]), judged
    assert decisions[: len(replays)].count("allowed") >= 3, judged  # GetResource, GetRestApis, UpdateStage
    assert decisions[len(replays) :] == ["implicit-deny", "implicit-deny"], decisions
