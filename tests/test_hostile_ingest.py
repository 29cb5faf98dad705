"""Hostile input and hostile conditions at ingest (issue 19, items 5-12).

Each case builds its own small fixture, asserts the safe outcome, and asserts that the good
files of the same run are stored.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import zlib
from pathlib import Path
from typing import Any

import pytest

from iamtrim import ingest as ingest_mod
from iamtrim.errors import NoReadableInput
from iamtrim.ingest import ingest
from iamtrim.model import SkipReason
from iamtrim.normalize.record import Normalizer
from iamtrim.sources import read_file
from iamtrim.store import Store
from tests.test_ingest import ROLE, s3_get, write_trail

REPO = Path(__file__).resolve().parent.parent


def run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "iamtrim", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **(env or {})},
    )


def start_cli(*args: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "iamtrim", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def sign_in(i: int) -> dict[str, Any]:
    """A console sign-in: skipped (console-sign-in), but counted in coverage."""
    return {
        "eventVersion": "1.08",
        "userIdentity": {"type": "IAMUser", "arn": "arn:aws:iam::111122223333:user/alice"},
        "eventTime": f"2026-10-0{1 + i % 3}T08:00:{i % 60:02d}Z",
        "eventSource": "signin.amazonaws.com",
        "eventName": "ConsoleLogin",
        "eventType": "AwsConsoleSignIn",
        "eventCategory": "Management",
        "awsRegion": "us-east-1",
        "eventID": f"11111111-0000-4000-8000-{i:012d}",
        "recipientAccountId": "111122223333",
    }


def snapshot(path: Path) -> dict[str, Any]:
    """Everything an ingest adds up, read straight from the store (no iamtrim code)."""
    db = sqlite3.connect(path)
    try:
        return {
            "usage": sorted(
                db.execute(
                    "SELECT principal, action, resource, outcome, context, count, first_seen, last_seen "
                    "FROM usage"
                )
            ),
            "skips": sorted(db.execute("SELECT reason, detail, count FROM skips")),
            "coverage": sorted(db.execute("SELECT * FROM coverage")),
            "files": sorted(db.execute("SELECT digest, path, records FROM files")),
            "principals": sorted(db.execute("SELECT * FROM principals")),
        }
    finally:
        db.close()


def usage_count(path: Path) -> int:
    with Store(path) as st:
        return sum(r.count for r in st.usage())


# -- 5. concurrent ingests ---------------------------------------------------------------------


def _two_halves(root: Path, files_per_half: int = 30, per_file: int = 150) -> tuple[Path, Path]:
    """Two folders whose records share usage keys (same role, action, keys), skips and days."""
    halves = []
    for h, name in enumerate(("a", "b")):
        folder = root / name
        for n in range(files_per_half):
            base = (h * files_per_half + n) * per_file
            records = [s3_get(base + i, f"k/{i % 7}") for i in range(per_file - 2)]
            records += [sign_in(base + per_file - 2), sign_in(base + per_file - 1)]
            write_trail(folder / f"111122223333_CloudTrail_us-east-1_{name}{n:03d}.json.gz", records)
        halves.append(folder)
    return halves[0], halves[1]


def test_concurrent_ingests_of_two_halves_equal_a_sequential_ingest(tmp_path: Path) -> None:
    a, b = _two_halves(tmp_path)
    for half in (a, b):
        res = run_cli("ingest", str(half), "--store", "seq.sqlite", "--workers", "2", cwd=tmp_path)
        assert res.returncode == 0, res.stderr
    procs = [
        start_cli("ingest", str(half), "--store", "par.sqlite", "--workers", "2", cwd=tmp_path)
        for half in (a, b)
    ]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
        assert "internal error" not in err and "locked" not in err.replace("--wait-lock", "")
    seq, par = snapshot(tmp_path / "seq.sqlite"), snapshot(tmp_path / "par.sqlite")
    # Not one call lost: 60 files of 148 counted GetObject calls each.
    assert usage_count(tmp_path / "par.sqlite") == 60 * 148
    assert par["usage"] == seq["usage"]
    assert par["skips"] == seq["skips"] == [(str(SkipReason.CONSOLE_SIGN_IN), "AwsConsoleSignIn", 120)]
    assert par["coverage"] == seq["coverage"]
    assert [f[0] for f in par["files"]] == [f[0] for f in seq["files"]]


def test_the_same_files_ingested_twice_at_once_count_once(tmp_path: Path) -> None:
    a, _ = _two_halves(tmp_path)
    res = run_cli("ingest", str(a), "--store", "once.sqlite", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    procs = [start_cli("ingest", str(a), "--store", "twice.sqlite", cwd=tmp_path) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    once, twice = snapshot(tmp_path / "once.sqlite"), snapshot(tmp_path / "twice.sqlite")
    assert twice["skips"] == once["skips"] == [(str(SkipReason.CONSOLE_SIGN_IN), "AwsConsoleSignIn", 60)], (
        outs
    )
    assert twice["coverage"] == once["coverage"], outs
    assert twice["usage"] == once["usage"], outs
    # One of the two runs read everything, the other found it all already ingested.
    summaries = sorted(out for out, _ in outs)
    assert "files: 0 read, 30 already ingested" in summaries[0], outs
    assert "files: 30 read, 0 already ingested" in summaries[1], outs


def test_an_ingest_waits_for_the_writer_lock_then_exits_4(tmp_path: Path) -> None:
    write_trail(tmp_path / "t" / "a.json", [s3_get(i, f"k/{i}") for i in range(3)])
    with Store(tmp_path / "s.sqlite") as holder, holder.writer_lock():
        res = run_cli("ingest", "t", "--store", "s.sqlite", "--wait-lock", "0.5", cwd=tmp_path)
    assert res.returncode == 4
    lines = res.stderr.splitlines()
    assert len(lines) == 2, res.stderr
    assert lines[0].startswith("iamtrim: s.sqlite: another ingest") and "waiting" in lines[0]
    assert f"(pid {os.getpid()})" in lines[0]
    assert lines[1].startswith("iamtrim: s.sqlite: another ingest") and "--wait-lock" in lines[1]
    assert "internal error" not in res.stderr
    # Once the lock is free the same command runs, and nothing was written before.
    assert usage_count(tmp_path / "s.sqlite") == 0
    res = run_cli("ingest", "t", "--store", "s.sqlite", "--wait-lock", "0.5", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert usage_count(tmp_path / "s.sqlite") == 3


def test_the_writer_lock_is_taken_before_totals_are_loaded(tmp_path: Path) -> None:
    """An ingest that waited sees what the holder wrote meanwhile (no stale totals written back)."""
    write_trail(tmp_path / "a.json", [s3_get(1, "k/1")])
    write_trail(tmp_path / "b.json", [s3_get(2, "k/1")])  # the same usage key, another event
    store_path = tmp_path / "s.sqlite"
    with Store(store_path) as first, first.writer_lock():
        waiting = start_cli("ingest", "b.json", "--store", "s.sqlite", cwd=tmp_path)
        assert waiting.stderr is not None
        line = waiting.stderr.readline()  # it says once that it waits, then waits
        assert "is writing this store; waiting for it" in line
        ingest([tmp_path / "a.json"], first, workers=1)  # re-entrant within the holder's process
        assert [r.count for r in first.usage(ROLE)] == [1]
    _, err = waiting.communicate(timeout=600)
    assert waiting.returncode == 0, err
    with Store(store_path) as st:
        assert [r.count for r in st.usage(ROLE)] == [2]


def test_database_is_locked_is_a_store_error_not_an_internal_error(tmp_path: Path) -> None:
    write_trail(tmp_path / "t" / "a.json", [s3_get(i, f"k/{i}") for i in range(3)])
    Store(tmp_path / "s.sqlite").close()
    other = sqlite3.connect(tmp_path / "s.sqlite", isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")  # another program writing the file, outside iamtrim's lock
    try:
        res = run_cli("ingest", "t", "--store", "s.sqlite", cwd=tmp_path)
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert res.returncode == 4, res.stderr
    assert len(res.stderr.splitlines()) == 1, res.stderr
    assert "internal error" not in res.stderr
    assert "s.sqlite: the store is locked by another process" in res.stderr


# -- 6. a record that is not UTF-8 -------------------------------------------------------------


def test_a_non_utf8_byte_costs_its_record_not_its_file(tmp_path: Path) -> None:
    records = [s3_get(i, f"k/{i}") for i in range(4)]
    body = json.dumps({"Records": records}).encode()
    body = body.replace(b"k/2", b"k/\xe92", 1)  # a Latin-1 byte inside record 2's key
    assert body.count(b"\xe9") == 1
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "latin1.json.gz").write_bytes(gzip.compress(body))
    write_trail(tmp_path / "t" / "good.json", [s3_get(10 + i, f"g/{i}") for i in range(3)])
    store_path = tmp_path / "s.sqlite"
    with Store(store_path) as st:
        report = ingest([tmp_path / "t"], st, workers=1)
        assert report.files_failed == []
        assert report.files_read == 2
        resources = {r.resource for r in st.usage(ROLE)}
        # Records 0, 1 and 3 of the damaged file, all of the good one; record 2 is skipped.
        assert resources == {f"arn:aws:s3:::data/k/{i}" for i in (0, 1, 3)} | {
            f"arn:aws:s3:::data/g/{i}" for i in range(3)
        }
        assert (str(SkipReason.MALFORMED), "invalid UTF-8", 1) in st.skip_details()
        assert {f.path: (f.format, f.records, f.malformed) for f in st.files()}[
            str(tmp_path / "t" / "latin1.json.gz")
        ] == ("trail", 3, 1)
    # Pretty-printed (several lines) and JSON Lines shapes too.
    pretty = json.dumps({"Records": records}, indent=2).encode().replace(b"k/2", b"k/\xff2", 1)
    (tmp_path / "pretty.json").write_bytes(pretty)
    lines = b"\n".join(json.dumps(r).encode() for r in records).replace(b"k/2", b"k/\xff2", 1)
    (tmp_path / "lines.jsonl").write_bytes(lines)
    array = json.dumps(records).encode().replace(b"k/2", b"k/\xff2", 1)
    (tmp_path / "array.json").write_bytes(array)
    # LookupEvents output: each record a JSON string inside the document.
    lookup = {
        "Events": [{"EventId": str(i), "CloudTrailEvent": json.dumps(r)} for i, r in enumerate(records)]
    }
    (tmp_path / "lookup.json").write_bytes(json.dumps(lookup).encode().replace(b"k/2", b"k/\xff2", 1))
    for name in ("pretty.json", "lines.jsonl", "array.json", "lookup.json"):
        read, _ = read_file(tmp_path / name)
        assert (len(read.records), read.malformed, read.error) == (3, 1, ""), name
        assert read.malformed_details == {"invalid UTF-8": 1}, name


def test_a_file_that_could_not_be_read_is_not_marked_ingested(tmp_path: Path) -> None:
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "cut.json").write_bytes(b'{"Records": [{"eventName": "GetObject"')
    write_trail(tmp_path / "t" / "good.json", [s3_get(1, "k/1")])
    store_path = tmp_path / "s.sqlite"
    for _ in range(2):  # reported again by the next run: it was never stored as read
        res = run_cli("ingest", "t", "--store", "s.sqlite", cwd=tmp_path)
        assert res.returncode == 0, res.stderr
        assert res.stderr.count("cut.json: invalid JSON") == 1, res.stderr
    with Store(store_path) as st:
        assert [Path(f.path).name for f in st.files()] == ["good.json"]
        assert usage_count(store_path) == 1
    # Once the file is complete, the next run reads it.
    write_trail(tmp_path / "t" / "cut.json", [s3_get(2, "k/2")])
    res = run_cli("ingest", "t", "--store", "s.sqlite", cwd=tmp_path)
    assert res.returncode == 0 and res.stderr == "", res.stderr
    assert usage_count(store_path) == 2


# -- 7. records without an eventID in two encodings --------------------------------------------


def test_eventid_less_records_in_two_encodings_count_once(tmp_path: Path) -> None:
    records = [s3_get(i, f"k/{i % 2}") for i in range(6)]
    for r in records:
        del r["eventID"]
    # A trail file (pretty-printed) and a JSON Lines export with its keys in another order.
    (tmp_path / "trail.json").write_text(json.dumps({"Records": records}, indent=4))
    lines = [json.dumps(dict(sorted(r.items(), reverse=True)), separators=(",", ":")) for r in records]
    (tmp_path / "export.jsonl").write_text("\n".join(lines) + "\n")
    # And the same calls from an Event-history CSV download.
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["Event name", "CloudTrail event"])
    for r in records[:3]:
        writer.writerow([r["eventName"], json.dumps(r, indent=1)])
    (tmp_path / "history.csv").write_text(out.getvalue())
    with Store(tmp_path / "s.sqlite") as st:
        ingest([tmp_path], st, workers=1)
        assert sum(r.count for r in st.usage(ROLE)) == 6
        assert dict(st.skips())[str(SkipReason.DUPLICATE_EVENT)] == 6 + 3
    # Across runs too, and distinct calls without an eventID still count apiece.
    later = [s3_get(100 + i, "k/0") for i in range(2)]
    for r in later:
        del r["eventID"]
    (tmp_path / "more.jsonl").write_text("\n".join(json.dumps(r) for r in records + later))
    with Store(tmp_path / "s.sqlite") as st:
        ingest([tmp_path], st, workers=1)
        assert sum(r.count for r in st.usage(ROLE)) == 8


# -- 8. a CSV field over the csv module's default limit ----------------------------------------


def test_a_long_csv_field_costs_one_row_at_most(tmp_path: Path) -> None:
    long_key = "k/" + "x" * 200_000  # over csv's default 131,072-character field limit
    rows = [s3_get(1, "k/1"), s3_get(2, long_key), s3_get(3, "k/3")]
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["Event name", "CloudTrail event"])
    for r in rows:
        writer.writerow([r["eventName"], json.dumps(r)])
    writer.writerow(["GetObject", "y" * (3 << 20)])  # over iamtrim's 2 MiB bound: that row only
    writer.writerow(["GetObject", json.dumps(s3_get(4, "k/4"))])
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "history.csv").write_text(out.getvalue())
    write_trail(tmp_path / "t" / "good.json", [s3_get(5, "k/5")])
    with Store(tmp_path / "s.sqlite") as st:
        report = ingest([tmp_path / "t"], st, workers=1)
        assert report.files_failed == []
        resources = {r.resource for r in st.usage(ROLE)}
        assert resources == {f"arn:aws:s3:::data/{k}" for k in ("k/1", long_key, "k/3", "k/4", "k/5")}
        details = {d: c for r, d, c in st.skip_details() if r == str(SkipReason.MALFORMED)}
        assert details == {"CSV field over 2,097,152 characters or unreadable": 1}


# -- 9. decompression bombs --------------------------------------------------------------------


def _gzip_of_zeros(path: Path, size: int) -> None:
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = bytes(1 << 20)
    with open(path, "wb") as fh:
        for _ in range(size >> 20):
            fh.write(comp.compress(block))
        fh.write(comp.flush())


def test_a_decompression_bomb_is_skipped_with_bounded_memory(tmp_path: Path) -> None:
    (tmp_path / "t").mkdir()
    _gzip_of_zeros(tmp_path / "t" / "bomb.json.gz", 400 << 20)  # 400 MiB of zeros, ~400 KB
    assert (tmp_path / "t" / "bomb.json.gz").stat().st_size < 1 << 20
    # Several members: the member loop is capped as a whole, not per member.
    member = gzip.compress(bytes(600 << 10))
    (tmp_path / "t" / "members.json.gz").write_bytes(member * 4)
    write_trail(tmp_path / "t" / "good.json.gz", [s3_get(i, f"k/{i}") for i in range(3)])
    # Through a helper whose only child is the ingest: its RUSAGE_CHILDREN is that child's.
    helper = (
        "import resource, subprocess, sys; rc = subprocess.call(sys.argv[2:]); "
        "open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)); "
        "sys.exit(rc)"
    )
    cmd = [sys.executable, "-m", "iamtrim", "ingest", "t", "--store", "s.sqlite", "--workers", "1"]
    proc = subprocess.run(
        [sys.executable, "-c", helper, str(tmp_path / "rss"), *cmd],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "IAMTRIM_MAX_FILE_BYTES": str(1 << 20)},
    )
    out, err = proc.stdout, proc.stderr
    max_rss_kib = int((tmp_path / "rss").read_text())
    assert proc.returncode == 0, err
    assert "bomb.json.gz: decompresses to more than the 1 MiB limit for one file" in err
    assert "members.json.gz: decompresses to more than the 1 MiB limit" in err
    assert "files: 1 read" in out
    assert usage_count(tmp_path / "s.sqlite") == 3
    # The whole run stayed far below the 400 MiB the bomb inflates to (a plain python with
    # iamtrim imported is ~60-120 MiB here).
    assert max_rss_kib < 250 << 10, f"max RSS {max_rss_kib} KiB"
    # The limit applies to the bytes on disk too.
    with Store(":memory:") as st, pytest.raises(NoReadableInput, match="larger than the 10 bytes limit"):
        ingest([tmp_path / "t" / "good.json.gz"], st, workers=1, max_file_bytes=10)


# -- 10. only regular files --------------------------------------------------------------------


def test_fifos_devices_sockets_and_loops_are_reported_never_read(tmp_path: Path) -> None:
    t = tmp_path / "t"
    t.mkdir()
    os.mkfifo(t / "fifo.json")
    (t / "zero.json").symlink_to("/dev/zero")
    (t / "loop").symlink_to(t)  # a folder that contains itself
    (t / "self.json").symlink_to(t / "self.json")  # a symlink loop
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(t / "sock.json"))
    write_trail(t / "good.json", [s3_get(i, f"k/{i}") for i in range(2)])
    (t / "link.json").symlink_to(t / "good.json")  # a link to a regular file is read (once)
    try:
        res = run_cli("ingest", "t", "--store", "s.sqlite", cwd=tmp_path)  # a hang fails by timeout
    finally:
        sock.close()
    assert res.returncode == 0, res.stderr
    err = res.stderr
    assert "t/fifo.json: not a regular file (a FIFO)" in err
    assert "t/zero.json: not a regular file (a character device)" in err
    assert "t/sock.json: not a regular file (a socket)" in err
    assert "t/loop: symbolic link to a folder: not followed" in err
    assert "t/self.json: cannot read" in err
    assert len(err.splitlines()) == 5, err
    assert "files: 1 read, 1 already ingested, 5 with problems" in res.stdout
    assert usage_count(tmp_path / "s.sqlite") == 2
    # Given directly, too: nothing is opened that could block.
    for name in ("fifo.json", "zero.json"):
        read, raw = read_file(t / name)
        assert read.unread and "not a regular file" in read.error and raw == b""


# -- 11. workers exit when the parent dies -----------------------------------------------------


def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid:
            out.append(int(entry))
    return out


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # an exited child not yet reaped is gone


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_workers_exit_when_the_parent_is_killed(tmp_path: Path, sig: signal.Signals) -> None:
    for n in range(128):  # 16 chunks of 8 files: more than the workers' queues hold
        write_trail(tmp_path / "t" / f"{n:03d}.json.gz", [s3_get(n * 400 + i, f"k/{i}") for i in range(400)])
    proc = start_cli("ingest", "t", "--store", "s.sqlite", "--workers", "2", cwd=tmp_path)
    try:
        workers: list[int] = []
        for _ in range(3000):  # until the two workers are forked (bounded: 30 s)
            workers = _children(proc.pid)
            if len(workers) >= 2 or proc.poll() is not None:
                break
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGSTOP)  # the merge stops: workers fill their queues and block
        assert len(workers) == 2, "workers not seen"
        time.sleep(1.0)
        assert all(_alive(w) for w in workers), "a worker finished before the parent was killed"
        os.kill(proc.pid, sig)
        os.kill(proc.pid, signal.SIGCONT)
        proc.wait(timeout=30)
        for _ in range(200):  # bounded wait: 20 s
            if not any(_alive(w) for w in workers):
                break
            time.sleep(0.1)
        left = [w for w in workers if _alive(w)]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    for w in left:
        os.kill(w, signal.SIGKILL)
    assert left == [], "workers still running after their parent was killed"


# -- 12. a worker's exception ------------------------------------------------------------------


def _boom_fast_parts(real: Any) -> Any:
    def fast_parts(self: Any, record: Any) -> Any:
        if record.eventName == "Boom":
            raise ValueError("bad\nthing happened")
        return real(self, record)

    return fast_parts


def test_an_exception_in_a_worker_costs_one_file_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from iamtrim import cli

    t = tmp_path / "t"
    for n in range(8):
        write_trail(t / f"{n}.json", [s3_get(n * 10 + i, f"k/{n}/{i}") for i in range(3)])
    bad = s3_get(99, "k/bad")
    bad["eventName"] = "Boom"
    write_trail(t / "3b.json", [s3_get(98, "k/before"), bad])
    monkeypatch.setattr(Normalizer, "fast_parts", _boom_fast_parts(Normalizer.fast_parts))
    store_path = tmp_path / "s.sqlite"
    monkeypatch.setattr(
        sys, "argv", ["iamtrim", "ingest", str(t), "--store", str(store_path), "--workers", "2"]
    )
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    captured = capsys.readouterr()
    assert exit_info.value.code == 0  # the other files were read: the run succeeded, with a problem
    assert captured.err.splitlines() == [
        f"iamtrim: {t / '3b.json'}: not stored, exception while normalizing: ValueError: bad thing happened"
    ]
    assert "Traceback" not in captured.err
    assert "files: 8 read, 0 already ingested, 1 with problems" in captured.out
    with Store(store_path) as st:
        resources = {r.resource for r in st.usage(ROLE)}
        assert len(resources) == 24 and "arn:aws:s3:::data/k/before" not in resources  # nothing half-counted
        assert "3b.json" not in {Path(f.path).name for f in st.files()}  # read again next run


def test_a_worker_that_dies_is_one_line_and_exit_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from iamtrim import cli

    t = tmp_path / "t"
    for n in range(8):
        write_trail(t / f"{n}.json", [s3_get(n, f"k/{n}")])
    real = ingest_mod.process_chunk
    parent = os.getpid()

    def dying(items: list[Any], *args: Any) -> Any:
        if os.getpid() != parent and any(ref.uri.endswith("5.json") for _, ref in items):
            os._exit(3)  # e.g. the OOM killer
        return real(items, *args)

    monkeypatch.setattr(ingest_mod, "process_chunk", dying)
    monkeypatch.setattr(
        sys, "argv", ["iamtrim", "ingest", str(t), "--store", str(tmp_path / "s"), "--workers", "2"]
    )
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    err = capsys.readouterr().err
    assert exit_info.value.code == 1
    assert len(err.splitlines()) == 1, err
    assert "ingest worker 1 exited unexpectedly (exit code 3); its files from" in err
    assert "Traceback" not in err
