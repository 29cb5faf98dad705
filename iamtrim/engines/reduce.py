"""The reduction an engine computes, defined once, and how its rows become the usage store.

A local ingest normalizes every record. An engine (Spark, Athena) instead groups the records by
every field the normalizer reads, and iamtrim normalizes one representative record per group with
the group's weight. The store is then the store a local ingest builds from the same records, row
for row: same usage keys, counts, first and last seen, coverage, skips and principals
(docs/scale.md, "The contract"). What the engine cannot carry exactly is written there too: the
*sample* of event ids and source IPs kept per row (any members of the group, not the first in
input order).

The group key (:data:`KEY_COLUMNS`) is what ``iamtrim.normalize.record.normalize_parts`` and
``fast_parts`` read from a record, and what coverage reads:

* ``apiVersion``, ``eventSource``, ``eventName``, ``eventType``, ``eventCategory``, ``awsRegion``,
  ``errorCode``, ``errorMessage`` (the denied resource), ``recipientAccountId``, ``vpcEndpointId``;
* ``userIdentity`` as JSON, only the fields of ``sources.records.UserIdentity`` (all the
  normalizer reads of it);
* ``requestParameters`` and ``responseElements`` as JSON, ``resources[].ARN``,
  ``additionalEventData.SSEApplied``, ``tlsDetails.tlsVersion``;
* the *kind* of ``sourceIPAddress`` (``''``, ``service`` or ``ip``: the context keeps only that);
* the UTC day of ``eventTime`` (coverage is per day), or the raw ``eventTime`` when it is not a
  time a trail wrote (normalize skips it as ``bad-event-time``, detail from the value);
* whether the record came from a trail delivery file (coverage's ``complete``);
* ``event_key``: ``eventID|eventTime`` (raw) for an IAM instance-profile call
  (``normalize.record.PROFILE_EVENTS`` from ``iam.amazonaws.com``), NULL for every other record.
  Each such event is then a group of its own, so the store's ``instance_profile_changes`` gets
  each change with its own time and event id, as a local ingest writes them (the order of
  ``AddRoleToInstanceProfile`` and ``RemoveRoleFromInstanceProfile`` is what tells which role a
  profile held). These calls are rare: the groups they add are few.

The aggregates are the record count, the first and last ``eventTime`` (as
``YYYY-MM-DDTHH:MM:SSZ``), and samples of ``eventID`` and ``sourceIPAddress``.

Records are deduplicated before they are grouped, as ingest does: by (eventID, eventTime,
eventName), or by what the record describes when it has no eventID (``ingest.event_hash``,
``ingest.content_hash``), the first occurrence in input order kept; against a store, only the
days the records fall on are looked up (``ingest.event_day``, ``store.StoredEvents``). S3 object
keys are kept in full by the engine and folded here by ingest's own ``ObjectKeyFolder``: whether a
folder folds depends on the set of keys, never on their order or split (``ingest.ObjectKeyFolder``).
"""

from __future__ import annotations

import hashlib
import os
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

import msgspec

from iamtrim.evidence import DATA_EVENT_NAMES
from iamtrim.ingest import (
    _DUPLICATE,
    _OUTCOME_TEXT,
    EXACT_KEYS_PER_FOLDER,
    Aggregate,
    IngestReport,
    ObjectKeyFolder,
    _apply_moves,
    _has,
    _is_trail_delivery,
    _Merger,
    _sample,
    content_hash,
    event_day,
    event_hash,
)
from iamtrim.model import Principal, Skipped, SkipReason
from iamtrim.model.profile import ProfileChange
from iamtrim.model.usage import SAMPLE_EVENT_IDS, SAMPLE_SOURCE_IPS
from iamtrim.normalize.record import (
    PROFILE_EVENTS,
    PROFILE_SOURCE,
    RecordParts,
    event_time,
    fast_parts,
    normalize_parts,
    profile_change,
)
from iamtrim.sources.files import MAX_FILE_BYTES, parse_object
from iamtrim.sources.objects import ObjectRef, TrailSource, local_or_source
from iamtrim.sources.records import (
    GENERIC_DECODER,
    USER_IDENTITY_DECODER,
    AdditionalEventData,
    Record,
    ResourceRef,
    TlsDetails,
    identity_text,
)
from iamtrim.store import FileEntry, Store, StoredEvents

# The group key, in this order, as every engine returns it (engines/sql.py selects the same names).
KEY_COLUMNS = (
    "api_version",
    "event_source",
    "event_name",
    "event_type",
    "event_category",
    "aws_region",
    "error_code",
    "error_message",
    "recipient_account_id",
    "vpc_endpoint_id",
    "user_identity",  # JSON object text (UserIdentity's fields)
    "request_parameters",  # JSON text, or None
    "response_elements",  # JSON text, or None
    "resource_arns",  # JSON array text of resources[].ARN, or None
    "sse_applied",
    "tls_version",
    "source_ip_kind",  # '', 'service' or 'ip'
    "day",  # YYYY-MM-DD of a good eventTime, '' otherwise
    "bad_time",  # None for a good eventTime, else the raw value ('' when missing)
    "complete",  # from a trail delivery file
    "event_key",  # eventID|eventTime of an instance-profile call (PROFILE_EVENTS), else None
)
AGG_COLUMNS = ("records", "first_seen", "last_seen", "event_ids", "source_ips")
ROW_COLUMNS = KEY_COLUMNS + AGG_COLUMNS

ReducedKey = tuple[Any, ...]  # the values of KEY_COLUMNS
_EVENT_KEY = KEY_COLUMNS.index("event_key")


class ReducedRow(NamedTuple):
    """One group of records: its key (KEY_COLUMNS) and aggregates (AGG_COLUMNS)."""

    key: ReducedKey
    records: int
    first_seen: str  # '' when the group's eventTime is bad or missing
    last_seen: str
    event_ids: tuple[str, ...]
    source_ips: tuple[str, ...]


_ENCODE = msgspec.json.Encoder(order="sorted").encode


def _json(value: Any) -> str | None:
    return None if value is None else _ENCODE(value).decode()


def source_ip_kind(ip: str | None) -> str:
    """What the normalizer's context keeps of ``sourceIPAddress`` (``normalize.record``)."""
    if not ip:
        return ""
    if ip.endswith(".amazonaws.com") or ip == "AWS Internal":
        return "service"
    return "ip"


_IDENTITY_KEYS: dict[bytes, str] = {}


def identity_key(raw: msgspec.Raw) -> str:
    """``userIdentity`` as the normalizer reads it: the fields of ``sources.records.UserIdentity``
    (``normalize.record.identity_of`` resolves the principal from them alone), as JSON. A
    session's ``accessKeyId`` and ``creationDate`` are left out, so its calls group together."""
    data = bytes(raw)
    hit = _IDENTITY_KEYS.get(data)
    if hit is None:
        try:
            ui = USER_IDENTITY_DECODER.decode(data)
        except (msgspec.ValidationError, msgspec.DecodeError):
            ui = None  # read as missing, as identity_of reads it
        hit = _ENCODE(ui).decode()
        if len(_IDENTITY_KEYS) >= 20_000:
            _IDENTITY_KEYS.clear()
        _IDENTITY_KEYS[data] = hit
    return hit


def record_key(record: Record, complete: bool) -> tuple[ReducedKey, str]:
    """The group key of *record* and its ``eventTime`` as the store keeps it ('' when bad)."""
    raw_time = record.eventTime
    when = event_time(raw_time) if raw_time else ""
    extra = record.additionalEventData
    tls = record.tlsDetails
    refs = record.resources
    key = (
        record.apiVersion,
        record.eventSource,
        record.eventName,
        record.eventType,
        record.eventCategory,
        record.awsRegion,
        record.errorCode,
        record.errorMessage,
        record.recipientAccountId,
        record.vpcEndpointId,
        identity_key(record.userIdentity),
        _json(record.requestParameters),
        _json(record.responseElements),
        None if refs is None else _json([r.ARN for r in refs]),
        extra.SSEApplied if extra is not None else None,
        tls.tlsVersion if tls is not None else None,
        source_ip_kind(record.sourceIPAddress),
        raw_time[:10] if when else "",  # type: ignore[index]
        None if when else (raw_time or ""),
        complete,
        event_key(record.eventSource, record.eventName, record.eventID, raw_time),
    )
    return key, when


def event_key(source: str | None, name: str | None, event_id: str | None, raw_time: str | None) -> str | None:
    """``eventID|eventTime`` (both raw, '' when missing) of an instance-profile call, else None:
    each such event is its own group (``engines/sql.py`` computes the same with a CASE)."""
    if name not in PROFILE_EVENTS or source != PROFILE_SOURCE:
        return None
    return f"{event_id or ''}|{raw_time or ''}"


def row_profile_change(row: ReducedRow) -> ProfileChange | None:
    """The instance-profile change of *row*'s one event (``normalize.record.profile_change``, as
    local ingest reads it from the record), or None. Its time and event id come from the group
    key, as the record wrote them: the same text a local ingest stores."""
    ekey = row.key[_EVENT_KEY]
    if ekey is None:
        return None
    # Every record of the group has this eventID (the sample's one value) and this raw eventTime.
    eid = row.event_ids[0] if row.event_ids else ""
    raw_time = ekey[len(eid) + 1 :]
    record = msgspec.structs.replace(representative(row), eventID=eid or None, eventTime=raw_time or None)
    return profile_change(record)


def representative(row: ReducedRow) -> Record:
    """A record the normalizer reads exactly as it reads every record of *row*'s group."""
    k = dict(zip(KEY_COLUMNS, row.key, strict=True))
    arns = k["resource_arns"]
    bad = k["bad_time"]
    return Record(
        apiVersion=k["api_version"],
        eventTime=row.first_seen if bad is None else (bad or None),
        eventSource=k["event_source"],
        eventName=k["event_name"],
        eventType=k["event_type"],
        eventCategory=k["event_category"],
        eventID=row.event_ids[0] if row.event_ids else None,
        awsRegion=k["aws_region"],
        sourceIPAddress=row.source_ips[0] if row.source_ips else None,
        errorCode=k["error_code"],
        errorMessage=k["error_message"],
        recipientAccountId=k["recipient_account_id"],
        vpcEndpointId=k["vpc_endpoint_id"],
        userIdentity=msgspec.Raw((k["user_identity"] or "null").encode()),
        requestParameters=_decode(k["request_parameters"]),
        responseElements=_decode(k["response_elements"]),
        additionalEventData=None if k["sse_applied"] is None else AdditionalEventData(k["sse_applied"]),
        resources=None if arns is None else [ResourceRef(a) for a in GENERIC_DECODER.decode(arns)],
        tlsDetails=None if k["tls_version"] is None else TlsDetails(k["tls_version"]),
    )


def _decode(text: str | None) -> Any:
    return None if text is None else GENERIC_DECODER.decode(text)


def record_hash(record: Record) -> int:
    """The id under which ingest deduplicates *record* (``ingest.event_hash``/``content_hash``)."""
    eid = record.eventID
    if eid:
        return event_hash(eid, record.eventTime or "", record.eventName or "")
    return content_hash(identity_text(record))


# -- reducing (the reference engine, and the per-file work of the Spark engine) ----------------


@dataclass(slots=True)
class FileFacts:
    """What reading one file tells the store besides its records (``store.FileEntry``)."""

    path: str
    digest: str = ""
    size: int = 0
    mtime_ns: int = 0
    format: str = ""
    records: int = 0
    malformed: int = 0
    error: str = ""
    skips: Counter[tuple[str, str]] = field(default_factory=Counter)  # malformed records, by detail
    etag: str = ""  # an S3 object's ETag (its identity in the files table with uri, size, time)


class RecordFacts(NamedTuple):
    """One record reduced to what the engine groups and aggregates."""

    hash: int
    key: ReducedKey
    when: str
    event_id: str
    source_ip: str
    day: str  # the day its hash is stored under (ingest.event_day)


def reduce_object(
    raw: bytes, error: str, ref: ObjectRef, max_file_bytes: int = MAX_FILE_BYTES
) -> tuple[FileFacts, list[RecordFacts]]:
    """Reduce one object as a source read it (``TrailSource.read``: its bytes, or no bytes and
    why; *ref* as read) with iamtrim's own reader (every format, ``sources.files.parse_object``,
    as ``ingest`` reads it), record by record.

    Never raises for bad content: an object that cannot be read comes back with ``error`` and no
    records, as in ingest."""
    facts = FileFacts(path=ref.uri, size=ref.size, mtime_ns=ref.mtime_ns, etag=ref.etag)
    read, raw = parse_object(ref.uri, raw, error, max_file_bytes)
    facts.digest = hashlib.sha256(raw).hexdigest() if raw else ""
    facts.format, facts.malformed, facts.error = read.format, read.malformed, read.error
    if not read.records and read.error:
        return facts, []
    if read.malformed:
        other = read.malformed
        for detail, n in read.malformed_details.items():
            facts.skips[(str(SkipReason.MALFORMED), detail)] += n
            other -= n
        if other:
            facts.skips[(str(SkipReason.MALFORMED), "")] += other
    facts.records = len(read.records)
    complete = _is_trail_delivery(ref.uri, read.format)
    out = []
    for record in read.records:
        key, when = record_key(record, complete)
        ip = record.sourceIPAddress or ""
        day = event_day(record.eventTime[:10]) if record.eventTime else ""
        out.append(RecordFacts(record_hash(record), key, when, record.eventID or "", ip, day))
    return facts, out


class Accumulator:
    """Groups reduced records into rows: count, first and last seen, samples."""

    def __init__(self) -> None:
        self.groups: dict[ReducedKey, list[Any]] = {}

    def add(self, key: ReducedKey, when: str, event_id: str, source_ip: str, count: int = 1) -> None:
        acc = self.groups.get(key)
        if acc is None:
            eids = [event_id] if event_id else []
            self.groups[key] = [count, when, when, eids, [source_ip] if source_ip else []]
            return
        acc[0] += count
        if when and (not acc[1] or when < acc[1]):
            acc[1] = when
        if when > acc[2]:
            acc[2] = when
        if event_id:
            _sample(acc[3], (event_id,), SAMPLE_EVENT_IDS)
        if source_ip:
            _sample(acc[4], (source_ip,), SAMPLE_SOURCE_IPS)

    def rows(self) -> list[ReducedRow]:
        return [ReducedRow(k, a[0], a[1], a[2], tuple(a[3]), tuple(a[4])) for k, a in self.groups.items()]


@dataclass(slots=True)
class Reduction:
    """What an engine hands back: reduced rows, plus the facts of the files it read (when it
    read files itself: Athena reads a table and hands back none) and the duplicates it dropped."""

    rows: list[ReducedRow]
    files: list[FileFacts] = field(default_factory=list)
    event_days: dict[str, array[int]] = field(default_factory=dict)  # day → the counted events' hashes
    duplicates: int = 0
    files_already: int = 0
    files_failed: list[tuple[str, str]] = field(default_factory=list)

    @property
    def records_in(self) -> int:
        return sum(r.records for r in self.rows)


def unread_objects(
    inputs: Iterable[str | os.PathLike[str] | TrailSource], store: Store | None, out: Reduction
) -> tuple[list[TrailSource], list[tuple[int, ObjectRef]]]:
    """The sources of *inputs* (local paths, ``s3://`` trails: ``sources.objects.local_or_source``)
    and their objects that *store* does not hold yet, as (source index, object) in listing order.

    Decided as ingest decides: an object whose identity (URI, size, time, ETag) is in the files
    table is not read again; objects a source cannot read are counted in *out*. Listing runs
    here, on the driver; a source's listing error (no such bucket, access denied) raises."""
    # an object's identity in the files table: (uri, size, mtime_ns, etag)
    known = store.known_objects() if store else set()
    sources = local_or_source(inputs)
    todo: list[tuple[int, ObjectRef]] = []
    for index, source in enumerate(sources):
        for ref in source.list_objects():
            if ref.error:
                out.files_failed.append((ref.uri, ref.error))
            elif ref.identity() in known:
                out.files_already += 1
            else:
                todo.append((index, ref))
    return sources, todo


def reduce_paths(
    paths: Iterable[str | os.PathLike[str] | TrailSource],
    store: Store | None = None,
    max_file_bytes: int = MAX_FILE_BYTES,
) -> Reduction:
    """The reference engine: the reduction in plain Python, one object after another.

    Like ingest it skips objects already in *store* (same identity, or same content) and events
    already counted there (looking up the days the records fall on), and keeps the first of
    duplicate events in input order."""
    digests = store.known_digests() if store else set()
    stored = StoredEvents(store) if store else None
    seen: dict[str, set[int]] = {}  # this run's events, by day
    acc = Accumulator()
    out = Reduction(rows=[])
    sources, todo = unread_objects(paths, store, out)
    for index, ref in todo:
        facts, records = reduce_object(*sources[index].read(ref, max_file_bytes), max_file_bytes)
        if facts.digest and facts.digest in digests:
            out.files_already += 1
            continue
        if facts.error and not facts.records:
            out.files_failed.append((facts.path, facts.error))
            continue
        digests.add(facts.digest)
        for r in records:
            day = seen.setdefault(r.day, set())
            if r.hash in day or (stored is not None and _stored(stored, r.day, r.hash)):
                facts.skips[_DUPLICATE] += 1
                out.duplicates += 1
                continue
            day.add(r.hash)
            out.event_days.setdefault(r.day, array("q")).append(r.hash)
            acc.add(r.key, r.when, r.event_id, r.source_ip)
        out.files.append(facts)
    out.rows = acc.rows()
    return out


def _stored(stored: StoredEvents, day: str, h: int) -> bool:
    """Whether the store counted the event of hash *h* on *day* (or in its legacy hashes)."""
    return _has(stored.day(day), h) or _has(stored.legacy, h)


# -- from reduced rows to the store ------------------------------------------------------------


def coverage_key(row: ReducedRow) -> tuple[str, str, str, str, bool] | None:
    """The coverage key ingest counts every distinct record of *row* under, or None."""
    k = dict(zip(KEY_COLUMNS, row.key, strict=True))
    if k["bad_time"] is not None:
        return None  # not a time a trail wrote: says nothing about any day
    category, source, name = k["event_category"], k["event_source"], k["event_name"]
    if category == "Data":
        data_source = source or ""
    elif category is None:  # records before eventVersion 1.07 carry no eventCategory
        data_source = source or "" if (source, name) in DATA_EVENT_NAMES else ""
    elif category == "Management":
        data_source = ""
    else:  # NetworkActivity / Insight: say nothing about API calls
        return None
    if not event_time(row.first_seen):  # a day an engine grouped but no trail wrote
        return None
    account, region = k["recipient_account_id"] or "", k["aws_region"] or ""
    return (account, region, k["day"], data_source, bool(k["complete"]))


@dataclass(slots=True)
class StoreReport:
    """What storing a reduction did."""

    rows_in: int = 0
    records: int = 0
    usage_keys: int = 0
    principals: int = 0
    skips: Counter[str] = field(default_factory=Counter)


def store_reduction(
    reduction: Reduction,
    store: Store,
    *,
    source: FileEntry | None = None,
    batch_rows: int = 50_000,
    on_batch: Callable[[int], None] | None = None,
) -> IngestReport:
    """Normalize *reduction*'s rows with their weights and write them to *store*.

    Runs on the driver (one process): the rows are few next to the records (docs/scale.md), and
    the store is one SQLite file. *source* is a files-table entry recording an engine run whose
    files the engine read itself (an Athena query), so that the same run is not stored twice.
    """
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    report = IngestReport()
    with store.writer_lock():
        merger = _Merger(store)
        principals: dict[str, Principal] = {p.arn: p for p in store.principals()}
        files = [
            FileEntry(
                f.digest,
                f.path,
                f.size,
                f.mtime_ns,
                f.format,
                f.records,
                f.malformed,
                f.error,
                now,
                f.etag,
            )
            for f in reduction.files
            if f.digest
        ]
        if source is not None:
            files.append(source)
        skips: Counter[tuple[str, str]] = Counter()
        for f in reduction.files:
            skips.update(f.skips)
            report.records += f.records
            if f.error:
                report.files_failed.append((f.path, f.error + " (records before it were read)"))
        report.files_read = len(reduction.files)
        report.files_already = reduction.files_already
        report.files_failed.extend(reduction.files_failed)
        if not reduction.files:
            report.records = reduction.records_in
        new_principals: list[Principal] = []
        coverage: Counter[tuple[str, str, str, str, bool]] = Counter()
        profile_changes: list[ProfileChange] = []
        for start in range(0, len(reduction.rows), batch_rows):
            batch = reduction.rows[start : start + batch_rows]
            agg = _normalize_rows(batch, skips, principals, new_principals, coverage, profile_changes)
            merger.merge(agg)
            if on_batch:
                on_batch(len(batch))
        dropped = merger.take_skips()
        skips.update(dropped)
        for (reason, _), count in skips.items():
            report.skips[reason] += count
        store.commit_batch(
            files,
            new_principals,
            merger.take_dirty(),
            [(r, d, c) for (r, d), c in sorted(skips.items())],
            [(*k, n) for k, n in sorted(coverage.items())],
            merger.take_deleted(),
            profile_changes=profile_changes,
            event_days=reduction.event_days,
        )
        report.usage_keys = len(merger.totals)
        report.principals = len(principals)
    return report


def _normalize_rows(
    rows: Sequence[ReducedRow],
    skips: Counter[tuple[str, str]],
    principals: dict[str, Principal],
    new_principals: list[Principal],
    coverage: Counter[tuple[str, str, str, str, bool]],
    profile_changes: list[ProfileChange],
) -> dict[tuple[str, str, str, str, str], Aggregate]:
    """Rows → the aggregate ingest's ``_add_records`` builds from their records (weights)."""
    folder = ObjectKeyFolder(EXACT_KEYS_PER_FOLDER)
    agg: dict[tuple[str, str, str, str, str], Aggregate] = {}
    for row in rows:
        weight = row.records
        cov = coverage_key(row)
        if cov is not None:
            coverage[cov] += weight
        if row.key[_EVENT_KEY] is not None:
            change = row_profile_change(row)
            if change is not None:
                profile_changes.append(change)
        record = representative(row)
        parts: RecordParts | Skipped | None = fast_parts(record)
        if parts is None:
            parts = normalize_parts(record)
        if isinstance(parts, Skipped):
            skips[(str(parts.reason), parts.detail)] += weight
            continue
        principal, outcome_enum, _, _, _when, _eid, _ip, uses, notes, ck = parts
        for note in notes:
            skips[(str(note.reason), note.detail)] += weight
        parn = principal.arn
        if parn not in principals:
            principals[parn] = principal
            new_principals.append(principal)
        outcome = _OUTCOME_TEXT[outcome_enum]
        for action, resource in uses:
            named = None  # the object key counted under a fold (its sketch), as _add_records does
            if resource is None:
                resource = ""
            elif ":s3:::" in resource and "/" in resource:
                folded = folder.fold((parn, action, outcome), ck, resource)
                if folded is not resource:
                    named, resource = resource, folded
            key = (parn, action, resource, outcome, ck)
            part = Aggregate(weight, row.first_seen, row.last_seen, list(row.event_ids), list(row.source_ips))
            if named is not None:
                part.add_key(named)
            acc = agg.get(key)
            if acc is None:
                agg[key] = part
            else:
                acc.absorb(part)
    if folder.moved:
        _apply_moves(agg, folder.moved)
    return agg


def iter_rows(rows: Iterable[Sequence[Any]]) -> Iterator[ReducedRow]:
    """Rows as an engine returns them (ROW_COLUMNS, in order) → ``ReducedRow``."""
    n = len(KEY_COLUMNS)
    for r in rows:
        yield ReducedRow(
            tuple(r[:n]),
            int(r[n]),
            r[n + 1] or "",
            r[n + 2] or "",
            tuple(v for v in (r[n + 3] or ()) if v)[:SAMPLE_EVENT_IDS],
            tuple(v for v in (r[n + 4] or ()) if v)[:SAMPLE_SOURCE_IPS],
        )
