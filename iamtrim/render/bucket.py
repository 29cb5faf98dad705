"""Generated bucket and key policies as JSON, plain policy documents and --explain text."""

from __future__ import annotations

import json
from typing import Any

from iamtrim.model.policy import Condition
from iamtrim.render.common import denied_json, finding_json, json_text, scrub
from iamtrim.synth.bucket import BucketStatement, GeneratedBucketPolicy
from iamtrim.synth.kms import GeneratedKeyPolicy, KeyStatement
from iamtrim.synth.merge import Merge


def _conditions(conditions: tuple[Condition, ...]) -> list[dict[str, Any]]:
    return [{"operator": c.operator, "key": c.key, "values": list(c.values)} for c in conditions]


def _merge_json(m: Merge) -> dict[str, Any]:
    return {
        "current_from": m.source,
        "had_policy": m.had_policy,
        "kept": list(m.kept),
        "replaced": list(m.replaced),
        "added": list(m.added),
    }


def merge_lines(m: Merge) -> list[str]:
    """The --explain lines of a merge into the current policy."""
    if not m.had_policy:
        return [f"# merged with {m.source}: no current policy"]
    return [
        f"# merged with {m.source}: kept {len(m.kept)}, replaced {len(m.replaced)}, added {len(m.added)}",
        *(f"kept (not iamtrim's): {label}" for label in m.kept),
        *(f"replaced: {label}" for label in m.replaced),
    ]


def _bucket_statement(s: BucketStatement, explain: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "sid": s.sid,
        "kind": s.kind,
        "purpose": s.purpose,
        "principals": list(s.principals),
        "evidence": {
            "calls": s.calls,
            "first_seen": s.first_seen,
            "last_seen": s.last_seen,
            **({"event_ids": list(s.event_ids)} if explain else {}),
        },
    }
    if s.covered:
        out["widened_by"] = [
            {
                "kind": "object-prefix",
                "resource": t,
                "covers": len(m),
                **({"covered": list(m)} if explain else {}),
            }
            for t, m in s.covered
        ]
    return out


def bucket_json(g: GeneratedBucketPolicy, explain: bool = False) -> str:
    doc: dict[str, Any] = {
        "bucket": g.bucket,
        "account": g.account,
        "document": g.policy.to_json(),
        "statements": [_bucket_statement(s, explain) for s in g.statements],
        **({"merge": _merge_json(g.merge)} if g.merge else {}),
        "unpinned": [{"principal": u.principal, "guard": u.guard, "reason": u.reason} for u in g.unpinned],
        "findings": [finding_json(f) for f in g.findings],
        "denied": [denied_json(r, with_principal=True) for r in g.denied],
        "verification": {
            "replayed_calls": g.replayed,
            "failed": 0,
            "lockout_checked": g.lockout_checked,
            "break_glass": list(g.break_glass),
        },
    }
    return json_text(doc)


def bucket_policy_text(g: GeneratedBucketPolicy) -> str:
    return json.dumps(g.policy.to_json(), indent=2)


def _statement_lines(s: BucketStatement | KeyStatement) -> list[str]:
    """The --explain head of one statement: what it is for and the evidence behind it."""
    lines = [f"{s.sid} [{s.kind}]: {s.purpose}"]
    if s.calls:
        lines.append(
            f"    evidence: {s.calls} calls {s.first_seen} .. {s.last_seen}; events " + ", ".join(s.event_ids)
        )
    return lines


def bucket_explain_text(g: GeneratedBucketPolicy) -> str:
    g = scrub(g)  # record-derived text reaches a terminal
    lines = [
        f"# bucket {g.bucket} (owner {g.account}): {len(g.statements)} statements, "
        f"{g.replayed} observed calls replayed, {g.lockout_checked} lockout requests checked"
    ]
    lines += merge_lines(g.merge) if g.merge else []
    for s in g.statements:
        lines += _statement_lines(s)
        for target, members in s.covered:
            lines.append(
                f"    {target} covers {len(members)}: "
                + ", ".join(members[:5])
                + (" ..." if len(members) > 5 else "")
            )
    if g.unpinned:
        lines.append("left unpinned:")
        lines += [f"    {u.principal} [{u.guard}]: {u.reason}" for u in g.unpinned]
    lines += [f"finding {f.code} ({f.severity}) {f.subject}: {f.message}" for f in g.findings]
    return "\n".join(lines)


def _key_statement(s: KeyStatement, explain: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "sid": s.sid,
        "kind": s.kind,
        "purpose": s.purpose,
        "principals": list(s.principals),
        "actions": list(s.actions),
        "evidence": {
            "calls": s.calls,
            "first_seen": s.first_seen,
            "last_seen": s.last_seen,
            **({"event_ids": list(s.event_ids)} if explain else {}),
        },
    }
    if s.conditions:
        out["conditions"] = _conditions(s.conditions)
    return out


def key_json(g: GeneratedKeyPolicy, explain: bool = False) -> str:
    doc: dict[str, Any] = {
        "key": g.key,
        "account": g.account,
        "document": g.policy.to_json(),
        "statements": [_key_statement(s, explain) for s in g.statements],
        **({"merge": _merge_json(g.merge)} if g.merge else {}),
        "findings": [finding_json(f) for f in g.findings],
        "denied": [denied_json(r, with_principal=True) for r in g.denied],
        "verification": {
            "replayed_calls": g.replayed,
            "failed": 0,
            "lockout_checked": g.lockout_checked,
            "admins": list(g.admins),
        },
    }
    return json_text(doc)


def key_policy_text(g: GeneratedKeyPolicy) -> str:
    return json.dumps(g.policy.to_json(), indent=2)


def key_explain_text(g: GeneratedKeyPolicy) -> str:
    g = scrub(g)  # record-derived text reaches a terminal
    lines = [
        f"# key {g.key}: {len(g.statements)} statements, {g.replayed} observed calls replayed, "
        f"{g.lockout_checked} lockout requests checked"
    ]
    lines += merge_lines(g.merge) if g.merge else []
    for s in g.statements:
        lines += _statement_lines(s)
    lines += [f"finding {f.code} ({f.severity}) {f.subject}: {f.message}" for f in g.findings]
    return "\n".join(lines)
