"""Which resources a call touched, as ARNs the catalog's resource types recognize.

Sources, in order of trust (docs/mapping.md "Resources"):
1. the record's ``resources[]`` (CloudTrail's own list of ARNs involved);
2. ARNs in ``responseElements`` (create calls learn their ARN only from the response);
3. ARNs in ``requestParameters`` (``roleArn``, ``functionName`` given as an ARN, ...);
4. the action's ARN templates filled from ``requestParameters`` (``bucketName`` + ``key`` →
   ``arn:aws:s3:::bucket/key``), through ``data/resource_params.csv`` and a naming rule.
Each candidate must match one of the action's resource-type templates. Wildcard-only actions get
``*``; when nothing resolves the resource stays unknown (never a guessed ``*``).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote

from iamtrim import catalog
from iamtrim.catalog import ResourceType
from iamtrim.model import partition_for_region
from iamtrim.normalize.tables import param_rules
from iamtrim.sources.records import Record

_MAX_SCAN = 64  # values looked at per record when scanning for ARNs (bounds the cost)


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


def _values(raw: Any) -> list[str]:
    if isinstance(raw, str):
        return [raw] if raw else []
    if isinstance(raw, bool):
        return []
    if isinstance(raw, int | float):
        return [str(raw)]
    if isinstance(raw, list):
        return [v for v in raw if isinstance(v, str) and v][:100]
    return []


_SQS_URL = re.compile(r"^https?://(?:sqs\.)?(?P<region>[a-z0-9-]+)?\.?[^/]*/(?P<account>\d{12})/(?P<name>[^/?]+)")


def _transform(
    value: str, transform: str, rt: ResourceType, partition: str, region: str, account: str
) -> tuple[str, str | None]:
    """(variable value, full ARN if the transform yields one directly)."""
    if transform == "strip-leading-slash":
        return value[1:] if value.startswith("/") else value, None
    if transform == "strip-alias-prefix":
        return value.removeprefix("alias/"), None
    if transform == "secret-name":
        # Secrets Manager appends "-" and six random characters to the name in the ARN:
        # https://docs.aws.amazon.com/secretsmanager/latest/userguide/auth-and-access_examples.html#auth-and-access_examples_wildcard
        return f"{value}-??????", None
    if transform == "queue-url":
        m = _SQS_URL.match(value)
        if m:
            qregion = region
            host = value.split("/")[2]
            parts = host.split(".")
            if len(parts) > 2 and parts[0] == "sqs":
                qregion = parts[1]
            return "", f"arn:{partition}:sqs:{qregion}:{m.group('account')}:{m.group('name')}"
        return value, None
    if transform == "kms-key-id":
        if value.startswith("alias/"):
            return "", None  # an alias does not name the key the call was authorized on
        return value, None
    if transform == "lambda-function":
        # functionName may be "name", "name:qualifier", "123456789012:function:name" or an ARN.
        if ":function:" in value:
            tail = value.split(":function:", 1)[1]
            acct = value.split(":function:", 1)[0].rsplit(":", 1)[-1] or account
            return "", f"arn:{partition}:lambda:{region}:{acct}:function:{tail}"
        return value, None
    return value, None


def _candidates(prefix: str, var: str, action_name: str) -> list[tuple[str, str]]:
    rules = param_rules()
    out = [(r.request_parameter, r.transform) for r in rules.get((prefix, var), ())]
    out += [(r.request_parameter, r.transform) for r in rules.get(("*", var), ())]
    lc = var[:1].lower() + var[1:]
    out.append((lc, ""))
    for suffix in ("Name", "Id", "Arn"):
        if var.endswith(suffix) and len(var) > len(suffix):
            stem = var[: -len(suffix)]
            lstem = stem[:1].lower() + stem[1:]
            out += [(lstem + s, "") for s in ("Name", "Id", "Arn") if s != suffix]
            # "GetTable" + var "TableName" → parameter "name": the call's own noun.
            noun = action_name.rstrip("s")
            if noun.endswith(stem):
                out.append((suffix.lower(), ""))
    return out


def _fill(rt: ResourceType, action: str, params: dict[str, Any], partition: str, region: str,
          account: str) -> list[str]:
    prefix, _, action_name = action.partition(":")
    lowered = {k.lower(): v for k, v in params.items()}
    choices: list[list[str]] = []
    direct: list[str] = []
    for var in rt.variables:
        if var == "Partition":
            choices.append([partition])
            continue
        if var == "Region":
            choices.append([region])
            continue
        if var in ("Account", "AccountId"):
            choices.append([account])
            continue
        found: list[str] = []
        for param, transform in _candidates(prefix, var, action_name):
            raw = lowered.get(param.lower())
            if raw is None:
                continue
            for value in _values(raw):
                if value.startswith("arn:"):
                    if catalog.arn_matches_template(value, rt.arn_template):
                        direct.append(value)
                    continue
                filled, arn = _transform(value, transform, rt, partition, region, account)
                if arn is not None:
                    if catalog.arn_matches_template(arn, rt.arn_template):
                        direct.append(arn)
                elif filled:
                    found.append(filled)
            if found or direct:
                break
        if direct:
            return direct
        if not found:
            if prefix == "cloudformation" and var == "Id":
                found = ["*"]  # stack/name/<uuid>: the uuid is not in the request
            else:
                return []
        choices.append(found)
    template = re.sub(r"\$\{([^}]+)\}", "{}", rt.arn_template)
    out = []
    for combo in itertools.islice(itertools.product(*choices), 100):
        out.append(template.format(*combo))
    return out


def _copy_source(params: dict[str, Any], partition: str) -> list[str]:
    # x-amz-copy-source: "bucket/key" (URL-encoded), optionally "?versionId=..."; may start with "/".
    raw = params.get("x-amz-copy-source") or params.get("copySource")
    if not isinstance(raw, str) or not raw:
        return []
    path = unquote(raw.split("?", 1)[0]).lstrip("/")
    if "/" not in path:
        return []
    return [f"arn:{partition}:s3:::{path}"]


def _kms_role_key(params: dict[str, Any], role: str, partition: str, region: str, account: str) -> list[str]:
    raw = params.get("sourceKeyId" if role == "source" else "destinationKeyId")
    if not isinstance(raw, str) or not raw or raw.startswith("alias/"):
        return []
    if raw.startswith("arn:"):
        return [raw] if ":key/" in raw else []
    return [f"arn:{partition}:kms:{region}:{account}:key/{raw}"]


def resolve_resources(action: str, role: str, record: Record, region: str, account: str) -> tuple[str, ...]:
    """Resource ARNs for *action* in *record*; ``("*",)`` for wildcard-only; ``()`` when unknown."""
    if catalog.is_wildcard_only(action):
        return ("*",)
    partition = partition_for_region(region)
    params = record.requestParameters if isinstance(record.requestParameters, dict) else {}
    if role:
        if action.startswith("s3:") and role == "source":
            return tuple(_copy_source(params, partition))
        if action.startswith("kms:"):
            return tuple(_kms_role_key(params, role, partition, region, account))
    found: dict[str, list[str]] = {}
    sources: list[list[str]] = []
    if record.resources:
        sources.append([r.ARN for r in record.resources if r.ARN])
    if record.responseElements:
        sources.append(list(_scan_arns(record.responseElements)))
    if params:
        sources.append(list(_scan_arns(params)))
    for arns in sources:
        matched: dict[str, list[str]] = {}
        for arn in arns:
            rt = catalog.resource_type_for_arn(action, arn)
            if rt is not None and rt.name not in found:
                bucket = matched.setdefault(rt.name, [])
                if arn not in bucket:
                    bucket.append(arn)
        found.update(matched)
    if params:
        for rt in catalog.resource_types(action):
            if rt.name not in found:
                filled = _fill(rt, action, params, partition, region, account)
                if filled:
                    found[rt.name] = filled
    out: list[str] = []
    for arns in found.values():
        for arn in arns:
            if arn not in out:
                out.append(arn)
    return tuple(out)
