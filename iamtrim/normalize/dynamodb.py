"""DynamoDB calls whose IAM actions depend on the request: transactions and PartiQL.

* ``TransactWriteItems`` needs, per item, ``dynamodb:PutItem`` / ``UpdateItem`` / ``DeleteItem`` /
  ``ConditionCheckItem`` on that item's table
  (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/transaction-apis-iam.html).
* ``ExecuteStatement``, ``BatchExecuteStatement`` and ``ExecuteTransaction`` need
  ``dynamodb:PartiQLSelect`` / ``PartiQLInsert`` / ``PartiQLUpdate`` / ``PartiQLDelete`` on the
  statement's table, by the statement's verb
  (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/ql-iam.html).
When the record does not carry the items or statements, the call stays an unknown action.
"""

from __future__ import annotations

import re
from typing import Any

from iamtrim.model import escape_literal

_TRANSACT = {
    "put": "dynamodb:PutItem",
    "update": "dynamodb:UpdateItem",
    "delete": "dynamodb:DeleteItem",
    "conditioncheck": "dynamodb:ConditionCheckItem",
}
_PARTIQL = {
    "select": "dynamodb:PartiQLSelect",
    "insert": "dynamodb:PartiQLInsert",
    "update": "dynamodb:PartiQLUpdate",
    "delete": "dynamodb:PartiQLDelete",
}
# SELECT … FROM "t"[."index"] | INSERT INTO "t" | UPDATE "t" | DELETE FROM "t"
_STATEMENT = re.compile(
    r"""^\s*(?P<verb>select|insert|update|delete)\b.*?(?:\bfrom\b|\binto\b|(?<=update))\s*"""
    r"""(?:"(?P<quoted>[^"]+)"|(?P<bare>[A-Za-z0-9_.-]+))""",
    re.IGNORECASE | re.DOTALL,
)
EVENTS = frozenset({"TransactWriteItems", "ExecuteStatement", "BatchExecuteStatement", "ExecuteTransaction"})


def _table_arn(name: str, partition: str, region: str, account: str) -> str:
    # A literal *, ? or $ from the request is escaped (model.escape_literal), never a wildcard.
    if name.startswith("arn:"):
        return escape_literal(name)
    return escape_literal(f"arn:{partition}:dynamodb:{region}:{account}:table/{name}")


def _statements(params: dict[str, Any]) -> list[str]:
    out: list[str] = []
    if isinstance(params.get("statement"), str):
        out.append(params["statement"])
    for key in ("statements", "transactStatements"):
        items = params.get(key)
        if isinstance(items, list):
            out.extend(
                i["statement"] for i in items if isinstance(i, dict) and isinstance(i.get("statement"), str)
            )
    return out


def request_uses(
    event_name: str, params: Any, partition: str, region: str, account: str
) -> list[tuple[str, str]]:
    """(action, table ARN) pairs the call needed; empty when the record does not say."""
    if not isinstance(params, dict):
        return []
    uses: list[tuple[str, str]] = []
    if event_name == "TransactWriteItems":
        for item in params.get("transactItems") or ():
            if not isinstance(item, dict):
                continue
            for kind, body in item.items():
                action = _TRANSACT.get(kind.lower())
                table = body.get("tableName") if isinstance(body, dict) else None
                if action and isinstance(table, str) and table:
                    uses.append((action, _table_arn(table, partition, region, account)))
    else:
        for statement in _statements(params):
            m = _STATEMENT.match(statement)
            if m:
                table = (m.group("quoted") or m.group("bare") or "").split('"."')[0]
                if table:
                    uses.append(
                        (_PARTIQL[m.group("verb").lower()], _table_arn(table, partition, region, account))
                    )
    return list(dict.fromkeys(uses))
