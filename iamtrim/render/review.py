"""The review report's one interface, and its formats: one module each.

Every format renders the same value, :class:`~iamtrim.review.history.ReviewReport` (the run, the
findings tracked against the previous run, suppressions, the trend, and — with ``--accounts`` —
each account's result), with the helpers below. A format is **one module**,
``iamtrim/render/review_<name>.py``, that defines ``FORMAT = "<name>"`` and
``render(report: ReviewReport) -> str``; :func:`format_names` finds the modules by name (without
importing them) and ``iamtrim review --format <name>`` offers it. Today: ``markdown``, ``json``,
``sarif`` and ``html``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Protocol, cast

from iamtrim.render import review_format_names
from iamtrim.review.history import ReviewReport, Tracked
from iamtrim.review.job import AccountResult, PrincipalReview, Review

__all__ = [
    "SEVERITIES",
    "ReviewFormatModule",
    "account_of",
    "by_account",
    "findings_in",
    "format_names",
    "render",
    "renderer",
    "severities",
]

SEVERITIES = ("high", "medium", "low", "info")
_PREFIX = "review_"  # a format module is iamtrim/render/review_<name>.py


class ReviewFormatModule(Protocol):
    """What a format module provides."""

    FORMAT: str

    def render(self, report: ReviewReport) -> str: ...


def format_names() -> tuple[str, ...]:
    """The review formats (:func:`iamtrim.render.review_format_names`)."""
    return review_format_names()


def renderer(name: str) -> Callable[[ReviewReport], str]:
    """The ``render`` function of format *name* (a ``ValueError`` for a name that is not one)."""
    if name not in format_names():
        raise ValueError(f"no review format {name!r} (formats: {', '.join(format_names())})")
    module = cast(ReviewFormatModule, importlib.import_module(f"iamtrim.render.{_PREFIX}{name}"))
    if getattr(module, "FORMAT", None) != name or not callable(getattr(module, "render", None)):
        raise ValueError(f"iamtrim.render.{_PREFIX}{name} does not define FORMAT = {name!r} and render()")
    return module.render


def render(name: str, report: ReviewReport) -> str:
    """*report* in format *name*."""
    return renderer(name)(report)


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


def severities(items: tuple[Tracked, ...]) -> dict[str, int]:
    """Findings per severity, every severity in order."""
    counts = dict.fromkeys(SEVERITIES, 0)
    for t in items:
        counts[str(t.finding.severity)] += 1
    return counts


def findings_in(rep: ReviewReport, account: str) -> int:
    """The report's findings (not suppressed) of principals of *account*."""
    return sum(1 for t in rep.findings if account_of(t.finding.principal) == account)
