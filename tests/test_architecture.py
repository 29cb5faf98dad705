"""Imports flow one way (cli → stages → model) and each heavy dependency has one home."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "iamtrim"

# Third-party packages and the only modules allowed to import them (DESIGN.md "Layout").
HOMES = {
    "policy_sentry": {"iamtrim/catalog.py"},
    "networkx": {"iamtrim/graph.py"},
    "typer": {"iamtrim/cli.py"},
    "rich": {"iamtrim/cli.py"},
    "click": {"iamtrim/cli.py"},
    # boto3 sessions and clients are made in aws.py; sources/ (where records come from) may use
    # boto3 and botocore types directly (paginators, streaming bodies, Stubber-tested readers).
    "boto3": {"iamtrim/aws.py", "iamtrim/sources/"},
    # catalog.py reads botocore's service models (API definitions: methods and paths), never
    # a client: API knowledge lives beside the IAM reference.
    "botocore": {"iamtrim/aws.py", "iamtrim/catalog.py", "iamtrim/sources/"},
    # The engines of organization scale (docs/scale.md): SQL generation and Spark, one home each.
    "sqlglot": {"iamtrim/engines/sql.py"},
    "pyspark": {"iamtrim/engines/spark.py"},
    "duckdb": set(),  # tests only
}


def _at_home(module: str, homes: set[str]) -> bool:
    return any(module == h or (h.endswith("/") and module.startswith(h)) for h in homes)


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _modules() -> dict[str, set[str]]:
    root = PKG.parent
    return {str(p.relative_to(root)): _imports(p) for p in PKG.rglob("*.py")}


def test_heavy_dependencies_have_one_home() -> None:
    wrong = []
    for module, imports in _modules().items():
        for name in imports:
            top = name.split(".")[0]
            if top in HOMES and not _at_home(module, HOMES[top]):
                wrong.append(f"{module} imports {name}")
    assert not wrong, wrong


def test_boto3_only_at_home() -> None:
    """The rule holds for the modules that use AWS today (a sanity check of _at_home)."""
    assert _at_home("iamtrim/aws.py", HOMES["boto3"])
    assert _at_home("iamtrim/sources/aws_policies.py", HOMES["boto3"])
    assert not _at_home("iamtrim/review/current.py", HOMES["boto3"])
    assert not _at_home("iamtrim/cli.py", HOMES["botocore"])


def test_model_imports_nothing_but_model_and_errors() -> None:
    wrong = [
        f"{m} imports {n}"
        for m, imports in _modules().items()
        if m.startswith("iamtrim/model/")
        for n in imports
        if n.startswith("iamtrim") and not n.startswith(("iamtrim.model", "iamtrim.errors"))
    ]
    assert not wrong, wrong


def test_nothing_imports_the_cli() -> None:
    wrong = [
        f"{m} imports {n}"
        for m, imports in _modules().items()
        if m not in ("iamtrim/cli.py", "iamtrim/__main__.py")
        for n in imports
        if n == "iamtrim.cli"
    ]
    assert not wrong, wrong


def test_only_the_cli_prints_or_exits() -> None:
    offenders = []
    for path in PKG.rglob("*.py"):
        rel = str(path.relative_to(PKG.parent))
        if rel in ("iamtrim/cli.py", "iamtrim/__main__.py"):
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in ("print", "exit")
            ):
                offenders.append(f"{rel}:{node.lineno} {node.func.id}()")
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "exit"
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "sys"
            ):
                offenders.append(f"{rel}:{node.lineno} sys.exit()")
    assert not offenders, offenders
