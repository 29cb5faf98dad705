"""Replay observed calls through iamtrim's IAM evaluator.

A generated policy that would refuse a call the principal was seen making is a bug, not an
output; generate-policy runs this before printing anything.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from iamtrim.evaluate import Evaluation, Request, evaluate
from iamtrim.model import Context, UsageRow, is_service_principal, literal_of
from iamtrim.model.policy import Effect, Policy, Principals, Statement


def via_service(invoked_by: str, region: str) -> str:
    """``s3.amazonaws.com`` + ``us-east-1`` → ``s3.us-east-1.amazonaws.com`` (the kms:ViaService form);
    ``""`` when *invoked_by* names no service (``AWS Internal``) or the region is unknown.

    https://docs.aws.amazon.com/kms/latest/developerguide/conditions-kms.html#conditions-kms-via-service
    """
    if not region or not is_service_principal(invoked_by):
        return ""
    service = invoked_by.removesuffix(".amazonaws.com")
    return f"{service}.{region}.amazonaws.com"


def request_context(action: str, context: Context, source_ip: str = "") -> dict[str, str]:
    """The condition keys AWS would set for a call made in *context*."""
    out: dict[str, str] = {}
    # CloudTrail-logged API calls are made over TLS (tlsDetails, when present, says which version).
    out["aws:SecureTransport"] = "true"
    if context.vpc_endpoint:
        out["aws:SourceVpce"] = context.vpc_endpoint
    elif source_ip and context.source_ip_kind == "ip":
        out["aws:SourceIp"] = source_ip
    if context.invoked_by and action.startswith("kms:"):
        service = via_service(context.invoked_by, context.region)
        if service:
            out["kms:ViaService"] = service
    if context.sse_header and action.startswith("s3:"):
        out["s3:x-amz-server-side-encryption"] = context.sse_header
    if context.sse_kms_key_header and action.startswith("s3:"):
        out["s3:x-amz-server-side-encryption-aws-kms-key-id"] = context.sse_kms_key_header
    if context.region:
        out["aws:RequestedRegion"] = context.region
    return out


def request_for(principal_arn: str, row: UsageRow, resource: str | None = None) -> Request:
    # The store keeps resources as IAM patterns (a literal "*" from the record as "${*}"); the
    # request names the literal string the caller asked for.
    target = resource or (literal_of(row.resource) if row.resource else "*")
    account = principal_arn.split(":")[4] if principal_arn.startswith("arn:") else ""
    items = _context_items(row.action, row.context, row.source_ips[0] if row.source_ips else "")
    return Request(principal_arn, row.action, target, items, account)


@functools.lru_cache(maxsize=4096)
def _context_items(action: str, context: Context, source_ip: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """``Request.make``'s context of :func:`request_context`: the rows of a replay share a few
    hundred (bounded: contexts come from records)."""
    return Request.make("", action, "", request_context(action, context, source_ip)).context


def account_trust_policy(resource: str, fallback_account: str) -> Policy | None:
    """The resource policy AWS needs before identity policies count, for KMS keys and roles.

    Replays assume the key policy (or role trust policy) delegates to the account's IAM policies,
    as the default key policy does:
    https://docs.aws.amazon.com/kms/latest/developerguide/key-policy-default.html#key-policy-default-allow-root-enable-iam
    """
    parts = resource.split(":", 5)
    if len(parts) != 6:
        return None
    account = parts[4] or fallback_account
    if account != fallback_account:
        return _observed_cross_access(parts[1], fallback_account)
    if not (
        (parts[2] == "kms" and parts[5].startswith("key/"))
        or (parts[2] == "iam" and parts[5].startswith("role/"))
    ):
        return None
    return _default_trust(parts[1], account, parts[2])


# One policy object per (partition, account, service): a replay of many keys or roles evaluates
# the same compiled policy (bounded: accounts come from records).
@functools.lru_cache(maxsize=1024)
def _observed_cross_access(partition: str, fallback_account: str) -> Policy:
    """A call into another account succeeded, so that account's resource policy allowed the
    caller; the replay checks the identity side, keeping the resource side as it was."""
    root = f"arn:{partition}:iam::{fallback_account}:root"
    return Policy(
        statements=(
            Statement(
                Effect.ALLOW,
                actions=("*",),
                resources=("*",),
                principals=Principals.aws(root),
                sid="ObservedCrossAccess",
            ),
        ),
        name="assumed-resource-policy",
    )


@functools.lru_cache(maxsize=1024)
def _default_trust(partition: str, account: str, service: str) -> Policy:
    """The default key policy (``kms``) or a role trust policy (``iam``) trusting *account*."""
    root = f"arn:{partition}:iam::{account}:root"
    action = "kms:*" if service == "kms" else "sts:AssumeRole*"
    return Policy(
        statements=(
            Statement(
                Effect.ALLOW,
                actions=(action,),
                resources=("*",),
                principals=Principals.aws(root),
                sid="EnableIamPolicies",
            ),
        ),
        name="assumed-default-resource-policy",
    )


@dataclass(frozen=True, slots=True)
class ReplayFailure:
    row: UsageRow
    request: Request
    evaluation: Evaluation


def replay(
    principal_arn: str,
    rows: Iterable[UsageRow],
    policies: Sequence[Policy],
    stand_in_for: Callable[[UsageRow], str | None] | None = None,
) -> tuple[int, list[ReplayFailure]]:
    """Replay *rows*; ``stand_in_for`` names a resource for a row whose records name none (a
    resource of the ARN format in the row's own region), or ``None`` to use the row's."""
    failures = []
    count = 0
    for row in rows:
        stand_in = stand_in_for(row) if stand_in_for is not None else None
        request = request_for(principal_arn, row, stand_in)
        result = evaluate(
            request,
            policies,
            resource_policy=account_trust_policy(request.resource, request.resource_account),
        )
        count += 1
        if not result.allowed:
            failures.append(ReplayFailure(row, request, result))
    return count, failures
