"""usage.key_sketch (schema 5): the distinct keys a folded S3 row stands for, written by ingest,
merged by later ingests, and the migration of a schema-4 store (docs/store.md)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from iamtrim import store as store_mod
from iamtrim.errors import StoreError
from iamtrim.ingest import ingest, load_events
from iamtrim.keysketch import STANDARD_ERROR, KeySketch
from iamtrim.query import principal_usage
from iamtrim.render import policy as render_policy
from iamtrim.render.usage import usage_json
from iamtrim.store import Store
from iamtrim.synth import generate_identity_policy
from tests.test_ingest import ROLE, s3_get, write_trail

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
        assert (st.meta("schema"), st.meta("migrated_from")) == (store_mod.SCHEMA_VERSION, "4")
        after = _rows(st)
    assert {k: n for k, (n, _) in after.items()} == before
    assert after[("s3:GetObject", FOLD, "used")][1] == KeySketch(partial=True).to_bytes()
    assert after[("s3:GetObject", "arn:aws:s3:::data/one", "used")][1] is None
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone() == (int(store_mod.SCHEMA_VERSION),)
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
    newer = str(int(store_mod.SCHEMA_VERSION) + 1)
    path = tmp_path / f"v{newer}.sqlite"
    with Store(path):
        pass
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value = ? WHERE key = 'schema'", (newer,))
    db.commit()
    db.close()
    data = path.read_bytes()
    for read_only in (False, True):
        with pytest.raises(
            StoreError, match=f"store schema {newer}, this iamtrim reads {store_mod.SCHEMA_VERSION}"
        ):
            Store(path, read_only=read_only)
    assert path.read_bytes() == data


def test_generate_policy_says_how_many_keys_a_store_fold_covers(tmp_path: Path) -> None:
    """A store-folded prefix/* says how many distinct keys it covers: exactly (20 keys) or
    estimated past the exact bound (300 keys, "~", within three standard errors), in the
    widenings[] of the JSON, in --explain, in STORE_FOLDED_KEYS and in DENIED_COVERED."""
    records = [s3_get(i, f"logs/{i:04d}.gz") for i in range(300)]
    records += [s3_get(400 + i, f"small/k{i % 20}") for i in range(60)]  # 20 keys, each 3 times
    records += [s3_get(500, "logs/secret.gz", error="AccessDenied")]  # denied-only, in the fold
    write_trail(tmp_path / "t.json", records)
    store = load_events([tmp_path / "t.json"], workers=1)
    (principal,) = [p for p in store.principals() if p.arn == ROLE]
    g = generate_identity_policy(principal, store.usage(ROLE))
    doc = json.loads(render_policy.to_json(g))
    folded = {w["pattern"]: w for w in doc["widenings"] if w["kind"] == "store-folded"}
    assert set(folded) == {"arn:aws:s3:::data/logs/*", "arn:aws:s3:::data/small/*"}
    small, logs = folded["arn:aws:s3:::data/small/*"], folded["arn:aws:s3:::data/logs/*"]
    assert small["observed_keys"] == {"count": 20, "exact": True, "lower_bound": False, "text": "20"}
    assert small["admits"].endswith("(folded when ingested; covers 20 distinct observed keys)")
    estimate = logs["observed_keys"]
    assert not estimate["exact"] and estimate["text"] == f"~{estimate['count']:,}"
    assert abs(estimate["count"] / 300 - 1) < 3 * STANDARD_ERROR
    explain = render_policy.explain_text(g)
    assert f"covers ~{estimate['count']:,} distinct observed keys" in explain
    assert "covers 20 distinct observed keys" in explain
    messages = {f["code"] + " " + f["subject"]: f["message"] for f in doc["findings"]}
    assert messages["STORE_FOLDED_KEYS s3:GetObject arn:aws:s3:::data/small/*"].endswith(
        "; it covers 20 distinct observed keys"
    )
    (denied,) = [f for f in doc["findings"] if f["code"] == "DENIED_COVERED"]
    assert "logs/secret.gz" in denied["message"]
    assert (
        f"arn:aws:s3:::data/logs/* (folded by the store) covers ~{estimate['count']:,}" in denied["message"]
    )


def test_a_damaged_sketch_is_one_line_naming_the_store(tmp_path: Path) -> None:
    write_trail(tmp_path / "a.json", [s3_get(i, f"logs/k{i}") for i in range(20)])
    path = tmp_path / "s.sqlite"
    with Store(path) as st:
        ingest([tmp_path / "a.json"], st, workers=1)
    db = sqlite3.connect(path)
    db.execute("UPDATE usage SET key_sketch = x'0203' WHERE key_sketch IS NOT NULL")
    db.commit()
    db.close()
    with Store(path, read_only=True) as st, pytest.raises(StoreError, match="the store is damaged"):
        st.usage(ROLE)
    write_trail(tmp_path / "b.json", [s3_get(100, "logs/more")])
    with Store(path) as st, pytest.raises(StoreError, match="a key sketch does not decode"):
        ingest([tmp_path / "b.json"], st, workers=1)


def test_usage_json_shows_a_folds_distinct_keys(tmp_path: Path) -> None:
    write_trail(
        tmp_path / "t.json", [s3_get(i, f"logs/{i % 25:04d}.gz") for i in range(75)] + [s3_get(99, "one")]
    )
    store = load_events([tmp_path / "t.json"], workers=1)
    rows = {r.resource: r for r in store.usage(ROLE)}
    (principal,) = [p for p in store.principals() if p.arn == ROLE]
    used = json.loads(usage_json(principal_usage(store, principal)))["used"]
    shown = {r["resource"]: r.get("observed_keys") for r in used}
    assert set(rows) == set(shown)
    assert shown == {
        "arn:aws:s3:::data/logs/*": {"count": 25, "exact": True, "lower_bound": False, "text": "25"},
        "arn:aws:s3:::data/one": None,
    }


def test_a_second_ingest_merges_the_sketches_into_the_stored_ones(tmp_path: Path) -> None:
    """Keys of a fold split over two runs (200 + 200, overlapping by 50: 350 distinct, past the
    exact bound) give the bytes one run over all of them gives."""
    first = [s3_get(i, f"logs/{i:04d}.gz") for i in range(200)]
    second = [s3_get(1000 + i, f"logs/{150 + i:04d}.gz") for i in range(200)]
    write_trail(tmp_path / "a" / "1.json", first)
    write_trail(tmp_path / "b" / "2.json", second)
    with Store(tmp_path / "two.sqlite") as st:
        ingest([tmp_path / "a"], st, workers=1)
        (exact,) = [s for (_, res, _), (_, s) in _rows(st).items() if res == FOLD]
        ingest([tmp_path / "b"], st, workers=1)
        two = _rows(st)
    with Store(tmp_path / "one.sqlite") as st:
        ingest([tmp_path / "a", tmp_path / "b"], st, workers=1)
        one = _rows(st)
    assert exact is not None and KeySketch.from_bytes(exact).describe() == "200"
    assert two == one
    merged = KeySketch.from_bytes(one[("s3:GetObject", FOLD, "used")][1] or b"")
    assert not merged.exact and abs(merged.estimate() / 350 - 1) < 3 * STANDARD_ERROR
