"""Ingest: incremental, deduplicated, interrupt-safe, folded, tolerant of bad files."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from iamtrim import ingest as ingest_mod
from iamtrim.errors import NoReadableInput
from iamtrim.ingest import ingest, load_events
from iamtrim.keysketch import KeySketch
from iamtrim.model import Outcome
from iamtrim.sources.objects import LocalFiles
from iamtrim.store import Store

ROLE = "arn:aws:iam::111122223333:role/service-role/etl"


def s3_get(i: int, key: str, *, event_id: str | None = None, error: str | None = None) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "eventVersion": "1.09",
        "userIdentity": {
            "type": "AssumedRole",
            "principalId": "AROAEXAMPLE:etl",
            "arn": "arn:aws:sts::111122223333:assumed-role/etl/job",
            "accountId": "111122223333",
            "sessionContext": {
                "sessionIssuer": {"type": "Role", "arn": ROLE, "accountId": "111122223333", "userName": "etl"}
            },
        },
        "eventTime": f"2026-10-01T00:{i // 60 % 60:02d}:{i % 60:02d}Z",
        "eventSource": "s3.amazonaws.com",
        "eventName": "GetObject",
        "awsRegion": "us-east-1",
        "sourceIPAddress": "10.0.0.5",
        "requestParameters": {"bucketName": "data", "key": key, "Host": "data.s3.amazonaws.com"},
        "resources": [
            {"type": "AWS::S3::Object", "ARN": f"arn:aws:s3:::data/{key}"},
            {"type": "AWS::S3::Bucket", "ARN": "arn:aws:s3:::data", "accountId": "111122223333"},
        ],
        "eventID": event_id or f"00000000-0000-4000-8000-{i:012d}",
        "eventType": "AwsApiCall",
        "eventCategory": "Data",
        "recipientAccountId": "111122223333",
        "vpcEndpointId": "vpce-0123456789abcdef0",
    }
    if error:
        rec["errorCode"] = error
        rec["errorMessage"] = "Access Denied"
    return rec


def write_trail(path: Path, records: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = json.dumps({"Records": records}).encode()
    path.write_bytes(gzip.compress(data, mtime=0) if path.suffix == ".gz" else data)
    return path


def total(store: Store, action: str = "s3:GetObject", outcome: Outcome = Outcome.USED) -> int:
    return sum(r.count for r in store.usage(ROLE) if r.action == action and r.outcome is outcome)


def test_second_ingest_reads_nothing_and_counts_nothing_twice(tmp_path: Path) -> None:
    write_trail(tmp_path / "t" / "a.json.gz", [s3_get(i, f"k/{i}") for i in range(10)])
    write_trail(tmp_path / "t" / "b.json", [s3_get(i, f"k/{i}") for i in range(10, 15)])
    with Store(tmp_path / "s.sqlite") as st:
        first = ingest([tmp_path / "t"], st, workers=1)
        assert (first.files_read, first.records) == (2, 15)
        again = ingest([tmp_path / "t"], st, workers=1)
        assert (again.files_read, again.files_already, again.records) == (0, 2, 0)
        assert total(st) == 15


def test_copied_file_is_recognized_by_content(tmp_path: Path) -> None:
    write_trail(tmp_path / "a.json", [s3_get(i, f"k/{i}") for i in range(4)])
    with Store(tmp_path / "s.sqlite") as st:
        ingest([tmp_path / "a.json"], st, workers=1)
        (tmp_path / "copy.json").write_bytes((tmp_path / "a.json").read_bytes())
        report = ingest([tmp_path / "copy.json"], st, workers=1)
        assert report.files_already == 1
        assert total(st) == 4


def test_event_seen_in_two_files_counts_once(tmp_path: Path) -> None:
    records = [s3_get(i, f"k/{i}") for i in range(6)]
    write_trail(tmp_path / "trail.json.gz", records)
    # The same events again in another shape (Event history as JSON Lines) plus one new event.
    (tmp_path / "history.jsonl").write_text(
        "\n".join(json.dumps(r) for r in [*records[:3], s3_get(99, "k/99")])
    )
    with Store(tmp_path / "s.sqlite") as st:
        report = ingest([tmp_path], st, workers=1)
        assert total(st) == 7
        assert report.skips["duplicate-event"] == 3
        assert st.skips()["duplicate-event"] == 3


def interrupt_at(n: int) -> Callable[[object], None]:
    """An ``on_file`` callback that stops the run (as Ctrl-C does) at the *n*-th file reported."""
    calls = {"n": 0}

    def boom(report: object) -> None:
        calls["n"] += 1
        if calls["n"] == n:
            raise KeyboardInterrupt

    return boom


def test_interrupted_ingest_keeps_committed_batches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for n in range(6):
        write_trail(tmp_path / "t" / f"{n}.json", [s3_get(n * 10 + i, f"k/{n}/{i}") for i in range(10)])
    monkeypatch.setattr(ingest_mod, "BATCH_FILES", 2)
    with Store(tmp_path / "s.sqlite") as st, pytest.raises(KeyboardInterrupt):
        ingest([tmp_path / "t"], st, workers=1, on_file=interrupt_at(5))
    with Store(tmp_path / "s.sqlite") as st:
        committed = total(st)
        assert committed == 40  # two batches of two files were committed before the interrupt
        ingest([tmp_path / "t"], st, workers=1)
        assert total(st) == 60


def test_object_keys_fold_into_folder_past_the_bound(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ingest_mod, "EXACT_KEYS_PER_FOLDER", 5)
    write_trail(tmp_path / "a.json", [s3_get(i, f"datasets/day1/part-{i:05d}") for i in range(12)])
    write_trail(tmp_path / "b.json", [s3_get(20 + i, f"datasets/day2/part-{i:05d}") for i in range(5)])
    with load_events([tmp_path], workers=1) as st:
        rows = [r for r in st.usage(ROLE) if r.action == "s3:GetObject"]
        # day1 holds 12 keys > 5: all of them (not only those after the fifth) are in the fold.
        assert [(r.resource, r.count) for r in rows if r.resource and "day1" in r.resource] == [
            ("arn:aws:s3:::data/datasets/day1/*", 12)
        ]
        # day2 holds 5: kept exactly.
        assert sorted(r.resource or "" for r in rows if r.resource and "day2" in r.resource) == [
            f"arn:aws:s3:::data/datasets/day2/part-{i:05d}" for i in range(5)
        ]


def _random_keys(rnd: Any, n: int) -> list[str]:
    keys = []
    for _ in range(n):
        folders = [rnd.choice("abc") + rnd.choice(["", "1"]) for _ in range(rnd.randint(0, 4))]
        leaf = "*" if rnd.random() < 0.02 else rnd.choice([f"k{rnd.randint(0, 25)}", "${*}"])
        keys.append("arn:aws:s3:::" + "/".join([rnd.choice(["b1", "b2"]), *folders, leaf]))
    return keys


def _kept(
    folder: ingest_mod.ObjectKeyFolder, group: tuple[str, ...], items: list[tuple[str, str]]
) -> set[tuple[str, str]]:
    """The (context, resource) rows a caller keeps after feeding *items*, the folds' moves
    applied."""
    kept: set[tuple[str, str]] = set()
    for context, arn in items:
        kept.add((context, folder.fold(group, context, arn)))
        for g, c, old, new in folder.moved:
            assert g == group
            kept.discard((c, old))
            kept.add((c, new))
        folder.moved.clear()
    return kept


def test_object_key_folder_is_the_policy_rule_in_any_order() -> None:
    """The store folds exactly as generate-policy would at threshold = the bound, whatever the
    order the keys arrive in ("folder/*" coming in is a fold made upstream, "${*}" an escaped
    literal "*" in a key, never a fold)."""
    import random

    from iamtrim.synth.minimize import generalize_object_arns

    rnd = random.Random(7)
    group = ("P", "s3:GetObject", "used")
    for _ in range(300):
        limit = rnd.randint(1, 6)
        keys = _random_keys(rnd, rnd.randint(1, 300))
        items = [(rnd.choice(["", "vpce"]), k) for k in keys]  # contexts count together
        mapping = generalize_object_arns(keys, limit)
        expected = {(c, mapping[k]) for c, k in items}
        for _ in range(3):
            rnd.shuffle(items)
            assert _kept(ingest_mod.ObjectKeyFolder(limit), group, items) == expected
        # Split across two folders (lanes), the parent fed both results: the same rows.
        cut = rnd.randint(0, len(items))
        lane = _kept(ingest_mod.ObjectKeyFolder(limit), group, items[:cut])
        other = _kept(ingest_mod.ObjectKeyFolder(limit), group, items[cut:])
        parent = ingest_mod.ObjectKeyFolder(limit)
        assert _kept(parent, group, sorted(other) + sorted(lane)) == expected


def test_partial_aggregates_merge_in_any_order_into_the_aggregate_of_the_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a distributed reduce needs: records shuffled and cut into parts, each part
    aggregated on its own (its own folder and normalizer, as a worker or an executor would),
    and the partial aggregates merged in any order give the aggregate of the whole input: the
    same keys, folded the same way, with the same counts, first and last seen and (samples
    unbounded) the same event ids and source IPs; and the keys are the policy rule applied to
    every key seen."""
    import random

    from iamtrim.normalize.record import Normalizer
    from iamtrim.synth.minimize import generalize_object_arns

    rnd = random.Random(5)
    monkeypatch.setattr(ingest_mod, "EXACT_KEYS_PER_FOLDER", 3)
    monkeypatch.setattr(ingest_mod, "SAMPLE_EVENT_IDS", 10_000)
    monkeypatch.setattr(ingest_mod, "SAMPLE_SOURCE_IPS", 10_000)
    records = []
    for i in range(300):
        parts = [rnd.choice(["raw", "curated"]), *(rnd.choice("xyz") for _ in range(rnd.randint(0, 2)))]
        draw = rnd.random()
        record = s3_get(
            rnd.randint(0, 3599),  # the time
            "/".join([*parts, f"part-{rnd.randint(0, 5)}"]),
            event_id=f"event-{i}",
            error="AccessDenied" if draw < 0.2 else "NoSuchKey" if draw < 0.3 else None,
        )
        record["sourceIPAddress"] = f"10.0.0.{rnd.randint(1, 12)}"
        if rnd.random() < 0.3:  # another context
            del record["vpcEndpointId"]
        records.append(record)

    def merged(parts: list[list[dict[str, Any]]], name: str) -> dict[Any, tuple[Any, ...]]:
        partials = []
        for n, part in enumerate(parts):
            path = write_trail(tmp_path / name / f"{n}.json", part)
            folder = ingest_mod.ObjectKeyFolder(ingest_mod.EXACT_KEYS_PER_FOLDER)
            source = LocalFiles([path])
            items = [(0, ref) for ref in source.list_objects()]
            chunk = ingest_mod.process_chunk(items, [source], folder=folder, normalizer=Normalizer())
            partials.append(chunk.agg)
        rnd.shuffle(partials)  # merged in any order
        with Store(":memory:") as st:
            merger = ingest_mod._Merger(st)
            for agg in partials:
                merger.merge(agg)
        return {
            key: (a.count, a.first, a.last, frozenset(a.event_ids), frozenset(a.source_ips), a.row()[5])
            for key, a in merger.totals.items()
        }

    whole = merged([records], "whole")
    assert sum(v[0] for v in whole.values()) == len(records)
    assert any(key[2].endswith("/*") for key in whole) and any(not key[2].endswith("*") for key in whole)
    # The keys are the policy rule (at threshold = the bound) applied per outcome over every key
    # a call that passed or was denied named; keys of failed calls (NoSuchKey) are kept exactly.
    for outcome in ("used", "denied"):
        named = [
            f"arn:aws:s3:::data/{r['requestParameters']['key']}"
            for r in records
            if (r.get("errorCode") == "AccessDenied") is (outcome == "denied")
            and r.get("errorCode") != "NoSuchKey"
        ]
        mapping = generalize_object_arns(named, 3)
        assert {k[2] for k in whole if k[3] == outcome and '"NoSuchKey"' not in k[4]} == set(mapping.values())
    # A fold's key sketch is that of the distinct keys its calls named (in its context), built
    # here from the records; every other row has none.
    under: dict[tuple[str, str], set[str]] = {}
    for r in records:
        if r.get("errorCode") == "NoSuchKey":
            continue
        outcome = "denied" if r.get("errorCode") == "AccessDenied" else "used"
        arn = f"arn:aws:s3:::data/{r['requestParameters']['key']}"
        under.setdefault((outcome, str("vpcEndpointId" in r)), set()).add(arn)
    for key, value in whole.items():
        if not key[2].endswith("/*"):
            assert value[5] is None, key
            continue
        # Folded over every context (as generate-policy counts), counted per context (the row's).
        mapping = generalize_object_arns(
            sorted(under.get((key[3], "True"), set()) | under.get((key[3], "False"), set())), 3
        )
        expected = KeySketch()
        for arn in under[(key[3], str("vpce-" in key[4]))]:
            if mapping[arn] == key[2]:
                expected.add(arn)
        assert value[5] == expected.to_bytes() and expected.estimate() > 3, key
    for trial in range(8):
        shuffled = list(records)
        rnd.shuffle(shuffled)
        cuts = sorted(rnd.sample(range(1, len(shuffled)), rnd.randint(1, 8)))
        parts = [shuffled[a:b] for a, b in zip([0, *cuts], [*cuts, len(shuffled)], strict=True)]
        assert merged(parts, f"trial{trial}") == whole


def test_an_aggregate_merge_is_commutative_and_associative() -> None:
    import random

    rnd = random.Random(3)
    for _ in range(200):
        parts = []
        named: set[str] = set()
        for _ in range(rnd.randint(1, 5)):
            times = sorted(f"2026-10-01T00:00:{rnd.randint(0, 59):02d}Z" for _ in range(2))
            eids = list(dict.fromkeys(f"e{rnd.randint(0, 9)}" for _ in range(rnd.randint(0, 3))))
            ips = list(dict.fromkeys(f"10.0.0.{rnd.randint(0, 6)}" for _ in range(rnd.randint(0, 4))))
            part = ingest_mod.Aggregate(rnd.randint(1, 9), times[0], times[1], eids, ips)
            for _ in range(rnd.choice([0, 0, 3, 200])):  # a folded row: the keys it stands for
                arn = f"arn:aws:s3:::data/logs/k{rnd.randint(0, 400)}"
                named.add(arn)
                part.add_key(arn)
            parts.append(part)
        totals = []
        for _ in range(3):  # merged pairwise in a random tree and order
            pending = [p.copy() for p in parts]
            while len(pending) > 1:
                a = pending.pop(rnd.randrange(len(pending)))
                b = pending.pop(rnd.randrange(len(pending)))
                a.merge(b)
                pending.append(a)
            totals.append(pending[0])
        counts = {(t.count, t.first, t.last) for t in totals}
        union = KeySketch()  # the sketch of every key the parts named, added one by one
        for arn in named:
            union.add(arn)
        assert {t.row()[5] for t in totals} == {union.to_bytes() if named else None}
        assert counts == {
            (sum(p.count for p in parts), min(p.first for p in parts), max(p.last for p in parts))
        }
        for t in totals:  # samples: at most the bound, of values the parts hold
            assert len(t.event_ids) <= ingest_mod.SAMPLE_EVENT_IDS
            assert len(t.source_ips) <= ingest_mod.SAMPLE_SOURCE_IPS
            assert set(t.source_ips) <= {ip for p in parts for ip in p.source_ips}
            assert set(t.event_ids) <= {e for p in parts for e in p.event_ids}
            assert len(t.event_ids) == min(
                ingest_mod.SAMPLE_EVENT_IDS, len({e for p in parts for e in p.event_ids})
            )
            assert len(t.source_ips) == min(
                ingest_mod.SAMPLE_SOURCE_IPS, len({ip for p in parts for ip in p.source_ips})
            )


def test_stores_are_the_same_whatever_the_order_and_split_of_the_input(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Records shuffled, cut into files at random, read by 1-3 workers in lanes that start afresh
    at random, and ingested in one run or two: the same store, row for row, and the rows are the
    policy rule applied to every key seen."""
    import random

    from iamtrim.synth.minimize import generalize_object_arns

    rnd = random.Random(11)
    monkeypatch.setattr(ingest_mod, "EXACT_KEYS_PER_FOLDER", 4)
    records = []
    for i in range(240):
        parts = [rnd.choice(["raw", "curated"]), *(rnd.choice("xyz") for _ in range(rnd.randint(0, 2)))]
        key = "/".join([*parts, f"part-{rnd.randint(0, 6)}"])
        if i % 40 == 0:  # a few keys in folders that never fold
            key = rnd.choice(["lone/key", "pair/a/b", "pair/c"])
        draw = rnd.random()
        # Denied calls fold apart; calls failed after authorization (NoSuchKey) never fold.
        record = s3_get(i, key, error="AccessDenied" if draw < 0.2 else "NoSuchKey" if draw < 0.35 else None)
        if rnd.random() < 0.3:  # another context: a fold counts keys of all contexts together
            del record["vpcEndpointId"]
        records.append(record)

    def store_rows(run: int, workers: int, lane_folders: int, runs: int) -> list[tuple[object, ...]]:
        shuffled = list(records)
        rnd.shuffle(shuffled)
        cuts = sorted(rnd.sample(range(1, len(shuffled)), rnd.randint(1, 12)))
        pieces = [shuffled[a:b] for a, b in zip([0, *cuts], [*cuts, len(shuffled)], strict=True)]
        monkeypatch.setattr(ingest_mod, "LANE_FOLDERS", lane_folders)
        monkeypatch.setattr(ingest_mod, "CHUNK_FILES", rnd.randint(1, 3))
        with Store(tmp_path / f"s{run}.sqlite") as st:
            for part in range(runs):
                for n, piece in enumerate(pieces):
                    if n % runs == part:
                        write_trail(tmp_path / f"t{run}" / f"{part}" / f"{n:02d}.json", piece)
                ingest([tmp_path / f"t{run}" / f"{part}"], st, workers=workers)
            return sorted(
                (r.action, r.resource, r.outcome, r.context, r.count, r.first_seen, r.last_seen, r.key_sketch)
                for r in st.usage(ROLE)
            )

    first = store_rows(0, 1, 50_000, 1)
    for outcome in Outcome:
        seen = [
            ("vpcEndpointId" in r, f"arn:aws:s3:::data/{r['requestParameters']['key']}")
            for r in records
            if (r.get("errorCode") == "AccessDenied") is (outcome is Outcome.DENIED)
            and r.get("errorCode") != "NoSuchKey"
        ]
        mapping = generalize_object_arns([arn for _, arn in seen], 4)
        assert {
            (bool(r[3].vpc_endpoint), r[1])  # type: ignore[attr-defined]
            for r in first
            if r[2] is outcome and not r[3].error_code  # type: ignore[attr-defined]
        } == {(vpce, mapping[arn]) for vpce, arn in seen}
        # Each fold's sketch is that of the distinct keys named under it in its context.
        for r in first:
            if r[2] is outcome and str(r[1]).endswith("/*"):
                vpce = bool(r[3].vpc_endpoint)  # type: ignore[attr-defined]
                expected = KeySketch()
                for arn in {a for v, a in seen if v == vpce and mapping[a] == r[1]}:
                    expected.add(arn)
                assert r[7] == expected.to_bytes(), r[1]
    failed = {
        ("vpcEndpointId" in r, f"arn:aws:s3:::data/{r['requestParameters']['key']}")
        for r in records
        if r.get("errorCode") == "NoSuchKey"
    }
    assert {(bool(r[3].vpc_endpoint), r[1]) for r in first if r[3].error_code} == failed  # type: ignore[attr-defined]
    assert any(str(r[1]).endswith("/*") for r in first) and any(not str(r[1]).endswith("*") for r in first)
    for run in range(1, 7):
        got = store_rows(run, rnd.randint(1, 3), rnd.choice([2, 5, 50_000]), rnd.randint(1, 2))
        assert got == first


def test_failed_keys_past_their_bound_are_skips_whatever_the_order_and_split(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keys only failed calls named are kept exactly up to FAILED_KEYS_PER_FOLDER per folder;
    past it every failed key of the folder (kept before too) is a counted skip, in any order and
    split, over one run or several; a folder under the bound keeps all its keys."""
    import random

    monkeypatch.setattr(ingest_mod, "FAILED_KEYS_PER_FOLDER", 5)
    records = [s3_get(i, f"big/k{i % 7}", error="NoSuchKey") for i in range(21)]  # 7 keys, 21 calls
    records += [s3_get(100 + i, f"small/k{i}", error="NoSuchKey") for i in range(5)]  # at the bound
    records += [s3_get(200 + i, f"big/ok{i}") for i in range(2)]  # successes: not counted, kept
    rnd = random.Random(5)

    def run(n: int, runs: int) -> tuple[list[tuple[object, ...]], dict[str, int]]:
        shuffled = list(records)
        rnd.shuffle(shuffled)
        with Store(tmp_path / f"s{n}.sqlite") as st:
            for part in range(runs):
                write_trail(tmp_path / f"t{n}" / f"{part}.json", shuffled[part::runs])
                ingest([tmp_path / f"t{n}" / f"{part}.json"], st, workers=1)
            return sorted((r.resource, r.context.error_code, r.count) for r in st.usage(ROLE)), st.skips()

    rows, skips = run(0, 1)
    assert [r[0] for r in rows] == [f"arn:aws:s3:::data/big/ok{i}" for i in range(2)] + [
        f"arn:aws:s3:::data/small/k{i}" for i in range(5)
    ]
    assert skips.get("failed-keys-over-bound") == 21
    for n in range(1, 5):
        assert run(n, rnd.randint(2, 4)) == (rows, skips)


def test_a_store_folded_by_the_earlier_rule_is_refolded_by_the_next_ingest(tmp_path: Path) -> None:
    """The earlier rule kept the keys counted before a fold beside the fold (per context), and
    left folders of more than 16 entries exact. The next ingest merges them under today's rule:
    no count is lost, no fold is undone."""
    write_trail(tmp_path / "old.json", [s3_get(1, "other/k")])
    with Store(tmp_path / "s.sqlite") as st:
        ingest([tmp_path / "old.json"], st, workers=1)
        (context,) = {r[4] for r in _stored(st)}
        old = [(f"arn:aws:s3:::data/logs/{n}", 2) for n in range(3)] + [("arn:aws:s3:::data/logs/*", 40)]
        old += [(f"arn:aws:s3:::data/days/d{n:02d}/k", 1) for n in range(20)]  # 20 entries in days/
        st.commit_batch(
            [],
            [],
            [
                (
                    ROLE,
                    "s3:GetObject",
                    arn,
                    "used",
                    context,
                    count,
                    "2026-09-01T00:00:00Z",
                    "2026-09-02T00:00:00Z",
                    ["e"],
                    [],
                )
                for arn, count in old
            ],
            [],
        )
        write_trail(tmp_path / "new.json", [s3_get(2, "logs/new")])
        ingest([tmp_path / "new.json"], st, workers=1)
        rows = {r[2]: r[5] for r in _stored(st) if r[1] == "s3:GetObject"}
    assert rows == {
        "arn:aws:s3:::data/logs/*": 47,
        "arn:aws:s3:::data/days/*": 20,
        "arn:aws:s3:::data/other/k": 1,
    }


def _stored(st: Store) -> list[tuple[Any, ...]]:
    return [(r.principal, r.action, r.resource, r.outcome, r.context, r.count) for r in st.stored_rows()]


@pytest.mark.parametrize("lane_folders", [50_000, 3])  # 3: lanes start afresh often
def test_folding_is_the_same_for_any_number_of_workers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lane_folders: int
) -> None:
    """Lanes fold S3 keys across their chunks; the rows must not depend on who ran them."""
    monkeypatch.setattr(ingest_mod, "EXACT_KEYS_PER_FOLDER", 4)
    monkeypatch.setattr(ingest_mod, "LANE_FOLDERS", lane_folders)
    monkeypatch.setattr(ingest_mod, "CHUNK_FILES", 2)
    import random

    rnd = random.Random(1)  # a mix where lanes fold differently from one folder for all chunks
    total_keys = 0
    for n in range(24):
        keys = [f"datasets/d{rnd.randint(0, 2)}/part-{rnd.randint(0, 9)}" for _ in range(rnd.randint(3, 8))]
        total_keys += len(keys)
        write_trail(tmp_path / "t" / f"{n:02d}.json", [s3_get(n * 10 + i, k) for i, k in enumerate(keys)])

    def rows(workers: int) -> list[tuple[object, ...]]:
        with Store(":memory:") as st:
            ingest([tmp_path / "t"], st, workers=workers)
            return sorted(
                (
                    r.action,
                    r.resource,
                    r.outcome,
                    r.count,
                    r.first_seen,
                    r.last_seen,
                    r.event_ids,
                    r.key_sketch,
                )
                for r in st.usage(ROLE)
            )

    one = rows(1)
    assert any(str(r[1]).endswith("/*") for r in one)  # folding happened
    assert all(r[7] for r in one if str(r[1]).endswith("/*"))  # with the sketch of its keys
    assert sum(int(str(r[3])) for r in one) == total_keys
    assert rows(2) == one
    assert rows(3) == one


def test_a_failing_worker_stops_the_ingest_with_its_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for n in range(8):
        write_trail(tmp_path / "t" / f"{n}.json", [s3_get(n, f"k/{n}")])

    def broken(*args: object, **kwargs: object) -> None:
        raise ValueError("bug in a worker")

    monkeypatch.setattr(ingest_mod, "process_chunk", broken)
    with Store(":memory:") as st, pytest.raises(RuntimeError, match="bug in a worker"):
        ingest([tmp_path / "t"], st, workers=2)


def test_denied_calls_are_kept_apart(tmp_path: Path) -> None:
    write_trail(
        tmp_path / "a.json",
        [s3_get(1, "k/1"), s3_get(2, "k/2", error="AccessDenied"), s3_get(3, "k/3", error="NoSuchKey")],
    )
    with load_events([tmp_path / "a.json"], workers=1) as st:
        assert total(st) == 2  # NoSuchKey passed authorization: it is use
        assert total(st, outcome=Outcome.DENIED) == 1


def test_bad_files_are_reported_and_the_rest_is_read(tmp_path: Path) -> None:
    good = [s3_get(i, f"k/{i}") for i in range(5)]
    write_trail(tmp_path / "good.json.gz", good)
    full = gzip.compress(json.dumps({"Records": good}).encode())
    (tmp_path / "truncated.json.gz").write_bytes(full[: len(full) // 2])
    (tmp_path / "invalid.json").write_text('{"Records": [')
    (tmp_path / "other.json").write_text('{"AWSTemplateFormatVersion": "2010-09-09"}')
    with load_events([tmp_path], workers=1) as st:
        assert total(st) == 5
    with Store(":memory:") as st:
        report = ingest([tmp_path], st, workers=1)
    failed = dict(report.files_failed)
    assert set(failed) == {str(tmp_path / n) for n in ("truncated.json.gz", "invalid.json", "other.json")}
    assert "truncated gzip" in failed[str(tmp_path / "truncated.json.gz")]
    assert "not CloudTrail" in failed[str(tmp_path / "other.json")]


def test_nothing_readable_raises(tmp_path: Path) -> None:
    (tmp_path / "x.json").write_text("not json")
    with Store(":memory:") as st, pytest.raises(NoReadableInput):
        ingest([tmp_path / "x.json", tmp_path / "missing"], st, workers=1)


def test_parallel_and_serial_ingest_store_the_same(tmp_path: Path) -> None:
    for n in range(8):
        write_trail(
            tmp_path / "t" / f"{n}.json.gz",
            [
                s3_get(n * 50 + i, f"k/{n % 3}/{i}", error="AccessDenied" if i % 7 == 0 else None)
                for i in range(50)
            ],
        )
    with load_events([tmp_path / "t"], workers=1) as a, load_events([tmp_path / "t"], workers=2) as b:
        assert a.usage() == b.usage()
        assert a.skips() == b.skips()
