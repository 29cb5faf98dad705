"""Every file shape AWS writes CloudTrail in, and every way a file can be bad.

Files are written to tmp_path by the tests themselves (nothing copied from ../shared)."""

from __future__ import annotations

import csv
import gzip
import io
import json
from pathlib import Path

from iamtrim.sources import iter_input_files, read_file
from tests.factories import make_record_dict


def records(n: int = 3) -> list[dict[str, object]]:
    return [make_record_dict(eventName=name) for name in ("GetObject", "PutObject", "ListObjects")[:n]]


def names(path: Path) -> list[str | None]:
    result, _ = read_file(path)
    assert not result.error, result.error
    return [r.eventName for r in result.records]


def test_trail_file_json(tmp_path: Path) -> None:
    path = tmp_path / "111122223333_CloudTrail_us-east-1_20240501T1200Z_abc.json"
    path.write_text(json.dumps({"Records": records()}))
    assert names(path) == ["GetObject", "PutObject", "ListObjects"]
    assert read_file(path)[0].format == "trail"


def test_trail_file_gzip_in_awslogs_layout(tmp_path: Path) -> None:
    folder = tmp_path / "AWSLogs/111122223333/CloudTrail/us-east-1/2024/05/01"
    folder.mkdir(parents=True)
    path = folder / "111122223333_CloudTrail_us-east-1_20240501T1200Z_abc.json.gz"
    path.write_bytes(gzip.compress(json.dumps({"Records": records()}).encode()))
    found = [p for p, err in iter_input_files([tmp_path]) if not err]
    assert found == [path]
    assert names(path) == ["GetObject", "PutObject", "ListObjects"]


def test_json_lines(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in records()) + "\n")
    assert names(path) == ["GetObject", "PutObject", "ListObjects"]
    assert read_file(path)[0].format == "jsonl"


def test_json_array(tmp_path: Path) -> None:
    path = tmp_path / "events.json"
    path.write_text(json.dumps(records(2)))
    assert names(path) == ["GetObject", "PutObject"]


def test_lookup_events_output(tmp_path: Path) -> None:
    # aws cloudtrail lookup-events: the record is a JSON *string* in CloudTrailEvent
    # (https://docs.aws.amazon.com/awscloudtrail/latest/APIReference/API_LookupEvents.html).
    events = [
        {"EventId": r["eventID"], "EventName": r["eventName"], "CloudTrailEvent": json.dumps(r)}
        for r in records(2)
    ]
    path = tmp_path / "lookup.json"
    path.write_text(json.dumps({"Events": events}))
    assert names(path) == ["GetObject", "PutObject"]
    assert read_file(path)[0].format == "lookup-events"


def test_console_csv_with_cloudtrail_event_column(tmp_path: Path) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["Event ID", "Event time", "User name", "Event name", "CloudTrail event"])
    for r in records(2):
        writer.writerow([r["eventID"], r["eventTime"], "alice", r["eventName"], json.dumps(r)])
    path = tmp_path / "event_history.csv"
    path.write_text(buf.getvalue())
    assert names(path) == ["GetObject", "PutObject"]


def test_csv_without_record_column_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "event_history.csv"
    path.write_text("Event ID,Event time,User name,Event name\n1,2024-05-01T12:00:00Z,alice,GetObject\n")
    result, _ = read_file(path)
    assert not result.records
    assert "CloudTrail event" in result.error


def test_truncated_gzip_salvages_complete_lines(tmp_path: Path) -> None:
    lines = "\n".join(json.dumps(r) for r in records() * 40) + "\n"
    data = gzip.compress(lines.encode())
    path = tmp_path / "events.jsonl.gz"
    path.write_bytes(data[: int(len(data) * 0.6)])
    result, _ = read_file(path)
    assert "truncated" in result.error
    assert 0 < len(result.records) < 120
    assert all(r.eventName in {"GetObject", "PutObject", "ListObjects"} for r in result.records)


def test_truncated_gzip_trail_file_reports_error(tmp_path: Path) -> None:
    data = gzip.compress(json.dumps({"Records": records() * 40}).encode())
    path = tmp_path / "trail.json.gz"
    path.write_bytes(data[: len(data) // 2])
    result, _ = read_file(path)
    assert result.error  # a one-document trail file cannot be salvaged record by record


def test_invalid_json(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{"Records": [{"eventName": "GetObject", ')
    result, _ = read_file(path)
    assert not result.records
    assert "invalid JSON" in result.error or "not JSON" in result.error


def test_non_cloudtrail_json(tmp_path: Path) -> None:
    path = tmp_path / "policy.json"
    path.write_text(json.dumps({"Version": "2012-10-17", "Statement": []}))
    result, _ = read_file(path)
    assert not result.records
    assert "not CloudTrail" in result.error


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.json"
    path.write_bytes(b"")
    result, _ = read_file(path)
    assert (result.records, result.error) == ([], "empty file")


def test_unreadable_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    assert list(iter_input_files([missing])) == [(missing, "no such file or directory")]
    result, raw = read_file(missing)
    assert result.error.startswith("cannot read") and raw == b""


def test_malformed_records_counted_not_fatal(tmp_path: Path) -> None:
    path = tmp_path / "mixed.json"
    path.write_text(json.dumps({"Records": [*records(1), "garbage", 42]}))
    result, _ = read_file(path)
    assert [r.eventName for r in result.records] == ["GetObject"]
    assert result.malformed == 2


def test_wrong_field_type_dropped_but_record_kept(tmp_path: Path) -> None:
    record = make_record_dict(resources=["arn:aws:s3:::ml-artifacts"])  # SIEM re-serialization
    path = tmp_path / "one.jsonl"
    path.write_text(json.dumps(record) + "\n")
    result, _ = read_file(path)
    assert [r.eventName for r in result.records] == ["GetObject"]
    assert result.records[0].resources is None


def test_multi_member_gzip_is_read_whole(tmp_path: Path) -> None:
    # gzip files may hold several members (concatenated .gz files); each must be read.
    rec = {"eventName": "GetObject", "eventSource": "s3.amazonaws.com", "eventTime": "2026-01-01T00:00:00Z"}
    member = gzip.compress(json.dumps(rec).encode() + b"\n")
    path = tmp_path / "two.jsonl.gz"
    path.write_bytes(member + member + member)
    read, _ = read_file(path)
    assert (len(read.records), read.error) == (3, "")


def test_gunzip_fast_and_member_paths_agree() -> None:
    """One member goes through libdeflate (when installed), several through the zlib loop; a
    truncated stream keeps what inflated and says so."""
    from iamtrim.sources import files

    body = json.dumps({"Records": [{"eventID": str(i), "eventName": "GetObject"} for i in range(500)]})
    one = gzip.compress(body.encode(), mtime=0)
    assert files._gunzip(one) == (body.encode(), "")
    other = gzip.compress(b'{"Records": []}', mtime=0)
    assert files._gunzip(one + other) == (body.encode() + b'{"Records": []}', "")
    assert files._gunzip(other + one) == (b'{"Records": []}' + body.encode(), "")
    data, error = files._gunzip(one[: len(one) // 2])
    assert error == "truncated gzip stream" and body.encode().startswith(data) and data
