"""Benchmark ``iamtrim review`` over every principal of the benchmark store.

    python bench/review_bench.py                    # 1,000,000-record trail (bench/make_trail.py)
    python bench/review_bench.py --records 100000 --files 50

The trail is generated (or reused) as for ``ingest_bench.py`` and ingested once into
``bench/out/review-store.sqlite`` (kept while the trail is unchanged). The authorization details
are synthetic: every role and user of the store gets broad policies of the kind the review exists
for — ``s3:*``, ``sagemaker:*``, ``kms:*`` on ``*``, ``ec2:Describe*`` and ``logs:*`` — and one role
``AdministratorAccess`` (``*`` on ``*``: 20,000 catalog actions to classify). Two review runs are
timed from process start to exit (wall, and the child's CPU time, steadier on a shared
machine), with its peak RSS (``wait4`` rusage): the first stores a
run, the second has the same inputs (stores nothing, re-reports). Nothing here is a test.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
OUT = BENCH / "out"
sys.path.insert(0, str(BENCH))

import ingest_bench  # noqa: E402
import make_trail  # noqa: E402

BROAD = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Action": ["s3:*", "sagemaker:*", "kms:*", "logs:*"], "Resource": "*"},
        {"Effect": "Allow", "Action": "ec2:Describe*", "Resource": "*"},
    ],
}
ADMIN = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}


def _authz(store: Path, dest: Path) -> int:
    with sqlite3.connect(store) as db:
        rows = db.execute("SELECT arn, kind, name FROM principals WHERE kind IN ('role', 'user')").fetchall()
    policies = []
    for name, doc in (("platform-broad", BROAD), ("AdministratorAccess", ADMIN)):
        arn = f"arn:aws:iam::{make_trail.ACCOUNT}:policy/{name}"
        policies.append(
            {
                "PolicyName": name,
                "Arn": arn,
                "DefaultVersionId": "v1",
                "PolicyVersionList": [{"Document": doc, "VersionId": "v1", "IsDefaultVersion": True}],
            }
        )
    roles, users = [], []
    for i, (arn, kind, name) in enumerate(sorted(rows)):
        attached = [{"PolicyName": "platform-broad", "PolicyArn": policies[0]["Arn"]}]
        if i == 0:
            attached.append({"PolicyName": "AdministratorAccess", "PolicyArn": policies[1]["Arn"]})
        entry = {"Arn": arn, "AttachedManagedPolicies": attached}
        if kind == "user":
            users.append({**entry, "UserName": name, "UserPolicyList": [], "GroupList": []})
        else:
            roles.append({**entry, "RoleName": name, "RolePolicyList": []})
    dest.write_text(
        json.dumps(
            {"RoleDetailList": roles, "UserDetailList": users, "GroupDetailList": [], "Policies": policies}
        )
    )
    return len(rows)


def _timed(argv: list[str]) -> tuple[float, float, float, int]:
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(argv)} failed: {proc.stderr.read().decode() if proc.stderr else ''}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, proc.returncode


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trail", type=Path, default=OUT / "trail")
    ap.add_argument("--records", type=int, default=make_trail.DEFAULT_RECORDS)
    ap.add_argument("--files", type=int, default=make_trail.DEFAULT_FILES)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    manifest = ingest_bench.ensure_trail(args.trail, args.records, args.files, args.seed, regen=False)
    store = OUT / "review-store.sqlite"
    stamp = OUT / "review-store.manifest"
    want = json.dumps({k: manifest[k] for k in ("records", "files", "seed")})
    if not store.exists() or not stamp.exists() or stamp.read_text() != want:
        ingest_bench.fresh_store(store)
        print(f"ingesting {manifest['records']:,} records into {store} ...")
        subprocess.run(["iamtrim", "ingest", str(args.trail), "--store", str(store), "--quiet"], check=True)
        stamp.write_text(want)
    with sqlite3.connect(store) as db:
        db.executescript("DROP TABLE IF EXISTS review_runs; DROP TABLE IF EXISTS review_findings;")
        (usage_rows,) = db.execute("SELECT COUNT(*) FROM usage").fetchone()
    authz = OUT / "review-authz.json"
    principals = _authz(store, authz)
    argv = ["iamtrim", "review", "--store", str(store), "--authz", str(authz), "--format", "json"]
    rows = []
    for label in ("first run (stored)", "same inputs (not stored)"):
        wall, cpu, rss, code = _timed(argv)
        rows.append(
            {
                "run": label,
                "wall_s": round(wall, 2),
                "cpu_s": round(cpu, 2),
                "max_rss_mib": round(rss, 1),
                "exit": code,
            }
        )
    print(f"{manifest['records']:,} records, {usage_rows:,} usage rows, {principals} roles/users reviewed")
    for r in rows:
        print(
            f"  {r['run']:<26} {r['wall_s']:>7.2f} s wall {r['cpu_s']:>7.2f} s CPU "
            f"{r['max_rss_mib']:>7.1f} MiB"
        )
    (OUT / "review-result.json").write_text(
        json.dumps(
            {"records": manifest["records"], "usage_rows": usage_rows, "principals": principals, "runs": rows}
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
