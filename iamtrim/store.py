"""The SQLite usage store: aggregated usage, not raw events.

One file, incremental and safe to interrupt: each batch of files is committed in one transaction
together with the files' digests and event-id hashes, so a killed ingest loses nothing already
committed and never counts an event twice when re-run. Schema in docs/store.md.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import json
import os
import sqlite3
import sys
import time
import urllib.parse
from array import array
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

import msgspec

from iamtrim.errors import StoreError
from iamtrim.keysketch import KeySketch
from iamtrim.model import Context, Outcome, Principal, PrincipalKind, TimeWindow, UsageRow
from iamtrim.model.finding import Finding
from iamtrim.model.profile import ProfileChange, ProfileChangeKind
from iamtrim.sources.access_advisor import Granularity, LastAccessed

SCHEMA_VERSION = "6"

# How long an ingest waits for another one writing the same store (``--wait-lock``): a busy
# month of one account ingests in well under a minute (docs/performance.md), so ten minutes
# covers a large backlog and still ends a run stuck behind a hung one.
DEFAULT_WAIT_LOCK = 600.0
_LOCK_POLL = 0.2  # seconds between attempts while waiting

# Versions this iamtrim migrates in place: 1 → 2 added coverage, access_advisor and
# access_advisor_files; 2 → 3 writes a literal "$" or "?" of a stored resource as IAM's "${$}",
# "${?}" (model.escape_literal; a literal "*" cannot be told from a folded folder, see
# docs/store.md); 3 → 4 adds files.etag (trail objects from S3 are known by key and ETag); 4 → 5
# adds usage.key_sketch (the distinct keys a folded S3 row stands for; folds made before are marked
# as counts unknown); 5 → 6 moves the event hashes from files.event_hashes into event_days, under
# the day LEGACY_DAY (they carry no day; see _move_file_hashes).
_MIGRATES_FROM = frozenset({"1", "2", "3", "4", "5"})

# ingest --lookup-events: the newest event time stored per account and region (where the next run
# resumes). Made by the first run that stores a cursor, so any store gains it without a schema
# change; a store without it has no cursor.
_LOOKUP_CURSOR = """
CREATE TABLE IF NOT EXISTS lookup_cursor (
    account TEXT NOT NULL, region TEXT NOT NULL, newest TEXT NOT NULL,
    PRIMARY KEY (account, region)
) WITHOUT ROWID
"""

# Which role an instance profile holds, as CloudTrail logged its changes (model/profile.py):
# iam:PassRole through a profile is resolved to its role with it. Made by the first ingest that
# meets such a change, so any store gains it without a schema change; a store without it has none.
_PROFILE_CHANGES = """
CREATE TABLE IF NOT EXISTS instance_profile_changes (
    time TEXT NOT NULL, account TEXT NOT NULL, profile TEXT NOT NULL, kind TEXT NOT NULL,
    role TEXT NOT NULL, event_id TEXT NOT NULL,
    PRIMARY KEY (account, profile, time, kind, role, event_id)
) WITHOUT ROWID
"""

# --since/--until (docs/store.md, "Time windows"): a row is in a window when last_seen >= since and
# first_seen <= until. This index serves both the per-principal reads (principal = ? and a range
# on last_seen) and the store-wide summaries (a skip-scan over the principals, each a range on
# last_seen), and it covers the summaries: an entry of a WITHOUT ROWID table's index carries the
# whole primary key, so with first_seen and count beside last_seen every column `principals --since`
# asks for is in it and no row is looked up. Made by every writer (CREATE ... IF NOT EXISTS, no
# schema change): a store an older iamtrim wrote is answered by a scan until its next ingest.
_WINDOW_INDEX = (
    "CREATE INDEX IF NOT EXISTS usage_by_principal_seen ON usage(principal, last_seen, first_seen, count)"
)
# ANALYZE statistics let the planner choose the skip-scan above (without them it reads the whole
# index); a sample of this many rows per index is enough for that and costs milliseconds.
# https://www.sqlite.org/lang_analyze.html#approx
_ANALYSIS_LIMIT = 1000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files (
    digest TEXT PRIMARY KEY,           -- sha256 of the file's bytes as read
    path TEXT NOT NULL,                -- the object's URI: a local path, or s3://bucket/key
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,         -- modification time (S3: LastModified)
    format TEXT NOT NULL,
    records INTEGER NOT NULL,
    malformed INTEGER NOT NULL,
    error TEXT NOT NULL,
    ingested_at TEXT NOT NULL,
    event_hashes BLOB NOT NULL         -- empty since schema 6 (the hashes are in event_days)
);
CREATE INDEX IF NOT EXISTS files_by_path ON files(path, size, mtime_ns);
CREATE TABLE IF NOT EXISTS principals (
    arn TEXT PRIMARY KEY, kind TEXT NOT NULL, account TEXT NOT NULL, name TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS usage (
    principal TEXT NOT NULL,
    action TEXT NOT NULL,
    resource TEXT NOT NULL,            -- '' when the record did not tell
    outcome TEXT NOT NULL,
    context TEXT NOT NULL,             -- JSON array of the Context fields, in order
    count INTEGER NOT NULL,
    first_seen TEXT NOT NULL,
    last_seen TEXT NOT NULL,
    event_ids TEXT NOT NULL,           -- JSON array: a sample of event ids
    source_ips TEXT NOT NULL,          -- JSON array: a sample of source IPs
    PRIMARY KEY (principal, action, resource, outcome, context)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS skips (
    reason TEXT NOT NULL, detail TEXT NOT NULL, count INTEGER NOT NULL,
    PRIMARY KEY (reason, detail)
) WITHOUT ROWID;
"""

# Added in schema 2: what the ingested CloudTrail could show, and Access Advisor evidence.
_SCHEMA_2 = """
CREATE TABLE IF NOT EXISTS coverage (
    account TEXT NOT NULL,             -- recipientAccountId ('' when absent)
    region TEXT NOT NULL,              -- awsRegion
    day TEXT NOT NULL,                 -- YYYY-MM-DD (UTC) of eventTime
    data_source TEXT NOT NULL,         -- '' management events, else the eventSource of data events
    complete INTEGER NOT NULL,         -- 1 a trail delivery file, 0 a download or export (may be filtered)
    records INTEGER NOT NULL,
    PRIMARY KEY (account, region, day, data_source, complete)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS access_advisor (
    principal TEXT NOT NULL,           -- role/user ARN the fact is about
    service TEXT NOT NULL,             -- service namespace
    action TEXT NOT NULL,              -- '' service level; 'svc:Action' tracked action
    granularity TEXT NOT NULL,         -- service | action | entity
    generated_at TEXT NOT NULL,        -- JobCompletionDate of the report
    last_accessed TEXT NOT NULL,       -- '' = not attempted in the tracking period
    region TEXT NOT NULL,
    entity TEXT NOT NULL,              -- the last accessor AWS named
    report TEXT NOT NULL,              -- what the report was generated for, when known
    source TEXT NOT NULL,              -- sha256 of the file it came from
    PRIMARY KEY (principal, service, action, granularity, generated_at)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS access_advisor_files (
    digest TEXT PRIMARY KEY, path TEXT NOT NULL, kind TEXT NOT NULL, status TEXT NOT NULL,
    generated_at TEXT NOT NULL, entries INTEGER NOT NULL, skipped TEXT NOT NULL,
    notes TEXT NOT NULL,               -- JSON array of non-fatal notes
    ingested_at TEXT NOT NULL
);
"""

# Added in schema 6: the hashes of the events counted (ingest.event_hash / content_hash), per UTC
# day of their eventTime: a copy of an event has the same eventTime, so a run looks up only the
# days its records fall on (docs/store.md, "Event hashes"). Each commit adds one part per day it
# touched (its hashes, sorted int64), in the transaction that stores their files; a day's parts
# are merged into one past EVENT_DAY_PARTS. day is YYYY-MM-DD, '' for a record without a usable
# eventTime, LEGACY_DAY for the hashes a schema-5 store kept per file (no day known).
_EVENT_DAYS = """
CREATE TABLE IF NOT EXISTS event_days (
    day TEXT NOT NULL, part INTEGER NOT NULL, hashes BLOB NOT NULL,
    PRIMARY KEY (day, part)
) WITHOUT ROWID
"""
LEGACY_DAY = "legacy"  # not YYYY-MM-DD, not '': no record's day
EVENT_DAY_PARTS = 16  # parts a day may hold before a commit merges them into one
_LEGACY_PART = 1 << 26  # hashes per part (512 MiB, under SQLite's 1 GB blob limit) of a migration
_SORT_RUN = 1 << 20  # hashes sorted at a time by a migration before it merges the runs


def _hashes(blob: bytes) -> array[int]:
    arr = array("q")
    arr.frombytes(blob)
    return arr


def merge_sorted(parts: Iterable[array[int]]) -> array[int]:
    """The values of sorted int64 arrays, sorted. One part is returned as it is; a few are merged
    by timsort (linear on sorted runs, through a transient list of ints: 40 bytes a hash of one
    day); past _SORT_RUN hashes in several parts, by a streaming merge that holds no such list
    (twice the CPU). Ingest never stores a hash twice, so the parts are disjoint."""
    runs = [p for p in parts if p]
    if len(runs) == 1:
        return runs[0]
    if sum(len(r) for r in runs) > _SORT_RUN:
        return array("q", heapq.merge(*runs))
    return array("q", sorted(itertools.chain.from_iterable(runs)))


# Added in schema 4: trail objects read from S3 are known by their key and ETag (a local file by
# its path, size and modification time). Added to the table (not in its CREATE above) so that a
# new store and a migrated one have the same columns in the same order.
_FILES_ETAG = "ALTER TABLE files ADD COLUMN etag TEXT NOT NULL DEFAULT ''"  # S3 ETag, '' local


def _add_files_etag(db: sqlite3.Connection) -> None:
    """Add ``files.etag`` unless it is there: like ``CREATE TABLE IF NOT EXISTS``, safe when two
    processes create (or migrate) the same new store at once, the second after the first."""
    if "etag" not in {row[1] for row in db.execute("PRAGMA table_info(files)")}:
        db.execute(_FILES_ETAG)


# Added in schema 5: a folded S3 row's distinct keys (iamtrim.keysketch: exact hashes up to 256,
# then a HyperLogLog), NULL on every other row. Added like files.etag, for the same column order.
_USAGE_SKETCH = "ALTER TABLE usage ADD COLUMN key_sketch BLOB"
# A fold stored before schema 5 kept no keys: its sketch says "count unknown" (a lower bound of 0),
# which every later merge keeps (docs/store.md, "Distinct keys of a folded row").
_UNKNOWN_KEYS = KeySketch(partial=True).to_bytes()
_FOLDED_S3 = "resource LIKE 'arn:%:s3:::%/*'"  # iamtrim's folder/*; a logged "*" is stored as ${*}


def _add_usage_sketch(db: sqlite3.Connection) -> bool:
    """Add ``usage.key_sketch`` unless it is there (as :func:`_add_files_etag`); whether it was added."""
    if "key_sketch" in {row[1] for row in db.execute("PRAGMA table_info(usage)")}:
        return False
    db.execute(_USAGE_SKETCH)
    return True


# The review job's history (``iamtrim review``). Added to a schema-2 store the first time a review
# runs, without a version change: the tables are new and nothing else reads them, so an iamtrim
# that predates them opens the store as before (docs/store.md).
_REVIEW_SCHEMA = """
CREATE TABLE IF NOT EXISTS review_runs (
    id INTEGER PRIMARY KEY,
    started_at TEXT NOT NULL,          -- YYYY-MM-DDTHH:MM:SSZ, when the run was stored
    inputs_digest TEXT NOT NULL,       -- sha256 over everything the findings depend on
    inputs TEXT NOT NULL,              -- JSON array of "name: value" lines (authz file, principals, ...)
    evidence_window TEXT NOT NULL,     -- CloudTrail coverage, "first..last" ('' none)
    catalog TEXT NOT NULL,             -- IAM catalog version
    principals INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS review_findings (
    run INTEGER NOT NULL,              -- review_runs.id
    fingerprint TEXT NOT NULL,         -- Finding.fingerprint: sha256 of principal|code|target
    principal TEXT NOT NULL, code TEXT NOT NULL, target TEXT NOT NULL,
    subject TEXT NOT NULL, message TEXT NOT NULL,
    PRIMARY KEY (run, fingerprint)
) WITHOUT ROWID;
"""


# What the reading commands ask of every row, summed once when an ingest closes the store
# (docs/store.md, "Summaries"): per principal its totals, and every resource more than one principal
# used with those principals. Made by the first ingest that writes a store, without a version change:
# a store without them, or whose usage changed since (a different row count or call total, e.g. an
# older iamtrim wrote to it), is answered by scanning the rows, as any windowed question is.
_SUMMARY_SCHEMA = """
CREATE TABLE IF NOT EXISTS summary_principals (
    principal TEXT PRIMARY KEY,
    actions_used INTEGER NOT NULL, actions_denied INTEGER NOT NULL,
    calls INTEGER NOT NULL, denied_calls INTEGER NOT NULL,
    first_seen TEXT NOT NULL, last_seen TEXT NOT NULL,
    services TEXT NOT NULL,            -- JSON array, sorted
    resources INTEGER NOT NULL         -- distinct resources used ('*' and unknown left out)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS summary_shared (
    resource TEXT PRIMARY KEY,
    principals TEXT NOT NULL           -- JSON array, sorted: the principals whose calls on it were authorized
) WITHOUT ROWID;
"""


@dataclass(frozen=True, slots=True)
class ReviewRunRow:
    """One stored ``iamtrim review`` run."""

    id: int
    started_at: str
    inputs_digest: str
    inputs: tuple[str, ...]
    window: str
    catalog: str
    principals: int
    findings: int


# The file's own name for its application, in the SQLite header: "iamt" in ASCII. A file
# without it is iamtrim's only if it holds a store made before the id was written (the tables
# below and a schema version in meta); anything else is another application's and is refused
# before anything is written to it. https://www.sqlite.org/pragma.html#pragma_application_id
APPLICATION_ID = 0x69616D74
_STORE_TABLES = frozenset({"meta", "files", "principals", "usage", "skips"})
# How long a command waits for another process's write lock before saying the store is busy.
BUSY_TIMEOUT_S = 5.0


def _connect(path: str, read_only: bool) -> sqlite3.Connection:
    """A connection to *path*, read-only (``mode=ro``) or read-write; creates nothing but the
    file itself (and its folder) when writable."""
    if os.path.isdir(path):
        raise StoreError(f"{path}: is a directory, not a store file")
    try:
        if os.path.exists(path):
            with open(path, "rb"):  # a clear "permission denied" before SQLite's "unable to open"
                pass
            if not read_only and not os.access(path, os.W_OK):
                # SQLite would open it read-only without a word and fail at the first commit,
                # after the whole ingest was read.
                raise StoreError(f"{path}: {_READ_ONLY}")
        elif not read_only:
            folder = Path(path).parent
            folder.mkdir(parents=True, exist_ok=True)
            if not os.access(folder, os.W_OK | os.X_OK):
                raise StoreError(f"{path}: cannot create the store: permission denied (folder {folder})")
    except OSError as exc:
        raise StoreError(f"{path}: cannot open the store: {_os_reason(exc)}") from None
    if not read_only:
        return sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_S)
    uri = "file:" + urllib.parse.quote(os.fsencode(os.path.abspath(path))) + "?mode=ro"
    db = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=BUSY_TIMEOUT_S)
    try:
        db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
    except sqlite3.OperationalError as exc:
        # A WAL database read-only needs its -shm file, which SQLite cannot create in a folder
        # it may not write to. With no write-ahead log pending there is nothing but the file
        # itself to read: open it as immutable. https://www.sqlite.org/wal.html#readonly
        wal = path + "-wal"
        if not str(getattr(exc, "sqlite_errorname", "")).startswith("SQLITE_READONLY") or (
            os.path.exists(wal) and os.path.getsize(wal) > 0
        ):
            db.close()
            raise
        db.close()
        db = sqlite3.connect(uri + "&immutable=1", uri=True, isolation_level=None)
    return db


def _has_content(path: str) -> bool:
    try:
        return os.path.getsize(path) > 0
    except OSError:
        return False


def _identify(db: sqlite3.Connection, path: str) -> bool:
    """True for a fresh store (an empty file); raises :class:`StoreError` for a file that is
    not an iamtrim store. Reads only."""
    (app_id,) = db.execute("PRAGMA application_id").fetchone()
    (user_version,) = db.execute("PRAGMA user_version").fetchone()
    names = [n for (n,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
    if app_id == APPLICATION_ID:
        return not names
    if app_id == 0 and user_version == 0:
        if not names and db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0] == 0:
            return True
        if set(names) >= _STORE_TABLES and _schema_version(db, path, strict=False):
            return False
    shown = ", ".join(names[:4]) + (", ..." if len(names) > 4 else "")
    what = f"tables {shown}" if names else "no tables"
    if app_id and app_id != APPLICATION_ID:
        what += f", application id {app_id:#x}"
    raise StoreError(
        f"{path}: not an iamtrim usage store (an SQLite database of something else: {what}); "
        "iamtrim leaves it untouched: give --store a new file"
    )


def _schema_version(db: sqlite3.Connection, path: str, *, strict: bool = True) -> str:
    try:
        row = db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
    except sqlite3.OperationalError:
        row = None
    if row is None or not isinstance(row[0], str):
        if strict:
            raise StoreError(f"{path}: a damaged iamtrim store (no schema version in its meta table)")
        return ""
    return row[0]


def _statements(script: str) -> Iterator[str]:
    """The statements of *script* one by one (``executescript`` would commit first, outside the
    transaction that must hold them)."""
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            yield pending
            pending = ""


def _os_reason(exc: OSError) -> str:
    return (exc.strerror or str(exc)).lower()


_READ_ONLY = "the store is read-only here (no write permission on the file or its folder)"


def _describe(exc: sqlite3.Error) -> str:
    """What a SQLite error means for the user, by its result code.
    https://www.sqlite.org/rescode.html"""
    name = str(getattr(exc, "sqlite_errorname", ""))
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
        return "the store is locked by another process (an ingest?): try again when it has finished"
    if name == "SQLITE_FULL":
        return "disk full: the store cannot grow (everything committed before is kept)"
    if name.startswith("SQLITE_READONLY"):
        return _READ_ONLY
    if name.startswith("SQLITE_CANTOPEN"):
        return "cannot open the store (a missing folder, or no permission)"
    if name == "SQLITE_NOTADB":
        return "not an iamtrim usage store (not an SQLite database)"
    if name.startswith("SQLITE_CORRUPT"):
        return f"the store is damaged ({exc})"
    if name.startswith("SQLITE_IOERR"):
        return f"cannot read or write the store (I/O error: {exc})"
    if name == "SQLITE_PERM":
        return "permission denied"
    return f"not a usable iamtrim store ({exc})"


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _guarded(method: Callable[Concatenate[Store, _P], _R]) -> Callable[Concatenate[Store, _P], _R]:
    """SQLite failures of a store method as one :class:`StoreError` naming the file."""

    def wrapper(self: Store, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return method(self, *args, **kwargs)
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: {_describe(exc)}") from exc
        except MemoryError:
            raise StoreError(f"{self.path}: out of memory reading the store") from None
        except (ValueError, msgspec.DecodeError) as exc:  # a stored JSON column that does not decode
            raise StoreError(
                f"{self.path}: the store is damaged (a stored value does not decode: {exc})"
            ) from None

    wrapper.__name__, wrapper.__qualname__, wrapper.__doc__ = (
        method.__name__,
        method.__qualname__,
        method.__doc__,
    )
    return wrapper


def _where(*conditions: tuple[str, str | None]) -> tuple[str, list[str]]:
    """`` WHERE c1 AND c2 ...`` of the conditions whose value is given (not None), and their
    arguments in order; ``""`` when none is."""
    given = [(sql, value) for sql, value in conditions if value is not None]
    if not given:
        return "", []
    return " WHERE " + " AND ".join(sql for sql, _ in given), [value for _, value in given]


@dataclass(frozen=True, slots=True)
class CoverageRow:
    """CloudTrail records seen for one account, region, UTC day and kind of event."""

    account: str
    region: str
    day: str
    data_source: str  # "" for management events, else the eventSource of the data events
    complete: bool  # from a trail delivery file (not a possibly filtered download)
    records: int


def day_hashes(db: sqlite3.Connection, day: str) -> array[int]:
    """The sorted hashes ``event_days`` holds for *day*, on any connection (a worker's own)."""
    return merge_sorted(
        _hashes(blob) for (blob,) in db.execute("SELECT hashes FROM event_days WHERE day = ?", (day,))
    )


def _sorted_bytes(values: Iterable[int]) -> bytes:
    return array("q", sorted(values)).tobytes()


def _add_event_days(db: sqlite3.Connection, event_days: Mapping[str, array[int]]) -> None:
    """One new part per day (its hashes sorted); a day past EVENT_DAY_PARTS parts is merged into one."""
    for day in sorted(event_days):
        new = event_days[day]
        if not new:
            continue
        part, count = db.execute(
            "SELECT coalesce(max(part), 0) + 1, COUNT(*) FROM event_days WHERE day = ?", (day,)
        ).fetchone()
        if count + 1 > EVENT_DAY_PARTS:
            merged = merge_sorted([day_hashes(db, day), array("q", sorted(new))])  # sorted + sorted: linear
            db.execute("DELETE FROM event_days WHERE day = ?", (day,))
            db.execute("INSERT INTO event_days VALUES (?, 1, ?)", (day, merged.tobytes()))
        else:
            db.execute("INSERT INTO event_days VALUES (?, ?, ?)", (day, part, _sorted_bytes(new)))


_NO_HASHES: array[int] = array("q")


class StoredEvents:
    """The event hashes a store held when a run began, looked up by day (docs/store.md, "Event
    hashes"): a run loads only the days its records fall on, each as a sorted int64 array (8
    bytes a hash), when first asked. Days the store holds nothing for cost nothing: an ordinary
    incremental run of new days loads no hash.

    Made by the parent before it forks its workers. The hashes of :data:`LEGACY_DAY` (a migrated
    store's, which may fall on any day) are loaded at once, so the forked workers share their
    pages; a worker loads a day through its own read-only connection (a SQLite connection must not
    cross a fork), the parent through the store's. At most ``limit`` loaded hashes are kept (the
    least recently used days are dropped first, and loaded again if asked again): a trail read in
    order moves from day to day. An in-memory store (nothing to reconnect to) is read whole here.
    """

    def __init__(self, store: Store, limit: int = 8_000_000) -> None:
        self.path = store.path
        self.limit = limit
        self.days = frozenset(store.event_days())
        self.legacy = store.day_hashes(LEGACY_DAY) if LEGACY_DAY in self.days else _NO_HASHES
        self._pid = os.getpid()
        self._store: Store | None = store
        self._db: sqlite3.Connection | None = None
        self._loaded: dict[str, array[int]] = {}  # in order of use, the latest last
        self._pinned: dict[str, array[int]] = {}
        if store.path == ":memory:":
            self._pinned = {d: store.day_hashes(d) for d in self.days if d != LEGACY_DAY}

    def __getstate__(self) -> dict[str, Any]:  # to a spawned worker: what it needs to reconnect
        state = {k: getattr(self, k) for k in ("path", "limit", "days", "legacy", "_pid", "_pinned")}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        for k, v in state.items():
            setattr(self, k, v)
        self._store, self._db, self._loaded = None, None, {}

    def day(self, day: str) -> array[int]:
        """The sorted hashes the store held for *day* (an empty array when none)."""
        if day not in self.days or day == LEGACY_DAY:
            return _NO_HASHES
        pinned = self._pinned.get(day)
        if pinned is not None:
            return pinned
        loaded = self._loaded.pop(day, None)
        if loaded is None:
            loaded = self._load(day)
            held = sum(len(a) for a in self._loaded.values())
            while self._loaded and held + len(loaded) > self.limit:
                held -= len(self._loaded.pop(next(iter(self._loaded))))
        self._loaded[day] = loaded
        return loaded

    def loaded(self) -> int:
        """Hashes held now (the legacy ones included): what this object's memory grows with."""
        return len(self.legacy) + sum(len(a) for a in (*self._loaded.values(), *self._pinned.values()))

    def _load(self, day: str) -> array[int]:
        if self._store is not None and os.getpid() == self._pid:
            return self._store.day_hashes(day)
        if self._db is None:
            try:
                self._db = _connect(self.path, read_only=True)
            except sqlite3.Error as exc:
                raise StoreError(f"{self.path}: {_describe(exc)}") from exc
        try:
            return day_hashes(self._db, day)
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: {_describe(exc)}") from exc


@dataclass(frozen=True, slots=True)
class AccessAdvisorFile:
    digest: str
    path: str
    kind: str
    status: str
    generated_at: str
    entries: int
    skipped: str
    notes: tuple[str, ...]
    ingested_at: str


@dataclass(frozen=True, slots=True)
class FileEntry:
    digest: str
    path: str
    size: int
    mtime_ns: int
    format: str
    records: int
    malformed: int
    error: str
    ingested_at: str
    etag: str = ""  # the S3 object's ETag ('' for a local file)


@dataclass(frozen=True, slots=True)
class StoredRow:
    """A usage row as written: ``UsageRow`` fields with the context already encoded."""

    principal: str
    action: str
    resource: str
    outcome: str
    context: str
    count: int
    first_seen: str
    last_seen: str
    event_ids: tuple[str, ...]
    source_ips: tuple[str, ...]
    key_sketch: bytes | None = None  # a folded S3 row's distinct keys (KeySketch.to_bytes); schema 5


@dataclass(frozen=True, slots=True)
class PrincipalTotals:
    """One principal's usage, summed by the store (``Store.principal_totals``)."""

    principal: str
    actions_used: int
    actions_denied: int
    calls: int
    denied_calls: int
    first_seen: str
    last_seen: str
    services: tuple[str, ...]
    resources: int  # distinct resources used ("*" and unknown left out)


_decode_strings = msgspec.json.Decoder(tuple[str, ...]).decode
_OUTCOMES = {o.value: o for o in Outcome}  # a dict lookup: Outcome(value) costs a call into enum


class _Rows:
    """Stored usage rows → ``UsageRow``. A store holds few distinct contexts (77 in the 151,702 rows
    of the 1M-record varied benchmark store), so each context's JSON is decoded once and the frozen
    ``Context`` shared by its rows; the samples are decoded by msgspec (docs/performance.md)."""

    _BOUND = 100_000  # distinct contexts kept; past it the cache starts again

    def __init__(self) -> None:
        self._contexts: dict[str, Context] = {}

    def __call__(self, row: tuple[Any, ...]) -> UsageRow:
        context = self._contexts.get(row[4])
        if context is None:
            if len(self._contexts) >= self._BOUND:
                self._contexts.clear()
            context = self._contexts[row[4]] = Context.from_key(row[4])
        if row[10] is not None:
            KeySketch.from_bytes(row[10])  # damaged bytes: ValueError, "the store is damaged" (_guarded)
        return UsageRow(
            principal=row[0],
            action=row[1],
            resource=row[2] or None,
            outcome=_OUTCOMES.get(row[3]) or Outcome(row[3]),  # an unknown one: ValueError, damaged
            context=context,
            count=row[5],
            first_seen=row[6],
            last_seen=row[7],
            event_ids=_decode_strings(row[8]),
            source_ips=_decode_strings(row[9]),
            key_sketch=row[10],
        )


class Store:
    """A usage store in one SQLite file (or ``:memory:`` for stateless runs).

    ``read_only`` (every command but ingest) opens an existing store without creating or
    changing anything in it (except migrating an older schema, which reading needs). A file that
    is not an iamtrim store is refused before anything is written to it."""

    def __init__(self, path: str | Path, *, read_only: bool = False) -> None:
        self.path = str(path)
        self._written = False  # usage rows written since opened: refresh the summaries on close
        self._fresh: bool | None = None  # whether the summaries answer for the rows (asked once)
        self._writable = False  # opened for writing (ingest): summaries are made on close
        self._rows = _Rows()
        try:
            if self.path == ":memory:":
                self._db = sqlite3.connect(":memory:", isolation_level=None)
                self._db.execute("PRAGMA journal_mode=MEMORY")
                self._create()
                self._db.execute(_WINDOW_INDEX)
                return
            # Whose file it is, asked through a read-only connection: even closing a writable
            # one may write (SQLite checkpoints a WAL database into it on the last close).
            if read_only or _has_content(self.path):
                probe = _connect(self.path, read_only=True)
                try:
                    ready = self._ready_to_read(probe, read_only)
                except BaseException:
                    probe.close()
                    raise
                if ready:
                    self._db = probe
                    return
                probe.close()
            self._db = _connect(self.path, read_only=False)
            self._writable = True
            try:
                self._open_for_writing()
            except BaseException:
                self._db.close()
                raise
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: {_describe(exc)}") from exc
        except MemoryError:
            raise StoreError(f"{self.path}: out of memory while opening the store") from None

    def _ready_to_read(self, db: sqlite3.Connection, read_only: bool) -> bool:
        """Refuse a file that is not a store; True when *db* can serve a reading command as is
        (False: open it for writing, to create, migrate or ingest)."""
        fresh = _identify(db, self.path)
        if not read_only:
            return False
        if fresh:
            raise StoreError(
                f"{self.path}: an empty store, nothing ingested yet: "
                f"run `iamtrim ingest PATH --store {self.path}`"
            )
        version = _schema_version(db, self.path)
        if version in _MIGRATES_FROM:
            return False  # reading needs the tables added since: migrate first
        self._check_version(version)
        return True

    def _open_for_writing(self) -> None:
        db = self._db
        fresh = _identify(db, self.path)  # again: the file may have changed since it was asked
        version = "" if fresh else _schema_version(db, self.path)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        # Ingest rewrites usage rows all over the primary-key B-tree: keep up to 32 MiB of
        # pages in memory rather than SQLite's default 2 MiB (a store of 1M records is ~40 MiB).
        db.execute("PRAGMA cache_size=-32768")
        if fresh:
            self._create()
        elif version in _MIGRATES_FROM:
            self._migrate(version)
        else:
            self._check_version(version)
            if db.execute("PRAGMA application_id").fetchone()[0] != APPLICATION_ID:
                # A store made before the application id was written: name it now.
                db.execute(f"PRAGMA application_id={APPLICATION_ID}")
        db.execute(_WINDOW_INDEX)

    def _check_version(self, version: str) -> None:
        if version != SCHEMA_VERSION:
            raise StoreError(f"{self.path}: store schema {version}, this iamtrim reads {SCHEMA_VERSION}")

    @contextmanager
    def _immediate(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: ``BEGIN IMMEDIATE`` (the write lock taken up front, so the
        transaction never fails half-way on upgrading a read lock), ``COMMIT``, or ``ROLLBACK``
        on any exception (an interrupt included) before it is raised on."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    def _create(self) -> None:
        """Create every table of a new store, and name the file iamtrim's, in one transaction
        (an interrupted creation leaves an empty file, which is still a fresh store)."""
        with self._immediate() as db:
            for statement in _statements(_SCHEMA + _SCHEMA_2):
                db.execute(statement)
            _add_files_etag(db)
            _add_usage_sketch(db)
            db.execute(_EVENT_DAYS)
            db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
            db.execute(f"PRAGMA application_id={APPLICATION_ID}")
            db.execute(f"PRAGMA user_version={int(SCHEMA_VERSION)}")

    def _migrate(self, version: str) -> None:
        """Bring an older store up to date in place. Files ingested before
        schema 2 left no coverage: their count is kept (``coverage_unknown_files``) so that
        evidence queries say coverage is incomplete instead of guessing it."""
        db = self._db
        # CREATE ... IF NOT EXISTS is idempotent: if interrupted before the version is written,
        # the next open migrates again from the same state.
        db.executescript(_SCHEMA_2)
        with self._immediate() as db:
            if version == "1":
                (n_files,) = db.execute("SELECT COUNT(*) FROM files").fetchone()
                db.execute(
                    "INSERT OR REPLACE INTO meta VALUES ('coverage_unknown_files', ?)", (str(n_files),)
                )
            if version in ("1", "2"):
                self._escape_literals()  # once only: escaping is not idempotent ("$" → "${$}")
            _add_files_etag(db)  # schema 4; files stored before were local files: no ETag
            if _add_usage_sketch(db):  # schema 5; the keys of folds made before were not kept
                db.execute(f"UPDATE usage SET key_sketch = ? WHERE {_FOLDED_S3}", (_UNKNOWN_KEYS,))
            self._move_file_hashes()  # schema 6
            db.execute("INSERT OR REPLACE INTO meta VALUES ('migrated_from', ?)", (version,))
            db.execute("UPDATE meta SET value = ? WHERE key = 'schema'", (SCHEMA_VERSION,))
            db.execute(f"PRAGMA application_id={APPLICATION_ID}")
            db.execute(f"PRAGMA user_version={int(SCHEMA_VERSION)}")

    def _move_file_hashes(self) -> None:
        """Schema 6: the event hashes a store kept per file (``files.event_hashes``) move into
        ``event_days`` under :data:`LEGACY_DAY`, sorted, and the files' column is emptied.

        They carry no day (the hash hides the eventTime), so every later run looks them up for
        every record, as before, but as a sorted int64 array (8 bytes a hash, shared by the forked
        workers) instead of a set (127 bytes with the workers' copy): docs/store.md."""
        db = self._db
        db.execute(_EVENT_DAYS)
        (part,) = db.execute(
            "SELECT coalesce(max(part), 0) FROM event_days WHERE day = ?", (LEGACY_DAY,)
        ).fetchone()
        # Sorted a million at a time, then merged by streaming: 16 bytes a hash at the peak (the
        # runs and the result), and one sorted part, which every later run loads without sorting.
        runs: list[array[int]] = []
        pending = array("q")
        for (blob,) in db.execute("SELECT event_hashes FROM files WHERE length(event_hashes)"):
            pending.frombytes(blob)
            if len(pending) >= _SORT_RUN:
                runs.append(array("q", sorted(pending)))
                pending = array("q")
        runs.append(array("q", sorted(pending)))
        merged = merge_sorted(runs)
        del runs, pending
        db.executemany(
            "INSERT INTO event_days VALUES (?,?,?)",
            (
                (LEGACY_DAY, part + 1 + n, merged[i : i + _LEGACY_PART].tobytes())
                for n, i in enumerate(range(0, len(merged), _LEGACY_PART))
            ),
        )
        db.execute("UPDATE files SET event_hashes = x'' WHERE length(event_hashes)")

    @contextmanager
    def writer_lock(
        self, wait: float = DEFAULT_WAIT_LOCK, on_wait: Callable[[str], None] | None = None
    ) -> Iterator[None]:
        """This store's writer lock (``writer_lock(self.path, ...)``). When the work done under it
        ends without an exception, the summaries are made before the lock is released (when rows
        were written, or the summaries are missing or stale), so no other ingest writes meanwhile."""
        with writer_lock(self.path, wait, on_wait):
            yield
            if self._writable and (self._written or not self._summaries_fresh()):
                self._refresh_quietly()

    def _refresh_quietly(self) -> None:
        # Only an optimization: a store whose summaries could not be written (busy, disk full) is
        # answered by scanning the rows, and the ingest that wrote them has not failed.
        with contextlib.suppress(StoreError, sqlite3.Error):
            self.refresh_summaries()

    def _escape_literals(self) -> None:
        """Schema 3: a literal ``$`` or ``?`` in a resource before it is IAM's ``${$}``/``${?}``.

        Before schema 3 a resource held what the record named. iamtrim itself wrote no ``$`` and
        only one ``?`` pattern, a secret's ``-??????`` suffix; every other is a caller's. A ``*``
        is left alone: a key ``*`` and a folded folder were stored alike (docs/store.md)."""
        db = self._db
        rows = db.execute(
            "SELECT DISTINCT resource FROM usage WHERE instr(resource, '$') OR instr(resource, '?')"
        ).fetchall()
        for (resource,) in rows:
            secret = ":secretsmanager:" in resource and resource.endswith("-??????")
            body = resource[: -len("-??????")] if secret else resource
            escaped = body.replace("$", "${$}").replace("?", "${?}") + ("-??????" if secret else "")
            if escaped != resource:
                db.execute("UPDATE usage SET resource = ? WHERE resource = ?", (escaped, resource))

    @_guarded
    def meta(self, key: str) -> str:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return str(row[0]) if row else ""

    def close(self) -> None:
        """Close the store; first sum the rows into the summaries if usage rows were written since
        they were last made (an ingest makes them before releasing its writer lock)."""
        try:
            if self._writable and self._written:  # written without the writer lock (a library caller)
                self._refresh_quietly()
        finally:
            self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is not None:
            self._writable = False  # an interrupted or failed ingest: readers scan until the next one
        self.close()

    # -- summaries ---------------------------------------------------------------------------

    def _usage_fingerprint(self) -> str:
        """Rows and calls: every write of usage changes one of them (a new call adds to a count, a
        fold or a dropped failed key removes rows), so summaries made at another value are stale."""
        n, calls = self._db.execute("SELECT COUNT(*), TOTAL(count) FROM usage").fetchone()
        return f"{n}:{int(calls)}"

    @_guarded
    def refresh_summaries(self) -> None:
        """Sum the usage rows into ``summary_principals`` and ``summary_shared`` in one transaction
        (a scan of the rows: about a second per million on the 2-core machine, docs/performance.md)."""
        self._fresh = False
        with self._immediate() as db:
            # Summed inside the write transaction, so the fingerprint written is of the rows summed.
            totals = self._scan_principal_totals(None)
            shared = self._scan_shared(None, None)
            for statement in _statements(_SUMMARY_SCHEMA):
                db.execute(statement)
            db.execute("DELETE FROM summary_principals")
            db.execute("DELETE FROM summary_shared")
            db.executemany(
                "INSERT INTO summary_principals VALUES (?,?,?,?,?,?,?,?,?)",
                [
                    (
                        t.principal,
                        t.actions_used,
                        t.actions_denied,
                        t.calls,
                        t.denied_calls,
                        t.first_seen,
                        t.last_seen,
                        json.dumps(list(t.services)),
                        t.resources,
                    )
                    for t in totals
                ],
            )
            db.executemany(
                "INSERT INTO summary_shared VALUES (?,?)", [(r, json.dumps(list(ps))) for r, ps in shared]
            )
            db.execute("INSERT OR REPLACE INTO meta VALUES ('summary_of', ?)", (self._usage_fingerprint(),))
            db.execute(f"PRAGMA analysis_limit={_ANALYSIS_LIMIT}")
            db.execute("ANALYZE usage")
        self._written = False
        self._fresh = None

    def _summaries_fresh(self) -> bool:
        if self._fresh is None:
            has = self._db.execute(
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' "
                "AND name IN ('summary_principals', 'summary_shared')"
            ).fetchone()[0]
            self._fresh = has == 2 and self.meta("summary_of") == self._usage_fingerprint()
        return self._fresh

    # -- LookupEvents cursors ----------------------------------------------------------------

    def lookup_cursor(self, account: str, region: str) -> str:
        """The newest event time stored from LookupEvents for *account* in *region* ('' = none)."""
        has = self._db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'lookup_cursor'"
        ).fetchone()
        if not has:
            return ""
        row = self._db.execute(
            "SELECT newest FROM lookup_cursor WHERE account = ? AND region = ?", (account, region)
        ).fetchone()
        return str(row[0]) if row else ""

    def set_lookup_cursor(self, account: str, region: str, newest: str) -> None:
        """Move the cursor forward (never back) once the region's events are stored."""
        self._db.execute(_LOOKUP_CURSOR)
        self._db.execute(
            "INSERT INTO lookup_cursor VALUES (?, ?, ?) ON CONFLICT (account, region) "
            "DO UPDATE SET newest = max(newest, excluded.newest)",
            (account, region, newest),
        )

    # -- files and events -------------------------------------------------------------------

    @_guarded
    def known_digests(self) -> set[str]:
        return {row[0] for row in self._db.execute("SELECT digest FROM files")}

    @_guarded
    def known_objects(self) -> set[tuple[str, int, int, str]]:
        """Identities (uri, size, mtime_ns, etag) of the objects stored: not read again."""
        return {
            (p, s, m, e) for p, s, m, e in self._db.execute("SELECT path, size, mtime_ns, etag FROM files")
        }

    @_guarded
    def event_days(self) -> set[str]:
        """The days (YYYY-MM-DD, '' and LEGACY_DAY: ``event_days``) that hold event hashes."""
        return {day for (day,) in self._db.execute("SELECT DISTINCT day FROM event_days")}

    @_guarded
    def day_hashes(self, day: str) -> array[int]:
        """The hashes of the events counted on *day* (a bucket of :meth:`event_days`), sorted."""
        return day_hashes(self._db, day)

    @_guarded
    def files(self) -> list[FileEntry]:
        return [
            FileEntry(*row)
            for row in self._db.execute(
                "SELECT digest, path, size, mtime_ns, format, records, malformed, error, ingested_at, "
                "etag FROM files ORDER BY path"
            )
        ]

    # -- writing ---------------------------------------------------------------------------

    @_guarded
    def commit_batch(
        self,
        files: Iterable[FileEntry],
        principals: Iterable[Principal],
        rows: Iterable[tuple[Any, ...]],
        skips: Iterable[tuple[str, str, int]],
        coverage: Iterable[tuple[str, str, str, str, bool, int]] = (),
        deleted: Iterable[tuple[str, str, str, str, str]] = (),
        profile_changes: Sequence[ProfileChange] = (),
        event_days: Mapping[str, array[int]] | None = None,
    ) -> None:
        """Write one batch atomically. ``rows`` are totals replacing the stored rows: tuples of
        (principal, action, resource, outcome, context, count, first_seen, last_seen, event_ids,
        source_ips[, key_sketch]). ``coverage`` are increments (account, region, day, data_source, complete,
        records), committed with the files they came from so an interrupted ingest never leaves
        a file counted without its coverage. ``deleted`` are usage keys (principal, action,
        resource, outcome, context) whose rows moved into an S3 fold (``folder/*``) in ``rows``.
        ``event_days`` are the hashes of the events the files' records counted, by day (in any
        order): written with the files, so a file is never stored without them, nor they without it."""
        self._written = True
        self._fresh = False
        with self._immediate() as db:
            db.executemany(
                "DELETE FROM usage WHERE principal = ? AND action = ? AND resource = ? "
                "AND outcome = ? AND context = ?",
                list(deleted),
            )
            db.executemany(
                "INSERT OR REPLACE INTO files VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                [
                    (
                        f.digest,
                        f.path,
                        f.size,
                        f.mtime_ns,
                        f.format,
                        f.records,
                        f.malformed,
                        f.error,
                        f.ingested_at,
                        b"",
                        f.etag,
                    )
                    for f in files
                ],
            )
            if event_days:
                _add_event_days(db, event_days)
            db.executemany(
                "INSERT OR IGNORE INTO principals VALUES (?,?,?,?)",
                [(p.arn, str(p.kind), p.account, p.name) for p in principals],
            )
            encode = msgspec.json.encode
            db.executemany(
                "INSERT OR REPLACE INTO usage VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                [
                    (
                        r[0],
                        r[1],
                        r[2],
                        r[3],
                        r[4],
                        r[5],
                        r[6],
                        r[7],
                        encode(r[8]).decode(),
                        encode(r[9]).decode(),
                        r[10] if len(r) > 10 else None,
                    )
                    for r in rows
                ],
            )
            db.executemany(
                "INSERT INTO skips VALUES (?,?,?) ON CONFLICT(reason, detail) "
                "DO UPDATE SET count = count + excluded.count",
                list(skips),
            )
            db.executemany(
                "INSERT INTO coverage VALUES (?,?,?,?,?,?) "
                "ON CONFLICT(account, region, day, data_source, complete) "
                "DO UPDATE SET records = records + excluded.records",
                [(a, r, d, s, int(c), n) for a, r, d, s, c, n in coverage],
            )
            if profile_changes:
                db.execute(_PROFILE_CHANGES)
                db.executemany(
                    "INSERT OR IGNORE INTO instance_profile_changes VALUES (?,?,?,?,?,?)",
                    [
                        (c.time, c.account, c.profile, str(c.kind), c.role, c.event_id)
                        for c in profile_changes
                    ],
                )

    def profile_changes(self) -> tuple[ProfileChange, ...]:
        """Every instance-profile change ingested (model/profile.py), oldest first."""
        has = self._db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'instance_profile_changes'"
        ).fetchone()
        if not has:
            return ()
        return tuple(
            ProfileChange(t, a, p, ProfileChangeKind(k), r, e)
            for t, a, p, k, r, e in self._db.execute(
                "SELECT time, account, profile, kind, role, event_id FROM instance_profile_changes "
                "ORDER BY time, account, profile, kind, role, event_id"
            )
        )

    # -- reading ---------------------------------------------------------------------------

    def stored_rows(self) -> Iterator[StoredRow]:
        try:
            for row in self._db.execute("SELECT * FROM usage"):
                yield StoredRow(
                    row[0],
                    row[1],
                    row[2],
                    row[3],
                    row[4],
                    row[5],
                    row[6],
                    row[7],
                    _decode_strings(row[8]),
                    _decode_strings(row[9]),
                    row[10],
                )
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: {_describe(exc)}") from exc

    @_guarded
    def principals(self) -> list[Principal]:
        return [
            Principal(arn, PrincipalKind(kind), account, name)
            for arn, kind, account, name in self._db.execute(
                "SELECT arn, kind, account, name FROM principals ORDER BY arn"
            )
        ]

    @_guarded
    def usage(self, principal: str | None = None, window: TimeWindow | None = None) -> list[UsageRow]:
        """Usage rows (of *principal*; whose [first_seen, last_seen] overlaps *window*), sorted.

        The window is a condition of the query, in SQLite, not a filter over built rows; whole rows
        are read from the table (a seek on the principal, or a scan that filters as it reads), not
        through a range on the window index (:meth:`_window_conditions`).

        One principal's rows are read in primary-key order (action, resource, outcome, context)
        and split by outcome, which keeps each part in (action, resource, context) order: the
        order asked for, without SQLite sorting whole rows in a temporary B-tree (0.16 → 0.11 s
        for 44,226 rows, docs/performance.md)."""
        where, args = _where(("principal = ?", principal), *self._window_conditions(window, rows=True))
        if principal is None:
            sql = f"SELECT * FROM usage{where} ORDER BY principal, outcome, action, resource, context"
            return [self._rows(row) for row in self._db.execute(sql, args)]
        by_outcome: dict[str, list[UsageRow]] = defaultdict(list)
        sql = f"SELECT * FROM usage{where} ORDER BY action, resource, outcome, context"
        for row in self._db.execute(sql, args):
            by_outcome[row[3]].append(self._rows(row))
        return [r for outcome in sorted(by_outcome) for r in by_outcome[outcome]]

    @staticmethod
    def _window_conditions(window: TimeWindow | None, rows: bool = False) -> list[tuple[str, str | None]]:
        """The window as SQL conditions: ranges on ``usage_by_principal_seen`` for the aggregate
        queries, which that index covers; for a query of whole *rows*, written ``+last_seen`` so
        that SQLite does not use the index: each row it found there would cost a second seek into
        the table, more than the primary-key seek or the scan that filters rows as it reads them
        (docs/store.md, "Time windows"). https://www.sqlite.org/optoverview.html#uplus"""
        plus = "+" if rows else ""
        return [
            (f"{plus}last_seen >= ?", window.since if window is not None and window.since else None),
            (f"{plus}first_seen <= ?", window.until if window is not None and window.until else None),
        ]

    @_guarded
    def usage_of(
        self,
        principals: Iterable[str] = (),
        resource_prefixes: Iterable[str] = (),
        window: TimeWindow | None = None,
    ) -> list[UsageRow]:
        """Usage rows of any of *principals* (all when none) whose resource, or the context's KMS
        key, may start with one of *resource_prefixes* (all when none), sorted as :meth:`usage`.

        A superset for a caller that matches patterns itself (``graph.select_rows``): a row is kept
        when its resource starts with a prefix, its context text holds one, or its resource is
        itself a pattern (``folder/*``, which may cover a literal ARN the prefix starts). Only
        these rows are turned into objects."""
        wanted = sorted(set(principals))
        prefixes = sorted(set(resource_prefixes))
        conditions: list[str] = []
        args: list[str] = []
        if wanted:
            conditions.append(f"principal IN ({','.join('?' * len(wanted))})")
            args += wanted
        if prefixes:
            alternatives = ["instr(resource, '*') > 0", "instr(resource, '?') > 0"]
            for prefix in prefixes:
                # substr() compares exactly (LIKE and GLOB give _ % * ? meanings); the context is a
                # JSON array, in which a prefix without quote, backslash or control character
                # appears as itself.
                alternatives.append("substr(resource, 1, ?) = ?")
                alternatives.append("instr(context, ?) > 0")
                args += [str(len(prefix)), prefix, prefix]
            conditions.append("(" + " OR ".join(alternatives) + ")")
        where, window_args = _where(*self._window_conditions(window, rows=True))
        if conditions:
            where = (where + " AND " if where else " WHERE ") + " AND ".join(conditions)
        sql = f"SELECT * FROM usage{where} ORDER BY principal, outcome, action, resource, context"
        return [self._rows(row) for row in self._db.execute(sql, [*window_args, *args])]

    @_guarded
    def principal_totals(self, window: TimeWindow | None = None) -> list[PrincipalTotals]:
        """Per principal with usage (in *window*): distinct actions used and denied, calls used and
        denied, first and last seen, services, distinct resources used (ARNs: ``*`` and unknown left
        out), sorted by principal. From the summaries when they are fresh and no window is asked,
        else aggregate queries over the rows; no row is turned into an object."""
        if (window is None or window.is_open) and self._summaries_fresh():
            return [
                PrincipalTotals(p, au, ad, cu, cd, fs, ls, tuple(json.loads(sv)), nr)
                for p, au, ad, cu, cd, fs, ls, sv, nr in self._db.execute(
                    "SELECT * FROM summary_principals ORDER BY principal"
                )
            ]
        return self._scan_principal_totals(window)

    def _scan_principal_totals(self, window: TimeWindow | None) -> list[PrincipalTotals]:
        where, args = _where(*self._window_conditions(window))
        totals = self._db.execute(
            "SELECT principal, "
            "COUNT(DISTINCT CASE WHEN outcome = 'used' THEN action END), "
            "COUNT(DISTINCT CASE WHEN outcome = 'denied' THEN action END), "
            "SUM(CASE WHEN outcome = 'used' THEN count ELSE 0 END), "
            "SUM(CASE WHEN outcome = 'denied' THEN count ELSE 0 END), "
            "MIN(first_seen), MAX(last_seen), "
            "COUNT(DISTINCT CASE WHEN outcome = 'used' AND resource NOT IN ('', '*') THEN resource END) "
            f"FROM usage{where} GROUP BY principal ORDER BY principal",
            args,
        ).fetchall()
        services: dict[str, list[str]] = {}
        for principal, service in self._db.execute(
            "SELECT DISTINCT principal, "
            "CASE WHEN instr(action, ':') > 0 THEN substr(action, 1, instr(action, ':') - 1) ELSE action END "
            f"FROM usage{where} ORDER BY 1, 2",
            args,
        ):
            services.setdefault(principal, []).append(service)
        return [
            PrincipalTotals(p, au, ad, int(cu), int(cd), fs, ls, tuple(services.get(p, ())), nr)
            for p, au, ad, cu, cd, fs, ls, nr in totals
        ]

    @_guarded
    def shared_resources(
        self, window: TimeWindow | None = None, principal: str | None = None
    ) -> list[tuple[str, tuple[str, ...]]]:
        """Resources (ARNs: ``*`` and unknown left out) whose calls were authorized for more than one
        principal (in *window*; of those *principal* used, when given), each with those principals
        (sorted), sorted by resource. From the summaries when they are fresh and no window is asked
        (for one principal: its rows' resources looked up there)."""
        if (window is None or window.is_open) and self._summaries_fresh():
            sql = "SELECT resource, principals FROM summary_shared"
            args: list[str] = []
            if principal is not None:
                sql += (
                    " WHERE resource IN (SELECT DISTINCT resource FROM usage WHERE principal = ? "
                    "AND outcome = 'used' AND resource NOT IN ('', '*'))"
                )
                args.append(principal)
            return [
                (r, tuple(json.loads(ps))) for r, ps in self._db.execute(sql + " ORDER BY resource", args)
            ]
        return self._scan_shared(window, principal)

    def _scan_shared(
        self, window: TimeWindow | None, principal: str | None
    ) -> list[tuple[str, tuple[str, ...]]]:
        used = [("outcome = ?", "used"), *self._window_conditions(window)]
        where, args = _where(*used)
        where += " AND resource NOT IN ('', '*')"
        if principal is not None:
            mine, mine_args = _where(("principal = ?", principal), *used)
            where += f" AND resource IN (SELECT resource FROM usage{mine} AND resource NOT IN ('', '*'))"
            args += mine_args
        out = []
        for resource, users in self._db.execute(
            "SELECT resource, group_concat(principal, char(10)) FROM "
            f"(SELECT DISTINCT resource, principal FROM usage{where} ORDER BY resource, principal) "
            "GROUP BY resource HAVING COUNT(*) > 1 ORDER BY resource",
            args,
        ):
            out.append((resource, tuple(sorted(users.split("\n")))))
        return out

    @_guarded
    def skips(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for reason, count in self._db.execute(
            "SELECT reason, SUM(count) FROM skips GROUP BY reason ORDER BY reason"
        ):
            out[reason] = int(count)
        return out

    @_guarded
    def skip_details(self) -> list[tuple[str, str, int]]:
        return [
            (r, d, int(c))
            for r, d, c in self._db.execute(
                "SELECT reason, detail, count FROM skips ORDER BY reason, count DESC, detail"
            )
        ]

    # -- coverage ----------------------------------------------------------------------------

    @_guarded
    def coverage(self, account: str | None = None, window: TimeWindow | None = None) -> list[CoverageRow]:
        """Coverage rows (of *account*; of the UTC days that have a second inside *window*)."""
        where, args = _where(
            ("account = ?", account),
            ("day >= ?", window.first_day if window is not None and window.since else None),
            ("day <= ?", window.last_day if window is not None and window.until else None),
        )
        sql = (
            "SELECT account, region, day, data_source, complete, records FROM coverage"
            f"{where} ORDER BY account, region, day, data_source, complete"
        )
        return [CoverageRow(a, r, d, s, bool(c), int(n)) for a, r, d, s, c, n in self._db.execute(sql, args)]

    # -- Access Advisor ----------------------------------------------------------------------

    @_guarded
    def known_access_advisor(self) -> set[str]:
        """Digests of Access Advisor files already stored (read or skipped)."""
        return {row[0] for row in self._db.execute("SELECT digest FROM access_advisor_files")}

    @_guarded
    def add_access_advisor(self, file: AccessAdvisorFile, entries: Iterable[LastAccessed]) -> None:
        """Store one report file and its entries atomically. Re-adding the same report replaces
        its rows (the key includes the report's generation time), so nothing is counted twice."""
        with self._immediate() as db:
            db.execute(
                "INSERT OR REPLACE INTO access_advisor_files VALUES (?,?,?,?,?,?,?,?,?)",
                (
                    file.digest,
                    file.path,
                    file.kind,
                    file.status,
                    file.generated_at,
                    file.entries,
                    file.skipped,
                    json.dumps(list(file.notes)),
                    file.ingested_at,
                ),
            )
            db.executemany(
                "INSERT OR REPLACE INTO access_advisor VALUES (?,?,?,?,?,?,?,?,?,?)",
                [
                    (
                        e.principal,
                        e.service,
                        e.action,
                        str(e.granularity),
                        e.generated_at,
                        e.last_accessed,
                        e.region,
                        e.entity,
                        e.report,
                        file.digest,
                    )
                    for e in entries
                ],
            )

    @_guarded
    def access_advisor(self, principal: str | None = None) -> list[LastAccessed]:
        sql = (
            "SELECT principal, service, action, last_accessed, region, entity, report, granularity, "
            "generated_at FROM access_advisor"
        )
        args: tuple[str, ...] = ()
        if principal is not None:
            sql += " WHERE principal = ?"
            args = (principal,)
        sql += " ORDER BY principal, service, action, granularity, generated_at"
        return [
            LastAccessed(p, s, a, la, r, e, rep, Granularity(g), gen)
            for p, s, a, la, r, e, rep, g, gen in self._db.execute(sql, args)
        ]

    @_guarded
    def access_advisor_files(self) -> list[AccessAdvisorFile]:
        return [
            AccessAdvisorFile(d, p, k, st, g, int(n), sk, tuple(json.loads(notes)), at)
            for d, p, k, st, g, n, sk, notes, at in self._db.execute(
                "SELECT digest, path, kind, status, generated_at, entries, skipped, notes, ingested_at "
                "FROM access_advisor_files ORDER BY path"
            )
        ]

    # -- review history -------------------------------------------------------------------------

    def _review_tables(self) -> None:
        self._db.executescript(_REVIEW_SCHEMA)

    def review_runs(self) -> list[ReviewRunRow]:
        """Stored review runs, oldest first."""
        self._review_tables()
        return [
            ReviewRunRow(i, at, dg, tuple(json.loads(inp)), w, c, int(p), int(n))
            for i, at, dg, inp, w, c, p, n in self._db.execute(
                "SELECT r.id, r.started_at, r.inputs_digest, r.inputs, r.evidence_window, r.catalog, "
                "r.principals, (SELECT COUNT(*) FROM review_findings f WHERE f.run = r.id) "
                "FROM review_runs r ORDER BY r.id"
            )
        ]

    def review_findings(self, run: int) -> list[Finding]:
        self._review_tables()
        return [
            Finding(code, subject, message, principal, target)
            for principal, code, target, subject, message in self._db.execute(
                "SELECT principal, code, target, subject, message FROM review_findings WHERE run = ? "
                "ORDER BY principal, code, target",
                (run,),
            )
        ]

    def add_review_run(
        self,
        started_at: str,
        inputs_digest: str,
        inputs: Iterable[str],
        window: str,
        catalog: str,
        principals: int,
        findings: Iterable[Finding],
    ) -> int:
        """Store one run and its findings in one transaction; its id."""
        self._review_tables()
        with self._immediate() as db:
            cur = db.execute(
                "INSERT INTO review_runs (started_at, inputs_digest, inputs, evidence_window, catalog, "
                "principals) VALUES (?, ?, ?, ?, ?, ?)",
                (started_at, inputs_digest, json.dumps(list(inputs)), window, catalog, principals),
            )
            run = int(cur.lastrowid or 0)
            db.executemany(
                "INSERT OR REPLACE INTO review_findings VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (run, f.fingerprint, f.principal, f.code, f.target or f.subject, f.subject, f.message)
                    for f in findings
                ],
            )
        return run


@contextmanager
def writer_lock(
    path: str | Path, wait: float = DEFAULT_WAIT_LOCK, on_wait: Callable[[str], None] | None = None
) -> Iterator[None]:
    """Hold the writer lock of the store at *path*: one ingest at a time per store.

    An ingest loads the stored totals, adds what it reads and writes the sums back; two at once
    would each overwrite the other's sums. The lock is an advisory lock on ``STORE.lock`` beside
    the store (``flock``: released by the kernel when the holder exits, however it dies), taken
    once the store is open (so a file that is not a store is refused before anything is made
    beside it) and before anything is read from it. Re-entrant within one process. When another
    process holds it, *on_wait* is called once with a one-line message and the lock is tried
    again until *wait* seconds have passed; then ``StoreError`` (exit 4). Readers (every other
    command) never take it: SQLite's WAL lets them read meanwhile. docs/store.md "One writer at
    a time".
    """
    if str(path) == ":memory:":
        yield
        return
    key = os.path.realpath(path)
    held = _HELD.get(key)
    if held is not None:
        _HELD[key] = (held[0], held[1] + 1)
        try:
            yield
        finally:
            fd, depth = _HELD[key]
            _HELD[key] = (fd, depth - 1)
        return
    fd = _acquire(str(path) + ".lock", wait, on_wait)
    _HELD[key] = (fd, 1)
    try:
        yield
    finally:
        del _HELD[key]
        os.close(fd)  # closing the descriptor releases the lock


_HELD: dict[str, tuple[int, int]] = {}  # realpath of a store held by this process → (fd, depth)


def _acquire(lock_path: str, wait: float, on_wait: Callable[[str], None] | None) -> int:
    """Open and lock *lock_path*, waiting up to *wait* seconds; the descriptor holds the lock."""
    try:
        Path(lock_path).parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise StoreError(f"{lock_path}: cannot create the store's lock file ({exc.strerror or exc})") from exc
    deadline = time.monotonic() + max(0.0, wait)
    told = False
    while not _try_lock(fd):
        if time.monotonic() >= deadline:
            holder = _holder(fd)
            os.close(fd)
            raise StoreError(
                f"{lock_path[: -len('.lock')]}: another ingest{holder} is still writing this store "
                f"after {wait:g}s; try again when it is done, or give a longer --wait-lock"
            )
        if not told and on_wait is not None:
            on_wait(
                f"{lock_path[: -len('.lock')]}: another ingest{_holder(fd)} is writing this store; "
                f"waiting for it (up to {wait:g}s, --wait-lock)"
            )
        told = True
        time.sleep(_LOCK_POLL)
    # Who holds it, for the message another waiting ingest prints.
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def _holder(fd: int) -> str:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 32).decode("ascii", "replace").strip()
    except OSError:
        return ""
    return f" (pid {text})" if text.isdigit() else ""


if sys.platform == "win32":  # pragma: no cover - CI runs on Linux
    import msvcrt

    def _try_lock(fd: int) -> bool:
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True
