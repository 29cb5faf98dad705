"""render.common.json_text is json.dumps(doc, indent=2), byte for byte."""

from __future__ import annotations

import json
import random
import string
from enum import IntEnum, StrEnum

from iamtrim.render.common import json_text


class _Kind(StrEnum):
    A = "a-kind"
    B = "é-kind"


class _Level(IntEnum):
    LOW = 1
    HIGH = 7


_CHARS = string.printable + 'éü\u2028\u00a0\x00\x1f\x7f\x85"\\/\ud7ff\U0001f600'


def _text(rng: random.Random) -> str:
    return "".join(rng.choice(_CHARS) for _ in range(rng.randint(0, 10)))


def _leaf(rng: random.Random) -> object:
    return rng.choice(
        [
            lambda: rng.randint(-(10**20), 10**20),
            lambda: rng.random() * 10 ** rng.randint(-12, 25) * rng.choice((1, -1)),
            lambda: rng.choice((0.0, -0.0, 1.0, 1e16, 5e-324, 1.7976931348623157e308)),
            lambda: _text(rng),
            lambda: rng.choice((None, True, False)),
            lambda: rng.choice(list(_Kind)),
            lambda: rng.choice(list(_Level)),
        ]
    )()


def _doc(rng: random.Random, depth: int = 0) -> object:
    roll = rng.random()
    if depth > 4 or roll < 0.35:
        return _leaf(rng)
    if roll < 0.55:
        return [_doc(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    if roll < 0.65:
        return tuple(_doc(rng, depth + 1) for _ in range(rng.randint(0, 3)))
    keys: list[object] = [_text(rng), rng.randint(-5, 5), rng.choice(list(_Kind)), None, True, 2.5]
    return {rng.choice(keys): _doc(rng, depth + 1) for _ in range(rng.randint(0, 5))}


def test_json_text_is_json_dumps_indent_2() -> None:
    rng = random.Random(20261207)
    for _ in range(5000):
        doc = _doc(rng)
        assert json_text(doc) == json.dumps(doc, indent=2), doc


def test_json_text_on_empty_and_nested_containers() -> None:
    doc = {"a": [], "b": {}, "c": [[], {}, [[{}]]], "d": {"e": {"f": []}}, "": [""]}
    assert json_text(doc) == json.dumps(doc, indent=2)
    assert json_text([]) == "[]" and json_text({}) == "{}" and json_text("x") == '"x"'


def test_json_text_writes_what_json_writes_for_nan_and_infinity() -> None:
    doc = {"ratio": [float("nan"), float("inf"), -float("inf")], "n": 1}
    assert json_text(doc) == json.dumps(doc, indent=2)
