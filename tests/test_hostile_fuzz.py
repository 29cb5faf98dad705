"""Fuzzing (seeded, bounded) of normalization and every renderer with hostile strings.

Real records from the samples get random special characters (``*``, ``?``, ``$``, ``${``,
``%{``, quotes, backslashes, newlines, terminal escapes, HTML) in their string fields and random
JSON shapes in place of values. Properties: nothing raises (a bad record is skipped, a refused
policy is an ``IamtrimError``); no stored resource and no emitted policy holds a bare wildcard
iamtrim did not make itself; text for terminals holds no control character; Markdown no raw HTML;
Terraform parses.
"""

from __future__ import annotations

import json
import random
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import hcl2
import msgspec

from iamtrim import graph as usage_graph
from iamtrim.errors import IamtrimError
from iamtrim.ingest import load_events
from iamtrim.model import Outcome, UsageRow, has_wildcard
from iamtrim.model.policy import Policy
from iamtrim.normalize.record import fast_parts, normalize_parts
from iamtrim.query import principal_usage, summarize_principals
from iamtrim.render import bucket as render_bucket
from iamtrim.render import diff as render_diff
from iamtrim.render import graph as render_graph
from iamtrim.render import policy as render_policy
from iamtrim.render import usage as render_usage
from iamtrim.review.current import CurrentPolicies
from iamtrim.review.diff import diff_principal
from iamtrim.sources import read_file
from iamtrim.sources.records import Record
from iamtrim.synth.bucket import BucketOptions, generate_bucket_policy
from iamtrim.synth.identity import GeneratedPolicy, generate_identity_policy
from iamtrim.synth.limits import Target
from tests.conftest import SAMPLES

SEED = 20261207
PIECES = [
    "*",
    "?",
    "$",
    "${",
    "%{",
    "}",
    "${*}",
    "${aws:username}",
    "%{if true}",
    '"',
    "\\",
    "\n",
    "\x1b]0;pwned\x07",
    "\x1b[2J",
    "\x00",
    "\x9b",
    "\u202e",
    "<script>",
    "<b>",
    "|",
    "/",
    ":",
    "a",
    "Z",
    "7",
    "-",
    " ",
    "EOT",
    "arn:aws:s3:::",
]
# Record fields that steer normalization: changed less often, so the paths behind them are reached.
STEERING = {"eventSource", "eventName", "eventTime", "eventType", "type", "arn", "eventCategory"}
CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _text(rng: random.Random) -> str:
    return "".join(rng.choice(PIECES) for _ in range(rng.randint(0, 6)))


def _shape(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(7 if depth < 2 else 4)
    if kind == 0:
        return _text(rng)
    if kind == 1:
        return rng.choice([0, -1, 2**40, 1.5])
    if kind == 2:
        return rng.choice([True, False])
    if kind == 3:
        return None
    if kind == 4:
        return [_shape(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return {_text(rng) or "k": _shape(rng, depth + 1) for _ in range(rng.randint(0, 3))}


def _mutate(value: Any, rng: random.Random, key: str = "") -> Any:
    if isinstance(value, dict):
        out = {k: _mutate(v, rng, k) for k, v in value.items()}
        if rng.random() < 0.1:
            out[_text(rng) or "extra"] = _shape(rng)
        return out
    if isinstance(value, list):
        return [_mutate(v, rng, key) for v in value]
    if isinstance(value, str):
        roll = rng.random()
        if key in STEERING and roll < 0.85:
            return value
        if roll < 0.45:
            return value
        if roll < 0.8:  # keep the value, with hostile text inside or around it
            cut = rng.randint(0, len(value))
            return value[:cut] + _text(rng) + value[cut:]
        if roll < 0.95:
            return _text(rng)
        return _shape(rng)
    if rng.random() < 0.05:
        return _shape(rng)
    return value


def _base_records() -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    for path in sorted((SAMPLES / "AWSLogs").rglob("*.json.gz")):
        read, _ = read_file(str(path))
        for record in read.records:
            records.append(json.loads(msgspec.json.encode(record)))
    # every distinct kind of call once: the fuzz stays bounded
    seen: dict[tuple[str, str, bool], dict[str, Any]] = {}
    for r in records:
        seen.setdefault((r.get("eventSource") or "", r.get("eventName") or "", bool(r.get("errorCode"))), r)
    return [seen[k] for k in sorted(seen)]


def _mutants(n_per_record: int) -> list[dict[str, Any]]:
    rng = random.Random(SEED)
    return [_mutate(r, rng) for r in _base_records() for _ in range(n_per_record)]


def _own_wildcards_only(resource: str) -> bool:
    """Whether every bare wildcard in a stored resource is one normalization makes itself: the
    ``*`` of a wildcard-only action, a secret's ``-??????``, a stack's unknown id."""
    if resource == "*":
        return True
    rest = resource.removesuffix("-??????") if ":secretsmanager:" in resource else resource
    if ":cloudformation:" in rest:
        rest = rest.removesuffix("/*")
    return not has_wildcard(rest)


def test_normalization_of_hostile_records_never_raises_nor_makes_a_wildcard() -> None:
    mutants = _mutants(10)
    assert len(mutants) > 200
    checked = 0
    for raw in mutants:
        try:
            record = msgspec.json.decode(json.dumps(raw), type=Record)
        except msgspec.ValidationError:
            continue  # a field of the wrong type: the reader counts it malformed
        general = normalize_parts(record)
        fast = fast_parts(record)
        if fast is not None:
            assert fast == general  # the fast path's contract holds on hostile records too
        if not hasattr(general, "uses"):
            continue
        for _, resource in general.uses:
            checked += 1
            assert resource is None or _own_wildcards_only(resource), (resource, raw.get("eventName"))
    assert checked > 100


def _no_control(text: str) -> None:
    m = CONTROL.search(text)
    assert m is None, repr(text[max(0, m.start() - 40) : m.end() + 40])


def _policy_wildcards_are_recorded(g: GeneratedPolicy) -> None:
    """A bare wildcard in a generated policy is a generalization iamtrim records (a widening) or
    a secret's suffix / an AWS-owned document's account, never a caller's character."""
    for ev in g.statements:
        widened = {w.resource for w in ev.widened_by}
        for resource in ev.resources:
            if not has_wildcard(resource) or resource in widened or resource == "*":
                continue
            rest = resource.removesuffix("-??????") if ":secretsmanager:" in resource else resource
            rest = re.sub(r"^(arn:[^:]*:ssm:[^:]*):\*:", r"\1::", rest)
            if ":cloudformation:" in rest:
                rest = rest.removesuffix("/*")
            assert not has_wildcard(rest), resource


def test_every_renderer_takes_hostile_usage(tmp_path: Path) -> None:
    trail = tmp_path / "trail.json"
    trail.write_text(json.dumps({"Records": _mutants(2)}))
    generated = 0
    with load_events([trail], workers=1) as st:
        rows = st.usage()
        for r in rows:
            assert r.resource is None or _own_wildcards_only(r.resource) or r.resource.endswith("/*")
        _no_control(render_usage.principals_table(summarize_principals(st)))
        json.loads(render_usage.principals_json(summarize_principals(st)))
        for p in st.principals():
            prow = st.usage(p.arn)
            usage = principal_usage(st, p)
            _no_control(render_usage.usage_table(usage))
            json.loads(render_usage.usage_json(usage))
            try:
                g = generate_identity_policy(p, prow)
            except IamtrimError:
                continue
            generated += 1
            _policy_wildcards_are_recorded(g)
            json.loads(render_policy.to_json(g, explain=True))
            json.loads(render_policy.to_policy(g))
            json.loads(render_policy.to_cloudformation(g))
            for target in (Target.MANAGED, Target.INLINE):
                hcl2.loads(render_policy.to_terraform(g, target))
            _no_control(render_policy.explain_text(g))
            _diff_renders(p.arn, prow, g)
        buckets = {m.group(1) for r in rows if (m := re.match(r"arn:aws:s3:::([^/]+)", r.resource or ""))}
        for bucket in sorted(buckets):
            try:
                b = generate_bucket_policy(bucket, rows, BucketOptions(account="444455556666"))
            except IamtrimError:
                continue
            json.loads(render_bucket.bucket_json(b, explain=True))
            json.loads(render_bucket.bucket_policy_text(b))
            _no_control(render_bucket.bucket_explain_text(b))
        graph = usage_graph.build_graph(st.principals(), rows)
        for pattern in ("*", "arn:aws:s3:::*", "arn:aws:kms:*"):
            uses = usage_graph.who_used(graph, pattern)
            _no_control(render_graph.who_used_table(pattern, uses, usage_graph.summarize_uses(uses)))
            json.loads(render_graph.who_used_json(pattern, uses, usage_graph.summarize_uses(uses)))
        ET.fromstring(render_graph.to_svg(usage_graph.picture(graph)))  # well-formed XML
        usage_graph.from_graphml(usage_graph.to_graphml(graph))
    assert generated >= 3


def _diff_renders(arn: str, rows: list[UsageRow], g: GeneratedPolicy) -> None:
    hostile = "<b>x</b>|y\n\x1b]0;t\x07"
    current = CurrentPolicies(
        arn,
        (
            Policy.from_json(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {"Effect": "Allow", "Action": ["s3:Get*", "iam:PassRole"], "Resource": "*"}
                    ],
                },
                name=hostile,
            ),
        ),
        None,
    )
    principal = g.principal
    d = diff_principal(principal, rows, current)
    _no_control(render_diff.to_text(d))
    json.loads(render_diff.to_json(d))
    md = render_diff.to_markdown(d)
    _no_control(md)
    # Outside code spans (where Markdown shows HTML as text) the only HTML is iamtrim's <br>.
    prose = re.sub(r"(`+)(?!`).*?(?<!`)\1(?!`)", "", md)
    assert not re.search(r"<(?!br>)", prose), prose
    cells = None  # a table row has its header's cells: no record text adds a "|"
    for line in md.splitlines():
        if not line.startswith("|"):
            cells = None
            continue
        n = len(re.findall(r"(?<!\\)\|", line))
        cells = n if cells is None else cells
        assert n == cells, line
    assert all(o is Outcome.USED or o is Outcome.DENIED for o in (r.outcome for r in rows))
