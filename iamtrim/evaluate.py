"""IAM policy evaluation: would AWS allow this request under these policies?

Implements the documented evaluation logic for one account and for cross-account access:
https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html

1. An explicit ``Deny`` in any policy (identity, permissions boundary, session, resource) wins.
2. Same account: an ``Allow`` in an identity policy *or* in the resource policy (naming the caller)
   is enough; a permissions boundary and a session policy intersect with identity-policy allows.
   Resource-policy allows that name an IAM user or role *session* directly are not limited by an
   implicit deny in the boundary or session policy
   (https://docs.aws.amazon.com/IAM/latest/UserGuide/access_policies_boundaries.html#access_policies_boundaries-eval-logic,
   https://docs.aws.amazon.com/IAM/latest/UserGuide/access_policies.html#policies_session).
3. Cross-account: the resource policy (naming the caller or its account) *and* the caller's identity
   policies must both allow
   (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic-cross-account.html).
4. KMS keys: identity policies count only when the key policy allows the account (a statement whose
   principal is the account root)
   (https://docs.aws.amazon.com/kms/latest/developerguide/key-policy-default.html#key-policy-default-allow-root-enable-iam).
   The same holds for role trust policies (``sts:AssumeRole*``).

Not modelled: SCPs/RCPs, VPC endpoint policies, S3 ACLs and Block Public Access.

Every compiled pattern is cached, and each compiled policy remembers, per (principal, action,
context), the statements whose action and conditions match: evaluating the same policies over
many requests (a replay: tens of thousands of resources, a few hundred contexts) tests only
those statements' resources, with one regular expression per statement when its resources have
no policy variables.
"""

from __future__ import annotations

import functools
import ipaddress
import itertools
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

from iamtrim.model.policy import (
    Effect,
    Policy,
    PolicyVersion,
    Principals,
    PrincipalType,
    Statement,
    split_operator,
)

__all__ = [
    "Decision",
    "Evaluation",
    "MatchedStatement",
    "PolicyKind",
    "Request",
    "evaluate",
]


class Decision(StrEnum):
    ALLOWED = "allowed"
    IMPLICIT_DENY = "implicit-deny"
    EXPLICIT_DENY = "explicit-deny"


class PolicyKind(StrEnum):
    IDENTITY = "identity"
    BOUNDARY = "boundary"
    SESSION = "session"
    RESOURCE = "resource"


@dataclass(frozen=True, slots=True)
class Request:
    """One authorization request.

    ``context`` maps condition keys (case-insensitive, as in AWS) to their values; single-valued
    keys have one value. ``resource`` is an ARN, or ``"*"`` for actions that take no resource.
    ``resource_account`` is needed for S3 ARNs, which carry no account; otherwise it comes from the
    resource ARN, and failing that the caller's account is assumed.
    With ``auto_context`` the keys AWS adds to every signed request (``aws:PrincipalArn``,
    ``aws:PrincipalAccount``, ``aws:PrincipalType``, ``aws:username``) are derived from the
    principal ARN unless given.
    """

    principal_arn: str
    action: str
    resource: str
    context: tuple[tuple[str, tuple[str, ...]], ...] = ()
    resource_account: str = ""
    auto_context: bool = True

    @classmethod
    def make(
        cls,
        principal_arn: str,
        action: str,
        resource: str,
        context: Mapping[str, str | Sequence[str]] | None = None,
        resource_account: str = "",
        auto_context: bool = True,
    ) -> Request:
        items: list[tuple[str, tuple[str, ...]]] = []
        for key, value in sorted((context or {}).items()):
            items.append((key, (value,) if isinstance(value, str) else tuple(value)))
        return cls(principal_arn, action, resource, tuple(items), resource_account, auto_context)


@dataclass(frozen=True, slots=True)
class MatchedStatement:
    """A statement that took part in the decision (for ``--explain``)."""

    kind: PolicyKind
    policy: str
    index: int
    sid: str
    effect: Effect


@dataclass(frozen=True, slots=True)
class Evaluation:
    decision: Decision
    statements: tuple[MatchedStatement, ...]
    reason: str

    @property
    def allowed(self) -> bool:
        return self.decision is Decision.ALLOWED


# ---------------------------------------------------------------------------------------------
# Patterns: actions (case-insensitive), resources and condition values (case-sensitive), with
# policy variables. https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_variables.html

_LIT, _STAR, _QMARK, _VAR = 0, 1, 2, 3
_Token = tuple[int, str, str | None]  # (kind, text or variable name, default value)
_TOKEN_RX = re.compile(r"\$\{([^}]*)\}|\*|\?")
# ${*}, ${?} and ${$} stand for the literal characters (how to write them where they would be special).
_SPECIAL_VARS = {"*": "*", "?": "?", "$": "$"}


@functools.lru_cache(maxsize=65536)
def _tokens(pattern: str, variables: bool) -> tuple[_Token, ...]:
    out: list[_Token] = []
    pos = 0
    for m in _TOKEN_RX.finditer(pattern):
        if m.start() > pos:
            out.append((_LIT, pattern[pos : m.start()], None))
        text = m.group(0)
        if text == "*":
            out.append((_STAR, "", None))
        elif text == "?":
            out.append((_QMARK, "", None))
        elif not variables:
            # Version 2008-10-17: "${...}" is plain text (its * or ? are still wildcards).
            out.extend(
                (_STAR if ch == "*" else _QMARK if ch == "?" else _LIT, ch if ch not in "*?" else "", None)
                for ch in text
            )
        else:
            inner = m.group(1)
            if inner in _SPECIAL_VARS:
                out.append((_LIT, _SPECIAL_VARS[inner], None))
            else:
                # ${key, 'default'} supplies a value when the key is absent.
                name, sep, default = inner.partition(",")
                dflt = default.strip()
                value = dflt[1:-1] if sep and len(dflt) >= 2 and dflt[0] == dflt[-1] == "'" else None
                out.append((_VAR, name.strip().lower(), value))
        pos = m.end()
    if pos < len(pattern):
        out.append((_LIT, pattern[pos:], None))
    return tuple(out)


def _has_vars(tokens: tuple[_Token, ...]) -> bool:
    return any(t[0] == _VAR for t in tokens)


_Ctx = dict[str, tuple[str, ...]]


def _var_value(ctx: _Ctx, name: str, default: str | None) -> str | None:
    vals = ctx.get(name)
    if vals is not None and len(vals) == 1 and name not in _MULTIVALUED_KEYS:
        return vals[0]
    # A missing (or multivalued) key cannot be substituted: the element does not match unless a
    # default is given. https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_variables.html#policy-vars-no-value
    return default if vals is None else None


def _regex_source(tokens: tuple[_Token, ...], ctx: _Ctx | None, star: str, qmark: str) -> str | None:
    parts: list[str] = []
    for kind, text, default in tokens:
        if kind == _LIT:
            parts.append(re.escape(text))
        elif kind == _STAR:
            parts.append(star)
        elif kind == _QMARK:
            parts.append(qmark)
        else:
            value = _var_value(ctx or {}, text, default)
            if value is None:
                return None
            parts.append(re.escape(value))
    return "".join(parts)


def _literal(tokens: tuple[_Token, ...], ctx: _Ctx) -> str | None:
    """The value with variables substituted and wildcards kept literally (String/ArnEquals...)."""
    parts: list[str] = []
    for kind, text, default in tokens:
        if kind == _LIT:
            parts.append(text)
        elif kind == _STAR:
            parts.append("*")
        elif kind == _QMARK:
            parts.append("?")
        else:
            value = _var_value(ctx, text, default)
            if value is None:
                return None
            parts.append(value)
    return "".join(parts)


@functools.lru_cache(maxsize=65536)
def _compile(source: str, flags: int = 0) -> re.Pattern[str]:
    return re.compile(source, flags | re.DOTALL)


def _split_arn_pattern(pattern: str) -> list[str]:
    """Split on ``:`` outside ``${...}`` into at most six segments (the resource keeps its colons)."""
    parts: list[str] = []
    depth = 0
    start = 0
    for i, ch in enumerate(pattern):
        if ch == "{" and i and pattern[i - 1] == "$":
            depth += 1
        elif ch == "}" and depth:
            depth -= 1
        elif ch == ":" and not depth and len(parts) < 5:
            parts.append(pattern[start:i])
            start = i + 1
    parts.append(pattern[start:])
    return parts


@dataclass(frozen=True, slots=True)
class _ResourcePattern:
    """A Resource/NotResource entry, compiled. Segments of an ARN are matched one by one: ``*`` in
    partition/service/region/account stays inside its segment, in the resource part it may span
    ``:`` and ``/``; a pattern with fewer than six segments whose last one ends in ``*`` extends
    over the missing segments.
    https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_resource.html#reference_policies_elements_resource_wildcards
    """

    text: str
    everything: bool
    static: re.Pattern[str] | None  # compiled when the pattern has no variables
    segments: tuple[tuple[_Token, ...], ...]  # for patterns with variables

    def matches(self, resource: str, ctx: _Ctx) -> bool:
        if self.everything:
            return True
        if self.static is not None:
            return self.static.fullmatch(resource) is not None
        if not self.segments:
            return False
        pieces: list[str] = []
        for i, seg in enumerate(self.segments):
            src = _regex_source(seg, ctx, ".*" if i == len(self.segments) - 1 else "[^:]*", ".")
            if src is None:
                return False
            pieces.append(src)
        return _compile(":".join(pieces)).fullmatch(resource) is not None


@functools.lru_cache(maxsize=65536)
def _resource_pattern(text: str, variables: bool) -> _ResourcePattern:
    if text == "*":
        return _ResourcePattern(text, True, None, ())
    parts = _split_arn_pattern(text) if text.startswith("arn:") else [text]
    if text.startswith("arn:") and len(parts) < 6:
        if not parts[-1].endswith("*"):
            return _ResourcePattern(text, False, _compile(r"(?!)"), ())
        parts = parts + ["*"] * (6 - len(parts))
    segs = tuple(_tokens(p, variables) for p in parts)
    if any(_has_vars(s) for s in segs):
        return _ResourcePattern(text, False, None, segs)
    pieces = [
        _regex_source(s, None, ".*" if i == len(segs) - 1 else "[^:]*", ".") or "" for i, s in enumerate(segs)
    ]
    return _ResourcePattern(text, False, _compile(":".join(pieces)), ())


@functools.lru_cache(maxsize=16384)
def _action_regex(patterns: tuple[str, ...]) -> re.Pattern[str]:
    # Action names are case-insensitive; * and ? are wildcards.
    # https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_action.html
    alts = []
    for p in patterns:
        if p == "*":
            alts.append(".*")
            continue
        service, _, name = p.partition(":")
        if not name or any(c.isspace() for c in name):
            continue
        alts.append(re.escape(service) + ":" + (_regex_source(_tokens(name, False), None, ".*", ".") or ""))
    return _compile("(?:" + "|".join(alts) + ")" if alts else r"(?!)", re.IGNORECASE)


# ---------------------------------------------------------------------------------------------
# Conditions. https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition_operators.html

# Keys whose type is ArrayOf*: a condition on them needs ForAnyValue/ForAllValues; a single-valued
# operator does not match them.
# https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-single-vs-multi-valued-context-keys.html
_MULTIVALUED_KEYS = frozenset(
    {
        "aws:tagkeys",
        "aws:calledvia",
        "aws:principalservicenameslist",
        "aws:principalorgpaths",
        "aws:resourceorgpaths",
        "aws:sourceorgpaths",
        "aws:vpceorgpaths",
        "kms:encryptioncontextkeys",
    }
)

_NEGATED = frozenset(
    {
        "StringNotEquals",
        "StringNotEqualsIgnoreCase",
        "StringNotLike",
        "NumericNotEquals",
        "DateNotEquals",
        "NotIpAddress",
        "ArnNotEquals",
        "ArnNotLike",
    }
)

_ValueTest = Callable[[str, tuple[str, ...], _Ctx], bool]


def _string_equals(v: str, pvals: tuple[str, ...], ctx: _Ctx) -> bool:
    return any(_literal(_tokens(p, True), ctx) == v for p in pvals)


def _string_not_equals(v: str, pvals: tuple[str, ...], ctx: _Ctx) -> bool:
    for p in pvals:
        lit = _literal(_tokens(p, True), ctx)
        if lit is None or lit == v:
            return False
    return True


def _string_equals_ic(v: str, pvals: tuple[str, ...], ctx: _Ctx) -> bool:
    low = v.lower()
    return any((lit := _literal(_tokens(p, True), ctx)) is not None and lit.lower() == low for p in pvals)


def _string_not_equals_ic(v: str, pvals: tuple[str, ...], ctx: _Ctx) -> bool:
    low = v.lower()
    for p in pvals:
        lit = _literal(_tokens(p, True), ctx)
        if lit is None or lit.lower() == low:
            return False
    return True


def _like(p: str, v: str, ctx: _Ctx) -> bool | None:
    src = _regex_source(_tokens(p, True), ctx, ".*", ".")
    return None if src is None else _compile(src).fullmatch(v) is not None


def _string_like(v: str, pvals: tuple[str, ...], ctx: _Ctx) -> bool:
    return any(_like(p, v, ctx) for p in pvals)


def _string_not_like(v: str, pvals: tuple[str, ...], ctx: _Ctx) -> bool:
    return all(_like(p, v, ctx) is False for p in pvals)


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _date(text: str) -> float | None:
    # Dates are ISO 8601 (W3C profile) or epoch seconds.
    # https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition_operators.html#Conditions_Date
    if text.lstrip("-").isdigit():
        return float(text)
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def _epoch_or_date(text: str) -> float | None:
    return _date(text)


def _comparison(parse: Callable[[str], float | None], test: Callable[[float, float], bool]) -> _ValueTest:
    def check(v: str, pvals: tuple[str, ...], ctx: _Ctx) -> bool:
        got = parse(v)
        if got is None:
            return False
        return any((want := parse(p)) is not None and test(got, want) for p in pvals)

    return check


def _not_equal(parse: Callable[[str], float | None]) -> _ValueTest:
    def check(v: str, pvals: tuple[str, ...], ctx: _Ctx) -> bool:
        got = parse(v)
        if got is None:
            return False
        for p in pvals:
            want = parse(p)
            if want is None or want == got:
                return False
        return True

    return check


def _bool(v: str, pvals: tuple[str, ...], ctx: _Ctx) -> bool:
    low = v.lower()
    if low not in ("true", "false"):
        return False
    return any((lit := _literal(_tokens(p, True), ctx)) is not None and lit.lower() == low for p in pvals)


def _binary(v: str, pvals: tuple[str, ...], ctx: _Ctx) -> bool:
    return v in pvals


@functools.lru_cache(maxsize=4096)
def _network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        return None


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def _ip_address(v: str, pvals: tuple[str, ...], ctx: _Ctx) -> bool:
    addr = _ip(v)
    if addr is None:
        return False
    return any(
        (net := _network(p)) is not None and addr.version == net.version and addr in net for p in pvals
    )


def _not_ip_address(v: str, pvals: tuple[str, ...], ctx: _Ctx) -> bool:
    addr = _ip(v)
    if addr is None:
        return False
    for p in pvals:
        net = _network(p)
        if net is None or (addr.version == net.version and addr in net):
            return False
    return True


def _arn_like_one(p: str, v: str, ctx: _Ctx) -> bool | None:
    """ArnEquals and ArnLike compare segment by segment with wildcards; ``None`` if unusable."""
    vparts = v.split(":", 5)
    pparts = _split_arn_pattern(p)
    if len(vparts) != 6 or len(pparts) != 6:
        return None
    for i, (pp, vp) in enumerate(zip(pparts, vparts, strict=True)):
        src = _regex_source(_tokens(pp, True), ctx, ".*" if i == 5 else "[^:]*", ".")
        if src is None:
            return None
        if _compile(src).fullmatch(vp) is None:
            return False
    return True


def _arn_like(v: str, pvals: tuple[str, ...], ctx: _Ctx) -> bool:
    return any(_arn_like_one(p, v, ctx) for p in pvals)


def _arn_not_like(v: str, pvals: tuple[str, ...], ctx: _Ctx) -> bool:
    return all(_arn_like_one(p, v, ctx) is False for p in pvals)


_TESTS: dict[str, _ValueTest] = {
    "StringEquals": _string_equals,
    "StringNotEquals": _string_not_equals,
    "StringEqualsIgnoreCase": _string_equals_ic,
    "StringNotEqualsIgnoreCase": _string_not_equals_ic,
    "StringLike": _string_like,
    "StringNotLike": _string_not_like,
    "NumericEquals": _comparison(_number, lambda a, b: a == b),
    "NumericNotEquals": _not_equal(_number),
    "NumericLessThan": _comparison(_number, lambda a, b: a < b),
    "NumericLessThanEquals": _comparison(_number, lambda a, b: a <= b),
    "NumericGreaterThan": _comparison(_number, lambda a, b: a > b),
    "NumericGreaterThanEquals": _comparison(_number, lambda a, b: a >= b),
    "DateEquals": _comparison(_epoch_or_date, lambda a, b: a == b),
    "DateNotEquals": _not_equal(_epoch_or_date),
    "DateLessThan": _comparison(_epoch_or_date, lambda a, b: a < b),
    "DateLessThanEquals": _comparison(_epoch_or_date, lambda a, b: a <= b),
    "DateGreaterThan": _comparison(_epoch_or_date, lambda a, b: a > b),
    "DateGreaterThanEquals": _comparison(_epoch_or_date, lambda a, b: a >= b),
    "Bool": _bool,
    "BinaryEquals": _binary,
    "IpAddress": _ip_address,
    "NotIpAddress": _not_ip_address,
    "ArnEquals": _arn_like,
    "ArnLike": _arn_like,
    "ArnNotEquals": _arn_not_like,
    "ArnNotLike": _arn_not_like,
}


@dataclass(frozen=True, slots=True)
class _CompiledCondition:
    set_op: str
    base: str
    if_exists: bool
    key: str  # lower-cased: condition keys are case-insensitive
    values: tuple[str, ...]

    def matches(self, ctx: _Ctx) -> bool:
        vals = ctx.get(self.key)
        if self.base == "Null":
            # Null: "true" means the key must be absent, "false" that it must be present.
            goal = "true" if vals is None else "false"
            return any(v.lower() == goal for v in self.values)
        if vals is None:
            # Missing key: ...IfExists matches; ForAllValues matches (vacuously true); ForAnyValue
            # does not; a negated operator (StringNotEquals, ...) matches; others do not.
            # https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-logic-multiple-context-keys-or-values.html
            if self.if_exists:
                return True
            if self.set_op == "ForAllValues":
                return True
            if self.set_op == "ForAnyValue":
                return False
            return self.base in _NEGATED
        test = _TESTS[self.base]
        if self.set_op == "ForAnyValue":
            return any(test(v, self.values, ctx) for v in vals)
        if self.set_op == "ForAllValues":
            return all(test(v, self.values, ctx) for v in vals)
        if len(vals) != 1 or self.key in _MULTIVALUED_KEYS:
            # A single-valued operator on a multivalued key does not match.
            return False
        return test(vals[0], self.values, ctx)


# ---------------------------------------------------------------------------------------------
# Principals (resource policies). https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_principal.html


class _PrincipalMatch(StrEnum):
    NONE = "none"
    ACCOUNT = "account"  # the statement names the caller's account: delegates to its IAM policies
    SESSION = "session"  # names the role (or user) behind the caller's session
    DIRECT = "direct"  # names the caller itself, or "*"


class _CallerKind(StrEnum):
    USER = "user"
    ROLE = "role"  # a role ARN stands for "some session of this role"
    ASSUMED_ROLE = "assumed-role"
    FEDERATED_USER = "federated-user"
    ROOT = "root"
    SERVICE = "service"
    ANONYMOUS = "anonymous"
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class _Caller:
    arn: str
    kind: _CallerKind
    partition: str
    account: str
    name: str  # user / role / federated-user name (last path segment)


_CALLER_RX = re.compile(r"arn:(aws[\w-]*):(iam|sts)::(\d{12}):(.+)\Z", re.DOTALL)


@functools.lru_cache(maxsize=4096)
def _caller(arn: str) -> _Caller:
    if arn in ("", "*", "anonymous"):
        return _Caller(arn, _CallerKind.ANONYMOUS, "", "", "")
    if re.fullmatch(r"\d{12}", arn):
        return _Caller(f"arn:aws:iam::{arn}:root", _CallerKind.ROOT, "aws", arn, "")
    m = _CALLER_RX.match(arn)
    if m is None:
        if arn.endswith(".amazonaws.com") or arn.endswith(".amazonaws.com.cn"):
            return _Caller(arn, _CallerKind.SERVICE, "", "", arn)
        return _Caller(arn, _CallerKind.OTHER, "", "", "")
    partition, svc, account, rest = m.groups()
    if svc == "sts" and rest.startswith("assumed-role/"):
        return _Caller(arn, _CallerKind.ASSUMED_ROLE, partition, account, rest.split("/")[1])
    if svc == "sts" and rest.startswith("federated-user/"):
        return _Caller(arn, _CallerKind.FEDERATED_USER, partition, account, rest.split("/", 1)[1])
    if svc == "iam" and rest.startswith("user/"):
        return _Caller(arn, _CallerKind.USER, partition, account, rest.rsplit("/", 1)[1])
    if svc == "iam" and rest.startswith("role/"):
        return _Caller(arn, _CallerKind.ROLE, partition, account, rest.rsplit("/", 1)[1])
    if svc == "iam" and rest == "root":
        return _Caller(arn, _CallerKind.ROOT, partition, account, "")
    return _Caller(arn, _CallerKind.OTHER, partition, account, "")


_ACCOUNT_PRINCIPAL_RX = re.compile(r"(?:arn:aws[\w-]*:iam::)?(\d{12})(?::root)?\Z")


def _entry_match(kind: PrincipalType, value: str, caller: _Caller) -> _PrincipalMatch:
    if kind is PrincipalType.AWS and value == "*":
        return _PrincipalMatch.DIRECT
    if caller.kind is _CallerKind.ANONYMOUS:
        return _PrincipalMatch.NONE
    if kind is not PrincipalType.AWS:
        return _PrincipalMatch.DIRECT if value == caller.arn else _PrincipalMatch.NONE
    acct = _ACCOUNT_PRINCIPAL_RX.match(value)
    if acct is not None:
        # "123456789012" and "arn:aws:iam::123456789012:root" both mean the account: the statement
        # delegates to that account's IAM policies.
        return _PrincipalMatch.ACCOUNT if acct.group(1) == caller.account else _PrincipalMatch.NONE
    if value == caller.arn:
        return _PrincipalMatch.DIRECT
    if caller.kind is _CallerKind.ASSUMED_ROLE:
        # A role ARN in a resource policy matches every session of that role (role name compared
        # without its path: a session ARN does not carry the path).
        m = _CALLER_RX.match(value)
        if (
            m is not None
            and m.group(2) == "iam"
            and m.group(4).startswith("role/")
            and m.group(1) == caller.partition
            and m.group(3) == caller.account
            and m.group(4).rsplit("/", 1)[1].lower() == caller.name.lower()
        ):
            return _PrincipalMatch.SESSION
    if caller.kind is _CallerKind.FEDERATED_USER and value == (
        f"arn:{caller.partition}:iam::{caller.account}:user/{caller.name}"
    ):
        return _PrincipalMatch.SESSION
    return _PrincipalMatch.NONE


_RANK = {
    _PrincipalMatch.NONE: 0,
    _PrincipalMatch.ACCOUNT: 1,
    _PrincipalMatch.SESSION: 2,
    _PrincipalMatch.DIRECT: 3,
}


def _principals_match(principals: Principals, caller: _Caller) -> _PrincipalMatch:
    if principals.wildcard:
        return _PrincipalMatch.DIRECT
    best = _PrincipalMatch.NONE
    for kind, values in principals.entries:
        for value in values:
            m = _entry_match(kind, value, caller)
            if _RANK[m] > _RANK[best]:
                best = m
    return best


# ---------------------------------------------------------------------------------------------
# Compiled statements and policies


_MAX_COMBINED = 512  # resources of one statement matched by one regular expression, at most


class _CompiledStatement:
    """Internal, per-statement caches (never leaves this module)."""

    __slots__ = (
        "_action_cache",
        "_matched",
        "actions_rx",
        "conditions",
        "index",
        "negate_action",
        "negate_resource",
        "resources",
        "resources_rx",
        "statement",
    )

    def __init__(self, statement: Statement, index: int, variables: bool) -> None:
        self.statement = statement
        self.index = index
        self.negate_action = bool(statement.not_actions)
        self.actions_rx = _action_regex(statement.not_actions or statement.actions)
        self.negate_resource = bool(statement.not_resources)
        self.resources: tuple[_ResourcePattern, ...] | None = (
            tuple(_resource_pattern(r, variables) for r in (statement.not_resources or statement.resources))
            if (statement.not_resources or statement.resources)
            else None
        )
        # Resources without policy variables, as one regular expression: one match per request
        # instead of one per resource (a fullmatch of an alternation is a fullmatch of one of them).
        # Only for a statement of a size IAM accepts: compiling is slow for a huge alternation.
        self.resources_rx: re.Pattern[str] | None = None
        if (
            self.resources
            and len(self.resources) <= _MAX_COMBINED
            and all(p.static is not None for p in self.resources)
        ):
            self.resources_rx = _compile(
                "(?:" + "|".join(p.static.pattern for p in self.resources if p.static is not None) + ")"
            )
        conds = []
        for c in statement.conditions:
            set_op, base, if_exists = split_operator(c.operator)
            conds.append(_CompiledCondition(set_op, base, if_exists, c.key.lower(), c.values))
        self.conditions = tuple(conds)
        self._action_cache: dict[str, bool] = {}
        self._matched: dict[PolicyKind, MatchedStatement] = {}

    def matched(self, kind: PolicyKind, policy: Policy) -> MatchedStatement:
        """This statement (of *policy*) as a :class:`MatchedStatement` of *kind*; one object per
        kind (a statement belongs to one compiled policy)."""
        m = self._matched.get(kind)
        if m is None:
            m = self._matched[kind] = MatchedStatement(
                kind, policy.name, self.index, self.statement.sid, self.statement.effect
            )
        return m

    def action_matches(self, action: str) -> bool:
        hit = self._action_cache.get(action)
        if hit is None:
            hit = (self.actions_rx.fullmatch(action) is not None) != self.negate_action
            if len(self._action_cache) < 100_000:
                self._action_cache[action] = hit
        return hit

    def resource_matches(self, resource: str, ctx: _Ctx) -> bool:
        if self.resources is None:
            return True  # no Resource element (trust policies): the statement is about its own resource
        if self.resources_rx is not None:
            return (self.resources_rx.fullmatch(resource) is not None) != self.negate_resource
        hit = any(p.matches(resource, ctx) for p in self.resources)
        return hit != self.negate_resource

    def applies(self, request: Request, ctx: _Ctx) -> bool:
        return (
            self.action_matches(request.action)
            and self.resource_matches(request.resource, ctx)
            and all(c.matches(ctx) for c in self.conditions)
        )


# What a request's action and context decide (every part of a request but its resource): the
# principal ARN, the action, the context and whether keys are derived from the principal.
_CtxKey = tuple[str, str, tuple[tuple[str, tuple[str, ...]], ...], bool]


@dataclass(frozen=True, slots=True)
class _KeyedCtx:
    """A request's condition keys (lower-cased) with its action, under an id no other
    (principal, action, context) gets in this process (the policies' caches key on it)."""

    id: int
    action: str
    keys: _Ctx


class _CompiledPolicy:
    """A policy's compiled statements, and per (action, context) the statements whose action and
    conditions match it (only the resource is left to test): a replay asks the same few
    (action, context) pairs of tens of thousands of resources."""

    __slots__ = ("_candidates", "policy", "statements")

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        variables = policy.version is PolicyVersion.V2012
        self.statements = tuple(_CompiledStatement(s, i, variables) for i, s in enumerate(policy.statements))
        self._candidates: dict[int, tuple[_CompiledStatement, ...]] = {}

    def candidates(self, ctx: _KeyedCtx) -> tuple[_CompiledStatement, ...]:
        """The statements whose action and conditions match a request of context *ctx*."""
        hit = self._candidates.get(ctx.id)
        if hit is None:
            action = ctx.action
            hit = tuple(
                cs
                for cs in self.statements
                if cs.action_matches(action) and all(c.matches(ctx.keys) for c in cs.conditions)
            )
            if len(self._candidates) >= 4096:  # bounded: contexts come from records
                self._candidates.clear()
            self._candidates[ctx.id] = hit
        return hit


_COMPILED: dict[int, _CompiledPolicy] = {}


def _compiled_policy(policy: Policy) -> _CompiledPolicy:
    # Keyed by identity; the policy is kept alive in the value so its id cannot be reused.
    hit = _COMPILED.get(id(policy))
    if hit is not None and hit.policy is policy:
        return hit
    if len(_COMPILED) > 4096:
        _COMPILED.clear()
    compiled = _COMPILED[id(policy)] = _CompiledPolicy(policy)
    return compiled


def _compiled(policy: Policy) -> tuple[_CompiledStatement, ...]:
    return _compiled_policy(policy).statements


# ---------------------------------------------------------------------------------------------
# The decision


_CONTEXTS: dict[_CtxKey, _KeyedCtx] = {}
_CONTEXT_IDS = itertools.count()


def _context(request: Request, caller: _Caller) -> _KeyedCtx:
    """The request's condition keys, lower-cased, with those AWS derives from the principal.
    Shared per (principal, action, context) (read, never written, by the evaluation): a replay's
    tens of thousands of requests have a few hundred. Bounded: contexts come from records."""
    key = (request.principal_arn, request.action, request.context, request.auto_context)
    ctx = _CONTEXTS.get(key)
    if ctx is None:
        if len(_CONTEXTS) >= 4096:
            _CONTEXTS.clear()
        ctx = _CONTEXTS[key] = _KeyedCtx(next(_CONTEXT_IDS), request.action, _new_context(request, caller))
    return ctx


def _new_context(request: Request, caller: _Caller) -> _Ctx:
    ctx: _Ctx = {k.lower(): v for k, v in request.context}
    if request.auto_context and caller.account:
        # Keys AWS adds to every signed request.
        # https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-keys.html#condition-keys-principal-properties
        derived: dict[str, str] = {"aws:principalaccount": caller.account}
        if caller.kind is _CallerKind.ASSUMED_ROLE:
            derived["aws:principalarn"] = f"arn:{caller.partition}:iam::{caller.account}:role/{caller.name}"
            derived["aws:principaltype"] = "AssumedRole"
        elif caller.kind is _CallerKind.ROLE:
            derived["aws:principalarn"] = caller.arn
            derived["aws:principaltype"] = "AssumedRole"
        elif caller.kind is _CallerKind.USER:
            derived["aws:principalarn"] = caller.arn
            derived["aws:principaltype"] = "User"
            derived["aws:username"] = caller.name
        elif caller.kind is _CallerKind.FEDERATED_USER:
            derived["aws:principalarn"] = caller.arn
            derived["aws:principaltype"] = "FederatedUser"
        elif caller.kind is _CallerKind.ROOT:
            derived["aws:principalarn"] = caller.arn
            derived["aws:principaltype"] = "Account"
        else:
            derived["aws:principalarn"] = caller.arn
        for key, value in derived.items():
            ctx.setdefault(key, (value,))
    return ctx


def _arn_account(arn: str) -> str:
    parts = arn.split(":", 5)
    return parts[4] if len(parts) == 6 and len(parts[4]) == 12 and parts[4].isdigit() else ""


def _scan(
    kind: PolicyKind, policies: Sequence[Policy], request: Request, ctx: _KeyedCtx
) -> tuple[list[MatchedStatement], list[MatchedStatement]]:
    """The statements of *policies* that apply to *request* (``_CompiledStatement.applies``:
    action, resource and conditions; the action and conditions decided once per context)."""
    allows: list[MatchedStatement] = []
    denies: list[MatchedStatement] = []
    resource = request.resource
    keys = ctx.keys
    for policy in policies:
        for cs in _compiled_policy(policy).candidates(ctx):
            if cs.resource_matches(resource, keys):
                (allows if cs.statement.effect is Effect.ALLOW else denies).append(cs.matched(kind, policy))
    return allows, denies


# Actions AWS refuses on AWS-owned resources whatever the policies say.
_AWS_MANAGED_POLICY_ACTIONS = frozenset(
    f"iam:{a}"
    for a in (
        "createpolicy",
        "createpolicyversion",
        "deletepolicy",
        "deletepolicyversion",
        "setdefaultpolicyversion",
        "tagpolicy",
        "untagpolicy",
    )
)
_AWS_RESERVED_ROLE_ACTIONS = frozenset(
    f"iam:{a}"
    for a in (
        "attachrolepolicy",
        "createrole",
        "createservicelinkedrole",
        "deleterole",
        "deleterolepermissionsboundary",
        "deleterolepolicy",
        "deleteservicelinkedrole",
        "detachrolepolicy",
        "passrole",
        "putrolepermissionsboundary",
        "putrolepolicy",
        "tagrole",
        "untagrole",
        "updateassumerolepolicy",
        "updaterole",
        "updateroledescription",
    )
)
_KMS_ALIAS_ACTIONS = frozenset({"kms:createalias", "kms:deletealias", "kms:updatealias"})
_AWS_OWNED_ACTIONS = _AWS_MANAGED_POLICY_ACTIONS | _AWS_RESERVED_ROLE_ACTIONS | _KMS_ALIAS_ACTIONS


def _aws_owned_refusal(action: str, resource: str) -> str:
    low = action.lower()
    if low not in _AWS_OWNED_ACTIONS:
        return ""
    parts = resource.split(":", 5)
    res = parts[5] if len(parts) == 6 else ""
    if (
        low in _AWS_MANAGED_POLICY_ACTIONS
        and len(parts) == 6
        and parts[4] == "aws"
        and res.startswith("policy/")
    ):
        return "AWS managed policies cannot be changed"
    if low in _AWS_RESERVED_ROLE_ACTIONS and res.lower().startswith("role/aws-reserved/"):
        return "roles under /aws-reserved/ are managed by AWS"
    if low in _KMS_ALIAS_ACTIONS and res.lower().startswith("alias/aws/"):
        # https://docs.aws.amazon.com/kms/latest/developerguide/alias-access.html
        return "aliases under alias/aws/ are reserved for AWS managed keys"
    return ""


# No statement of a policy that is not there (shared: read and concatenated, never appended to).
_NONE_MATCHED: list[MatchedStatement] = []


def evaluate(
    request: Request,
    identity_policies: Sequence[Policy],
    boundary: Policy | None = None,
    resource_policy: Policy | None = None,
    session_policy: Policy | None = None,
) -> Evaluation:
    """Decide *request* the way AWS documents it (see the module docstring)."""
    caller = _caller(request.principal_arn)
    action = request.action.lower()

    # sts:GetCallerIdentity needs no permission and cannot be denied.
    # https://docs.aws.amazon.com/STS/latest/APIReference/API_GetCallerIdentity.html
    if action == "sts:getcalleridentity" and caller.kind is not _CallerKind.ANONYMOUS:
        return Evaluation(Decision.ALLOWED, (), "sts:GetCallerIdentity needs no permission")

    keyed = _context(request, caller)
    anonymous = caller.kind is _CallerKind.ANONYMOUS
    identity_allows, identity_denies = (
        ([], []) if anonymous else _scan(PolicyKind.IDENTITY, identity_policies, request, keyed)
    )
    boundary_allows = boundary_denies = session_allows = session_denies = _NONE_MATCHED
    if boundary is not None:
        boundary_allows, boundary_denies = _scan(PolicyKind.BOUNDARY, [boundary], request, keyed)
    if session_policy is not None:
        session_allows, session_denies = _scan(PolicyKind.SESSION, [session_policy], request, keyed)

    rp = _scan_resource_policy(resource_policy, caller, boundary is not None, request, keyed.keys)
    if identity_denies or boundary_denies or session_denies or rp.denies:
        denies = identity_denies + boundary_denies + session_denies + rp.denies
        return Evaluation(Decision.EXPLICIT_DENY, tuple(denies), "explicit deny")

    if anonymous or caller.kind is _CallerKind.SERVICE:
        if rp.direct:
            return Evaluation(Decision.ALLOWED, tuple(rp.direct), "resource policy allows")
        return _implicit("no resource-policy statement allows this caller")

    resource_account = request.resource_account or _arn_account(request.resource) or caller.account
    session_ok = session_policy is None or bool(session_allows)
    boundary_ok = boundary is None or bool(boundary_allows)
    if bool(caller.account) and caller.account == resource_account:
        trust = _account_trust(request, resource_policy is not None, rp.account)
        decision = _same_account(
            identity_allows, boundary_allows, session_allows, rp, boundary_ok, session_ok, trust
        )
    else:
        decision = _cross_account(
            identity_allows, boundary_allows, session_allows, rp, boundary_ok, session_ok
        )

    if decision.allowed:
        refusal = _aws_owned_refusal(request.action, request.resource)
        if refusal:
            return Evaluation(Decision.IMPLICIT_DENY, decision.statements, refusal)
    return decision


@dataclass(slots=True)
class _ResourceMatches:
    """The resource-policy statements that apply to a request, by what they do for the caller."""

    direct: list[MatchedStatement] = field(default_factory=list)  # naming the caller (or its role/user)
    bypass: list[MatchedStatement] = field(default_factory=list)  # naming the caller itself: not limited
    account: list[MatchedStatement] = field(default_factory=list)  # naming the caller's account
    denies: list[MatchedStatement] = field(default_factory=list)


# Most requests have no resource policy: one shared empty answer (never appended to).
_NO_RESOURCE_POLICY = _ResourceMatches()


def _scan_resource_policy(
    resource_policy: Policy | None, caller: _Caller, has_boundary: bool, request: Request, ctx: _Ctx
) -> _ResourceMatches:
    if resource_policy is None:
        return _NO_RESOURCE_POLICY
    out = _ResourceMatches()
    for cs in _compiled(resource_policy):
        st = cs.statement
        if st.principals is not None:
            pm = _principals_match(st.principals, caller)
        elif st.not_principals is not None:
            inside = _principals_match(st.not_principals, caller) is not _PrincipalMatch.NONE
            pm = _PrincipalMatch.NONE if inside else _PrincipalMatch.DIRECT
            if has_boundary and st.effect is Effect.DENY:
                # A Deny with NotPrincipal always denies a principal that has a boundary.
                # https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_notprincipal.html
                pm = _PrincipalMatch.DIRECT
        else:
            pm = _PrincipalMatch.NONE
        if pm is _PrincipalMatch.NONE or not cs.applies(request, ctx):
            continue
        m = cs.matched(PolicyKind.RESOURCE, resource_policy)
        if st.effect is Effect.DENY:
            out.denies.append(m)
        elif pm is _PrincipalMatch.ACCOUNT:
            out.account.append(m)
        else:
            out.direct.append(m)
            if pm is _PrincipalMatch.DIRECT and _bypasses_limits(st, caller):
                out.bypass.append(m)
    return out


def _implicit(reason: str, *groups: list[MatchedStatement]) -> Evaluation:
    return Evaluation(Decision.IMPLICIT_DENY, tuple(m for g in groups for m in g), reason)


def _same_account(
    identity: list[MatchedStatement],
    boundary: list[MatchedStatement],
    session: list[MatchedStatement],
    rp: _ResourceMatches,
    boundary_ok: bool,
    session_ok: bool,
    trust: bool,
) -> Evaluation:
    """Caller and resource in one account: the identity path (trusted by the resource policy, when
    it must be) or the resource policy's own allow. *boundary_ok* / *session_ok*: the boundary and
    the session policy allow, or there is none."""
    if identity and trust and boundary_ok and session_ok:
        return Evaluation(
            Decision.ALLOWED, tuple(identity + boundary + session + rp.account), "identity policy allows"
        )
    if rp.direct and boundary_ok and session_ok:
        return Evaluation(Decision.ALLOWED, tuple(rp.direct + boundary + session), "resource policy allows")
    if rp.bypass:
        return Evaluation(
            Decision.ALLOWED, tuple(rp.bypass), "resource policy allows the caller by its own ARN"
        )
    if not identity and not rp.direct:
        return _implicit("no statement allows", rp.account)
    if not session_ok:
        return _implicit("session policy does not allow", identity, rp.direct)
    if not boundary_ok:
        return _implicit("permissions boundary does not allow", identity, rp.direct)
    return _implicit(
        "the resource policy does not trust the account's IAM policies (KMS key policy / role trust)",
        identity,
    )


def _cross_account(
    identity: list[MatchedStatement],
    boundary: list[MatchedStatement],
    session: list[MatchedStatement],
    rp: _ResourceMatches,
    boundary_ok: bool,
    session_ok: bool,
) -> Evaluation:
    """Caller and resource in different accounts: both sides must allow."""
    resource_ok = bool(rp.direct or rp.account)
    if resource_ok and identity and boundary_ok and session_ok:
        used = identity + boundary + session + rp.direct + rp.account
        return Evaluation(Decision.ALLOWED, tuple(used), "cross-account: both sides allow")
    if not resource_ok:
        return _implicit("cross-account: the resource policy does not allow", identity)
    if not identity:
        return _implicit("cross-account: no identity policy allows", rp.direct, rp.account)
    if not boundary_ok:
        return _implicit("permissions boundary does not allow", identity)
    return _implicit("session policy does not allow", identity)


def _bypasses_limits(statement: Statement, caller: _Caller) -> bool:
    """Whether a resource-policy allow naming *caller* escapes an implicit deny of the boundary/session.

    The docs: an allow naming an IAM user ARN or a role *session* ARN is not limited; one naming the
    role ARN is (its sessions get it through the role). A bare role ARN as caller stands for a
    session whose name we do not know, so only ``"*"`` names it directly.
    https://docs.aws.amazon.com/IAM/latest/UserGuide/access_policies_boundaries.html#access_policies_boundaries-eval-logic
    """
    if caller.kind in (_CallerKind.USER, _CallerKind.ASSUMED_ROLE, _CallerKind.FEDERATED_USER):
        return True
    if caller.kind is _CallerKind.ROLE and statement.principals is not None:
        p = statement.principals
        return p.wildcard or "*" in p.values(PrincipalType.AWS)
    return False


def _account_trust(
    request: Request, has_resource_policy: bool, account_allows: list[MatchedStatement]
) -> bool:
    """Same account: may identity-policy allows count on their own?

    Most services trust their account's IAM policies implicitly. A KMS key does only if its key
    policy allows the account (``"AWS": "arn:aws:iam::ACCT:root"``); a role's trust policy likewise.
    https://docs.aws.amazon.com/kms/latest/developerguide/key-policy-default.html#key-policy-default-allow-root-enable-iam
    https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic-cross-account.html
    """
    service = request.action.partition(":")[0].lower()
    if service == "kms":
        parts = request.resource.split(":", 5)
        if request.resource == "*":
            return True
        if len(parts) == 6 and parts[5].lower().startswith("key/"):
            return bool(account_allows)
        return True
    if service == "sts" and has_resource_policy:
        return bool(account_allows)
    return True
