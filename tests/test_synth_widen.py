"""The ladder's resource matcher (``widen.glob_matches``): its fast paths for patterns with at
most one ``*`` agree with IAM's matching, written here independently as a regex per pattern.

https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_resource.html#reference_policies_elements_resource_wildcards
"""

from __future__ import annotations

import random
import re
from dataclasses import replace as dataclasses_replace

import pytest

from iamtrim.synth.widen import (
    MERGE_KINDS,
    LadderMemo,
    PatternIndex,
    StatementShape,
    WideningKind,
    candidates,
    glob_matches,
)


def _iam_matches(pattern: str, value: str) -> bool:
    """``*`` any run of characters (``/`` and ``:`` too), ``?`` exactly one; all else literal."""
    rx = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(rx, value, re.DOTALL) is not None


@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [
        ("arn:aws:s3:::b/curated/*", "arn:aws:s3:::b/curated/2026/01/x.parquet", True),
        ("arn:aws:s3:::b/curated/*", "arn:aws:s3:::b/curated", False),
        ("arn:aws:logs:*:1:log-group:x", "arn:aws:logs:eu-west-1:1:log-group:x", True),
        ("arn:aws:logs:*:1:log-group:x", "arn:aws:logs:eu-west-1:1:log-group:xy", False),
        ("ab*ba", "aba", False),  # head and tail may not overlap
        ("ab*ba", "abba", True),
        ("table/orders", "table/orders", True),
        ("table/orders", "table/orders-1", False),
        ("a*b*c", "a-b-c", True),
        ("a?c", "abc", True),
    ],
)
def test_glob_matches_examples(pattern: str, value: str, expected: bool) -> None:
    assert glob_matches(pattern, value) is expected
    assert _iam_matches(pattern, value) is expected


def test_glob_matches_agrees_with_iam_matching_on_random_patterns() -> None:
    rnd = random.Random(20261207)
    disagreements = []
    for _ in range(20_000):
        pattern = "".join(rnd.choice("ab*?/:-") for _ in range(rnd.randint(0, 7)))
        value = "".join(rnd.choice("ab/:-*?") for _ in range(rnd.randint(0, 8)))
        if glob_matches(pattern, value) != _iam_matches(pattern, value):
            disagreements.append((pattern, value))
    assert disagreements == []


def test_pattern_index_finds_exactly_the_patterns_that_match() -> None:
    """The index answers as testing every pattern would: exact names, ``prefix*``, several
    ``*``, ``?`` and escaped literals (``${*}`` names a ``*``) mixed, on random values."""
    rnd = random.Random(1207)
    parts = ["a", "b", "/", ":", "*", "?", "${*}", "${$}"]
    for _ in range(300):
        patterns = ["".join(rnd.choice(parts) for _ in range(rnd.randint(0, 5))) for _ in range(12)]
        index = PatternIndex(patterns)
        for _ in range(30):
            value = "".join(rnd.choice(parts) for _ in range(rnd.randint(0, 6)))
            if rnd.random() < 0.3:  # a pattern of the index, asked of itself (drop_covered)
                value = rnd.choice(patterns)
            expected = {p for p in patterns if glob_matches(p, value)}
            assert set(index.matching(value)) == expected, (patterns, value)
            assert index.covers(value, besides=value) == bool(expected - {value})
            assert index.covers(value) == bool(expected)
            other = rnd.choice(patterns)
            assert index.covers(value, besides=other) == bool(expected - {other}), (patterns, value, other)


def test_denied_index_finds_the_denied_resources_a_step_allows_in_their_order() -> None:
    """The ladder's look-up of denied-only resources under a step (bisection for ``prefix*``)
    gives what testing each one gives, duplicates and escaped literals included."""
    from iamtrim.synth.widen import _DeniedIndex

    rnd = random.Random(71)
    parts = ["a", "b", "/", "*", "?", "${*}"]
    for _ in range(200):
        values = ["".join(rnd.choices(parts, k=rnd.randint(0, 6))) for _ in range(rnd.randint(0, 20))]
        index = _DeniedIndex({"s3:GetObject": values})
        for _ in range(20):
            pattern = "".join(rnd.choices(parts, k=rnd.randint(0, 4))) + rnd.choice(["*", "", "a*"])
            expected = [v for v in values if glob_matches(pattern, v)]
            assert index.matching(pattern, "s3:GetObject") == expected, (values, pattern)
            assert index.matching(pattern, "s3:PutObject") == []


def test_name_prefix_breadth_is_the_segments_left_open_below_the_prefix() -> None:
    """A name-prefix step's breadth counts the name segments its pattern leaves open, the most
    over the names it covers (``billing-fn-*`` over ``billing-fn-7``: one; ``billing-*``: two),
    computed from each name's own segments: the same as splitting what follows the prefix anew."""
    from iamtrim.synth.widen import (
        _WEIGHT,
        StatementShape,
        WideningKind,
        _open_segments,
        candidates,
    )

    rnd = random.Random(1414)
    checked = 0
    head = "arn:aws:lambda:eu-west-1:111122223333:function:"
    for _ in range(40):
        names = {
            "".join(
                rnd.choice(["billing", "fn", "etl", "7", "x"]) + rnd.choice("-_.")
                for _ in range(rnd.randint(1, 4))
            )
            + rnd.choice(["a", "b", "12", "z9"])
            for _ in range(rnd.randint(2, 30))
        }
        arns = sorted(head + n for n in names)
        keys = [("lambda:InvokeFunction", a) for a in arns]
        shape = StatementShape(
            ("lambda:InvokeFunction",), tuple(arns), (), 100 + sum(len(a) + 3 for a in arns)
        )
        steps = [c for c in candidates(keys, [shape], {}, 10) if c.kind is WideningKind.NAME_PREFIX]
        for c in steps:
            assert c.breadth == _WEIGHT[c.kind] * _open_segments(c.pattern[:-1], c.covers), c.pattern
        checked += len(steps)
    assert checked > 100


def test_widening_hash_is_kept_equal_to_its_value_across_processes() -> None:
    """Widenings are deduplicated by hash (a ladder step's covers tens of thousands of names and
    its hash is computed once): equal widenings hash alike, a changed one does not, and a pickled
    one (str hashes differ between processes) hashes in the receiving process as one built there."""
    import dataclasses
    import pickle
    import subprocess
    import sys

    from iamtrim.synth.widen import ObservedKeys, Widening, WideningKind

    a = Widening(WideningKind.NAME_PREFIX, "fn-*", ("fn-1", "fn-2"), "any function")
    b = Widening(WideningKind.NAME_PREFIX, "fn-*", ("fn-1", "fn-2"), "any function")
    c = dataclasses.replace(a, covers=("fn-1", "fn-3"))
    assert a is not b and a == b and hash(a) == hash(b)
    assert c != a and hash(c) == hash((c.kind, c.resource, c.covers, c.admits, c.keys))
    d = dataclasses.replace(a, keys=ObservedKeys(312, True, False, "312"))
    assert d != a and hash(d) != hash(a) and pickle.loads(pickle.dumps(d)) == d
    assert list(dict.fromkeys([a, b, c, a])) == [a, c]
    code = (
        "import pickle, sys\n"
        "from iamtrim.synth.widen import Widening, WideningKind\n"
        "w = pickle.loads(sys.stdin.buffer.read())\n"
        "fresh = Widening(WideningKind.NAME_PREFIX, 'fn-*', ('fn-1', 'fn-2'), 'any function')\n"
        "print(hash(w) == hash(fresh), len({w, fresh}))\n"
    )
    for seed in ("1", "2"):
        out = subprocess.run(
            [sys.executable, "-c", code],
            input=pickle.dumps(a),
            capture_output=True,
            check=True,
            env={"PYTHONHASHSEED": seed, "PATH": ""},
        )
        assert out.stdout.decode().split() == ["True", "1"]


def _shapes(keys: list[tuple[str, str]], merged: set[str]) -> list[StatementShape]:
    """Statements as identity._statements groups them: resource → its actions, actions → their
    resources; a merged service's statements are one."""
    actions_of: dict[str, set[str]] = {}
    for a, r in keys:
        actions_of.setdefault(r, set()).add(a)
    by_actions: dict[tuple[str, ...], set[str]] = {}
    for r, acts in actions_of.items():
        by_actions.setdefault(tuple(sorted(acts)), set()).add(r)
    joined: dict[str, tuple[set[str], set[str]]] = {}
    out = []
    for acts, res in sorted(by_actions.items()):
        service = acts[0].split(":")[0]
        if service in merged and len({a.split(":")[0] for a in acts}) == 1:
            got = joined.setdefault(service, (set(), set()))
            got[0].update(acts)
            got[1].update(res)
            continue
        out.append((acts, res))
    out += [(tuple(sorted(a)), r) for a, r in joined.values()]
    return [
        StatementShape(acts, tuple(sorted(res)), (), 60 + sum(len(x) + 3 for x in (*acts, *res)))
        for acts, res in out
    ]


@pytest.mark.parametrize("seed", range(12))
def test_the_ladder_memo_gives_the_steps_found_anew_every_round(seed: int) -> None:
    """candidates() with one LadderMemo through the rounds of a ladder (steps taken, services
    merged, rounds where nothing moved) returns exactly the steps found without it, scores,
    breadths, denied hits and order included."""
    rnd = random.Random(seed)
    acct = "111122223333"
    words = ["billing", "fn", "etl", "ml", "7", "x", "2026"]

    def name() -> str:
        return "".join(rnd.choice(words) + rnd.choice("-_/") for _ in range(rnd.randint(1, 3))) + str(
            rnd.randint(0, 40)
        )

    keys: list[tuple[str, str]] = []
    for _ in range(rnd.randint(30, 120)):
        region = rnd.choice(["us-east-1", "us-east-1", "eu-west-1"])
        action, arn = rnd.choice(
            [
                ("lambda:InvokeFunction", f"arn:aws:lambda:{region}:{acct}:function:{name()}"),
                ("lambda:GetFunction", f"arn:aws:lambda:{region}:{acct}:function:{name()}"),
                ("dynamodb:GetItem", f"arn:aws:dynamodb:{region}:{acct}:table/{name()}"),
                ("dynamodb:PutItem", f"arn:aws:dynamodb:{region}:{acct}:table/{name()}"),
                ("s3:GetObject", f"arn:aws:s3:::data-{rnd.choice(words)}/{name()}"),
                ("logs:CreateLogStream", f"arn:aws:logs:{region}:{acct}:log-group:/{name()}"),
            ]
        )
        keys.append((action, arn))
    keys = list(dict.fromkeys(keys))
    denied = {
        "lambda:InvokeFunction": [f"arn:aws:lambda:us-east-1:{acct}:function:{name()}" for _ in range(9)],
        "s3:GetObject": [f"arn:aws:s3:::data-ml/{name()}" for _ in range(3)],
    }
    merged: set[str] = set()
    memo = LadderMemo()
    rounds = 0
    for _ in range(10):
        shapes = _shapes(keys, merged)
        with_memo = candidates(keys, shapes, denied, 10, memo)
        assert with_memo == candidates(keys, shapes, denied, 10)
        rounds += 1
        steps = [c for c in with_memo if c.kind not in MERGE_KINDS]
        what = rnd.random()
        if what < 0.25:
            continue  # nothing moved: the memo replays last round's proposals
        if what < 0.5 or not steps:
            merged.add(rnd.choice(["lambda", "dynamodb", "s3", "logs"]))
            continue
        step = rnd.choice(steps[:5])
        moved = [k for k in keys if k[1] in step.covers]
        keys = [k for k in keys if k[1] not in step.covers]
        keys += list(dict.fromkeys((a, step.pattern) for a, _ in moved))
    assert rounds == 10


def _naive_name_prefix_steps(
    literal: str, names: list[str], shapes: list[StatementShape]
) -> dict[str, tuple[frozenset[str], int]]:
    """The name-prefix steps of one type's *names*, derived the slow way: every prefix of every
    name that ends at a separator before its last character and holds no wildcard, the names
    under it, and what replacing them saves in the statements (each resource's characters plus
    quotes and comma in each statement holding it, less the pattern once per statement touched)."""
    seps = set("-_./:")
    under: dict[str, set[str]] = {}
    for name in names:
        rest = name[len(literal) :] if name.startswith(literal) else ""
        for q, ch in enumerate(rest[:-1]):
            head = rest[: q + 1]
            if ch in seps and "*" not in head and "?" not in head:
                under.setdefault(literal + head, set()).add(name)
    out = {}
    for prefix, covered in under.items():
        pattern = prefix + "*"
        if len(covered) < 2 or pattern in covered or not re.search("[A-Za-z0-9]", prefix[len(literal) :]):
            continue
        holding = [st for st in shapes if covered & set(st.resources)]
        saved = sum(len(r) + 3 for st in holding for r in st.resources if r in covered)
        saved -= len(holding) * (len(pattern) + 3)
        if saved > 0:
            out[pattern] = (frozenset(covered), saved)
    return out


@pytest.mark.parametrize("seed", range(8))
def test_name_prefix_steps_are_every_shared_prefix_scored_from_the_statements(seed: int) -> None:
    """The name-prefix steps (found as ranges of sorted names and scored from per-name sums) are
    exactly the prefixes an independent, slow derivation finds, with the same covered names and
    savings; also with names that are patterns already (a ``*``), names in two statements and
    names some statement no longer lists."""
    rnd = random.Random(seed)
    head = "arn:aws:lambda:eu-west-1:111122223333:function:"
    parts = ["billing", "fn", "etl", "job*", "a?b", ""]
    names = sorted(
        {
            head
            + "".join(rnd.choice(parts) + rnd.choice("-_.:/") for _ in range(rnd.randint(0, 4)))
            + rnd.choice(["a", "12", "z9", "*", "-"])
            for _ in range(rnd.randint(60, 160))
        }
    )
    keys = [("lambda:InvokeFunction", n) for n in names]
    keys += [("lambda:GetFunction", n) for n in rnd.sample(names, len(names) // 3)]
    shapes = _shapes(keys, set())
    listed = [n for n in names if rnd.random() < 0.9]  # the rest: dropped under a pattern
    shapes.append(StatementShape(("lambda:UpdateFunctionCode",), tuple(listed[: len(listed) // 4]), (), 90))
    kept = set(listed)
    shapes = [dataclasses_replace(st, resources=tuple(r for r in st.resources if r in kept)) for st in shapes]
    found = {
        c.pattern: (c.covers, c.saved)
        for c in candidates(keys, shapes, {}, 10)
        if c.kind is WideningKind.NAME_PREFIX
    }
    assert found == _naive_name_prefix_steps(head, names, shapes)
    assert len(found) >= 5


@pytest.mark.parametrize("seed", range(6))
def test_a_type_whose_names_change_a_little_gives_the_steps_found_anew(seed: int) -> None:
    """A type's name prefixes, updated from the round before when a few of its names went or
    came (a step taken, a pattern written), are those found from its names anew, in the same
    order (the order decides which of two types offering one pattern offers it)."""
    from iamtrim.synth.widen import _chain, _Names

    rnd = random.Random(seed)
    head = "arn:aws:lambda:eu-west-1:111122223333:function:"
    parts = ["billing", "fn", "etl", "ml", "7", "job*", ""]

    def name() -> str:
        return (
            head
            + "".join(rnd.choice(parts) + rnd.choice("-_.:/") for _ in range(rnd.randint(0, 4)))
            + rnd.choice(["a", "12", "z9", "*", "-", ""])
        )

    def chain(r: str) -> tuple[tuple[int, ...], int]:
        return _chain(head, r)

    names = {name() for _ in range(300)}
    memo = LadderMemo()
    before = _Names(head, sorted(names), chain)
    for _ in range(8):
        keys = [("lambda:InvokeFunction", n) for n in sorted(names)]
        shapes = _shapes(keys, set())
        assert candidates(keys, shapes, {}, 10, memo) == candidates(keys, shapes, {}, 10)
        updated = _Names(head, sorted(names), chain, before)
        assert updated.prefixes == _Names(head, sorted(names), chain).prefixes
        before = updated
        gone = set(rnd.sample(sorted(names), rnd.randint(0, 12)))
        names = (names - gone) | {name() for _ in range(rnd.randint(0, 12))}
