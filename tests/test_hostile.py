"""Hostile input (issue 19, "Unsafe output"): whatever a caller puts in a request reaches
policies and reports only escaped.

Each case is a small fixture made here: records naming ``*``, ``?`` or ``$`` (S3 keys, a secret,
a role, a key, a function, a table, a parameter, a log group), Terraform template sequences,
oversize statements, HTML and terminal escapes. Policies are judged by the independent oracle:
a policy built from a key ``*`` allows that literal key and denies every other.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import hcl2
import msgspec
import pytest

from iamtrim.evaluate import Request, evaluate
from iamtrim.graph import resource_matches
from iamtrim.ingest import ingest, load_events
from iamtrim.model import Context, Outcome, Principal, PrincipalKind, UsageRow, has_wildcard, literal_of
from iamtrim.model.policy import Policy
from iamtrim.normalize.record import fast_parts, normalize_parts, normalize_record
from iamtrim.render import policy as render_policy
from iamtrim.render.common import md_code, md_text, terminal_safe
from iamtrim.sources.records import Record
from iamtrim.store import Store
from iamtrim.synth.bucket import BucketOptions, generate_bucket_policy
from iamtrim.synth.identity import GeneratedPolicy, generate_identity_policy
from iamtrim.synth.limits import Target
from tests.conftest import ROOT
from tests.factories import ACCOUNT, ROLE_ARN, make_record_dict, user_identity
from tests.oracle import decision_of, run_oracle

BUCKET = "acme-secret"
OTHER_ACCOUNT = "444455556666"
PARTNER = f"arn:aws:iam::{OTHER_ACCOUNT}:role/partner-reader"
R = "us-east-1"


def s3_get(bucket: str, key: str, error: str | None = "NoSuchKey", **overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "eventName": "GetObject",
        "requestParameters": {"bucketName": bucket, "key": key, "Host": f"{bucket}.s3.amazonaws.com"},
        "resources": [
            {"type": "AWS::S3::Object", "ARN": f"arn:aws:s3:::{bucket}/{key}"},
            {"accountId": ACCOUNT, "type": "AWS::S3::Bucket", "ARN": f"arn:aws:s3:::{bucket}"},
        ],
    }
    if error:
        fields.update(errorCode=error, errorMessage="The specified key does not exist.")
    fields.update(overrides)
    return make_record_dict(**fields)


def call(source: str, name: str, request: dict[str, Any], error: str) -> dict[str, Any]:
    """A management call that failed after authorization (the resource does not exist)."""
    record = make_record_dict(
        eventSource=source,
        eventName=name,
        requestParameters=request,
        additionalEventData=None,
        eventCategory="Management",
        managementEvent=True,
        errorCode=error,
        errorMessage="not found",
    )
    record["resources"] = None
    return record


def arn(service: str, resource: str, region: str = R) -> str:
    return f"arn:aws:{service}:{region}:{ACCOUNT}:{resource}"


# (id, record, action, stored resource, the literal a request names, other resources it must not allow)
CASES: list[tuple[str, dict[str, Any], str, str, str, tuple[str, ...]]] = [
    (
        "s3-key-star",
        s3_get(BUCKET, "*"),
        "s3:GetObject",
        f"arn:aws:s3:::{BUCKET}/${{*}}",
        f"arn:aws:s3:::{BUCKET}/*",
        (f"arn:aws:s3:::{BUCKET}/payroll.csv", f"arn:aws:s3:::{BUCKET}/a/b"),
    ),
    (
        "s3-prod-star",
        s3_get(BUCKET, "prod/*"),
        "s3:GetObject",
        f"arn:aws:s3:::{BUCKET}/prod/${{*}}",
        f"arn:aws:s3:::{BUCKET}/prod/*",
        (f"arn:aws:s3:::{BUCKET}/prod/db.env",),
    ),
    (
        "s3-inner-star",
        s3_get(BUCKET, "uploads/a*z"),
        "s3:GetObject",
        f"arn:aws:s3:::{BUCKET}/uploads/a${{*}}z",
        f"arn:aws:s3:::{BUCKET}/uploads/a*z",
        (f"arn:aws:s3:::{BUCKET}/uploads/abcz",),
    ),
    (
        "s3-question-mark",
        s3_get(BUCKET, "report-2024-0?.csv"),
        "s3:GetObject",
        f"arn:aws:s3:::{BUCKET}/report-2024-0${{?}}.csv",
        f"arn:aws:s3:::{BUCKET}/report-2024-0?.csv",
        (f"arn:aws:s3:::{BUCKET}/report-2024-01.csv",),
    ),
    (
        "s3-dollar",
        s3_get(BUCKET, "$x"),
        "s3:GetObject",
        f"arn:aws:s3:::{BUCKET}/${{$}}x",
        f"arn:aws:s3:::{BUCKET}/$x",
        (f"arn:aws:s3:::{BUCKET}/x",),
    ),
    (
        "secret",
        call(
            "secretsmanager.amazonaws.com",
            "GetSecretValue",
            {"secretId": "prod/*"},
            "ResourceNotFoundException",
        ),
        "secretsmanager:GetSecretValue",
        arn("secretsmanager", "secret:prod/${*}-??????"),
        arn("secretsmanager", "secret:prod/*-AbCdEf"),
        (arn("secretsmanager", "secret:prod/db-AbCdEf"),),
    ),
    (
        "role",
        call("iam.amazonaws.com", "GetRole", {"roleName": "*"}, "NoSuchEntity"),
        "iam:GetRole",
        arn("iam", "role/${*}", ""),
        arn("iam", "role/*", ""),
        (arn("iam", "role/admin", ""),),
    ),
    (
        "kms-key",
        call("kms.amazonaws.com", "DescribeKey", {"keyId": "*"}, "NotFoundException"),
        "kms:DescribeKey",
        arn("kms", "key/${*}"),
        arn("kms", "key/*"),
        (arn("kms", "key/1234abcd-12ab-34cd-56ef-1234567890ab"),),
    ),
    (
        "function",
        call(
            "lambda.amazonaws.com",
            "GetFunction20150331v2",
            {"functionName": "*"},
            "ResourceNotFoundException",
        ),
        "lambda:GetFunction",
        arn("lambda", "function:${*}"),
        arn("lambda", "function:*"),
        (arn("lambda", "function:billing"),),
    ),
    (
        "table",
        call("dynamodb.amazonaws.com", "DescribeTable", {"tableName": "*"}, "ResourceNotFoundException"),
        "dynamodb:DescribeTable",
        arn("dynamodb", "table/${*}"),
        arn("dynamodb", "table/*"),
        (arn("dynamodb", "table/users"),),
    ),
    (
        "parameter",
        call("ssm.amazonaws.com", "GetParameter", {"name": "/prod/*"}, "ParameterNotFound"),
        "ssm:GetParameter",
        arn("ssm", "parameter/prod/${*}"),
        arn("ssm", "parameter/prod/*"),
        (arn("ssm", "parameter/prod/db-password"),),
    ),
    (
        "log-group",
        call("logs.amazonaws.com", "DeleteLogGroup", {"logGroupName": "*"}, "ResourceNotFoundException"),
        "logs:DeleteLogGroup",
        arn("logs", "log-group:${*}"),
        arn("logs", "log-group:*"),
        (arn("logs", "log-group:/aws/lambda/billing"),),
    ),
]
IDS = [c[0] for c in CASES]


def decode(record: dict[str, Any]) -> Record:
    return msgspec.json.decode(json.dumps(record), type=Record)


def trail(tmp_path: Path, records: list[dict[str, Any]], name: str = "trail.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps({"Records": records}))
    return path


def generate(paths: list[Path], principal: str = ROLE_ARN) -> tuple[GeneratedPolicy, list[UsageRow]]:
    with load_events(paths, workers=1) as st:
        p = next(p for p in st.principals() if p.arn == principal)
        rows = st.usage(p.arn)
        return generate_identity_policy(p, rows), rows


def bare_wildcards(policy: Policy) -> list[str]:
    return [r for s in policy.statements for r in s.resources if has_wildcard(r)]


# ---------------------------------------------------------------------------------------------
# Normalization: every stored resource is an IAM pattern


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_a_literal_wildcard_is_stored_escaped(case: tuple[Any, ...]) -> None:
    _, record, action, stored, _, _ = case
    out = normalize_record(decode(record))
    assert isinstance(out, tuple)
    usages, _ = out
    assert [(u.action, u.resource) for u in usages] == [(action, stored)]
    assert usages[0].outcome is Outcome.USED and usages[0].context.error_code == record["errorCode"]


def test_the_fast_path_escapes_as_the_general_path_does() -> None:
    for key in ("*", "prod/*", "a?b", "$x", "${aws:username}", "%{if}"):
        record = decode(s3_get(BUCKET, key, error=None))
        fast = fast_parts(record)
        assert fast is not None
        assert fast == normalize_parts(record)
        ((_, resource),) = fast.uses
        assert not has_wildcard(resource) and literal_of(resource) == f"arn:aws:s3:::{BUCKET}/{key}"


def test_passed_role_and_copy_source_are_escaped() -> None:
    copy = decode(
        make_record_dict(
            eventName="CopyObject",
            requestParameters={"bucketName": BUCKET, "key": "dst", "x-amz-copy-source": "src-bucket/%2A"},
            resources=None,
        )
    )
    out = normalize_record(copy)
    assert isinstance(out, tuple)
    assert ("s3:GetObject", "arn:aws:s3:::src-bucket/${*}") in [(u.action, u.resource) for u in out[0]]


# ---------------------------------------------------------------------------------------------
# generate-policy: the literal only, judged by the oracle


@pytest.fixture(scope="module")
def hostile_policy(tmp_path_factory: pytest.TempPathFactory) -> tuple[GeneratedPolicy, list[UsageRow]]:
    tmp = tmp_path_factory.mktemp("hostile")
    return generate([trail(tmp, [c[1] for c in CASES])])


def test_policy_names_each_literal_and_no_wildcard_it_did_not_make(
    hostile_policy: tuple[GeneratedPolicy, list[UsageRow]],
) -> None:
    g, _ = hostile_policy
    (policy,) = [p.policy for p in g.policies]
    resources = {r for s in policy.statements for r in s.resources}
    assert {c[3] for c in CASES} <= resources
    # The only bare wildcard is the one iamtrim writes for a secret's random suffix.
    assert bare_wildcards(policy) == [arn("secretsmanager", "secret:prod/${*}-??????")]
    codes = {(f.code, f.subject.split(" ", 1)[-1]) for f in g.findings}
    for case in CASES:
        assert ("WILDCARD_IN_REQUEST", case[3]) in codes
        assert ("FAILED_CALLS_ONLY", case[3]) in codes


def _request(principal: str, action: str, resource: str, account: str = ACCOUNT) -> dict[str, Any]:
    out: dict[str, Any] = {
        "principal": principal,
        "action": action,
        "resource": resource,
        "resourceAccount": account,
        "context": {"aws:SecureTransport": "true", "aws:RequestedRegion": R},
    }
    if action.startswith("kms:"):
        # KMS needs a key policy that lets IAM policies count (the default key policy does).
        out["resourcePolicy"] = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
                    "Action": "kms:*",
                    "Resource": "*",
                }
            ],
        }
    return out


def test_oracle_allows_the_literal_and_denies_every_other_name(
    hostile_policy: tuple[GeneratedPolicy, list[UsageRow]],
) -> None:
    g, _ = hostile_policy
    docs = [p.policy.to_json() for p in g.policies]
    probes: list[tuple[str, str, str, bool]] = []
    for name, _, action, _, literal, others in CASES:
        probes.append((name, action, literal, True))
        probes += [(name, action, other, False) for other in others]
    results = run_oracle(
        [{"identityPolicies": docs, "requests": [_request(ROLE_ARN, a, r) for _, a, r, _ in probes]}]
    )
    wrong = [
        (name, resource, decision_of(res))
        for (name, _, resource, allowed), res in zip(probes, results, strict=True)
        if (decision_of(res) == "allowed") != allowed
    ]
    assert not wrong
    # iamtrim's own evaluator agrees with the oracle on every probe.
    policies = [p.policy for p in g.policies]
    for _, action, resource, allowed in probes:
        req = Request.make(
            ROLE_ARN, action, resource, {"aws:SecureTransport": "true"}, resource_account=ACCOUNT
        )
        if action.startswith("kms:"):
            kp = Policy.from_json(_request(ROLE_ARN, action, resource)["resourcePolicy"])
            assert evaluate(req, policies, resource_policy=kp).allowed is allowed
        else:
            assert evaluate(req, policies).allowed is allowed


def test_a_key_star_is_no_folded_folder_in_the_store(tmp_path: Path) -> None:
    # Before: the leaf "*" was taken for a folder folded upstream, and absorbed the keys after it.
    records = [s3_get(BUCKET, "*", error=None)] + [s3_get(BUCKET, f"k{i}", error=None) for i in range(5)]
    with load_events([trail(tmp_path, records)], workers=1) as st:
        stored = sorted(r.resource or "" for r in st.usage(ROLE_ARN))
    assert stored == sorted(
        [f"arn:aws:s3:::{BUCKET}/${{*}}"] + [f"arn:aws:s3:::{BUCKET}/k{i}" for i in range(5)]
    )


def test_keys_only_failed_calls_named_are_granted_exactly(tmp_path: Path) -> None:
    # 14 keys: more than generate-policy's threshold (10), fewer than the store's fold bound (16).
    failed = [s3_get(BUCKET, f"probe/k{i:02}") for i in range(14)]  # NoSuchKey: never a prefix
    ok = [s3_get("acme-data", f"data/k{i:02}", error=None) for i in range(14)]
    g, rows = generate([trail(tmp_path, failed + ok)])
    assert len({r.resource for r in rows if BUCKET in (r.resource or "")}) == 14  # the store kept each
    resources = {r for p in g.policies for s in p.policy.statements for r in s.resources}
    assert {f"arn:aws:s3:::{BUCKET}/probe/k{i:02}" for i in range(14)} <= resources
    assert not any(r.startswith(f"arn:aws:s3:::{BUCKET}/") and has_wildcard(r) for r in resources)
    assert "arn:aws:s3:::acme-data/data/*" in resources  # the successful keys still generalize
    listed = {f.subject for f in g.findings if f.code == "FAILED_CALLS_ONLY"}
    assert f"s3:GetObject arn:aws:s3:::{BUCKET}/probe/k07" in listed
    assert not any("acme-data" in s for s in listed)


def test_forty_failed_keys_in_one_folder_are_neither_folded_nor_generalized(tmp_path: Path) -> None:
    """40 NoSuchKey keys in one folder: more than the store's fold bound (16) too. The store keeps
    each exactly, generate-policy grants each exactly and lists it; the oracle denies a sibling
    key nobody asked for. Shuffled and split over two ingest runs: the same store."""
    import random

    failed = [s3_get(BUCKET, f"probe/k{i:02}") for i in range(40)]
    ok = [s3_get("acme-data", f"data/k{i}", error=None) for i in range(3)]
    records = failed + ok
    g, rows = generate([trail(tmp_path, records)])
    probe = [r for r in rows if (r.resource or "").startswith(f"arn:aws:s3:::{BUCKET}/")]
    assert sorted(r.resource or "" for r in probe) == [
        f"arn:aws:s3:::{BUCKET}/probe/k{i:02}" for i in range(40)
    ]
    assert all(r.context.error_code == "NoSuchKey" for r in probe)
    resources = {r for p in g.policies for s in p.policy.statements for r in s.resources}
    assert {f"arn:aws:s3:::{BUCKET}/probe/k{i:02}" for i in range(40)} <= resources
    assert not any(r.startswith(f"arn:aws:s3:::{BUCKET}/") and has_wildcard(r) for r in resources)
    listed = {f.subject for f in g.findings if f.code == "FAILED_CALLS_ONLY"}
    assert {f"s3:GetObject arn:aws:s3:::{BUCKET}/probe/k{i:02}" for i in range(40)} <= listed
    docs = [p.policy.to_json() for p in g.policies]
    probes = [
        (f"arn:aws:s3:::{BUCKET}/probe/k00", True),
        (f"arn:aws:s3:::{BUCKET}/probe/k39", True),
        (f"arn:aws:s3:::{BUCKET}/probe/k40", False),  # a sibling never requested
        (f"arn:aws:s3:::{BUCKET}/probe/other.csv", False),
        ("arn:aws:s3:::acme-data/data/k1", True),
    ]
    results = run_oracle(
        [{"identityPolicies": docs, "requests": [_request(ROLE_ARN, "s3:GetObject", r) for r, _ in probes]}]
    )
    assert [decision_of(res) == "allowed" for res in results] == [allowed for _, allowed in probes]

    def stored(st: Store) -> list[tuple[object, ...]]:
        return sorted(
            (r.principal, r.action, r.resource, r.outcome, r.context, r.count) for r in st.stored_rows()
        )

    with load_events([trail(tmp_path, records, "all.json")], workers=1) as st:
        one_run = stored(st)
    shuffled = list(records)
    random.Random(19).shuffle(shuffled)
    with Store(tmp_path / "two.sqlite") as st:
        ingest([trail(tmp_path, shuffled[:17], "first.json")], st, workers=1)
        ingest([trail(tmp_path, shuffled[17:], "second.json")], st, workers=1)
        assert stored(st) == one_run


def partner_identity() -> dict[str, Any]:
    return user_identity(
        "AssumedRole",
        arn=f"arn:aws:sts::{OTHER_ACCOUNT}:assumed-role/partner-reader/s1",
        accountId=OTHER_ACCOUNT,
        principalId="AROAPARTNER:s1",
        sessionContext={
            "sessionIssuer": {
                "type": "Role",
                "principalId": "AROAPARTNER",
                "arn": PARTNER,
                "accountId": OTHER_ACCOUNT,
                "userName": "partner-reader",
            },
            "attributes": {"creationDate": "2024-05-01T11:00:00Z", "mfaAuthenticated": "false"},
        },
    )


def test_bucket_policy_grants_a_cross_account_caller_the_literal_key(tmp_path: Path) -> None:
    partner = partner_identity()
    shared = "acme-shared"
    records = [
        s3_get(shared, "exports/report.csv", error=None),
        s3_get(shared, "*", error=None, userIdentity=partner),
        s3_get(shared, "in/a?b", error="NoSuchKey", userIdentity=partner),
        s3_get(shared, "in/c", error=None, userIdentity=partner),
    ]
    with load_events([trail(tmp_path, records)], workers=1) as st:
        g = generate_bucket_policy(shared, st.usage(), BucketOptions(account=ACCOUNT))
    grants = [
        s for s in g.policy.statements if s.principals is not None and PARTNER in str(s.principals.to_json())
    ]
    granted = {r for s in grants for r in s.resources}
    assert f"arn:aws:s3:::{shared}/${{*}}" in granted and f"arn:aws:s3:::{shared}/*" not in granted
    assert f"arn:aws:s3:::{shared}/in/a${{?}}b" in granted  # only a failed call named it: exact
    assert {f.code for f in g.findings} >= {"WILDCARD_IN_REQUEST", "FAILED_CALLS_ONLY"}
    doc = g.policy.to_json()
    allow_all = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
    probes = [
        (f"arn:aws:s3:::{shared}/*", True),
        (f"arn:aws:s3:::{shared}/in/a?b", True),
        (f"arn:aws:s3:::{shared}/exports/report.csv", False),
        (f"arn:aws:s3:::{shared}/in/axb", False),
    ]
    session = f"arn:aws:sts::{OTHER_ACCOUNT}:assumed-role/partner-reader/s1"
    results = run_oracle(
        [
            {
                "identityPolicies": [allow_all],
                "resourcePolicy": doc,
                "requests": [
                    {**_request(session, "s3:GetObject", r), "resourceAccount": ACCOUNT} for r, _ in probes
                ],
            }
        ]
    )
    assert [decision_of(r) == "allowed" for r in results] == [a for _, a in probes]


def test_who_used_reads_stored_escapes_as_literals() -> None:
    stored = f"arn:aws:s3:::{BUCKET}/${{*}}"
    assert resource_matches(f"arn:aws:s3:::{BUCKET}/*", stored)  # a pattern the user typed
    assert resource_matches(f"arn:aws:s3:::{BUCKET}/${{*}}", stored)  # the literal, escaped
    assert resource_matches(f"arn:aws:s3:::{BUCKET}", stored)  # the bucket covers its objects
    assert not resource_matches(f"arn:aws:s3:::{BUCKET}/${{*}}", f"arn:aws:s3:::{BUCKET}/payroll.csv")
    # a stored literal is no pattern: it does not cover another key
    assert not resource_matches(f"arn:aws:s3:::{BUCKET}/payroll.csv", stored)
    # a folded folder (iamtrim's own "*") still covers the keys under it
    assert resource_matches(f"arn:aws:s3:::{BUCKET}/prod/db.env", f"arn:aws:s3:::{BUCKET}/prod/*")


# ---------------------------------------------------------------------------------------------
# Terraform: parsed by a real HCL parser, the policy is the JSON policy

TF_KEYS = [
    "r/%{if true}y%{endif}.csv",
    "50%{off",
    "a/${x}",
    "$${y}",
    "%%{z}",
    'q"uote',
    "back\\slash\\b",
    "new\nline",
    "tab\tc",
    "bell\x07\x08\x0c",
    "EOT",
    "\nEOT\n",
    "caf\u00e9 \u202e",
    "*",
    "?",
    "$",
]


def _hcl_decode(value: str) -> str:
    """The text of a parsed HCL template with only literal parts: ``$${`` → ``${``, ``%%{`` →
    ``%{`` (python-hcl2 leaves these escapes as written). A live ``${``/``%{`` would be a template
    sequence Terraform evaluates: there must be none."""
    out = []
    pos = 0
    for m in re.finditer(r"\$\$\{|%%\{|\$\{|%\{", value):
        assert m.group(0) in ("$${", "%%{"), (
            f"live template sequence at {m.start()}: {value[m.start() : m.start() + 20]!r}"
        )
        out.append(value[pos : m.start()] + m.group(0)[1:])
        pos = m.end()
    return "".join(out) + value[pos:]


def _parse_tf(text: str) -> list[dict[str, Any]]:
    parsed = hcl2.loads(text, serialization_options=hcl2.SerializationOptions(strip_string_quotes=True))
    return [body for block in parsed["resource"] for kind in block.values() for body in kind.values()]


@pytest.mark.parametrize("target", [Target.MANAGED, Target.INLINE])
def test_terraform_parses_back_to_the_json_policy(tmp_path: Path, target: Target) -> None:
    # one bucket per key: no folder holds enough keys to be generalized
    g, _ = generate([trail(tmp_path, [s3_get(f"b{i}", k, error=None) for i, k in enumerate(TF_KEYS)])])
    text = render_policy.to_terraform(g, target)
    bodies = [b for b in _parse_tf(text) if "policy" in b]
    assert len(bodies) == len(g.policies)
    for body, named in zip(bodies, g.policies, strict=True):
        heredoc = body["policy"]
        m = re.fullmatch(r"<<-EOT\n(.*)\n\s*EOT", heredoc, re.DOTALL)
        assert m is not None
        # python-hcl2 returns a heredoc's text without reading its template: the HCL template
        # rules (no backslash escapes in a heredoc, "$${" and "%%{" the escapes) are applied here.
        # https://developer.hashicorp.com/terraform/language/expressions/strings#heredoc-strings
        assert json.loads(_hcl_decode(m.group(1))) == named.policy.to_json()
        assert _hcl_decode(body["name"]) == named.name
    keys = {literal_of(r) for p in g.policies for s in p.policy.statements for r in s.resources}
    assert {f"arn:aws:s3:::b{i}/{k}" for i, k in enumerate(TF_KEYS)} <= keys


@pytest.mark.parametrize("text", [k for k in TF_KEYS if k != "50%{off"] + ["r${a}%{b}\n"])
def test_quoted_hcl_strings_parse_back_to_the_text(text: str) -> None:
    # "50%%{off" is valid HCL, but python-hcl2's grammar reads "%%{" only up to a "}"
    # (ESCAPED_DIRECTIVE /%%\{[^}]*\}/), so an unclosed one is left out here.
    quoted = render_policy._hcl_string(text)
    parsed = hcl2.loads(
        f"x = {quoted}\ny = 1\n", serialization_options=hcl2.SerializationOptions(strip_string_quotes=True)
    )
    assert _hcl_decode(parsed["x"]) == text and parsed["y"] == 1


def test_terraform_names_from_records_are_hcl_strings() -> None:
    principal = Principal(f"arn:aws:iam::{ACCOUNT}:role/x", PrincipalKind.ROLE, ACCOUNT, 'r"${a}%{b}\n')
    row = UsageRow(principal.arn, "s3:ListAllMyBuckets", "*", Outcome.USED, Context(region=R), 1, "t", "t")
    g = generate_identity_policy(principal, [row])
    for target in (Target.MANAGED, Target.INLINE):
        text = render_policy.to_terraform(g, target)
        for body in _parse_tf(text):
            owner = body.get("role")
            if owner is not None:
                assert _hcl_decode(owner) == 'r"${a}%{b}\n'


# ---------------------------------------------------------------------------------------------
# Size limits: every emitted document fits, or the command says why (exit 1, one line)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "iamtrim", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
        check=False,
    )


def _fits_or_refused(proc: subprocess.CompletedProcess[str], limit: int, measure: str) -> None:
    if proc.returncode == 0:
        docs = json.loads(proc.stdout)
        for doc in docs if isinstance(docs, list) else [docs]:
            text = json.dumps(doc, separators=(",", ":"))
            size = len(text) if measure == "chars" else len(text.encode())
            assert size <= limit
    else:
        assert proc.returncode == 1, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "at most" in lines[0], proc.stderr
        assert "Traceback" not in proc.stderr


def test_400_vpc_endpoints_fit_or_refuse(tmp_path: Path) -> None:
    records = [
        s3_get("acme-data", "models/m.tar.gz", error=None, vpcEndpointId=f"vpce-{i:017x}") for i in range(400)
    ]
    path = trail(tmp_path, records)
    proc = run_cli("generate-policy", "TrainingRole", "--events", str(path), "--format", "policy")
    _fits_or_refused(proc, 6144, "chars")


def test_a_10_mb_key_fits_or_refuses(tmp_path: Path) -> None:
    key = "k/" + "x" * 10_000_000
    path = trail(tmp_path, [s3_get("acme-data", key, error=None), s3_get("acme-data", "a", error=None)])
    proc = run_cli("generate-policy", "TrainingRole", "--events", str(path), "--format", "policy")
    _fits_or_refused(proc, 6144, "chars")
    assert proc.returncode == 1  # no policy holds it


def test_bucket_policy_over_20_kb_is_refused(tmp_path: Path) -> None:
    # A cross-account caller is granted the keys it used: one 30 KB key makes the policy too large.
    key = "k/" + "y" * 30_000
    records = [
        s3_get("acme-data", "a", error=None),
        s3_get("acme-data", key, error=None, userIdentity=partner_identity()),
    ]
    proc = run_cli(
        "bucket-policy", "acme-data", "--events", str(trail(tmp_path, records)), "--account", ACCOUNT
    )
    _fits_or_refused(proc, 20 * 1024, "bytes")
    assert proc.returncode == 1


def test_key_policy_over_32_kb_is_refused(tmp_path: Path) -> None:
    key_arn = arn("kms", "key/1234abcd-12ab-34cd-56ef-1234567890ab")
    records = []
    for i in range(300):
        role = f"arn:aws:iam::{ACCOUNT}:role/{'r' * 100}{i:03}"
        ident = user_identity(
            "AssumedRole",
            arn=f"arn:aws:sts::{ACCOUNT}:assumed-role/{'r' * 100}{i:03}/s",
            sessionContext={
                "sessionIssuer": {"type": "Role", "arn": role, "accountId": ACCOUNT, "userName": "r"},
                "attributes": {"creationDate": "2024-05-01T11:00:00Z", "mfaAuthenticated": "false"},
            },
        )
        records.append(
            make_record_dict(
                eventSource="kms.amazonaws.com",
                eventName="Decrypt",
                userIdentity=ident,
                requestParameters={"encryptionAlgorithm": "SYMMETRIC_DEFAULT"},
                resources=[{"accountId": ACCOUNT, "type": "AWS::KMS::Key", "ARN": key_arn}],
                additionalEventData=None,
                eventCategory="Management",
            )
        )
    path = trail(tmp_path, records)
    proc = run_cli("kms-policy", key_arn, "--events", str(path))
    _fits_or_refused(proc, 32 * 1024, "bytes")
    assert proc.returncode == 1


# ---------------------------------------------------------------------------------------------
# Markdown and terminals

HOSTILE_TEXT = "<script>alert(1)</script><b>x</b>|cell\nrow\x1b]0;pwned\x07\x9b2J\u202eevil"


def test_markdown_text_and_code_escape_html_pipes_and_newlines() -> None:
    text = md_text(HOSTILE_TEXT)
    assert "<" not in text and ">" not in text and "\n" not in text
    assert "|" not in text.replace("\\|", "")
    assert not re.search(r"[\x00-\x1f\x7f-\x9f\u202e]", text)
    code = md_code("a`b|c\nd")
    assert code.startswith("``") and "\n" not in code and "\\|" in code


def test_terminal_safe_writes_every_control_character_visibly() -> None:
    every = "".join(chr(c) for c in [*range(0x20), 0x7F, *range(0x80, 0xA0), 0x202E, 0x2028])
    out = terminal_safe(every)
    assert out.isprintable() and "\\x1b" in out and "\\x9b" in out and "\\u202e" in out


def test_reports_from_hostile_records_hold_no_control_characters(tmp_path: Path) -> None:
    key = "k/" + HOSTILE_TEXT
    path = trail(tmp_path, [s3_get(BUCKET, key, error=None), s3_get(BUCKET, "*")])
    outputs = [
        run_cli("usage", "TrainingRole", "--events", str(path)),
        run_cli("who-used", f"arn:aws:s3:::{BUCKET}", "--events", str(path)),
        run_cli("generate-policy", "TrainingRole", "--events", str(path), "--format", "policy", "--explain"),
        run_cli("principals", "--events", str(path)),
    ]
    for proc in outputs:
        assert proc.returncode == 0, proc.stderr
        for stream in (proc.stdout, proc.stderr):
            assert not re.search(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u202e]", stream), stream[:500]
    assert "\\x1b]0;pwned\\x07" in outputs[0].stdout  # shown, visibly


def test_a_v2_store_has_its_literals_escaped_when_opened(tmp_path: Path) -> None:
    import sqlite3

    from iamtrim import store as store_mod
    from iamtrim.store import Store

    path = tmp_path / "v2.sqlite"
    db = sqlite3.connect(path)
    db.executescript(store_mod._SCHEMA)
    db.executescript(store_mod._SCHEMA_2)
    db.execute("INSERT INTO meta VALUES ('schema', '2')")
    secret = arn("secretsmanager", "secret:prod/a?b-??????")
    for resource in (
        f"arn:aws:s3:::{BUCKET}/$x",
        f"arn:aws:s3:::{BUCKET}/a?",
        secret,
        f"arn:aws:s3:::{BUCKET}/k",
    ):
        db.execute(
            "INSERT INTO usage VALUES (?, 's3:GetObject', ?, 'used', '[]', 1, 't', 't', '[]', '[]')",
            (ROLE_ARN, resource),
        )
    db.commit()
    db.close()
    with Store(path) as st:
        assert st.meta("schema") == "6" and st.meta("migrated_from") == "2"
        assert sorted(r.resource or "" for r in st.usage()) == sorted(
            [
                f"arn:aws:s3:::{BUCKET}/${{$}}x",
                f"arn:aws:s3:::{BUCKET}/a${{?}}",
                arn("secretsmanager", "secret:prod/a${?}b-??????"),
                f"arn:aws:s3:::{BUCKET}/k",
            ]
        )
    with Store(path) as st:  # reopening changes nothing
        assert sorted(r.resource or "" for r in st.usage())[0] == f"arn:aws:s3:::{BUCKET}/${{$}}x"


def test_a_failed_key_under_a_generalized_folder_adds_nothing(tmp_path: Path) -> None:
    ok = [s3_get("acme-data", f"data/k{i:02}", error=None) for i in range(20)]
    g, _ = generate([trail(tmp_path, [*ok, s3_get("acme-data", "data/missing")])])
    resources = {r for p in g.policies for s in p.policy.statements for r in s.resources}
    assert resources == {"arn:aws:s3:::acme-data/data/*"}  # the successful keys' prefix covers it
    assert not [f for f in g.findings if f.code == "FAILED_CALLS_ONLY"]
