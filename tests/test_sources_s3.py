"""Trail buckets on S3 (``ingest s3://…``, ``--events s3://…``) against moto's server on 127.0.0.1.

The samples' trail files are uploaded twice: as an account trail (``AWSLogs/ACCOUNT/CloudTrail/…``)
and, encrypted with SSE-KMS, as an organization trail under a key prefix
(``org/AWSLogs/o-ORGID/ACCOUNT/CloudTrail/…``). Every call iamtrim makes is counted through
``iamtrim.aws.observe_calls`` (and checked against docs/permissions.md by tests/awsparts.py).
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from collections import Counter
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from iamtrim import aws as aws_mod
from iamtrim.aws import Aws, AwsConfig
from iamtrim.errors import AwsError, InputError, NoReadableInput
from iamtrim.ingest import ingest, load_events
from iamtrim.sources.objects import ObjectRef
from iamtrim.sources.s3 import S3Trail, parse_s3_uri
from iamtrim.store import Store
from tests.awsparts import NO_CREDENTIAL_VARS

ROOT = Path(__file__).resolve().parent.parent
LOGS = ROOT / "samples" / "AWSLogs"
ACCOUNT = "444455556666"
OTHER = "111122223333"  # a second member account of the organization (copies of the same files)
ORG = "o-a1b2c3d4e5"
TRAIL = "acme-cloudtrail"
ORG_TRAIL = "acme-org-cloudtrail"
N_FILES = sum(1 for p in LOGS.rglob("*.json.gz"))


def cli(*args: str) -> tuple[int, str, str]:
    """The CLI in this process (the call recorder sees its sessions): exit code, out, err."""
    from iamtrim.cli import main

    out, err = io.StringIO(), io.StringIO()
    argv = sys.argv
    sys.argv = ["iamtrim", *args]
    code: Any = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main()
    except SystemExit as exc:
        code = exc.code
    finally:
        sys.argv = argv
    return int(code or 0), out.getvalue(), err.getvalue()


@contextlib.contextmanager
def calls() -> Iterator[Counter[tuple[str, str]]]:
    seen: Counter[tuple[str, str]] = Counter()
    stop = aws_mod.observe_calls(lambda service, op: seen.update([(service, op)]))
    try:
        yield seen
    finally:
        stop()


@pytest.fixture
def buckets(aws_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The account trail and the SSE-KMS organization trail in moto; the endpoint for boto3
    sessions made without --endpoint-url ($AWS_ENDPOINT_URL_S3, as for --events)."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", aws_endpoint)
    s3 = boto3.client("s3", endpoint_url=aws_endpoint, region_name="us-east-1")
    kms = boto3.client("kms", endpoint_url=aws_endpoint, region_name="us-east-1")
    key = kms.create_key(Description="trail key")["KeyMetadata"]["Arn"]
    s3.create_bucket(Bucket=TRAIL)
    s3.create_bucket(Bucket=ORG_TRAIL)
    for path in sorted(LOGS.rglob("*.json.gz")):
        rel = path.relative_to(LOGS.parent).as_posix()  # AWSLogs/ACCOUNT/CloudTrail/...
        data = path.read_bytes()
        s3.put_object(Bucket=TRAIL, Key=rel, Body=data)
        org_key = "org/" + rel.replace("AWSLogs/", f"AWSLogs/{ORG}/", 1)
        for key_name in (org_key, org_key.replace(ACCOUNT, OTHER)):
            s3.put_object(
                Bucket=ORG_TRAIL, Key=key_name, Body=data, ServerSideEncryption="aws:kms", SSEKMSKeyId=key
            )
    # Beside the logs, as in a real bucket: digests and another tool's files are never read.
    s3.put_object(
        Bucket=TRAIL, Key=f"AWSLogs/{ACCOUNT}/CloudTrail-Digest/us-east-1/2026/10/01/d.json.gz", Body=b"x"
    )
    s3.put_object(Bucket=TRAIL, Key="athena-results/q.csv", Body=b"x")
    head = s3.head_object(Bucket=ORG_TRAIL, Key=org_key)
    assert head["ServerSideEncryption"] == "aws:kms"
    return aws_endpoint


def local_files(region: str, first: int, last: int) -> int:
    """The samples' trail files of *region* in the day folders 2026-10-FIRST to LAST."""
    folder = LOGS / ACCOUNT / "CloudTrail" / region / "2026" / "10"
    return sum(1 for p in folder.rglob("*.json.gz") if first <= int(p.parent.name) <= last)


def rows(st: Store) -> list[tuple[object, ...]]:
    return sorted((r.principal, r.action, r.resource, r.outcome, r.count, r.first_seen) for r in st.usage())


def test_parse_s3_uri() -> None:
    assert parse_s3_uri("s3://b-1/") == ("b-1", "")
    assert parse_s3_uri("s3://b-1/a/b") == ("b-1", "a/b/")
    with pytest.raises(InputError, match="not a valid S3 bucket name"):
        parse_s3_uri("s3://Bad_Bucket/x")


def test_an_account_trail_lists_like_the_local_folder(buckets: str) -> None:
    trail = S3Trail(f"s3://{TRAIL}", AwsConfig(endpoint_url=buckets))
    with calls() as seen:
        refs = list(trail.list_objects())
    assert [r.uri for r in refs] == sorted(
        f"s3://{TRAIL}/{p.relative_to(LOGS.parent).as_posix()}" for p in LOGS.rglob("*.json.gz")
    )
    assert all(r.etag.startswith('"') and r.size > 0 and r.mtime_ns > 0 and not r.error for r in refs)
    # Level by level: AWSLogs/ probe, accounts, CloudTrail/, 2 regions, their years, months, and
    # the 17 day folders (3 eu-west-1 + 14 us-east-1). No GetObject while listing.
    assert seen == Counter({("s3", "ListObjectsV2"): 1 + 1 + 1 + 1 + 2 + 2 + 2 + 17})


def test_only_the_day_folders_in_range_are_listed(buckets: str) -> None:
    trail = S3Trail(
        f"s3://{TRAIL}",
        AwsConfig(endpoint_url=buckets),
        regions=["us-east-1"],
        since=date(2026, 10, 3),
        until=date(2026, 10, 4),
    )
    with calls() as seen:
        refs = list(trail.list_objects())
    # Days 3 and 4, and the 5th (a file delivered after midnight holds the 4th's last events).
    days = {"us-east-1/2026/10/03", "us-east-1/2026/10/04", "us-east-1/2026/10/05"}
    assert {r.uri.split("/CloudTrail/")[1][:20] for r in refs} == days
    assert len(refs) == local_files("us-east-1", 3, 5)
    assert seen == Counter({("s3", "ListObjectsV2"): 1 + 1 + 1 + 1 + 1 + 1 + 1 + 3})


def test_an_organization_trail_under_a_prefix_filters_accounts(buckets: str) -> None:
    config = AwsConfig(endpoint_url=buckets)
    every = list(S3Trail(f"s3://{ORG_TRAIL}/org", config).list_objects())
    assert len(every) == 2 * N_FILES
    assert {r.uri.split("/")[6] for r in every} == {ACCOUNT, OTHER}
    one = list(S3Trail(f"s3://{ORG_TRAIL}/org", config, accounts=[OTHER]).list_objects())
    assert len(one) == N_FILES and all(f"/{ORG}/{OTHER}/CloudTrail/" in r.uri for r in one)
    # A prefix deep in the layout is placed in it: the region folder of one account.
    deep = f"s3://{ORG_TRAIL}/org/AWSLogs/{ORG}/{ACCOUNT}/CloudTrail/eu-west-1/"
    assert len(list(S3Trail(deep, config).list_objects())) == local_files("eu-west-1", 1, 31)
    # ... and a prefix the filters exclude lists nothing, and says so.
    (none,) = S3Trail(deep, config, regions=["us-east-1"]).list_objects()
    assert none.error.startswith("no log folder under this prefix for region us-east-1")


def test_ingest_s3_equals_the_local_ingest_and_a_rerun_downloads_nothing(
    buckets: str, tmp_path: Path
) -> None:
    with Store(":memory:") as local:
        ingest([LOGS], local, workers=1)
        expected = rows(local)
        coverage = local.coverage()
    with Store(tmp_path / "s.sqlite") as st:
        trail = S3Trail(f"s3://{TRAIL}", AwsConfig(endpoint_url=buckets))
        with calls() as seen:
            first = ingest([trail], st, workers=1)
        assert (first.files_read, first.files_already) == (N_FILES, 0)
        assert seen[("s3", "GetObject")] == N_FILES
        assert rows(st) == expected and st.coverage() == coverage
        assert all(f.path.startswith(f"s3://{TRAIL}/AWSLogs/") and f.etag for f in st.files())
        with calls() as seen:
            again = ingest([S3Trail(f"s3://{TRAIL}", AwsConfig(endpoint_url=buckets))], st, workers=1)
        assert seen[("s3", "GetObject")] == 0 and seen[("s3", "ListObjectsV2")] > 0
        assert (again.files_read, again.files_already, again.records) == (0, N_FILES, 0)
        assert rows(st) == expected


def test_workers_read_an_sse_kms_organization_trail(buckets: str) -> None:
    """Two worker processes (each with its own client), SSE-KMS objects, and the same bytes in two
    accounts' folders: counted once, as the local ingest counts them."""
    with Store(":memory:") as local:
        ingest([LOGS], local, workers=1)
        expected = rows(local)
    with Store(":memory:") as st:
        report = ingest([S3Trail(f"s3://{ORG_TRAIL}/org", AwsConfig(endpoint_url=buckets))], st, workers=2)
        assert (report.files_read, report.files_already) == (N_FILES, N_FILES)
        assert rows(st) == expected


@pytest.mark.parametrize("uri", [f"s3://{TRAIL}", f"s3://{ORG_TRAIL}/org"], ids=["trail", "org-trail"])
def test_generate_policy_events_s3_is_byte_identical_to_local(buckets: str, uri: str) -> None:
    code, local, err = cli("generate-policy", "ml-training-job", "--events", str(LOGS))
    assert code == 0, err
    code, live, err = cli("generate-policy", "ml-training-job", "--events", uri)
    assert code == 0, err
    assert live == local and '"Statement"' in live


def test_usage_events_s3_matches_local(buckets: str) -> None:
    local = cli("usage", "ml-training-job", "--events", str(LOGS), "--format", "json")
    live = cli("usage", "ml-training-job", "--events", f"s3://{TRAIL}", "--format", "json")
    assert live == local and local[0] == 0


def test_cli_ingest_s3_with_filters_and_rerun(buckets: str, tmp_path: Path) -> None:
    store = str(tmp_path / "s.sqlite")
    # One worker: GetObject is then made in this process, where the call counter is.
    args = ["ingest", f"s3://{ORG_TRAIL}/org", "--store", store, "--endpoint-url", buckets, "--workers", "1"]
    args += ["--account", ACCOUNT, "--region", "us-east-1", "--since", "2026-10-10", "--until", "2026-10-12"]
    with calls() as seen:
        code, out, err = cli(*args)
    assert code == 0, err
    n = local_files("us-east-1", 10, 13)  # the 10th to the day after the 12th
    assert n < N_FILES and f"files: {n} read, 0 already ingested, 0 with problems" in out
    assert seen[("s3", "GetObject")] == n
    with calls() as seen:
        code, out, err = cli(*args)
    assert code == 0 and seen[("s3", "GetObject")] == 0
    assert f"files: 0 read, {n} already ingested" in out


def _store_with_local(tmp_path: Path) -> tuple[str, int]:
    store = tmp_path / "s.sqlite"
    with Store(store) as st:
        ingest([LOGS / ACCOUNT / "CloudTrail" / "eu-west-1"], st, workers=1)
        return str(store), len(st.files())


def test_a_missing_bucket_is_one_line_exit_3_and_the_store_is_untouched(buckets: str, tmp_path: Path) -> None:
    store, n = _store_with_local(tmp_path)
    code, _out, err = cli("ingest", "s3://no-such-trail-bucket", "--store", store, "--endpoint-url", buckets)
    assert code == 3 and err == "iamtrim: no such bucket: no-such-trail-bucket\n"
    with Store(store) as st:
        assert len(st.files()) == n


def test_no_credentials_is_one_line_exit_3(
    buckets: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, n = _store_with_local(tmp_path)
    for var in NO_CREDENTIAL_VARS:
        monkeypatch.delenv(var, raising=False)
    code, _, err = cli("ingest", f"s3://{TRAIL}", "--store", store, "--endpoint-url", buckets)
    assert code == 3 and len(err.splitlines()) == 1 and "no AWS credentials found" in err
    code, _out, err = cli("generate-policy", "ml-training-job", "--events", f"s3://{TRAIL}")
    assert code == 3 and "no AWS credentials found" in err and "Traceback" not in err
    with Store(store) as st:
        assert len(st.files()) == n


def _stubbed(trail: S3Trail, endpoint: str) -> tuple[Aws, Any]:
    aws = Aws(AwsConfig(endpoint_url=endpoint))
    trail._aws, trail._pid = aws, os.getpid()  # the source's seam: its Aws for this process
    return aws, aws.client("s3")


def test_access_denied_on_listing_names_s3_list_bucket(buckets: str) -> None:
    trail = S3Trail(f"s3://{TRAIL}/AWSLogs/{ACCOUNT}/CloudTrail/us-east-1/2026/10/01")
    _, client = _stubbed(trail, buckets)
    with Stubber(client) as stub, pytest.raises(AwsError) as info:
        stub.add_client_error("list_objects_v2", "AccessDenied", "Access Denied", 403)
        list(trail.list_objects())
    assert str(info.value) == (
        f"access denied: iamtrim needs s3:ListBucket on arn:aws:s3:::{TRAIL} (see docs/permissions.md)"
    )


def test_access_denied_by_the_trail_key_names_kms_decrypt(buckets: str, tmp_path: Path) -> None:
    trail = S3Trail(f"s3://{TRAIL}/AWSLogs/{ACCOUNT}/CloudTrail/us-east-1/2026/10/01")
    refs = list(trail.list_objects())
    assert refs and not refs[0].error
    _, client = _stubbed(trail, buckets)
    key = refs[0].uri.removeprefix(f"s3://{TRAIL}/")
    message = (
        "User: arn:aws:sts::444455556666:assumed-role/iamtrim-reader/iamtrim is not authorized to "
        "perform: kms:Decrypt on resource: arn:aws:kms:us-east-1:444455556666:key/k1 because no "
        "identity-based policy allows the kms:Decrypt action"
    )

    class Listed:  # the trail's listing, done above; its reading through the stubbed client
        def list_objects(self) -> Iterator[ObjectRef]:
            return iter(refs)

        def read(self, ref: ObjectRef, max_bytes: int) -> tuple[bytes, str, ObjectRef]:
            return trail.read(ref, max_bytes)

    with Store(tmp_path / "s.sqlite") as st, Stubber(client) as stub:
        stub.add_client_error(
            "get_object", "AccessDenied", message, 403, expected_params={"Bucket": TRAIL, "Key": key}
        )
        with pytest.raises(AwsError) as info:
            ingest([Listed()], st, workers=1)
        assert st.files() == [] and st.usage() == []
    assert str(info.value) == (
        f"access denied: iamtrim needs kms:Decrypt (for s3:GetObject on arn:aws:s3:::{TRAIL}/{key}) "
        "(see docs/permissions.md)"
    )


def test_an_object_over_the_size_limit_is_reported_not_read(buckets: str) -> None:
    trail = S3Trail(f"s3://{TRAIL}", AwsConfig(endpoint_url=buckets), regions=["eu-west-1"])
    with calls() as seen, Store(":memory:") as st, pytest.raises(NoReadableInput) as info:
        ingest([trail], st, workers=1, max_file_bytes=100)
    assert str(info.value).count("larger than the 100 bytes limit for one file: not read") == 3
    assert seen[("s3", "GetObject")] == 0


def test_events_s3_needs_no_store(buckets: str) -> None:
    with load_events([S3Trail(f"s3://{TRAIL}", AwsConfig())], workers=1) as st:
        assert len(st.files()) == N_FILES


# -- the policy docs/sources.md gives iamtrim's role, judged by the IAM oracle ---------------------

SOURCES_DOC = ROOT / "docs" / "sources.md"
READER_ROLE = "arn:aws:iam::123456789012:role/iamtrim-trail-reader"  # moto's default account


def documented_reader_policy(bucket: str, prefix: str, region: str, account: str, key_id: str) -> Any:
    import json
    import re

    section = SOURCES_DOC.read_text().split("### The policy iamtrim's role needs", 1)[1]
    block = re.search(r"```json\n(.*?)\n```", section, re.S)
    assert block is not None
    text = block.group(1)
    for placeholder, value in (
        ("TRAIL-BUCKET", bucket),
        ("PREFIX/", prefix),
        ("REGION", region),
        ("ACCOUNT", account),
        ("KEY-ID", key_id),
    ):
        text = text.replace(placeholder, value)
    return json.loads(text)


@pytest.mark.oracle
def test_the_documented_reader_policy_allows_every_request_an_s3_ingest_makes(buckets: str) -> None:
    """Every request of an organization-trail ingest (listings with their prefixes, downloads, and
    the kms:Decrypt S3 makes for each SSE-KMS object) is allowed by the policy in docs/sources.md,
    as the IAM oracle evaluates it; requests outside the trail's prefix are not."""
    from tests.oracle import require_oracle, run_oracle

    require_oracle()
    made: list[tuple[str, str, dict[str, Any]]] = []
    stop = aws_mod.observe_requests(lambda service, op, params: made.append((service, op, params)))
    try:
        with Store(":memory:") as st:
            ingest([S3Trail(f"s3://{ORG_TRAIL}/org", AwsConfig(endpoint_url=buckets))], st, workers=1)
    finally:
        stop()
    s3 = boto3.client("s3", endpoint_url=buckets, region_name="us-east-1")
    key_arn = s3.head_object(Bucket=ORG_TRAIL, Key=next(p["Key"] for _, op, p in made if op == "GetObject"))[
        "SSEKMSKeyId"
    ]
    account, key_id = key_arn.split(":")[4], key_arn.split("/")[-1]
    policy = documented_reader_policy(ORG_TRAIL, "org/", "us-east-1", account, key_id)
    key_policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{account}:root"},
                "Action": "kms:*",
                "Resource": "*",
            }
        ],
    }
    requests: list[dict[str, Any]] = []
    for service, op, params in made:
        assert (service, op) in {("s3", "ListObjectsV2"), ("s3", "GetObject")}, (service, op)
        if op == "ListObjectsV2":
            requests.append(
                {
                    "principal": READER_ROLE,
                    "action": "s3:ListBucket",
                    "resource": f"arn:aws:s3:::{params['Bucket']}",
                    "context": {"s3:prefix": params.get("Prefix", "")},
                }
            )
        else:
            requests.append(
                {
                    "principal": READER_ROLE,
                    "action": "s3:GetObject",
                    "resource": f"arn:aws:s3:::{params['Bucket']}/{params['Key']}",
                }
            )
            requests.append(  # S3 decrypting the object with the caller's permission on the key
                {
                    "principal": READER_ROLE,
                    "action": "kms:Decrypt",
                    "resource": key_arn,
                    "context": {"kms:ViaService": "s3.us-east-1.amazonaws.com"},
                    "resourcePolicy": key_policy,
                }
            )
    n_made = len(requests)
    assert len({r["resource"] for r in requests if r["action"] == "s3:GetObject"}) == 2 * N_FILES
    outside = [
        {
            "principal": READER_ROLE,
            "action": "s3:ListBucket",
            "resource": f"arn:aws:s3:::{ORG_TRAIL}",
            "context": {"s3:prefix": ""},
        },
        {
            "principal": READER_ROLE,
            "action": "s3:GetObject",
            "resource": f"arn:aws:s3:::{ORG_TRAIL}/athena-results/q.csv",
        },
        {
            "principal": READER_ROLE,
            "action": "kms:Decrypt",
            "resource": key_arn,
            "context": {"kms:ViaService": "sqs.us-east-1.amazonaws.com"},
            "resourcePolicy": key_policy,
        },
    ]
    results = run_oracle([{"identityPolicies": [policy], "requests": requests + outside}])
    decisions = [r["decision"] for r in results]
    assert decisions[:n_made] == ["Allowed"] * n_made, [
        (q["action"], q["resource"], q.get("context"))
        for q, d in zip(requests, decisions, strict=False)
        if d != "Allowed"
    ][:5]
    assert decisions[n_made:] == ["ImplicitDeny"] * len(outside)


def test_s3_options_are_checked_before_anything_is_read(tmp_path: Path) -> None:
    store = str(tmp_path / "s.sqlite")
    code, _, err = cli("ingest", str(LOGS), "--store", store, "--until", "2026-10-01")
    assert code == 2 and err == "iamtrim: --until and --account go with an s3:// trail\n"
    code, _, err = cli("ingest", f"s3://{TRAIL}", "--store", store, "--account", "1234")
    assert code == 4 and err == "iamtrim: --account '1234': an AWS account id is 12 digits\n"
    code, _, err = cli(
        "ingest", f"s3://{TRAIL}", "--store", store, "--since", "2026-10-05", "--until", "2026-10-01"
    )
    assert code == 4 and err == "iamtrim: --since 2026-10-05 is after --until 2026-10-01\n"
    code, _, err = cli("ingest", f"s3://{TRAIL}", "--store", store, "--until", "October")
    assert code == 2 and "--until 'October': expected YYYY-MM-DD" in err
    assert not Path(store).exists()


def test_cli_ingest_s3_assumes_a_role_in_each_worker(buckets: str, tmp_path: Path) -> None:
    """--role-arn with two worker processes: the parent lists as the role, each worker assumes it
    for its own client (a client is never shared across a fork); the store is the local one."""
    store = tmp_path / "s.sqlite"
    role = "arn:aws:iam::123456789012:role/iamtrim-trail-reader"
    with calls() as seen:
        code, out, err = cli(
            "ingest", f"s3://{TRAIL}", "--store", str(store), "--endpoint-url", buckets,
            "--role-arn", role, "--workers", "2",
        )  # fmt: skip
    assert code == 0, err
    assert f"files: {N_FILES} read, 0 already ingested, 0 with problems" in out
    assert seen[("sts", "AssumeRole")] == 1 and seen[("s3", "GetObject")] == 0  # reads: in the workers
    with Store(":memory:") as local:
        ingest([LOGS], local, workers=1)
        with Store(store) as st:
            assert rows(st) == rows(local)


def test_an_object_deleted_after_the_listing_is_reported_and_the_rest_read(buckets: str) -> None:
    trail = S3Trail(f"s3://{TRAIL}", AwsConfig(endpoint_url=buckets), regions=["eu-west-1"])
    refs = list(trail.list_objects())
    s3 = boto3.client("s3", endpoint_url=buckets, region_name="us-east-1")
    s3.delete_object(Bucket=TRAIL, Key=refs[0].uri.removeprefix(f"s3://{TRAIL}/"))

    class Listed:  # the listing made before the deletion
        def list_objects(self) -> Iterator[ObjectRef]:
            return iter(refs)

        def read(self, ref: ObjectRef, max_bytes: int) -> tuple[bytes, str, ObjectRef]:
            return trail.read(ref, max_bytes)

    with Store(":memory:") as st:
        report = ingest([Listed()], st, workers=1)
    assert report.files_read == len(refs) - 1
    assert report.files_failed == [(refs[0].uri, "deleted since it was listed (NoSuchKey): not read")]
