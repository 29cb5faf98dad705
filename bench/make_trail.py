"""Generate a synthetic CloudTrail corpus for benchmarking ``iamtrim ingest``.

The corpus imitates one AWS account of an ML platform: notebooks, training jobs, feature pipelines,
model artifacts in S3 under SSE-KMS reached through VPC endpoints, plus the management calls those
workloads make. Records are written as AWS writes them: gzip trail files ``{"Records": [...]}``
under ``AWSLogs/<account>/CloudTrail/<region>/YYYY/MM/DD/``.

Everything is synthetic (made-up account ids, names, keys and addresses) and deterministic for a
given ``--seed``: each file has its own random generator seeded from (seed, file index), so the
output does not depend on how files are spread over worker processes, and gzip headers carry
``mtime=0``.

    python bench/make_trail.py --out bench/out/trail              # 1,000,000 records, 500 files
    python bench/make_trail.py --records 20000 --files 10 --out /tmp/t

A ``manifest.json`` next to ``AWSLogs/`` records the parameters, per-file record counts and sizes.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import gzip
import hashlib
import json
import multiprocessing
import os
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ACCOUNT = "111122223333"
CI_ACCOUNT = "444455556666"
HOME_REGION = "us-east-1"
OTHER_REGION = "eu-west-1"
OTHER_REGION_SHARE = 0.15
START = dt.datetime(2025, 3, 3, tzinfo=dt.UTC)
SPAN_DAYS = 14
FILE_WINDOW_S = 300  # a trail file covers about five minutes of activity
MANIFEST = "manifest.json"
SESSIONS_PER_ROLE = 16  # live sessions per role and day
N_PRIVATE_IPS = 200  # VPC addresses a role calls from
DEFAULT_RECORDS = 1_000_000
DEFAULT_FILES = 500

_ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_FILE_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

Rec = dict[str, Any]


# --------------------------------------------------------------------------- small helpers


def stable_id(prefix: str, name: str, n: int = 17) -> str:
    """A fixed IAM-style unique id (AROA..., AIDA..., AKIA...) derived from a name."""
    digest = base64.b32encode(hashlib.sha1(name.encode()).digest()).decode()
    return prefix + digest[:n]


def rand_id(rng: random.Random, prefix: str, n: int) -> str:
    return prefix + "".join(rng.choices(_ALNUM, k=n))


def uuid4(rng: random.Random) -> str:
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"


def hexid(rng: random.Random, n: int) -> str:
    return f"{rng.getrandbits(4 * n):0{n}x}"


def iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


USER_AGENTS = {
    "boto3": "Boto3/1.34.69 md/Botocore#1.34.69 ua/2.0 os/linux#5.10.213 lang/python#3.10.13 "
    "Botocore/1.34.69",
    "sagemaker": "AWS-SageMaker-Python-SDK/2.214.3 Python/3.10.14 Boto3/1.34.84 Botocore/1.34.84",
    "java": "aws-sdk-java/1.12.470 Linux/5.10.210 OpenJDK_64-Bit_Server_VM/25.402-b08 java/1.8.0_402",
    "spark": "aws-sdk-java/1.12.262 Linux/5.10.205 OpenJDK_64-Bit_Server_VM/17.0.10+7-LTS aws-glue/4.0",
    "cli": "aws-cli/2.15.30 Python/3.11.8 Linux/6.1.79 exe/x86_64.amzn.2023 command/s3.cp",
    "terraform": "APN/1.0 HashiCorp/1.0 Terraform/1.7.5 terraform-provider-aws/5.42.0 aws-sdk-go-v2/1.26.0",
    "go": "aws-sdk-go-v2/1.25.2 os/linux lang/go#1.21.8 md/GOOS#linux md/GOARCH#amd64 api/s3#1.51.3",
    "console": "AWS Internal",
    "browser": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/122.0.0.0 Safari/537.36",
    "node": "aws-sdk-nodejs/2.1583.0 linux/v18.19.1 exec-env/AWS_Lambda_nodejs18.x promise",
}

TLS13 = ("TLSv1.3", "TLS_AES_128_GCM_SHA256")
TLS12 = ("TLSv1.2", "ECDHE-RSA-AES128-GCM-SHA256")

# --------------------------------------------------------------------------- the world


@dataclass
class Bucket:
    name: str
    families: list[str]  # key families, see Keys
    kms: bool
    vpce: bool
    versioned: bool = False


@dataclass
class Principal:
    """One IAM role or user and what it tends to do."""

    name: str
    kind: str  # role | user
    path: str
    weight: float
    agents: list[str]
    session_style: str
    activities: dict[str, float]
    buckets: list[str]
    vpce_share: float  # fraction of its calls that go through a VPC endpoint
    via_console: bool = False
    arn: str = ""
    uid: str = ""
    ips: list[str] = field(default_factory=list)
    act_names: list[str] = field(default_factory=list)
    act_cum: list[float] = field(default_factory=list)


DATASETS = [
    "clickstream",
    "transactions",
    "customer-profiles",
    "product-catalog",
    "search-logs",
    "support-tickets",
    "fraud-labels",
    "images-train",
    "images-val",
    "reviews-text",
    "recsys-interactions",
    "pricing-history",
    "inventory-snapshots",
    "ad-impressions",
    "sessions",
]
FEATURE_GROUPS = [
    "user-features",
    "item-features",
    "session-features",
    "fraud-features",
    "pricing-features",
    "ctr-features",
    "embedding-features",
    "risk-features",
]
MODELS = [
    "ctr-xgboost",
    "fraud-detector",
    "recsys-two-tower",
    "price-elasticity",
    "churn-lgbm",
    "search-ranker",
    "image-classifier",
    "text-sentiment",
]
NOTEBOOK_USERS = ["alice", "bob", "chen", "dana", "emeka", "farah", "goran", "hiro"]
SECRETS = [
    "prod/feature-store/db",
    "prod/airflow/fernet",
    "ml/wandb-api-key",
    "ml/huggingface-token",
    "prod/redshift/readonly",
    "ci/github-app-key",
]
PARAMS = [
    "/ml/feature-store/endpoint",
    "/ml/training/default-instance",
    "/ml/registry/bucket",
    "/platform/vpc/subnets",
    "/platform/vpc/security-group",
    "/ml/inference/threshold",
    "/ml/airflow/dag-config",
    "/platform/kms/artifacts-key",
]
TABLES = ["feature-store-online", "model-registry", "experiment-tracking", "pipeline-locks"]
QUEUES = ["training-requests", "feature-backfill", "inference-batch", "dead-letter"]
FUNCTIONS = ["s3-object-notifier", "feature-validator", "model-promoter", "drift-alert"]
STACKS = ["ml-platform-network", "ml-platform-core", "feature-store", "inference-endpoints"]
REPOS = ["ml/training-base", "ml/inference-server", "ml/feature-pipeline", "ml/notebook-kernel"]
GLUE_DBS = ["raw", "curated", "features"]
VPCES = ["vpce-0a1b2c3d4e5f60718", "vpce-0f9e8d7c6b5a40312"]
KMS_KEYS = {
    "data": "1f2e3d4c-5b6a-4978-8a1b-2c3d4e5f6a7b",
    "artifacts": "9a8b7c6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d",
    "secrets": "3c4d5e6f-7a8b-4c9d-8e0f-1a2b3c4d5e6f",
    "logs": "7e6d5c4b-3a29-4180-b7c6-d5e4f3a2b1c0",
}

BUCKETS = [
    Bucket("acme-ml-datasets", ["dataset"], kms=True, vpce=True),
    Bucket("acme-ml-features", ["feature"], kms=True, vpce=True),
    Bucket("acme-ml-models", ["model"], kms=True, vpce=True, versioned=True),
    Bucket("acme-ml-artifacts", ["artifact", "checkpoint"], kms=True, vpce=True, versioned=True),
    Bucket("acme-ml-notebooks", ["notebook"], kms=True, vpce=True, versioned=True),
    Bucket("acme-ml-athena-results", ["athena"], kms=False, vpce=False),
    Bucket("acme-raw-ingest", ["raw"], kms=True, vpce=False),
    Bucket("acme-platform-logs", ["logs"], kms=False, vpce=False),
]
BUCKET_BY_NAME = {b.name: b for b in BUCKETS}

S3_HEAVY = {"s3_get": 17, "s3_head": 5, "s3_put": 4, "s3_list": 4, "s3_delete": 0.3, "s3_bucket": 1}


def _acts(base: dict[str, float], **extra: float) -> dict[str, float]:
    out = dict(base)
    out.update(extra)
    return out


def build_principals() -> list[Principal]:
    P = Principal
    ps = [
        P(
            "AmazonSageMaker-ExecutionRole-20240412T101530",
            "role",
            "/service-role/",
            9,
            ["sagemaker"],
            "sagemaker",
            _acts(S3_HEAVY, sagemaker=3, ecr_pull=2, logs=2, ssm=1, secrets=0.5, kms_direct=0.3),
            ["acme-ml-datasets", "acme-ml-features", "acme-ml-artifacts", "acme-ml-models"],
            0.9,
        ),
        P(
            "ml-notebook-execution",
            "role",
            "/",
            8,
            ["sagemaker", "boto3"],
            "notebook",
            _acts(
                S3_HEAVY,
                sagemaker=4,
                athena=2,
                glue=2,
                ssm=1,
                secrets=1,
                sts_ident=1,
                iam_read=0.3,
                ec2_describe=0.5,
            ),
            [
                "acme-ml-datasets",
                "acme-ml-features",
                "acme-ml-notebooks",
                "acme-ml-athena-results",
                "acme-ml-models",
            ],
            0.8,
        ),
        P(
            "ml-training-job",
            "role",
            "/ml/",
            10,
            ["sagemaker", "boto3"],
            "sagemaker",
            _acts(S3_HEAVY, logs=3, ecr_pull=2, ssm=0.5, kms_direct=0.3, sagemaker=0.5),
            ["acme-ml-datasets", "acme-ml-features", "acme-ml-artifacts"],
            1.0,
        ),
        P(
            "feature-pipeline",
            "role",
            "/ml/",
            9,
            ["spark"],
            "glue",
            _acts(S3_HEAVY, glue=5, logs=2, dynamodb=2, secrets=0.5, sqs=1),
            ["acme-ml-datasets", "acme-ml-features", "acme-raw-ingest"],
            0.7,
        ),
        P(
            "AWSGlueServiceRole-etl",
            "role",
            "/service-role/",
            5,
            ["spark"],
            "glue",
            _acts(S3_HEAVY, glue=6, logs=2, cloudwatch=1),
            ["acme-raw-ingest", "acme-ml-datasets"],
            0.3,
        ),
        P(
            "model-registry-writer",
            "role",
            "/ml/",
            3,
            ["boto3"],
            "lambda",
            _acts(S3_HEAVY, dynamodb=6, sagemaker=2, sns=1, logs=1),
            ["acme-ml-models", "acme-ml-artifacts"],
            0.5,
        ),
        P(
            "inference-endpoint",
            "role",
            "/ml/",
            5,
            ["java"],
            "sagemaker",
            _acts(S3_HEAVY, dynamodb=5, logs=3, cloudwatch=2, kms_direct=1, ecr_pull=1),
            ["acme-ml-models", "acme-ml-features"],
            1.0,
        ),
        P(
            "s3-object-notifier",
            "role",
            "/service-role/",
            2,
            ["node"],
            "lambda",
            _acts(S3_HEAVY, sqs=8, logs=4, sns=2, kms_direct=1),
            ["acme-raw-ingest"],
            0.0,
        ),
        P(
            "airflow-worker",
            "role",
            "/",
            6,
            ["boto3"],
            "airflow",
            _acts(
                S3_HEAVY,
                sagemaker=5,
                glue=3,
                athena=3,
                states=2,
                secrets=2,
                ssm=2,
                sqs=2,
                lambda_invoke=1,
                sts_assume=0.5,
            ),
            ["acme-ml-datasets", "acme-ml-features", "acme-ml-artifacts", "acme-ml-athena-results"],
            0.6,
        ),
        P(
            "batch-scoring",
            "role",
            "/ml/",
            4,
            ["boto3"],
            "ecs",
            _acts(S3_HEAVY, dynamodb=2, logs=2, ecr_pull=1, sqs=2),
            ["acme-ml-models", "acme-ml-features", "acme-ml-datasets"],
            0.9,
        ),
        P(
            "model-monitor",
            "role",
            "/ml/",
            2,
            ["sagemaker"],
            "sagemaker",
            _acts(S3_HEAVY, cloudwatch=6, sagemaker=3, sns=1, logs=2),
            ["acme-ml-artifacts", "acme-ml-models"],
            0.9,
        ),
        P(
            "ecs-task-feature-store",
            "role",
            "/",
            3,
            ["go"],
            "ecs",
            _acts(S3_HEAVY, dynamodb=8, secrets=2, logs=2, kms_direct=1),
            ["acme-ml-features"],
            0.9,
        ),
        P(
            "ec2-gpu-worker",
            "role",
            "/",
            2,
            ["boto3", "cli"],
            "ec2",
            _acts(S3_HEAVY, ec2_describe=3, ssm=3, logs=2, cloudwatch=2, ecr_pull=1),
            ["acme-ml-datasets", "acme-ml-artifacts"],
            0.9,
        ),
        P(
            "athena-analyst",
            "role",
            "/",
            1.5,
            ["boto3", "console"],
            "sso",
            _acts({"s3_get": 6, "s3_put": 3, "s3_list": 3, "s3_bucket": 1}, athena=12, glue=6),
            ["acme-ml-athena-results", "acme-ml-datasets"],
            0.0,
        ),
        P(
            "AWSReservedSSO_DataScientist_5f2c1a9e8d7b6c4a",
            "role",
            "/aws-reserved/sso.amazonaws.com/",
            2,
            ["console", "browser", "cli"],
            "sso",
            _acts(
                {"s3_get": 5, "s3_list": 6, "s3_bucket": 2, "s3_head": 1},
                sagemaker=8,
                iam_read=1,
                cloudwatch=2,
                logs_read=2,
                athena=1,
                ec2_describe=1,
                signin=0.3,
            ),
            ["acme-ml-datasets", "acme-ml-notebooks", "acme-ml-models"],
            0.0,
            via_console=True,
        ),
        P(
            "AWSReservedSSO_AdministratorAccess_0a9b8c7d6e5f4a3b",
            "role",
            "/aws-reserved/sso.amazonaws.com/",
            0.8,
            ["console", "browser"],
            "sso",
            _acts(
                {"s3_list": 2, "s3_bucket": 3},
                iam_read=6,
                ec2_describe=4,
                cloudformation=3,
                cloudtrail=2,
                kms_direct=1,
                signin=0.3,
                logs_read=1,
                config=1,
            ),
            ["acme-ml-models", "acme-platform-logs"],
            0.0,
            via_console=True,
        ),
        P(
            "ci-deployer",
            "role",
            "/ci/",
            1.5,
            ["terraform", "cli"],
            "ci",
            _acts(
                {"s3_get": 2, "s3_put": 2, "s3_list": 1},
                cloudformation=6,
                iam_read=6,
                ecr_push=3,
                lambda_mgmt=4,
                ec2_describe=3,
                sts_ident=1,
                kms_direct=1,
                elb=1,
                autoscaling=1,
            ),
            ["acme-ml-artifacts"],
            0.0,
        ),
        P(
            "terraform-apply",
            "role",
            "/platform/",
            1,
            ["terraform"],
            "ci",
            _acts(
                {"s3_get": 1, "s3_put": 1, "s3_bucket": 2},
                iam_read=8,
                ec2_describe=6,
                kms_direct=2,
                cloudformation=1,
                elb=2,
                autoscaling=1,
                events=1,
                sqs_mgmt=1,
                sns=0.5,
                lambda_mgmt=2,
                dynamodb_mgmt=1,
            ),
            ["acme-platform-logs"],
            0.0,
        ),
        P(
            "readonly-auditor",
            "role",
            "/security/",
            0.7,
            ["boto3"],
            "ci",
            _acts({"s3_bucket": 4}, iam_read=10, ec2_describe=3, cloudtrail=3, config=2, kms_direct=1),
            [b.name for b in BUCKETS],
            0.0,
        ),
        P(
            "platform-break-glass",
            "role",
            "/",
            0.05,
            ["console"],
            "sso",
            _acts({"s3_bucket": 1}, iam_read=2, signin=1),
            ["acme-ml-models"],
            0.0,
            via_console=True,
        ),
        P(
            "alice.ml",
            "user",
            "/",
            0.6,
            ["cli", "browser"],
            "user",
            _acts({"s3_get": 5, "s3_list": 4, "s3_put": 1}, sagemaker=2, signin=0.5, sts_ident=1),
            ["acme-ml-datasets", "acme-ml-notebooks"],
            0.0,
            via_console=True,
        ),
        P(
            "bob.data",
            "user",
            "/",
            0.4,
            ["cli"],
            "user",
            _acts({"s3_get": 5, "s3_list": 4}, athena=3, glue=2, signin=0.3),
            ["acme-ml-datasets", "acme-ml-athena-results"],
            0.0,
        ),
        P(
            "svc-legacy-etl",
            "user",
            "/service/",
            1.2,
            ["java"],
            "user",
            _acts({"s3_get": 6, "s3_put": 6, "s3_list": 2}, sqs=2, dynamodb=1),
            ["acme-raw-ingest"],
            0.0,
        ),
    ]
    ip_rng = random.Random("iamtrim-bench-ips")
    for p in ps:
        kind = "role" if p.kind == "role" else "user"
        p.arn = f"arn:aws:iam::{ACCOUNT}:{kind}{p.path}{p.name}"
        p.uid = stable_id("AROA" if p.kind == "role" else "AIDA", p.arn)
        p.ips = [f"10.20.{ip_rng.randrange(0, 64)}.{ip_rng.randrange(2, 250)}" for _ in range(N_PRIVATE_IPS)]
        p.ips += [f"203.0.113.{ip_rng.randrange(1, 254)}" for _ in range(4)]
        acc = 0.0
        for name, w in p.activities.items():
            acc += w
            p.act_names.append(name)
            p.act_cum.append(acc)
    return ps


# --------------------------------------------------------------------------- the per-file context


class Ctx:
    """Everything one trail file needs: its rng, region, time window and live sessions."""

    def __init__(self, seed: int, index: int, region: str, t0: float, principals: list[Principal]):
        self.rng = random.Random(f"{seed}:{index}")
        self.seed = seed
        self.region = region
        self.t0 = t0
        self.day = time.strftime("%Y-%m-%d", time.gmtime(t0))
        self.principals = principals
        self.idents: dict[str, list[Rec]] = {}
        acc = 0.0
        self.p_cum: list[float] = []
        for p in principals:
            acc += p.weight
            self.p_cum.append(acc)

    def now(self) -> float:
        return self.t0 + self.rng.random() * FILE_WINDOW_S

    def identity(self, p: Principal) -> Rec:
        """A userIdentity for p; sessions live for a day and a role has a handful of them."""
        pool = self.idents.get(p.name)
        if pool is None:
            slots = SESSIONS_PER_ROLE if p.kind == "role" else 1
            pool = [self._make_identity(p, slot) for slot in range(slots)]
            self.idents[p.name] = pool
        return pool[self.rng.randrange(len(pool))]

    def _make_identity(self, p: Principal, slot: int) -> Rec:
        srng = random.Random(f"{self.seed}:{p.name}:{self.day}:{slot}")
        if p.kind == "user":
            return {
                "type": "IAMUser",
                "principalId": p.uid,
                "arn": p.arn,
                "accountId": ACCOUNT,
                "accessKeyId": stable_id("AKIA", p.arn + str(slot), 16),
                "userName": p.name,
            }
        style = p.session_style
        if style in ("sagemaker", "notebook"):
            session = "SageMaker"
        elif style == "glue":
            session = "GlueJobRunnerSession"
        elif style == "lambda":
            session = p.name
        elif style == "ecs":
            session = hexid(srng, 32)
        elif style == "ec2":
            session = "i-0" + hexid(srng, 16)
        elif style == "sso":
            session = srng.choice(NOTEBOOK_USERS) + "@example.com"
        elif style == "ci":
            epoch = srng.randrange(1_700_000_000, 1_740_000_000)
            session = srng.choice(["GitHubActions", f"terraform-{epoch}"])
        else:
            session = f"botocore-session-{srng.randrange(1_700_000_000, 1_740_000_000)}"
        created = iso(self.t0 - srng.randrange(60, 3 * 3600))
        ident: Rec = {
            "type": "AssumedRole",
            "principalId": f"{p.uid}:{session}",
            "arn": f"arn:aws:sts::{ACCOUNT}:assumed-role/{p.name}/{session}",
            "accountId": ACCOUNT,
            "accessKeyId": rand_id(srng, "ASIA", 16),
            "sessionContext": {
                "sessionIssuer": {
                    "type": "Role",
                    "principalId": p.uid,
                    "arn": p.arn,
                    "accountId": ACCOUNT,
                    "userName": p.name,
                },
                "attributes": {"creationDate": created, "mfaAuthenticated": "false"},
            },
        }
        if slot % 2:
            ident["sessionContext"] = {
                "sessionIssuer": ident["sessionContext"]["sessionIssuer"],
                "webIdFederationData": {},
                "attributes": ident["sessionContext"]["attributes"],
            }
        if style == "ec2":
            ident["sessionContext"]["ec2RoleDelivery"] = "2.0"
        return ident


# --------------------------------------------------------------------------- record assembly


def record(
    ctx: Ctx,
    p: Principal | None,
    ident: Rec,
    source: str,
    name: str,
    params: Any,
    response: Any = None,
    *,
    t: float | None = None,
    read_only: bool = True,
    resources: list[Rec] | None = None,
    data: bool = False,
    extra: Rec | None = None,
    host: str | None = None,
    ip: str | None = None,
    agent: str | None = None,
    vpce: bool = False,
    event_type: str = "AwsApiCall",
    region: str | None = None,
) -> Rec:
    rng = ctx.rng
    region = region or ctx.region
    if agent is None:
        agent = USER_AGENTS[rng.choice(p.agents)] if p else "AWS Internal"
    if ip is None:
        ip = rng.choice(p.ips[:N_PRIVATE_IPS] if vpce else p.ips[N_PRIVATE_IPS:]) if p else source
    rec: Rec = {
        "eventVersion": "1.09" if data else "1.08",
        "userIdentity": ident,
        "eventTime": iso(t if t is not None else ctx.now()),
        "eventSource": source,
        "eventName": name,
        "awsRegion": region,
        "sourceIPAddress": ip,
        "userAgent": f"[{agent}]" if data and source == "s3.amazonaws.com" else agent,
        "requestParameters": params,
        "responseElements": response,
    }
    if extra:
        rec.update(extra)
    rec["requestID"] = f"{rng.getrandbits(64):016X}" if source == "s3.amazonaws.com" else uuid4(rng)
    rec["eventID"] = uuid4(rng)
    rec["readOnly"] = read_only
    if resources is not None:
        rec["resources"] = resources
    rec["eventType"] = event_type
    rec["managementEvent"] = not data
    rec["recipientAccountId"] = ACCOUNT
    if vpce:
        rec["vpcEndpointId"] = VPCES[0] if region == HOME_REGION else VPCES[1]
        rec["vpcEndpointAccountId"] = ACCOUNT
    rec["eventCategory"] = "Data" if data else "Management"
    if host is None and ":" not in source:
        host = f"{source.split('.')[0]}.{region}.amazonaws.com"
    if host:
        v, c = TLS13 if rng.random() < 0.8 else TLS12
        rec["tlsDetails"] = {"tlsVersion": v, "cipherSuite": c, "clientProvidedHostHeader": host}
    return rec


def deny(rec: Rec, ctx: Ctx, action: str, resource: str) -> Rec:
    """Turn rec into an authorization failure with the message that service would write."""
    ident = rec["userIdentity"]
    who = ident.get("arn", "")
    src = rec["eventSource"]
    if src == "s3.amazonaws.com":
        code, msg = "AccessDenied", "Access Denied"
    elif src == "ec2.amazonaws.com":
        code = "Client.UnauthorizedOperation"
        msg = (
            f"You are not authorized to perform this operation. User: {who} is not authorized to "
            f"perform: {action} because no identity-based policy allows the {action} action"
        )
    else:
        global_src = src in ("iam.amazonaws.com", "sts.amazonaws.com")
        code = "AccessDenied" if global_src else "AccessDeniedException"
        msg = (
            f"User: {who} is not authorized to perform: {action} on resource: {resource} "
            f"because no identity-based policy allows the {action} action"
        )
    out: Rec = {}
    for k, v in rec.items():
        if k == "requestParameters":
            out["errorCode"] = code
            out["errorMessage"] = msg
        out[k] = v
    out["responseElements"] = None
    return out


def fail(rec: Rec, code: str, msg: str) -> Rec:
    out: Rec = {}
    for k, v in rec.items():
        if k == "requestParameters":
            out["errorCode"] = code
            out["errorMessage"] = msg
        out[k] = v
    out["responseElements"] = None
    return out


# --------------------------------------------------------------------------- S3 keys


def object_key(rng: random.Random, family: str, day: str) -> str:
    """A key of *family*; in the varied trail a new object on nearly every request
    (``part-00042-1f2e3d4c.parquet``)."""
    key = _object_key(rng, family, day)
    if VARIED["on"]:
        stem, dot, ext = key.rpartition(".")
        key = f"{stem}-{hexid(rng, 8)}.{ext}" if dot else f"{key}-{hexid(rng, 8)}"
    return key


def _object_key(rng: random.Random, family: str, day: str) -> str:
    """Many distinct keys under a bounded set of prefixes (a few thousand keys per prefix at most)."""
    if family == "dataset":
        ds = DATASETS[min(int(rng.paretovariate(1.2)) - 1, len(DATASETS) - 1)]
        y, m, d = (int(x) for x in day.split("-"))
        back = dt.date(y, m, d) - dt.timedelta(days=rng.randrange(0, 30))
        return f"datasets/{ds}/{back.isoformat()}/part-{rng.randrange(0, 96):05d}.parquet"
    if family == "feature":
        fg = rng.choice(FEATURE_GROUPS)
        return (
            f"features/{fg}/2025/03/{rng.randrange(1, 18):02d}/"
            f"{rng.randrange(0, 24):02d}/part-{rng.randrange(0, 120):04d}.parquet"
        )
    if family == "model":
        m = rng.choice(MODELS)
        name = rng.choice(["model.tar.gz", "metadata.json", "metrics.json"])
        return f"models/{m}/v{rng.randrange(1, 40)}/{name}"
    if family == "artifact":
        m = rng.choice(MODELS)
        job = f"{m}-2025-03-{rng.randrange(1, 18):02d}-{rng.randrange(0, 24):02d}-{rng.randrange(0, 60):02d}"
        name = rng.choice(["model.tar.gz", "output.tar.gz", "debug/trace.json"])
        return f"training-jobs/{m}/{job}/output/{name}"
    if family == "checkpoint":
        m = rng.choice(MODELS)
        return f"checkpoints/{m}/run-{rng.randrange(0, 60):03d}/step-{rng.randrange(0, 50) * 1000:07d}.pt"
    if family == "notebook":
        u = rng.choice(NOTEBOOK_USERS)
        return (
            f"notebooks/{u}/"
            + rng.choice(["eda", "training", "eval", "scratch", "features"])
            + f"-{rng.randrange(0, 40):02d}.ipynb"
        )
    if family == "athena":
        return f"query-results/{rng.choice(NOTEBOOK_USERS)}/{uuid4(random.Random(rng.randrange(4000)))}.csv"
    if family == "raw":
        src = rng.choice(["web", "mobile", "pos", "crm", "partner-feed"])
        return (
            f"incoming/{src}/2025/03/{rng.randrange(1, 18):02d}/{rng.randrange(0, 24):02d}/"
            f"batch-{rng.randrange(0, 500):05d}.json.gz"
        )
    return (
        f"AWSLogs/{ACCOUNT}/elasticloadbalancing/{HOME_REGION}/2025/03/{rng.randrange(1, 18):02d}/"
        f"{ACCOUNT}_elb_{rng.randrange(0, 2000):06d}.log.gz"
    )


def s3_host(bucket: str, region: str, vpce: bool, rng: random.Random) -> str:
    if vpce and rng.random() < 0.3:
        vpce_id = VPCES[0 if region == HOME_REGION else 1]
        return f"{bucket}.bucket.{vpce_id}-abcd1234.s3.{region}.vpce.amazonaws.com"
    return f"{bucket}.s3.{region}.amazonaws.com" if rng.random() < 0.85 else f"{bucket}.s3.amazonaws.com"


# --------------------------------------------------------------------------- activities


def act_s3_object(ctx: Ctx, p: Principal, ident: Rec, op: str) -> list[Rec]:
    rng = ctx.rng
    bucket = BUCKET_BY_NAME[rng.choice(p.buckets)]
    key = object_key(rng, rng.choice(bucket.families), ctx.day)
    vpce = bucket.vpce and rng.random() < p.vpce_share
    host = s3_host(bucket.name, ctx.region, vpce, rng)
    t = ctx.now()
    name = {"get": "GetObject", "head": "HeadObject", "put": "PutObject", "delete": "DeleteObject"}[op]
    params: Rec = {"bucketName": bucket.name, "Host": host, "key": key}
    if op == "put":
        params["x-amz-server-side-encryption"] = "aws:kms" if bucket.kms else "AES256"
        if bucket.kms:
            params["x-amz-server-side-encryption-aws-kms-key-id"] = (
                f"arn:aws:kms:{ctx.region}:{ACCOUNT}:key/{KMS_KEYS['data']}"
            )
    size = int(rng.lognormvariate(13, 2.0)) if op in ("get", "put") else 0
    extra_data: Rec = {
        "SignatureVersion": "SigV4",
        "CipherSuite": TLS13[1],
        "bytesTransferredIn": size if op == "put" else 0,
        "SSEApplied": "SSE_KMS" if bucket.kms else "SSE_S3",
        "AuthenticationMethod": "AuthHeader",
        "x-amz-id-2": base64.b64encode(rng.randbytes(56)).decode(),
        "bytesTransferredOut": size if op == "get" else 0,
    }
    if bucket.kms and op == "put":
        extra_data["bucketKeyEnabled"] = True
    response: Rec | None = None
    if op == "put" and bucket.kms:
        response = {
            "x-amz-server-side-encryption-aws-kms-key-id": (
                f"arn:aws:kms:{ctx.region}:{ACCOUNT}:key/{KMS_KEYS['data']}"
            ),
            "x-amz-server-side-encryption": "aws:kms",
            "x-amz-server-side-encryption-bucket-key-enabled": "true",
        }
    if bucket.versioned:
        if op == "put":
            response = dict(response or {})
            response["x-amz-version-id"] = "".join(rng.choices(_FILE_CHARS, k=32))
        elif op == "get" and rng.random() < 0.3:
            params["versionId"] = "".join(rng.choices(_FILE_CHARS, k=32))
    resources = [
        {"type": "AWS::S3::Object", "ARN": f"arn:aws:s3:::{bucket.name}/{key}"},
        {"accountId": ACCOUNT, "type": "AWS::S3::Bucket", "ARN": f"arn:aws:s3:::{bucket.name}"},
    ]
    rec = record(
        ctx,
        p,
        ident,
        "s3.amazonaws.com",
        name,
        params,
        response,
        t=t,
        read_only=op in ("get", "head"),
        resources=resources,
        data=True,
        extra={"additionalEventData": extra_data},
        host=host,
        vpce=vpce,
    )
    r = rng.random()
    if r < 0.02:
        action = {
            "get": "s3:GetObject",
            "head": "s3:GetObject",
            "put": "s3:PutObject",
            "delete": "s3:DeleteObject",
        }[op]
        return [deny(rec, ctx, action, resources[0]["ARN"])]
    if op in ("get", "head") and r < 0.03:
        return [fail(rec, "NoSuchKey", "The specified key does not exist.")]
    out = [rec]
    # SSE-KMS: S3 calls KMS on the caller's behalf (Bucket Keys make this the exception).
    if bucket.kms and op in ("get", "put") and rng.random() < 0.14:
        kms_ident = dict(ident)
        kms_ident["invokedBy"] = "s3.amazonaws.com"
        key_arn = f"arn:aws:kms:{ctx.region}:{ACCOUNT}:key/{KMS_KEYS['data']}"
        ctx_arn = f"arn:aws:s3:::{bucket.name}" if rng.random() < 0.7 else f"arn:aws:s3:::{bucket.name}/{key}"
        kparams: Rec = {
            "encryptionContext": {"aws:s3:arn": ctx_arn},
            "encryptionAlgorithm": "SYMMETRIC_DEFAULT",
        }
        if op == "put":
            kparams = {"keyId": key_arn, "encryptionContext": {"aws:s3:arn": ctx_arn}, "keySpec": "AES_256"}
        out.append(
            record(
                ctx,
                p,
                kms_ident,
                "kms.amazonaws.com",
                "Decrypt" if op == "get" else "GenerateDataKey",
                kparams,
                t=t,
                read_only=True,
                resources=[{"accountId": ACCOUNT, "type": "AWS::KMS::Key", "ARN": key_arn}],
                ip="s3.amazonaws.com",
                agent="s3.amazonaws.com",
                host=None,
                extra={"sharedEventID": uuid4(rng)},
            )
        )
        out[-1].pop("tlsDetails", None)
    return out


def act_s3_list(ctx: Ctx, p: Principal, ident: Rec) -> list[Rec]:
    rng = ctx.rng
    bucket = BUCKET_BY_NAME[rng.choice(p.buckets)]
    key = object_key(rng, rng.choice(bucket.families), ctx.day)
    prefix = "/".join(key.split("/")[: rng.randrange(1, 3)]) + "/"
    vpce = bucket.vpce and rng.random() < p.vpce_share
    host = s3_host(bucket.name, ctx.region, vpce, rng)
    params: Rec = {
        "list-type": "2",
        "bucketName": bucket.name,
        "encoding-type": "url",
        "prefix": prefix,
        "delimiter": "/",
        "Host": host,
    }
    if rng.random() < 0.5:
        params["max-keys"] = "1000"
    extra_data = {
        "SignatureVersion": "SigV4",
        "CipherSuite": TLS13[1],
        "bytesTransferredIn": 0,
        "AuthenticationMethod": "AuthHeader",
        "x-amz-id-2": base64.b64encode(rng.randbytes(56)).decode(),
        "bytesTransferredOut": rng.randrange(300, 90000),
    }
    res = [{"accountId": ACCOUNT, "type": "AWS::S3::Bucket", "ARN": f"arn:aws:s3:::{bucket.name}"}]
    rec = record(
        ctx,
        p,
        ident,
        "s3.amazonaws.com",
        "ListObjects",
        params,
        None,
        resources=res,
        data=True,
        extra={"additionalEventData": extra_data},
        host=host,
        vpce=vpce,
    )
    if rng.random() < 0.02:
        return [deny(rec, ctx, "s3:ListBucket", res[0]["ARN"])]
    return [rec]


def act_s3_bucket(ctx: Ctx, p: Principal, ident: Rec) -> list[Rec]:
    rng = ctx.rng
    name = rng.choice(
        [
            "GetBucketLocation",
            "GetBucketLocation",
            "ListBuckets",
            "GetBucketPolicy",
            "GetBucketAcl",
            "GetBucketEncryption",
            "GetBucketVersioning",
            "GetBucketTagging",
        ]
    )
    bucket = rng.choice(p.buckets)
    host = f"{bucket}.s3.{ctx.region}.amazonaws.com"
    if name == "ListBuckets":
        params: Rec = {"Host": f"s3.{ctx.region}.amazonaws.com"}
        res = None
        host = params["Host"]
    else:
        q = {
            "GetBucketLocation": "location",
            "GetBucketPolicy": "policy",
            "GetBucketAcl": "acl",
            "GetBucketEncryption": "encryption",
            "GetBucketVersioning": "versioning",
            "GetBucketTagging": "tagging",
        }[name]
        params = {"bucketName": bucket, "Host": host, q: ""}
        res = [{"accountId": ACCOUNT, "type": "AWS::S3::Bucket", "ARN": f"arn:aws:s3:::{bucket}"}]
    extra_data = {
        "SignatureVersion": "SigV4",
        "CipherSuite": TLS13[1],
        "bytesTransferredIn": 0,
        "AuthenticationMethod": "AuthHeader",
        "x-amz-id-2": base64.b64encode(rng.randbytes(56)).decode(),
        "bytesTransferredOut": 0,
    }
    rec = record(
        ctx,
        p,
        ident,
        "s3.amazonaws.com",
        name,
        params,
        None,
        resources=res,
        extra={"additionalEventData": extra_data},
        host=host,
    )
    if rng.random() < 0.02:
        return [
            deny(rec, ctx, "s3:" + name.replace("ListBuckets", "ListAllMyBuckets"), f"arn:aws:s3:::{bucket}")
        ]
    if name == "GetBucketPolicy" and rng.random() < 0.2:
        return [fail(rec, "NoSuchBucketPolicy", "The bucket policy does not exist")]
    return [rec]


# Management calls: (source, eventName, IAM action, params builder, read only)
ParamFn = Callable[[random.Random, str], Any]


def _arn(service: str, region: str, rest: str) -> str:
    return f"arn:aws:{service}:{region}:{ACCOUNT}:{rest}"


MGMT: dict[str, list[tuple[str, str, str, ParamFn, bool]]] = {
    "sagemaker": [
        (
            "sagemaker",
            "DescribeTrainingJob",
            "sagemaker:DescribeTrainingJob",
            lambda r, g: {
                "trainingJobName": f"{r.choice(MODELS)}-2025-03-{r.randrange(1, 18):02d}-"
                f"{r.randrange(0, 24):02d}-{r.randrange(0, 60):02d}"
            },
            True,
        ),
        (
            "sagemaker",
            "DescribeEndpoint",
            "sagemaker:DescribeEndpoint",
            lambda r, g: {"endpointName": r.choice(MODELS) + "-prod"},
            True,
        ),
        (
            "sagemaker",
            "ListTrainingJobs",
            "sagemaker:ListTrainingJobs",
            lambda r, g: {"maxResults": 100, "sortBy": "CreationTime", "sortOrder": "Descending"},
            True,
        ),
        (
            "sagemaker",
            "DescribeNotebookInstance",
            "sagemaker:DescribeNotebookInstance",
            lambda r, g: {"notebookInstanceName": r.choice(NOTEBOOK_USERS) + "-nb"},
            True,
        ),
        (
            "sagemaker",
            "DescribeModelPackage",
            "sagemaker:DescribeModelPackage",
            lambda r, g: {
                "modelPackageName": _arn(
                    "sagemaker", g, f"model-package/{r.choice(MODELS)}/{r.randrange(1, 40)}"
                )
            },
            True,
        ),
        (
            "sagemaker",
            "CreateTrainingJob",
            "sagemaker:CreateTrainingJob",
            lambda r, g: {
                "trainingJobName": f"{r.choice(MODELS)}-2025-03-{r.randrange(1, 18):02d}",
                "algorithmSpecification": {
                    "trainingImage": f"{ACCOUNT}.dkr.ecr.{g}.amazonaws.com/ml/training-base:latest",
                    "trainingInputMode": "FastFile",
                },
                "roleArn": f"arn:aws:iam::{ACCOUNT}:role/ml/ml-training-job",
                "outputDataConfig": {
                    "s3OutputPath": "s3://acme-ml-artifacts/training-jobs/",
                    "kmsKeyId": KMS_KEYS["artifacts"],
                },
                "resourceConfig": {
                    "instanceType": "ml.g5.2xlarge",
                    "instanceCount": 1,
                    "volumeSizeInGB": 100,
                },
                "stoppingCondition": {"maxRuntimeInSeconds": 86400},
                "vpcConfig": {
                    "securityGroupIds": ["sg-0a1b2c3d4e5f60718"],
                    "subnets": ["subnet-0123456789abcdef0", "subnet-0fedcba9876543210"],
                },
            },
            False,
        ),
    ],
    "ecr_pull": [
        ("ecr", "GetAuthorizationToken", "ecr:GetAuthorizationToken", lambda r, g: None, True),
        (
            "ecr",
            "BatchGetImage",
            "ecr:BatchGetImage",
            lambda r, g: {
                "imageIds": [{"imageTag": "latest"}],
                "acceptedMediaTypes": ["application/vnd.docker.distribution.manifest.v2+json"],
                "repositoryName": r.choice(REPOS),
                "registryId": ACCOUNT,
            },
            True,
        ),
        (
            "ecr",
            "GetDownloadUrlForLayer",
            "ecr:GetDownloadUrlForLayer",
            lambda r, g: {
                "repositoryName": r.choice(REPOS),
                "registryId": ACCOUNT,
                "layerDigest": "sha256:" + hexid(r, 64),
            },
            True,
        ),
    ],
    "ecr_push": [
        (
            "ecr",
            "InitiateLayerUpload",
            "ecr:InitiateLayerUpload",
            lambda r, g: {"repositoryName": r.choice(REPOS), "registryId": ACCOUNT},
            False,
        ),
        (
            "ecr",
            "PutImage",
            "ecr:PutImage",
            lambda r, g: {
                "repositoryName": r.choice(REPOS),
                "registryId": ACCOUNT,
                "imageTag": f"git-{hexid(r, 7)}",
            },
            False,
        ),
        (
            "ecr",
            "BatchCheckLayerAvailability",
            "ecr:BatchCheckLayerAvailability",
            lambda r, g: {
                "repositoryName": r.choice(REPOS),
                "registryId": ACCOUNT,
                "layerDigests": ["sha256:" + hexid(r, 64)],
            },
            True,
        ),
    ],
    "logs": [
        (
            "logs",
            "CreateLogStream",
            "logs:CreateLogStream",
            lambda r, g: {
                "logGroupName": "/aws/sagemaker/TrainingJobs",
                "logStreamName": f"{r.choice(MODELS)}-2025-03-{r.randrange(1, 18):02d}/algo-1-"
                f"{r.randrange(1_700_000_000, 1_740_000_000)}",
            },
            False,
        ),
        (
            "logs",
            "CreateLogGroup",
            "logs:CreateLogGroup",
            lambda r, g: {"logGroupName": "/aws/lambda/" + r.choice(FUNCTIONS)},
            False,
        ),
        (
            "logs",
            "DescribeLogStreams",
            "logs:DescribeLogStreams",
            lambda r, g: {
                "logGroupName": "/aws/sagemaker/Endpoints/" + r.choice(MODELS) + "-prod",
                "orderBy": "LastEventTime",
                "descending": True,
            },
            True,
        ),
    ],
    "logs_read": [
        ("logs", "DescribeLogGroups", "logs:DescribeLogGroups", lambda r, g: {"limit": 50}, True),
        (
            "logs",
            "FilterLogEvents",
            "logs:FilterLogEvents",
            lambda r, g: {"logGroupName": "/aws/lambda/" + r.choice(FUNCTIONS), "limit": 100},
            True,
        ),
        (
            "logs",
            "StartQuery",
            "logs:StartQuery",
            lambda r, g: {
                "logGroupNames": ["/aws/sagemaker/TrainingJobs"],
                "queryString": (
                    "fields @timestamp, @message | filter @message like /ERROR/ | sort @timestamp desc"
                ),
                "startTime": 1741000000,
                "endTime": 1741086400,
            },
            True,
        ),
    ],
    "ssm": [
        (
            "ssm",
            "GetParameter",
            "ssm:GetParameter",
            lambda r, g: {"name": r.choice(PARAMS), "withDecryption": r.random() < 0.5},
            True,
        ),
        (
            "ssm",
            "GetParameters",
            "ssm:GetParameters",
            lambda r, g: {"names": r.sample(PARAMS, 2), "withDecryption": True},
            True,
        ),
        (
            "ssm",
            "GetParametersByPath",
            "ssm:GetParametersByPath",
            lambda r, g: {
                "path": r.choice(["/ml/", "/platform/"]),
                "recursive": True,
                "withDecryption": False,
            },
            True,
        ),
    ],
    "secrets": [
        (
            "secretsmanager",
            "GetSecretValue",
            "secretsmanager:GetSecretValue",
            lambda r, g: {
                "secretId": _arn(
                    "secretsmanager",
                    g,
                    f"secret:{r.choice(SECRETS)}-{r.choice(['Ab12Cd', 'xY9zQ1', 'Lm3No4'])}",
                )
            },
            True,
        ),
        (
            "secretsmanager",
            "DescribeSecret",
            "secretsmanager:DescribeSecret",
            lambda r, g: {"secretId": r.choice(SECRETS)},
            True,
        ),
    ],
    "sts_ident": [
        ("sts", "GetCallerIdentity", "sts:GetCallerIdentity", lambda r, g: None, True),
    ],
    "iam_read": [
        ("iam", "GetRole", "iam:GetRole", lambda r, g: {"roleName": r.choice(ROLE_NAMES)}, True),
        ("iam", "ListRoles", "iam:ListRoles", lambda r, g: {"maxItems": 100}, True),
        (
            "iam",
            "ListAttachedRolePolicies",
            "iam:ListAttachedRolePolicies",
            lambda r, g: {"roleName": r.choice(ROLE_NAMES)},
            True,
        ),
        (
            "iam",
            "GetRolePolicy",
            "iam:GetRolePolicy",
            lambda r, g: {"roleName": r.choice(ROLE_NAMES), "policyName": "inline-access"},
            True,
        ),
        (
            "iam",
            "GetPolicyVersion",
            "iam:GetPolicyVersion",
            lambda r, g: {
                "policyArn": "arn:aws:iam::aws:policy/AmazonSageMakerFullAccess",
                "versionId": "v27",
            },
            True,
        ),
        (
            "iam",
            "ListPolicies",
            "iam:ListPolicies",
            lambda r, g: {"scope": "Local", "onlyAttached": False, "maxItems": 100},
            True,
        ),
        (
            "iam",
            "GetAccountAuthorizationDetails",
            "iam:GetAccountAuthorizationDetails",
            lambda r, g: {"filter": ["Role", "User", "LocalManagedPolicy"]},
            True,
        ),
    ],
    "ec2_describe": [
        (
            "ec2",
            "DescribeInstances",
            "ec2:DescribeInstances",
            lambda r, g: {
                "instancesSet": {},
                "filterSet": {"items": [{"name": "tag:team", "valueSet": {"items": [{"value": "ml"}]}}]},
            },
            True,
        ),
        (
            "ec2",
            "DescribeSubnets",
            "ec2:DescribeSubnets",
            lambda r, g: {
                "subnetSet": {"items": [{"subnetId": "subnet-0123456789abcdef0"}]},
                "filterSet": {},
            },
            True,
        ),
        (
            "ec2",
            "DescribeSecurityGroups",
            "ec2:DescribeSecurityGroups",
            lambda r, g: {
                "securityGroupIdSet": {"items": [{"groupId": "sg-0a1b2c3d4e5f60718"}]},
                "securityGroupSet": {},
                "filterSet": {},
            },
            True,
        ),
        ("ec2", "DescribeVpcs", "ec2:DescribeVpcs", lambda r, g: {"vpcSet": {}, "filterSet": {}}, True),
        (
            "ec2",
            "DescribeNetworkInterfaces",
            "ec2:DescribeNetworkInterfaces",
            lambda r, g: {
                "networkInterfaceIdSet": {},
                "filterSet": {
                    "items": [{"name": "vpc-id", "valueSet": {"items": [{"value": "vpc-0abc1234def567890"}]}}]
                },
            },
            True,
        ),
        (
            "ec2",
            "DescribeVpcEndpoints",
            "ec2:DescribeVpcEndpoints",
            lambda r, g: {"DescribeVpcEndpointsRequest": {"VpcEndpointId": {"tag": 1, "content": VPCES[0]}}},
            True,
        ),
    ],
    "lambda_invoke": [
        (
            "lambda",
            "Invoke",
            "lambda:InvokeFunction",
            lambda r, g: {
                "functionName": _arn("lambda", g, "function:" + r.choice(FUNCTIONS)),
                "invocationType": "RequestResponse",
                "logType": "None",
            },
            False,
        ),
    ],
    "lambda_mgmt": [
        (
            "lambda",
            "GetFunction20150331v2",
            "lambda:GetFunction",
            lambda r, g: {"functionName": r.choice(FUNCTIONS)},
            True,
        ),
        (
            "lambda",
            "GetFunctionConfiguration20150331v2",
            "lambda:GetFunctionConfiguration",
            lambda r, g: {"functionName": r.choice(FUNCTIONS)},
            True,
        ),
        ("lambda", "ListFunctions20150331", "lambda:ListFunctions", lambda r, g: None, True),
        (
            "lambda",
            "UpdateFunctionCode20150331v2",
            "lambda:UpdateFunctionCode",
            lambda r, g: {
                "functionName": r.choice(FUNCTIONS),
                "s3Bucket": "acme-ml-artifacts",
                "s3Key": f"lambda/{r.choice(FUNCTIONS)}.zip",
                "publish": True,
            },
            False,
        ),
        (
            "lambda",
            "UpdateFunctionConfiguration20150331v2",
            "lambda:UpdateFunctionConfiguration",
            lambda r, g: {"functionName": r.choice(FUNCTIONS), "timeout": 60, "memorySize": 512},
            False,
        ),
        (
            "lambda",
            "ListVersionsByFunction20150331",
            "lambda:ListVersionsByFunction",
            lambda r, g: {"functionName": r.choice(FUNCTIONS)},
            True,
        ),
    ],
    "dynamodb": [
        (
            "dynamodb",
            "DescribeTable",
            "dynamodb:DescribeTable",
            lambda r, g: {"tableName": r.choice(TABLES)},
            True,
        ),
        (
            "dynamodb",
            "GetItem",
            "dynamodb:GetItem",
            lambda r, g: {
                "tableName": r.choice(TABLES),
                "key": {"pk": "HIDDEN_DUE_TO_SECURITY_REASONS"},
                "consistentRead": False,
            },
            True,
        ),
        (
            "dynamodb",
            "PutItem",
            "dynamodb:PutItem",
            lambda r, g: {
                "tableName": r.choice(TABLES),
                "key": {"pk": "HIDDEN_DUE_TO_SECURITY_REASONS", "sk": "HIDDEN_DUE_TO_SECURITY_REASONS"},
            },
            False,
        ),
        (
            "dynamodb",
            "Query",
            "dynamodb:Query",
            lambda r, g: {"tableName": r.choice(TABLES), "limit": 100, "keyConditionExpression": "pk = :pk"},
            True,
        ),
    ],
    "dynamodb_mgmt": [
        (
            "dynamodb",
            "DescribeContinuousBackups",
            "dynamodb:DescribeContinuousBackups",
            lambda r, g: {"tableName": r.choice(TABLES)},
            True,
        ),
        (
            "dynamodb",
            "ListTagsOfResource",
            "dynamodb:ListTagsOfResource",
            lambda r, g: {"resourceArn": _arn("dynamodb", g, "table/" + r.choice(TABLES))},
            True,
        ),
    ],
    "sqs": [
        (
            "sqs",
            "SendMessage",
            "sqs:SendMessage",
            lambda r, g: {"queueUrl": f"https://sqs.{g}.amazonaws.com/{ACCOUNT}/{r.choice(QUEUES)}"},
            False,
        ),
        (
            "sqs",
            "ReceiveMessage",
            "sqs:ReceiveMessage",
            lambda r, g: {
                "queueUrl": f"https://sqs.{g}.amazonaws.com/{ACCOUNT}/{r.choice(QUEUES)}",
                "maxNumberOfMessages": 10,
                "waitTimeSeconds": 20,
            },
            True,
        ),
        (
            "sqs",
            "DeleteMessage",
            "sqs:DeleteMessage",
            lambda r, g: {
                "queueUrl": f"https://sqs.{g}.amazonaws.com/{ACCOUNT}/{r.choice(QUEUES)}",
                "receiptHandle": "HIDDEN_DUE_TO_SECURITY_REASONS",
            },
            False,
        ),
        (
            "sqs",
            "GetQueueAttributes",
            "sqs:GetQueueAttributes",
            lambda r, g: {
                "queueUrl": f"https://sqs.{g}.amazonaws.com/{ACCOUNT}/{r.choice(QUEUES)}",
                "attributeNames": ["ApproximateNumberOfMessages"],
            },
            True,
        ),
    ],
    "sqs_mgmt": [
        ("sqs", "GetQueueUrl", "sqs:GetQueueUrl", lambda r, g: {"queueName": r.choice(QUEUES)}, True),
        ("sqs", "ListQueues", "sqs:ListQueues", lambda r, g: {"queueNamePrefix": "ml-"}, True),
    ],
    "cloudformation": [
        (
            "cloudformation",
            "DescribeStacks",
            "cloudformation:DescribeStacks",
            lambda r, g: {"stackName": r.choice(STACKS)},
            True,
        ),
        (
            "cloudformation",
            "DescribeStackEvents",
            "cloudformation:DescribeStackEvents",
            lambda r, g: {
                "stackName": _arn(
                    "cloudformation", g, f"stack/{r.choice(STACKS)}/0a1b2c3d-4e5f-11ee-8a9b-0a1b2c3d4e5f"
                )
            },
            True,
        ),
        (
            "cloudformation",
            "GetTemplate",
            "cloudformation:GetTemplate",
            lambda r, g: {"stackName": r.choice(STACKS), "templateStage": "Original"},
            True,
        ),
        (
            "cloudformation",
            "ListStackResources",
            "cloudformation:ListStackResources",
            lambda r, g: {"stackName": r.choice(STACKS)},
            True,
        ),
    ],
    "glue": [
        (
            "glue",
            "GetTable",
            "glue:GetTable",
            lambda r, g: {"databaseName": r.choice(GLUE_DBS), "name": r.choice(DATASETS).replace("-", "_")},
            True,
        ),
        ("glue", "GetDatabase", "glue:GetDatabase", lambda r, g: {"name": r.choice(GLUE_DBS)}, True),
        (
            "glue",
            "GetPartitions",
            "glue:GetPartitions",
            lambda r, g: {
                "databaseName": r.choice(GLUE_DBS),
                "tableName": r.choice(DATASETS).replace("-", "_"),
                "expression": "dt >= '2025-03-01'",
            },
            True,
        ),
        (
            "glue",
            "BatchCreatePartition",
            "glue:BatchCreatePartition",
            lambda r, g: {
                "databaseName": "curated",
                "tableName": r.choice(DATASETS).replace("-", "_"),
                "partitionInputList": [{"values": ["2025-03-0" + str(r.randrange(1, 10))]}],
            },
            False,
        ),
    ],
    "athena": [
        (
            "athena",
            "StartQueryExecution",
            "athena:StartQueryExecution",
            lambda r, g: {
                "queryString": "***OMITTED***",
                "clientRequestToken": uuid4(r),
                "queryExecutionContext": {"database": r.choice(GLUE_DBS)},
                "workGroup": "ml-analysts",
            },
            False,
        ),
        (
            "athena",
            "GetQueryExecution",
            "athena:GetQueryExecution",
            lambda r, g: {"queryExecutionId": uuid4(r)},
            True,
        ),
        (
            "athena",
            "GetQueryResults",
            "athena:GetQueryResults",
            lambda r, g: {"queryExecutionId": uuid4(r), "maxResults": 1000},
            True,
        ),
    ],
    "kms_direct": [
        (
            "kms",
            "Decrypt",
            "kms:Decrypt",
            lambda r, g: {
                "encryptionContext": {
                    "aws:lambda:FunctionArn": _arn("lambda", g, "function:" + r.choice(FUNCTIONS))
                },
                "encryptionAlgorithm": "SYMMETRIC_DEFAULT",
            },
            True,
        ),
        (
            "kms",
            "DescribeKey",
            "kms:DescribeKey",
            lambda r, g: {"keyId": "alias/ml-" + r.choice(["data", "artifacts", "secrets"])},
            True,
        ),
        (
            "kms",
            "GenerateDataKey",
            "kms:GenerateDataKey",
            lambda r, g: {"keyId": _arn("kms", g, "key/" + KMS_KEYS["artifacts"]), "keySpec": "AES_256"},
            True,
        ),
        ("kms", "ListAliases", "kms:ListAliases", lambda r, g: None, True),
    ],
    "cloudwatch": [
        (
            "monitoring",
            "DescribeAlarms",
            "cloudwatch:DescribeAlarms",
            lambda r, g: {"alarmNamePrefix": "ml-", "maxRecords": 100},
            True,
        ),
        (
            "monitoring",
            "GetMetricData",
            "cloudwatch:GetMetricData",
            lambda r, g: {"startTime": "Mar 3, 2025, 12:00:00 AM", "endTime": "Mar 3, 2025, 1:00:00 AM"},
            True,
        ),
        (
            "monitoring",
            "PutMetricAlarm",
            "cloudwatch:PutMetricAlarm",
            lambda r, g: {
                "alarmName": f"ml-{r.choice(MODELS)}-latency",
                "namespace": "AWS/SageMaker",
                "metricName": "ModelLatency",
                "threshold": 250.0,
                "period": 60,
            },
            False,
        ),
    ],
    "sns": [
        (
            "sns",
            "Publish",
            "sns:Publish",
            lambda r, g: {"topicArn": _arn("sns", g, r.choice(["ml-alerts", "model-promotions"]))},
            False,
        ),
        ("sns", "ListTopics", "sns:ListTopics", lambda r, g: None, True),
    ],
    "states": [
        (
            "states",
            "StartExecution",
            "states:StartExecution",
            lambda r, g: {
                "stateMachineArn": _arn("states", g, "stateMachine:ml-training-pipeline"),
                "name": uuid4(r),
                "input": "HIDDEN_DUE_TO_SECURITY_REASONS",
            },
            False,
        ),
        (
            "states",
            "DescribeExecution",
            "states:DescribeExecution",
            lambda r, g: {"executionArn": _arn("states", g, "execution:ml-training-pipeline:" + uuid4(r))},
            True,
        ),
    ],
    "elb": [
        (
            "elasticloadbalancing",
            "DescribeLoadBalancers",
            "elasticloadbalancing:DescribeLoadBalancers",
            lambda r, g: None,
            True,
        ),
        (
            "elasticloadbalancing",
            "DescribeTargetGroups",
            "elasticloadbalancing:DescribeTargetGroups",
            lambda r, g: {
                "loadBalancerArn": _arn(
                    "elasticloadbalancing", g, "loadbalancer/app/ml-inference/50dc6c495c0c9188"
                )
            },
            True,
        ),
    ],
    "autoscaling": [
        (
            "autoscaling",
            "DescribeAutoScalingGroups",
            "autoscaling:DescribeAutoScalingGroups",
            lambda r, g: {"autoScalingGroupNames": ["ml-gpu-workers"]},
            True,
        ),
    ],
    "events": [
        ("events", "DescribeRule", "events:DescribeRule", lambda r, g: {"name": "ml-nightly-retrain"}, True),
        (
            "events",
            "ListTargetsByRule",
            "events:ListTargetsByRule",
            lambda r, g: {"rule": "ml-nightly-retrain"},
            True,
        ),
    ],
    "cloudtrail": [
        (
            "cloudtrail",
            "DescribeTrails",
            "cloudtrail:DescribeTrails",
            lambda r, g: {"includeShadowTrails": True},
            True,
        ),
        (
            "cloudtrail",
            "LookupEvents",
            "cloudtrail:LookupEvents",
            lambda r, g: {
                "maxResults": 50,
                "lookupAttributes": [{"attributeKey": "EventName", "attributeValue": "AssumeRole"}],
            },
            True,
        ),
        (
            "cloudtrail",
            "GetEventSelectors",
            "cloudtrail:GetEventSelectors",
            lambda r, g: {"trailName": "org-trail"},
            True,
        ),
    ],
    "config": [
        ("config", "DescribeConfigRules", "config:DescribeConfigRules", lambda r, g: None, True),
        (
            "config",
            "GetComplianceDetailsByConfigRule",
            "config:GetComplianceDetailsByConfigRule",
            lambda r, g: {"configRuleName": "s3-bucket-ssl-requests-only"},
            True,
        ),
    ],
}
GLOBAL_SOURCES = {"iam", "sts_global", "signin", "cloudfront"}
ROLE_NAMES: list[str] = []
NOT_FOUND = {
    "secretsmanager": ("ResourceNotFoundException", "Secrets Manager can't find the specified secret."),
    "ssm": ("ParameterNotFound", None),
    "dynamodb": ("ResourceNotFoundException", "Requested resource not found"),
    "ec2": ("Client.DryRunOperation", "Request would have succeeded, but DryRun flag is set."),
    "sagemaker": ("ValidationException", "Could not find requested job with name"),
    "lambda": ("ResourceNotFoundException", "Function not found"),
}


def act_mgmt(ctx: Ctx, p: Principal, ident: Rec, group: str) -> list[Rec]:
    rng = ctx.rng
    short, name, action, pfn, read_only = rng.choice(MGMT[group])
    region = HOME_REGION if short == "iam" else ctx.region
    source = f"{short}.amazonaws.com"
    params = pfn(rng, region)
    console = p.via_console and rng.random() < 0.7
    agent = USER_AGENTS["console"] if console else None
    ip = rng.choice(p.ips[N_PRIVATE_IPS:]) if console else None
    vpce = (
        p.vpce_share > 0
        and short in ("logs", "ssm", "secretsmanager", "kms", "sts", "ecr", "sqs")
        and rng.random() < p.vpce_share
    )
    response: Any = None
    resources = None
    data = False
    if short == "lambda" and name == "Invoke":
        data = True
        resources = [{"accountId": ACCOUNT, "type": "AWS::Lambda::Function", "ARN": params["functionName"]}]
    elif short == "dynamodb" and name in ("GetItem", "PutItem", "Query"):
        data = True
        resources = [
            {
                "accountId": ACCOUNT,
                "type": "AWS::DynamoDB::Table",
                "ARN": _arn("dynamodb", region, "table/" + params["tableName"]),
            }
        ]
    elif short == "sqs" and name in ("SendMessage", "ReceiveMessage", "DeleteMessage"):
        data = True
    if name == "SendMessage":
        response = {"mD5OfMessageBody": hexid(rng, 32), "messageId": uuid4(rng)}
    elif name == "CreateLogStream" or name == "PutImage":
        response = None
    elif name == "StartQueryExecution":
        response = {"queryExecutionId": uuid4(rng)}
    elif name == "StartExecution":
        response = {
            "executionArn": _arn("states", region, "execution:ml-training-pipeline:" + uuid4(rng)),
            "startDate": "Mar 3, 2025, 9:15:02 AM",
        }
    elif name == "CreateTrainingJob":
        response = {"trainingJobArn": _arn("sagemaker", region, "training-job/" + params["trainingJobName"])}
    elif name == "GetAuthorizationToken":
        response = {
            "authorizationData": [
                {
                    "authorizationToken": "HIDDEN_DUE_TO_SECURITY_REASONS",
                    "proxyEndpoint": f"https://{ACCOUNT}.dkr.ecr.{region}.amazonaws.com",
                }
            ]
        }
    elif name == "GetCallerIdentity":
        response = None
    rec = record(
        ctx,
        p,
        ident,
        source,
        name,
        params,
        response,
        read_only=read_only,
        resources=resources,
        data=data,
        agent=agent,
        ip=ip,
        vpce=vpce,
        region=region,
        host=f"{short}.amazonaws.com" if short == "iam" else None,
    )
    if console:
        rec["sessionCredentialFromConsole"] = "true"
    r = rng.random()
    if r < 0.02:
        target = params.get("roleName") if isinstance(params, dict) else None
        res = (
            f"arn:aws:iam::{ACCOUNT}:role/{target}" if target else (resources[0]["ARN"] if resources else "*")
        )
        return [deny(rec, ctx, action, res)]
    if r < 0.03 and short in NOT_FOUND:
        code, msg = NOT_FOUND[short]
        out = fail(rec, code, msg or "")
        if msg is None:
            del out["errorMessage"]
        return [out]
    return [rec]


def act_sts_assume(ctx: Ctx, p: Principal, ident: Rec) -> list[Rec]:
    """A principal assumes another role in this account (response carries the new credentials)."""
    rng = ctx.rng
    target = rng.choice(["ml-training-job", "feature-pipeline", "readonly-auditor"])
    session = f"airflow-{hexid(rng, 8)}"
    params = {
        "roleArn": f"arn:aws:iam::{ACCOUNT}:role/ml/{target}",
        "roleSessionName": session,
        "durationSeconds": 3600,
    }
    response = _sts_response(ctx, target, session)
    return [
        record(
            ctx,
            p,
            ident,
            "sts.amazonaws.com",
            "AssumeRole",
            params,
            response,
            resources=[{"accountId": ACCOUNT, "type": "AWS::IAM::Role", "ARN": params["roleArn"]}],
            vpce=rng.random() < p.vpce_share,
        )
    ]


def _sts_response(ctx: Ctx, role: str, session: str) -> Rec:
    rng = ctx.rng
    return {
        "credentials": {
            "accessKeyId": rand_id(rng, "ASIA", 16),
            "sessionToken": base64.b64encode(rng.randbytes(48)).decode() + "IQoJb3JpZ2luX2VjEJf" * 6,
            "expiration": "Mar 3, 2025, 10:15:02 PM",
        },
        "assumedRoleUser": {
            "assumedRoleId": f"{stable_id('AROA', role)}:{session}",
            "arn": f"arn:aws:sts::{ACCOUNT}:assumed-role/{role}/{session}",
        },
    }


def act_signin(ctx: Ctx, p: Principal, ident: Rec) -> list[Rec]:
    rng = ctx.rng
    ok = rng.random() > 0.05
    rec = record(
        ctx,
        p,
        ident,
        "signin.amazonaws.com",
        "ConsoleLogin",
        None,
        {"ConsoleLogin": "Success" if ok else "Failure"},
        read_only=False,
        ip=rng.choice(p.ips[N_PRIVATE_IPS:]),
        agent=USER_AGENTS["browser"],
        event_type="AwsConsoleSignIn",
        region=HOME_REGION,
        host="signin.aws.amazon.com",
        extra={
            "additionalEventData": {
                "LoginTo": "https://console.aws.amazon.com/console/home?hashArgs=%23&isauthcode=true&state=hashArgs",
                "MobileVersion": "No",
                "MFAIdentifier": f"arn:aws:iam::{ACCOUNT}:mfa/{p.name}",
                "MFAUsed": "Yes" if p.kind == "user" else "No",
            }
        },
    )
    if not ok:
        rec = fail(rec, "Failed authentication", "Failed authentication")
        rec["responseElements"] = {"ConsoleLogin": "Failure"}
    return [rec]


SERVICE_ROLES = {
    "sagemaker.amazonaws.com": (
        "AmazonSageMaker-ExecutionRole-20240412T101530",
        "/service-role/",
        "SageMaker",
    ),
    "glue.amazonaws.com": ("AWSGlueServiceRole-etl", "/service-role/", "GlueJobRunnerSession"),
    "lambda.amazonaws.com": ("s3-object-notifier", "/service-role/", "s3-object-notifier"),
    "ecs-tasks.amazonaws.com": ("batch-scoring", "/ml/", "ecs-task"),
}


def act_service(ctx: Ctx) -> list[Rec]:
    """Calls made by AWS services themselves (userIdentity.type AWSService)."""
    rng = ctx.rng
    r = rng.random()
    if r < 0.6:
        svc = rng.choice(list(SERVICE_ROLES))
        role, path, session = SERVICE_ROLES[svc]
        if session == "ecs-task":
            session = hexid(rng, 32)
        ident = {"type": "AWSService", "invokedBy": svc}
        arn = f"arn:aws:iam::{ACCOUNT}:role{path}{role}"
        params = {"roleArn": arn, "roleSessionName": session, "durationSeconds": 3600}
        if svc == "sagemaker.amazonaws.com":
            params["sourceIdentity"] = ""
        return [
            record(
                ctx,
                None,
                ident,
                "sts.amazonaws.com",
                "AssumeRole",
                params,
                _sts_response(ctx, role, session),
                read_only=True,
                ip=svc,
                agent=svc,
                resources=[{"accountId": ACCOUNT, "type": "AWS::IAM::Role", "ARN": arn}],
                extra={"sharedEventID": uuid4(rng)},
                host=None,
            )
        ]
    if r < 0.85:
        ident = {"type": "AWSService", "invokedBy": "cloudtrail.amazonaws.com"}
        key = (
            f"AWSLogs/{ACCOUNT}/CloudTrail/{ctx.region}/2025/03/{rng.randrange(1, 18):02d}/"
            f"{ACCOUNT}_CloudTrail_{ctx.region}_{hexid(rng, 6)}.json.gz"
        )
        bucket = "acme-platform-logs"
        host = f"{bucket}.s3.{ctx.region}.amazonaws.com"
        extra_data = {
            "SignatureVersion": "SigV4",
            "CipherSuite": TLS12[1],
            "bytesTransferredIn": rng.randrange(2000, 600000),
            "SSEApplied": "SSE_S3",
            "AuthenticationMethod": "AuthHeader",
            "x-amz-id-2": base64.b64encode(rng.randbytes(56)).decode(),
            "bytesTransferredOut": 0,
        }
        return [
            record(
                ctx,
                None,
                ident,
                "s3.amazonaws.com",
                "PutObject",
                {
                    "bucketName": bucket,
                    "Host": host,
                    "key": key,
                    "x-amz-acl": "bucket-owner-full-control",
                    "x-amz-server-side-encryption": "AES256",
                },
                {"x-amz-server-side-encryption": "AES256"},
                read_only=False,
                data=True,
                resources=[
                    {"type": "AWS::S3::Object", "ARN": f"arn:aws:s3:::{bucket}/{key}"},
                    {"accountId": ACCOUNT, "type": "AWS::S3::Bucket", "ARN": f"arn:aws:s3:::{bucket}"},
                ],
                ip="cloudtrail.amazonaws.com",
                agent="cloudtrail.amazonaws.com",
                host=host,
                extra={"additionalEventData": extra_data},
            )
        ]
    ident = {"type": "AWSService", "invokedBy": "secretsmanager.amazonaws.com"}
    key_arn = f"arn:aws:kms:{ctx.region}:{ACCOUNT}:key/{KMS_KEYS['secrets']}"
    return [
        record(
            ctx,
            None,
            ident,
            "kms.amazonaws.com",
            "Decrypt",
            {
                "encryptionContext": {
                    "SecretARN": _arn("secretsmanager", ctx.region, f"secret:{rng.choice(SECRETS)}-Ab12Cd"),
                    "SecretVersionId": uuid4(rng),
                },
                "encryptionAlgorithm": "SYMMETRIC_DEFAULT",
            },
            read_only=True,
            ip="secretsmanager.amazonaws.com",
            agent="secretsmanager.amazonaws.com",
            resources=[{"accountId": ACCOUNT, "type": "AWS::KMS::Key", "ARN": key_arn}],
            extra={"sharedEventID": uuid4(rng)},
            host=None,
        )
    ]


# --------------------------------------------------------------------------- the varied trail (--varied)

# A busier, higher-cardinality account (issue 14): many more principals (each base role is run by
# several teams), more services, many more named resources, and requests whose keys and ids are new
# on nearly every call (an object key per request, query and job ids). What stays bounded per key in
# the default trail grows here with the records, as in a real data lake.
VARIED_TEAMS = ["", "-growth", "-risk", "-search", "-ads"]
VARIED_SCALE = 5  # named resources (tables, queues, functions, ...) per default name
VARIED: dict[str, bool] = {"on": False}

VARIED_MGMT: list[tuple[str, str, str, ParamFn, bool]] = [
    (
        "rds",
        "DescribeDBInstances",
        "rds:DescribeDBInstances",
        lambda r, g: {"dBInstanceIdentifier": f"{r.choice(MODELS)}-db-{r.randrange(0, 8)}"},
        True,
    ),
    (
        "redshift",
        "DescribeClusters",
        "redshift:DescribeClusters",
        lambda r, g: {"clusterIdentifier": f"analytics-{r.randrange(0, 6)}"},
        True,
    ),
    (
        "kinesis",
        "DescribeStream",
        "kinesis:DescribeStream",
        lambda r, g: {"streamName": f"{r.choice(DATASETS)}-stream"},
        True,
    ),
    (
        "firehose",
        "DescribeDeliveryStream",
        "firehose:DescribeDeliveryStream",
        lambda r, g: {"deliveryStreamName": f"{r.choice(DATASETS)}-to-s3"},
        True,
    ),
    (
        "eks",
        "DescribeCluster",
        "eks:DescribeCluster",
        lambda r, g: {"name": f"ml-{r.choice(['train', 'serve', 'batch'])}-{r.randrange(0, 4)}"},
        True,
    ),
    (
        "elasticache",
        "DescribeCacheClusters",
        "elasticache:DescribeCacheClusters",
        lambda r, g: {"cacheClusterId": f"features-{r.randrange(0, 12):03d}"},
        True,
    ),
    (
        "acm",
        "DescribeCertificate",
        "acm:DescribeCertificate",
        lambda r, g: {
            "certificateArn": _arn("acm", g, f"certificate/{uuid4(random.Random(r.randrange(40)))}")
        },
        True,
    ),
    (
        "codebuild",
        "BatchGetProjects",
        "codebuild:BatchGetProjects",
        lambda r, g: {"names": [f"{r.choice(REPOS).split('/')[-1]}-build"]},
        True,
    ),
    (
        "codepipeline",
        "GetPipeline",
        "codepipeline:GetPipeline",
        lambda r, g: {"name": f"{r.choice(MODELS)}-release"},
        True,
    ),
    ("backup", "ListBackupVaults", "backup:ListBackupVaults", lambda r, g: None, True),
    (
        "elasticmapreduce",
        "DescribeCluster",
        "elasticmapreduce:DescribeCluster",
        lambda r, g: {"clusterId": "j-" + hexid(r, 13).upper()},
        True,
    ),
    ("route53", "ListHostedZones", "route53:ListHostedZones", lambda r, g: None, True),
    (
        "batch",
        "DescribeJobQueues",
        "batch:DescribeJobQueues",
        lambda r, g: {"jobQueues": ["gpu-queue"]},
        True,
    ),
    (
        "elasticfilesystem",
        "DescribeFileSystems",
        "elasticfilesystem:DescribeFileSystems",
        lambda r, g: {"fileSystemId": "fs-" + hexid(random.Random(r.randrange(30)), 17)},
        True,
    ),
    ("kafka", "ListClustersV2", "kafka:ListClustersV2", lambda r, g: None, True),
    (
        "sagemaker",
        "DescribeProcessingJob",
        "sagemaker:DescribeProcessingJob",
        lambda r, g: {"processingJobName": f"{r.choice(MODELS)}-proc-{hexid(r, 12)}"},
        True,
    ),
    (
        "athena",
        "GetQueryExecution",
        "athena:GetQueryExecution",
        lambda r, g: {"queryExecutionId": uuid4(r)},
        True,
    ),
    (
        "dynamodb",
        "GetItem",
        "dynamodb:GetItem",
        lambda r, g: {"tableName": r.choice(TABLES), "key": {"pk": {"S": uuid4(r)}}},
        True,
    ),
]


def _grow(names: list[str], n: int, fmt: Callable[[str, int], str]) -> None:
    base = list(names)
    names[:] = base + [fmt(b, k) for k in range(1, n) for b in base]


def set_varied() -> None:
    """Turn the world into the varied one (idempotent; called in every process before a file)."""
    if VARIED["on"]:
        return
    VARIED["on"] = True
    for names in (TABLES, QUEUES, FUNCTIONS, STACKS, FEATURE_GROUPS):
        _grow(names, VARIED_SCALE, lambda b, k: f"{b}-{k}")
    _grow(MODELS, VARIED_SCALE, lambda b, k: f"{b}-v{k}")
    _grow(DATASETS, VARIED_SCALE, lambda b, k: f"{b}-{k}")
    _grow(SECRETS, VARIED_SCALE, lambda b, k: f"{b}-{k}")
    _grow(PARAMS, VARIED_SCALE, lambda b, k: f"{b}/{k}")
    MGMT["varied"] = VARIED_MGMT
    global _PRINCIPALS
    _PRINCIPALS = None


def varied_principals(base: list[Principal]) -> list[Principal]:
    """Each base principal run by several teams (its name with a team suffix), all calling the
    extra services too; break-glass and the IAM users stay single."""
    out: list[Principal] = []
    for p in base:
        teams = VARIED_TEAMS if p.kind == "role" and "break-glass" not in p.name else [""]
        for t in teams:
            q = Principal(
                name=(p.name + t)[:64],
                kind=p.kind,
                path=p.path,
                weight=p.weight / len(teams),
                agents=p.agents,
                session_style=p.session_style,
                activities=_acts(p.activities, varied=2.0),
                buckets=p.buckets,
                vpce_share=p.vpce_share,
                via_console=p.via_console,
            )
            q.arn = f"arn:aws:iam::{ACCOUNT}:{p.kind}{p.path}{q.name}"
            q.uid = stable_id("AROA" if p.kind == "role" else "AIDA", q.arn)
            q.ips = p.ips
            acc = 0.0
            for name, w in q.activities.items():
                acc += w
                q.act_names.append(name)
                q.act_cum.append(acc)
            out.append(q)
    return out


def one_event(ctx: Ctx) -> list[Rec]:
    rng = ctx.rng
    if rng.random() < 0.015:
        return act_service(ctx)
    x = rng.random() * ctx.p_cum[-1]
    i = 0
    while ctx.p_cum[i] < x:
        i += 1
    p = ctx.principals[i]
    y = rng.random() * p.act_cum[-1]
    j = 0
    while p.act_cum[j] < y:
        j += 1
    act = p.act_names[j]
    if ctx.region != HOME_REGION and act in ("iam_read", "signin"):
        act = "s3_get" if "s3_get" in p.activities else "s3_bucket"
    ident = ctx.identity(p)
    if act.startswith("s3_"):
        op = act[3:]
        if op == "list":
            return act_s3_list(ctx, p, ident)
        if op == "bucket":
            return act_s3_bucket(ctx, p, ident)
        return act_s3_object(ctx, p, ident, op)
    if act == "signin":
        return act_signin(ctx, p, ident)
    if act == "sts_assume":
        return act_sts_assume(ctx, p, ident)
    return act_mgmt(ctx, p, ident, act)


# --------------------------------------------------------------------------- files

_PRINCIPALS: list[Principal] | None = None


def _principals() -> list[Principal]:
    global _PRINCIPALS
    if _PRINCIPALS is None:
        _PRINCIPALS = build_principals()
        if VARIED["on"]:
            _PRINCIPALS = varied_principals(_PRINCIPALS)
        ROLE_NAMES[:] = [p.name for p in _PRINCIPALS if p.kind == "role"]
    return _PRINCIPALS


def file_plan(index: int, files: int, seed: int) -> tuple[str, float]:
    """Region and start time of trail file ``index``; independent of the other files."""
    rng = random.Random(f"{seed}:plan:{index}")
    region = OTHER_REGION if rng.random() < OTHER_REGION_SHARE else HOME_REGION
    span = SPAN_DAYS * 86400
    t0 = START.timestamp() + (index + rng.random() * 0.5) * span / files
    return region, t0


def make_file(job: tuple[int, int, int, int, str, bool]) -> dict[str, Any]:
    index, n_records, files, seed, out, varied = job
    if varied:
        set_varied()
    region, t0 = file_plan(index, files, seed)
    ctx = Ctx(seed, index, region, t0, _principals())
    recs: list[Rec] = []
    while len(recs) < n_records:
        recs.extend(one_event(ctx))
    del recs[n_records:]
    dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
    body = ('{"Records":[' + ",".join([dumps(r) for r in recs]) + "]}").encode()
    gz = gzip.compress(body, compresslevel=6, mtime=0)
    end = time.gmtime(t0 + FILE_WINDOW_S)
    stamp = time.strftime("%Y%m%dT%H%MZ", end)
    suffix = "".join(ctx.rng.choices(_FILE_CHARS, k=16))
    rel = (
        f"AWSLogs/{ACCOUNT}/CloudTrail/{region}/{time.strftime('%Y/%m/%d', end)}/"
        f"{ACCOUNT}_CloudTrail_{region}_{stamp}_{suffix}.json.gz"
    )
    path = Path(out) / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(gz)
    os.replace(tmp, path)
    s3_data = sum(1 for r in recs if r["eventSource"] == "s3.amazonaws.com" and not r["managementEvent"])
    return {
        "path": rel,
        "records": len(recs),
        "bytes_gz": len(gz),
        "bytes_raw": len(body),
        "s3_data": s3_data,
        "errors": sum(1 for r in recs if "errorCode" in r),
        "denied": sum(
            1
            for r in recs
            if r.get("errorCode") in ("AccessDenied", "AccessDeniedException", "Client.UnauthorizedOperation")
        ),
    }


def generate(
    records: int,
    files: int,
    out: Path,
    seed: int,
    procs: int = 2,
    quiet: bool = False,
    varied: bool = False,
) -> dict[str, Any]:
    """Write the corpus under ``out`` and return the manifest (also written to out/manifest.json)."""
    if files < 1 or records < files:
        raise SystemExit("need --files >= 1 and --records >= --files")
    out.mkdir(parents=True, exist_ok=True)
    base, rem = divmod(records, files)
    if varied:
        set_varied()
    jobs = [(i, base + (1 if i < rem else 0), files, seed, str(out), varied) for i in range(files)]
    t = time.perf_counter()
    results: list[dict[str, Any]] = []
    if procs > 1:
        with multiprocessing.get_context("fork").Pool(procs) as pool:
            for n, res in enumerate(pool.imap(make_file, jobs, chunksize=4), 1):
                results.append(res)
                if not quiet and (n % 50 == 0 or n == files):
                    print(f"  {n}/{files} files  {time.perf_counter() - t:6.1f}s", file=sys.stderr)
    else:
        results = [make_file(j) for j in jobs]
    elapsed = time.perf_counter() - t
    total_gz = sum(r["bytes_gz"] for r in results)
    total_raw = sum(r["bytes_raw"] for r in results)
    n = sum(r["records"] for r in results)
    manifest = {
        "generator": "bench/make_trail.py",
        "seed": seed,
        "varied": varied,
        "principals": len(_principals()),
        "records": n,
        "files": files,
        "account": ACCOUNT,
        "bytes_gz": total_gz,
        "bytes_raw": total_raw,
        "avg_record_bytes": round(total_raw / n, 1),
        "gzip_ratio": round(total_raw / total_gz, 2),
        "s3_data_share": round(sum(r["s3_data"] for r in results) / n, 4),
        "error_share": round(sum(r["errors"] for r in results) / n, 4),
        "denied_share": round(sum(r["denied"] for r in results) / n, 4),
        "generation_seconds": round(elapsed, 2),
        "generation_procs": procs,
        "trail_files": results,
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return manifest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=DEFAULT_RECORDS, help="total records (default 1,000,000)")
    ap.add_argument("--files", type=int, default=DEFAULT_FILES, help="number of trail files (default 500)")
    ap.add_argument("--out", type=Path, required=True, help="output directory (AWSLogs/ is created in it)")
    ap.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    ap.add_argument("--procs", type=int, default=2, help="worker processes (default 2)")
    ap.add_argument(
        "--varied",
        action="store_true",
        help="a high-cardinality account: 99 principals, 39 services, a new object key per "
        "request, random ids in requests, 5x the named resources",
    )
    args = ap.parse_args(argv)
    m = generate(args.records, args.files, args.out, args.seed, args.procs, varied=args.varied)
    mb = 1024 * 1024
    print(f"{m['records']:,} records in {m['files']} files under {args.out / 'AWSLogs'}")
    print(f"  generated in {m['generation_seconds']:.1f}s with {args.procs} processes")
    print(
        f"  uncompressed {m['bytes_raw'] / mb:,.1f} MiB, gzip {m['bytes_gz'] / mb:,.1f} MiB "
        f"(ratio {m['gzip_ratio']}:1), avg record {m['avg_record_bytes']:,.0f} B"
    )
    print(
        f"  S3 data events {m['s3_data_share']:.1%}, errors {m['error_share']:.1%}, "
        f"denied {m['denied_share']:.1%}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
