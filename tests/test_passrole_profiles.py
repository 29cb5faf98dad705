"""iam:PassRole through an instance profile (issue 12).

A call that passes an instance profile (EC2 RunInstances ``iamInstanceProfile``, EMR
``jobFlowRole``, OpsWorks ``defaultInstanceProfileArn``) needs iam:PassRole on the role inside
the profile, which the record does not name
(https://docs.aws.amazon.com/IAM/latest/UserGuide/id_roles_use_switch-role-ec2.html#roles-usingrole-ec2instance-permissions).
generate-policy grants it on the role the profile held — from the profile's logged changes in
the store or from IAM authorization details — and otherwise on ``role/*`` of the profile's
account, listed as a widening. Judged by the oracle: the role passed is allowed, another is not.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest

from iamtrim.ingest import load_events
from iamtrim.model import Outcome, Skipped
from iamtrim.model.profile import ProfileChange, ProfileChangeKind, ProfileRoles, instance_profile_of
from iamtrim.normalize import normalize_record
from iamtrim.normalize.record import profile_change
from iamtrim.store import Store
from tests.awsparts import cli_here as cli
from tests.factories import ACCOUNT, ROLE_ARN, management_event, management_record_dict, user_identity
from tests.oracle import decision_of, run_oracle

OTHER = "999988887777"  # the account the instances are launched in (cross-account session)
PROFILE = f"arn:aws:iam::{ACCOUNT}:instance-profile/web-profile"
WEB_ROLE = f"arn:aws:iam::{ACCOUNT}:role/web-role"
ADMIN = f"arn:aws:iam::{ACCOUNT}:user/admin"


def _event(name: str, source: str, request: dict[str, Any], when: str, **fields: Any) -> dict[str, Any]:
    return management_record_dict(source, name, request, eventTime=when, **fields)


def run_instances(when: str, profile: dict[str, str], **fields: Any) -> dict[str, Any]:
    # https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_RunInstances.html (IamInstanceProfile)
    return _event(
        "RunInstances",
        "ec2.amazonaws.com",
        {
            "instancesSet": {"items": [{"imageId": "ami-0abcdef1234567890", "minCount": 1, "maxCount": 1}]},
            "iamInstanceProfile": profile,
        },
        when,
        responseElements={"instancesSet": {"items": [{"instanceId": "i-0123456789abcdef0"}]}},
        **fields,
    )


def by_admin(name: str, request: dict[str, Any], when: str) -> dict[str, Any]:
    identity = user_identity("IAMUser", arn=ADMIN, userName="admin", principalId="AIDAADMIN")
    return _event(name, "iam.amazonaws.com", request, when, userIdentity=identity)


def add_role(role: str, when: str) -> dict[str, Any]:
    return by_admin(
        "AddRoleToInstanceProfile", {"instanceProfileName": "web-profile", "roleName": role}, when
    )


def remove_role(role: str, when: str) -> dict[str, Any]:
    return by_admin(
        "RemoveRoleFromInstanceProfile", {"instanceProfileName": "web-profile", "roleName": role}, when
    )


def trail(tmp_path: Path, records: list[dict[str, Any]]) -> Path:
    path = tmp_path / "trail.json"
    path.write_text(json.dumps({"Records": records}))
    return path


def policy(path: Path, who: str = ROLE_ARN, *extra: str) -> dict[str, Any]:
    code, out, err = cli("generate-policy", who, "--events", str(path), "--format", "json", *extra)
    assert code == 0, err
    result: dict[str, Any] = json.loads(out)
    return result


def pass_role_resources(out: dict[str, Any]) -> set[str]:
    return {
        r
        for p in out["policies"]
        for st in p["document"]["Statement"]
        if "iam:PassRole" in ([st["Action"]] if isinstance(st["Action"], str) else st["Action"])
        for r in ([st["Resource"]] if isinstance(st["Resource"], str) else st["Resource"])
    }


def oracle_pass_role(out: dict[str, Any], who: str, roles: list[str]) -> list[bool]:
    """The oracle's answer to iam:PassRole on each of *roles* under the generated policies."""
    docs = [
        {
            "identityPolicies": [p["document"] for p in out["policies"]],
            "requests": [
                {"principal": who, "action": "iam:PassRole", "resource": r, "context": {}} for r in roles
            ],
        }
    ]
    decisions = [decision_of(r) for r in run_oracle(docs)]
    assert "error" not in decisions, decisions
    return [d == "allowed" for d in decisions]


# --------------------------------------------------------------------------- normalization


def test_a_profile_is_recorded_as_passrole_on_its_arn() -> None:
    """By ARN or by name (in the account the call was sent to), EC2's {"arn"}/{"name"} shape,
    EMR's jobFlowRole (an instance profile's name); never a role this record does not name."""
    cases = [
        (run_instances("2026-10-02T10:00:00Z", {"arn": PROFILE, "id": "AIPAEXAMPLE"}), PROFILE),
        (
            run_instances("2026-10-02T10:00:00Z", {"name": "web-profile"}, recipientAccountId=OTHER),
            f"arn:aws:iam::{OTHER}:instance-profile/web-profile",
        ),
        (
            _event(
                "RunJobFlow",
                "elasticmapreduce.amazonaws.com",
                {"name": "c", "jobFlowRole": "EMR_EC2_DefaultRole"},
                "2026-10-02T10:00:00Z",
            ),
            f"arn:aws:iam::{ACCOUNT}:instance-profile/EMR_EC2_DefaultRole",
        ),
    ]
    for rec, expected in cases:
        out = normalize_record(
            management_event(
                rec["eventSource"],
                rec["eventName"],
                rec["requestParameters"],
                **{k: rec[k] for k in ("recipientAccountId",) if k in rec},
            )
        )
        assert not isinstance(out, Skipped)
        assert [u.resource for u in out[0] if u.action == "iam:PassRole"] == [expected]
    assert instance_profile_of(f"arn:aws:iam::{ACCOUNT}:instance-profile/team/a/web") == (
        "aws",
        ACCOUNT,
        "web",
    )
    assert instance_profile_of(WEB_ROLE) is None


def test_add_role_to_instance_profile_needs_passrole_and_is_a_change() -> None:
    """ "The caller of this operation must be granted the PassRole permission on the IAM role"
    (API_AddRoleToInstanceProfile); the record is also a change of the profile. A failed call
    changes nothing."""
    rec = management_event(
        "iam.amazonaws.com",
        "AddRoleToInstanceProfile",
        {"instanceProfileName": "web-profile", "roleName": "web-role"},
    )
    out = normalize_record(rec)
    assert not isinstance(out, Skipped)
    assert ("iam:PassRole", WEB_ROLE) in [(u.action, u.resource) for u in out[0]]
    change = profile_change(rec)
    assert change is not None and (change.profile, change.kind, change.role) == (
        "web-profile",
        ProfileChangeKind.ADD,
        WEB_ROLE,
    )
    failed = management_event(
        "iam.amazonaws.com",
        "AddRoleToInstanceProfile",
        {"instanceProfileName": "web-profile", "roleName": "web-role"},
        errorCode="LimitExceeded",
    )
    assert profile_change(failed) is None
    assert profile_change(management_event("iam.amazonaws.com", "GetRole", {"roleName": "x"})) is None


# --------------------------------------------------------------------------- the evidence


def test_the_role_a_profile_held_over_a_span() -> None:
    """An instance profile holds at most one role (API_AddRoleToInstanceProfile): before a
    successful Add it was empty, before a Remove it held that role."""

    def change(when: str, kind: ProfileChangeKind, role: str = "") -> ProfileChange:
        return ProfileChange(when, ACCOUNT, "web-profile", kind, role)

    r1, r2 = f"arn:aws:iam::{ACCOUNT}:role/r1", f"arn:aws:iam::{ACCOUNT}:role/r2"
    ev = ProfileRoles(
        (
            change("2026-10-05T00:00:00Z", ProfileChangeKind.REMOVE, r1),
            change("2026-10-06T00:00:00Z", ProfileChangeKind.ADD, r2),
        )
    )
    assert ev.roles_for(ACCOUNT, "web-profile", "2026-10-01T00:00:00Z", "2026-10-02T00:00:00Z")[0] == (r1,)
    assert ev.roles_for(ACCOUNT, "web-profile", "2026-10-07T00:00:00Z", "2026-10-08T00:00:00Z")[0] == (r2,)
    assert ev.roles_for(ACCOUNT, "web-profile", "2026-10-01T00:00:00Z", "2026-10-08T00:00:00Z")[0] == (r1, r2)
    # Between the two changes it held nothing: the history cannot explain a pass then.
    assert ev.roles_for(ACCOUNT, "web-profile", "2026-10-05T06:00:00Z", "2026-10-05T07:00:00Z")[0] == ()
    # Another profile, another account: nothing known.
    assert ev.roles_for(OTHER, "web-profile", "2026-10-01T00:00:00Z", "2026-10-08T00:00:00Z")[0] == ()
    added_first = ProfileRoles((change("2026-10-05T00:00:00Z", ProfileChangeKind.ADD, r1),))
    assert (
        added_first.roles_for(ACCOUNT, "web-profile", "2026-10-01T00:00:00Z", "2026-10-02T00:00:00Z")[0] == ()
    )


def test_profile_changes_are_stored_once(tmp_path: Path) -> None:
    path = trail(tmp_path, [add_role("web-role", "2026-10-01T10:00:00Z")])
    store = tmp_path / "usage.sqlite"
    for _ in range(2):
        code, _, err = cli("ingest", str(path), "--store", str(store))
        assert code == 0, err
    with Store(store) as st:
        changes = st.profile_changes()
    assert [(c.profile, c.kind, c.role) for c in changes] == [
        ("web-profile", ProfileChangeKind.ADD, WEB_ROLE)
    ]


# --------------------------------------------------------------------------- generate-policy


@pytest.mark.oracle
def test_passrole_through_a_profile_is_granted_on_the_role_it_held(tmp_path: Path) -> None:
    """The store holds the admin's AddRoleToInstanceProfile: the launcher's RunInstances passed
    web-role, under whatever path IAM keeps it (AddRoleToInstanceProfile names it by name)."""
    path = trail(
        tmp_path,
        [
            add_role("web-role", "2026-10-01T10:00:00Z"),
            run_instances("2026-10-02T10:00:00Z", {"arn": PROFILE}),
        ],
    )
    out = policy(path)
    assert pass_role_resources(out) == {WEB_ROLE, f"arn:aws:iam::{ACCOUNT}:role/*/web-role"}
    assert [f["code"] for f in out["findings"] if "instance-profile" in f["subject"]] == [
        "INSTANCE_PROFILE_ROLE"
    ]
    listed = {w["pattern"]: w for w in out["widenings"]}
    assert "any path" in listed[f"arn:aws:iam::{ACCOUNT}:role/*/web-role"]["admits"]
    others = [
        f"arn:aws:iam::{ACCOUNT}:role/admin",
        f"arn:aws:iam::{ACCOUNT}:role/web-role-2",
        f"arn:aws:iam::{OTHER}:role/web-role",
    ]
    assert oracle_pass_role(
        out, ROLE_ARN, [WEB_ROLE, f"arn:aws:iam::{ACCOUNT}:role/ec2/web-role", *others]
    ) == [
        True,
        True,
        False,
        False,
        False,
    ]
    # The admin's AddRoleToInstanceProfile needed PassRole on the role too.
    admin = policy(path, ADMIN)
    assert oracle_pass_role(admin, ADMIN, [WEB_ROLE, others[0]]) == [True, False]


@pytest.mark.oracle
def test_without_evidence_every_role_of_the_profiles_account_listed_with_why(tmp_path: Path) -> None:
    """No change of the profile in the store, no authorization details: ``role/*`` of the account
    the profile is in (the record's), never ``*``; a resource-unknown widening that says why."""
    path = trail(tmp_path, [run_instances("2026-10-02T10:00:00Z", {"name": "web-profile"})])
    out = policy(path)
    fallback = f"arn:aws:iam::{ACCOUNT}:role/*"
    assert pass_role_resources(out) == {fallback}
    (w,) = [w for w in out["widenings"] if w["pattern"] == fallback]
    assert w["kind"] == "resource-unknown" and "instance-profile/web-profile" in w["admits"]
    assert "--authz" in w["admits"]
    assert oracle_pass_role(out, ROLE_ARN, [f"arn:aws:iam::{ACCOUNT}:role/any/path/x"]) == [True]


def authz_file(tmp_path: Path, profile_roles: list[str]) -> Path:
    """GetAccountAuthorizationDetails output in its real shape: a profile is listed under each
    role it holds (RoleDetailList[].InstanceProfileList[].Roles[])."""
    profile = {
        "Path": "/",
        "InstanceProfileName": "web-profile",
        "InstanceProfileId": "AIPAEXAMPLE",
        "Arn": PROFILE,
        "CreateDate": "2026-01-01T00:00:00Z",
        "Roles": [
            {"Path": "/ec2/", "RoleName": r.rsplit("/", 1)[1], "RoleId": "AROAEXAMPLE", "Arn": r}
            for r in profile_roles
        ],
    }
    roles = [
        {
            "Path": "/ec2/",
            "RoleName": r.rsplit("/", 1)[1],
            "RoleId": "AROAEXAMPLE",
            "Arn": r,
            "InstanceProfileList": [profile],
            "RolePolicyList": [],
            "AttachedManagedPolicies": [],
        }
        for r in profile_roles
    ]
    path = tmp_path / "authz.json"
    path.write_text(
        json.dumps({"UserDetailList": [], "GroupDetailList": [], "RoleDetailList": roles, "Policies": []})
    )
    return path


@pytest.mark.oracle
def test_authorization_details_name_the_role_with_its_path(tmp_path: Path) -> None:
    path = trail(tmp_path, [run_instances("2026-10-02T10:00:00Z", {"arn": PROFILE})])
    role = f"arn:aws:iam::{ACCOUNT}:role/ec2/web-role"
    out = policy(path, ROLE_ARN, "--authz", str(authz_file(tmp_path, [role])))
    assert pass_role_resources(out) == {role}
    assert not [w for w in out["widenings"] if "iam" in w["pattern"]]
    (f,) = [f for f in out["findings"] if f["code"] == "INSTANCE_PROFILE_ROLE"]
    assert "authz.json" in f["message"]
    assert oracle_pass_role(out, ROLE_ARN, [role, WEB_ROLE]) == [True, False]


def test_generate_policy_takes_one_source_of_authorization_details(tmp_path: Path) -> None:
    path = trail(tmp_path, [run_instances("2026-10-02T10:00:00Z", {"arn": PROFILE})])
    code, out, err = cli(
        "generate-policy", ROLE_ARN, "--events", str(path), "--authz", str(tmp_path / "a.json"), "--from-aws"
    )
    assert code == 2 and "not both" in err and not out
    (tmp_path / "bad.json").write_text("{}")
    code, out, err = cli(
        "generate-policy", ROLE_ARN, "--events", str(path), "--authz", str(tmp_path / "bad.json")
    )
    assert code == 4 and "not GetAccountAuthorizationDetails output" in err and "Traceback" not in err


@pytest.mark.oracle
def test_a_role_swapped_while_the_calls_went_on_grants_both(tmp_path: Path) -> None:
    """The store aggregates calls (first..last seen): RunInstances before and after the role was
    swapped is one row spanning both, so both roles are granted, and no third."""
    r2 = f"arn:aws:iam::{ACCOUNT}:role/web-role-v2"
    path = trail(
        tmp_path,
        [
            add_role("web-role", "2026-10-01T10:00:00Z"),
            run_instances("2026-10-02T10:00:00Z", {"arn": PROFILE}),
            remove_role("web-role", "2026-10-03T10:00:00Z"),
            add_role("web-role-v2", "2026-10-03T10:05:00Z"),
            run_instances("2026-10-04T10:00:00Z", {"arn": PROFILE}),
        ],
    )
    out = policy(path)
    assert {r for r in pass_role_resources(out) if "*" not in r} == {WEB_ROLE, r2}
    assert oracle_pass_role(out, ROLE_ARN, [WEB_ROLE, r2, f"arn:aws:iam::{ACCOUNT}:role/web-role-v3"]) == [
        True,
        True,
        False,
    ]


def test_stateless_events_and_store_agree(tmp_path: Path) -> None:
    """--events reads the changes as ingest stores them (the same library path)."""
    path = trail(
        tmp_path,
        [
            add_role("web-role", "2026-10-01T10:00:00Z"),
            run_instances("2026-10-02T10:00:00Z", {"arn": PROFILE}),
        ],
    )
    with load_events([path], workers=1) as st:
        assert [c.role for c in st.profile_changes()] == [WEB_ROLE]
        rows = st.usage(ROLE_ARN)
    assert [r.resource for r in rows if r.action == "iam:PassRole" and r.outcome is Outcome.USED] == [PROFILE]


def test_from_aws_reads_the_profiles_role(aws_endpoint: str, tmp_path: Path) -> None:
    """--from-aws: GetAccountAuthorizationDetails of the account (moto), as --authz reads a file."""
    iam = boto3.client("iam", endpoint_url=aws_endpoint, region_name="us-east-1")
    acct = boto3.client("sts", endpoint_url=aws_endpoint, region_name="us-east-1").get_caller_identity()[
        "Account"
    ]
    iam.create_role(
        RoleName="web-role",
        Path="/ec2/",
        AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}),
    )
    iam.create_instance_profile(InstanceProfileName="web-profile")
    iam.add_role_to_instance_profile(InstanceProfileName="web-profile", RoleName="web-role")
    launcher = f"arn:aws:iam::{acct}:role/launcher"
    identity = user_identity(
        arn=f"arn:aws:sts::{acct}:assumed-role/launcher/s",
        accountId=acct,
        sessionContext={
            "sessionIssuer": {"type": "Role", "arn": launcher, "accountId": acct, "userName": "launcher"},
            "attributes": {"creationDate": "2026-10-02T09:00:00Z", "mfaAuthenticated": "false"},
        },
    )
    rec = run_instances(
        "2026-10-02T10:00:00Z", {"name": "web-profile"}, recipientAccountId=acct, userIdentity=identity
    )
    path = trail(tmp_path, [rec])
    out = policy(path, launcher, "--from-aws", "--endpoint-url", aws_endpoint, "--region", "us-east-1")
    assert pass_role_resources(out) == {f"arn:aws:iam::{acct}:role/ec2/web-role"}


def test_diff_judges_a_profile_pass_as_an_unknown_role_and_proposes_the_role(tmp_path: Path) -> None:
    """diff: the call named the profile, not the role AWS checked, so a current policy granting
    PassRole on some role is not "missing" it; the proposal grants the role the profile held."""
    path = trail(
        tmp_path,
        [
            add_role("web-role", "2026-10-01T10:00:00Z"),
            run_instances("2026-10-02T10:00:00Z", {"arn": PROFILE}),
        ],
    )
    current = tmp_path / "current.json"
    current.write_text(
        json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Action": "ec2:RunInstances", "Resource": "*"},
                    {"Effect": "Allow", "Action": "iam:PassRole", "Resource": WEB_ROLE},
                ],
            }
        )
    )
    code, out, err = cli(
        "diff", ROLE_ARN, "--events", str(path), "--current", str(current), "--format", "json"
    )
    assert code == 0, err
    d = json.loads(out)
    assert not [m for m in d["missing"] if m["action"] == "iam:PassRole"]
    proposed = {
        r
        for doc in d["proposed"]["policies"]
        for st in doc["Statement"]
        if st["Action"] == "iam:PassRole"
        for r in ([st["Resource"]] if isinstance(st["Resource"], str) else st["Resource"])
    }
    assert proposed == {WEB_ROLE, f"arn:aws:iam::{ACCOUNT}:role/*/web-role"}


def test_a_launch_template_is_a_finding_naming_it_and_grants_no_passrole(tmp_path: Path) -> None:
    """RunInstances from a launch template names the template and a version, never the instance
    profile its data may hold (API_RequestLaunchTemplateData IamInstanceProfile): no PassRole is
    granted for it, and each template used is a LAUNCH_TEMPLATE_PROFILE finding naming it. A
    launch with an explicit profile and no template gets none."""
    records = [
        _event(
            "RunInstances",
            "ec2.amazonaws.com",
            {
                "instancesSet": {"items": [{"minCount": 1, "maxCount": 1}]},
                "launchTemplate": {"launchTemplateId": template, "version": version},
            },
            f"2026-10-0{day}T10:00:00Z",
            responseElements={"instancesSet": {"items": [{"instanceId": f"i-0{day}23456789abcdef0"}]}},
        )
        for day, template, version in [
            (1, "lt-0a1b2c3d4e5f60718", "3"),
            (2, "lt-0a1b2c3d4e5f60718", "$Latest"),
            (3, "lt-0fedcba9876543210", "1"),
        ]
    ]
    out = policy(trail(tmp_path, records))
    found = [f for f in out["findings"] if f["code"] == "LAUNCH_TEMPLATE_PROFILE"]
    assert sorted(f["subject"].rsplit("/", 1)[1] for f in found) == [
        "lt-0a1b2c3d4e5f60718",
        "lt-0fedcba9876543210",
    ]
    assert all("describe-launch-template-versions" in f["message"] for f in found)
    assert found[0]["severity"] == "medium"
    assert pass_role_resources(out) == set()
    explicit = policy(trail(tmp_path, [run_instances("2026-10-01T10:00:00Z", {"name": "web-profile"})]))
    assert not [f for f in explicit["findings"] if f["code"] == "LAUNCH_TEMPLATE_PROFILE"]
    assert pass_role_resources(explicit)  # the explicit profile is passed and granted
