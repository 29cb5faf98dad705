"""Pieces the renderers share: findings and denied attempts as JSON, aligned text tables."""

from __future__ import annotations

from typing import Any

from iamtrim.model import UsageRow
from iamtrim.model.finding import Finding


def finding_json(f: Finding) -> dict[str, str]:
    return {
        "code": f.code,
        "severity": str(f.severity),
        "title": f.title,
        "subject": f.subject,
        "message": f.message,
    }


def denied_json(r: UsageRow, with_principal: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {"principal": r.principal} if with_principal else {}
    out.update(
        action=r.action,
        resource=r.resource,
        count=r.count,
        last_seen=r.last_seen,
        event_ids=list(r.event_ids),
    )
    return out


def text_table(headers: list[str], rows: list[list[str]]) -> str:
    """Left-aligned columns under a dashed rule, trailing spaces trimmed."""
    widths = [len(h) for h in headers]
    for r in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, r, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines)
