"""Compare two usage stores row for row: the contract of every engine (docs/scale.md).

Exact: usage keys with count, first and last seen and a fold's key sketch (byte for byte);
coverage; skips; principals; files (digest, path, size, format, records, malformed, error, event
hashes). Samples of event ids and source
IPs are exact as sets only where the engine saw them: each sampled value must be one the local
store could have sampled (checked by the callers against the records), and samples are never
empty when the local ones are not.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from iamtrim.store import Store

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def bench_trail(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic benchmark trail (bench/make_trail.py: every shape, many S3 keys)."""
    out = tmp_path_factory.mktemp("bench-trail")
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "make_trail.py"),
            "--out",
            str(out),
            "--records",
            "6000",
            "--files",
            "6",
            "--procs",
            "1",
        ],
        check=True,
        capture_output=True,
    )
    return out / "AWSLogs"


def usage_table(store: Store) -> dict[tuple[str, ...], tuple[Any, ...]]:
    return {
        (r.principal, r.action, r.resource, r.outcome, r.context): (
            r.count,
            r.first_seen,
            r.last_seen,
            r.key_sketch,  # a fold's distinct keys: the reduced rows keep every key, so exact too
        )
        for r in store.stored_rows()
    }


def samples_table(store: Store) -> dict[tuple[str, ...], tuple[tuple[str, ...], tuple[str, ...]]]:
    return {
        (r.principal, r.action, r.resource, r.outcome, r.context): (r.event_ids, r.source_ips)
        for r in store.stored_rows()
    }


def coverage_table(store: Store) -> list[tuple[Any, ...]]:
    return sorted(
        (c.account, c.region, c.day, c.data_source, c.complete, c.records) for c in store.coverage()
    )


def files_table(store: Store, with_hashes: bool = True) -> list[tuple[Any, ...]]:
    return sorted(
        (f.digest, f.path, f.size, f.format, f.records, f.malformed, f.error)
        + ((f.event_hashes,) if with_hashes else ())
        for f in store.files()
    )


def assert_same_store(engine: Store, local: Store, *, files: bool = True, hashes: bool = True) -> None:
    """*engine* holds exactly what *local* (a local ingest) holds; see the module docstring."""
    got, want = usage_table(engine), usage_table(local)
    missing = sorted(set(want) - set(got))[:5]
    extra = sorted(set(got) - set(want))[:5]
    assert not missing and not extra, f"missing {missing}, extra {extra}"
    wrong = [(k, got[k], want[k]) for k in sorted(want) if got[k] != want[k]][:5]
    assert not wrong, wrong
    assert coverage_table(engine) == coverage_table(local)
    assert sorted(engine.skip_details()) == sorted(local.skip_details())
    assert engine.principals() == local.principals()
    if files:
        assert files_table(engine, hashes) == files_table(local, hashes)
    got_samples, want_samples = samples_table(engine), samples_table(local)
    for k, (eids, ips) in want_samples.items():
        g_eids, g_ips = got_samples[k]
        assert bool(g_eids) == bool(eids) and bool(g_ips) == bool(ips), k
        assert len(set(g_eids)) == len(g_eids) and len(set(g_ips)) == len(g_ips), k
