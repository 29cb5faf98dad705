"""Normalization over every real record in $IAMTRIM_CORPUS/cloudtrail (read, never copied).

Measured (docs/mapping.md "Corpus results"): 1,008 records; the thresholds below are those
numbers with a little headroom, each with the reason the remainder cannot be resolved.
"""

from __future__ import annotations

import collections
import json
import re
from pathlib import Path

import pytest

from iamtrim import catalog
from iamtrim.model import Skipped, SkipReason, Usage
from iamtrim.normalize import apigateway, normalize_record
from iamtrim.sources import iter_input_files, read_file
from iamtrim.sources.records import Record

pytestmark = pytest.mark.corpus

# eventNames that no AWS API has: hand-edited Panther rule-test fixtures (an S3 call logged under
# ec2.amazonaws.com, "NotCreateUser", "DetachUserGroup", ...), plus two real ones the Service
# Authorization Reference has no action for: ec2messages:SendHeartbeat (an SSM Agent channel call,
# authorized with the instance's credentials but absent from
# https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonmessagedeliveryservice.html)
# and "DescribeTrail" (the API is DescribeTrails; the singular appears only in a fixture).
KNOWN_UNKNOWN_ACTIONS = frozenset(
    {
        "ec2:PutBucketVersioning",
        "ec2:DeleteBucketEncryption",
        "ec2:DeleteBucketPublicAccessBlock",
        "ec2:DeleteBucketReplication",
        "ec2:PutBucketLogging",
        "ec2:RegisterManagedInstance",
        "cloudtrail:DescribeTrail",
        "cloudtrail:DeleteRule",
        "cloudtrail:EnableRegion",
        "iam:PutPolicy",
        "iam:NotCreateUser",
        "iam:DescribePolicy",
        "iam:DetachUserGroup",
        "s3:CreateServiceLinkedRole",
        "s3:SetQueueAttributes",
        "ec2messages:SendHeartbeat",
    }
)
# macie.amazonaws.com is Amazon Macie Classic's endpoint (retired); the catalog only has macie2,
# whose CloudTrail source is macie2.amazonaws.com
# (https://docs.aws.amazon.com/eventbridge/latest/ref/events-ref-macie2.html).
KNOWN_UNKNOWN_SERVICES = frozenset({"macie.amazonaws.com"})

# Upper bounds per skip reason. Record-level reasons describe the corpus (Control Tower service
# traffic, console sign-ins, Stratus network-activity events), not iamtrim's gaps, so they are
# pinned near the measured value: a jump means a rule regressed and now skips real calls.
MAX_SKIPS = {
    SkipReason.SERVICE_PRINCIPAL: 150,  # measured 145: AWS Config / Control Tower service calls
    SkipReason.CONSOLE_SIGN_IN: 54,  # measured 54: every AwsConsoleSignIn record
    SkipReason.NO_IDENTITY: 20,  # measured 17: fixtures with no/empty userIdentity, type Unknown
    SkipReason.MISSING_FIELDS: 9,  # measured 9: fixtures without eventSource/eventName/eventTime
    SkipReason.BAD_EVENT_TIME: 2,  # measured 1: Panther fixtures with eventTime "redacted" / "..."
    SkipReason.NETWORK_ACTIVITY: 9,  # measured 9: Stratus VPC-endpoint network-activity events
    SkipReason.NO_PERMISSION_NEEDED: 12,  # measured 10: GetCallerIdentity, GetSigninToken, ...
    SkipReason.NOT_AUTHENTICATED: 4,  # measured 4: ExpiredToken / InvalidClientTokenId fixtures
    SkipReason.CROSS_ACCOUNT_UNNAMED: 2,
    SkipReason.NOT_API_CALL: 2,
    SkipReason.SERVICE_EVENT: 2,
    SkipReason.UNKNOWN_ACTION: len(KNOWN_UNKNOWN_ACTIONS) + 1,  # measured 17 (two PutBucketVersioning)
    SkipReason.UNKNOWN_SERVICE: len(KNOWN_UNKNOWN_SERVICES),
}
# Action uses whose resource stays unknown. Measured 34 (was 132 before the nested-parameter,
# naming, caller and denied-message rules): 18 are fixtures whose requestParameters were stripped
# to null (iam:CreateServiceLinkedRole, kms:Decrypt, iam:PutUserPolicy, ...), and 16 name no
# resource of the action's type: list calls with optional filters (rds:DescribeDBSnapshots,
# bedrock:ListGuardrails), a CopyObject without x-amz-copy-source, iam group calls given only a
# userName, organizations:DescribeAccount (the organization id is not in the request),
# iam:UpdateAssumeRolePolicy without roleName.
MAX_RESOURCE_UNKNOWN = 40

Normalized = list[tuple[Record, list[Usage] | Skipped, list[Skipped]]]


def _corpus_records(corpus: Path) -> list[tuple[str, Record]]:
    out: list[tuple[str, Record]] = []
    for path, error in iter_input_files([corpus / "cloudtrail"]):
        if error:
            continue
        result, _ = read_file(path)
        if result.error:
            # LICENSE files sit beside the samples; they are reported unreadable, nothing else is.
            assert "LICENSE" in path.name.upper(), (path, result.error)
            continue
        out.extend((path.name, r) for r in result.records)
    return out


@pytest.fixture(scope="module")
def normalized(corpus: Path) -> Normalized:
    out: Normalized = []
    for _, record in _corpus_records(corpus):
        result = normalize_record(record)
        if isinstance(result, Skipped):
            out.append((record, result, []))
        else:
            out.append((record, result[0], result[1]))
    return out


def test_corpus_is_read(normalized: Normalized) -> None:
    assert len(normalized) >= 1000


def test_every_record_yields_catalog_actions_or_a_named_skip(
    normalized: Normalized,
) -> None:
    for record, result, notes in normalized:
        if isinstance(result, Skipped):
            assert isinstance(result.reason, SkipReason)
            continue
        assert result, record.eventID
        for usage in result:
            assert catalog.action_exists(usage.action), usage.action
            assert usage.resource != "*" or catalog.is_wildcard_only(usage.action), usage
        for note in notes:
            assert note.reason is SkipReason.RESOURCE_UNKNOWN


def test_skip_counts_stay_under_thresholds(
    normalized: Normalized,
) -> None:
    counts = collections.Counter(r.reason for _, r, _ in normalized if isinstance(r, Skipped))
    for reason, count in counts.items():
        assert reason in MAX_SKIPS, f"new skip reason in the corpus: {reason} x{count}"
        assert count <= MAX_SKIPS[reason], (reason, count)


def test_unknown_actions_are_only_the_listed_fixture_names(
    normalized: Normalized,
) -> None:
    skips = [r for _, r, _ in normalized if isinstance(r, Skipped)]
    unknown = {r.detail for r in skips if r.reason is SkipReason.UNKNOWN_ACTION}
    assert unknown <= KNOWN_UNKNOWN_ACTIONS, unknown - KNOWN_UNKNOWN_ACTIONS
    services = {r.detail for r in skips if r.reason is SkipReason.UNKNOWN_SERVICE}
    assert services <= KNOWN_UNKNOWN_SERVICES, services - KNOWN_UNKNOWN_SERVICES


def test_resource_unknown_bound(normalized: Normalized) -> None:
    unknown = sum(len(notes) for _, _, notes in normalized)
    assert unknown <= MAX_RESOURCE_UNKNOWN, unknown


# Where iamtrim and iam-dataset's SDK-method map legitimately disagree:
# * S3Control.*: the S3 Control SDK's bucket methods (GetBucketPolicy, PutBucketPolicy,
#   DeleteBucket, ListAccessPoints) are the S3 on Outposts API, so the map lists s3-outposts
#   actions; CloudTrail's s3.amazonaws.com events with the same names are the regular S3 API
#   (https://docs.aws.amazon.com/AmazonS3/latest/API/API_Operations_AWS_S3_Control.html).
KNOWN_MAP_DIFFERENCES = frozenset({"S3Control"})


def test_actions_agree_with_iam_dataset_map(
    corpus: Path,
    normalized: Normalized,
) -> None:
    data = json.loads((corpus / "iam-dataset-map" / "map.json").read_text())
    methods: dict[str, list[dict[str, object]]] = data["sdk_method_iam_mappings"]
    sdk_of_prefix: dict[str, list[str]] = data["service_sdk_mappings"]
    compared = 0
    mismatches = []
    for record, result, _ in normalized:
        if isinstance(result, Skipped):
            continue
        # iam:PassRole is inferred from a role ARN the request passes to the service (CloudTrail
        # never logs it); the map lists it for some methods only, so it is not compared here.
        ours = {u.action for u in result} - {"iam:PassRole"}
        if not ours:
            continue
        prefix = next(iter(ours)).partition(":")[0]
        for sdk in sdk_of_prefix.get(prefix, []):
            entry = methods.get(f"{sdk}.{record.eventName}")
            if entry is None or sdk in KNOWN_MAP_DIFFERENCES:
                continue
            compared += 1
            theirs = {str(item["action"]) for item in entry}
            # The map lists every action a method may need (CopyObject: tagging, ACL, ...);
            # what one record shows must be among them.
            if not ours <= theirs:
                mismatches.append((f"{sdk}.{record.eventName}", sorted(ours), sorted(theirs)))
    assert compared >= 600  # measured 682 record/method pairs
    assert not mismatches, mismatches[:10]


def test_api_gateway_methods_agree_with_iam_dataset_map(corpus: Path) -> None:
    """Every API Gateway method the map knows: the same HTTP-method action, and the same path
    ARN once the request names the path's ids (REST API records as the SDK members, restApiId;
    HTTP API records as the path, apiId)."""
    data = json.loads((corpus / "iam-dataset-map" / "map.json").read_text())
    compared, mismatches = 0, []
    for key, entry in data["sdk_method_iam_mappings"].items():
        sdk, _, name = key.partition(".")
        if sdk not in ("APIGateway", "ApiGatewayV2"):
            continue
        ops = apigateway._operations(name)
        op = ops[0] if sdk == "APIGateway" else ops[-1]
        request = {
            (dict(op.path_members).get(v, v) if sdk == "APIGateway" else v): "ID"
            for v in apigateway._VARIABLE.findall(op.path)
        }
        for item in entry:
            action = str(item["action"])
            template = str(dict(item.get("arn_override") or {}).get("template", ""))
            if not action.startswith("apigateway:") or not template:
                continue
            compared += 1
            want = re.sub(
                r"\$\{[^}]+\}",
                "ID",
                template.replace("${Partition}", "aws").replace("${Region}", "us-east-1"),
            )
            got = apigateway.resource_arn(action, name, request, "aws", "us-east-1")
            if action not in apigateway.actions(name) or got != want:
                mismatches.append((key, action, want, got))
    assert compared >= 180  # measured 191 methods
    assert not mismatches, mismatches[:10]
