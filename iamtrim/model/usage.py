"""What one CloudTrail record means: usage of actions on resources, or a counted skip."""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from iamtrim.model.principal import Principal

# A service principal: "<service>.amazonaws.com". CloudTrail also writes "AWS Internal" in
# userIdentity.invokedBy (an internal AWS caller, no service named): that names no service, so
# it is no kms:ViaService or aws:CalledVia value.
# https://docs.aws.amazon.com/awscloudtrail/latest/userguide/cloudtrail-event-reference-user-identity.html
_SERVICE_PRINCIPAL = re.compile(r"^[a-z0-9][a-z0-9-]*(?:\.[a-z0-9-]+)*\.amazonaws\.com$")


@functools.lru_cache(maxsize=1024)  # a trail names few services; called per KMS record
def is_service_principal(invoked_by: str) -> bool:
    """Whether *invoked_by* names an AWS service (``s3.amazonaws.com``), not ``AWS Internal``."""
    return bool(_SERVICE_PRINCIPAL.match(invoked_by))


class Outcome(StrEnum):
    USED = "used"  # the call passed authorization (it may still have failed afterwards)
    DENIED = "denied"  # the call was refused by IAM (AccessDenied, UnauthorizedOperation, ...)


class SkipReason(StrEnum):
    """Why a record (or one action of it) yields no usage. Every value is counted and shown."""

    SERVICE_PRINCIPAL = "service-principal"  # userIdentity.type AWSService: nobody's permissions
    NO_IDENTITY = "no-identity"  # userIdentity missing or without anything to attach policies to
    ANONYMOUS = "anonymous"  # unsigned request (public S3 access): no IAM principal
    CROSS_ACCOUNT_UNNAMED = "cross-account-unnamed"  # AWSAccount caller with no ARN
    CONSOLE_SIGN_IN = "console-sign-in"  # AwsConsoleSignIn events are not API calls
    SERVICE_EVENT = "service-event"  # AwsServiceEvent: emitted by AWS, not called by anyone
    INSIGHT = "insight"  # CloudTrail Insights events
    NETWORK_ACTIVITY = "network-activity"  # VPC endpoint network-activity events
    NOT_API_CALL = "not-api-call"  # other eventTypes that do not represent an authorized call
    NOT_AUTHENTICATED = "not-authenticated"  # failed before authorization (bad/expired credentials)
    NO_PERMISSION_NEEDED = "no-permission-needed"  # e.g. sts:GetCallerIdentity
    UNKNOWN_SERVICE = "unknown-service"  # eventSource has no IAM prefix in the catalog
    UNKNOWN_ACTION = "unknown-action"  # eventName maps to no catalog action
    MISSING_FIELDS = "missing-fields"  # eventSource/eventName/eventTime absent
    BAD_EVENT_TIME = "bad-event-time"  # eventTime not a UTC ISO 8601 time from 2013-11 to tomorrow
    MALFORMED = "malformed-record"  # not a JSON object, or a field of the wrong type
    # already counted: the same eventID, or without one the same identity (docs/store.md)
    DUPLICATE_EVENT = "duplicate-event"
    FAILED_WITHOUT_RESOURCE = "failed-without-resource"  # an error (Throttling), no request: no evidence
    RESOURCE_UNKNOWN = "resource-unknown"  # usage kept, but the resource could not be determined
    # an S3 key only failed calls named, past the per-folder bound (ingest.FAILED_KEYS_PER_FOLDER)
    FAILED_KEYS_OVER_BOUND = "failed-keys-over-bound"


@dataclass(frozen=True, slots=True)
class Skipped:
    reason: SkipReason
    detail: str = ""


@dataclass(frozen=True, slots=True, order=True)
class Context:
    """The request context of a call that policy conditions may test.

    Only low-cardinality facts are part of the aggregation key; the source IP is kept as a
    sample beside the aggregate (see :class:`UsageRow`).
    """

    region: str = ""
    vpc_endpoint: str = ""  # vpcEndpointId → aws:SourceVpce
    invoked_by: str = ""  # userIdentity.invokedBy → the service acting on the caller's behalf
    kms_key: str = ""  # KMS key ARN used (KMS calls, SSE-KMS on S3 data events)
    encryption_context_keys: tuple[str, ...] = ()  # kms:EncryptionContextKeys
    sse_header: str = ""  # request header x-amz-server-side-encryption (AES256 | aws:kms | ...)
    sse_kms_key_header: str = ""  # request header x-amz-server-side-encryption-aws-kms-key-id
    sse_applied: str = ""  # additionalEventData.SSEApplied (SSE_KMS, Default_SSE_S3, ...)
    tls_version: str = ""  # tlsDetails.tlsVersion; empty when not logged
    source_ip_kind: str = ""  # "ip", "service" (an AWS service name), or "" (unknown)
    # The errorCode of a call that passed authorization and then failed (NoSuchKey,
    # ResourceNotFoundException, NoSuchEntity, ...): the resource it named may not exist, and a
    # caller may name anything. Last, so that keys stored before it read as "" (a success).
    error_code: str = ""

    def to_key(self) -> str:
        """The form the store keeps: a JSON array of the fields, in order (docs/store.md)."""
        return json.dumps(
            [list(v) if isinstance(v, tuple) else v for v in (getattr(self, f) for f in self.__slots__)],
            separators=(",", ":"),
        )

    @classmethod
    def from_key(cls, text: str) -> Context:
        values = json.loads(text)
        kwargs: dict[str, Any] = {}
        for name, value in zip(cls.__slots__, values, strict=False):
            kwargs[name] = tuple(value) if isinstance(value, list) else value
        return cls(**kwargs)

    def as_dict(self) -> dict[str, str | list[str]]:
        out: dict[str, str | list[str]] = {}
        for name in self.__slots__:
            value = getattr(self, name)
            if value:
                out[name] = list(value) if isinstance(value, tuple) else value
        return out


@dataclass(frozen=True, slots=True)
class Usage:
    """One action on one resource by one principal, from one record.

    ``resource`` is an ARN, ``"*"`` for actions the catalog says take no resource, an ARN
    pattern where AWS hides part of the ARN (``secret:name-??????``), or ``None`` when the
    record does not tell (counted as ``resource-unknown``; never guessed as ``*``).
    """

    principal: Principal
    action: str
    resource: str | None
    outcome: Outcome
    context: Context
    time: str
    event_id: str
    source_ip: str = ""
    encryption_context: tuple[tuple[str, str], ...] = ()


# How many event ids and source IPs a usage row keeps as its sample (the first met).
SAMPLE_EVENT_IDS = 3
SAMPLE_SOURCE_IPS = 5


@dataclass(frozen=True, slots=True)
class UsageRow:
    """Aggregated usage as the store keeps it."""

    principal: str
    action: str
    resource: str | None
    outcome: Outcome
    context: Context
    count: int
    first_seen: str
    last_seen: str
    event_ids: tuple[str, ...] = ()
    source_ips: tuple[str, ...] = ()
    # A folded S3 row's distinct keys (``iamtrim.keysketch.KeySketch.to_bytes``); None elsewhere.
    key_sketch: bytes | None = None


@dataclass(frozen=True, slots=True)
class FileReport:
    """What reading one input file gave."""

    path: str
    records: int
    error: str = ""  # why (part of) the file could not be read; empty when it was read whole
    skipped_file: bool = False  # already ingested (same content), not read again
    skips: tuple[tuple[str, int], ...] = field(default=())
