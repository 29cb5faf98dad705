"""The ladder's resource matcher (``widen.glob_matches``): its fast paths for patterns with at
most one ``*`` agree with IAM's matching, written here independently as a regex per pattern.

https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_resource.html#reference_policies_elements_resource_wildcards
"""

from __future__ import annotations

import random
import re

import pytest

from iamtrim.synth.widen import PatternIndex, glob_matches


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
            expected = {p for p in patterns if glob_matches(p, value)}
            assert set(index.matching(value)) == expected, (patterns, value)
            assert index.covers(value, besides=value) == bool(expected - {value})


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
