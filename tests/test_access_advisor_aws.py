"""Access Advisor jobs run against the account, with botocore's Stubber (moto has no Access Advisor).

Responses are the repository's sample report (``samples/access-advisor``) in the shape the API
returns it: timestamps as datetimes, pages joined by ``Marker``. What is stored must equal what
``ingest --access-advisor FILE`` stores for the same report.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from botocore.stub import ANY, Stubber

from iamtrim.aws import Aws, AwsConfig
from iamtrim.errors import AwsError, PrincipalError
from iamtrim.evidence import ingest_access_advisor, ingest_access_advisor_responses
from iamtrim.sources.access_advisor_aws import fetch_reports, list_principals, resolve_principals
from iamtrim.store import Store
from tests.test_aws import cli

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "samples" / "access-advisor" / "ml-notebook-execution-action-level.json"
ROLE = "arn:aws:iam::444455556666:role/service-role/ml-notebook-execution"
USER = "arn:aws:iam::444455556666:user/ci-deployer"
JOB = "examplejob-0000-1111-2222-333344445555"
TIME_KEYS = ("JobCreationDate", "JobCompletionDate", "LastAuthenticated", "LastAccessedTime")


def _api_shape(node: Any) -> Any:
    """The saved report as boto3 returns it: times are datetimes."""
    if isinstance(node, dict):
        return {
            k: datetime.fromisoformat(v.replace("Z", "+00:00")) if k in TIME_KEYS else _api_shape(v)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_api_shape(v) for v in node]
    return node


def sample_response() -> dict[str, Any]:
    data = json.loads(SAMPLE.read_text())
    data.setdefault("JobCompletionDate", data["JobCreationDate"])
    data.setdefault("IsTruncated", False)
    return dict(_api_shape(data))


def in_progress() -> dict[str, Any]:
    r = sample_response()
    # JobCompletionDate is a required member of the response shape; AWS sends it while running too.
    return {k: r[k] for k in ("JobCreationDate", "JobCompletionDate")} | {
        "JobStatus": "IN_PROGRESS",
        "JobType": "ACTION_LEVEL",
        "ServicesLastAccessed": [],
    }


def pages(response: dict[str, Any], size: int) -> list[dict[str, Any]]:
    services = response["ServicesLastAccessed"]
    out = []
    for i in range(0, len(services), size):
        page = copy.deepcopy(response)
        page["ServicesLastAccessed"] = services[i : i + size]
        page["IsTruncated"] = i + size < len(services)
        if page["IsTruncated"]:
            page["Marker"] = f"marker-{i + size}"
        out.append(page)
    return out


@pytest.fixture
def stubbed(aws_endpoint: str) -> Iterator[tuple[Aws, Stubber]]:
    aws = Aws(AwsConfig(endpoint_url=aws_endpoint))
    with Stubber(aws.client("iam")) as stub:
        yield aws, stub
        stub.assert_no_pending_responses()


def _queue_job(stub: Stubber, arn: str, response: dict[str, Any], polls: int, page_size: int) -> None:
    stub.add_response(
        "generate_service_last_accessed_details",
        {"JobId": JOB},
        {"Arn": arn, "Granularity": "ACTION_LEVEL"},
    )
    for _ in range(polls):
        stub.add_response("get_service_last_accessed_details", in_progress(), {"JobId": JOB})
    for i, page in enumerate(pages(response, page_size)):
        params: dict[str, Any] = {"JobId": JOB}
        if i:
            params["Marker"] = f"marker-{i * page_size}"
        stub.add_response("get_service_last_accessed_details", page, params)


def test_job_is_polled_with_backoff_and_its_pages_joined(
    stubbed: tuple[Aws, Stubber], tmp_path: Path
) -> None:
    aws, stub = stubbed
    response = sample_response()
    assert len(response["ServicesLastAccessed"]) > 3  # several pages below
    _queue_job(stub, ROLE, response, polls=4, page_size=2)
    waits: list[float] = []
    (report,) = fetch_reports(aws, [ROLE], sleep=waits.append)
    assert waits == [1.0, 2.0, 4.0, 8.0]
    joined = json.loads(report.body)
    assert joined["IsTruncated"] is False and "Marker" not in joined
    assert [s["ServiceNamespace"] for s in joined["ServicesLastAccessed"]] == [
        s["ServiceNamespace"] for s in response["ServicesLastAccessed"]
    ]


def test_fetched_report_is_stored_as_the_file_is(stubbed: tuple[Aws, Stubber], tmp_path: Path) -> None:
    aws, stub = stubbed
    _queue_job(stub, ROLE, sample_response(), polls=1, page_size=3)
    reports = fetch_reports(aws, [ROLE], sleep=lambda _: None)
    with Store(tmp_path / "live.sqlite") as live, Store(tmp_path / "file.sqlite") as filed:
        got = ingest_access_advisor_responses([("aws", r.principal, r.body) for r in reports], live)
        ingest_access_advisor([SAMPLE], filed, principal=ROLE)
        assert got.files_read == 1 and got.entries > 0 and got.principals == {ROLE}
        assert live.access_advisor() == filed.access_advisor()
        # The same report again is recognised and not stored twice.
        again = ingest_access_advisor_responses([("aws", r.principal, r.body) for r in reports], live)
        assert (again.files_read, again.files_already) == (0, 1)


def test_a_job_that_never_finishes_is_an_aws_error(stubbed: tuple[Aws, Stubber]) -> None:
    aws, stub = stubbed
    stub.add_response(
        "generate_service_last_accessed_details", {"JobId": JOB}, {"Arn": ROLE, "Granularity": ANY}
    )
    for _ in range(4):
        stub.add_response("get_service_last_accessed_details", in_progress(), {"JobId": JOB})
    with pytest.raises(AwsError, match="still IN_PROGRESS after 7s"):
        fetch_reports(aws, [ROLE], sleep=lambda _: None, max_wait=5)


def test_a_failed_job_is_skipped_with_aws_reason(stubbed: tuple[Aws, Stubber], tmp_path: Path) -> None:
    aws, stub = stubbed
    failed = in_progress() | {
        "JobStatus": "FAILED",
        "Error": {"Code": "ServiceFailure", "Message": "try again"},
    }
    stub.add_response(
        "generate_service_last_accessed_details", {"JobId": JOB}, {"Arn": ROLE, "Granularity": ANY}
    )
    stub.add_response("get_service_last_accessed_details", failed, {"JobId": JOB})
    reports = fetch_reports(aws, [ROLE], sleep=lambda _: None)
    with Store(tmp_path / "s.sqlite") as st:
        got = ingest_access_advisor_responses([("aws", r.principal, r.body) for r in reports], st)
        assert got.files_read == 0 and "job status FAILED: ServiceFailure try again" in got.skipped[0][1]
        assert st.access_advisor() == []


def test_principals_listed_and_resolved(stubbed: tuple[Aws, Stubber]) -> None:
    aws, stub = stubbed
    when = datetime(2026, 1, 1)
    role = {
        "Path": "/service-role/",
        "RoleName": "ml-notebook-execution",
        "RoleId": "AROAEXAMPLE000000001",
        "Arn": ROLE,
        "CreateDate": when,
    }
    user = {
        "Path": "/",
        "UserName": "ci-deployer",
        "UserId": "AIDAEXAMPLE000000001",
        "Arn": USER,
        "CreateDate": when,
    }
    stub.add_response("list_roles", {"Roles": [role], "IsTruncated": True, "Marker": "m"}, {})
    stub.add_response("list_roles", {"Roles": [], "IsTruncated": False}, {"Marker": "m"})
    stub.add_response("list_users", {"Users": [user], "IsTruncated": False}, {})
    assert list_principals(aws, roles=True, users=True) == [ROLE, USER]
    stub.add_client_error(
        "get_role", "NoSuchEntity", "not found", 404, expected_params={"RoleName": "ci-deployer"}
    )
    stub.add_response("get_user", {"User": user}, {"UserName": "ci-deployer"})
    stub.add_response(
        "get_role",
        {"Role": role | {"AssumeRolePolicyDocument": "%7B%7D"}},
        {"RoleName": "ml-notebook-execution"},
    )
    assert resolve_principals(aws, ["ci-deployer", "role/ml-notebook-execution", ROLE]) == [ROLE, USER]
    stub.add_client_error(
        "get_user", "NoSuchEntity", "not found", 404, expected_params={"UserName": "nobody"}
    )
    with pytest.raises(PrincipalError, match="no role or user 'user/nobody'"):
        resolve_principals(aws, ["user/nobody"])


def test_cli_ingest_access_advisor_from_aws(
    aws_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CLI path: jobs started, polled, stored; a later generate-policy sees the report exactly as
    it sees the same report ingested from a file."""
    made = Aws.client
    stubs: list[Stubber] = []

    def client(self: Aws, service: str, region: str = "") -> Any:
        c = made(self, service, region)
        if service == "iam" and not stubs:
            stub = Stubber(c)
            _queue_job(stub, ROLE, sample_response(), polls=0, page_size=4)
            stub.activate()
            stubs.append(stub)
        return c

    monkeypatch.setattr(Aws, "client", client)
    logs = str(ROOT / "samples" / "AWSLogs")
    live, filed = tmp_path / "live.sqlite", tmp_path / "file.sqlite"
    code, out, err = cli(
        "ingest",
        logs,
        "--store",
        str(live),
        "--access-advisor-from-aws",
        ROLE,
        "--endpoint-url",
        aws_endpoint,
    )
    assert (code, err) == (0, "") and "access advisor (from AWS): 1 jobs, 1 reports stored" in out
    stubs[0].assert_no_pending_responses()
    assert (
        cli("ingest", logs, "--store", str(filed), "--access-advisor", str(SAMPLE), "--principal", ROLE)[0]
        == 0
    )
    policies = [cli("generate-policy", ROLE, "--store", str(s))[1] for s in (live, filed)]
    assert policies[0] == policies[1] and policies[0]


def test_cli_access_denied_stores_nothing(
    aws_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = Aws.client

    stubs: list[Stubber] = []

    def client(self: Aws, service: str, region: str = "") -> Any:
        c = made(self, service, region)
        if stubs:
            return c
        stub = Stubber(c)
        stubs.append(stub)
        stub.add_response("generate_service_last_accessed_details", {"JobId": JOB})
        stub.add_client_error(
            "generate_service_last_accessed_details",
            "AccessDenied",
            f"User: arn:aws:sts::444455556666:assumed-role/iamtrim/s is not authorized to perform: "
            f"iam:GenerateServiceLastAccessedDetails on resource: {USER}",
            403,
        )
        stub.activate()
        return c

    monkeypatch.setattr(Aws, "client", client)
    store = tmp_path / "s.sqlite"
    code, out, err = cli(
        "ingest",
        "--store",
        str(store),
        "--access-advisor-from-aws",
        ROLE,
        "--access-advisor-from-aws",
        USER,
        "--endpoint-url",
        aws_endpoint,
    )
    assert code == 3 and out == ""
    assert err == (
        "iamtrim: access denied: iamtrim needs iam:GenerateServiceLastAccessedDetails on "
        f"{USER} (see docs/permissions.md)\n"
    )
    assert not store.exists()
