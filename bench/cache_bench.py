"""How much one worker's memory grows on made-up event names and sources (hostile input).

    python bench/cache_bench.py                       # 200,000 names + 50,000 sources
    python bench/cache_bench.py --names 50000 --sources 10000

Feeds one ``Normalizer`` records whose eventName (on a real source, ``s3.amazonaws.com``) or
eventSource (``svcN.amazonaws.com``) is new each time, built one at a time so the records
themselves are not held, and prints the process's resident memory before and after, the CPU
seconds, and the entries held by each memo table (the normalizer's, and the catalog's
``lru_cache``s). Every table keyed by record text is bounded (docs/design.md), so the growth
stops at the bounds whatever the count.
"""

from __future__ import annotations

import argparse
import json
import os
import time

from iamtrim import catalog
from iamtrim.normalize import actions, apigateway
from iamtrim.normalize.record import Normalizer
from iamtrim.sources.records import RECORD_DECODER, Record

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE / 2**20


def record(i: int, source: str, name: str) -> Record:
    return RECORD_DECODER.decode(
        json.dumps(
            {
                "eventVersion": "1.09",
                "userIdentity": {
                    "type": "IAMUser",
                    "principalId": "AIDAEXAMPLE",
                    "arn": "arn:aws:iam::111122223333:user/bench",
                    "accountId": "111122223333",
                },
                "eventTime": f"2026-10-01T00:{i // 60 % 60:02d}:{i % 60:02d}Z",
                "eventSource": source,
                "eventName": name,
                "awsRegion": "us-east-1",
                "sourceIPAddress": "10.0.0.5",
                "requestParameters": {"bucketName": "data"},
                "eventID": f"00000000-0000-4000-8000-{i:012d}",
                "eventType": "AwsApiCall",
                "recipientAccountId": "111122223333",
            }
        )
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--names", type=int, default=200_000, help="made-up event names on s3.amazonaws.com")
    ap.add_argument("--sources", type=int, default=50_000, help="made-up event sources")
    args = ap.parse_args()
    n = Normalizer()
    # Warm: the catalog, the data tables and one real call, so the growth is the memo tables'.
    n.normalize_parts(record(0, "s3.amazonaws.com", "ListBuckets"))
    catalog.all_actions()
    start, cpu = rss_mib(), time.process_time()
    for i in range(args.names):
        n.fast_parts(r := record(i, "s3.amazonaws.com", f"GetObjectMadeUp{i}")) or n.normalize_parts(r)
    for i in range(args.sources):
        n.fast_parts(r := record(i, f"svc{i}.amazonaws.com", "GetThing")) or n.normalize_parts(r)
    end, cpu = rss_mib(), time.process_time() - cpu
    held = {
        "canonical_action": catalog.canonical_action.cache_info().currsize,
        "api_operation": catalog.api_operation.cache_info().currsize,
        "apigateway._operations": apigateway._operations.cache_info().currsize,
    }
    for fn in (actions.resolve_actions, actions.prefix_for_source):  # cached module-wide before
        if hasattr(fn, "cache_info"):
            held[fn.__name__] = fn.cache_info().currsize
    if hasattr(n, "sizes"):
        held.update(n.sizes())
    print(f"records: {args.names:,} made-up names + {args.sources:,} made-up sources")
    print(f"RSS: {start:.1f} MiB → {end:.1f} MiB (+{end - start:.1f} MiB); CPU {cpu:.1f} s")
    for table, size in held.items():
        print(f"  {table:<24} {size:>8,}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
