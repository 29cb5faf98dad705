"""Benchmark the reading commands on 1,000,000-record stores of both benchmark trails.

    python bench/query_bench.py                       # both trails, every command, once
    python bench/query_bench.py --kinds varied --repeat 3 --only principals,usage
    python bench/query_bench.py --records 200000 --files 100
    python bench/query_bench.py --store default-10m=/data/store10m.sqlite   # an existing store

For each trail kind (``default``: ``bench/make_trail.py``; ``varied``: ``make_trail.py --varied``, the
high-cardinality account) the trail is generated (or reused, as ``ingest_bench.py`` does) under
``bench/out/trail[-varied]`` and ingested once into ``bench/out/query-<kind>.sqlite``; the store is
kept while its trail is unchanged (``--rebuild`` forces a new one). The ingest that builds it is
timed like ``ingest_bench.py`` does (wall, CPU, peak RSS of the whole process tree).

Then each reading command runs as its own process (``python -m iamtrim ...``, so import time
counts, as a user sees it) and is timed from start to exit, with the peak summed RSS of its
process tree (sampled from /proc every 20 ms) and the kernel's max RSS of the largest process.
The principal asked about is the one with the most usage rows (the hardest per-principal case).
Output goes to ``/dev/null`` but its size and SHA-256 are kept, so two builds can be compared for
identical output. Results: a table, and ``bench/out/query-result.json``. Nothing here is a test.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
OUT = BENCH / "out"
sys.path.insert(0, str(BENCH))

import ingest_bench  # noqa: E402
import make_trail  # noqa: E402
import review_bench  # noqa: E402

MiB = 1024 * 1024

# name → argv after ``python -m iamtrim``; {store}, {principal}, {bucket}, {key}, {authz} filled in.
COMMANDS: dict[str, list[str]] = {
    "principals": ["principals", "--store", "{store}"],
    "principals-json": ["principals", "--store", "{store}", "--format", "json"],
    "principals-window": ["principals", "--store", "{store}", "--since", "{since}", "--until", "{until}"],
    "usage": ["usage", "{principal}", "--store", "{store}", "--format", "json"],
    "usage-table": ["usage", "{principal}", "--store", "{store}"],
    "principals-week": ["principals", "--store", "{store}", "--since", "{week}"],
    "usage-window": ["usage", "{principal}", "--store", "{store}", "--format", "json", "--since", "{since}"],
    "usage-week": ["usage", "{principal}", "--store", "{store}", "--format", "json", "--since", "{week}"],
    "generate-policy": ["generate-policy", "{principal}", "--store", "{store}"],
    "generate-policy-window": ["generate-policy", "{principal}", "--store", "{store}", "--since", "{since}"],
    "generate-policy-week": ["generate-policy", "{principal}", "--store", "{store}", "--since", "{week}"],
    "who-used-bucket": ["who-used", "arn:aws:s3:::{bucket}", "--store", "{store}"],
    "who-used-key": ["who-used", "{key}", "--store", "{store}"],
    "graph-principal": [
        "graph",
        "export",
        "--store",
        "{store}",
        "--principal",
        "{principal}",
        "--format",
        "json",
    ],
    "diff": ["diff", "{principal}", "--store", "{store}", "--authz", "{authz}"],
    "review": ["review", "--store", "{store}", "--authz", "{authz}", "--format", "json"],
}


def build_store(kind: str, args: argparse.Namespace) -> tuple[Path, dict[str, Any]]:
    out = args.dir
    trail = out / ("trail-varied" if kind == "varied" else "trail")
    manifest = ingest_bench.ensure_trail(
        trail, args.records, args.files, args.seed, regen=False, varied=(kind == "varied")
    )
    store = out / f"query-{kind}.sqlite"
    stamp = out / f"query-{kind}.built.json"
    want = {"records": manifest["records"], "files": manifest["files"], "seed": manifest["seed"]}
    if not args.rebuild and store.exists() and stamp.exists():
        built = json.loads(stamp.read_text())
        if built.get("trail") == want:
            print(f"reusing {store}")
            return store, built
    argv = [sys.executable, "-m", "iamtrim", "ingest", str(trail / "AWSLogs"), "--store", str(store)]
    print(f"building {store} ...")
    r = ingest_bench.run_ingest(argv, store, out / f"query-{kind}-ingest.log", 0.05)
    if r["exit_code"] != 0:
        raise SystemExit(f"ingest failed, see {out / f'query-{kind}-ingest.log'}")
    r["records_per_second"] = round(manifest["records"] / r["wall_seconds"])
    built = {"trail": want, "ingest": r, "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    stamp.write_text(json.dumps(built, indent=2) + "\n")
    return store, built


def store_facts(store: Path) -> dict[str, Any]:
    db = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT COUNT(*) FROM usage").fetchone()[0]
        principals = db.execute("SELECT COUNT(DISTINCT principal) FROM usage").fetchone()[0]
        services = db.execute(
            "SELECT COUNT(DISTINCT substr(action, 1, instr(action, ':') - 1)) FROM usage"
        ).fetchone()[0]
        top, top_rows = db.execute(
            "SELECT principal, COUNT(*) n FROM usage GROUP BY principal ORDER BY n DESC, principal LIMIT 1"
        ).fetchone()
        lo, hi = db.execute("SELECT MIN(first_seen), MAX(last_seen) FROM usage").fetchone()
        key = db.execute(
            "SELECT resource FROM usage WHERE resource LIKE 'arn:aws:kms:%:key/%' "
            "GROUP BY resource ORDER BY COUNT(*) DESC, resource LIMIT 1"
        ).fetchone()
    finally:
        db.close()
    return {
        "usage_rows": rows,
        "principals": principals,
        "services": services,
        "top_principal": top,
        "top_principal_rows": top_rows,
        "first_seen": lo,
        "last_seen": hi,
        "kms_key": key[0] if key else "",
        "store_mib": round(store.stat().st_size / MiB, 1),
    }


def run_one(
    argv: list[str], interval: float, env: dict[str, str] | None = None, cwd: Path | None = None
) -> dict[str, Any]:
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=err, env=env, cwd=cwd)
        sampler = ingest_bench.TreeSampler(proc.pid, interval, pss_every=1_000_000)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        sampler.halt.set()
        sampler.join()
        out.seek(0)
        body = out.read()
        err.seek(0)
        tail = err.read().decode(errors="replace").strip().splitlines()[-1:]
    return {
        "exit_code": os.waitstatus_to_exitcode(status),
        "wall_seconds": round(wall, 3),
        "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 3),
        "peak_tree_rss_mib": round(sampler.peak_rss / MiB, 1),
        "max_rss_single_process_mib": round(usage.ru_maxrss / 1024, 1),
        "output_bytes": len(body),
        "output_sha256": hashlib.sha256(body).hexdigest()[:16],
        "stderr_last": tail[0][:200] if tail else "",
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kinds", default="default,varied", help="trail kinds, comma separated")
    ap.add_argument("--records", type=int, default=make_trail.DEFAULT_RECORDS)
    ap.add_argument("--files", type=int, default=make_trail.DEFAULT_FILES)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--dir", type=Path, default=OUT, help="where trails and stores live (default bench/out)")
    ap.add_argument("--rebuild", action="store_true", help="ingest the stores again")
    ap.add_argument(
        "--store",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="time an existing store (e.g. a 10M one from scale_bench.py) under NAME instead of "
        "building the --kinds stores; repeatable",
    )
    ap.add_argument(
        "--only", default="", help="comma-separated command names (default all): " + ", ".join(COMMANDS)
    )
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--interval", type=float, default=0.02, help="RSS sampling interval, seconds")
    ap.add_argument("--code", type=Path, help="run the iamtrim package found in this folder instead")
    ap.add_argument("--label", default="", help="a name for this build in the result file (e.g. a commit)")
    ap.add_argument("--result", type=Path, default=OUT / "query-result.json")
    args = ap.parse_args(argv)
    args.dir = args.dir.resolve()
    args.dir.mkdir(parents=True, exist_ok=True)
    names = [n for n in (args.only.split(",") if args.only else COMMANDS) if n]
    for n in names:
        if n not in COMMANDS:
            raise SystemExit(f"unknown command {n!r}; known: {', '.join(COMMANDS)}")
    env, python_flags, cwd = None, [], None
    if args.code is not None:
        # Another build of iamtrim (e.g. `git archive BASE iamtrim | tar -x -C DIR`): without site
        # processing, so an editable install of this checkout cannot shadow it.
        site_packages = [p for p in sys.path if p.endswith("site-packages")]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(args.code.resolve()), *site_packages])}
        python_flags = ["-S"]
        cwd = args.code.resolve()  # `-m` puts the working directory first on sys.path
    result: dict[str, Any] = json.loads(args.result.read_text()) if args.result.exists() else {}
    result["hardware"] = ingest_bench.hardware()
    label = args.label or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    given: dict[str, Path] = {}
    for item in args.store:
        name, sep, path = item.partition("=")
        if not sep or not name or not Path(path).is_file():
            raise SystemExit(f"--store wants NAME=PATH of an existing store, not {item!r}")
        given[name] = Path(path).resolve()
    for kind in given or args.kinds.split(","):
        if kind in given:
            store, built = given[kind], {"given": str(given[kind])}
        else:
            store, built = build_store(kind, args)
        facts = store_facts(store)
        authz = args.dir / f"query-{kind}-authz.json"
        if not authz.exists():
            review_bench._authz(store, authz)
        fill = {
            "store": str(store),
            "principal": facts["top_principal"],
            "bucket": "acme-ml-datasets",
            "key": facts["kms_key"],
            "authz": str(authz),
            # the last day of the trail: a narrow window
            "since": facts["last_seen"][:10],
            "until": facts["last_seen"][:10],
            # the trail's last seven days (--since alone)
            "week": (dt.date.fromisoformat(facts["last_seen"][:10]) - dt.timedelta(days=6)).isoformat(),
        }
        print(
            f"\n{kind}: {facts['usage_rows']:,} usage rows, {facts['principals']} principals, "
            f"{facts['services']} services, {facts['store_mib']} MiB; principal {facts['top_principal']} "
            f"({facts['top_principal_rows']:,} rows)"
        )
        hdr = f"{'command':<20} {'wall s':>8} {'cpu s':>7} {'tree RSS MiB':>12} {'out bytes':>10}  sha256"
        print(hdr)
        print("-" * len(hdr))
        runs: dict[str, list[dict[str, Any]]] = {}
        for n in names:
            cmd = [sys.executable, *python_flags, "-m", "iamtrim", *(a.format(**fill) for a in COMMANDS[n])]
            for _ in range(args.repeat):
                r = run_one(cmd, args.interval, env, cwd)
                runs.setdefault(n, []).append(r)
                print(
                    f"{n:<20} {r['wall_seconds']:>8.2f} {r['cpu_seconds']:>7.2f} "
                    f"{r['peak_tree_rss_mib']:>12.1f} "
                    f"{r['output_bytes']:>10,}  {r['output_sha256']}"
                    + ("" if r["exit_code"] in (0, 1) else f"  exit {r['exit_code']}: {r['stderr_last']}")
                )
        result.setdefault(kind, {})
        result[kind]["store"] = {**facts, "built": built}
        result[kind].setdefault("runs", {})[label] = runs
    args.result.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.result}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
