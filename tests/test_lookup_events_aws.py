"""Event history through LookupEvents, with botocore's Stubber (moto does not implement it).

Pages are the repository's sample ``lookup-events`` output (``samples/other-formats``) in the
shape the API returns it (``EventTime`` a datetime, ``NextToken`` between pages). What is stored
must equal what ingesting the same output saved to a file stores.
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.stub import ANY, Stubber

from iamtrim.aws import Aws, AwsConfig
from iamtrim.sources.lookup_events_aws import PAGE_SIZE, TokenBucket, fetch_region, window
from iamtrim.store import Store
from tests.test_aws import READER, cli

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "samples" / "other-formats" / "lookup-events.json"
ACCOUNT = "444455556666"


def sample_events() -> list[dict[str, Any]]:
    events = json.loads(SAMPLE.read_text())["Events"]
    for e in events:
        e["EventTime"] = datetime.fromisoformat(e["EventTime"])
    # LookupEvents returns the newest first.
    return sorted(events, key=lambda e: e["EventTime"], reverse=True)


def sample_pages(size: int) -> list[dict[str, Any]]:
    events = sample_events()
    out = []
    for i in range(0, len(events), size):
        page: dict[str, Any] = {"Events": copy.deepcopy(events[i : i + size])}
        if i + size < len(events):
            page["NextToken"] = f"token-{i + size}"
        out.append(page)
    return out


def queue(stub: Stubber, pages: list[dict[str, Any]], start: Any = ANY) -> None:
    for i, page in enumerate(pages):
        params: dict[str, Any] = {"StartTime": start, "EndTime": ANY, "MaxResults": PAGE_SIZE}
        if i:
            params["NextToken"] = pages[i - 1]["NextToken"]
        stub.add_response("lookup_events", page, params)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_token_bucket_keeps_two_requests_per_second() -> None:
    t = FakeClock()
    bucket = TokenBucket(clock=t.clock, sleep=t.sleep)
    for _ in range(11):
        bucket.acquire()
    # The first request goes at once; ten more take five seconds, never faster than 2/s.
    assert t.now == pytest.approx(5.0) and all(s <= 0.5 + 1e-9 for s in t.slept)
    t.now += 60  # idle: the bucket holds one token, not 120
    bucket.acquire()
    bucket.acquire()
    assert t.slept[-1] == pytest.approx(0.5)


def test_fetch_region_pages_within_the_bucket(aws_endpoint: str, tmp_path: Path) -> None:
    aws = Aws(AwsConfig(endpoint_url=aws_endpoint))
    pages = sample_pages(10)
    assert len(pages) == 3
    t = FakeClock()
    now = datetime(2026, 10, 20, tzinfo=UTC)
    with Stubber(aws.client("cloudtrail", "us-east-1")) as stub:
        queue(stub, pages, start=now - timedelta(days=1))
        got = fetch_region(
            aws,
            "us-east-1",
            now - timedelta(days=1),
            now,
            tmp_path,
            TokenBucket(clock=t.clock, sleep=t.sleep),
        )
        stub.assert_no_pending_responses()
    assert (got.events, got.pages) == (27, 3)
    assert t.now == pytest.approx(1.0)  # three requests: two waits of half a second
    assert got.newest == max(e["EventTime"] for e in sample_events()).strftime("%Y-%m-%dT%H:%M:%SZ")
    saved = json.loads(got.path.read_text())["Events"]
    assert [e["EventId"] for e in saved] == [e["EventId"] for e in sample_events()]


def test_window_starts_at_the_latest_of_since_cursor_and_90_days() -> None:
    now = datetime(2026, 10, 20, tzinfo=UTC)
    assert window(None, "", now) == now - timedelta(days=90)
    assert window(datetime(2026, 10, 1, tzinfo=UTC), "", now) == datetime(2026, 10, 1, tzinfo=UTC)
    assert window(datetime(2026, 10, 1, tzinfo=UTC), "2026-10-15T13:22:49Z", now) == datetime(
        2026, 10, 15, 13, 22, 49, tzinfo=UTC
    )
    assert window(datetime(2020, 1, 1, tzinfo=UTC), "", now) == now - timedelta(days=90)


class CloudTrailStubs:
    """Each new cloudtrail client the CLI makes answers the next queued list of pages."""

    def __init__(self) -> None:
        self.queued: list[list[dict[str, Any]]] = []
        self.stubs: list[Stubber] = []
        self.clients: set[int] = set()


@pytest.fixture
def stub_cloudtrail(monkeypatch: pytest.MonkeyPatch) -> CloudTrailStubs:
    """The CLI's cloudtrail clients, stubbed on creation; STS (GetCallerIdentity) is moto's."""
    made = Aws.client
    state = CloudTrailStubs()

    def client(self: Aws, service: str, region: str = "") -> Any:
        c = made(self, service, region)
        if service == "cloudtrail" and id(c) not in state.clients:
            state.clients.add(id(c))
            stub = Stubber(c)
            queue(stub, state.queued.pop(0))
            stub.activate()
            state.stubs.append(stub)
        return c

    monkeypatch.setattr(Aws, "client", client)
    return state


def test_cli_lookup_events_stores_an_export_and_resumes(
    aws_endpoint: str, tmp_path: Path, stub_cloudtrail: CloudTrailStubs
) -> None:
    store, filed = tmp_path / "live.sqlite", tmp_path / "file.sqlite"
    options = [
        "--lookup-events",
        "--region",
        "us-east-1",
        "--endpoint-url",
        aws_endpoint,
        "--role-arn",
        READER,
    ]
    stub_cloudtrail.queued.append(sample_pages(20))
    code, out, err = cli("ingest", "--store", str(store), *options)
    assert (code, err) == (0, "")
    assert f"lookup events: {ACCOUNT} us-east-1: 27 events in 2 pages" in out
    assert cli("ingest", str(SAMPLE), "--store", str(filed), "--quiet")[0] == 0
    with Store(store) as live, Store(filed) as saved:
        assert live.usage() == saved.usage()
        assert live.coverage() and not any(row.complete for row in live.coverage())  # an export
        newest = max(e["EventTime"] for e in sample_events()).strftime("%Y-%m-%dT%H:%M:%SZ")
        assert live.lookup_cursor(ACCOUNT, "us-east-1") == newest
        before = live.usage()
    # Second run: starts at the cursor; the events at that second come again and are not recounted.
    stub_cloudtrail.queued.append([{"Events": copy.deepcopy(sample_events()[:1])}])
    code, out, _ = cli("ingest", "--store", str(store), *options)
    assert code == 0 and f"since {newest}" in out and "1 events in 1 pages" in out
    with Store(store) as live:
        assert live.usage() == before
    for stub in stub_cloudtrail.stubs:
        stub.assert_no_pending_responses()


def test_cli_lookup_events_throttled_beyond_retries_is_exit_3(
    aws_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = Aws.client
    stubs: list[Stubber] = []

    def client(self: Aws, service: str, region: str = "") -> Any:
        c = made(self, service, region)
        if service == "cloudtrail" and not stubs:
            stub = Stubber(c)
            stub.add_response("lookup_events", sample_pages(20)[0])
            stub.add_client_error("lookup_events", "ThrottlingException", "Rate exceeded", 400)
            stub.activate()
            stubs.append(stub)
        return c

    monkeypatch.setattr(Aws, "client", client)
    store = tmp_path / "s.sqlite"
    code, out, err = cli(
        "ingest",
        "--store",
        str(store),
        "--lookup-events",
        "--region",
        "us-east-1",
        "--endpoint-url",
        aws_endpoint,
        "--quiet",
    )
    assert (code, out) == (3, "")
    assert (
        err == "iamtrim: cloudtrail:LookupEvents: still throttled after 10 attempts (ThrottlingException); "
        "run again later\n"
    )
    assert not store.exists()


def test_since_without_lookup_events_is_a_usage_error(tmp_path: Path) -> None:
    code, _, err = cli("ingest", str(SAMPLE), "--store", str(tmp_path / "s.sqlite"), "--since", "2026-10-01")
    assert code == 2 and "--since goes with --lookup-events or an s3:// trail" in err


def test_a_store_made_before_lookup_events_has_no_cursor_until_a_run_stores_one(tmp_path: Path) -> None:
    store = tmp_path / "s.sqlite"
    assert cli("ingest", str(SAMPLE), "--store", str(store), "--quiet")[0] == 0
    with Store(store) as st:
        assert st.lookup_cursor(ACCOUNT, "us-east-1") == ""
        st.set_lookup_cursor(ACCOUNT, "us-east-1", "2026-10-15T13:22:49Z")
        st.set_lookup_cursor(ACCOUNT, "us-east-1", "2026-10-01T00:00:00Z")  # never moves back
    with Store(store, read_only=True) as st:
        assert st.lookup_cursor(ACCOUNT, "us-east-1") == "2026-10-15T13:22:49Z"
        assert st.lookup_cursor(ACCOUNT, "eu-west-1") == ""
