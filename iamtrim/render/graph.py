"""Draw a summarized usage graph as SVG (written here, no Graphviz), and PNG when resvg-py is present.

Layout: three columns — principals | actions, banded by service | resources, banded by bucket or
resource family — joined by curves whose width grows with the number of calls. Calls through a
VPC endpoint, under a KMS key or made by a service on the caller's behalf carry a labelled mark
on the action → resource curve (``E1``, ``K1``, ``via s3``); the legend spells out each code.
Denied-only calls are red and dashed. Output is deterministic (same picture, same bytes).
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

from iamtrim.graph import Picture, PictureEdge, PictureNode, PrincipalUse, ResourceUse, resource_group
from iamtrim.render.common import json_text, scrub, terminal_safe, text_table

SVG_NS = "http://www.w3.org/2000/svg"
FONT = "DejaVu Sans, Helvetica, Arial, sans-serif"
CHAR_W = 6.3  # average glyph width at 11 px, for truncating labels to their box

COL_X = (20.0, 420.0, 800.0)
COL_W = (280.0, 230.0, 400.0)
ROW_H = 24.0
ROW_GAP = 6.0
BAND_HEAD = 18.0
BAND_GAP = 12.0
TOP = 96.0

COLORS = {
    "principal": "#dbe9f6",
    "action": "#f4f4f4",
    "resource": "#fdf0d5",
    "more": "#ffffff",
    "edge": "#7f8c9a",
    "denied": "#c0392b",
    "vpce": "#1e8449",
    "key": "#b9770e",
    "via": "#2e64a8",
}


@dataclass(frozen=True, slots=True)
class _Box:
    node: PictureNode
    x: float
    y: float
    w: float
    h: float

    @property
    def mid_y(self) -> float:
        return self.y + self.h / 2


def _fit(text: str, width: float) -> str:
    n = int(width / CHAR_W)
    return text if len(text) <= n else text[: max(n - 1, 1)] + "…"


def _layout(pic: Picture) -> tuple[dict[str, _Box], list[tuple[int, str, float, float]], float]:
    """Boxes by node id, band headers (column, band, y, height) and the total height."""
    boxes: dict[str, _Box] = {}
    bands: list[tuple[int, str, float, float]] = []
    heights = []
    columns: list[list[PictureNode]] = [[n for n in pic.nodes if n.column == c] for c in range(3)]
    placed: list[list[tuple[PictureNode, float]]] = []
    for col, nodes in enumerate(columns):
        y = 0.0
        current = None
        band_start = 0.0
        rows: list[tuple[PictureNode, float]] = []
        for node in nodes:
            if col > 0 and node.group != current:
                if current is not None:
                    bands.append((col, current, band_start, y - band_start))
                    y += BAND_GAP
                current = node.group
                band_start = y
                y += BAND_HEAD
            rows.append((node, y))
            y += ROW_H + ROW_GAP
        if col > 0 and current is not None:
            bands.append((col, current, band_start, y - band_start))
        placed.append(rows)
        heights.append(y)
    total = max([*heights, ROW_H])
    offsets = [TOP + (total - h) / 2 for h in heights]
    for col, rows in enumerate(placed):
        for node, y in rows:
            boxes[node.id] = _Box(
                node, COL_X[col] + (8 if col else 0), offsets[col] + y, COL_W[col] - (16 if col else 0), ROW_H
            )
    bands = [(c, name, offsets[c] + y, h) for c, name, y, h in bands]
    return boxes, bands, TOP + total


def _sub(parent: ET.Element, tag: str, text: str | None = None, /, **attrs: str | float) -> ET.Element:
    el = ET.SubElement(
        parent, f"{{{SVG_NS}}}{tag}", {k.rstrip("_").replace("_", "-"): _num(v) for k, v in attrs.items()}
    )
    if text is not None:
        el.text = text
    return el


def _num(v: str | float) -> str:
    if isinstance(v, float):
        return f"{v:.1f}".rstrip("0").rstrip(".")
    return str(v)


def _width(calls: int) -> float:
    return round(min(1.0 + 1.4 * math.log10(calls + 1), 7.0), 1)


def _codes(values: list[str], letter: str) -> dict[str, str]:
    return {v: f"{letter}{i}" for i, v in enumerate(sorted(set(values)), start=1)}


def _marks(e: PictureEdge, vpce: dict[str, str], keys: dict[str, str]) -> list[tuple[str, str]]:
    out = [(vpce[v], "vpce") for v in e.vpc_endpoints]
    out += [(keys[k], "key") for k in e.kms_keys]
    out += [("via " + s.split(".")[0], "via") for s in e.via_services]
    return out


def _scrubbed(pic: Picture) -> Picture:
    """The picture with every string safe for XML 1.0, which admits no control characters."""
    # A node's hover text is one ARN per line: its newlines are the layout, kept; each line is
    # scrubbed like every other string.
    titles = ["\n".join(terminal_safe(line) for line in n.title.split("\n")) for n in pic.nodes]
    pic = scrub(pic)  # XML 1.0 admits no control characters; records may hold them
    return dataclasses.replace(
        pic, nodes=tuple(dataclasses.replace(n, title=t) for n, t in zip(pic.nodes, titles, strict=True))
    )


def _draw_header(svg: ET.Element, pic: Picture, width: float, height: float) -> None:
    """Title, background, the one-line summary and the column heads."""
    _sub(svg, "title", pic.title or "iamtrim usage graph")
    _sub(svg, "rect", x=0.0, y=0.0, width=width, height=height, fill="#ffffff", class_="background")
    _sub(
        svg,
        "text",
        pic.title or "iamtrim usage graph",
        x=20.0,
        y=28.0,
        font_size=16,
        font_weight="bold",
        class_="title",
    )
    summary = (
        f"{sum(1 for n in pic.nodes if n.column == 0 and not n.more)} principals, "
        f"{sum(1 for n in pic.nodes if n.column == 1 and not n.more)} actions, "
        f"{sum(1 for n in pic.nodes if n.column == 2 and not n.more)} resource groups"
    )
    if pic.hidden:
        summary += " shown; not shown: " + ", ".join(f"{n} {what}" for what, n in pic.hidden)
    _sub(svg, "text", summary, x=20.0, y=46.0, fill="#555555", class_="subtitle")
    for col, head in enumerate(("PRINCIPALS", "ACTIONS, BY SERVICE", "RESOURCES, BY BUCKET / FAMILY")):
        _sub(
            svg, "text", head, x=COL_X[col], y=76.0, font_weight="bold", fill="#333333", class_="column-head"
        )


def _draw_bands(svg: ET.Element, bands: list[tuple[int, str, float, float]]) -> None:
    g_bands = _sub(svg, "g", class_="bands")
    for col, name, y, h in bands:
        band = _sub(g_bands, "g", class_="band", data_column=str(col), data_band=name)
        _sub(
            band,
            "rect",
            x=COL_X[col],
            y=y,
            width=COL_W[col],
            height=h,
            rx=6.0,
            fill="#fafafa",
            stroke="#d5d8dc",
        )
        _sub(
            band,
            "text",
            _fit(name, COL_W[col] - 12),
            x=COL_X[col] + 8,
            y=y + 13,
            font_size=10,
            font_weight="bold",
            fill="#566573",
            class_="band-label",
        )


# A mark waiting to be placed: its centre (x, y), its width and its (text, kind) parts.
_Mark = tuple[float, float, float, list[tuple[str, str]]]


def _draw_edges(
    g_edges: ET.Element,
    edges: list[PictureEdge],
    boxes: dict[str, _Box],
    vpce: dict[str, str],
    keys: dict[str, str],
) -> list[_Mark]:
    """One curve per edge; returns the marks to place on them (drawn after, so they can stack)."""
    pending: list[_Mark] = []
    for e in edges:
        s, t = boxes[e.source], boxes[e.target]
        x1, y1, x2, y2 = s.x + s.w, s.mid_y, t.x, t.mid_y
        dx = (x2 - x1) / 2
        denied_only = e.denied and not e.calls
        pts = [(x1, y1), (x1 + dx, y1), (x2 - dx, y2), (x2, y2)]
        path = "M{} C{} {} {}".format(*(f"{_num(px)},{_num(py)}" for px, py in pts))
        attrs: dict[str, str | float] = {
            "d": path,
            "stroke": COLORS["denied"] if denied_only else COLORS["edge"],
            "stroke_width": _width(e.calls + e.denied),
            "stroke_opacity": 0.7,
            "class_": "edge denied" if denied_only else "edge",
            "data_source": e.source,
            "data_target": e.target,
            "data_calls": str(e.calls),
            "data_denied": str(e.denied),
        }
        if denied_only:
            attrs["stroke_dasharray"] = "5,3"
        el = _sub(g_edges, "path", **attrs)
        tip = f"{e.calls} calls" + (f", {e.denied} denied" if e.denied else "")
        if e.principals and s.node.column == 1:
            tip += "\nby " + ", ".join(e.principals)
        _sub(el, "title", tip)
        marks = _marks(e, vpce, keys)
        if e.denied and e.calls:
            marks.append((f"{e.denied} denied", "denied"))
        if marks:
            # at 70% of the curve, nearer the resource: marks of edges into one resource stack there
            t_ = 0.7
            mx = (
                (1 - t_) ** 3 * x1
                + 3 * (1 - t_) ** 2 * t_ * (x1 + dx)
                + 3 * (1 - t_) * t_**2 * (x2 - dx)
                + t_**3 * x2
            )
            my = (1 - t_) ** 3 * y1 + 3 * (1 - t_) ** 2 * t_ * y1 + 3 * (1 - t_) * t_**2 * y2 + t_**3 * y2
            pending.append((mx, my, len(" ".join(m for m, _ in marks)) * 5.6 + 8, marks))
    return pending


def _draw_marks(g_marks: ET.Element, pending: list[_Mark]) -> None:
    placed: list[tuple[float, float, float]] = []
    for mx, my, w, marks in sorted(pending, key=lambda p: (p[1], p[0])):
        # push a mark down until it clears the marks already drawn (they meet near shared targets)
        moved = True
        while moved:
            moved = False
            for px, py, pw in placed:
                if abs(px - mx) < (pw + w) / 2 + 2 and abs(py - my) < 15:
                    my = py + 15
                    moved = True
        placed.append((mx, my, w))
        text = " ".join(m for m, _ in marks)
        g = _sub(g_marks, "g", class_="mark", data_marks=text)
        _sub(
            g,
            "rect",
            x=mx - w / 2,
            y=my - 7,
            width=w,
            height=14.0,
            rx=7.0,
            fill="#ffffff",
            stroke=COLORS[marks[0][1]],
        )
        x = mx - w / 2 + 4
        for m, kind in marks:
            _sub(g, "text", m, x=x, y=my + 3.5, font_size=9, fill=COLORS[kind], class_="mark-" + kind)
            x += (len(m) + 1) * 5.6


def _draw_nodes(svg: ET.Element, boxes: dict[str, _Box], keys: dict[str, str]) -> None:
    g_nodes = _sub(svg, "g", class_="nodes")
    for box in boxes.values():
        n = box.node
        kind = "more" if n.more else ("principal", "action", "resource")[n.column]
        g = _sub(
            g_nodes,
            "g",
            class_=f"node {kind}",
            data_id=n.id,
            data_calls=str(n.calls),
            data_denied=str(n.denied),
        )
        if n.title:
            _sub(g, "title", n.title)
        _sub(
            g,
            "rect",
            x=box.x,
            y=box.y,
            width=box.w,
            height=box.h,
            rx=4.0 if n.column else 10.0,
            fill=COLORS[kind],
            stroke="#aab7b8",
            stroke_dasharray="4,2" if n.more else "none",
        )
        counts = "" if n.more else (f"{n.calls:,}" + (f" / {n.denied} denied" if n.denied else ""))
        label_w = box.w - 12 - len(counts) * CHAR_W
        label = f"{keys[n.title]}  {n.label}" if n.title in keys else n.label
        _sub(
            g,
            "text",
            _fit(label, label_w),
            x=box.x + 6,
            y=box.mid_y + 4,
            font_style="italic" if n.more else "normal",
            class_="label",
        )
        if counts:
            _sub(
                g,
                "text",
                counts,
                x=box.x + box.w - 6,
                y=box.mid_y + 4,
                text_anchor="end",
                fill=COLORS["denied"] if n.denied and not n.calls else "#666666",
                font_size=10,
                class_="count",
            )


def _draw_legend(svg: ET.Element, y: float, vpce: dict[str, str], keys: dict[str, str]) -> None:
    g_legend = _sub(svg, "g", class_="legend")
    _sub(
        g_legend,
        "text",
        "Curve width grows with calls; red dashed = only denied calls. Marks: "
        "E = VPC endpoint (aws:SourceVpce), K = KMS key, via = a service called on the principal's behalf "
        "(kms:ViaService).",
        x=20.0,
        y=y,
        fill="#555555",
        font_size=10,
    )
    y += 16
    for code_map, kind in ((vpce, "vpce"), (keys, "key")):
        for value, code in sorted(code_map.items(), key=lambda kv: int(kv[1][1:])):
            _sub(
                g_legend,
                "text",
                f"{code} = {value}",
                x=20.0,
                y=y,
                fill=COLORS[kind],
                font_size=10,
                class_="legend-" + kind,
            )
            y += 16


def to_svg(pic: Picture) -> str:
    """The picture as a standalone SVG document (UTF-8 text)."""
    pic = _scrubbed(pic)
    ET.register_namespace("", SVG_NS)
    boxes, bands, bottom = _layout(pic)
    edges = [e for e in pic.edges if e.source in boxes and e.target in boxes]
    vpce = _codes([v for e in edges for v in e.vpc_endpoints], "E")
    keys = _codes([k for e in edges for k in e.kms_keys], "K")
    legend_lines = 2 + len(vpce) + len(keys)
    height = bottom + 30 + legend_lines * 16
    width = COL_X[2] + COL_W[2] + 20
    svg = ET.Element(
        f"{{{SVG_NS}}}svg",
        {
            "width": _num(width),
            "height": _num(height),
            "viewBox": f"0 0 {_num(width)} {_num(height)}",
            "font-family": FONT,
            "font-size": "11",
        },
    )
    _draw_header(svg, pic, width, height)
    _draw_bands(svg, bands)
    # edges and marks are two groups made here, in this order, before the nodes drawn over them
    g_edges = _sub(svg, "g", class_="edges", fill="none")
    g_marks = _sub(svg, "g", class_="marks")
    _draw_marks(g_marks, _draw_edges(g_edges, edges, boxes, vpce, keys))
    _draw_nodes(svg, boxes, keys)
    _draw_legend(svg, bottom + 24, vpce, keys)
    ET.indent(svg, space=" ")
    return ET.tostring(svg, encoding="unicode", xml_declaration=False) + "\n"


# -- PNG ---------------------------------------------------------------------------------------

PNG_HINT = (
    "PNG output needs the resvg-py package (pip install resvg-py); SVG needs nothing: use --out FILE.svg"
)


def png_available() -> bool:
    """Whether resvg-py imports (an optional, pure-pip dependency: a Rust wheel, no system libraries)."""
    try:
        importlib.import_module("resvg_py")
    except ImportError:
        return False
    return True


def to_png(svg: str) -> bytes:
    """Rasterize the SVG with resvg (a Rust renderer shipped inside the resvg-py wheel).

    Text is drawn with the system's fonts (any sans-serif; DejaVu on Debian); a machine without
    fonts gets a picture without labels, so prefer SVG where labels matter.
    """
    import resvg_py

    data = resvg_py.svg_to_bytes(svg_string=svg, background="#ffffff")
    return bytes(data)


# -- who-used ----------------------------------------------------------------------------------


def who_used_json(pattern: str, uses: list[ResourceUse], summary: list[PrincipalUse]) -> str:
    doc = {
        "pattern": pattern,
        "principals": [
            {
                "principal": s.principal,
                "actions": list(s.actions),
                "resources": s.resources,
                "calls": s.calls,
                "direct_calls": s.direct_calls,
                "via_services": dict(s.via_calls),
                "denied_calls": s.denied_calls,
                "first_seen": s.first_seen,
                "last_seen": s.last_seen,
                "vpc_endpoints": list(s.vpc_endpoints),
                "kms_keys": list(s.kms_keys),
                "key_named_calls": s.key_named_calls,
            }
            for s in summary
        ],
        "uses": [
            {
                "principal": u.principal,
                "action": u.action,
                "resource": u.resource,
                "outcome": u.outcome,
                "direct": u.direct,
                "via_service": u.via_service,
                "calls": u.calls,
                "first_seen": u.first_seen,
                "last_seen": u.last_seen,
                "vpc_endpoints": list(u.vpc_endpoints),
                "kms_keys": list(u.kms_keys),
                "matched": u.matched,
            }
            for u in uses
        ],
    }
    return json_text(doc)


def _fold(uses: list[ResourceUse]) -> list[list[str]]:
    """Detail rows per (principal, via, action, resource group): S3 objects fold into folders."""
    acc: dict[tuple[str, str, str, str], list[Any]] = {}
    for u in uses:
        k = (u.principal, u.via_service, u.action, resource_group(u.resource) or u.resource)
        a = acc.setdefault(k, [0, "", set(), set()])
        a[0] += u.calls
        a[1] = max(a[1], u.last_seen)
        a[2].add(u.resource)
        a[3].update(u.vpc_endpoints)
    rows = []
    for (principal, via, action, grp), (calls, last, members, vpce) in sorted(acc.items()):
        where = grp if len(members) == 1 else f"{grp} ({len(members)} resources)"
        rows.append(
            [
                principal,
                via or "-",
                action,
                where or "(unknown)",
                str(calls),
                last,
                ",".join(sorted(vpce)) or "-",
            ]
        )
    return rows


def who_used_table(pattern: str, uses: list[ResourceUse], summary: list[PrincipalUse]) -> str:
    pattern, uses, summary = scrub((pattern, uses, summary))  # record-derived text, for a terminal
    if not uses:
        return f"no principal used {pattern} in this data"
    used = [u for u in uses if u.outcome == "used"]
    calls = sum(s.calls for s in summary)
    out = [f"who used {pattern}: {len(summary)} principal(s), {calls:,} calls", ""]
    out.append(
        text_table(
            [
                "PRINCIPAL",
                "CALLS",
                "DIRECT",
                "THROUGH A SERVICE",
                "DENIED",
                "LAST SEEN",
                "VPC ENDPOINTS",
                "ACTIONS",
            ],
            [
                [
                    s.principal,
                    str(s.calls),
                    str(s.direct_calls),
                    ", ".join(f"{svc} {n}" for svc, n in s.via_calls) or "-",
                    str(s.denied_calls),
                    s.last_seen,
                    ",".join(s.vpc_endpoints) or "-",
                    ", ".join(s.actions),
                ]
                for s in summary
            ],
        )
    )
    head = ["PRINCIPAL", "VIA", "ACTION", "RESOURCE", "CALLS", "LAST SEEN", "VPC ENDPOINT"]
    sections = (
        (
            "direct use (the principal made the call)",
            [u for u in used if u.direct and u.matched == "resource"],
        ),
        (
            "use through a service (userIdentity.invokedBy: a service called with the principal's "
            "permissions)",
            [u for u in used if not u.direct and u.matched == "resource"],
        ),
        (
            "calls that named a matching KMS key (SSE-KMS requests to another service)",
            [u for u in used if u.matched == "kms_key"],
        ),
        ("denied (refused by IAM: needed, never used)", [u for u in uses if u.outcome != "used"]),
    )
    for title, rows in sections:
        if rows:
            out += ["", f"{title}:", text_table(head, _fold(rows))]
    return "\n".join(out)
