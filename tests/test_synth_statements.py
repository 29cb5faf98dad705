"""How identity statements are built each round of the size ladder: what is kept from one round
to the next (the grouping of the grants, the statements no step touched, the covered resources
found by ranges) gives what building everything again from the grants gives."""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import replace

import pytest

from iamtrim.model import Context, Outcome, UsageRow, has_wildcard
from iamtrim.model.policy import Condition
from iamtrim.synth import SynthOptions, identity
from iamtrim.synth.identity import StatementMemo, _covered, _statements, _take
from iamtrim.synth.widen import Candidate, PatternIndex, Widening, WideningKind

ACCT = "111122223333"
_PARTS = ["a", "b", "/", ":", "-", "*", "?", "x1"]
_ESCAPES = ["${*}", "${$}"]


def _resource(rnd: random.Random, parts: list[str]) -> str:
    """A stored resource or pattern: ``?`` and several ``*`` included."""
    service = rnd.choice(
        ["s3:::bkt/", f"logs:eu-west-1:{ACCT}:log-group:", f"logs:us-east-1:{ACCT}:log-group:"]
    )
    return f"arn:aws:{service}" + "".join(rnd.choice(parts) for _ in range(rnd.randint(0, 6)))


@pytest.mark.parametrize("escapes", [False, True])
@pytest.mark.parametrize("seed", range(60))
def test_covered_resources_are_those_another_pattern_of_the_statement_matches(
    seed: int, escapes: bool
) -> None:
    """_covered reads only the ranges of the patterns' heads: the answer is the same as asking
    every resource of every pattern (broad patterns like ``arn:aws:logs:*:…`` included), with
    and without resources naming escaped literals."""
    rnd = random.Random(seed)
    parts = _PARTS + _ESCAPES if escapes else _PARTS
    resources = {_resource(rnd, parts) for _ in range(rnd.choice([2, 10, 80, 400]))}
    broad = [f"arn:aws:logs:*:{ACCT}:log-group:a*", f"arn:aws:logs:*:{ACCT}:log-group:-x1", "arn:aws:*"]
    broad += ["arn:aws:s3:::bkt/*b", "arn:aws:s3:::bkt/?x1", "*"]
    resources.update(rnd.sample(broad, rnd.randint(0, 3)))
    # Resources those match with their literal parts at the very end.
    resources.update(
        rnd.sample(
            [f"arn:aws:logs:us-east-1:{ACCT}:log-group:-x1", "arn:aws:s3:::bkt/-b", "arn:aws:s3:::bkt/ax1"], 2
        )
    )
    every = tuple(sorted(resources))
    index = PatternIndex(p for p in every if has_wildcard(p))
    assert _covered(every) == {r for r in every if index.covers(r, besides=r)}


def _row(action: str, resource: str, rnd: random.Random) -> UsageRow:
    day = rnd.randint(1, 28)
    endpoint = rnd.choice(["", "vpce-1", "vpce-2"])
    return UsageRow(
        principal=f"arn:aws:iam::{ACCT}:role/app",
        action=action,
        resource=resource,
        outcome=Outcome.USED,
        count=rnd.randint(1, 9),
        first_seen=f"2026-01-{day:02d}T00:00:00Z",
        last_seen=f"2026-02-{day:02d}T00:00:00Z",
        event_ids=tuple(f"e{rnd.randrange(10**6)}" for _ in range(rnd.randint(0, 2))),
        context=Context(vpc_endpoint=endpoint, region="eu-west-1"),
    )


_ACTIONS = ["s3:GetObject", "s3:PutObject", "s3:ListBucket", "kms:Decrypt", "logs:PutLogEvents"]


def _grants(rnd: random.Random) -> dict[tuple[str, str], list[UsageRow]]:
    groups: dict[tuple[str, str], list[UsageRow]] = {}
    for _ in range(rnd.randint(5, 120)):
        action = rnd.choice(_ACTIONS)
        service = action.split(":")[0]
        resource = {
            "s3": f"arn:aws:s3:::bkt/{rnd.choice('abc')}/{rnd.randrange(40)}",
            "kms": f"arn:aws:kms:eu-west-1:{ACCT}:key/{rnd.randrange(5)}",
            "logs": f"arn:aws:logs:eu-west-1:{ACCT}:log-group:g{rnd.randrange(20)}",
        }[service]
        groups.setdefault((action, resource), []).append(_row(action, resource, rnd))
    return groups


def _random_step(rnd: random.Random, groups: dict[tuple[str, str], list[UsageRow]]) -> Candidate:
    """A ladder step over some of the grants: a pattern over resources sharing a prefix, a
    service merge, or relaxed conditions."""
    resources = sorted({r for _, r in groups})
    kind = rnd.choice([WideningKind.NAME_PREFIX, WideningKind.NAME_PREFIX, WideningKind.SERVICE_MERGE])
    if kind is WideningKind.SERVICE_MERGE:
        service = rnd.choice(["s3", "kms", "logs"])
        conds = rnd.choice([(), (Condition("StringEquals", "aws:SourceVpce", ("vpce-1",)),)])
        covers = frozenset(r for a, r in groups if a.startswith(service + ":"))
        kind = rnd.choice([WideningKind.SERVICE_MERGE, WideningKind.CONDITION_MERGE])
        return Candidate(kind, service, covers, 1, 1.0, "merged", (), service=service, conditions=conds)
    start = rnd.choice(resources)
    prefix = start[: rnd.randint(len(start) // 2, len(start))]
    covers = frozenset(r for r in resources if r.startswith(prefix) and r != prefix + "*")
    return Candidate(kind, prefix + "*", covers, 1, 1.0, "names under the prefix", ())


@pytest.mark.parametrize("base_min", [256, 1])
@pytest.mark.parametrize("seed", range(40))
def test_statements_kept_from_round_to_round_equal_statements_built_again(
    seed: int, base_min: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ladder's rounds with one StatementMemo (the grouping updated from the grants each step
    changed, the statements no step touched kept, the resources of a statement sorted from the
    last round's: with *base_min* 1, for every statement) give the statements, evidence and
    findings that a fresh memo gives each round."""
    monkeypatch.setattr(identity, "_BASE_MIN", base_min)
    rnd = random.Random(seed)
    groups = _grants(rnd)
    widenings: defaultdict[tuple[str, str], list[Widening]] = defaultdict(list)
    advice = {k: "2026-03-01T00:00:00Z" for k in rnd.sample(sorted(groups), min(3, len(groups)))}
    merged: set[tuple[str, tuple[Condition, ...]]] = set()
    relaxed: dict[str, tuple[Condition, ...]] = {}
    options = SynthOptions()
    memo = StatementMemo()
    for round_ in range(6):
        drop = round_ > 0
        kept = _statements(groups, widenings, advice, merged, options, [], drop, relaxed, memo)
        fresh = _statements(groups, widenings, advice, merged, options, [], drop, relaxed, StatementMemo())
        assert kept == fresh
        for _ in range(rnd.randint(1, 3)):
            step = _random_step(rnd, groups)
            if not step.covers:
                continue
            _take(step, groups, widenings, merged, relaxed, None, memo.changed)
            memo.touched |= step.covers | {step.pattern}


def _take_one_grant_at_a_time(
    step: Candidate,
    groups: dict[tuple[str, str], list[UsageRow]],
    widenings: defaultdict[tuple[str, str], list[Widening]],
) -> None:
    """A name-prefix step taken as _take was first written (the reference): each grant moved
    makes its new grant's widenings unique again."""
    w = Widening(step.kind, step.pattern, tuple(sorted(step.covers)), step.admits)
    for key in [k for k in groups if k[1] in step.covers]:
        rows = groups.pop(key)
        new = (key[0], step.pattern)
        groups.setdefault(new, []).extend(rows)
        moved = widenings.pop(key, [])
        widenings[new] = list(dict.fromkeys([*widenings.get(new, []), *moved, w]))


@pytest.mark.parametrize("seed", range(40))
def test_take_moves_grants_and_widenings_as_one_grant_at_a_time(seed: int) -> None:
    """_take gathers the widenings of each new grant and makes them unique once: the grants,
    their order, rows and widenings are those of the reference, step after step (a step's
    pattern among what it covers included)."""
    rnd = random.Random(seed)
    groups = _grants(rnd)
    widenings: defaultdict[tuple[str, str], list[Widening]] = defaultdict(list)
    for i, key in enumerate(sorted(groups)):
        if i % 3 == 0:
            widenings[key].append(Widening(WideningKind.GENERATED_NAMES, key[1], (key[1],), "rule"))
    ref_groups = {k: list(v) for k, v in groups.items()}
    ref_widenings = defaultdict(list, {k: list(v) for k, v in widenings.items()})
    written: list[str] = []
    for _ in range(8):
        step = _random_step(rnd, groups)
        if step.kind is not WideningKind.NAME_PREFIX:
            continue
        if written and rnd.random() < 0.5:  # a pattern an earlier step wrote: its grants exist
            step = replace(step, pattern=rnd.choice(written))
        if rnd.random() < 0.3:  # the pattern among what the step covers
            step = replace(step, covers=step.covers | {step.pattern})
        written.append(step.pattern)
        _take(step, groups, widenings, set(), {}, None, set())
        _take_one_grant_at_a_time(step, ref_groups, ref_widenings)
        assert list(groups.items()) == list(ref_groups.items())
        assert {k: v for k, v in widenings.items() if v} == {k: v for k, v in ref_widenings.items() if v}
