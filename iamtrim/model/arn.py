"""Amazon Resource Names.

Format: ``arn:partition:service:region:account-id:resource`` where *resource* may itself contain
``:`` and ``/`` (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference-arns.html).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass


@functools.lru_cache(maxsize=256)
def partition_for_region(region: str | None) -> str:
    """The partition a region belongs to (China and GovCloud have their own)."""
    if not region:
        return "aws"
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    if region.startswith("us-iso-"):
        return "aws-iso"
    if region.startswith("us-isob-"):
        return "aws-iso-b"
    return "aws"


@dataclass(frozen=True, slots=True)
class Arn:
    partition: str
    service: str
    region: str
    account: str
    resource: str

    @classmethod
    def parse(cls, text: str) -> Arn | None:
        """Parse *text*; ``None`` when it is not an ARN (never raises)."""
        if not text.startswith("arn:"):
            return None
        parts = text.split(":", 5)
        if len(parts) != 6 or not parts[1] or not parts[2]:
            return None
        return cls(parts[1], parts[2], parts[3], parts[4], parts[5])

    def __str__(self) -> str:
        return f"arn:{self.partition}:{self.service}:{self.region}:{self.account}:{self.resource}"


def is_s3_object_arn(resource: str) -> bool:
    """``arn:aws:s3:::bucket/key`` (or an object pattern such as ``bucket/folder/*``)."""
    return resource.startswith("arn:") and ":s3:::" in resource and "/" in resource


# An IAM role or user ARN: arn:PARTITION:iam::ACCOUNT:role/PATH/NAME. Names are 1-64 of
# [A-Za-z0-9_+=,.@-]; a path is "/" or "/…/" of ASCII "!" through DEL, at most 512 characters.
# https://docs.aws.amazon.com/IAM/latest/APIReference/API_CreateRole.html
# https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_identifiers.html#identifiers-arns
_IAM_PRINCIPAL = re.compile(
    r"arn:(aws(?:-[a-z]+)*):iam::(\d{12}):(role|user)(/(?:[\x21-\x7f]{1,510}/)?)([A-Za-z0-9_+=,.@-]{1,64})"
)
_CONTROL = re.compile(r"[\x00-\x20\x7f-\x9f\u2028\u2029]")


def iam_principal_arn_problem(text: str) -> str:
    """Why *text* is not the ARN of one IAM role or user ('' when it is).

    A wildcard (``role/*``), a missing name (``role/``), an STS session ARN (one session, not the
    role) or a control character would name something else than the one principal meant."""
    if _CONTROL.search(text):
        return "it contains a space, a newline or another control character"
    if "*" in text or "?" in text or "$" in text:
        # In a policy * and ? are wildcards and ${...} a policy variable: either would name
        # principals other than the one meant.
        return "it contains a wildcard or a policy variable (*, ?, $): name one role or user"
    parts = text.split(":", 5)
    if not text.startswith("arn:") or len(parts) != 6:
        return "it is not an ARN"
    if parts[2] == "sts":
        return (
            "an STS ARN names one session, not the role: give the role's IAM ARN, "
            "arn:aws:iam::ACCOUNT:role/NAME"
        )
    if parts[2] != "iam" or not parts[5].startswith(("role/", "user/")):
        return "it is not an IAM role or user ARN"
    if _IAM_PRINCIPAL.fullmatch(text) is None:
        if parts[5].endswith("/"):
            return "it names no role or user (nothing after the last /)"
        return "it is not a valid IAM role or user ARN (partition, empty region, 12-digit account, name)"
    return ""


# In a Resource (and a condition value) IAM reads ``*`` and ``?`` as wildcards and ``${`` as the
# start of a policy variable; a literal one is written ``${*}``, ``${?}``, ``${$}``.
# https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_variables.html#policy-vars-specialchars
# Any caller can name such characters in a request (an S3 key ``*``, a secret ``prod/*``): every
# resource string iamtrim stores is an IAM pattern in which a bare ``*``/``?`` can only be a
# generalization iamtrim made itself (a folded folder ``prefix/*``, a secret's ``-??????``).
_SPECIAL = re.compile(r"[*?$]")
_ESCAPED = re.compile(r"\$\{([*?$])\}")


def escape_literal(text: str) -> str:
    """*text* as an IAM pattern that matches exactly *text*: ``a*b`` → ``a${*}b``."""
    if "*" not in text and "?" not in text and "$" not in text:
        return text
    return _SPECIAL.sub(lambda m: "${" + m.group() + "}", text)


def literal_of(pattern: str) -> str:
    """The request string a stored resource stands for: ``${*}`` → ``*`` (a bare wildcard, an
    iamtrim generalization, is kept as the character, which the pattern also matches)."""
    return _ESCAPED.sub(r"\1", pattern) if "${" in pattern else pattern


def has_wildcard(pattern: str) -> bool:
    """Whether *pattern* has a bare ``*`` or ``?`` (not an escaped literal)."""
    if "*" not in pattern and "?" not in pattern:
        return False
    bare = _ESCAPED.sub("", pattern) if "${" in pattern else pattern
    return "*" in bare or "?" in bare


def has_escaped(pattern: str) -> bool:
    """Whether *pattern* names a literal ``*``, ``?`` or ``$`` (``${*}``, ``${?}``, ``${$}``)."""
    return "${" in pattern and _ESCAPED.search(pattern) is not None


def whole_escapes(prefix: str) -> str:
    """*prefix* without a trailing piece of an escape (``a${`` → ``a``), so that a ``*`` written
    after it never turns a literal into a wildcard (``a${*`` would be read as ``a$`` + ``{`` + ``*``)."""
    start = prefix.rfind("${")
    if start >= 0 and "}" not in prefix[start:]:
        return prefix[:start]
    return prefix[:-1] if prefix.endswith("$") else prefix


_PATTERN_TOKEN = re.compile(r"\$\{([*?$])\}|\*|\?")


@functools.lru_cache(maxsize=4096)
def _pattern_regex(pattern: str) -> re.Pattern[str]:
    parts: list[str] = []
    pos = 0
    for m in _PATTERN_TOKEN.finditer(pattern):
        parts.append(re.escape(pattern[pos : m.start()]))
        token = m.group(0)
        parts.append(re.escape(m.group(1)) if m.group(1) else ".*" if token == "*" else ".")
        pos = m.end()
    parts.append(re.escape(pattern[pos:]))
    return re.compile("".join(parts), re.DOTALL)


def pattern_covers(pattern: str, resource: str) -> bool:
    """Whether the IAM pattern *pattern* (``*`` any run, ``?`` one character, ``${*}`` a literal)
    matches the resource a stored *resource* names (its literal, :func:`literal_of`)."""
    return _pattern_regex(pattern).fullmatch(literal_of(resource)) is not None
