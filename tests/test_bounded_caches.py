"""Every memo table keyed by text a record controls is bounded (issue 18: "Normalizer state has an
owner ... bounded"). Made-up event names and sources — hostile input — cannot grow a worker: each
table stays within its bound, read through a public method (``Normalizer.sizes``,
``cache_info``, ``ObjectKeyFolder.remembered``), and every answer equals an unbounded reference.
A source check fails on a new unbounded ``functools.cache`` / ``lru_cache(maxsize=None)`` taking
arguments, unless it is on the allow-list below with the reason its keys are not record text."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import pytest

from iamtrim import catalog
from iamtrim import ingest as ingest_mod
from iamtrim.model import Context
from iamtrim.normalize import actions as actions_mod
from iamtrim.normalize import apigateway as apigateway_mod
from iamtrim.normalize import record as record_mod
from iamtrim.normalize import resources as resources_mod
from iamtrim.normalize.record import Normalizer
from iamtrim.sources.records import RECORD_DECODER, Record

PKG = Path(__file__).resolve().parent.parent / "iamtrim"
ROLE = "arn:aws:iam::111122223333:role/etl"

# Each Normalizer table and the module constant that bounds it. resolver.consulted is keyed by
# (catalog action, role): the catalog bounds it, not record text.
_BOUNDS = {
    "good_times": (record_mod, "_GOOD_TIMES_LIMIT"),
    "days": (record_mod, "_DAYS_LIMIT"),
    "identities": (record_mod, "_IDENTITIES_LIMIT"),
    "identity_fields": (record_mod, "_IDENTITIES_LIMIT"),
    "ip_kinds": (record_mod, "_IP_KINDS_LIMIT"),
    "contexts": (record_mod, "_CONTEXTS_LIMIT"),
    "plans": (record_mod, "_PLANS_LIMIT"),
    "rules": (record_mod, "_RULES_LIMIT"),
    "resolver.cache": (resources_mod, "_CACHE_LIMIT"),
    "resolver.projected": (resources_mod, "_CACHE_LIMIT"),
    "resolver.ref_types": (resources_mod, "_CACHE_LIMIT"),
}
_CATALOG_KEYED = {"resolver.consulted"}


def _hostile(i: int) -> Record:
    """Record *i* of a hostile trail: made-up event names on real and made-up sources, made-up
    days, callers and addresses, between a few real calls."""
    kind = i % 5
    source, name = {
        0: ("s3.amazonaws.com", f"GetObjectMadeUp{i}"),
        1: (f"svc{i}.amazonaws.com", "GetThing"),
        2: ("apigateway.amazonaws.com", f"GetMadeUp{i}"),
        3: ("kms.amazonaws.com", f"Decrypt{i}"),
        4: ("s3.amazonaws.com", "GetObject"),
    }[kind]
    rec: dict[str, Any] = {
        "eventVersion": "1.09",
        "userIdentity": {
            "type": "AssumedRole",
            "principalId": f"AROAEXAMPLE:s{i}",
            "arn": f"arn:aws:sts::111122223333:assumed-role/etl/s{i}",
            "accountId": "111122223333",
            "sessionContext": {
                "sessionIssuer": {"type": "Role", "arn": ROLE, "accountId": "111122223333", "userName": "etl"}
            },
        },
        "eventTime": f"2026-{1 + i % 9:02d}-{1 + i % 28:02d}T00:{i // 60 % 60:02d}:{i % 60:02d}Z",
        "eventSource": source,
        "eventName": name,
        "awsRegion": "us-east-1",
        "sourceIPAddress": f"10.0.{i // 250 % 250}.{i % 250}",
        "requestParameters": {"bucketName": "data", "key": f"k/{i}"},
        "eventID": f"00000000-0000-4000-8000-{i:012d}",
        "eventType": "AwsApiCall",
        "recipientAccountId": "111122223333",
    }
    if i % 7 == 0:
        rec["errorCode"] = "NoSuchKey"
    return RECORD_DECODER.decode(json.dumps(rec))


def _answers(n: Normalizer, records: list[Record], watch: dict[str, int] | None = None) -> list[object]:
    out: list[object] = []
    for rec in records:
        out.append(n.fast_parts(rec) or n.normalize_parts(rec))
        if watch is not None:
            for table, size in n.sizes().items():
                watch[table] = max(watch.get(table, 0), size)
    return out


def test_a_worker_fed_made_up_names_keeps_every_table_within_its_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bound = 8
    records = [_hostile(i) for i in range(400)]
    reference = Normalizer()  # the real bounds are far above 400 records: unbounded here
    expected = _answers(reference, records)
    grown = reference.sizes()
    assert grown["rules"] > 300 and grown["plans"] > 250, grown  # the made-up names were held
    assert sum(isinstance(a, tuple) for a in expected) >= 80  # the real calls gave usage
    # The answers are what the pure functions give: the memo only remembers them.
    for rec in records[:50]:
        assert reference.resolve_actions(rec.eventSource, rec.eventName) == actions_mod.resolve_actions(
            rec.eventSource, rec.eventName
        )
    assert set(_BOUNDS) | _CATALOG_KEYED == set(grown)  # every table has a bound here
    for module, name in set(_BOUNDS.values()):
        monkeypatch.setattr(module, name, bound)
    most: dict[str, int] = {}
    assert _answers(Normalizer(), records, most) == expected
    over = {t: most[t] for t in _BOUNDS if most[t] > bound + (t == "contexts")}
    assert not over, over  # the contexts table is cleared once it holds more than its bound
    assert most["rules"] == bound  # reached, so the bound is what held it


def test_catalog_caches_keyed_by_record_text_stay_within_their_bounds() -> None:
    canonical = catalog.canonical_action
    limit = canonical.cache_info().maxsize
    assert limit == catalog._ACTION_CACHE_SIZE and limit >= len(catalog.all_actions())
    reference = canonical.__wrapped__  # the unbounded, uncached answer
    names = [("s3", f"GetObjectMadeUp{i}") for i in range(limit + 500)]
    names += [("s3", "getobject"), ("kms", "DECRYPT"), ("nosuchservice", "GetObject")]
    got = [canonical(p, n) for p, n in names]
    assert canonical.cache_info().currsize <= limit
    assert got[-3:] == ["s3:GetObject", "kms:Decrypt", None]
    assert got[::997] == [reference(p, n) for p, n in names[::997]]

    operations = apigateway_mod._operations
    op_limit = operations.cache_info().maxsize
    assert op_limit is not None
    made_up = [f"GetMadeUp{i}" for i in range(op_limit + 100)]
    assert all(operations(n) == () for n in made_up)
    assert operations("GetRestApis") == operations.__wrapped__("GetRestApis") != ()
    assert operations.cache_info().currsize <= op_limit
    assert catalog.api_operation.cache_info().currsize <= catalog._OPERATION_CACHE_SIZE


def test_the_object_key_fold_remembers_a_bounded_number_of_contexts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    contexts = [
        Context(region=f"r{i}", error_code="NoSuchKey" if i % 3 == 0 else "").to_key() for i in range(300)
    ]
    contexts += [f"not a context key {i}" for i in range(50)]
    arns = [f"arn:aws:s3:::data/f{i % 4}/k{i}" for i in range(len(contexts))]
    group = (ROLE, "s3:GetObject", "allowed")
    reference = ingest_mod.ObjectKeyFolder(3)
    expected = [reference.fold(group, c, a) for c, a in zip(contexts, arns, strict=True)]
    assert reference.remembered() == len(contexts)  # the real bound holds them all
    monkeypatch.setattr(ingest_mod, "_FAILED_CONTEXTS_LIMIT", 16)
    folder = ingest_mod.ObjectKeyFolder(3)
    got = []
    for c, a in zip(contexts, arns, strict=True):
        got.append(folder.fold(group, c, a))
        assert folder.remembered() <= 16
    assert got == expected
    assert [folder.failed(c) for c in contexts] == [ingest_mod.failed_context(c) for c in contexts]
    assert sum(map(folder.failed, contexts)) == 100  # every third context key failed


# --------------------------------------------------------------------------- the source check

# Unbounded caches that take arguments, and why their keys are not record text. Zero-argument
# caches (one table load each) need no entry.
ALLOWED = {
    "iamtrim/catalog.py:_template_variables": "ARN templates of the catalog",
    "iamtrim/catalog.py:access_level": "actions resolved against the catalog, or policy text",
    "iamtrim/catalog.py:resource_types": "actions resolved against the catalog, or policy text",
    "iamtrim/catalog.py:is_wildcard_only": "actions resolved against the catalog, or policy text",
    "iamtrim/catalog.py:condition_keys": "actions resolved against the catalog, or policy text",
    "iamtrim/catalog.py:_actions_of": "service prefixes of policy action patterns",
    "iamtrim/catalog.py:expand_action_pattern": "action patterns of policies",
    "iamtrim/catalog.py:_rt_matchers": "actions resolved against the catalog",
    "iamtrim/catalog.py:_s3_types": "actions resolved against the catalog",
    "iamtrim/catalog.py:_named_template_regex": "ARN templates of the catalog",
    "iamtrim/catalog.py:risk_actions": "the four risk classes (any other raises, uncached)",
    "iamtrim/normalize/resources.py:_candidates": "catalog prefix, ARN variable and action name",
    "iamtrim/normalize/resources.py:_format_string": "ARN templates of the catalog",
    "iamtrim/normalize/resources.py:_names_own_resource": "resource types of the catalog",
    "iamtrim/evidence.py:data_event_source": "catalog actions (stored usage, policies)",
    "iamtrim/evidence.py:never_logged": "catalog actions (stored usage, policies)",
    "iamtrim/review/granted.py:statement_actions": "statements of the policies reviewed",
    "iamtrim/review/granted.py:_probe_policy": "conditions of the policies reviewed",
}


def _unbounded(decorator: ast.expr) -> bool:
    """``functools.cache``, ``cache``, ``lru_cache(maxsize=None)`` or ``lru_cache(None)``."""
    if isinstance(decorator, ast.Attribute | ast.Name):
        return (decorator.attr if isinstance(decorator, ast.Attribute) else decorator.id) == "cache"
    if isinstance(decorator, ast.Call):
        func = decorator.func
        name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
        if name != "lru_cache":
            return False
        size = decorator.args[0] if decorator.args else None
        for kw in decorator.keywords:
            if kw.arg == "maxsize":
                size = kw.value
        return isinstance(size, ast.Constant) and size.value is None
    return False


def unbounded_caches(source: str, path: str) -> list[str]:
    """``path:qualified name`` of each function in *source* under an unbounded cache that takes
    an argument (``self`` and ``cls`` do not count)."""
    out: list[str] = []

    def visit(node: ast.AST, scope: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                qual = f"{scope}{child.name}"
                a = child.args
                params = [p.arg for p in (*a.posonlyargs, *a.args, *a.kwonlyargs)]
                params += [p.arg for p in (a.vararg, a.kwarg) if p is not None]
                if params and isinstance(node, ast.ClassDef) and params[0] in ("self", "cls"):
                    params = params[1:]
                if params and any(_unbounded(d) for d in child.decorator_list):
                    out.append(f"{path}:{qual}")
                visit(child, f"{qual}.")
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{scope}{child.name}.")
            else:
                visit(child, scope)

    visit(ast.parse(source), "")
    return out


def test_no_new_unbounded_cache_on_record_text() -> None:
    found = []
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG.parent).as_posix()
        found += unbounded_caches(path.read_text(), rel)
    new = sorted(set(found) - set(ALLOWED))
    assert not new, f"unbounded caches taking arguments, not on the allow-list: {new}"
    stale = sorted(set(ALLOWED) - set(found))
    assert not stale, f"allow-list entries with no such unbounded cache: {stale}"


def test_the_source_check_flags_every_unbounded_form() -> None:
    source = """
import functools
from functools import cache, lru_cache

@functools.cache
def a(name): ...
@cache
def b(name): ...
@functools.lru_cache(maxsize=None)
def c(name): ...
@lru_cache(None)
def d(name): ...
@functools.lru_cache(maxsize=1024)
def bounded(name): ...
@functools.lru_cache
def default_bound(name): ...
@functools.cache
def no_argument(): ...
class K:
    @functools.cache
    def method(self, name): ...
    @functools.cache
    def only_self(self): ...
"""
    assert unbounded_caches(source, "m.py") == ["m.py:a", "m.py:b", "m.py:c", "m.py:d", "m.py:K.method"]


# Where per-run state belongs on an instance (a Normalizer, its Resolver, an ObjectKeyFolder),
# never in a module-level table that every run of the process shares and grows.
STATEFUL = ("iamtrim/normalize/", "iamtrim/catalog.py", "iamtrim/ingest.py")


def module_tables(source: str, path: str) -> list[str]:
    """``path:name`` of each module-level name bound to an empty dict, set, list or
    ``collections`` container (a memo table in the making)."""

    def empty(value: ast.expr | None) -> bool:
        if isinstance(value, ast.Dict | ast.Set | ast.List):
            return not getattr(value, "keys", getattr(value, "elts", None))
        if isinstance(value, ast.Call) and not value.args and not value.keywords:
            f = value.func
            name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
            return name in ("dict", "set", "list", "defaultdict", "OrderedDict", "Counter", "deque")
        return False

    out = []
    for node in ast.parse(source).body:
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign) and empty(node.value):
            targets = node.targets
        elif isinstance(node, ast.AnnAssign) and empty(node.value):
            targets = [node.target]
        out += [f"{path}:{t.id}" for t in targets if isinstance(t, ast.Name)]
    return out


def test_no_module_level_table_in_the_stateful_stages() -> None:
    found = []
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG.parent).as_posix()
        if rel.startswith(STATEFUL):
            found += module_tables(path.read_text(), rel)
    assert not found, f"module-level tables (put them on the instance that owns the run): {found}"


def test_the_table_check_flags_empty_containers_only() -> None:
    source = """
import collections
A: dict[str, bool] = {}
B = set()
C = collections.defaultdict()
D = []
TABLE = {"x": 1}
NAMES = frozenset()
def f():
    local = {}
"""
    assert module_tables(source, "m.py") == ["m.py:A", "m.py:B", "m.py:C", "m.py:D"]
