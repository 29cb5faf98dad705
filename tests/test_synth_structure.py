"""The shape of ``iamtrim/synth/``: functions split at their steps, no import cycle between its
modules, and what the bucket and key policies share in a module of its own."""

from __future__ import annotations

import ast
from pathlib import Path

SYNTH = Path(__file__).resolve().parent.parent / "iamtrim" / "synth"
MAX_FUNCTION_LINES = 100


def _tree(name: str) -> ast.Module:
    return ast.parse((SYNTH / f"{name}.py").read_text())


def _synth_imports(name: str) -> set[str]:
    """The synth modules *name* imports, anywhere in the file (function bodies and
    ``TYPE_CHECKING`` blocks included: a cycle hidden there is still a cycle)."""
    out: set[str] = set()
    for node in ast.walk(_tree(name)):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("iamtrim.synth."):
            out.add(node.module.split(".")[2])
        elif isinstance(node, ast.ImportFrom) and node.module == "iamtrim.synth":
            out.update(a.name for a in node.names if (SYNTH / f"{a.name}.py").exists())
        elif isinstance(node, ast.Import):
            out.update(a.name.split(".")[2] for a in node.names if a.name.startswith("iamtrim.synth."))
    return out - {name}


def test_no_function_in_synth_is_100_lines_or_more() -> None:
    long = []
    for path in sorted(SYNTH.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines >= MAX_FUNCTION_LINES:
                    long.append(f"{path.name}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, long


def test_synth_modules_import_each_other_without_a_cycle() -> None:
    modules = [p.stem for p in SYNTH.glob("*.py") if p.stem != "__init__"]
    graph = {m: _synth_imports(m) for m in modules}
    assert graph["kms"] and graph["bucket"], "the scan found no import: the scanner is broken"

    def cycle_from(start: str) -> list[str] | None:
        stack = [(start, [start])]
        while stack:
            node, path = stack.pop()
            for nxt in sorted(graph.get(node, ())):
                if nxt == start:
                    return [*path, start]
                if nxt not in path:
                    stack.append((nxt, [*path, nxt]))
        return None

    cycles = [c for m in sorted(modules) if (c := cycle_from(m))]
    assert not cycles, cycles


def test_bucket_and_key_policies_share_one_helper_module() -> None:
    """Neither resource-policy generator imports the other; both use resource_policy.py."""
    assert "kms" not in _synth_imports("bucket")
    assert "bucket" not in _synth_imports("kms")
    assert "resource_policy" in _synth_imports("bucket")
    assert "resource_policy" in _synth_imports("kms")
    # One definition of each shared helper.
    for name in ("allow_all", "principal_arn_forms", "session_arn", "call_evidence", "account_of"):
        homes = [
            p.name
            for p in SYNTH.glob("*.py")
            for node in ast.parse(p.read_text()).body
            if isinstance(node, ast.FunctionDef) and node.name.lstrip("_") == name
        ]
        assert homes == ["resource_policy.py"], (name, homes)


def test_the_command_page_lists_every_statement_kind_and_guard() -> None:
    """docs/commands/bucket-policy.md's tables name each StrEnum value (the JSON "kind" and
    "guard" fields), and nothing else."""
    import re

    from iamtrim.synth.bucket import BucketStatementKind, Guard
    from iamtrim.synth.kms import KeyStatementKind

    page = (SYNTH.parent.parent / "docs" / "commands" / "bucket-policy.md").read_text()
    bucket_part, _, key_part = page.partition("## `kms-policy`")
    kind_column = re.compile(r"^\| `[^|]+` \| `([a-z-]+)` \|", re.MULTILINE)
    assert set(kind_column.findall(bucket_part)) == {k.value for k in BucketStatementKind}
    assert set(kind_column.findall(key_part)) == {k.value for k in KeyStatementKind}
    guards = re.search(r'"guard": "([a-z|-]+)"', page)
    assert guards is not None and set(guards.group(1).split("|")) == {g.value for g in Guard}


def test_synth_reads_no_store_and_no_later_stage() -> None:
    """synth builds policies from values: it imports the model, the errors, the key sketch (a
    fold's distinct-key count, read from a row's bytes), the catalog, the evaluator and the
    replay, never the store, the evidence loader, sources, review, render or the CLI (Access
    Advisor evidence reaches it through a protocol, ``AdvisorEvidence``)."""
    allowed = (
        "iamtrim.model",
        "iamtrim.errors",
        "iamtrim.keysketch",
        "iamtrim.catalog",
        "iamtrim.evaluate",
        "iamtrim.verify",
    )
    wrong = []
    for path in sorted(SYNTH.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = (
                    [node.module] if node.module != "iamtrim" else [f"iamtrim.{a.name}" for a in node.names]
                )
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for name in names:
                if name.startswith("iamtrim.") and not name.startswith((*allowed, "iamtrim.synth")):
                    wrong.append(f"{path.name}:{node.lineno} {name}")
    assert not wrong, wrong
