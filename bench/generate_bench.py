"""generate-policy for every principal of a store: how many get a policy, how many policies and
widenings each, and the wall time for all of them (one process, the library call the CLI makes).

    python bench/make_trail.py --records 200000 --files 100 --out bench/out/trail200k
    python -m iamtrim ingest bench/out/trail200k/AWSLogs --store bench/out/store200k.sqlite
    python bench/generate_bench.py bench/out/store200k.sqlite [--max-policies N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

from iamtrim.errors import IamtrimError
from iamtrim.store import Store
from iamtrim.synth import SynthOptions, generate_identity_policy
from iamtrim.synth.widen import LADDER


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("store", type=Path)
    parser.add_argument("--max-policies", type=int, default=None)
    parser.add_argument("--no-widen", action="store_true")
    args = parser.parse_args()
    options = SynthOptions(max_policies=args.max_policies, widen=not args.no_widen)
    results = []
    refusals: Counter[str] = Counter()
    start = time.perf_counter()
    with Store(args.store) as st:
        for principal in sorted(st.principals(), key=lambda p: p.arn):
            t0 = time.perf_counter()
            try:
                g = generate_identity_policy(principal, st.usage(principal.arn), options)
            except IamtrimError as e:
                refusals[type(e).__name__] += 1
                print(f"refused {principal.arn}: {e}", file=sys.stderr)
                continue
            results.append(
                {
                    "principal": principal.arn,
                    "policies": len(g.policies),
                    "ladder": sum(1 for w in g.widenings if w.kind in LADDER),
                    "generated_names": sum(1 for w in g.widenings if w.kind == "generated-names"),
                    "denied_covered": sum(1 for f in g.findings if f.code == "DENIED_COVERED"),
                    "seconds": round(time.perf_counter() - t0, 2),
                }
            )
    wall = time.perf_counter() - start
    total = len(results) + sum(refusals.values())

    def spread(key: str) -> str:
        values = [r[key] for r in results]
        return f"{min(values)}–{max(values)} (median {statistics.median(values)})" if values else "-"

    summary = {
        "principals": total,
        "with_policy": len(results),
        "refused": dict(refusals),
        "policies_per_principal": spread("policies"),
        "ladder_widenings_per_principal": spread("ladder"),
        "generated_name_widenings_per_principal": spread("generated_names"),
        "denied_covered_findings": sum(r["denied_covered"] for r in results),
        "slowest_s": max((r["seconds"] for r in results), default=0),
        "wall_s": round(wall, 1),
    }
    print(json.dumps({"summary": summary, "principals": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
