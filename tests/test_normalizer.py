"""A Normalizer owns its memo tables: two share nothing, each table stays within its bound, and
what a table holds never changes an answer (a warm normalizer answers as a fresh one)."""

from __future__ import annotations

from pathlib import Path

import pytest

from iamtrim.normalize import record as record_mod
from iamtrim.normalize import resources as resources_mod
from iamtrim.normalize.record import Normalizer
from iamtrim.sources import iter_input_files, read_file
from iamtrim.sources.records import Record

ROOT = Path(__file__).resolve().parent.parent


def _sample_records() -> list[Record]:
    out: list[Record] = []
    for path, error in iter_input_files([ROOT / "samples"]):
        if not error:
            out.extend(read_file(path)[0].records)
    return out


def _tables(n: Normalizer) -> dict[str, int]:
    return {
        "good_times": len(n.good_times),
        "days": len(n.days),
        "identities": len(n.identities),
        "identity_fields": len(n.identity_fields),
        "ip_kinds": len(n.ip_kinds),
        "contexts": len(n.contexts),
        "plans": len(n.plans),
        "resolver.cache": len(n.resolver.cache),
        "resolver.consulted": len(n.resolver.consulted),
        "resolver.projected": len(n.resolver.projected),
        "resolver.ref_types": len(n.resolver.ref_types),
    }


def test_two_normalizers_share_nothing_and_answer_alike() -> None:
    records = _sample_records()
    warm, other = Normalizer(), Normalizer()
    first = [warm.fast_parts(r) or warm.normalize_parts(r) for r in records]
    held = _tables(warm)
    assert all(held[name] > 0 for name in held if name != "resolver.cache"), held
    assert set(_tables(other).values()) == {0}  # the other one holds nothing of it
    # Warm, the first answers the same again; the second, cold, answers the same too.
    assert [warm.normalize_parts(r) for r in records] == [other.normalize_parts(r) for r in records]
    assert first == [warm.normalize_parts(r) for r in records]


def test_every_table_stays_within_its_bound_and_answers_do_not_change(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With every bound set to 5, the tables of one normalizer fed all the samples never hold
    more than their bound (the contexts table is cleared once it holds more), and each answer is
    the one a fresh normalizer gives."""
    bound = 5
    records = _sample_records()
    # With the real bounds, the samples fill these tables past 5: the small bounds are reached.
    unbounded = Normalizer()
    for rec in records:
        unbounded.fast_parts(rec) or unbounded.normalize_parts(rec)
    grown = _tables(unbounded)
    assert all(grown[name] > bound for name in grown if name != "resolver.cache"), grown
    for name in (
        "_GOOD_TIMES_LIMIT",
        "_DAYS_LIMIT",
        "_IDENTITIES_LIMIT",
        "_IP_KINDS_LIMIT",
        "_CONTEXTS_LIMIT",
        "_PLANS_LIMIT",
    ):
        monkeypatch.setattr(record_mod, name, bound)
    monkeypatch.setattr(resources_mod, "_CACHE_LIMIT", bound)
    n = Normalizer()
    most = dict.fromkeys(_tables(n), 0)
    for i, rec in enumerate(records):
        got = n.fast_parts(rec) or n.normalize_parts(rec)
        if i % 7 == 0:  # a fresh normalizer per record is slow: every 7th is enough
            assert got == Normalizer().normalize_parts(rec), rec
        for name, size in _tables(n).items():
            most[name] = max(most[name], size)
    # resolver.consulted is keyed by (action, role) and only grows: the catalog bounds it.
    over = {
        name: size
        for name, size in most.items()
        if size > bound + (name == "contexts") and name != "resolver.consulted"
    }
    assert not over, over
