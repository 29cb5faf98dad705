"""Benchmark ``iamtrim ingest --engine spark`` (local mode) against the local ingest.

    python bench/engines_bench.py --trail bench/out/trail          # 1 run of each, interleaved
    python bench/engines_bench.py --trail bench/out/trail --repeat 2

The trail is bench/make_trail.py's (1,000,000 records in 500 files by default; made if absent).
Runs alternate (local, spark, local, spark, ...) so that a machine whose load changes treats both
alike. Each run starts from an empty store and is timed from process start to exit (Spark's JVM
start included). Spark runs on ``local[N]`` with N = --cores (2 by default, as the local ingest's
workers). After the runs the two stores are compared row for row (usage keys with counts, first and
last seen; coverage; skips): the numbers are only worth printing if the stores are the same.

Results go to bench/out/engines.json and are printed as a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
OUT = BENCH / "out"


def _run(args: list[str], env: dict[str, str]) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(args, capture_output=True, text=True, env=env, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{' '.join(args)} exited {done.returncode}: {done.stderr[-2000:]}")
    return seconds, done.stdout


def _table(path: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as db:
        return sorted(db.execute(sql).fetchall())


def _same(a: Path, b: Path) -> bool:
    queries = (
        "SELECT principal, action, resource, outcome, context, count, first_seen, last_seen FROM usage",
        "SELECT * FROM coverage",
        "SELECT * FROM skips",
        "SELECT * FROM principals",
    )
    return all(_table(a, q) == _table(b, q) for q in queries)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trail", type=Path, default=OUT / "trail", help="folder holding AWSLogs/")
    ap.add_argument("--records", type=int, default=1_000_000, help="records, if the trail is made")
    ap.add_argument("--repeat", type=int, default=1, help="runs of each (interleaved)")
    ap.add_argument("--cores", type=int, default=2, help="local ingest workers and Spark local[N]")
    args = ap.parse_args()
    if not (args.trail / "AWSLogs").is_dir():
        make = [sys.executable, str(BENCH / "make_trail.py"), "--out", str(args.trail)]
        subprocess.run([*make, "--records", str(args.records)], check=True)
    OUT.mkdir(exist_ok=True)
    iamtrim = [sys.executable, "-m", "iamtrim"]
    env = dict(os.environ, IAMTRIM_SPARK_CORES=str(args.cores))
    results: list[dict[str, Any]] = []
    stores = {"local": OUT / "engines-local.sqlite", "spark": OUT / "engines-spark.sqlite"}
    for n in range(args.repeat):
        for engine, store in stores.items():
            store.unlink(missing_ok=True)
            cmd = [*iamtrim, "ingest", str(args.trail / "AWSLogs"), "--store", str(store)]
            cmd += ["--workers", str(args.cores)] if engine == "local" else ["--engine", "spark"]
            seconds, out = _run(cmd, env)
            row: dict[str, Any] = {"run": n + 1, "engine": engine, "wall_s": round(seconds, 1)}
            m = re.search(r"records: (\d+)", out)
            row["records"] = int(m.group(1)) if m else 0
            m = re.search(r"([\d,]+) records reduced to ([\d,]+) rows", out)
            if m:
                row["reduced_rows"] = int(m.group(2).replace(",", ""))
                row["reduction_factor"] = round(int(m.group(1).replace(",", "")) / row["reduced_rows"], 1)
            row["store_mib"] = round(store.stat().st_size / 1024**2, 1)
            results.append(row)
            print(json.dumps(row), flush=True)
    same = _same(stores["local"], stores["spark"])
    load = os.getloadavg()
    (OUT / "engines.json").write_text(
        json.dumps({"runs": results, "same_store": same, "load_average": load, "cores": args.cores}, indent=2)
    )
    print(f"\nsame store: {same}; load average at the end: {load[0]:.1f} on {os.cpu_count()} cores\n")
    print("| run | engine | wall s | records | reduced rows | reduction | store |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['run']} | {r['engine']} | {r['wall_s']} | {r['records']:,} | {r.get('reduced_rows', '')} "
            f"| {r.get('reduction_factor', '')} | {r['store_mib']} MiB |"
        )
    if not same:
        sys.exit("the stores differ: the engine broke the contract (docs/scale.md)")


if __name__ == "__main__":
    main()
