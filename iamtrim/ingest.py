"""Sources → normalize → usage store, in parallel, incrementally, counting every skip.

Each file is read, decoded and normalized by a worker process into per-file aggregates (the cost
is building Python objects, so it is spread over the cores: docs/design.md#numbers). The
parent merges them in input order, so results do not depend on scheduling, drops events whose id
was already counted, folds S3 object keys into prefixes past a bound (memory grows with distinct
usage keys, not records), and commits batches atomically to the store.
"""

from __future__ import annotations

import ctypes
import gc
import hashlib
import itertools
import json
import multiprocessing
import os
import queue
import re
import signal
import sys
import time
from array import array
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing.context import ForkContext, SpawnContext
from pathlib import Path
from typing import Any

from iamtrim.errors import IamtrimError, InputError, NoReadableInput, StoreError
from iamtrim.evidence import DATA_EVENT_NAMES
from iamtrim.keysketch import KeySketch
from iamtrim.model import Context, FileReport, Outcome, Principal, Skipped, SkipReason, is_s3_object_arn
from iamtrim.model.profile import ProfileChange
from iamtrim.model.usage import SAMPLE_EVENT_IDS, SAMPLE_SOURCE_IPS
from iamtrim.normalize.record import PROFILE_EVENTS, Normalizer, RecordParts, profile_change
from iamtrim.sources import Record
from iamtrim.sources.files import MAX_FILE_BYTES, parse_object
from iamtrim.sources.objects import ObjectRef, TrailSource, local_or_source
from iamtrim.sources.records import identity_text
from iamtrim.store import DEFAULT_WAIT_LOCK, FileEntry, Store, StoredEvents

EXACT_KEYS_PER_FOLDER = 16  # entries (keys, sub-folders) kept per S3 folder before it folds: docs/store.md
FAILED_KEYS_PER_FOLDER = 1000  # distinct keys only failed calls named, kept per S3 folder: docs/store.md
FAILED_KEYS_OVER_BOUND = str(SkipReason.FAILED_KEYS_OVER_BOUND)  # those past it: skips, never granted
BATCH_FILES = 1000  # a commit rewrites the rows it touched: every few seconds is enough
BATCH_SECONDS = 5.0

Item = tuple[int, ObjectRef]  # an object to read, and the index of its source in the run's sources
AggKey = tuple[str, str, str, str, str]  # principal, action, resource ('' = unknown), outcome, context
CoverageKey = tuple[str, str, str, str, bool]  # account, region, day, data eventSource ('' = mgmt), complete


class Aggregate:
    """What the calls of one usage key add up to: how many, first and last seen, and a sample of
    their event ids and source IPs (the store's row for the key, docs/store.md).

    Aggregates merge in any order into the same count and times (``merge`` is commutative and
    associative on them; the samples keep the first values met, at most SAMPLE_EVENT_IDS and
    SAMPLE_SOURCE_IPS), so partial aggregates of a split input add up to the aggregate of the
    whole. A folded S3 row (``folder/*``) also holds the sketch of the distinct keys it stands
    for (``keys``, :class:`iamtrim.keysketch.KeySketch`, None on every other row), which merges
    the same way: the sketch of the whole is that of the merged parts, byte for byte.
    A plain slots class, not a dataclass: one is made per new key on the hot path.
    """

    __slots__ = ("count", "event_ids", "first", "keys", "last", "source_ips")

    def __init__(
        self,
        count: int,
        first: str,
        last: str,
        event_ids: list[str],
        source_ips: list[str],
        keys: KeySketch | None = None,
    ) -> None:
        self.count = count
        self.first = first  # eventTime, YYYY-MM-DDTHH:MM:SSZ (sortable)
        self.last = last
        self.event_ids = event_ids
        self.source_ips = source_ips
        self.keys = keys

    def add_key(self, key: str) -> None:
        """Note one object key (its ARN) this folded row stands for."""
        keys = self.keys
        if keys is None:
            keys = self.keys = KeySketch()
        keys.add(key)

    def add(self, when: str, event_id: str, source_ip: str) -> None:
        """Count one more call, made at *when*."""
        self.count += 1
        if when < self.first:
            self.first = when
        elif when > self.last:
            self.last = when
        ips = self.source_ips
        if source_ip and len(ips) < SAMPLE_SOURCE_IPS and source_ip not in ips:
            ips.append(source_ip)
        eids = self.event_ids
        if event_id and len(eids) < SAMPLE_EVENT_IDS:
            eids.append(event_id)

    def merge(self, other: Aggregate) -> None:
        """Add the calls of *other* (left as it was) into this aggregate."""
        self.count += other.count
        if other.first < self.first:
            self.first = other.first
        if other.last > self.last:
            self.last = other.last
        if len(self.event_ids) < SAMPLE_EVENT_IDS:
            _sample(self.event_ids, other.event_ids, SAMPLE_EVENT_IDS)
        if len(self.source_ips) < SAMPLE_SOURCE_IPS:
            _sample(self.source_ips, other.source_ips, SAMPLE_SOURCE_IPS)
        if other.keys is not None:
            if self.keys is None:
                self.keys = other.keys.copy()
            else:
                self.keys.merge(other.keys)

    def absorb(self, other: Aggregate) -> None:
        """:meth:`merge` for an *other* that is not used after: its key sketch may become this
        one's instead of being copied (the merges of ingest's totals, on the hot path)."""
        if other.keys is not None and self.keys is None:
            keys, other.keys = other.keys, None
            self.merge(other)
            self.keys = keys
        else:
            self.merge(other)

    def copy(self) -> Aggregate:
        """A copy that shares no sample list (or key sketch) with this one."""
        keys = None if self.keys is None else self.keys.copy()
        return Aggregate(self.count, self.first, self.last, list(self.event_ids), list(self.source_ips), keys)

    def row(self) -> tuple[int, str, str, list[str], list[str], bytes | None]:
        """The store's columns for the key: count, first seen, last seen, event ids, source IPs,
        key sketch (bytes; None but on a folded S3 row)."""
        keys = None if self.keys is None else self.keys.to_bytes()
        return (self.count, self.first, self.last, self.event_ids, self.source_ips, keys)

    def __reduce__(
        self,
    ) -> tuple[type[Aggregate], tuple[int, str, str, list[str], list[str], KeySketch | None]]:
        # Pickled as its constructor's arguments: a worker's aggregates cross to the parent by
        # pickle, and the default for a slots class (a dict of slot values per object) took 3-4
        # times as long to dump and to load (25,000 keys: 85 and 106 ms, against 56 and 32).
        return (Aggregate, (self.count, self.first, self.last, self.event_ids, self.source_ips, self.keys))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Aggregate) and self.row() == other.row()

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"Aggregate{self.row()!r}"


def event_hash(event_id: str, event_time: str = "", event_name: str = "") -> int:
    """A stable 64-bit hash identifying one event (Python's ``hash`` differs between processes).

    eventID is a GUID unique per event; the time and name are mixed in so that hand-made records
    reusing an id ("1", "abc") are not mistaken for copies of one another, while the same event
    seen twice (a trail file and an Event-history download) still collides.
    """
    text = f"{event_id}|{event_time}|{event_name}".encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little", signed=True)


def content_hash(identity: bytes) -> int:
    """The 64-bit hash of a record without an eventID, from ``identity_text`` (docs/store.md).

    Keyed apart from ``event_hash`` (a person choosing an eventID cannot collide with it).
    """
    digest = hashlib.blake2b(identity, digest_size=8, person=b"no-eventID").digest()
    return int.from_bytes(digest, "little", signed=True)


# YYYY-MM-DD with a year from 1970 to 2099, a month and a day of month: at most 48,360 distinct
# days, whatever a hostile file writes (a bucket is a row of event_days and an entry per run).
_DAY_SHAPE = re.compile(
    r"(?:19[7-9][0-9]|20[0-9][0-9])-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])"
).fullmatch


def event_day(time_prefix: str) -> str:
    """The day an event's hash is stored under (docs/store.md, "Event hashes"), from the first ten
    characters of its eventTime as written: themselves when they read ``YYYY-MM-DD`` (years 1970
    to 2099), else '' (no eventTime, or one no trail wrote). Both hashes mix in the raw
    eventTime, so two copies of one event always fall on the same day; the answer depends on the
    text only (not on today's date), so it is the same in every run."""
    return time_prefix if _DAY_SHAPE(time_prefix) else ""


def _has(hashes: array[int], h: int) -> bool:
    """Whether sorted *hashes* hold *h* (a binary search: no object per stored hash)."""
    i = bisect_left(hashes, h)
    return i != len(hashes) and hashes[i] == h


class RunEvents:
    """The hashes of the events one run counted, by day: a few sorted int64 arrays per day (8 bytes
    a hash), merged as they grow so that a day holds at most about log2 of its count of them."""

    def __init__(self) -> None:
        self.days: dict[str, list[array[int]]] = {}

    def add(self, day: str, hashes: Iterable[int]) -> None:
        new = array("q", sorted(hashes))
        if not new:
            return
        runs = self.days.setdefault(day, [])
        runs.append(new)
        while len(runs) > 1 and len(runs[-2]) <= 2 * len(runs[-1]):
            last = runs.pop()
            runs[-1] = array("q", sorted(itertools.chain(runs[-1], last)))  # two sorted runs: linear

    def counted(self, day: str, hashes: set[int]) -> set[int]:
        """Those of *hashes* (of events on *day*) this run counted."""
        found: set[int] = set()
        for run in self.days.get(day, ()):
            if len(run) <= 16 * len(hashes):
                found.update(hashes.intersection(run))  # one pass over the run, in C
            else:
                found.update(h for h in hashes if _has(run, h))
        return found

    def size(self) -> int:
        """Hashes held (8 bytes each)."""
        return sum(len(r) for runs in self.days.values() for r in runs)


_FAILED_CONTEXTS_LIMIT = 20_000  # answers an ObjectKeyFolder remembers; a run has few contexts


def failed_context(context: str) -> bool:
    """Whether a stored context key (``Context.to_key``) is of a call that failed after
    authorization (it carries an errorCode, such as ``NoSuchKey``; a denied call has none).
    Not cached: :meth:`ObjectKeyFolder.failed` remembers the answers of one run."""
    try:
        return bool(Context.from_key(context).error_code)
    except (ValueError, TypeError):  # not a context key (a hand-made row): no errorCode
        return False


class _Node:
    """One folder of one group: ``prefix`` is the folder's ARN (the bucket ARN at the top)."""

    __slots__ = ("aliases", "children", "contexts", "folded", "key", "leaves", "parent", "prefix")

    def __init__(self, parent: _Node | None, key: tuple[tuple[str, ...], str]) -> None:
        self.parent = parent
        self.key = key
        self.prefix = key[1]
        self.folded = False
        # Created when first needed: most folders hold a few keys and no sub-folder. Children
        # are kept by key, not by node: a node points up to its parent only, so the table holds
        # no reference cycle and is freed by reference counting (ingest runs with the cyclic
        # GC off).
        self.children: list[tuple[tuple[str, ...], str]] | None = None
        # Distinct key names directly in the folder → the context (or contexts) holding a row.
        self.leaves: dict[str, str | set[str]] | None = None
        self.contexts: set[str] | None = None  # once folded: the contexts holding a folder/* row
        self.aliases: list[tuple[tuple[str, ...], str]] | None = None  # folders below, once folded here

    def entries(self) -> int:
        return (len(self.leaves) if self.leaves else 0) + (len(self.children) if self.children else 0)


class ObjectKeyFolder:
    """Bounds the distinct S3 object keys kept per (principal, action, outcome, bucket).

    generate-policy's rule (``synth.minimize.generalize_object_arns``) at threshold ``limit``: a
    folder whose *entries* — the distinct keys directly in it plus its direct sub-folders, each
    counting as one — exceed ``limit`` is folded into ``folder/*``, and a key is kept under the
    highest folded folder above it. Entries are counted over all contexts, as generate-policy
    counts them (a row stays per context: the fold of a key seen through a VPC endpoint and
    without one is two ``folder/*`` rows).

    A folder's entries only grow as keys arrive, so whether it folds depends on the set of keys
    seen, never on their order or on how the input was split: when a folder folds, the keys
    already kept under it move into the fold (:attr:`moved`, which the caller applies to its
    aggregate), and ``folder/*`` coming in (from a lane, or from the store) folds the folder here
    too. Partial results therefore merge in any order into the same rows, and since the rule is
    monotone in its threshold, every ``--prefix-threshold`` up to ``limit`` gives the policy it
    would give on the unfolded keys. Memory and the store grow with folders, not objects
    (docs/design.md#numbers: ~0.7 KB per usage key).

    Folders are found by their ARN in one flat table and linked to their parent. Folding a
    folder drops its sub-folders from the table: no folder in it ever has a folded ancestor.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._nodes: dict[tuple[tuple[str, ...], str], _Node] = {}
        # (group, context, resource kept until now, the fold it moved into), in fold order.
        self.moved: list[tuple[tuple[str, ...], str, str, str]] = []
        # context key → failed_context(key); bounded (cleared when full), answers never depend on it.
        self._failed: dict[str, bool] = {}

    def failed(self, context: str) -> bool:
        """:func:`failed_context`, remembered (at most ``_FAILED_CONTEXTS_LIMIT`` answers)."""
        known = self._failed.get(context)
        if known is None:
            if len(self._failed) >= _FAILED_CONTEXTS_LIMIT:
                self._failed.clear()
            known = self._failed[context] = failed_context(context)
        return known

    def remembered(self) -> int:
        """How many :meth:`failed` answers are held (never more than ``_FAILED_CONTEXTS_LIMIT``)."""
        return len(self._failed)

    def size(self) -> int:
        """Folders (and remembered answers) held: what the folder's memory grows with."""
        return len(self._nodes)

    def fold(self, group: tuple[str, ...], context: str, arn: str) -> str:
        """The resource to count *arn*, seen in *context*, under: itself, or the ``folder/*``
        that covers it.

        A key named in a failed *context* (the call failed after authorization: ``NoSuchKey``)
        is kept exactly and never seen by the fold: it may not exist, and any caller can name
        any key, so 17 ``NoSuchKey`` requests must not make a ``folder/*`` (issue 19). Whether a
        folder folds then depends on the set of keys successful calls named only.
        """
        if self.failed(context):
            return arn
        folder, _, leaf = arn.rpartition("/")
        node = self._nodes.get((group, folder))
        if node is None:
            made = self._make(group, context, folder)
            if isinstance(made, str):
                return made
            node = made
        if node.folded:  # this folder, or (an alias) the folded folder above it
            node.contexts.add(context)  # type: ignore[union-attr]
            return node.prefix + "/*"
        if leaf == "*":  # folded upstream (a lane, an earlier run); a logged "*" arrives as "${*}"
            self._fold(node)
            node.contexts.add(context)  # type: ignore[union-attr]
            return folder + "/*"
        leaves = node.leaves
        if leaves is None:
            node.leaves = leaves = {leaf: context}
        else:
            held = leaves.get(leaf)
            if held is not None:  # a key already kept: note the context, nothing else changes
                if isinstance(held, str):
                    if held != context:
                        leaves[leaf] = {held, context}
                else:
                    held.add(context)
                return arn
            leaves[leaf] = context
        if len(leaves) + (len(node.children) if node.children else 0) > self.limit:
            self._fold(node)
            return folder + "/*"
        return arn

    def _make(self, group: tuple[str, ...], context: str, folder: str) -> _Node | str:
        """The folder's node, created with its missing ancestors; or ``prefix/*`` when an
        ancestor is folded, or folds now that it holds one more sub-folder."""
        nodes = self._nodes
        missing: list[str] = []
        f = folder
        parent: _Node | None = None
        while True:
            parent = nodes.get((group, f))
            if parent is not None:
                if not parent.folded and parent.entries() + 1 > self.limit:
                    self._fold(parent)  # the new sub-folder is one entry too many
                if parent.folded:
                    parent.contexts.add(context)  # type: ignore[union-attr]
                    # Remember the answer for this folder and those between (the next key in a
                    # sibling folder stops there); dropped if a folder above folds.
                    if parent.aliases is None:
                        parent.aliases = []
                    for m in missing:
                        nodes[(group, m)] = parent
                        parent.aliases.append((group, m))
                    return parent.prefix + "/*"
                break
            missing.append(f)
            up, slash, _ = f.rpartition("/")
            if not slash:  # the bucket: arn:aws:s3:::bucket
                break
            f = up
        node = parent
        for f in reversed(missing):
            child = _Node(node, (group, f))
            if node is not None:
                if node.children is None:
                    node.children = [child.key]
                else:
                    node.children.append(child.key)
            nodes[child.key] = child
            node = child
        assert node is not None
        return node

    def _fold(self, node: _Node) -> None:
        """Fold *node*: what was kept below it, in each context, moves into ``node/*``; its
        sub-folders go."""
        node.folded = True
        group, prefix = node.key
        target = prefix + "/*"
        moved = self.moved
        nodes = self._nodes
        contexts: set[str] = set()
        below: list[_Node] = []
        stack = node.children or []
        node.children = None
        while stack:
            child = nodes.pop(stack.pop())
            for alias in child.aliases or ():
                del nodes[alias]
            stack.extend(child.children or ())
            below.append(child)
        for n in (node, *below):
            if n.contexts is not None:  # a folded sub-folder: its rows move up
                for c in sorted(n.contexts):
                    moved.append((group, c, n.prefix + "/*", target))
                contexts |= n.contexts
            for leaf, held in (n.leaves or {}).items():
                for c in (held,) if isinstance(held, str) else sorted(held):
                    moved.append((group, c, f"{n.prefix}/{leaf}", target))
                    contexts.add(c)
            n.leaves = None
        node.contexts = contexts


@dataclass(slots=True)
class FileResult:
    """What one file (a source's object) gave (its usage is merged into its chunk's aggregate)."""

    path: str  # the object's URI
    digest: str = ""
    size: int = 0
    mtime_ns: int = 0
    etag: str = ""
    format: str = ""
    records: int = 0
    malformed: int = 0
    error: str = ""
    already: bool = False  # same content as a file already ingested: not counted again
    days: dict[str, array[int]] = field(default_factory=dict)  # day → hashes of the events counted
    skips: Counter[tuple[str, str]] = field(default_factory=Counter)


@dataclass(slots=True)
class ChunkResult:
    """Aggregates of a run of consecutive files, read by one worker."""

    items: list[Item]
    files: list[FileResult] = field(default_factory=list)
    agg: dict[AggKey, Aggregate] = field(default_factory=dict)
    principals: dict[str, Principal] = field(default_factory=dict)
    # What the records could show (see iamtrim/evidence.py): one key per account, region, UTC
    # day, data-event source and file completeness, with its record count. A few dozen keys per
    # chunk, so the parent merges sets, not records.
    coverage: Counter[CoverageKey] = field(default_factory=Counter)
    # Changes of instance profiles (which role each holds): few, kept whole (model/profile.py).
    profile_changes: list[ProfileChange] = field(default_factory=list)


def _is_trail_delivery(path: str, fmt: str) -> bool:
    """A file as CloudTrail delivers it (``<account>_CloudTrail_<region>_<time>_<id>.json.gz``)
    holds every event the trail logged in its window; downloads and exports may be filtered
    (Event history by user, LookupEvents by attribute), so they cannot prove non-use.
    https://docs.aws.amazon.com/awscloudtrail/latest/userguide/get-and-view-cloudtrail-log-files.html
    """
    return fmt == "trail" and "_CloudTrail_" in os.path.basename(path)


_OUTCOME_TEXT = {o: o.value for o in Outcome}
_DUPLICATE = (str(SkipReason.DUPLICATE_EVENT), "")


def process_chunk(
    items: list[Item],
    sources: Sequence[TrailSource],
    known: StoredEvents | None = None,
    known_digests: frozenset[str] = frozenset(),
    folder: ObjectKeyFolder | None = None,
    max_file_bytes: int = MAX_FILE_BYTES,
    normalizer: Normalizer | None = None,
    digests_read: Mapping[str, str] | None = None,
    counted: RunEvents | None = None,
) -> ChunkResult:
    """Read and normalize consecutive files into one aggregate. Never raises for bad content.

    *known* and *known_digests* are the event hashes (by day) and file digests already counted
    in the store; *counted* the events counted by this run's earlier chunks (the parent's, when
    it reads a chunk again).
    *digests_read* (uri → digest) are the digests a first reading of these files found: a file
    whose digest is already counted is then skipped without reading it again (no second download).
    Aggregating a run of files (not one file) lets the object-key folding work across them, so
    the parent merges thousands of keys per chunk instead of one per record; *folder*, kept
    across the chunks of one lane (see ``_results``), carries the folding on from chunk to chunk.
    *normalizer*, kept by the worker across its chunks, carries its memo tables on (a fresh one
    when none is given: the same answers, only slower to warm up).

    An exception while reading one file (a bug met by some input) costs that file only: the
    chunk is read again without it, so none of its records is half counted, and the file is
    reported with the exception in one line and not stored (read again by the next run).
    """
    # Decoding builds millions of small acyclic objects; the cyclic GC would re-scan them all on
    # every generation-2 pass (msgspec's docs recommend the same for bulk decoding).
    gc_was_enabled = gc.isenabled()
    gc.disable()
    failed: dict[str, str] = {}
    try:
        while True:
            try:
                return _process_chunk(
                    items,
                    sources,
                    _Excluded(known, counted),
                    known_digests,
                    folder,
                    max_file_bytes,
                    failed,
                    normalizer or Normalizer(),
                    digests_read or {},
                )
            except _FileFailed:
                continue  # ``failed`` now names one more file, which the next pass skips
    finally:
        if gc_was_enabled:
            gc.enable()


class _FileFailed(Exception):
    """Raised by ``_process_chunk`` after recording a file's exception in ``failed``."""


def one_line(exc: BaseException) -> str:
    """An exception as one short line: its type and message, never a traceback."""
    text = " ".join(str(exc).split())
    if len(text) > 300:
        text = text[:297] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@dataclass(slots=True)
class _Excluded:
    """The events a chunk must not count again: the store's (by day) and, when the parent reads a
    chunk again, those this run counted."""

    known: StoredEvents | None
    counted: RunEvents | None

    def day(self, day: str) -> tuple[array[int], list[array[int]]]:
        """*day*'s stored hashes and this run's sorted runs of it (each sorted)."""
        stored = self.known.day(day) if self.known is not None else _NO_HASHES
        runs = self.counted.days.get(day, []) if self.counted is not None else []
        return stored, runs

    @property
    def legacy(self) -> array[int]:
        return self.known.legacy if self.known is not None else _NO_HASHES


_NO_HASHES: array[int] = array("q")


class _DayHashes:
    """What a file's records are checked against, for the day of the record before (a file's
    records mostly share one): that day's stored hashes, this run's when a chunk is read again,
    a migrated store's legacy ones; and where the day's counted hashes go."""

    __slots__ = ("days", "exclude", "hashes", "known", "legacy", "prefix", "runs", "stored")

    def __init__(self, exclude: _Excluded, days: dict[str, array[int]]) -> None:
        self.exclude, self.days, self.legacy = exclude, days, exclude.legacy
        self.prefix: str | None = None  # the first ten characters of the eventTime
        self.stored: array[int] = _NO_HASHES
        self.runs: list[array[int]] = []
        self.hashes: array[int] = _NO_HASHES
        self.known = False  # any hash to look in

    def move(self, prefix: str) -> None:
        self.prefix = prefix
        day = event_day(prefix)
        self.stored, self.runs = self.exclude.day(day)
        self.hashes = self.days.get(day) or self.days.setdefault(day, array("q"))
        self.known = bool(self.stored or self.runs or self.legacy)

    def counted(self, h: int) -> bool:
        """Whether the event of hash *h* (on this day) was counted already."""
        stored, legacy, runs = self.stored, self.legacy, self.runs
        return bool(
            (stored and _has(stored, h)) or (legacy and _has(legacy, h)) or any(_has(r, h) for r in runs)
        )


def _process_chunk(
    items: list[Item],
    sources: Sequence[TrailSource],
    exclude: _Excluded,
    known_digests: frozenset[str],
    folder: ObjectKeyFolder | None,
    max_file_bytes: int,
    failed: dict[str, str],
    normalizer: Normalizer,
    digests_read: Mapping[str, str],
) -> ChunkResult:
    chunk = ChunkResult(items=list(items))
    seen_here: set[int] = set()
    digests_here: set[str] = set()
    if folder is None:
        folder = ObjectKeyFolder(EXACT_KEYS_PER_FOLDER)
    with _ReadAhead(items, sources, max_file_bytes, failed, bool(digests_read)) as reads:
        return _read_chunk(
            chunk, reads, exclude, known_digests, folder, max_file_bytes, failed, digests_read,
            seen_here, digests_here, normalizer,
        )  # fmt: skip


class _ReadAhead:
    """The chunk's objects read a few ahead, on threads, for sources that wait on the network
    (``read_ahead`` > 1: an S3 round trip is latency, not CPU); in order, one at a time otherwise.

    At most ``read_ahead`` objects are in flight or waiting, so memory stays bounded. Not used
    when a chunk is redone (some of its objects are then skipped unread, and must not be fetched).
    """

    def __init__(
        self,
        items: list[Item],
        sources: Sequence[TrailSource],
        max_file_bytes: int,
        failed: Mapping[str, str],
        redo: bool,
    ) -> None:
        self.items, self.sources, self.max_file_bytes = items, sources, max_file_bytes
        ahead = 0 if redo else max((getattr(sources[i], "read_ahead", 0) for i, _ in items), default=0)
        self.ahead = ahead
        self.todo = [j for j, (_, ref) in enumerate(items) if ref.uri not in failed] if ahead > 1 else []
        self.pool: ThreadPoolExecutor | None = None
        self.futures: dict[int, Future[tuple[bytes, str, ObjectRef]]] = {}
        self.next = 0  # position in todo of the next object to submit

    def __enter__(self) -> _ReadAhead:
        if self.ahead > 1 and len(self.todo) > 1:
            self.pool = ThreadPoolExecutor(max_workers=self.ahead, thread_name_prefix="iamtrim-read")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)

    def read(self, j: int) -> tuple[bytes, str, ObjectRef]:
        """Item *j*'s bytes (its read started earlier, on a thread, where read-ahead applies)."""
        index, ref = self.items[j]
        pool = self.pool
        if pool is None:
            return self.sources[index].read(ref, self.max_file_bytes)
        todo = self.todo
        while self.next < len(todo) and (todo[self.next] <= j or len(self.futures) < self.ahead):
            k = todo[self.next]
            i, r = self.items[k]
            self.futures[k] = pool.submit(self.sources[i].read, r, self.max_file_bytes)
            self.next += 1
        future = self.futures.pop(j, None)
        if future is None:  # not in todo (cannot happen: read() is called for todo items only)
            return self.sources[index].read(ref, self.max_file_bytes)
        return future.result()


def _read_chunk(
    chunk: ChunkResult,
    reads: _ReadAhead,
    exclude: _Excluded,
    known_digests: frozenset[str],
    folder: ObjectKeyFolder,
    max_file_bytes: int,
    failed: dict[str, str],
    digests_read: Mapping[str, str],
    seen_here: set[int],
    digests_here: set[str],
    normalizer: Normalizer,
) -> ChunkResult:
    for j, (_, ref) in enumerate(chunk.items):
        path = ref.uri
        result = FileResult(path=path)
        chunk.files.append(result)
        if path in failed:
            result.error = failed[path]
            continue
        known = digests_read.get(path)
        if known and (known in known_digests or known in digests_here):
            result.digest, result.already = known, True
            continue
        # Read errors of a source (an AWS error, a file gone) raise on: they are not the
        # content's, and the run cannot go on without its input (nothing of the chunk is stored).
        raw, error, ref = reads.read(j)
        result.size, result.mtime_ns, result.etag = ref.size, ref.mtime_ns, ref.etag
        try:
            read, raw = parse_object(path, raw, error, max_file_bytes)
        except Exception as exc:  # a bug met by this file's content: see process_chunk
            failed[path] = f"not stored, exception while reading: {one_line(exc)}"
            raise _FileFailed from None
        result.digest = hashlib.sha256(raw).hexdigest() if raw else ""
        if result.digest and (result.digest in known_digests or result.digest in digests_here):
            result.already = True
            continue
        result.format, result.malformed, result.error = read.format, read.malformed, read.error
        if not read.records and read.error:
            # Nothing of it was read: not stored, so the next run reads it again (see
            # _merge_chunks); a copy of it in this chunk is reported, not taken as already read.
            continue
        digests_here.add(result.digest)
        skips = result.skips
        if read.malformed:
            other = read.malformed
            for detail, n in read.malformed_details.items():
                skips[(str(SkipReason.MALFORMED), detail)] += n
                other -= n
            if other:
                skips[(str(SkipReason.MALFORMED), "")] += other
        complete = _is_trail_delivery(path, read.format)
        result.records = len(read.records)
        try:
            _add_records(read.records, result, chunk, folder, seen_here, exclude, complete, normalizer)
        except Exception as exc:  # a bug met by this file's content: see process_chunk
            failed[path] = f"not stored, exception while normalizing: {one_line(exc)}"
            raise _FileFailed from None
    if folder.moved:  # folders that folded in this chunk: their keys counted so far move in
        _apply_moves(chunk.agg, folder.moved)
    return chunk


def _add_records(
    records: list[Record],
    result: FileResult,
    chunk: ChunkResult,
    folder: ObjectKeyFolder,
    seen_here: set[int],
    exclude: _Excluded,
    complete: bool,
    normalizer: Normalizer,
) -> None:
    agg = chunk.agg
    # Bound once: these run for every record.
    good_times, event_time = normalizer.good_times, normalizer.event_time
    fast_parts, normalize_parts = normalizer.fast_parts, normalizer.normalize_parts
    principals = chunk.principals
    coverage = chunk.coverage
    data_names = DATA_EVENT_NAMES
    skips = result.skips
    day = _DayHashes(exclude, result.days)
    for record in records:
        etime = record.eventTime
        eid = record.eventID
        if eid:
            h = event_hash(eid, etime or "", record.eventName or "")
        else:
            # Without an eventID the same record in two files (a trail extract and a JSON
            # Lines export of it) is known by what it describes, however it was encoded.
            h = content_hash(identity_text(record))
        prefix = etime[:10] if etime else ""
        if prefix != day.prefix:  # a file's records mostly share their day
            day.move(prefix)
        if h in seen_here or (day.known and day.counted(h)):
            skips[_DUPLICATE] += 1
            continue
        seen_here.add(h)
        day.hashes.append(h)
        # Coverage: every distinct record (skipped ones too) shows what the trail logged.
        category = record.eventCategory
        if category == "Data":
            data_source = record.eventSource or ""
        elif category is None:  # records before eventVersion 1.07 carry no eventCategory
            data_source = (
                record.eventSource or "" if (record.eventSource, record.eventName) in data_names else ""
            )
        elif category == "Management":
            data_source = ""
        else:  # NetworkActivity / Insight: say nothing about API calls
            data_source = None
        # A record whose eventTime is not a time a trail wrote (normalize.event_time) says
        # nothing about any day.
        if data_source is not None and etime and (etime in good_times or event_time(etime)):
            coverage[
                (
                    record.recipientAccountId or "",
                    record.awsRegion or "",
                    etime[:10],
                    data_source,
                    complete,
                )
            ] += 1
        if record.eventName in PROFILE_EVENTS:
            change = profile_change(record)
            if change is not None:
                chunk.profile_changes.append(change)
        parts: RecordParts | Skipped | None = fast_parts(record)
        if parts is None:
            parts = normalize_parts(record)
        if isinstance(parts, Skipped):
            skips[(str(parts.reason), parts.detail)] += 1
            continue
        principal, outcome_enum, _, _, when, event_id, source_ip, uses, notes, ck = parts
        if notes:
            for note in notes:
                skips[(str(note.reason), note.detail)] += 1
        parn = principal.arn
        if parn not in principals:
            principals[parn] = principal
        outcome = _OUTCOME_TEXT[outcome_enum]
        for action, resource in uses:
            named = None  # the object key counted under a fold
            if resource is None:
                resource = ""
            elif ":s3:::" in resource and "/" in resource:
                folded = folder.fold((parn, action, outcome), ck, resource)
                if folded is not resource:
                    named, resource = resource, folded
            key = (parn, action, resource, outcome, ck)
            acc = agg.get(key)
            if acc is None:
                acc = agg[key] = Aggregate(
                    1, when, when, [event_id] if event_id else [], [source_ip] if source_ip else []
                )
            else:
                acc.add(when, event_id, source_ip)
            if named is not None:
                acc.add_key(named)


def _apply_moves(
    agg: dict[AggKey, Aggregate],
    moved: list[tuple[tuple[str, ...], str, str, str]],
    dirty: set[AggKey] | None = None,
    deleted: set[AggKey] | None = None,
) -> None:
    """Merge the rows of keys a fold took in into the fold's row, in the order the folds
    happened (a fold can itself move into a fold above it), then forget the moves. With *dirty*
    and *deleted* (the parent's totals), the store is told which rows to rewrite and drop."""
    for (principal, action, outcome), context, old, new in moved:
        acc = agg.pop((principal, action, old, outcome, context), None)
        if acc is None:  # counted by an earlier chunk of the lane: the parent moves it
            continue
        key = (principal, action, new, outcome, context)
        total = agg.get(key)
        if total is None:
            total = agg[key] = acc
        else:
            total.absorb(acc)
        if not old.endswith("/*"):  # a key (a folded sub-folder brought its own sketch)
            total.add_key(old)
        if dirty is not None and deleted is not None:
            old_key = (principal, action, old, outcome, context)
            dirty.discard(old_key)
            deleted.add(old_key)
            dirty.add(key)
    moved.clear()


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


def _sample(sample: list[str], new: Sequence[str], limit: int) -> None:
    """Add the values of *new* not yet in *sample*, keeping at most *limit*."""
    for value in new:
        if len(sample) >= limit:
            break
        if value and value not in sample:
            sample.append(value)


def _over_bound_folder(detail: str) -> tuple[str, str, str, str]:
    """The (principal, action, outcome, folder) a ``failed-keys-over-bound`` skip names."""
    try:
        values = json.loads(detail)
    except ValueError:
        return ("", "", "", detail)
    if isinstance(values, list) and len(values) == 4 and all(isinstance(v, str) for v in values):
        return (values[0], values[1], values[2], values[3])
    return ("", "", "", detail)


def _stored_sketch(store: Store, resource: str, data: bytes | None) -> KeySketch | None:
    """A stored row's key sketch; a fold stored without one (written before schema 5, or by a
    caller of the library) stands for keys not counted: a lower bound of none."""
    if data is not None:
        try:
            return KeySketch.from_bytes(data)
        except ValueError as exc:
            raise StoreError(
                f"{store.path}: the store is damaged (a key sketch does not decode: {exc})"
            ) from None
    if resource.endswith("/*") and is_s3_object_arn(resource):
        return KeySketch(partial=True)
    return None


class _Merger:
    """Totals for the whole store, folded, with the rows touched (and dropped: keys a fold took
    in) since the last commit."""

    def __init__(self, store: Store) -> None:
        self.totals: dict[AggKey, Aggregate] = {}
        self.folder = ObjectKeyFolder(EXACT_KEYS_PER_FOLDER)
        self.dirty: set[AggKey] = set()
        self.deleted: set[AggKey] = set()
        # Keys only failed calls named, per (principal, action, outcome, folder): key → contexts;
        # None once past FAILED_KEYS_PER_FOLDER (their calls are then skips, see _failed_key).
        self.failed: dict[tuple[str, str, str, str], dict[str, set[str]] | None] = {}
        self.skips: Counter[tuple[str, str]] = Counter()
        for reason, detail, _ in store.skip_details():
            if reason == FAILED_KEYS_OVER_BOUND:
                self.failed[_over_bound_folder(detail)] = None
        totals, fold = self.totals, self.folder.fold
        for row in store.stored_rows():
            key = (row.principal, row.action, row.resource, row.outcome, row.context)
            acc = Aggregate(
                row.count,
                row.first_seen,
                row.last_seen,
                list(row.event_ids),
                list(row.source_ips),
                _stored_sketch(store, row.resource, row.key_sketch),
            )
            failed = False
            if is_s3_object_arn(row.resource) and self.folder.failed(row.context):
                failed = True  # never folded: kept exactly, up to its bound (_failed_key)
            elif is_s3_object_arn(row.resource):
                folded = fold((key[0], key[1], key[3]), key[4], row.resource)
                if folded != row.resource:
                    # A store written by an earlier fold rule holds a key today's rule folds.
                    if not row.resource.endswith("/*"):
                        acc.add_key(row.resource)
                    self.deleted.add(key)
                    key = (key[0], key[1], folded, key[3], key[4])
                    self.dirty.add(key)
            total = totals.get(key)
            if total is None:
                totals[key] = acc
            else:
                total.merge(acc)
            if failed:
                self._failed_key(key)
        _apply_moves(totals, self.folder.moved, self.dirty, self.deleted)

    def merge(self, agg: dict[AggKey, Aggregate]) -> None:
        """Merge a chunk's aggregates into the totals. The totals take them over (a key new to
        the totals keeps the chunk's object): the chunk is not used after."""
        totals, dirty, fold = self.totals, self.dirty, self.folder.fold
        for key, acc in agg.items():
            resource = key[2]
            failed = False
            named = None  # a key the totals fold (not a lane's fold, which brings its sketch)
            if ":s3:::" in resource and "/" in resource:
                folded = fold((key[0], key[1], key[3]), key[4], resource)
                if folded is not resource:
                    if not resource.endswith("/*"):
                        named = resource
                    key = (key[0], key[1], folded, key[3], key[4])
                failed = self.folder.failed(key[4])
            total = totals.get(key)
            if total is None:
                total = totals[key] = acc
            else:
                total.absorb(acc)
            if named is not None:
                total.add_key(named)
            dirty.add(key)
            if failed:
                self._failed_key(key)
        if self.folder.moved:
            _apply_moves(totals, self.folder.moved, dirty, self.deleted)

    def _failed_key(self, key: AggKey) -> None:
        """Keep the row of a key only failed calls named (*key*, already in the totals) exactly,
        up to FAILED_KEYS_PER_FOLDER distinct keys per folder. Past that bound every such row of
        the folder — those kept before too — is dropped and its calls counted as the skip
        ``failed-keys-over-bound`` (detail: the folder), which also marks the folder for later
        runs. A folder is therefore over the bound exactly when the set of failed keys ever
        seen in it is, and the store is the same for any order and split of the input; a
        dropped key is never granted (generate-policy reports the skip)."""
        principal, action, resource, outcome, context = key
        group = (principal, action, outcome, resource.rpartition("/")[0])
        held = self.failed.get(group, {})
        if held is not None:
            contexts = held.get(resource)
            if contexts is None:
                held[resource] = {context}
            else:
                contexts.add(context)
            if len(held) <= FAILED_KEYS_PER_FOLDER:
                self.failed[group] = held
                return
            self.failed[group] = None
            drop = [(principal, action, r, outcome, c) for r, cs in held.items() for c in cs]
        else:
            drop = [key]
        detail = json.dumps(list(group), separators=(",", ":"))
        for k in drop:
            acc = self.totals.pop(k, None)
            if acc is not None:
                self.skips[(FAILED_KEYS_OVER_BOUND, detail)] += acc.count
            self.dirty.discard(k)
            self.deleted.add(k)

    def take_skips(self) -> Counter[tuple[str, str]]:
        """Calls of failed keys dropped past the bound since the last commit."""
        skips = self.skips
        self.skips = Counter()
        return skips

    def take_dirty(self) -> list[tuple[Any, ...]]:
        """Dirty rows as store tuples (principal, action, resource, outcome, context, count,
        first, last, event ids, source ips)."""
        totals = self.totals
        # In key order: SQLite then walks its primary-key B-tree once instead of at random.
        rows = [(*key, *totals[key].row()) for key in sorted(self.dirty)]
        self.dirty.clear()
        return rows

    def take_deleted(self) -> list[AggKey]:
        """Keys of stored rows a fold took in since the last commit, to delete."""
        keys = sorted(self.deleted)
        self.deleted.clear()
        return keys


LANES = 4  # chunks are dealt to this many lanes, whatever the number of workers
LANE_FOLDERS = 5_000  # a lane's folder starts afresh past this many folders (bounds its memory)
CHUNK_FILES = 25  # at most this many files per chunk


def _worker_count(n_files: int, workers: int | None) -> int:
    if workers is not None:
        return max(1, min(workers, LANES))
    if n_files < 4:
        return 1
    return max(1, min(os.cpu_count() or 1, LANES))


def _chunks(items: list[Item]) -> list[list[Item]]:
    """Runs of consecutive files; their size depends on the input only, never on the workers."""
    size = max(1, min(CHUNK_FILES, len(items) // (LANES * 4)))
    return [items[i : i + size] for i in range(0, len(items), size)]


def _die_with_parent(parent: int) -> None:
    """Have the kernel kill this worker when the parent dies (Linux ``PR_SET_PDEATHSIG``).

    A parent killed with SIGKILL (or SIGTERM's default action) runs no cleanup, and a worker
    blocked on its full queue would wait forever. Elsewhere ``_put`` notices the parent is gone.
    https://man7.org/linux/man-pages/man2/prctl.2.html
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # pragma: no cover - no prctl: _put still checks
        return
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _put(out: Any, item: object, parent: int) -> bool:
    """Put *item* on the parent's queue; False once the parent is gone (so the worker exits)."""
    while True:
        try:
            out.put(item, timeout=0.5)
            return True
        except queue.Full:
            if os.getppid() != parent:
                return False


def _lane_worker(
    lanes: list[list[list[Item]]],
    sources: Sequence[TrailSource],
    out: Any,
    digests: frozenset[str],
    events: StoredEvents | None,
    max_file_bytes: int,
    parent: int,
) -> None:
    """Worker process: the chunks of its lanes, in input order, each lane with its own folder."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops workers
    _die_with_parent(parent)
    # What a worker keeps is acyclic, as in the parent (see process_chunk). The queue's feeder
    # thread pickles each chunk's aggregates, which allocates a few objects per usage key: with
    # the cyclic GC on, those allocations set off passes over everything the worker holds
    # (14,000 keys: 171 ms to pickle, 56 ms with the GC off).
    gc.disable()
    folders = [ObjectKeyFolder(EXACT_KEYS_PER_FOLDER) for _ in lanes]
    normalizer = Normalizer()  # this worker's own
    chunk: list[Item] | None = None
    try:
        for row in itertools.zip_longest(*lanes):
            for lane, chunk in enumerate(row):
                if chunk is not None:
                    folder = _lane_folder(folders, lane)
                    result = process_chunk(
                        chunk, sources, events, digests, folder, max_file_bytes, normalizer
                    )
                    if not _put(out, result, parent):
                        out.cancel_join_thread()  # nobody will read what is still buffered
                        return
    except IamtrimError as exc:  # a source's error (AWS, the store): raised as it is in the parent
        if not _put(out, _WorkerFailed(one_line(exc), exc), parent):
            out.cancel_join_thread()
    except BaseException as exc:  # a bug, not bad input: report it rather than leave the parent waiting
        where = f" (files {chunk[0][1].uri} to {chunk[-1][1].uri})" if chunk else ""
        if not _put(out, _WorkerFailed(one_line(exc) + where), parent):
            out.cancel_join_thread()


def _lane_folder(folders: list[ObjectKeyFolder], lane: int) -> ObjectKeyFolder:
    """The lane's folder for its next chunk: started afresh once it holds LANE_FOLDERS folders
    (the parent folds again whatever a lane lets through, so this bounds memory, not results'
    correctness; it depends on the lane's own input only, so results stay worker-independent)."""
    if folders[lane].size() > LANE_FOLDERS:
        folders[lane] = ObjectKeyFolder(EXACT_KEYS_PER_FOLDER)
    return folders[lane]


@dataclass(slots=True)
class _WorkerFailed:
    message: str  # one line: the exception and the files the worker was reading
    error: IamtrimError | None = None  # an error the parent raises as it is (exit code and all)


def _results(
    chunks: list[list[Item]],
    sources: Sequence[TrailSource],
    workers: int,
    digests: frozenset[str],
    events: StoredEvents | None,
    max_file_bytes: int = MAX_FILE_BYTES,
) -> Iterator[ChunkResult]:
    """Chunk results in input order.

    Chunk k belongs to lane k mod LANES, and each lane folds S3 object keys across its chunks
    (so the parent merges folders, not every key again). The lanes are fixed by the input, and
    a worker owns whole lanes, so the results are the same for any number of workers and any
    scheduling.
    """
    lanes = [chunks[i::LANES] for i in range(LANES)]
    if workers <= 1:
        folders = [ObjectKeyFolder(EXACT_KEYS_PER_FOLDER) for _ in range(LANES)]
        normalizer = Normalizer()
        for k, c in enumerate(chunks):
            folder = _lane_folder(folders, k % LANES)
            yield process_chunk(c, sources, events, digests, folder, max_file_bytes, normalizer)
        return
    ctx: ForkContext | SpawnContext = (
        multiprocessing.get_context("fork") if hasattr(os, "fork") else multiprocessing.get_context("spawn")
    )
    # A worker runs at most two chunks ahead of the merge: memory stays bounded.
    queues = [ctx.Queue(maxsize=2) for _ in range(workers)]
    procs = [
        ctx.Process(
            target=_lane_worker,
            args=(
                [lanes[i] for i in range(w, LANES, workers)],
                sources,
                queues[w],
                digests,
                events,
                max_file_bytes,
                os.getpid(),
            ),
            daemon=True,
        )
        for w in range(workers)
    ]
    for p in procs:
        p.start()
    try:
        for k in range(len(chunks)):
            w = (k % LANES) % workers
            while True:
                try:
                    item = queues[w].get(timeout=1.0)
                    break
                except queue.Empty:
                    if not procs[w].is_alive():
                        raise RuntimeError(
                            f"ingest worker {w} exited unexpectedly (exit code {procs[w].exitcode}); "
                            f"its files from {chunks[k][0][1].uri} on were not stored"
                        ) from None
            if isinstance(item, _WorkerFailed):
                if item.error is not None:
                    raise item.error
                raise RuntimeError(f"ingest worker {w} failed: {item.message}")
            yield item
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
        for p in procs:
            p.join()


def ingest(
    paths: Iterable[str | os.PathLike[str] | TrailSource],
    store: Store,
    *,
    workers: int | None = None,
    on_file: Callable[[FileReport], None] | None = None,
    on_start: Callable[[int], None] | None = None,
    max_file_bytes: int | None = None,
    wait_lock: float = DEFAULT_WAIT_LOCK,
    on_wait: Callable[[str], None] | None = None,
) -> IngestReport:
    """Ingest every CloudTrail file under *paths* into *store*: paths of local files and
    folders, or trail sources (``iamtrim.sources.objects.TrailSource``: an S3 bucket, a test's).

    Raises ``NoReadableInput`` only when no file at all could be read (and none was already in
    the store); otherwise problems are reported per file and per record. The store's writer
    lock is held for the whole run (``Store.writer_lock``: waiting up to *wait_lock* seconds,
    *on_wait* told once), so that concurrent ingests into one store add up like sequential ones.
    A file past *max_file_bytes* (default ``default_max_file_bytes()``), on disk or once
    decompressed, is skipped with a reason.
    """
    with store.writer_lock(wait_lock, on_wait):
        return _ingest(
            paths,
            store,
            workers,
            on_file,
            on_start,
            default_max_file_bytes() if max_file_bytes is None else max_file_bytes,
        )


def _ingest(
    paths: Iterable[str | os.PathLike[str] | TrailSource],
    store: Store,
    workers: int | None,
    on_file: Callable[[FileReport], None] | None,
    on_start: Callable[[int], None] | None,
    max_file_bytes: int,
) -> IngestReport:
    started = time.perf_counter()
    report = IngestReport()
    todo: list[Item] = []
    known = store.known_objects()
    sources = local_or_source(paths)
    for index, source in enumerate(sources):
        for ref in source.list_objects():
            if ref.error:
                report.files_failed.append((ref.uri, ref.error))
                if on_file:
                    on_file(FileReport(ref.uri, 0, error=ref.error))
                continue
            if ref.identity() in known:
                report.files_already += 1
                if on_file:
                    on_file(FileReport(ref.uri, 0, skipped_file=True))
                continue
            todo.append((index, ref))
    if on_start:
        on_start(len(todo))
    merger = _Merger(store)
    events = StoredEvents(store)
    digests = store.known_digests()
    principals: dict[str, Principal] = {p.arn: p for p in store.principals()}
    n_workers = _worker_count(len(todo), workers)
    gc_was_enabled = gc.isenabled()
    gc.disable()  # the totals are acyclic; see process_chunk
    try:
        _merge_chunks(
            todo,
            sources,
            n_workers,
            store,
            report,
            merger,
            events,
            digests,
            principals,
            on_file,
            max_file_bytes,
        )
    finally:
        if gc_was_enabled:
            gc.enable()
    report.usage_keys = len(merger.totals)
    report.principals = len(principals)
    report.seconds = time.perf_counter() - started
    if report.files_read == 0 and report.files_already == 0:
        detail = "; ".join(f"{p}: {e}" for p, e in report.files_failed[:3])
        raise NoReadableInput(f"no CloudTrail records could be read ({detail or 'no input files'})")
    return report


class _Batch:
    """What the parent has merged since its last commit: files, new principals, skips, coverage
    (the usage rows are the merger's dirty and deleted keys). One commit is one transaction."""

    def __init__(self, store: Store, merger: _Merger, report: IngestReport) -> None:
        self.store, self.merger, self.report = store, merger, report
        self.files: list[FileEntry] = []
        self.principals: list[Principal] = []
        self.skips: Counter[tuple[str, str]] = Counter()
        self.coverage: Counter[CoverageKey] = Counter()
        self.profile_changes: list[ProfileChange] = []
        self.event_days: dict[str, array[int]] = {}  # the files' counted events, by day
        self.last_commit = time.monotonic()

    def due(self) -> bool:
        return len(self.files) >= BATCH_FILES or time.monotonic() - self.last_commit > BATCH_SECONDS

    def commit(self) -> None:
        dropped = self.merger.take_skips()
        self.skips.update(dropped)
        for (reason, _), count in dropped.items():
            self.report.skips[reason] += count
        self.store.commit_batch(
            self.files,
            self.principals,
            self.merger.take_dirty(),
            [(r, d, c) for (r, d), c in sorted(self.skips.items())],
            [(*k, n) for k, n in sorted(self.coverage.items())],
            self.merger.take_deleted(),
            profile_changes=self.profile_changes,
            event_days=self.event_days,
        )
        self.profile_changes = []
        self.event_days = {}
        self.files.clear()
        self.principals.clear()
        self.skips.clear()
        self.coverage.clear()
        self.last_commit = time.monotonic()


def _merge_chunks(
    todo: list[Item],
    sources: Sequence[TrailSource],
    n_workers: int,
    store: Store,
    report: IngestReport,
    merger: _Merger,
    known: StoredEvents,
    digests: set[str],
    principals: dict[str, Principal],
    on_file: Callable[[FileReport], None] | None,
    max_file_bytes: int,
) -> None:
    batch = _Batch(store, merger, report)
    counted = RunEvents()  # this run's events: the workers know only the store's
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    for chunk in _results(_chunks(todo), sources, n_workers, frozenset(digests), known, max_file_bytes):
        days = _chunk_days(chunk)
        if any(not f.already and f.digest in digests for f in chunk.files) or any(
            counted.counted(day, hashes) for day, hashes in days.items()
        ):
            # Some events (or a whole file) of this chunk were already counted from a file read
            # by another worker in this run (an Event-history download overlapping the trail, a
            # copied file): redo the chunk here without them.
            chunk = process_chunk(
                chunk.items,
                sources,
                known,
                frozenset(digests),
                None,
                max_file_bytes,
                digests_read={f.path: f.digest for f in chunk.files if f.digest},
                counted=counted,
            )
            days = _chunk_days(chunk)
        for day, hashes in days.items():
            counted.add(day, hashes)
        for result in chunk.files:
            _take_file(result, report, batch, digests, on_file, now)
        for arn, p in chunk.principals.items():
            if arn not in principals:
                principals[arn] = p
                batch.principals.append(p)
        merger.merge(chunk.agg)
        batch.coverage.update(chunk.coverage)
        batch.profile_changes.extend(chunk.profile_changes)
        if batch.due():
            batch.commit()
    batch.commit()


def _chunk_days(chunk: ChunkResult) -> dict[str, set[int]]:
    """The hashes of the events the chunk's files counted, by day (the files of one chunk never
    count one event twice)."""
    days: dict[str, set[int]] = {}
    for f in chunk.files:
        if not f.already:
            for day, hashes in f.days.items():
                if hashes:
                    days.setdefault(day, set()).update(hashes)
    return days


def _take_file(
    result: FileResult,
    report: IngestReport,
    batch: _Batch,
    digests: set[str],
    on_file: Callable[[FileReport], None] | None,
    now: str,
) -> None:
    """Report one file of a merged chunk, and queue its entry and skips for the next commit."""
    if result.already:
        report.files_already += 1
        if on_file:
            on_file(FileReport(result.path, 0, skipped_file=True))
        return
    if result.error and not result.records:
        # Nothing of it was read: reported, and not stored as ingested, so the next run
        # tries it again (a file being written, a limit raised, a bug fixed).
        report.files_failed.append((result.path, result.error))
        if on_file:
            on_file(FileReport(result.path, 0, error=result.error))
        return
    if result.error:
        report.files_failed.append((result.path, result.error + " (records before it were read)"))
    report.files_read += 1
    report.records += result.records
    if result.digest:
        digests.add(result.digest)
        for day, hashes in result.days.items():
            if hashes:
                held = batch.event_days.get(day)
                if held is None:
                    batch.event_days[day] = array("q", hashes)
                else:
                    held.extend(hashes)
        batch.files.append(
            FileEntry(
                result.digest,
                result.path,
                result.size,
                result.mtime_ns,
                result.format,
                result.records,
                result.malformed,
                result.error,
                now,
                result.etag,
            )
        )
    batch.skips.update(result.skips)
    for (reason, _), count in result.skips.items():
        report.skips[reason] += count
    if on_file:
        on_file(
            FileReport(
                result.path,
                result.records,
                error=result.error,
                skips=tuple(sorted((r, c) for (r, _), c in result.skips.items())),
            )
        )


def load_events(
    paths: Sequence[str | os.PathLike[str] | TrailSource], *, workers: int | None = None
) -> Store:
    """Stateless mode: an in-memory store holding just *paths* (paths or trail sources)."""
    store = Store(":memory:")
    ingest(paths, store, workers=workers)
    return store


def default_store_path() -> Path:
    return Path(os.environ.get("IAMTRIM_STORE", "iamtrim-usage.sqlite"))


def default_max_file_bytes() -> int:
    """The per-file size limit: ``$IAMTRIM_MAX_FILE_BYTES`` if set (a positive integer), else
    ``MAX_FILE_BYTES`` (1 GiB; why in ``iamtrim/sources/files.py``)."""
    text = os.environ.get("IAMTRIM_MAX_FILE_BYTES", "").strip()
    if not text:
        return MAX_FILE_BYTES
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise InputError(f"IAMTRIM_MAX_FILE_BYTES={text!r}: give a positive number of bytes")
    return value
