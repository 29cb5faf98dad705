"""JSON and table views of principals and usage."""

from __future__ import annotations

import json
import os
from typing import Any

from iamtrim.graph import resource_group
from iamtrim.keysketch import KeySketch, ObservedKeys
from iamtrim.model import UsageRow
from iamtrim.query import PrincipalSummary, PrincipalUsage
from iamtrim.render.common import json_text, scrub, text_table

SHARED_SHOWN = 15  # shared resources listed in the usage table; JSON lists every one
FOLD_PER_ACTION = 3  # resource families of one action shown apart by `usage --brief`


def _row(row: UsageRow) -> dict[str, Any]:
    return {
        "action": row.action,
        "resource": row.resource,
        "count": row.count,
        "first_seen": row.first_seen,
        "last_seen": row.last_seen,
        "context": row.context.as_dict(),
        "source_ips": list(row.source_ips),
        "event_ids": list(row.event_ids),
        **_observed_keys(row),
    }


def _observed_keys(row: UsageRow) -> dict[str, Any]:
    """A folded S3 row's distinct keys (docs/store.md, "Distinct keys of a folded row")."""
    keys = ObservedKeys.of([KeySketch.from_bytes(row.key_sketch)]) if row.key_sketch else None
    return {} if keys is None else {"observed_keys": keys.as_json()}


def usage_json(usage: PrincipalUsage) -> str:
    doc = {
        "principal": usage.principal.arn,
        "kind": str(usage.principal.kind),
        "used": [_row(r) for r in usage.used],
        "denied": [_row(r) for r in usage.denied],
        "skipped": dict(usage.skipped),
        "shared_resources": [{"resource": res, "principals": list(others)} for res, others in usage.shared],
        "only_this_principal": list(usage.only_this),
    }
    return json_text(doc)


def _ctx_text(row: UsageRow) -> str:
    c = row.context
    bits = []
    if c.vpc_endpoint:
        bits.append(c.vpc_endpoint)
    if c.invoked_by:
        bits.append("via " + c.invoked_by)
    if c.kms_key:
        bits.append("key " + c.kms_key.rsplit("/", 1)[-1][:8])
    if c.sse_header:
        bits.append("sse " + c.sse_header)
    return ", ".join(bits)


def _folded(rows: tuple[UsageRow, ...]) -> list[list[str]]:
    """One row per (action, resource family): S3 objects under their first folder, log streams
    under their log group, with how many resources and calls each stands for."""
    acc: dict[tuple[str, str], tuple[set[str], int, str, set[str]]] = {}
    for r in rows:
        key = (r.action, resource_group(r.resource or "") or "(unknown)")
        members, calls, last, ctx = acc.get(key, (set(), 0, "", set()))
        members.add(r.resource or "")
        ctx.add(_ctx_text(r))
        acc[key] = (members, calls + r.count, max(last, r.last_seen), ctx)
    # Past FOLD_PER_ACTION families, an action's rows become one: the families' common prefix.
    by_action: dict[str, list[tuple[str, tuple[set[str], int, str, set[str]]]]] = {}
    for (action, group), value in sorted(acc.items()):
        by_action.setdefault(action, []).append((group, value))
    out = []
    for action, groups in by_action.items():
        if len(groups) > FOLD_PER_ACTION:
            # A display prefix, not a path: `training-job/churn-xgb-2026-10-` is what they share.
            prefix = os.path.commonprefix([g for g, _ in groups])  # noqa: RUF071
            members = set().union(*(v[0] for _, v in groups))
            merged = (
                members,
                sum(v[1] for _, v in groups),
                max(v[2] for _, v in groups),
                set().union(*(v[3] for _, v in groups)),
            )
            groups = [(prefix + "*", merged)]
        for group, (members, calls, last, ctx) in groups:
            where = group if len(members) == 1 else f"{group} ({len(members)} resources)"
            out.append([action, where, str(calls), last, "; ".join(sorted(c for c in ctx if c))])
    return out


def usage_table(usage: PrincipalUsage, *, brief: bool = False) -> str:
    """The usage table; *brief* folds resource families into one row each and leaves out the
    shared-resources section (the listing of a busy role fits on a screen)."""
    usage = scrub(usage)  # record-derived text reaches a terminal
    out = [f"{usage.principal.arn} ({usage.principal.kind})", ""]
    out.append(
        f"used: {len(usage.used)} action/resource/context combinations, "
        f"{sum(r.count for r in usage.used)} calls"
    )
    if brief:
        rows = _folded(usage.used)
    else:
        rows = [
            [r.action, r.resource or "(unknown)", str(r.count), r.last_seen, _ctx_text(r)] for r in usage.used
        ]
    out.append(text_table(["ACTION", "RESOURCE", "CALLS", "LAST SEEN", "CONTEXT"], rows))
    if brief:
        if usage.denied:
            out += ["", f"denied: {sum(r.count for r in usage.denied)} calls (never counted as use)"]
            out.append(
                text_table(["ACTION", "RESOURCE", "CALLS", "LAST SEEN", "CONTEXT"], _folded(usage.denied))
            )
        return "\n".join(out)
    if usage.denied:
        out += ["", f"denied: {sum(r.count for r in usage.denied)} calls (never counted as use)"]
        rows = [
            [r.action, r.resource or "(unknown)", str(r.count), r.last_seen, _ctx_text(r)]
            for r in usage.denied
        ]
        out.append(text_table(["ACTION", "RESOURCE", "CALLS", "LAST SEEN", "CONTEXT"], rows))
    if usage.shared or usage.only_this:
        out += [
            "",
            f"resources: {len(usage.shared)} also used by other principals, "
            f"{len(usage.only_this)} used by this principal alone",
        ]
    if usage.shared:
        shown = usage.shared[:SHARED_SHOWN]
        out.append(
            text_table(["RESOURCE", "ALSO USED BY"], [[res, ", ".join(others)] for res, others in shown])
        )
        if len(usage.shared) > SHARED_SHOWN:
            out.append(f"... {len(usage.shared) - SHARED_SHOWN} more (--format json lists them all)")
    skipped = ", ".join(f"{k} {v}" for k, v in usage.skipped)
    if skipped:
        out += ["", f"records skipped in this data set: {skipped}"]
    return "\n".join(out)


def principals_json(summaries: list[PrincipalSummary]) -> str:
    return json.dumps(
        [
            {
                "principal": s.principal.arn,
                "kind": str(s.principal.kind),
                "name": s.principal.name,
                "account": s.principal.account,
                "actions_used": s.actions_used,
                "actions_denied": s.actions_denied,
                "calls": s.calls,
                "denied_calls": s.denied_calls,
                "first_seen": s.first_seen,
                "last_seen": s.last_seen,
                "services": list(s.services),
                "resources": s.resources,
                "shared_resources": s.shared_resources,
                "only_resources": s.only_resources,
                "shares_with": list(s.shares_with),
            }
            for s in summaries
        ],
        indent=2,
    )


def principals_table(summaries: list[PrincipalSummary]) -> str:
    summaries = scrub(summaries)  # record-derived text reaches a terminal
    rows = [
        [
            s.principal.arn,
            str(s.principal.kind),
            str(s.actions_used),
            str(s.calls),
            str(s.denied_calls),
            s.last_seen,
            str(s.resources),
            str(s.shared_resources),
            str(s.only_resources),
        ]
        for s in summaries
    ]
    return text_table(
        ["PRINCIPAL", "KIND", "ACTIONS", "CALLS", "DENIED", "LAST SEEN", "RESOURCES", "SHARED", "ONLY IT"],
        rows,
    )
