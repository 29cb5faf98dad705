"""CloudTrail Event history read through ``LookupEvents``: management events of the last 90 days.

* Pages of 50 events (the API's maximum), newest first, followed by ``NextToken``.
  https://docs.aws.amazon.com/awscloudtrail/latest/APIReference/API_LookupEvents.html
* The quota is 2 requests per second per account and region: each region's requests go through a
  token bucket of that rate, and botocore's adaptive retries absorb a throttle that slips through.
  https://docs.aws.amazon.com/awscloudtrail/latest/userguide/WhatIsCloudTrail-Limits.html
* Each region's events are written to a spool file in the AWS CLI's ``lookup-events`` output
  shape (``{"Events": [...]}``, ``CloudTrailEvent`` as a JSON string), which ``ingest`` reads as it
  reads a saved one: an export, never complete coverage (Event history can be filtered and holds
  no data events), deduplicated by event id.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from iamtrim.aws import Aws

__all__ = [
    "HISTORY_DAYS",
    "RATE_PER_SECOND",
    "RegionFetch",
    "TokenBucket",
    "account_of",
    "enabled_regions",
    "fetch_region",
    "regions_for",
    "window",
]

RATE_PER_SECOND = 2.0  # LookupEvents quota per account and region
PAGE_SIZE = 50  # MaxResults upper bound
HISTORY_DAYS = 90  # Event history keeps 90 days


class TokenBucket:
    """At most *rate* acquisitions per second on average, bursts of at most *capacity*."""

    def __init__(
        self,
        rate: float = RATE_PER_SECOND,
        capacity: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rate, self.capacity, self.clock, self.sleep = rate, capacity, clock, sleep
        self.tokens = capacity
        self.stamp = clock()

    def acquire(self) -> None:
        """Take one token, sleeping until one has accrued."""
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens < 1.0:
            wait = (1.0 - self.tokens) / self.rate
            self.sleep(wait)
            # Exactly one token has accrued by now + wait; a longer sleep is credited next time.
            self.tokens, self.stamp = 1.0, now + wait
        self.tokens -= 1.0


@dataclass(frozen=True, slots=True)
class RegionFetch:
    """One region's events in a spool file, and the newest event time seen ('' when none)."""

    region: str
    path: Path
    events: int
    pages: int
    newest: str  # YYYY-MM-DDTHH:MM:SSZ


def account_of(aws: Aws) -> str:
    """The account the credentials act in (``GetCallerIdentity`` needs no permission)."""
    out = aws.call("sts", "GetCallerIdentity")
    assert out is not None
    return str(out["Account"])


def enabled_regions(aws: Aws) -> list[str]:
    """The regions enabled for the account (``DescribeRegions``; opted-out regions are left out:
    calls there fail with an authentication error)."""
    out = aws.call("ec2", "DescribeRegions")
    assert out is not None
    return sorted(str(r["RegionName"]) for r in out.get("Regions", []))


def _iso(value: object) -> str:
    if isinstance(value, datetime):
        when = value if value.tzinfo else value.replace(tzinfo=UTC)
        return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return str(value)


def fetch_region(
    aws: Aws,
    region: str,
    start: datetime,
    end: datetime,
    spool: Path,
    bucket: TokenBucket | None = None,
) -> RegionFetch:
    """Every event of *region* from *start* to *end* (inclusive), paged within the quota, into a
    spool file under *spool*."""
    bucket = bucket or TokenBucket()
    events: list[dict[str, object]] = []
    token = ""
    pages = 0
    newest = ""
    while True:
        bucket.acquire()
        params: dict[str, Any] = {"StartTime": start, "EndTime": end, "MaxResults": PAGE_SIZE}
        if token:
            params["NextToken"] = token
        page = aws.call("cloudtrail", "LookupEvents", region=region, **params)
        assert page is not None
        pages += 1
        for e in page.get("Events", []):
            when = _iso(e.get("EventTime"))
            newest = max(newest, when)
            events.append({**e, "EventTime": when})
        token = str(page.get("NextToken") or "")
        if not token:
            break
    spool.mkdir(parents=True, exist_ok=True)
    path = spool / f"lookup-events-{region}-{start:%Y%m%dT%H%M%SZ}-{end:%Y%m%dT%H%M%SZ}.json"
    path.write_text(json.dumps({"Events": events}, default=str))
    return RegionFetch(region, path, len(events), pages, newest)


def window(since: datetime | None, cursor: str, now: datetime) -> datetime:
    """Where a region's lookup starts: the later of --since, the last stored event (events at that
    very second are read again and deduplicated by id) and the 90 days Event history keeps."""
    start = now - timedelta(days=HISTORY_DAYS)
    if since is not None:
        start = max(start, since)
    if cursor:
        start = max(start, datetime.fromisoformat(cursor.replace("Z", "+00:00")))
    return start


def regions_for(aws: Aws, regions: Sequence[str], all_regions: bool) -> list[str]:
    if all_regions:
        return enabled_regions(aws)
    return sorted(set(regions)) or [aws.region()]
