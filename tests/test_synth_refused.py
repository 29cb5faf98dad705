"""identity._Refused answers what testing every denied-only resource with glob_matches answers:
it only skips those whose start differs from the pattern's literal head."""

from __future__ import annotations

import random

from iamtrim.synth.identity import _Refused
from iamtrim.synth.widen import glob_matches

_PIECES = ["a", "b", "-", "/", ":", "1", "${*}", "${?}", "${$}", "log-stream:", "x"]


def _text(rng: random.Random, wild: bool) -> str:
    out = []
    for _ in range(rng.randint(0, 7)):
        out.append(rng.choice([*_PIECES, "*", "?"] if wild else _PIECES))
    return "arn:aws:logs:r:1:" + "".join(out)


def test_matched_by_agrees_with_every_resource_tried() -> None:
    rng = random.Random(20261207)
    for _ in range(400):
        denied = [_text(rng, wild=rng.random() < 0.1) for _ in range(rng.randint(0, 12))]
        refused = _Refused(denied)
        for _ in range(10):
            pattern = _text(rng, wild=True) if rng.random() < 0.8 else rng.choice([*denied, "*"])
            assert refused.matched_by(pattern) == any(glob_matches(pattern, d) for d in denied), (
                pattern,
                denied,
            )


def test_a_head_that_no_denied_resource_starts_with_matches_none() -> None:
    refused = _Refused(["arn:aws:s3:::b/denied/1", "arn:aws:s3:::b/denied/2"])
    assert refused.matched_by("arn:aws:s3:::b/denied/*")
    assert refused.matched_by("arn:aws:s3:::b/*/2")
    assert not refused.matched_by("arn:aws:s3:::b/allowed/*")
    assert not refused.matched_by("arn:aws:s3:::b/denied/3")
