"""Access Advisor reports: parsing (corpus examples, the service model's shapes, samples), skips,
storage, and the evidence API generate-policy and diff use."""

from __future__ import annotations

import gzip
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from iamtrim import evidence
from iamtrim.errors import NoReadableInput
from iamtrim.evidence import Evidence, ingest_access_advisor
from iamtrim.ingest import ingest
from iamtrim.sources.access_advisor import (
    Granularity,
    LastAccessed,
    normalize_timestamp,
    parse_response,
    read_access_advisor,
)
from iamtrim.store import Store

ACCT = "444455556666"
NOTEBOOK = f"arn:aws:iam::{ACCT}:role/service-role/ml-notebook-execution"
SCIENTIST = f"arn:aws:iam::{ACCT}:role/data-scientist"
CI = f"arn:aws:iam::{ACCT}:user/ci-deployer"


# -- corpus: botocore examples and AWS CLI docs ------------------------------------------------


def _botocore_examples(corpus: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        (corpus / "access-advisor/botocore/iam_examples_last_accessed.json").read_text()
    )
    return data


def test_botocore_service_last_accessed_example(corpus: Path) -> None:
    example = _botocore_examples(corpus)["GetServiceLastAccessedDetails"][0]
    read = parse_response(example["output"])
    assert not read.skipped
    assert read.kind == "service-last-accessed"
    assert read.generated_at == "2018-10-24T19:47:35Z"
    # A policy report (TotalAuthenticatedEntities 2): the accessed service goes to the entity AWS
    # named; the never-accessed one speaks for no single principal and is not attributed.
    assert read.entries == [
        LastAccessed(
            "arn:aws:iam::123456789012:user/AWSExampleUser01",
            "iam",
            "",
            "2018-10-24T19:11:00Z",
            "",
            "arn:aws:iam::123456789012:user/AWSExampleUser01",
            "",
            Granularity.SERVICE,
            "2018-10-24T19:47:35Z",
        )
    ]
    assert any("not attributed" in n for n in read.notes)


def test_botocore_example_with_the_policy_as_principal(corpus: Path) -> None:
    example = _botocore_examples(corpus)["GetServiceLastAccessedDetails"][0]
    policy = example["input"].get("Arn") or "arn:aws:iam::123456789012:policy/ExamplePolicy1"
    read = parse_response(example["output"], principal=policy)
    assert [(e.principal, e.service, e.report) for e in read.entries] == [
        ("arn:aws:iam::123456789012:user/AWSExampleUser01", "iam", policy)
    ]


def test_botocore_with_entities_example(corpus: Path) -> None:
    example = _botocore_examples(corpus)["GetServiceLastAccessedDetailsWithEntities"][0]
    read = parse_response(example["output"], service=example["input"]["ServiceNamespace"])
    assert not read.skipped
    assert [(e.principal, e.service, e.last_accessed, e.granularity) for e in read.entries] == [
        ("arn:aws:iam::123456789012:role/AWSExampleRole01", "iam", "", Granularity.ENTITY),
        (
            "arn:aws:iam::123456789012:user/AWSExampleUser01",
            "iam",
            "2018-10-24T19:10:00Z",
            Granularity.ENTITY,
        ),
    ]


def test_with_entities_without_a_service_is_skipped(corpus: Path) -> None:
    example = _botocore_examples(corpus)["GetServiceLastAccessedDetailsWithEntities"][0]
    read = parse_response(example["output"], path="report.json")
    assert read.skipped.startswith("with-entities response does not say its service")


def _rst_output(path: Path) -> tuple[str, dict[str, Any]]:
    """The command and the JSON after ``Output::`` in an AWS CLI example page. The docs abbreviate
    with ``...`` and leave a trailing comma: cleaned here, nothing else changed."""
    text = path.read_text()
    command = text.split("::", 1)[1].split("Output::")[0]
    block = text.split("Output::", 1)[1]
    lines = []
    for line in block.splitlines()[1:]:
        if line.strip() and not line.startswith("    "):
            break
        lines.append(line)
    body = "\n".join(line for line in lines if line.strip() != "...")
    body = re.sub(r",(\s*[\]}])", r"\1", body)
    return command, json.loads(body)


def test_awscli_get_service_last_accessed_details(corpus: Path) -> None:
    _, output = _rst_output(corpus / "access-advisor/awscli_examples/get-service-last-accessed-details.rst")
    read = parse_response(output)
    assert not read.skipped, read.skipped
    assert read.generated_at == "2019-10-01T03:50:35Z"  # no JobCompletionDate in the docs' copy
    assert any("JobCreationDate" in n for n in read.notes)
    # TotalAuthenticatedEntities 6: not a single principal's report, the accessor gets the fact.
    assert [(e.principal, e.service, e.last_accessed) for e in read.entries] == [
        ("arn:aws:iam::123456789012:user/admin", "lambda", "2019-09-30T23:02:00Z")
    ]


def test_awscli_with_entities_takes_the_service_from_the_command(corpus: Path) -> None:
    command, output = _rst_output(
        corpus / "access-advisor/awscli_examples/get-service-last-accessed-details-with-entities.rst"
    )
    service = re.search(r"--service-namespace\s+(\S+)", command)
    assert service is not None
    read = parse_response(output, service=service.group(1))
    assert [(e.principal, e.last_accessed) for e in read.entries] == [
        ("arn:aws:iam::123456789012:user/admin", "2019-09-30T23:02:00Z"),
        ("arn:aws:iam::123456789012:user/developer", "2019-09-16T19:34:00Z"),
    ]
    assert {e.service for e in read.entries} == {"lambda"}


def test_awscli_generate_output_is_not_a_report(corpus: Path) -> None:
    _, output = _rst_output(
        corpus / "access-advisor/awscli_examples/generate-service-last-accessed-details.rst"
    )
    read = parse_response(output)
    assert read.skipped.startswith("not a GetServiceLastAccessedDetails")


# -- the service model's shapes ----------------------------------------------------------------


def _model(corpus: Path) -> dict[str, Any]:
    with gzip.open(corpus / "access-advisor/botocore/iam-service-2.json.gz") as f:
        data: dict[str, Any] = json.load(f)
    return data


def test_parser_knows_every_member_of_the_response_shapes(corpus: Path) -> None:
    """A new field in the API shows up here first, not as silently ignored evidence."""
    shapes = _model(corpus)["shapes"]
    assert set(shapes["ServiceLastAccessed"]["members"]) == {
        "ServiceName",
        "LastAuthenticated",
        "ServiceNamespace",
        "LastAuthenticatedEntity",
        "LastAuthenticatedRegion",
        "TotalAuthenticatedEntities",
        "TrackedActionsLastAccessed",
    }
    assert set(shapes["TrackedActionLastAccessed"]["members"]) == {
        "ActionName",
        "LastAccessedEntity",
        "LastAccessedTime",
        "LastAccessedRegion",
    }
    assert set(shapes["GetServiceLastAccessedDetailsResponse"]["members"]) == {
        "JobStatus",
        "JobType",
        "JobCreationDate",
        "ServicesLastAccessed",
        "JobCompletionDate",
        "IsTruncated",
        "Marker",
        "Error",
    }
    assert shapes["jobStatusType"]["enum"] == ["IN_PROGRESS", "COMPLETED", "FAILED"]
    assert shapes["AccessAdvisorUsageGranularityType"]["enum"] == ["SERVICE_LEVEL", "ACTION_LEVEL"]


def _build(shapes: dict[str, Any], name: str, values: dict[str, Any]) -> Any:
    """A value of shape *name* with every member filled: from *values* by member name when given,
    else a placeholder of the member's type (timestamps in the CLI's ISO form)."""
    shape = shapes[name]
    kind = shape["type"]
    if kind == "structure":
        return {
            m: values[m] if m in values else _build(shapes, spec["shape"], values)
            for m, spec in shape["members"].items()
        }
    if kind == "list":
        return [_build(shapes, shape["member"]["shape"], values)]
    if kind == "timestamp":
        return "2026-09-01T12:00:00.000Z"
    if kind == "integer":
        return 1
    if kind == "boolean":
        return False
    if "enum" in shape:
        return shape["enum"][0]
    return "x"


def test_action_level_response_built_from_the_model(corpus: Path) -> None:
    shapes = _model(corpus)["shapes"]
    action = _build(
        shapes,
        "TrackedActionLastAccessed",
        {
            "ActionName": "createbucket",
            "LastAccessedEntity": NOTEBOOK,
            "LastAccessedRegion": "eu-west-1",
            "LastAccessedTime": "2026-08-02T07:30:00.000Z",
        },
    )
    unused = {"ActionName": "DeleteBucket"}  # tracked, never attempted: only the name
    service = _build(
        shapes,
        "ServiceLastAccessed",
        {
            "ServiceName": "Amazon S3",
            "ServiceNamespace": "s3",
            "LastAuthenticatedEntity": NOTEBOOK,
            "LastAuthenticatedRegion": "us-east-1",
            "TrackedActionsLastAccessed": [action, unused],
        },
    )
    response = _build(
        shapes,
        "GetServiceLastAccessedDetailsResponse",
        {
            "JobStatus": "COMPLETED",
            "JobType": "ACTION_LEVEL",
            "ServicesLastAccessed": [service],
            "JobCompletionDate": "2026-10-15T08:12:03.512Z",
            "IsTruncated": False,
        },
    )
    read = parse_response(response)
    assert not read.skipped, read.skipped
    assert read.entries == sorted(
        [
            LastAccessed(
                NOTEBOOK,
                "s3",
                "",
                "2026-09-01T12:00:00Z",
                "us-east-1",
                NOTEBOOK,
                "",
                Granularity.SERVICE,
                "2026-10-15T08:12:03Z",
            ),
            # the catalog's casing, whatever the file says
            LastAccessed(
                NOTEBOOK,
                "s3",
                "s3:CreateBucket",
                "2026-08-02T07:30:00Z",
                "eu-west-1",
                NOTEBOOK,
                "",
                Granularity.ACTION,
                "2026-10-15T08:12:03Z",
            ),
            LastAccessed(
                NOTEBOOK, "s3", "s3:DeleteBucket", "", "", "", "", Granularity.ACTION, "2026-10-15T08:12:03Z"
            ),
        ]
    )


def test_truncated_report_is_read_with_a_note(corpus: Path) -> None:
    shapes = _model(corpus)["shapes"]
    response = _build(
        shapes,
        "GetServiceLastAccessedDetailsResponse",
        {
            "JobStatus": "COMPLETED",
            "IsTruncated": True,
            "Error": None,
            "ServicesLastAccessed": [
                {
                    "ServiceName": "AWS Lambda",
                    "ServiceNamespace": "lambda",
                    "LastAuthenticated": "2026-09-01T00:00:00Z",
                    "LastAuthenticatedEntity": CI,
                    "TotalAuthenticatedEntities": 1,
                }
            ],
        },
    )
    read = parse_response(response)
    assert [e.principal for e in read.entries] == [CI]
    assert any(n.startswith("IsTruncated") for n in read.notes)


# -- skips and options -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ([1, 2], "not an Access Advisor response (expected a JSON object)"),
        ({"Records": []}, "not a GetServiceLastAccessedDetails(WithEntities) response"),
        ({"JobId": "abc"}, "not a GetServiceLastAccessedDetails(WithEntities) response"),
        ({"JobStatus": "IN_PROGRESS", "ServicesLastAccessed": []}, "job status IN_PROGRESS"),
        (
            {"JobStatus": "FAILED", "ServicesLastAccessed": [], "Error": {"Code": "X", "Message": "boom"}},
            "job status FAILED: X boom",
        ),
        ({"ServicesLastAccessed": []}, "job status missing"),
        (
            {
                "JobStatus": "COMPLETED",
                "JobCompletionDate": "2026-10-15T00:00:00Z",
                "ServicesLastAccessed": [{"ServiceNamespace": "s3", "ServiceName": "S3"}],
            },
            "the report names no principal",
        ),
    ],
)
def test_skips_are_one_line(data: object, reason: str) -> None:
    read = parse_response(data)
    assert read.skipped.startswith(reason), read.skipped
    assert "\n" not in read.skipped
    assert not read.entries


def _report(*services: dict[str, Any]) -> dict[str, Any]:
    return {
        "JobStatus": "COMPLETED",
        "JobType": "SERVICE_LEVEL",
        "JobCreationDate": "2026-10-15T08:00:00Z",
        "JobCompletionDate": "2026-10-15T08:00:05Z",
        "ServicesLastAccessed": list(services),
    }


def test_principal_option_names_unaccessed_services_and_must_agree_with_the_file() -> None:
    never = {"ServiceName": "Amazon S3", "ServiceNamespace": "s3", "TotalAuthenticatedEntities": 0}
    read = parse_response(_report(never), principal=CI)
    assert [(e.principal, e.service, e.last_accessed) for e in read.entries] == [(CI, "s3", "")]
    used = {
        "ServiceName": "AWS Lambda",
        "ServiceNamespace": "lambda",
        "LastAuthenticated": "2026-10-01T00:00:00Z",
        "LastAuthenticatedEntity": SCIENTIST,
        "TotalAuthenticatedEntities": 1,
    }
    assert parse_response(_report(never, used), principal=CI).skipped.startswith(
        f"report names {SCIENTIST} as its last accessor, not --principal {CI}"
    )
    assert (
        "is not an IAM role, user, group or policy ARN"
        in parse_response(_report(never), principal="ci").skipped
    )
    # a role report needs no option: the role is named by every accessed service
    read = parse_response(_report(never, used))
    assert {e.principal for e in read.entries} == {SCIENTIST}


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        ("2018-10-24T19:47:35.241Z", "2018-10-24T19:47:35Z"),
        ("2019-10-01T03:50:35.929000+00:00", "2019-10-01T03:50:35Z"),
        ("2018-10-24 19:47:35.241000+00:00", "2018-10-24T19:47:35Z"),  # boto3 + json.dumps(default=str)
        ("2026-10-15T10:12:03+02:00", "2026-10-15T08:12:03Z"),
        (1540410455, "2018-10-24T19:47:35Z"),
        ("", ""),
        (None, ""),
        ("yesterday", ""),
        (True, ""),
    ],
)
def test_timestamps(raw: object, want: str) -> None:
    assert normalize_timestamp(raw) == want


def test_gzip_and_unreadable_files(tmp_path: Path) -> None:
    data = _report(
        {
            "ServiceName": "S3",
            "ServiceNamespace": "s3",
            "LastAuthenticated": "2026-10-01T00:00:00Z",
            "LastAuthenticatedEntity": CI,
            "TotalAuthenticatedEntities": 1,
        }
    )
    (tmp_path / "r.json.gz").write_bytes(gzip.compress(json.dumps(data).encode()))
    read, raw = read_access_advisor(tmp_path / "r.json.gz")
    assert not read.skipped and raw
    (tmp_path / "bad.json").write_text("{nope")
    assert read_access_advisor(tmp_path / "bad.json")[0].skipped.startswith("not JSON")
    assert read_access_advisor(tmp_path / "missing.json")[0].skipped.startswith("cannot read")


# -- samples, store and the evidence API -------------------------------------------------------


@pytest.fixture(scope="module")
def sample_store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    samples = Path(__file__).resolve().parent.parent / "samples"
    store = Store(tmp_path_factory.mktemp("aa") / "s.sqlite")
    ingest([samples / "AWSLogs"], store, workers=1)
    report = ingest_access_advisor([samples / "access-advisor"], store)
    assert report.files_read == 4
    assert sorted(Path(p).name for p, _ in report.skipped) == [
        "ml-training-job-failed.json",
        "ml-training-job-in-progress.json",
    ]
    assert report.principals == {NOTEBOOK, SCIENTIST, CI}
    return store


def test_samples_are_stored_with_report_time_region_and_granularity(sample_store: Store) -> None:
    facts = {(f.service, f.action): f for f in sample_store.access_advisor(NOTEBOOK)}
    loc = facts[("s3", "s3:GetBucketLocation")]
    assert (loc.last_accessed, loc.region, loc.generated_at, loc.granularity) == (
        "2026-08-27T14:03:00Z",
        "us-east-1",
        "2026-10-15T08:12:03Z",
        Granularity.ACTION,
    )
    assert facts[("s3", "s3:CreateBucket")].last_accessed == ""
    assert facts[("cloudwatch", "")].last_accessed == ""
    # the with-entities file of group deployers took its service from its name (…-lambda.json)
    entity = [f for f in sample_store.access_advisor(CI) if f.granularity is Granularity.ENTITY]
    assert [(f.service, f.last_accessed) for f in entity] == [("lambda", "2026-10-15T13:22:00Z")]
    files = sample_store.access_advisor_files()
    assert {f.kind for f in files} == {"service-last-accessed", "with-entities"}


def test_action_used_before_the_trail_window_is_kept(sample_store: Store) -> None:
    trail_start = evidence.coverage(sample_store).management_window(ACCT)
    assert trail_start is not None and trail_start.first_day == "2026-10-01"
    obs = evidence.classify(sample_store, NOTEBOOK, "s3:GetBucketLocation")
    assert obs.evidence is Evidence.USED_ACCESS_ADVISOR
    assert obs.last_used < trail_start.first_day and obs.region == "us-east-1"
    assert not obs.removable
    advised = evidence.access_advisor_actions(sample_store, NOTEBOOK, missing_from_cloudtrail=True)
    assert [a.action for a in advised] == ["ec2:DescribeSubnets", "ec2:DescribeVpcs", "s3:GetBucketLocation"]
    assert all(not a.in_cloudtrail and not a.denied_in_cloudtrail for a in advised)


def test_denied_attempts_counted_as_access_are_flagged(sample_store: Store) -> None:
    ev = evidence.for_principal(sample_store, SCIENTIST)
    obs = ev.classify("s3:PutBucketPolicy")
    assert obs.evidence is Evidence.USED_ACCESS_ADVISOR and obs.denied_only
    assert "counts denials as access" in obs.detail
    flagged = {a.action for a in ev.access_advisor_actions() if a.denied_in_cloudtrail}
    assert flagged == {"iam:CreateAccessKey", "s3:PutBucketPolicy"}
    both = [a for a in ev.access_advisor_actions() if a.action == "s3:ListAllMyBuckets"]
    assert both and both[0].in_cloudtrail


def test_classes_on_the_samples(sample_store: Store) -> None:
    nb = evidence.for_principal(sample_store, NOTEBOOK)
    got = {
        a: nb.classify(a)
        for a in (
            "s3:GetObject",
            "s3:CreateBucket",
            "ecr:BatchGetImage",
            "sagemaker:DeleteEndpoint",
            "dynamodb:GetItem",
            "iam:PassRole",
        )
    }
    assert got["s3:GetObject"].evidence is Evidence.USED_CLOUDTRAIL
    # tracked by Access Advisor and never attempted: known for ~400 days before the report
    assert (got["s3:CreateBucket"].evidence, got["s3:CreateBucket"].since) == (
        Evidence.NOT_USED_OBSERVABLE_SINCE,
        "2025-09-10",
    )
    # service never attempted per Access Advisor
    assert got["ecr:BatchGetImage"].since == "2025-09-10" and got["ecr:BatchGetImage"].removable
    # service used inside the trail's window: CloudTrail's window is the evidence
    assert (got["sagemaker:DeleteEndpoint"].evidence, got["sagemaker:DeleteEndpoint"].since) == (
        Evidence.NOT_USED_OBSERVABLE_SINCE,
        "2026-10-01",
    )
    assert got["dynamodb:GetItem"].evidence is Evidence.NOT_OBSERVABLE
    assert got["dynamodb:GetItem"].reason is evidence.NotObservableReason.DATA_EVENTS_ABSENT
    # the trail shows the calls that passed the role (normalization infers iam:PassRole)
    assert got["iam:PassRole"].evidence is Evidence.USED_CLOUDTRAIL
    # a service used before the trail's window: which action is unknown, never removable
    obs = evidence.classify(sample_store, SCIENTIST, "cloudwatch:GetMetricData")
    assert obs.evidence is Evidence.SERVICE_USED_ACTION_UNKNOWN and not obs.removable
    assert "CloudTrail covers only 2026-10-01..2026-10-14" in obs.detail


def test_reingest_counts_nothing_twice(sample_store: Store) -> None:
    samples = Path(__file__).resolve().parent.parent / "samples"
    before = sample_store.access_advisor()
    report = ingest_access_advisor([samples / "access-advisor"], sample_store)
    assert (report.files_read, report.files_already) == (0, 4)
    assert sample_store.access_advisor() == before


def test_nothing_readable_raises(tmp_path: Path) -> None:
    (tmp_path / "x.json").write_text(json.dumps({"JobStatus": "IN_PROGRESS", "ServicesLastAccessed": []}))
    with Store(":memory:") as store, pytest.raises(NoReadableInput, match="IN_PROGRESS"):
        ingest_access_advisor([tmp_path / "x.json"], store)


# -- CLI ---------------------------------------------------------------------------------------


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "iamtrim", *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_cli_ingest_access_advisor_without_paths(tmp_path: Path) -> None:
    samples = Path(__file__).resolve().parent.parent / "samples" / "access-advisor"
    res = _run("ingest", "--store", "s.sqlite", "--access-advisor", str(samples), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "access advisor: 4 reports read, 0 already stored, 2 skipped" in res.stdout
    skipped = [line for line in res.stderr.splitlines() if "skipped:" in line]
    assert len(skipped) == 2 and any("IN_PROGRESS" in line for line in skipped)
    only_bad = _run(
        "ingest",
        "--store",
        "s.sqlite",
        "--access-advisor",
        str(samples / "ml-training-job-failed.json"),
        cwd=tmp_path,
    )
    assert only_bad.returncode == 4 and "job status FAILED" in only_bad.stderr
    assert _run("ingest", "--store", "s.sqlite", cwd=tmp_path).returncode == 2


def test_cli_principal_option(tmp_path: Path) -> None:
    (tmp_path / "r.json").write_text(
        json.dumps(
            _report({"ServiceName": "Amazon S3", "ServiceNamespace": "s3", "TotalAuthenticatedEntities": 0})
        )
    )
    res = _run("ingest", "--store", "s.sqlite", "--access-advisor", "r.json", "--principal", CI, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    with Store(tmp_path / "s.sqlite") as store:
        assert [(f.principal, f.service, f.last_accessed) for f in store.access_advisor()] == [(CI, "s3", "")]
