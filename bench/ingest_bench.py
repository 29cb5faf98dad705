"""Benchmark ``iamtrim ingest`` on a synthetic CloudTrail corpus.

    python bench/ingest_bench.py                  # ingest bench/out/trail (generated if absent)
    python bench/ingest_bench.py --repeat 3       # three runs, fresh store each
    python bench/ingest_bench.py --baseline       # raw reading rates for context (no iamtrim)
    python bench/ingest_bench.py --cmd 'python -m mytool {trail} --db {store}'

The trail is made by bench/make_trail.py (1,000,000 records in 500 gzip trail files by default)
and reused while its manifest matches --records/--files/--seed. Each ingest run starts from an empty
store and is timed from process start to exit. Memory is reported three ways: the peak of the
summed RSS and PSS of the whole process tree (sampled from /proc every 50 ms, so worker
processes count), and the largest single-process max RSS the kernel recorded for the child tree
(``wait4`` rusage, the per-child form of ``getrusage(RUSAGE_CHILDREN).ru_maxrss``).

Results are printed as a table and written to bench/out/result.json (the ingest and baseline
sections are kept side by side; running one mode leaves the other section in place).
"""

from __future__ import annotations

import argparse
import gzip
import json
import multiprocessing
import os
import platform
import shlex
import shutil
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
OUT = BENCH / "out"
sys.path.insert(0, str(BENCH))

import make_trail  # noqa: E402

DEFAULT_CMD = "iamtrim ingest {trail} --store {store}"
PAGE = os.sysconf("SC_PAGE_SIZE")
MiB = 1024 * 1024


# --------------------------------------------------------------------------- the corpus


def ensure_trail(
    trail: Path, records: int, files: int, seed: int, regen: bool, varied: bool = False
) -> dict[str, Any]:
    """Return the trail's manifest, generating the trail first when absent or different."""
    mpath = trail / make_trail.MANIFEST
    if not regen and mpath.exists():
        m = json.loads(mpath.read_text())
        want = {"records": records, "files": files, "seed": seed, "varied": varied}
        have = {k: m.get(k, False if k == "varied" else None) for k in want}
        on_disk = sum(1 for _ in (trail / "AWSLogs").rglob("*.json.gz"))
        if have == want and on_disk == files:
            print(f"reusing {trail} ({records:,} records, {files} files)")
            return m
        print(f"trail at {trail} does not match ({have}, {on_disk} files on disk); regenerating")
    if trail.exists():
        shutil.rmtree(trail)
    print(f"generating {records:,} records in {files} files under {trail} ...")
    m = make_trail.generate(records, files, trail, seed, procs=2, varied=varied)
    print(
        f"  done in {m['generation_seconds']:.1f}s: {m['bytes_raw'] / MiB:,.0f} MiB raw, "
        f"{m['bytes_gz'] / MiB:,.0f} MiB gzip ({m['gzip_ratio']}:1), "
        f"avg record {m['avg_record_bytes']:.0f} B"
    )
    return m


def trail_summary(m: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in m.items() if k != "trail_files"}


# --------------------------------------------------------------------------- process-tree memory


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return kids
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                kids.extend(int(x) for x in f.read().split())
        except OSError:
            continue
    return kids


def _children_by_scan(root: int) -> list[int]:
    """Fallback when /proc/<pid>/task/<tid>/children is unavailable: walk every /proc/<pid>/stat."""
    parent: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parent.setdefault(ppid, []).append(int(name))
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(parent.get(p, []))
    return out


_HAS_CHILDREN_FILE = os.path.exists(f"/proc/{os.getpid()}/task/{os.getpid()}/children")


def process_tree(root: int) -> list[int]:
    if not _HAS_CHILDREN_FILE:
        return _children_by_scan(root)
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(_children(p))
    return out


def rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0


def pss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, IndexError, ValueError):
        pass
    return 0


class TreeSampler(threading.Thread):
    """Samples summed RSS and PSS of a process and all its descendants at a fixed interval.

    RSS comes from ``statm`` (a counter the kernel keeps: cheap). PSS comes from ``smaps_rollup``,
    which walks the process's page tables under its memory-map lock, and reading it 20 times a
    second from three processes slowed ingest by ~5 %: it is read every ``pss_every``-th sample.
    """

    def __init__(self, pid: int, interval: float, pss_every: int = 10):
        super().__init__(daemon=True)
        self.pid = pid
        self.interval = interval
        self.pss_every = max(1, pss_every)
        self.halt = threading.Event()
        self.peak_rss = 0
        self.peak_pss = 0
        self.peak_procs = 0
        self.samples = 0

    def run(self) -> None:
        while not self.halt.is_set():
            pids = process_tree(self.pid)
            self.peak_rss = max(self.peak_rss, sum(rss_bytes(p) for p in pids))
            if self.samples % self.pss_every == 0:
                self.peak_pss = max(self.peak_pss, sum(pss_bytes(p) for p in pids))
            self.peak_procs = max(self.peak_procs, len(pids))
            self.samples += 1
            self.halt.wait(self.interval)


# --------------------------------------------------------------------------- ingest runs


def resolve_cmd(template: str, trail: Path, store: Path) -> list[str]:
    argv = shlex.split(template)
    if argv and argv[0] == "iamtrim":
        beside = Path(sys.executable).parent / "iamtrim"
        found = str(beside) if beside.exists() else shutil.which("iamtrim")
        if not found:
            raise SystemExit(
                "iamtrim is not installed in this environment: run `make bench`, or pass "
                "--cmd 'python -m yourmodule {trail} --store {store}'"
            )
        argv[0] = found
    return [a.format(trail=trail, store=store) for a in argv]


def fresh_store(store: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(str(store) + suffix).unlink(missing_ok=True)
    store.parent.mkdir(parents=True, exist_ok=True)


def run_ingest(
    argv: list[str],
    store: Path,
    log: Path,
    interval: float,
    fresh: bool = True,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> dict[str, Any]:
    """Run one ingest (into an empty store unless ``fresh`` is False: an incremental step)."""
    if fresh:
        fresh_store(store)
    with open(log, "wb") as logf:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=logf, stderr=subprocess.STDOUT, env=env, cwd=cwd)
        sampler = TreeSampler(proc.pid, interval)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        sampler.halt.set()
        sampler.join()
    store_bytes = sum(
        Path(str(store) + s).stat().st_size for s in ("", "-wal") if Path(str(store) + s).exists()
    )
    return {
        "exit_code": proc.returncode,
        "wall_seconds": round(wall, 3),
        "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 3),
        "max_rss_single_process_mib": round(usage.ru_maxrss / 1024, 1),  # KiB on Linux
        "peak_tree_rss_mib": round(sampler.peak_rss / MiB, 1),
        "peak_tree_pss_mib": round(sampler.peak_pss / MiB, 1),
        "peak_processes": sampler.peak_procs,
        "rss_samples": sampler.samples,
        "store_mib": round(store_bytes / MiB, 2),
        "log": str(log.relative_to(OUT.parent.parent)) if log.is_relative_to(OUT.parent.parent) else str(log),
    }


def bench_ingest(args: argparse.Namespace, manifest: dict[str, Any]) -> dict[str, Any]:
    target = args.trail / "AWSLogs"
    argv = resolve_cmd(args.cmd, target, args.store)
    print("command:", shlex.join(argv))
    n = manifest["records"]
    runs = []
    for i in range(1, args.repeat + 1):
        r = run_ingest(argv, args.store, OUT / f"ingest-run{i}.log", args.interval)
        r["records_per_second"] = round(n / r["wall_seconds"])
        r["gzip_mib_per_second"] = round(manifest["bytes_gz"] / MiB / r["wall_seconds"], 2)
        runs.append(r)
        if r["exit_code"] != 0:
            tail = Path(OUT / f"ingest-run{i}.log").read_text(errors="replace").splitlines()[-15:]
            print(f"run {i} failed with exit code {r['exit_code']}; last lines of its log:")
            print("\n".join("    " + t for t in tail))
            break
    print()
    hdr = (
        f"{'run':>3}  {'wall s':>8}  {'records/s':>10}  {'cpu s':>7}  {'tree RSS MiB':>12}  "
        f"{'tree PSS MiB':>12}  {'max 1-proc MiB':>14}  {'procs':>5}  {'store MiB':>9}"
    )
    print(hdr)
    print("-" * len(hdr))
    for i, r in enumerate(runs, 1):
        print(
            f"{i:>3}  {r['wall_seconds']:>8.2f}  {r['records_per_second']:>10,}  {r['cpu_seconds']:>7.1f}  "
            f"{r['peak_tree_rss_mib']:>12.1f}  {r['peak_tree_pss_mib']:>12.1f}  "
            f"{r['max_rss_single_process_mib']:>14.1f}  {r['peak_processes']:>5}  {r['store_mib']:>9.2f}"
            + ("" if r["exit_code"] == 0 else f"  (exit {r['exit_code']})")
        )
    ok = [r for r in runs if r["exit_code"] == 0]
    best = min(ok, key=lambda r: r["wall_seconds"]) if ok else None
    return {
        "command": argv,
        "records": n,
        "runs": runs,
        "best_records_per_second": best["records_per_second"] if best else None,
        "best_wall_seconds": best["wall_seconds"] if best else None,
        "peak_tree_rss_mib": max((r["peak_tree_rss_mib"] for r in runs), default=None),
    }


# --------------------------------------------------------------------------- baselines

try:
    from zlib_ng import zlib_ng
except ImportError:  # optional: pip install zlib-ng
    zlib_ng = None
try:
    import msgspec
except ImportError:
    msgspec = None  # type: ignore[assignment]
try:
    import orjson
except ImportError:
    orjson = None

if msgspec is not None:

    class Issuer(msgspec.Struct):
        arn: str | None = None

    class SessionContext(msgspec.Struct):
        sessionIssuer: Issuer | None = None

    class Identity(msgspec.Struct):
        type: str | None = None
        arn: str | None = None
        invokedBy: str | None = None
        sessionContext: SessionContext | None = None

    class Resource(msgspec.Struct):
        ARN: str | None = None
        type: str | None = None

    class Event(msgspec.Struct):
        """The fields a normalizer needs; everything else is skipped by the decoder."""

        eventSource: str
        eventName: str
        eventTime: str
        eventID: str | None = None
        awsRegion: str | None = None
        userIdentity: Identity | None = None
        errorCode: str | None = None
        requestParameters: dict[str, Any] | None = None
        resources: list[Resource] | None = None
        vpcEndpointId: str | None = None
        sourceIPAddress: str | None = None
        recipientAccountId: str | None = None

    class Trail(msgspec.Struct):
        Records: list[Event]

    _TYPED = msgspec.json.Decoder(Trail)
    _GENERIC = msgspec.json.Decoder()


def _b_read(data: bytes) -> int:
    return -1


def _b_zlib(data: bytes) -> int:
    zlib.decompress(data, 31)
    return -1


def _b_zlib_ng(data: bytes) -> int:
    zlib_ng.decompress(data, 31)
    return -1


def _b_gzip_module(data: bytes) -> int:
    gzip.decompress(data)
    return -1


def _b_json(data: bytes) -> int:
    return len(json.loads(zlib.decompress(data, 31))["Records"])


def _b_orjson(data: bytes) -> int:
    return len(orjson.loads(zlib.decompress(data, 31))["Records"])


def _b_msgspec(data: bytes) -> int:
    return len(_GENERIC.decode(zlib.decompress(data, 31))["Records"])


def _b_msgspec_typed(data: bytes) -> int:
    return len(_TYPED.decode(zlib.decompress(data, 31)).Records)


BASELINES: list[tuple[str, str, Callable[[bytes], int], bool]] = [
    # (name, description, per-file function, available)
    ("read", "read .json.gz bytes (page cache)", _b_read, True),
    ("gunzip-gzip", "gzip.decompress (stdlib)", _b_gzip_module, True),
    ("gunzip-zlib", "zlib.decompress (stdlib)", _b_zlib, True),
    ("gunzip-zlib-ng", "zlib_ng.decompress", _b_zlib_ng, zlib_ng is not None),
    ("json", "zlib + json.loads (stdlib)", _b_json, True),
    ("orjson", "zlib + orjson.loads", _b_orjson, orjson is not None),
    ("msgspec-generic", "zlib + msgspec.json.decode (dicts)", _b_msgspec, msgspec is not None),
    ("msgspec-typed", "zlib + msgspec into structs (needed fields)", _b_msgspec_typed, msgspec is not None),
]
_BY_NAME = {b[0]: b[2] for b in BASELINES}


def _one_file(job: tuple[str, str]) -> int:
    name, path = job
    with open(path, "rb") as f:
        data = f.read()
    return _BY_NAME[name](data)


def bench_baseline(args: argparse.Namespace, manifest: dict[str, Any]) -> dict[str, Any]:
    files = manifest["trail_files"][: args.baseline_files or None]
    paths = [str(args.trail / f["path"]) for f in files]
    n = sum(f["records"] for f in files)
    raw = sum(f["bytes_raw"] for f in files)
    for p in paths:  # warm the page cache so the first row is not charged for disk reads
        with open(p, "rb") as f:
            f.read()
    jobs_list = [int(j) for j in args.jobs.split(",")]
    rows = []
    print(f"baselines over {len(paths)} files, {n:,} records, {raw / MiB:,.0f} MiB uncompressed")
    hdr = f"{'baseline':<17} {'what':<45} {'jobs':>4} {'seconds':>8} {'records/s':>10} {'MiB/s raw':>9}"
    print(hdr)
    print("-" * len(hdr))
    for name, desc, _fn, available in BASELINES:
        if not available:
            print(f"{name:<17} {desc:<45} (not importable, skipped)")
            continue
        if args.only and name not in args.only.split(","):
            continue
        for jobs in jobs_list:
            work = [(name, p) for p in paths]
            t0 = time.perf_counter()
            if jobs == 1:
                counts = [_one_file(w) for w in work]
            else:
                with multiprocessing.get_context("fork").Pool(jobs) as pool:
                    counts = list(pool.imap_unordered(_one_file, work, chunksize=2))
            secs = time.perf_counter() - t0
            if counts and counts[0] >= 0 and sum(counts) != n:
                raise SystemExit(f"{name}: decoded {sum(counts)} records, manifest says {n}")
            row = {
                "name": name,
                "what": desc,
                "jobs": jobs,
                "seconds": round(secs, 3),
                "records_per_second": round(n / secs),
                "raw_mib_per_second": round(raw / MiB / secs, 1),
            }
            rows.append(row)
            print(
                f"{name:<17} {desc:<45} {jobs:>4} {secs:>8.2f} {row['records_per_second']:>10,} "
                f"{row['raw_mib_per_second']:>9.1f}",
                flush=True,
            )
    return {
        "files": len(paths),
        "records": n,
        "bytes_raw": raw,
        "rows": rows,
        "versions": {
            "msgspec": getattr(msgspec, "__version__", None),
            "orjson": getattr(orjson, "__version__", None),
            "zlib": zlib.ZLIB_RUNTIME_VERSION,
            "zlib_ng": getattr(zlib_ng, "ZLIBNG_VERSION", None) if zlib_ng else None,
        },
    }


# --------------------------------------------------------------------------- main


def hardware() -> dict[str, Any]:
    model = mem = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = round(int(line.split()[1]) / 1024 / 1024, 1)
                break
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)),
        "cpu_model": model,
        "mem_gib": mem,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--trail", type=Path, default=OUT / "trail", help="corpus directory (default bench/out/trail)"
    )
    ap.add_argument("--store", type=Path, default=OUT / "store.sqlite", help="store file, recreated per run")
    ap.add_argument("--records", type=int, default=make_trail.DEFAULT_RECORDS)
    ap.add_argument("--files", type=int, default=make_trail.DEFAULT_FILES)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--regen", action="store_true", help="regenerate the trail even if it matches")
    ap.add_argument(
        "--varied", action="store_true", help="the high-cardinality trail (make_trail.py --varied)"
    )
    ap.add_argument(
        "--cmd",
        default=DEFAULT_CMD,
        help=f"ingest command; {{trail}} and {{store}} are filled in (default: {DEFAULT_CMD!r})",
    )
    ap.add_argument("--repeat", type=int, default=1, help="ingest runs (fresh store each)")
    ap.add_argument("--interval", type=float, default=0.05, help="RSS sampling interval, seconds")
    ap.add_argument("--baseline", action="store_true", help="measure raw reading rates instead of ingest")
    ap.add_argument("--jobs", default="1,2", help="baseline process counts, comma separated (default 1,2)")
    ap.add_argument("--baseline-files", type=int, default=0, help="use only the first N files (default all)")
    ap.add_argument("--only", default="", help="comma-separated baseline names to run")
    ap.add_argument("--result", type=Path, default=OUT / "result.json")
    args = ap.parse_args(argv)
    args.trail = args.trail.resolve()
    args.store = args.store.resolve()
    OUT.mkdir(parents=True, exist_ok=True)

    manifest = ensure_trail(args.trail, args.records, args.files, args.seed, args.regen, args.varied)
    result: dict[str, Any] = {}
    if args.result.exists():
        try:
            result = json.loads(args.result.read_text())
        except ValueError:
            result = {}
    if (
        result.get("trail", {}).get("seed") != manifest["seed"]
        or result.get("trail", {}).get("varied", False) != manifest.get("varied", False)
        or result.get("trail", {}).get("records") != manifest["records"]
    ):
        result = {}
    result["hardware"] = hardware()
    result["trail"] = trail_summary(manifest)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    if args.baseline:
        result["baseline"] = {"when": stamp, **bench_baseline(args, manifest)}
        code = 0
    else:
        result["ingest"] = {"when": stamp, **bench_ingest(args, manifest)}
        code = 0 if all(r["exit_code"] == 0 for r in result["ingest"]["runs"]) else 1
    args.result.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.result}")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
