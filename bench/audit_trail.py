"""Issue 12's promises judged with what iamtrim did not derive, on a trail and its store.

    python bench/make_trail.py --varied --seed 11 --records 100000 --files 25 --out /tmp/v11
    python -m iamtrim ingest /tmp/v11/AWSLogs --store /tmp/v11.sqlite
    python bench/audit_trail.py /tmp/v11/AWSLogs /tmp/v11.sqlite [--monotone]

For every IAM principal of the store, generate-policy's library call (as bench/generate_bench.py)
makes the policy; then, with the second derivation of tests/second_derivation.py (the SDK → IAM
map and the Service Authorization Reference, nothing of iamtrim's normalizer) and the IAM oracle:

* authorized: every call of the trail replayed against its principal's policy (the judge of
  tests/test_second_derivation.py, which classes every call not allowed);
* denied only: every call IAM refused (AccessDenied, AccessDeniedException,
  [Client.]UnauthorizedOperation) on an (action, resource) the principal never used, replayed:
  denied, or allowed under a pattern a DENIED_COVERED finding names; other errors passed
  authorization and count as use;
* ``--monotone``: the policy at --prefix-threshold 1, 2, 3, 5, 10, 16, 50 (20 policies allowed, so
  the ladder rarely steps in): every grant at a larger threshold is covered by one at the smaller.

Needs IAMTRIM_CORPUS (the SDK map) and the oracle (IAMTRIM_ORACLE or ../shared/oracle).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.*, the judge

from iamtrim.errors import IamtrimError
from iamtrim.model.profile import ProfileRoles
from iamtrim.store import Store
from iamtrim.synth import SynthOptions, generate_identity_policy
from iamtrim.synth.widen import glob_matches

# Authorization refusals as CloudTrail writes them; any other errorCode passed authorization.
DENIED = re.compile(r"^(Client\.)?(AccessDenied(Exception)?|UnauthorizedOperation|UnauthorizedAccess)$")
THRESHOLDS = (1, 2, 3, 5, 10, 16, 50)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("trail", type=Path)
    parser.add_argument("store", type=Path)
    parser.add_argument("--monotone", action="store_true", help="also check --prefix-threshold monotonicity")
    args = parser.parse_args()
    from tests.conftest import corpus_dir
    from tests.second_derivation import Deriver, Reference, iam_data_dir

    corpus = corpus_dir()
    if corpus is None or iam_data_dir() is None:
        print("needs IAMTRIM_CORPUS and the oracle's iam-data", file=sys.stderr)
        return 2
    deriver = Deriver(Reference(iam_data_dir(), corpus / "iam-dataset-map" / "map.json"))
    out: dict[str, Any] = {"authorized": _authorized(args.trail, deriver)}
    out["denied_only"] = _denied_only(args.trail, args.store, deriver)
    if args.monotone:
        out["monotone"] = _monotone(args.store)
    print(json.dumps(out, indent=1, default=str))
    return 0


def _authorized(trail: Path, deriver: Any) -> dict[str, Any]:
    from tests.test_second_derivation import classify, judge

    t0 = time.perf_counter()
    r = judge(trail.name, [trail], deriver)
    classes: Counter[str] = Counter()
    for m in r.misses or ():
        c = classify(m)
        classes[f"{c.verdict}: {c.name}" if c else f"UNCLASSIFIED {m.call.event_name}"] += 1
    return {
        "calls": r.calls,
        "judged": r.judged,
        "unknowable": r.unknowable,
        "allowed": r.allowed,
        "not_allowed_by_verdict": dict(r.by_verdict()),
        "not_allowed_requests_by_class": dict(classes),
        "seconds": round(time.perf_counter() - t0, 1),
    }


def _denied_only(trail: Path, store: Path, deriver: Any) -> dict[str, Any]:
    from tests.oracle import decision_of, run_oracle
    from tests.second_derivation import Call, oracle_request, unique_records

    t0 = time.perf_counter()
    authorized: set[tuple[str, str, str]] = set()
    attempts = []
    for f, rec in unique_records([trail]):
        code = rec.get("errorCode")
        refused = bool(code and DENIED.match(code))
        call = deriver.derive(f, {k: v for k, v in rec.items() if k not in ("errorCode", "errorMessage")})
        if not isinstance(call, Call):
            continue
        if refused:
            attempts += [(call, q) for q in call.requests if not q.placeholder]
        else:
            authorized.update((call.principal, q.action, q.resource) for q in call.requests)
    distinct = {}
    for c, q in attempts:
        if (c.principal, q.action, q.resource) not in authorized:
            distinct.setdefault((c.principal, q.action, q.resource), (c, q))
    policies: dict[str, list[Any]] = {}
    covering: dict[str, list[str]] = {}
    with Store(store) as st:
        profiles = ProfileRoles(st.profile_changes())
        for p in st.principals():
            if not p.is_iam:
                continue
            try:
                g = generate_identity_policy(p, st.usage(p.arn), profiles=profiles)
            except IamtrimError:
                continue
            policies[p.arn] = [x.policy.to_json() for x in g.policies]
            covering[p.arn] = [
                s for f in g.findings if f.code == "DENIED_COVERED" for s in f.subject.split(", ")
            ]
    items = [v for _, v in sorted(distinct.items()) if v[0].principal in policies]
    docs = [{"identityPolicies": policies[c.principal], "requests": [oracle_request(c, q)]} for c, q in items]
    decisions = [decision_of(r) for r in run_oracle(docs, timeout=3600)] if docs else []
    allowed = [(c, q) for (c, q), d in zip(items, decisions, strict=True) if d == "allowed"]
    unnamed = [
        (c, q)
        for c, q in allowed
        if not any(glob_matches(p.replace("${$}", "$"), q.resource) for p in covering[c.principal])
    ]
    return {
        "refused_requests": len(attempts),
        "denied_only": len(items),
        "denied": len(items) - len(allowed),
        "allowed_named_by_DENIED_COVERED": len(allowed) - len(unnamed),
        "allowed_unnamed": [(c.principal, q.action, q.resource, c.event_id) for c, q in unnamed],
        "oracle_errors": decisions.count("error"),
        "seconds": round(time.perf_counter() - t0, 1),
    }


def _monotone(store: Path) -> dict[str, Any]:
    t0 = time.perf_counter()
    compared, wider = 0, []
    with Store(store) as st:
        for p in sorted((p for p in st.principals() if p.is_iam), key=lambda p: p.arn):
            rows = st.usage(p.arn)
            grants: list[dict[str, set[str]] | None] = []
            for n in THRESHOLDS:
                try:
                    g = generate_identity_policy(p, rows, SynthOptions(prefix_threshold=n, max_policies=20))
                except IamtrimError:
                    grants.append(None)
                    continue
                by_action: dict[str, set[str]] = defaultdict(set)
                for pol in g.policies:
                    for s in pol.policy.statements:
                        for a in s.actions:
                            by_action[a].update(s.resources)
                grants.append(by_action)
            for (lo, small), (hi, large) in zip(
                zip(THRESHOLDS, grants, strict=True),
                list(zip(THRESHOLDS, grants, strict=True))[1:],
                strict=False,
            ):
                if small is None or large is None:
                    continue
                for action, resources in large.items():
                    for r in resources:
                        compared += 1
                        if not any(glob_matches(q, r) for q in small.get(action, ())):
                            wider.append((p.arn, lo, hi, action, r))
    return {
        "thresholds": THRESHOLDS,
        "grants_compared": compared,
        "wider_at_larger_threshold": len(wider),
        "examples": wider[:10],
        "seconds": round(time.perf_counter() - t0, 1),
    }


if __name__ == "__main__":
    sys.exit(main())
