"""`--events A B C`, `--current A B` (and every repeatable option): several values after one flag,
or the flag repeated, the same way on every command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import typer

from iamtrim.cli import app, expand_multi_value
from tests.test_ingest import ROLE, s3_get, write_trail

OTHER = "arn:aws:iam::111122223333:role/loader"


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "iamtrim", *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )


def expand(line: str) -> list[str]:
    return expand_multi_value(line.split(), typer.main.get_command(app))


def test_values_run_to_the_next_option_and_give_the_argument_back() -> None:
    assert expand("principals --events a b --format json") == [
        "principals", "--events=a", "--events=b", "--format", "json",
    ]  # fmt: skip
    # PRINCIPAL first, last, or after other options: never taken as a path.
    assert expand("usage P --events a b") == ["usage", "P", "--events=a", "--events=b"]
    assert expand("usage --events a b P") == ["usage", "--events=a", "--events=b", "P"]
    assert expand("usage --events a P --format json") == ["usage", "--events=a", "P", "--format", "json"]
    assert expand("usage --events a b --format json P") == [
        "usage", "--events=a", "--events=b", "--format", "json", "P",
    ]  # fmt: skip
    assert expand("usage --events=a b -- P") == ["usage", "--events=a", "--events=b", "--", "P"]
    assert expand("diff --current p1 p2 P --events t") == [
        "diff", "--current=p1", "--current=p2", "P", "--events=t",
    ]  # fmt: skip
    assert expand("graph export --principal a b --resource r") == [
        "graph", "export", "--principal=a", "--principal=b", "--resource=r",
    ]  # fmt: skip
    # A value-taking option's value is never a run's value; a lone value stays one value.
    assert expand("usage P --store --events") == ["usage", "P", "--store", "--events"]
    # ingest has a variadic PATH...: its repeatable option keeps one value per flag.
    assert expand("ingest --access-advisor a b") == ["ingest", "--access-advisor", "a", "b"]


def _two_trails(tmp_path: Path) -> None:
    write_trail(tmp_path / "a.json", [s3_get(1, "k/a")])
    other = s3_get(2, "k/b")
    other["userIdentity"]["arn"] = "arn:aws:sts::111122223333:assumed-role/loader/s"
    other["userIdentity"]["sessionContext"]["sessionIssuer"]["arn"] = OTHER
    write_trail(tmp_path / "b.json", [other, s3_get(3, "k/c")])


def test_events_takes_several_values_on_every_reading_command(tmp_path: Path) -> None:
    _two_trails(tmp_path)
    many = run("principals", "--events", "a.json", "b.json", "--format", "json", cwd=tmp_path)
    repeated = run("principals", "--events", "a.json", "--events", "b.json", "--format", "json", cwd=tmp_path)
    assert many.returncode == 0, many.stderr
    assert {p["principal"] for p in json.loads(many.stdout)} == {ROLE, OTHER}
    assert many.stdout == repeated.stdout
    # With PRINCIPAL before, after, or between: the same answer, both files read.
    outputs = {
        run(*args, cwd=tmp_path).stdout
        for args in (
            ("usage", "etl", "--events", "a.json", "b.json", "--format", "json"),
            ("usage", "--events", "a.json", "b.json", "etl", "--format", "json"),
            ("usage", "--events", "a.json", "b.json", "--format", "json", "etl"),
            ("usage", "--events", "a.json", "--events", "b.json", "etl", "--format", "json"),
        )
    }
    assert len(outputs) == 1
    (text,) = outputs
    assert {u["resource"] for u in json.loads(text)["used"]} == {
        "arn:aws:s3:::data/k/a",
        "arn:aws:s3:::data/k/c",
    }
    res = run("generate-policy", "--events", "a.json", "b.json", "loader", cwd=tmp_path)
    assert res.returncode == 0 and "arn:aws:s3:::data/k/b" in res.stdout, res.stderr
    res = run(
        "who-used", "arn:aws:s3:::data/*", "--events", "a.json", "b.json", "--format", "json", cwd=tmp_path
    )
    assert {p["principal"] for p in json.loads(res.stdout)["principals"]} == {ROLE, OTHER}
    res = run(
        "graph",
        "export",
        "--events",
        "a.json",
        "b.json",
        "--principal",
        "etl",
        "loader",
        "--format",
        "json",
        cwd=tmp_path,
    )
    assert res.returncode == 0 and ROLE in res.stdout and OTHER in res.stdout, res.stderr


def test_current_takes_several_policy_files(tmp_path: Path) -> None:
    _two_trails(tmp_path)
    for name, action in (("get.json", "s3:GetObject"), ("list.json", "s3:ListBucket")):
        doc = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": action, "Resource": "*"}]}
        (tmp_path / name).write_text(json.dumps(doc))
    shapes = (
        ("diff", "etl", "--events", "a.json", "--current", "get.json", "list.json", "--format", "json"),
        ("diff", "--current", "get.json", "list.json", "etl", "--events", "a.json", "--format", "json"),
        (
            "diff",
            "etl",
            "--events",
            "a.json",
            "--current",
            "get.json",
            "--current",
            "list.json",
            "--format",
            "json",
        ),
    )
    docs = []
    for args in shapes:
        res = run(*args, cwd=tmp_path)
        assert res.returncode == 0, (args, res.stderr)
        docs.append(json.loads(res.stdout))
    assert docs[0] == docs[1] == docs[2]
    assert len(docs[0]["current"]) == 2 and docs[0]["granted"] == 2
