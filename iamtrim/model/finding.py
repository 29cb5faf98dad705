"""Findings as data: a code from a registry, a severity, a subject and a message — and an identity.

A finding's *identity* is (principal, code, target): who it is about, what kind it is, and what it
is about (an action, a resource, a policy). :attr:`Finding.key` is that triple and
:attr:`Finding.fingerprint` its hash; neither ever holds a count or a date, which belong in the
message, so the same problem found by two runs has the same key (the review job's history and
suppressions, SARIF's ``partialFingerprints``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import StrEnum


class Severity(StrEnum):
    INFO = "info"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


# code → (title, severity). Codes are stable; tests and --fail-on refer to them.
FINDINGS: dict[str, tuple[str, Severity]] = {
    "RESOURCE_UNKNOWN": ("Resource not in the records: scoped to the ARN format instead", Severity.MEDIUM),
    "INSTANCE_PROFILE_ROLE": (
        "iam:PassRole through an instance profile granted on the role it held",
        Severity.INFO,
    ),
    "LAUNCH_TEMPLATE_PROFILE": (
        "Launched from a launch template: iam:PassRole for an instance profile it names is not visible",
        Severity.MEDIUM,
    ),
    "OBJECT_KEYS_GENERALIZED": ("S3 object keys generalized to a prefix", Severity.INFO),
    "RESOURCES_GENERALIZED": ("Many resources of one type generalized along their ARN format", Severity.INFO),
    "ACCESS_ADVISOR_KEPT": (
        "Kept: Access Advisor shows it used, CloudTrail has no record of it",
        Severity.LOW,
    ),
    "ACCESS_ADVISOR_DENIED_ONLY": (
        "Access Advisor shows it accessed but CloudTrail shows only denied attempts (AA counts denials)",
        Severity.LOW,
    ),
    "STORE_FOLDED_KEYS": ("The store folded object keys past its per-folder bound", Severity.INFO),
    "ACTION_WILDCARD": ("Actions written as a wildcard that expands exactly to the used ones", Severity.INFO),
    "DENIED_NOT_GRANTED": ("Denied attempt: needed but not granted", Severity.LOW),
    "SPLIT_FOR_SIZE": ("Split into several policies to meet IAM size limits", Severity.INFO),
    "WIDENED_TO_FIT": (
        "Widened to fit IAM's size limits (the least widening the ladder found)",
        Severity.LOW,
    ),
    "GENERATED_NAMES": ("Names that differ only in a generated part granted as a pattern", Severity.INFO),
    "DENIED_COVERED": (
        "A call only ever denied is allowed by a widening no narrower step could replace",
        Severity.MEDIUM,
    ),
    "SECRET_SUFFIX_PATTERN": ("Secrets Manager ARN suffix unknown: '-??????' pattern used", Severity.INFO),
    "WILDCARD_IN_REQUEST": (
        "A request named a literal '*', '?' or '$': granted on that exact name (${*}, ${?}, ${$})",
        Severity.MEDIUM,
    ),
    "FAILED_CALLS_ONLY": (
        "Named only by calls that failed after authorization (NoSuchKey, ...): granted exactly",
        Severity.LOW,
    ),
    "CROSS_ACCOUNT_RESOURCE": (
        "Resource in another account: its resource policy must also allow",
        Severity.LOW,
    ),
    "NOT_IAM_PRINCIPAL": ("Principal is not an IAM identity policies attach to", Severity.MEDIUM),
    # bucket-policy / kms-policy
    "MIXED_ENDPOINT_USE": ("Seen both through and outside VPC endpoints: not pinned", Severity.MEDIUM),
    "UPLOAD_WITHOUT_SSE_HEADER": (
        "Uploads relied on bucket default encryption: SSE header not required",
        Severity.LOW,
    ),
    "MIXED_ENCRYPTION": (
        "Uploads used SSE-KMS and another encryption: SSE-KMS not enforced",
        Severity.MEDIUM,
    ),
    "CROSS_ACCOUNT_GRANT": ("Principal of another account granted its observed actions", Severity.INFO),
    "BUCKET_OWNER_INFERRED": (
        "Resource owner account inferred from the callers (pass --account)",
        Severity.INFO,
    ),
    "NO_BREAK_GLASS": ("No --break-glass principal given: only the account root is checked", Severity.INFO),
    "KEY_USED_DIRECTLY": (
        "Key used directly, not only through an AWS service: no kms:ViaService",
        Severity.INFO,
    ),
    # diff (iamtrim/review/diff.py)
    "UNUSED_RISKY_ACTION": ("Granted, never used, and in a risk class", Severity.HIGH),
    "UNUSED_ACTIONS": ("Granted actions never used", Severity.LOW),
    "RESOURCE_NARROWING": ("Used on far fewer resources than granted", Severity.LOW),
    "UNLOGGED_CONDITIONS": (
        "Allowed only under condition keys CloudTrail does not record; the proposal drops them",
        Severity.MEDIUM,
    ),
    "DENIED_CALL": ("Call denied in the records", Severity.MEDIUM),
    "CALL_NOT_ALLOWED": ("Call made, but the current policies would not allow it", Severity.MEDIUM),
    "UNKNOWN_ACTION_PATTERN": ("Allowed action pattern matches no action in the catalog", Severity.INFO),
    "USED_PER_ACCESS_ADVISOR": (
        "Granted, no CloudTrail use, but Access Advisor shows it used: keep it",
        Severity.MEDIUM,
    ),
    "UNUSED_UNPROVEN": (
        "Granted and not seen used, but nothing could show its use (not observable, or "
        "its service used per Access Advisor): review before removing",
        Severity.LOW,
    ),
    # review (iamtrim/review/job.py)
    "DENIED_SENSITIVE_CALL": (
        "Denied attempt at a privilege-escalation or credentials action: what an intruder's first "
        "steps look like",
        Severity.HIGH,
    ),
    "ADMIN_LIKE_GRANT": (
        "Allow of every action, of all of IAM, or of everything but a list (NotAction)",
        Severity.HIGH,
    ),
    "POLICY_NEAR_SIZE_LIMIT": ("Policy at 90% or more of its IAM size limit", Severity.LOW),
    "PRINCIPAL_IDLE": ("No authorized call for longer than --idle-days", Severity.MEDIUM),
    "COVERAGE_GAP": ("Granted actions whose use the ingested CloudTrail cannot show", Severity.LOW),
    "NO_CURRENT_POLICIES": (
        "Principal seen in CloudTrail but not in the authorization details",
        Severity.INFO,
    ),
}


@dataclass(frozen=True, slots=True, order=True)
class Finding:
    code: str
    subject: str  # where, as shown to a reader
    message: str  # what, with counts and dates
    principal: str = ""  # the principal the finding is about ("" when the output names it once)
    target: str = ""  # what it is about, without counts or dates ("": the subject is that)

    @property
    def key(self) -> str:
        """``principal|code|target``: stable across runs (no counts, no dates)."""
        return f"{self.principal}|{self.code}|{self.target or self.subject}"

    @property
    def fingerprint(self) -> str:
        """The first 32 hex digits of the SHA-256 of :attr:`key`."""
        return hashlib.sha256(self.key.encode()).hexdigest()[:32]

    @property
    def title(self) -> str:
        return FINDINGS[self.code][0]

    @property
    def severity(self) -> Severity:
        return FINDINGS[self.code][1]
