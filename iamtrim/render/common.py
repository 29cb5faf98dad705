"""Pieces the renderers share: findings and denied attempts as JSON, aligned text tables, and
the escaping of record-derived text for terminals and Markdown.

Anything a caller can put in a request (an object key, a session name, an error message) reaches
reports. JSON output is escaped by ``json.dumps``; text for a terminal has its control
characters (C0, DEL, C1: ``\x1b]0;title\x07`` would retitle the window, ``\x1b[2J`` clear it) and
the bidirectional overrides that reorder what is shown written visibly (``\x1b``); Markdown
also has its HTML and table syntax escaped.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any, TypeVar

import msgspec

from iamtrim.model import UsageRow
from iamtrim.model.finding import Finding


def json_text(doc: object) -> str:
    """``json.dumps(doc, indent=2)``, byte for byte, three times faster on large documents.

    With an indent, ``json`` encodes in Python; without one, in C. The C encoder writes the
    tokens (its escaping, ``ensure_ascii``, float forms: all of ``json``'s) and msgspec only
    re-spaces them, which for indent 2 gives json's layout exactly (``tests/test_render_json.py``
    compares the two on random documents). ``usage --format json`` of a principal with 44,226
    rows (33 MB): 0.67 → 0.23 s CPU. ``NaN`` and ``Infinity``, which ``json`` writes and JSON
    does not have, stop msgspec: such a document is encoded by ``json`` alone."""
    compact = json.dumps(doc)
    try:
        return msgspec.json.format(compact, indent=2)
    except msgspec.DecodeError:
        return json.dumps(doc, indent=2)


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


# C0 controls, DEL, C1 controls, line/paragraph separators and bidirectional formatting.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c]")


def _visible(m: re.Match[str]) -> str:
    code = ord(m.group(0))
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def terminal_safe(text: str) -> str:
    """*text* with every control character written visibly (``\x1b`` → ``\\x1b``), newlines too:
    a record-derived value is one line of a report."""
    return _UNSAFE.sub(_visible, text)


def terminal_block(text: str) -> str:
    """A rendered block for a terminal: control characters escaped, its own newlines kept."""
    return "\n".join(terminal_safe(line) for line in text.split("\n"))


_MD_HTML = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}


def md_text(text: str) -> str:
    """*text* as Markdown text, safe in a table cell: raw HTML (``<script>``, ``<b>``) as
    entities, ``|`` (a cell boundary) and ``\\`` (which would escape the next character)
    backslash-escaped, control characters (a newline would end the row) written visibly.
    https://spec.commonmark.org/0.31.2/#raw-html, https://github.github.com/gfm/#tables-extension-
    """
    text = terminal_safe(text).replace("\\", "\\\\")
    text = re.sub("[&<>]", lambda m: _MD_HTML[m.group(0)], text)
    return text.replace("|", "\\|")


def md_code(text: str) -> str:
    """*text* as a Markdown code span: fenced by more backticks than it holds in a row, ``|``
    escaped (GitHub tables split on it even in code), control characters written visibly."""
    text = terminal_safe(text).replace("|", "\\|")
    longest = max((len(run) for run in re.findall("`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


_T = TypeVar("_T")


def scrub(value: _T) -> _T:
    """A copy of *value* (frozen dataclasses, tuples, lists, dicts, strings) with every string
    made :func:`terminal_safe`: what a text renderer prints comes from records."""
    return _scrub(value)  # type: ignore[no-any-return]


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        if type(value) is not str:  # a StrEnum member: a closed vocabulary, not record text
            return value
        return terminal_safe(value) if _UNSAFE.search(value) else value
    if isinstance(value, tuple | list | set | frozenset):
        items = [_scrub(v) for v in value]
        if all(n is o for n, o in zip(items, value, strict=True)):
            return value  # unchanged: keep the very object (and skip rebuilding its owner)
        if hasattr(value, "_fields"):  # a NamedTuple
            return type(value)(*items)
        return type(value)(items)
    if isinstance(value, dict):
        pairs = [(_scrub(k), _scrub(v)) for k, v in value.items()]
        if all(k is k0 and v is v0 for (k, v), (k0, v0) in zip(pairs, value.items(), strict=True)):
            return value
        return type(value)(pairs)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changes = {}
        for f in dataclasses.fields(value):
            if not f.init:
                continue
            old = getattr(value, f.name)
            new = _scrub(old)
            if new is not old:
                changes[f.name] = new
        return dataclasses.replace(value, **changes) if changes else value
    return value
