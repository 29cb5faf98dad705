"""Sources → normalize → usage store, in parallel, incrementally, counting every skip.

Each file is read, decoded and normalized by a worker process into per-file aggregates (the cost
is building Python objects, so it is spread over the cores: DESIGN.md "Numbers that matter"). The
parent merges them in input order, so results do not depend on scheduling, drops events whose id
was already counted, folds S3 object keys into prefixes past a bound (memory grows with distinct
usage keys, not records), and commits batches atomically to the store.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import time
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from iamtrim.errors import NoReadableInput
from iamtrim.model import Context, FileReport, Principal, Skipped, SkipReason
from iamtrim.normalize import normalize_record
from iamtrim.sources import iter_input_files, read_file
from iamtrim.store import FileEntry, Store, StoredRow, context_to_key

EXACT_KEYS_PER_FOLDER = 64  # exact S3 object keys kept per folder before folding into "folder/*"
SAMPLE_EVENT_IDS = 3
SAMPLE_SOURCE_IPS = 5
BATCH_FILES = 64
BATCH_SECONDS = 2.0

AggKey = tuple[str, str, str, str, str]  # principal, action, resource ('' = unknown), outcome, context


def event_hash(event_id: str, event_time: str = "", event_name: str = "") -> int:
    """A stable 64-bit hash identifying one event (Python's ``hash`` differs between processes).

    eventID is a GUID unique per event; the time and name are mixed in so that hand-made records
    reusing an id ("1", "abc") are not mistaken for copies of one another, while the same event
    seen twice (a trail file and an Event-history download) still collides.
    """
    text = f"{event_id}|{event_time}|{event_name}".encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little", signed=True)


@dataclass(slots=True)
class FileResult:
    path: str
    digest: str = ""
    size: int = 0
    mtime_ns: int = 0
    format: str = ""
    records: int = 0
    malformed: int = 0
    error: str = ""
    hashes: array = field(default_factory=lambda: array("q"))  # type: ignore[type-arg]
    agg: dict[AggKey, list[object]] = field(default_factory=dict)
    principals: dict[str, Principal] = field(default_factory=dict)
    skips: Counter[tuple[str, str]] = field(default_factory=Counter)


def _add(agg: dict[AggKey, list[object]], key: AggKey, count: int, first: str, last: str,
         eids: Sequence[str], ips: Sequence[str]) -> None:
    acc = agg.get(key)
    if acc is None:
        agg[key] = [count, first, last, list(eids[:SAMPLE_EVENT_IDS]), list(ips[:SAMPLE_SOURCE_IPS])]
        return
    acc[0] = int(acc[0]) + count  # type: ignore[call-overload]
    if first < acc[1]:  # type: ignore[operator]
        acc[1] = first
    if last > acc[2]:  # type: ignore[operator]
        acc[2] = last
    sample_e: list[str] = acc[3]  # type: ignore[assignment]
    for e in eids:
        if len(sample_e) >= SAMPLE_EVENT_IDS:
            break
        if e and e not in sample_e:
            sample_e.append(e)
    sample_i: list[str] = acc[4]  # type: ignore[assignment]
    for ip in ips:
        if len(sample_i) >= SAMPLE_SOURCE_IPS:
            break
        if ip and ip not in sample_i:
            sample_i.append(ip)


def process_file(path: str, exclude: frozenset[int] = frozenset()) -> FileResult:
    """Read and normalize one file into aggregates. Never raises for bad content."""
    result = FileResult(path=path)
    read, raw = read_file(path)
    result.format, result.malformed, result.error = read.format, read.malformed, read.error
    try:
        st = os.stat(path)
        result.size, result.mtime_ns = st.st_size, st.st_mtime_ns
    except OSError:
        pass
    result.digest = hashlib.sha256(raw).hexdigest() if raw else ""
    if read.malformed:
        result.skips[(str(SkipReason.MALFORMED), "")] += read.malformed
    seen_here: set[int] = set()
    ctx_keys: dict[Context, str] = {}
    agg = result.agg
    skips = result.skips
    hashes = result.hashes
    for record in read.records:
        result.records += 1
        eid = record.eventID
        if eid:
            h = event_hash(eid, record.eventTime or "", record.eventName or "")
            if h in seen_here or h in exclude:
                skips[(str(SkipReason.DUPLICATE_EVENT), "")] += 1
                continue
            seen_here.add(h)
            hashes.append(h)
        out = normalize_record(record)
        if isinstance(out, Skipped):
            skips[(str(out.reason), out.detail)] += 1
            continue
        usages, notes = out
        for note in notes:
            skips[(str(note.reason), note.detail)] += 1
        for u in usages:
            ck = ctx_keys.get(u.context)
            if ck is None:
                ck = ctx_keys[u.context] = context_to_key(u.context)
            if u.principal.arn not in result.principals:
                result.principals[u.principal.arn] = u.principal
            key = (u.principal.arn, u.action, u.resource or "", str(u.outcome), ck)
            acc = agg.get(key)
            if acc is None:
                agg[key] = [1, u.time, u.time, [u.event_id] if u.event_id else [],
                            [u.source_ip] if u.source_ip else []]
            else:
                acc[0] = int(acc[0]) + 1  # type: ignore[call-overload]
                if u.time < acc[1]:  # type: ignore[operator]
                    acc[1] = u.time
                elif u.time > acc[2]:  # type: ignore[operator]
                    acc[2] = u.time
                ips: list[str] = acc[4]  # type: ignore[assignment]
                if u.source_ip and len(ips) < SAMPLE_SOURCE_IPS and u.source_ip not in ips:
                    ips.append(u.source_ip)
                eids: list[str] = acc[3]  # type: ignore[assignment]
                if u.event_id and len(eids) < SAMPLE_EVENT_IDS:
                    eids.append(u.event_id)
    return result


@dataclass(slots=True)
class IngestReport:
    files_read: int = 0
    files_already: int = 0
    files_failed: list[tuple[str, str]] = field(default_factory=list)
    records: int = 0
    usage_keys: int = 0
    principals: int = 0
    skips: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def records_per_second(self) -> float:
        return self.records / self.seconds if self.seconds else 0.0


def _is_object_arn(resource: str) -> bool:
    return resource.startswith("arn:") and ":s3:::" in resource and "/" in resource


class _Merger:
    """Totals for the whole store, folded, with the set of rows touched since the last commit."""

    def __init__(self, store: Store) -> None:
        self.totals: dict[AggKey, list[object]] = {}
        self.folders: dict[tuple[str, str, str, str, str], set[str]] = {}
        self.dirty: set[AggKey] = set()
        for row in store.stored_rows():
            key = (row.principal, row.action, row.resource, row.outcome, row.context)
            self.totals[key] = [row.count, row.first_seen, row.last_seen, list(row.event_ids),
                                list(row.source_ips)]
            if _is_object_arn(row.resource) and not row.resource.endswith("/*"):
                self._folder_set(key).add(row.resource)

    def _folder_set(self, key: AggKey) -> set[str]:
        folder = key[2].rsplit("/", 1)[0]
        return self.folders.setdefault((key[0], key[1], key[3], key[4], folder), set())

    def merge(self, agg: dict[AggKey, list[object]]) -> None:
        for key, acc in agg.items():
            resource = key[2]
            if _is_object_arn(resource) and not resource.endswith("/*"):
                keys = self._folder_set(key)
                if resource not in keys:
                    if len(keys) >= EXACT_KEYS_PER_FOLDER:
                        key = (key[0], key[1], resource.rsplit("/", 1)[0] + "/*", key[3], key[4])
                    else:
                        keys.add(resource)
            _add(self.totals, key, int(acc[0]), str(acc[1]), str(acc[2]), acc[3], acc[4])  # type: ignore[arg-type, call-overload]
            self.dirty.add(key)

    def take_dirty(self) -> list[StoredRow]:
        rows = []
        for key in sorted(self.dirty):
            acc = self.totals[key]
            rows.append(StoredRow(key[0], key[1], key[2], key[3], key[4], int(acc[0]), str(acc[1]),  # type: ignore[call-overload]
                                  str(acc[2]), tuple(acc[3]), tuple(acc[4])))  # type: ignore[arg-type]
        self.dirty.clear()
        return rows


def _worker_count(n_files: int, workers: int | None) -> int:
    if workers is not None:
        return max(1, workers)
    if n_files < 4:
        return 1
    return max(1, min(os.cpu_count() or 1, 4))


def _results(paths: list[str], workers: int) -> Iterator[FileResult]:
    if workers <= 1:
        for p in paths:
            yield process_file(p)
        return
    ctx = multiprocessing.get_context("fork" if hasattr(os, "fork") else "spawn")
    with ctx.Pool(workers) as pool:
        yield from pool.imap(process_file, paths, chunksize=1)


def ingest(
    paths: Iterable[str | os.PathLike[str]],
    store: Store,
    *,
    workers: int | None = None,
    on_file: Callable[[FileReport], None] | None = None,
    on_start: Callable[[int], None] | None = None,
) -> IngestReport:
    """Ingest every CloudTrail file under *paths* into *store*.

    Raises ``NoReadableInput`` only when no file at all could be read (and none was already in
    the store); otherwise problems are reported per file and per record.
    """
    started = time.perf_counter()
    report = IngestReport()
    todo: list[str] = []
    known_stat = store.known_stat()
    for path, error in iter_input_files(paths):
        if error:
            report.files_failed.append((str(path), error))
            if on_file:
                on_file(FileReport(str(path), 0, error=error))
            continue
        try:
            st = path.stat()
            if (str(path), st.st_size, st.st_mtime_ns) in known_stat:
                report.files_already += 1
                if on_file:
                    on_file(FileReport(str(path), 0, skipped_file=True))
                continue
        except OSError:
            pass
        todo.append(str(path))
    if on_start:
        on_start(len(todo))
    merger = _Merger(store)
    seen = store.event_hashes()
    digests = store.known_digests()
    principals: dict[str, Principal] = {p.arn: p for p in store.principals()}
    pending_files: list[FileEntry] = []
    pending_principals: list[Principal] = []
    pending_skips: Counter[tuple[str, str]] = Counter()
    last_commit = time.monotonic()
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    def commit() -> None:
        nonlocal last_commit
        store.commit_batch(pending_files, pending_principals, merger.take_dirty(),
                           [(r, d, c) for (r, d), c in sorted(pending_skips.items())])
        pending_files.clear()
        pending_principals.clear()
        pending_skips.clear()
        last_commit = time.monotonic()

    for result in _results(todo, _worker_count(len(todo), workers)):
        if result.digest and result.digest in digests:
            report.files_already += 1
            if on_file:
                on_file(FileReport(result.path, 0, skipped_file=True))
            continue
        if not seen.isdisjoint(result.hashes):
            # Some events of this file were counted from another file (an Event-history download
            # overlapping the trail, a copied file): redo it without them.
            result = process_file(result.path, exclude=frozenset(seen))
        if result.error and not result.records:
            report.files_failed.append((result.path, result.error))
        elif result.error:
            report.files_failed.append((result.path, result.error + " (records before it were read)"))
        if result.records or not result.error:
            report.files_read += 1
        report.records += result.records
        seen.update(result.hashes)
        if result.digest:
            digests.add(result.digest)
            pending_files.append(FileEntry(result.digest, result.path, result.size, result.mtime_ns,
                                           result.format, result.records, result.malformed,
                                           result.error, now, result.hashes.tobytes()))
        for arn, p in result.principals.items():
            if arn not in principals:
                principals[arn] = p
                pending_principals.append(p)
        merger.merge(result.agg)
        pending_skips.update(result.skips)
        for (reason, _), count in result.skips.items():
            report.skips[reason] += count
        if on_file:
            on_file(FileReport(result.path, result.records, error=result.error,
                               skips=tuple(sorted((r, c) for (r, _), c in result.skips.items()))))
        if len(pending_files) >= BATCH_FILES or time.monotonic() - last_commit > BATCH_SECONDS:
            commit()
    commit()
    report.usage_keys = len(merger.totals)
    report.principals = len(principals)
    report.seconds = time.perf_counter() - started
    if report.files_read == 0 and report.files_already == 0:
        detail = "; ".join(f"{p}: {e}" for p, e in report.files_failed[:3])
        raise NoReadableInput(f"no CloudTrail records could be read ({detail or 'no input files'})")
    return report


def load_events(paths: Sequence[str | os.PathLike[str]], *, workers: int | None = None) -> Store:
    """Stateless mode: an in-memory store holding just *paths*."""
    store = Store(":memory:")
    ingest(paths, store, workers=workers)
    return store


def default_store_path() -> Path:
    return Path(os.environ.get("IAMTRIM_STORE", "iamtrim-usage.sqlite"))
