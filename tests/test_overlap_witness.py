"""overlap_witness: whether two IAM resource patterns share a string, and one such string.

Checked against brute force (every string up to a length over the patterns' alphabet) and the
pattern matcher the evaluator uses (model.pattern_covers), never against its own derivation.
"""

from __future__ import annotations

import itertools
import random
import re

import pytest

from iamtrim.model import escape_literal, overlap_witness, pattern_covers

_TOKENS = ["a", "b", "/", "*", "?", "${*}"]


def _matches(pattern: str, text: str) -> bool:
    # pattern_covers reads its second argument as a stored pattern: escape the literal first.
    return pattern_covers(pattern, escape_literal(text))


_STRINGS = ["".join(c) for n in range(6) for c in itertools.product("ab/*", repeat=n)]


def _common(a: str, b: str) -> bool:
    """Whether some string of at most 5 characters over the patterns' alphabet matches both."""
    return any(_matches(a, text) and _matches(b, text) for text in _STRINGS)


def _random_pattern(rnd: random.Random) -> str:
    return "".join(rnd.choice(_TOKENS) for _ in range(rnd.randint(0, 4)))


def test_witness_agrees_with_brute_force_on_random_patterns() -> None:
    rnd = random.Random(1207)
    found = none = 0
    for _ in range(1000):
        a, b = _random_pattern(rnd), _random_pattern(rnd)
        w = overlap_witness(a, b)
        brute = _common(a, b)
        if w is None:
            assert not brute, (a, b)
            none += 1
        else:
            assert _matches(a, w) and _matches(b, w), (a, b, w)
            found += 1
            # Each character is spelled by a non-star token of one pattern or the other.
            assert len(w) <= len(re.sub(r"\$\{.\}", "x", a + b).replace("*", "")), (a, b, w)
    assert found > 200 and none > 200  # both kinds were exercised


STACK = "arn:aws:cloudformation:us-east-1:111122223333:stack/"
SECRET = "arn:aws:secretsmanager:us-east-1:111122223333:secret:"


@pytest.mark.parametrize(
    ("granted", "requested", "shared"),
    [
        (STACK + "inference-endpoints/0a1b-2c3d", STACK + "inference-endpoints/*", True),
        (STACK + "inference-endpoints/0a1b-2c3d", STACK + "inference/*", False),
        (STACK + "inference-*", STACK + "inference-endpoints/*", True),
        (STACK + "*/0a1b", STACK + "other/*", True),
        (SECRET + "db-AbCdEf", SECRET + "db-??????", True),
        (SECRET + "db-AbC", SECRET + "db-??????", False),
        ("arn:aws:s3:::b/a${*}c", "arn:aws:s3:::b/a?c", True),
        ("arn:aws:s3:::b/a${*}c", "arn:aws:s3:::b/abc", False),
    ],
)
def test_witness_of_aws_imposed_patterns(granted: str, requested: str, shared: bool) -> None:
    w = overlap_witness(granted, requested)
    assert (w is not None) == shared
    if w is not None:
        assert _matches(granted, w) and _matches(requested, w)
        assert re.fullmatch(r"arn:aws:[a-z0-9]+:.*", w) or w.startswith("arn:aws:s3:::")
