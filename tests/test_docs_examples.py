"""Every shell example in README.md and docs/**/*.md runs here, against the samples.

The convention (documented in docs/design.md, "Examples in the docs are tests"):

* A ```sh, ```bash or ```console block is an example. In ```console, a line starting with `$ `
  is a command (a trailing `\\` continues it) and the lines after it, up to the next `$ `, are
  its output as a terminal shows it (stdout and stderr); when there are any, they are compared
  with the real output. `…` stands for elided text: alone on a line, any number of lines;
  inside a line, any text on that line. In ```sh / ```bash every line is a command (`# ...` is
  a comment).
* Commands run in a work directory holding `samples/` (the repository's samples), `AWSLogs/`
  (= samples/AWSLogs), `reports/` (= samples/access-advisor),
  `account-authorization-details.json` (= samples/authz/...), and `usage.sqlite` / `s.sqlite`,
  a store built by `iamtrim ingest samples/AWSLogs samples/other-formats`.
* An HTML comment on the line before the block sets how it runs:
  `<!-- docs-test: no-run REASON -->` only parses its `iamtrim` commands (an example that needs
  AWS or a tool iamtrim does not ship); `<!-- docs-test: fresh -->` runs it in a work directory
  without a store (ingest examples); `<!-- docs-test: exit=N -->` expects exit code N.
  A block without `no-run` may hold only `iamtrim` commands.

Output is normalized only for what varies between runs: the work directory's path and the
duration and rate of an ingest.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import os
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import typer

from iamtrim import cli

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]

_FENCE = re.compile(r"^```(sh|bash|console)?\s*$")
_SHELL_OPERATORS = frozenset({"|", ">", ">>", "<", "&&", "||", ";", "2>"})
_DIRECTIVE = re.compile(r"^<!--\s*docs-test:\s*(.*?)\s*-->\s*$")


@dataclass(frozen=True, slots=True)
class Command:
    argv: tuple[str, ...]
    expected: str | None  # the output shown under a `$ ` line, when there is one


@dataclass(frozen=True, slots=True)
class Block:
    where: str  # file:line, the test id
    lang: str
    directive: str
    lines: tuple[str, ...]

    @property
    def no_run(self) -> bool:
        return self.directive.startswith("no-run")

    @property
    def fresh(self) -> bool:
        return "fresh" in self.directive.split()

    @property
    def exit_code(self) -> int:
        m = re.search(r"\bexit=(\d+)", self.directive)
        return int(m.group(1)) if m else 0


def _blocks(path: Path) -> Iterator[Block]:
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if m is None:
            i += 1
            continue
        start = i
        j = i + 1
        while j < len(lines) and lines[j].strip() != "```":
            j += 1
        lang = m.group(1)
        if lang is None:
            # A bare fence is a synopsis or a file's text, not an example, unless it shows a
            # `$ ` command: then it is a console block that forgot its language, and is held too.
            if not (start + 1 < j and lines[start + 1].startswith("$ ")):
                i = j + 1
                continue
            lang = "console"
        before = next((lines[k] for k in range(start - 1, -1, -1) if lines[k].strip()), "")
        d = _DIRECTIVE.match(before)
        yield Block(
            where=f"{path.relative_to(ROOT)}:{start + 1}",
            lang=lang,
            directive=d.group(1) if d else "",
            lines=tuple(lines[start + 1 : j]),
        )
        i = j + 1


ALL_BLOCKS = [b for f in DOC_FILES for b in _blocks(f)]


def _join_continuations(lines: list[str]) -> list[str]:
    out: list[str] = []
    pending = ""
    for line in lines:
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        out.append(pending + line)
        pending = ""
    if pending:
        out.append(pending)
    return out


def _commands(block: Block) -> list[Command]:
    if block.lang != "console":
        return [
            Command(tuple(shlex.split(line, comments=True)), None)
            for line in _join_continuations(list(block.lines))
            if shlex.split(line, comments=True)
        ]
    commands: list[Command] = []
    i = 0
    lines = block.lines
    while i < len(lines):
        if not lines[i].startswith("$ "):
            raise AssertionError(f"{block.where}: console line without `$ ` before any command: {lines[i]!r}")
        cmd = [lines[i][2:]]
        while cmd[-1].rstrip().endswith("\\") and i + 1 < len(lines):
            i += 1
            cmd.append(lines[i])
        i += 1
        output: list[str] = []
        while i < len(lines) and not lines[i].startswith("$ "):
            output.append(lines[i])
            i += 1
        text = "\n".join(output).strip("\n")
        argv = tuple(shlex.split(" ".join(_join_continuations(cmd)), comments=True))
        commands.append(Command(argv, text or None))
    return commands


def _link_samples(work: Path) -> None:
    work.mkdir(parents=True, exist_ok=True)
    (work / "samples").symlink_to(SAMPLES)
    (work / "AWSLogs").symlink_to(SAMPLES / "AWSLogs")
    (work / "reports").symlink_to(SAMPLES / "access-advisor")
    (work / "account-authorization-details.json").symlink_to(
        SAMPLES / "authz" / "account-authorization-details.json"
    )
    (work / "docs" / "img").mkdir(parents=True)


@dataclass(frozen=True, slots=True)
class Result:
    code: int
    output: str  # stdout and stderr, in the order written


def _run(argv: list[str], cwd: Path) -> Result:
    buf = io.StringIO()
    old = Path.cwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
            try:
                cli.main(argv)
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            else:  # pragma: no cover - main always exits
                code = 0
    finally:
        os.chdir(old)
    return Result(code, buf.getvalue())


@pytest.fixture(scope="session")
def shared_work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("docs-examples")
    _link_samples(work)
    result = _run(
        ["ingest", "samples/AWSLogs", "samples/other-formats", "--store", "usage.sqlite", "-q"], work
    )
    assert result.code == 0, result.output
    (work / "s.sqlite").symlink_to(work / "usage.sqlite")
    return work


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IAMTRIM_STORE", raising=False)
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setenv("NO_COLOR", "1")


def _normalize(text: str, work: Path) -> str:
    text = text.replace(str(work.resolve()), ".").replace(str(work), ".")
    # An ingest's duration and rate vary from run to run.
    text = re.sub(r"in \d+\.\d+s \([\d,]+/s\)", "in 0.00s (0/s)", text)
    return "\n".join(line.rstrip() for line in text.strip("\n").splitlines())


def _matches(expected: str, actual: str) -> bool:
    parts: list[str] = []
    for line in expected.splitlines():
        if line.strip() == "…":
            parts.append(r"(?:[^\n]*\n)*?")
            continue
        parts.append(".*?".join(re.escape(piece) for piece in line.rstrip().split("…")) + r"\n")
    return re.fullmatch("".join(parts), actual + "\n", flags=re.DOTALL) is not None


def _parse_only(argv: list[str]) -> None:
    """Parse `iamtrim ARGS` the way click would, down to the leaf command, without running it."""
    # typer ships its own copy of click (`typer._click`): groups are recognized by what they do.
    cmd = typer.main.get_command(cli.app)
    # As `iamtrim` itself does: several values after one repeatable option become repeated flags.
    ctx = cmd.make_context("iamtrim", cli.expand_multi_value(list(argv), cmd))
    while hasattr(cmd, "resolve_command"):
        rest = [*getattr(ctx, "_protected_args", []), *ctx.args]
        name, sub, rest = cmd.resolve_command(ctx, rest)
        assert sub is not None and name is not None
        ctx = sub.make_context(name, rest, parent=ctx)
        cmd = sub


def test_every_doc_has_been_read() -> None:
    # The harness sees the README tour and the command guides; a renamed fence would hide them.
    wheres = {b.where.split(":")[0] for b in ALL_BLOCKS}
    assert "README.md" in wheres
    assert any(w.startswith("docs/commands/") for w in wheres)


@pytest.mark.parametrize("block", ALL_BLOCKS, ids=[b.where for b in ALL_BLOCKS])
def test_doc_example(block: Block, shared_work: Path, tmp_path: Path) -> None:
    commands = _commands(block)
    assert commands, f"{block.where}: an empty example"
    if block.no_run:
        for command in commands:
            if command.argv[0] == "iamtrim":
                # Up to the first shell operator: what follows is another program's.
                argv = list(command.argv[1:])
                cut = next((i for i, a in enumerate(argv) if a in _SHELL_OPERATORS), len(argv))
                _parse_only(argv[:cut])
        return
    work = shared_work
    if block.fresh:
        work = tmp_path / "work"
        _link_samples(work)
    before = _written(work)
    for command in commands:
        argv = list(command.argv)
        assert argv[0] == "iamtrim", f"{block.where}: {argv[0]!r} is not iamtrim: mark the block no-run"
        assert not _SHELL_OPERATORS & set(argv), f"{block.where}: shell plumbing: mark the block no-run"
        result = _run(argv[1:], work)
        shown = " ".join(argv)
        assert result.code == block.exit_code, (
            f"{block.where}: `{shown}` exited {result.code}:\n{result.output}"
        )
        if command.expected is not None:
            actual = _normalize(result.output, work)
            expected = _normalize(command.expected, work)
            assert _matches(expected, actual), (
                f"{block.where}: `{shown}` printed something else.\n"
                f"--- documented\n{expected}\n--- actual\n{actual}"
            )
    # A file the example writes under docs/ (the README picture) is the one the repository holds.
    for rel, data in sorted(_written(work).items()):
        if before.get(rel) != data and (ROOT / rel).is_file():
            assert (ROOT / rel).read_bytes() == data, f"{block.where}: {rel} is not what the example writes"


def _written(work: Path) -> dict[str, bytes]:
    docs = work / "docs"
    return {str(f.relative_to(work)): f.read_bytes() for f in docs.rglob("*") if f.is_file()}


def test_parse_only_refuses_what_click_refuses() -> None:
    # A no-run example is still held: an option the CLI does not have fails the test.
    with pytest.raises(typer.TyperException, match="No such option"):
        _parse_only(["graph", "export", "--no-such-option"])
    with pytest.raises(typer.TyperException, match="No such command"):
        _parse_only(["no-such-command"])
    with pytest.raises(typer.TyperException, match="Missing parameter: principal"):
        _parse_only(["usage", "--store", "usage.sqlite"])
    _parse_only(["graph", "export", "--store", "usage.sqlite", "--format", "dot"])


def test_matcher_is_strict() -> None:
    # The elision rule must not make every comparison pass.
    assert _matches("a\n…\nz", "a\nb\nc\nz")
    assert _matches("a … z", "a b c z")
    assert not _matches("a\nb", "a\nc")
    assert not _matches("a … z", "a b\nz")


def _command_paths() -> list[tuple[str, ...]]:
    """Every command and group of the CLI, as the words that name it: (), ("graph", "render")..."""
    paths: list[tuple[str, ...]] = []

    def walk(cmd: object, path: tuple[str, ...]) -> None:
        paths.append(path)
        for name, sub in sorted(getattr(cmd, "commands", {}).items()):
            walk(sub, (*path, name))

    walk(typer.main.get_command(cli.app), ())
    return paths


COMMAND_PATHS = _command_paths()


@pytest.mark.parametrize("path", COMMAND_PATHS, ids=[" ".join(p) or "iamtrim" for p in COMMAND_PATHS])
def test_help_reads_well_at_80_columns(
    path: tuple[str, ...], shared_work: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    result = _run([*path, "--help"], shared_work)
    assert result.code == 0, result.output
    text = result.output
    # Metavars name what to give (PATH, FILE, ARN, N), never a Python type: `<bool>`, `<list[Path]>`.
    assert not re.search(r"<[^>\s]*>|\{[A-Za-z]+\}", text), text
    lines = text.splitlines()
    assert all(len(line) <= 80 for line in lines), text
    for line, after in itertools.pairwise(lines):
        # A word cut at the edge: `--break-` / `glass`, or a truncation mark.
        assert not (re.search(r"\w-$", line) and re.match(r"\s*\w", after)), f"word split:\n{line}\n{after}"
        assert "…" not in line
    if not path:
        return
    # One example per command (and group), and the example runs on the samples.
    assert "Example:" in text, text
    example = text.split("Example:", 1)[1]
    joined = _join_continuations([line.strip() for line in example.splitlines() if line.strip()])
    assert len(joined) == 1, f"one example per command: {joined}"
    argv = shlex.split(joined[0])
    assert argv[0] == "iamtrim" and argv[1 : 1 + len(path)] == list(path), argv
    run = _run(argv[1:], shared_work)
    assert run.code == 0, f"`{joined[0]}` exited {run.code}:\n{run.output}"


def test_version_is_the_package_version(shared_work: Path) -> None:
    import importlib.metadata

    result = _run(["--version"], shared_work)
    assert result.code == 0
    assert result.output == f"iamtrim {importlib.metadata.version('iamtrim')}\n"


def _synopses() -> list[tuple[str, tuple[str, ...], set[str]]]:
    """(where, command path, options named) for each `iamtrim ...` line of a synopsis block."""
    out: list[tuple[str, tuple[str, ...], set[str]]] = []
    commands = {p for p in COMMAND_PATHS if p}
    for path in DOC_FILES:
        lines = path.read_text(encoding="utf-8").splitlines()
        in_block = False
        current: tuple[str, tuple[str, ...], set[str]] | None = None
        for n, line in enumerate(lines, 1):
            if line.strip().startswith("```"):
                in_block = line.strip() == "```" and not in_block
                current = None
                continue
            if not in_block:
                continue
            words = line.split()
            if words[:1] == ["iamtrim"]:
                cmd = tuple(words[1:3]) if tuple(words[1:3]) in commands else tuple(words[1:2])
                if cmd not in commands:
                    continue
                current = (f"{path.relative_to(ROOT)}:{n}", cmd, set())
                out.append(current)
            if current is not None:
                current[2].update(re.findall(r"(?<![\w-])--[a-z][a-z-]*", line))
    return out


SYNOPSES = _synopses()


@pytest.mark.parametrize("where,path,options", SYNOPSES, ids=[s[0] for s in SYNOPSES])
def test_synopsis_names_real_options(where: str, path: tuple[str, ...], options: set[str]) -> None:
    # A synopsis is not run, but every option it names is one the command has.
    cmd = typer.main.get_command(cli.app)
    for word in path:
        cmd = cmd.commands[word]  # type: ignore[attr-defined]
    known = {o for p in cmd.params for o in (*p.opts, *p.secondary_opts)} | {"--help"}
    assert options - known == set(), f"{where}: `iamtrim {' '.join(path)}` has no {sorted(options - known)}"


def test_every_command_has_a_synopsis() -> None:
    documented = {p for _, p, _ in SYNOPSES}
    assert {p for p in COMMAND_PATHS if p and p != ("graph",)} <= documented
