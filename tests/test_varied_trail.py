"""Issue 12's promises checked on a trail the generator did not shape (tests/varied_trail.py):
principals with paths and IAM users, two accounts, four regions, services bench/make_trail.py
never calls, busy S3 folders with denied keys inside them.

Judged with what iamtrim did not derive: the denied calls' (action, resource) come from the
second derivation (tests/second_derivation.py), and the oracle decides. The allowed side (every
authorized call allowed) is the "varied" source of tests/test_second_derivation.py.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from typing import Any

import pytest

from iamtrim.ingest import load_events
from tests import varied_trail
from tests.conftest import corpus_dir
from tests.oracle import decision_of, require_oracle, run_oracle
from tests.second_derivation import Call, Deriver, Reference, iam_data_dir, oracle_request, unique_records

pytestmark = [pytest.mark.oracle, pytest.mark.corpus]

MANAGED_POLICY_CHARS = 6_144  # https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html
# A wildcard iamtrim writes by design, not a widening: a secret named without its ARN is any
# secret of that name plus Secrets Manager's six random characters
# (https://docs.aws.amazon.com/secretsmanager/latest/userguide/reference_iam-permissions.html#iam-resources).
SECRET_SUFFIX = re.compile(r":secret:[^*?]+-\?\?\?\?\?\?$")


@pytest.fixture(scope="module")
def varied(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The trail, its store, and generate-policy's JSON for every principal, run as a user would."""
    require_oracle()
    out = tmp_path_factory.mktemp("varied")
    paths, records = varied_trail.write(out / "trail")
    store = out / "store.sqlite"
    cli = [sys.executable, "-m", "iamtrim"]
    subprocess.run([*cli, "ingest", *map(str, paths), "--store", str(store)], check=True, capture_output=True)
    with load_events(paths) as st:
        principals = [p.arn for p in st.principals() if p.is_iam]
    results = {}
    for arn in principals:
        run = subprocess.run(
            [*cli, "generate-policy", arn, "--store", str(store), "--format", "json"],
            capture_output=True,
            text=True,
        )
        results[arn] = (run.returncode, run.stdout, run.stderr)
    return {"paths": paths, "records": records, "results": results}


def _policies(out: dict[str, Any]) -> list[dict[str, Any]]:
    docs = []
    for p in out["policies"]:
        docs.append(p.get("policy") or p.get("document") or p)
    return docs


def test_every_principal_with_authorized_calls_gets_one_managed_policy(varied: dict[str, Any]) -> None:
    authorized = {
        r["userIdentity"].get("sessionContext", {}).get("sessionIssuer", {}).get("arn")
        or r["userIdentity"]["arn"]
        for r in varied["records"]
        if not r.get("errorCode")
    }
    assert authorized == {w.arn for w in varied_trail.EVERYONE}  # paths, users, two accounts
    assert set(varied["results"]) == authorized
    for arn, (code, stdout, stderr) in varied["results"].items():
        assert code == 0, (arn, stderr)
        out = json.loads(stdout)
        assert out["fit"]["policies"] == 1, (arn, out["fit"])
        for doc in _policies(out):
            chars = len(re.sub(r"\s", "", json.dumps(doc)))
            assert chars <= MANAGED_POLICY_CHARS, (arn, chars)


def test_denied_only_calls_stay_denied_or_are_reported_by_name(varied: dict[str, Any]) -> None:
    """Every call that was only ever denied is refused by the generated policy (oracle), or a
    DENIED_COVERED finding names its resource."""
    data, corpus = iam_data_dir(), corpus_dir()
    if data is None or corpus is None:
        pytest.skip("the second derivation's reference data is not installed")
    deriver = Deriver(Reference(data, corpus / "iam-dataset-map" / "map.json"))
    records = unique_records(varied["paths"])
    authorized: set[tuple[str, str, str]] = set()
    attempts: list[tuple[Call, Any]] = []
    for f, rec in records:
        if rec.get("errorCode"):
            call = deriver.derive(f, {k: v for k, v in rec.items() if k not in ("errorCode", "errorMessage")})
            if isinstance(call, Call):
                attempts.extend((call, q) for q in call.requests if not q.placeholder)
        else:
            call = deriver.derive(f, rec)
            if isinstance(call, Call):
                authorized.update((call.principal, q.action, q.resource) for q in call.requests)
    denied_only = [(c, q) for c, q in attempts if (c.principal, q.action, q.resource) not in authorized]
    assert len(denied_only) >= 10  # every principal tried something it may not do
    assert {c.principal for c, _ in denied_only} == {w.arn for w in varied_trail.EVERYONE}
    documents = []
    for c, q in denied_only:
        out = json.loads(varied["results"][c.principal][1])
        documents.append({"identityPolicies": _policies(out), "requests": [oracle_request(c, q)]})
    decisions = [decision_of(r) for r in run_oracle(documents)]
    assert "error" not in decisions, decisions
    for (c, q), decision in zip(denied_only, decisions, strict=True):
        if decision == "allowed":
            findings = json.loads(varied["results"][c.principal][1])["findings"]
            named = [f for f in findings if f["code"] == "DENIED_COVERED" and q.resource in f["message"]]
            assert named, (c.principal, q.action, q.resource)


def test_every_widening_is_listed(varied: dict[str, Any]) -> None:
    """A resource pattern in a policy is a listed widening, or a wildcard iamtrim writes by design
    and says so (``*`` of a wildcard-only action; a secret's random suffix)."""
    unlisted = []
    for arn, (_, stdout, _) in varied["results"].items():
        out = json.loads(stdout)
        listed = {w["pattern"] for w in out["widenings"]}
        assert out["fit"]["widenings"] == len(out["widenings"])
        assert all(w["kind"] and w["admits"] and w["covers"] for w in out["widenings"])
        assert len({(w["kind"], w["pattern"]) for w in out["widenings"]}) == len(out["widenings"])
        # Folds the store made at ingest, grants on an unnamed resource and on resources a call
        # created are widenings[] entries too (store-folded, resource-unknown, created-resource),
        # not only findings.
        for doc in _policies(out):
            for st in doc["Statement"]:
                resources = [st["Resource"]] if isinstance(st["Resource"], str) else st["Resource"]
                for r in resources:
                    wild = re.sub(r"\$\{[*?$]\}", "", r)
                    if "*" not in wild and "?" not in wild:
                        continue
                    if r == "*" or SECRET_SUFFIX.search(r) or r in listed:
                        continue
                    unlisted.append((arn.rsplit("/", 1)[1], st["Action"], r))
    assert not unlisted, unlisted


def test_generated_names_keep_a_stem_and_absorb_the_names_they_cover(varied: dict[str, Any]) -> None:
    """A generated-names pattern keeps a stem beyond an id prefix (never ``sg-*``, ``i-*``: a
    type-wide grant), and no name it admits is granted again beside it in the same statement."""
    seen = 0
    for arn, (_, stdout, _) in varied["results"].items():
        out = json.loads(stdout)
        generated = [w for w in out["widenings"] if w["kind"] == "generated-names"]
        seen += len(generated)
        for w in generated:
            # type/<letters>-* right after the account: the id prefix and nothing else
            assert not re.fullmatch(r"arn:[^:]*:[^:]*:[^:]*:[^:]*:[a-z-]+[/:][A-Za-z]*-?\*", w["pattern"]), (
                arn,
                w["pattern"],
            )
            assert f"{w['covers']} names seen" in w["admits"], (arn, w)
        patterns = [re.compile(re.escape(w["pattern"]).replace(r"\*", ".*")) for w in generated]
        for st in out["statements"]:
            exact = [r for r in st["resources"] if "*" not in r and "?" not in r]
            assert not [r for r in exact for p in patterns if p.fullmatch(r)], (arn, st["sid"])
    assert seen >= 1  # the trail has names generated per run
