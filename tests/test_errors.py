"""One exception tree, true to its drawing (httpx's ``_exceptions.py``): every exception class
iamtrim defines lives in ``iamtrim/errors.py`` (or is private to its module), the docstring of
``errors.py`` draws every one of them, and only the CLI's single handler exits."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import iamtrim.errors as errors

PKG = Path(__file__).resolve().parent.parent / "iamtrim"


def _exception_classes(tree: ast.Module) -> list[ast.ClassDef]:
    """Classes whose bases name an exception (anything ending in Error/Exception/Warning, or a
    class of iamtrim's tree), found syntactically so a class hidden in any module is seen."""
    tree_names = {name for name, obj in vars(errors).items() if isinstance(obj, type)}
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.ClassDef):
            continue
        for base in node.bases:
            name = ast.unparse(base).rsplit(".", 1)[-1]
            if name in tree_names or re.search(r"(Error|Exception|Warning|Exit|Interrupt)$", name):
                found.append(node)
                break
    return found


def test_every_exception_class_lives_in_errors_py_or_is_private() -> None:
    stray = []
    for path in sorted(PKG.rglob("*.py")):
        rel = str(path.relative_to(PKG.parent))
        if rel == "iamtrim/errors.py":
            continue
        for cls in _exception_classes(ast.parse(path.read_text())):
            if not cls.name.startswith("_"):
                stray.append(f"{rel}:{cls.lineno} {cls.name}")
    assert not stray, f"exception classes outside iamtrim/errors.py: {stray}"


def test_private_exceptions_are_named_in_the_docstring() -> None:
    """A private control-flow exception may stay in its module, but the drawing says where."""
    doc = errors.__doc__ or ""
    private = []
    for path in sorted(PKG.rglob("*.py")):
        for cls in _exception_classes(ast.parse(path.read_text())):
            if cls.name.startswith("_"):
                private.append(cls.name)
    assert private, "the scan found no private exception: the scanner is broken"
    missing = [name for name in private if name not in doc]
    assert not missing, missing


def test_the_docstring_draws_every_class_under_its_parent() -> None:
    doc = errors.__doc__ or ""
    classes = {
        name: obj
        for name, obj in vars(errors).items()
        if isinstance(obj, type) and issubclass(obj, BaseException) and obj.__module__ == errors.__name__
    }
    assert len(classes) >= 10
    # Each drawn line: tree glyphs, then the class name; its depth is the column of the name.
    drawn: dict[str, int] = {}
    order: list[str] = []
    for line in doc.splitlines():
        m = re.match(r"^(\s*(?:[│ ]*[├└]── )?)([A-Z]\w*)\b", line)
        if m and m.group(2) in classes:
            drawn[m.group(2)] = len(m.group(1))
            order.append(m.group(2))
    missing = sorted(set(classes) - set(drawn))
    assert not missing, f"classes not drawn in errors.py's docstring: {missing}"
    # The drawing is true: each class sits under the nearest shallower line before it, and that
    # line is its base class.
    for i, name in enumerate(order):
        depth = drawn[name]
        parent = next((order[j] for j in range(i - 1, -1, -1) if drawn[order[j]] < depth), None)
        if parent is None:
            assert classes[name].__bases__ == (Exception,), name
        else:
            assert classes[name].__bases__ == (classes[parent],), f"{name} drawn under {parent}"


def test_every_class_has_an_exit_code_the_handler_uses() -> None:
    for name, obj in vars(errors).items():
        if isinstance(obj, type) and issubclass(obj, errors.IamtrimError):
            assert obj.exit_code in (1, 2, 3, 4), name


def test_cli_exits_only_in_its_handler() -> None:
    """No command calls ``sys.exit``: they raise into the tree and ``main`` maps the exit code."""
    tree = ast.parse((PKG / "cli.py").read_text())
    main = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "main")
    inside = {id(n) for n in ast.walk(main)}
    outside = [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "exit"
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "sys"
        and id(node) not in inside
    ]
    assert not outside, f"sys.exit( outside cli.main at lines {outside}"
    # ... and the handler is really there: it maps the tree's exit codes.
    assert any(isinstance(n, ast.Attribute) and n.attr == "exit_code" for n in ast.walk(main))


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["ingest", "--store", "{tmp}/s.sqlite"], 2, "give CloudTrail PATHS"),
        (
            ["ingest", "{tmp}/a.json", "--all-regions", "--store", "{tmp}/s.sqlite"],
            2,
            "goes with --lookup-events",
        ),
        (
            ["ingest", "--lookup-events", "--since", "yesterday", "--store", "{tmp}/s.sqlite"],
            2,
            "--since 'yesterday': expected YYYY-MM-DD",
        ),
        (["who-used", "acme-ml", "--events", "{tmp}/a.json"], 2, "is not an ARN or ARN pattern"),
        (
            ["graph", "export", "--resource", "arn:aws:s3:::nothing-*", "--events", "{tmp}/a.json"],
            2,
            "no usage matches resource arn:aws:s3:::nothing-*",
        ),
        (
            ["graph", "render", "--events", "{tmp}/a.json", "--out", "{tmp}/g.txt"],
            2,
            "written as .svg or .png",
        ),
        (["ingest", "{tmp}/bad.json", "--store", "{tmp}/s.sqlite"], 4, "bad.json"),
    ],
)
def test_commands_raise_into_the_tree_and_main_maps_the_exit_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], code: int, message: str
) -> None:
    """What each command used to `sys.exit(2)` on: still one line on stderr and the same code."""
    from iamtrim.cli import main
    from tests.test_ingest import s3_get, write_trail

    write_trail(tmp_path / "a.json", [s3_get(1, "k")])
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(SystemExit) as info:
        main([a.replace("{tmp}", str(tmp_path)) for a in args])
    err = capsys.readouterr().err
    assert info.value.code == code, err
    assert message in err
    assert err.count("\n") == 1 and err.startswith("iamtrim: "), err
    assert "Traceback" not in err
