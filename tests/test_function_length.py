"""No function of iamtrim reaches 100 lines (from its ``def`` line to its last line).

A long function is split at its own step comments into named steps. ``KNOWN_LONG`` may list a
function allowed past the limit while it is being split (it may only shrink).
``python tests/test_function_length.py`` lists the longest functions.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "iamtrim"
LIMIT = 100

# "module:function" → its length when listed: a function allowed past the limit while it is being
# split (none today; an entry may only shrink).
KNOWN_LONG: dict[str, int] = {}


def function_lengths(source: str) -> list[tuple[int, str, int]]:
    """(lines, name, line of its def) of every function and method in *source*, nested ones too."""
    return [
        (node.end_lineno - node.lineno + 1, node.name, node.lineno)
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno is not None
    ]


def longest(n: int | None = None) -> list[tuple[int, str]]:
    """The *n* longest functions of the package: (lines, "module:function")."""
    rows = [
        (lines, f"{path.relative_to(PKG.parent)}:{name}")
        for path in sorted(PKG.rglob("*.py"))
        for lines, name, _ in function_lengths(path.read_text())
    ]
    return sorted(rows, key=lambda r: (-r[0], r[1]))[:n]


def test_no_function_reaches_the_limit() -> None:
    too_long = [
        f"{where}: {lines} lines" for lines, where in longest() if lines >= LIMIT and where not in KNOWN_LONG
    ]
    grown = [
        f"{where}: {lines} lines (listed at {KNOWN_LONG[where]})"
        for lines, where in longest()
        if where in KNOWN_LONG and lines > KNOWN_LONG[where]
    ]
    assert not too_long and not grown, "\n".join(too_long + grown)


def test_the_measure_counts_from_def_to_the_last_line() -> None:
    source = (
        "@decorator\n"  # not counted: the function starts at its def
        "def f(\n"
        "    a: int,\n"
        ") -> int:\n"
        "    def g() -> int:\n"
        "        return 1\n"
        "\n"
        "    return a + g()\n"
        "class C:\n"
        "    async def m(self) -> None:\n"
        "        pass\n"
    )
    assert sorted(function_lengths(source)) == [(2, "g", 5), (2, "m", 10), (7, "f", 2)]


if __name__ == "__main__":
    for lines, where in longest(int(sys.argv[1]) if len(sys.argv) > 1 else 5):
        print(f"{lines:5}  {where}")
