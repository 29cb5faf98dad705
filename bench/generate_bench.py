"""generate-policy for every principal of a store: how many get a policy, how many policies and
widenings each, and the wall time for all of them (one process, the library call the CLI makes).

    python bench/make_trail.py --records 200000 --files 100 --out bench/out/trail200k
    python -m iamtrim ingest bench/out/trail200k/AWSLogs --store bench/out/store200k.sqlite
    python bench/generate_bench.py bench/out/store200k.sqlite [--max-policies N] [--oracle]

``--oracle`` also replays, through the independent IAM oracle (``../shared/oracle``, as the tests
use it), every observed authorized call against the emitted policies (all must be allowed) and
every call that was only ever denied (not allowed, unless a DENIED_COVERED finding names it).
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.oracle, for --oracle

from iamtrim.cli import GC_THRESHOLDS
from iamtrim.errors import IamtrimError
from iamtrim.model import Outcome, UsageRow, has_wildcard, overlap_witness
from iamtrim.store import Store
from iamtrim.synth import GeneratedPolicy, SynthOptions, generate_identity_policy
from iamtrim.synth.widen import LADDER, WideningKind, glob_matches
from iamtrim.verify import request_for


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("store", type=Path)
    parser.add_argument("--max-policies", type=int, default=None)
    parser.add_argument("--no-widen", action="store_true")
    parser.add_argument("--oracle", action="store_true", help="replay every call through the IAM oracle")
    args = parser.parse_args()
    gc.set_threshold(*GC_THRESHOLDS)  # the collector as the program sets it (cli.run)
    documents: list[dict[str, Any]] = []
    # (principal, what, expected allowed; None: reported as DENIED_COVERED, not asked)
    expectations: list[tuple[str, str, bool | None]] = []
    options = SynthOptions(max_policies=args.max_policies, widen=not args.no_widen)
    results: list[dict[str, Any]] = []
    refusals: Counter[str] = Counter()
    start = time.perf_counter()
    cpu = 0.0  # CPU seconds of reading each principal's rows and generating its policy
    with Store(args.store, read_only=True) as st:
        for principal in sorted(st.principals(), key=lambda p: p.arn):
            t0 = time.perf_counter()
            c0 = time.process_time()
            try:
                g = generate_identity_policy(principal, st.usage(principal.arn), options)
            except IamtrimError as e:
                cpu += time.process_time() - c0
                refusals[type(e).__name__] += 1
                print(f"refused {principal.arn}: {e}", file=sys.stderr)
                continue
            cpu += time.process_time() - c0
            if args.oracle:
                _oracle_documents(g, st.usage(principal.arn), documents, expectations)
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
        "generate_cpu_s": round(cpu, 1),
    }
    if args.oracle:
        from tests.oracle import decision_of, run_oracle

        t0 = time.perf_counter()
        decisions = [decision_of(r) for r in run_oracle(documents, timeout=3600)]
        reported = sum(1 for e in expectations if e[2] is REPORTED)
        expectations = [e for e in expectations if e[2] is not REPORTED]
        wrong = [
            (who, what, d)
            for (who, what, expect), d in zip(expectations, decisions, strict=True)
            if (d == "allowed") != expect
        ]
        summary["oracle"] = {
            "requests": len(decisions),
            "observed_allowed": sum(
                1 for (_, _, e), d in zip(expectations, decisions, strict=True) if e and d == "allowed"
            ),
            "observed": sum(1 for _, _, e in expectations if e),
            "denied_only_denied": sum(
                1 for (_, _, e), d in zip(expectations, decisions, strict=True) if not e and d != "allowed"
            ),
            "denied_only": sum(1 for _, _, e in expectations if not e),
            "denied_only_reported_as_covered": reported,
            "wrong": len(wrong),
            "examples": wrong[:10],
            "seconds": round(time.perf_counter() - t0, 1),
        }
    print(json.dumps({"summary": summary, "principals": results}, indent=2))
    return 0


REPORTED = None  # a denied-only call a DENIED_COVERED finding names: not asked


def _names(pattern: str, resource: str) -> bool:
    """Whether a DENIED_COVERED pattern names a denied call on *resource*: it matches it, or —
    for a resource that is a pattern AWS imposes (a stack by name) — overlaps it."""
    if glob_matches(pattern, resource):
        return True
    return has_wildcard(resource) and overlap_witness(pattern, resource) is not None


def _oracle_documents(
    g: GeneratedPolicy,
    rows: list[UsageRow],
    documents: list[dict[str, Any]],
    expectations: list[tuple[str, str, bool | None]],
) -> None:
    from tests.test_generate_oracle import concrete, oracle_request

    arn = g.principal.arn
    unknown = [
        w.resource for ev in g.statements for w in ev.widened_by if w.kind == WideningKind.RESOURCE_UNKNOWN
    ]
    covering = [p for f in g.findings if f.code == "DENIED_COVERED" for p in f.subject.split(", ")]
    used_keys = {(r.action, r.resource) for r in rows if r.outcome is Outcome.USED}
    requests = []
    for r in rows:
        if r.outcome is Outcome.USED:
            target = r.resource
            if target is None:
                # The records name no resource: ask about one of the ARN format in the call's region.
                target = next(
                    (
                        u
                        for u in unknown
                        if u.split(":")[3] in (r.context.region, "")
                        and r.action.split(":")[0] == u.split(":")[2]
                    ),
                    None,
                )
                if target is None:
                    continue
                target = concrete(target)
            requests.append(oracle_request(arn, request_for(arn, r, target)))
            expectations.append((arn, f"{r.action} {target}", True))
        elif r.resource and r.resource != "*" and (r.action, r.resource) not in used_keys:
            if any(_names(p.replace("${$}", "$"), r.resource) for p in covering):
                expectations.append((arn, f"{r.action} {r.resource}", REPORTED))
                continue  # reported by name: allowed by a fold the policy needs
            requests.append(oracle_request(arn, request_for(arn, r)))
            expectations.append((arn, f"{r.action} {r.resource}", False))
    documents.append({"identityPolicies": [p.policy.to_json() for p in g.policies], "requests": requests})


if __name__ == "__main__":
    sys.exit(main())
