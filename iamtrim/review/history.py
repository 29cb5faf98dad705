"""The review job's memory: runs stored in the usage store, compared by fingerprint, and the
suppressions that silence accepted findings until they expire.

A run is stored with its time, inputs, coverage window and catalog version, and every finding it
made (suppressed ones too, so that a suppression's expiry brings a finding back as *persisting*,
not *new*). Its findings are **new**, **persisting** or **resolved** against the run before it.

Re-running the same inputs (the same trail files and Access Advisor reports in the store, the same
authorization details, principals and options — :attr:`Review.inputs_digest`) stores nothing: the
report is that of the stored run, against the same previous run, so a retried job neither churns
the history nor turns every finding into *persisting*.

Suppressions file (JSON; YAML when PyYAML is importable — policy_sentry depends on it)::

    {"suppressions": [
      {"fingerprint": "3f2a…", "reason": "break-glass role, reviewed", "expires": "2027-01-31"},
      {"pattern": "arn:aws:iam::*:role/break-glass-*|ADMIN_LIKE_GRANT|*", "reason": "…", "expires": "…"}
    ]}

A ``pattern`` is a shell glob over the finding's key, ``principal|code|target``.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import StrEnum
from pathlib import Path

from iamtrim.errors import SuppressionError
from iamtrim.model.finding import FINDINGS, Finding, Severity
from iamtrim.review.job import Review
from iamtrim.store import DEFAULT_WAIT_LOCK, ReviewRunRow, Store

__all__ = [
    "FailOn",
    "ReviewReport",
    "Status",
    "Suppression",
    "SuppressionError",
    "Tracked",
    "TrendPoint",
    "failing",
    "load_suppressions",
    "record_run",
]


class Status(StrEnum):
    NEW = "new"
    PERSISTING = "persisting"
    RESOLVED = "resolved"


@dataclass(frozen=True, slots=True)
class Suppression:
    match: str  # a fingerprint, or a glob over principal|code|target
    is_pattern: bool
    reason: str
    expires: str  # YYYY-MM-DD: silences through that day

    def covers(self, f: Finding) -> bool:
        if self.is_pattern:
            return fnmatch.fnmatchcase(f.key, self.match)
        return f.fingerprint == self.match

    def expired(self, today: date) -> bool:
        return date.fromisoformat(self.expires) < today


@dataclass(frozen=True, slots=True)
class Tracked:
    finding: Finding
    status: Status
    suppressed_by: Suppression | None = None


@dataclass(frozen=True, slots=True)
class TrendPoint:
    run: int
    started_at: str
    window: str
    findings: int
    by_severity: tuple[tuple[str, int], ...]  # severity → count, every severity in order


@dataclass(frozen=True, slots=True)
class ReviewReport:
    review: Review
    run: ReviewRunRow
    previous: ReviewRunRow | None
    stored: bool  # False: the same inputs as the stored run; nothing new was written
    findings: tuple[Tracked, ...]  # new and persisting, not suppressed
    resolved: tuple[Tracked, ...]  # in the previous run, not in this one
    suppressed: tuple[Tracked, ...]
    expired: tuple[Suppression, ...]  # suppressions past their date (their findings show again)
    unused_suppressions: tuple[Suppression, ...]  # active, but matching no finding
    trend: tuple[TrendPoint, ...]

    def of(self, status: Status) -> tuple[Tracked, ...]:
        return tuple(t for t in (*self.findings, *self.resolved) if t.status is status)


def _text(entry: Mapping[str, object], key: str, where: str, required: bool = True) -> str:
    value = entry.get(key, "")
    if not isinstance(value, str | date) or (required and not value):
        hint = " (quote it: YAML read it as a number)" if isinstance(value, int | float) else ""
        raise SuppressionError(f"{where}: '{key}' must be a non-empty string{hint}")
    return value.isoformat() if isinstance(value, date) else value


def load_suppressions(path: Path) -> tuple[Suppression, ...]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise SuppressionError(f"cannot read {path}: {exc.strerror or exc}") from None
    data: object
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:  # pragma: no cover - policy_sentry depends on PyYAML
            raise SuppressionError(f"{path}: YAML needs PyYAML; write the file as JSON") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise SuppressionError(f"{path}: not YAML: {str(exc).splitlines()[0]}") from None
    else:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise SuppressionError(f"{path}: not JSON: {exc}") from None
    items = data.get("suppressions") if isinstance(data, Mapping) else data
    if not isinstance(items, list):
        raise SuppressionError(f"{path}: expected a list of suppressions (or {{'suppressions': [...]}})")
    out = []
    for i, item in enumerate(items):
        where = f"{path}: suppression {i + 1}"
        if not isinstance(item, Mapping):
            raise SuppressionError(f"{where}: must be an object")
        has_fp, has_pattern = bool(item.get("fingerprint")), bool(item.get("pattern"))
        if has_fp == has_pattern:
            raise SuppressionError(f"{where}: give 'fingerprint' or 'pattern', one of them")
        match = _text(item, "pattern" if has_pattern else "fingerprint", where)
        expires = _text(item, "expires", where)
        try:
            date.fromisoformat(expires)
        except ValueError:
            raise SuppressionError(
                f"{where}: 'expires' must be a date, YYYY-MM-DD (got {expires!r})"
            ) from None
        out.append(Suppression(match, has_pattern, _text(item, "reason", where), expires))
    return tuple(out)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _trend(store: Store, runs: Sequence[ReviewRunRow]) -> tuple[TrendPoint, ...]:
    points = []
    severities = ("high", "medium", "low", "info")
    for r in runs:
        counts = dict.fromkeys(severities, 0)
        for f in store.review_findings(r.id):
            if f.code in FINDINGS:
                counts[str(f.severity)] += 1
        points.append(TrendPoint(r.id, r.started_at, r.window, r.findings, tuple(counts.items())))
    return tuple(points)


def record_run(
    store: Store,
    result: Review,
    suppressions: Sequence[Suppression] = (),
    today: date | None = None,
    started_at: str | None = None,
    wait_lock: float = DEFAULT_WAIT_LOCK,
) -> ReviewReport:
    """Store *result* as a run (unless the latest run had the same inputs) and compare it with the
    run before it; apply *suppressions* as of *today*. The history is read and written under the
    store's writer lock (waiting up to *wait_lock* seconds for an ingest, then ``StoreError``):
    two runs at once would both compare against the same previous run."""
    with store.writer_lock(wait_lock):
        return _record_run(store, result, suppressions, today, started_at)


def _record_run(
    store: Store,
    result: Review,
    suppressions: Sequence[Suppression],
    today: date | None,
    started_at: str | None,
) -> ReviewReport:
    today = today or datetime.now(UTC).date()
    runs = store.review_runs()
    stored = not runs or runs[-1].inputs_digest != result.inputs_digest
    previous = (runs[-1] if stored else runs[-2] if len(runs) > 1 else None) if runs else None
    before = {f.fingerprint: f for f in store.review_findings(previous.id)} if previous else {}
    # A principal the filters left out, or of an account that could not be read, keeps its earlier
    # findings, unreported: neither resolved now nor new when it is reviewed again.
    carried = [f for f in before.values() if result.holds(f.principal)]
    if stored:
        store.add_review_run(
            started_at or _now(),
            result.inputs_digest,
            result.inputs,
            result.window,
            result.catalog,
            len(result.principals),
            (*result.findings, *carried),
        )
        runs = store.review_runs()
    run = runs[-1]
    before = {fp: f for fp, f in before.items() if not result.holds(f.principal)}
    now = {f.fingerprint: f for f in result.findings}
    active = [s for s in suppressions if not s.expired(today)]
    used: set[Suppression] = set()

    def track(f: Finding, status: Status) -> Tracked:
        by = next((s for s in active if s.covers(f)), None)
        if by is not None:
            used.add(by)
        return Tracked(f, status, by)

    current = [track(f, Status.PERSISTING if fp in before else Status.NEW) for fp, f in sorted(now.items())]
    resolved = [track(f, Status.RESOLVED) for fp, f in sorted(before.items()) if fp not in now]

    def order(t: Tracked) -> tuple[str, str, str]:
        return (t.finding.principal, t.finding.code, t.finding.target or t.finding.subject)

    return ReviewReport(
        review=result,
        run=run,
        previous=previous,
        stored=stored,
        findings=tuple(sorted((t for t in current if t.suppressed_by is None), key=order)),
        resolved=tuple(sorted((t for t in resolved if t.suppressed_by is None), key=order)),
        suppressed=tuple(sorted((t for t in current if t.suppressed_by is not None), key=order)),
        expired=tuple(s for s in suppressions if s.expired(today)),
        unused_suppressions=tuple(s for s in active if s not in used),
        trend=_trend(store, runs),
    )


class FailOn(StrEnum):
    NEW = "new"  # any new finding
    NEW_RISKY = "new-risky"  # a new high-severity finding
    RISKY = "risky"  # any high-severity finding, new or persisting
    MISSING = "missing"  # a denied call, or a call the current policies would refuse


_MISSING_CODES = frozenset({"DENIED_CALL", "CALL_NOT_ALLOWED", "DENIED_SENSITIVE_CALL"})


def failing(report: ReviewReport, fail_on: FailOn) -> tuple[Finding, ...]:
    """The findings that make ``--fail-on`` *fail_on* fail (suppressed ones never do)."""
    current = report.findings
    if fail_on is FailOn.NEW:
        picked = [t for t in current if t.status is Status.NEW]
    elif fail_on is FailOn.NEW_RISKY:
        picked = [t for t in current if t.status is Status.NEW and t.finding.severity is Severity.HIGH]
    elif fail_on is FailOn.RISKY:
        picked = [t for t in current if t.finding.severity is Severity.HIGH]
    else:
        picked = [t for t in current if t.finding.code in _MISSING_CODES]
    return tuple(t.finding for t in picked)
