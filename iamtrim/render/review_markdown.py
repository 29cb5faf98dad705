"""``iamtrim review --format markdown`` (the default): a ticket or a PR comment."""

from __future__ import annotations

from iamtrim.model.finding import FINDINGS
from iamtrim.render.review import SEVERITIES, by_account, findings_in, severities
from iamtrim.review.history import ReviewReport, Status, Tracked
from iamtrim.review.job import PrincipalReview

__all__ = ["FORMAT", "render"]

FORMAT = "markdown"

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
    for t in sorted(items, key=lambda t: (SEVERITIES.index(str(t.finding.severity)), t.finding.principal)):
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


def render(rep: ReviewReport) -> str:
    r = rep.review
    new, persisting = rep.of(Status.NEW), rep.of(Status.PERSISTING)
    sev = severities(rep.findings)
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
    # One quote per caveat: consecutive "> " lines would join into one paragraph.
    for c in r.caveats:
        out += [f"> **Caveat:** {_md(c)}", ""]
    if r.accounts:
        out += [
            "#### Accounts",
            "",
            "| account | name | status | principals | findings |",
            "|---|---|---|---:|---:|",
        ]
        for a, principals, _ in by_account(r):
            n = findings_in(rep, a.account)
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
