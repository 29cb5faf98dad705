"""--since/--until on the window index (issue 14): SQLite's plan for each windowed query uses
``usage_by_principal_seen``, and the answers equal those of the same store without the index."""

from __future__ import annotations

import random
import shutil
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from iamtrim.model import Context, Principal, PrincipalKind, TimeWindow
from iamtrim.query import literal_prefix, principal_usage, summarize_principals
from iamtrim.store import Store

ACCOUNT = "111122223333"
INDEX = "usage_by_principal_seen"
KEY = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/1f2e3d4c-5b6a-4978-8a1b-2c3d4e5f6a7b"
START = datetime(2026, 9, 1, tzinfo=UTC)
PRINCIPALS = [f"arn:aws:iam::{ACCOUNT}:role/team-{i}" for i in range(8)]
Stores = tuple[Path, Path, list[tuple[object, ...]]]  # indexed store, the same without the index, rows


def _stamp(rng: random.Random) -> str:
    return (START + timedelta(seconds=rng.randrange(60 * 86400))).strftime("%Y-%m-%dT%H:%M:%SZ")


def _write_store(path: Path, seed: int, n: int = 3000) -> list[tuple[object, ...]]:
    """A store of *n* random rows (principals sharing resources, denied rows, KMS contexts, spans of
    first..last seen from a second to two months), written and closed as ingest does."""
    rng = random.Random(seed)
    actions = ["s3:GetObject", "s3:PutObject", "kms:Decrypt", "dynamodb:GetItem", "sts:GetCallerIdentity"]
    rows: dict[tuple[str, ...], tuple[object, ...]] = {}
    for i in range(n):
        a, b = sorted((_stamp(rng), _stamp(rng)))
        if rng.random() < 0.5:  # many rows are seen once, or over a short span
            b = a
        ctx = Context(kms_key=KEY) if rng.random() < 0.2 else Context()
        shared = f"arn:aws:s3:::shared/k{rng.randrange(40)}"
        resource = rng.choice(["", "*", KEY, shared, f"arn:aws:s3:::own/{i}"])
        key = (
            rng.choice(PRINCIPALS),
            rng.choice(actions),
            resource,
            rng.choice(["used", "used", "used", "denied"]),
            ctx.to_key(),
        )
        rows[key] = (*key, rng.randrange(1, 100), a, b, (f"e{i}",), ("10.0.0.1",))
    with Store(path) as st:
        st.commit_batch(
            [], [Principal(p, PrincipalKind.ROLE, ACCOUNT, p.rsplit("/", 1)[1]) for p in PRINCIPALS], [], []
        )
        st.commit_batch([], [], list(rows.values()), [])
        st.refresh_summaries()  # what an ingest does before it releases the store
    return list(rows.values())


def _windows(rng: random.Random) -> list[TimeWindow]:
    out = [TimeWindow("2026-10-30T00:00:00Z", ""), TimeWindow("2026-10-24T00:00:00Z", "2026-10-30T23:59:59Z")]
    for _ in range(12):
        lo, hi = sorted((_stamp(rng), _stamp(rng)))
        out.append(rng.choice([TimeWindow(lo, hi), TimeWindow(lo, ""), TimeWindow("", hi)]))
    return out


def _queries(st: Store, window: TimeWindow) -> dict[str, Callable[[], object]]:
    """Every reading method that takes a window, with the arguments the commands pass."""
    p = PRINCIPALS[3]
    who = Principal(p, PrincipalKind.ROLE, ACCOUNT, "team-3")
    return {
        "principal_totals": lambda: st.principal_totals(window),
        "shared_resources": lambda: st.shared_resources(window),
        "shared_resources_of": lambda: st.shared_resources(window, p),
        "usage_of_principal": lambda: st.usage(p, window),
        "usage_of_principals": lambda: st.usage_of([p, PRINCIPALS[5]], [], window),
        "usage_of_resource": lambda: st.usage_of([], [literal_prefix("arn:aws:s3:::shared/*")], window),
        "summarize_principals": lambda: summarize_principals(st, window),
        "principal_usage": lambda: principal_usage(st, who, window),
    }


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> Stores:
    """The same rows twice: as written (with the index and its statistics), and with both dropped
    (a store an older iamtrim wrote)."""
    folder = tmp_path_factory.mktemp("window-index")
    indexed, bare = folder / "indexed.sqlite", folder / "bare.sqlite"
    rows = _write_store(indexed, 11)
    shutil.copy(indexed, bare)
    with sqlite3.connect(bare) as db:
        db.execute(f"DROP INDEX {INDEX}")
        db.execute("DROP TABLE IF EXISTS sqlite_stat1")
    return indexed, bare, rows


def test_a_writer_makes_the_index_and_its_statistics(stores: Stores) -> None:
    indexed, bare, _ = stores
    with sqlite3.connect(f"file:{indexed}?mode=ro", uri=True) as db:
        cols = [r[2] for r in db.execute(f"PRAGMA index_info({INDEX})")]
        assert cols[:4] == ["principal", "last_seen", "first_seen", "count"]
        assert db.execute("SELECT COUNT(*) FROM sqlite_stat1 WHERE idx = ?", (INDEX,)).fetchone()[0] == 1
    with Store(bare, read_only=True) as st:  # a reader changes nothing: still no index
        st.usage(PRINCIPALS[0], TimeWindow("2026-10-01T00:00:00Z", ""))
    with sqlite3.connect(f"file:{bare}?mode=ro", uri=True) as db:
        assert db.execute("SELECT COUNT(*) FROM sqlite_master WHERE name = ?", (INDEX,)).fetchone()[0] == 0


def test_an_older_store_gains_the_index_when_next_written(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    _write_store(path, 12, n=200)
    with sqlite3.connect(path) as db:
        db.execute(f"DROP INDEX {INDEX}")
    with Store(path) as st:
        st.refresh_summaries()
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        assert db.execute("SELECT COUNT(*) FROM sqlite_master WHERE name = ?", (INDEX,)).fetchone()[0] == 1


def test_each_windowed_query_plans_a_range_on_the_index(stores: Stores) -> None:
    """Every aggregate a windowed reading method asks of the usage table is planned as a range on
    the covering index (EXPLAIN QUERY PLAN: ``SEARCH usage USING COVERING INDEX
    usage_by_principal_seen (principal=? AND last_seen>?)``, or ``ANY(principal)`` for a skip-scan
    over the principals); no read of whole rows takes a range on it (each row found there would
    cost a second seek into the table)."""
    indexed, _, _ = stores
    window = TimeWindow("2026-10-24T00:00:00Z", "2026-10-30T23:59:59Z")
    aggregates = rows = 0
    with Store(indexed, read_only=True) as st:
        db = st._db
        for name, call in _queries(st, window).items():
            statements: list[str] = []
            db.set_trace_callback(statements.append)  # the SQL with its values, as run
            try:
                call()
            finally:
                db.set_trace_callback(None)
            windowed = [s for s in statements if "last_seen >=" in s]
            assert windowed, name
            for sql in windowed:
                plan = [r[3] for r in db.execute("EXPLAIN QUERY PLAN " + sql) if "usage " in r[3] + " "]
                if "+last_seen" in sql:  # whole rows: no range on the index (SQLite plans the rest)
                    rows += 1
                    assert plan and all("last_seen>" not in line for line in plan), (name, plan)
                    continue
                aggregates += 1
                assert plan, (name, sql)
                for line in plan:
                    assert f"USING COVERING INDEX {INDEX} (" in line and "last_seen>?" in line, (name, plan)
    assert aggregates >= 8 and rows >= 4, (aggregates, rows)


def test_windowed_answers_equal_the_store_without_the_index(stores: Stores) -> None:
    indexed, bare, rows = stores
    rng = random.Random(5)
    with Store(indexed, read_only=True) as a, Store(bare, read_only=True) as b:
        for window in _windows(rng):
            got, want = _queries(a, window), _queries(b, window)
            for name in got:
                assert got[name]() == want[name](), (name, window)
            # and the rows kept are exactly those whose first..last seen overlaps the window
            expected = sorted(
                (str(r[0]), str(r[1]), str(r[2]), str(r[3]), str(r[5]))
                for r in rows
                if window.overlaps(str(r[6]), str(r[7]))
            )
            kept = [
                (r.principal, r.action, r.resource or "", r.outcome, str(r.count))
                for r in a.usage(window=window)
            ]
            assert sorted(kept) == expected
