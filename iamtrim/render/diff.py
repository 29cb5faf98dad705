"""A diff as text (colour only when asked, i.e. on a TTY), Markdown, or JSON. Deterministic."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from iamtrim.review.diff import Diff, Missing, Narrowing, UnusedAction

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


def _headline(d: Diff) -> str:
    risky = len(d.risky_unused)
    text = (f"{d.granted} actions granted, {len(d.used)} used, {len(d.unused)} never used "
            f"({risky} risky)")
    if d.proposed is not None and not d.proposed.error:
        text += (f"; the proposal removes {len(d.proposed.removes)} granted actions, "
                 f"{len(d.proposed.removes_risky)} of them risky")
    if d.missing:
        text += f"; {len(d.missing)} missing"
    return text


# ---------------------------------------------------------------------------------------------
# JSON


def _unused_json(u: UnusedAction) -> dict[str, Any]:
    return {"action": u.action, "service": u.service, "access_level": u.access_level, "risk": list(u.risk),
            "last_seen": u.last_seen, "granted_by": u.granted_by, "conditional": u.conditional}


def _narrowing_json(n: Narrowing) -> dict[str, Any]:
    return {"action": n.action, "granted_on": list(n.granted_on), "used_on": list(n.used_on),
            "calls": n.calls, "proposed_on": list(n.proposed_on)}


def _missing_json(m: Missing) -> dict[str, Any]:
    return {"action": m.action, "kind": m.kind, "resources": list(m.resources), "count": m.count,
            "last_seen": m.last_seen, "decision": m.decision, "reason": m.reason, "change": list(m.change)}


def to_json(d: Diff) -> str:
    proposed: dict[str, Any] | None = None
    if d.proposed is not None:
        p = d.proposed
        proposed = {"granted": p.granted, "removes": len(p.removes), "removes_risky": list(p.removes_risky),
                    "adds": list(p.adds), "policies": [pol.to_json() for pol in p.policies]}
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
        "headline": {
            "granted": d.granted, "used": len(d.used), "unused": len(d.unused),
            "unused_risky": len(d.risky_unused),
            "proposal_removes": len(d.proposed.removes) if d.proposed else None,
            "proposal_removes_risky": len(d.proposed.removes_risky) if d.proposed else None,
            "missing": len(d.missing), "text": _headline(d),
        },
        "unknown_action_patterns": list(d.unknown_patterns),
        "findings": [{"code": f.code, "severity": str(f.severity), "subject": f.subject, "message": f.message}
                     for f in d.findings],
        "catalog": d.catalog,
    }
    return json.dumps(doc, indent=2)


# ---------------------------------------------------------------------------------------------
# Text


def _paint(text: str, code: str, colour: bool) -> str:
    return f"\x1b[{code}m{text}\x1b[0m" if colour else text


def _names(items: Sequence[str], limit: int = 6) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", … (+{len(items) - limit})" if len(items) > limit else "")


def to_text(d: Diff, colour: bool = False) -> str:
    bold, red, yellow, green, dim = "1", "31", "33", "32", "2"
    out = [_paint(f"diff {d.principal}", bold, colour), f"current: {', '.join(d.current)}",
           _paint(_headline(d), bold, colour), ""]
    out.append(_paint(f"Unused ({len(d.unused)} of {d.granted} granted)", bold, colour))
    if not d.unused:
        out.append("  none")
    for svc, lvl, items in _grouped(d.unused):
        risky = [u for u in items if u.risk]
        head = f"  {svc:<20} {lvl or '-':<24} {len(items):>5}"
        if risky:
            head += _paint(f"  {len(risky)} risky", red, colour)
        out.append(head)
        for u in risky:
            seen = f", last denied {u.last_seen}" if u.last_seen else ""
            out.append(_paint(f"      ! {u.action} [{', '.join(u.risk)}]{seen}", red, colour))
    out.append("")
    out.append(_paint(f"Resource narrowing ({len(d.narrowing)})", bold, colour))
    for n in d.narrowing:
        out.append(f"  {n.action}: granted on {_names(n.granted_on, 3)}; used on {len(n.used_on)}: "
                   f"{_names(n.used_on, _SAMPLE)}")
    if not d.narrowing:
        out.append("  none")
    out.append("")
    out.append(_paint(f"Missing ({len(d.missing)})", bold, colour))
    for m in d.missing:
        label = "denied" if m.kind == "denied" else "not allowed now"
        out.append(_paint(f"  {m.action} ×{m.count} {label} ({m.decision}: {m.reason})", yellow, colour))
        out.append(f"      on {_names(m.resources, _SAMPLE)}")
        if m.change:
            out.append(f"      change: {', '.join(m.change)}")
    if not d.missing:
        out.append("  none")
    if d.proposed is not None:
        out.append("")
        p = d.proposed
        if p.error:
            out.append(_paint(f"Proposed: none ({p.error})", dim, colour))
        else:
            out.append(_paint(f"Proposed: {p.granted} actions granted; removes {len(p.removes)} "
                              f"({len(p.removes_risky)} risky)", green, colour))
            if p.removes_risky:
                out.append(f"  risky removed: {_names(p.removes_risky, 12)}")
            if p.adds:
                out.append(f"  adds (not granted today): {_names(p.adds, 12)}")
    if d.unknown_patterns:
        out.append("")
        unknown = ", ".join(d.unknown_patterns)
        out.append(_paint(f"Action patterns unknown to {d.catalog}: {unknown}", dim, colour))
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------
# Markdown


def _md(text: str) -> str:
    return text.replace("|", "\\|")


def to_markdown(d: Diff) -> str:
    out = [f"### iamtrim diff: `{d.principal}`", "", f"**{_headline(d)}**", "",
           "Current policies: " + ", ".join(f"`{n}`" for n in d.current), ""]
    out += ["#### Unused", "", "| service | access level | unused | risky |", "|---|---|---:|---|"]
    for svc, lvl, items in _grouped(d.unused):
        risky = [f"`{u.action}` ({', '.join(u.risk)})" for u in items if u.risk]
        out.append(f"| {svc} | {lvl or '-'} | {len(items)} | {_md('<br>'.join(risky))} |")
    out += ["", "#### Resource narrowing", ""]
    if d.narrowing:
        out += ["| action | granted on | used on | proposed |", "|---|---|---|---|"]
        for n in d.narrowing:
            out.append(f"| `{n.action}` | {_md(', '.join(n.granted_on))} | {len(n.used_on)}: "
                       f"{_md(_names(n.used_on, _SAMPLE))} | {_md(_names(n.proposed_on, _SAMPLE))} |")
    else:
        out.append("None.")
    out += ["", "#### Missing", ""]
    if d.missing:
        out += ["| action | kind | calls | resources | why | change |", "|---|---|---:|---|---|---|"]
        for m in d.missing:
            out.append(f"| `{m.action}` | {m.kind} | {m.count} | {_md(_names(m.resources, _SAMPLE))} | "
                       f"{_md(m.decision + ': ' + m.reason)} | {_md(', '.join(m.change) or '-')} |")
    else:
        out.append("None.")
    if d.proposed is not None:
        out += ["", "#### Proposed", ""]
        p = d.proposed
        if p.error:
            out.append(f"No proposal: {_md(p.error)}")
        else:
            out.append(f"Grants {p.granted} actions; removes {len(p.removes)} granted today "
                       f"({len(p.removes_risky)} risky" + (": " + ", ".join(f"`{a}`" for a in p.removes_risky)
                                                           if p.removes_risky else "") + ").")
            if p.adds:
                out.append("")
                out.append("Adds (not granted today): " + ", ".join(f"`{a}`" for a in p.adds))
    if d.unknown_patterns:
        unknown = ", ".join(f"`{a}`" for a in d.unknown_patterns)
        out += ["", f"Action patterns unknown to {d.catalog}: {unknown}"]
    return "\n".join(out) + "\n"
