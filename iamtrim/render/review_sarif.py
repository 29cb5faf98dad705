"""``iamtrim review --format sarif``: SARIF 2.1.0, for code-scanning dashboards.

One rule per finding code (every code of the registry, in a fixed order, so rule indexes never
move); each result's ``partialFingerprints`` holds the finding's fingerprint, which leaves counts
and dates out, so a dashboard tracks one alert across runs.
https://docs.oasis-open.org/sarif/sarif/v2.1.0/sarif-v2.1.0.html
"""

from __future__ import annotations

from typing import Any

from iamtrim import __version__
from iamtrim.model.finding import FINDINGS, Severity
from iamtrim.render.common import json_text
from iamtrim.render.review import account_of
from iamtrim.review.history import ReviewReport, Status, Tracked

__all__ = ["FORMAT", "render"]

FORMAT = "sarif"

_LEVEL = {Severity.HIGH: "error", Severity.MEDIUM: "warning", Severity.LOW: "note", Severity.INFO: "note"}
_BASELINE = {Status.NEW: "new", Status.PERSISTING: "unchanged"}
_RULES = tuple(sorted(FINDINGS))


def _rule(code: str) -> dict[str, Any]:
    title, severity = FINDINGS[code]
    return {
        "id": code,
        "name": "".join(part.capitalize() for part in code.split("_")),
        "shortDescription": {"text": title},
        "defaultConfiguration": {"level": _LEVEL[severity]},
        "properties": {"severity": str(severity), "tags": ["security", "iam"]},
    }


def _result(t: Tracked, artifacts: dict[str, str], default: str) -> dict[str, Any]:
    f = t.finding
    account = account_of(f.principal)
    artifact = artifacts.get(account, default)
    out: dict[str, Any] = {
        "ruleId": f.code,
        "ruleIndex": _RULES.index(f.code),
        "level": _LEVEL[f.severity],
        "message": {"text": f"{f.subject}: {f.message}"},
        "locations": [
            {
                "physicalLocation": {"artifactLocation": {"uri": artifact}},
                "logicalLocations": [
                    {"fullyQualifiedName": f.principal or f.subject, "kind": "principal"},
                ],
            }
        ],
        "partialFingerprints": {"iamtrimFinding/v1": f.fingerprint},
        "baselineState": _BASELINE.get(t.status, "unchanged"),
        "properties": {
            "principal": f.principal,
            "account": account,
            "target": f.target or f.subject,
            "key": f.key,
        },
    }
    if t.suppressed_by is not None:
        out["suppressions"] = [
            {
                "kind": "external",
                "status": "accepted",
                "justification": f"{t.suppressed_by.reason} (until {t.suppressed_by.expires})",
            }
        ]
    return out


def render(rep: ReviewReport) -> str:
    r = rep.review
    artifact = r.artifact or r.authz.replace("\\", "/")
    # --accounts: each account's findings are located in that account (its root ARN).
    artifacts = {a.account: a.uri for a in r.accounts if a.uri}
    failed = {a.account for a in r.failed_accounts}
    notes = [
        {"message": {"text": c}, "level": "warning"}
        for c in r.caveats
        if not any(c.startswith(f"account {f}") for f in failed)
    ]
    notes += [
        {"message": {"text": f"account {a.account} was not reviewed: {a.error}"}, "level": "error"}
        for a in r.failed_accounts
    ]
    notes += [
        {"message": {"text": f"suppression expired {s.expires}: {s.match} ({s.reason})"}, "level": "note"}
        for s in rep.expired
    ]
    doc = {
        "$schema": "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json",
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "iamtrim",
                        "version": __version__,
                        "informationUri": "https://docs.aws.amazon.com/IAM/latest/UserGuide/best-practices.html",
                        "rules": [_rule(c) for c in _RULES],
                    }
                },
                "automationDetails": {"id": f"iamtrim/review/run-{rep.run.id}"},
                "invocations": [{"executionSuccessful": not failed, "toolExecutionNotifications": notes}],
                "results": [_result(t, artifacts, artifact) for t in (*rep.findings, *rep.suppressed)],
                "properties": {
                    "window": r.window,
                    "catalog": r.catalog,
                    "previousRun": rep.previous.id if rep.previous else None,
                    "resolved": [t.finding.fingerprint for t in rep.resolved],
                    "accounts": [
                        {"account": a.account, "name": a.name, "status": "failed" if a.error else "reviewed"}
                        for a in r.accounts
                    ],
                },
            }
        ],
    }
    return json_text(doc)
