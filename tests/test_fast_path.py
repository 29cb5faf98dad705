"""The ingest fast path (``fast_parts``) gives exactly what ``normalize_parts`` gives.

``fast_parts`` handles the bulk of a trail (successful single-action calls whose ``resources[]``
names the resource) with per-event-name work done once; everything else takes the general path.
Checked on every record of the samples, of a synthetic benchmark trail (bench/make_trail.py, all
its shapes), and of the real corpus when ``$IAMTRIM_CORPUS`` is set.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from iamtrim.normalize.record import fast_parts, normalize_parts
from iamtrim.sources import iter_input_files, read_file
from iamtrim.sources.records import Record

ROOT = Path(__file__).resolve().parent.parent


def _records(folder: Path) -> list[Record]:
    out: list[Record] = []
    for path, error in iter_input_files([folder]):
        if not error:
            out.extend(read_file(path)[0].records)
    return out


def _check(records: list[Record]) -> int:
    fast = 0
    for record in records:
        got = fast_parts(record)
        if got is not None:
            fast += 1
            assert got == normalize_parts(record), record
    return fast


def test_fast_path_matches_on_the_samples() -> None:
    records = _records(ROOT / "samples")
    fast = _check(records)
    assert len(records) > 2000 and fast > len(records) // 3  # the S3 data events and KMS calls


def test_fast_path_matches_on_a_benchmark_trail(tmp_path: Path) -> None:
    args = ["--records", "20000", "--files", "4", "--out", str(tmp_path), "--procs", "1", "--seed", "3"]
    subprocess.run(
        [sys.executable, str(ROOT / "bench" / "make_trail.py"), *args],
        check=True,
        capture_output=True,
    )
    records = _records(tmp_path / "AWSLogs")
    fast = _check(records)
    assert len(records) == 20000 and fast > 10000


def test_fast_path_matches_on_the_corpus(corpus: Path) -> None:
    records = _records(corpus / "cloudtrail")
    fast = _check(records)
    assert fast > 30  # measured 46: most corpus records carry no resources[]
