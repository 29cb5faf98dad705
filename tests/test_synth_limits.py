"""IAM size limits: by default one managed policy, reached by the widening ladder; with
``--no-widen`` (``SynthOptions(widen=False)``) by packing into several policies, never widening.

https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html#reference_iam-quotas-entity-length
"""

from __future__ import annotations

import json
import random
from dataclasses import replace

import pytest

from iamtrim import catalog
from iamtrim.errors import SizeLimitError
from iamtrim.model import Outcome, UsageRow
from iamtrim.model.policy import Condition, Effect, Statement
from iamtrim.synth import GeneratedPolicy, SynthOptions, Target, generate_identity_policy
from iamtrim.synth.limits import (
    _ENVELOPE,
    MANAGED_POLICIES_PER_ENTITY,
    MANAGED_POLICY_CHARS,
    PackMemo,
    _split_sized,
    plan,
    size_of,
    statement_size,
)
from iamtrim.synth.widen import LADDER, WideningKind
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
    return generate_identity_policy(ROLE, big_usage(), SynthOptions(widen=False))


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
    # Each folder holds 25 keys (> 10) but its fold run-F/* does not cover the keys' generated
    # shape, so each bucket's keys are that shape, as at any threshold; never a whole bucket.
    assert prefixes == {f"arn:aws:s3:::acme-data-{b:02d}/run-*/part-*.parquet" for b in range(BUCKETS)}
    # 20 buckets listed: generalized to their common stem, never to every bucket.
    assert "arn:aws:s3:::*" not in recorded
    assert "arn:aws:s3:::acme-data-*" in recorded


def test_inline_target_for_a_user_over_2048_characters_is_an_error_with_no_widen() -> None:
    rows = [row(a, t.format(i=0), principal=USER) for a, t in SERVICE_CALLS]
    managed = generate_identity_policy(USER, rows)
    assert chars(managed.policies[0].policy.to_json()) > 2048
    with pytest.raises(SizeLimitError) as info:
        generate_identity_policy(USER, rows, SynthOptions(target=Target.INLINE, widen=False))
    assert info.value.exit_code == 1
    assert "2048" in str(info.value)


def test_inline_target_within_limits_is_one_policy() -> None:
    rows = [row(a, t.format(i=0), principal=USER) for a, t in SERVICE_CALLS[:3]]
    g = generate_identity_policy(USER, rows, SynthOptions(target=Target.INLINE))
    assert len(g.policies) == 1 and chars(g.policies[0].policy.to_json()) <= 2048


def test_more_than_ten_managed_policies_is_an_error_with_no_widen() -> None:
    rows = [
        row("s3:GetObject", f"arn:aws:s3:::bucket-{b:03d}/object-{'abcdefgh'[k]}.csv")
        for b in range(200)
        for k in range(8)
    ]
    with pytest.raises(SizeLimitError) as info:
        generate_identity_policy(ROLE, rows, SynthOptions(widen=False))
    assert "--max-policies is 10" in str(info.value)
    # Widening (the default) fits the same usage into one policy, and says how.
    g = generate_identity_policy(ROLE, rows)
    assert len(g.policies) == 1
    assert [(w.kind, w.resource) for w in g.widenings if w.kind is WideningKind.NAME_PREFIX] == [
        (WideningKind.NAME_PREFIX, "arn:aws:s3:::bucket-*/*")
    ]


# --- widening to fit (the default) -----------------------------------------------------------------


@pytest.fixture(scope="module")
def fitted() -> GeneratedPolicy:
    return generate_identity_policy(ROLE, big_usage())


def test_default_fits_one_managed_policy_by_widening(fitted: GeneratedPolicy) -> None:
    assert len(fitted.policies) == 1 and fitted.max_policies == 1
    assert chars(fitted.policies[0].policy.to_json()) <= MANAGED_POLICY_CHARS
    ladder = [w for w in fitted.widenings if w.kind in LADDER]
    assert ladder, "the fixture needs widening to fit one policy"
    for w in ladder:
        assert w.covers and w.admits
        assert any(f.code == "WIDENED_TO_FIT" and f.subject == w.resource for f in fitted.findings)
    # Every widening is in some statement's evidence too.
    recorded = {w for s in fitted.statements for w in s.widened_by}
    assert set(ladder) <= recorded


def test_widened_policy_still_allows_every_call_and_no_denied_one(fitted: GeneratedPolicy) -> None:
    rows = big_usage()
    assert all(allows_row(fitted, r) for r in rows if r.outcome is Outcome.USED)
    assert not any(allows_row(fitted, r) for r in rows if r.outcome is Outcome.DENIED)
    assert not any(f.code == "DENIED_COVERED" for f in fitted.findings)


def test_widening_never_writes_star_resources_or_wider_action_wildcards(fitted: GeneratedPolicy) -> None:
    used_actions = {r.action for r in big_usage() if r.outcome is Outcome.USED}
    for st in fitted.policies[0].policy.statements:
        assert "*" not in st.actions
        wildcard_only = all(catalog.is_wildcard_only(a) for a in st.actions if "*" not in a)
        assert "*" not in st.resources or wildcard_only, st
        for action in st.actions:
            expanded = catalog.expand_action_pattern(action) if "*" in action else {action}
            assert expanded <= used_actions, action


def test_more_policies_allowed_means_fewer_widenings() -> None:
    rows = big_usage()
    counts = []
    for n in (1, 2, 4):
        g = generate_identity_policy(ROLE, rows, SynthOptions(max_policies=n))
        assert 1 <= len(g.policies) <= n
        counts.append(sum(len(w.covers) for w in g.widenings if w.kind in LADDER))
    assert counts[0] > counts[1] >= counts[2], counts


def test_a_widening_that_would_cover_a_denied_only_resource_is_passed_over() -> None:
    """80 functions billing-fn-<word> in two regions; billing-fn-admin was only ever denied.
    The prefix billing-fn-* would save most, but allows it: the ladder takes the same names
    across regions instead, which fits and leaves the denied function out."""
    names = [f"billing-fn-{a}{b}" for a in "bcdefghi" for b in "klmnopqrst"]
    fn = "arn:aws:lambda:{}:" + ACCT + ":function:{}"
    rows = [row("lambda:InvokeFunction", fn.format(rg, n), region=rg) for n in names for rg in REGIONS]
    denied = [
        row("lambda:InvokeFunction", fn.format(rg, "billing-fn-admin"), outcome=Outcome.DENIED, region=rg)
        for rg in REGIONS
    ]
    g = generate_identity_policy(ROLE, [*rows, *denied])
    assert len(g.policies) == 1
    assert all(allows_row(g, r) for r in rows)
    assert not any(allows_row(g, d) for d in denied)
    kinds = {w.kind for w in g.widenings}
    assert WideningKind.ACROSS_REGIONS in kinds and WideningKind.NAME_PREFIX not in kinds, kinds
    assert not any(f.code == "DENIED_COVERED" for f in g.findings)
    # Without the denied calls (and the threshold rule, which would fold them first), the name
    # prefix is the step taken: it saves more characters per breadth.
    plain = generate_identity_policy(ROLE, rows, SynthOptions(prefix_threshold=1000))
    assert WideningKind.NAME_PREFIX in {w.kind for w in plain.widenings}


def test_denied_only_resource_under_the_only_fitting_widening_is_a_finding() -> None:
    """Every name shares one prefix with the denied one and no narrower step fits: the fold is
    kept (the role needs a policy) and the denied resource is reported by name."""
    fn = f"arn:aws:lambda:us-east-1:{ACCT}:function:{{}}"
    names = [f"billing-fn-{a}{b}{c}" for a in "bcdefg" for b in "hijklmno" for c in "pqrstuvw"]
    rows = [row("lambda:InvokeFunction", fn.format(n)) for n in names]
    denied = row("lambda:InvokeFunction", fn.format("billing-fn-admin"), outcome=Outcome.DENIED)
    g = generate_identity_policy(ROLE, [*rows, denied])
    assert len(g.policies) == 1
    assert all(allows_row(g, r) for r in rows)
    covered = [f for f in g.findings if f.code == "DENIED_COVERED"]
    assert covered and any("billing-fn-admin" in f.subject + f.message for f in covered), covered


REGIONS = ("us-east-1", "eu-west-1")


@pytest.mark.oracle
def test_widened_policy_judged_by_the_oracle(fitted: GeneratedPolicy) -> None:
    """The independent oracle replays every observed call against the one widened policy (all
    allowed) and every denied-only call (all denied); the widenings are listed."""
    from iamtrim.verify import request_for
    from tests.oracle import decision_of, require_oracle, run_oracle
    from tests.test_generate_oracle import oracle_request

    require_oracle()
    rows = big_usage()
    used = [r for r in rows if r.outcome is Outcome.USED]
    denied = [r for r in rows if r.outcome is Outcome.DENIED]
    requests = [oracle_request(ROLE.arn, request_for(ROLE.arn, r)) for r in [*used, *denied]]
    document = {"identityPolicies": [p.policy.to_json() for p in fitted.policies], "requests": requests}
    decisions = [decision_of(r) for r in run_oracle([document])]
    assert decisions[: len(used)] == ["allowed"] * len(used), [
        (r.action, r.resource, d) for r, d in zip(used, decisions, strict=False) if d != "allowed"
    ][:5]
    assert decisions[len(used) :] == ["implicit-deny"] * len(denied)
    assert [w for w in fitted.widenings if w.kind in LADDER]


def test_no_step_writes_every_bucket_when_nothing_narrower_fits() -> None:
    """Buckets that share no name prefix: arn:aws:s3:::* (every bucket of every account) is never
    a step. One policy cannot hold them: an error naming --max-policies; five policies can."""
    import random

    rng = random.Random(7)
    letters = "abcdefghijklmnopqrstuvwxyz"
    names = sorted({"".join(rng.choice(letters) for _ in range(20)) for _ in range(400)})
    rows = [row("s3:ListBucket", f"arn:aws:s3:::{n}") for n in names]
    with pytest.raises(SizeLimitError) as info:
        generate_identity_policy(ROLE, rows)
    assert "--max-policies" in str(info.value)
    g = generate_identity_policy(ROLE, rows, SynthOptions(max_policies=5))
    assert 2 <= len(g.policies) <= 5
    resources = {r for p in g.policies for s in p.policy.statements for r in s.resources}
    assert resources == {f"arn:aws:s3:::{n}" for n in names}


def _split(statement: Statement, budget: int) -> list[Statement]:
    """limits' split, without its sizes."""
    return [part for part, _ in _split_sized(statement, budget)]


def _numbered(parts: list[Statement]) -> list[Statement]:
    """``Sid`` → ``SidPart1`` … ``SidPartN`` when one statement had to be split (the reference)."""
    if len(parts) == 1:
        return parts
    return [replace(p, sid=f"{p.sid}Part{i + 1}") for i, p in enumerate(parts)]


def _split_by_serializing(statement: Statement, budget: int) -> list[Statement]:
    """_split as it was written first: serialize each half to size it (the reference)."""
    if size_of(statement.to_json()) <= budget or len(statement.resources) <= 1:
        return [statement]
    half = len(statement.resources) // 2
    out = []
    for chunk in (statement.resources[:half], statement.resources[half:]):
        out.extend(_split_by_serializing(replace(statement, resources=chunk), budget))
    return out


@pytest.mark.parametrize("seed", range(40))
def test_statement_size_and_split_equal_serializing_the_statement(seed: int) -> None:
    # Sizes from the parts (statement_size, _split) against json.dumps of the whole statement:
    # non-ASCII, quotes, backslashes and control characters are escaped by json, and one
    # resource is written as a string, not a list.
    rnd = random.Random(seed)
    alphabet = ["a", "Z", "0", "-", "/", ":", "*", "${*}", '"', "\\", "é", "\u2028", "\n", "💥"]
    resources = tuple(
        f"arn:aws:s3:::b{rnd.randrange(9)}/"
        + "".join(rnd.choice(alphabet) for _ in range(rnd.randrange(0, 30)))
        for _ in range(rnd.choice([0, 1, 2, 3, 17, 300]))
    )
    conditions = (
        (Condition("StringEquals", "aws:SourceVpce", ("vpce-1", "vpce-é")),) if rnd.random() < 0.5 else ()
    )
    actions = ("s3:GetObject",) if rnd.random() < 0.5 else ("s3:GetObject", "s3:PutObject")
    st = Statement(Effect.ALLOW, actions=actions, resources=resources, conditions=conditions, sid="S3Get")
    assert statement_size(st) == size_of(st.to_json())
    for budget in (1, 200, 700, 6144):
        assert _split(st, budget) == _split_by_serializing(st, budget)
        for part in _split(st, budget):
            assert statement_size(part) == size_of(part.to_json())


def _random_statements(rnd: random.Random) -> list[Statement]:
    """Statements of 1 to 60 resources of random lengths; in one list of twenty, resources that
    each fill most of a policy. One statement in five has no Sid, and short resources only: the
    room a split keeps for ``PartN`` does not hold a whole ``"Sid":"PartN",`` element."""
    longest = 400 if rnd.random() < 0.95 else 5500
    out = []
    for i in range(rnd.randrange(1, 40)):
        sid = f"S{i}" if rnd.random() < 0.8 else ""
        count = rnd.choice([1, 2, 9, 60])
        longest_here = longest if sid else 250
        resources = tuple(f"arn:aws:s3:::b{i}/" + "k" * rnd.randrange(1, longest_here) for _ in range(count))
        out.append(Statement(Effect.ALLOW, actions=(f"s3:Get{i}",), resources=resources, sid=sid))
    return out


def _first_fit_by_scanning(
    statements: list[Statement],
) -> tuple[tuple[tuple[Statement, ...], ...], tuple[int, ...]]:
    """The reference packing: every piece sized by serializing it, placed in the first policy
    with room by scanning every policy."""
    pieces = [
        p
        for st in statements
        for p in _numbered(_split_by_serializing(st, MANAGED_POLICY_CHARS - _ENVELOPE - 1 - len("Part10")))
    ]
    bins: list[list[Statement]] = []
    sizes: list[int] = []
    for st in pieces:
        s = size_of(st.to_json()) + 1
        for i, used in enumerate(sizes):
            if used + s <= MANAGED_POLICY_CHARS:
                bins[i].append(st)
                sizes[i] += s
                break
        else:
            bins.append([st])
            sizes.append(_ENVELOPE + s)
    return tuple(tuple(b) for b in bins), tuple(sizes)


@pytest.mark.parametrize("seed", range(20))
def test_plan_packs_first_fit_as_scanning_every_policy(seed: int) -> None:
    """plan() finds the first policy with room in a tree of maxima; the packing is the first fit
    that scans every policy for every piece, sized by serializing each piece."""
    statements = _random_statements(random.Random(seed))
    packing = plan(ROLE, statements, Target.MANAGED, 10**6)
    assert (packing.bins, packing.sizes) == _first_fit_by_scanning(statements)


@pytest.mark.parametrize("seed", range(10))
def test_plan_with_a_memo_packs_as_without(seed: int) -> None:
    """A ladder re-plans mostly the same statements: with one PackMemo for every call, each
    packing equals the packing made from nothing, as statements come, go and change."""
    rnd = random.Random(seed)
    memo = PackMemo()
    statements = _random_statements(rnd)
    for _ in range(8):
        with_memo = plan(ROLE, statements, Target.MANAGED, 10**6, memo)
        assert (with_memo.bins, with_memo.sizes) == _first_fit_by_scanning(statements)
        # The memo keeps the pieces of the statements of the last call only.
        assert {st for st, _ in memo.pieces} == set(statements)
        statements = [st for st in statements if rnd.random() < 0.8] + _random_statements(rnd)[:3]
        rnd.shuffle(statements)


def test_a_statement_split_into_thousands_of_pieces_leaves_room_for_long_suffixes() -> None:
    """Pieces are sized with room for "Part10"; past 999 pieces the suffix is "Part1000", two
    characters more. 2,048 resources sized so that each pair fills a piece's room exactly: every
    piece must still fit a policy (they were refused, 1 character over, past 999 pieces)."""
    sid = "S3Get"
    two = Statement(Effect.ALLOW, actions=("s3:GetObject",), resources=("a", "b"), sid=sid)
    room = MANAGED_POLICY_CHARS - _ENVELOPE - 1 - len("Part10")
    # Two names of lengths n and m take n + m + 5 characters ("n","m"); the rest is fixed.
    fixed = statement_size(two) - len('"a","b"')
    pair = room - fixed - len('"",""')
    lengths = (pair // 2, pair - pair // 2)
    resources = tuple(f"arn:aws:s3:::b/{i:06d}".ljust(lengths[i % 2], "k") for i in range(2048))
    assert statement_size(replace(two, resources=resources[:2])) == room
    statement = replace(two, resources=resources)
    packing = plan(ROLE, [statement], Target.MANAGED, 10**6)
    pieces = [st for b in packing.bins for st in b]
    # With room for "Part1000" a pair no longer fits: one resource a piece.
    assert len(pieces) == 2048
    assert [r for st in pieces for r in st.resources] == list(resources)
    assert [st.sid for st in pieces] == [f"{sid}Part{i + 1}" for i in range(2048)]
    for b, size in zip(packing.bins, packing.sizes, strict=True):
        real = size_of({"Version": "2012-10-17", "Statement": [st.to_json() for st in b]})
        assert real <= size <= MANAGED_POLICY_CHARS  # plan counts a comma after every statement
