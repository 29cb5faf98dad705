"""bench/make_trail.py writes the same trail whatever the number of worker processes: the 10M-record
benchmark (issue 14) is generated with several, and compared with runs made with one."""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _generate(out: Path, procs: int, *extra: str) -> dict[str, bytes]:
    generator = [sys.executable, str(ROOT / "bench" / "make_trail.py"), "--records", "1200", "--files", "6"]
    subprocess.run(
        [*generator, "--seed", "4", "--procs", str(procs), "--out", str(out), *extra],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return {str(p.relative_to(out)): gzip.decompress(p.read_bytes()) for p in sorted(out.rglob("*.json.gz"))}


@pytest.mark.parametrize("extra", [(), ("--varied",)])
def test_the_trail_does_not_depend_on_the_number_of_processes(tmp_path: Path, extra: tuple[str, ...]) -> None:
    one = _generate(tmp_path / "one", 1, *extra)
    two = _generate(tmp_path / "two", 2, *extra)
    assert len(one) == 6
    assert sum(body.count(b'"eventID"') for body in one.values()) == 1200
    assert one == two  # same file names, same bytes after gunzip
