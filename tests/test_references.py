"""A comment, docstring or document that names a Markdown file names one in the repository.

References are ``*.md`` names, optionally with a ``#section`` anchor, in the comments and string
literals of every Python file and in the prose and links of every Markdown file (code blocks and
inline code are examples, not references). A name with a folder is read from the repository root
or from the referring file's folder; a bare name may be any file of that name in the repository.
An anchor must be a heading of that file, spelled as GitHub spells its anchors. Documents outside
the repository are listed in ``EXTERNAL`` with where they live.
"""

from __future__ import annotations

import io
import re
import tokenize
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOPS = ("iamtrim", "tests", "bench", "samples", "docs", ".ci")

# Named by the code but not part of the repository: name → where it is.
EXTERNAL = {
    "MAP-README.md": "$IAMTRIM_CORPUS/iam-dataset-map/ (the corpus; read by tests, never copied)",
}

REF = re.compile(r"(?<![\w./-])((?:[\w.-]+/)*[\w.-]*\w\.md)(#[\w-]+)?(?![\w])")
LINK = re.compile(r"\]\(([^)\s#]*)(#[^)\s]+)?\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
INLINE = re.compile(r"`[^`\n]*`")


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces become hyphens."""
    text = re.sub(r"`|\*|_(?=\W)|(?<=\W)_", "", heading.strip().lower())
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = FENCE.sub("", path.read_text())
    seen: dict[str, int] = {}
    out = set()
    for line in text.splitlines():
        m = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            base = slug(m.group(1))
            n = seen.get(base, 0)
            seen[base] = n + 1
            out.add(base if n == 0 else f"{base}-{n}")
    return out


def _files(suffix: str) -> list[Path]:
    found = [p for top in TOPS for p in (ROOT / top).rglob(f"*{suffix}")]
    found += [p for p in ROOT.glob(f"*{suffix}")]
    return sorted(p for p in found if ".venv" not in p.parts)


MD_BY_NAME: dict[str, list[Path]] = {}
for _p in _files(".md"):
    MD_BY_NAME.setdefault(_p.name, []).append(_p)


def resolve(name: str, referrer: Path) -> Path | None:
    """The repository file *name* refers to from *referrer*, or None."""
    for base in (ROOT, referrer.parent):
        candidate = (base / name).resolve()
        if candidate.is_file() and ROOT in candidate.parents:
            return candidate
    if "/" not in name and len(MD_BY_NAME.get(name, [])) >= 1:
        return MD_BY_NAME[name][0]
    return None


def problem(name: str, anchor: str | None, referrer: Path) -> str | None:
    if not name:  # a link to a section of the same document
        target: Path | None = referrer
    elif Path(name).name in EXTERNAL and "/" not in name:
        return None
    else:
        target = resolve(name, referrer)
    if target is None:
        return f"{name}: no such file in the repository"
    if anchor and anchor[1:] not in anchors(target):
        return f"{name}{anchor}: no such heading in {target.relative_to(ROOT)}"
    return None


def python_references(path: Path) -> Iterator[tuple[int, str, str | None]]:
    """(line, name, anchor) of the references in the comments and strings of a Python file."""
    for tok in tokenize.generate_tokens(io.StringIO(path.read_text()).readline):
        if tok.type in (tokenize.COMMENT, tokenize.STRING) or tok.type == getattr(
            tokenize, "FSTRING_MIDDLE", -1
        ):
            for m in REF.finditer(tok.string):
                yield tok.start[0] + tok.string.count("\n", 0, m.start()), m.group(1), m.group(2)


def markdown_references(path: Path) -> Iterator[tuple[int, str, str | None]]:
    """(line, name, anchor) of the links and prose references of a Markdown file."""
    text = FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), path.read_text())
    for lineno, line in enumerate(text.splitlines(), start=1):
        prose = INLINE.sub("", line)
        for m in LINK.finditer(prose):
            target, anchor = m.group(1), m.group(2)
            if re.match(r"[a-z]+:", target) or not (target.endswith(".md") or (not target and anchor)):
                continue  # a URL, or a link to something other than a document
            yield lineno, target, anchor
        for m in REF.finditer(LINK.sub("", prose)):
            yield lineno, m.group(1), m.group(2)


def test_every_named_document_and_section_exists() -> None:
    wrong = []
    for path in _files(".py"):
        if path == Path(__file__).resolve():
            continue  # the checker's own tests name missing documents on purpose
        for line, name, anchor in python_references(path):
            why = problem(name, anchor, path)
            if why:
                wrong.append(f"{path.relative_to(ROOT)}:{line}: {why}")
    for path in _files(".md"):
        for line, name, anchor in markdown_references(path):
            why = problem(name, anchor, path)
            if why:
                wrong.append(f"{path.relative_to(ROOT)}:{line}: {why}")
    assert not wrong, "\n".join(wrong)


def test_the_checker_finds_a_missing_file_and_a_missing_section(tmp_path: Path) -> None:
    here = ROOT / "iamtrim" / "ingest.py"
    assert problem("DESIGN.md", None, here) == "DESIGN.md: no such file in the repository"
    assert problem("docs/design.md", "#numbers", here) is None
    assert problem("docs/design.md", "#numbers-that-matter", here) == (
        "docs/design.md#numbers-that-matter: no such heading in docs/design.md"
    )
    assert problem("store.md", None, here) is None  # a bare name: docs/store.md
    assert problem("MAP-README.md", None, here) is None  # listed in EXTERNAL
    source = tmp_path / "x.py"
    source.write_text('# see DESIGN.md "Layout"\nX = "docs/design.md#layers"  # and mapping.md\n')
    assert list(python_references(source)) == [
        (1, "DESIGN.md", None),
        (2, "docs/design.md", "#layers"),
        (2, "mapping.md", None),
    ]
    doc = tmp_path / "x.md"
    doc.write_text(
        "# A `code` heading: with punctuation\n\nSee [it](#a-code-heading-with-punctuation) and "
        "[store](store.md#nope), DESIGN.md and `not-a-ref.md`.\n\n```\nout.md\n```\n"
    )
    assert anchors(doc) == {"a-code-heading-with-punctuation"}
    assert list(markdown_references(doc)) == [
        (3, "", "#a-code-heading-with-punctuation"),
        (3, "store.md", "#nope"),
        (3, "DESIGN.md", None),
    ]
