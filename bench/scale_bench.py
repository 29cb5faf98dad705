"""Ingest a large benchmark trail into one store in steps, as an account's days arrive.

    python bench/make_trail.py --records 10000000 --files 5000 --out /data/trail10m
    python bench/scale_bench.py --trail /data/trail10m --store /data/store10m.sqlite --steps 7
    python bench/scale_bench.py --trail /data/trail10m --store /data/store10m.sqlite --steps 7 --from-step 4

The trail's UTC days (the ``YYYY/MM/DD`` folders of ``AWSLogs/<account>/CloudTrail/<region>/``) are
cut into ``--steps`` runs of consecutive days; step *k* runs ``python -m iamtrim ingest`` on the day
folders of its days (every region) into the same store, so each step after the first is an ordinary
incremental ingest of new files. After each step it records: the records ingested so far (the
store's ``files`` table), wall and CPU time of the whole process tree (parent and workers, from
``wait4``), peak summed RSS and PSS of the tree (sampled from /proc, as ``ingest_bench.py`` does:
RSS counts the pages the workers share with the parent after ``fork`` once per process, PSS splits
them) and the kernel's max RSS of its largest process, usage rows, principals and the store's size on disk.
That shows whether memory follows the usage keys or the records, and how the store grows per
million records. ``--from-step`` resumes after an interrupted run (the store is kept; earlier
steps' numbers are read back from the result file). Nothing here is a test.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import ingest_bench  # noqa: E402
import make_trail  # noqa: E402

MiB = 1024 * 1024


def _day(path: str) -> str:
    """``YYYY/MM/DD`` of a trail file's path ``AWSLogs/<account>/CloudTrail/<region>/YYYY/MM/DD/...``."""
    return "/".join(path.split("/")[4:7])


def read_manifest(trail: Path) -> dict[str, Any]:
    """make_trail.py's manifest; for a trail still being written (no manifest yet), its files on disk
    (``--until-day`` then leaves out the day being written)."""
    path = trail / make_trail.MANIFEST
    if path.exists():
        return dict(json.loads(path.read_text()))
    files = sorted(str(p.relative_to(trail)) for p in (trail / "AWSLogs").rglob("*.json.gz"))
    return {"partial": True, "files": len(files), "trail_files": [{"path": f} for f in files]}


def day_groups(manifest: dict[str, Any], steps: int) -> list[list[str]]:
    """The trail's days (``YYYY/MM/DD``), sorted, cut into *steps* runs of consecutive days."""
    days = sorted({_day(f["path"]) for f in manifest["trail_files"]})
    steps = max(1, min(steps, len(days)))
    base, rem = divmod(len(days), steps)
    groups, i = [], 0
    for k in range(steps):
        n = base + (1 if k < rem else 0)
        groups.append(days[i : i + n])
        i += n
    return groups


def step_paths(trail: Path, days: list[str]) -> list[Path]:
    """The day folders of *days* in every region of the trail."""
    regions = sorted(p for p in (trail / "AWSLogs").glob("*/CloudTrail/*") if p.is_dir())
    return [r / d for r in regions for d in days if (r / d).is_dir()]


def store_facts(store: Path) -> dict[str, Any]:
    db = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
    try:
        files, records = db.execute("SELECT COUNT(*), TOTAL(records) FROM files").fetchone()
        rows = db.execute("SELECT COUNT(*) FROM usage").fetchone()[0]
        principals = db.execute("SELECT COUNT(DISTINCT principal) FROM usage").fetchone()[0]
        # Schema 6: the event hashes per day (8 bytes each) and the parts they are kept in.
        hashes = {"event_days": 0, "event_day_parts": 0, "event_hash_mib": 0.0}
        if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'event_days'").fetchone():
            days, parts, size = db.execute(
                "SELECT COUNT(DISTINCT day), COUNT(*), TOTAL(length(hashes)) FROM event_days"
            ).fetchone()
            hashes = {"event_days": days, "event_day_parts": parts, "event_hash_mib": round(size / MiB, 1)}
    finally:
        db.close()
    size = sum(Path(str(store) + s).stat().st_size for s in ("", "-wal") if Path(str(store) + s).exists())
    return {
        "files": files,
        "records": int(records),
        "usage_rows": rows,
        "principals": principals,
        "store_mib": round(size / MiB, 1),
        **hashes,
    }


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return ""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trail", type=Path, required=True, help="make_trail.py's output (AWSLogs/, manifest)")
    ap.add_argument("--store", type=Path, required=True, help="the store (step 1 starts it afresh)")
    ap.add_argument("--steps", type=int, default=7, help="how many incremental ingests (default 7)")
    ap.add_argument("--from-step", type=int, default=1, help="resume at this step (keeps the store)")
    ap.add_argument(
        "--existing",
        action="store_true",
        help="ingest into the store as it is (e.g. new files into a big store)",
    )
    ap.add_argument("--workers", type=int, default=0, help="ingest --workers (default: iamtrim's own)")
    ap.add_argument("--interval", type=float, default=0.1, help="RSS sampling interval, seconds")
    ap.add_argument("--result", type=Path, help="JSON result (default: <store>.steps.json)")
    ap.add_argument("--code", type=Path, help="run the iamtrim package found in this folder instead")
    ap.add_argument("--until-day", default="", help="only the days up to YYYY/MM/DD (a trail being written)")
    args = ap.parse_args(argv)
    args.trail, args.store = args.trail.resolve(), args.store.resolve()  # --code runs elsewhere
    manifest = read_manifest(args.trail)
    if args.until_day:
        manifest["trail_files"] = [f for f in manifest["trail_files"] if _day(f["path"]) <= args.until_day]
    groups = day_groups(manifest, args.steps)
    env, python_flags, cwd = None, [], None
    if args.code is not None:
        # As query_bench.py --code: another build (e.g. `git archive HEAD iamtrim | tar -x -C DIR`),
        # without site processing so an editable install of this checkout cannot shadow it.
        site_packages = [p for p in sys.path if p.endswith("site-packages")]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(args.code.resolve()), *site_packages])}
        python_flags = ["-S"]
        cwd = args.code.resolve()
    result_path = args.result or Path(str(args.store) + ".steps.json")
    result: dict[str, Any] = {
        "trail": {k: v for k, v in manifest.items() if k != "trail_files"},
        "store": str(args.store),
        "hardware": ingest_bench.hardware(),
        "code": str(args.code) if args.code else "this checkout",
        "steps": [],
    }
    if args.from_step > 1 and result_path.exists():
        earlier = json.loads(result_path.read_text())["steps"]
        result["steps"] = [s for s in earlier if s["step"] < args.from_step]
    elif args.from_step == 1 and not args.existing:
        ingest_bench.fresh_store(args.store)
    hdr = (
        f"{'step':>4} {'days':<13} {'records':>11} {'wall s':>8} {'cpu s':>8} {'tree RSS':>9} "
        f"{'largest':>8} {'rows':>9} {'store MiB':>9}  load"
    )
    print(hdr)
    print("-" * len(hdr))
    for k, days in enumerate(groups, 1):
        if k < args.from_step:
            continue
        paths = step_paths(args.trail, days)
        cmd = [sys.executable, *python_flags, "-m", "iamtrim", "ingest", *map(str, paths)]
        cmd += ["--store", str(args.store), "-q"]
        if args.workers:
            cmd += ["--workers", str(args.workers)]
        log = Path(str(args.store) + f".step{k}.log")
        load_before = load_average()
        r = ingest_bench.run_ingest(cmd, args.store, log, args.interval, fresh=False, env=env, cwd=cwd)
        if r["exit_code"] != 0:
            raise SystemExit(f"step {k}: ingest exited {r['exit_code']}, see {log}")
        facts = store_facts(args.store)
        step = {
            "step": k,
            "days": [days[0], days[-1]],
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "load_before": load_before,
            "load_after": load_average(),
            **{n: r[n] for n in ("wall_seconds", "cpu_seconds", "peak_tree_rss_mib")},
            "max_rss_single_process_mib": r["max_rss_single_process_mib"],
            "peak_tree_pss_mib": r["peak_tree_pss_mib"],  # shared pages (fork) counted once
            **facts,
        }
        result["steps"].append(step)
        result_path.write_text(json.dumps(result, indent=2) + "\n")
        print(
            f"{k:>4} {days[0][5:] + '..' + days[-1][5:]:<13} {facts['records']:>11,} "
            f"{r['wall_seconds']:>8.1f} {r['cpu_seconds']:>8.1f} {r['peak_tree_rss_mib']:>9.0f} "
            f"{r['max_rss_single_process_mib']:>8.0f} "
            f"{facts['usage_rows']:>9,} {facts['store_mib']:>9.1f}  {load_before} / {step['load_after']}",
            flush=True,
        )
    print(f"\nwrote {result_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
