"""``iamtrim review --format json``: the report as JSON (schema in docs/commands/review.md)."""

from __future__ import annotations

from typing import Any

from iamtrim.render.common import json_text
from iamtrim.render.review import account_of, findings_in, severities
from iamtrim.review.history import ReviewReport, Status, Suppression, Tracked
from iamtrim.review.job import AccountResult, PrincipalReview
from iamtrim.store import ReviewRunRow

__all__ = ["FORMAT", "JSON_SCHEMA_ID", "render"]

FORMAT = "json"
JSON_SCHEMA_ID = "iamtrim.review/1"


def _run_json(r: ReviewRunRow | None) -> dict[str, Any] | None:
    if r is None:
        return None
    return {
        "id": r.id,
        "started_at": r.started_at,
        "inputs": list(r.inputs),
        "inputs_digest": r.inputs_digest,
        "window": r.window or None,
        "catalog": r.catalog,
        "principals": r.principals,
        "findings": r.findings,
    }


def _suppression_json(s: Suppression) -> dict[str, str]:
    return {("pattern" if s.is_pattern else "fingerprint"): s.match, "reason": s.reason, "expires": s.expires}


def _finding_json(t: Tracked) -> dict[str, Any]:
    f = t.finding
    out: dict[str, Any] = {
        "fingerprint": f.fingerprint,
        "key": f.key,
        "status": str(t.status),
        "principal": f.principal,
        "code": f.code,
        "severity": str(f.severity),
        "title": f.title,
        "target": f.target or f.subject,
        "subject": f.subject,
        "message": f.message,
    }
    if t.suppressed_by is not None:
        out["suppression"] = _suppression_json(t.suppressed_by)
    return out


def _account_json(a: AccountResult, findings: int) -> dict[str, Any]:
    return {
        "account": a.account,
        "name": a.name or None,
        "role_arn": a.role_arn,
        "status": "failed" if a.error else "reviewed",
        "error": a.error or None,
        "source": a.source or None,
        "principals": list(a.principals),
        "findings": findings,
    }


def _principal_json(p: PrincipalReview) -> dict[str, Any]:
    return {
        "principal": p.principal,
        "account": account_of(p.principal),
        "kind": p.kind,
        "policies": list(p.policies),
        "granted": p.granted,
        "used": p.used,
        "unused_by_evidence": dict(p.unused_by_class),
        "safe_to_remove": p.removable,
        "risky_unused": list(p.risky_unused),
        "missing": p.missing,
        "last_activity": p.last_activity or None,
        "findings": len(p.findings),
        "note": p.note or None,
    }


def render(rep: ReviewReport) -> str:
    doc = {
        "schema": JSON_SCHEMA_ID,
        "run": {**(_run_json(rep.run) or {}), "stored": rep.stored},
        "previous_run": _run_json(rep.previous),
        "caveats": list(rep.review.caveats),
        "summary": {
            "principals": len(rep.review.principals),
            "findings": len(rep.findings),
            "new": len(rep.of(Status.NEW)),
            "persisting": len(rep.of(Status.PERSISTING)),
            "resolved": len(rep.resolved),
            "suppressed": len(rep.suppressed),
            "by_severity": severities(rep.findings),
        },
        "accounts": [_account_json(a, findings_in(rep, a.account)) for a in rep.review.accounts],
        "principals": [_principal_json(p) for p in rep.review.principals],
        "skipped": [{"principal": p, "reason": why} for p, why in rep.review.skipped],
        "findings": [_finding_json(t) for t in rep.findings],
        "resolved": [_finding_json(t) for t in rep.resolved],
        "suppressed": [_finding_json(t) for t in rep.suppressed],
        "suppressions": {
            "expired": [_suppression_json(s) for s in rep.expired],
            "unused": [_suppression_json(s) for s in rep.unused_suppressions],
        },
        "trend": [
            {
                "run": p.run,
                "started_at": p.started_at,
                "window": p.window or None,
                "findings": p.findings,
                "by_severity": dict(p.by_severity),
            }
            for p in rep.trend
        ],
    }
    return json_text(doc)
