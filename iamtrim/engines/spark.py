"""Run the reduction on Apache Spark and store its rows (``iamtrim ingest --engine spark PATH|s3://…``).

The driver lists the trail objects with the sources local ingest uses (``sources.objects``: local
files and folders; ``sources.s3.S3Trail`` for ``s3://``, with its key filters) and leaves out
those the store already holds (same identity: path or key, size, time, ETag). The executors
read the objects (an S3 partition downloads them with its own boto3 client, made from the
source's configuration: region, endpoint, profile, role; credentials from the executor's
environment), parse them with iamtrim's own reader (every format, the same malformed record
counts) and reduce each record (``engines.reduce.reduce_object``); Spark then drops
duplicate events, keeping the first in input order (files sorted by path, records in file order:
what a local ingest keeps), and groups the rest by the reduction's key. The driver collects the
reduced rows and the files' facts, normalizes the rows once each and writes the store
(``engines.reduce.store_reduction``): the normalizer runs where the store is, on rows far fewer
than records (docs/scale.md).

Runs in local mode (``local[N]``) by default, on ``$IAMTRIM_SPARK_MASTER`` when set, or on the
cluster ``spark-submit`` gives (``spark-submit .../iamtrim/__main__.py ingest --engine spark``,
docs/scale.md); in a notebook the active session is used.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from array import array
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from dataclasses import fields as dataclass_fields
from datetime import UTC, datetime
from typing import Any

import msgspec

from iamtrim.engines.reduce import (
    Accumulator,
    FileFacts,
    RecordFacts,
    Reduction,
    reduce_object,
    store_reduction,
    unread_objects,
)
from iamtrim.errors import AwsError, EngineError, IamtrimError, InputError, NoReadableInput
from iamtrim.ingest import _DUPLICATE, IngestReport, _has, _sample
from iamtrim.model import Context
from iamtrim.model.usage import SAMPLE_EVENT_IDS, SAMPLE_SOURCE_IPS
from iamtrim.sources.files import MAX_FILE_BYTES
from iamtrim.sources.objects import ObjectRef, TrailSource, read_objects
from iamtrim.store import Store, StoredEvents, StoredRow

try:
    from pyspark import StorageLevel
    from pyspark.sql import SparkSession
except ImportError:  # pragma: no cover - the spark extra is not installed
    SparkSession = None  # type: ignore[assignment,misc]


_ENCODE = msgspec.json.Encoder().encode


@dataclass(frozen=True, slots=True)
class SparkRun:
    """What the engine did: records in, reduced rows out, and the time it took."""

    files: int
    records: int
    rows: int
    seconds: float
    master: str

    @property
    def reduction_factor(self) -> float:
        return self.records / self.rows if self.rows else 0.0

    def describe(self) -> str:
        return (
            f"spark ({self.master}): {self.files} files, {self.records:,} records reduced to "
            f"{self.rows:,} rows ({self.reduction_factor:,.1f}x) in {self.seconds:.1f}s"
        )


def session(master: str = "") -> Any:
    """The active SparkSession (spark-submit, a notebook), or a local one on *master*
    (default ``local[N]`` with N = ``$IAMTRIM_SPARK_CORES`` or the machine's cores)."""
    if SparkSession is None:
        raise InputError("--engine spark needs PySpark: pip install 'iamtrim[spark]' (and Java 17+)")
    active = SparkSession.getActiveSession()
    if active is not None and not master:
        return active
    builder = SparkSession.builder.appName("iamtrim-ingest")
    master = master or os.environ.get("IAMTRIM_SPARK_MASTER", "")
    if not master and os.environ.get("PYSPARK_GATEWAY_PORT"):
        return builder.getOrCreate()  # launched by spark-submit: its --master and --conf apply
    cores = os.environ.get("IAMTRIM_SPARK_CORES") or str(os.cpu_count() or 1)
    # In local mode the executors run this same Python, so they import the same iamtrim.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    return (
        builder.master(master or f"local[{cores}]")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", cores)
        # Local mode: executors live in the driver's JVM, whose heap holds the persisted records.
        .config("spark.driver.memory", os.environ.get("IAMTRIM_SPARK_MEMORY", "2g"))
        .getOrCreate()
    )


def _read(
    items: Iterable[tuple[int, int, ObjectRef]],
    sources: list[TrailSource],
    max_file_bytes: int,
) -> Iterator[tuple[Any, ...]]:
    """One partition's objects (file index, source index, object), read from their source (the
    sources arrive pickled with the task, configuration only: an S3 trail makes one client for
    the partition) and reduced. A source's read error ends the partition with ("e", message)."""
    try:
        for index, (raw, error, ref) in read_objects(sources, items, max_file_bytes):
            facts, records = reduce_object(raw, error, ref, max_file_bytes)
            yield from _tag(index, facts, records)
    except AwsError as exc:  # no credentials on the executor, access denied, ...: the run stops
        yield ("e", str(exc))


def _tag(index: int, facts: FileFacts, records: list[RecordFacts]) -> Iterator[tuple[Any, ...]]:
    """One file → ("f", file index, facts); ("K", key id, key) once per distinct key of the file;
    ("r", event hash, (file, position, key id, when, id, ip, day)) per record. Records carry a
    128-bit id of their key, not the key (about 1 KB of JSON): the shuffles move ids, and each
    distinct key travels once."""
    yield ("f", index, facts)
    ids: dict[Any, bytes] = {}
    for pos, r in enumerate(records):
        kid = ids.get(r.key)
        if kid is None:
            kid = ids[r.key] = hashlib.blake2b(_ENCODE(r.key), digest_size=16).digest()
            yield ("K", kid, r.key)
        yield ("r", r.hash, (index, pos, kid, r.when, r.event_id, r.source_ip, r.day))


def _in_store(t: tuple[Any, ...], known: tuple[dict[str, array[int]], array[int]]) -> bool:
    """Whether the store counted record *t*'s event: its day's stored hashes, or the legacy ones."""
    days, legacy = known
    stored = days.get(t[2][6])
    return (stored is not None and _has(stored, t[1])) or (len(legacy) > 0 and _has(legacy, t[1]))


def _first(a: tuple[Any, ...], b: tuple[Any, ...]) -> tuple[Any, ...]:
    """The earlier copy of one event (input order), with the files of the later copies."""
    first, later = (a, b) if a[0][:2] <= b[0][:2] else (b, a)
    return (first[0], first[1] + later[1] + (later[0][0],))


def _first_line(exc: BaseException) -> str:
    """The Java exception (or Python error) behind a failed job, in one line: the first line that
    names an exception, e.g. ``java.lang.OutOfMemoryError: Java heap space``."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    named = [line for line in lines if "Error" in line or "Exception" in line]
    text = named[1] if len(named) > 1 and "Py4JJavaError" in named[0] else (named or lines or [""])[0]
    return (text[:300] + "...") if len(text) > 300 else (text or type(exc).__name__)


def _without_stored(sc: Any, records: Any, store: Store | None) -> tuple[Any, Counter[int], Any]:
    """The records whose events the store did not count, how many it did per file, and the
    broadcast (to unpersist; None when nothing was sent). A first job collects the days the
    records fall on; only the store's hashes of those days (and a migrated store's legacy ones)
    are sent to the executors: none for a run of new days."""
    in_store: Counter[int] = Counter()
    stored = StoredEvents(store) if store else None
    if stored is None or not stored.days:
        return records, in_store, None
    days = set(records.map(lambda t: t[2][6]).distinct().collect())
    need = {d: stored.day(d) for d in sorted(days & stored.days)}
    if not any(need.values()) and not stored.legacy:
        return records, in_store, None
    known = sc.broadcast(({d: a for d, a in need.items() if a}, stored.legacy))
    in_store.update(records.filter(lambda t: _in_store(t, known.value)).map(lambda t: t[2][0]).countByValue())
    return records.filter(lambda t: not _in_store(t, known.value)), in_store, known


def _per_file(kv: tuple[int, tuple[Any, ...]]) -> Iterator[tuple[str, Any, Any]]:
    """("h", day, hash) for the counted copy, ("d", file, None) for each later one."""
    first, later = kv[1]
    yield ("h", first[6], kv[0])
    for i in later:
        yield ("d", i, None)


def _group_item(kv: tuple[int, tuple[Any, ...]]) -> tuple[Any, list[Any]]:
    """An event's first copy → (its key's id, its aggregate as one record)."""
    _, _, key, when, event_id, source_ip, _ = kv[1][0]
    return key, [1, when, when, [event_id] if event_id else [], [source_ip] if source_ip else []]


def _either(a: Any, b: Any) -> Any:
    return a


def _combine(x: list[Any], y: list[Any]) -> list[Any]:
    x[0] += y[0]
    if y[1] and (not x[1] or y[1] < x[1]):
        x[1] = y[1]
    if y[2] > x[2]:
        x[2] = y[2]
    _sample(x[3], y[3], SAMPLE_EVENT_IDS)
    _sample(x[4], y[4], SAMPLE_SOURCE_IPS)
    return x


def reduce_with_spark(
    inputs: Iterable[str | os.PathLike[str] | TrailSource],
    store: Store | None = None,
    *,
    spark: Any = None,
    max_file_bytes: int = MAX_FILE_BYTES,
) -> tuple[Reduction, SparkRun]:
    """The reduction of the objects of *inputs* (local paths, trail sources such as an
    ``S3Trail``), computed by Spark; objects and events already in *store* are skipped as
    ingest skips them."""
    started = time.perf_counter()
    out = Reduction(rows=[])
    # Listed on the driver (a listing error raises here, before any Spark job).
    sources, listed = unread_objects(inputs, store, out)
    spark = spark or session()
    sc = spark.sparkContext
    digests = store.known_digests() if store else set()
    todo = [(n, i, ref) for n, (i, ref) in enumerate(listed)]
    if not todo:
        return out, SparkRun(0, 0, 0, time.perf_counter() - started, sc.master)
    slices = min(len(todo), max(sc.defaultParallelism * 2, 1))
    tagged = (
        sc.parallelize(todo, slices)
        .mapPartitions(lambda items: _read(items, sources, max_file_bytes))
        .persist(StorageLevel.MEMORY_AND_DISK)
    )
    known = None
    try:
        # Files' facts and read errors (small, collected in one job), then the days the records
        # fall on: the store's hashes of those days only are sent to the executors.
        facts: dict[int, FileFacts] = {}
        errors: list[str] = []
        for t in tagged.filter(lambda t: t[0] in ("f", "e")).collect():
            if t[0] == "f":
                facts[t[1]] = t[2]
            else:
                errors.append(t[1])
        if errors:
            raise AwsError(f"spark executor: {min(errors)}")
        records, in_store, known = _without_stored(sc, tagged.filter(lambda t: t[0] == "r"), store)
        # One copy per event: the first in input order; the files of the others, to count them.
        events = (
            records.map(lambda t: (t[1], (t[2], ())))
            .reduceByKey(_first)
            .persist(StorageLevel.MEMORY_AND_DISK)
        )
        # The counted events' hashes by day (the store keeps them) and each file's later copies.
        later_copies: Counter[int] = Counter()
        counted: dict[str, array[int]] = {}
        for kind, i, value in events.flatMap(_per_file).collect():
            if kind == "d":
                later_copies[i] += 1
            else:
                held = counted.get(i)
                if held is None:
                    counted[i] = array("q", (value,))
                else:
                    held.append(value)
        keys = tagged.filter(lambda t: t[0] == "K").map(lambda t: (t[1], t[2])).reduceByKey(_either)
        # Streamed to the driver a partition at a time (collect() would build the whole result
        # in the driver's JVM heap first).
        grouped = list(events.map(_group_item).reduceByKey(_combine).join(keys).values().toLocalIterator())
        events.unpersist()
    except IamtrimError:
        raise
    except Exception as exc:  # py4j's Py4JJavaError carries the whole Java stack: one line of it
        raise EngineError(f"spark: {_first_line(exc)}") from None
    finally:
        tagged.unpersist()
        if known is not None:
            known.unpersist()
    out.event_days = counted
    for i in sorted(facts):
        f = facts[i]
        if f.digest and f.digest in digests:
            out.files_already += 1  # the same content as a file already read: not counted
            continue
        if f.error and not f.records:
            out.files_failed.append((f.path, f.error))
            continue
        digests.add(f.digest)
        duplicates = later_copies.get(i, 0) + in_store.get(i, 0)
        if duplicates:
            f.skips[_DUPLICATE] += duplicates
            out.duplicates += duplicates
        out.files.append(f)
    acc = Accumulator()
    acc.groups = {key: a for a, key in grouped}
    out.rows = acc.rows()
    seconds = time.perf_counter() - started
    run = SparkRun(len(todo), sum(r.records for r in out.rows), len(out.rows), seconds, sc.master)
    return out, run


def ingest_spark(
    inputs: Iterable[str | os.PathLike[str] | TrailSource], store: Store, *, spark: Any = None
) -> tuple[IngestReport, SparkRun]:
    """``ingest --engine spark``: reduce with Spark, then normalize and store on the driver.

    Raises ``NoReadableInput`` (nothing stored) when no object at all could be read and none was
    already in the store, as ``ingest`` does."""
    started = time.perf_counter()
    reduction, run = reduce_with_spark(inputs, store, spark=spark)
    if not reduction.files and not reduction.files_already:
        detail = "; ".join(f"{p}: {e}" for p, e in reduction.files_failed[:3])
        raise NoReadableInput(f"no CloudTrail records could be read ({detail or 'no input files'})")
    report = store_reduction(reduction, store)
    report.seconds = time.perf_counter() - started
    return report, run


# -- the aggregated usage as Parquet, for other tools ------------------------------------------------

# The columns of ``--parquet``, in order (docs/scale.md, "Parquet output"): the store's usage rows,
# the context split into its fields (``model.Context``) beside the store's own context key.
PARQUET_BATCH_ROWS = 200_000  # rows handed to Spark's writer at a time (the driver's memory)
_UTC_SECOND = "%Y-%m-%dT%H:%M:%SZ"


def parquet_schema() -> Any:
    """The Spark schema of the usage rows ``--parquet`` writes."""
    from pyspark.sql.types import ArrayType, LongType, StringType, StructField, StructType, TimestampType

    text, texts = StringType(), ArrayType(StringType(), containsNull=False)
    fields = [StructField(name, text, False) for name in ("principal", "action", "resource", "outcome")]
    for name in Context.__slots__:
        fields.append(StructField(name, texts if name in _CONTEXT_LISTS else text, False))
    fields += [
        StructField("context_key", text, False),
        StructField("count", LongType(), False),
        StructField("first_seen", TimestampType(), True),
        StructField("last_seen", TimestampType(), True),
        StructField("event_ids", texts, False),
        StructField("source_ips", texts, False),
    ]
    return StructType(fields)


_CONTEXT_LISTS = frozenset(f.name for f in dataclass_fields(Context) if isinstance(f.default, tuple))


def _when(text: str) -> datetime | None:
    return datetime.strptime(text, _UTC_SECOND).replace(tzinfo=UTC) if text else None


def _parquet_row(row: StoredRow) -> tuple[Any, ...]:
    context = Context.from_key(row.context)
    values = [getattr(context, name) for name in Context.__slots__]
    values = [list(v) if isinstance(v, tuple) else v for v in values]
    return (
        row.principal,
        row.action,
        row.resource,
        row.outcome,
        *values,
        row.context,
        row.count,
        _when(row.first_seen),
        _when(row.last_seen),
        list(row.event_ids),
        list(row.source_ips),
    )


def write_parquet(store: Store, directory: str, *, spark: Any = None) -> int:
    """Write every usage row of *store* to *directory* as Parquet with Spark's writer (replacing
    what is there); return the number of rows. *directory* is any path Spark writes to (local,
    HDFS, ``s3://`` on EMR). Timestamps are written as ``TIMESTAMP_MICROS`` in UTC, which Athena,
    DuckDB, pandas and Spark read alike (Spark's default, INT96, is deprecated in Parquet)."""
    if "://" not in directory:  # a local path: the JVM's working directory may not be ours
        directory = os.path.abspath(directory)
    spark = spark or session()
    schema = parquet_schema()
    conf = "spark.sql.parquet.outputTimestampType"
    before = spark.conf.get(conf, None)
    spark.conf.set(conf, "TIMESTAMP_MICROS")
    written = 0
    try:
        batch: list[tuple[Any, ...]] = []
        for row in store.stored_rows():
            batch.append(_parquet_row(row))
            if len(batch) >= PARQUET_BATCH_ROWS:
                written = _write_batch(spark, schema, batch, directory, written)
                batch = []
        if batch or not written:
            written = _write_batch(spark, schema, batch, directory, written)
    except Exception as exc:  # py4j's Py4JJavaError carries the whole Java stack: one line of it
        raise EngineError(f"spark: writing {directory}: {_first_line(exc)}") from None
    finally:
        if before is None:
            spark.conf.unset(conf)
        else:
            spark.conf.set(conf, before)
    return written


def _write_batch(spark: Any, schema: Any, batch: list[tuple[Any, ...]], directory: str, written: int) -> int:
    frame = spark.createDataFrame(batch, schema)
    frame.write.mode("append" if written else "overwrite").parquet(directory)
    return written + len(batch)
