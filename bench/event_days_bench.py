"""How to keep event hashes per day (schema 6, docs/store.md "Event hashes"): three layouts, and
two ways to look a hash up in a loaded day.

    python bench/event_days_bench.py --days 3 --per-day 700000 --batch 50000

Layouts, each written batch by batch (one transaction per batch, as ingest commits) into a fresh
SQLite file in WAL mode: ``parts`` (what iamtrim writes: one sorted int64 blob per day and commit,
a day's parts merged into one past 16), ``rows`` (a ``(day, hash)`` WITHOUT ROWID table, one row a
hash), ``blob`` (one blob per day, read, merged and rewritten by every commit). For each: CPU
seconds to write, bytes on disk after a checkpoint, CPU seconds to load one day. Then, on one
loaded day, the cost of a lookup by binary search in the sorted ``array('q')`` against a ``set``
built from it, and the memory of each. Nothing here is a test.
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import sys
import tempfile
import time
import tracemalloc
from array import array
from bisect import bisect_left
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from iamtrim.store import _EVENT_DAYS, _add_event_days, day_hashes


def _db(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    return db


def write_parts(db: sqlite3.Connection, batches: list[dict[str, array[int]]]) -> None:
    db.execute(_EVENT_DAYS)
    for batch in batches:
        db.execute("BEGIN IMMEDIATE")
        _add_event_days(db, batch)
        db.execute("COMMIT")


def write_rows(db: sqlite3.Connection, batches: list[dict[str, array[int]]]) -> None:
    db.execute(
        "CREATE TABLE event_rows (day TEXT NOT NULL, hash INTEGER NOT NULL, PRIMARY KEY (day, hash)) "
        "WITHOUT ROWID"
    )
    for batch in batches:
        db.execute("BEGIN IMMEDIATE")
        for day, hashes in batch.items():
            db.executemany("INSERT INTO event_rows VALUES (?, ?)", ((day, h) for h in hashes))
        db.execute("COMMIT")


def write_blob(db: sqlite3.Connection, batches: list[dict[str, array[int]]]) -> None:
    db.execute("CREATE TABLE event_blob (day TEXT PRIMARY KEY, hashes BLOB NOT NULL) WITHOUT ROWID")
    for batch in batches:
        db.execute("BEGIN IMMEDIATE")
        for day, hashes in batch.items():
            row = db.execute("SELECT hashes FROM event_blob WHERE day = ?", (day,)).fetchone()
            held = array("q")
            if row:
                held.frombytes(row[0])
            merged = array("q", sorted([*held, *hashes]))
            db.execute("INSERT OR REPLACE INTO event_blob VALUES (?, ?)", (day, merged.tobytes()))
        db.execute("COMMIT")


def load(db: sqlite3.Connection, layout: str, day: str) -> array[int]:
    if layout == "parts":
        return day_hashes(db, day)
    if layout == "rows":
        return array("q", (h for (h,) in db.execute("SELECT hash FROM event_rows WHERE day = ?", (day,))))
    out = array("q")
    out.frombytes(db.execute("SELECT hashes FROM event_blob WHERE day = ?", (day,)).fetchone()[0])
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--days", type=int, default=3)
    ap.add_argument("--per-day", type=int, default=700_000)
    ap.add_argument("--batch", type=int, default=50_000, help="hashes per commit (one day at a time)")
    ap.add_argument("--lookups", type=int, default=200_000)
    args = ap.parse_args(argv)
    rnd = random.Random(1)
    days = [f"2025-03-{d + 1:02d}" for d in range(args.days)]
    batches = []
    for day in days:  # a trail read in order: each commit holds one day's next hashes
        for _ in range(0, args.per_day, args.batch):
            batches.append({day: array("q", (rnd.getrandbits(64) - (1 << 63) for _ in range(args.batch)))})
    n = args.days * (args.per_day // args.batch) * args.batch
    print(f"{n:,} hashes, {len(batches)} commits of {args.batch:,}")
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as tmp:
        for layout, write in (("parts", write_parts), ("rows", write_rows), ("blob", write_blob)):
            path = Path(tmp) / f"{layout}.sqlite"
            db = _db(path)
            t0 = time.process_time()
            write(db, batches)
            cpu = time.process_time() - t0
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            t0 = time.process_time()
            loaded = load(db, layout, days[0])
            load_cpu = time.process_time() - t0
            db.close()
            size = path.stat().st_size
            print(
                f"{layout:>6}: write {cpu:6.2f} s CPU ({cpu / n * 1e6:5.2f} µs a hash), "
                f"{size / 2**20:7.1f} MiB on disk ({size / n:5.1f} B a hash), "
                f"load a day {load_cpu:5.3f} s ({len(loaded):,})"
            )
    day = array("q", sorted(rnd.getrandbits(64) - (1 << 63) for _ in range(args.per_day)))
    probes = [day[rnd.randrange(len(day))] if i % 2 else rnd.getrandbits(63) for i in range(args.lookups)]
    t0 = time.process_time()
    hits = 0
    for h in probes:
        i = bisect_left(day, h)
        hits += i != len(day) and day[i] == h
    bisect_us = (time.process_time() - t0) / len(probes) * 1e6
    tracemalloc.start()
    t0 = time.process_time()
    as_set = set(day)
    build = time.process_time() - t0
    set_bytes = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    t0 = time.process_time()
    set_hits = sum(1 for h in probes if h in as_set)
    set_us = (time.process_time() - t0) / len(probes) * 1e6
    assert hits == set_hits
    print(
        f"lookup in a day of {len(day):,}: bisect on array('q') {bisect_us:.2f} µs, "
        f"{8 * len(day) / 2**20:.1f} MiB; "
        f"set {set_us:.2f} µs, {set_bytes / 2**20:.1f} MiB ({set_bytes / len(day):.0f} B a hash), "
        f"built in {build:.2f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
