"""API Gateway's management calls: the IAM action is the call's HTTP method, the resource its path.

API Gateway does not authorize its management API per operation: a call is allowed by
``apigateway:<HTTP method>`` on the path it requests, as an ARN with no account
(``GetResource`` is ``apigateway:GET`` on
``arn:aws:apigateway:us-east-1::/restapis/<restApiId>/resources/<resourceId>``).
https://docs.aws.amazon.com/apigateway/latest/developerguide/api-gateway-control-access-using-iam-policies-to-create-and-manage-api.html
https://docs.aws.amazon.com/apigateway/latest/developerguide/arn-format-reference.html

Both API generations log to ``apigateway.amazonaws.com`` under their operation names: REST APIs
(``apigateway``, paths ``/restapis/...``) and HTTP and WebSocket APIs (``apigatewayv2``, paths
``/v2/apis/...``, whose ARNs drop the ``/v2``). Each operation's method and path come from
botocore's service models, the API definitions the SDKs are generated from; the path's variables
are filled from ``requestParameters``, which CloudTrail logs under the operation's member names
(``restApiId``, ``resourceId``).
"""

from __future__ import annotations

import dataclasses
import functools
import re
from typing import Any

from iamtrim import catalog

VERB_ACTIONS = catalog.APIGATEWAY_VERB_ACTIONS
_MODELS = ("apigateway", "apigatewayv2")  # REST APIs first: their names are the older ones
_VARIABLE = re.compile(r"\{([^}]+?)\+?\}")


@functools.lru_cache(maxsize=1024)  # keyed by eventName: bounded (a few hundred are real)
def _operations(name: str) -> tuple[catalog.ApiOperation, ...]:
    """The operation called *name* in each API generation that has one, its path as IAM sees it
    (the HTTP APIs' ``/v2`` dropped)."""
    out = []
    for service in _MODELS:
        op = catalog.api_operation(service, name)
        if op is None or f"apigateway:{op.method}" not in VERB_ACTIONS or not op.path.startswith("/"):
            continue
        out.append(
            dataclasses.replace(op, path=op.path.removeprefix("/v2")) if op.path.startswith("/v2/") else op
        )
    return tuple(out)


def actions(event_name: str) -> tuple[str, ...]:
    """``apigateway:<method>`` for the operation, one per method it has across the two API
    generations (only ``TagResource`` differs: PUT for REST APIs, POST for HTTP APIs, and the
    event name alone does not say which API was tagged); ``()`` if no operation is so named."""
    seen: list[str] = []
    for op in _operations(event_name):
        action = f"apigateway:{op.method}"
        if action not in seen:
            seen.append(action)
    return tuple(seen)


def resource_arn(action: str, event_name: str, params: Any, partition: str, region: str) -> str | None:
    """The ARN of the path *event_name* requests with *action*'s method, its variables filled
    from the request; ``None`` when the request lacks one of them.

    When both API generations have the operation with this method, the one whose path variables
    the request names is taken (``restApiId`` or ``apiId``); paths without variables
    (``/domainnames``, ``/vpclinks``) are the same in both.
    """
    method = action.partition(":")[2]
    # REST API records name members as the SDK does (restApiId for the path's {restapi_id}), HTTP
    # API records as the path does (apiId; the SDK member is ApiId): matched case-insensitively.
    request = {str(k).lower(): v for k, v in params.items()} if isinstance(params, dict) else {}
    for op in _operations(event_name):
        if op.method != method:
            continue
        members = dict(op.path_members)
        values: dict[str, str] = {}
        for variable in _VARIABLE.findall(op.path):
            value = request.get(members.get(variable, variable).lower())
            if value is None:
                value = request.get(variable.lower())
            if not isinstance(value, str) or not value:
                break
            values[variable] = value
        else:
            return f"arn:{partition}:apigateway:{region}::{_fill(op.path, values)}"
    return None


def _fill(path: str, values: dict[str, str]) -> str:
    return _VARIABLE.sub(lambda m: values[m.group(1)], path)
