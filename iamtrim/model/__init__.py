"""Frozen value types shared by every stage. No stage-specific logic lives here."""

from iamtrim.model.arn import (
    Arn,
    escape_literal,
    has_escaped,
    has_wildcard,
    is_s3_object_arn,
    literal_of,
    overlap_witness,
    partition_for_region,
    pattern_covers,
    whole_escapes,
)
from iamtrim.model.principal import Principal, PrincipalKind
from iamtrim.model.usage import (
    Context,
    FileReport,
    Outcome,
    Skipped,
    SkipReason,
    Usage,
    UsageRow,
    is_service_principal,
)
from iamtrim.model.window import TimeWindow

__all__ = [
    "Arn",
    "Context",
    "FileReport",
    "Outcome",
    "Principal",
    "PrincipalKind",
    "SkipReason",
    "Skipped",
    "TimeWindow",
    "Usage",
    "UsageRow",
    "escape_literal",
    "has_escaped",
    "has_wildcard",
    "is_s3_object_arn",
    "is_service_principal",
    "literal_of",
    "overlap_witness",
    "partition_for_region",
    "pattern_covers",
    "whole_escapes",
]
