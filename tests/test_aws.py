"""Live AWS, read-only: sessions, errors, and --from-aws against moto's server.

The sample account (``samples/authz``) is built in moto in account 444455556666, reached the way a
user reaches a member account: ``--role-arn`` (STS AssumeRole). Every call iamtrim makes is checked
against docs/permissions.md by the session fixture in ``tests/awsparts.py``.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import gzip
import io
import json
import sys
import urllib.parse
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3
import botocore.exceptions
import pytest
from botocore.stub import Stubber

from iamtrim import aws as aws_mod
from iamtrim.aws import CALLS, Aws, AwsConfig, translate
from iamtrim.errors import AwsError
from iamtrim.review.current import current_from_authz, current_from_aws
from iamtrim.sources.aws_policies import bucket_policy
from tests.awsparts import RECORDED, documented_calls

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
AUTHZ = SAMPLES / "authz" / "account-authorization-details.json"
LOGS = SAMPLES / "AWSLogs"
ACCOUNT = "444455556666"
READER = f"arn:aws:iam::{ACCOUNT}:role/iamtrim-reader"
SAMPLE_KEY = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/9f8e7d6c-5b4a-3928-1716-0f1e2d3c4b5a"


def cli(*args: str) -> tuple[int, str, str]:
    """Run the CLI in this process (so the call recorder sees its sessions): exit code, out, err."""
    from iamtrim.cli import main

    out, err = io.StringIO(), io.StringIO()
    argv = sys.argv
    sys.argv = ["iamtrim", *args]
    code: Any = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main()
    except SystemExit as exc:
        code = exc.code
    finally:
        sys.argv = argv
    return int(code or 0), out.getvalue(), err.getvalue()


def member_session(endpoint: str) -> Any:
    """A boto3 session in the sample account (moto maps assumed-role credentials to the role's
    account), for building the account; iamtrim itself goes through iamtrim.aws."""
    creds = boto3.client("sts", endpoint_url=endpoint).assume_role(RoleArn=READER, RoleSessionName="setup")[
        "Credentials"
    ]
    return boto3.Session(
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
        region_name="us-east-1",
    )


def build_sample_account(endpoint: str) -> Any:
    """Create the users, groups, roles and managed policies of the samples' authz file in moto.

    An AWS managed policy (``arn:aws:iam::aws:policy/NAME``) cannot be created; it is made as the
    account's own policy of the same name and document, so the account reads back as the file."""
    data = json.loads(AUTHZ.read_text())
    iam = member_session(endpoint).client("iam", endpoint_url=endpoint)
    arns: dict[str, str] = {}
    for pol in data["Policies"]:
        versions = sorted(pol["PolicyVersionList"], key=lambda v: int(v["VersionId"][1:]))
        default = next(v for v in versions if v["VersionId"] == pol["DefaultVersionId"])
        if ":aws:policy/" in pol["Arn"]:
            versions = [default]
        arn = iam.create_policy(
            PolicyName=pol["PolicyName"], Path="/", PolicyDocument=json.dumps(versions[0]["Document"])
        )["Policy"]["Arn"]
        arns[pol["Arn"]] = arn
        for v in versions[1:]:
            iam.create_policy_version(PolicyArn=arn, PolicyDocument=json.dumps(v["Document"]))
        if len(versions) > 1:
            iam.set_default_policy_version(PolicyArn=arn, VersionId=pol["DefaultVersionId"])
    for g in data["GroupDetailList"]:
        iam.create_group(GroupName=g["GroupName"], Path=g["Path"])
        for p in g["GroupPolicyList"]:
            iam.put_group_policy(
                GroupName=g["GroupName"],
                PolicyName=p["PolicyName"],
                PolicyDocument=json.dumps(p["PolicyDocument"]),
            )
        for a in g["AttachedManagedPolicies"]:
            iam.attach_group_policy(GroupName=g["GroupName"], PolicyArn=arns[a["PolicyArn"]])
    for r in data["RoleDetailList"]:
        extra = {}
        if r.get("PermissionsBoundary"):
            extra["PermissionsBoundary"] = arns[r["PermissionsBoundary"]["PermissionsBoundaryArn"]]
        iam.create_role(
            RoleName=r["RoleName"],
            Path=r["Path"],
            AssumeRolePolicyDocument=json.dumps(r["AssumeRolePolicyDocument"]),
            **extra,
        )
        for p in r["RolePolicyList"]:
            iam.put_role_policy(
                RoleName=r["RoleName"],
                PolicyName=p["PolicyName"],
                PolicyDocument=json.dumps(p["PolicyDocument"]),
            )
        for a in r["AttachedManagedPolicies"]:
            iam.attach_role_policy(RoleName=r["RoleName"], PolicyArn=arns[a["PolicyArn"]])
    for u in data["UserDetailList"]:
        iam.create_user(UserName=u["UserName"], Path=u["Path"])
        for p in u.get("UserPolicyList", []):
            iam.put_user_policy(
                UserName=u["UserName"],
                PolicyName=p["PolicyName"],
                PolicyDocument=json.dumps(p["PolicyDocument"]),
            )
        for a in u["AttachedManagedPolicies"]:
            iam.attach_user_policy(UserName=u["UserName"], PolicyArn=arns[a["PolicyArn"]])
        for g in u["GroupList"]:
            iam.add_user_to_group(GroupName=g, UserName=u["UserName"])
    return iam


def sample_principals() -> list[str]:
    data = json.loads(AUTHZ.read_text())
    return sorted(e["Arn"] for k in ("RoleDetailList", "UserDetailList") for e in data[k])


def aws_options(endpoint: str) -> list[str]:
    return ["--endpoint-url", endpoint, "--region", "us-east-1", "--role-arn", READER]


# -- the list of calls -------------------------------------------------------------------------


def test_permissions_doc_lists_exactly_the_calls_in_the_code() -> None:
    assert documented_calls() == dict(CALLS)


def _literal_calls() -> set[tuple[str, str]]:
    """Every ("service", "Operation") literal pair passed to Aws.call / Aws.paginate in iamtrim/."""
    found: set[tuple[str, str]] = set()
    for path in (ROOT / "iamtrim").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("call", "paginate")
                and len(node.args) >= 2
                and all(isinstance(a, ast.Constant) and isinstance(a.value, str) for a in node.args[:2])
            ):
                found.add((node.args[0].value, node.args[1].value))  # type: ignore[attr-defined]
    return found


def test_every_listed_call_is_made_by_the_code() -> None:
    # AssumeRole is made by the session itself (boto3's client method), the rest through Aws.call.
    assert _literal_calls() | {("sts", "AssumeRole")} == set(CALLS)


def test_every_call_is_a_read_or_list_action_except_assume_role() -> None:
    from iamtrim import catalog

    levels = {action: catalog.access_level(action) for action in CALLS.values()}
    assert levels.pop("sts:AssumeRole") == "Write"  # returns credentials; changes nothing
    assert set(levels.values()) <= {"Read", "List"}, levels


def test_a_call_not_in_the_list_is_refused_before_it_is_sent(aws_endpoint: str) -> None:
    aws = Aws(AwsConfig(endpoint_url=aws_endpoint))
    with pytest.raises(AwsError, match="does not call s3:PutBucketPolicy"):
        aws.call("s3", "PutBucketPolicy", Bucket="acme-ml-datasets", Policy="{}")
    assert ("s3", "PutBucketPolicy") not in RECORDED


def test_the_recorder_sees_calls_made_through_iamtrim_sessions(aws_endpoint: str) -> None:
    seen: list[tuple[str, str]] = []
    stop = aws_mod.observe_calls(lambda s, o: seen.append((s, o)))
    try:
        member_session(aws_endpoint).client("s3", endpoint_url=aws_endpoint).create_bucket(Bucket="acme-seen")
        assert seen == []  # a session iamtrim did not make is not observed
        bucket_policy(Aws(AwsConfig(endpoint_url=aws_endpoint, role_arn=READER)), "acme-seen")
    finally:
        stop()
    assert seen == [("sts", "AssumeRole"), ("s3", "GetBucketPolicy")]


# -- errors: one line, exit 3 ---------------------------------------------------------------------


def _client_error(code: str, message: str, operation: str) -> botocore.exceptions.ClientError:
    return botocore.exceptions.ClientError({"Error": {"Code": code, "Message": message}}, operation)


@pytest.mark.parametrize(
    ("exc", "service", "operation", "expected"),
    [
        (
            botocore.exceptions.NoCredentialsError(),
            "iam",
            "GetAccountAuthorizationDetails",
            "no AWS credentials",
        ),
        (
            _client_error(
                "AccessDenied",
                "User: arn:aws:sts::444455556666:assumed-role/r/s is not authorized to perform: "
                "iam:GetAccountAuthorizationDetails on resource: *",
                "GetAccountAuthorizationDetails",
            ),
            "iam",
            "GetAccountAuthorizationDetails",
            "access denied: iamtrim needs iam:GetAccountAuthorizationDetails",
        ),
        (
            _client_error("AccessDenied", "Access Denied", "GetBucketPolicy"),
            "s3",
            "GetBucketPolicy",
            "access denied: iamtrim needs s3:GetBucketPolicy",
        ),
        (
            _client_error(
                "ExpiredToken", "The security token included in the request is expired", "GetKeyPolicy"
            ),
            "kms",
            "GetKeyPolicy",
            "credentials have expired",
        ),
        (
            _client_error("NoSuchBucket", "The specified bucket does not exist", "GetBucketPolicy"),
            "s3",
            "GetBucketPolicy",
            "no such bucket",
        ),
        (
            _client_error("Throttling", "Rate exceeded", "GetAccountAuthorizationDetails"),
            "iam",
            "GetAccountAuthorizationDetails",
            "still throttled after 10 attempts",
        ),
    ],
)
def test_botocore_errors_become_one_line_aws_errors(
    exc: BaseException, service: str, operation: str, expected: str
) -> None:
    err = translate(exc, service, operation)
    assert err is not None and expected in str(err)
    assert "\n" not in str(err) and err.exit_code == 3


def test_access_denied_names_the_missing_action_and_resource(aws_endpoint: str) -> None:
    aws = Aws(AwsConfig(endpoint_url=aws_endpoint))
    client = aws.client("s3")
    with Stubber(client) as stub:
        stub.add_client_error("get_bucket_policy", "AccessDenied", "Access Denied", 403)
        with pytest.raises(AwsError) as info:
            bucket_policy(aws, "acme-ml-datasets")
    assert str(info.value) == (
        "access denied: iamtrim needs s3:GetBucketPolicy on arn:aws:s3:::acme-ml-datasets "
        "(see docs/permissions.md)"
    )


def _url_encoded(node: Any) -> Any:
    """The authz file as the raw API sends it: policy documents URL-encoded JSON strings, times as
    datetimes (boto3 decodes the documents again, as for a real response)."""
    if isinstance(node, dict):
        return {
            k: urllib.parse.quote(json.dumps(v))
            if k in ("Document", "PolicyDocument", "AssumeRolePolicyDocument")
            else datetime.fromisoformat(v)
            if k in ("CreateDate", "UpdateDate", "LastUsedDate")
            else _url_encoded(v)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_url_encoded(v) for v in node]
    return node


def test_authorization_details_pages_are_joined(aws_endpoint: str) -> None:
    data = _url_encoded(json.loads(AUTHZ.read_text()))
    roles, policies = data["RoleDetailList"], data["Policies"]
    aws = Aws(AwsConfig(endpoint_url=aws_endpoint))
    client = aws.client("iam")
    empty = {"UserDetailList": [], "RoleDetailList": [], "GroupDetailList": [], "Policies": []}
    with Stubber(client) as stub:
        # Two pages, a role on the first and its managed policies on the second (Marker/IsTruncated).
        stub.add_response(
            "get_account_authorization_details",
            {**empty, "RoleDetailList": roles[1:2], "IsTruncated": True, "Marker": "m1"},
        )
        stub.add_response(
            "get_account_authorization_details",
            {**empty, "Policies": policies, "IsTruncated": False},
            {"Filter": ["User", "Role", "Group", "LocalManagedPolicy", "AWSManagedPolicy"], "Marker": "m1"},
        )
        live = current_from_aws(aws, roles[1]["RoleName"])
        stub.assert_no_pending_responses()
    filed = current_from_authz(AUTHZ, roles[1]["Arn"])
    assert live == dataclasses.replace(filed, source=live.source)
    assert live.boundary is not None and len(live.identity) == 3


def test_paged_call_denied_midway_is_one_error(aws_endpoint: str) -> None:
    aws = Aws(AwsConfig(endpoint_url=aws_endpoint))
    client = aws.client("iam")
    with Stubber(client) as stub:
        stub.add_response(
            "get_account_authorization_details",
            {
                "UserDetailList": [],
                "RoleDetailList": [],
                "GroupDetailList": [],
                "Policies": [],
                "IsTruncated": True,
                "Marker": "m1",
            },
        )
        stub.add_client_error("get_account_authorization_details", "ExpiredTokenException", "expired", 400)
        with pytest.raises(AwsError, match="credentials have expired"):
            current_from_aws(aws, "ml-training-job")


def test_no_credentials_is_exit_3_and_one_line(aws_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(var)
    code, out, err = cli(
        "diff", "ml-training-job", "--events", str(LOGS), "--from-aws", "--endpoint-url", aws_endpoint
    )
    assert code == 3 and out == ""
    assert err.count("\n") == 1 and err.startswith("iamtrim: no AWS credentials found")


def test_missing_profile_is_exit_3(aws_endpoint: str) -> None:
    code, _, err = cli(
        "bucket-policy",
        "acme-ml-datasets",
        "--events",
        str(LOGS),
        "--from-aws",
        "--profile",
        "no-such-profile",
        "--endpoint-url",
        aws_endpoint,
    )
    assert (code, err) == (3, "iamtrim: AWS profile not found: no-such-profile\n")


def test_missing_bucket_is_exit_3(aws_endpoint: str) -> None:
    code, out, err = cli(
        "bucket-policy", "acme-ml-datasets", "--events", str(LOGS), "--from-aws", *aws_options(aws_endpoint)
    )
    assert code == 3 and out == ""
    assert err == "iamtrim: no such bucket: acme-ml-datasets\n"


def test_diff_from_aws_writes_nothing_to_the_store_when_aws_fails(
    aws_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = tmp_path / "usage.sqlite"
    assert cli("ingest", str(LOGS), "--store", str(store), "--quiet")[0] == 0
    before = store.read_bytes()
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    code, _, _ = cli(
        "diff", "ml-training-job", "--store", str(store), "--from-aws", "--endpoint-url", aws_endpoint
    )
    assert code == 3 and store.read_bytes() == before


# -- current policies from the account ------------------------------------------------------------


@pytest.fixture
def sample_account(aws_endpoint: str) -> Iterator[str]:
    build_sample_account(aws_endpoint)
    yield aws_endpoint


def test_current_policies_from_aws_are_those_of_the_authz_file(sample_account: str) -> None:
    """The account built from the samples reads back as the same policies: inline, attached
    managed at their default version, group and boundary, with the same documents."""
    aws = Aws(AwsConfig(endpoint_url=sample_account, role_arn=READER))
    for arn in sample_principals():
        live = current_from_aws(aws, arn)
        filed = current_from_authz(AUTHZ, arn)
        assert live == dataclasses.replace(filed, source=live.source)
        assert live.identity


@pytest.fixture
def sample_store(tmp_path: Path) -> Path:
    store = tmp_path / "usage.sqlite"
    assert cli("ingest", str(LOGS), "--store", str(store), "--quiet")[0] == 0
    return store


def test_diff_from_aws_equals_diff_authz_of_the_same_account(sample_account: str, sample_store: Path) -> None:
    for arn in sample_principals():
        filed = cli("diff", arn, "--store", str(sample_store), "--authz", str(AUTHZ), "--format", "json")
        live = cli(
            "diff",
            arn,
            "--store",
            str(sample_store),
            "--from-aws",
            "--format",
            "json",
            *aws_options(sample_account),
        )
        assert live == filed
        assert filed[0] == 0 and json.loads(filed[1])["current"]
    text = [
        cli("diff", "ci-deployer", "--store", str(sample_store), *source, "--format", "text")
        for source in (["--authz", str(AUTHZ)], ["--from-aws", *aws_options(sample_account)])
    ]
    assert text[0] == text[1] and "group:deployers/inline:deployers-ecr-lambda" in text[0][1]


def test_diff_from_aws_unknown_principal_is_exit_2(sample_account: str) -> None:
    code, _, err = cli(
        "diff", "no-such-role", "--events", str(LOGS), "--from-aws", *aws_options(sample_account)
    )
    assert code == 2 and "no principal 'no-such-role' in the account" in err


def test_diff_needs_exactly_one_source_of_current_policies(aws_endpoint: str) -> None:
    code, _, err = cli("diff", "ml-training-job", "--events", str(LOGS), "--from-aws", "--authz", str(AUTHZ))
    assert code == 2 and "one of them" in err


# -- bucket and key policies ------------------------------------------------------------------------

FOREIGN = {
    "Sid": "PartnerReadsShared",
    "Effect": "Allow",
    "Principal": {"AWS": "arn:aws:iam::999988887777:root"},
    "Action": "s3:GetObject",
    "Resource": "arn:aws:s3:::acme-ml-datasets/shared/*",
}


def _document(out: str) -> dict[str, Any]:
    return json.loads(out)  # type: ignore[no-any-return]


def test_bucket_policy_from_aws_keeps_foreign_statements_and_replaces_its_own(sample_account: str) -> None:
    s3 = member_session(sample_account).client("s3", endpoint_url=sample_account)
    s3.create_bucket(Bucket="acme-ml-datasets")
    plain = _document(cli("bucket-policy", "acme-ml-datasets", "--events", str(LOGS))[1])
    old_own = {
        "Sid": "DenyInsecureTransport",
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": "arn:aws:s3:::acme-ml-datasets/*",
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }
    s3.put_bucket_policy(
        Bucket="acme-ml-datasets",
        Policy=json.dumps({"Version": "2012-10-17", "Statement": [old_own, FOREIGN]}),
    )
    code, out, _ = cli(
        "bucket-policy", "acme-ml-datasets", "--events", str(LOGS), "--from-aws", *aws_options(sample_account)
    )
    assert code == 0
    merged = _document(out)
    assert merged["merge"] == {
        "current_from": "s3:GetBucketPolicy acme-ml-datasets",
        "had_policy": True,
        "kept": ["PartnerReadsShared"],
        "replaced": ["DenyInsecureTransport"],
        "added": [s["Sid"] for s in plain["document"]["Statement"]],
    }
    assert merged["document"]["Statement"] == [FOREIGN, *plain["document"]["Statement"]]
    # The merged document is what was verified: the same calls replayed, the lockout still checked.
    assert merged["verification"] == plain["verification"]
    policy_text = cli(
        "bucket-policy",
        "acme-ml-datasets",
        "--events",
        str(LOGS),
        "--from-aws",
        "--format",
        "policy",
        "--explain",
        *aws_options(sample_account),
    )
    assert json.loads(policy_text[1]) == merged["document"]
    assert "kept (not iamtrim's): PartnerReadsShared" in policy_text[2]


def test_bucket_policy_from_aws_without_a_policy_is_the_plain_proposal(sample_account: str) -> None:
    member_session(sample_account).client("s3", endpoint_url=sample_account).create_bucket(
        Bucket="acme-ml-datasets"
    )
    plain = _document(cli("bucket-policy", "acme-ml-datasets", "--events", str(LOGS))[1])
    code, out, _ = cli(
        "bucket-policy", "acme-ml-datasets", "--events", str(LOGS), "--from-aws", *aws_options(sample_account)
    )
    merged = _document(out)
    assert code == 0 and merged["document"] == plain["document"]
    assert merged["merge"]["had_policy"] is False and merged["merge"]["kept"] == []


def test_bucket_policy_from_aws_refuses_a_kept_deny_that_breaks_observed_calls(sample_account: str) -> None:
    s3 = member_session(sample_account).client("s3", endpoint_url=sample_account)
    s3.create_bucket(Bucket="acme-ml-datasets")
    deny_all = {
        "Sid": "Freeze",
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": ["arn:aws:s3:::acme-ml-datasets", "arn:aws:s3:::acme-ml-datasets/*"],
    }
    s3.put_bucket_policy(
        Bucket="acme-ml-datasets", Policy=json.dumps({"Version": "2012-10-17", "Statement": [deny_all]})
    )
    code, out, err = cli(
        "bucket-policy", "acme-ml-datasets", "--events", str(LOGS), "--from-aws", *aws_options(sample_account)
    )
    assert code != 0 and out == "" and "would deny an observed call" in err


def _trail_with_key(tmp_path: Path, key_arn: str) -> Path:
    """The sample trail with the sample key's id replaced by a key moto made (moto picks key ids)."""
    old_id, new_id = SAMPLE_KEY.rsplit("/", 1)[1], key_arn.rsplit("/", 1)[1]
    for src in LOGS.rglob("*.json.gz"):
        dst = tmp_path / "AWSLogs" / src.relative_to(LOGS)
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(
            gzip.compress(gzip.decompress(src.read_bytes()).replace(old_id.encode(), new_id.encode()))
        )
    return tmp_path / "AWSLogs"


def test_kms_policy_from_aws_keeps_the_default_statement(sample_account: str, tmp_path: Path) -> None:
    kms = member_session(sample_account).client("kms", endpoint_url=sample_account)
    key_arn = kms.create_key(Description="ml data")["KeyMetadata"]["Arn"]
    current = json.loads(kms.get_key_policy(KeyId=key_arn, PolicyName="default")["Policy"])
    logs = _trail_with_key(tmp_path, key_arn)
    plain = _document(cli("kms-policy", key_arn, "--events", str(logs))[1])
    code, out, _ = cli(
        "kms-policy", key_arn, "--events", str(logs), "--from-aws", *aws_options(sample_account)
    )
    assert code == 0
    merged = _document(out)
    kept = [s for s in current["Statement"]]
    assert merged["merge"]["kept"] == [s.get("Sid") or "#1" for s in kept]
    assert merged["merge"]["replaced"] == []
    assert merged["document"]["Statement"] == [*kept, *plain["document"]["Statement"]]


def test_kms_policy_from_aws_unknown_key_is_exit_3(sample_account: str) -> None:
    code, _, err = cli(
        "kms-policy", SAMPLE_KEY, "--events", str(LOGS), "--from-aws", *aws_options(sample_account)
    )
    assert code == 3 and err.startswith("iamtrim: ") and err.count("\n") == 1
