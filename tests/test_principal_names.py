"""Principals named the way users write them, through the real CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgspec

from iamtrim.model import Principal, Skipped
from iamtrim.normalize import normalize_record
from iamtrim.sources.records import Record
from tests.factories import ACCOUNT, make_record, make_record_dict, user_identity

ROOT = Path(__file__).resolve().parent.parent
TRAIL = ROOT / "samples" / "AWSLogs"
AUTHZ = ROOT / "samples" / "authz" / "account-authorization-details.json"
CORPUS = ROOT.parent / "shared" / "corpus" / "cloudtrail"
NOTEBOOK = "arn:aws:iam::444455556666:role/service-role/ml-notebook-execution"


def principal_in(record: Record) -> Principal:
    out = normalize_record(record)
    assert not isinstance(out, Skipped), out
    return out[0][0].principal


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "iamtrim", *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )


def principal_of(name: str) -> str:
    res = run("usage", name, "--events", str(TRAIL), "--format", "json")
    assert res.returncode == 0, (name, res.stderr)
    return str(json.loads(res.stdout)["principal"])


def one_line_error(res: subprocess.CompletedProcess[str]) -> str:
    assert res.returncode == 2, res.stderr
    assert res.stdout == "" and "Traceback" not in res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    return lines[0]


def test_every_form_a_user_copies_names_the_role() -> None:
    for name in (
        NOTEBOOK,
        # what CloudTrail and `aws sts get-caller-identity` show: the session, no path
        "arn:aws:sts::444455556666:assumed-role/ml-notebook-execution/SageMaker",
        "arn:aws:iam::444455556666:role/ml-notebook-execution",  # the role ARN without its path
        "role/ml-notebook-execution",
        "role/service-role/ml-notebook-execution",
        "ml-notebook-execution",
    ):
        assert principal_of(name) == NOTEBOOK, name
    assert principal_of("user/ci-deployer") == "arn:aws:iam::444455556666:user/ci-deployer"
    # The same policy whatever the spelling.
    by_session = run(
        "generate-policy",
        "arn:aws:sts::444455556666:assumed-role/ml-notebook-execution/x",
        "--events",
        str(TRAIL),
    )
    by_arn = run("generate-policy", NOTEBOOK, "--events", str(TRAIL))
    assert by_session.returncode == 0 and by_session.stdout == by_arn.stdout


def test_a_near_miss_lists_the_closest_names() -> None:
    line = one_line_error(run("usage", "ml-trainng-job", "--events", str(TRAIL)))
    assert line == "iamtrim: no principal 'ml-trainng-job' in the usage data; did you mean: ml-training-job?"
    # Another case, or the wrong kind, is offered back rather than guessed.
    assert "did you mean: ml-training-job?" in one_line_error(
        run("usage", "ML-Training-Job", "--events", str(TRAIL))
    )
    assert "did you mean: ci-deployer?" in one_line_error(
        run("usage", "role/ci-deployer", "--events", str(TRAIL))
    )
    assert "did you mean: ci-deployer?" in one_line_error(
        run("generate-policy", "arn:aws:sts::444455556666:assumed-role/ci-deployr/s", "--events", str(TRAIL))
    )
    # Nothing close: the known principals, so the user can pick.
    line = one_line_error(run("usage", "zzzz", "--events", str(TRAIL)))
    assert "known:" in line and "ml-training-job" in line and "partner-analytics" in line


def test_the_same_name_in_two_accounts_is_ambiguous(tmp_path: Path) -> None:
    other = "999988887777"

    def role(account: str, name: str) -> dict[str, Any]:
        return user_identity(
            "AssumedRole",
            arn=f"arn:aws:sts::{account}:assumed-role/{name}/s1",
            accountId=account,
            sessionContext={
                "sessionIssuer": {
                    "type": "Role",
                    "arn": f"arn:aws:iam::{account}:role/{name}",
                    "accountId": account,
                }
            },
        )

    records = [
        make_record_dict(userIdentity=role(ACCOUNT, "app")),
        make_record_dict(userIdentity=role(other, "app")),
    ]
    (tmp_path / "t.json").write_text(json.dumps({"Records": records}))
    for name in ("app", "role/app"):
        line = one_line_error(run("usage", name, "--events", "t.json", cwd=tmp_path))
        assert "ambiguous" in line and f"arn:aws:iam::{ACCOUNT}:role/app" in line
        assert f"arn:aws:iam::{other}:role/app" in line
    # An account in the name settles it.
    res = run(
        "usage",
        f"arn:aws:sts::{other}:assumed-role/app/s9",
        "--events",
        "t.json",
        "--format",
        "json",
        cwd=tmp_path,
    )
    assert res.returncode == 0 and json.loads(res.stdout)["principal"] == f"arn:aws:iam::{other}:role/app"


def test_diff_finds_the_principal_in_an_authz_file_by_the_same_names(tmp_path: Path) -> None:
    base = ["--events", str(TRAIL), "--authz", str(AUTHZ), "--format", "json"]
    full = run("diff", NOTEBOOK, *base)
    session = run("diff", "arn:aws:sts::444455556666:assumed-role/ml-notebook-execution/s", *base)
    assert full.returncode == 0 and session.stdout == full.stdout
    # A role no record names (idle), written as role/NAME, is looked up in the file itself.
    data = json.loads(AUTHZ.read_text())
    seen = {"ml-notebook-execution", "ml-training-job", "data-scientist", "partner-analytics"}
    idle = [r["RoleName"] for r in data.get("RoleDetailList", []) if r["RoleName"] not in seen]
    assert idle, "the samples' authz file holds an idle role"
    res = run("diff", f"role/{idle[0]}", *base)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["principal"].endswith(f"/{idle[0]}")
    line = one_line_error(
        run("diff", "role/ml-notebook-executon", "--authz", str(AUTHZ), "--events", str(TRAIL))
    )
    assert "did you mean: ml-notebook-execution?" in line


def test_saml_callers_are_named_by_provider_and_subject() -> None:
    res = run("principals", "--events", str(TRAIL), "--format", "json")
    saml = [p for p in json.loads(res.stdout) if p["kind"] == "saml-user"]
    assert saml and all(p["principal"].startswith("saml-provider/AcmeOkta:") for p in saml)
    assert all(p["principal"] == f"saml-provider/AcmeOkta:{p['name']}" for p in saml)
    assert all(p["account"] == "444455556666" for p in saml)  # the provider's account
    assert principal_of("jane@acme.example") == "saml-provider/AcmeOkta:jane@acme.example"
    line = one_line_error(run("usage", "jane@acme.exmple", "--events", str(TRAIL)))
    assert "did you mean: saml-provider/AcmeOkta:jane@acme.example" in line  # the closest first


def test_saml_records_of_the_corpus_name_their_provider() -> None:
    found = 0
    for path in sorted(CORPUS.rglob("*.json")):
        text = path.read_text(errors="replace")
        if '"SAMLUser"' not in text:
            continue
        data = json.loads(text)
        records = data.get("Records", []) if isinstance(data, dict) else data
        for raw in records:
            if not (isinstance(raw, dict) and raw.get("userIdentity", {}).get("type") == "SAMLUser"):
                continue
            provider = raw["requestParameters"]["principalArn"]
            p = principal_in(msgspec.json.decode(json.dumps(raw), type=Record))
            assert p.arn == f"{provider.split(':', 5)[5]}:{raw['userIdentity']['userName']}"
            assert raw["userIdentity"]["identityProvider"] not in p.arn  # not the NameQualifier hash
            assert not p.is_iam and p.account == provider.split(":")[4]
            found += 1
    assert found, "no SAMLUser record in the corpus"


def test_a_web_identity_provider_arn_never_reads_as_an_iam_principal() -> None:
    oidc = (
        f"arn:aws:iam::{ACCOUNT}:oidc-provider/oidc.eks.us-east-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B7"
    )
    p = principal_in(make_record(userIdentity=user_identity("WebIdentityUser", identityProvider=oidc)))
    assert not p.is_iam
    assert p.arn == "oidc-provider/oidc.eks.us-east-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B7:carol"
