"""usage.key_sketch (schema 5): the distinct keys a folded S3 row stands for, written by ingest,
merged by later ingests, and the migration of a schema-4 store (docs/store.md)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from iamtrim import store as store_mod
from iamtrim.errors import StoreError
from iamtrim.ingest import ingest
from iamtrim.keysketch import KeySketch
from iamtrim.store import Store
from tests.test_ingest import s3_get, write_trail

FOLD = "arn:aws:s3:::data/logs/*"


def _rows(st: Store) -> dict[tuple[str, str, str], tuple[int, bytes | None]]:
    return {(r.action, r.resource, r.outcome): (r.count, r.key_sketch) for r in st.stored_rows()}


def _to_schema_4(path: Path) -> None:
    """Make *path* the store iamtrim 4 wrote: no key_sketch column, schema and user_version 4."""
    db = sqlite3.connect(path)
    db.execute("ALTER TABLE usage DROP COLUMN key_sketch")
    db.execute("UPDATE meta SET value = '4' WHERE key = 'schema'")
    db.execute("PRAGMA user_version=4")
    db.commit()
    db.close()


@pytest.mark.parametrize("read_only", [False, True])
def test_a_schema_4_store_is_migrated_and_keeps_its_rows(tmp_path: Path, read_only: bool) -> None:
    """Its rows stay as they were; a fold it holds says its count is unknown (its keys were not
    kept), every other row has no sketch; a reading command migrates it too (docs/store.md)."""
    write_trail(tmp_path / "t" / "a.json", [s3_get(i, f"logs/k{i}") for i in range(20)] + [s3_get(99, "one")])
    path = tmp_path / "v4.sqlite"
    with Store(path) as st:
        ingest([tmp_path / "t"], st, workers=1)
        before = {k: n for k, (n, _) in _rows(st).items()}
    _to_schema_4(path)
    with Store(path, read_only=read_only) as st:
        assert (st.meta("schema"), st.meta("migrated_from")) == ("5", "4")
        after = _rows(st)
    assert {k: n for k, (n, _) in after.items()} == before
    assert after[("s3:GetObject", FOLD, "used")][1] == KeySketch(partial=True).to_bytes()
    assert after[("s3:GetObject", "arn:aws:s3:::data/one", "used")][1] is None
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone() == (5,)
    db.close()


def test_new_keys_into_a_migrated_fold_give_a_lower_bound(tmp_path: Path) -> None:
    write_trail(tmp_path / "a.json", [s3_get(i, f"logs/k{i}") for i in range(20)])
    path = tmp_path / "v4.sqlite"
    with Store(path) as st:
        ingest([tmp_path / "a.json"], st, workers=1)
    _to_schema_4(path)
    write_trail(tmp_path / "b.json", [s3_get(100 + i, f"logs/new{i % 5}") for i in range(30)])
    with Store(path) as st:
        ingest([tmp_path / "b.json"], st, workers=1)
        count, sketch = _rows(st)[("s3:GetObject", FOLD, "used")]
    assert count == 50 and sketch is not None
    assert KeySketch.from_bytes(sketch).describe() == "at least 5"


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    """As a schema-5 store is refused by the iamtrim that reads 4: one line, the file untouched."""
    path = tmp_path / "v6.sqlite"
    with Store(path):
        pass
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value = '6' WHERE key = 'schema'")
    db.commit()
    db.close()
    data = path.read_bytes()
    for read_only in (False, True):
        with pytest.raises(
            StoreError, match=f"store schema 6, this iamtrim reads {store_mod.SCHEMA_VERSION}"
        ):
            Store(path, read_only=read_only)
    assert path.read_bytes() == data
