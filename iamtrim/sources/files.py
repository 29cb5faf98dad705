"""Local CloudTrail files in every shape AWS produces them.

* trail files as CloudTrail delivers them to S3 (``{"Records": [...]}``, ``.json`` or ``.json.gz``
  under ``AWSLogs/<account>/CloudTrail/<region>/YYYY/MM/DD/``) and console Event-history JSON
  downloads (same wrapper);
* JSON Lines of records (``.jsonl``, optionally gzipped), and a plain JSON array of records;
* ``LookupEvents`` output as the CLI/boto3 print it: ``{"Events": [{"CloudTrailEvent": "<json>"}]}``;
* console Event-history CSV downloads (the full record in the ``CloudTrail event`` column).

Formats are recognized by content, not by name. One bad record is counted, never fatal; one bad
file is reported and the others are still read.
"""

from __future__ import annotations

import csv
import io
import os
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from iamtrim.sources.records import (
    GENERIC_DECODER,
    RECORD_DECODER,
    RECORD_LIST_DECODER,
    TRAIL_DECODER,
    Record,
)

SUFFIXES = (".json", ".json.gz", ".jsonl", ".jsonl.gz", ".ndjson", ".ndjson.gz", ".csv", ".gz")

_zlib: Any
try:  # zlib-ng decompresses 2-4x faster than stdlib zlib (bench/ baseline); stdlib is the fallback
    from zlib_ng import zlib_ng as _zlib
except ImportError:  # pragma: no cover - optional extra
    _zlib = zlib

_libdeflate: Any
try:  # libdeflate inflates a whole member ~2.4x faster than zlib here (docs/performance.md)
    import deflate as _libdeflate
except ImportError:  # pragma: no cover - optional extra
    _libdeflate = None


@dataclass(slots=True)
class FileRead:
    """The outcome of reading one file: its records, per-record problems, and a file-level error."""

    path: str
    format: str = ""
    records: list[Record] = field(default_factory=list)
    malformed: int = 0  # records that were not CloudTrail-shaped objects
    error: str = ""  # why the file (or its tail) could not be read


def iter_input_files(paths: Iterable[str | os.PathLike[str]]) -> Iterator[tuple[Path, str]]:
    """Files under *paths* (recursively, sorted), with an error text for unreadable ones."""
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found: list[Path] = []
            for root, dirs, files in os.walk(path):
                dirs.sort()
                found.extend(
                    Path(root) / name
                    for name in files
                    if name.lower().endswith(SUFFIXES) and not name.startswith(".")
                )
            for item in sorted(found):
                yield item, ""
        elif path.is_file():
            yield path, ""
        elif path.exists():
            yield path, "not a regular file"
        else:
            yield path, "no such file or directory"


def _gunzip(data: bytes) -> tuple[bytes, str]:
    """Decompress every gzip member; on a truncated or corrupt stream keep what decompressed.

    zlib's decompressor is used directly (``wbits=31``: gzip framing) rather than the gzip
    module, whose per-member Python loop costs more than the inflate itself on trail files.
    """
    # The usual trail file is one gzip member: libdeflate inflates it in one call. It stops after
    # the first member and sizes its output from the trailer, so it is used only when no second
    # member can follow (no gzip magic after the first byte: a few percent of files have one by
    # chance in their compressed bytes, and take the loop below) and when it succeeds (a
    # truncated or corrupt file takes the loop below, which keeps what it can and says why).
    if _libdeflate is not None and data.find(b"\x1f\x8b\x08", 1) < 0:
        try:
            return _libdeflate.gzip_decompress(data), ""
        except _libdeflate.DeflateError:
            pass
    parts: list[bytes] = []
    rest = data
    try:
        while rest:
            d = _zlib.decompressobj(wbits=31)
            parts.append(d.decompress(rest))
            if not d.eof:
                return b"".join(parts), "truncated gzip stream"
            rest = d.unused_data
            if rest[:2] != b"\x1f\x8b":  # trailing padding after the last member is ignored
                break
    except (zlib.error, _zlib.error) as exc:
        return b"".join(parts), f"corrupt gzip stream ({exc})"
    return b"".join(parts), ""


_RECORD_FIELDS = frozenset(Record.__struct_fields__)


def _lenient_record(item: dict[str, Any]) -> Record | None:
    """Convert a record object, dropping only the fields whose type is wrong.

    Hand-edited or re-serialized records (SIEM exports) sometimes carry, say, ``resources`` as a
    list of strings; the rest of the record is still good evidence.
    """
    if not _looks_like_record(item):
        return None
    try:
        return _to_record(item)
    except msgspec.ValidationError:
        pass
    clean: dict[str, Any] = {}
    for key, value in item.items():
        if key not in _RECORD_FIELDS:
            continue
        try:
            _to_record({key: value})
        except msgspec.ValidationError:
            continue
        clean[key] = value
    return _to_record(clean)


_ENCODE = msgspec.json.Encoder().encode


def _to_record(item: dict[str, Any]) -> Record:
    # Through JSON rather than msgspec.convert: userIdentity is decoded as raw JSON, which only
    # the JSON decoder can produce.
    return RECORD_DECODER.decode(_ENCODE(item))


def _records_from_objects(items: Iterable[Any], result: FileRead) -> None:
    for item in items:
        record = _lenient_record(item) if isinstance(item, dict) else None
        if record is None:
            result.malformed += 1
        else:
            result.records.append(record)


def _read_lookup(obj: Any, result: FileRead) -> None:
    for event in obj:
        text = event.get("CloudTrailEvent") if isinstance(event, dict) else None
        if not isinstance(text, str):
            result.malformed += 1
            continue
        try:
            result.records.append(RECORD_DECODER.decode(text))
        except (msgspec.ValidationError, msgspec.DecodeError):
            result.malformed += 1


def _read_jsonl(text: bytes, result: FileRead) -> None:
    result.format = "jsonl"
    good = 0
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            result.records.append(RECORD_DECODER.decode(line))
            good += 1
            continue
        except msgspec.ValidationError:
            obj = GENERIC_DECODER.decode(line)
            record = _lenient_record(obj) if isinstance(obj, dict) else None
        except msgspec.DecodeError:
            record = None
        if record is None:
            result.malformed += 1
        else:
            result.records.append(record)
            good += 1
    if good == 0:
        result.format = ""
        result.malformed = 0
        result.error = result.error or "not JSON, JSON Lines or CSV"


_CSV_RECORD_COLUMNS = ("cloudtrail event", "cloudtrailevent", "event record")


def _read_csv(text: bytes, result: FileRead) -> None:
    result.format = "csv"
    reader = csv.DictReader(io.StringIO(text.decode("utf-8-sig", errors="replace")))
    columns = {name.strip().lower(): name for name in (reader.fieldnames or [])}
    column = next((columns[c] for c in _CSV_RECORD_COLUMNS if c in columns), None)
    if column is None:
        result.format = ""
        result.error = (
            "CSV without a 'CloudTrail event' column: the record's identity is not in the other "
            "columns; download Event history as JSON instead"
        )
        return
    for row in reader:
        value = row.get(column) or ""
        try:
            result.records.append(RECORD_DECODER.decode(value))
        except (msgspec.ValidationError, msgspec.DecodeError):
            result.malformed += 1


def _looks_like_record(obj: dict[str, Any]) -> bool:
    return "eventName" in obj or "eventSource" in obj


def parse_bytes(data: bytes, result: FileRead) -> None:
    """Fill *result* from the (decompressed) content of one file."""
    text = data.lstrip(b"\xef\xbb\xbf \t\r\n")
    if not text:
        result.error = result.error or "empty file"
        return
    head = text[:1]
    if head == b"{":
        try:
            result.records = TRAIL_DECODER.decode(text).Records
            result.format = "trail"
            return
        except msgspec.ValidationError:
            pass
        except msgspec.DecodeError:
            # Not one JSON document: JSON Lines (or a truncated trail file).
            before = result.error
            _read_jsonl(text, result)
            if not result.records and not before:
                result.error = "invalid JSON (truncated or not JSON)"
            return
        try:
            obj = GENERIC_DECODER.decode(text)
        except msgspec.DecodeError:
            # The first object parsed but more follows: JSON Lines.
            _read_jsonl(text, result)
            return
        if isinstance(obj.get("Records"), list):
            result.format = "trail"
            _records_from_objects(obj["Records"], result)
        elif isinstance(obj.get("Events"), list):
            result.format = "lookup-events"
            _read_lookup(obj["Events"], result)
        elif _looks_like_record(obj):
            # One JSON document holding a single record; if it is really one line of a JSON
            # Lines file, the same code path reads it.
            result.format = "record"
            _records_from_objects([obj], result)
        else:
            result.error = "JSON object is not CloudTrail (no Records, Events or event fields)"
        return
    if head == b"[":
        try:
            result.records = RECORD_LIST_DECODER.decode(text)
            result.format = "array"
            return
        except msgspec.ValidationError:
            result.format = "array"
            _records_from_objects(GENERIC_DECODER.decode(text), result)
            return
        except msgspec.DecodeError:
            result.error = result.error or "invalid JSON (truncated or not JSON)"
            return
    first_line = text.split(b"\n", 1)[0].lower()
    if b"," in first_line and (b"event" in first_line):
        _read_csv(text, result)
        return
    result.error = result.error or "not CloudTrail JSON, JSON Lines or CSV"


def read_file(path: str | os.PathLike[str]) -> tuple[FileRead, bytes]:
    """Read one file; returns what it held and the raw bytes' digest input (the bytes)."""
    result = FileRead(path=str(path))
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError as exc:
        result.error = f"cannot read: {exc.strerror or exc}"
        return result, b""
    data = raw
    if raw[:2] == b"\x1f\x8b":
        data, result.error = _gunzip(raw)
    try:
        parse_bytes(data, result)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
        result.error = result.error or f"invalid JSON ({exc})"
    return result, raw
