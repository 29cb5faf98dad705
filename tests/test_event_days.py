"""Event hashes kept per UTC day (schema 6, docs/store.md "Event hashes"): a run looks up only the
days its records fall on, drops the copies of stored events exactly as before, writes the hashes
with their files, and a schema-5 store's per-file hashes keep dropping their copies."""

from __future__ import annotations

import functools
import json
import random
import sqlite3
from array import array
from pathlib import Path
from typing import Any

import pytest

from iamtrim import ingest as ingest_mod
from iamtrim import store as store_mod
from iamtrim.engines.reduce import reduce_paths, store_reduction
from iamtrim.ingest import RunEvents, event_day, event_hash, ingest
from iamtrim.store import LEGACY_DAY, Store, StoredEvents
from tests.engine_compare import assert_same_store, usage_table
from tests.test_ingest import interrupt_at, s3_get, total, write_trail


def rec(day: int, i: int, *, time: str | None = None) -> dict[str, Any]:
    """An S3 read on 2026-10-<day>, its eventID unique per (day, i)."""
    record = s3_get(i, f"k/{day}/{i % 7}", event_id=f"00000000-0000-4000-8000-{day:04d}{i:08d}")
    when = f"2026-10-{day:02d}T{i // 3600 % 24:02d}:{i // 60 % 60:02d}:{i % 60:02d}Z"
    record["eventTime"] = time if time is not None else when
    return record


def hash_of(record: dict[str, Any]) -> int:
    return event_hash(record["eventID"], record["eventTime"] or "", record["eventName"])


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    """An Event-history style download: JSON Lines, not a trail delivery."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(json.dumps(r) for r in records))
    return path


def stored_table(st: Store) -> dict[str, list[int]]:
    return {day: list(st.day_hashes(day)) for day in sorted(st.event_days())}


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The days whose hashes are read from a store (any connection of this process)."""
    days: list[str] = []
    real = store_mod.day_hashes

    def spy(db: sqlite3.Connection, day: str) -> array[int]:
        days.append(day)
        return real(db, day)

    monkeypatch.setattr(store_mod, "day_hashes", spy)
    return days


def test_event_day_is_the_date_as_written_or_a_bucket_of_its_own() -> None:
    for day in ("2026-10-01", "1970-01-01", "2099-12-31", "2026-02-31"):
        assert event_day(day) == day  # the text, not the calendar: the same answer in every run
    for odd in ("", "2026/10/01", "yesterday", "2026-10-0", "２０２６-10-01", "1969-12-31", "2100-01-01",
                "2026-13-01", "2026-00-10", "2026-10-32", "9999-99-99"):  # fmt: skip
        assert event_day(odd) == ""


def test_a_run_of_new_days_loads_no_hash_and_a_stored_day_drops_its_copies(
    tmp_path: Path, loads: list[str]
) -> None:
    first = [rec(1, i) for i in range(10)] + [rec(2, i) for i in range(10)]
    write_trail(tmp_path / "a" / "t.json", first)
    write_trail(tmp_path / "b" / "t.json", [rec(3, i) for i in range(10)])
    # Five copies of day 2's events and five new events of that day.
    write_trail(tmp_path / "c" / "t.json", [rec(2, i) for i in range(5, 15)])
    with Store(tmp_path / "s.sqlite") as st:
        ingest([tmp_path / "a"], st, workers=1)
        assert stored_table(st) == {
            "2026-10-01": sorted(hash_of(r) for r in first[:10]),
            "2026-10-02": sorted(hash_of(r) for r in first[10:]),
        }
        loads.clear()
        ingest([tmp_path / "b"], st, workers=1)
        assert loads == []  # day 3 holds nothing yet: nothing read
        assert total(st) == 30
        loads.clear()
        report = ingest([tmp_path / "c"], st, workers=1)
        assert set(loads) == {"2026-10-02"}  # only the day the records fall on
        assert report.skips["duplicate-event"] == 5
        assert total(st) == 35
        assert len(st.day_hashes("2026-10-02")) == 15


def test_days_are_not_confused_and_odd_times_have_a_bucket_of_their_own(tmp_path: Path) -> None:
    """The same eventID on two days is two events; records without a usable eventTime are kept
    under '' and their copies dropped in a later run; a copy falls on its event's day only."""
    day1, day2 = rec(1, 1), rec(2, 1)
    day2["eventID"] = day1["eventID"]
    odd = [rec(1, 50, time="yesterday"), rec(1, 51, time="")]
    write_trail(tmp_path / "a" / "t.json", [day1, *odd])
    write_trail(tmp_path / "b" / "t.json", [day2, rec(1, 1), *odd])
    with Store(tmp_path / "s.sqlite") as st:
        ingest([tmp_path / "a"], st, workers=1)
        assert sorted(st.event_days()) == ["", "2026-10-01"]
        assert len(st.day_hashes("")) == 2
        report = ingest([tmp_path / "b"], st, workers=1)
        assert report.skips["duplicate-event"] == 3  # day 1's event and the two odd ones
        assert sorted(st.event_days()) == ["", "2026-10-01", "2026-10-02"]
        assert list(st.day_hashes("2026-10-02")) == [hash_of(day2)]


@pytest.mark.parametrize("workers", [1, 2])
def test_an_event_history_download_over_stored_trail_days_is_deduplicated(
    tmp_path: Path, workers: int
) -> None:
    """A download of days the store holds (read by workers that load those days themselves),
    plus events of a new day: only the new events count, and the store is the store one run over
    everything gives."""
    trail = [[rec(day, i) for i in range(n * 20, n * 20 + 20)] for day in (1, 2, 3) for n in range(3)]
    for n, records in enumerate(trail):
        write_trail(tmp_path / "trail" / f"{n:02d}.json", records)
    rnd = random.Random(5)
    everything = [r for records in trail for r in records]
    copies = rnd.sample(everything, 40)
    new = [rec(4, i) for i in range(12)] + [rec(2, 500 + i) for i in range(6)]
    download = copies[:20] + new[:9] + copies[20:] + new[9:]
    for n in range(3):  # three files: the chunks of a run go to both workers
        write_jsonl(tmp_path / "download" / f"{n}.jsonl", download[n::3])
    with Store(tmp_path / "s.sqlite") as st:
        ingest([tmp_path / "trail"], st, workers=workers)
        report = ingest([tmp_path / "download"], st, workers=workers)
        assert report.skips["duplicate-event"] == 40
        assert total(st) == len(everything) + len(new)
        incremental = (usage_table(st), stored_table(st))
    with Store(tmp_path / "once.sqlite") as st:
        ingest([tmp_path / "trail", tmp_path / "download"], st, workers=workers)
        assert (usage_table(st), stored_table(st)) == incremental
    assert sum(len(h) for h in incremental[1].values()) == len(everything) + len(new)


@pytest.mark.parametrize("workers", [1, 2])
def test_an_interrupted_run_keeps_each_file_with_its_hashes_and_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    files = {n: [rec(1 + n % 3, n * 10 + i) for i in range(10)] for n in range(8)}
    for n, records in files.items():
        write_trail(tmp_path / "t" / f"{n}.json", records)
    monkeypatch.setattr(ingest_mod, "BATCH_FILES", 2)
    with Store(tmp_path / "s.sqlite") as st, pytest.raises(KeyboardInterrupt):
        ingest([tmp_path / "t"], st, workers=workers, on_file=interrupt_at(5))
    with Store(tmp_path / "s.sqlite") as st:
        stored_files = [int(Path(f.path).stem) for f in st.files()]
        assert len(stored_files) == 4  # two batches of two files were committed
        want = sorted(hash_of(r) for n in stored_files for r in files[n])
        assert sorted(h for hashes in stored_table(st).values() for h in hashes) == want
        ingest([tmp_path / "t"], st, workers=workers)
        assert total(st) == 80
        everything = sorted(hash_of(r) for records in files.values() for r in records)
        assert sorted(h for hashes in stored_table(st).values() for h in hashes) == everything
        write_jsonl(tmp_path / "again.jsonl", [r for records in files.values() for r in records])
        report = ingest([tmp_path / "again.jsonl"], st, workers=workers)
        assert report.skips["duplicate-event"] == 80 and total(st) == 80


def to_schema_5(path: Path, file_records: dict[str, list[dict[str, Any]]]) -> None:
    """Make *path* the store iamtrim 5 wrote: each file's counted event hashes in its row
    (``files.event_hashes``, by file name in *file_records*), no event_days, schema 5."""
    db = sqlite3.connect(path)
    for digest, file_path in db.execute("SELECT digest, path FROM files").fetchall():
        hashes = array("q", (hash_of(r) for r in file_records[Path(file_path).name]))
        db.execute("UPDATE files SET event_hashes = ? WHERE digest = ?", (hashes.tobytes(), digest))
    db.execute("DROP TABLE event_days")
    db.execute("UPDATE meta SET value = '5' WHERE key = 'schema'")
    db.execute("PRAGMA user_version=5")
    db.commit()
    db.close()


def schema_5_store(tmp_path: Path, files: dict[str, list[dict[str, Any]]]) -> Path:
    """A store iamtrim 5 wrote from *files* (trail files by name under tmp_path/t)."""
    for name, records in files.items():
        write_trail(tmp_path / "t" / name, records)
    path = tmp_path / "v5.sqlite"
    with Store(path) as st:
        ingest([tmp_path / "t"], st, workers=1)
    to_schema_5(path, files)
    return path


@pytest.mark.parametrize("workers", [1, 2])
def test_a_schema_5_store_keeps_dropping_the_copies_of_its_events(tmp_path: Path, workers: int) -> None:
    files = {f"{n}.json": [rec(1 + n, n * 10 + i) for i in range(10)] for n in range(3)}
    path = schema_5_store(tmp_path, files)
    everything = [r for records in files.values() for r in records]
    with Store(path, read_only=True) as st:  # a reading command migrates it too
        assert (st.meta("schema"), st.meta("migrated_from")) == (store_mod.SCHEMA_VERSION, "5")
        assert st.event_days() == {LEGACY_DAY}  # no day is known for them
        assert list(st.day_hashes(LEGACY_DAY)) == sorted(hash_of(r) for r in everything)
    db = sqlite3.connect(path)
    assert db.execute("SELECT COUNT(*) FROM files WHERE length(event_hashes)").fetchone() == (0,)
    assert db.execute("PRAGMA user_version").fetchone() == (int(store_mod.SCHEMA_VERSION),)
    db.close()
    new = [rec(2, 900 + i) for i in range(7)]
    download = everything[::3] + new
    for n in range(2):
        write_jsonl(tmp_path / "d" / f"{n}.jsonl", download[n::2])
    with Store(path) as st:
        report = ingest([tmp_path / "d"], st, workers=workers)
        assert report.skips["duplicate-event"] == len(everything[::3])
        assert total(st) == len(everything) + len(new)
        assert list(st.day_hashes("2026-10-02")) == sorted(hash_of(r) for r in new)
        assert len(st.day_hashes(LEGACY_DAY)) == len(everything)


def test_the_reference_engine_looks_up_days_and_legacy_hashes_as_ingest_does(tmp_path: Path) -> None:
    files = {f"{n}.json": [rec(1 + n, n * 10 + i) for i in range(10)] for n in range(2)}
    for name, records in files.items():
        write_trail(tmp_path / "t" / name, records)
    everything = [r for records in files.values() for r in records]
    write_jsonl(tmp_path / "d" / "later.jsonl", [*everything[5:15], rec(2, 700), rec(3, 1)])
    stores = {}
    for name in ("local", "engine"):
        path = tmp_path / f"{name}.sqlite"
        with Store(path) as st:
            ingest([tmp_path / "t"], st, workers=1)
        to_schema_5(path, files)
        stores[name] = Store(path)
    write_trail(tmp_path / "t2" / "more.json", [rec(2, 800), rec(1, 3)])  # a stored day, a copy
    for paths in ([tmp_path / "t2"], [tmp_path / "d"]):
        ingest(paths, stores["local"], workers=1)
        store_reduction(reduce_paths(paths, stores["engine"]), stores["engine"])
    assert_same_store(stores["engine"], stores["local"])
    assert dict(stores["local"].skips())["duplicate-event"] == 11
    for st in stores.values():
        st.close()


def test_a_day_holds_a_bounded_number_of_parts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_mod, "EVENT_DAY_PARTS", 3)
    with Store(tmp_path / "s.sqlite") as st:
        for n in range(7):  # seven runs, one part each on day 1
            write_trail(tmp_path / f"t{n}" / "t.json", [rec(1, n * 10 + i) for i in range(10)])
            ingest([tmp_path / f"t{n}"], st, workers=1)
        db = sqlite3.connect(tmp_path / "s.sqlite")
        parts = db.execute("SELECT COUNT(*) FROM event_days WHERE day = '2026-10-01'").fetchone()[0]
        db.close()
        assert 1 <= parts <= 3
        assert list(st.day_hashes("2026-10-01")) == sorted(hash_of(rec(1, i)) for i in range(70))


def test_a_worker_holds_a_bounded_number_of_loaded_hashes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Days loaded past the bound are dropped (and loaded again when asked): same results."""
    trail = [rec(day, i) for day in range(1, 6) for i in range(20)]
    write_trail(tmp_path / "t" / "t.json", trail)
    download = [*trail[::2], rec(6, 1)]
    write_jsonl(tmp_path / "d" / "0.jsonl", download[::2])
    write_jsonl(tmp_path / "d" / "1.jsonl", download[1::2])
    with Store(tmp_path / "s.sqlite") as st:
        ingest([tmp_path / "t"], st, workers=1)
        small = StoredEvents(st, limit=25)
        for day in ("2026-10-01", "2026-10-02", "2026-10-03", "2026-10-01"):
            assert list(small.day(day)) == list(st.day_hashes(day))
            assert small.loaded() <= 25 + 20
        assert small.day("2026-10-09") == array("q")
        monkeypatch.setattr(ingest_mod, "StoredEvents", functools.partial(StoredEvents, limit=25))
        report = ingest([tmp_path / "d"], st, workers=2)
        assert report.skips["duplicate-event"] == 50
        assert total(st) == 101


def test_run_events_find_exactly_what_was_counted() -> None:
    """Sorted runs merged as they grow, searched by a pass or a binary search: a set's answers."""
    rnd = random.Random(3)
    run = RunEvents()
    reference: dict[str, set[int]] = {}
    for step in range(300):
        day = rnd.choice(["2026-10-01", "2026-10-02", ""])
        hashes = {rnd.getrandbits(64) - (1 << 63) for _ in range(rnd.choice([1, 5, 200, 3000]))}
        hashes -= reference.get(day, set())
        run.add(day, hashes)
        reference.setdefault(day, set()).update(hashes)
        if step % 7 == 0:
            known = rnd.sample(sorted(reference[day]), min(len(reference[day]), rnd.choice([1, 3, 50, 2000])))
            ask = set(known) | {rnd.getrandbits(63) for _ in range(len(known))}
            assert run.counted(day, ask) == ask & reference[day]
    assert run.size() == sum(len(v) for v in reference.values())
    for day, runs in run.days.items():
        assert all(list(r) == sorted(r) for r in runs)
        assert len(runs) <= 2 + len(reference[day]).bit_length()


def test_a_migration_sorts_and_merges_in_bounded_runs_and_parts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Hashes sorted a few at a time and merged by streaming, written in parts of a bound: the
    legacy day is every hash once, sorted, and still drops the copies."""
    monkeypatch.setattr(store_mod, "_SORT_RUN", 4)
    monkeypatch.setattr(store_mod, "_LEGACY_PART", 7)
    files = {f"{n}.json": [rec(1 + n % 2, n * 10 + i) for i in range(6)] for n in range(4)}
    path = schema_5_store(tmp_path, files)
    everything = [r for records in files.values() for r in records]
    with Store(path) as st:
        assert list(st.day_hashes(LEGACY_DAY)) == sorted(hash_of(r) for r in everything)
        db = sqlite3.connect(path)
        assert db.execute("SELECT COUNT(*) FROM event_days WHERE day = ?", (LEGACY_DAY,)).fetchone() == (4,)
        db.close()
        write_jsonl(tmp_path / "d.jsonl", everything[3:9])
        assert ingest([tmp_path / "d.jsonl"], st, workers=1).skips["duplicate-event"] == 6
