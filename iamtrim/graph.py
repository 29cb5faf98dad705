"""The usage graph (the only import of networkx).

Nodes: ``principal:<arn>``, ``action:<prefix:Name>``, ``resource:<arn>``. Edges:
* principal → action (``kind="uses"``): calls, denied calls, first/last seen;
* action → resource, keyed by principal (``kind="on"``, ``principal=<arn>``): calls, first/last
  seen, outcome, and the context marks (VPC endpoints, KMS keys, services acting on the caller's
  behalf).
It answers "what did P use", "who used resource R" and "who used key K, through which service".
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import networkx as nx

from iamtrim.model import Outcome, Principal, UsageRow


def _p(arn: str) -> str:
    return f"principal:{arn}"


def _a(action: str) -> str:
    return f"action:{action}"


def _r(resource: str | None) -> str:
    return f"resource:{resource or '(unknown)'}"


def build_graph(principals: Iterable[Principal], rows: Iterable[UsageRow]) -> Any:
    """A ``networkx.MultiDiGraph`` of the usage rows."""
    g = nx.MultiDiGraph()
    for p in principals:
        g.add_node(_p(p.arn), kind="principal", arn=p.arn, principal_kind=str(p.kind), account=p.account,
                   name=p.name)
    for row in rows:
        pn, an, rn = _p(row.principal), _a(row.action), _r(row.resource)
        if pn not in g:
            g.add_node(pn, kind="principal", arn=row.principal)
        if an not in g:
            g.add_node(an, kind="action", action=row.action, service=row.action.split(":")[0])
        if rn not in g:
            g.add_node(rn, kind="resource", arn=row.resource or "")
        denied = row.outcome is Outcome.DENIED
        if g.has_edge(pn, an, key="uses"):
            e = g.edges[pn, an, "uses"]
            e["calls"] += 0 if denied else row.count
            e["denied"] += row.count if denied else 0
            e["first_seen"] = min(e["first_seen"], row.first_seen)
            e["last_seen"] = max(e["last_seen"], row.last_seen)
        else:
            g.add_edge(pn, an, key="uses", kind="uses", calls=0 if denied else row.count,
                       denied=row.count if denied else 0, first_seen=row.first_seen, last_seen=row.last_seen)
        key = f"{row.principal}|{row.outcome}"
        c = row.context
        if g.has_edge(an, rn, key=key):
            e = g.edges[an, rn, key]
            e["calls"] += row.count
            e["first_seen"] = min(e["first_seen"], row.first_seen)
            e["last_seen"] = max(e["last_seen"], row.last_seen)
            for attr, value in (("vpc_endpoints", c.vpc_endpoint), ("kms_keys", c.kms_key),
                                ("via_services", c.invoked_by)):
                if value and value not in e[attr].split(","):
                    e[attr] = ",".join(sorted(filter(None, [*e[attr].split(","), value])))
        else:
            g.add_edge(an, rn, key=key, kind="on", principal=row.principal, outcome=str(row.outcome),
                       calls=row.count, first_seen=row.first_seen, last_seen=row.last_seen,
                       vpc_endpoints=c.vpc_endpoint, kms_keys=c.kms_key, via_services=c.invoked_by)
    return g


@dataclass(frozen=True, slots=True)
class ResourceUse:
    principal: str
    action: str
    resource: str
    calls: int
    last_seen: str
    outcome: str
    vpc_endpoints: tuple[str, ...]
    via_services: tuple[str, ...]


def who_used(graph: Any, pattern: str) -> list[ResourceUse]:
    """Every principal that used a resource matching *pattern* (an ARN or an IAM-style ``*`` pattern)."""
    out = []
    for node, data in graph.nodes(data=True):
        if data.get("kind") != "resource" or not fnmatch.fnmatchcase(data.get("arn", ""), pattern):
            continue
        for action_node, _, edata in graph.in_edges(node, data=True):
            out.append(ResourceUse(
                principal=edata["principal"], action=graph.nodes[action_node]["action"], resource=data["arn"],
                calls=edata["calls"], last_seen=edata["last_seen"], outcome=edata["outcome"],
                vpc_endpoints=tuple(filter(None, edata["vpc_endpoints"].split(","))),
                via_services=tuple(filter(None, edata["via_services"].split(","))),
            ))
    return sorted(out, key=lambda u: (u.resource, u.principal, u.action, u.outcome))


def actions_of(graph: Any, principal_arn: str) -> list[str]:
    node = _p(principal_arn)
    if node not in graph:
        return []
    return sorted(graph.nodes[a]["action"] for _, a, k in graph.out_edges(node, keys=True) if k == "uses")


def to_node_link_json(graph: Any) -> str:
    return json.dumps(nx.node_link_data(graph, edges="edges"), sort_keys=True, indent=1)
