"""The usage graph: built from the store, answers who-used, exports GraphML/JSON/DOT that read back."""

from __future__ import annotations

import json
from pathlib import Path

import networkx as nx
import pytest

from iamtrim.graph import (
    actions_of,
    build_graph,
    build_selected_graph,
    from_graphml,
    principals_of,
    resource_matches,
    select_rows,
    summarize_uses,
    to_dot,
    to_graphml,
    to_node_link_json,
    who_used,
)
from iamtrim.ingest import load_events
from iamtrim.model import Context, Outcome, UsageRow
from iamtrim.store import Store
from tests.test_ingest import ROLE, s3_get, write_trail

ACCOUNT = "444455556666"
NOTEBOOK = f"arn:aws:iam::{ACCOUNT}:role/service-role/ml-notebook-execution"
TRAINING = f"arn:aws:iam::{ACCOUNT}:role/ml-training-job"
SCIENTIST = f"arn:aws:iam::{ACCOUNT}:role/data-scientist"
PARTNER = "arn:aws:iam::777788889999:role/partner-analytics"
DATASETS_KEY = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/1a2b3c4d-5e6f-7a8b-9c0d-1e2f3a4b5c6d"
ARTIFACTS_KEY = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/9f8e7d6c-5b4a-3928-1716-0f1e2d3c4b5a"
VPCE = "vpce-0a1b2c3d4e5f60718"


@pytest.fixture(scope="module")
def sample_store(samples: Path) -> Store:
    return load_events([samples / "AWSLogs"], workers=1)


@pytest.fixture(scope="module")
def sample_graph(sample_store: Store) -> object:
    return build_graph(sample_store.principals(), sample_store.usage())


def row(
    principal: str,
    action: str,
    resource: str | None,
    count: int = 1,
    *,
    outcome: Outcome = Outcome.USED,
    via: str = "",
    vpce: str = "",
    key: str = "",
) -> UsageRow:
    return UsageRow(
        principal,
        action,
        resource,
        outcome,
        Context(invoked_by=via, vpc_endpoint=vpce, kms_key=key),
        count,
        "2026-10-01T00:00:00Z",
        "2026-10-02T00:00:00Z",
    )


def test_graph_links_principal_action_resource_and_round_trips(tmp_path: Path) -> None:
    write_trail(
        tmp_path / "a.json",
        [s3_get(i, f"k/{i % 3}") for i in range(9)] + [s3_get(20, "k/x", error="AccessDenied")],
    )
    with load_events([tmp_path / "a.json"], workers=1) as st:
        g = build_graph(st.principals(), st.usage())
    assert actions_of(g, ROLE) == ["s3:GetObject"]
    uses = who_used(g, "arn:aws:s3:::data/k/*")
    assert {(u.resource, u.calls, u.outcome) for u in uses} == {
        ("arn:aws:s3:::data/k/0", 3, "used"),
        ("arn:aws:s3:::data/k/1", 3, "used"),
        ("arn:aws:s3:::data/k/2", 3, "used"),
        ("arn:aws:s3:::data/k/x", 1, "denied"),
    }
    assert all(u.vpc_endpoints == ("vpce-0123456789abcdef0",) for u in uses)
    edge = g.edges[f"principal:{ROLE}", "action:s3:GetObject", "uses"]
    assert (edge["calls"], edge["denied"]) == (9, 1)
    back = from_graphml(to_graphml(g))
    assert back.number_of_nodes() == g.number_of_nodes()
    assert back.number_of_edges() == g.number_of_edges()


def test_direct_and_service_calls_are_separate_edges() -> None:
    g = build_graph(
        [],
        [
            row(
                "arn:aws:iam::1:role/a",
                "kms:Decrypt",
                "arn:aws:kms:us-east-1:1:key/k",
                5,
                via="s3.amazonaws.com",
            ),
            row("arn:aws:iam::1:role/a", "kms:Decrypt", "arn:aws:kms:us-east-1:1:key/k", 2),
        ],
    )
    uses = who_used(g, "arn:aws:kms:us-east-1:1:key/k")
    assert {(u.via_service, u.calls, u.direct) for u in uses} == {
        ("s3.amazonaws.com", 5, False),
        ("", 2, True),
    }
    [s] = summarize_uses(uses)
    assert (s.calls, s.direct_calls, s.via_calls) == (7, 2, (("s3.amazonaws.com", 5),))


@pytest.mark.parametrize(
    ("pattern", "resource", "expected"),
    [
        ("arn:aws:s3:::acme-ml-*", "arn:aws:s3:::acme-ml-datasets/a/b.parquet", True),
        ("arn:aws:s3:::acme-ml-*", "arn:aws:s3:::other/a", False),
        (
            "arn:aws:s3:::acme-ml-datasets",
            "arn:aws:s3:::acme-ml-datasets/a",
            True,
        ),  # a bucket covers its objects
        ("arn:aws:s3:::acme-ml-datasets", "arn:aws:s3:::acme-ml-datasets-2/a", False),
        ("arn:aws:s3:::acme-ml-datasets/a/x", "arn:aws:s3:::acme-ml-datasets/a/*", True),  # folded at ingest
        ("arn:aws:kms:*:*:key/1a2b*", DATASETS_KEY, True),
        ("arn:aws:s3:::a?c", "arn:aws:s3:::abc", True),
        ("arn:aws:s3:::a[b]c", "arn:aws:s3:::abc", False),  # [] is literal in IAM patterns
        ("*", "", True),
    ],
)
def test_resource_patterns(pattern: str, resource: str, expected: bool) -> None:
    assert resource_matches(pattern, resource) is expected


def test_select_rows_keeps_kms_context_for_key_patterns() -> None:
    rows = [
        row("p", "s3:PutObject", "arn:aws:s3:::b/k", key="arn:aws:kms:r:1:key/k"),
        row("p", "s3:GetObject", "arn:aws:s3:::b/j"),
        row("q", "kms:Decrypt", "arn:aws:kms:r:1:key/k"),
    ]
    assert [r.action for r in select_rows(rows, resources=["arn:aws:kms:r:1:key/k"])] == [
        "s3:PutObject",
        "kms:Decrypt",
    ]
    assert [r.principal for r in select_rows(rows, principals=["q"])] == ["q"]


# -- the samples ---------------------------------------------------------------------------------


def test_who_used_datasets_key_separates_direct_use_from_use_through_s3(sample_graph: object) -> None:
    uses = who_used(sample_graph, DATASETS_KEY)
    on_key = [u for u in uses if u.matched == "resource"]
    assert {u.principal for u in on_key} == {NOTEBOOK, TRAINING, SCIENTIST}
    # every S3 read/write under SSE-KMS makes S3 call KMS with the caller's permissions
    through_s3 = {(u.principal, u.action) for u in on_key if u.via_service == "s3.amazonaws.com"}
    assert {
        (NOTEBOOK, "kms:Decrypt"),
        (NOTEBOOK, "kms:GenerateDataKey"),
        (TRAINING, "kms:Decrypt"),
        (SCIENTIST, "kms:Decrypt"),
    } <= through_s3
    # the training job's one ReEncrypt is a direct call on the key
    direct = {(u.principal, u.action) for u in on_key if u.direct}
    assert (TRAINING, "kms:ReEncryptFrom") in direct
    assert all(u.principal != SCIENTIST for u in on_key if u.direct)
    # S3 writes that named the key (SSE-KMS headers / bucket default) are listed apart
    named = [u for u in uses if u.matched == "kms_key"]
    assert any(u.principal == NOTEBOOK and u.action == "s3:PutObject" for u in named)
    summary = {s.principal: s for s in summarize_uses(uses)}
    assert summary[SCIENTIST].direct_calls == 0
    assert dict(summary[SCIENTIST].via_calls)["s3.amazonaws.com"] == summary[SCIENTIST].calls


def test_who_used_bucket_pattern_shows_endpoints_and_athena(sample_graph: object) -> None:
    uses = who_used(sample_graph, "arn:aws:s3:::acme-ml-*")
    summary = {s.principal: s for s in summarize_uses(uses)}
    assert set(summary) == {NOTEBOOK, TRAINING, SCIENTIST, PARTNER}
    assert summary[NOTEBOOK].vpc_endpoints == (VPCE,)
    assert summary[TRAINING].vpc_endpoints == (VPCE,)
    assert summary[PARTNER].vpc_endpoints == ()
    assert dict(summary[SCIENTIST].via_calls).get("athena.amazonaws.com", 0) > 0
    assert summary[SCIENTIST].denied_calls == 2  # PutBucketPolicy x2 on acme-ml-datasets
    assert principals_of(
        sample_graph, f"arn:aws:kms:us-east-1:{ACCOUNT}:key/9f8e7d6c-5b4a-3928-1716-0f1e2d3c4b5a"
    ) == sorted([NOTEBOOK, TRAINING, PARTNER])


def test_sample_graph_exports_round_trip(sample_store: Store, tmp_path: Path) -> None:
    g = build_selected_graph(sample_store.principals(), sample_store.usage(), only_principals=[NOTEBOOK])
    assert actions_of(g, TRAINING) == []
    text = to_graphml(g)
    back = from_graphml(text)
    assert (back.number_of_nodes(), back.number_of_edges()) == (g.number_of_nodes(), g.number_of_edges())
    node = back.nodes[f"principal:{NOTEBOOK}"]
    assert (node["kind"], node["principal_kind"], node["calls"]) == (
        "principal",
        "role",
        g.nodes[f"principal:{NOTEBOOK}"]["calls"],
    )
    key_edges = [d for _, v, d in back.in_edges(f"resource:{DATASETS_KEY}", data=True)]
    assert {d["via_service"] for d in key_edges} == {"s3.amazonaws.com"}
    # the file nx.write_graphml writes and ours agree
    path = tmp_path / "g.graphml"
    path.write_text(text)
    assert nx.read_graphml(path, force_multigraph=True).number_of_edges() == g.number_of_edges()
    # deterministic
    assert (
        to_graphml(
            build_selected_graph(sample_store.principals(), sample_store.usage(), only_principals=[NOTEBOOK])
        )
        == text
    )
    data = json.loads(to_node_link_json(g))
    assert {n["kind"] for n in data["nodes"]} == {"principal", "action", "resource"}
    assert len(data["edges"]) == g.number_of_edges()
    dot = to_dot(g)
    assert dot.startswith("digraph iamtrim {") and dot.rstrip().endswith("}")
    assert f'"principal:{NOTEBOOK}" -> "action:s3:GetObject"' in dot
    assert "via s3" in dot and VPCE in dot


# -- the real corpus -----------------------------------------------------------------------------


@pytest.mark.corpus
def test_corpus_graph_exports_and_answers(corpus: Path) -> None:
    with load_events([corpus / "cloudtrail"], workers=1) as st:
        principals, rows = st.principals(), st.usage()
    g = build_graph(principals, rows)
    assert g.number_of_nodes() > 100
    back = from_graphml(to_graphml(g))
    assert (back.number_of_nodes(), back.number_of_edges()) == (g.number_of_nodes(), g.number_of_edges())
    json.loads(to_node_link_json(g))
    assert to_dot(g).count(" -> ") == g.number_of_edges()
    # every used row is found again by who-used on its own resource
    for r in rows:
        if r.outcome is Outcome.USED and r.resource and "*" not in r.resource and "?" not in r.resource:
            uses = who_used(g, r.resource)
            assert any(u.principal == r.principal and u.action == r.action for u in uses), r
    # every KMS use through a service in the corpus keeps its service
    kms_via = [r for r in rows if r.action.startswith("kms:") and r.context.invoked_by and r.resource]
    for r in kms_via:
        assert any(u.via_service == r.context.invoked_by for u in who_used(g, r.resource or ""))
