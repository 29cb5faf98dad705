"""The CLI contract: commands, JSON shapes, one-line errors and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.test_ingest import ROLE, s3_get, write_trail


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "iamtrim", *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_ingest_then_usage_json(tmp_path: Path) -> None:
    write_trail(
        tmp_path / "t" / "a.json.gz",
        [s3_get(i, f"k/{i % 2}") for i in range(6)] + [s3_get(9, "k/9", error="AccessDenied")],
    )
    res = run("ingest", "t", "--store", "s.sqlite", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "records: 7" in res.stdout
    res = run("usage", "etl", "--store", "s.sqlite", "--format", "json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["principal"] == ROLE
    assert sorted((u["resource"], u["count"]) for u in doc["used"]) == [
        ("arn:aws:s3:::data/k/0", 3),
        ("arn:aws:s3:::data/k/1", 3),
    ]
    assert [d["resource"] for d in doc["denied"]] == ["arn:aws:s3:::data/k/9"]
    used = doc["used"][0]
    assert set(used) >= {"action", "resource", "count", "first_seen", "last_seen", "context"}
    assert used["context"]["vpc_endpoint"] == "vpce-0123456789abcdef0"
    assert isinstance(doc["skipped"], dict)


def test_principals_stateless_from_events(tmp_path: Path) -> None:
    write_trail(tmp_path / "a.json", [s3_get(1, "k")])
    res = run("principals", "--events", "a.json", "--format", "json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert [p["principal"] for p in json.loads(res.stdout)] == [ROLE]


def test_unknown_principal_is_one_line_exit_2(tmp_path: Path) -> None:
    write_trail(tmp_path / "a.json", [s3_get(1, "k")])
    res = run("usage", "nobody", "--events", "a.json", cwd=tmp_path)
    assert res.returncode == 2
    assert res.stderr.strip().count("\n") == 0 and "no principal 'nobody'" in res.stderr
    assert "Traceback" not in res.stderr


def test_nothing_readable_exits_4_with_per_file_reasons(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text("{nope")
    res = run("ingest", "bad.json", "missing-dir", "--store", "s.sqlite", cwd=tmp_path)
    assert res.returncode == 4
    assert "Traceback" not in res.stderr
    lines = res.stderr.strip().splitlines()
    assert any("bad.json: invalid JSON" in line for line in lines)
    assert any("missing-dir: no such file or directory" in line for line in lines)


def test_some_bad_files_still_exit_0(tmp_path: Path) -> None:
    write_trail(tmp_path / "t" / "good.json", [s3_get(1, "k")])
    (tmp_path / "t" / "bad.json").write_text("[{")
    res = run("ingest", "t", "--store", "s.sqlite", cwd=tmp_path)
    assert res.returncode == 0
    assert "bad.json" in res.stderr and "1 with problems" in res.stdout


def test_not_a_store_exits_4(tmp_path: Path) -> None:
    (tmp_path / "x.sqlite").write_text("hello, not sqlite" * 100)
    res = run("principals", "--store", "x.sqlite", cwd=tmp_path)
    assert res.returncode == 4 and "not an iamtrim usage store" in res.stderr


_PROBE = """
import gc, sys
from iamtrim import cli
sys.argv = ["iamtrim", *sys.argv[1:]]
default = gc.get_threshold()
try:
    cli.run()
except SystemExit as exc:
    kept = "default" if gc.get_threshold() == default else gc.get_threshold()
    print(exc.code, kept, gc.get_freeze_count() > 0, file=sys.stderr)
"""


def test_program_sets_the_collector_for_one_command(tmp_path: Path) -> None:
    """``iamtrim`` (cli.run): reading commands collect young objects rarely, ingest keeps CPython's
    defaults, and what is alive at the end is frozen (left out of the exit's full collection)."""
    write_trail(tmp_path / "t" / "a.json", [s3_get(1, "k")])

    def probe(*args: str) -> tuple[str, str]:
        res = subprocess.run(
            [sys.executable, "-c", _PROBE, *args], cwd=tmp_path, capture_output=True, text=True, timeout=120
        )
        return res.stdout, res.stderr.strip().splitlines()[-1]

    out, last = probe("ingest", "t", "--store", "s.sqlite")
    assert "records: 1" in out
    assert last == "0 default True"
    out, last = probe("usage", "etl", "--store", "s.sqlite", "--format", "json")
    assert json.loads(out)["principal"] == ROLE
    from iamtrim.cli import GC_THRESHOLDS

    assert last == f"0 {GC_THRESHOLDS} True"
    _, last = probe("usage", "nobody", "--store", "s.sqlite")
    assert last == f"2 {GC_THRESHOLDS} True"
