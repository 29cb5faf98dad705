"""The evidence model: what iamtrim knows about each action of a principal, and how it knows it.

CloudTrail alone misleads: data events (S3 object reads, Lambda invokes) are off by default,
some authorizations (``iam:PassRole``) are never logged, and a trail only covers the days, regions
and accounts it was read for. IAM Access Advisor keeps about 400 days of last-accessed data per
service, and per action for the services it tracks — but it counts denied attempts as access.
This module combines both, and the store's *coverage* (what the ingested CloudTrail could have
shown), into one answer per action — an :class:`Observability`:

=============================  ================================================================
``USED_CLOUDTRAIL``            a call passed authorization in the records
``USED_ACCESS_ADVISOR``        Access Advisor (action level) shows an attempt, CloudTrail no use
``SERVICE_USED_ACTION_UNKNOWN`` Access Advisor shows the service used; nothing says which action
``NOT_USED_OBSERVABLE_SINCE``  not used, and a source that would have shown it covers ``since``…
``NOT_OBSERVABLE``             nothing could have shown it (``reason``): never logged, data
                               events absent from the trail, or no trail for the account
=============================  ================================================================

Only ``NOT_USED_OBSERVABLE_SINCE`` is ever safe to remove (:attr:`Observability.removable`).

Public API (for generate-policy, diff and review)::

    ev = evidence.for_principal(store, arn)      # loads the principal's evidence once
    ev.classify("s3:GetObject")                  # -> Observability
    ev.access_advisor_actions()                  # -> tuple[AdvisedAction, ...]
    evidence.classify(store, arn, action)        # one-off forms of the same
    evidence.access_advisor_actions(store, arn)
    evidence.coverage(store)                     # -> Coverage (what the CloudTrail could show)
    evidence.ingest_access_advisor(paths, store, principal=...)  # -> AccessAdvisorReport

Docs: docs/evidence.md.
"""

from __future__ import annotations

import fnmatch
import functools
import hashlib
import json
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from pathlib import Path

from iamtrim.errors import NoReadableInput
from iamtrim.model import Outcome, TimeWindow, UsageRow
from iamtrim.sources.access_advisor import (
    AccessAdvisorRead,
    Granularity,
    LastAccessed,
    parse_response,
    read_access_advisor,
)
from iamtrim.store import AccessAdvisorFile, CoverageRow, Store

__all__ = [
    "DATA_EVENT_NAMES",
    "AccessAdvisorReport",
    "AdvisedAction",
    "Coverage",
    "Evidence",
    "NotObservableReason",
    "Observability",
    "ObservedBy",
    "PrincipalEvidence",
    "Window",
    "access_advisor_actions",
    "classify",
    "coverage",
    "data_event_source",
    "for_principal",
    "ingest_access_advisor",
    "never_logged",
]

# "IAM reports activity for at least the last 400 days"
# https://docs.aws.amazon.com/IAM/latest/UserGuide/access_policies_last-accessed.html
ACCESS_ADVISOR_TRACKING_DAYS = 400

# --------------------------------------------------------------------------------------------
# Knowledge tables. Each row cites the AWS page it comes from.
# --------------------------------------------------------------------------------------------

_S3_DATA = "https://docs.aws.amazon.com/AmazonS3/latest/userguide/cloudtrail-logging-s3-info.html#cloudtrail-data-events"
_LAMBDA_DATA = "https://docs.aws.amazon.com/lambda/latest/dg/logging-using-cloudtrail.html"
_DDB_DATA = "https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/logging-using-cloudtrail.html"
_SNS_DATA = "https://docs.aws.amazon.com/sns/latest/dg/logging-using-cloudtrail.html"
_SQS_DATA = (
    "https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/logging-using-cloudtrail.html"
)
_KINESIS_DATA = "https://docs.aws.amazon.com/streams/latest/dev/logging-using-cloudtrail.html"
_EBS_DATA = "https://docs.aws.amazon.com/ebs/latest/userguide/logging-ebs-apis-using-cloudtrail.html"
_CT_DATA = (
    "https://docs.aws.amazon.com/awscloudtrail/latest/userguide/logging-data-events-with-cloudtrail.html"
)

# IAM action (or fnmatch pattern) → (eventSource its data events carry, source). S3 object-level
# actions (resource type "object" in the catalog) are added by data_event_source().
DATA_EVENT_ACTIONS: dict[str, tuple[str, str]] = {
    "s3:ListBucket": ("s3.amazonaws.com", _S3_DATA),  # ListObjects(V2) is a data event
    "s3:ListBucketVersions": ("s3.amazonaws.com", _S3_DATA),
    "s3:ListBucketMultipartUploads": ("s3.amazonaws.com", _S3_DATA),
    "lambda:InvokeFunction": ("lambda.amazonaws.com", _LAMBDA_DATA),  # the Invoke API
    "dynamodb:GetItem": ("dynamodb.amazonaws.com", _DDB_DATA),
    "dynamodb:PutItem": ("dynamodb.amazonaws.com", _DDB_DATA),
    "dynamodb:UpdateItem": ("dynamodb.amazonaws.com", _DDB_DATA),
    "dynamodb:DeleteItem": ("dynamodb.amazonaws.com", _DDB_DATA),
    "dynamodb:BatchGetItem": ("dynamodb.amazonaws.com", _DDB_DATA),
    "dynamodb:BatchWriteItem": ("dynamodb.amazonaws.com", _DDB_DATA),
    "dynamodb:ConditionCheckItem": ("dynamodb.amazonaws.com", _DDB_DATA),
    "dynamodb:Query": ("dynamodb.amazonaws.com", _DDB_DATA),
    "dynamodb:Scan": ("dynamodb.amazonaws.com", _DDB_DATA),
    "dynamodb:PartiQL*": ("dynamodb.amazonaws.com", _DDB_DATA),
    "dynamodb:GetRecords": ("dynamodb.amazonaws.com", _DDB_DATA),  # DynamoDB Streams
    "dynamodb:GetShardIterator": ("dynamodb.amazonaws.com", _DDB_DATA),
    "dynamodb:DescribeStream": ("dynamodb.amazonaws.com", _DDB_DATA),
    "sns:Publish": ("sns.amazonaws.com", _SNS_DATA),  # Publish and PublishBatch
    "sqs:SendMessage": ("sqs.amazonaws.com", _SQS_DATA),
    "sqs:ReceiveMessage": ("sqs.amazonaws.com", _SQS_DATA),
    "sqs:DeleteMessage": ("sqs.amazonaws.com", _SQS_DATA),
    "sqs:ChangeMessageVisibility": ("sqs.amazonaws.com", _SQS_DATA),
    "kinesis:PutRecord": ("kinesis.amazonaws.com", _KINESIS_DATA),
    "kinesis:PutRecords": ("kinesis.amazonaws.com", _KINESIS_DATA),
    "kinesis:GetRecords": ("kinesis.amazonaws.com", _KINESIS_DATA),
    "kinesis:GetShardIterator": ("kinesis.amazonaws.com", _KINESIS_DATA),
    "kinesis:SubscribeToShard": ("kinesis.amazonaws.com", _KINESIS_DATA),
    "ebs:*": ("ebs.amazonaws.com", _EBS_DATA),  # EBS direct APIs
    "cloudtrail-data:PutAuditEvents": ("cloudtrail-data.amazonaws.com", _CT_DATA),
}

# (eventSource, eventName) of data events, for records older than eventVersion 1.07 that carry
# no eventCategory (the trail then only had S3, Lambda and DynamoDB data events to offer).
# Sources: _S3_DATA, _LAMBDA_DATA, _DDB_DATA.
DATA_EVENT_NAMES: frozenset[tuple[str | None, str | None]] = frozenset(
    [
        ("s3.amazonaws.com", n)
        for n in (
            "GetObject",
            "HeadObject",
            "PutObject",
            "CopyObject",
            "DeleteObject",
            "DeleteObjects",
            "ListObjects",
            "ListObjectsV2",
            "ListObjectVersions",
            "ListParts",
            "ListMultipartUploads",
            "CreateMultipartUpload",
            "UploadPart",
            "UploadPartCopy",
            "CompleteMultipartUpload",
            "AbortMultipartUpload",
            "GetObjectAcl",
            "PutObjectAcl",
            "GetObjectTagging",
            "PutObjectTagging",
            "DeleteObjectTagging",
            "GetObjectAttributes",
            "GetObjectRetention",
            "PutObjectRetention",
            "GetObjectLegalHold",
            "PutObjectLegalHold",
            "RestoreObject",
            "SelectObjectContent",
            "GetObjectTorrent",
        )
    ]
    + [("lambda.amazonaws.com", "Invoke")]
    + [
        ("dynamodb.amazonaws.com", n)
        for n in (
            "GetItem",
            "PutItem",
            "UpdateItem",
            "DeleteItem",
            "BatchGetItem",
            "BatchWriteItem",
            "Query",
            "Scan",
            "TransactGetItems",
            "TransactWriteItems",
            "ExecuteStatement",
            "BatchExecuteStatement",
            "ExecuteTransaction",
        )
    ]
)

# Actions CloudTrail never records as a call by the principal: (why, source).
NEVER_LOGGED: dict[str, tuple[str, str]] = {
    "iam:PassRole": (
        "a permission checked when a role is passed to a service, not an API call: CloudTrail logs "
        "the call that passed the role (e.g. sagemaker:CreateTrainingJob with its RoleArn), never "
        "iam:PassRole itself",
        "https://docs.aws.amazon.com/IAM/latest/UserGuide/id_roles_use_passrole.html",
    ),
    "sts:TagSession": (
        "checked inside AssumeRole* when session tags are passed; logged only as part of that event",
        "https://docs.aws.amazon.com/IAM/latest/UserGuide/id_session-tags.html",
    ),
    "sts:SetSourceIdentity": (
        "checked inside AssumeRole* when a source identity is set; logged only as part of that event",
        "https://docs.aws.amazon.com/IAM/latest/UserGuide/id_credentials_temp_control-access_monitor.html",
    ),
    "rds-db:connect": (
        "a database sign-in with an IAM authentication token, not an AWS API call",
        "https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/UsingWithRDS.IAMDBAuth.html",
    ),
    "execute-api:Invoke": (
        "requests to your API Gateway APIs are not CloudTrail events (use API Gateway access logs)",
        "https://docs.aws.amazon.com/apigateway/latest/developerguide/cloudtrail.html",
    ),
    "execute-api:InvalidateCache": (
        "requests to your API Gateway APIs are not CloudTrail events (use API Gateway access logs)",
        "https://docs.aws.amazon.com/apigateway/latest/developerguide/cloudtrail.html",
    ),
    "es:ESHttp*": (
        "HTTP requests to an OpenSearch domain are not CloudTrail events (use audit logs)",
        "https://docs.aws.amazon.com/opensearch-service/latest/developerguide/managedomains-cloudtrailauditing.html",
    ),
    "elasticfilesystem:Client*": (
        "NFS client access, authorized at mount time; CloudTrail shows it only as EFS service events "
        "(NewClientConnection), which iamtrim does not count as the principal's calls",
        "https://docs.aws.amazon.com/efs/latest/ug/logging-using-cloudtrail.html",
    ),
    "s3:BypassGovernanceRetention": (
        "checked inside DeleteObject/PutObjectRetention when the bypass header is sent; no event of its own",
        "https://docs.aws.amazon.com/AmazonS3/latest/userguide/object-lock-managing.html",
    ),
    "s3:Replicate*": (
        "performed by S3 replication with the replication role, not called by the principal",
        "https://docs.aws.amazon.com/AmazonS3/latest/userguide/setting-repl-config-perm-overview.html",
    ),
    "s3:ObjectOwnerOverrideToBucketOwner": (
        "checked by S3 replication when changing replica ownership, not called by the principal",
        "https://docs.aws.amazon.com/AmazonS3/latest/userguide/replication-change-owner.html",
    ),
    "s3:GetObjectVersionForReplication": (
        "used by S3 replication with the replication role, not called by the principal",
        "https://docs.aws.amazon.com/AmazonS3/latest/userguide/setting-repl-config-perm-overview.html",
    ),
}

# Actions Access Advisor does not report even when the service row says "not accessed":
# iam:PassRole, and S3 data events (docs/design.md#numbers; the S3 actions Access
# Advisor tracks are bucket-level management actions:
# https://docs.aws.amazon.com/IAM/latest/UserGuide/access_policies_last-accessed-action-last-accessed.html).
_ACCESS_ADVISOR_BLIND = ("iam:PassRole",)


@functools.cache
def data_event_source(action: str) -> str:
    """The eventSource whose *data* events would record *action*, or ``""`` for a management
    event. Trails log data events only when their selectors ask for them (``_CT_DATA``)."""
    for pattern, (source, _) in DATA_EVENT_ACTIONS.items():
        if fnmatch.fnmatchcase(action, pattern):
            return source
    if action.startswith("s3:"):
        from iamtrim.catalog import resource_types

        if any(rt.name in ("object", "accesspointobject") for rt in resource_types(action)):
            return "s3.amazonaws.com"
    return ""


@functools.cache
def never_logged(action: str) -> str:
    """Why CloudTrail never shows *action* as the principal's call, with its source; ``""`` if it does."""
    for pattern, (why, source) in NEVER_LOGGED.items():
        if fnmatch.fnmatchcase(action, pattern):
            return f"{why} ({source})"
    return ""


def _access_advisor_sees(action: str) -> bool:
    return action not in _ACCESS_ADVISOR_BLIND and data_event_source(action) != "s3.amazonaws.com"


# --------------------------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------------------------


class Evidence(StrEnum):
    """The observability class of one action for one principal (see the module docstring)."""

    USED_CLOUDTRAIL = "used-cloudtrail"
    USED_ACCESS_ADVISOR = "used-access-advisor"
    SERVICE_USED_ACTION_UNKNOWN = "service-used-action-unknown"
    NOT_USED_OBSERVABLE_SINCE = "not-used-observable-since"
    NOT_OBSERVABLE = "not-observable"


class ObservedBy(StrEnum):
    """Which data an :class:`Observability` rests on."""

    CLOUDTRAIL = "cloudtrail"
    ACCESS_ADVISOR = "access-advisor"
    BOTH = "cloudtrail+access-advisor"


class NotObservableReason(StrEnum):
    NEVER_LOGGED = "never-logged"  # CloudTrail never records it as the principal's call
    DATA_EVENTS_ABSENT = "data-events-absent"  # a data event, and the trail has none of that source
    NO_TRAIL = "no-trail"  # no complete trail file for the principal's account was ingested


@dataclass(frozen=True, slots=True)
class Window:
    """The days a kind of CloudTrail event was seen for one account, from complete trail files."""

    first_day: str  # YYYY-MM-DD
    last_day: str
    days: int  # distinct days with records
    gaps: int  # days between first and last with no record at all
    regions: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Coverage:
    """What the ingested CloudTrail could show, per account."""

    accounts: tuple[str, ...]
    management: tuple[tuple[str, Window], ...]  # account → window of management events
    data: tuple[tuple[str, str, Window], ...]  # (account, eventSource) → window of data events
    partial_days: tuple[tuple[str, int], ...]  # account → days seen only in downloads/exports
    unknown_files: int  # files ingested before the store recorded coverage (schema 1)

    def management_window(self, account: str) -> Window | None:
        return next((w for a, w in self.management if a == account), None)

    def data_window(self, account: str, source: str) -> Window | None:
        return next((w for a, s, w in self.data if a == account and s == source), None)

    def data_sources(self, account: str) -> tuple[str, ...]:
        return tuple(s for a, s, _ in self.data if a == account)


@dataclass(frozen=True, slots=True)
class Observability:
    """How iamtrim knows whether *principal* used *action*."""

    action: str
    evidence: Evidence
    since: str = ""  # NOT_USED_OBSERVABLE_SINCE: first day (YYYY-MM-DD) non-use is known from
    last_used: str = ""  # USED_*: last use; SERVICE_USED_ACTION_UNKNOWN: the service's last use
    region: str = ""  # Access Advisor's last-accessed region, when it gave one
    source: ObservedBy | None = None  # None: nothing observes it (NOT_OBSERVABLE)
    reason: NotObservableReason | None = None
    detail: str = ""  # one line for findings and --explain
    denied_only: bool = False  # CloudTrail shows only denied attempts: Access Advisor may count those
    caveats: tuple[str, ...] = ()

    @property
    def removable(self) -> bool:
        """Whether removing the permission is backed by evidence of non-use."""
        return self.evidence is Evidence.NOT_USED_OBSERVABLE_SINCE


@dataclass(frozen=True, slots=True, order=True)
class AdvisedAction:
    """An action Access Advisor (action level) shows the principal attempted."""

    action: str
    last_accessed: str  # YYYY-MM-DDTHH:MM:SSZ
    region: str  # where it was last attempted ("" when not reported): scope to it if you can
    generated_at: str  # when the report was generated
    in_cloudtrail: bool  # CloudTrail also shows the action used (generate-policy has it already)
    denied_in_cloudtrail: bool  # CloudTrail shows only denied attempts for it: AA may count those

    @property
    def explain(self) -> str:
        text = (
            f"{self.action}: Access Advisor shows it last attempted {self.last_accessed}"
            + (f" in {self.region}" if self.region else "")
            + f" (report of {self.generated_at})"
        )
        if self.denied_in_cloudtrail:
            text += "; CloudTrail shows only denied attempts, and Access Advisor counts denials as access"
        elif not self.in_cloudtrail:
            text += "; no CloudTrail record of it"
        return text


# --------------------------------------------------------------------------------------------
# Coverage
# --------------------------------------------------------------------------------------------


def _window(days: set[str], regions: set[str]) -> Window:
    ordered = sorted(days)
    first, last = ordered[0], ordered[-1]
    try:
        span = (date.fromisoformat(last) - date.fromisoformat(first)).days + 1
    except ValueError:
        span = len(ordered)
    return Window(first, last, len(ordered), max(0, span - len(ordered)), tuple(sorted(regions)))


def coverage_from_rows(
    rows: Iterable[CoverageRow], unknown_files: int = 0, *, trust_exports: bool = False
) -> Coverage:
    """Summarize coverage rows. Only complete trail files count, unless *trust_exports* (for
    exports known to be unfiltered, e.g. a CloudTrail Lake or Athena dump as JSON Lines)."""
    mgmt: dict[str, tuple[set[str], set[str]]] = {}
    data: dict[tuple[str, str], tuple[set[str], set[str]]] = {}
    partial: dict[str, set[str]] = {}
    accounts: set[str] = set()
    for r in rows:
        accounts.add(r.account)
        if not (r.complete or trust_exports):
            partial.setdefault(r.account, set()).add(r.day)
            continue
        bucket = (
            mgmt.setdefault(r.account, (set(), set()))
            if not r.data_source
            else data.setdefault((r.account, r.data_source), (set(), set()))
        )
        bucket[0].add(r.day)
        bucket[1].add(r.region)
    complete_days = {a: d for a, (d, _) in mgmt.items()}
    return Coverage(
        accounts=tuple(sorted(accounts)),
        management=tuple((a, _window(d, g)) for a, (d, g) in sorted(mgmt.items())),
        data=tuple((a, s, _window(d, g)) for (a, s), (d, g) in sorted(data.items())),
        partial_days=tuple(
            (a, len(d - complete_days.get(a, set())))
            for a, d in sorted(partial.items())
            if d - complete_days.get(a, set())
        ),
        unknown_files=unknown_files,
    )


def coverage(
    store: Store, account: str | None = None, *, trust_exports: bool = False, window: TimeWindow | None = None
) -> Coverage:
    """What the CloudTrail ingested into *store* could show (optionally for one account, and only
    the days inside *window*: evidence of non-use is then evidence within the window)."""
    unknown = int(store.meta("coverage_unknown_files") or 0)
    return coverage_from_rows(store.coverage(account, window), unknown, trust_exports=trust_exports)


# --------------------------------------------------------------------------------------------
# Classification
# --------------------------------------------------------------------------------------------


def _account_of(arn: str) -> str:
    parts = arn.split(":")
    return parts[4] if len(parts) > 5 else ""


def _tracking_start(generated_at: str) -> str:
    try:
        when = datetime.strptime(generated_at[:10], "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        return ""
    return (when - timedelta(days=ACCESS_ADVISOR_TRACKING_DAYS)).strftime("%Y-%m-%d")


@dataclass(slots=True)
class _Advice:
    """Access Advisor rows for one key, folded over every report."""

    last: str = ""  # latest attempt any report shows
    region: str = ""
    generated_at: str = ""  # the report that showed `last` (or the newest one when none did)
    since: str = ""  # earliest tracking start over the reports

    def add(self, row: LastAccessed) -> None:
        start = _tracking_start(row.generated_at)
        if start and (not self.since or start < self.since):
            self.since = start
        if row.last_accessed and row.last_accessed > self.last:
            self.last, self.region, self.generated_at = row.last_accessed, row.region, row.generated_at
        elif not self.last and row.generated_at > self.generated_at:
            self.generated_at = row.generated_at


@dataclass(slots=True)
class PrincipalEvidence:
    """Everything the store knows about one principal, loaded once; classify many actions."""

    principal: str
    coverage: Coverage
    used: dict[str, str] = field(default_factory=dict)  # action → last_seen (passed authorization)
    denied: dict[str, str] = field(default_factory=dict)  # action → last_seen (denied)
    services_used: set[str] = field(default_factory=set)  # prefixes with a USED CloudTrail row
    actions: dict[str, _Advice] = field(default_factory=dict)  # Access Advisor, action level
    services: dict[str, _Advice] = field(default_factory=dict)  # Access Advisor, service/entity level

    # -- the API ------------------------------------------------------------------------------

    def classify(self, action: str) -> Observability:
        """The observability class of *action* (``service:Action`` as the catalog spells it)."""
        used = self._used(action)
        if used is not None:
            return used
        window, not_seen, caveats = self._cloudtrail_window(action)
        act = self.actions.get(action)
        if act is not None:  # tracked at action level and not attempted in the tracking period
            return self._not_attempted(action, act, window, caveats)
        svc = self.services.get(action.partition(":")[0])
        if svc is not None and svc.last:
            return self._service_used(action, svc, window, not_seen, caveats)
        return self._not_seen(action, svc, window, not_seen, caveats)

    def classify_all(self, actions: Iterable[str]) -> dict[str, Observability]:
        return {a: self.classify(a) for a in sorted(set(actions))}

    def access_advisor_actions(self, *, missing_from_cloudtrail: bool = False) -> tuple[AdvisedAction, ...]:
        """Actions Access Advisor (action level) shows attempted, sorted. generate-policy keeps
        those with ``in_cloudtrail`` false (they were used, maybe before the trail's window) and
        flags the ``denied_in_cloudtrail`` ones."""
        out = []
        for action, adv in sorted(self.actions.items()):
            if not adv.last:
                continue
            in_ct = action in self.used
            if missing_from_cloudtrail and in_ct:
                continue
            out.append(
                AdvisedAction(
                    action, adv.last, adv.region, adv.generated_at, in_ct, not in_ct and action in self.denied
                )
            )
        return tuple(out)

    # -- classify's cases, in the order it tries them ------------------------------------------

    def _used(self, action: str) -> Observability | None:
        """Used per CloudTrail, or attempted per Access Advisor (action level); else None."""
        denied_last = self.denied.get(action, "")
        if action in self.used:
            return Observability(
                action,
                Evidence.USED_CLOUDTRAIL,
                last_used=self.used[action],
                source=ObservedBy.CLOUDTRAIL,
                detail=f"used per CloudTrail, last {self.used[action]}",
            )
        act = self.actions.get(action)
        if act is not None and act.last:
            return Observability(
                action,
                Evidence.USED_ACCESS_ADVISOR,
                last_used=act.last,
                region=act.region,
                source=ObservedBy.ACCESS_ADVISOR,
                denied_only=bool(denied_last),
                detail=f"Access Advisor: last attempted {act.last}"
                + (f" in {act.region}" if act.region else "")
                + f" (report of {act.generated_at}); no CloudTrail use"
                + (
                    "; CloudTrail shows only denied attempts and Access Advisor counts denials as access"
                    if denied_last
                    else ""
                ),
            )
        return None

    def _not_attempted(
        self, action: str, act: _Advice, window: Window | None, caveats: tuple[str, ...]
    ) -> Observability:
        """Tracked by Access Advisor at action level and not attempted in its tracking period."""
        ct_since = window.first_day if window else ""
        since = min(s for s in (act.since, ct_since) if s) if (act.since or ct_since) else ""
        return Observability(
            action,
            Evidence.NOT_USED_OBSERVABLE_SINCE,
            since=since,
            source=ObservedBy.BOTH if ct_since else ObservedBy.ACCESS_ADVISOR,
            caveats=caveats,
            detail=f"not attempted per Access Advisor (tracked action, report of {act.generated_at})"
            + (f"; not in CloudTrail since {ct_since}" if ct_since else ""),
        )

    def _service_used(
        self,
        action: str,
        svc: _Advice,
        window: Window | None,
        not_seen: tuple[NotObservableReason, str],
        caveats: tuple[str, ...],
    ) -> Observability:
        """Access Advisor shows the action's service used (service level only)."""
        service = action.partition(":")[0]
        denied_last = self.denied.get(action, "")
        ct_since = window.first_day if window else ""
        service_denied_only = service not in self.services_used and any(
            a.partition(":")[0] == service for a in self.denied
        )
        # The service's last use falls inside the trail's window, so CloudTrail saw that call
        # and it was not this action. A last use after the window (or before it) is a call
        # CloudTrail cannot speak for: then which action it was is unknown.
        if window is not None and window.first_day <= svc.last[:10] <= window.last_day:
            return Observability(
                action,
                Evidence.NOT_USED_OBSERVABLE_SINCE,
                since=ct_since,
                last_used=svc.last,
                source=ObservedBy.CLOUDTRAIL,
                caveats=caveats,
                detail=f"not in CloudTrail since {ct_since}; Access Advisor shows {service} last "
                f"attempted {svc.last}, inside that window"
                + (f"; denied in CloudTrail, last {denied_last}" if denied_last else ""),
            )
        return Observability(
            action,
            Evidence.SERVICE_USED_ACTION_UNKNOWN,
            last_used=svc.last,
            region=svc.region,
            source=ObservedBy.ACCESS_ADVISOR,
            denied_only=service_denied_only,
            caveats=caveats,
            detail=f"Access Advisor shows {service} last attempted {svc.last} (report of "
            f"{svc.generated_at}); which action is unknown"
            + (
                f"; CloudTrail cannot show it: {not_seen[1]}"
                if window is None
                else f"; CloudTrail covers only {ct_since}..{window.last_day}"
            )
            + (
                "; CloudTrail shows only denied attempts in this service, and Access Advisor "
                "counts denials as access"
                if service_denied_only
                else ""
            ),
        )

    def _not_seen(
        self,
        action: str,
        svc: _Advice | None,
        window: Window | None,
        not_seen: tuple[NotObservableReason, str],
        caveats: tuple[str, ...],
    ) -> Observability:
        """Neither source shows it used: not used since the first day one could have shown it,
        or not observable at all (and why)."""
        service = action.partition(":")[0]
        denied_last = self.denied.get(action, "")
        ct_since = window.first_day if window else ""
        aa_since = svc.since if svc is not None and _access_advisor_sees(action) else ""
        if aa_since or ct_since:
            since = min(s for s in (aa_since, ct_since) if s)
            sources = (
                ObservedBy.BOTH
                if ct_since and aa_since
                else ObservedBy.CLOUDTRAIL
                if ct_since
                else ObservedBy.ACCESS_ADVISOR
            )
            parts = []
            if ct_since:
                parts.append(f"not in CloudTrail since {ct_since}")
            if aa_since and svc is not None:
                parts.append(f"Access Advisor shows {service} not attempted (report of {svc.generated_at})")
            if denied_last:
                parts.append(f"denied in CloudTrail, last {denied_last}")
            return Observability(
                action,
                Evidence.NOT_USED_OBSERVABLE_SINCE,
                since=since,
                source=sources,
                caveats=caveats,
                detail="; ".join(parts),
            )
        reason, text = not_seen
        return Observability(
            action,
            Evidence.NOT_OBSERVABLE,
            reason=reason,
            caveats=caveats,
            detail=f"not observable: {text}"
            + (f"; denied in CloudTrail, last {denied_last}" if denied_last else ""),
        )

    # -- internals ----------------------------------------------------------------------------

    def _cloudtrail_window(
        self, action: str
    ) -> tuple[Window | None, tuple[NotObservableReason, str], tuple[str, ...]]:
        """The CloudTrail window that would have shown *action*, or why there is none."""
        caveats: list[str] = []
        if self.coverage.unknown_files:
            caveats.append(
                f"{self.coverage.unknown_files} files were ingested before the store "
                "recorded coverage (schema 1): re-ingest into a new store to count them"
            )
        why = never_logged(action)
        if why:
            return None, (NotObservableReason.NEVER_LOGGED, why), tuple(caveats)
        account = _account_of(self.principal)
        partial = dict(self.coverage.partial_days).get(account, 0)
        if partial:
            caveats.append(
                f"{partial} days seen only in downloads/exports, which may be filtered "
                "and are not counted as coverage"
            )
        source = data_event_source(action)
        if source:
            window = self.coverage.data_window(account, source)
            if window is None:
                return (
                    None,
                    (
                        NotObservableReason.DATA_EVENTS_ABSENT,
                        f"a data event, and the trail of account {account or '?'} has no {source} data "
                        f"events (trails log data events only when selected: {_CT_DATA})",
                    ),
                    tuple(caveats),
                )
            # The regions of a data-event window are those its events came from, not the trail's:
            # said here, so that the one "regions covered" line (the management window) never
            # stands beside a second, narrower one for the same account.
            caveats.append(
                f"data events are logged only for the resources the trail's selectors "
                f"name; {source} data events seen on {window.days} days, in " + ", ".join(window.regions)
            )
        else:
            window = self.coverage.management_window(account)
            if window is None:
                return (
                    None,
                    (
                        NotObservableReason.NO_TRAIL,
                        f"no complete CloudTrail trail file for account {account or '?'} was ingested",
                    ),
                    tuple(caveats),
                )
        if window.gaps and not source:  # data events come and go with use; gaps mean nothing there
            caveats.append(
                f"{window.gaps} days without records between {window.first_day} and {window.last_day}"
            )
        if not source:
            caveats.append("regions covered: " + ", ".join(window.regions))
        return window, (NotObservableReason.NO_TRAIL, ""), tuple(caveats)


def for_principal(
    store: Store,
    principal_arn: str,
    *,
    trust_exports: bool = False,
    window: TimeWindow | None = None,
    rows: Sequence[UsageRow] | None = None,
) -> PrincipalEvidence:
    """Load *principal_arn*'s CloudTrail usage, Access Advisor facts and its account's coverage
    (within *window*: usage rows overlapping it, coverage of its days, and an Access Advisor last
    access before its start read as no access in it). *rows*: the principal's usage rows (within
    *window*) when the caller has read them already (the review job)."""
    account = _account_of(principal_arn)
    ev = PrincipalEvidence(
        principal_arn, coverage(store, account, trust_exports=trust_exports, window=window)
    )
    for row in store.usage(principal_arn, window) if rows is None else rows:
        target = ev.used if row.outcome is Outcome.USED else ev.denied
        if row.last_seen > target.get(row.action, ""):
            target[row.action] = row.last_seen
        if row.outcome is Outcome.USED:
            ev.services_used.add(row.action.partition(":")[0])
    for fact in store.access_advisor(principal_arn):
        if window is not None and window.since and fact.last_accessed and fact.last_accessed < window.since:
            # Last attempted before the window: not attempted inside it. A last access after
            # --until may or may not have had one inside it, so it stays use.
            fact = replace(fact, last_accessed="")
        if fact.granularity is Granularity.ACTION:
            ev.actions.setdefault(fact.action, _Advice()).add(fact)
        else:
            ev.services.setdefault(fact.service, _Advice()).add(fact)
    return ev


def classify(store: Store, principal_arn: str, action: str) -> Observability:
    """One-off :meth:`PrincipalEvidence.classify` (use :func:`for_principal` for many actions)."""
    return for_principal(store, principal_arn).classify(action)


def access_advisor_actions(
    store: Store, principal_arn: str, *, missing_from_cloudtrail: bool = False
) -> tuple[AdvisedAction, ...]:
    """Actions Access Advisor (action level) shows *principal_arn* attempted."""
    return for_principal(store, principal_arn).access_advisor_actions(
        missing_from_cloudtrail=missing_from_cloudtrail
    )


# --------------------------------------------------------------------------------------------
# Ingest of Access Advisor files
# --------------------------------------------------------------------------------------------


@dataclass(slots=True)
class AccessAdvisorReport:
    files_read: int = 0
    files_already: int = 0
    entries: int = 0
    principals: set[str] = field(default_factory=set)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, one-line reason)
    notes: list[tuple[str, str]] = field(default_factory=list)  # (path, non-fatal note)


_AA_SUFFIXES = (".json", ".json.gz")


def _aa_files(paths: Sequence[str | os.PathLike[str]]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            out.extend(
                (str(f), "")
                for f in sorted(p.rglob("*"))
                if f.is_file() and f.name.lower().endswith(_AA_SUFFIXES) and not f.name.startswith(".")
            )
        elif p.is_file():
            out.append((str(p), ""))
        else:
            out.append((str(p), "no such file or directory"))
    return out


def _store_report(
    store: Store,
    path: str,
    read: AccessAdvisorRead,
    raw: bytes,
    known: set[str],
    now: str,
    report: AccessAdvisorReport,
    on_file: Callable[[str, str], None] | None,
) -> None:
    """Store one parsed report (or count why it was skipped, or that it is already stored)."""
    digest = hashlib.sha256(raw).hexdigest() if raw else ""
    if read.skipped:
        report.skipped.append((path, read.skipped))
        if on_file:
            on_file(path, read.skipped)
        return
    if digest in known:
        report.files_already += 1
        return
    known.add(digest)
    store.add_access_advisor(
        AccessAdvisorFile(
            digest,
            path,
            read.kind,
            read.status,
            read.generated_at,
            len(read.entries),
            "",
            tuple(read.notes),
            now,
        ),
        read.entries,
    )
    report.files_read += 1
    report.entries += len(read.entries)
    report.principals.update(e.principal for e in read.entries)
    report.notes.extend((path, n) for n in read.notes)


def ingest_access_advisor_responses(
    responses: Sequence[tuple[str, str, bytes]],
    store: Store,
    *,
    on_file: Callable[[str, str], None] | None = None,
) -> AccessAdvisorReport:
    """Store Access Advisor responses fetched from the account: (label, principal ARN, response
    JSON bytes) each, read exactly as a saved file of the same response. All responses are in hand
    before this is called, so an AWS failure never leaves part of a run in the store."""
    report = AccessAdvisorReport()
    known = store.known_access_advisor()
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    for label, principal, raw in responses:
        try:
            data = json.loads(raw)
        except ValueError as exc:  # not from AWS's JSON: a bug, but one report only
            read = AccessAdvisorRead(path=label, skipped=f"not JSON ({exc.__class__.__name__})")
        else:
            read = parse_response(data, path=label, principal=principal)
        _store_report(store, label, read, raw, known, now, report, on_file)
    return report


def ingest_access_advisor(
    paths: Sequence[str | os.PathLike[str]],
    store: Store,
    *,
    principal: str = "",
    service: str = "",
    on_file: Callable[[str, str], None] | None = None,
) -> AccessAdvisorReport:
    """Read Access Advisor responses into *store*. A file that is not such a response, or whose job
    is not COMPLETED, is skipped with a one-line reason (``on_file(path, reason)``); raises
    ``NoReadableInput`` only when no file could be read and none was already stored."""
    report = AccessAdvisorReport()
    known = store.known_access_advisor()
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    for path, error in _aa_files(paths):
        if error:
            report.skipped.append((path, error))
            if on_file:
                on_file(path, error)
            continue
        read, raw = read_access_advisor(path, principal=principal, service=service)
        _store_report(store, path, read, raw, known, now, report, on_file)
    if report.files_read == 0 and report.files_already == 0:
        raise NoReadableInput(
            "no Access Advisor report could be read "
            + (
                f"({report.skipped[0][0]}: {report.skipped[0][1]})"
                if len(report.skipped) == 1 and not on_file
                else f"({len(report.skipped)} skipped)"
                if report.skipped
                else "(no input files)"
            )
        )
    return report
