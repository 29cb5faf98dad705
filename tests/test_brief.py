"""`--brief` views (what `make demo` shows): folded, but adding up to the full output."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.conftest import SAMPLES
from tests.test_docs_examples import _run

AUTHZ = str(SAMPLES / "authz" / "account-authorization-details.json")
ROLE = "ml-notebook-execution"


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("brief")
    result = _run(["ingest", str(SAMPLES / "AWSLogs"), "--store", "usage.sqlite", "-q"], work)
    assert result.code == 0, result.output
    return work


def _table_rows(text: str, header: str) -> list[str]:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header)) + 2
    rows = []
    for line in lines[start:]:
        if not line.strip():
            break
        rows.append(line)
    return rows


def test_usage_brief_folds_and_keeps_every_call(work: Path) -> None:
    full = json.loads(_run(["usage", ROLE, "--store", "usage.sqlite", "--format", "json"], work).output)
    brief = _run(["usage", ROLE, "--store", "usage.sqlite", "--brief"], work)
    assert brief.code == 0, brief.output
    rows = _table_rows(brief.output, "ACTION")
    # One row per resource family: far fewer rows than combinations, and no S3 object alone.
    assert len(rows) < len(full["used"]) / 5
    assert any("(" in r and "resources)" in r for r in rows)
    calls = sum(int(re.split(r"\s{2,}", r)[2]) for r in rows)
    assert calls == sum(u["count"] for u in full["used"])
    members = sum(int(m) for m in re.findall(r"\((\d+) resources\)", brief.output))
    folded_rows = sum(1 for r in rows if "resources)" in r)
    assert len(rows) - folded_rows + members == len({(u["action"], u["resource"]) for u in full["used"]})


def test_generate_policy_brief_is_one_line_per_statement(work: Path) -> None:
    full = json.loads(_run(["generate-policy", ROLE, "--store", "usage.sqlite"], work).output)
    brief = _run(["generate-policy", ROLE, "--store", "usage.sqlite", "--brief"], work)
    assert brief.code == 0, brief.output
    rows = _table_rows(brief.output, "SID")
    assert [r.split()[0] for r in rows] == [s["sid"] for s in full["statements"]]
    assert [int(r.split()[-1].replace(",", "")) for r in rows] == [
        s["evidence"]["calls"] for s in full["statements"]
    ]
    assert f"{full['verification']['replayed_calls']:,} observed" in brief.output


def test_diff_brief_lists_the_risky_unused_actions(work: Path) -> None:
    args = ["diff", ROLE, "--store", "usage.sqlite", "--authz", AUTHZ]
    full = json.loads(_run([*args, "--format", "json"], work).output)
    brief = _run([*args, "--brief"], work)
    assert brief.code == 0, brief.output
    risky = sorted(u["action"] for u in full["unused"] if u["risk"])
    assert risky
    assert re.findall(r"^  [!?] (\S+)", brief.output, flags=re.M) == risky
    assert full["headline"]["text"] in brief.output
