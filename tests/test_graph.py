"""The usage graph: built from the store, answers who-used, round-trips through GraphML."""

from __future__ import annotations

import io
from pathlib import Path

import networkx as nx

from iamtrim.graph import actions_of, build_graph, who_used
from iamtrim.ingest import load_events
from tests.test_ingest import ROLE, s3_get, write_trail


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
    buf = io.BytesIO()
    nx.write_graphml(g, buf)
    back = nx.read_graphml(io.BytesIO(buf.getvalue()), force_multigraph=True)
    assert back.number_of_nodes() == g.number_of_nodes()
    assert back.number_of_edges() == g.number_of_edges()
