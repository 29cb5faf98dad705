"""The trail-source interface: ingest reads objects through a source, whatever holds them.

An in-memory source stands in for S3 here (the S3 one is tested against moto in test_sources_s3.py):
incremental ingest by identity, deduplication by content and event id, and the worker lanes must
behave exactly as they do for local files."""

from __future__ import annotations

import gzip
import json
import sqlite3
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from iamtrim import store as store_mod
from iamtrim.errors import AwsError
from iamtrim.ingest import ingest
from iamtrim.sources.objects import LocalFiles, ObjectRef
from iamtrim.store import Store
from tests.test_ingest import s3_get, write_trail


class MemorySource:
    """Objects held in a dict: uri → (bytes, etag). Counts the reads it served (in this process)."""

    def __init__(self, objects: dict[str, tuple[bytes, str]], fail_on: str = "") -> None:
        self.objects = objects
        self.reads: list[str] = []
        self.fail_on = fail_on

    def list_objects(self) -> Iterator[ObjectRef]:
        for uri in sorted(self.objects):
            data, etag = self.objects[uri]
            yield ObjectRef(uri, len(data), 1_700_000_000_000_000_000, etag)

    def read(self, ref: ObjectRef, max_bytes: int) -> tuple[bytes, str, ObjectRef]:
        self.reads.append(ref.uri)
        if ref.uri == self.fail_on:
            raise AwsError(f"access denied: iamtrim needs s3:GetObject on {ref.uri}")
        data, etag = self.objects[ref.uri]
        return data, "", replace(ref, etag=etag, size=len(data))


def trail_bytes(first: int, n: int) -> bytes:
    records = [s3_get(i, f"k/{i}") for i in range(first, first + n)]
    return gzip.compress(json.dumps({"Records": records}).encode())


def objects(n_files: int = 8) -> dict[str, tuple[bytes, str]]:
    return {
        f"mem://trail/111122223333_CloudTrail_us-east-1_20261001T00{i:02d}Z_x.json.gz": (
            trail_bytes(i * 5, 5),
            f'"etag{i}"',
        )
        for i in range(n_files)
    }


def rows(st: Store) -> list[tuple[object, ...]]:
    return sorted((r.principal, r.action, r.resource, r.count) for r in st.usage())


def test_a_source_gives_the_rows_local_files_of_the_same_bytes_give(tmp_path: Path) -> None:
    objs = objects()
    for uri, (data, _) in objs.items():
        (tmp_path / "t").mkdir(exist_ok=True)
        (tmp_path / "t" / uri.rsplit("/", 1)[1]).write_bytes(data)
    with Store(":memory:") as local, Store(":memory:") as mem:
        a = ingest([tmp_path / "t"], local, workers=1)
        b = ingest([MemorySource(objs)], mem, workers=1)
        assert (a.files_read, a.records) == (b.files_read, b.records) == (8, 40)
        assert rows(local) == rows(mem) and rows(mem)
        # Coverage knows a trail delivery by its name, wherever it was read from.
        assert local.coverage() == mem.coverage() and all(c.complete for c in mem.coverage())
        assert sorted(f.path for f in mem.files()) == sorted(objs)
        assert {f.etag for f in mem.files()} == {etag for _, etag in objs.values()}
        assert {f.etag for f in local.files()} == {""}


def test_a_rerun_reads_nothing_and_a_new_etag_is_read_again(tmp_path: Path) -> None:
    objs = objects(4)
    with Store(tmp_path / "s.sqlite") as st:
        ingest([MemorySource(objs)], st, workers=1)
        again = MemorySource(objs)
        report = ingest([again], st, workers=1)
        assert again.reads == [] and (report.files_read, report.files_already) == (0, 4)
        # One object replaced in place (new bytes, new ETag): read again, its new events counted.
        first = sorted(objs)[0]
        objs[first] = (trail_bytes(100, 3), '"etag-new"')
        changed = MemorySource(objs)
        report = ingest([changed], st, workers=1)
        assert changed.reads == [first]
        assert (report.files_read, report.records, report.files_already) == (1, 3, 3)
        assert sum(r.count for r in st.usage()) == 23


def test_the_same_bytes_under_two_keys_count_once(tmp_path: Path) -> None:
    objs = objects(2)
    data, _ = objs[sorted(objs)[0]]
    objs["mem://org/o-abc/copy.json.gz"] = (data, '"etag-copy"')
    with Store(":memory:") as st:
        report = ingest([MemorySource(objs)], st, workers=1)
        assert (report.files_read, report.files_already, report.records) == (2, 1, 10)


@pytest.mark.parametrize("workers", [1, 2])
def test_sources_and_paths_mix_and_workers_do_not_change_results(tmp_path: Path, workers: int) -> None:
    write_trail(tmp_path / "local.json", [s3_get(i, f"local/{i}") for i in range(200, 230)])
    with Store(":memory:") as st:
        report = ingest([MemorySource(objects(40)), tmp_path / "local.json"], st, workers=workers)
        assert (report.files_read, report.records) == (41, 230)
        result = rows(st)
    with Store(":memory:") as one:
        ingest([MemorySource(objects(40)), tmp_path / "local.json"], one, workers=1)
        assert rows(one) == result


@pytest.mark.parametrize("workers", [1, 2])
def test_a_source_error_stops_the_run_as_itself_and_stores_nothing(tmp_path: Path, workers: int) -> None:
    objs = objects(40)
    bad = sorted(objs)[30]
    with Store(tmp_path / "s.sqlite") as st:
        with pytest.raises(AwsError, match="needs s3:GetObject"):
            ingest([MemorySource(objs, fail_on=bad)], st, workers=workers)
        # Batches commit every 1,000 files or 5 seconds: nothing of this short run was stored.
        assert st.files() == [] and st.usage() == []


def test_local_files_list_with_their_stat_identity(tmp_path: Path) -> None:
    path = write_trail(tmp_path / "a.json", [s3_get(1, "k/1")])
    (tmp_path / "b.json").mkdir()
    refs = list(LocalFiles([tmp_path / "a.json", tmp_path / "nope.json"]).list_objects())
    st = path.stat()
    assert refs == [
        ObjectRef(str(path), st.st_size, st.st_mtime_ns),
        ObjectRef(str(tmp_path / "nope.json"), error="no such file or directory"),
    ]


def test_schema_3_store_is_migrated_without_touching_its_rows(tmp_path: Path) -> None:
    """A schema-3 store (files without an ETag column, resources already escaped) gains the
    column; its files stay known (a re-run reads nothing) and no resource is escaped twice."""
    t = tmp_path / "t"
    write_trail(t / "a.json", [s3_get(i, f"k/{i}") for i in range(3)])
    path = tmp_path / "v3.sqlite"
    with Store(path) as st:
        ingest([t], st, workers=1)
    db = sqlite3.connect(path)  # back to schema 3, as iamtrim 3 wrote it
    db.execute("ALTER TABLE files DROP COLUMN etag")
    db.execute("ALTER TABLE usage DROP COLUMN key_sketch")
    db.execute("UPDATE meta SET value = '3' WHERE key = 'schema'")
    db.execute("PRAGMA user_version=3")
    db.execute(
        "INSERT INTO usage VALUES ('arn:aws:iam::111122223333:role/r', 's3:GetObject', "
        "'arn:aws:s3:::b/${$}x', 'used', '[]', 1, 't', 't', '[]', '[]')"
    )
    db.commit()
    assert "etag" not in {r[1] for r in db.execute("PRAGMA table_info(files)")}
    db.close()
    with Store(path) as st:
        assert st.meta("schema") == store_mod.SCHEMA_VERSION == "6"
        assert st.meta("migrated_from") == "3"
        assert [f.etag for f in st.files()] == [""]
        assert "arn:aws:s3:::b/${$}x" in {r.resource for r in st.usage()}
        again = ingest([t], st, workers=1)
        assert (again.files_read, again.files_already) == (0, 1)
    with Store(path, read_only=True) as st:  # reopening does not migrate again
        assert st.meta("schema") == "6" and st.meta("migrated_from") == "3"


def test_a_chunk_redone_for_copies_does_not_read_the_copies_again() -> None:
    """Copies met after their originals (in another chunk, read before the copies' digests were
    known to the worker) make the parent redo the chunk: the copies are not read a second time."""
    objs = objects(40)
    for uri in sorted(objs)[:8]:
        objs["mem://zz/copy-" + uri.rsplit("/", 1)[1]] = (objs[uri][0], '"other-etag"')
    source = MemorySource(objs)
    with Store(":memory:") as st:
        report = ingest([source], st, workers=1)
        assert (report.files_read, report.files_already, report.records) == (40, 8, 200)
    reads = Counter(source.reads)
    assert all(n == 1 for uri, n in reads.items() if uri.startswith("mem://zz/")), reads
    assert len(reads) == 48


class ThreadedMemorySource(MemorySource):
    """A source that asks for read-ahead (as S3Trail does); notes the threads that read."""

    read_ahead = 3

    def read(self, ref: ObjectRef, max_bytes: int) -> tuple[bytes, str, ObjectRef]:
        self.threads.add(threading.current_thread().name)
        return super().read(ref, max_bytes)

    threads: set[str]


def test_read_ahead_reads_on_threads_and_changes_nothing(tmp_path: Path) -> None:
    objs = objects(40)
    source = ThreadedMemorySource(objs)
    source.threads = set()
    with Store(":memory:") as ahead, Store(":memory:") as serial:
        a = ingest([source], ahead, workers=1)
        b = ingest([MemorySource(objs)], serial, workers=1)
        assert rows(ahead) == rows(serial) and (a.files_read, a.records) == (b.files_read, b.records)
    assert source.threads and all(t.startswith("iamtrim-read") for t in source.threads)
    assert sorted(source.reads) == sorted(objs)  # each object read once


def test_read_ahead_raises_a_source_error_and_stores_nothing(tmp_path: Path) -> None:
    objs = objects(40)
    source = ThreadedMemorySource(objs, fail_on=sorted(objs)[17])
    source.threads = set()
    with Store(tmp_path / "s.sqlite") as st:
        with pytest.raises(AwsError, match="needs s3:GetObject"):
            ingest([source], st, workers=1)
        assert st.files() == []
