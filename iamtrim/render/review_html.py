"""``iamtrim review`` as one self-contained HTML page: inline CSS and SVG, no script, no network.

Two charts: granted vs used actions per principal (a log scale — an administrator role grants
20,000 actions and uses ten), and the findings of every stored run by severity (the trend).
Every text that came from the input (ARNs, policy names, messages) is HTML-escaped.
"""

from __future__ import annotations

import math
from html import escape

from iamtrim.render.review import by_account, findings_in
from iamtrim.review.history import ReviewReport, Status, Tracked
from iamtrim.review.job import PrincipalReview, Review

__all__ = ["FORMAT", "render", "to_html"]

FORMAT = "html"

_COLOURS = {"high": "#c0392b", "medium": "#e67e22", "low": "#2980b9", "info": "#95a5a6"}
_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:2em auto;max-width:1100px;
color:#222;padding:0 1em}
h1{font-size:1.5em;margin-bottom:.2em}h2{font-size:1.15em;margin-top:1.8em;border-bottom:1px solid #ddd}
.meta{color:#666}.caveat{background:#fff4e0;border-left:4px solid #e67e22;padding:.5em .8em;margin:.6em 0}
.cards{display:flex;gap:.8em;flex-wrap:wrap;margin:1em 0}.card{border:1px solid #ddd;border-radius:6px;
padding:.5em 1em;min-width:7em}.card b{display:block;font-size:1.6em}
table{border-collapse:collapse;width:100%;margin:.5em 0}th,td{border-bottom:1px solid #eee;padding:.3em .5em;
text-align:left;vertical-align:top}td.n,th.n{text-align:right}code{font-size:.92em;word-break:break-all}
.sev{display:inline-block;border-radius:3px;color:#fff;padding:0 .4em;font-size:.85em}
.sev-high{background:#c0392b}.sev-medium{background:#e67e22}.sev-low{background:#2980b9}
.sev-info{background:#95a5a6}svg text{font:12px system-ui,sans-serif;fill:#222}
"""


_CONTROL = {i: f"\\x{i:02x}" for i in (*range(0x20), *range(0x7F, 0xA0)) if i != 0x0A}


def _e(text: object) -> str:
    """HTML-escaped, control characters (a terminal escape in a record) shown as ``\\xNN``."""
    return escape(str(text).translate(_CONTROL), quote=True)


def _short(arn: str) -> str:
    """``role/path/name`` of an IAM ARN (the account is in the page header)."""
    return arn.split(":", 5)[-1] if arn.count(":") >= 5 else arn


def _label(arn: str, accounts: bool) -> str:
    short = _short(arn)
    return f"{arn.split(':')[4]} {short}" if accounts and arn.count(":") >= 5 else short


def _granted_chart(principals: tuple[PrincipalReview, ...], accounts: bool = False) -> str:
    """*accounts*: label each bar with its account too (the same role name may be in several)."""
    rows = [p for p in principals if not p.note]
    top = max((p.granted for p in rows), default=1)
    scale = math.log10(max(top, 10) + 1)
    label_w, bar_w, row_h = 300, 560, 34
    height = 30 + row_h * len(rows)
    out = [
        f'<svg id="granted-vs-used" role="img" aria-label="Granted and used actions per principal" '
        f'xmlns="http://www.w3.org/2000/svg" width="{label_w + bar_w + 90}" height="{height}">',
        f'<rect x="{label_w}" y="4" width="12" height="10" fill="#bdc3c7"/>'
        f'<text x="{label_w + 16}" y="13">granted</text>'
        f'<rect x="{label_w + 80}" y="4" width="12" height="10" fill="#27ae60"/>'
        f'<text x="{label_w + 96}" y="13">used</text>'
        f'<text x="{label_w + 150}" y="13">(log scale)</text>',
    ]
    for i, p in enumerate(rows):
        y = 26 + i * row_h
        g = bar_w * math.log10(p.granted + 1) / scale
        u = bar_w * math.log10(p.used + 1) / scale
        out.append(
            f'<g class="principal" data-principal="{_e(p.principal)}">'
            f'<text x="{label_w - 6}" y="{y + 14}" text-anchor="end">'
            f"{_e(_label(p.principal, accounts))}</text>"
            f'<rect x="{label_w}" y="{y}" width="{g:.1f}" height="12" fill="#bdc3c7"/>'
            f'<rect x="{label_w}" y="{y + 14}" width="{u:.1f}" height="12" fill="#27ae60"/>'
            f'<text x="{label_w + g + 4:.1f}" y="{y + 10}">{p.granted}</text>'
            f'<text x="{label_w + u + 4:.1f}" y="{y + 24}">{p.used}</text></g>'
        )
    out.append("</svg>")
    return "".join(out)


def _trend_chart(rep: ReviewReport) -> str:
    points = rep.trend
    top = max((sum(n for _, n in p.by_severity) for p in points), default=1) or 1
    col, gap, plot_h = 56, 30, 180  # a column leaves room for its YYYY-MM-DD label
    width = 60 + len(points) * (col + gap)
    out = [
        f'<svg id="trend" role="img" aria-label="Findings per run by severity" '
        f'xmlns="http://www.w3.org/2000/svg" width="{max(width, 320)}" height="{plot_h + 60}">',
        f'<line x1="40" y1="{plot_h + 20}" x2="{width}" y2="{plot_h + 20}" stroke="#999"/>',
        f'<text x="4" y="28">{top}</text><text x="4" y="{plot_h + 20}">0</text>',
    ]
    for i, p in enumerate(points):
        x = 50 + i * (col + gap)
        y = float(plot_h + 20)
        for sev, n in reversed(p.by_severity):
            h = plot_h * n / top
            y -= h
            out.append(
                f'<rect class="run-bar" x="{x}" y="{y:.1f}" width="{col}" height="{h:.1f}" '
                f'fill="{_COLOURS[sev]}"><title>run {p.run}: {n} {sev}</title></rect>'
            )
        out.append(f'<text x="{x + col / 2}" y="{y - 4:.1f}" text-anchor="middle">{p.findings}</text>')
        out.append(f'<text x="{x + col / 2}" y="{plot_h + 36}" text-anchor="middle">run {p.run}</text>')
        out.append(
            f'<text x="{x + col / 2}" y="{plot_h + 50}" text-anchor="middle">{_e(p.started_at[:10])}</text>'
        )
    out.append("</svg>")
    return "".join(out)


def _findings_table(items: tuple[Tracked, ...], status: bool = False) -> str:
    if not items:
        return "<p>None.</p>"
    head = "<tr>" + ("<th>status</th>" if status else "")
    head += "<th>severity</th><th>principal</th><th>code</th><th>on</th><th>message</th></tr>"
    rows = []
    for t in items:
        f = t.finding
        sev = str(f.severity)
        cell = f"<td>{_e(t.status)}</td>" if status else ""
        rows.append(
            f'<tr>{cell}<td><span class="sev sev-{sev}">{sev}</span></td><td><code>{_e(_short(f.principal))}'
            f"</code></td><td>{_e(f.code)}</td><td><code>{_e(f.subject)}</code></td><td>{_e(f.message)}</td></tr>"
        )
    return f"<table>{head}{''.join(rows)}</table>"


def _principals_table(
    principals: tuple[PrincipalReview, ...],
    left_out: tuple[tuple[str, str], ...],
    table_id: str = "principals",
) -> str:
    head = (
        '<tr><th>principal</th><th class="n">granted</th><th class="n">used</th>'
        '<th class="n">safe to remove</th><th class="n">to review</th><th class="n">risky unused</th>'
        '<th class="n">missing</th><th>last activity</th></tr>'
    )
    rows = []
    for p in principals:
        if p.note:
            rows.append(f'<tr><td><code>{_e(p.principal)}</code></td><td colspan="7">{_e(p.note)}</td></tr>')
            continue
        rows.append(
            f'<tr><td><code>{_e(p.principal)}</code></td><td class="n">{p.granted}</td>'
            f'<td class="n">{p.used}</td><td class="n">{p.removable}</td><td class="n">{p.to_review}</td>'
            f'<td class="n">{len(p.risky_unused)}</td><td class="n">{p.missing}</td>'
            f"<td>{_e(p.last_activity or 'none seen')}</td></tr>"
        )
    skipped = "".join(
        f'<tr><td><code>{_e(p)}</code></td><td colspan="7">left out: {_e(why)}</td></tr>'
        for p, why in left_out
    )
    return f'<table id="{_e(table_id)}">{head}{"".join(rows)}{skipped}</table>'


def _principals_sections(rep: ReviewReport) -> list[str]:
    """The principals table; with ``--accounts``, a section per account (its failure, or its
    principals)."""
    r: Review = rep.review
    if not r.accounts:
        return [_principals_table(r.principals, r.skipped)]
    out = []
    for a, principals, skipped in by_account(r):
        n = findings_in(rep, a.account)
        title = f"Account {a.account}" + (f" ({a.name})" if a.name else "")
        out.append(f'<section class="account" id="account-{_e(a.account)}"><h2>{_e(title)}</h2>')
        if a.error:
            out.append(
                f'<div class="caveat"><b>Not reviewed:</b> {_e(a.error)} '
                f"(role <code>{_e(a.role_arn)}</code>); the earlier findings of its principals are kept "
                "as they were.</div></section>"
            )
            continue
        out.append(
            f'<p class="meta">Current policies from <code>{_e(a.source)}</code>; {len(principals)} '
            f"principal(s), {n} finding(s).</p>"
        )
        out.append(_principals_table(principals, skipped, f"principals-{a.account}") + "</section>")
    return out


def to_html(rep: ReviewReport) -> str:
    r = rep.review
    new, persisting = rep.of(Status.NEW), rep.of(Status.PERSISTING)
    against = f"against run {rep.previous.id} ({rep.previous.started_at})" if rep.previous else "first run"
    cards = [
        ("findings", len(rep.findings)),
        ("new", len(new)),
        ("persisting", len(persisting)),
        ("resolved", len(rep.resolved)),
        ("suppressed", len(rep.suppressed)),
        ("principals", len(r.principals)),
    ]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>iamtrim review, run {rep.run.id}</title><style>{_CSS}</style></head><body>",
        f"<h1>iamtrim review — run {rep.run.id}</h1>",
        f'<p class="meta">{_e(rep.run.started_at)}, {_e(against)}. CloudTrail {_e(r.window or "none")}; '
        f"catalog {_e(r.catalog)}; current policies from <code>{_e(r.authz)}</code>.</p>",
        *[f'<div class="caveat"><b>Caveat:</b> {_e(c)}</div>' for c in r.caveats],
        '<div class="cards">'
        + "".join(f'<div class="card"><b>{n}</b>{_e(label)}</div>' for label, n in cards)
        + "</div>",
        "<h2>Granted vs used, per principal</h2>",
        _granted_chart(r.principals, bool(r.accounts)),
        "<p>Only <code>NOT_USED_OBSERVABLE_SINCE</code> counts as safe to remove; the rest is to review.</p>",
        *_principals_sections(rep),
        "<h2>Findings over runs</h2>",
        _trend_chart(rep),
        "<p>Every finding each run stored, suppressed ones and those of left-out principals included.</p>",
        f"<h2>New ({len(new)})</h2>",
        _findings_table(new),
        f"<h2>Resolved ({len(rep.resolved)})</h2>",
        _findings_table(rep.resolved),
        f"<h2>Persisting ({len(persisting)})</h2>",
        f"<details><summary>show {len(persisting)}</summary>{_findings_table(persisting)}</details>",
    ]
    if rep.suppressed or rep.expired:
        parts.append(f"<h2>Suppressed ({len(rep.suppressed)})</h2>")
        parts.append(_findings_table(rep.suppressed))
        parts += [
            f'<div class="caveat">Suppression expired {_e(s.expires)}: <code>{_e(s.match)}</code> — '
            f"{_e(s.reason)}</div>"
            for s in rep.expired
        ]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


render = to_html
