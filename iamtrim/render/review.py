"""``iamtrim review`` as JSON (schema in docs/commands/review.md), Markdown and SARIF 2.1.0.

SARIF: one rule per finding code (every code of the registry, in a fixed order, so rule indexes
never move); each result's ``partialFingerprints`` holds the finding's fingerprint, which leaves
counts and dates out, so a dashboard tracks one alert across runs.
https://docs.oasis-open.org/sarif/sarif/v2.1.0/sarif-v2.1.0.html
"""

from __future__ import annotations

import json
from typing import Any

from iamtrim import __version__
from iamtrim.model.finding import FINDINGS, Severity
from iamtrim.review.history import ReviewReport, Status, Suppression, Tracked
from iamtrim.review.job import AccountResult, PrincipalReview, Review
from iamtrim.store import ReviewRunRow

__all__ = ["JSON_SCHEMA_ID", "account_of", "by_account", "to_json", "to_markdown", "to_sarif"]

JSON_SCHEMA_ID = "iamtrim.review/1"
_SEVERITIES = ("high", "medium", "low", "info")


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


def account_of(arn: str) -> str:
    """The account id of an ARN ("" for anything else)."""
    parts = arn.split(":", 5)
    return parts[4] if len(parts) == 6 else ""


def by_account(
    r: Review,
) -> list[tuple[AccountResult, tuple[PrincipalReview, ...], tuple[tuple[str, str], ...]]]:
    """Each account of an ``--accounts`` review with its principals and those left out, in the
    order of the accounts file (sorted by id); [] for a single-account review."""
    return [
        (
            a,
            tuple(p for p in r.principals if account_of(p.principal) == a.account),
            tuple((s, why) for s, why in r.skipped if account_of(s) == a.account),
        )
        for a in r.accounts
    ]


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


def _severities(items: tuple[Tracked, ...]) -> dict[str, int]:
    counts = dict.fromkeys(_SEVERITIES, 0)
    for t in items:
        counts[str(t.finding.severity)] += 1
    return counts


def to_json(rep: ReviewReport) -> str:
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
            "by_severity": _severities(rep.findings),
        },
        "accounts": [
            _account_json(a, sum(1 for t in rep.findings if account_of(t.finding.principal) == a.account))
            for a in rep.review.accounts
        ],
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
    return json.dumps(doc, indent=2)


# ---------------------------------------------------------------------------------------------
# Markdown


_CONTROL = {i: f"\\x{i:02x}" for i in (*range(0x20), *range(0x7F, 0xA0))}


def _md(text: str) -> str:
    """Table-cell safe: pipes escaped, backticks neutralized, control characters (line breaks,
    terminal escapes a record may carry) shown as ``\\xNN`` rather than acted on."""
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("`", "'").translate(_CONTROL)


def _rows(items: tuple[Tracked, ...], with_status: bool = False) -> list[str]:
    head = "| severity | principal | code | on | message |"
    rule = "|---|---|---|---|---|"
    if with_status:
        head, rule = "| status " + head, "|---" + rule
    out = [head, rule]
    for t in sorted(items, key=lambda t: (_SEVERITIES.index(str(t.finding.severity)), t.finding.principal)):
        f = t.finding
        cells = [str(f.severity), f"`{_md(f.principal)}`", f.code, _md(f.subject), _md(f.message)]
        if with_status:
            cells.insert(0, str(t.status))
        out.append("| " + " | ".join(cells) + " |")
    return out


def _principals_table(
    principals: tuple[PrincipalReview, ...], skipped: tuple[tuple[str, str], ...]
) -> list[str]:
    out = [
        "| principal | granted | used | safe to remove | to review | risky unused | missing | "
        "last activity |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for p in principals:
        if p.note:
            out.append(f"| `{_md(p.principal)}` | – | {p.used} | – | – | – | – | {_md(p.note)} |")
            continue
        out.append(
            f"| `{_md(p.principal)}` | {p.granted} | {p.used} | {p.removable} | {p.to_review} | "
            f"{len(p.risky_unused)} | {p.missing} | {p.last_activity or 'none seen'} |"
        )
    out += [f"| `{_md(p)}` | left out: {_md(why)} | | | | | | |" for p, why in skipped]
    return out


def to_markdown(rep: ReviewReport) -> str:
    r = rep.review
    new, persisting = rep.of(Status.NEW), rep.of(Status.PERSISTING)
    sev = _severities(rep.findings)
    against = f"against run {rep.previous.id} ({rep.previous.started_at})" if rep.previous else "(first run)"
    out = [
        f"### iamtrim review: run {rep.run.id} {against}",
        "",
        f"**{len(rep.findings)} findings ({', '.join(f'{n} {s}' for s, n in sev.items())}): {len(new)} new, "
        f"{len(persisting)} persisting, {len(rep.resolved)} resolved; {len(rep.suppressed)} suppressed**",
        "",
        f"Evidence: CloudTrail {r.window or 'none'}; catalog {r.catalog}; current policies from "
        f"`{_md(r.authz)}`" + ("" if rep.stored else "; same inputs as the stored run: nothing new stored"),
        "",
    ]
    out += [f"> **Caveat:** {_md(c)}" for c in r.caveats]
    if r.caveats:
        out.append("")
    if r.accounts:
        out += [
            "#### Accounts",
            "",
            "| account | name | status | principals | findings |",
            "|---|---|---|---:|---:|",
        ]
        for a, principals, _ in by_account(r):
            n = sum(1 for t in rep.findings if account_of(t.finding.principal) == a.account)
            status = f"**not reviewed**: {_md(a.error)}" if a.error else "reviewed"
            out.append(f"| {a.account} | {_md(a.name)} | {status} | {len(principals)} | {n} |")
        for a, principals, skipped in by_account(r):
            out += ["", f"#### Account {a.account}" + (f" ({_md(a.name)})" if a.name else ""), ""]
            if a.error:
                out += [
                    f"**not reviewed**: {_md(a.error)} (role `{_md(a.role_arn)}`); the earlier findings "
                    "of its principals are kept as they were."
                ]
                continue
            out += [f"Current policies from `{_md(a.source)}`.", ""]
            out += _principals_table(principals, skipped)
    else:
        out += ["#### Principals", ""]
        out += _principals_table(r.principals, r.skipped)
    out += ["", "Only `NOT_USED_OBSERVABLE_SINCE` counts as safe to remove; the rest is to review.", ""]
    out += ["#### New", ""] + (_rows(new) if new else ["None."])
    out += ["", "#### Resolved", ""] + (_rows(rep.resolved) if rep.resolved else ["None."])
    out += ["", "#### Persisting", ""]
    if persisting:
        counts: dict[tuple[str, str], int] = {}
        for t in persisting:
            key = (t.finding.principal, t.finding.code)
            counts[key] = counts.get(key, 0) + 1
        out += ["| principal | code | severity | findings |", "|---|---|---|---:|"]
        out += [
            f"| `{_md(p)}` | {code} | {FINDINGS[code][1]} | {n} |" for (p, code), n in sorted(counts.items())
        ]
    else:
        out.append("None.")
    if rep.suppressed or rep.expired or rep.unused_suppressions:
        out += ["", "#### Suppressions", ""]
        out += [
            f"* suppressed: {t.finding.code} on `{_md(t.finding.subject)}` ({_md(t.finding.principal)}) — "
            f"{_md(t.suppressed_by.reason)}, until {t.suppressed_by.expires}"
            for t in rep.suppressed
            if t.suppressed_by is not None
        ]
        out += [
            f"* **expired** {s.expires}: `{_md(s.match)}` — {_md(s.reason)} (its findings show again)"
            for s in rep.expired
        ]
        out += [f"* matches nothing: `{_md(s.match)}` — {_md(s.reason)}" for s in rep.unused_suppressions]
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------------------------
# SARIF 2.1.0

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


def to_sarif(rep: ReviewReport) -> str:
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
    return json.dumps(doc, indent=2)
