"""Benchmark reading a trail bucket (``ingest s3://…``) against the same files read locally.

    python bench/s3_bench.py                      # 1,000 objects, 3 interleaved rounds
    python bench/s3_bench.py --files 1000 --records 50000 --repeat 3

The trail is made by bench/make_trail.py (in bench/out/s3-trail/, reused while its manifest
matches), uploaded to moto's S3 server started on 127.0.0.1 in its own process, and then read
three ways, local folder and bucket interleaved in each round (the machine is shared: a before
and an after run meet the same load):

* list — ``LocalFiles.list_objects()`` (os.walk + stat) vs ``S3Trail.list_objects()`` (delimiter
  listings by account, region and date, then the day folders, 8 at a time);
* read — every object's bytes, one after another in this process (``source.read``): the
  download alone;
* ingest — ``ingest()`` into an in-memory store with the default workers (downloads in the
  workers, each reading ``S3Trail.read_ahead`` objects ahead on threads), the whole pipeline;
  and the same with ``read_ahead = 0`` (one download at a time per worker), for comparison;
* with ``--spark``: spark ingest — ``ingest_spark()`` (Spark local mode, ``local[2]``) into an
  in-memory store, local folder vs bucket (the driver lists, the executors download with boto3,
  ``read_ahead`` objects ahead per partition); the stores are compared with the local ingest's.

This is moto on localhost: no network latency and no S3 throttling, but moto's own per-request
cost (a Python web server). It measures iamtrim's side of the work, not S3's.
Results are printed and written to bench/out/s3-result.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
OUT = BENCH / "out"
sys.path.insert(0, str(BENCH.parent))
sys.path.insert(0, str(BENCH))

import make_trail  # noqa: E402

from iamtrim.aws import AwsConfig  # noqa: E402
from iamtrim.ingest import ingest  # noqa: E402
from iamtrim.sources.files import MAX_FILE_BYTES  # noqa: E402
from iamtrim.sources.objects import LocalFiles, TrailSource  # noqa: E402
from iamtrim.sources.s3 import S3Trail  # noqa: E402
from iamtrim.store import Store  # noqa: E402

BUCKET = "bench-cloudtrail"
FAKE_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_CONFIG_FILE": "/dev/null",
    "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    "AWS_EC2_METADATA_DISABLED": "true",
}


def trail(files: int, records: int, seed: int) -> Path:
    out = OUT / "s3-trail"
    manifest = out / "manifest.json"
    if manifest.exists():
        m = json.loads(manifest.read_text())
        if (m.get("files"), m.get("records"), m.get("seed")) == (files, records, seed):
            return out
    shutil.rmtree(out, ignore_errors=True)  # another size's files must not stay beside the new ones
    subprocess.run(
        [
            *(sys.executable, str(BENCH / "make_trail.py"), "--out", str(out), "--files", str(files)),
            *("--records", str(records), "--seed", str(seed), "--procs", "1"),
        ],
        check=True,
    )
    return out


def start_moto() -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            urllib.request.urlopen(url + "/moto-api/", timeout=1).close()
            return proc, url
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("moto server did not start")


def upload(endpoint: str, root: Path) -> int:
    import boto3

    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket=BUCKET)
    n = 0
    for path in sorted((root / "AWSLogs").rglob("*.json.gz")):
        s3.put_object(Bucket=BUCKET, Key=path.relative_to(root).as_posix(), Body=path.read_bytes())
        n += 1
    return n


def timed_list(source: TrailSource) -> tuple[float, list[Any]]:
    t = time.perf_counter()
    refs = list(source.list_objects())
    return time.perf_counter() - t, refs


def timed_read(source: TrailSource, refs: list[Any]) -> tuple[float, int]:
    t = time.perf_counter()
    total = 0
    for ref in refs:
        raw, error, _ = source.read(ref, MAX_FILE_BYTES)
        assert not error, error
        total += len(raw)
    return time.perf_counter() - t, total


def timed_ingest(source: TrailSource) -> tuple[float, int, int]:
    t = time.perf_counter()
    with Store(":memory:") as st:
        report = ingest([source], st)
    return time.perf_counter() - t, report.files_read, report.records


def _rows(store: Store) -> list[tuple[Any, ...]]:
    return sorted(
        (r.principal, r.action, r.resource, r.outcome, r.context, r.count, r.first_seen, r.last_seen)
        for r in store.stored_rows()
    )


def timed_spark(source: TrailSource, spark: Any, local: TrailSource) -> tuple[float, int]:
    from iamtrim.engines.spark import ingest_spark

    t = time.perf_counter()
    with Store(":memory:") as st:
        report, _ = ingest_spark([source], st, spark=spark)
        seconds = time.perf_counter() - t
        with Store(":memory:") as ref:
            ingest([local], ref)
            assert _rows(st) == _rows(ref), "the stores differ"
    return seconds, report.files_read


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=1000)
    ap.add_argument("--records", type=int, default=50_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--result", type=Path, default=OUT / "s3-result.json")
    ap.add_argument("--spark", action="store_true", help="also ingest --engine spark (local[2])")
    args = ap.parse_args()
    assert make_trail  # the corpus generator, run as a script above
    os.environ.update(FAKE_ENV)
    root = trail(args.files, args.records, args.seed)
    proc, endpoint = start_moto()
    try:
        n = upload(endpoint, root)
        local = LocalFiles([root / "AWSLogs"])
        bucket = S3Trail(f"s3://{BUCKET}", AwsConfig(endpoint_url=endpoint))
        rows: dict[str, dict[str, list[float]]] = {
            k: {"local": [], "s3": []} for k in ("list", "read", "ingest")
        }
        rows["ingest, no read-ahead"] = {"local": [], "s3": []}
        spark = None
        if args.spark:
            from iamtrim.engines.spark import session

            spark = session("local[2]")  # started after os.environ has the fake credentials
            spark.sparkContext.setLogLevel("ERROR")
            rows["spark ingest"] = {"local": [], "s3": []}
        serial = S3Trail(f"s3://{BUCKET}", AwsConfig(endpoint_url=endpoint))
        serial.read_ahead = 0  # each worker downloads one object at a time (the comparison)
        size = 0
        for r in range(args.repeat):
            for name, source in (("local", local), ("s3", bucket)):
                seconds, refs = timed_list(source)
                assert len(refs) == n, (name, len(refs), n)
                rows["list"][name].append(n / seconds)
                seconds, size = timed_read(source, refs)
                rows["read"][name].append(n / seconds)
                seconds, files, _ = timed_ingest(source)
                assert files == n
                rows["ingest"][name].append(n / seconds)
                if name == "s3":
                    seconds, files, _ = timed_ingest(serial)
                    rows["ingest, no read-ahead"]["s3"].append(n / seconds)
                if spark is not None:
                    seconds, files = timed_spark(source, spark, local)
                    assert files == n
                    rows["spark ingest"][name].append(n / seconds)
                print(f"round {r + 1} {name}: done", file=sys.stderr)
    finally:
        proc.kill()
        proc.wait()
    result = {
        "objects": n,
        "records": args.records,
        "bytes_gz": size,
        "cpus": os.cpu_count(),
        "note": "moto server on 127.0.0.1 (its own process); shared 2-core machine",
        "objects_per_second": {
            k: {name: [round(x) for x in v] for name, v in row.items()} for k, row in rows.items()
        },
    }
    args.result.parent.mkdir(parents=True, exist_ok=True)
    args.result.write_text(json.dumps(result, indent=1) + "\n")
    mb = size / 1e6
    print(f"{n} objects, {args.records:,} records, {mb:.1f} MB gzip; objects/s (median of {args.repeat})")
    print(f"{'':22} {'local':>8} {'s3 (moto)':>10}")
    for k, row in rows.items():
        med = {s: sorted(v)[len(v) // 2] if v else 0.0 for s, v in row.items()}
        print(f"{k:22} {med['local']:8,.0f} {med['s3']:10,.0f}")


if __name__ == "__main__":
    main()
