"""`iamtrim generate-policy`: golden policies for every samples principal, determinism, the CLI.

Regenerate the golden files after an intended change with::

    UPDATE_GOLDEN=1 python -m pytest tests/test_generate_policy.py

and review the diff like code: every changed statement is a changed permission.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from iamtrim.ingest import load_events
from iamtrim.model import Outcome
from iamtrim.render import policy as render_policy
from iamtrim.synth import generate_identity_policy
from tests.conftest import ROOT, SAMPLES
from tests.factories import ACCOUNT, make_record_dict, user_identity

TRAIL = SAMPLES / "AWSLogs"
GOLDEN = ROOT / "tests" / "golden" / "generate-policy"


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "iamtrim", *args],
        capture_output=True,
        text=True,
        cwd=cwd or ROOT,
        env=env,
        timeout=120,
        check=False,
    )


def sample_principals() -> list[str]:
    """IAM principals in the samples with at least one authorized call (what generate-policy accepts)."""
    with load_events([TRAIL]) as st:
        return sorted(
            p.arn
            for p in st.principals()
            if p.is_iam and any(r.outcome is Outcome.USED for r in st.usage(p.arn))
        )


def golden_name(arn: str) -> str:
    return arn.rsplit("/", 1)[-1] + ".json"


PRINCIPALS = sample_principals()


def test_samples_have_the_expected_principals() -> None:
    names = sorted(golden_name(a) for a in PRINCIPALS)
    assert names == [
        "ci-deployer.json",
        "data-scientist.json",
        "ml-notebook-execution.json",
        "ml-training-job.json",
        "partner-analytics.json",
    ]
    if not os.environ.get("UPDATE_GOLDEN"):
        assert sorted(p.name for p in GOLDEN.glob("*.json")) == names, "stale or missing golden files"


@pytest.mark.parametrize("arn", PRINCIPALS, ids=golden_name)
def test_golden_policy(arn: str) -> None:
    proc = run_cli("generate-policy", arn, "--events", str(TRAIL), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    path = GOLDEN / golden_name(arn)
    if os.environ.get("UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(proc.stdout, encoding="utf-8")
    assert path.exists(), f"no golden file {path}: run with UPDATE_GOLDEN=1"
    assert proc.stdout == path.read_text(encoding="utf-8"), (
        f"{path.name} differs: review, then UPDATE_GOLDEN=1"
    )
    out = json.loads(proc.stdout)
    assert out["principal"] == arn
    assert out["verification"]["failed"] == 0 and out["verification"]["replayed_calls"] > 0
    assert {"principal", "policies", "statements", "denied", "findings"} <= set(out)


def _all_outputs(workers: int) -> dict[str, str]:
    out = {}
    with load_events([TRAIL], workers=workers) as st:
        for arn in PRINCIPALS:
            p = next(p for p in st.principals() if p.arn == arn)
            out[arn] = render_policy.to_json(generate_identity_policy(p, st.usage(arn)), explain=True)
    return out


def test_output_is_deterministic_across_runs_and_worker_counts() -> None:
    one = _all_outputs(workers=1)
    assert _all_outputs(workers=1) == one
    assert _all_outputs(workers=2) == one


def test_golden_policies_never_grant_a_denied_attempt() -> None:
    for arn in PRINCIPALS:
        out = json.loads((GOLDEN / golden_name(arn)).read_text(encoding="utf-8"))
        granted = {
            a
            for p in out["policies"]
            for s in p["document"]["Statement"]
            for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
        }
        for d in out["denied"]:
            assert d["action"] not in granted, (arn, d)


def test_explain_shows_evidence_and_widenings() -> None:
    proc = run_cli(
        "generate-policy", "ml-training-job", "--events", str(TRAIL), "--format", "policy", "--explain"
    )
    assert proc.returncode == 0, proc.stderr
    json.loads(proc.stdout)  # stdout stays a clean policy document
    # Both counts: the combinations replayed and the calls they stand for (more calls than rows).
    m = re.search(
        r"# ([\d,]+) observed \(action, resource, context\) combinations replayed, "
        r"standing for ([\d,]+) calls: all allowed",
        proc.stderr,
    )
    assert m is not None, proc.stderr
    assert int(m.group(2).replace(",", "")) > int(m.group(1).replace(",", ""))
    assert "widened (resource-variable)" in proc.stderr
    proc = run_cli("generate-policy", "data-scientist", "--events", str(TRAIL), "--explain")
    out = json.loads(proc.stdout)
    assert any(w.get("covered") for s in out["statements"] for w in s["widened_by"])
    assert {d["action"] for d in out["denied"]} == {"s3:PutBucketPolicy", "iam:CreateAccessKey"}


def test_policy_format_with_out_dir_writes_one_file_per_policy(tmp_path: Path) -> None:
    proc = run_cli(
        "generate-policy",
        "ci-deployer",
        "--events",
        str(TRAIL),
        "--format",
        "policy",
        "--out-dir",
        str(tmp_path / "out"),
    )
    assert proc.returncode == 0, proc.stderr
    files = sorted((tmp_path / "out").iterdir())
    assert [f.name for f in files] == ["iamtrim-ci-deployer.json"]
    assert proc.stdout.split() == [str(f) for f in files]
    doc = json.loads(files[0].read_text(encoding="utf-8"))
    assert doc["Version"] == "2012-10-17"
    bad = run_cli("generate-policy", "ci-deployer", "--events", str(TRAIL), "--out-dir", str(tmp_path / "x"))
    assert bad.returncode == 2 and "--format policy" in bad.stderr


@pytest.mark.parametrize("fmt", ["terraform", "cloudformation"])
def test_other_formats_render(fmt: str) -> None:
    proc = run_cli("generate-policy", "ml-training-job", "--events", str(TRAIL), "--format", fmt)
    assert proc.returncode == 0, proc.stderr
    assert "ml-training-job" in proc.stdout


def test_no_conditions_drops_every_condition() -> None:
    proc = run_cli(
        "generate-policy", "ml-training-job", "--events", str(TRAIL), "--format", "policy", "--no-conditions"
    )
    assert proc.returncode == 0, proc.stderr
    assert "Condition" not in proc.stdout


def test_inline_target_for_the_ci_user_fits_or_fails_cleanly() -> None:
    proc = run_cli("generate-policy", "ci-deployer", "--events", str(TRAIL), "--target", "inline")
    if proc.returncode == 0:
        out = json.loads(proc.stdout)
        assert sum(len(json.dumps(p["document"], separators=(",", ":"))) for p in out["policies"]) <= 2048
    else:
        assert proc.returncode == 1 and "2048" in proc.stderr and not proc.stdout


# --- bad input: one line, exit 2 ----------------------------------------------------------------


def _trail(tmp_path: Path, records: list[dict[str, Any]]) -> Path:
    path = tmp_path / "trail.json"
    path.write_text(json.dumps({"Records": records}), encoding="utf-8")
    return path


def _role_identity(account: str, name: str) -> dict[str, Any]:
    return user_identity(
        "AssumedRole",
        arn=f"arn:aws:sts::{account}:assumed-role/{name}/s1",
        accountId=account,
        sessionContext={
            "sessionIssuer": {
                "type": "Role",
                "arn": f"arn:aws:iam::{account}:role/{name}",
                "accountId": account,
                "userName": name,
            }
        },
    )


def test_bad_principals_are_one_line_errors_with_exit_2(tmp_path: Path) -> None:
    other = "999988887777"
    trail = _trail(
        tmp_path,
        [
            make_record_dict(userIdentity=_role_identity(ACCOUNT, "app")),
            make_record_dict(userIdentity=_role_identity(other, "app")),
            make_record_dict(
                userIdentity=_role_identity(ACCOUNT, "locked-out"),
                errorCode="AccessDenied",
                errorMessage="Access Denied",
            ),
        ],
    )
    cases = {
        "nobody": "no principal 'nobody'",
        "app": "ambiguous",
        "locked-out": "no authorized call",
    }
    for name, message in cases.items():
        proc = run_cli("generate-policy", name, "--events", str(trail))
        assert proc.returncode == 2, (name, proc.stderr)
        assert proc.stdout == ""
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], (name, proc.stderr)
    ambiguous = run_cli("generate-policy", "app", "--events", str(trail)).stderr
    assert f"arn:aws:iam::{ACCOUNT}:role/app" in ambiguous and f"arn:aws:iam::{other}:role/app" in ambiguous
    # A SAML caller is not an IAM identity: nothing to attach a policy to.
    saml = run_cli("generate-policy", "jane@acme.example", "--events", str(TRAIL))
    assert saml.returncode == 2 and "not an IAM identity" in saml.stderr


def _many_buckets_trail(path: Path) -> Path:
    """GetObject on 240 buckets of distinct (not generated) names: too large for one policy."""
    words = [f"{a}{b}" for a in "bcdfghjklmnp" for b in "aeiouyqrstwz"]
    records = []
    for w in words * 1:
        for bucket in (f"team-{w}-data", f"team-{w}-logs"):
            key = f"reports/summary-{w}.csv"
            records.append(
                make_record_dict(
                    requestParameters={
                        "bucketName": bucket,
                        "key": key,
                        "Host": f"{bucket}.s3.amazonaws.com",
                    },
                    resources=[
                        {"type": "AWS::S3::Object", "ARN": f"arn:aws:s3:::{bucket}/{key}"},
                        {"accountId": ACCOUNT, "type": "AWS::S3::Bucket", "ARN": f"arn:aws:s3:::{bucket}"},
                    ],
                )
            )
    trail = path / "trail.json"
    trail.write_text(json.dumps({"Records": records}))
    return trail


def test_cli_widens_to_one_policy_by_default_and_refuses_with_no_widen(tmp_path: Path) -> None:
    trail = _many_buckets_trail(tmp_path)
    default = run_cli("generate-policy", "TrainingRole", "--events", str(trail))
    assert default.returncode == 0, default.stderr
    out = json.loads(default.stdout)
    assert out["fit"]["policies"] == 1 and out["fit"]["max_policies"] == 1
    assert out["fit"]["widenings"] == len(out["widenings"]) > 0
    assert all(w["kind"] and w["pattern"] and w["admits"] and w["covers"] for w in out["widenings"])
    refused = run_cli(
        "generate-policy", "TrainingRole", "--events", str(trail), "--no-widen", "--max-policies", "1"
    )
    assert refused.returncode == 1 and refused.stdout == ""
    assert "--no-widen" in refused.stderr and "--max-policies is 1" in refused.stderr
    split = run_cli("generate-policy", "TrainingRole", "--events", str(trail), "--no-widen")
    assert split.returncode == 0, split.stderr
    assert 1 < json.loads(split.stdout)["fit"]["policies"] <= 10
    assert json.loads(split.stdout)["widenings"] == []
    explained = run_cli(
        "generate-policy", "TrainingRole", "--events", str(trail), "--format", "policy", "--explain"
    )
    assert explained.returncode == 0
    assert f"{out['fit']['widenings']} widening" in explained.stderr


@pytest.mark.parametrize("value", ["0", "21", "x"])
def test_max_policies_outside_1_to_20_is_a_usage_error(tmp_path: Path, value: str) -> None:
    trail = _many_buckets_trail(tmp_path)
    result = run_cli("generate-policy", "TrainingRole", "--events", str(trail), "--max-policies", value)
    assert result.returncode == 2 and "--max-policies" in result.stderr


def test_partner_analytics_object_grants_narrow_as_the_threshold_grows() -> None:
    """partner-analytics read 12 keys, all under exports/weekly/<date>/. No threshold folds the
    bucket or exports/ (the passed-up count gave acme-ml-artifacts/* at the default 10 and
    exports/* at 3); a larger threshold never folds more than a smaller one; the default policy
    grants nothing outside exports/weekly/."""
    from iamtrim.synth.minimize import generalize_object_arns

    with load_events([TRAIL]) as st:
        principal = next(p for p in st.principals() if p.name == "partner-analytics")
        rows = st.usage(principal.arn)
    keys = {
        r.resource for r in rows if r.action == "s3:GetObject" and r.outcome is Outcome.USED and r.resource
    }
    assert len(keys) == 12 and all("/exports/weekly/" in k for k in keys)

    def covered(pattern: str, by: set[str]) -> bool:
        return any(p == pattern or (p.endswith("/*") and pattern.startswith(p[:-1])) for p in by)

    folds = {t: set(generalize_object_arns(keys, t).values()) for t in range(1, 13)}
    assert folds[10] == keys
    weekly = "arn:aws:s3:::acme-ml-artifacts/exports/weekly"
    assert folds[3] == {f"{weekly}/{d}/*" for d in ("2026-10-01", "2026-10-05", "2026-10-12")}
    assert folds[2] == folds[1] == {f"{weekly}/*"}
    for t in range(1, 12):
        assert all(covered(p, folds[t]) for p in folds[t + 1])
    g = generate_identity_policy(principal, rows)
    granted = {r for ev in g.statements if "s3:GetObject" in ev.actions for r in ev.resources}
    assert granted and all(r.startswith(weekly + "/") for r in granted)
