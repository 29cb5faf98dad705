#!/usr/bin/env python3
"""Generate the bundled sample account under ``samples/`` (stdlib only, deterministic).

The account is a small ML platform (444455556666, us-east-1 with a few calls in eu-west-1)
observed from 2026-10-01 to 2026-10-14.  Every record is written the way CloudTrail writes it:
field names, key order, eventVersion, ARN formats, S3 data-event and S3-invoked KMS shapes,
versioned Lambda eventNames, console/CLI/SDK userAgents.  See ``samples/README.md``.

Run ``python3 samples/make_samples.py``; running it twice yields byte-identical files
(one seeded ``random.Random``, gzip ``mtime=0``, no wall-clock reads, stable key order).
The summary block in README.md (between the GENERATED SUMMARY markers) is rewritten too.
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import gzip
import hashlib
import io
import json
import random
import shutil
import string
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SEED = 444455556666
R = random.Random(SEED)

ACCOUNT = "444455556666"
PARTNER_ACCOUNT = "777788889999"
REGION = "us-east-1"
EU_REGION = "eu-west-1"
DAYS = [dt.date(2026, 10, d) for d in range(1, 15)]

VPCE = "vpce-0a1b2c3d4e5f60718"
NAT_IP = "192.0.2.44"  # NAT gateway of the ML VPC (non-S3 calls from notebook / training)
CI_IP = "192.0.2.10"  # CI runner egress
PARTNER_IP = "192.0.2.150"

DATASETS = "acme-ml-datasets"
ARTIFACTS = "acme-ml-artifacts"
SCRATCH = "acme-ml-scratch"
KEY_DATASETS = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1a2b3c4d-5e6f-7a8b-9c0d-1e2f3a4b5c6d"
KEY_ARTIFACTS = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/9f8e7d6c-5b4a-3928-1716-0f1e2d3c4b5a"
KEY_AWS_SECRETSMANAGER = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/5c6d7e8f-9a0b-4c1d-8e2f-3a4b5c6d7e8f"
KEY_AWS_SSM = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/0e1f2a3b-4c5d-4e6f-8a9b-0c1d2e3f4a5b"
KEY_AWS_SAGEMAKER_VOLUME = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/7d8e9f0a-1b2c-4d3e-9f4a-5b6c7d8e9f0a"
BUCKET_KEY = {DATASETS: KEY_DATASETS, ARTIFACTS: KEY_ARTIFACTS}  # scratch is SSE-S3

NOTEBOOK_INSTANCE = "churn-exploration"
ECR_REPO = "ml/training-images"
ECR_REPO_ARN = f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/{ECR_REPO}"
SAML_PROVIDER = f"arn:aws:iam::{ACCOUNT}:saml-provider/AcmeOkta"
SAML_ISSUER = "http://www.okta.com/exk8a1b2c3d4e5f6g7h8"
FUNCTION = "churn-score"
SECRET_WANDB = "ml/wandb-api-key"
SECRET_HF_ARN = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:ml/hf-token-Q7fzLm"
SECRET_WANDB_ARN = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:ml/wandb-api-key-x3Rt9B"


class Role:
    def __init__(self, account: str, name: str, path: str, role_id: str) -> None:
        assert len(role_id) == 21 and role_id.startswith("AROA"), role_id
        self.account, self.name, self.path, self.id = account, name, path, role_id
        self.arn = f"arn:aws:iam::{account}:role{path}{name}"


NOTEBOOK = Role(ACCOUNT, "ml-notebook-execution", "/service-role/", "AROAWQ7NBK3EXEC5ROLE2")
TRAINING = Role(ACCOUNT, "ml-training-job", "/", "AROAWQ7TRN4JOB8ROLE6Z")
SCIENTIST = Role(ACCOUNT, "data-scientist", "/", "AROAWQ7DSC2SAML9ROLEK")
PARTNER = Role(PARTNER_ACCOUNT, "partner-analytics", "/", "AROA3PRTNR5ANLYTCS7QX")
CI_USER_ARN = f"arn:aws:iam::{ACCOUNT}:user/ci-deployer"
CI_USER_ID = "AIDAWQ7CIDEPLOYER3K5M"
CI_ACCESS_KEY = "AKIAWQ7CIDEPLOY4X2MZ"

SCIENTISTS = {  # session name -> (home IP, laptop OS string)
    "jane@acme.example": ("198.51.100.23", "macos#24.6.0", "arm64"),
    "raj@acme.example": ("203.0.113.57", "linux#6.8.0-45-generic", "x86_64"),
    "li@acme.example": ("198.51.100.88", "macos#23.6.0", "arm64"),
}

# ---------------------------------------------------------------------------- user agents
UA_NOTEBOOK = (
    "Boto3/1.35.36 md/Botocore#1.35.36 ua/2.0 os/linux#5.10.226-214.880.amzn2.x86_64 "
    "md/arch#x86_64 lang/python#3.10.14 md/pyimpl#CPython cfg/retry-mode#legacy "
    "Botocore/1.35.36 AWS-SageMaker-Python-SDK/2.232.2 AWS-SageMaker-Notebook-Instance"
)
UA_NOTEBOOK_CLI = (
    "aws-cli/2.18.5 md/awscrt#0.22.0 ua/2.0 os/linux#5.10.226-214.880.amzn2.x86_64 "
    "md/arch#x86_64 lang/python#3.12.6 md/pyimpl#CPython cfg/retry-mode#standard "
    "md/installer#exe md/prompt#off md/command#s3.ls"
)
UA_TRAINING = (
    "Boto3/1.34.162 md/Botocore#1.34.162 ua/2.0 os/linux#5.10.226-214.880.amzn2.x86_64 "
    "md/arch#x86_64 lang/python#3.11.9 md/pyimpl#CPython cfg/retry-mode#legacy "
    "Botocore/1.34.162"
)
UA_TRAINING_S3T = UA_TRAINING + " s3transfer/0.10.2"
UA_CI_CLI = (
    "aws-cli/2.17.52 md/awscrt#0.21.2 ua/2.0 os/linux#6.5.0-1025-azure md/arch#x86_64 "
    "lang/python#3.12.6 md/pyimpl#CPython cfg/retry-mode#standard md/installer#exe "
    "md/distrib#ubuntu.22 md/prompt#off md/command#{cmd}"
)
UA_CI_BOTO = (
    "Boto3/1.35.20 md/Botocore#1.35.20 ua/2.0 os/linux#6.5.0-1025-azure md/arch#x86_64 "
    "lang/python#3.12.6 md/pyimpl#CPython cfg/retry-mode#legacy Botocore/1.35.20"
)
UA_DOCKER_ECR = "docker/27.2.1 go/go1.22.7 git-commit/8b539b8 kernel/6.5.0-1025-azure os/linux arch/amd64 UpstreamClient(Docker-Client/27.2.1 \\(linux\\))"
UA_CONSOLE_JAVA = (
    "aws-internal/3 aws-sdk-java/1.12.772 Linux/5.10.226-193.880.amzn2int.x86_64 "
    "OpenJDK_64-Bit_Server_VM/25.422-b05 java/1.8.0_422 vendor/Oracle_Corporation "
    "cfg/retry-mode/standard"
)
UA_S3_CONSOLE = f"[S3Console/0.4, {UA_CONSOLE_JAVA}]"
UA_BROWSER = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/129.0.0.0 Safari/537.36"
)
UA_SAML2AWS = "aws-sdk-go/1.55.5 (go1.22.7; darwin; arm64) saml2aws/2.36.17"
UA_PARTNER = (
    "[aws-sdk-java/2.28.16 Linux/6.1.109-118.189.amzn2023.x86_64 "
    "OpenJDK_64-Bit_Server_VM/17.0.12+7-LTS Java/17.0.12 vendor/Amazon.com_Inc. md/io#sync "
    "md/http#Apache ua/2.1 os/Linux#6.1.109-118.189.amzn2023.x86_64 lang/java#17.0.12 "
    "md/OpenJDK_64-Bit_Server_VM#17.0.12+7-LTS md/vendor#Amazon.com_Inc. md/en_US "
    "cfg/retry-mode#legacy m/D,N]"
)


def ds_cli_ua(session: str, cmd: str) -> str:
    _, os_, arch = SCIENTISTS[session]
    return (
        f"aws-cli/2.18.5 md/awscrt#0.22.0 ua/2.0 os/{os_} md/arch#{arch} lang/python#3.12.6 "
        f"md/pyimpl#CPython cfg/retry-mode#standard md/installer#exe md/prompt#off "
        f"md/command#{cmd}"
    )


# ---------------------------------------------------------------------------- id helpers
UPPER_DIGITS = string.ascii_uppercase + string.digits
ALNUM = string.ascii_letters + string.digits


def uuid4() -> str:
    n = R.getrandbits(128)
    n &= ~(0xF << 76)
    n |= 0x4 << 76
    n &= ~(0x3 << 62)
    n |= 0x2 << 62
    h = f"{n:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def rand_str(n: int, alphabet: str = UPPER_DIGITS) -> str:
    return "".join(R.choice(alphabet) for _ in range(n))


def s3_request_id() -> str:
    return rand_str(16)


def amz_id_2() -> str:
    return base64.b64encode(R.randbytes(57)).decode()


def session_token() -> str:
    return "IQoJb3JpZ2luX2VjE" + base64.b64encode(R.randbytes(300)).decode()


def asia() -> str:
    return "ASIAWQ7" + rand_str(13)


def hexs(n: int) -> str:
    return "".join(R.choice("0123456789abcdef") for _ in range(n))


def ts(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def epoch(t: dt.datetime) -> int:
    return int((t - dt.datetime(1970, 1, 1)).total_seconds())


def at(day: dt.date, h: int, m: int = 0, s: int = 0) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, h, m, s)


def sec(t: dt.datetime, n: float) -> dt.datetime:
    return t + dt.timedelta(seconds=n)


def expiration(t: dt.datetime) -> str:
    h = t.hour % 12 or 12
    ampm = "AM" if t.hour < 12 else "PM"
    return f"{t.strftime('%b')} {t.day}, {t.year}, {h}:{t.minute:02d}:{t.second:02d} {ampm}"


# ---------------------------------------------------------------------------- record builder
ORDER = [
    "eventVersion", "userIdentity", "eventTime", "eventSource", "eventName", "awsRegion",
    "sourceIPAddress", "userAgent", "errorCode", "errorMessage", "requestParameters",
    "responseElements", "additionalEventData", "requestID", "eventID", "readOnly", "resources",
    "eventType", "apiVersion", "managementEvent", "recipientAccountId", "vpcEndpointId",
    "vpcEndpointAccountId", "sharedEventID", "serviceEventDetails", "eventCategory",
    "tlsDetails", "sessionCredentialFromConsole",
]
VERSION = {
    "s3.amazonaws.com": "1.10", "kms.amazonaws.com": "1.08", "sts.amazonaws.com": "1.08",
    "signin.amazonaws.com": "1.09", "sagemaker.amazonaws.com": "1.09",
    "logs.amazonaws.com": "1.09", "ecr.amazonaws.com": "1.08", "ssm.amazonaws.com": "1.09",
    "secretsmanager.amazonaws.com": "1.09", "lambda.amazonaws.com": "1.08",
    "ec2.amazonaws.com": "1.09", "cloudformation.amazonaws.com": "1.10",
    "athena.amazonaws.com": "1.09", "glue.amazonaws.com": "1.09", "iam.amazonaws.com": "1.09",
}
SEQ = [0]
RECORDS: list[dict[str, Any]] = []


def emit(
    t: dt.datetime,
    ident: dict[str, Any],
    source: str,
    name: str,
    *,
    region: str = REGION,
    ip: str,
    ua: str,
    req: Any = None,
    resp: Any = None,
    extra: dict[str, Any] | None = None,
    read_only: bool,
    resources: list[dict[str, str]] | None = None,
    data: bool = False,
    error: tuple[str, str] | None = None,
    tls_host: str | None = "",
    request_id: str | None | bool = None,
    console: bool = False,
    event_type: str = "AwsApiCall",
    **more: Any,
) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "eventVersion": VERSION[source],
        "userIdentity": ident,
        "eventTime": ts(t),
        "eventSource": source,
        "eventName": name,
        "awsRegion": region,
        "sourceIPAddress": ip,
        "userAgent": ua,
        "requestParameters": req,
        "responseElements": resp,
        "requestID": request_id if isinstance(request_id, str) else uuid4(),
        "eventID": uuid4(),
        "readOnly": read_only,
        "eventType": event_type,
        "managementEvent": not data,
        "recipientAccountId": ACCOUNT,
        "eventCategory": "Data" if data else "Management",
    }
    if request_id is False:  # sign-in and service events carry no requestID
        del fields["requestID"]
    if error:
        fields["errorCode"], fields["errorMessage"] = error
    if extra is not None:
        fields["additionalEventData"] = extra
    if resources is not None:
        fields["resources"] = resources
    if tls_host is not None:
        host = tls_host or f"{source.split('.')[0]}.{region}.amazonaws.com"
        fields["tlsDetails"] = {
            "tlsVersion": "TLSv1.3",
            "cipherSuite": "TLS_AES_128_GCM_SHA256",
            "clientProvidedHostHeader": host,
        }
    if console:
        fields["sessionCredentialFromConsole"] = "true"
    fields.update(more)
    rec = {k: fields[k] for k in ORDER if k in fields}
    assert set(rec) == set(fields), set(fields) - set(rec)
    SEQ[0] += 1
    RECORDS.append(rec)
    return rec


# ---------------------------------------------------------------------------- identities
class Session:
    """One set of temporary credentials of a role."""

    def __init__(self, role: Role, name: str, created: dt.datetime, akid: str) -> None:
        self.role, self.name, self.created, self.akid = role, name, created, akid

    def ident(self, invoked_by: str | None = None) -> dict[str, Any]:
        r = self.role
        ui: dict[str, Any] = {
            "type": "AssumedRole",
            "principalId": f"{r.id}:{self.name}",
            "arn": f"arn:aws:sts::{r.account}:assumed-role/{r.name}/{self.name}",
            "accountId": r.account,
            "accessKeyId": self.akid,
            "sessionContext": {
                "sessionIssuer": {
                    "type": "Role",
                    "principalId": r.id,
                    "arn": r.arn,
                    "accountId": r.account,
                    "userName": r.name,
                },
                "attributes": {"creationDate": ts(self.created), "mfaAuthenticated": "false"},
            },
        }
        if r is SCIENTIST:
            ui["sessionContext"]["webIdFederationData"] = {}
            ui["sessionContext"] = {
                "sessionIssuer": ui["sessionContext"]["sessionIssuer"],
                "webIdFederationData": {},
                "attributes": ui["sessionContext"]["attributes"],
            }
        if invoked_by:
            ui["invokedBy"] = invoked_by
        return ui


def ci_ident() -> dict[str, Any]:
    return {
        "type": "IAMUser",
        "principalId": CI_USER_ID,
        "arn": CI_USER_ARN,
        "accountId": ACCOUNT,
        "accessKeyId": CI_ACCESS_KEY,
        "userName": "ci-deployer",
    }


def service_ident(service: str) -> dict[str, Any]:
    return {"type": "AWSService", "invokedBy": service}


def service_assume_role(t: dt.datetime, role: Role, service: str) -> Session:
    akid = asia()
    emit(
        t, service_ident(service), "sts.amazonaws.com", "AssumeRole",
        ip=service, ua=service, tls_host=None, read_only=True,
        req={"roleArn": role.arn, "roleSessionName": "SageMaker", "durationSeconds": 3600},
        resp={
            "credentials": {
                "accessKeyId": akid,
                "sessionToken": session_token(),
                "expiration": expiration(sec(t, 3600)),
            },
            "assumedRoleUser": {
                "assumedRoleId": f"{role.id}:SageMaker",
                "arn": f"arn:aws:sts::{ACCOUNT}:assumed-role/{role.name}/SageMaker",
            },
        },
        resources=[{"accountId": ACCOUNT, "type": "AWS::IAM::Role", "ARN": role.arn}],
        sharedEventID=uuid4(),
    )
    return Session(role, "SageMaker", t, akid)


# ---------------------------------------------------------------------------- S3 + KMS
def kms_by_s3(
    t: dt.datetime, sess: Session, name: str, bucket: str, key: str, key_arn: str
) -> None:
    ctx = {"aws:s3:arn": f"arn:aws:s3:::{bucket}/{key}"}
    if name == "GenerateDataKey":
        req: dict[str, Any] = {"keyId": key_arn, "encryptionContext": ctx, "keySpec": "AES_256"}
    else:
        req = {"encryptionContext": ctx, "encryptionAlgorithm": "SYMMETRIC_DEFAULT"}
    emit(
        t, sess.ident("s3.amazonaws.com"), "kms.amazonaws.com", name,
        ip="s3.amazonaws.com", ua="s3.amazonaws.com", tls_host=None, read_only=True,
        req=req, resources=[{"accountId": ACCOUNT, "type": "AWS::KMS::Key", "ARN": key_arn}],
    )


def s3_resources(bucket: str, key: str | None) -> list[dict[str, str]]:
    out = []
    if key is not None:
        out.append({"type": "AWS::S3::Object", "ARN": f"arn:aws:s3:::{bucket}/{key}"})
    out.append({"accountId": ACCOUNT, "type": "AWS::S3::Bucket", "ARN": f"arn:aws:s3:::{bucket}"})
    return out


def s3_event(
    t: dt.datetime,
    sess: Session | None,
    name: str,
    bucket: str,
    key: str | None,
    *,
    ip: str,
    ua: str,
    vpce: bool,
    ident: dict[str, Any] | None = None,
    invoked_by: str | None = None,
    req_extra: dict[str, Any] | None = None,
    resp: Any = None,
    bytes_in: int = 0,
    bytes_out: int = 0,
    sse: str | None = None,
    error: tuple[str, str] | None = None,
    read_only: bool = True,
    resources: list[dict[str, str]] | None = None,
    console: bool = False,
    data: bool = True,
) -> dict[str, Any]:
    host = f"{bucket}.s3.{REGION}.amazonaws.com" if bucket else f"s3.{REGION}.amazonaws.com"
    req: dict[str, Any] = {}
    if bucket:
        req["bucketName"] = bucket
    req["Host"] = host
    if key is not None:
        req["key"] = key
    if req_extra:
        req.update(req_extra)
    extra: dict[str, Any] = {
        "SignatureVersion": "SigV4",
        "CipherSuite": "TLS_AES_128_GCM_SHA256",
        "bytesTransferredIn": bytes_in,
    }
    if sse:
        extra["SSEApplied"] = sse
    extra["AuthenticationMethod"] = "AuthHeader"
    extra["x-amz-id-2"] = amz_id_2()
    extra["bytesTransferredOut"] = bytes_out
    if ident is None:
        assert sess is not None
        ident = sess.ident(invoked_by)
    more: dict[str, Any] = {}
    if vpce:
        more = {"vpcEndpointId": VPCE, "vpcEndpointAccountId": ACCOUNT}
    return emit(
        t, ident, "s3.amazonaws.com", name, ip=ip, ua=ua, req=req, resp=resp, extra=extra,
        read_only=read_only, data=data, error=error, request_id=s3_request_id(),
        resources=resources if resources is not None else s3_resources(bucket, key),
        tls_host=None if invoked_by else host, console=console, **more,
    )


NO_SUCH_KEY = ("NoSuchKey", "The specified key does not exist.")


def get_object(
    t: dt.datetime, sess: Session, bucket: str, key: str, *, ip: str, ua: str, vpce: bool,
    missing: bool = False, invoked_by: str | None = None, console: bool = False,
    ident: dict[str, Any] | None = None, kms_sess: Session | None = None,
) -> None:
    kms = BUCKET_KEY.get(bucket)
    size = R.randint(2_000_000, 48_000_000) if key.endswith(".parquet") else R.randint(400, 90_000)
    s3_event(
        t, sess, "GetObject", bucket, key, ip=ip, ua=ua, vpce=vpce, invoked_by=invoked_by,
        ident=ident, console=console,
        sse=None if missing else ("SSE_KMS" if kms else "SSE_S3"),
        bytes_out=0 if missing else size, error=NO_SUCH_KEY if missing else None,
    )
    if kms and not missing:
        kms_by_s3(sec(t, 0), kms_sess or sess, "Decrypt", bucket, key, kms)


def head_object(
    t: dt.datetime, sess: Session, bucket: str, key: str, *, ip: str, ua: str, vpce: bool,
    missing: bool = False,
) -> None:
    s3_event(
        t, sess, "HeadObject", bucket, key, ip=ip, ua=ua, vpce=vpce,
        error=NO_SUCH_KEY if missing else None,
    )


def put_object(
    t: dt.datetime, sess: Session, bucket: str, key: str, *, ip: str, ua: str, vpce: bool,
    explicit_sse: bool, invoked_by: str | None = None, size: int | None = None,
) -> None:
    kms = BUCKET_KEY.get(bucket)
    req_extra: dict[str, Any] = {}
    if kms and explicit_sse:
        req_extra = {
            "x-amz-server-side-encryption": "aws:kms",
            "x-amz-server-side-encryption-aws-kms-key-id": kms,
        }
    if kms:
        resp = {
            "x-amz-server-side-encryption-aws-kms-key-id": kms,
            "x-amz-server-side-encryption": "aws:kms",
        }
        sse = "SSE_KMS" if explicit_sse else "Default_SSE_KMS"
    else:
        resp = {"x-amz-server-side-encryption": "AES256"}
        sse = "Default_SSE_S3"
    s3_event(
        t, sess, "PutObject", bucket, key, ip=ip, ua=ua, vpce=vpce, invoked_by=invoked_by,
        req_extra=req_extra, resp=resp, sse=sse, read_only=False,
        bytes_in=size if size is not None else R.randint(20_000, 6_000_000),
    )
    if kms:
        kms_by_s3(t, sess, "GenerateDataKey", bucket, key, kms)


def list_objects(
    t: dt.datetime, sess: Session | None, bucket: str, prefix: str, *, ip: str, ua: str,
    vpce: bool, v2: bool = True, ident: dict[str, Any] | None = None, console: bool = False,
) -> None:
    extra: dict[str, Any] = {"prefix": prefix, "delimiter": "/", "encoding-type": "url"}
    if v2:
        extra = {"list-type": "2", **extra}
    s3_event(
        t, sess, "ListObjects", bucket, None, ip=ip, ua=ua, vpce=vpce, req_extra=extra,
        bytes_out=R.randint(900, 24_000), ident=ident, console=console,
    )


def multipart_upload(
    t: dt.datetime, sess: Session, bucket: str, key: str, parts: int, *, ip: str, ua: str
) -> None:
    kms = BUCKET_KEY[bucket]
    sse_resp = {
        "x-amz-server-side-encryption-aws-kms-key-id": kms,
        "x-amz-server-side-encryption": "aws:kms",
    }
    upload_id = base64.urlsafe_b64encode(R.randbytes(66)).decode().rstrip("=")
    s3_event(
        t, sess, "CreateMultipartUpload", bucket, key, ip=ip, ua=ua, vpce=True, read_only=False,
        req_extra={
            "uploads": "",
            "x-amz-server-side-encryption": "aws:kms",
            "x-amz-server-side-encryption-aws-kms-key-id": kms,
        },
        resp=dict(sse_resp), sse="SSE_KMS",
    )
    kms_by_s3(t, sess, "GenerateDataKey", bucket, key, kms)
    for p in range(1, parts + 1):
        tp = sec(t, 2 * p)
        s3_event(
            tp, sess, "UploadPart", bucket, key, ip=ip, ua=ua, vpce=True, read_only=False,
            req_extra={"partNumber": str(p), "uploadId": upload_id},
            resp=dict(sse_resp), sse="SSE_KMS",
            bytes_in=8_388_608 if p < parts else R.randint(1_000_000, 8_000_000),
        )
        kms_by_s3(tp, sess, "Decrypt", bucket, key, kms)
    s3_event(
        sec(t, 2 * parts + 1), sess, "CompleteMultipartUpload", bucket, key, ip=ip, ua=ua,
        vpce=True, read_only=False, req_extra={"uploadId": upload_id}, resp=dict(sse_resp),
        sse="SSE_KMS", bytes_in=R.randint(300, 900),
    )


def dataset_key(day: dt.date, part: int) -> str:
    return f"datasets/churn/{day.isoformat()}/part-{part:05d}.parquet"


def prev_days(day: dt.date, n: int) -> list[dt.date]:
    return [d for d in DAYS if d < day][-n:] or [day]


# ---------------------------------------------------------------------------- principals
TRAINING_JOBS: list[tuple[dt.date, dt.datetime, str]] = []


def sagemaker_call(
    t: dt.datetime, sess: Session, name: str, req: Any, resp: Any = None, *, read_only: bool
) -> None:
    emit(
        t, sess.ident(), "sagemaker.amazonaws.com", name, ip=NAT_IP, ua=UA_NOTEBOOK,
        req=req, resp=resp, read_only=read_only,
        tls_host=f"api.sagemaker.{REGION}.amazonaws.com",
    )


def logs_call(
    t: dt.datetime, ident: dict[str, Any], name: str, req: Any, *, ip: str, ua: str,
    read_only: bool, error: tuple[str, str] | None = None, tls: bool = True,
) -> None:
    emit(
        t, ident, "logs.amazonaws.com", name, ip=ip, ua=ua, req=req, read_only=read_only,
        error=error, apiVersion="20140328", tls_host="" if tls else None,
    )


def notebook_day(day: dt.date, di: int) -> None:
    blocks = [(8, 11), (11, 14), (14, 18)] if day.weekday() < 5 else [(10, 13)]
    for bi, (h0, h1) in enumerate(blocks):
        start = at(day, h0, R.randint(0, 20), R.randint(0, 59))
        sess = service_assume_role(start, NOTEBOOK, "sagemaker.amazonaws.com")
        t = sec(start, R.randint(20, 90))
        ip = f"10.20.{R.choice([11, 12])}.{R.randint(20, 240)}"
        if bi == 0:
            err = None if di == 0 else (
                "ResourceAlreadyExistsException", "The specified log stream already exists"
            )
            logs_call(
                t, sess.ident(), "CreateLogStream",
                {"logGroupName": "/aws/sagemaker/NotebookInstances",
                 "logStreamName": f"{NOTEBOOK_INSTANCE}/jupyter.log"},
                ip=NAT_IP, ua=UA_NOTEBOOK, read_only=False, error=err,
            )
            t = sec(t, 5)
            sagemaker_call(t, sess, "DescribeNotebookInstance",
                           {"notebookInstanceName": NOTEBOOK_INSTANCE}, read_only=True)
        end = at(day, h1)
        while t < end:
            t = sec(t, R.randint(300, 1500))
            if t >= end:
                break
            roll = R.random()
            dday = R.choice(prev_days(day, 4))
            if roll < 0.50:
                for _ in range(R.randint(1, 3)):
                    t = sec(t, R.randint(1, 3))
                    get_object(t, sess, DATASETS, dataset_key(dday, R.randint(0, 15)),
                               ip=ip, ua=f"[{UA_NOTEBOOK}]", vpce=True)
            elif roll < 0.62:
                list_objects(t, sess, DATASETS, f"datasets/churn/{dday.isoformat()}/",
                             ip=ip, ua=f"[{UA_NOTEBOOK}]", vpce=True)
            elif roll < 0.70:
                head_object(t, sess, DATASETS, f"datasets/churn/{dday.isoformat()}/_SUCCESS",
                            ip=ip, ua=f"[{UA_NOTEBOOK}]", vpce=True)
            elif roll < 0.76:
                put_object(
                    t, sess, DATASETS,
                    f"datasets/churn/features/{day.isoformat()}/features-{R.randint(0, 3):02d}.parquet",
                    ip=ip, ua=f"[{UA_NOTEBOOK}]", vpce=True, explicit_sse=False,
                )
            elif roll < 0.80:
                put_object(
                    t, sess, ARTIFACTS,
                    f"notebooks/{NOTEBOOK_INSTANCE}/outputs/{day.isoformat()}/eval-{R.randint(1, 9)}.json",
                    ip=ip, ua=f"[{UA_NOTEBOOK}]", vpce=True, explicit_sse=True,
                    size=R.randint(800, 40_000),
                )
            elif roll < 0.86:
                sagemaker_call(
                    t, sess, "ListTrainingJobs",
                    {"maxResults": 10, "sortBy": "CreationTime", "sortOrder": "Descending",
                     "nameContains": "churn"}, read_only=True,
                )
            elif roll < 0.93 and TRAINING_JOBS:
                job = TRAINING_JOBS[-1][2]
                sagemaker_call(t, sess, "DescribeTrainingJob", {"trainingJobName": job},
                               read_only=True)
            elif roll < 0.96 and TRAINING_JOBS:
                job = TRAINING_JOBS[-1][2]
                logs_call(
                    t, sess.ident(), "GetLogEvents",
                    {"logGroupName": "/aws/sagemaker/TrainingJobs",
                     "logStreamName": f"{job}/algo-1-{epoch(TRAINING_JOBS[-1][1])}",
                     "startFromHead": True},
                    ip=NAT_IP, ua=UA_NOTEBOOK, read_only=True,
                )
            else:
                logs_call(
                    t, sess.ident(), "DescribeLogStreams",
                    {"logGroupName": "/aws/sagemaker/NotebookInstances",
                     "logStreamNamePrefix": f"{NOTEBOOK_INSTANCE}/", "descending": False},
                    ip=NAT_IP, ua=UA_NOTEBOOK, read_only=True,
                )
        if day.weekday() < 5 and bi in (0, 2) and not (bi == 2 and di % 3 == 1):
            t = sec(at(day, h0 + 1), R.randint(0, 1800))
            create_training_job(t, sess, day)
        if bi == 1 and di in (1, 8):
            # the notebook asks for tomorrow's partition before the pipeline wrote it
            nxt = day + dt.timedelta(days=1)
            get_object(sec(at(day, h0 + 1), 42), sess, DATASETS, dataset_key(nxt, 0),
                       ip=ip, ua=f"[{UA_NOTEBOOK}]", vpce=True, missing=True)
        if bi == 1 and di in (4, 11) and TRAINING_JOBS:
            job = TRAINING_JOBS[-1][2]
            head_object(sec(at(day, h0 + 1), 300), sess, ARTIFACTS,
                        f"models/{job}/output/model.tar.gz", ip=ip,
                        ua=f"[{UA_NOTEBOOK}]", vpce=True, missing=True)


def create_training_job(t: dt.datetime, sess: Session, day: dt.date) -> None:
    job = f"churn-xgb-{day.isoformat()}-{t.hour:02d}-{t.minute:02d}-{t.second:02d}"
    sagemaker_call(
        t, sess, "CreateTrainingJob",
        {
            "trainingJobName": job,
            "hyperParameters": {"max_depth": "6", "eta": "0.2", "num_round": "200",
                                "objective": "binary:logistic"},
            "algorithmSpecification": {
                "trainingImage": f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{ECR_REPO}:v1.4.2",
                "trainingInputMode": "File",
                "enableSageMakerMetricsTimeSeries": False,
            },
            "roleArn": TRAINING.arn,
            "inputDataConfig": [{
                "channelName": "train",
                "dataSource": {"s3DataSource": {
                    "s3DataType": "S3Prefix",
                    "s3Uri": f"s3://{DATASETS}/datasets/churn/",
                    "s3DataDistributionType": "FullyReplicated",
                }},
            }],
            "outputDataConfig": {"kmsKeyId": KEY_ARTIFACTS,
                                 "s3OutputPath": f"s3://{ARTIFACTS}/models/"},
            "resourceConfig": {"instanceType": "ml.m5.2xlarge", "instanceCount": 1,
                               "volumeSizeInGB": 30},
            "vpcConfig": {"securityGroupIds": ["sg-0c1d2e3f4a5b6c7d8"],
                          "subnets": ["subnet-0a1b2c3d4e5f60711", "subnet-0a1b2c3d4e5f60712"]},
            "stoppingCondition": {"maxRuntimeInSeconds": 86400},
            "enableNetworkIsolation": False,
            "enableInterContainerTrafficEncryption": False,
            "enableManagedSpotTraining": False,
        },
        {"trainingJobArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:training-job/{job}"},
        read_only=False,
    )
    TRAINING_JOBS.append((day, t, job))
    sagemaker_call(sec(t, 31), sess, "DescribeTrainingJob", {"trainingJobName": job},
                   read_only=True)
    run_training_job(sec(t, R.randint(150, 260)), day, job)


LAYERS = [f"sha256:{hashlib.sha256(f'layer-{i}'.encode()).hexdigest()}" for i in range(6)]


def ecr_call(t: dt.datetime, ident: dict[str, Any], name: str, req: Any, resp: Any = None, *,
             ip: str, ua: str, read_only: bool, region: str = REGION, tls: bool = True,
             repo: bool = True) -> None:
    res = [{"accountId": ACCOUNT,
            "ARN": f"arn:aws:ecr:{region}:{ACCOUNT}:repository/{ECR_REPO}"}] if repo else None
    emit(
        t, ident, "ecr.amazonaws.com", name, ip=ip, ua=ua, req=req, resp=resp, region=region,
        read_only=read_only, resources=res,
        tls_host=(f"api.ecr.{region}.amazonaws.com" if tls else None),
    )


REENCRYPT_DONE = [False]


def run_training_job(t: dt.datetime, day: dt.date, job: str) -> None:
    sm = "sagemaker.amazonaws.com"
    sess = service_assume_role(t, TRAINING, sm)
    t = sec(t, 3)
    ecr_call(t, sess.ident(sm), "GetAuthorizationToken", None, ip=sm, ua=sm, read_only=True,
             tls=False, repo=False)
    t = sec(t, 1)
    ecr_call(t, sess.ident(sm), "BatchGetImage",
             {"repositoryName": ECR_REPO, "registryId": ACCOUNT,
              "imageIds": [{"imageTag": "v1.4.2"}],
              "acceptedMediaTypes": ["application/vnd.docker.distribution.manifest.v2+json",
                                     "application/vnd.oci.image.manifest.v1+json"]},
             ip=sm, ua=sm, read_only=True, tls=False)
    ecr_call(sec(t, 1), sess.ident(sm), "BatchCheckLayerAvailability",
             {"repositoryName": ECR_REPO, "registryId": ACCOUNT, "layerDigests": LAYERS[:3]},
             ip=sm, ua=sm, read_only=True, tls=False)
    for d in LAYERS:
        t = sec(t, R.uniform(0.2, 2))
        ecr_call(t, sess.ident(sm), "GetDownloadUrlForLayer",
                 {"repositoryName": ECR_REPO, "registryId": ACCOUNT, "layerDigest": d},
                 ip=sm, ua=sm, read_only=True, tls=False)
    t = sec(t, 40)
    logs_call(t, sess.ident(sm), "CreateLogStream",
              {"logGroupName": "/aws/sagemaker/TrainingJobs",
               "logStreamName": f"{job}/algo-1-{epoch(t)}"},
              ip=sm, ua=sm, read_only=False, tls=False)
    ip = f"10.20.{R.choice([21, 22])}.{R.randint(10, 250)}"
    t = sec(t, 20)
    emit(t, sess.ident(), "ssm.amazonaws.com", "GetParameter", ip=NAT_IP, ua=UA_TRAINING,
         req={"name": "/ml/training/config", "withDecryption": True}, read_only=True)
    emit(t, sess.ident("ssm.amazonaws.com"), "kms.amazonaws.com", "Decrypt",
         ip="ssm.amazonaws.com", ua="ssm.amazonaws.com", tls_host=None, read_only=True,
         req={"encryptionContext": {
             "PARAMETER_ARN": f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/ml/training/config"},
             "encryptionAlgorithm": "SYMMETRIC_DEFAULT"},
         resources=[{"accountId": ACCOUNT, "type": "AWS::KMS::Key", "ARN": KEY_AWS_SSM}])
    t = sec(t, 1)
    names = ["/ml/training/hyperparams", "/ml/training/feature-list", "ml/shared/s3-layout"]
    emit(t, sess.ident(), "ssm.amazonaws.com", "GetParameters", ip=NAT_IP, ua=UA_TRAINING,
         req={"names": names, "withDecryption": False}, read_only=True,
         resources=[{"ARN": f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/{n.lstrip('/')}",
                     "accountId": ACCOUNT} for n in names])
    t = sec(t, 1)
    for secret_id, arn in ((SECRET_WANDB, SECRET_WANDB_ARN), (SECRET_HF_ARN, SECRET_HF_ARN)):
        t = sec(t, 1)
        emit(t, sess.ident(), "secretsmanager.amazonaws.com", "GetSecretValue", ip=NAT_IP,
             ua=UA_TRAINING, req={"secretId": secret_id}, read_only=True)
        emit(t, sess.ident("secretsmanager.amazonaws.com"), "kms.amazonaws.com", "Decrypt",
             ip="secretsmanager.amazonaws.com", ua="secretsmanager.amazonaws.com",
             tls_host=None, read_only=True,
             req={"encryptionAlgorithm": "SYMMETRIC_DEFAULT",
                  "encryptionContext": {"SecretARN": arn,
                                        "SecretVersionId": "3f1c2e9a-7b4d-4c8e-9a1f-2d3e4f5a6b7c"}},
             resources=[{"accountId": ACCOUNT, "type": "AWS::KMS::Key",
                         "ARN": KEY_AWS_SECRETSMANAGER}])
    ua_s3 = f"[{UA_TRAINING}]"
    dday = prev_days(day, 1)[0]
    t = sec(t, 5)
    list_objects(t, sess, DATASETS, f"datasets/churn/{dday.isoformat()}/", ip=ip, ua=ua_s3,
                 vpce=True)
    for part in R.sample(range(16), 10):
        t = sec(t, R.uniform(0.5, 4))
        get_object(t, sess, DATASETS, dataset_key(dday, part), ip=ip, ua=ua_s3, vpce=True)
    t = sec(t, R.randint(900, 2400))
    put_object(t, sess, ARTIFACTS, f"models/{job}/output/metrics.json", ip=ip, ua=ua_s3,
               vpce=True, explicit_sse=False, size=R.randint(600, 2400))
    t = sec(t, 30)
    multipart_upload(t, sess, ARTIFACTS, f"models/{job}/output/model.tar.gz", 3, ip=ip,
                     ua=f"[{UA_TRAINING_S3T}]")
    put_object(sec(t, 20), sess, ARTIFACTS, f"models/{job}/output/_SUCCESS", ip=ip, ua=ua_s3,
               vpce=True, explicit_sse=False, size=0)
    if not REENCRYPT_DONE[0]:
        REENCRYPT_DONE[0] = True
        emit(sec(t, 25), sess.ident(), "kms.amazonaws.com", "ReEncrypt", ip=NAT_IP,
             ua=UA_TRAINING, read_only=True,
             req={"sourceKeyId": KEY_DATASETS, "destinationKeyId": KEY_ARTIFACTS,
                  "sourceEncryptionAlgorithm": "SYMMETRIC_DEFAULT",
                  "destinationEncryptionAlgorithm": "SYMMETRIC_DEFAULT"},
             resources=[{"accountId": ACCOUNT, "type": "AWS::KMS::Key", "ARN": KEY_DATASETS},
                        {"accountId": ACCOUNT, "type": "AWS::KMS::Key", "ARN": KEY_ARTIFACTS}])


def nq(user: str) -> str:
    # The SAML nameQualifier (and identityProvider): base64(SHA1(issuer + account + "/" + idp)).
    raw = hashlib.sha1(f"{SAML_ISSUER}{ACCOUNT}/AcmeOkta".encode()).digest()
    return base64.b64encode(raw).decode()


def saml_login(t: dt.datetime, user: str, console: bool) -> Session:
    ip = SCIENTISTS[user][0]
    akid = asia()
    q = nq(user)
    emit(
        t,
        {"type": "SAMLUser", "principalId": f"{q}:{user}", "userName": user,
         "identityProvider": q},
        "sts.amazonaws.com", "AssumeRoleWithSAML", ip=ip,
        ua=UA_CONSOLE_JAVA if console else UA_SAML2AWS, read_only=True,
        tls_host=None if console else "sts.amazonaws.com",
        req={"sAMLAssertionID": "id" + hexs(32), "roleSessionName": user,
             "durationSeconds": 28800 if console else 3600, "roleArn": SCIENTIST.arn,
             "principalArn": SAML_PROVIDER},
        resp={
            "subjectType": "persistent",
            "issuer": SAML_ISSUER,
            "credentials": {"accessKeyId": akid, "sessionToken": session_token(),
                            "expiration": expiration(sec(t, 28800 if console else 3600))},
            "nameQualifier": q,
            "assumedRoleUser": {"assumedRoleId": f"{SCIENTIST.id}:{user}",
                                "arn": f"arn:aws:sts::{ACCOUNT}:assumed-role/{SCIENTIST.name}/{user}"},
            "subject": user,
            "audience": "https://signin.aws.amazon.com/saml",
        },
        resources=[{"accountId": ACCOUNT, "type": "AWS::IAM::Role", "ARN": SCIENTIST.arn},
                   {"accountId": ACCOUNT, "type": "AWS::IAM::SAMLProvider", "ARN": SAML_PROVIDER}],
    )
    sess = Session(SCIENTIST, user, t, akid)
    if console:
        emit(
            sec(t, 1), {k: v for k, v in sess.ident().items() if k != "accessKeyId"},
            "signin.amazonaws.com", "ConsoleLogin", ip=ip, ua=UA_BROWSER, read_only=False,
            req=None, resp={"ConsoleLogin": "Success"},
            extra={"LoginTo": "https://console.aws.amazon.com/console/home?region=us-east-1",
                   "MobileVersion": "No", "MFAUsed": "No", "SamlProviderArn": SAML_PROVIDER},
            event_type="AwsConsoleSignIn", tls_host="signin.aws.amazon.com",
            request_id=False,
        )
    return sess


DENIED: Counter[tuple[str, str]] = Counter()
APPEARANCES: Counter[str] = Counter()


def scientist_day(day: dt.date, di: int) -> None:
    users = list(SCIENTISTS)
    todays = [users[di % 3], users[(di + 1) % 3]] if day.weekday() < 5 else []
    for ui, user in enumerate(todays):
        APPEARANCES[user] += 1
        nth = APPEARANCES[user]
        ip = SCIENTISTS[user][0]
        t0 = at(day, 9 + 3 * ui, R.randint(0, 50), R.randint(0, 59))
        # console session
        c = saml_login(t0, user, console=True)
        t = sec(t0, 20)
        emit(t, c.ident(), "s3.amazonaws.com", "ListBuckets", ip=ip, ua=UA_S3_CONSOLE,
             req={"Host": f"s3.{REGION}.amazonaws.com"}, read_only=True, console=True,
             extra={"SignatureVersion": "SigV4", "CipherSuite": "TLS_AES_128_GCM_SHA256",
                    "bytesTransferredIn": 0, "AuthenticationMethod": "AuthHeader",
                    "x-amz-id-2": amz_id_2(), "bytesTransferredOut": R.randint(900, 1400)},
             request_id=s3_request_id(), tls_host=f"s3.{REGION}.amazonaws.com")
        t = sec(t, 8)
        dday = R.choice(prev_days(day, 3))
        list_objects(t, c, DATASETS, f"datasets/churn/{dday.isoformat()}/", ip=ip,
                     ua=UA_S3_CONSOLE, vpce=False, v2=True, console=True)
        t = sec(t, 30)
        emit(t, c.ident(), "sagemaker.amazonaws.com", "ListNotebookInstances", ip=ip,
             ua=UA_CONSOLE_JAVA, req={"maxResults": 50}, read_only=True, console=True,
             tls_host=f"api.sagemaker.{REGION}.amazonaws.com")
        t = sec(t, 12)
        emit(t, c.ident(), "sagemaker.amazonaws.com", "CreatePresignedNotebookInstanceUrl",
             ip=ip, ua=UA_CONSOLE_JAVA, read_only=False, console=True,
             req={"notebookInstanceName": NOTEBOOK_INSTANCE,
                  "sessionExpirationDurationInSeconds": 43200},
             resp={"authorizedUrl": "HIDDEN_DUE_TO_SECURITY_REASONS"},
             tls_host=f"api.sagemaker.{REGION}.amazonaws.com")
        # Athena from the console: Glue + S3 through Athena on the caller's behalf
        t = sec(t, R.randint(200, 900))
        emit(t, c.ident(), "glue.amazonaws.com", "GetDatabase", ip=ip, ua=UA_CONSOLE_JAVA,
             req={"name": "ml_features"}, read_only=True, console=True)
        emit(sec(t, 1), c.ident(), "glue.amazonaws.com", "GetTable", ip=ip,
             ua=UA_CONSOLE_JAVA, req={"databaseName": "ml_features", "name": "churn_daily"},
             read_only=True, console=True)
        t = sec(t, 25)
        qid = uuid4()
        emit(t, c.ident(), "athena.amazonaws.com", "StartQueryExecution", ip=ip,
             ua=UA_CONSOLE_JAVA, read_only=False, console=True,
             req={"queryString": "SELECT customer_id, churn_score FROM churn_daily "
                                 f"WHERE dt = '{dday.isoformat()}' LIMIT 100",
                  "clientRequestToken": uuid4(),
                  "queryExecutionContext": {"database": "ml_features",
                                            "catalog": "AwsDataCatalog"},
                  "resultConfiguration": {"outputLocation": f"s3://{SCRATCH}/athena-results/"},
                  "workGroup": "primary"},
             resp={"queryExecutionId": qid})
        ath = "athena.amazonaws.com"
        emit(sec(t, 1), c.ident(ath), "glue.amazonaws.com", "GetTable", ip=ath, ua=ath,
             req={"databaseName": "ml_features", "name": "churn_daily"}, read_only=True,
             tls_host=None)
        for part in R.sample(range(16), 2):
            get_object(sec(t, 2), c, DATASETS, dataset_key(dday, part), ip=ath, ua=ath,
                       vpce=False, invoked_by=ath)
        put_object(sec(t, 4), c, SCRATCH, f"athena-results/{qid}.csv", ip=ath, ua=ath,
                   vpce=False, explicit_sse=False, invoked_by=ath, size=R.randint(3000, 9000))
        # CLI session from the laptop (saml2aws)
        t = sec(t0, R.randint(3600, 7200))
        cli = saml_login(t, user, console=False)
        t = sec(t, 4)
        emit(t, cli.ident(), "sts.amazonaws.com", "GetCallerIdentity", ip=ip,
             ua=ds_cli_ua(user, "sts.get-caller-identity"), read_only=True,
             tls_host="sts.us-east-1.amazonaws.com")
        for part in R.sample(range(16), R.randint(2, 4)):
            t = sec(t, R.uniform(1, 6))
            get_object(t, cli, DATASETS, dataset_key(dday, part), ip=ip,
                       ua=f"[{ds_cli_ua(user, 's3.cp')}]", vpce=False)
        t = sec(t, 40)
        src_key = dataset_key(dday, R.randint(0, 15))
        dst_key = f"{user.split('@')[0]}/samples/{src_key.split('/')[-2]}-{src_key.split('/')[-1]}"
        s3_event(
            t, cli, "CopyObject", SCRATCH, dst_key, ip=ip,
            ua=f"[{ds_cli_ua(user, 's3.cp')}]", vpce=False, read_only=False,
            req_extra={"x-amz-copy-source": f"{DATASETS}/{src_key}"},
            resp={"x-amz-server-side-encryption": "AES256"}, sse="Default_SSE_S3",
            resources=s3_resources(SCRATCH, dst_key) + s3_resources(DATASETS, src_key),
        )
        kms_by_s3(t, cli, "Decrypt", DATASETS, src_key, KEY_DATASETS)
        if user == "jane@acme.example" and nth in (1, 4):
            t = sec(t, 90)
            s3_event(
                t, cli, "PutBucketPolicy", DATASETS, None, ip=ip,
                ua=f"[{ds_cli_ua(user, 's3api.put-bucket-policy')}]", vpce=False,
                read_only=False, data=False,
                req_extra={"bucketPolicy": {"Version": "2012-10-17", "Statement": [{
                    "Sid": "ScratchRead", "Effect": "Allow",
                    "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
                    "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{DATASETS}/*"}]},
                    "policy": ""},
                error=("AccessDenied",
                       f"User: arn:aws:sts::{ACCOUNT}:assumed-role/data-scientist/{user} is not "
                       f"authorized to perform: s3:PutBucketPolicy on resource: "
                       f"\"arn:aws:s3:::{DATASETS}\" because no identity-based policy allows "
                       f"the s3:PutBucketPolicy action"),
            )
            DENIED[(SCIENTIST.arn, "s3:PutBucketPolicy")] += 1
        if user == "raj@acme.example" and nth == 3:
            t = sec(t, 60)
            emit(t, cli.ident(), "iam.amazonaws.com", "CreateAccessKey", ip=ip,
                 ua=ds_cli_ua(user, "iam.create-access-key"), read_only=False,
                 req={"userName": "raj"},
                 error=("AccessDenied",
                        f"User: arn:aws:sts::{ACCOUNT}:assumed-role/data-scientist/{user} is not "
                        "authorized to perform: iam:CreateAccessKey on resource: user raj because "
                        "no identity-based policy allows the iam:CreateAccessKey action"),
                 tls_host="iam.amazonaws.com")
            DENIED[(SCIENTIST.arn, "iam:CreateAccessKey")] += 1


def lambda_call(t: dt.datetime, name: str, req: Any, resp: Any = None, *, region: str,
                read_only: bool, cmd: str) -> None:
    emit(t, ci_ident(), "lambda.amazonaws.com", name, region=region, ip=CI_IP,
         ua=UA_CI_CLI.format(cmd=cmd), req=req, resp=resp, read_only=read_only,
         apiVersion="2015-03-31")


def fn_arn(region: str) -> str:
    return f"arn:aws:lambda:{region}:{ACCOUNT}:function:{FUNCTION}"


def lambda_config(region: str, version: str, sha: str) -> dict[str, Any]:
    return {
        "functionName": FUNCTION,
        "functionArn": fn_arn(region) + ("" if version == "$LATEST" else f":{version}"),
        "runtime": "python3.12",
        "role": f"arn:aws:iam::{ACCOUNT}:role/service-role/churn-score-exec",
        "handler": "app.handler",
        "codeSize": 18_734_112,
        "description": "",
        "timeout": 30,
        "memorySize": 1024,
        "codeSha256": sha,
        "version": version,
        "tracingConfig": {"mode": "PassThrough"},
        "revisionId": uuid4(),
        "state": "Active",
        "lastUpdateStatus": "InProgress" if version == "$LATEST" else "Successful",
        "packageType": "Zip",
        "architectures": ["x86_64"],
        "ephemeralStorage": {"size": 512},
        "loggingConfig": {"logFormat": "Text", "logGroup": f"/aws/lambda/{FUNCTION}"},
    }


VERSIONS = {REGION: 6, EU_REGION: 3}


def ci_deploy(t: dt.datetime, region: str) -> dt.datetime:
    sha = base64.b64encode(R.randbytes(32)).decode()
    lambda_call(t, "GetFunction20150331v2", {"functionName": FUNCTION}, region=region,
                read_only=True, cmd="lambda.get-function")
    t = sec(t, 3)
    lambda_call(
        t, "UpdateFunctionCode20150331v2",
        {"fullyQualifiedArn": {"arnPrefix": {"partition": "aws", "region": region,
                                             "account": ACCOUNT},
                               "relativeId": {"functionName": FUNCTION},
                               "functionQualifier": {}},
         "functionName": fn_arn(region), "publish": False, "dryRun": False},
        lambda_config(region, "$LATEST", sha), region=region, read_only=False,
        cmd="lambda.update-function-code",
    )
    t = sec(t, 9)
    lambda_call(t, "UpdateFunctionConfiguration20150331v2",
                {"functionName": FUNCTION, "timeout": 30, "memorySize": 1024},
                lambda_config(region, "$LATEST", sha), region=region, read_only=False,
                cmd="lambda.update-function-configuration")
    t = sec(t, 12)
    VERSIONS[region] += 1
    lambda_call(t, "PublishVersion20150331",
                {"functionName": FUNCTION, "description": f"build {t.strftime('%Y%m%d.%H%M')}"},
                lambda_config(region, str(VERSIONS[region]), sha), region=region,
                read_only=False, cmd="lambda.publish-version")
    for _ in range(R.randint(2, 4)):
        t = sec(t, R.uniform(1, 4))
        emit(t, ci_ident(), "lambda.amazonaws.com", "Invoke", region=region, ip=CI_IP,
             ua=UA_CI_CLI.format(cmd="lambda.invoke"), read_only=False, data=True,
             req={"functionName": fn_arn(region), "invocationType": "RequestResponse",
                  "logType": "None"},
             extra={"functionVersion": f"{fn_arn(region)}:$LATEST"},
             resources=[{"accountId": ACCOUNT, "type": "AWS::Lambda::Function",
                         "ARN": fn_arn(region)}])
    return t


def ci_day(day: dt.date, di: int) -> None:
    if day.weekday() >= 5:
        return
    t = at(day, 13, R.randint(0, 40), R.randint(0, 59))
    emit(t, ci_ident(), "sts.amazonaws.com", "GetCallerIdentity", ip=CI_IP,
         ua=UA_CI_CLI.format(cmd="sts.get-caller-identity"), read_only=True,
         tls_host="sts.us-east-1.amazonaws.com")
    t = sec(t, 5)
    ecr_call(t, ci_ident(), "GetAuthorizationToken", None, ip=CI_IP,
             ua=UA_CI_CLI.format(cmd="ecr.get-login-password"), read_only=True, repo=False)
    if di % 2 == 0:  # image build and push
        t = sec(t, 200)
        ecr_call(t, ci_ident(), "BatchCheckLayerAvailability",
                 {"repositoryName": ECR_REPO, "registryId": ACCOUNT, "layerDigests": LAYERS},
                 ip=CI_IP, ua=UA_DOCKER_ECR, read_only=True)
        for li in range(2):
            t = sec(t, 2)
            upload = uuid4()
            ecr_call(t, ci_ident(), "InitiateLayerUpload",
                     {"repositoryName": ECR_REPO, "registryId": ACCOUNT},
                     {"uploadId": upload, "partSize": 20_971_520},
                     ip=CI_IP, ua=UA_DOCKER_ECR, read_only=False)
            ecr_call(sec(t, 3), ci_ident(), "UploadLayerPart",
                     {"repositoryName": ECR_REPO, "registryId": ACCOUNT, "uploadId": upload,
                      "partFirstByte": 0, "partLastByte": R.randint(4_000_000, 20_000_000)},
                     ip=CI_IP, ua=UA_DOCKER_ECR, read_only=False)
            digest = f"sha256:{hexs(64)}"
            ecr_call(sec(t, 6), ci_ident(), "CompleteLayerUpload",
                     {"repositoryName": ECR_REPO, "registryId": ACCOUNT, "uploadId": upload,
                      "layerDigests": [digest]},
                     {"registryId": ACCOUNT, "repositoryName": ECR_REPO, "uploadId": upload,
                      "layerDigest": digest},
                     ip=CI_IP, ua=UA_DOCKER_ECR, read_only=False)
        t = sec(t, 12)
        tag = f"v1.4.{2 + di}"
        ecr_call(t, ci_ident(), "PutImage",
                 {"repositoryName": ECR_REPO, "registryId": ACCOUNT, "imageTag": tag,
                  "imageManifestMediaType": "application/vnd.docker.distribution.manifest.v2+json",
                  "imageManifest": json.dumps({"schemaVersion": 2, "mediaType":
                      "application/vnd.docker.distribution.manifest.v2+json",
                      "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                                 "size": 7023, "digest": f"sha256:{hexs(64)}"}})},
                 {"image": {"registryId": ACCOUNT, "repositoryName": ECR_REPO,
                            "imageId": {"imageDigest": f"sha256:{hexs(64)}", "imageTag": tag}}},
                 ip=CI_IP, ua=UA_DOCKER_ECR, read_only=False)
    t = sec(t, 60)
    emit(t, ci_ident(), "cloudformation.amazonaws.com", "DescribeStacks", ip=CI_IP,
         ua=UA_CI_BOTO, req={"stackName": "ml-serving-churn-score"}, read_only=True)
    t = sec(t, 10)
    if di in (0, 4, 8):
        lambda_call(t, "ListFunctions20150331", None, region=REGION, read_only=True,
                    cmd="lambda.list-functions")
    t = ci_deploy(sec(t, 4), REGION)
    if di == 1:
        t = sec(t, 20)
        lambda_call(t, "AddPermission20150331v2",
                    {"functionName": FUNCTION, "statementId": "apigw-invoke-score",
                     "action": "lambda:InvokeFunction", "principal": "apigateway.amazonaws.com",
                     "sourceArn": f"arn:aws:execute-api:{REGION}:{ACCOUNT}:a1b2c3d4e5/*/POST/score"},
                    {"statement": "HIDDEN_DUE_TO_SECURITY_REASONS"}, region=REGION,
                    read_only=False, cmd="lambda.add-permission")
    if di in (1, 6, 12):  # also roll out to Europe
        t = sec(t, 30)
        emit(t, ci_ident(), "sts.amazonaws.com", "GetCallerIdentity", region=EU_REGION,
             ip=CI_IP, ua=UA_CI_CLI.format(cmd="sts.get-caller-identity"), read_only=True,
             tls_host="sts.eu-west-1.amazonaws.com")
        emit(sec(t, 2), ci_ident(), "cloudformation.amazonaws.com", "DescribeStacks",
             region=EU_REGION, ip=CI_IP, ua=UA_CI_BOTO,
             req={"stackName": "ml-serving-churn-score"}, read_only=True)
        ci_deploy(sec(t, 5), EU_REGION)
    if di == 5:
        t = sec(t, 120)
        emit(t, ci_ident(), "ec2.amazonaws.com", "RunInstances", ip=CI_IP,
             ua=UA_CI_CLI.format(cmd="ec2.run-instances"), read_only=False,
             error=("Client.DryRunOperation",
                    "Request would have succeeded, but DryRun flag is set."),
             req={"instancesSet": {"items": [{"imageId": "ami-0a1b2c3d4e5f67890",
                                              "minCount": 1, "maxCount": 1}]},
                  "instanceType": "g5.xlarge", "blockDeviceMapping": {},
                  "monitoring": {"enabled": False}, "disableApiTermination": False,
                  "disableApiStop": False, "clientToken": uuid4(),
                  "subnetId": "subnet-0a1b2c3d4e5f60711"})
    if di == 11:
        t = sec(t, 150)
        iid = "i-0f1e2d3c4b5a69788"
        enc = base64.urlsafe_b64encode(R.randbytes(420)).decode().rstrip("=")
        emit(t, ci_ident(), "ec2.amazonaws.com", "TerminateInstances", ip=CI_IP,
             ua=UA_CI_CLI.format(cmd="ec2.terminate-instances"), read_only=False,
             error=("Client.UnauthorizedOperation",
                    f"You are not authorized to perform this operation. User: {CI_USER_ARN} is "
                    f"not authorized to perform: ec2:TerminateInstances on resource: "
                    f"arn:aws:ec2:{REGION}:{ACCOUNT}:instance/{iid} with an explicit deny in an "
                    f"identity-based policy. Encoded authorization failure message: {enc}"),
             req={"instancesSet": {"items": [{"instanceId": iid}]}})
        DENIED[(CI_USER_ARN, "ec2:TerminateInstances")] += 1


def partner_day(day: dt.date, di: int) -> None:
    if day.weekday() not in (0, 3):  # Mondays and Thursdays
        return
    t = at(day, 6, R.randint(0, 30), R.randint(0, 59))
    sess = Session(PARTNER, f"partner-etl-{epoch(t)}", sec(t, -2), "ASIA3PRTNR" + rand_str(10))
    week = max(d for d in DAYS if d <= day and d.weekday() == 0) if day >= DAYS[4] else DAYS[0]
    prefix = f"exports/weekly/{week.isoformat()}/"
    list_objects(t, sess, ARTIFACTS, prefix, ip=PARTNER_IP, ua=UA_PARTNER, vpce=False)
    for i in range(4):
        t = sec(t, R.uniform(1, 5))
        get_object(t, sess, ARTIFACTS, f"{prefix}predictions-{i:03d}.parquet", ip=PARTNER_IP,
                   ua=UA_PARTNER, vpce=False)


def noise() -> None:
    # root signs in once to look at billing
    t = at(DAYS[6], 16, 2, 11)
    emit(t, {"type": "Root", "principalId": ACCOUNT, "arn": f"arn:aws:iam::{ACCOUNT}:root",
             "accountId": ACCOUNT, "accessKeyId": ""},
         "signin.amazonaws.com", "ConsoleLogin", ip="198.51.100.5", ua=UA_BROWSER,
         read_only=False, resp={"ConsoleLogin": "Success"},
         extra={"LoginTo": "https://console.aws.amazon.com/console/home?state=hashArgs%23&isauthcode=true",
                "MobileVersion": "No", "MFAUsed": "Yes"},
         event_type="AwsConsoleSignIn", tls_host="signin.aws.amazon.com", request_id=False)
    # yearly rotation of the datasets key
    t = at(DAYS[3], 3, 17, 40)
    emit(t, {"accountId": ACCOUNT, "invokedBy": "kms.amazonaws.com"}, "kms.amazonaws.com",
         "RotateKey", ip="kms.amazonaws.com", ua="kms.amazonaws.com", read_only=False,
         tls_host=None, request_id=False,
         resources=[{"accountId": ACCOUNT, "type": "AWS::KMS::Key", "ARN": KEY_DATASETS}],
         event_type="AwsServiceEvent",
         serviceEventDetails={"keyOrigin": "AWS_KMS", "rotationType": "AUTOMATIC"})
    # SageMaker decrypts the notebook's ML storage volume key with its own service principal
    for d in (DAYS[0], DAYS[7]):
        t = at(d, 7, 58, 3)
        emit(t, service_ident("sagemaker.amazonaws.com"), "kms.amazonaws.com", "Decrypt",
             ip="sagemaker.amazonaws.com", ua="sagemaker.amazonaws.com", read_only=True,
             tls_host=None,
             req={"encryptionAlgorithm": "SYMMETRIC_DEFAULT",
                  "encryptionContext": {"aws:sagemaker:notebook-instance": NOTEBOOK_INSTANCE}},
             resources=[{"accountId": ACCOUNT, "type": "AWS::KMS::Key",
                         "ARN": KEY_AWS_SAGEMAKER_VOLUME}],
             sharedEventID=uuid4())


# ---------------------------------------------------------------------------- writers
def principal_of(r: dict[str, Any]) -> str:
    ui = r.get("userIdentity") or {}
    typ = ui.get("type")
    if typ == "AssumedRole":
        return ui["sessionContext"]["sessionIssuer"]["arn"]
    if typ in ("IAMUser", "Root"):
        return ui["arn"]
    if typ == "SAMLUser":
        return f"SAMLUser:{ui['userName']}"
    if typ == "AWSService":
        return f"AWSService:{ui['invokedBy']}"
    return f"(no type; {r['eventType']}):{ui.get('invokedBy')}"


def dumps_records(recs: list[dict[str, Any]]) -> bytes:
    return json.dumps({"Records": recs}, separators=(",", ":"), ensure_ascii=False).encode()


def gz(data: bytes) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=9) as f:
        f.write(data)
    return buf.getvalue()


WINDOWS = [(0, 10), (10, 14), (14, 24)]


def write_trail(root: Path) -> list[tuple[str, int]]:
    base = root / "AWSLogs" / ACCOUNT
    if base.exists():
        shutil.rmtree(base)
    groups: dict[tuple[str, dt.date, int], list[dict[str, Any]]] = defaultdict(list)
    for r in RECORDS:
        t = dt.datetime.strptime(r["eventTime"], "%Y-%m-%dT%H:%M:%SZ")
        w = next(i for i, (a, b) in enumerate(WINDOWS) if a <= t.hour < b)
        groups[(r["awsRegion"], t.date(), w)].append(r)
    written = []
    for (region, day, w) in sorted(groups):
        recs = sorted(groups[(region, day, w)], key=lambda r: r["eventTime"])
        last = dt.datetime.strptime(recs[-1]["eventTime"], "%Y-%m-%dT%H:%M:%SZ")
        deliver = last + dt.timedelta(minutes=5)
        deliver = deliver.replace(minute=deliver.minute - deliver.minute % 5, second=0)
        name = (f"{ACCOUNT}_CloudTrail_{region}_{deliver.strftime('%Y%m%dT%H%MZ')}_"
                f"{rand_str(16, ALNUM)}.json.gz")
        d = base / "CloudTrail" / region / f"{day.year}" / f"{day.month:02d}" / f"{day.day:02d}"
        d.mkdir(parents=True, exist_ok=True)
        (d / name).write_bytes(gz(dumps_records(recs)))
        written.append((str((d / name).relative_to(root)), len(recs)))
    return written


def lookup_resources(r: dict[str, Any]) -> list[dict[str, str]]:
    out = []
    for res in r.get("resources") or []:
        arn = res["ARN"]
        typ = res.get("type") or ("AWS::ECR::Repository" if ":ecr:" in arn else
                                  "AWS::SSM::Parameter" if ":ssm:" in arn else "")
        name = arn
        if typ == "AWS::Lambda::Function":
            name = arn.split(":function:")[1]
        elif typ == "AWS::ECR::Repository":
            name = arn.split(":repository/")[1]
        elif typ == "AWS::S3::Bucket":
            name = arn.split(":::")[1]
        out.append({"ResourceType": typ, "ResourceName": name})
    req = r.get("requestParameters") or {}
    if r["eventSource"] == "lambda.amazonaws.com" and not out and "functionName" in req:
        out.append({"ResourceType": "AWS::Lambda::Function",
                    "ResourceName": str(req["functionName"]).split(":function:")[-1]})
    return out


def username(r: dict[str, Any]) -> str:
    ui = r["userIdentity"]
    if ui.get("type") == "AssumedRole":
        return str(ui["arn"].rsplit("/", 1)[1])
    if ui.get("type") in ("IAMUser", "SAMLUser"):
        return str(ui["userName"])
    if ui.get("type") == "Root":
        return "root"
    return str(ui.get("invokedBy", ""))


def compact(r: dict[str, Any]) -> str:
    return json.dumps(r, separators=(",", ":"), ensure_ascii=False)


def extra_records() -> list[dict[str, Any]]:
    """Management + data records from 2026-10-15, after the trail period (not in any trail file)."""
    start = len(RECORDS)
    day = dt.date(2026, 10, 15)
    t = at(day, 9, 4, 10)
    sess = service_assume_role(t, NOTEBOOK, "sagemaker.amazonaws.com")
    sagemaker_call(sec(t, 40), sess, "DescribeNotebookInstance",
                   {"notebookInstanceName": NOTEBOOK_INSTANCE}, read_only=True)
    sagemaker_call(sec(t, 95), sess, "ListTrainingJobs",
                   {"maxResults": 10, "sortBy": "CreationTime", "sortOrder": "Descending",
                    "nameContains": "churn"}, read_only=True)
    get_object(sec(t, 130), sess, DATASETS, dataset_key(DAYS[-1], 3), ip="10.20.11.87",
               ua=f"[{UA_NOTEBOOK}]", vpce=True)
    get_object(sec(t, 131), sess, DATASETS, dataset_key(DAYS[-1], 4), ip="10.20.11.87",
               ua=f"[{UA_NOTEBOOK}]", vpce=True)
    t = at(day, 13, 21, 5)
    emit(t, ci_ident(), "sts.amazonaws.com", "GetCallerIdentity", ip=CI_IP,
         ua=UA_CI_CLI.format(cmd="sts.get-caller-identity"), read_only=True,
         tls_host="sts.us-east-1.amazonaws.com")
    ecr_call(sec(t, 5), ci_ident(), "GetAuthorizationToken", None, ip=CI_IP,
             ua=UA_CI_CLI.format(cmd="ecr.get-login-password"), read_only=True, repo=False)
    emit(sec(t, 60), ci_ident(), "cloudformation.amazonaws.com", "DescribeStacks", ip=CI_IP,
         ua=UA_CI_BOTO, req={"stackName": "ml-serving-churn-score"}, read_only=True)
    ci_deploy(sec(t, 80), REGION)
    extra = RECORDS[start:]
    del RECORDS[start:]
    EXTRA_BY_ID.update((r["eventID"], r) for r in extra)
    return extra


EXTRA_BY_ID: dict[str, dict[str, Any]] = {}


def pick(pred: Any, n: int, pool: list[dict[str, Any]]) -> list[dict[str, Any]]:
    cands = [r for r in pool if pred(r)]
    step = max(1, len(cands) // n)
    return cands[::step][:n]


OTHER_FORMATS: dict[str, dict[str, Any]] = {}


def write_other_formats(root: Path, extra: list[dict[str, Any]]) -> None:
    out = root / "other-formats"
    out.mkdir(parents=True, exist_ok=True)
    mgmt = [r for r in RECORDS if r["managementEvent"] and r["awsRegion"] == REGION]
    extra_mgmt = [r for r in extra if r["managementEvent"]]

    def is_p(arn: str) -> Any:
        return lambda r: principal_of(r) == arn

    # Console Event history, JSON download: management events only, newest first.
    eh = pick(is_p(SCIENTIST.arn), 10, mgmt) + pick(is_p(CI_USER_ARN), 6, mgmt) + extra_mgmt[:4]
    eh.sort(key=lambda r: r["eventTime"], reverse=True)
    (out / "event-history.json").write_text(
        json.dumps({"Records": eh}, indent=2, ensure_ascii=False) + "\n")
    # Console Event history, CSV download.
    ehc = (pick(is_p(NOTEBOOK.arn), 8, mgmt) + pick(is_p(TRAINING.arn), 6, mgmt)
           + pick(lambda r: r.get("errorCode") is not None, 4, mgmt) + extra_mgmt[4:7])
    ehc.sort(key=lambda r: r["eventTime"], reverse=True)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n", quoting=csv.QUOTE_ALL)
    w.writerow(["Event ID", "Event time", "User name", "Event name", "Event source",
                "Resources", "AWS access key", "AWS region", "Error code",
                "Source IP address", "Read-only", "CloudTrail event"])
    for r in ehc:
        res = lookup_resources(r)
        w.writerow([r["eventID"], r["eventTime"], username(r), r["eventName"], r["eventSource"],
                    json.dumps(res, separators=(",", ":")) if res else "",
                    r["userIdentity"].get("accessKeyId", ""), r["awsRegion"],
                    r.get("errorCode", ""), r["sourceIPAddress"],
                    "true" if r["readOnly"] else "false", compact(r)])
    (out / "event-history.csv").write_text(buf.getvalue())
    # aws cloudtrail lookup-events --lookup-attributes AttributeKey=Username,AttributeValue=ci-deployer
    le = pick(is_p(CI_USER_ARN), 20, mgmt) + [r for r in extra_mgmt if principal_of(r) == CI_USER_ARN]
    le.sort(key=lambda r: r["eventTime"], reverse=True)
    events = []
    for r in le:
        e: dict[str, Any] = {"EventId": r["eventID"], "EventName": r["eventName"],
                             "ReadOnly": "true" if r["readOnly"] else "false"}
        if r["userIdentity"].get("accessKeyId"):
            e["AccessKeyId"] = r["userIdentity"]["accessKeyId"]
        e["EventTime"] = r["eventTime"].replace("Z", "+00:00")
        e["EventSource"] = r["eventSource"]
        e["Username"] = username(r)
        e["Resources"] = lookup_resources(r)
        e["CloudTrailEvent"] = compact(r)
        events.append(e)
    (out / "lookup-events.json").write_text(json.dumps({"Events": events}, indent=4) + "\n")
    # JSON Lines and a bare JSON array (e.g. exported from a data lake): data events too.
    s3d = [r for r in RECORDS if r["eventSource"] == "s3.amazonaws.com" and not r["managementEvent"]]
    jl = (pick(is_p(NOTEBOOK.arn), 10, s3d) + pick(is_p(PARTNER.arn), 4, s3d)
          + pick(lambda r: r["eventSource"] == "kms.amazonaws.com"
                 and r["userIdentity"].get("invokedBy") == "s3.amazonaws.com", 6, RECORDS)
          + [r for r in extra if not r["managementEvent"]])
    (out / "records.jsonl").write_text("".join(compact(r) + "\n" for r in jl))
    arr = (pick(is_p(TRAINING.arn), 12, RECORDS)
           + pick(lambda r: r["eventName"] == "Invoke", 4, RECORDS)
           + pick(lambda r: r["eventType"] != "AwsApiCall"
                  or r["userIdentity"].get("type") == "AWSService", 4, RECORDS))
    (out / "records-array.json").write_text(json.dumps(arr, indent=2, ensure_ascii=False) + "\n")
    trail_ids = {r["eventID"] for r in RECORDS}
    for fname, recs in (("event-history.json", eh), ("event-history.csv", ehc),
                        ("lookup-events.json", le), ("records.jsonl", jl),
                        ("records-array.json", arr)):
        OTHER_FORMATS[fname] = {
            "records": len(recs),
            "in_trail": sum(r["eventID"] in trail_ids for r in recs),
            "only_here": [r["eventID"] for r in recs if r["eventID"] not in trail_ids],
        }


# ---------------------------------------------------------------------------- authz details
def pdoc(*stmts: dict[str, Any]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": list(stmts)}


ML_BUCKETS = [f"arn:aws:s3:::{b}" for b in (DATASETS, ARTIFACTS)]


def authz() -> dict[str, Any]:
    sm_trust = pdoc({"Effect": "Allow", "Principal": {"Service": "sagemaker.amazonaws.com"},
                     "Action": "sts:AssumeRole"})
    saml_trust = pdoc({"Effect": "Allow", "Principal": {"Federated": SAML_PROVIDER},
                       "Action": "sts:AssumeRoleWithSAML",
                       "Condition": {"StringEquals": {
                           "SAML:aud": "https://signin.aws.amazon.com/saml"}}})
    aws_pol = {
        "AmazonSageMakerFullAccess": ("ANPAJZ5IWYMXO5QDB4QOG", "v26", pdoc(
            {"Sid": "AllowAllNonAdminSageMakerActions", "Effect": "Allow",
             "Action": ["sagemaker:*"],
             "NotResource": ["arn:aws:sagemaker:*:*:domain/*",
                             "arn:aws:sagemaker:*:*:user-profile/*",
                             "arn:aws:sagemaker:*:*:app/*",
                             "arn:aws:sagemaker:*:*:flow-definition/*"]},
            {"Sid": "AllowSupportingServices", "Effect": "Allow",
             "Action": ["application-autoscaling:*", "cloudwatch:*", "ec2:Describe*",
                        "ec2:CreateNetworkInterface", "ec2:DeleteNetworkInterface",
                        "ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage",
                        "ecr:GetAuthorizationToken", "ecr:GetDownloadUrlForLayer",
                        "kms:DescribeKey", "kms:ListAliases", "logs:CreateLogGroup",
                        "logs:CreateLogStream", "logs:DescribeLogStreams", "logs:GetLogEvents",
                        "logs:PutLogEvents"],
             "Resource": "*"},
            {"Sid": "AllowSageMakerBuckets", "Effect": "Allow",
             "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
             "Resource": ["arn:aws:s3:::*SageMaker*", "arn:aws:s3:::*Sagemaker*",
                          "arn:aws:s3:::*sagemaker*"]},
            {"Sid": "AllowPassRoleToSageMaker", "Effect": "Allow", "Action": "iam:PassRole",
             "Resource": "arn:aws:iam::*:role/*",
             "Condition": {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}},
        )),
        "AmazonS3FullAccess": ("ANPAIFIR6V6BVTRAHWINE", "v2", pdoc(
            {"Effect": "Allow", "Action": ["s3:*", "s3-object-lambda:*"], "Resource": "*"})),
        "AmazonS3ReadOnlyAccess": ("ANPAIZTJ4DXE7G6AGAE6M", "v3", pdoc(
            {"Effect": "Allow", "Action": ["s3:Get*", "s3:List*", "s3:Describe*",
                                           "s3-object-lambda:Get*", "s3-object-lambda:List*"],
             "Resource": "*"})),
        "ReadOnlyAccess": ("ANPAILL3HVNFSB6DCOWYQ", "v121", pdoc(
            {"Sid": "ReadOnlyAccessAbbreviated", "Effect": "Allow",
             "Action": ["athena:Get*", "athena:List*", "ec2:Describe*", "ecr:Describe*",
                        "ecr:Get*", "ecr:List*", "glue:Get*", "glue:List*", "iam:Get*",
                        "iam:List*", "kms:Describe*", "kms:Get*", "kms:List*", "lambda:Get*",
                        "lambda:List*", "logs:Describe*", "logs:Get*", "s3:Get*", "s3:List*",
                        "sagemaker:Describe*", "sagemaker:List*", "sts:GetCallerIdentity"],
             "Resource": "*"})),
        "AdministratorAccess": ("ANPAIWMBCKSKIEE64ZLYK", "v1", pdoc(
            {"Effect": "Allow", "Action": "*", "Resource": "*"})),
    }
    arn_of = {n: f"arn:aws:iam::aws:policy/{n}" for n in aws_pol}
    boundary_arn = f"arn:aws:iam::{ACCOUNT}:policy/ml-workload-boundary"
    guard_arn = f"arn:aws:iam::{ACCOUNT}:policy/ci-deployer-guardrails"

    def role(r: Role, created: str, trust: dict[str, Any], managed: list[str],
             inline: list[tuple[str, dict[str, Any]]], last: str | None,
             boundary: str | None = None, profile: bool = False) -> dict[str, Any]:
        d: dict[str, Any] = {"Path": r.path, "RoleName": r.name, "RoleId": r.id, "Arn": r.arn,
                             "CreateDate": created, "AssumeRolePolicyDocument": trust,
                             "InstanceProfileList": [],
                             "RolePolicyList": [{"PolicyName": n, "PolicyDocument": p}
                                                for n, p in inline],
                             "AttachedManagedPolicies": [
                                 {"PolicyName": m.rsplit("/", 1)[1], "PolicyArn": m}
                                 for m in managed]}
        if boundary:
            d["PermissionsBoundary"] = {"PermissionsBoundaryType": "Policy",
                                        "PermissionsBoundaryArn": boundary}
        d["Tags"] = [{"Key": "team", "Value": "ml-platform"}]
        d["RoleLastUsed"] = {"LastUsedDate": last, "Region": REGION} if last else {}
        if profile:
            d["InstanceProfileList"] = [{
                "Path": "/", "InstanceProfileName": r.name, "InstanceProfileId": "AIPAWQ7BATCHWRKR2P4Q",
                "Arn": f"arn:aws:iam::{ACCOUNT}:instance-profile/{r.name}", "CreateDate": created,
                "Roles": [{"Path": r.path, "RoleName": r.name, "RoleId": r.id, "Arn": r.arn,
                           "CreateDate": created, "AssumeRolePolicyDocument": trust}]}]
        return d

    objs = [f"{b}/*" for b in ML_BUCKETS]
    batch = Role(ACCOUNT, "ml-batch-worker", "/", "AROAWQ7BATCH6WRKR1ROL")
    breakglass = Role(ACCOUNT, "break-glass-admin", "/", "AROAWQ7BRKGLS8ADMN3XZ")
    roles = [
        role(NOTEBOOK, "2026-03-02T10:14:07Z", sm_trust, [arn_of["AmazonSageMakerFullAccess"]],
             [("ml-buckets-s3", pdoc({"Sid": "MlBucketsAll", "Effect": "Allow", "Action": "s3:*",
                                      "Resource": ML_BUCKETS + objs})),
              ("ml-kms-keys", pdoc({"Sid": "MlKeys", "Effect": "Allow",
                                    "Action": ["kms:Decrypt", "kms:GenerateDataKey*",
                                               "kms:DescribeKey"],
                                    "Resource": [KEY_DATASETS, KEY_ARTIFACTS]}))],
             "2026-10-14T17:41:00Z"),
        role(TRAINING, "2026-03-02T10:20:51Z", sm_trust, [arn_of["AmazonS3FullAccess"]],
             [("training-kms", pdoc({"Sid": "KmsForMlData", "Effect": "Allow",
                                     "Action": ["kms:Decrypt", "kms:Encrypt",
                                                "kms:GenerateDataKey*", "kms:ReEncrypt*",
                                                "kms:DescribeKey", "kms:CreateGrant"],
                                     "Resource": "*"})),
              ("training-runtime", pdoc(
                  {"Sid": "PullImages", "Effect": "Allow", "Action": "ecr:*", "Resource": "*"},
                  {"Sid": "Logs", "Effect": "Allow", "Action": "logs:*",
                   "Resource": f"arn:aws:logs:*:{ACCOUNT}:log-group:/aws/sagemaker/*"},
                  {"Sid": "Config", "Effect": "Allow",
                   "Action": ["ssm:GetParameter*", "secretsmanager:GetSecretValue"],
                   "Resource": "*"}))],
             "2026-10-14T16:02:00Z", boundary=boundary_arn),
        role(SCIENTIST, "2026-02-11T08:00:12Z", saml_trust, [arn_of["ReadOnlyAccess"]],
             [("sagemaker-all", pdoc({"Effect": "Allow", "Action": "sagemaker:*",
                                      "Resource": "*"})),
              ("analyst-workspace", pdoc(
                  {"Sid": "Athena", "Effect": "Allow", "Action": "athena:*", "Resource": "*"},
                  {"Sid": "Scratch", "Effect": "Allow",
                   "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:ListBucket"],
                   "Resource": [f"arn:aws:s3:::{SCRATCH}", f"arn:aws:s3:::{SCRATCH}/*"]},
                  {"Sid": "DatasetsKey", "Effect": "Allow", "Action": "kms:Decrypt",
                   "Resource": KEY_DATASETS}))],
             "2026-10-14T14:30:00Z"),
        role(batch, "2026-05-19T12:00:00Z",
             pdoc({"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"},
                   "Action": "sts:AssumeRole"}),
             [arn_of["AmazonS3ReadOnlyAccess"]], [], None, profile=True),
        role(breakglass, "2025-11-03T09:00:00Z",
             pdoc({"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
                   "Action": "sts:AssumeRole",
                   "Condition": {"Bool": {"aws:MultiFactorAuthPresent": "true"}}}),
             [arn_of["AdministratorAccess"]], [], None),
    ]
    users = [{
        "Path": "/", "UserName": "ci-deployer", "UserId": CI_USER_ID, "Arn": CI_USER_ARN,
        "CreateDate": "2026-01-20T15:33:02Z", "UserPolicyList": [], "GroupList": ["deployers"],
        "AttachedManagedPolicies": [{"PolicyName": "ci-deployer-guardrails",
                                     "PolicyArn": guard_arn}],
        "Tags": [{"Key": "purpose", "Value": "github-actions"}],
    }]
    groups = [{
        "Path": "/", "GroupName": "deployers", "GroupId": "AGPAWQ7DEPLOYERS5GRP9",
        "Arn": f"arn:aws:iam::{ACCOUNT}:group/deployers", "CreateDate": "2026-01-20T15:30:44Z",
        "GroupPolicyList": [{"PolicyName": "deployers-ecr-lambda", "PolicyDocument": pdoc(
            {"Sid": "Registry", "Effect": "Allow", "Action": "ecr:*", "Resource": "*"},
            {"Sid": "Functions", "Effect": "Allow", "Action": "lambda:*", "Resource": "*"})}],
        "AttachedManagedPolicies": [],
    }]
    guard_v1 = pdoc({"Effect": "Allow", "Action": ["cloudformation:Describe*", "ec2:Describe*"],
                     "Resource": "*"})
    guard_v2 = pdoc(
        {"Sid": "DenyOutsideDeployScope", "Effect": "Deny",
         "NotAction": ["ecr:*", "lambda:*", "cloudformation:Describe*", "cloudformation:List*",
                       "ec2:Describe*", "ec2:RunInstances", "sts:GetCallerIdentity"],
         "Resource": "*"},
        {"Sid": "StackReadsAndLaunchChecks", "Effect": "Allow",
         "Action": ["cloudformation:DescribeStacks", "ec2:Describe*", "ec2:RunInstances"],
         "Resource": "*"})
    boundary_doc = pdoc(
        {"Sid": "WorkloadCeiling", "Effect": "Allow",
         "Action": ["s3:*", "kms:Decrypt", "kms:GenerateDataKey*", "kms:ReEncrypt*",
                    "kms:DescribeKey", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer",
                    "ecr:BatchCheckLayerAvailability", "ecr:GetAuthorizationToken",
                    "logs:CreateLogStream", "logs:PutLogEvents", "logs:CreateLogGroup",
                    "logs:DescribeLogStreams", "ssm:GetParameter", "ssm:GetParameters",
                    "secretsmanager:GetSecretValue", "cloudwatch:PutMetricData"],
         "Resource": "*"},
        {"Sid": "NoIam", "Effect": "Deny", "Action": ["iam:*", "organizations:*"],
         "Resource": "*"})
    policies = []

    def policy(name: str, arn: str, pid: str, path: str, versions: list[tuple[str, str, Any]],
               attach: int, boundary_use: int, created: str, desc: str | None = None
               ) -> dict[str, Any]:
        p: dict[str, Any] = {"PolicyName": name, "PolicyId": pid, "Arn": arn, "Path": path,
                             "DefaultVersionId": versions[-1][0], "AttachmentCount": attach,
                             "PermissionsBoundaryUsageCount": boundary_use,
                             "IsAttachable": True, "CreateDate": created,
                             "UpdateDate": versions[-1][1]}
        if desc:
            p["Description"] = desc
        p["PolicyVersionList"] = [
            {"Document": doc, "VersionId": v, "IsDefaultVersion": v == versions[-1][0],
             "CreateDate": when} for v, when, doc in reversed(versions)]
        return p

    policies.append(policy("ci-deployer-guardrails", guard_arn, "ANPAWQ7CIGUARD4RAILS2",
                           "/", [("v1", "2026-01-20T15:35:10Z", guard_v1),
                                 ("v2", "2026-06-08T11:02:47Z", guard_v2)], 1, 0,
                           "2026-01-20T15:35:10Z", "Fence for the CI deployer"))
    policies.append(policy("ml-workload-boundary", boundary_arn, "ANPAWQ7MLBNDRY9WKLD5Q", "/",
                           [("v1", "2026-03-02T10:18:00Z", boundary_doc)], 0, 1,
                           "2026-03-02T10:18:00Z", "Permissions boundary for ML workload roles"))
    uses = Counter(m["PolicyArn"] for r in roles for m in r["AttachedManagedPolicies"])
    for n, (pid, ver, doc) in sorted(aws_pol.items()):
        policies.append(policy(n, arn_of[n], pid, "/", [(ver, "2026-08-01T00:00:00Z", doc)],
                               uses[arn_of[n]], 0, "2015-02-06T18:40:00Z"))
    return {"UserDetailList": users, "GroupDetailList": groups, "RoleDetailList": roles,
            "Policies": policies, "IsTruncated": False}


# ---------------------------------------------------------------------------- summary
def action_summary(trail_files: list[tuple[str, int]]) -> str:
    lines: list[str] = []
    p = lines.append
    total = len(RECORDS)
    p(f"trail files: {len(trail_files)}   trail records: {total}   "
      f"(regions: {dict(sorted(Counter(r['awsRegion'] for r in RECORDS).items()))})")
    p(f"data events: {sum(not r['managementEvent'] for r in RECORDS)}   "
      f"management events: {sum(bool(r['managementEvent']) for r in RECORDS)}")
    p(f"eventType: {dict(sorted(Counter(r['eventType'] for r in RECORDS).items()))}")
    by_p: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in RECORDS:
        by_p[principal_of(r)].append(r)
    for pr in sorted(by_p):
        recs = by_p[pr]
        p("")
        p(f"## {pr}  ({len(recs)} records)")
        cnt = Counter()
        for r in recs:
            inv = r["userIdentity"].get("invokedBy") if r["userIdentity"].get("type") != "AWSService" else None
            err = r.get("errorCode")
            tag = ""
            if inv:
                tag += f" invokedBy={inv}"
            if err:
                tag += f" error={err}"
            cnt[(r["eventSource"], r["eventName"], tag)] += 1
        for (src, name, tag), n in sorted(cnt.items()):
            p(f"  {src:32s} {name:40s} {n:5d}{tag}")
    p("")
    p("## denied attempts (AccessDenied / Client.UnauthorizedOperation)")
    for r in RECORDS:
        if r.get("errorCode") in ("AccessDenied", "Client.UnauthorizedOperation"):
            p(f"  {r['eventTime']} {principal_of(r)} {r['eventSource']} {r['eventName']} "
              f"{r['errorCode']} eventID={r['eventID']}")
    p("")
    p("## other errors (passed authorization; count as use)")
    for (pr, src, name, err), n in sorted(Counter(
            (principal_of(r), r["eventSource"], r["eventName"], r["errorCode"])
            for r in RECORDS if r.get("errorCode") not in (None, "AccessDenied",
                                                           "Client.UnauthorizedOperation")).items()):
        p(f"  {pr} {src} {name} {err} x{n}")
    p("")
    p("## S3 data events: bucket / principal / eventName / via endpoint / key prefixes")
    s3 = defaultdict(lambda: [0, 0, set()])
    for r in RECORDS:
        if r["eventSource"] == "s3.amazonaws.com" and not r["managementEvent"]:
            k = r["requestParameters"].get("key")
            pref = "/".join(k.split("/")[:-1]) + "/" if k else "(bucket)"
            if k and k.startswith("datasets/churn/20"):
                pref = "datasets/churn/YYYY-MM-DD/"
            if k and k.startswith("models/"):
                pref = "models/<job>/output/"
            if k and k.startswith(("jane/", "raj/", "li/")):
                pref = "<user>/samples/"
            if k and "/outputs/" in k:
                pref = f"notebooks/{NOTEBOOK_INSTANCE}/outputs/YYYY-MM-DD/"
            if k and k.startswith("datasets/churn/features/"):
                pref = "datasets/churn/features/YYYY-MM-DD/"
            if k and k.startswith("exports/weekly/"):
                pref = "exports/weekly/YYYY-MM-DD/"
            inv = r["userIdentity"].get("invokedBy", "-")
            e = s3[(r["requestParameters"]["bucketName"], principal_of(r), r["eventName"], inv,
                    "vpcEndpointId" in r)]
            e[0] += 1
            e[2].add(pref)
    for (b, pr, name, inv, v), (n, _, prefs) in sorted(s3.items()):
        p(f"  {b:18s} {pr:60s} {name:24s} x{n:<4d} vpce={'yes' if v else 'no '} "
          f"invokedBy={inv} prefixes={sorted(prefs)}")
    p("")
    p("## KMS: key / principal / invokedBy / eventName")
    km = Counter()
    for r in RECORDS:
        if r["eventSource"] == "kms.amazonaws.com":
            for res in r.get("resources", []):
                km[(res["ARN"].split("/")[-1], principal_of(r),
                    r["userIdentity"].get("invokedBy", "-"), r["eventName"])] += 1
    for (k, pr, inv, name), n in sorted(km.items()):
        p(f"  key/{k} {pr} invokedBy={inv} {name} x{n}")
    p("")
    p("## PutObject request SSE headers (x-amz-server-side-encryption in requestParameters)")
    po = Counter()
    for r in RECORDS:
        if r["eventName"] in ("PutObject", "CreateMultipartUpload"):
            rp = r["requestParameters"]
            po[(principal_of(r), r["eventName"], rp["bucketName"],
                "x-amz-server-side-encryption" in rp)] += 1
    for (pr, name, b, hdr), n in sorted(po.items()):
        p(f"  {pr} {name} {b} header={'yes' if hdr else 'no'} x{n}")
    p("")
    p("## other-formats/")
    for f, info in OTHER_FORMATS.items():
        p(f"  {f}: {info['records']} records, {info['in_trail']} also in the trail files, "
          f"{len(info['only_here'])} only here")
        for eid in info["only_here"]:
            r = EXTRA_BY_ID[eid]
            p(f"      only here: {eid} {r['eventTime']} {principal_of(r)} "
              f"{r['eventSource']} {r['eventName']}")
    p("")
    p("## trail files (path: records)")
    for path, n in trail_files:
        p(f"  {path}: {n}")
    return "\n".join(lines)


def main() -> int:
    for di, day in enumerate(DAYS):
        notebook_day(day, di)
        scientist_day(day, di)
        ci_day(day, di)
        partner_day(day, di)
    noise()
    RECORDS.sort(key=lambda r: r["eventTime"])  # stable: keeps emission order within a second
    extra = extra_records()
    files = write_trail(HERE)
    write_other_formats(HERE, extra)
    (HERE / "authz").mkdir(exist_ok=True)
    (HERE / "authz" / "account-authorization-details.json").write_text(
        json.dumps(authz(), indent=4) + "\n")
    ids = [r["eventID"] for r in RECORDS + extra]
    assert len(ids) == len(set(ids)), "duplicate eventID"
    summary = action_summary(files)
    print(summary)
    readme = HERE / "README.md"
    if readme.exists():
        text = readme.read_text()
        a, b = "<!-- BEGIN GENERATED SUMMARY -->", "<!-- END GENERATED SUMMARY -->"
        if a in text and b in text:
            head, rest = text.split(a, 1)
            _, tail = rest.split(b, 1)
            readme.write_text(f"{head}{a}\n```text\n{summary}\n```\n{b}{tail}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
