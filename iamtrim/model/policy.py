"""IAM policy documents as frozen values: parsed once at the edge, rendered back deterministically.

The grammar is AWS's: https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_grammar.html
Every element that AWS accepts as "a string or a list of strings" (``Action``, ``Resource``,
``Principal`` entries, condition values) becomes a tuple here, so nothing downstream has to care
which form the author used. Raw JSON (``dict``/``list``) never leaves this module.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from iamtrim.errors import PolicyError

__all__ = [
    "CONDITION_OPERATORS",
    "Condition",
    "Effect",
    "Policy",
    "PolicyVersion",
    "PrincipalType",
    "Principals",
    "Statement",
]


class Effect(StrEnum):
    ALLOW = "Allow"
    DENY = "Deny"


class PolicyVersion(StrEnum):
    """The policy language version. Policy variables only exist in 2012-10-17; a document without
    ``Version`` is read as 2008-10-17, where ``${...}`` is literal text.
    https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_version.html
    """

    V2012 = "2012-10-17"
    V2008 = "2008-10-17"


class PrincipalType(StrEnum):
    """Keys of the ``Principal`` object.
    https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_principal.html
    """

    AWS = "AWS"
    SERVICE = "Service"
    FEDERATED = "Federated"
    CANONICAL_USER = "CanonicalUser"


# Base condition operators (without ForAnyValue:/ForAllValues: and without the IfExists suffix).
# https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition_operators.html
CONDITION_OPERATORS: frozenset[str] = frozenset(
    {
        "StringEquals",
        "StringNotEquals",
        "StringEqualsIgnoreCase",
        "StringNotEqualsIgnoreCase",
        "StringLike",
        "StringNotLike",
        "NumericEquals",
        "NumericNotEquals",
        "NumericLessThan",
        "NumericLessThanEquals",
        "NumericGreaterThan",
        "NumericGreaterThanEquals",
        "DateEquals",
        "DateNotEquals",
        "DateLessThan",
        "DateLessThanEquals",
        "DateGreaterThan",
        "DateGreaterThanEquals",
        "Bool",
        "BinaryEquals",
        "IpAddress",
        "NotIpAddress",
        "ArnEquals",
        "ArnLike",
        "ArnNotEquals",
        "ArnNotLike",
        "Null",
    }
)
_OPERATORS_LOWER = {op.lower(): op for op in CONDITION_OPERATORS}
_SET_PREFIXES = {"foranyvalue": "ForAnyValue", "forallvalues": "ForAllValues"}


def split_operator(operator: str) -> tuple[str, str, bool]:
    """``"ForAnyValue:StringLikeIfExists"`` → ``("ForAnyValue", "StringLike", True)``.

    Operator names are matched case-insensitively, as IAM does; raises :class:`PolicyError` for an
    operator IAM does not know.
    """
    set_op = ""
    rest = operator
    head, sep, tail = operator.partition(":")
    if sep:
        set_op = _SET_PREFIXES.get(head.lower(), "")
        if not set_op:
            raise PolicyError(f"unknown condition set operator {head!r} in {operator!r}")
        rest = tail
    if_exists = rest.lower().endswith("ifexists") and rest.lower() != "ifexists"
    base = rest[: -len("IfExists")] if if_exists else rest
    canon = _OPERATORS_LOWER.get(base.lower())
    if canon is None:
        raise PolicyError(f"unknown condition operator {operator!r}")
    return set_op, canon, if_exists


@dataclass(frozen=True, slots=True, order=True)
class Condition:
    """One ``operator → key → values`` test. Values of one condition are OR'd; the conditions of a
    statement are AND'd. Keys are case-insensitive in AWS; they are kept as written.
    https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-logic-multiple-context-keys-or-values.html
    """

    operator: str
    key: str
    values: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Principals:
    """A ``Principal`` / ``NotPrincipal`` element.

    ``wildcard`` is the bare ``"*"`` form; ``{"AWS": "*"}`` is kept as an entry so the document
    renders back as written (both mean everyone, including anonymous callers).
    """

    wildcard: bool = False
    entries: tuple[tuple[PrincipalType, tuple[str, ...]], ...] = ()

    def values(self, kind: PrincipalType) -> tuple[str, ...]:
        for k, vals in self.entries:
            if k is kind:
                return vals
        return ()

    @classmethod
    def star(cls) -> Principals:
        return cls(wildcard=True)

    @classmethod
    def aws(cls, *arns: str) -> Principals:
        return cls(entries=((PrincipalType.AWS, tuple(arns)),))

    def to_json(self) -> str | dict[str, str | list[str]]:
        if self.wildcard:
            return "*"
        return {str(k): _one_or_list(v) for k, v in sorted(self.entries, key=lambda e: str(e[0]))}


@dataclass(frozen=True, slots=True)
class Statement:
    """One statement. Exactly one of ``actions``/``not_actions`` is non-empty; ``resources`` and
    ``not_resources`` are both empty only in documents without a resource element (trust policies)."""

    effect: Effect
    actions: tuple[str, ...] = ()
    not_actions: tuple[str, ...] = ()
    resources: tuple[str, ...] = ()
    not_resources: tuple[str, ...] = ()
    principals: Principals | None = None
    not_principals: Principals | None = None
    conditions: tuple[Condition, ...] = ()
    sid: str = ""

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {}
        if self.sid:
            out["Sid"] = self.sid
        out["Effect"] = str(self.effect)
        if self.principals is not None:
            out["Principal"] = self.principals.to_json()
        if self.not_principals is not None:
            out["NotPrincipal"] = self.not_principals.to_json()
        if self.actions:
            out["Action"] = _one_or_list(self.actions)
        if self.not_actions:
            out["NotAction"] = _one_or_list(self.not_actions)
        if self.resources:
            out["Resource"] = _one_or_list(self.resources)
        if self.not_resources:
            out["NotResource"] = _one_or_list(self.not_resources)
        if self.conditions:
            block: dict[str, dict[str, str | list[str]]] = {}
            for cond in sorted(self.conditions, key=lambda c: (c.operator, c.key)):
                block.setdefault(cond.operator, {})[cond.key] = _one_or_list(cond.values)
            out["Condition"] = block
        return out


@dataclass(frozen=True, slots=True)
class Policy:
    statements: tuple[Statement, ...]
    version: PolicyVersion = PolicyVersion.V2012
    name: str = ""  # where the policy came from (managed policy name, "inline:<name>", ...); not rendered
    id: str = ""  # the optional ``Id`` element

    @classmethod
    def from_json(cls, document: object, name: str = "") -> Policy:
        """Parse an IAM policy document (a ``dict`` from ``json.loads``, or the JSON text itself).

        Raises :class:`PolicyError` for anything that is not valid policy grammar.
        """
        if isinstance(document, str | bytes):
            try:
                document = json.loads(document)
            except ValueError as exc:
                raise PolicyError(f"{name or 'policy'}: not JSON: {exc}") from exc
        where = name or "policy"
        if not isinstance(document, Mapping):
            raise PolicyError(f"{where}: a policy document must be a JSON object")
        unknown = set(document) - {"Version", "Id", "Statement"}
        if unknown:
            raise PolicyError(f"{where}: unknown top-level element(s) {sorted(unknown)}")
        raw_version = document.get("Version", PolicyVersion.V2008.value)
        try:
            version = PolicyVersion(raw_version)
        except ValueError:
            raise PolicyError(f"{where}: unsupported Version {raw_version!r}") from None
        raw_id = document.get("Id", "")
        if not isinstance(raw_id, str):
            raise PolicyError(f"{where}: Id must be a string")
        raw_statements = document.get("Statement")
        if raw_statements is None:
            raise PolicyError(f"{where}: missing Statement")
        if isinstance(raw_statements, Mapping):
            raw_statements = [raw_statements]
        if not isinstance(raw_statements, list) or not raw_statements:
            raise PolicyError(f"{where}: Statement must be an object or a non-empty list")
        statements = tuple(
            _parse_statement(s, f"{where}: Statement[{i}]") for i, s in enumerate(raw_statements)
        )
        return cls(statements=statements, version=version, name=name, id=raw_id)

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {"Version": str(self.version)}
        if self.id:
            out["Id"] = self.id
        out["Statement"] = [s.to_json() for s in self.statements]
        return out

    def to_text(self, indent: int | None = None) -> str:
        """The document as JSON text; keys in the fixed order of :meth:`to_json`."""
        if indent is None:
            return json.dumps(self.to_json(), separators=(",", ":"))
        return json.dumps(self.to_json(), indent=indent)


_STATEMENT_KEYS = frozenset(
    {
        "Sid",
        "Effect",
        "Principal",
        "NotPrincipal",
        "Action",
        "NotAction",
        "Resource",
        "NotResource",
        "Condition",
    }
)


def _parse_statement(raw: object, where: str) -> Statement:
    if not isinstance(raw, Mapping):
        raise PolicyError(f"{where}: a statement must be a JSON object")
    unknown = set(raw) - _STATEMENT_KEYS
    if unknown:
        raise PolicyError(f"{where}: unknown element(s) {sorted(unknown)}")
    sid = raw.get("Sid", "")
    if not isinstance(sid, str):
        raise PolicyError(f"{where}: Sid must be a string")
    try:
        effect = Effect(str(raw.get("Effect")))
    except ValueError:
        raise PolicyError(f"{where}: Effect must be 'Allow' or 'Deny', not {raw.get('Effect')!r}") from None
    if ("Action" in raw) == ("NotAction" in raw):
        raise PolicyError(f"{where}: exactly one of Action / NotAction is required")
    if "Resource" in raw and "NotResource" in raw:
        raise PolicyError(f"{where}: Resource and NotResource cannot both appear")
    if "Principal" in raw and "NotPrincipal" in raw:
        raise PolicyError(f"{where}: Principal and NotPrincipal cannot both appear")
    actions = _strings(raw.get("Action"), f"{where}.Action") if "Action" in raw else ()
    not_actions = _strings(raw.get("NotAction"), f"{where}.NotAction") if "NotAction" in raw else ()
    for action in actions + not_actions:
        if action != "*" and ":" not in action:
            raise PolicyError(f"{where}: action {action!r} is not 'service:action' or '*'")
    resources = _strings(raw.get("Resource"), f"{where}.Resource") if "Resource" in raw else ()
    not_resources = _strings(raw.get("NotResource"), f"{where}.NotResource") if "NotResource" in raw else ()
    principals = _parse_principals(raw["Principal"], f"{where}.Principal") if "Principal" in raw else None
    not_principals = (
        _parse_principals(raw["NotPrincipal"], f"{where}.NotPrincipal") if "NotPrincipal" in raw else None
    )
    conditions = _parse_conditions(raw.get("Condition"), f"{where}.Condition") if "Condition" in raw else ()
    return Statement(
        effect=effect,
        actions=actions,
        not_actions=not_actions,
        resources=resources,
        not_resources=not_resources,
        principals=principals,
        not_principals=not_principals,
        conditions=conditions,
        sid=sid,
    )


def _strings(raw: object, where: str, allow_empty: bool = False) -> tuple[str, ...]:
    if isinstance(raw, str):
        return (raw,)
    if isinstance(raw, list) and (raw or allow_empty) and all(isinstance(x, str) for x in raw):
        return tuple(raw)
    raise PolicyError(f"{where}: expected a string or a non-empty list of strings")


def _parse_principals(raw: object, where: str) -> Principals:
    if raw == "*":
        return Principals(wildcard=True)
    if not isinstance(raw, Mapping) or not raw:
        raise PolicyError(f'{where}: expected "*" or an object like {{"AWS": [...]}}')
    entries: list[tuple[PrincipalType, tuple[str, ...]]] = []
    for key, value in raw.items():
        try:
            kind = PrincipalType(key)
        except ValueError:
            raise PolicyError(f"{where}: unknown principal type {key!r}") from None
        entries.append((kind, _strings(value, f"{where}.{key}")))
    entries.sort(key=lambda e: str(e[0]))
    return Principals(entries=tuple(entries))


def _scalar(value: object, where: str) -> str:
    # JSON booleans and numbers are accepted in condition values ({"aws:SecureTransport": false}) and
    # compared as their string forms.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return json.dumps(value)
    raise PolicyError(f"{where}: condition values must be strings, numbers or booleans")


def _parse_conditions(raw: object, where: str) -> tuple[Condition, ...]:
    if not isinstance(raw, Mapping):
        raise PolicyError(f"{where}: expected an object of operator → {{key: values}}")
    out: list[Condition] = []
    for operator, block in raw.items():
        split_operator(operator)  # validates
        if not isinstance(block, Mapping) or not block:
            raise PolicyError(f"{where}.{operator}: expected a non-empty object of key → values")
        for key, values in block.items():
            items: Iterable[object] = values if isinstance(values, list) else [values]
            vals = tuple(_scalar(v, f"{where}.{operator}.{key}") for v in items)
            if not vals:
                raise PolicyError(f"{where}.{operator}.{key}: no values")
            out.append(Condition(operator=operator, key=key, values=vals))
    # Conditions are AND'd, so their order carries no meaning: keep them sorted, as rendered.
    return tuple(sorted(out, key=lambda c: (c.operator, c.key)))


def _one_or_list(values: tuple[str, ...]) -> str | list[str]:
    # One value is written as a plain string: IAM accepts both forms and the size limits count
    # characters (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html).
    return values[0] if len(values) == 1 else list(values)
