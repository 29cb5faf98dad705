"""One test per normalization rule (docs/mapping.md). Records come from tests/factories.py."""

from __future__ import annotations

from typing import Any

import pytest

from iamtrim import catalog
from iamtrim.model import Outcome, PrincipalKind, Skipped, SkipReason, Usage
from iamtrim.normalize import normalize_record, resolve_actions, resolve_principal
from iamtrim.normalize.tables import TABLES, all_table_rows
from iamtrim.sources.records import Record
from tests.factories import (
    ACCOUNT,
    REGION,
    ROLE_ARN,
    USER_ARN,
    make_record,
    management_event,
    sso_identity,
    user_identity,
)


def usages(record: Record) -> list[Usage]:
    out = normalize_record(record)
    assert not isinstance(out, Skipped), out
    return out[0]


def pairs(record: Record) -> set[tuple[str, str | None]]:
    return {(u.action, u.resource) for u in usages(record)}


def skip_of(record: Record) -> Skipped:
    out = normalize_record(record)
    assert isinstance(out, Skipped), out
    return out


# --- principal -------------------------------------------------------------------------------


def test_assumed_role_session_becomes_role_arn_with_path() -> None:
    (u, *_) = usages(make_record())
    assert u.principal.arn == ROLE_ARN  # path "service-role/" kept from sessionIssuer
    assert u.principal.kind is PrincipalKind.ROLE
    assert u.principal.name == "TrainingRole"


def test_assumed_role_without_issuer_falls_back_to_session_arn() -> None:
    ui = user_identity("AssumedRole", sessionContext=None)
    (u, *_) = usages(make_record(userIdentity=ui))
    assert u.principal.arn == f"arn:aws:iam::{ACCOUNT}:role/TrainingRole"


def test_iam_user() -> None:
    (u, *_) = usages(make_record(userIdentity=user_identity("IAMUser")))
    assert (u.principal.arn, u.principal.kind) == (USER_ARN, PrincipalKind.USER)


def test_root() -> None:
    (u, *_) = usages(make_record(userIdentity=user_identity("Root")))
    assert (u.principal.arn, u.principal.kind) == (f"arn:aws:iam::{ACCOUNT}:root", PrincipalKind.ROOT)


def test_federated_user() -> None:
    (u, *_) = usages(make_record(userIdentity=user_identity("FederatedUser")))
    assert u.principal.kind is PrincipalKind.FEDERATED_USER
    assert u.principal.arn.endswith(":federated-user/bob")


@pytest.mark.parametrize(
    ("kind", "expected"),
    [("SAMLUser", PrincipalKind.SAML_USER), ("WebIdentityUser", PrincipalKind.WEB_IDENTITY_USER)],
)
def test_saml_and_web_identity_users(kind: str, expected: PrincipalKind) -> None:
    (u, *_) = usages(make_record(userIdentity=user_identity(kind)))
    assert u.principal.kind is expected
    assert u.principal.name == "carol"
    assert not u.principal.is_iam


def test_identity_center_permission_set_role() -> None:
    (u, *_) = usages(make_record(userIdentity=sso_identity()))
    assert u.principal.kind is PrincipalKind.SSO_ROLE
    assert "/aws-reserved/sso.amazonaws.com/AWSReservedSSO_DataScientist_" in u.principal.arn


def test_aws_service_caller_is_skipped() -> None:
    assert (
        skip_of(make_record(userIdentity=user_identity("AWSService"))).reason is SkipReason.SERVICE_PRINCIPAL
    )


def test_missing_identity_is_skipped() -> None:
    assert isinstance(resolve_principal(None), Skipped)


# --- action ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "name", "expected"),
    [
        ("s3.amazonaws.com", "ListObjects", {"s3:ListBucket"}),
        ("s3.amazonaws.com", "ListObjectsV2", {"s3:ListBucket"}),
        ("s3.amazonaws.com", "HeadObject", {"s3:GetObject"}),
        ("lambda.amazonaws.com", "Invoke", {"lambda:InvokeFunction"}),
        (
            "lambda.amazonaws.com",
            "UpdateFunctionConfiguration20150331v2",
            {"lambda:UpdateFunctionConfiguration"},
        ),
        ("kafka.amazonaws.com", "CreateClusterV2", {"kafka:CreateClusterV2"}),
        ("monitoring.amazonaws.com", "PutMetricData", {"cloudwatch:PutMetricData"}),
        ("email.amazonaws.com", "SendEmail", {"ses:SendEmail"}),
        ("kms.amazonaws.com", "ReEncrypt", {"kms:ReEncryptFrom", "kms:ReEncryptTo"}),
        ("s3.amazonaws.com", "CopyObject", {"s3:GetObject", "s3:PutObject"}),
        ("s3.amazonaws.com", "GetBucketEncryption", {"s3:GetEncryptionConfiguration"}),
        ("s3.amazonaws.com", "DeleteBucketMetricsConfiguration", {"s3:PutMetricsConfiguration"}),
        ("iam.amazonaws.com", "getrole", {"iam:GetRole"}),  # catalog casing
        ("budgets.amazonaws.com", "CreateBudget", {"budgets:ModifyBudget"}),
        ("budgets.amazonaws.com", "DescribeBudgets", {"budgets:ViewBudget"}),
        ("cassandra.amazonaws.com", "CreateTable", {"cassandra:Create"}),
        ("cassandra.amazonaws.com", "DeleteKeyspace", {"cassandra:Drop"}),
        ("cassandra.amazonaws.com", "GetTable", {"cassandra:Select"}),
        ("lambda.amazonaws.com", "GetLayerVersionByArn", {"lambda:GetLayerVersion"}),
    ],
)
def test_event_to_actions(source: str, name: str, expected: set[str]) -> None:
    rules = resolve_actions(source, name)
    assert not isinstance(rules, Skipped), rules
    assert {r.action for r in rules} == expected


# API Gateway: the HTTP method on the requested path (iamtrim/normalize/apigateway.py). The REST
# API record is the GetResource example of the API Gateway developer guide's CloudTrail page.
_AGW = "arn:aws:apigateway:us-east-1::"


@pytest.mark.parametrize(
    ("name", "request_parameters", "expected"),
    [
        (
            "GetResource",
            {"restApiId": "3rbEXAMPLE", "resourceId": "5tfEXAMPLE", "template": False},
            {("apigateway:GET", f"{_AGW}/restapis/3rbEXAMPLE/resources/5tfEXAMPLE")},
        ),
        ("GetRestApis", {"limit": 25}, {("apigateway:GET", f"{_AGW}/restapis")}),
        (
            "CreateDeployment",
            {"restApiId": "r1", "stageName": "prod"},
            {("apigateway:POST", f"{_AGW}/restapis/r1/deployments")},
        ),
        (
            "PutIntegration",
            {"restApiId": "r1", "resourceId": "x9", "httpMethod": "GET", "type": "AWS_PROXY"},
            {("apigateway:PUT", f"{_AGW}/restapis/r1/resources/x9/methods/GET/integration")},
        ),
        # The same operation name in both API generations: the request's ids say which.
        (
            "GetStage",
            {"restApiId": "r1", "stageName": "prod"},
            {("apigateway:GET", f"{_AGW}/restapis/r1/stages/prod")},
        ),
        (
            "GetStage",
            {"apiId": "a1", "stageName": "prod"},
            {("apigateway:GET", f"{_AGW}/apis/a1/stages/prod")},
        ),
        (
            "CreateRoute",
            {"apiId": "a1", "routeKey": "GET /items"},
            {("apigateway:POST", f"{_AGW}/apis/a1/routes")},
        ),
        ("ImportApi", {"body": "***"}, {("apigateway:PUT", f"{_AGW}/apis")}),
        ("UpdateAccount", {"patchOperations": []}, {("apigateway:PATCH", f"{_AGW}/account")}),
        # A path variable the request lacks: the resource stays unknown.
        ("GetResource", {"restApiId": "r1"}, {("apigateway:GET", None)}),
    ],
)
def test_api_gateway_calls_are_http_methods_on_paths(
    name: str, request_parameters: dict[str, Any], expected: set[tuple[str, str | None]]
) -> None:
    record = management_event("apigateway.amazonaws.com", name, request_parameters)
    assert pairs(record) == expected
    for action, arn in expected:
        assert catalog.action_exists(action)
        assert arn is None or catalog.resource_type_for_arn(action, arn) is not None


def test_api_operations_come_from_the_sdk_models() -> None:
    op = catalog.api_operation("apigateway", "GetResource")
    assert op is not None
    assert (op.method, op.path) == ("GET", "/restapis/{restapi_id}/resources/{resource_id}")
    assert dict(op.path_members) == {"restapi_id": "restApiId", "resource_id": "resourceId"}
    assert catalog.api_operation("apigateway", "NoSuchOperation") is None
    assert catalog.api_operation("nosuchservice", "GetResource") is None
    # An operation no model has is an unknown action, as for any service.
    unknown = resolve_actions("apigateway.amazonaws.com", "FrobnicateApi")
    assert isinstance(unknown, Skipped) and unknown.reason is SkipReason.UNKNOWN_ACTION


def test_api_gateway_tag_resource_is_put_or_post() -> None:
    # PUT /tags/{arn} tags a REST API, POST /v2/tags/{arn} an HTTP API; the event name is the same.
    arn = f"{_AGW}/restapis/r1"
    record = management_event("apigateway.amazonaws.com", "TagResource", {"resourceArn": arn, "tags": {}})
    assert pairs(record) == {
        ("apigateway:PUT", f"{_AGW}/tags/{arn}"),
        ("apigateway:POST", f"{_AGW}/tags/{arn}"),
    }


def test_unknown_action_and_service_are_skipped() -> None:
    unknown_action = resolve_actions("s3.amazonaws.com", "FrobnicateBucket")
    assert isinstance(unknown_action, Skipped) and unknown_action.reason is SkipReason.UNKNOWN_ACTION
    unknown_service = resolve_actions("nosuchservice.amazonaws.com", "Get")
    assert isinstance(unknown_service, Skipped) and unknown_service.reason is SkipReason.UNKNOWN_SERVICE


@pytest.mark.parametrize(
    ("source", "name"),
    [("sts.amazonaws.com", "GetCallerIdentity"), ("signin.amazonaws.com", "GetSigninToken")],
)
def test_permissionless_calls(source: str, name: str) -> None:
    record = management_event(source, name)
    assert skip_of(record).reason is SkipReason.NO_PERMISSION_NEEDED


# --- outcome ---------------------------------------------------------------------------------


@pytest.mark.parametrize("code", ["AccessDenied", "Client.UnauthorizedOperation", "AccessDeniedException"])
def test_denied_codes(code: str) -> None:
    (u, *_) = usages(make_record(errorCode=code, errorMessage="Access Denied"))
    assert u.outcome is Outcome.DENIED


@pytest.mark.parametrize("code", ["NoSuchKey", "Client.DryRunOperation"])
def test_errors_after_authorization_count_as_use(code: str) -> None:
    (u, *_) = usages(make_record(errorCode=code))
    assert u.outcome is Outcome.USED


def test_expired_token_is_not_authenticated() -> None:
    assert skip_of(make_record(errorCode="ExpiredToken")).reason is SkipReason.NOT_AUTHENTICATED


@pytest.mark.parametrize(
    ("event_type", "reason"),
    [("AwsConsoleSignIn", SkipReason.CONSOLE_SIGN_IN), ("AwsServiceEvent", SkipReason.SERVICE_EVENT)],
)
def test_non_call_event_types(event_type: str, reason: SkipReason) -> None:
    assert skip_of(make_record(eventType=event_type)).reason is reason


# --- context ---------------------------------------------------------------------------------


def test_invoked_by_kept_in_context() -> None:
    ui = user_identity("AssumedRole", invokedBy="s3.amazonaws.com")
    record = management_event(
        "kms.amazonaws.com",
        "GenerateDataKey",
        {"keyId": "1234abcd-12ab-34cd-56ef-1234567890ab"},
        userIdentity=ui,
    )
    (u,) = usages(record)
    assert u.context.invoked_by == "s3.amazonaws.com"


def test_s3_sse_headers_vpce_and_tls_in_context() -> None:
    key = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    record = make_record(
        eventName="PutObject",
        requestParameters={
            "bucketName": "ml-artifacts",
            "key": "a/b.bin",
            "x-amz-server-side-encryption": "aws:kms",
            "x-amz-server-side-encryption-aws-kms-key-id": key,
        },
        vpcEndpointId="vpce-0abc1234def567890",
    )
    (u,) = [u for u in usages(record) if u.action == "s3:PutObject"]
    assert u.context.sse_header == "aws:kms"
    assert u.context.sse_kms_key_header == key
    assert u.context.kms_key == key
    assert u.context.sse_applied == "SSE_KMS"
    assert u.context.vpc_endpoint == "vpce-0abc1234def567890"
    assert u.context.tls_version == "TLSv1.3"


def test_kms_encryption_context() -> None:
    key = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    record = management_event(
        "kms.amazonaws.com",
        "Decrypt",
        {
            "encryptionContext": {"aws:s3:arn": "arn:aws:s3:::ml-artifacts/a", "team": "ml"},
            "encryptionAlgorithm": "SYMMETRIC_DEFAULT",
        },
        resources=[{"accountId": ACCOUNT, "type": "AWS::KMS::Key", "ARN": key}],
    )
    (u,) = usages(record)
    assert u.resource == key
    assert u.context.kms_key == key
    assert u.context.encryption_context_keys == ("aws:s3:arn", "team")
    assert dict(u.encryption_context)["team"] == "ml"


# --- resources -------------------------------------------------------------------------------


def test_copy_object_source_and_destination() -> None:
    record = make_record(
        eventName="CopyObject",
        requestParameters={
            "bucketName": "dst-bucket",
            "key": "out/x.csv",
            "x-amz-copy-source": "src-bucket/in/x%20y.csv",
        },
        resources=None,
    )
    assert pairs(record) == {
        ("s3:GetObject", "arn:aws:s3:::src-bucket/in/x y.csv"),
        ("s3:PutObject", "arn:aws:s3:::dst-bucket/out/x.csv"),
    }


def test_copy_object_with_resources_list_keeps_put_on_the_destination() -> None:
    # CloudTrail lists both objects in resources[]; PutObject must not land on the source.
    record = make_record(
        eventName="CopyObject",
        requestParameters={
            "bucketName": "dst-bucket",
            "key": "out/x.csv",
            "x-amz-copy-source": "src-bucket/in/x.csv",
        },
        resources=[
            {"type": "AWS::S3::Object", "ARN": "arn:aws:s3:::dst-bucket/out/x.csv"},
            {"type": "AWS::S3::Object", "ARN": "arn:aws:s3:::src-bucket/in/x.csv"},
            {"type": "AWS::S3::Bucket", "ARN": "arn:aws:s3:::dst-bucket"},
        ],
    )
    assert pairs(record) == {
        ("s3:GetObject", "arn:aws:s3:::src-bucket/in/x.csv"),
        ("s3:PutObject", "arn:aws:s3:::dst-bucket/out/x.csv"),
    }


def test_reencrypt_uses_source_and_destination_keys() -> None:
    src, dst = (
        "1111aaaa-11aa-11aa-11aa-111111111111",
        f"arn:aws:kms:{REGION}:{ACCOUNT}:key/2222bbbb-22bb-22bb-22bb-222222222222",
    )
    record = management_event("kms.amazonaws.com", "ReEncrypt", {"sourceKeyId": src, "destinationKeyId": dst})
    assert pairs(record) == {
        ("kms:ReEncryptFrom", f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{src}"),
        ("kms:ReEncryptTo", dst),
    }


@pytest.mark.parametrize(
    ("key_id", "expected"),
    [
        (
            "1234abcd-12ab-34cd-56ef-1234567890ab",
            f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab",
        ),
        (
            "mrk-1234abcd12ab34cd56ef1234567890ab",
            f"arn:aws:kms:{REGION}:{ACCOUNT}:key/mrk-1234abcd12ab34cd56ef1234567890ab",
        ),
        (f"arn:aws:kms:us-west-2:{ACCOUNT}:key/abc", f"arn:aws:kms:us-west-2:{ACCOUNT}:key/abc"),
        ("alias/ml-key", None),  # an alias does not name the key KMS authorized on
    ],
)
def test_kms_key_id_forms(key_id: str, expected: str | None) -> None:
    (u,) = usages(management_event("kms.amazonaws.com", "DescribeKey", {"keyId": key_id}))
    assert u.resource == expected


def test_invoke_function_resource() -> None:
    record = management_event(
        "lambda.amazonaws.com", "Invoke", {"functionName": "scorer:live"}, eventCategory="Data"
    )
    (u,) = usages(record)
    assert u.resource == f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:scorer:live"


@pytest.mark.parametrize("name", ["/ml/prod/db-password", "ml/prod/db-password"])
def test_ssm_parameter_names_with_and_without_leading_slash(name: str) -> None:
    (u,) = usages(
        management_event("ssm.amazonaws.com", "GetParameter", {"name": name, "withDecryption": True})
    )
    assert u.resource == f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/ml/prod/db-password"


def test_sqs_queue_url_to_arn() -> None:
    url = f"https://sqs.eu-west-1.amazonaws.com/{ACCOUNT}/jobs.fifo"
    (u,) = usages(management_event("sqs.amazonaws.com", "SendMessage", {"queueUrl": url}))
    assert u.resource == f"arn:aws:sqs:eu-west-1:{ACCOUNT}:jobs.fifo"


def test_secret_name_gets_random_suffix_pattern_and_arn_kept() -> None:
    (by_name,) = usages(
        management_event("secretsmanager.amazonaws.com", "GetSecretValue", {"secretId": "prod/db"})
    )
    assert by_name.resource == f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:prod/db-??????"
    arn = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:prod/db-AbCdEf"
    (by_arn,) = usages(management_event("secretsmanager.amazonaws.com", "GetSecretValue", {"secretId": arn}))
    assert by_arn.resource == arn


def test_log_group_and_stream_arns() -> None:
    record = management_event(
        "logs.amazonaws.com",
        "PutLogEvents",
        {"logGroupName": "/aws/sagemaker/TrainingJobs", "logStreamName": "job-1/algo-1"},
    )
    assert {u.resource for u in usages(record)} == {
        f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/sagemaker/TrainingJobs:log-stream:job-1/algo-1"
    }
    (group,) = usages(
        management_event(
            "logs.amazonaws.com", "CreateLogStream", {"logGroupName": "/aws/x", "logStreamName": "s"}
        )
    )
    assert group.resource is not None and group.resource.startswith(
        f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/x"
    )


def test_glue_get_table_catalog_database_table() -> None:
    record = management_event("glue.amazonaws.com", "GetTable", {"databaseName": "features", "name": "users"})
    assert {u.resource for u in usages(record)} == {
        f"arn:aws:glue:{REGION}:{ACCOUNT}:catalog",
        f"arn:aws:glue:{REGION}:{ACCOUNT}:database/features",
        f"arn:aws:glue:{REGION}:{ACCOUNT}:table/features/users",
    }


def test_wildcard_only_action_gets_star() -> None:
    (u,) = usages(management_event("ec2.amazonaws.com", "DescribeInstances", {"filterSet": {}}))
    assert u.resource == "*"


def test_version_id_selects_version_action() -> None:
    record = make_record(
        requestParameters={"bucketName": "ml-artifacts", "key": "m.bin", "versionId": "3HL4kqtJlcpXroDTDmJ"},
        resources=None,
    )
    assert {u.action for u in usages(record)} == {"s3:GetObjectVersion"}


def test_ec2_instance_ids_nested_in_instances_set() -> None:
    request = {
        "instancesSet": {
            "items": [{"instanceId": "i-0aaaaaaaaaaaaaaaa"}, {"instanceId": "i-0bbbbbbbbbbbbbbbb"}]
        }
    }
    record = management_event("ec2.amazonaws.com", "StopInstances", request)
    assert {u.resource for u in usages(record)} == {
        f"arn:aws:ec2:{REGION}:{ACCOUNT}:instance/i-0aaaaaaaaaaaaaaaa",
        f"arn:aws:ec2:{REGION}:{ACCOUNT}:instance/i-0bbbbbbbbbbbbbbbb",
    }


def test_ec2_wrapped_request_and_content_items() -> None:
    request = {"DeleteFlowLogsRequest": {"FlowLogId": {"content": "fl-0123456789abcdef0", "tag": 1}}}
    (u,) = usages(management_event("ec2.amazonaws.com", "DeleteFlowLogs", request))
    assert u.resource == f"arn:aws:ec2:{REGION}:{ACCOUNT}:vpc-flow-log/fl-0123456789abcdef0"


def test_ec2_resources_set_routed_by_id_prefix() -> None:
    request = {
        "resourcesSet": {
            "items": [{"resourceId": "i-0aaaaaaaaaaaaaaaa"}, {"resourceId": "vol-0ccccccccccccccc"}]
        },
        "tagSet": {"items": [{"key": "team", "value": "ml"}]},
    }
    resources = {u.resource for u in usages(management_event("ec2.amazonaws.com", "CreateTags", request))}
    assert f"arn:aws:ec2:{REGION}:{ACCOUNT}:instance/i-0aaaaaaaaaaaaaaaa" in resources
    assert f"arn:aws:ec2:{REGION}:{ACCOUNT}:volume/vol-0ccccccccccccccc" in resources
    assert not any("instance/vol-" in str(r) or "volume/i-" in str(r) for r in resources)


def test_security_group_rule_source_groups_are_not_the_target() -> None:
    request = {
        "groupId": "sg-0target000000000",
        "ipPermissions": {
            "items": [
                {
                    "ipProtocol": "tcp",
                    "fromPort": 443,
                    "toPort": 443,
                    "groups": {"items": [{"groupId": "sg-0source000000000"}]},
                }
            ]
        },
    }
    (u,) = usages(management_event("ec2.amazonaws.com", "AuthorizeSecurityGroupIngress", request))
    assert u.resource == f"arn:aws:ec2:{REGION}:{ACCOUNT}:security-group/sg-0target000000000"


def test_ssm_start_session_target_is_an_ec2_instance_not_a_managed_instance() -> None:
    (u,) = usages(management_event("ssm.amazonaws.com", "StartSession", {"target": "i-0aaaaaaaaaaaaaaaa"}))
    assert u.resource == f"arn:aws:ec2:{REGION}:{ACCOUNT}:instance/i-0aaaaaaaaaaaaaaaa"


def test_rds_identifier_naming_rule() -> None:
    (u,) = usages(
        management_event("rds.amazonaws.com", "ModifyDBInstance", {"dBInstanceIdentifier": "feature-store"})
    )
    assert u.resource == f"arn:aws:rds:{REGION}:{ACCOUNT}:db:feature-store"
    (c,) = usages(
        management_event("rds.amazonaws.com", "ModifyDBCluster", {"dBClusterIdentifier": "aurora-1"})
    )
    assert c.resource == f"arn:aws:rds:{REGION}:{ACCOUNT}:cluster:aurora-1"


def test_created_resource_id_from_response() -> None:
    record = management_event(
        "ec2.amazonaws.com",
        "CreateVpc",
        {"cidrBlock": "10.0.0.0/16"},
        responseElements={"vpc": {"vpcId": "vpc-0123456789abcdef0", "state": "pending"}},
    )
    (u,) = usages(record)
    assert u.resource == f"arn:aws:ec2:{REGION}:{ACCOUNT}:vpc/vpc-0123456789abcdef0"


def test_trail_name_or_arn() -> None:
    (by_name,) = usages(management_event("cloudtrail.amazonaws.com", "StopLogging", {"name": "org-trail"}))
    assert by_name.resource == f"arn:aws:cloudtrail:{REGION}:{ACCOUNT}:trail/org-trail"
    arn = f"arn:aws:cloudtrail:us-west-2:{ACCOUNT}:trail/other"
    (by_arn,) = usages(management_event("cloudtrail.amazonaws.com", "StopLogging", {"name": arn}))
    assert by_arn.resource == arn


@pytest.mark.parametrize("event_name", ["CreateAccessKey", "ListAccessKeys", "ChangePassword"])
def test_iam_call_on_the_calling_user(event_name: str) -> None:
    record = management_event("iam.amazonaws.com", event_name, None, userIdentity=user_identity("IAMUser"))
    (u,) = usages(record)
    assert u.resource == USER_ARN


def test_iam_call_on_self_from_a_role_stays_unknown() -> None:
    out = normalize_record(management_event("iam.amazonaws.com", "CreateAccessKey", None))
    assert not isinstance(out, Skipped)
    (u,), notes = out
    assert u.resource is None
    assert notes == [Skipped(SkipReason.RESOURCE_UNKNOWN, "iam:CreateAccessKey")]


def test_named_user_wins_over_caller() -> None:
    record = management_event(
        "iam.amazonaws.com", "CreateAccessKey", {"userName": "svc-ci"}, userIdentity=user_identity("IAMUser")
    )
    (u,) = usages(record)
    assert u.resource == f"arn:aws:iam::{ACCOUNT}:user/svc-ci"


def test_denied_message_names_the_resource() -> None:
    role = f"arn:aws:iam::{ACCOUNT}:role/Admin"
    record = management_event(
        "sts.amazonaws.com",
        "AssumeRole",
        None,
        errorCode="AccessDenied",
        errorMessage=f"User: {USER_ARN} is not authorized to perform: sts:AssumeRole on resource: {role}",
        userIdentity=user_identity("IAMUser"),
    )
    (u,) = usages(record)
    assert (u.resource, u.outcome) == (role, Outcome.DENIED)


def test_unresolvable_resource_is_never_star() -> None:
    out = normalize_record(
        management_event("rds.amazonaws.com", "ModifyDBInstance", {"allocatedStorage": 100})
    )
    assert not isinstance(out, Skipped)
    (u,), notes = out
    assert u.resource is None and notes[0].reason is SkipReason.RESOURCE_UNKNOWN


# --- data tables -----------------------------------------------------------------------------


def _actions_in(row: dict[str, Any], name: str) -> list[str]:
    if name == "event_actions.csv":
        return [item.partition("@")[0] for item in row["actions"].split(";")]
    if name == "caller_resources.csv":
        return [row["action"]]
    return []


@pytest.mark.parametrize("name", TABLES)
def test_table_rows_are_catalog_valid_and_sourced(name: str) -> None:
    rows = all_table_rows()[name]
    assert rows, name
    for row in rows:
        assert row["source"].startswith("https://") and "aws" in row["source"], (name, row)
        prefix = row.get("iam_prefix") or row.get("service")
        if prefix and prefix != "*":
            assert catalog.service_exists(prefix), (name, row)
        for action in _actions_in(row, name):
            assert catalog.action_exists(action), (name, row, "not a catalog action or wrong casing")
        if name == "event_sources.csv":
            assert catalog.service_exists(row["iam_prefix"]), row
        if name == "singleton_resources.csv":
            assert row["resource_type"] in _resource_type_names(row["iam_prefix"]), row
        if name == "id_prefixes.csv":
            assert any(rt_name == row["resource_type"] for rt_name in _resource_type_names(row["service"])), (
                row
            )


def _resource_type_names(prefix: str) -> set[str]:
    names: set[str] = set()
    for action in catalog.all_actions():
        if action.startswith(prefix + ":"):
            names.update(rt.name for rt in catalog.resource_types(action))
    return names


def test_resource_param_variables_exist_in_catalog_templates() -> None:
    variables: dict[str, set[str]] = {}
    for action in catalog.all_actions():
        prefix = action.partition(":")[0]
        for rt in catalog.resource_types(action):
            variables.setdefault(prefix, set()).update(rt.variables)
    every = set().union(*variables.values())
    for row in all_table_rows()["resource_params.csv"]:
        pool = every if row["iam_prefix"] == "*" else variables.get(row["iam_prefix"], set())
        assert row["variable"] in pool, row


def test_a_role_passed_to_a_service_implies_pass_role_when_the_call_succeeded() -> None:
    role = f"arn:aws:iam::{ACCOUNT}:role/ml-training-job"
    params = {"trainingJobName": "job-1", "roleArn": role}
    ok = management_event("sagemaker.amazonaws.com", "CreateTrainingJob", params)
    assert ("iam:PassRole", role) in pairs(ok)
    denied = management_event(
        "sagemaker.amazonaws.com",
        "CreateTrainingJob",
        params,
        errorCode="AccessDenied",
        errorMessage="not authorized to perform",
    )
    assert all(action != "iam:PassRole" for action, _ in pairs(denied))
    # sts:AssumeRole's roleArn is the role being assumed, not one being passed.
    assume = management_event("sts.amazonaws.com", "AssumeRole", {"roleArn": role, "roleSessionName": "s"})
    assert all(action != "iam:PassRole" for action, _ in pairs(assume))


def test_aws_owned_ssm_documents_have_no_account_in_their_arn() -> None:
    params = {"documentName": "AWS-RunShellScript", "instanceIds": ["i-0123456789abcdef0"]}
    record = management_event("ssm.amazonaws.com", "SendCommand", params)
    assert ("ssm:SendCommand", f"arn:aws:ssm:{REGION}::document/AWS-RunShellScript") in pairs(record)
    own = management_event("ssm.amazonaws.com", "SendCommand", {**params, "documentName": "team-patch"})
    assert ("ssm:SendCommand", f"arn:aws:ssm:{REGION}:{ACCOUNT}:document/team-patch") in pairs(own)


def test_public_ssm_parameters_have_no_account_in_their_arn() -> None:
    name = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
    record = management_event("ssm.amazonaws.com", "GetParameter", {"name": name})
    assert pairs(record) == {("ssm:GetParameter", f"arn:aws:ssm:{REGION}::parameter{name}")}


def test_dynamodb_transactions_and_partiql_need_per_item_actions() -> None:
    table = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table"
    write = management_event(
        "dynamodb.amazonaws.com",
        "TransactWriteItems",
        {"transactItems": [{"put": {"tableName": "orders"}}, {"conditionCheck": {"tableName": "stock"}}]},
    )
    assert pairs(write) == {
        ("dynamodb:PutItem", f"{table}/orders"),
        ("dynamodb:ConditionCheckItem", f"{table}/stock"),
    }
    select = management_event(
        "dynamodb.amazonaws.com", "ExecuteStatement", {"statement": 'SELECT * FROM "orders" WHERE id = ?'}
    )
    assert pairs(select) == {("dynamodb:PartiQLSelect", f"{table}/orders")}
    batch = management_event(
        "dynamodb.amazonaws.com",
        "BatchExecuteStatement",
        {
            "statements": [
                {"statement": "INSERT INTO orders VALUE {'id': ?}"},
                {"statement": 'DELETE FROM "stock"'},
            ]
        },
    )
    assert pairs(batch) == {
        ("dynamodb:PartiQLInsert", f"{table}/orders"),
        ("dynamodb:PartiQLDelete", f"{table}/stock"),
    }
    blank = management_event(
        "dynamodb.amazonaws.com", "ExecuteStatement", {"statement": "HIDDEN_DUE_TO_SECURITY_REASONS"}
    )
    assert skip_of(blank).reason is SkipReason.UNKNOWN_ACTION


def test_batch_and_converse_calls_map_to_their_single_actions() -> None:
    queue = f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/jobs"
    batch = management_event("sqs.amazonaws.com", "SendMessageBatch", {"queueUrl": queue, "entries": []})
    assert pairs(batch) == {("sqs:SendMessage", f"arn:aws:sqs:{REGION}:{ACCOUNT}:jobs")}
    converse = management_event("bedrock.amazonaws.com", "Converse", {"modelId": "anthropic.claude-3-haiku"})
    assert {a for a, _ in pairs(converse)} == {"bedrock:InvokeModel"}


def test_alternative_resource_types_without_a_name_are_not_guessed() -> None:
    # bedrock:InvokeModel lists foundation-model, inference-profile, ... and
    # marketplace/model-endpoint/all-access as (alternative) resource types; the request names one.
    model = "anthropic.claude-3-haiku-20240307-v1:0"
    record = management_event("bedrock.amazonaws.com", "InvokeModel", {"modelId": model})
    assert pairs(record) == {("bedrock:InvokeModel", f"arn:aws:bedrock:{REGION}::foundation-model/{model}")}
    profile = management_event("bedrock.amazonaws.com", "Converse", {"modelId": "us." + model})
    assert pairs(profile) == {
        ("bedrock:InvokeModel", f"arn:aws:bedrock:{REGION}:{ACCOUNT}:inference-profile/us.{model}")
    }


def test_s3_arn_shortcut_agrees_with_the_templates() -> None:
    """resource_type_for_arn decides S3 bucket and object ARNs without a regex; for every
    action that has an S3 template, it must answer what the templates' regexes answer.
    (Not for an object key shaped like an access point's path, ``arn:aws:s3:::accesspoint/ap/
    object/k``: the regexes, whose region and account may be empty, prefer the access point
    there, while it is an object of a bucket named ``accesspoint``, as the shortcut says.)"""
    arns = [
        "arn:aws:s3:::data",
        "arn:aws:s3:::accesspoint",
        "arn:aws:s3:::data/",
        "arn:aws:s3:::data/k",
        "arn:aws:s3:::data/a/b.parquet",
        "arn:aws:s3:::job/1",
        "arn:aws-cn:s3:::data",
        "arn:aws:s3:::",
    ]
    checked = 0
    for action in catalog.all_actions():
        templates = [rt.arn_template for rt in catalog.resource_types(action)]
        if not any(":s3:" in t or ":s3express:" in t for t in templates):
            continue
        for arn in arns:
            by_regex = next((rt for rx, rt in catalog._rt_matchers(action) if rx.match(arn)), None)
            assert catalog.resource_type_for_arn(action, arn) == by_regex, (action, arn)
            checked += 1
    assert checked > 1000


def test_a_batch_call_names_its_resources_in_the_plural_bare_suffix() -> None:
    """``BatchGetProjects(names=[...])`` is about projects: ``names`` lists ProjectName values,
    as ``name`` is the ProjectName of a call about one project (the bare-suffix rule, in the
    plural). Found auditing issue 12 on bench/make_trail.py --varied --seed 11: the names were
    not read, the grant was ``project/*`` and a call denied on one project was inside it unnamed.
    https://docs.aws.amazon.com/codebuild/latest/APIReference/API_BatchGetProjects.html"""
    record = management_event("codebuild.amazonaws.com", "BatchGetProjects", {"names": ["etl", "train"]})
    assert {u.resource for u in usages(record)} == {
        f"arn:aws:codebuild:{REGION}:{ACCOUNT}:project/etl",
        f"arn:aws:codebuild:{REGION}:{ACCOUNT}:project/train",
    }
