"""eventSource + eventName → IAM action(s), confirmed against the catalog.

Rules, in order (each documented in docs/mapping.md):
1. the event source host names the IAM prefix (``kms.amazonaws.com`` → ``kms``) unless
   ``data/event_sources.csv`` says otherwise (``monitoring`` → ``cloudwatch``); a multi-label host
   falls back to its last label (``streams.dynamodb`` → ``dynamodb``) only if that is a prefix;
2. ``data/event_actions.csv`` maps event names that are not action names (``ListObjects`` →
   ``s3:ListBucket``, ``ReEncrypt`` → ``ReEncryptFrom`` + ``ReEncryptTo``);
3. otherwise the event name is the action name, with the catalog's casing;
4. API Gateway's management calls are its HTTP methods (``GetResource`` → ``apigateway:GET``;
   ``iamtrim.normalize.apigateway``);
5. API-version suffixes (``UpdateFunctionConfiguration20150331v2``) are stripped only when the
   stripped name is a catalog action and the full name is not (``kafka:CreateClusterV2`` stays).

Both functions are pure and not cached: their arguments are record text, which hostile input can
make up without end. A :class:`~iamtrim.normalize.record.Normalizer` remembers their answers in a
bounded table of its own (``Normalizer.rules``).
"""

from __future__ import annotations

import re

from iamtrim import catalog
from iamtrim.model import Skipped, SkipReason
from iamtrim.normalize import apigateway
from iamtrim.normalize.tables import (
    ActionRule,
    event_action_rules,
    event_source_prefixes,
    permissionless,
)

_VERSION_SUFFIX = re.compile(r"^(?P<name>[A-Za-z]+?)(?P<date>(19|20)\d{6})(v\d+)?$")


def prefix_for_source(event_source: str) -> str | None:
    table = event_source_prefixes()
    if event_source in table:
        return table[event_source]
    host = event_source.lower()
    for suffix in (".amazonaws.com", ".amazonaws.com.cn", ".api.aws"):
        if host.endswith(suffix):
            host = host[: -len(suffix)]
            break
    else:
        return None
    if catalog.service_exists(host):
        return host
    labels = host.split(".")
    for label in (labels[-1], labels[0]):
        if catalog.service_exists(label):
            return label
    return None


def resolve_actions(event_source: str, event_name: str) -> tuple[ActionRule, ...] | Skipped:
    prefix = prefix_for_source(event_source)
    if prefix is None:
        return Skipped(SkipReason.UNKNOWN_SERVICE, event_source)
    if (prefix, event_name) in permissionless():
        return Skipped(SkipReason.NO_PERMISSION_NEEDED, f"{prefix}:{event_name}")
    rules = event_action_rules().get((prefix, event_name))
    if rules is not None:
        return rules
    canon = catalog.canonical_action(prefix, event_name)
    if canon is not None:
        return (ActionRule(canon, ""),)
    if prefix == "apigateway":
        verbs = apigateway.actions(event_name)
        if verbs:
            return tuple(ActionRule(action, "") for action in verbs)
    match = _VERSION_SUFFIX.match(event_name)
    if match:
        stripped = match.group("name")
        if (prefix, stripped) in permissionless():
            return Skipped(SkipReason.NO_PERMISSION_NEEDED, f"{prefix}:{stripped}")
        rules = event_action_rules().get((prefix, stripped))
        if rules is not None:
            return rules
        canon = catalog.canonical_action(prefix, stripped)
        if canon is not None:
            return (ActionRule(canon, ""),)
    return Skipped(SkipReason.UNKNOWN_ACTION, f"{prefix}:{event_name}")


# S3 calls on a specific object version need the *Version* action
# (https://docs.aws.amazon.com/AmazonS3/latest/userguide/using-with-s3-policy-actions.html).
S3_VERSIONED = {
    "s3:GetObject": "s3:GetObjectVersion",
    "s3:GetObjectAcl": "s3:GetObjectVersionAcl",
    "s3:GetObjectTagging": "s3:GetObjectVersionTagging",
    "s3:PutObjectAcl": "s3:PutObjectVersionAcl",
    "s3:PutObjectTagging": "s3:PutObjectVersionTagging",
    "s3:DeleteObject": "s3:DeleteObjectVersion",
    "s3:DeleteObjectTagging": "s3:DeleteObjectVersionTagging",
    "s3:GetObjectAttributes": "s3:GetObjectVersionAttributes",
}
