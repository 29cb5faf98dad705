"""The distinct-key sketch of a folded row (iamtrim/keysketch.py): exact up to its bound, then a
HyperLogLog; merges like the sets it stands for, byte for byte."""

from __future__ import annotations

import os
import pickle
import random
import subprocess
import sys

import pytest

from iamtrim.keysketch import EXACT_BOUND, REGISTERS, STANDARD_ERROR, KeySketch, key_hash


def _keys(n: int, seed: int = 0, prefix: str = "arn:aws:s3:::bucket/curated/") -> list[str]:
    rng = random.Random(seed)
    return [f"{prefix}{rng.randrange(2026)}/{i:07d}-{rng.getrandbits(32):08x}.parquet" for i in range(n)]


def _sketch(keys: list[str]) -> KeySketch:
    s = KeySketch()
    for k in keys:
        s.add(k)
    return s


def _split_merge(keys: list[str], rng: random.Random) -> KeySketch:
    """*keys* shuffled (repeats added), cut into random parts, sketched apart and merged in a
    random order and tree shape."""
    keys = keys + rng.sample(keys, len(keys) // 3)
    rng.shuffle(keys)
    cuts = sorted(rng.sample(range(1, len(keys)), min(len(keys) - 1, rng.randint(1, 12))))
    parts = [_sketch(keys[a:b]) for a, b in zip([0, *cuts], [*cuts, len(keys)], strict=True)]
    while len(parts) > 1:
        i, j = sorted(rng.sample(range(len(parts)), 2))
        b = parts.pop(j)
        a = parts.pop(i)
        if rng.random() < 0.5:
            a, b = b, a
        a.merge(b)
        parts.append(a)
    return parts[0]


@pytest.mark.parametrize("n", [1, 40, EXACT_BOUND, EXACT_BOUND + 1, 300, 700, 5000])
def test_any_order_and_split_gives_the_same_bytes(n: int) -> None:
    keys = _keys(n, seed=n)
    whole = _sketch(keys).to_bytes()
    rng = random.Random(n * 7919)
    for _ in range(12):
        assert _split_merge(keys, rng).to_bytes() == whole


def test_exact_or_estimated_depends_only_on_the_set() -> None:
    """Two exact halves whose union passes the bound merge into the estimate of the whole; an
    estimated sketch merged with an exact one equals the sketch with those keys added."""
    keys = _keys(EXACT_BOUND + 50, seed=3)
    a, b = _sketch(keys[:200]), _sketch(keys[150:])
    assert a.exact and b.exact
    a.merge(b)
    assert not a.exact and a.to_bytes() == _sketch(keys).to_bytes()
    big, small = _sketch(_keys(2000, seed=4)), _sketch(keys[:10])
    left, right = big.copy(), small.copy()
    left.merge(small)
    right.merge(big)
    assert left.to_bytes() == right.to_bytes() == _sketch(_keys(2000, seed=4) + keys[:10]).to_bytes()
    assert big.to_bytes() == _sketch(_keys(2000, seed=4)).to_bytes()  # merge leaves its argument


def test_exact_below_the_bound() -> None:
    keys = _keys(EXACT_BOUND, seed=5)
    s = _sketch(keys + keys[:100])
    assert s.exact and s.estimate() == EXACT_BOUND and s.describe() == f"{EXACT_BOUND:,}"
    s.add("arn:aws:s3:::bucket/one-more")
    assert not s.exact and s.describe().startswith("~")
    assert _sketch([]).estimate() == 0


@pytest.mark.parametrize("n", [1_000, 10_000, 100_000])
def test_estimates_within_three_standard_errors(n: int) -> None:
    for seed in range(3 if n < 100_000 else 1):
        s = _sketch(_keys(n, seed=seed, prefix=f"arn:aws:s3:::b{seed}/"))
        assert abs(s.estimate() / n - 1) < 3 * STANDARD_ERROR, (n, seed, s.estimate())


def test_bytes_round_trip_and_size() -> None:
    for n in (0, 3, EXACT_BOUND, EXACT_BOUND + 1, 400, 50_000):
        s = _sketch(_keys(n, seed=n))
        data = s.to_bytes()
        assert KeySketch.from_bytes(data).to_bytes() == data
        assert pickle.loads(pickle.dumps(s)) == s
        assert KeySketch.from_bytes(data).estimate() == s.estimate()
        assert len(data) <= 1 + max(8 * EXACT_BOUND, REGISTERS)
    # Sparse registers just past the bound, dense ones for many keys.
    assert len(_sketch(_keys(EXACT_BOUND + 1)).to_bytes()) < 1 + 8 * EXACT_BOUND
    assert len(_sketch(_keys(50_000)).to_bytes()) == 1 + REGISTERS


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x01\x00\x00",  # not whole hashes
        b"\x01" + bytes(16),  # one hash twice
        b"\x01" + bytes(8 * 257),  # more hashes than the exact bound
        b"\x02" + bytes(10),
        b"\x03\x04\x00\x01",  # a register past 1,023
        b"\x07",
        b"\x02" + bytes([99]) * 1024,  # a rank no 64-bit hash has
    ],
)
def test_bytes_it_cannot_have_written_are_refused(data: bytes) -> None:
    with pytest.raises(ValueError):
        KeySketch.from_bytes(data)


def test_partial_is_a_lower_bound_and_survives_merges() -> None:
    old = KeySketch(partial=True)
    new = _sketch(_keys(20))
    new.merge(old)
    assert new.partial and new.describe() == "at least 20"
    assert KeySketch.from_bytes(new.to_bytes()).partial


def test_the_hash_is_stable_across_processes() -> None:
    """Not Python's salted hash(): processes with other hash seeds compute the same values."""
    code = "from iamtrim.keysketch import key_hash; print(key_hash('arn:aws:s3:::bucket/a.txt'))"
    seen = {
        subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for seed in ("1", "2")
    }
    assert seen == {str(key_hash("arn:aws:s3:::bucket/a.txt"))}
