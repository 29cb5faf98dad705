"""The store's aggregate queries (``principals``, ``usage``'s sharing, graph selections) against
a derivation in Python over every row: the one the commands used before they were SQL (issue 14)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from iamtrim.graph import select_rows
from iamtrim.ingest import load_events
from iamtrim.model import Context, Outcome, Principal, PrincipalKind, TimeWindow, UsageRow
from iamtrim.query import (
    PrincipalSummary,
    literal_prefix,
    principal_usage,
    selection_rows,
    summarize_principals,
)
from iamtrim.store import Store

ACCOUNT = "111122223333"
KEY = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/1f2e3d4c-5b6a-4978-8a1b-2c3d4e5f6a7b"


def _users(rows: list[UsageRow]) -> dict[str, set[str]]:
    users: dict[str, set[str]] = {}
    for r in rows:
        if r.outcome is Outcome.USED and r.resource and r.resource != "*":
            users.setdefault(r.resource, set()).add(r.principal)
    return users


def reference_summaries(store: Store, window: TimeWindow | None) -> list[PrincipalSummary]:
    """Every row as an object, counted in Python (the code before issue 14)."""
    all_rows = store.usage(window=window)
    by_principal: dict[str, list[UsageRow]] = {}
    for row in all_rows:
        by_principal.setdefault(row.principal, []).append(row)
    users = _users(all_rows)
    out = []
    for p in store.principals():
        rows = by_principal.get(p.arn, [])
        if not rows:
            continue
        used = [r for r in rows if r.outcome is Outcome.USED]
        denied = [r for r in rows if r.outcome is Outcome.DENIED]
        mine = {r.resource for r in used if r.resource and r.resource in users}
        shared = {res for res in mine if len(users[res]) > 1}
        out.append(
            PrincipalSummary(
                principal=p,
                actions_used=len({r.action for r in used}),
                actions_denied=len({r.action for r in denied}),
                calls=sum(r.count for r in used),
                denied_calls=sum(r.count for r in denied),
                first_seen=min(r.first_seen for r in rows),
                last_seen=max(r.last_seen for r in rows),
                services=tuple(sorted({r.action.split(":")[0] for r in rows})),
                resources=len(mine),
                shared_resources=len(shared),
                only_resources=len(mine) - len(shared),
                shares_with=tuple(sorted({q for res in shared for q in users[res]} - {p.arn})),
            )
        )
    return out


def _random_store(seed: int) -> Store:
    """Rows as ingest writes them: several principals sharing resources, denied rows, unknown and
    ``*`` resources, folded folders, a literal ``${*}``, KMS keys named in the context."""
    rng = random.Random(seed)
    start = datetime(2026, 9, 1, tzinfo=UTC)

    def stamp() -> str:
        return (start + timedelta(seconds=rng.randrange(30 * 86400))).strftime("%Y-%m-%dT%H:%M:%SZ")

    principals = [f"arn:aws:iam::{ACCOUNT}:role/r{i}" for i in range(6)]
    resources = [
        "",
        "*",
        "arn:aws:s3:::b1",
        "arn:aws:s3:::b1/data/*",
        "arn:aws:s3:::b1/data/k1",
        "arn:aws:s3:::b1/x${*}y",
        "arn:aws:s3:::b2/a",
        "arn:aws:s3:::b10/a",
        KEY,
        f"arn:aws:dynamodb:us-east-1:{ACCOUNT}:table/orders",
        f"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:db-??????",
    ]
    actions = [
        "s3:GetObject",
        "s3:PutObject",
        "kms:Decrypt",
        "dynamodb:GetItem",
        "sts:GetCallerIdentity",
        "x",
    ]
    rows = {}
    for _ in range(300):
        a, b = sorted((stamp(), stamp()))
        ctx = Context(kms_key=KEY) if rng.random() < 0.3 else Context()
        key = (
            rng.choice(principals),
            rng.choice(actions),
            rng.choice(resources) if rng.random() < 0.8 else f"arn:aws:s3:::b3/own-{rng.randrange(1000)}",
            rng.choice(["used", "used", "denied"]),
            ctx.to_key(),
        )
        rows[key] = (*key, rng.randrange(1, 50), a, b, (), ())
    st = Store(":memory:")
    st.commit_batch([], [], list(rows.values()), [])
    st.commit_batch(
        [], [Principal(p, PrincipalKind.ROLE, ACCOUNT, p.rsplit("/", 1)[1]) for p in principals], [], []
    )
    return st


@pytest.fixture(scope="module")
def sample_store(samples: Path) -> Store:
    return load_events([samples / "AWSLogs"], workers=1)


WINDOWS = [None, TimeWindow("2026-09-10T00:00:00Z", ""), TimeWindow("", "2026-09-12T00:00:00Z")]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_principal_summaries_equal_the_row_by_row_count(seed: int) -> None:
    st = _random_store(seed)
    for window in WINDOWS:
        got = summarize_principals(st, window)
        assert got == reference_summaries(st, window)
    assert any(s.shared_resources and s.only_resources for s in summarize_principals(st))


def test_principal_summaries_on_the_samples(sample_store: Store) -> None:
    got = summarize_principals(sample_store)
    assert len(got) > 5 and any(s.shares_with for s in got)
    assert got == reference_summaries(sample_store, None)


@pytest.mark.parametrize("seed", [1, 2])
def test_principal_usage_sharing_equals_the_row_by_row_count(seed: int) -> None:
    st = _random_store(seed)
    for window in WINDOWS:
        users = _users(st.usage(window=window))
        for p in st.principals():
            got = principal_usage(st, p, window)
            mine = sorted({r.resource for r in got.used if r.resource and r.resource in users})
            assert got.shared == tuple(
                (res, tuple(sorted(users[res] - {p.arn}))) for res in mine if len(users[res]) > 1
            )
            assert got.only_this == tuple(res for res in mine if len(users[res]) == 1)
            assert got.used + got.denied == tuple(
                sorted(st.usage(p.arn, window), key=lambda r: r.outcome is Outcome.DENIED)
            )


PATTERNS = [
    "arn:aws:s3:::b1",
    "arn:aws:s3:::b1/data/k1",
    "arn:aws:s3:::b1/data/k9",  # covered only by the folded row b1/data/*
    "arn:aws:s3:::b1*",
    "arn:aws:s3:::b1/x${*}y",
    "arn:aws:s3:::b?/a",
    KEY,
    "arn:aws:kms:us-east-1:111122223333:key/*",
    f"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:db-Ab12Cd",
    "*",
    "(unknown)",
]


@pytest.mark.parametrize("seed", [1, 2])
def test_selections_read_a_superset_of_what_they_keep(seed: int) -> None:
    st = _random_store(seed)
    everything = st.usage()
    kept_any = 0
    for window in WINDOWS:
        rows = st.usage(window=window)
        for pattern in PATTERNS:
            for principals in ([], [f"arn:aws:iam::{ACCOUNT}:role/r1"]):
                narrowed = selection_rows(st, principals, [pattern], window)
                assert len(narrowed) <= len(everything)
                want = select_rows(rows, principals, [pattern])
                assert select_rows(narrowed, principals, [pattern]) == want
                kept_any += len(want)
    assert kept_any


def test_literal_prefix() -> None:
    assert literal_prefix("arn:aws:s3:::b1*") == "arn:aws:s3:::b1"
    assert literal_prefix("arn:aws:s3:::b1/x${*}y") == "arn:aws:s3:::b1/x"
    assert literal_prefix(KEY) == KEY
    assert literal_prefix("*") == ""
    assert literal_prefix("(unknown)") == ""
    assert literal_prefix('arn:aws:s3:::b"1') == ""  # JSON would escape the quote in the context
    assert literal_prefix("arn:aws:s3:::bé") == ""


def _file_store(path: Path, seed: int) -> None:
    """The random store's rows written to *path* the way ingest writes them (then closed)."""
    with _random_store(seed) as mem, Store(path) as st:
        rows = [_stored(r) for r in mem.usage()]
        st.commit_batch([], mem.principals(), rows, [])


def test_summaries_written_on_close_answer_as_the_rows_do(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    _file_store(path, 4)
    with Store(path, read_only=True) as st:
        assert st.meta("summary_of")
        assert st._summaries_fresh()
        for window in WINDOWS:  # the window ones scan; the open one reads the summaries
            assert summarize_principals(st, window) == reference_summaries(st, window)
        for p in st.principals():
            assert principal_usage(st, p) == _scanned_usage(st, p)


def _scanned_usage(st: Store, p: Principal) -> object:
    st._fresh = False  # force the scan
    try:
        return principal_usage(st, p)
    finally:
        st._fresh = None


FIRST_ROW = (
    "(principal, action, resource, outcome, context) = (SELECT principal, action, resource, outcome, "
    "context FROM usage ORDER BY principal, action, resource, outcome, context LIMIT 1)"
)


def test_stale_summaries_are_not_used(tmp_path: Path) -> None:
    """A store changed after its summaries were made (by an older iamtrim, say) is scanned."""
    import sqlite3

    path = tmp_path / "s.sqlite"
    _file_store(path, 5)
    with sqlite3.connect(path) as db:  # one more call, written without refreshing the summaries
        db.execute(f"UPDATE usage SET count = count + 1 WHERE {FIRST_ROW}")
    with Store(path, read_only=True) as st:
        assert not st._summaries_fresh()
        assert summarize_principals(st) == reference_summaries(st, None)
    with Store(path) as st:  # made fresh again by a writer
        st.refresh_summaries()
    with sqlite3.connect(path) as db:  # a row merged into another (a fold): the same calls in all
        (n,) = db.execute(f"SELECT count FROM usage WHERE {FIRST_ROW}").fetchone()
        db.execute(f"DELETE FROM usage WHERE {FIRST_ROW}")
        db.execute(f"UPDATE usage SET count = count + ? WHERE {FIRST_ROW}", (n,))
    with Store(path, read_only=True) as st:
        assert not st._summaries_fresh()
        assert summarize_principals(st) == reference_summaries(st, None)


def test_a_failed_ingest_leaves_the_summaries_to_the_next_one(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    _file_store(path, 6)
    with pytest.raises(RuntimeError), Store(path) as st:
        row = (
            "arn:aws:iam::111122223333:role/r9",
            "s3:GetObject",
            "arn:aws:s3:::b9/k",
            "used",
            Context().to_key(),
            3,
            "2026-09-01T00:00:00Z",
            "2026-09-01T00:00:00Z",
            (),
            (),
        )
        st.commit_batch([], [], [row], [])
        raise RuntimeError("interrupted")
    with Store(path, read_only=True) as st:
        assert not st._summaries_fresh()
        assert summarize_principals(st) == reference_summaries(st, None)


def test_an_ingest_makes_the_summaries_before_releasing_its_lock(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "s.sqlite"
    with _random_store(7) as mem, Store(path) as st:
        with st.writer_lock(wait=0):
            st.commit_batch([], mem.principals(), [_stored(r) for r in mem.usage()], [])
        # The lock is released: the summaries are there already (no other ingest could write
        # between the last batch and them).
        with Store(path, read_only=True) as reader:
            assert reader._summaries_fresh()
            assert summarize_principals(reader) == reference_summaries(reader, None)
    with sqlite3.connect(path) as db:  # a store without them (made by an older iamtrim)
        db.execute("DROP TABLE summary_principals")
    with Store(path) as st, st.writer_lock(wait=0):
        pass  # an ingest that found nothing new
    with Store(path, read_only=True) as reader:
        assert reader._summaries_fresh()
        assert summarize_principals(reader) == reference_summaries(reader, None)


def _stored(r: UsageRow) -> tuple[object, ...]:
    return (
        r.principal,
        r.action,
        r.resource or "",
        str(r.outcome),
        r.context.to_key(),
        r.count,
        r.first_seen,
        r.last_seen,
        r.event_ids,
        r.source_ips,
    )
