"""Hostile environments and inputs through the real CLI (issue 19, items 13-16).

Every case asserts the exact exit code and that standard error is exactly one line naming the
file: a store that is locked, full, read-only, unreadable or another application's SQLite file;
a file that cannot be read or written; a JSON file nested 100,000 deep; an eventTime no trail
wrote; a --break-glass that is not one IAM role or user; file names with newlines and terminal
escapes. A foreign SQLite file must come out byte for byte as it went in.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from iamtrim import cli, store
from iamtrim.model import Skipped, SkipReason
from iamtrim.normalize.record import fast_parts, normalize_parts
from iamtrim.sources.records import RECORD_DECODER
from iamtrim.store import Store
from tests.test_ingest import ROLE, s3_get, write_trail

AUTHZ = Path(__file__).resolve().parent.parent / "samples" / "authz" / "account-authorization-details.json"


@dataclass(frozen=True, slots=True)
class Result:
    code: int
    out: str
    err: str


def run(*args: str, cwd: Path, as_nobody: bool = False) -> Result:
    """``python -m iamtrim ARGS`` in *cwd*; *as_nobody* runs it as an unprivileged user (root
    ignores file permissions), which needs ``setpriv`` when the tests run as root."""
    prefix: list[str] = []
    env = dict(os.environ)
    if as_nobody and os.geteuid() == 0:
        prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        env["HOME"] = str(cwd)  # policy_sentry looks in ~ for a local IAM definition
    res = subprocess.run(
        [*prefix, sys.executable, "-m", "iamtrim", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        errors="surrogateescape",
        timeout=300,
        env=env,
    )
    return Result(res.returncode, res.stdout, res.stderr)


def run_here(capsys: pytest.CaptureFixture[str], *args: str) -> Result:
    """The CLI's ``main`` in this process (for cases that patch the environment)."""
    argv = sys.argv
    sys.argv = ["iamtrim", *args]
    try:
        with pytest.raises(SystemExit) as exc:
            cli.main()
    finally:
        sys.argv = argv
    out, err = capsys.readouterr()
    code = exc.value.code
    return Result(code if isinstance(code, int) else 1, out, err)


@pytest.fixture
def cli_in(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Any:
    """``run`` in this process (much faster than a new interpreter per case)."""

    def call(*args: str, cwd: Path) -> Result:
        monkeypatch.chdir(cwd)
        return run_here(capsys, *args)

    return call


def one_line(res: Result, code: int, *names: str) -> str:
    """Assert exit *code* and a one-line message naming *names*; return the message."""
    assert res.code == code, res
    assert res.err.startswith("iamtrim: ") and res.err.endswith("\n"), res.err
    assert res.err.count("\n") == 1, res.err
    assert "internal error" not in res.err and "Traceback" not in res.err and "Usage:" not in res.err
    for name in names:
        assert name in res.err, (name, res.err)
    return res.err


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def schema(path: Path) -> tuple[object, ...]:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return (
            tuple(db.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name")),
            db.execute("PRAGMA application_id").fetchone(),
            db.execute("PRAGMA user_version").fetchone(),
        )
    finally:
        db.close()


@pytest.fixture(scope="module")
def usage_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store holding a few S3 reads of bucket ``data`` by the ``etl`` role."""
    folder = tmp_path_factory.mktemp("store")
    write_trail(folder / "t" / "a.json", [s3_get(i, f"k/{i}") for i in range(4)])
    res = run("ingest", "t", "--store", "s.sqlite", "--workers", "1", "-q", cwd=folder)
    assert res.code == 0, res.err
    return folder / "s.sqlite"


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A folder an unprivileged user can enter (pytest's own are private to their owner)."""
    path = Path(tempfile.mkdtemp(prefix="iamtrim-hostile-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _needs_nobody() -> None:
    if os.geteuid() == 0 and shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: file permissions cannot be tested")


# -- 13: a SQLite file that is not an iamtrim store -----------------------------------------


def _foreign(path: Path, app_id: int = 0) -> Path:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE usage (principal TEXT, action TEXT, n INTEGER)")
    db.execute("INSERT INTO usage VALUES ('alice', 'read', 3)")
    db.execute("CREATE TABLE notes (body TEXT)")
    if app_id:
        db.execute(f"PRAGMA application_id={app_id}")
    db.commit()
    db.close()
    return path


FOREIGN_COMMANDS = [
    ("principals",),
    ("usage", "etl"),
    ("generate-policy", "etl"),
    ("who-used", "arn:aws:s3:::data"),
    ("bucket-policy", "data"),
    ("kms-policy", "arn:aws:kms:us-east-1:111122223333:key/k"),
    ("diff", "etl", "--authz", str(AUTHZ)),
    ("graph", "export"),
]


@pytest.mark.parametrize("app_id", [0, 0x12345678])
def test_foreign_sqlite_file_is_refused_and_never_written(tmp_path: Path, app_id: int, cli_in: Any) -> None:
    path = _foreign(tmp_path / "other.db", app_id)
    before, shape = digest(path), schema(path)
    write_trail(tmp_path / "t" / "a.json", [s3_get(1, "k")])
    for command in [*FOREIGN_COMMANDS, ("ingest", "t", "--workers", "1")]:
        res = cli_in(*command, "--store", "other.db", cwd=tmp_path)
        one_line(res, 4, "other.db", "not an iamtrim usage store")
        assert digest(path) == before and schema(path) == shape, command
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.db", "t"]  # no -wal, no -journal


def test_foreign_wal_database_left_by_a_crashed_writer_is_not_checkpointed(
    tmp_path: Path, cli_in: Any
) -> None:
    """Another application's WAL database whose writer died: its log is not folded into it."""
    script = (
        "import os, sqlite3, sys\n"
        "db = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
        "db.execute('PRAGMA journal_mode=WAL')\n"
        "db.execute('PRAGMA wal_autocheckpoint=0')\n"
        "db.execute('CREATE TABLE usage (principal TEXT, n INTEGER)')\n"
        "db.execute(\"INSERT INTO usage VALUES ('alice', 3)\")\n"
        "os._exit(0)  # no close, no checkpoint\n"
    )
    subprocess.run([sys.executable, "-c", script, str(tmp_path / "other.db")], check=True)
    wal = tmp_path / "other.db-wal"
    assert wal.stat().st_size > 0
    before = (digest(tmp_path / "other.db"), digest(wal))
    write_trail(tmp_path / "t" / "a.json", [s3_get(1, "k")])
    for command in (("principals",), ("ingest", "t", "--workers", "1")):
        res = cli_in(*command, "--store", "other.db", cwd=tmp_path)
        one_line(res, 4, "other.db", "not an iamtrim usage store")
        assert (digest(tmp_path / "other.db"), digest(wal)) == before, command


def test_not_sqlite_and_empty_files(tmp_path: Path, cli_in: Any) -> None:
    (tmp_path / "notes.txt").write_text("a text file\n" * 50)
    one_line(cli_in("principals", "--store", "notes.txt", cwd=tmp_path), 4, "notes.txt", "not an SQLite")
    one_line(cli_in("ingest", "x", "--store", "notes.txt", cwd=tmp_path), 4, "notes.txt", "not an SQLite")
    assert (tmp_path / "notes.txt").read_text() == "a text file\n" * 50
    # An empty file is a fresh store: nothing to read yet, and ingest fills it.
    (tmp_path / "new.sqlite").touch()
    one_line(cli_in("principals", "--store", "new.sqlite", cwd=tmp_path), 4, "new.sqlite", "empty store")
    assert (tmp_path / "new.sqlite").stat().st_size == 0
    write_trail(tmp_path / "t" / "a.json", [s3_get(1, "k")])
    assert cli_in("ingest", "t", "--store", "new.sqlite", "--workers", "1", cwd=tmp_path).code == 0
    assert cli_in("ingest", "t", "--store", "missing/dir/s.sqlite", "--workers", "1", cwd=tmp_path).code == 0
    for name in ("new.sqlite", "missing/dir/s.sqlite"):
        with Store(tmp_path / name, read_only=True) as st:
            assert [p.arn for p in st.principals()] == [ROLE]
        assert schema(tmp_path / name)[1] == (store.APPLICATION_ID,)


def test_reading_commands_change_nothing_and_open_older_stores(
    tmp_path: Path, usage_store: Path, cli_in: Any
) -> None:
    path = tmp_path / "s.sqlite"
    shutil.copy(usage_store, path)
    # A store made before iamtrim wrote its application id is still iamtrim's.
    db = sqlite3.connect(path)
    db.execute("PRAGMA application_id=0")
    db.execute("PRAGMA user_version=0")
    db.commit()
    db.close()
    before = digest(path)
    for command in (("principals",), ("usage", "etl"), ("generate-policy", "etl"), ("graph", "export")):
        res = cli_in(*command, "--store", "s.sqlite", cwd=tmp_path)
        assert res.code == 0 and ROLE.rsplit("/", 1)[1] in res.out, (command, res.err)
        assert digest(path) == before, command
    # Ingest (a writer) names the file iamtrim's.
    assert cli_in("ingest", "x", "--store", "s.sqlite", cwd=tmp_path).code == 4  # nothing to read
    assert schema(path)[1] == (store.APPLICATION_ID,)


# -- 13: locked, full, read-only, unreadable -------------------------------------------------


def test_a_store_locked_by_another_process(
    tmp_path: Path, usage_store: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "s.sqlite"
    shutil.copy(usage_store, path)
    monkeypatch.setattr(store, "BUSY_TIMEOUT_S", 0.05)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("PRAGMA locking_mode=EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("INSERT INTO meta VALUES ('held', 'by another process')")
    try:
        for command in (("principals",), ("usage", "etl"), ("who-used", "arn:aws:s3:::data")):
            res = run_here(capsys, *command, "--store", str(path))
            one_line(res, 4, str(path), "locked by another process")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert run_here(capsys, "principals", "--store", str(path)).code == 0


def test_disk_full_while_ingesting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite's SQLITE_FULL, as on a full disk: a page limit lower than the ingest needs."""
    connect = store._connect

    def small(path: str, read_only: bool) -> sqlite3.Connection:
        db = connect(path, read_only)
        db.execute("PRAGMA max_page_count=12")
        return db

    monkeypatch.setattr(store, "_connect", small)
    write_trail(tmp_path / "t" / "a.json", [s3_get(i, f"{'k' * 400}/{i}") for i in range(300)])
    res = run_here(
        capsys, "ingest", str(tmp_path / "t"), "--store", str(tmp_path / "s.sqlite"), "--workers", "1"
    )
    one_line(res, 4, str(tmp_path / "s.sqlite"), "disk full")


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_disk_full_writing_output(tmp_path: Path, usage_store: Path, cli_in: Any) -> None:
    res = cli_in("graph", "export", "--store", str(usage_store), "--out", "/dev/full", cwd=tmp_path)
    one_line(res, 4, "/dev/full", "no space left on device")


def test_read_only_store(shared_dir: Path, usage_store: Path) -> None:
    _needs_nobody()
    # A read-only file in a folder the user may not write: reading works (read-only open, as an
    # immutable file when SQLite cannot make its -shm beside it); ingesting says why not.
    locked = shared_dir / "locked"
    locked.mkdir()
    shutil.copy(usage_store, locked / "s.sqlite")
    (locked / "s.sqlite").chmod(0o444)
    locked.chmod(0o555)
    write_trail(shared_dir / "t" / "a.json", [s3_get(7, "k/7")])
    shared_dir.joinpath("t").chmod(0o755)
    shared_dir.joinpath("t", "a.json").chmod(0o644)
    before = digest(locked / "s.sqlite")
    res = run("principals", "--store", "locked/s.sqlite", cwd=shared_dir, as_nobody=True)
    assert res.code == 0 and ROLE in res.out, res.err
    res = run("ingest", "t", "--store", "locked/s.sqlite", "--workers", "1", cwd=shared_dir, as_nobody=True)
    one_line(res, 4, "locked/s.sqlite", "read-only")
    # A read-only file in a writable folder: refused before the trail is read.
    shutil.copy(usage_store, shared_dir / "ro.sqlite")
    (shared_dir / "ro.sqlite").chmod(0o444)
    shared_dir.chmod(0o777)
    res = run("ingest", "t", "--store", "ro.sqlite", "--workers", "1", cwd=shared_dir, as_nobody=True)
    one_line(res, 4, "ro.sqlite", "read-only")
    assert digest(locked / "s.sqlite") == before


def test_unreadable_files_are_one_line_exit_4(shared_dir: Path, usage_store: Path) -> None:
    _needs_nobody()
    shutil.copy(usage_store, shared_dir / "s.sqlite")
    (shared_dir / "s.sqlite").chmod(0o644)
    shared_dir.chmod(0o777)  # ingest may create its store here
    for name in ("secret.json", "secret.sqlite"):
        (shared_dir / name).write_text("{}")
        (shared_dir / name).chmod(0o000)
    cases = [
        (("principals", "--store", "secret.sqlite"), "secret.sqlite"),
        (("diff", "etl", "--store", "s.sqlite", "--authz", "secret.json"), "secret.json"),
        (("diff", "etl", "--store", "s.sqlite", "--current", "secret.json"), "secret.json"),
        (("principals", "--events", "secret.json"), "secret.json"),
        (("ingest", "secret.json", "--store", "n.sqlite"), "secret.json"),
    ]
    for args, name in cases:
        res = run(*args, cwd=shared_dir, as_nobody=True)
        assert "permission denied" in one_line(res, 4, name).lower(), args


def test_unwritable_output(shared_dir: Path, usage_store: Path) -> None:
    _needs_nobody()
    shutil.copy(usage_store, shared_dir / "s.sqlite")
    (shared_dir / "s.sqlite").chmod(0o644)
    (shared_dir / "out").mkdir()
    (shared_dir / "out").chmod(0o555)
    res = run(
        "graph", "export", "--store", "s.sqlite", "--out", "out/g.graphml", cwd=shared_dir, as_nobody=True
    )
    assert "permission denied" in one_line(res, 4, "out/g.graphml")
    res = run(
        "generate-policy", "etl", "--store", "s.sqlite", "--format", "policy", "--out-dir", "out/p",
        cwd=shared_dir, as_nobody=True,
    )  # fmt: skip
    assert "permission denied" in one_line(res, 4, "out/p")


def test_file_exists_where_a_folder_is_needed(tmp_path: Path, usage_store: Path, cli_in: Any) -> None:
    (tmp_path / "taken").write_text("a file")
    res = cli_in(
        "generate-policy", "etl", "--store", str(usage_store), "--format", "policy", "--out-dir", "taken",
        cwd=tmp_path,
    )  # fmt: skip
    assert "file exists" in one_line(res, 4, "taken")
    res = cli_in("ingest", "x", "--store", "taken/s.sqlite", cwd=tmp_path)
    one_line(res, 4, "taken/s.sqlite")
    res = cli_in("principals", "--store", str(tmp_path), cwd=tmp_path)
    assert "directory" in one_line(res, 4, str(tmp_path))


# -- 13: inputs too deep or too large --------------------------------------------------------


def test_json_nested_100k_deep(tmp_path: Path, usage_store: Path, cli_in: Any) -> None:
    depth = 100_000
    (tmp_path / "deep.json").write_text('{"RoleDetailList": ' + "[" * depth + "]" * depth + "}")
    (tmp_path / "deep-policy.json").write_text('{"Statement": ' + "[" * depth + "]" * depth + "}")
    res = cli_in("diff", "etl", "--store", str(usage_store), "--authz", "deep.json", cwd=tmp_path)
    assert "nested too deeply" in one_line(res, 4, "deep.json")
    res = cli_in("diff", "etl", "--store", str(usage_store), "--current", "deep-policy.json", cwd=tmp_path)
    assert "nested too deeply" in one_line(res, 4, "deep-policy.json")


def test_out_of_memory_reading_authz(
    tmp_path: Path, usage_store: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from iamtrim.review import current

    def exhausted(*args: Any, **kwargs: Any) -> Any:
        raise MemoryError

    monkeypatch.setattr(current, "json", SimpleNamespace(loads=exhausted))  # only this module's
    res = run_here(capsys, "diff", "etl", "--store", str(usage_store), "--authz", str(AUTHZ))
    assert "too large to hold in memory" in one_line(res, 4, str(AUTHZ))


def test_out_of_memory_anywhere_is_one_line(
    usage_store: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def exhausted(*args: Any, **kwargs: Any) -> Any:
        raise MemoryError

    monkeypatch.setattr(cli, "summarize_principals", exhausted)
    assert "out of memory" in one_line(run_here(capsys, "principals", "--store", str(usage_store)), 4)


# -- 14: eventTime --------------------------------------------------------------------------

BAD_TIMES = {
    "yesterday": "not an ISO 8601 UTC time",
    "zzzz": "not an ISO 8601 UTC time",
    "2026-10-01T00:00:07\x00": "not an ISO 8601 UTC time",
    "2026-02-30T00:00:00Z": "not an ISO 8601 UTC time",
    "2026-10-01T24:00:00Z": "not an ISO 8601 UTC time",
    "2026-10-01T00:00:00+02:00": "not an ISO 8601 UTC time",
    "9999-12-31T23:59:59Z": "in the future (after tomorrow, UTC)",
    "2013-10-31T23:59:59Z": "before CloudTrail existed (2013-11-01)",
}


def _timed(i: int, when: str) -> dict[str, Any]:
    rec = s3_get(i, f"k/{i}")
    rec["eventTime"] = when
    return rec


def test_bad_event_times_are_skipped_and_never_seen(tmp_path: Path, cli_in: Any) -> None:
    good = [s3_get(1, "k/1"), _timed(2, "2026-10-01 00:00:02.000")]  # CloudTrail's, and Lake's form
    bad = [_timed(10 + i, when) for i, when in enumerate(BAD_TIMES)]
    write_trail(tmp_path / "t" / "a.json", good + bad)
    res = cli_in("ingest", "t", "--store", "s.sqlite", "--workers", "1", cwd=tmp_path)
    assert res.code == 0, res.err
    assert f"bad-event-time {len(BAD_TIMES)}" in res.out
    usage = json.loads(cli_in("usage", "etl", "--store", "s.sqlite", "--format", "json", cwd=tmp_path).out)
    assert sorted((u["first_seen"], u["last_seen"]) for u in usage["used"]) == [
        ("2026-10-01T00:00:01Z", "2026-10-01T00:00:01Z"),
        ("2026-10-01T00:00:02Z", "2026-10-01T00:00:02Z"),
    ]
    with Store(tmp_path / "s.sqlite", read_only=True) as st:
        assert [(c.day, c.records) for c in st.coverage()] == [("2026-10-01", 2)]
        details = {d: n for r, d, n in st.skip_details() if r == SkipReason.BAD_EVENT_TIME}
    assert sum(details.values()) == len(BAD_TIMES)
    assert set(details) == set(BAD_TIMES.values())


def test_bad_event_times_leave_the_fast_path_equal_to_the_general_one() -> None:
    for i, (when, detail) in enumerate(BAD_TIMES.items()):
        record = RECORD_DECODER.decode(json.dumps(_timed(i, when)).encode())
        assert fast_parts(record) is None
        assert normalize_parts(record) == Skipped(SkipReason.BAD_EVENT_TIME, detail)
    for when, want in [
        ("2026-10-01T00:00:05Z", "2026-10-01T00:00:05Z"),
        ("2026-10-01T00:00:05.250Z", "2026-10-01T00:00:05Z"),
        ("2026-10-01 00:00:05.000", "2026-10-01T00:00:05Z"),
    ]:
        record = RECORD_DECODER.decode(json.dumps(_timed(5, when)).encode())
        fast, general = fast_parts(record), normalize_parts(record)
        assert fast is not None and fast == general and fast.time == want


# -- 15: --break-glass ----------------------------------------------------------------------

BAD_BREAK_GLASS = {
    "break-glass-admin": "not an ARN",
    "role/": "not an ARN",
    "arn:aws:iam::111122223333:role/": "names no role or user",
    "arn:aws:iam::111122223333:role/*": "wildcard",
    "arn:aws:iam::111122223333:role/admin-?": "wildcard",
    "arn:aws:iam::111122223333:role/${aws:username}": "policy variable",
    "arn:aws:sts::111122223333:assumed-role/admin/session": "STS ARN names one session",
    "arn:aws:iam::111122223333:role/admin\narn:aws:iam::111122223333:role/other": "control character",
    "arn:aws:iam::111122223333:role/ad min": "control character",
    "arn:aws:iam::111122223333:group/admins": "not an IAM role or user ARN",
    "arn:aws:iam::111122223333:root": "not an IAM role or user ARN",
    "arn:aws:iam::1111:role/admin": "not a valid IAM role or user ARN",
    "arn:aws:iam:us-east-1:111122223333:role/admin": "not a valid IAM role or user ARN",
}


@pytest.mark.parametrize("arn", sorted(BAD_BREAK_GLASS))
def test_break_glass_must_be_one_iam_role_or_user(
    arn: str, usage_store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    res = run_here(capsys, "bucket-policy", "data", "--store", str(usage_store), "--break-glass", arn)
    one_line(res, 2, "--break-glass", BAD_BREAK_GLASS[arn], "expected an IAM role or user ARN")


@pytest.mark.parametrize("arn", sorted(BAD_BREAK_GLASS))
def test_kms_admin_must_be_one_iam_role_or_user(
    arn: str, usage_store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--admin ARNs are written into the key policy as principals: checked as --break-glass's."""
    key = "9f8e7d6c-5b4a-3928-1716-0f1e2d3c4b5a"  # the sample key
    res = run_here(capsys, "kms-policy", key, "--store", str(usage_store), "--admin", arn)
    one_line(res, 2, "--admin", BAD_BREAK_GLASS[arn], "expected an IAM role or user ARN")


def test_kms_admin_with_a_path_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    arn = "arn:aws:iam::444455556666:role/ops/key-admin"
    logs = str(AUTHZ.parent.parent / "AWSLogs")
    res = run_here(
        capsys, "kms-policy", "9f8e7d6c-5b4a-3928-1716-0f1e2d3c4b5a", "--events", logs, "--admin", arn
    )
    assert res.code == 0, res.err
    assert json.loads(res.out)["verification"]["admins"] == [arn]


def test_break_glass_with_a_path_is_kept(usage_store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    arn = "arn:aws:iam::111122223333:role/ops/break-glass"
    res = run_here(capsys, "bucket-policy", "data", "--store", str(usage_store), "--break-glass", arn)
    assert res.code == 0, res.err
    assert json.loads(res.out)["verification"]["break_glass"] == [arn]


# -- 16: file names and paths ---------------------------------------------------------------


NASTY = "bad\nname\x1b]0;owned\x07\r.json"
SHOWN = "bad\\nname\\x1b]0;owned\\x07\\r.json"


def test_file_names_with_control_characters_stay_on_one_line(tmp_path: Path, usage_store: Path) -> None:
    for args in (
        ("principals", "--events", NASTY),
        ("principals", "--store", NASTY),
        ("diff", "etl", "--store", str(usage_store), "--authz", NASTY),
        ("diff", "etl", "--store", str(usage_store), "--current", NASTY),
    ):
        err = one_line(run(*args, cwd=tmp_path), 4, SHOWN)
        assert "\x1b" not in err and "\r" not in err and "\x07" not in err
    (tmp_path / NASTY).write_text("not a store")
    one_line(run("principals", "--store", NASTY, cwd=tmp_path), 4, SHOWN, "not an SQLite database")
    # A file name that is not UTF-8 is shown by its bytes.
    raw = os.fsdecode(b"odd\xff.sqlite")
    one_line(run("principals", "--store", raw, cwd=tmp_path), 4, "odd\\xff.sqlite")


def test_every_line_of_an_ingest_with_nasty_names_is_one_message(tmp_path: Path, cli_in: Any) -> None:
    write_trail(tmp_path / "t" / "good.json", [s3_get(1, "k")])
    (tmp_path / "t" / NASTY).write_text("{not json")
    res = cli_in("ingest", "t", "--store", "s.sqlite", "--workers", "1", cwd=tmp_path)
    assert res.code == 0, res.err
    lines = res.err.splitlines()
    assert lines and all(line.startswith("iamtrim: ") for line in lines), res.err
    assert any(SHOWN in line for line in lines)


def test_missing_paths_are_one_line_exit_4(tmp_path: Path, usage_store: Path, cli_in: Any) -> None:
    for args, name in [
        (("principals", "--store", "nope.sqlite"), "nope.sqlite"),
        (("principals", "--events", "nope.json"), "nope.json"),
        (("ingest", "nope-dir", "--store", "s.sqlite"), "nope-dir"),
        (("diff", "etl", "--store", str(usage_store), "--authz", "nope.json"), "nope.json"),
        (("diff", "etl", "--store", str(usage_store), "--current", "nope.json"), "nope.json"),
        (("graph", "export", "--store", str(usage_store), "--out", "no/such/dir/g.graphml"), "g.graphml"),
    ]:
        one_line(cli_in(*args, cwd=tmp_path), 4, name)
