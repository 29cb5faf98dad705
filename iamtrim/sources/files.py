"""Local CloudTrail files in every shape AWS produces them.

* trail files as CloudTrail delivers them to S3 (``{"Records": [...]}``, ``.json`` or ``.json.gz``
  under ``AWSLogs/<account>/CloudTrail/<region>/YYYY/MM/DD/``) and console Event-history JSON
  downloads (same wrapper);
* JSON Lines of records (``.jsonl``, optionally gzipped), and a plain JSON array of records;
* ``LookupEvents`` output as the CLI/boto3 print it: ``{"Events": [{"CloudTrailEvent": "<json>"}]}``;
* console Event-history CSV downloads (the full record in the ``CloudTrail event`` column).

Formats are recognized by content, not by name. One bad record is counted, never fatal; one bad
file is reported and the others are still read. Only regular files are read (a FIFO or a device
would block or never end), and no file may decompress past ``MAX_FILE_BYTES``.
"""

from __future__ import annotations

import csv
import io
import os
import stat
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from iamtrim.sources.records import (
    GENERIC_DECODER,
    RAW_DOCUMENT_DECODER,
    RAW_LIST_DECODER,
    RECORD_DECODER,
    RECORD_LIST_DECODER,
    TRAIL_DECODER,
    Record,
)

SUFFIXES = (".json", ".json.gz", ".jsonl", ".jsonl.gz", ".ndjson", ".ndjson.gz", ".csv", ".gz")

# The most one file may hold once decompressed (and its bytes on disk). AWS publishes no maximum
# log file size, but a trail delivers a file per region about every 5 minutes
# (https://docs.aws.amazon.com/awscloudtrail/latest/userguide/get-and-view-cloudtrail-log-files.html)
# and an event is at most 256 KB (event version 1.05 and newer:
# https://docs.aws.amazon.com/awscloudtrail/latest/userguide/WhatIsCloudTrail-Limits.html), so
# real trail files are at most a few hundred MB uncompressed. 1 GiB is far above that and still
# bounds what a decompression bomb can make us allocate; a larger file is skipped with a reason.
MAX_FILE_BYTES = 1 << 30

# Python's csv module refuses fields over 131,072 characters by default. The record column holds
# one event (at most 256 KB, above), its quotes doubled by CSV quoting: 2 MiB leaves room for
# both. A longer field is that row's problem (counted), never the file's.
CSV_FIELD_LIMIT = 2 << 20

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
    # Of ``malformed``, those with a known cause (e.g. "invalid UTF-8"), by cause.
    malformed_details: dict[str, int] = field(default_factory=dict)
    error: str = ""  # why the file (or its tail) could not be read
    unread: bool = False  # nothing of the file was read (not a regular file, over the size limit)

    def count_malformed(self, detail: str) -> None:
        self.malformed += 1
        self.malformed_details[detail] = self.malformed_details.get(detail, 0) + 1


_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def _not_regular(mode: int) -> str:
    """Why a file of this mode is not read ("" for a regular file)."""
    if stat.S_ISREG(mode):
        return ""
    kind = next((name for test, name in _KINDS if test(mode)), "not a regular file")
    return f"not a regular file ({kind}): not read"


def _check_regular(path: Path) -> str:
    """ "" for a regular file (a symlink is followed), else why it is not read."""
    try:
        return _not_regular(os.stat(path).st_mode)
    except OSError as exc:
        return f"cannot read: {exc.strerror or exc}"


def iter_input_files(paths: Iterable[str | os.PathLike[str]]) -> Iterator[tuple[Path, str]]:
    """Files under *paths* (recursively, sorted), with an error text for those not read.

    Only regular files are read: a FIFO would block the run forever, a symlink to ``/dev/zero``
    would never end. A symlink to a file is followed; one to a folder inside a folder is not
    (os.walk's default, which also keeps a symlink loop from walking forever) and is reported.
    """
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found: list[tuple[Path, str]] = []
            for root, dirs, files in os.walk(path):
                dirs.sort()
                for name in dirs:
                    if not name.startswith(".") and os.path.islink(os.path.join(root, name)):
                        found.append((Path(root) / name, "symbolic link to a folder: not followed"))
                dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(root, d))]
                for name in files:
                    if name.lower().endswith(SUFFIXES) and not name.startswith("."):
                        item = Path(root) / name
                        found.append((item, _check_regular(item)))
            yield from sorted(found)
        elif path.is_file():
            yield path, ""
        elif path.exists():
            yield path, _check_regular(path)
        else:
            yield path, "no such file or directory"


class _TooLarge(Exception):
    pass


def _gunzip(data: bytes, limit: int = MAX_FILE_BYTES) -> tuple[bytes, str]:
    """Decompress every gzip member; on a truncated or corrupt stream keep what decompressed.

    zlib's decompressor is used directly (``wbits=31``: gzip framing) rather than the gzip
    module, whose per-member Python loop costs more than the inflate itself on trail files.
    Raises ``_TooLarge`` past *limit* decompressed bytes, having never held more than that
    (a 5 MB gzip of zeros inflates to 5 GB).
    """
    # The usual trail file is one gzip member: libdeflate inflates it in one call. It stops after
    # the first member and sizes its output from the trailer, so it is used only when no second
    # member can follow (no gzip magic after the first byte: a few percent of files have one by
    # chance in their compressed bytes, and take the loop below) and when it succeeds (a
    # truncated or corrupt file takes the loop below, which keeps what it can and says why).
    # libdeflate allocates the size the gzip trailer states (ISIZE, the size modulo 2**32) and
    # fails if the data inflates past it, so it is bounded once ISIZE is within the limit.
    if (
        _libdeflate is not None
        and data.find(b"\x1f\x8b\x08", 1) < 0
        and int.from_bytes(data[-4:], "little") <= limit
    ):
        try:
            return _libdeflate.gzip_decompress(data), ""
        except _libdeflate.DeflateError:
            pass
    parts: list[bytes] = []
    total = 0
    rest = data
    try:
        while rest:
            d = _zlib.decompressobj(wbits=31)
            part = d.decompress(rest, limit - total + 1)
            total += len(part)
            if total > limit:
                raise _TooLarge
            parts.append(part)
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


def _records_from_raw(items: Iterable[msgspec.Raw], result: FileRead) -> None:
    """Decode each record of a document on its own: one whose bytes are not valid UTF-8 (or
    not JSON) is counted and skipped, and the records around it are still read."""
    for raw in items:
        try:
            result.records.append(RECORD_DECODER.decode(raw))
            continue
        except msgspec.ValidationError:
            pass
        except msgspec.DecodeError as exc:
            result.count_malformed(_decode_problem(exc))
            continue
        try:
            obj = GENERIC_DECODER.decode(raw)
        except msgspec.DecodeError as exc:
            result.count_malformed(_decode_problem(exc))
            continue
        record = _lenient_record(obj) if isinstance(obj, dict) else None
        if record is None:
            result.malformed += 1
        else:
            result.records.append(record)


def _decode_problem(exc: Exception) -> str:
    return "invalid UTF-8" if "UTF-8" in str(exc) else "invalid JSON"


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
            rec = RECORD_DECODER.decode(line)
            if rec.eventName is not None or rec.eventSource is not None:
                result.records.append(rec)
                good += 1
            else:  # an object, but no record (e.g. a whole trail file that failed to decode)
                result.malformed += 1
            continue
        except msgspec.ValidationError:
            obj = GENERIC_DECODER.decode(line)
            record = _lenient_record(obj) if isinstance(obj, dict) else None
        except msgspec.DecodeError as exc:
            result.count_malformed(_decode_problem(exc))
            continue
        if record is None:
            result.malformed += 1
        else:
            result.records.append(record)
            good += 1
    if good == 0:
        result.format = ""
        result.malformed = 0
        result.malformed_details.clear()
        result.error = result.error or "not JSON, JSON Lines or CSV"


_CSV_RECORD_COLUMNS = ("cloudtrail event", "cloudtrailevent", "event record")


def _read_csv(text: bytes, result: FileRead) -> None:
    result.format = "csv"
    if csv.field_size_limit() < CSV_FIELD_LIMIT:
        csv.field_size_limit(CSV_FIELD_LIMIT)
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
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error:
            # A field over the limit (or a NUL byte): the reader drops the rest of that line and
            # goes on with the next one.
            result.count_malformed(f"CSV field over {CSV_FIELD_LIMIT:,} characters or unreadable")
            continue
        value = row.get(column) or ""
        try:
            result.records.append(RECORD_DECODER.decode(value))
        except (msgspec.ValidationError, msgspec.DecodeError):
            result.malformed += 1


def _looks_like_record(obj: dict[str, Any]) -> bool:
    return "eventName" in obj or "eventSource" in obj


def _read_raw_document(text: bytes, result: FileRead) -> bool:
    """Read a trail (or LookupEvents) document that failed to decode whole (a record that is
    not valid UTF-8, or not JSON) record by record, rather than lose the file. False when the
    text is not one such document."""
    try:
        doc = RAW_DOCUMENT_DECODER.decode(text)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return False
    if doc.Records is not None:
        result.format = "trail"
        _records_from_raw(doc.Records, result)
        return True
    if doc.Events is not None:
        result.format = "lookup-events"
        for raw in doc.Events:
            try:
                event = GENERIC_DECODER.decode(raw)
            except msgspec.DecodeError as exc:
                result.count_malformed(_decode_problem(exc))
                continue
            _read_lookup([event], result)
        return True
    return False


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
            if _read_raw_document(text, result):
                return
            # Not one JSON document: JSON Lines (or a truncated trail file).
            before = result.error
            _read_jsonl(text, result)
            if not result.records and not before:
                result.error = "invalid JSON (truncated or not JSON)"
            return
        try:
            obj = GENERIC_DECODER.decode(text)
        except msgspec.DecodeError:
            if _read_raw_document(text, result):
                return
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
        except (msgspec.ValidationError, msgspec.DecodeError):
            pass
        # A record of the wrong shape, or not valid UTF-8: each record on its own.
        try:
            raw_list = RAW_LIST_DECODER.decode(text)
        except (msgspec.ValidationError, msgspec.DecodeError):
            result.error = result.error or "invalid JSON (truncated or not JSON)"
            return
        result.format = "array"
        _records_from_raw(raw_list, result)
        return
    first_line = text.split(b"\n", 1)[0].lower()
    if b"," in first_line and (b"event" in first_line):
        _read_csv(text, result)
        return
    result.error = result.error or "not CloudTrail JSON, JSON Lines or CSV"


def read_regular(path: str | os.PathLike[str], limit: int) -> tuple[bytes, str]:
    """The bytes of a regular file of at most *limit* bytes, or why it is not read.

    Checked on the open descriptor (``O_NONBLOCK``: opening a FIFO must not wait for a writer),
    so a file swapped for a FIFO or a device after the folder was listed is refused too.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except OSError as exc:
        return b"", f"cannot read: {exc.strerror or exc}"
    too_large = f"larger than the {size_text(limit)} limit for one file: not read"
    with open(fd, "rb") as fh:
        try:
            st = os.fstat(fd)
            why = _not_regular(st.st_mode)
            if why:
                return b"", why
            if st.st_size > limit:
                return b"", too_large
            # Sized from fstat: read(n) allocates n bytes up front, so never ask for the limit.
            raw = fh.read(st.st_size + 1)
            if len(raw) > st.st_size:  # grown since fstat: the rest, still within the limit
                raw += fh.read(limit + 1 - len(raw))
        except OSError as exc:
            return b"", f"cannot read: {exc.strerror or exc}"
    if len(raw) > limit:
        return b"", too_large
    return raw, ""


def size_text(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale and n % scale == 0:
            return f"{n // scale} {unit}"
    return f"{n:,} bytes"


def read_file(path: str | os.PathLike[str], max_bytes: int = MAX_FILE_BYTES) -> tuple[FileRead, bytes]:
    """Read one file; returns what it held and the raw bytes' digest input (the bytes).

    A file that is not a regular file, or whose bytes or decompressed content pass *max_bytes*,
    is not read (``unread``; its error says why) and gives no bytes.
    """
    raw, error = read_regular(path, max_bytes)
    return parse_object(str(path), raw, error, max_bytes)


def parse_object(
    uri: str, raw: bytes, error: str = "", max_bytes: int = MAX_FILE_BYTES
) -> tuple[FileRead, bytes]:
    """What the bytes of one object (a local file, an S3 object) hold, whatever its source.

    *error* is the source's reason for giving no bytes (the object is then ``unread``). Content
    that decompresses past *max_bytes* is not read either, and gives no bytes.
    """
    result = FileRead(path=uri)
    if error:
        result.error = error
        result.unread = True
        return result, b""
    data = raw
    if raw[:2] == b"\x1f\x8b":
        try:
            data, result.error = _gunzip(raw, max_bytes)
        except _TooLarge:
            limit = size_text(max_bytes)
            result.error = f"decompresses to more than the {limit} limit for one file: not read"
            result.unread = True
            return result, b""
    try:
        parse_bytes(data, result)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
        result.error = result.error or f"invalid JSON ({exc})"
    return result, raw
