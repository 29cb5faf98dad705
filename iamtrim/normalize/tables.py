"""The reviewable mapping tables in ``normalize/data/``: one row per rule, each with its AWS source.

Loaded on first use (never at import time) and cached. A test checks every row: the prefix and
every action exist in the catalog, and each row names an https source.
"""

from __future__ import annotations

import csv
import functools
from dataclasses import dataclass
from importlib import resources as importlib_resources


@dataclass(frozen=True, slots=True)
class ActionRule:
    """eventName → IAM action(s). ``role`` says which resource of the call an action applies to."""

    action: str
    role: str  # "" (the call's resource), "source", "destination"


@dataclass(frozen=True, slots=True)
class ParamRule:
    request_parameter: str
    transform: str


def _rows(name: str) -> list[dict[str, str]]:
    text = importlib_resources.files("iamtrim.normalize").joinpath("data", name).read_text("utf-8")
    return list(csv.DictReader(line for line in text.splitlines() if line.strip()))


@functools.cache
def event_source_prefixes() -> dict[str, str]:
    return {row["event_source"]: row["iam_prefix"] for row in _rows("event_sources.csv")}


@functools.cache
def event_action_rules() -> dict[tuple[str, str], tuple[ActionRule, ...]]:
    out: dict[tuple[str, str], tuple[ActionRule, ...]] = {}
    for row in _rows("event_actions.csv"):
        rules = []
        for item in row["actions"].split(";"):
            action, _, role = item.partition("@")
            rules.append(ActionRule(action.strip(), role.strip()))
        out[(row["iam_prefix"], row["event_name"])] = tuple(rules)
    return out


@functools.cache
def permissionless() -> frozenset[tuple[str, str]]:
    return frozenset((row["iam_prefix"], row["event_name"]) for row in _rows("permissionless.csv"))


@functools.cache
def param_rules() -> dict[tuple[str, str], tuple[ParamRule, ...]]:
    out: dict[tuple[str, str], list[ParamRule]] = {}
    for row in _rows("resource_params.csv"):
        key = (row["iam_prefix"], row["variable"])
        out.setdefault(key, []).append(ParamRule(row["request_parameter"], row["transform"]))
    return {k: tuple(v) for k, v in out.items()}


@functools.cache
def param_paths() -> dict[str, tuple[tuple[str, tuple[str, ...]], ...]]:
    """Table rows whose request parameter is a dotted path into nested request members
    (``blockDeviceMapping.ebs.snapshotId``), by their first member, lower-cased: (the path as the
    index key, its members)."""
    out: dict[str, list[tuple[str, tuple[str, ...]]]] = {}
    for row in _rows("resource_params.csv"):
        path = row["request_parameter"].lower()
        if "." in path:
            members = tuple(path.split("."))
            entry = (path, members)
            if entry not in out.setdefault(members[0], []):
                out[members[0]].append(entry)
    return {k: tuple(v) for k, v in out.items()}


@functools.cache
def caller_resource_actions() -> frozenset[str]:
    """IAM actions whose user resource is the caller when ``userName`` is absent."""
    return frozenset(row["action"] for row in _rows("caller_resources.csv"))


@functools.cache
def id_prefixes() -> dict[tuple[str, str], str]:
    """(ARN service, resource type) → the id prefix of that resource type (``i-``, ``sg-``)."""
    return {(row["service"], row["resource_type"]): row["id_prefix"] for row in _rows("id_prefixes.csv")}


@functools.cache
def encryption_context_services() -> tuple[tuple[str, str], ...]:
    """(encryption-context key, the service principal that writes it), in table order: a service
    that stores on another's volumes names both (RDS writes ``aws:rds:db-id`` and ``aws:ebs:id``),
    and the first row that matches is the one that made the call."""
    return tuple(
        (row["context_key"], row["service_principal"]) for row in _rows("encryption_context_services.csv")
    )


@functools.cache
def typed_resources() -> dict[tuple[str, str], dict[str, str]]:
    """(IAM prefix, lower-cased request parameter) → {value of that parameter → resource type}:
    a request that says which type of resource its id names (SSM's ``resourceType``)."""
    out: dict[tuple[str, str], dict[str, str]] = {}
    for row in _rows("typed_resources.csv"):
        key = (row["iam_prefix"], row["type_parameter"].lower())
        out.setdefault(key, {})[row["type_value"]] = row["resource_type"]
    return out


@functools.cache
def lowercase_names() -> frozenset[tuple[str, str]]:
    """(ARN service, resource type) whose names the service stores, and puts in ARNs, in lower case."""
    return frozenset((row["service"], row["resource_type"]) for row in _rows("lowercase_names.csv"))


TABLES = (
    "event_sources.csv",
    "event_actions.csv",
    "permissionless.csv",
    "resource_params.csv",
    "caller_resources.csv",
    "id_prefixes.csv",
    "singleton_resources.csv",
    "encryption_context_services.csv",
    "typed_resources.csv",
    "lowercase_names.csv",
)


@functools.cache
def singleton_resources() -> frozenset[tuple[str, str]]:
    """Resource types without a name of their own that a call always involves (Glue's catalog)."""
    return frozenset((row["iam_prefix"], row["resource_type"]) for row in _rows("singleton_resources.csv"))


def all_table_rows() -> dict[str, list[dict[str, str]]]:
    """Every row of every table, for the table-validation test and the docs."""
    return {name: _rows(name) for name in TABLES}
