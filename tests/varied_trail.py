"""A second synthetic trail, shaped unlike ``bench/make_trail.py``, for the fidelity checks.

``bench/make_trail.py`` grew up beside iamtrim: the same roles, services and request shapes the
normalizer was tuned on. This one is written from the AWS pages of each operation instead, with
what that generator lacks: principals with paths and IAM users (with paths), two accounts, four
other regions, services it never calls (SageMaker, Glue, Athena, ECS, SQS, SNS, Secrets Manager,
SSM, DynamoDB, Lambda, CloudWatch Logs, KMS called by services for the caller), request shapes
of the services' own APIs (ARNs or names, queue URLs, batch maps), and high-cardinality S3 keys
with denied keys inside the busy folders. Everything is synthetic and deterministic for a seed.

It writes one JSON Lines file and a ``{"Records": [...]}`` file (as a trail and a collector
would), and returns the records so the tests know which calls were denied.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Rec = dict[str, Any]

DATA_ACCOUNT = "210987654321"
APP_ACCOUNT = "333344445555"
REGIONS = ("eu-central-1", "ap-southeast-2", "us-west-2", "sa-east-1")
START = dt.datetime(2026, 11, 2, tzinfo=dt.UTC)
LAKE = "lake-curated-210987654321"  # a busy bucket: thousands of distinct keys
RAW = "lake-raw-210987654321"


@dataclass(frozen=True)
class Who:
    arn: str  # the IAM identity (role or user), with its path
    kind: str  # "role" | "user"
    session: str = ""

    @property
    def account(self) -> str:
        return self.arn.split(":")[4]

    @property
    def name(self) -> str:
        return self.arn.rsplit("/", 1)[1]

    def identity(self, invoked_by: str = "") -> Rec:
        digest = hashlib.sha1(self.arn.encode()).hexdigest().upper()[:17]
        if self.kind == "user":
            # https://docs.aws.amazon.com/awscloudtrail/latest/userguide/cloudtrail-event-reference-user-identity.html
            out: Rec = {
                "type": "IAMUser",
                "principalId": f"AIDA{digest}",
                "arn": self.arn,
                "accountId": self.account,
                "accessKeyId": f"AKIA{digest[:16]}",
                "userName": self.name,
            }
        else:
            out = {
                "type": "AssumedRole",
                "principalId": f"AROA{digest}:{self.session}",
                "arn": f"arn:aws:sts::{self.account}:assumed-role/{self.name}/{self.session}",
                "accountId": self.account,
                "accessKeyId": f"ASIA{digest[:16]}",
                "sessionContext": {
                    "sessionIssuer": {
                        "type": "Role",
                        "principalId": f"AROA{digest}",
                        "arn": self.arn,
                        "accountId": self.account,
                        "userName": self.name,
                    },
                    "attributes": {"creationDate": "2026-11-02T00:00:00Z", "mfaAuthenticated": "false"},
                },
            }
        if invoked_by:
            out["invokedBy"] = invoked_by
        return out


SAGEMAKER = Who(
    f"arn:aws:iam::{DATA_ACCOUNT}:role/service-role/AmazonSageMaker-ExecutionRole-20261101T1200",
    "role",
    "SageMaker",
)
GLUE = Who(
    f"arn:aws:iam::{DATA_ACCOUNT}:role/teams/data-eng/glue-etl-nightly", "role", "GlueJobRunnerSession"
)
ANALYST = Who(f"arn:aws:iam::{DATA_ACCOUNT}:user/analysts/maria.souza", "user")
DEPLOYER = Who(f"arn:aws:iam::{DATA_ACCOUNT}:user/ci/deployer", "user")
ORDERS = Who(f"arn:aws:iam::{APP_ACCOUNT}:role/app/orders-api-task", "role", "ecs-task-7f3a")
OPS = Who(f"arn:aws:iam::{APP_ACCOUNT}:role/ops-automation", "role", "i-0a1b2c3d4e5f60718")
LAUNCHER_ARN = f"arn:aws:iam::{APP_ACCOUNT}:role/platform/ec2-launcher"
EVERYONE = (SAGEMAKER, GLUE, ANALYST, DEPLOYER, ORDERS, OPS, Who(LAUNCHER_ARN, "role", "autoscaler"))


class Trail:
    """Builds records; remembers each one."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.records: list[Rec] = []
        self.clock = START

    def _tick(self) -> str:
        self.clock += dt.timedelta(seconds=self.rng.randint(1, 90))
        return self.clock.strftime("%Y-%m-%dT%H:%M:%SZ")

    def uuid(self) -> str:
        h = f"{self.rng.getrandbits(128):032x}"
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}"

    def hex(self, n: int) -> str:
        return f"{self.rng.getrandbits(4 * n):0{n}x}"

    def add(
        self,
        who: Who,
        source: str,
        name: str,
        region: str,
        request: Rec | None,
        response: Rec | None = None,
        *,
        resources: list[Rec] | None = None,
        denied: bool = False,
        invoked_by: str = "",
        data_event: bool = False,
        vpce: str = "",
    ) -> Rec:
        rec: Rec = {
            "eventVersion": "1.09",
            "userIdentity": who.identity(invoked_by),
            "eventTime": self._tick(),
            "eventSource": source,
            "eventName": name,
            "awsRegion": region,
            "sourceIPAddress": invoked_by or f"10.{self.rng.randint(0, 255)}.{self.rng.randint(0, 255)}.17",
            "userAgent": invoked_by or "Boto3/1.35.60 md/Botocore#1.35.60 ua/2.0 os/linux",
            "requestParameters": request,
            "responseElements": None if denied else response,
            "requestID": self.uuid(),
            "eventID": self.uuid(),
            "readOnly": name.startswith(("Get", "Describe", "List", "Head")),
            "eventType": "AwsApiCall",
            "managementEvent": not data_event,
            "recipientAccountId": who.account,
            "eventCategory": "Data" if data_event else "Management",
        }
        if resources is not None:
            rec["resources"] = resources
        if vpce:
            rec["vpcEndpointId"] = vpce
        if denied:
            # https://docs.aws.amazon.com/IAM/latest/UserGuide/troubleshoot_access-denied.html
            rec["errorCode"] = "AccessDenied"
            rec["errorMessage"] = (
                "Access Denied"
                if source.startswith("s3.")
                else (
                    f"User: {rec['userIdentity']['arn']} is not authorized to perform: "
                    f"{source.split('.')[0]}:{name}"
                )
            )
        self.records.append(rec)
        return rec


def _s3(
    t: Trail, who: Who, name: str, bucket: str, key: str, *, denied: bool = False, vpce: str = ""
) -> None:
    # https://docs.aws.amazon.com/AmazonS3/latest/userguide/cloudtrail-logging-understanding-s3-entries.html
    t.add(
        who,
        "s3.amazonaws.com",
        name,
        "eu-central-1",
        {"bucketName": bucket, "Host": f"{bucket}.s3.eu-central-1.amazonaws.com", "key": key},
        None,
        resources=[
            {"type": "AWS::S3::Object", "ARN": f"arn:aws:s3:::{bucket}/{key}"},
            {"accountId": DATA_ACCOUNT, "type": "AWS::S3::Bucket", "ARN": f"arn:aws:s3:::{bucket}"},
        ],
        denied=denied,
        data_event=True,
        vpce=vpce,
    )


def _kms_by_service(t: Trail, who: Who, service: str, region: str, key: str, context: Rec) -> None:
    # A service decrypting for the caller: invokedBy names it
    # (https://docs.aws.amazon.com/kms/latest/developerguide/ct-decrypt.html).
    t.add(
        who,
        "kms.amazonaws.com",
        "Decrypt",
        region,
        {"encryptionContext": context, "encryptionAlgorithm": "SYMMETRIC_DEFAULT"},
        None,
        resources=[{"accountId": who.account, "type": "AWS::KMS::Key", "ARN": key}],
        invoked_by=f"{service}.amazonaws.com",
    )


def sagemaker_role(t: Trail) -> None:
    who, region = SAGEMAKER, "eu-central-1"
    key = f"arn:aws:kms:{region}:{DATA_ACCOUNT}:key/{t.uuid()}"
    for day in range(6):
        for part in range(40):
            # The busy folder: a new key per part and day.
            _s3(
                t,
                who,
                "GetObject",
                LAKE,
                f"features/2026/11/{day + 2:02d}/part-{part:05d}-{t.hex(8)}.parquet",
            )
            _kms_by_service(
                t,
                who,
                "s3",
                region,
                key,
                {"aws:s3:arn": f"arn:aws:s3:::{LAKE}/features/2026/11/{day + 2:02d}/"},
            )
        # Denied inside the busy folder: a restricted extract the bucket policy keeps from it.
        _s3(
            t,
            who,
            "GetObject",
            LAKE,
            f"features/2026/11/{day + 2:02d}/_pii/extract-{t.hex(6)}.csv",
            denied=True,
        )
        job = f"Churn-Train-2026-11-{day + 2:02d}-{t.hex(4)}"
        arn = f"arn:aws:sagemaker:{region}:{DATA_ACCOUNT}:training-job/{job.lower()}"
        # https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_CreateTrainingJob.html
        t.add(
            who,
            "sagemaker.amazonaws.com",
            "CreateTrainingJob",
            region,
            {
                "trainingJobName": job,
                "roleArn": SAGEMAKER.arn,
                "algorithmSpecification": {
                    "trainingImage": "492215442770.dkr.ecr.eu-central-1.amazonaws.com/xgb:1",
                    "trainingInputMode": "File",
                },
                "outputDataConfig": {"s3OutputPath": f"s3://{LAKE}/models/"},
                "resourceConfig": {"instanceType": "ml.m5.xlarge", "instanceCount": 1, "volumeSizeInGB": 30},
                "stoppingCondition": {"maxRuntimeInSeconds": 3600},
            },
            {"trainingJobArn": arn},
        )
        for _ in range(3):
            t.add(
                who, "sagemaker.amazonaws.com", "DescribeTrainingJob", region, {"trainingJobName": job}, None
            )
        t.add(
            who,
            "logs.amazonaws.com",
            "CreateLogStream",
            region,
            {
                "logGroupName": "/aws/sagemaker/TrainingJobs",
                "logStreamName": f"{job}/algo-1-{1700000000 + day * 86400}",
            },
            None,
        )
    # InvokeEndpoint, in another region.
    for _ in range(25):
        t.add(
            who,
            "sagemaker.amazonaws.com",
            "InvokeEndpoint",
            "ap-southeast-2",
            {"endpointName": "churn-scorer-prod", "contentType": "text/csv"},
            None,
            data_event=True,
        )
    t.add(who, "sagemaker.amazonaws.com", "ListTrainingJobs", region, {"maxResults": 50}, None)


def glue_role(t: Trail) -> None:
    who, region = GLUE, "eu-central-1"
    for table in ("orders", "customers", "events_clickstream"):
        for _ in range(8):
            # https://docs.aws.amazon.com/glue/latest/webapi/API_GetTable.html
            t.add(
                who,
                "glue.amazonaws.com",
                "GetTable",
                region,
                {"databaseName": "lake_curated", "name": table},
                None,
            )
            t.add(
                who,
                "glue.amazonaws.com",
                "GetPartitions",
                region,
                {
                    "databaseName": "lake_curated",
                    "tableName": table,
                    "expression": f"dt >= '2026-11-0{t.rng.randint(1, 9)}'",
                },
                None,
            )
    t.add(who, "glue.amazonaws.com", "GetDatabase", region, {"name": "lake_curated"}, None)
    for i in range(60):
        _s3(t, who, "GetObject", RAW, f"landing/orders/2026-11-{i % 6 + 2:02d}/batch-{t.hex(10)}.json.gz")
        _s3(t, who, "PutObject", LAKE, f"curated/orders/dt=2026-11-{i % 6 + 2:02d}/part-{i:05d}.parquet")
    # Denied: a folder the job may not write, inside the one it writes.
    _s3(t, who, "PutObject", LAKE, "curated/orders/_audit/manifest.json", denied=True)
    # https://docs.aws.amazon.com/glue/latest/webapi/API_StartJobRun.html
    t.add(
        who,
        "glue.amazonaws.com",
        "StartJobRun",
        region,
        {"jobName": "orders-compaction"},
        {"jobRunId": f"jr_{t.hex(64)}"},
    )


def analyst_user(t: Trail) -> None:
    who = ANALYST
    for region in ("eu-central-1", "sa-east-1"):
        for _ in range(12):
            qid = t.uuid()
            # https://docs.aws.amazon.com/athena/latest/APIReference/API_StartQueryExecution.html
            t.add(
                who,
                "athena.amazonaws.com",
                "StartQueryExecution",
                region,
                {
                    "queryString": "SELECT count(*) FROM orders WHERE dt = '2026-11-03'",
                    "queryExecutionContext": {"database": "lake_curated", "catalog": "AwsDataCatalog"},
                    "workGroup": "analysts",
                    "resultConfiguration": {"outputLocation": f"s3://{LAKE}/athena-results/"},
                },
                {"queryExecutionId": qid},
            )
            for _ in range(2):
                t.add(
                    who, "athena.amazonaws.com", "GetQueryExecution", region, {"queryExecutionId": qid}, None
                )
            t.add(
                who,
                "athena.amazonaws.com",
                "GetQueryResults",
                region,
                {"queryExecutionId": qid, "maxResults": 1000},
                None,
            )
    for _ in range(30):
        _s3(t, who, "GetObject", LAKE, f"athena-results/{t.uuid()}.csv")
    # Denied-only: the analyst tried the raw bucket and a prod secret.
    _s3(t, who, "GetObject", RAW, "landing/orders/2026-11-02/batch-0000.json.gz", denied=True)
    t.add(
        who,
        "secretsmanager.amazonaws.com",
        "GetSecretValue",
        "eu-central-1",
        {"secretId": "prod/orders/db-master"},
        None,
        denied=True,
    )
    t.add(who, "sts.amazonaws.com", "GetCallerIdentity", "eu-central-1", None, {"account": DATA_ACCOUNT})


def deployer_user(t: Trail) -> None:
    who = DEPLOYER
    for region in ("eu-central-1", "us-west-2"):
        for fn in ("orders-ingest", "orders-enrich", "billing-export"):
            arn = f"arn:aws:lambda:{region}:{DATA_ACCOUNT}:function:{fn}"
            # https://docs.aws.amazon.com/lambda/latest/dg/logging-using-cloudtrail.html
            t.add(who, "lambda.amazonaws.com", "GetFunction20150331v2", region, {"functionName": fn}, None)
            t.add(
                who,
                "lambda.amazonaws.com",
                "UpdateFunctionCode20150331v2",
                region,
                {
                    "functionName": arn,
                    "s3Bucket": f"deploy-artifacts-{DATA_ACCOUNT}",
                    "s3Key": f"{fn}/{t.hex(12)}.zip",
                    "publish": True,
                },
                {"functionName": fn, "functionArn": arn, "version": "7"},
            )
            _s3(t, who, "PutObject", f"deploy-artifacts-{DATA_ACCOUNT}", f"{fn}/{t.hex(12)}.zip")
    # https://docs.aws.amazon.com/ecs/latest/APIReference/API_UpdateService.html
    t.add(
        who,
        "ecs.amazonaws.com",
        "UpdateService",
        "eu-central-1",
        {
            "cluster": "orders",
            "service": "orders-api",
            "taskDefinition": "orders-api:42",
            "forceNewDeployment": True,
        },
        None,
    )
    t.add(
        who,
        "ecs.amazonaws.com",
        "DescribeServices",
        "eu-central-1",
        {"cluster": "orders", "services": ["orders-api"]},
        None,
    )
    # Denied-only: IAM, which the deployer may not touch.
    t.add(
        who,
        "iam.amazonaws.com",
        "AttachRolePolicy",
        "us-east-1",
        {
            "roleName": "orders-api-task",
            "policyArn": "arn:aws:iam::aws:policy/AdministratorAccess",
        },
        None,
        denied=True,
    )


def orders_role(t: Trail) -> None:
    who = ORDERS
    for region in ("eu-central-1", "ap-southeast-2"):
        queue = f"https://sqs.{region}.amazonaws.com/{APP_ACCOUNT}/orders-events"
        key = f"arn:aws:kms:{region}:{APP_ACCOUNT}:key/{t.uuid()}"
        for i in range(40):
            # https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/logging-using-cloudtrail.html
            t.add(
                who,
                "dynamodb.amazonaws.com",
                "GetItem",
                region,
                {"tableName": "orders", "key": {"pk": {"S": f"o#{i}"}}},
                None,
                data_event=True,
            )
            t.add(
                who,
                "dynamodb.amazonaws.com",
                "PutItem",
                region,
                {"tableName": "orders", "item": {"pk": {"S": f"o#{i}"}}},
                None,
                data_event=True,
            )
            t.add(
                who,
                "dynamodb.amazonaws.com",
                "Query",
                region,
                {"tableName": "orders", "indexName": "by-customer"},
                None,
                data_event=True,
            )
            # https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-logging-using-cloudtrail.html
            t.add(
                who,
                "sqs.amazonaws.com",
                "SendMessage",
                region,
                {"queueUrl": queue, "messageBody": "HIDDEN_DUE_TO_SECURITY_REASONS"},
                None,
                data_event=True,
            )
        t.add(
            who,
            "sns.amazonaws.com",
            "Publish",
            region,
            {
                "topicArn": f"arn:aws:sns:{region}:{APP_ACCOUNT}:order-notifications",
                "message": "HIDDEN_DUE_TO_SECURITY_REASONS",
            },
            {"messageId": t.uuid()},
        )
        # Secrets Manager by name, then KMS for it (https://docs.aws.amazon.com/secretsmanager/latest/userguide/security-encryption.html).
        secret = f"arn:aws:secretsmanager:{region}:{APP_ACCOUNT}:secret:orders/db-reader-{t.hex(6)[:6]}"
        for _ in range(5):
            t.add(
                who,
                "secretsmanager.amazonaws.com",
                "GetSecretValue",
                region,
                {"secretId": "orders/db-reader"},
                None,
            )
            _kms_by_service(
                t, who, "secretsmanager", region, key, {"SecretARN": secret, "SecretVersionId": t.uuid()}
            )
        # SSM parameters by name and by path; Parameter Store decrypts through KMS
        # (https://docs.aws.amazon.com/kms/latest/developerguide/services-parameter-store.html).
        t.add(
            who,
            "ssm.amazonaws.com",
            "GetParameter",
            region,
            {"name": "/orders/feature-flags", "withDecryption": True},
            None,
        )
        _kms_by_service(
            t,
            who,
            "ssm",
            region,
            key,
            {"PARAMETER_ARN": f"arn:aws:ssm:{region}:{APP_ACCOUNT}:parameter/orders/feature-flags"},
        )
        t.add(
            who,
            "ssm.amazonaws.com",
            "GetParametersByPath",
            region,
            {"path": "/orders/config", "recursive": True},
            None,
        )
        # Denied-only: another service's table.
        t.add(
            who,
            "dynamodb.amazonaws.com",
            "Scan",
            region,
            {"tableName": "payments"},
            None,
            denied=True,
            data_event=True,
        )
        t.add(
            who,
            "logs.amazonaws.com",
            "CreateLogStream",
            region,
            {
                "logGroupName": "/ecs/orders-api",
                "logStreamName": f"ecs/orders-api/{t.hex(32)}",
            },
            None,
        )


def ops_role(t: Trail) -> None:
    who, region = OPS, "ap-southeast-2"
    for _ in range(10):
        # https://docs.aws.amazon.com/ecs/latest/APIReference/API_RunTask.html
        t.add(
            who,
            "ecs.amazonaws.com",
            "RunTask",
            region,
            {
                "cluster": "batch",
                "taskDefinition": "reindex:3",
                "count": 1,
                "launchType": "FARGATE",
            },
            {"tasks": [{"taskArn": f"arn:aws:ecs:{region}:{APP_ACCOUNT}:task/batch/{t.hex(32)}"}]},
        )
        t.add(
            who,
            "ecs.amazonaws.com",
            "ListTasks",
            region,
            {"cluster": "batch", "desiredStatus": "RUNNING"},
            None,
        )
    t.add(
        who,
        "logs.amazonaws.com",
        "FilterLogEvents",
        region,
        {"logGroupName": "/ecs/reindex", "filterPattern": "ERROR"},
        None,
    )
    t.add(
        who,
        "logs.amazonaws.com",
        "DescribeLogStreams",
        region,
        {"logGroupName": "/ecs/reindex", "orderBy": "LastEventTime"},
        None,
    )
    t.add(
        who,
        "lambda.amazonaws.com",
        "Invoke",
        region,
        {
            "functionName": f"arn:aws:lambda:{region}:{APP_ACCOUNT}:function:reindex-trigger",
            "invocationType": "Event",
        },
        None,
        resources=[
            {
                "accountId": APP_ACCOUNT,
                "type": "AWS::Lambda::Function",
                "ARN": f"arn:aws:lambda:{region}:{APP_ACCOUNT}:function:reindex-trigger",
            }
        ],
        data_event=True,
    )
    # Denied-only: stopping instances it may not stop.
    t.add(
        who,
        "ec2.amazonaws.com",
        "StopInstances",
        region,
        {"instancesSet": {"items": [{"instanceId": "i-0fedcba9876543210"}]}, "force": False},
        None,
        denied=True,
    )


LAUNCHER = Who(f"arn:aws:iam::{APP_ACCOUNT}:role/platform/ec2-launcher", "role", "autoscaler")


def launcher_role(t: Trail) -> None:
    who, region = LAUNCHER, "us-west-2"
    for _ in range(4):
        instance = f"i-0{t.hex(16)}"
        # https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_RunInstances.html
        t.add(
            who,
            "ec2.amazonaws.com",
            "RunInstances",
            region,
            {
                "instancesSet": {
                    "items": [{"imageId": "ami-0c2d3e4f5a6b7c8d9", "minCount": 1, "maxCount": 1}]
                },
                "instanceType": "m6i.large",
                "blockDeviceMapping": {
                    "items": [
                        {
                            "deviceName": "/dev/xvda",
                            "ebs": {"snapshotId": "snap-0a1b2c3d4e5f60718", "volumeSize": 50},
                        }
                    ]
                },
                "networkInterfaceSet": {
                    "items": [
                        {
                            "deviceIndex": 0,
                            "subnetId": "subnet-0a1b2c3d4e5f60718",
                            "groupSet": {"items": [{"groupId": "sg-0a1b2c3d4e5f60718"}]},
                        }
                    ]
                },
                "launchTemplate": {"launchTemplateId": "lt-0a1b2c3d4e5f60718", "version": "$Latest"},
                "keyName": "ops-2026",
            },
            {"instancesSet": {"items": [{"instanceId": instance, "imageId": "ami-0c2d3e4f5a6b7c8d9"}]}},
        )
        # https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_CreateTags.html
        t.add(
            who,
            "ec2.amazonaws.com",
            "CreateTags",
            region,
            {
                "resourcesSet": {"items": [{"resourceId": instance}]},
                "tagSet": {"items": [{"key": "team", "value": "platform"}]},
            },
            {"_return": True},
        )
    t.add(who, "ec2.amazonaws.com", "DescribeInstances", region, {"instancesSet": {}, "filterSet": {}}, None)
    # Executions of a standard state machine are execution:SM:NAME
    # (https://docs.aws.amazon.com/step-functions/latest/dg/concepts-standard-vs-express.html).
    machine = f"arn:aws:states:{region}:{APP_ACCOUNT}:stateMachine:instance-warmup"
    for _ in range(3):
        name = t.uuid()
        execution = f"arn:aws:states:{region}:{APP_ACCOUNT}:execution:instance-warmup:{name}"
        t.add(
            who,
            "states.amazonaws.com",
            "StartExecution",
            region,
            {"stateMachineArn": machine, "name": name},
            {"executionArn": execution},
        )
        t.add(who, "states.amazonaws.com", "DescribeExecution", region, {"executionArn": execution}, None)
    # Denied-only: terminating what it did not launch.
    t.add(
        who,
        "ec2.amazonaws.com",
        "TerminateInstances",
        region,
        {"instancesSet": {"items": [{"instanceId": "i-0123456789abcdef0"}]}},
        None,
        denied=True,
    )


BUILDERS: tuple[Callable[[Trail], None], ...] = (
    sagemaker_role,
    glue_role,
    analyst_user,
    deployer_user,
    orders_role,
    ops_role,
    launcher_role,
)


def make(seed: int = 5) -> list[Rec]:
    t = Trail(seed)
    for build in BUILDERS:
        build(t)
    t.rng.shuffle(t.records)  # a trail interleaves principals
    return t.records


def write(out: Path, seed: int = 5) -> tuple[list[Path], list[Rec]]:
    """Write the trail as JSON Lines (first half) and a ``{"Records": [...]}`` file (the rest)."""
    records = make(seed)
    out.mkdir(parents=True, exist_ok=True)
    half = len(records) // 2
    lines = out / "collector.jsonl"
    lines.write_text("".join(json.dumps(r) + "\n" for r in records[:half]))
    trail = out / f"{DATA_ACCOUNT}_CloudTrail_eu-central-1_20261102T0000Z_varied.json"
    trail.write_text(json.dumps({"Records": records[half:]}))
    return [lines, trail], records


def denied(records: list[Rec]) -> Iterator[Rec]:
    return (r for r in records if r.get("errorCode"))
