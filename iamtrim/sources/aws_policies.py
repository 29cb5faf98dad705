"""Current policies read from the account: IAM authorization details, bucket and key policies.

Raw responses stay here and in ``review/current.py`` (which already reads the same
``GetAccountAuthorizationDetails`` shape from a file); callers get ``CurrentPolicies`` and
``Policy`` values.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime

from iamtrim.aws import Aws
from iamtrim.errors import AwsError, PolicyError
from iamtrim.model.policy import Policy

__all__ = ["authorization_details", "bucket_policy", "key_policy"]

# Every entity type, and both kinds of managed policy: an attached AWS managed policy's document
# is only in the response when AWSManagedPolicy is asked for.
# https://docs.aws.amazon.com/IAM/latest/APIReference/API_GetAccountAuthorizationDetails.html
_AUTHZ_FILTER = ["User", "Role", "Group", "LocalManagedPolicy", "AWSManagedPolicy"]
_AUTHZ_LISTS = ("UserDetailList", "GroupDetailList", "RoleDetailList", "Policies")


def authorization_details(aws: Aws) -> dict[str, object]:
    """Every page of ``GetAccountAuthorizationDetails`` joined into one response (the shape of
    ``aws iam get-account-authorization-details`` output). boto3 returns the policy documents
    already URL-decoded and parsed."""
    joined: dict[str, list[object]] = {k: [] for k in _AUTHZ_LISTS}
    for page in aws.paginate("iam", "GetAccountAuthorizationDetails", Filter=_AUTHZ_FILTER):
        for key in _AUTHZ_LISTS:
            joined[key].extend(_dates_as_text(item) for item in page.get(key) or [])
    return {**joined, "IsTruncated": False}


def _dates_as_text(node: object) -> object:
    """boto3 parses timestamps (``CreateDate``) into datetimes; the AWS CLI writes them as ISO 8601
    text, which is what the file reader (and ``--min-age-days``) reads."""
    if isinstance(node, datetime):
        return node.isoformat()
    if isinstance(node, Mapping):
        return {k: _dates_as_text(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_dates_as_text(v) for v in node]
    return node


def _parse(text: object, name: str, where: str) -> Policy:
    try:
        return Policy.from_json(json.loads(str(text)), name=name)
    except ValueError as exc:
        raise AwsError(f"{where}: the policy AWS returned is not JSON: {exc}") from None
    except PolicyError as exc:
        raise AwsError(f"{where}: {exc}") from None


def bucket_policy(aws: Aws, bucket: str) -> Policy | None:
    """The bucket's current policy, or None when it has none (``NoSuchBucketPolicy``).
    https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetBucketPolicy.html"""
    out = aws.call(
        "s3",
        "GetBucketPolicy",
        Bucket=bucket,
        missing=frozenset({"NoSuchBucketPolicy"}),
        resource=f"arn:aws:s3:::{bucket}",
    )
    if out is None:
        return None
    return _parse(out["Policy"], f"current:{bucket}", f"s3://{bucket} bucket policy")


def key_policy(aws: Aws, key: str) -> tuple[str, Policy]:
    """The key's ARN and its current key policy. Every KMS key has exactly one key policy, named
    ``default``; a key id, alias or ARN is accepted (DescribeKey resolves it, in the key's region
    when an ARN is given).
    https://docs.aws.amazon.com/kms/latest/APIReference/API_GetKeyPolicy.html"""
    region = key.split(":")[3] if key.startswith("arn:") and key.count(":") >= 5 else ""
    described = aws.call("kms", "DescribeKey", region=region, KeyId=key, resource=key)
    assert described is not None
    meta: Mapping[str, object] = described["KeyMetadata"]
    arn = str(meta["Arn"])
    out = aws.call("kms", "GetKeyPolicy", region=region, KeyId=arn, PolicyName="default", resource=arn)
    assert out is not None
    return arn, _parse(out["Policy"], f"current:{arn}", f"{arn} key policy")
