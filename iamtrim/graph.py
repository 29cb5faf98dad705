"""The usage graph (the only import of networkx).

A ``networkx.MultiDiGraph`` with three kinds of node and two kinds of edge. Every attribute is a
string or an integer so that GraphML, node-link JSON and DOT carry it unchanged (documented for
users in docs/commands/graph.md).

Nodes (id → attributes):

* ``principal:<arn>`` — ``kind="principal"``, ``label``, ``arn``, ``principal_kind``, ``account``,
  ``name``, ``calls`` (authorized calls), ``denied`` (denied calls);
* ``action:<prefix:Name>`` — ``kind="action"``, ``label``, ``action``, ``service``, ``calls``,
  ``denied``;
* ``resource:<arn>`` — ``kind="resource"``, ``label``, ``arn`` (``*`` for actions without
  resource-level permissions, ``""`` when the record did not say), ``service``, ``group`` (the
  bucket/prefix or resource family the picture folds it into), ``calls``, ``denied``.

Edges:

* principal → action, key ``"uses"`` — ``kind="uses"``, ``calls``, ``denied``, ``first_seen``,
  ``last_seen``;
* action → resource, key ``"<principal>|<outcome>|<via service>"`` — ``kind="on"``, ``principal``,
  ``outcome`` (``used``/``denied``), ``via_service`` (the service that called on the principal's
  behalf, ``userIdentity.invokedBy``; ``""`` for a direct call), ``calls``, ``first_seen``,
  ``last_seen``, ``vpc_endpoints`` and ``kms_keys`` (comma-separated, sorted).

Direct and service-made calls are separate edges because policies treat them differently: a KMS
key used only through S3 can be pinned with ``kms:ViaService``
(https://docs.aws.amazon.com/kms/latest/developerguide/conditions-kms.html#conditions-kms-via-service).
"""

from __future__ import annotations

import io
import json
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from iamtrim.model import (
    Outcome,
    Principal,
    UsageRow,
    has_wildcard,
    literal_of,
    pattern_covers,
    whole_escapes,
)


def _nx() -> Any:
    """networkx, imported on first use: it takes ~0.15 s to import, and the commands that never
    build a graph (ingest, principals, usage, generate-policy) should not pay for it."""
    import networkx

    return networkx


UNKNOWN_RESOURCE = "(unknown)"


def _p(arn: str) -> str:
    return f"principal:{arn}"


def _a(action: str) -> str:
    return f"action:{action}"


def _r(resource: str | None) -> str:
    return f"resource:{resource or UNKNOWN_RESOURCE}"


def _split(value: str) -> list[str]:
    return [v for v in value.split(",") if v]


def _merge(joined: str, value: str) -> str:
    return ",".join(sorted({*_split(joined), value} - {""}))


# -- resource names ----------------------------------------------------------------------------


def arn_service(arn: str) -> str:
    parts = arn.split(":", 5)
    return parts[2] if len(parts) > 2 and parts[0] == "arn" else ""


def short_resource(arn: str) -> str:
    """The resource part of an ARN (``bucket/key``, ``key/1a2b…``, ``role/x``); ``*`` stays ``*``."""
    if not arn:
        return UNKNOWN_RESOURCE
    parts = arn.split(":", 5)
    if len(parts) < 6 or parts[0] != "arn":
        return arn
    return parts[5]


def resource_group(arn: str) -> str:
    """The family a resource is folded into in a picture.

    S3 objects: ``arn:aws:s3:::bucket/<first folder>/*``; CloudWatch Logs streams: their log group;
    everything else: itself (families of many similar resources are folded later, by count).
    """
    if not arn or arn == "*":
        return arn
    service = arn_service(arn)
    rest = short_resource(arn)
    if service == "s3" and "/" in rest:
        bucket, _, key = rest.partition("/")
        folder = key.split("/", 1)[0] if "/" in key else ""
        return f"arn:aws:s3:::{bucket}/{folder}/*" if folder else f"arn:aws:s3:::{bucket}/*"
    if service == "logs" and ":log-stream:" in arn:
        return arn.split(":log-stream:", 1)[0]
    return arn


def resource_label(arn: str) -> str:
    if arn == "*":
        return "* (no resource-level permission)"
    return short_resource(arn)


# -- building ----------------------------------------------------------------------------------


def build_graph(principals: Iterable[Principal], rows: Iterable[UsageRow]) -> Any:
    """A ``networkx.MultiDiGraph`` of the usage rows (see the module docstring for attributes)."""
    g = _nx().MultiDiGraph()
    for p in principals:
        g.add_node(
            _p(p.arn),
            kind="principal",
            label=p.name or p.arn,
            arn=p.arn,
            principal_kind=str(p.kind),
            account=p.account,
            name=p.name,
            calls=0,
            denied=0,
        )
    for row in rows:
        pn, an, rn = _p(row.principal), _a(row.action), _r(row.resource)
        denied = row.outcome is Outcome.DENIED
        used_calls, denied_calls = (0, row.count) if denied else (row.count, 0)
        if pn not in g:
            g.add_node(
                pn,
                kind="principal",
                label=row.principal,
                arn=row.principal,
                principal_kind="",
                account="",
                name="",
                calls=0,
                denied=0,
            )
        if an not in g:
            g.add_node(
                an,
                kind="action",
                label=row.action,
                action=row.action,
                service=row.action.split(":")[0],
                calls=0,
                denied=0,
            )
        if rn not in g:
            arn = row.resource or ""
            g.add_node(
                rn,
                kind="resource",
                label=resource_label(arn) if arn else UNKNOWN_RESOURCE,
                arn=arn,
                service=arn_service(arn) or row.action.split(":")[0],
                group=resource_group(arn),
                calls=0,
                denied=0,
            )
        for node in (pn, an, rn):
            g.nodes[node]["calls"] += used_calls
            g.nodes[node]["denied"] += denied_calls
        if g.has_edge(pn, an, key="uses"):
            e = g.edges[pn, an, "uses"]
            e["calls"] += used_calls
            e["denied"] += denied_calls
            e["first_seen"] = min(e["first_seen"], row.first_seen)
            e["last_seen"] = max(e["last_seen"], row.last_seen)
        else:
            g.add_edge(
                pn,
                an,
                key="uses",
                kind="uses",
                calls=used_calls,
                denied=denied_calls,
                first_seen=row.first_seen,
                last_seen=row.last_seen,
            )
        c = row.context
        key = f"{row.principal}|{row.outcome}|{c.invoked_by}"
        if g.has_edge(an, rn, key=key):
            e = g.edges[an, rn, key]
            e["calls"] += row.count
            e["first_seen"] = min(e["first_seen"], row.first_seen)
            e["last_seen"] = max(e["last_seen"], row.last_seen)
            e["vpc_endpoints"] = _merge(e["vpc_endpoints"], c.vpc_endpoint)
            e["kms_keys"] = _merge(e["kms_keys"], c.kms_key)
        else:
            g.add_edge(
                an,
                rn,
                key=key,
                kind="on",
                principal=row.principal,
                outcome=str(row.outcome),
                via_service=c.invoked_by,
                calls=row.count,
                first_seen=row.first_seen,
                last_seen=row.last_seen,
                vpc_endpoints=c.vpc_endpoint,
                kms_keys=c.kms_key,
            )
    return g


# -- patterns and selection --------------------------------------------------------------------


def resource_matches(pattern: str, resource: str) -> bool:
    """Whether a stored *resource* falls under *pattern*.

    A bucket ARN (``arn:aws:s3:::bucket``) also covers the bucket's objects. A stored resource that
    is itself a pattern (an S3 prefix folded to ``folder/*`` at ingest, a Secrets Manager
    ``name-??????``) matches a literal ARN it covers.
    """
    if not resource:
        return pattern in ("*", UNKNOWN_RESOURCE)
    # Stored resources are IAM patterns: a literal "*" a caller named is "${*}" there, matched
    # as the character it stands for; a bare "*" is a generalization iamtrim made (a folder).
    literal = literal_of(resource)
    if pattern_covers(pattern, resource):
        return True
    if (
        arn_service(pattern) == "s3"
        and "/" not in short_resource(pattern)
        and not has_wildcard(pattern)
        and literal.startswith(literal_of(pattern) + "/")
    ):
        return True
    return (
        has_wildcard(resource)
        and resource != "*"
        and not has_wildcard(pattern)
        and pattern_covers(resource, pattern)
    )


def select_rows(
    rows: Iterable[UsageRow], principals: Sequence[str] = (), resources: Sequence[str] = ()
) -> list[UsageRow]:
    """Rows of the given principals (ARNs) that touch a resource matching any of the patterns.

    An empty selector selects everything. For a KMS key pattern, rows of other services that named
    the key (an S3 ``PutObject`` with SSE-KMS) are kept too.
    """
    wanted = set(principals)
    out = []
    for row in rows:
        if wanted and row.principal not in wanted:
            continue
        if resources and not any(
            resource_matches(p, row.resource or "")
            or (row.context.kms_key and resource_matches(p, row.context.kms_key))
            for p in resources
        ):
            continue
        out.append(row)
    return out


def build_selected_graph(
    principals: Iterable[Principal],
    rows: Iterable[UsageRow],
    *,
    only_principals: Sequence[str] = (),
    only_resources: Sequence[str] = (),
) -> Any:
    """The graph of the rows :func:`select_rows` keeps, with only the principals that appear in them."""
    selected = select_rows(rows, only_principals, only_resources)
    seen = {r.principal for r in selected}
    return build_graph([p for p in principals if p.arn in seen], selected)


def is_empty(graph: Any) -> bool:
    return bool(graph.number_of_edges() == 0)


# -- questions ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ResourceUse:
    """One principal's calls of one action on one resource matching a who-used pattern."""

    principal: str
    action: str
    resource: str
    calls: int
    first_seen: str
    last_seen: str
    outcome: str
    via_service: str  # "" = the principal called directly
    vpc_endpoints: tuple[str, ...]
    kms_keys: tuple[str, ...]
    matched: str = "resource"  # "resource", or "kms_key": the call named a matching key (SSE-KMS)

    @property
    def direct(self) -> bool:
        return not self.via_service

    @property
    def via_services(self) -> tuple[str, ...]:
        return (self.via_service,) if self.via_service else ()


@dataclass(frozen=True, slots=True)
class PrincipalUse:
    """Everything one principal did with the resources matching a who-used pattern."""

    principal: str
    actions: tuple[str, ...]
    resources: int
    calls: int
    direct_calls: int
    via_calls: tuple[tuple[str, int], ...]  # (service, calls) for calls a service made for it
    denied_calls: int
    first_seen: str
    last_seen: str
    vpc_endpoints: tuple[str, ...]
    kms_keys: tuple[str, ...]
    key_named_calls: int = 0  # calls on other resources whose request named a matching KMS key


def who_used(graph: Any, pattern: str) -> list[ResourceUse]:
    """Every use of a resource matching *pattern* (an ARN or an IAM-style ``*``/``?`` pattern).

    Calls on a matching resource are ``matched="resource"``. When the pattern names KMS keys,
    calls on other resources whose request named a matching key (SSE-KMS writes to S3) are added
    as ``matched="kms_key"``, so "who used key K" also answers "through which bucket".
    """
    out = []
    key_pattern = arn_service(pattern) == "kms" or pattern == "*"
    for node, data in graph.nodes(data=True):
        if data.get("kind") != "resource":
            continue
        direct_match = resource_matches(pattern, data["arn"])
        for action_node, _, edata in graph.in_edges(node, data=True):
            if edata.get("kind") != "on":
                continue
            keys = tuple(_split(edata["kms_keys"]))
            if direct_match:
                matched = "resource"
            elif key_pattern and any(resource_matches(pattern, k) for k in keys):
                matched = "kms_key"
            else:
                continue
            out.append(
                ResourceUse(
                    principal=edata["principal"],
                    action=graph.nodes[action_node]["action"],
                    resource=data["arn"],
                    calls=edata["calls"],
                    first_seen=edata["first_seen"],
                    last_seen=edata["last_seen"],
                    outcome=edata["outcome"],
                    via_service=edata["via_service"],
                    vpc_endpoints=tuple(_split(edata["vpc_endpoints"])),
                    kms_keys=keys,
                    matched=matched,
                )
            )
    return sorted(
        out,
        key=lambda u: (u.matched != "resource", u.principal, u.via_service, u.action, u.resource, u.outcome),
    )


def summarize_uses(uses: Iterable[ResourceUse]) -> list[PrincipalUse]:
    """Fold who-used rows into one line per principal, most calls first."""
    by_principal: dict[str, list[ResourceUse]] = defaultdict(list)
    for u in uses:
        by_principal[u.principal].append(u)
    out = []
    for principal, rows in by_principal.items():
        used = [u for u in rows if u.outcome == Outcome.USED and u.matched == "resource"]
        named = [u for u in rows if u.outcome == Outcome.USED and u.matched != "resource"]
        via: dict[str, int] = defaultdict(int)
        for u in used:
            if u.via_service:
                via[u.via_service] += u.calls
        out.append(
            PrincipalUse(
                principal=principal,
                actions=tuple(sorted({u.action for u in used + named})),
                resources=len({u.resource for u in used}),
                calls=sum(u.calls for u in used),
                direct_calls=sum(u.calls for u in used if u.direct),
                via_calls=tuple(sorted(via.items())),
                denied_calls=sum(u.calls for u in rows if u.outcome == Outcome.DENIED),
                first_seen=min(u.first_seen for u in rows),
                last_seen=max(u.last_seen for u in rows),
                vpc_endpoints=tuple(sorted({e for u in used for e in u.vpc_endpoints})),
                kms_keys=tuple(sorted({k for u in used for k in u.kms_keys})),
                key_named_calls=sum(u.calls for u in named),
            )
        )
    return sorted(out, key=lambda s: (-s.calls, s.principal))


def actions_of(graph: Any, principal_arn: str) -> list[str]:
    node = _p(principal_arn)
    if node not in graph:
        return []
    return sorted(graph.nodes[a]["action"] for _, a, k in graph.out_edges(node, keys=True) if k == "uses")


def principals_of(graph: Any, resource_arn: str) -> list[str]:
    """The principals that used *resource_arn* (authorized calls only), sorted."""
    node = _r(resource_arn)
    if node not in graph:
        return []
    return sorted(
        {d["principal"] for _, _, d in graph.in_edges(node, data=True) if d.get("outcome") == Outcome.USED}
    )


# -- export ------------------------------------------------------------------------------------


# Characters XML 1.0 cannot hold at all, even escaped (https://www.w3.org/TR/xml/#charsets).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _xml_safe(value: Any) -> Any:
    if isinstance(value, str) and _NOT_XML.search(value):
        return _NOT_XML.sub(lambda m: f"\\x{ord(m.group(0)):02x}", value)
    return value


def to_graphml(graph: Any) -> str:
    """GraphML (Gephi and yEd open it; ``networkx.read_graphml`` reads it back). A control
    character a record held is written visibly (``\\x1b``): XML has no way to carry it."""
    safe = graph.__class__()
    safe.graph.update({k: _xml_safe(v) for k, v in graph.graph.items()})
    for node, data in graph.nodes(data=True):
        safe.add_node(_xml_safe(node), **{k: _xml_safe(v) for k, v in data.items()})
    edges = graph.edges(keys=True, data=True) if graph.is_multigraph() else graph.edges(data=True)
    for *ends, data in edges:
        attrs = {k: _xml_safe(v) for k, v in data.items()}
        if graph.is_multigraph():
            safe.add_edge(_xml_safe(ends[0]), _xml_safe(ends[1]), key=_xml_safe(ends[2]), **attrs)
        else:
            safe.add_edge(_xml_safe(ends[0]), _xml_safe(ends[1]), **attrs)
    buf = io.BytesIO()
    _nx().write_graphml_xml(safe, buf, encoding="utf-8", prettyprint=True)
    return buf.getvalue().decode("utf-8")


def from_graphml(text: str) -> Any:
    return _nx().read_graphml(io.BytesIO(text.encode("utf-8")), force_multigraph=True)


def to_node_link_json(graph: Any) -> str:
    """networkx node-link JSON (``{"nodes": [...], "edges": [...]}``, D3-friendly)."""
    return json.dumps(_nx().node_link_data(graph, edges="edges"), sort_keys=True, indent=1)


def _dot_id(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _dot_attrs(attrs: dict[str, Any]) -> str:
    return ", ".join(f"{k}={_dot_id(str(v))}" for k, v in sorted(attrs.items()))


_DOT_STYLE = {
    "principal": {"shape": "box", "style": "rounded,filled", "fillcolor": "#dbe9f6"},
    "action": {"shape": "box", "style": "filled", "fillcolor": "#f3f3f3"},
    "resource": {"shape": "note", "style": "filled", "fillcolor": "#fdf0d5"},
}


def to_dot(graph: Any) -> str:
    """Graphviz DOT text, left to right, with every node and edge attribute kept."""
    lines = [
        "digraph iamtrim {",
        "  rankdir=LR;",
        '  node [fontname="Helvetica", fontsize=10];',
        '  edge [fontname="Helvetica", fontsize=8];',
    ]
    for node, data in graph.nodes(data=True):
        attrs = {**_DOT_STYLE.get(data.get("kind", ""), {}), **data}
        lines.append(f"  {_dot_id(node)} [{_dot_attrs(attrs)}];")
    for u, v, key, data in graph.edges(keys=True, data=True):
        attrs = dict(data)
        attrs["key"] = key
        if data.get("kind") == "on":
            marks = [
                *_split(data["vpc_endpoints"]),
                *(k.rsplit("/", 1)[-1][:8] for k in _split(data["kms_keys"])),
            ]
            if data["via_service"]:
                marks.append("via " + data["via_service"].split(".")[0])
            attrs["label"] = f"{data['calls']}" + (f" ({', '.join(marks)})" if marks else "")
        else:
            attrs["label"] = str(data["calls"])
        if data.get("outcome") == Outcome.DENIED or (data.get("kind") == "uses" and not data["calls"]):
            attrs.update(color="#c0392b", style="dashed")
        lines.append(f"  {_dot_id(u)} -> {_dot_id(v)} [{_dot_attrs(attrs)}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


# -- the picture's model -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PictureNode:
    id: str
    column: int  # 0 principals, 1 actions, 2 resources
    group: str  # band the node is drawn in: "" (principals), the service, the bucket/resource family
    label: str
    calls: int
    denied: int
    title: str  # hover text: full ARN(s)
    more: int = 0  # a "+K more" node stands for this many hidden nodes


@dataclass(frozen=True, slots=True)
class PictureEdge:
    source: str
    target: str
    calls: int
    denied: int
    vpc_endpoints: tuple[str, ...] = ()
    kms_keys: tuple[str, ...] = ()
    via_services: tuple[str, ...] = ()
    principals: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Picture:
    """A summarized, layered view of a usage graph, ready to be drawn (see iamtrim.render.graph)."""

    title: str
    nodes: tuple[PictureNode, ...]
    edges: tuple[PictureEdge, ...]
    hidden: tuple[tuple[str, int], ...] = field(default=())  # (what, how many) left out by top-N


def _family(arn: str) -> tuple[str, str]:
    """(band, family) for a resource group: S3 by bucket, else by service and resource type."""
    if not arn or arn == "*":
        return ("no resource", arn or UNKNOWN_RESOURCE)
    service = arn_service(arn)
    rest = short_resource(arn)
    if service == "s3":
        return ("s3 " + rest.split("/", 1)[0], arn)
    rtype = re.split(r"[/:]", rest, maxsplit=1)[0] if re.search(r"[/:]", rest) else ""
    return (f"{service} {rtype}".strip(), arn)


# (action node, resource group, principal ARN, action → resource edge data)
_Row = tuple[str, str, str, dict[str, Any]]


def _top_principals(graph: Any, top: int) -> tuple[list[str], int]:
    """The *top* principal nodes by calls (denied included), and how many more had calls."""
    principals = [(n, d) for n, d in graph.nodes(data=True) if d["kind"] == "principal"]
    principals.sort(key=lambda nd: (-(nd[1]["calls"] + nd[1]["denied"]), nd[0]))
    shown_p = [n for n, d in principals if d["calls"] + d["denied"]][:top]
    hidden_p = len([n for n, d in principals if d["calls"] + d["denied"]]) - len(shown_p)
    return shown_p, hidden_p


def _top_actions(graph: Any, shown_p: list[str], top: int) -> tuple[dict[str, list[int]], set[str], int]:
    """[used, denied] per action over the shown principals, the top 2×*top* and how many more."""
    action_tot: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for p in shown_p:
        for _, a, d in graph.out_edges(p, data=True):
            action_tot[a][0] += d["calls"]
            action_tot[a][1] += d["denied"]
    actions = sorted(action_tot, key=lambda a: (-sum(action_tot[a]), a))
    shown_a = set(actions[: top * 2])
    return action_tot, shown_a, len(actions) - len(shown_a)


def _resource_rows(
    graph: Any, shown_a: set[str], shown_p: list[str]
) -> tuple[list[_Row], dict[str, set[str]]]:
    """The shown principals' shown actions on resources, each resource put in its group."""
    shown_p_set = {graph.nodes[n]["arn"] for n in shown_p}
    raw: list[tuple[str, str, str, dict[str, Any]]] = []  # (action, resource arn, principal, data)
    for a in shown_a:
        for _, r, d in graph.out_edges(a, data=True):
            if d["principal"] in shown_p_set:
                raw.append((a, graph.nodes[r]["arn"], d["principal"], d))
    group_of = {arn: resource_group(arn) for _, arn, _, _ in raw}
    group_of.update(_s3_groups({arn for _, arn, _, _ in raw if arn_service(arn) == "s3"}))
    arn_of_group: dict[str, set[str]] = defaultdict(set)
    edge_rows: list[_Row] = []  # (action, group, principal, data)
    for a, arn, principal, d in raw:
        arn_of_group[group_of[arn]].add(arn)
        edge_rows.append((a, group_of[arn], principal, d))
    return edge_rows, arn_of_group


def _fold_families(
    edge_rows: list[_Row], arn_of_group: dict[str, set[str]]
) -> tuple[dict[str, str], dict[str, list[int]], dict[str, set[str]]]:
    """Fold families of many single resources of one type: ≥4 siblings share one node.

    Returns the fold (group → family pattern), [used, denied] and the member ARNs per final group.
    """
    group_tot: dict[str, list[int]] = defaultdict(lambda: [0, 0])  # [used, denied]
    for _, grp, _, d in edge_rows:
        group_tot[grp][d["outcome"] == Outcome.DENIED] += d["calls"]
    family_members: dict[tuple[str, str], list[str]] = defaultdict(list)
    for grp in group_tot:
        band, _ = _family(grp)
        if grp in arn_of_group and len(arn_of_group[grp]) == 1 and arn_service(grp) not in ("s3", "kms"):
            family_members[(band, _type_prefix(grp))].append(grp)
    fold: dict[str, str] = {}
    for (_, prefix), members in family_members.items():
        if len(members) >= 4 and prefix:
            common = _common_prefix(members)
            for m in members:
                fold[m] = common + "*"
    final_tot: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    final_members: dict[str, set[str]] = defaultdict(set)
    for grp, tot in group_tot.items():
        final = fold.get(grp, grp)
        final_tot[final][0] += tot[0]
        final_tot[final][1] += tot[1]
        final_members[final] |= arn_of_group[grp]
    return fold, final_tot, final_members


def _principal_and_action_nodes(
    graph: Any,
    shown_p: list[str],
    hidden_p: int,
    action_tot: dict[str, list[int]],
    shown_a: set[str],
    hidden_a: int,
) -> list[PictureNode]:
    nodes: list[PictureNode] = []
    for p in shown_p:
        d = graph.nodes[p]
        nodes.append(
            PictureNode(p, 0, "principals", d["label"] or d["arn"], d["calls"], d["denied"], d["arn"])
        )
    if hidden_p:
        nodes.append(
            PictureNode(
                "more:principals", 0, "principals", f"+{hidden_p} more principals", 0, 0, "", more=hidden_p
            )
        )
    for a in sorted(shown_a, key=lambda a: (graph.nodes[a]["service"], a)):
        d = graph.nodes[a]
        nodes.append(
            PictureNode(
                a,
                1,
                d["service"],
                d["action"].split(":", 1)[1],
                action_tot[a][0],
                action_tot[a][1],
                d["action"],
            )
        )
    if hidden_a:
        nodes.append(
            PictureNode("more:actions", 1, "more", f"+{hidden_a} more actions", 0, 0, "", more=hidden_a)
        )
    return nodes


def _group_nodes(
    shown_g: set[str], hidden_g: int, final_tot: dict[str, list[int]], final_members: dict[str, set[str]]
) -> list[PictureNode]:
    nodes: list[PictureNode] = []
    for grp in sorted(shown_g, key=lambda g: (_family(g)[0], g)):
        members = sorted(final_members[grp])
        band = _family(grp)[0]
        label = resource_label(grp) if grp else UNKNOWN_RESOURCE
        if arn_service(grp) == "s3":
            bucket, _, key = short_resource(grp).partition("/")
            label = "/" + key if key else bucket
        if len(members) > 1:
            label += f"  ({len(members)})"
        tip = "\n".join(members[:20]) + (f"\n… {len(members) - 20} more" if len(members) > 20 else "")
        nodes.append(PictureNode("group:" + grp, 2, band, label, final_tot[grp][0], final_tot[grp][1], tip))
    if hidden_g:
        nodes.append(
            PictureNode(
                "more:resources", 2, "more", f"+{hidden_g} more resource groups", 0, 0, "", more=hidden_g
            )
        )
    return nodes


def _picture_edges(
    graph: Any,
    shown_p: list[str],
    shown_a: set[str],
    shown_g: set[str],
    edge_rows: list[_Row],
    fold: dict[str, str],
) -> list[PictureEdge]:
    """principal → action, and action → resource group (aggregated over principals)."""
    edges: list[PictureEdge] = []
    for p in shown_p:
        for _, a, d in sorted(graph.out_edges(p, data=True), key=lambda e: e[1]):
            target = a if a in shown_a else "more:actions"
            edges.append(PictureEdge(p, target, d["calls"], d["denied"], principals=(graph.nodes[p]["arn"],)))
    agg: dict[tuple[str, str], dict[str, Any]] = {}
    for a, grp, principal, d in edge_rows:
        final = fold.get(grp, grp)
        target = "group:" + final if final in shown_g else "more:resources"
        acc = agg.setdefault(
            (a, target),
            {"calls": 0, "denied": 0, "vpce": set(), "keys": set(), "via": set(), "principals": set()},
        )
        if d["outcome"] == Outcome.DENIED:
            acc["denied"] += d["calls"]
        else:
            acc["calls"] += d["calls"]
        acc["vpce"] |= set(_split(d["vpc_endpoints"]))
        acc["keys"] |= set(_split(d["kms_keys"]))
        if d["via_service"]:
            acc["via"].add(d["via_service"])
        acc["principals"].add(principal)
    for (a, target), acc in sorted(agg.items()):
        edges.append(
            PictureEdge(
                a,
                target,
                acc["calls"],
                acc["denied"],
                tuple(sorted(acc["vpce"])),
                tuple(sorted(acc["keys"])),
                tuple(sorted(acc["via"])),
                tuple(sorted(acc["principals"])),
            )
        )
    return edges


def _merge_edges(edges: list[PictureEdge]) -> tuple[PictureEdge, ...]:
    """Merge duplicate principal → "+more actions" edges."""
    merged: dict[tuple[str, str], PictureEdge] = {}
    for e in edges:
        k = (e.source, e.target)
        if k in merged:
            o = merged[k]
            merged[k] = PictureEdge(
                e.source,
                e.target,
                o.calls + e.calls,
                o.denied + e.denied,
                o.vpc_endpoints,
                o.kms_keys,
                o.via_services,
                tuple(sorted({*o.principals, *e.principals})),
            )
        else:
            merged[k] = e
    return tuple(merged.values())


def picture(graph: Any, *, title: str = "", top: int = 12) -> Picture:
    """Summarize *graph* for drawing: top-*top* principals, actions and resource groups by calls.

    Resources are folded into groups (S3 folders, log groups; then families of more than three
    resources of one type, e.g. 16 training jobs → ``training-job/churn-xgb-*``). Whatever does not
    make the cut becomes one ``+K more`` node per column, so a big graph stays readable.
    """
    top = max(top, 1)
    shown_p, hidden_p = _top_principals(graph, top)
    action_tot, shown_a, hidden_a = _top_actions(graph, shown_p, top)
    # resource groups over the shown principals' shown actions
    edge_rows, arn_of_group = _resource_rows(graph, shown_a, shown_p)
    fold, final_tot, final_members = _fold_families(edge_rows, arn_of_group)
    groups = sorted(final_tot, key=lambda g: (-sum(final_tot[g]), g))
    shown_g = set(groups[: top * 2])
    hidden_g = len(groups) - len(shown_g)

    nodes = _principal_and_action_nodes(graph, shown_p, hidden_p, action_tot, shown_a, hidden_a)
    nodes += _group_nodes(shown_g, hidden_g, final_tot, final_members)
    edges = _picture_edges(graph, shown_p, shown_a, shown_g, edge_rows, fold)
    hidden = tuple(
        (what, n)
        for what, n in (("principals", hidden_p), ("actions", hidden_a), ("resource groups", hidden_g))
        if n
    )
    return Picture(title, tuple(nodes), _merge_edges(edges), hidden)


S3_GROUPS_PER_BUCKET = 4


def _s3_groups(arns: set[str]) -> dict[str, str]:
    """Fold S3 object ARNs into folders, as deep as keeps each bucket to a few groups.

    ``datasets/churn/2026-10-01/part-0.parquet`` → ``datasets/churn/*`` when the bucket's keys
    share that folder, ``datasets/*`` when two levels would give more than
    ``S3_GROUPS_PER_BUCKET`` groups. Bucket ARNs stay themselves.
    """
    by_bucket: dict[str, list[tuple[str, list[str]]]] = defaultdict(list)
    out: dict[str, str] = {}
    for arn in arns:
        bucket, sep, key = short_resource(arn).partition("/")
        if not sep:
            out[arn] = arn
            continue
        by_bucket[bucket].append((arn, key.split("/")[:-1]))
    for bucket, objects in by_bucket.items():
        for depth in (3, 2, 1, 0):
            folders = {"/".join(parts[:depth]) for _, parts in objects}
            if len(folders) <= S3_GROUPS_PER_BUCKET or depth == 0:
                break
        for arn, parts in objects:
            folder = "/".join(parts[:depth])
            out[arn] = f"arn:aws:s3:::{bucket}/{folder}/*" if folder else f"arn:aws:s3:::{bucket}/*"
    return out


def _type_prefix(arn: str) -> str:
    rest = short_resource(arn)
    m = re.match(r"[^/:]+[/:]", rest)
    return m.group(0) if m else ""


def _common_prefix(values: Sequence[str]) -> str:
    first, last = min(values), max(values)
    i = 0
    while i < min(len(first), len(last)) and first[i] == last[i]:
        i += 1
    prefix = whole_escapes(first[:i])
    # cut back to a readable boundary (after a separator) so the label is not mid-word
    cut = max(prefix.rfind(ch) for ch in "/:-_")
    return prefix[: cut + 1] if cut >= len(prefix) - 12 and cut > 0 else prefix
