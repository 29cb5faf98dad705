"""Typed views of a CloudTrail record: only the fields iamtrim reads.

Decoding straight into these msgspec structs (instead of building a dict for every field of a
~1.6 KB record) is what makes ingest fast: see docs/design.md#numbers. Fields whose shape
varies by service (``requestParameters``, ``responseElements``, ``additionalEventData``) are
decoded generically; ``userIdentity`` is kept as raw JSON and resolved once per distinct identity
(``iamtrim.normalize.record.Normalizer.identity_of``): a session's calls repeat it byte for byte, so the
structs need not be built, hashed and freed for every record. Field reference:
https://docs.aws.amazon.com/awscloudtrail/latest/userguide/cloudtrail-event-reference-record-contents.html
"""

from __future__ import annotations

from typing import Any

import msgspec


class SessionIssuer(msgspec.Struct, frozen=True):
    type: str | None = None
    arn: str | None = None
    accountId: str | None = None
    userName: str | None = None


class WebIdFederationData(msgspec.Struct, frozen=True):
    federatedProvider: str | None = None


class SessionContext(msgspec.Struct, frozen=True):
    sessionIssuer: SessionIssuer | None = None
    webIdFederationData: WebIdFederationData | None = None


class UserIdentity(msgspec.Struct, frozen=True):
    type: str | None = None
    principalId: str | None = None
    arn: str | None = None
    accountId: str | None = None
    userName: str | None = None
    invokedBy: str | None = None
    identityProvider: str | None = None
    sessionContext: SessionContext | None = None


class ResourceRef(msgspec.Struct, frozen=True):
    """Only the ARN is read; ``type`` and ``accountId`` are skipped by the decoder."""

    ARN: str | None = None


class AdditionalEventData(msgspec.Struct, frozen=True):
    """Only the field iamtrim reads; the rest (x-amz-id-2, bytes counts, ...) is never built."""

    SSEApplied: str | None = None


class TlsDetails(msgspec.Struct, frozen=True):
    tlsVersion: str | None = None


NULL_RAW = msgspec.Raw(b"null")


class Record(msgspec.Struct):
    eventVersion: str | None = None
    apiVersion: str | None = None  # the API a multi-version service was called through (ELB)
    eventTime: str | None = None
    eventSource: str | None = None
    eventName: str | None = None
    eventType: str | None = None
    eventCategory: str | None = None
    eventID: str | None = None
    awsRegion: str | None = None
    sourceIPAddress: str | None = None
    errorCode: str | None = None
    errorMessage: str | None = None
    recipientAccountId: str | None = None
    vpcEndpointId: str | None = None
    userIdentity: msgspec.Raw = NULL_RAW  # a UserIdentity object, decoded by Normalizer.identity_of()
    requestParameters: Any = None
    responseElements: Any = None
    additionalEventData: AdditionalEventData | None = None
    resources: list[ResourceRef] | None = None
    tlsDetails: TlsDetails | None = None


class TrailFile(msgspec.Struct):
    """A trail file or console Event-history JSON download: ``{"Records": [...]}``."""

    Records: list[Record]


class LookupEvent(msgspec.Struct):
    """One element of ``LookupEvents`` output; the record itself is a JSON *string*."""

    CloudTrailEvent: str | None = None
    EventId: str | None = None


class LookupEventsOutput(msgspec.Struct):
    Events: list[LookupEvent]


RECORD_DECODER = msgspec.json.Decoder(Record)
USER_IDENTITY_DECODER = msgspec.json.Decoder(UserIdentity | None)
TRAIL_DECODER = msgspec.json.Decoder(TrailFile)
RECORD_LIST_DECODER = msgspec.json.Decoder(list[Record])
LOOKUP_DECODER = msgspec.json.Decoder(LookupEventsOutput)
GENERIC_DECODER = msgspec.json.Decoder()


class RawDocument(msgspec.Struct):
    """A trail file (``Records``) or LookupEvents output (``Events``) whose elements are kept
    undecoded, to be decoded (and fail) one at a time."""

    Records: list[msgspec.Raw] | None = None
    Events: list[msgspec.Raw] | None = None


RAW_DOCUMENT_DECODER = msgspec.json.Decoder(RawDocument)
RAW_LIST_DECODER = msgspec.json.Decoder(list[msgspec.Raw])

_CANONICAL = msgspec.json.Encoder(order="sorted").encode


def identity_text(record: Record) -> bytes:
    """What identifies a record that has no ``eventID``, the same whichever file it came from.

    CloudTrail gives every event an eventID; records without one were made or re-exported by
    other tools, and the same records may arrive twice (a trail extract and a JSON Lines export
    of it). They are told apart by the fields that describe the call — time, source, name,
    region, caller (``userIdentity``), source address, request parameters, error code and
    receiving account — with objects re-encoded with sorted keys and no whitespace, so neither
    key order nor spacing nor the file's format changes the answer.
    """
    try:
        identity = GENERIC_DECODER.decode(record.userIdentity)
    except msgspec.DecodeError:
        identity = bytes(record.userIdentity).decode("utf-8", "replace")
    return _CANONICAL(
        [
            record.eventTime,
            record.eventSource,
            record.eventName,
            record.awsRegion,
            identity,
            record.sourceIPAddress,
            record.requestParameters,
            record.errorCode,
            record.recipientAccountId,
        ]
    )
