"""The ingest shortcuts give exactly what the plain path gives.

``fast_parts`` handles the bulk of a trail (successful single-action calls whose ``resources[]``
names the resource) with per-event-name work done once; everything else takes the general path.
``resolve_resources`` shares one answer between requests that differ only in parameters the
answer cannot depend on (``_resolve_request``). Both are checked on every record of the samples,
of a synthetic benchmark trail (bench/make_trail.py, all its shapes), and of the real corpus when
``$IAMTRIM_CORPUS`` is set: records in order, so the learned parameter names grow as in ingest.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from iamtrim.model import Skipped
from iamtrim.normalize import resources
from iamtrim.normalize.actions import resolve_actions
from iamtrim.normalize.record import Normalizer
from iamtrim.sources import iter_input_files, read_file
from iamtrim.sources.records import Record

ROOT = Path(__file__).resolve().parent.parent


def _records(folder: Path) -> list[Record]:
    out: list[Record] = []
    for path, error in iter_input_files([folder]):
        if not error:
            out.extend(read_file(path)[0].records)
    return out


def _check(records: list[Record]) -> int:
    """The fast path of one normalizer against the general path of another (two normalizers in
    one process share no state), each warmed by the records in order, as in ingest."""
    fast = 0
    quick, general = Normalizer(), Normalizer()
    for record in records:
        got = quick.fast_parts(record)
        if got is not None:
            fast += 1
            assert got == general.normalize_parts(record), record
    _check_request_answers(records)
    return fast


def _check_request_answers(records: list[Record]) -> None:
    """Every call answered by its request alone: the shared answer is the one ``_resolve`` gives."""
    resolver = resources.Resolver()
    identity_of = Normalizer().identity_of
    for record in records:
        if record.resources or record.responseElements or record.errorCode:
            continue
        rules = resolve_actions(record.eventSource or "", record.eventName or "")
        principal, _ = identity_of(record)
        if isinstance(rules, Skipped) or isinstance(principal, Skipped):
            continue
        region = record.awsRegion or ""
        account = record.recipientAccountId or principal.account
        for rule in rules:
            args = (rule.action, rule.role, record, region, account, principal.arn)
            assert resolver.resolve_resources(*args) == resources._resolve(*args), (rule, record)


def test_fast_path_matches_on_the_samples() -> None:
    records = _records(ROOT / "samples")
    fast = _check(records)
    assert len(records) > 2000 and fast > len(records) // 3  # the S3 data events and KMS calls


@pytest.mark.parametrize("kind", [[], ["--varied"]], ids=["default", "varied"])
def test_fast_path_matches_on_a_benchmark_trail(tmp_path: Path, kind: list[str]) -> None:
    """Both benchmark trails: the varied one (make_trail.py --varied, issue 14) adds 18 calls of
    other services, random ids in requests and a new object key per request."""
    args = [
        "--records",
        "20000",
        "--files",
        "4",
        "--out",
        str(tmp_path),
        "--procs",
        "1",
        "--seed",
        "3",
        *kind,
    ]
    subprocess.run(
        [sys.executable, str(ROOT / "bench" / "make_trail.py"), *args],
        check=True,
        capture_output=True,
    )
    records = _records(tmp_path / "AWSLogs")
    fast = _check(records)
    assert len(records) == 20000 and fast > 10000


def test_fast_path_matches_on_the_corpus(corpus: Path) -> None:
    records = _records(corpus / "cloudtrail")
    fast = _check(records)
    assert fast > 30  # measured 46: most corpus records carry no resources[]


def _get_partitions(table: str, expression: str, **extra: object) -> Record:
    return Record(
        eventTime="2025-03-04T03:48:42Z",
        eventSource="glue.amazonaws.com",
        eventName="GetPartitions",
        eventType="AwsApiCall",
        awsRegion="eu-west-1",
        recipientAccountId="111122223333",
        requestParameters={"databaseName": "features", "tableName": table, "expression": expression, **extra},
    )


def test_requests_differing_in_unread_parameters_share_one_answer() -> None:
    resolver = resources.Resolver()
    action, args = "glue:GetPartitions", ("eu-west-1", "111122223333")
    first = resolver.resolve_resources(action, "", _get_partitions("users", "dt >= '1'"), *args)
    glue = "arn:aws:glue:eu-west-1:111122223333:"
    assert set(first) == {f"{glue}catalog", f"{glue}database/features", f"{glue}table/features/users"}
    assert "tablename" in resolver.consulted[(action, "")]
    assert "expression" not in resolver.consulted[(action, "")]
    assert len(resolver.projected) == 1
    # Another filter expression: the same answer, from the shared entry (no second one is made).
    assert resolver.resolve_resources(action, "", _get_partitions("users", "dt >= '2'"), *args) == first
    assert len(resolver.projected) == 1
    # Another table is another answer; so is an ARN anywhere in the request.
    other = resolver.resolve_resources(action, "", _get_partitions("items", "dt >= '2'"), *args)
    assert set(other) == {f"{glue}catalog", f"{glue}database/features", f"{glue}table/features/items"}
    with_arn = _get_partitions("users", "dt >= '3'", note=f"{glue}table/raw/events")
    got = resolver.resolve_resources(action, "", with_arn, *args)
    assert got == resources._resolve(action, "", with_arn, *args) != first
    assert len(resolver.projected) == 3
    # Another resolver in the same process holds none of it, and gives the same answers.
    fresh = resources.Resolver()
    assert fresh.resolve_resources(action, "", with_arn, *args) == got
    assert len(fresh.projected) == 1 and len(resolver.projected) == 3


def test_long_requests_and_wildcard_only_calls_are_not_kept_whole() -> None:
    resolver = resources.Resolver()
    action, args = "glue:GetPartitions", ("eu-west-1", "111122223333")
    long_request = _get_partitions("users", "dt >= '1' AND " * 200)
    got = resolver.resolve_resources(action, "", long_request, *args)
    assert got == resources._resolve(action, "", long_request, *args) != ()
    assert not resolver.cache  # shared through the looked-up values instead
    assert len(resolver.projected) == 1
    metrics = Record(
        eventSource="monitoring.amazonaws.com",
        eventName="PutMetricData",
        requestParameters={"namespace": "ml", "metricData": [{"metricName": "m", "value": 1}] * 50},
    )
    assert resolver.resolve_resources("cloudwatch:PutMetricData", "", metrics, *args) == ("*",)
    assert not resolver.cache
