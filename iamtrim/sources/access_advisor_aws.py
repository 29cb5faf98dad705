"""IAM Access Advisor reports fetched from the account: the jobs the AWS CLI runs by hand.

For each role or user: ``GenerateServiceLastAccessedDetails`` at ``ACTION_LEVEL`` starts a job
(AWS runs it asynchronously), ``GetServiceLastAccessedDetails`` is polled with exponential backoff
until the job leaves ``IN_PROGRESS``, and its pages (``Marker`` / ``IsTruncated``) are joined into
one response — the same document a user would save with the CLI, read by the same parser
(``sources/access_advisor.py``).
https://docs.aws.amazon.com/IAM/latest/APIReference/API_GenerateServiceLastAccessedDetails.html
https://docs.aws.amazon.com/IAM/latest/APIReference/API_GetServiceLastAccessedDetails.html

All jobs are started before any is polled (AWS runs them in parallel), and nothing is returned
until every report is complete: the caller writes the store only after the account answered.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from iamtrim.aws import Aws
from iamtrim.errors import AwsError, PrincipalError
from iamtrim.sources.access_advisor import principal_kind

__all__ = ["FetchedReport", "fetch_reports", "list_principals", "resolve_principals"]

# Backoff between polls of one job: 1 s doubling to 30 s; a job still running after MAX_WAIT
# seconds fails the run (AWS: "it can take several minutes for the job to complete" on busy
# accounts; most finish in seconds).
FIRST_POLL = 1.0
MAX_POLL = 30.0
MAX_WAIT = 900.0


@dataclass(frozen=True, slots=True)
class FetchedReport:
    """One completed job: for whom, its id, and the joined response as JSON bytes (what a file of
    ``aws iam get-service-last-accessed-details`` output would hold)."""

    principal: str
    job_id: str
    body: bytes


def list_principals(aws: Aws, *, roles: bool, users: bool) -> list[str]:
    """Every role and/or user ARN of the account (``ListRoles``, ``ListUsers``, paged)."""
    out: list[str] = []
    if roles:
        for page in aws.paginate("iam", "ListRoles"):
            out += [str(r["Arn"]) for r in page.get("Roles", [])]
    if users:
        for page in aws.paginate("iam", "ListUsers"):
            out += [str(u["Arn"]) for u in page.get("Users", [])]
    return sorted(set(out))


def resolve_principals(aws: Aws, names: Sequence[str]) -> list[str]:
    """ARNs for *names*: an IAM role/user ARN as given; a bare name looked up as a role, then a
    user (``GetRole``, ``GetUser``); ``role/NAME`` and ``user/NAME`` look up only that kind."""
    out: list[str] = []
    for name in names:
        if name.startswith("arn:"):
            if principal_kind(name) not in ("role", "user"):
                raise PrincipalError(f"{name!r} is not an IAM role or user ARN")
            out.append(name)
            continue
        kind, _, short = name.rpartition("/")
        found = ""
        if kind in ("", "role"):
            got = aws.call("iam", "GetRole", RoleName=short, missing=frozenset({"NoSuchEntity"}))
            found = str(got["Role"]["Arn"]) if got else ""
        if not found and kind in ("", "user"):
            got = aws.call("iam", "GetUser", UserName=short, missing=frozenset({"NoSuchEntity"}))
            found = str(got["User"]["Arn"]) if got else ""
        if not found:
            raise PrincipalError(f"no role or user {name!r} in the account")
        out.append(found)
    return sorted(set(out))


def _json_default(value: object) -> str:
    return str(value)  # datetimes, as json.dumps(default=str) of a boto3 response writes them


def fetch_reports(
    aws: Aws,
    principals: Sequence[str],
    *,
    sleep: Callable[[float], None] = time.sleep,
    max_wait: float = MAX_WAIT,
    on_report: Callable[[str], None] | None = None,
) -> list[FetchedReport]:
    """Start one ACTION_LEVEL job per principal, wait for each, and return the joined reports."""
    jobs: list[tuple[str, str]] = []
    for arn in principals:
        started = aws.call(
            "iam", "GenerateServiceLastAccessedDetails", Arn=arn, Granularity="ACTION_LEVEL", resource=arn
        )
        assert started is not None
        jobs.append((arn, str(started["JobId"])))
    out: list[FetchedReport] = []
    for arn, job_id in jobs:
        first = _wait(aws, arn, job_id, sleep, max_wait)
        out.append(FetchedReport(arn, job_id, _joined(aws, arn, job_id, first)))
        if on_report:
            on_report(arn)
    return out


def _wait(
    aws: Aws, arn: str, job_id: str, sleep: Callable[[float], None], max_wait: float
) -> Mapping[str, Any]:
    delay, waited = FIRST_POLL, 0.0
    while True:
        page = aws.call("iam", "GetServiceLastAccessedDetails", JobId=job_id, resource=arn)
        assert page is not None
        if page.get("JobStatus") != "IN_PROGRESS":
            return page
        if waited >= max_wait:
            raise AwsError(
                f"Access Advisor job {job_id} for {arn} still IN_PROGRESS after {waited:.0f}s; "
                "run again later"
            )
        sleep(delay)
        waited += delay
        delay = min(delay * 2, MAX_POLL)


def _joined(aws: Aws, arn: str, job_id: str, first: Mapping[str, Any]) -> bytes:
    """All pages of a finished job as one response. A FAILED job is returned as it is: the parser
    skips it with AWS's error message, as it skips a saved file of one."""
    joined = {k: v for k, v in first.items() if k not in ("ResponseMetadata", "Marker")}
    services = list(first.get("ServicesLastAccessed", []))
    page = first
    while page.get("IsTruncated") and page.get("Marker"):
        page = (
            aws.call(
                "iam", "GetServiceLastAccessedDetails", JobId=job_id, Marker=page["Marker"], resource=arn
            )
            or {}
        )
        services += page.get("ServicesLastAccessed", [])
    joined["ServicesLastAccessed"] = services
    joined["IsTruncated"] = False
    return json.dumps(joined, default=_json_default, sort_keys=True).encode()
