"""Run the independent IAM oracle (``../shared/oracle/iam-oracle``, an npm simulator) from tests.

Input format: the header of ``../shared/oracle/simulate.mjs``. One oracle invocation evaluates many
documents (one JSON document per line, ``--jsonl``), each with many requests; the output is one JSON
line per request, in input order. Keep invocations few: starting node and loading the IAM data costs
about a second.

Two things the oracle does that a caller must know:

* it derives ``aws:PrincipalArn`` / ``aws:PrincipalAccount`` / ``aws:PrincipalType`` /
  ``aws:username`` from the principal ARN (iamtrim's evaluator does the same);
* it drops context keys that do not apply to the action and resource type, and lists them in
  ``ignoredContextKeys``: compare against iamtrim with those keys removed (:func:`without_keys`).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import oracle_path

DECISIONS = {"Allowed": "allowed", "ImplicitDeny": "implicit-deny", "ExplicitDeny": "explicit-deny"}


_installed: list[bool] = []


def _home() -> Path:
    return Path(os.environ.get("IAM_ORACLE_HOME", Path.home() / ".cache" / "iam-oracle"))


def _lock_path(home: Path) -> Path:
    return home.parent / "iam-oracle.install.lock"


def require_oracle() -> Path:
    """The oracle's path, or skip the test when node or the oracle is not available.

    The oracle installs its npm packages on first use. Test workers (pytest -n 2) may reach it at
    the same moment on a fresh machine, so the install runs once, under a file lock.
    """
    path = oracle_path()
    if path is None:
        pytest.skip("IAM oracle not found (set IAMTRIM_ORACLE or provide ../shared/oracle)")
    if shutil.which("node") is None:
        pytest.skip("node is not installed (the IAM oracle is an npm package)")
    if not _installed:
        home = _home()
        home.parent.mkdir(parents=True, exist_ok=True)
        with open(_lock_path(home), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            proc = subprocess.run(
                [str(path), "--setup"], capture_output=True, text=True, timeout=1800, check=False
            )
        if proc.returncode != 0:
            pytest.skip(f"IAM oracle could not install its npm packages: {proc.stderr.strip()[-300:]}")
        _installed.append(True)
    return path


def run_oracle(
    documents: Sequence[Mapping[str, Any]],
    *,
    workers: int = 2,
    explain: bool = False,
    timeout: float = 900.0,
) -> list[dict[str, Any]]:
    """Evaluate every request of every document; one result dict per request, in input order.

    Each result has ``doc`` and ``i`` (document and request index), ``decision`` (``Allowed`` /
    ``ImplicitDeny`` / ``ExplicitDeny`` / ``Error``) and, when keys were dropped,
    ``ignoredContextKeys``.
    """
    require_oracle()
    expected = sum(len(d.get("requests", ())) for d in documents)
    with tempfile.TemporaryDirectory(prefix="iam-oracle-") as tmp:
        cases = Path(tmp) / "cases.jsonl"
        with cases.open("w", encoding="utf-8") as fh:
            for doc in documents:
                fh.write(json.dumps(doc, separators=(",", ":")))
                fh.write("\n")
        # The wrapper copies simulate.mjs into the shared home on every call; a copy made while
        # another test worker's node is loading that file gave a truncated module (node exit 13).
        # So runs call node on the copy setup made, under a shared lock that setup's exclusive
        # lock waits for.
        home = _home()
        args = ["node", str(home / "simulate.mjs"), "--jsonl", "--workers", str(workers)]
        if explain:
            args.append("--explain")
        args.append(str(cases))
        with open(_lock_path(home), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_SH)
            proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        if proc.returncode == 3 and "npm install failed" in proc.stderr:
            pytest.skip(f"IAM oracle could not install its npm packages: {proc.stderr.strip()}")
        raise RuntimeError(f"iam-oracle failed ({proc.returncode}): {proc.stderr[-2000:]}")
    results = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    if len(results) != expected:
        raise RuntimeError(f"iam-oracle returned {len(results)} results for {expected} requests")
    return results


def decision_of(result: Mapping[str, Any]) -> str:
    """The oracle's decision as an iamtrim ``Decision`` value, or ``"error"``."""
    return DECISIONS.get(str(result.get("decision")), "error")


def without_keys(context: Mapping[str, Any], ignored: Sequence[str]) -> dict[str, Any]:
    """*context* minus the keys the oracle reported as not applicable (case-insensitive)."""
    drop = {k.lower() for k in ignored}
    return {k: v for k, v in context.items() if k.lower() not in drop}
