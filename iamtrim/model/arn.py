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


_STAR, _ONE = "*", "?"  # tokens of a pattern; every other token is one literal character


def _pattern_tokens(pattern: str) -> list[str]:
    """*pattern* as tokens: ``*``, ``?`` (wildcards) or one literal character (``${*}`` → a
    literal ``*``, told apart from the wildcard by being wrapped: ``"\\*"``)."""
    tokens: list[str] = []
    pos = 0
    for m in _PATTERN_TOKEN.finditer(pattern):
        tokens.extend(pattern[pos : m.start()])
        tokens.append("\\" + m.group(1) if m.group(1) else m.group(0))
        pos = m.end()
    tokens.extend(pattern[pos:])
    return tokens


def _literal_heads_agree(a: str, b: str) -> bool:
    """A quick necessary test for :func:`overlap_witness`: the literal text before the first
    wildcard or escape of each pattern agrees on their common length."""
    ha = len(_PATTERN_TOKEN.split(a, maxsplit=1)[0])
    hb = len(_PATTERN_TOKEN.split(b, maxsplit=1)[0])
    n = min(ha, hb)
    return a[:n] == b[:n]


def overlap_witness(a: str, b: str) -> str | None:
    """A request string both IAM patterns *a* and *b* match, or None when no string does.

    A stored resource can itself be a pattern AWS imposes on a call (a CloudFormation stack
    named only by name, ``stack/NAME/*``; a secret by name, ``NAME-??????``): the call was made
    on *some* resource it matches, and a policy statement allows it when the two patterns
    share a string, the way IAM simulators judge a wildcard request. The witness is the
    shortest such string, built from the two patterns' product automaton (``*`` matches any
    run, ``?`` one character, literals themselves)."""
    if not _literal_heads_agree(a, b):
        return None
    ta, tb = [*_pattern_tokens(a), _END], [*_pattern_tokens(b), _END]
    n, m = len(ta) - 1, len(tb) - 1
    # can[i][j]: the rest of both patterns, from token i of a and j of b, share a string.
    can = [[False] * (m + 2) for _ in range(n + 2)]
    for i in range(n, -1, -1):
        for j in range(m, -1, -1):
            can[i][j] = (i, j) == (n, m) or any(can[i + di][j + dj] for di, dj, _ in _moves(ta[i], tb[j]))
    if not can[0][0]:
        return None
    i = j = 0
    out: list[str] = []
    while (i, j) != (n, m):
        di, dj, char = next(mv for mv in _moves(ta[i], tb[j]) if can[i + mv[0]][j + mv[1]])
        out.append(char)
        i, j = i + di, j + dj
    return "".join(out)


_END = ""  # past a pattern's last token


def _moves(x: str, y: str) -> list[tuple[int, int, str]]:
    """The steps from tokens *x* of one pattern and *y* of the other, each with the character it
    spells: a star left empty first, then a star taking the other's character, then a character
    both match."""
    moves: list[tuple[int, int, str]] = []
    if x == _STAR:
        moves.append((1, 0, ""))
    if y == _STAR:
        moves.append((0, 1, ""))
    if x == _STAR and y not in (_STAR, _END):
        moves.append((0, 1, _char(y, x)))
    if y == _STAR and x not in (_STAR, _END):
        moves.append((1, 0, _char(x, y)))
    if _STAR not in (x, y) and _END not in (x, y) and (x == y or _ONE in (x, y)):
        moves.append((1, 1, _char(x, y)))
    return moves


def _char(token: str, other: str) -> str:
    """The character *token* spells (where *other* is the token it meets)."""
    if token == _ONE:
        return _char(other, _STAR) if other not in (_ONE, _STAR) else "x"
    return token[1:] if len(token) == 2 else token


def pattern_covers(pattern: str, resource: str) -> bool:
    """Whether the IAM pattern *pattern* (``*`` any run, ``?`` one character, ``${*}`` a literal)
    matches the resource a stored *resource* names (its literal, :func:`literal_of`)."""
    return _pattern_regex(pattern).fullmatch(literal_of(resource)) is not None
