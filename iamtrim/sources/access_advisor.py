"""IAM Access Advisor reports, as the AWS CLI or boto3 save them: a second source of evidence.

Reads the responses of

* ``GetServiceLastAccessedDetails`` — one entry per service the report's subject (a role, user,
  group or managed policy) can reach, with the last authentication time; for ``ACTION_LEVEL``
  jobs also ``TrackedActionsLastAccessed`` per tracked action
  (https://docs.aws.amazon.com/IAM/latest/APIReference/API_GetServiceLastAccessedDetails.html);
* ``GetServiceLastAccessedDetailsWithEntities`` — for one service, the users and roles that used
  it through a group or policy
  (https://docs.aws.amazon.com/IAM/latest/APIReference/API_GetServiceLastAccessedDetailsWithEntities.html).

Neither response names the report's subject nor (for the second) the service: they were request
parameters. The principal is taken from ``LastAuthenticatedEntity`` / ``EntityInfo.Arn`` or
from the caller (``--principal``); the service of a with-entities response from a
``ServiceNamespace`` key added to the file, the caller, or the file name (``…-<prefix>.json``).

A file that is not such a response, or whose ``JobStatus`` is not ``COMPLETED``, yields no
entries and a one-line reason; it never raises. Raw JSON stays in this module: callers get
``LastAccessed`` values.
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

__all__ = [
    "AccessAdvisorRead",
    "Granularity",
    "LastAccessed",
    "normalize_timestamp",
    "parse_response",
    "read_access_advisor",
]


class Granularity(StrEnum):
    """What one entry speaks for (``AccessAdvisorUsageGranularityType`` plus the entities call)."""

    SERVICE = "service"  # ServicesLastAccessed[] entry: the whole service namespace
    ACTION = "action"  # TrackedActionsLastAccessed[] entry: one tracked action
    ENTITY = "entity"  # EntityDetailsList[] entry: one user/role's use of one service


@dataclass(frozen=True, slots=True, order=True)
class LastAccessed:
    """One Access Advisor fact: *principal* last attempted *service* (or *action*) at a time.

    ``last_accessed`` is ``""`` when the report lists the service or tracked action but nobody
    attempted it within the tracking period (at least 400 days before ``generated_at``): that is
    evidence of non-use, not a missing value. Attempts include denied ones (AWS: "The service last
    accessed data includes all attempts to access an AWS API, not just the successful ones").
    """

    principal: str  # the role/user ARN the fact is about (for group/policy reports: the member)
    service: str  # service namespace (IAM prefix), e.g. "s3"
    action: str  # "" for service level; "s3:CreateBucket" for a tracked action
    last_accessed: str  # "YYYY-MM-DDTHH:MM:SSZ", or "" = not attempted in the tracking period
    region: str  # LastAuthenticatedRegion / LastAccessedRegion ("" when not reported)
    entity: str  # the ARN AWS named as the last accessor ("" when none)
    report: str  # what the report was generated for, when known (role/user/group/policy ARN)
    granularity: Granularity
    generated_at: str  # JobCompletionDate, "YYYY-MM-DDTHH:MM:SSZ"


@dataclass(slots=True)
class AccessAdvisorRead:
    """What one file gave: its entries, or why it was skipped, and non-fatal notes."""

    path: str
    kind: str = ""  # "service-last-accessed" | "with-entities" | "" (not recognised)
    status: str = ""  # JobStatus as written
    generated_at: str = ""
    entries: list[LastAccessed] = field(default_factory=list)
    skipped: str = ""  # one-line reason the file yielded nothing; "" when it was read
    notes: list[str] = field(default_factory=list)


_ARN_KIND = re.compile(r"^arn:[\w-]+:iam::(\d{12}|aws):(role|user|group|policy)/")


def principal_kind(arn: str) -> str:
    """``role``, ``user``, ``group``, ``policy`` or ``""`` for an IAM ARN."""
    m = _ARN_KIND.match(arn)
    return m.group(2) if m else ""


def normalize_timestamp(value: object) -> str:
    """An Access Advisor time as saved by the CLI (``2018-10-24T19:47:35.241Z``), boto3 through
    ``json.dumps(default=str)`` (``2018-10-24 19:47:35.241000+00:00``) or as epoch seconds →
    ``YYYY-MM-DDTHH:MM:SSZ`` in UTC (sortable, as the usage store keeps times). ``""`` if unreadable."""
    if isinstance(value, bool) or value is None:
        return ""
    try:
        if isinstance(value, int | float):
            when = datetime.fromtimestamp(float(value), tz=UTC)
        elif isinstance(value, str) and value.strip():
            when = datetime.fromisoformat(value.strip())
            if when.tzinfo is None:  # the API returns UTC; a naive time is read as UTC
                when = when.replace(tzinfo=UTC)
        else:
            return ""
    except (ValueError, OverflowError, OSError):
        return ""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _str(value: object) -> str:
    return value if isinstance(value, str) else ""


def _canonical_default(service: str, name: str) -> str | None:
    from iamtrim.catalog import canonical_action

    return canonical_action(service, name)


def _action_name(service: str, raw: str, canonical: Callable[[str, str], str | None]) -> tuple[str, bool]:
    """``ActionName`` (``CreateBucket``, or ``s3:CreateBucket``) → ``s3:CreateBucket``, and whether
    the catalog knows it (unknown names are kept as written, not dropped)."""
    prefix, _, name = raw.rpartition(":")
    prefix = prefix or service
    found = canonical(prefix, name)
    return (found, True) if found else (f"{prefix}:{name}", False)


def _service_from_name(path: str, exists: Callable[[str], bool]) -> str:
    """``…-with-entities-lambda.json`` → ``lambda`` when the last name token is a service prefix."""
    stem = Path(path).name
    for suffix in (".gz", ".json"):
        stem = stem.removesuffix(suffix)
    tokens = [t for t in re.split(r"[-_.]", stem) if t]
    for k in (3, 2, 1):  # prefixes may hold hyphens: "access-analyzer", "ec2-instance-connect"
        if len(tokens) > k and exists("-".join(tokens[-k:])):
            return "-".join(tokens[-k:])
    return ""


def _service_exists_default(prefix: str) -> bool:
    from iamtrim.catalog import service_exists

    return service_exists(prefix)


def parse_response(
    data: object,
    *,
    path: str = "",
    principal: str = "",
    service: str = "",
    canonical: Callable[[str, str], str | None] = _canonical_default,
    service_exists: Callable[[str], bool] = _service_exists_default,
) -> AccessAdvisorRead:
    """One decoded response → entries. *principal* is the ARN the report was generated for (a
    role or user: every entry is about it; a group or policy: entries go to the member AWS named).
    *service* names the service of a with-entities response. Never raises."""
    out = AccessAdvisorRead(path=path)
    if not isinstance(data, Mapping):
        out.skipped = "not an Access Advisor response (expected a JSON object)"
        return out
    if "ServicesLastAccessed" in data:
        out.kind = "service-last-accessed"
    elif "EntityDetailsList" in data:
        out.kind = "with-entities"
    else:
        out.skipped = (
            "not a GetServiceLastAccessedDetails(WithEntities) response "
            "(no ServicesLastAccessed or EntityDetailsList)"
        )
        return out
    out.status = _str(data.get("JobStatus"))
    if out.status != "COMPLETED":
        error = data.get("Error")
        why = ""
        if isinstance(error, Mapping):
            why = f": {_str(error.get('Code'))} {_str(error.get('Message'))}".rstrip()
        out.skipped = f"job status {out.status or 'missing'}{why}; only COMPLETED reports are evidence" + (
            " (fetch it again when the job completes)" if out.status == "IN_PROGRESS" else ""
        )
        return out
    out.generated_at = normalize_timestamp(data.get("JobCompletionDate"))
    if not out.generated_at:  # abbreviated copies (the AWS CLI docs' example) omit it
        out.generated_at = normalize_timestamp(data.get("JobCreationDate"))
        if not out.generated_at:
            out.skipped = "COMPLETED report without a readable JobCompletionDate or JobCreationDate"
            return out
        out.notes.append("no JobCompletionDate: JobCreationDate taken as the report's time")
    if data.get("IsTruncated") is True:
        out.notes.append("IsTruncated: only this page was saved; entries on later pages (Marker) are missing")
    if principal and not principal_kind(principal):
        out.skipped = f"--principal {principal!r} is not an IAM role, user, group or policy ARN"
        return out
    if out.kind == "service-last-accessed":
        _parse_services(data, out, principal, canonical)
    else:
        _parse_entities(data, out, principal, service, service_exists)
    out.entries.sort()
    return out


def _parse_services(
    data: Mapping[str, object],
    out: AccessAdvisorRead,
    principal: str,
    canonical: Callable[[str, str], str | None],
) -> None:
    services = data.get("ServicesLastAccessed")
    if not isinstance(services, list):
        out.skipped = "ServicesLastAccessed is not a list"
        return
    subject = _report_subject(services, out, principal)
    if subject is None:
        return
    job_type = _str(data.get("JobType"))
    unattributed = 0
    unknown_actions: list[str] = []
    for raw in services:
        if not isinstance(raw, Mapping):
            out.notes.append("a ServicesLastAccessed entry is not an object")
            continue
        ns = _str(raw.get("ServiceNamespace"))
        if not ns:
            out.notes.append("a ServicesLastAccessed entry has no ServiceNamespace")
            continue
        entity = _str(raw.get("LastAuthenticatedEntity"))
        who = subject or entity
        when = normalize_timestamp(raw.get("LastAuthenticated"))
        if not who:
            unattributed += 1
            continue
        out.entries.append(
            LastAccessed(
                who,
                ns,
                "",
                when,
                _str(raw.get("LastAuthenticatedRegion")),
                entity,
                principal,
                Granularity.SERVICE,
                out.generated_at,
            )
        )
        tracked = raw.get("TrackedActionsLastAccessed")
        if tracked is None:
            continue
        if not isinstance(tracked, list):
            out.notes.append(f"{ns}: TrackedActionsLastAccessed is not a list")
            continue
        if job_type == "SERVICE_LEVEL":
            out.notes.append(f"{ns}: TrackedActionsLastAccessed in a SERVICE_LEVEL report, read anyway")
        unattributed += _read_tracked(ns, tracked, out, principal, subject, canonical, unknown_actions)
    if unattributed:
        out.notes.append(
            f"{unattributed} entries never accessed are not attributed to anyone "
            "(a group or policy report names only members that used a service)"
        )
    if unknown_actions:
        out.notes.append(
            "tracked actions not in the IAM catalog, kept as written: "
            + ", ".join(sorted(set(unknown_actions))[:5])
        )
    if not out.entries:
        out.skipped = "no entry could be attributed to a principal: pass --principal ARN"


def _report_subject(services: list[object], out: AccessAdvisorRead, principal: str) -> str | None:
    """The principal a service-last-accessed report is about: *principal* (a role or user
    report), ``""`` when each entry speaks for the member it names (a group or policy report),
    or ``None`` when the report cannot be attributed (``out.skipped`` says why)."""
    # Who is the report about? For a role or user report AWS names that role/user as the
    # LastAuthenticatedEntity of every accessed service; for a group or policy report, the member
    # that last used it (API_GetServiceLastAccessedDetails.html, "the ARN of the following entity").
    named = {
        e
        for s in services
        if isinstance(s, Mapping)
        for e in [_str(s.get("LastAuthenticatedEntity"))]
        + [
            _str(a.get("LastAccessedEntity"))
            for a in (s.get("TrackedActionsLastAccessed") or [])
            if isinstance(a, Mapping)
        ]
        if e
    }
    # More than one entity behind a service means a group or policy report even when only one
    # ARN is named (the last accessor): its "not accessed" rows then speak for no single principal.
    shared = any(
        isinstance(s, Mapping)
        and isinstance(s.get("TotalAuthenticatedEntities"), int)
        and not isinstance(s.get("TotalAuthenticatedEntities"), bool)
        and int(s["TotalAuthenticatedEntities"]) > 1
        for s in services
    )
    subject_kind = principal_kind(principal)
    if subject_kind in ("role", "user"):
        others = {e for e in named if e != principal and principal_kind(e) in ("role", "user")}
        if others:
            out.skipped = (
                f"report names {sorted(others)[0]} as its last accessor, not --principal {principal}"
            )
            return None
        return principal
    if subject_kind:  # a group or policy report: evidence goes to the members AWS named
        return ""
    if len(named) == 1 and not shared and principal_kind(next(iter(named))) in ("role", "user"):
        return next(iter(named))
    if not named:
        out.skipped = "the report names no principal (nothing was accessed): pass --principal ARN"
        return None
    return ""


def _read_tracked(
    ns: str,
    tracked: list[object],
    out: AccessAdvisorRead,
    principal: str,
    subject: str,
    canonical: Callable[[str, str], str | None],
    unknown_actions: list[str],
) -> int:
    """Add the action-level entries of one service (``TrackedActionsLastAccessed``); the number
    of entries attributed to no one."""
    unattributed = 0
    for item in tracked:
        if not isinstance(item, Mapping) or not _str(item.get("ActionName")):
            out.notes.append(f"{ns}: a tracked action without ActionName")
            continue
        action, known = _action_name(ns, _str(item["ActionName"]), canonical)
        if not known:
            unknown_actions.append(action)
        a_entity = _str(item.get("LastAccessedEntity"))
        a_who = subject or a_entity
        if not a_who:
            unattributed += 1
            continue
        out.entries.append(
            LastAccessed(
                a_who,
                ns,
                action,
                normalize_timestamp(item.get("LastAccessedTime")),
                _str(item.get("LastAccessedRegion")),
                a_entity,
                principal,
                Granularity.ACTION,
                out.generated_at,
            )
        )
    return unattributed


def _parse_entities(
    data: Mapping[str, object],
    out: AccessAdvisorRead,
    principal: str,
    service: str,
    service_exists: Callable[[str], bool],
) -> None:
    details = data.get("EntityDetailsList")
    if not isinstance(details, list):
        out.skipped = "EntityDetailsList is not a list"
        return
    ns = _str(data.get("ServiceNamespace")) or service or _service_from_name(out.path, service_exists)
    if not ns:
        out.skipped = (
            'with-entities response does not say its service: add "ServiceNamespace": "<prefix>" '
            "to the file or name it …-<prefix>.json"
        )
        return
    for raw in details:
        info = raw.get("EntityInfo") if isinstance(raw, Mapping) else None
        if not isinstance(raw, Mapping) or not isinstance(info, Mapping) or not _str(info.get("Arn")):
            out.notes.append("an EntityDetailsList entry without EntityInfo.Arn")
            continue
        arn = _str(info["Arn"])
        out.entries.append(
            LastAccessed(
                arn,
                ns,
                "",
                normalize_timestamp(raw.get("LastAuthenticated")),
                "",
                arn,
                principal,
                Granularity.ENTITY,
                out.generated_at,
            )
        )
    if not out.entries:
        out.skipped = "EntityDetailsList names no entity"


def read_access_advisor(
    path: str | Path, *, principal: str = "", service: str = ""
) -> tuple[AccessAdvisorRead, bytes]:
    """Read and parse one file (``.json`` or ``.json.gz``); also returns its bytes (for the digest).
    Never raises: unreadable files come back with ``skipped`` set."""
    p = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        return AccessAdvisorRead(path=p, skipped=f"cannot read: {exc.strerror or exc}"), b""
    text = raw
    if raw[:2] == b"\x1f\x8b":
        try:
            text = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            return AccessAdvisorRead(path=p, skipped=f"corrupt gzip: {exc}"), raw
    try:
        data = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        return AccessAdvisorRead(path=p, skipped=f"not JSON ({exc.__class__.__name__})"), raw
    except RecursionError:
        return AccessAdvisorRead(path=p, skipped="JSON nested too deeply to read"), raw
    except MemoryError:
        return AccessAdvisorRead(path=p, skipped="too large to hold in memory"), raw
    return parse_response(data, path=p, principal=principal, service=service), raw
