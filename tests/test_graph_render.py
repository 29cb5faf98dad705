"""The picture: open the SVG, check what it shows; summaries instead of hairballs; the CLI around it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from iamtrim.graph import build_graph, build_selected_graph, picture
from iamtrim.ingest import load_events
from iamtrim.model import Context, Outcome, UsageRow
from iamtrim.render.graph import png_available, to_png, to_svg
from iamtrim.store import Store
from tests.test_graph import ARTIFACTS_KEY, DATASETS_KEY, NOTEBOOK, PARTNER, SCIENTIST, TRAINING, VPCE

NS = {"svg": "http://www.w3.org/2000/svg"}
ROOT = Path(__file__).resolve().parent.parent


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "iamtrim", *args], cwd=cwd, capture_output=True, text=True, timeout=180
    )


@pytest.fixture(scope="module")
def sample_store(samples: Path) -> Store:
    return load_events([samples / "AWSLogs"], workers=1)


def nodes(svg: str) -> dict[str, ET.Element]:
    root = ET.fromstring(svg)
    return {g.get("data-id", ""): g for g in root.iterfind(".//svg:g[@data-id]", NS)}


def label(node: ET.Element) -> str:
    el = node.find("svg:text[@class='label']", NS)
    assert el is not None
    return el.text or ""


def texts(svg: str, cls: str) -> list[str]:
    return [t.text or "" for t in ET.fromstring(svg).iterfind(f".//svg:text[@class='{cls}']", NS)]


def test_notebook_picture_shows_its_neighbourhood(sample_store: Store) -> None:
    g = build_selected_graph(sample_store.principals(), sample_store.usage(), only_principals=[NOTEBOOK])
    svg = to_svg(picture(g, title="ml-notebook-execution"))
    root = ET.fromstring(svg)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert texts(svg, "title") == ["ml-notebook-execution"]
    by_id = nodes(svg)
    assert label(by_id[f"principal:{NOTEBOOK}"]) == "ml-notebook-execution"
    assert "node principal" in (by_id[f"principal:{NOTEBOOK}"].get("class") or "")
    # actions, banded by service
    assert label(by_id["action:s3:GetObject"]) == "GetObject"
    bands = {b.get("data-band") for b in root.iterfind(".//svg:g[@class='band']", NS)}
    assert {
        "s3",
        "kms",
        "logs",
        "sagemaker",
        "s3 acme-ml-datasets",
        "s3 acme-ml-artifacts",
        "kms key",
    } <= bands
    # resources grouped by bucket and folder, with a count of the objects folded in
    s3_groups = [label(n) for i, n in by_id.items() if i.startswith("group:arn:aws:s3:::acme-ml-datasets/")]
    assert s3_groups and all(lbl.startswith("/datasets/") and "(" in lbl for lbl in s3_groups)
    assert f"group:{DATASETS_KEY}" in by_id and "K1" in label(by_id[f"group:{DATASETS_KEY}"])
    # marks: the VPC endpoint on S3 edges, the key and "via s3" on the KMS edges, and a legend
    marks = [m.get("data-marks", "") for m in root.iterfind(".//svg:g[@class='mark']", NS)]
    assert any("E1" in m for m in marks)
    assert any("K1" in m and "via s3" in m for m in marks)
    legend = texts(svg, "legend-vpce") + texts(svg, "legend-key")
    assert f"E1 = {VPCE}" in legend and f"K1 = {DATASETS_KEY}" in legend and f"K2 = {ARTIFACTS_KEY}" in legend
    # every edge joins two drawn nodes
    for e in root.iterfind(".//svg:path[@data-source]", NS):
        assert e.get("data-source") in by_id and e.get("data-target") in by_id
    # deterministic
    assert to_svg(picture(g, title="ml-notebook-execution")) == svg


def test_bucket_picture_marks_denied_and_services(sample_store: Store) -> None:
    g = build_selected_graph(
        sample_store.principals(), sample_store.usage(), only_resources=["arn:aws:s3:::acme-ml-datasets"]
    )
    svg = to_svg(picture(g, title="acme-ml-datasets"))
    by_id = nodes(svg)
    assert {f"principal:{p}" for p in (NOTEBOOK, TRAINING, SCIENTIST)} <= set(by_id)
    assert f"principal:{PARTNER}" not in by_id  # reads only acme-ml-artifacts
    assert by_id["action:s3:PutBucketPolicy"].get("data-denied") == "2"
    root = ET.fromstring(svg)
    denied = [e for e in root.iterfind(".//svg:path", NS) if "denied" in (e.get("class") or "")]
    assert any(e.get("data-target") == "action:s3:PutBucketPolicy" for e in denied)
    marks = [m.get("data-marks", "") for m in root.iterfind(".//svg:g[@class='mark']", NS)]
    assert any("via athena" in m for m in marks)


def test_big_graphs_are_summarized_not_drawn_whole() -> None:
    rows = [
        UsageRow(
            f"arn:aws:iam::1:role/r{i:02d}",
            f"sqs:Action{i + j:02d}",
            f"arn:aws:sqs:us-east-1:1:q{i}-{j}",
            Outcome.USED,
            Context(),
            100 - i,
            "2026-10-01T00:00:00Z",
            "2026-10-02T00:00:00Z",
        )
        for i in range(40)
        for j in range(i % 7 + 1)
    ]
    g = build_graph([], rows)
    svg = to_svg(picture(g, title="many", top=5))
    by_id = nodes(svg)
    principals = [i for i in by_id if i.startswith("principal:")]
    totals = sorted(range(40), key=lambda i: (-(100 - i) * (i % 7 + 1), i))
    assert principals == [f"principal:arn:aws:iam::1:role/r{i:02d}" for i in totals[:5]]  # most calls first
    assert label(by_id["more:principals"]) == "+35 more principals"
    shown = totals[:5]
    n_actions = len({i + j for i in shown for j in range(i % 7 + 1)})
    assert label(by_id["more:actions"]) == f"+{n_actions - 10} more actions"
    assert re.fullmatch(r"\+\d+ more resource groups", label(by_id["more:resources"]))
    assert len(by_id) <= 5 + 10 + 10 + 3
    assert "not shown: 35 principals" in texts(svg, "subtitle")[0]


@pytest.mark.skipif(not png_available(), reason="resvg-py not installed")
def test_png_is_a_png(sample_store: Store) -> None:
    g = build_selected_graph(sample_store.principals(), sample_store.usage(), only_principals=[PARTNER])
    data = to_png(to_svg(picture(g, title="partner")))
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 1000


def test_docs_picture_shows_the_notebook_role() -> None:
    """docs/img/notebook-role.svg (shown in the README) is a picture of the notebook role's usage.

    Regenerate: iamtrim graph render --events samples/AWSLogs --principal ml-notebook-execution
    --title "ml-notebook-execution: what it used, 2026-10-01..14" --out docs/img/notebook-role.svg
    """
    svg = (ROOT / "docs" / "img" / "notebook-role.svg").read_text()
    by_id = nodes(svg)
    assert label(by_id[f"principal:{NOTEBOOK}"]) == "ml-notebook-execution"
    assert {"action:s3:GetObject", "action:kms:Decrypt", f"group:{DATASETS_KEY}"} <= set(by_id)
    assert f"E1 = {VPCE}" in texts(svg, "legend-vpce")


# -- the commands --------------------------------------------------------------------------------


def test_cli_who_used_graph_export_and_render(samples: Path, tmp_path: Path) -> None:
    events = str(samples / "AWSLogs")
    res = run("who-used", DATASETS_KEY, "--events", events, "--format", "json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["pattern"] == DATASETS_KEY
    by = {p["principal"]: p for p in doc["principals"]}
    assert by[SCIENTIST]["direct_calls"] == 0 and by[SCIENTIST]["via_services"]["s3.amazonaws.com"] > 0
    assert any(u["direct"] and u["action"] == "kms:ReEncryptFrom" for u in doc["uses"])

    res = run("who-used", "arn:aws:s3:::acme-ml-*", "--events", events, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "use through a service" in res.stdout and "athena.amazonaws.com" in res.stdout
    assert VPCE in res.stdout

    res = run(
        "graph",
        "export",
        "--events",
        events,
        "--principal",
        "partner-analytics",
        "--format",
        "graphml",
        "--out",
        "p.graphml",
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr
    from iamtrim.graph import from_graphml

    g = from_graphml((tmp_path / "p.graphml").read_text())
    assert {d["kind"] for _, d in g.nodes(data=True)} == {"principal", "action", "resource"}
    assert {d["arn"] for _, d in g.nodes(data=True) if d["kind"] == "principal"} == {PARTNER}

    res = run(
        "graph",
        "export",
        "--events",
        events,
        "--resource",
        "arn:aws:s3:::acme-ml-scratch",
        "--format",
        "json",
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["directed"] is True

    res = run(
        "graph",
        "render",
        "--events",
        events,
        "--resource",
        "arn:aws:s3:::acme-ml-datasets",
        "--out",
        "b.svg",
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr
    assert f"principal:{SCIENTIST}" in nodes((tmp_path / "b.svg").read_text())


def test_cli_errors_are_one_line_exit_2(samples: Path, tmp_path: Path) -> None:
    events = str(samples / "AWSLogs")
    for args in (
        ("who-used", "acme-ml-datasets"),
        ("graph", "render", "--out", "x.gif"),
        ("graph", "render", "--resource", "arn:aws:s3:::nope", "--out", "x.svg"),
        ("graph", "export", "--principal", "nobody"),
    ):
        res = run(*args, "--events", events, cwd=tmp_path)
        assert res.returncode == 2, (args, res.stdout, res.stderr)
        assert len(res.stderr.strip().splitlines()) == 1, res.stderr
        assert "Traceback" not in res.stderr


def test_cli_png_without_resvg_is_a_clear_error(samples: Path, tmp_path: Path) -> None:
    # hide resvg_py from the child: a finder that refuses it, installed through sitecustomize
    (tmp_path / "sitecustomize.py").write_text(
        "import sys\n"
        "class _No:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'resvg_py':\n"
        "            raise ModuleNotFoundError(name)\n"
        "        return None\n"
        "sys.meta_path.insert(0, _No())\n"
    )
    env_run = subprocess.run(
        [
            sys.executable,
            "-m",
            "iamtrim",
            "graph",
            "render",
            "--events",
            str(samples / "AWSLogs"),
            "--principal",
            "partner-analytics",
            "--out",
            "p.png",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
        env={**__import__("os").environ, "PYTHONPATH": f"{tmp_path}:{ROOT}"},
    )
    assert env_run.returncode == 2
    assert env_run.stderr.strip() == (
        "iamtrim: PNG output needs the resvg-py package (pip install resvg-py); "
        "SVG needs nothing: use --out FILE.svg"
    )
    assert not (tmp_path / "p.png").exists()


def test_cli_principals_and_usage_answer_sharing(samples: Path, tmp_path: Path) -> None:
    events = str(samples / "AWSLogs")
    res = run("principals", "--events", events, "--format", "json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    by = {p["principal"]: p for p in json.loads(res.stdout)}
    partner = by[PARTNER]
    assert partner["shared_resources"] == 1  # the artifacts key, with the notebook and training roles
    assert partner["resources"] == partner["shared_resources"] + partner["only_resources"]
    assert partner["shares_with"] == sorted([NOTEBOOK, TRAINING])
    res = run("usage", "partner-analytics", "--events", events, "--format", "json", cwd=tmp_path)
    doc = json.loads(res.stdout)
    assert doc["shared_resources"] == [
        {"resource": ARTIFACTS_KEY, "principals": sorted([TRAINING, NOTEBOOK])}
    ]
    assert len(doc["only_this_principal"]) == partner["only_resources"]
    assert all(r.startswith("arn:aws:s3:::acme-ml-artifacts") for r in doc["only_this_principal"])


def test_hover_text_is_one_arn_per_line(sample_store: Store) -> None:
    # The scrub that makes record text safe for XML must not turn the tooltip's own line breaks
    # into a visible "\x0a" (the README picture once showed them so).
    g = build_selected_graph(sample_store.principals(), sample_store.usage(), only_principals=[NOTEBOOK])
    svg = to_svg(picture(g, title="ml-notebook-execution"))
    titles = [t.text or "" for t in ET.fromstring(svg).iterfind(".//svg:g[@data-id]/svg:title", NS)]
    multi = [t for t in titles if "\n" in t]
    assert multi, titles
    assert not any("\\x0a" in t for t in titles)
    assert all(line.startswith(("arn:", "…")) for t in multi for line in t.split("\n"))
