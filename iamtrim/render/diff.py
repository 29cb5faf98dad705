"""A diff as text (colour only when asked, i.e. on a TTY), Markdown, or JSON. Deterministic."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from iamtrim.evidence import Evidence
from iamtrim.render.common import json_text, md_code, md_text, scrub
from iamtrim.review.diff import Diff, Missing, Narrowing, Proposed, UnusedAction, class_label

__all__ = ["to_json", "to_markdown", "to_text"]

_LEVELS = ["Permissions management", "Write", "Tagging", "Read", "List", ""]
_SAMPLE = 3


def _level_rank(level: str) -> int:
    return _LEVELS.index(level) if level in _LEVELS else len(_LEVELS)


def _grouped(unused: Sequence[UnusedAction]) -> list[tuple[str, str, list[UnusedAction]]]:
    groups: dict[tuple[str, str], list[UnusedAction]] = defaultdict(list)
    for u in unused:
        groups[(u.service, u.access_level)].append(u)
    keys = sorted(groups, key=lambda k: (k[0], _level_rank(k[1])))
    return [(svc, lvl, groups[(svc, lvl)]) for svc, lvl in keys]


def _classes(items: Sequence[UnusedAction]) -> list[tuple[str, int]]:
    """Counts per observability class, removable classes first, then by count."""
    counts: dict[str, int] = defaultdict(int)
    removable: dict[str, bool] = {}
    for u in items:
        label = class_label(u.evidence)
        counts[label] += 1
        removable[label] = u.removable
    return sorted(counts.items(), key=lambda kv: (not removable[kv[0]], -kv[1], kv[0]))


def _risky(items: Sequence[UnusedAction]) -> str:
    n = sum(1 for u in items if u.risk)
    return f"; {n} risky" if n else ""


def _headline(d: Diff) -> str:
    risky = len(d.risky_unused)
    since = f", not used since {d.removable_since}" if d.removable_since else ""
    text = (
        f"{d.granted} actions granted, {len(d.used)} used, {len(d.unused)} not seen used "
        f"({risky} risky): {len(d.removable)} safe to remove (observable{since}"
        f"{_risky(d.removable)}), {len(d.to_review)} not observable / used per Access Advisor — "
        f"review before removing"
        + (f" ({len([u for u in d.to_review if u.risk])} risky)" if any(u.risk for u in d.to_review) else "")
    )
    if d.proposed is not None and not d.proposed.error:
        text += (
            f"; the proposal removes {len(d.proposed.removes)} granted actions, "
            f"{len(d.proposed.removes_risky)} of them risky"
        )
        if d.proposed.removes_unproven:
            text += f", {len(d.proposed.removes_unproven)} without evidence of non-use"
    if d.missing:
        text += f"; {len(d.missing)} missing"
    return text


# ---------------------------------------------------------------------------------------------
# JSON


def _unused_json(u: UnusedAction) -> dict[str, Any]:
    obs = u.evidence
    evidence: dict[str, Any] = {
        "class": str(obs.evidence),
        "since": obs.since or None,
        "last_used": obs.last_used or None,
        "detail": obs.detail,
        "removable": obs.removable,
    }
    if obs.reason is not None:
        evidence["reason"] = str(obs.reason)
    if obs.denied_only:
        evidence["denied_only"] = True
    return {
        "action": u.action,
        "service": u.service,
        "access_level": u.access_level,
        "risk": list(u.risk),
        "last_seen": u.last_seen,
        "granted_by": u.granted_by,
        "conditional": u.conditional,
        "evidence": evidence,
    }


def _those(n: Narrowing) -> str:
    return "that condition" if len(n.condition_keys) == 1 else "those conditions"


def _narrowing_json(n: Narrowing) -> dict[str, Any]:
    return {
        "action": n.action,
        "granted_on": list(n.granted_on),
        "used_on": list(n.used_on),
        "calls": n.calls,
        "proposed_on": list(n.proposed_on),
        "conditional": n.conditional,
        "condition_keys": list(n.condition_keys),
    }


def _missing_json(m: Missing) -> dict[str, Any]:
    doc = {
        "action": m.action,
        "kind": m.kind,
        "resources": list(m.resources),
        "count": m.count,
        "last_seen": m.last_seen,
        "decision": m.decision,
        "reason": m.reason,
        "change": list(m.change),
    }
    if m.note:
        doc["note"] = m.note
    return doc


def to_json(d: Diff) -> str:
    proposed: dict[str, Any] | None = None
    if d.proposed is not None:
        p = d.proposed
        proposed = {
            "granted": p.granted,
            "removes": len(p.removes),
            "removes_risky": list(p.removes_risky),
            "removes_unproven": list(p.removes_unproven),
            "adds": list(p.adds),
            "policies": [pol.to_json() for pol in p.policies],
        }
        if p.error:
            proposed["error"] = p.error
    doc = {
        "principal": d.principal,
        "current": list(d.current),
        "granted": d.granted,
        "used": len(d.used),
        "used_actions": list(d.used),
        "unused": [_unused_json(u) for u in d.unused],
        "narrowing": [_narrowing_json(n) for n in d.narrowing],
        "missing": [_missing_json(m) for m in d.missing],
        "proposed": proposed,
        "evidence": {"basis": list(d.basis), "caveats": list(d.caveats), "classes": dict(_classes(d.unused))},
        "headline": {
            "granted": d.granted,
            "used": len(d.used),
            "unused": len(d.unused),
            "unused_risky": len(d.risky_unused),
            "removable": len(d.removable),
            "removable_risky": len(d.risky_removable),
            "removable_since": d.removable_since or None,
            "review": len(d.to_review),
            "proposal_removes": len(d.proposed.removes) if d.proposed else None,
            "proposal_removes_risky": len(d.proposed.removes_risky) if d.proposed else None,
            "missing": len(d.missing),
            "text": _headline(d),
        },
        "unknown_action_patterns": list(d.unknown_patterns),
        "findings": [
            {"code": f.code, "severity": str(f.severity), "subject": f.subject, "message": f.message}
            for f in d.findings
        ],
        "catalog": d.catalog,
    }
    return json_text(doc)


# ---------------------------------------------------------------------------------------------
# Text


def _last(u: UnusedAction) -> str:
    if not u.last_seen:
        return ""
    if u.evidence.evidence is Evidence.USED_ACCESS_ADVISOR and not u.evidence.denied_only:
        return f", last attempted {u.last_seen} (Access Advisor)"
    return f", last denied {u.last_seen}"


def _n(count: int) -> str:
    return f"{count} action" + ("" if count == 1 else "s")


def _review(d: Diff) -> list[str]:
    """One line per action Access Advisor shows used; one per service whose use Access Advisor
    shows but not which action; one per not-observable reason (actions named)."""
    lines: list[str] = []
    for u in d.to_review:
        if u.evidence.evidence is Evidence.USED_ACCESS_ADVISOR:
            risk = f" [{', '.join(u.risk)}]" if u.risk else ""
            lines.append(f"{u.action}{risk} USED_ACCESS_ADVISOR: {u.evidence.detail}")
    services: dict[tuple[str, str], list[UnusedAction]] = defaultdict(list)
    hidden: dict[tuple[str, str], list[UnusedAction]] = defaultdict(list)
    for u in d.to_review:
        if u.evidence.evidence is Evidence.SERVICE_USED_ACTION_UNKNOWN:
            # why CloudTrail cannot tell: outside its window, or an action it never shows
            why = next((p for p in u.evidence.detail.split("; ") if p.startswith("CloudTrail")), "")
            services[(u.service, why)].append(u)
        elif u.evidence.evidence is Evidence.NOT_OBSERVABLE:
            reason = u.evidence.detail.removeprefix("not observable: ").split("; denied in")[0]
            hidden[(class_label(u.evidence), reason)].append(u)
    for (svc, why), items in sorted(services.items()):
        obs = items[0].evidence
        denied = (
            "; CloudTrail shows only denied attempts in it (Access Advisor counts denials)"
            if obs.denied_only
            else ""
        )
        lines.append(
            f"{svc}: {_n(len(items))} SERVICE_USED_ACTION_UNKNOWN — Access Advisor shows {svc} "
            f"last attempted {obs.last_used}, which action unknown; {why}{denied}: "
            f"{_names([u.action for u in items], 8)}"
        )
    for (label, reason), items in sorted(hidden.items()):
        lines.append(f"{_n(len(items))} {label} ({reason}): {_names([u.action for u in items], 8)}")
    return lines


def _paint(text: str, code: str, colour: bool) -> str:
    return f"\x1b[{code}m{text}\x1b[0m" if colour else text


def _names(items: Sequence[str], limit: int = 6) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", … (+{len(items) - limit})" if len(items) > limit else "")


# SGR codes of the text rendering's colours
_BOLD, _RED, _YELLOW, _GREEN, _DIM = "1", "31", "33", "32", "2"


def _text_brief(d: Diff, colour: bool) -> list[str]:
    """--brief: the unused risky actions by name, ! safe to remove, ? review first."""
    risky = [u for u in d.unused if u.risk]
    out = [_paint(f"Unused risky ({len(risky)}; ! safe to remove, ? review first)", _BOLD, colour)]
    for u in sorted(risky, key=lambda u: u.action):
        mark = "!" if u.removable else "?"
        out.append(f"  {mark} {u.action} [{', '.join(u.risk)}] {class_label(u.evidence)}")
    return out


def _text_unused(d: Diff, colour: bool) -> list[str]:
    """Unused actions by service and access level, the risky ones by name."""
    out = [
        _paint(
            f"Unused ({len(d.unused)} of {d.granted} granted: {len(d.removable)} safe to remove, "
            f"{len(d.to_review)} to review)",
            _BOLD,
            colour,
        )
    ]
    if not d.unused:
        out.append("  none")
    for svc, lvl, items in _grouped(d.unused):
        risky = [u for u in items if u.risk]
        head = f"  {svc:<20} {lvl or '-':<24} {len(items):>5}"
        if risky:
            head += _paint(f"  {len(risky)} risky", _RED, colour)
        out.append(head)
        classes = ", ".join(f"{n} {label}" for label, n in _classes(items))
        out.append(_paint(f"        {classes}", _DIM, colour))
        for u in risky:
            mark = "!" if u.removable else "?"
            out.append(
                _paint(
                    f"      {mark} {u.action} [{', '.join(u.risk)}] {class_label(u.evidence)}" + _last(u),
                    _RED if u.removable else _YELLOW,
                    colour,
                )
            )
    return out


def _text_review(d: Diff, colour: bool) -> list[str]:
    review = _review(d)
    out = [_paint(f"Review before removing ({len(d.to_review)})", _BOLD, colour)]
    for line in review:
        out.append(_paint(f"  {line}", _YELLOW, colour))
    if not review:
        out.append("  none")
    return out


def _text_narrowing(d: Diff, colour: bool) -> list[str]:
    out = [_paint(f"Resource narrowing ({len(d.narrowing)})", _BOLD, colour)]
    for n in d.narrowing:
        out.append(
            f"  {n.action}: granted on {_names(n.granted_on, 3)}; used on {len(n.used_on)}: "
            f"{_names(n.used_on, _SAMPLE)}"
        )
        if n.conditional:
            out.append(
                _paint(
                    f"      allowed only under {', '.join(n.condition_keys)}, which CloudTrail does not "
                    f"record: the calls rest on {_those(n)}, which the proposal drops",
                    _YELLOW,
                    colour,
                )
            )
    if not d.narrowing:
        out.append("  none")
    return out


def _text_missing(d: Diff, colour: bool) -> list[str]:
    out = [_paint(f"Missing ({len(d.missing)})", _BOLD, colour)]
    for m in d.missing:
        label = "denied" if m.kind == "denied" else "not allowed now"
        out.append(_paint(f"  {m.action} ×{m.count} {label} ({m.decision}: {m.reason})", _YELLOW, colour))
        out.append(f"      on {_names(m.resources, _SAMPLE)}")
        if m.change:
            out.append(f"      change: {', '.join(m.change)}")
        if m.note:
            out.append(f"      note: {m.note}")
    if not d.missing:
        out.append("  none")
    return out


def _text_proposed(p: Proposed, colour: bool) -> list[str]:
    if p.error:
        return [_paint(f"Proposed: none ({p.error})", _DIM, colour)]
    out = [
        _paint(
            f"Proposed: {p.granted} actions granted; removes {len(p.removes)} "
            f"({len(p.removes_risky)} risky"
            + (f", {len(p.removes_unproven)} without evidence of non-use" if p.removes_unproven else "")
            + ")",
            _GREEN,
            colour,
        )
    ]
    if p.removes_unproven:
        out.append(f"  removed without evidence of non-use: {_names(p.removes_unproven, 12)}")
    if p.removes_risky:
        out.append(f"  risky removed: {_names(p.removes_risky, 12)}")
    if p.adds:
        out.append(f"  adds (not granted today): {_names(p.adds, 12)}")
    return out


def to_text(d: Diff, colour: bool = False, *, brief: bool = False) -> str:
    """The diff as text; *brief*: the headline, and the unused risky actions by name."""
    d = scrub(d)  # record-derived text reaches a terminal; the colours are added below
    out = [
        _paint(f"diff {d.principal}", _BOLD, colour),
        f"current: {', '.join(d.current)}",
        _paint(_headline(d), _BOLD, colour),
    ]
    out += [_paint(f"evidence: {'; '.join(d.basis)}", _DIM, colour), ""] if d.basis else [""]
    if brief:
        return "\n".join(out + _text_brief(d, colour))
    out += _text_unused(d, colour)
    out += ["", *_text_review(d, colour)]
    out += ["", *_text_narrowing(d, colour)]
    out += ["", *_text_missing(d, colour)]
    if d.proposed is not None:
        out += ["", *_text_proposed(d.proposed, colour)]
    if d.unknown_patterns:
        out.append("")
        unknown = ", ".join(d.unknown_patterns)
        out.append(_paint(f"Action patterns unknown to {d.catalog}: {unknown}", _DIM, colour))
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------
# Markdown


def _md(text: str) -> str:
    # Record- and policy-derived text: HTML, "|" and newlines escaped (render.common.md_text).
    return md_text(text)


def _code(text: str) -> str:
    return md_code(text)


def to_markdown(d: Diff) -> str:
    out = [
        f"### iamtrim diff: {_code(d.principal)}",
        "",
        f"**{_md(_headline(d))}**",
        "",
        "Current policies: " + ", ".join(_code(n) for n in d.current),
        "",
    ]
    if d.basis:
        out += ["Evidence: " + "; ".join(_md(b) for b in d.basis), ""]
    out += [
        "#### Unused",
        "",
        f"{len(d.removable)} safe to remove, {len(d.to_review)} to review before removing. Only "
        "`NOT_USED_OBSERVABLE_SINCE` is evidence of non-use.",
        "",
        "| service | access level | unused | evidence | risky |",
        "|---|---|---:|---|---|",
    ]
    for svc, lvl, items in _grouped(d.unused):
        classes = "<br>".join(f"{n} {_code(label)}" for label, n in _classes(items))
        risky = [
            f"{_code(u.action)} ({_md(', '.join(u.risk))})"
            + ("" if u.removable else f" {_code(class_label(u.evidence))}")
            for u in items
            if u.risk
        ]
        out.append(f"| {_md(svc)} | {_md(lvl or '-')} | {len(items)} | {classes} | {'<br>'.join(risky)} |")
    out += ["", "#### Review before removing", ""]
    review = _review(d)
    out += [f"* {_md(line)}" for line in review] if review else ["None."]
    out += ["", "#### Resource narrowing", ""]
    if d.narrowing:
        out += ["| action | granted on | used on | proposed |", "|---|---|---|---|"]
        for n in d.narrowing:
            out.append(
                f"| {_code(n.action)} | {_md(', '.join(n.granted_on))} | {len(n.used_on)}: "
                f"{_md(_names(n.used_on, _SAMPLE))} | {_md(_names(n.proposed_on, _SAMPLE))} |"
            )
        conditional = [n for n in d.narrowing if n.conditional]
        if conditional:
            out.append("")
        for n in conditional:
            out.append(
                f"* {_code(n.action)} was allowed only under {_md(', '.join(n.condition_keys))}, which "
                f"CloudTrail does not record: the observed calls rest on {_those(n)}, which the "
                "proposal drops."
            )
    else:
        out.append("None.")
    out += ["", "#### Missing", ""]
    if d.missing:
        out += ["| action | kind | calls | resources | why | change |", "|---|---|---:|---|---|---|"]
        for m in d.missing:
            why = m.decision + ": " + m.reason + (f" ({m.note})" if m.note else "")
            out.append(
                f"| {_code(m.action)} | {_md(m.kind)} | {m.count} | {_md(_names(m.resources, _SAMPLE))} | "
                f"{_md(why)} | {_md(', '.join(m.change) or '-')} |"
            )
    else:
        out.append("None.")
    if d.proposed is not None:
        out += ["", "#### Proposed", ""]
        p = d.proposed
        if p.error:
            out.append(f"No proposal: {_md(p.error)}")
        else:
            out.append(
                f"Grants {p.granted} actions; removes {len(p.removes)} granted today "
                f"({len(p.removes_risky)} risky"
                + (": " + ", ".join(_code(a) for a in p.removes_risky) if p.removes_risky else "")
                + ")."
            )
            if p.removes_unproven:
                out.append("")
                out.append(
                    f"Removes {len(p.removes_unproven)} without evidence of non-use (review them): "
                    + _names([_code(a) for a in p.removes_unproven], 12)
                )
            if p.adds:
                out.append("")
                out.append("Adds (not granted today): " + ", ".join(_code(a) for a in p.adds))
    if d.unknown_patterns:
        unknown = ", ".join(_code(a) for a in d.unknown_patterns)
        out += ["", f"Action patterns unknown to {_md(d.catalog)}: {unknown}"]
    return "\n".join(out) + "\n"
