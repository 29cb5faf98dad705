"""IAM size limits are met by packing into several policies, never by widening.

https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html#reference_iam-quotas-entity-length
"""

from __future__ import annotations

import json

import pytest

from iamtrim import catalog
from iamtrim.model import Outcome, UsageRow
from iamtrim.synth import GeneratedPolicy, SynthOptions, Target, generate_identity_policy
from iamtrim.synth.limits import MANAGED_POLICIES_PER_ENTITY, MANAGED_POLICY_CHARS, SizeLimitError
from tests.test_synth_rules import ACCT, ROLE, USER, allows_row, row

# Dozens of services, each with an action on a resource of its own (one row each).
SERVICE_CALLS = [
    ("sqs:SendMessage", f"arn:aws:sqs:us-east-1:{ACCT}:jobs-{{i}}"),
    ("sns:Publish", f"arn:aws:sns:us-east-1:{ACCT}:alerts-{{i}}"),
    ("dynamodb:GetItem", f"arn:aws:dynamodb:us-east-1:{ACCT}:table/features-{{i}}"),
    ("lambda:InvokeFunction", f"arn:aws:lambda:us-east-1:{ACCT}:function:scorer-{{i}}"),
    ("secretsmanager:GetSecretValue", f"arn:aws:secretsmanager:us-east-1:{ACCT}:secret:app/s{{i}}-AbCdEf"),
    ("ssm:GetParameter", f"arn:aws:ssm:us-east-1:{ACCT}:parameter/app/p{{i}}"),
    ("kinesis:PutRecord", f"arn:aws:kinesis:us-east-1:{ACCT}:stream/events-{{i}}"),
    ("states:StartExecution", f"arn:aws:states:us-east-1:{ACCT}:stateMachine:flow-{{i}}"),
    ("ecr:BatchGetImage", f"arn:aws:ecr:us-east-1:{ACCT}:repository/img-{{i}}"),
    ("logs:PutLogEvents", f"arn:aws:logs:us-east-1:{ACCT}:log-group:/app/g{{i}}:log-stream:s"),
    ("sagemaker:DescribeTrainingJob", f"arn:aws:sagemaker:us-east-1:{ACCT}:training-job/job-{{i}}"),
    ("glue:GetDatabase", f"arn:aws:glue:us-east-1:{ACCT}:database/db{{i}}"),
    ("athena:GetQueryExecution", f"arn:aws:athena:us-east-1:{ACCT}:workgroup/wg{{i}}"),
    ("cloudformation:DescribeStacks", f"arn:aws:cloudformation:us-east-1:{ACCT}:stack/st{{i}}/*"),
    ("elasticfilesystem:ClientMount", f"arn:aws:elasticfilesystem:us-east-1:{ACCT}:file-system/fs-{{i}}"),
    ("events:PutEvents", f"arn:aws:events:us-east-1:{ACCT}:event-bus/bus{{i}}"),
    ("firehose:PutRecord", f"arn:aws:firehose:us-east-1:{ACCT}:deliverystream/ds{{i}}"),
    ("codebuild:StartBuild", f"arn:aws:codebuild:us-east-1:{ACCT}:project/p{{i}}"),
    ("ecs:RunTask", f"arn:aws:ecs:us-east-1:{ACCT}:task-definition/td{{i}}:1"),
    ("rds:DescribeDBInstances", f"arn:aws:rds:us-east-1:{ACCT}:db:db{{i}}"),
    ("elasticache:DescribeCacheClusters", f"arn:aws:elasticache:us-east-1:{ACCT}:cluster:c{{i}}"),
    ("es:ESHttpGet", f"arn:aws:es:us-east-1:{ACCT}:domain/search{{i}}"),
    ("cloudwatch:PutMetricData", "*"),
    ("xray:PutTraceSegments", "*"),
]
BUCKETS, FOLDERS, KEYS = 20, 8, 25  # 4,000 objects → 160 prefixes (each folder holds 25 > 10 keys)


def big_usage() -> list[UsageRow]:
    rows = []
    for b in range(BUCKETS):
        for f in range(FOLDERS):
            for k in range(KEYS):
                rows.append(
                    row("s3:GetObject", f"arn:aws:s3:::acme-data-{b:02d}/run-{f}/part-{k:05d}.parquet")
                )
        rows.append(row("s3:ListBucket", f"arn:aws:s3:::acme-data-{b:02d}"))
    for action, template in SERVICE_CALLS:
        assert catalog.action_exists(action), action
        for i in range(3 if template != "*" else 1):
            rows.append(row(action, template.format(i=i)))
    rows.append(
        row("s3:DeleteObject", "arn:aws:s3:::acme-data-00/run-0/part-00000.parquet", outcome=Outcome.DENIED)
    )
    return rows


def chars(document: object) -> int:
    """What IAM counts: the document without whitespace outside strings."""
    return len(json.dumps(document, separators=(",", ":")))


@pytest.fixture(scope="module")
def big() -> GeneratedPolicy:
    return generate_identity_policy(ROLE, big_usage())


def test_large_usage_is_packed_into_several_managed_policies_within_limits(big: GeneratedPolicy) -> None:
    sizes = [chars(p.policy.to_json()) for p in big.policies]
    assert sum(sizes) > MANAGED_POLICY_CHARS, "the fixture must not fit one policy"
    assert 2 <= len(big.policies) <= MANAGED_POLICIES_PER_ENTITY
    assert all(size <= MANAGED_POLICY_CHARS for size in sizes), sizes
    assert len({p.name for p in big.policies}) == len(big.policies)
    sids = [s.sid for p in big.policies for s in p.policy.statements]
    assert len(sids) == len(set(sids))
    assert any(f.code == "SPLIT_FOR_SIZE" for f in big.findings)
    print(f"\n{len(big_usage())} usage rows → {len(big.policies)} managed policies of {sizes} characters")


def test_packing_keeps_every_call_allowed(big: GeneratedPolicy) -> None:
    rows = [r for r in big_usage() if r.outcome is Outcome.USED]
    assert big.replayed == len(rows)
    failing = [r for r in rows if not allows_row(big, r)]
    assert not failing, failing[:3]
    denied = [r for r in big_usage() if r.outcome is Outcome.DENIED]
    assert not any(allows_row(big, r) for r in denied)


def test_packing_widens_nothing_beyond_the_recorded_generalizations(big: GeneratedPolicy) -> None:
    seen = {r.resource for r in big_usage() if r.outcome is Outcome.USED}
    recorded = {w.resource for s in big.statements for w in s.widened_by}
    used_actions = {r.action for r in big_usage() if r.outcome is Outcome.USED}
    for p in big.policies:
        for st in p.policy.statements:
            for res in st.resources:
                assert res in seen or res in recorded, res
            for action in st.actions:
                expanded = catalog.expand_action_pattern(action) if "*" in action else {action}
                assert expanded <= used_actions, action
    prefixes = {res for res in recorded if res.startswith("arn:aws:s3:::") and "/" in res}
    assert len(prefixes) == BUCKETS * FOLDERS  # each folder, never a whole bucket
    # 20 buckets listed: generalized to their common stem, never to every bucket.
    assert "arn:aws:s3:::*" not in recorded
    assert "arn:aws:s3:::acme-data-*" in recorded


def test_inline_target_for_a_user_over_2048_characters_is_an_error_not_a_wider_policy() -> None:
    rows = [row(a, t.format(i=0), principal=USER) for a, t in SERVICE_CALLS]
    managed = generate_identity_policy(USER, rows)
    assert chars(managed.policies[0].policy.to_json()) > 2048
    with pytest.raises(SizeLimitError) as info:
        generate_identity_policy(USER, rows, SynthOptions(target=Target.INLINE))
    assert info.value.exit_code == 1
    assert "2048" in str(info.value)


def test_inline_target_within_limits_is_one_policy() -> None:
    rows = [row(a, t.format(i=0), principal=USER) for a, t in SERVICE_CALLS[:3]]
    g = generate_identity_policy(USER, rows, SynthOptions(target=Target.INLINE))
    assert len(g.policies) == 1 and chars(g.policies[0].policy.to_json()) <= 2048


def test_more_than_ten_managed_policies_is_an_error() -> None:
    rows = [
        row("s3:GetObject", f"arn:aws:s3:::bucket-{b:03d}/object-{k}.csv")
        for b in range(200)
        for k in range(8)
    ]
    with pytest.raises(SizeLimitError) as info:
        generate_identity_policy(ROLE, rows)
    assert "at most 10" in str(info.value)
