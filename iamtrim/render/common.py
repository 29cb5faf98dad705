"""Pieces every JSON renderer shares: findings and denied attempts."""

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
