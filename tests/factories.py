"""Record factories: realistic CloudTrail records, decoded by msgspec like real input.

``make_record(**overrides)`` starts from an S3 ``GetObject`` data event made by an assumed-role
session (the shape documented in
https://docs.aws.amazon.com/AmazonS3/latest/userguide/cloudtrail-logging-understanding-s3-entries.html)
and replaces top-level fields; ``user_identity(kind)`` builds each ``userIdentity`` type
(https://docs.aws.amazon.com/awscloudtrail/latest/userguide/cloudtrail-event-reference-user-identity.html).
"""

from __future__ import annotations

import copy
import itertools
import json
from typing import Any

import msgspec

from iamtrim.sources.records import Record

ACCOUNT = "111122223333"
REGION = "us-east-1"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/service-role/TrainingRole"
SESSION_ARN = f"arn:aws:sts::{ACCOUNT}:assumed-role/TrainingRole/botocore-session-1"
USER_ARN = f"arn:aws:iam::{ACCOUNT}:user/division/alice"

_ids = itertools.count(1)


def user_identity(kind: str = "AssumedRole", **overrides: Any) -> dict[str, Any]:
    base: dict[str, Any]
    if kind == "AssumedRole":
        base = {
            "type": "AssumedRole",
            "principalId": "AROAEXAMPLEID:botocore-session-1",
            "arn": SESSION_ARN,
            "accountId": ACCOUNT,
            "accessKeyId": "ASIAEXAMPLE",
            "sessionContext": {
                "sessionIssuer": {
                    "type": "Role",
                    "principalId": "AROAEXAMPLEID",
                    "arn": ROLE_ARN,
                    "accountId": ACCOUNT,
                    "userName": "TrainingRole",
                },
                "attributes": {"creationDate": "2024-05-01T10:00:00Z", "mfaAuthenticated": "false"},
            },
        }
    elif kind == "IAMUser":
        base = {
            "type": "IAMUser",
            "principalId": "AIDAEXAMPLE",
            "arn": USER_ARN,
            "accountId": ACCOUNT,
            "accessKeyId": "AKIAEXAMPLE",
            "userName": "alice",
        }
    elif kind == "Root":
        base = {
            "type": "Root",
            "principalId": ACCOUNT,
            "arn": f"arn:aws:iam::{ACCOUNT}:root",
            "accountId": ACCOUNT,
        }
    elif kind == "FederatedUser":
        base = {
            "type": "FederatedUser",
            "principalId": f"{ACCOUNT}:bob",
            "arn": f"arn:aws:sts::{ACCOUNT}:federated-user/bob",
            "accountId": ACCOUNT,
            "sessionContext": {"sessionIssuer": {"type": "IAMUser", "arn": USER_ARN, "userName": "alice"}},
        }
    elif kind in ("SAMLUser", "WebIdentityUser"):
        base = {
            "type": kind,
            "principalId": "idp:carol",
            "userName": "carol",
            "identityProvider": "accounts.google.com" if kind == "WebIdentityUser" else "MySAML",
        }
    elif kind == "AWSService":
        base = {"type": "AWSService", "invokedBy": "config.amazonaws.com"}
    else:
        base = {"type": kind}
    base.update(overrides)
    return base


def sso_identity(permission_set: str = "DataScientist") -> dict[str, Any]:
    role = f"AWSReservedSSO_{permission_set}_0123456789abcdef"
    return user_identity(
        "AssumedRole",
        arn=f"arn:aws:sts::{ACCOUNT}:assumed-role/{role}/alice@example.com",
        sessionContext={
            "sessionIssuer": {
                "type": "Role",
                "arn": f"arn:aws:iam::{ACCOUNT}:role/aws-reserved/sso.amazonaws.com/{role}",
                "accountId": ACCOUNT,
                "userName": role,
            }
        },
    )


BASE_RECORD: dict[str, Any] = {
    "eventVersion": "1.09",
    "eventTime": "2024-05-01T12:00:00Z",
    "eventSource": "s3.amazonaws.com",
    "eventName": "GetObject",
    "awsRegion": REGION,
    "sourceIPAddress": "10.0.1.25",
    "userAgent": "[Boto3/1.34.0]",
    "requestParameters": {
        "bucketName": "ml-artifacts",
        "key": "models/v1/model.tar.gz",
        "Host": "ml-artifacts.s3.us-east-1.amazonaws.com",
    },
    "responseElements": None,
    "additionalEventData": {"SSEApplied": "SSE_KMS", "bytesTransferredOut": 1024},
    "requestID": "EXAMPLE123",
    "readOnly": True,
    "resources": [
        {"type": "AWS::S3::Object", "ARN": "arn:aws:s3:::ml-artifacts/models/v1/model.tar.gz"},
        {"accountId": ACCOUNT, "type": "AWS::S3::Bucket", "ARN": "arn:aws:s3:::ml-artifacts"},
    ],
    "eventType": "AwsApiCall",
    "managementEvent": False,
    "recipientAccountId": ACCOUNT,
    "eventCategory": "Data",
    "tlsDetails": {"tlsVersion": "TLSv1.3", "cipherSuite": "TLS_AES_128_GCM_SHA256"},
}


def make_record_dict(**overrides: Any) -> dict[str, Any]:
    """The raw JSON object of a record; ``None`` as an override value removes the field."""
    record = copy.deepcopy(BASE_RECORD)
    record["userIdentity"] = user_identity()
    record["eventID"] = f"00000000-0000-0000-0000-{next(_ids):012d}"
    for key, value in overrides.items():
        if value is None:
            record.pop(key, None)
        else:
            record[key] = value
    return record


def make_record(**overrides: Any) -> Record:
    """A ``Record`` decoded from JSON exactly as the file readers decode one."""
    return msgspec.json.decode(json.dumps(make_record_dict(**overrides)), type=Record)


def management_record_dict(
    event_source: str, event_name: str, request: Any, **overrides: Any
) -> dict[str, Any]:
    """The raw JSON object of a management call: no ``resources[]``, no ``additionalEventData``."""
    return make_record_dict(
        eventSource=event_source,
        eventName=event_name,
        requestParameters=request,
        resources=None,
        additionalEventData=None,
        eventCategory="Management",
        **overrides,
    )


def management_event(event_source: str, event_name: str, request: Any = None, **overrides: Any) -> Record:
    """A management event (no ``resources[]``, no S3 extras) for *event_source*/*event_name*."""
    fields: dict[str, Any] = {
        "eventSource": event_source,
        "eventName": event_name,
        "requestParameters": request,
        "resources": None,
        "additionalEventData": None,
        "eventCategory": "Management",
        "managementEvent": True,
    }
    fields.update(overrides)
    if request is None:
        fields["requestParameters"] = None
    record = make_record_dict(**{k: v for k, v in fields.items() if v is not None})
    for key, value in fields.items():
        if value is None:
            record[key] = None
    return msgspec.json.decode(json.dumps(record), type=Record)
