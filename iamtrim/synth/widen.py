"""Widenings: every place a generated policy grants more than the exact resources seen.

Two sources:

* **Rules** that apply to every policy (``object-prefix``, ``resource-variable``,
  ``created-resource``, ``generated-names``, ...), chosen in :mod:`iamtrim.synth.identity`.
* **The ladder** that makes a policy fit IAM's size limits (``--max-policies``). Narrowest first,
  each step chosen for the most characters saved per breadth added:

  1. ``s3-prefix`` — deeper S3 prefixes (``bucket/curated/2026/*``), from
     :func:`iamtrim.synth.minimize.generalize_object_arns` at lower thresholds;
  2. ``name-prefix`` — names of one resource type sharing a prefix (``function:billing-fn-*``);
  3. ``across-regions`` — the same name in several regions (``arn:aws:logs:*:…:log-group:x``);
  4. ``resource-type`` — every resource of the type in the account and region (``table/*``);
  5. ``service-merge`` — statements of one service with the same conditions merged into one.

  Breadth is the step's weight (1, 2, 4, 8, 16 by rung) times the number of name segments the
  pattern leaves open below its literal part (``billing-fn-*`` over ``billing-fn-7``: one;
  ``billing-*``: two). Never ``Action: "*"``, never ``Resource: "*"``, never a pattern without an
  account for a type that has one, and a widening that would cover a resource whose only access
  was denied is taken only when nothing else fits (and then reported by name).
"""

from __future__ import annotations

import bisect
import functools
import math
import re
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from enum import StrEnum

from iamtrim import catalog
from iamtrim.keysketch import ObservedKeys
from iamtrim.model import has_wildcard, is_s3_object_arn, pattern_covers
from iamtrim.model.policy import Condition
from iamtrim.synth.minimize import generalize_object_arns, typed_arn


class WideningKind(StrEnum):
    # rules, on every policy
    OBJECT_PREFIX = "object-prefix"
    RESOURCE_VARIABLE = "resource-variable"
    CREATED_RESOURCE = "created-resource"
    RESOURCE_UNKNOWN = "resource-unknown"
    REQUIRED_RESOURCE_UNSEEN = "required-resource-unseen"
    STORE_FOLDED = "store-folded"
    ACTION_WILDCARD = "action-wildcard"
    ACCESS_ADVISOR = "access-advisor"
    GENERATED_NAMES = "generated-names"
    # the ladder, only to fit the size limits
    S3_PREFIX = "s3-prefix"
    NAME_PREFIX = "name-prefix"
    ACROSS_REGIONS = "across-regions"
    RESOURCE_TYPE = "resource-type"
    SERVICE_MERGE = "service-merge"
    CONDITION_MERGE = "condition-merge"
    SERVICE_WIDE = "service-wide"


LADDER = (
    WideningKind.S3_PREFIX,
    WideningKind.NAME_PREFIX,
    WideningKind.ACROSS_REGIONS,
    WideningKind.RESOURCE_TYPE,
    WideningKind.SERVICE_MERGE,
    WideningKind.CONDITION_MERGE,
    WideningKind.SERVICE_WIDE,
)
MERGE_KINDS = frozenset({WideningKind.SERVICE_MERGE, WideningKind.CONDITION_MERGE})
_WEIGHT = {kind: 2**i for i, kind in enumerate(LADDER)}


@dataclass(frozen=True, slots=True)
class Widening:
    """One widening: its kind, the pattern granted, the observed resources (or, for
    ``action-wildcard``, actions) it covers, and what it admits beyond them, in words. A
    ``store-folded`` one also says how many distinct keys the store counted under it (``keys``)."""

    kind: WideningKind
    resource: str
    covers: tuple[str, ...]
    admits: str = ""
    keys: ObservedKeys | None = None
    # A ladder step covers tens of thousands of resources and its widening sits in the lists of
    # every grant it moved, deduplicated by hash each time (identity._take): the generated
    # __hash__ hashed the whole *covers* tuple per call (76 s of 220 s profiled on a 10M-record
    # store's busiest role). Hashed once, at construction; equality is unchanged.
    _hash: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "_hash", hash((self.kind, self.resource, self.covers, self.admits, self.keys))
        )

    def __hash__(self) -> int:
        return self._hash

    def __reduce__(
        self,
    ) -> tuple[type[Widening], tuple[WideningKind, str, tuple[str, ...], str, ObservedKeys | None]]:
        # str hashes differ between processes: a pickled widening hashes again where it lands.
        return (Widening, (self.kind, self.resource, self.covers, self.admits, self.keys))


@dataclass(frozen=True, slots=True)
class Candidate:
    """A ladder step that could be taken: replace *covers* by *pattern* (or, for a service
    merge, merge the statements of *service* with *conditions*)."""

    kind: WideningKind
    pattern: str
    covers: frozenset[str]
    saved: int
    breadth: float
    admits: str
    denied: tuple[str, ...]  # "action resource" of denied-only calls the step would allow
    service: str = ""
    conditions: tuple[Condition, ...] = ()

    @property
    def score(self) -> float:
        return self.saved / self.breadth


@dataclass(frozen=True, slots=True)
class StatementShape:
    """What the ladder needs to know of a built statement: actions, resources (unescaped),
    conditions, size in characters."""

    actions: tuple[str, ...]
    resources: tuple[str, ...]
    conditions: tuple[Condition, ...]
    size: int


_SEPARATORS = "-_./:"
_TOKEN = re.compile(r"[^-_./:]*[-_./:]|[^-_./:]+$")


def _segments(text: str) -> list[str]:
    return [t for t in _TOKEN.findall(text) if t]


def glob_matches(pattern: str, value: str) -> bool:
    """IAM's resource matching: ``*`` any run (also ``/`` and ``:``), ``?`` one, ``${*}``,
    ``${?}``, ``${$}`` the literal character. *value* is a stored resource, an IAM pattern whose
    literals are escaped the same way (model.escape_literal); it is matched as what it names."""
    if "${" in pattern or "${" in value:
        return pattern_covers(pattern, value)
    # Most patterns here have at most one ``*`` and no ``?`` (``prefix/*``, ``billing-fn-*``,
    # ``arn:aws:logs:*:…``): a prefix and suffix test, without a regex per pattern.
    if "?" not in pattern:
        star = pattern.find("*")
        if star < 0:
            return pattern == value
        if pattern.find("*", star + 1) < 0:
            tail = pattern[star + 1 :]
            return (
                len(value) >= len(pattern) - 1 and value.startswith(pattern[:star]) and value.endswith(tail)
            )
    return _glob(pattern).fullmatch(value) is not None


class PatternIndex:
    """Many IAM patterns, asked which match a value without testing each one in turn.

    A policy being fitted holds thousands of resources and patterns; testing every pattern
    against every resource was most of generate-policy's time on a busy role. Exact names are a
    set and ``prefix*`` patterns (most of what the ladder writes) a set of prefixes looked up by
    length; the rest (several ``*``, ``?``, escaped literals) are tested one by one with
    :func:`glob_matches`, whose answers this gives (tests/test_synth_widen.py)."""

    __slots__ = ("_any_plain", "_escaped", "_exact", "_heads", "_lengths", "_others", "_patterns", "_plain")

    def __init__(self, patterns: Iterable[str]) -> None:
        self._patterns = list(dict.fromkeys(patterns))
        self._exact: set[str] = set()
        self._heads: set[str] = set()
        self._others: list[str] = []
        for p in self._patterns:
            star = p.find("*")
            if "${" in p or "?" in p or (star >= 0 and star != len(p) - 1):
                self._others.append(p)
            elif star < 0:
                self._exact.add(p)
            else:
                self._heads.add(p[:-1])
        self._lengths = sorted({len(h) for h in self._heads})
        # The other patterns without an escaped literal, as one regular expression: whether any
        # of them matches is one search, not one glob_matches per pattern (a statement of tens
        # of thousands of resources asked of each, every round of the ladder).
        self._plain = frozenset(p for p in self._others if "${" not in p)
        self._escaped = [p for p in self._others if "${" in p]
        self._any_plain = (
            re.compile("(?:" + "|".join(_glob(p).pattern for p in sorted(self._plain)) + ")", re.DOTALL)
            if self._plain
            else None
        )

    def matching(self, value: str) -> Iterator[str]:
        """The patterns that match *value* (each once, in no particular order)."""
        if "${" in value:  # an escaped literal: matched as what it names
            yield from (p for p in self._patterns if glob_matches(p, value))
            return
        if value in self._exact:
            yield value
        heads = self._heads
        for n in self._lengths:
            if n > len(value):
                break
            if value[:n] in heads:
                yield value[:n] + "*"
        for p in self._others:
            if glob_matches(p, value):
                yield p

    def covers(self, value: str, besides: str | None = None) -> bool:
        """Whether a pattern other than *besides* matches *value*."""
        if "${" in value or besides in self._plain:
            return any(p != besides for p in self.matching(value))
        if value in self._exact and value != besides:
            return True
        heads = self._heads
        for n in self._lengths:
            if n > len(value):
                break
            if value[:n] in heads and value[:n] + "*" != besides:
                return True
        if self._any_plain is not None and self._any_plain.fullmatch(value) is not None:
            return True
        return any(p != besides and glob_matches(p, value) for p in self._escaped)


_GLOBS: dict[str, re.Pattern[str]] = {}


def _glob(pattern: str) -> re.Pattern[str]:
    rx = _GLOBS.get(pattern)
    if rx is None:
        rx = re.compile(re.escape(pattern).replace(r"\*", ".*").replace(r"\?", "."), re.DOTALL)
        if len(_GLOBS) > 65536:
            _GLOBS.clear()
        _GLOBS[pattern] = rx
    return rx


def _type_of(
    actions: Iterable[str], arn: str
) -> tuple[catalog.ResourceType, tuple[tuple[str, str], ...] | None] | None:
    """*arn*'s type for the first of *actions* (sorted) it is a resource of, with the template's
    values (typed_arn: resolving the rows typed most of these already)."""
    for action in sorted(actions):
        rt, values = typed_arn(action, arn)
        if rt is not None:
            return rt, values
    return None


_SCOPE = frozenset({"Partition", "Region", "Account", "AccountId"})


def _type_pattern(rt: catalog.ResourceType, values: tuple[tuple[str, str], ...] | None) -> str | None:
    """Every resource of *rt* in the partition, region and account of the ARN whose template
    *values* these are (``table/*``)."""
    if values is None:
        return None
    scope = tuple((n, v) for n, v in values if n in _SCOPE)
    key = (rt.arn_template, scope)  # a type's resources share a few scopes: fill each once
    got = _TYPE_PATTERNS.get(key)
    if got is None:
        got = re.sub(r"\*+", "*", catalog.fill_template(rt.arn_template, dict(scope)))
        if len(_TYPE_PATTERNS) > 65536:
            _TYPE_PATTERNS.clear()
        _TYPE_PATTERNS[key] = got
    return got


_TYPE_PATTERNS: dict[tuple[str, tuple[tuple[str, str], ...]], str] = {}


# --- generated names ------------------------------------------------------------------------------

# Parts of a name a program generates per run: request ids, timestamps, hex digests, counters.
# Longest first: a uuid is not three hex runs, a date is not three counters. Every kind starts
# with a hex digit: the leading look-ahead skips the other characters without trying each kind.
_GENERATED = re.compile(
    r"(?=[0-9a-fA-F])(?:"
    r"(?P<uuid>[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})"
    r"|(?P<date>(?<![0-9A-Za-z])(?:19|20)\d\d[-/_.]?[01]\d[-/_.]?[0-3]\d"
    r"(?:[-T_/]?[0-2]\d[-:_.]?[0-5]\d(?:[-:_.]?[0-5]\d)?(?:\.\d+)?Z?)?(?![0-9A-Za-z]))"
    r"|(?P<hex>(?<![0-9A-Za-z])(?=[0-9a-f]*[0-9])(?=[0-9a-f]*[a-f])[0-9a-f]{8,}(?![0-9A-Za-z]))"
    r"|(?P<counter>(?<![A-Za-z0-9])\d+(?![A-Za-z0-9])))"
)


_JOINED_STARS = re.compile(r"\*[-_./:]*\*")


def _shape(name: str) -> str:
    """``eval-7.json`` → ``eval-*.json``; runs of ``*`` joined only by separators collapse
    (``2026/11/20/[$LATEST]f889…`` → ``*/[$LATEST]*``)."""
    text = _GENERATED.sub("*", name)
    if text.count("*") > 1:
        text = _JOINED_STARS.sub("*", _JOINED_STARS.sub("*", text))
    return text


def _generated_kinds(name: str) -> frozenset[str]:
    """The kinds of generated parts in *name* (``eval-7.json`` → {counter}). Asked once per
    pattern written, not per name: most names' shapes are never written."""
    return frozenset(m.lastgroup or "" for m in _GENERATED.finditer(name))


# An AWS-generated id: a short type prefix and a hex or decimal run (sg-0a1b2c3d, i-0123…ef0,
# vol-…, snap-…, subnet-…, eni-…), the EC2 resource id format.
# https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/resource-ids.html
_ID = re.compile(r"(?P<prefix>[A-Za-z]+-)?(?:[0-9a-fA-F]*[0-9][0-9a-fA-F]*)")
# A template whose resource part is one id variable (security-group/${SecurityGroupId}).
_ID_VARIABLE = re.compile(r"[/:]\$\{[A-Za-z]*Id\}$")
_ID_LEAD = re.compile(r"[A-Za-z]+-")
_STEM_CHARACTER = re.compile(r"[A-Za-z0-9]")


def _id_prefix(template: str, name: str) -> str | None:
    """The type's own id prefix of *name* (``sg-`` of ``sg-0a1b2c3d``, ``""`` of a bare id), or
    None when *name* is not an id. A name is an id when it is entirely ``<letters>-<hex or
    number>``, or when the ARN template's resource part is a single ``…Id`` variable (then the
    id prefix is its leading ``<letters>-``, if any)."""
    m = _ID.fullmatch(name)
    if m is not None:
        return m.group("prefix") or ""
    if _id_variable(template):
        lead = _ID_LEAD.match(name)
        return lead.group(0) if lead else ""
    return None


@functools.lru_cache(maxsize=1 << 12)
def _id_variable(template: str) -> bool:
    """Whether the template's resource part is one ``…Id`` variable (bounded: catalog templates)."""
    return _ID_VARIABLE.search(template) is not None


def _has_stem(shaped: str, id_prefix: str | None) -> bool:
    """Whether a pattern keeps a stable part of the name beyond its generated parts and beyond
    the type's id prefix: ``eval-*.json`` does, ``sg-*`` (every security group) does not."""
    literal = shaped.replace("*", "")
    if id_prefix and shaped.startswith(id_prefix):
        literal = shaped[len(id_prefix) :].replace("*", "")
    return _STEM_CHARACTER.search(literal) is not None


def generated_name_patterns(action: str, arns: Collection[str]) -> dict[str, tuple[str, str]]:
    """{arn: (pattern, admits)} for ARNs of *action* whose names differ only in generated parts.

    Names are compared per resource type and scope (partition, region, account, and every other
    variable of the ARN): two or more distinct names of one shape get the shape as a pattern.
    The pattern must keep a literal part of the name beyond the type's own id prefix (a name
    that is nothing but a uuid, or an id such as ``sg-0a1b2c3d`` or ``i-0123…``, would become the
    whole resource type, which is the ladder's ``resource-type`` step, not this rule): those
    names stay exact. In an S3 key the dated folder varies too (``outputs/2026-10-06/eval-7.json`` →
    ``outputs/*/eval-*.json``): tomorrow's run writes under tomorrow's date. One observed name
    stays exact.
    """
    groups: dict[tuple[str, tuple[tuple[str, str], ...], str], list[str]] = defaultdict(list)
    info: dict[tuple[str, tuple[tuple[str, str], ...], str], tuple[str, str, str]] = {}
    ordered = sorted(set(arns))
    for arn in ordered:
        if has_wildcard(arn):  # a pattern already; an escaped literal (${$}) is a name like any
            continue
        rt, values = typed_arn(action, arn)
        if rt is None:
            continue
        if not values:
            continue
        name_var, name = values[-1]
        if name_var in _SCOPE:
            continue
        shaped = _shape(name)
        if shaped == name or not _has_stem(shaped, _id_prefix(rt.arn_template, name)):
            continue
        key = (rt.arn_template, values[:-1], shaped)
        groups[key].append(arn)
        info[key] = (rt.name, name_var, name)  # the kinds said are the last name's
    patterns: dict[tuple[str, tuple[tuple[str, str], ...], str], str] = {}
    taken: set[str] = set()
    for key, members in sorted(groups.items()):
        if len(members) >= 2:
            template, fixed, shaped = key
            patterns[key] = catalog.fill_template(template, {**dict(fixed), info[key][1]: shaped})
            taken.update(members)
    # A name the pattern matches although its own shape differs (churn-train-v2 under
    # churn-train-*) is covered by the grant: it joins the pattern instead of staying exact.
    rest = [a for a in ordered if a not in taken and not has_wildcard(a)]
    out: dict[str, tuple[str, str]] = {}
    for key, pattern in patterns.items():
        extra = [a for a in rest if a not in out and glob_matches(pattern, a)]
        members = [*groups[key], *extra]
        type_name, _, last = info[key]
        kinds = _generated_kinds(last)
        admits = (
            f"any {type_name} named like {key[2]!r} (generated parts: {', '.join(sorted(kinds))}; "
            f"{len(members)} names seen)"
        )
        for arn in members:
            out[arn] = (pattern, admits)
    return out


# --- the ladder -----------------------------------------------------------------------------------


def _open_segments(literal: str, covered: Iterable[str]) -> int:
    n = len(literal)
    return max((_segment_count(r[n:]) for r in covered if r.startswith(literal)), default=1) or 1


@functools.lru_cache(maxsize=1 << 17)
def _segment_count(text: str) -> int:
    """``len(_segments(text))``: a type's every-resource step counts the segments of each of its
    names again whenever one of them changed (bounded: names come from records)."""
    return len(_segments(text))


def _estimate_saved(
    covers: Collection[str], pattern: str, in_statements: Mapping[str, AbstractSet[int]]
) -> int:
    touched: set[int] = set()
    saved = 0
    empty: frozenset[int] = frozenset()
    for r in covers:
        ids = in_statements.get(r, empty)
        saved += len(ids) * (len(r) + 3)
        touched |= ids
    return saved - len(touched) * (len(pattern) + 3)


class _DeniedIndex:
    """The denied-only resources of each action, sorted once, so that a ``prefix*`` step finds
    those it would allow by bisection instead of testing every one (a busy role has thousands
    of denied keys and the ladder thousands of steps)."""

    def __init__(self, denied: Mapping[str, Sequence[str]]) -> None:
        self.denied = denied
        self._sorted: dict[str, tuple[list[str], list[int], list[int]]] = {}

    def _index(self, action: str) -> tuple[list[str], list[int], list[int]]:
        got = self._sorted.get(action)
        if got is None:
            values = self.denied.get(action, ())
            plain = sorted((d, i) for i, d in enumerate(values) if "${" not in d)
            escaped = [i for i, d in enumerate(values) if "${" in d]
            got = self._sorted[action] = ([d for d, _ in plain], [i for _, i in plain], escaped)
        return got

    def matching(self, pattern: str, action: str) -> list[str]:
        """The denied resources of *action* that *pattern* matches, in their given order."""
        values = self.denied.get(action, ())
        if not values:
            return []
        star = pattern.find("*")
        if star < 0 or star != len(pattern) - 1 or "${" in pattern or "?" in pattern or len(values) < 8:
            return [d for d in values if glob_matches(pattern, d)]
        head = pattern[:-1]
        keys, order, escaped = self._index(action)
        hits = [i for i in escaped if glob_matches(pattern, values[i])]
        j = bisect.bisect_left(keys, head)
        while j < len(keys) and keys[j].startswith(head):
            hits.append(order[j])
            j += 1
        return [values[i] for i in sorted(hits)]


def _denied_by(pattern: str, actions: Collection[str], denied: _DeniedIndex) -> tuple[str, ...]:
    return tuple(f"{a} {d}" for a in sorted(actions) for d in denied.matching(pattern, a))


class LadderMemo:
    """What one run of the ladder keeps from one round to the next, so that a round re-scores
    only the steps whose inputs a taken step changed.

    A step's score comes from its pattern, the resources it covers, the statements each covered
    resource is in and the actions granted on it (its denied-only hits). A round finds the
    resources whose statements or actions changed since the round before (``dirty``); a step
    found again with the same covered resources, none of them dirty, is the step scored before.
    On a 10M-record store's busiest role most of ~800 steps stay unchanged through nine rounds
    (each merge round changes one service's statements). Statements are labelled by (actions,
    conditions, occurrence) so that a statement the round did not change keeps its label; the
    estimate depends only on which labels each resource has, so a label is never wrong, at
    worst a miss. Lives for one policy: nothing here outlives :func:`identity._fit`."""

    __slots__ = (
        "_actions_of",
        "_dirty",
        "_groups",
        "_in_statements",
        "_keys",
        "_labels",
        "_members",
        "_proposals",
        "_regions",
        "_scored",
    )

    def __init__(self) -> None:
        self._keys: frozenset[tuple[str, str]] = frozenset()
        self._actions_of: dict[str, set[str]] = {}
        self._proposals: list[_Proposal] | None = None
        self._groups: dict[tuple[str, str], tuple[list[str], list[_Proposal]]] = {}
        self._labels: dict[tuple[tuple[str, ...], tuple[Condition, ...], int], int] = {}
        self._members: dict[int, tuple[str, ...]] = {}  # label → the statement's resources
        self._in_statements: dict[str, set[int]] = {}  # resource → labels of its statements
        self._dirty: set[str] = set()
        self._scored: dict[tuple[WideningKind, str], tuple[frozenset[str], str, Candidate | None]] = {}
        self._regions: dict[str, str | None] = {}

    def grants(self, keys: Collection[tuple[str, str]]) -> tuple[dict[str, set[str]], list[_Proposal] | None]:
        """The actions granted on each resource of *keys*; and, when the keys are last round's
        (a round that merged statements moves no grant), the steps proposed then: the same
        grants propose the same steps, so the round scores them without finding them again."""
        now = frozenset(keys)
        if now != self._keys or not self._actions_of:
            self._dirty.update(r for _, r in now.symmetric_difference(self._keys))
            self._keys = now
            self._actions_of = _actions_of(keys)
            self._proposals = None
        return self._actions_of, self._proposals

    def proposed(self, proposals: list[_Proposal]) -> None:
        self._proposals = proposals

    def group(self, key: tuple[str, str], members: list[str]) -> list[_Proposal] | None:
        """What a group of resources (*key*: the objects, or a type) proposed the last time it
        had these *members*, if it had."""
        got = self._groups.get(key)
        return got[1] if got is not None and got[0] == members else None

    def keep_group(self, key: tuple[str, str], members: list[str], proposals: list[_Proposal]) -> None:
        self._groups[key] = (members, proposals)

    def _label(self, statements: Sequence[StatementShape]) -> list[int]:
        """A label per statement, the same as last round's for the same (actions, conditions)."""
        seen: dict[tuple[tuple[str, ...], tuple[Condition, ...]], int] = defaultdict(int)
        out = []
        for st in statements:
            n = seen[(st.actions, st.conditions)]
            seen[(st.actions, st.conditions)] = n + 1
            out.append(self._labels.setdefault((st.actions, st.conditions, n), len(self._labels)))
        return out

    def in_statements(self, statements: Sequence[StatementShape]) -> dict[str, set[int]]:
        """The labels of the statements each resource is in: last round's, updated for the
        statements whose resources changed (their resources become dirty)."""
        now = dict(zip(self._label(statements), (st.resources for st in statements), strict=True))
        index = self._in_statements
        for label, resources in self._members.items():
            new = now.get(label)
            if new is not resources and new != resources:
                for r in resources:
                    labels = index[r]
                    labels.discard(label)
                    if not labels:
                        del index[r]
                self._dirty.update(resources)
        for label, resources in now.items():
            old = self._members.get(label)
            if old is not resources and old != resources:
                for r in resources:
                    index.setdefault(r, set()).add(label)
                self._dirty.update(resources)
        self._members = now
        return index

    def dirty(self) -> set[str]:
        """The resources whose statements or actions changed since the last call (new ones too)."""
        dirty, self._dirty = self._dirty, set()
        return dirty

    def scored(
        self, kind: WideningKind, pattern: str, covers: frozenset[str], admits: str, dirty: set[str]
    ) -> tuple[bool, Candidate | None]:
        """(True, the step scored before) when nothing it is scored from changed."""
        got = self._scored.get((kind, pattern))
        if got is None or got[1] != admits or (got[0] is not covers and got[0] != covers):
            return False, None
        if not dirty.isdisjoint(covers):
            return False, None
        return True, got[2]

    def score(
        self, kind: WideningKind, pattern: str, covers: frozenset[str], admits: str, step: Candidate | None
    ) -> None:
        self._scored[(kind, pattern)] = (covers, admits, step)

    def region_free(self, resource: str) -> str | None:
        """*resource* with ``*`` for its region (None: no region to free), computed once a run."""
        if resource in self._regions:
            return self._regions[resource]
        parts = resource.split(":", 5)
        free = None
        if len(parts) == 6 and parts[3] and parts[3] != "*":
            free = ":".join([*parts[:3], "*", *parts[4:]])
        self._regions[resource] = free
        return free


# A step a generator proposes: kind, pattern, covered resources, literal part, admits, and
# the segments it leaves open when known (the arguments of _Steps.add).
_Proposal = tuple[WideningKind, str, Collection[str], str, str, "int | None"]


def _actions_of(keys: Collection[tuple[str, str]]) -> dict[str, set[str]]:
    actions_of: dict[str, set[str]] = defaultdict(set)
    for action, resource in keys:
        if resource != "*":
            actions_of[resource].add(action)
    return actions_of


class _Steps:
    """The ladder steps found so far from one set of grants (:func:`candidates`)."""

    def __init__(
        self,
        keys: Collection[tuple[str, str]],
        statements: Sequence[StatementShape],
        denied: Mapping[str, Sequence[str]],
        memo: LadderMemo | None = None,
    ) -> None:
        self.proposals: list[_Proposal] | None = None  # proposed last round, same grants
        if memo is None:
            self.actions_of = _actions_of(keys)
        else:
            self.actions_of, self.proposals = memo.grants(keys)
        # What the generators propose this round (recorded for the next, when finding anew).
        self.recording: list[_Proposal] | None = [] if memo is not None and self.proposals is None else None
        self.in_statements: Mapping[str, AbstractSet[int]]
        if memo is None:
            in_statements: dict[str, set[int]] = defaultdict(set)
            for i, st in enumerate(statements):
                for r in st.resources:
                    in_statements[r].add(i)
            self.in_statements = in_statements
        else:
            self.in_statements = memo.in_statements(statements)
        self.denied = _DeniedIndex(denied)
        self.found: list[Candidate] = []
        self.seen: set[tuple[WideningKind, str]] = set()
        self.memo = memo
        self.dirty = memo.dirty() if memo is not None else set()

    def add(
        self,
        kind: WideningKind,
        pattern: str,
        covers: Collection[str],
        literal: str,
        admits: str,
        open_segments: int | None = None,
    ) -> None:
        """A step replacing *covers* by *pattern*, if it covers two or more and saves characters.
        *open_segments* is :func:`_open_segments` of *literal* over *covers* when the caller
        already knows it."""
        if len(covers) < 2 or pattern == "*" or pattern in covers:
            return
        covered = frozenset(covers)  # the same object when *covers* is one (a replayed proposal)
        if self.recording is not None:
            # Recorded with the covered set (generators list each resource once): a replay
            # builds no set again, and finds it identical to the scored step's.
            self.recording.append((kind, pattern, covered, literal, admits, open_segments))
        if (kind, pattern) in self.seen:
            return
        self.seen.add((kind, pattern))
        if self.memo is not None:
            known, step = self.memo.scored(kind, pattern, covered, admits, self.dirty)
            if known:
                if step is not None:
                    self.found.append(step)
                return
        step = self._scored(kind, pattern, covers, covered, literal, admits, open_segments)
        if self.memo is not None:
            self.memo.score(kind, pattern, covered, admits, step)
        if step is not None:
            self.found.append(step)

    def proposing(self, key: tuple[str, str], members: list[str], propose: Callable[[], None]) -> None:
        """Run *propose* (the steps of one group of resources, *members*), or add what it proposed
        the last round the group had these members."""
        memo, recording = self.memo, self.recording
        if memo is None or recording is None:
            propose()
            return
        known = memo.group(key, members)
        if known is not None:
            for proposal in known:
                self.add(*proposal)
            return
        start = len(recording)
        propose()
        memo.keep_group(key, members, recording[start:])

    def _scored(
        self,
        kind: WideningKind,
        pattern: str,
        covers: Collection[str],
        covered: frozenset[str],
        literal: str,
        admits: str,
        open_segments: int | None,
    ) -> Candidate | None:
        saved = _estimate_saved(covers, pattern, self.in_statements)
        if saved <= 0:
            return None
        acts: set[str] = set().union(*map(self.actions_of.__getitem__, covers))
        return Candidate(
            kind,
            pattern,
            covered,
            saved,
            _WEIGHT[kind] * (open_segments or _open_segments(literal, covers)),
            admits,
            _denied_by(pattern, acts, self.denied),
        )


def candidates(
    keys: Collection[tuple[str, str]],
    statements: Sequence[StatementShape],
    denied: Mapping[str, Sequence[str]],
    object_threshold: int,
    memo: LadderMemo | None = None,
) -> list[Candidate]:
    """Every ladder step that could be taken from the current (action, resource) grants.
    *memo*: the same object for every round of one ladder (what earlier rounds scored)."""
    steps = _Steps(keys, statements, denied, memo)
    if steps.proposals is not None:  # the grants of last round: the steps it proposed
        for proposal in steps.proposals:
            steps.add(*proposal)
    else:
        _propose(steps, object_threshold)
        if memo is not None and steps.recording is not None:
            memo.proposed(steps.recording)
        steps.recording = None
    steps.found += _service_merges(statements, denied)  # 5. statements of one service merged
    steps.found += _condition_merges(statements)  # 6. one service's conditions merged
    if not steps.found:  # 7. only when nothing narrower is left: every resource of a service
        _service_wide_steps(steps)
    out = steps.found
    out.sort(key=lambda c: (-c.score, -len(c.pattern), c.kind, c.pattern))
    return out


def _propose(steps: _Steps, object_threshold: int) -> None:
    """Rungs 1-4 of every resource granted: each step proposed to :meth:`_Steps.add`. The
    object steps and each type's steps are proposed from their own resources alone: those the
    round before proposed from the same resources are proposed again as they were."""
    objects = sorted(r for r in steps.actions_of if is_s3_object_arn(r))

    def object_steps() -> None:
        _s3_prefix_steps(steps, objects, object_threshold)  # 1. deeper S3 prefixes
        _bucket_prefix_steps(steps, objects)  # 2. buckets sharing a name prefix

    steps.proposing(("objects", str(object_threshold)), objects, object_steps)
    for tp, (type_name, members) in _by_type(steps.actions_of).items():  # 2-4. other resources

        def type_steps(tp: str = tp, type_name: str = type_name, members: list[str] = members) -> None:
            _name_prefix_steps(steps, tp, type_name, members)
            _resource_type_step(steps, tp, type_name, members)

        steps.proposing((tp, type_name), members, type_steps)
    _region_steps(steps)  # 3. the same name across regions


def _s3_prefix_steps(steps: _Steps, objects: list[str], object_threshold: int) -> None:
    """1. Deeper S3 prefixes: the object-key folding at lower thresholds."""
    for threshold in range(max(object_threshold, 2) - 1, 0, -1):
        if not objects:
            break
        folded: dict[str, list[str]] = defaultdict(list)
        for arn, target in generalize_object_arns(objects, threshold).items():
            if target != arn:
                folded[target].append(arn)
        for target, arns in folded.items():
            steps.add(
                WideningKind.S3_PREFIX,
                target,
                arns,
                target[:-1],
                f"any object under {target[:-1]} ({len(arns)} seen)",
            )


def _bucket_prefix_steps(steps: _Steps, objects: list[str]) -> None:
    """2. Objects of buckets sharing a name prefix: acme-data-*/*."""
    bucket_prefixes: dict[str, list[str]] = defaultdict(list)
    for r in objects:
        head, _, rest = r.partition(":::")
        bucket = rest.partition("/")[0]
        acc = ""
        for seg in _segments(bucket)[:-1]:
            acc += seg
            bucket_prefixes[f"{head}:::{acc}"].append(r)
    for prefix, covered in bucket_prefixes.items():
        if re.search(r"[A-Za-z0-9]", prefix.partition(":::")[2]):
            steps.add(
                WideningKind.NAME_PREFIX,
                prefix + "*/*",
                covered,
                prefix,
                f"any object of any bucket whose name starts with "
                f"{prefix.partition(':::')[2]!r} ({len(covered)} buckets seen)",
            )


def _by_type(actions_of: Mapping[str, set[str]]) -> dict[str, tuple[str, list[str]]]:
    """Non-object resources by their type's account-and-region pattern: (type name, members)."""
    by_type: dict[str, tuple[str, list[str]]] = {}
    action_sets: dict[frozenset[str], frozenset[str]] = {}  # one object per set of actions
    for r in sorted(actions_of):
        if is_s3_object_arn(r):
            continue  # object keys: step 1 (S3 prefixes)
        actions = frozenset(actions_of[r])
        typed = _typed(r, action_sets.setdefault(actions, actions))
        if typed is None:
            continue
        type_name, tp = typed
        members = by_type[tp][1] if tp in by_type else []
        members.append(r)
        by_type[tp] = (type_name, members)
    return by_type


# (resource, its actions) → (type name, the type's account-and-region pattern): the same tens of
# thousands of resources are typed again in every round of the ladder (a third of its time on a
# 10M-record store's busiest role). Bounded as _GLOBS is.
_TYPED: dict[tuple[str, frozenset[str]], tuple[str, str] | None] = {}


def _typed(r: str, actions: frozenset[str]) -> tuple[str, str] | None:
    key = (r, actions)
    if key in _TYPED:
        return _TYPED[key]
    found = _type_of(actions, r)
    tp = _type_pattern(*found) if found is not None else None
    typed = (found[0].name, tp) if found is not None and tp is not None else None
    if len(_TYPED) > 262144:
        _TYPED.clear()
    _TYPED[key] = typed
    return typed


def _name_prefix_steps(steps: _Steps, tp: str, type_name: str, members: list[str]) -> None:
    """2. Shared name prefixes, cut at a separator (billing-fn-*), longer than the type's."""
    literal = tp.split("*", 1)[0]
    for prefix, covered, open_below in _name_prefixes(literal, tuple(members)):
        steps.add(
            WideningKind.NAME_PREFIX,
            prefix + "*",
            covered,
            prefix,
            f"any {type_name} whose name starts with {prefix[len(literal) :]!r} ({len(covered)} seen)",
            open_below,
        )


# (literal, members) → their name prefixes: most types keep their members from one round of the
# ladder to the next, and splitting tens of thousands of names again each round was a fifth of
# the ladder's time on a 10M-record store's busiest role. Bounded as _GLOBS is.
_PREFIXES: dict[tuple[str, tuple[str, ...]], list[tuple[str, list[str], int]]] = {}


def _name_prefixes(literal: str, members: tuple[str, ...]) -> list[tuple[str, list[str], int]]:
    """(prefix, the members under it, segments it leaves open) for each prefix of two or more
    members that may be a step, in the order the members first reach them."""
    key = (literal, members)
    got = _PREFIXES.get(key)
    if got is not None:
        return got
    by_prefix: dict[str, list[str]] = defaultdict(list)
    # The segments a prefix leaves open below it (its breadth), known here from each member's
    # own segments: a prefix ends at a separator, so what follows it splits into the member's
    # remaining segments (re-splitting every member under every prefix, each round of the
    # ladder, was 29 s on a 10M-record store's busiest role).
    open_below: dict[str, int] = {}
    for r in members:
        chain = _prefix_chain(literal, r)
        for j in range(0, len(chain), 2):
            acc, left = r[: chain[j]], chain[j + 1]
            by_prefix[acc].append(r)
            if left > open_below.get(acc, 0):
                open_below[acc] = left
    out = []
    for prefix, covered in by_prefix.items():
        if len(covered) < 2:
            continue  # a step covers two or more (_Steps.add)
        stem = prefix[len(literal) :]
        # Ids sharing only their type's prefix (sg-*, i-*): that is every resource of the type,
        # the resource-type step, listed as such, not a name prefix.
        if re.fullmatch(r"[A-Za-z]+-", stem) and all(_ID.fullmatch(r[len(literal) :]) for r in covered):
            continue
        if re.search(r"[A-Za-z0-9]", stem):
            out.append((prefix, covered, open_below[prefix]))
    if len(_PREFIXES) > 64:
        _PREFIXES.clear()
    _PREFIXES[key] = out
    return out


# (literal, name) → where its prefixes end and the segments each leaves open, flat (end, left,
# end, left, ...): a type whose members changed in a round splits only its new names again.
# Offsets, not the prefix strings: a busy role's names have 400k prefixes (78 MiB as strings).
# Bounded as _GLOBS is.
_CHAINS: dict[tuple[str, str], tuple[int, ...]] = {}


def _prefix_chain(literal: str, r: str) -> tuple[int, ...]:
    """Where the prefixes of *r* below *literal* that end at a separator end, up to the first
    segment with a wildcard, each followed by the segments it leaves open below it."""
    key = (literal, r)
    got = _CHAINS.get(key)
    if got is not None:
        return got
    segs = _segments(r[len(literal) :]) if r.startswith(literal) else []
    end = len(literal)
    chain: list[int] = []
    for i, seg in enumerate(segs[:-1]):
        end += len(seg)
        if "*" in seg or "?" in seg:
            break
        chain += (end, len(segs) - i - 1)
    if len(_CHAINS) > 262144:
        _CHAINS.clear()
    got = _CHAINS[key] = tuple(chain)
    return got


def _resource_type_step(steps: _Steps, tp: str, type_name: str, members: list[str]) -> None:
    """4. Every resource of the type in the account and region — never without an account
    (an S3 bucket ARN names none: arn:aws:s3:::* would be every bucket of every account)."""
    parts = tp.split(":", 5)
    if len(parts) == 6 and parts[4] and parts[4] != "*":
        where = f"account {parts[4]}" + (f", region {parts[3]}" if parts[3] else "")
        steps.add(
            WideningKind.RESOURCE_TYPE,
            tp,
            members,
            tp.split("*", 1)[0],
            f"every {type_name} in {where} ({len(members)} seen)",
        )


def _region_steps(steps: _Steps) -> None:
    """3. The same name across regions."""
    by_region: dict[str, list[str]] = defaultdict(list)
    memo = steps.memo or LadderMemo()
    for r in steps.actions_of:
        free = memo.region_free(r)
        if free is not None:
            by_region[free].append(r)
    for pattern, covered in by_region.items():
        regions = sorted({r.split(":")[3] for r in covered})
        steps.add(
            WideningKind.ACROSS_REGIONS,
            pattern,
            covered,
            pattern,
            f"the same name in every region, not only {', '.join(regions)}",
        )


def _merged_size(
    acts: Sequence[str], res: Sequence[str], conditions: Sequence[Condition] | None = None
) -> int:
    """About the characters of one statement of *acts* on *res*, with a Condition block of
    *conditions* unless None (the merge steps' estimate; statements are measured once rebuilt)."""
    shell = '{"Effect":"Allow","Action":[],"Resource":[],"Sid":""' + (
        "}" if conditions is None else ',"Condition":{}}'
    )
    size = len(shell) + 40 + sum(len(a) + 3 for a in acts) + sum(len(r) + 3 for r in res)
    return size + sum(len(c.key) + 20 + sum(len(v) + 3 for v in c.values) for c in conditions or ())


def _service_merges(
    statements: Sequence[StatementShape], denied: Mapping[str, Sequence[str]]
) -> list[Candidate]:
    """5. Statements of one service (same conditions, no Resource "*") merged into one."""
    by_service: dict[tuple[str, tuple[Condition, ...]], list[StatementShape]] = defaultdict(list)
    for st in statements:
        services = {a.split(":")[0] for a in st.actions}
        if len(services) == 1 and "*" not in st.resources:
            by_service[(services.pop(), st.conditions)].append(st)
    out = []
    for (service, conds), sts in sorted(by_service.items(), key=lambda kv: (kv[0][0], repr(kv[0][1]))):
        if len(sts) < 2:
            continue
        acts = sorted({a for st in sts for a in st.actions})
        res = sorted({r for st in sts for r in st.resources})
        saved = sum(st.size for st in sts) - _merged_size(acts, res)
        if saved <= 0:
            continue
        observed = sum(len(st.actions) * len(st.resources) for st in sts)
        pairs = len(acts) * len(res)
        granted = PatternIndex(res)
        denied_hits = tuple(f"{a} {d}" for a in acts for d in denied.get(a, ()) if granted.covers(d))
        out.append(
            Candidate(
                WideningKind.SERVICE_MERGE,
                f"{service}:{len(sts)} statements",
                frozenset(res),
                saved,
                _WEIGHT[WideningKind.SERVICE_MERGE] * max(1.0, math.log2(pairs / max(observed, 1)) + 1),
                f"each of {len(acts)} {service} actions on each of {len(res)} resources "
                f"({pairs} action-resource pairs, {observed} granted before)",
                denied_hits,
                service=service,
                conditions=conds,
            )
        )
    return out


def _service_wide_steps(steps: _Steps) -> None:
    """7. Every resource of one service in one account (and region, when all are in one):
    ``arn:aws:sagemaker:*:111122223333:*``. Never for an ARN without an account (S3 buckets and
    objects: ``arn:aws:s3:::*`` is every bucket of every account) nor an AWS-owned one."""
    by_service: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    for r in steps.actions_of:
        parts = r.split(":", 5)
        if len(parts) == 6 and parts[0] == "arn" and re.fullmatch(r"\d{12}", parts[4]):
            by_service[(parts[1], parts[2], parts[4])].append(r)
    for (partition, service, account), members in sorted(by_service.items()):
        regions = sorted({r.split(":")[3] for r in members})
        region = regions[0] if len(regions) == 1 else "*"
        literal = f"arn:{partition}:{service}:{region}:{account}:"
        where = f"account {account}" + (f", region {region}" if region not in ("*", "") else "")
        steps.add(
            WideningKind.SERVICE_WIDE,
            literal + "*",
            members,
            literal,
            f"every {service} resource in {where} ({len(members)} seen)",
        )


def _condition_merges(statements: Sequence[StatementShape]) -> list[Candidate]:
    """6. The statements of one service under different conditions (``aws:SourceVpce`` of
    different endpoints, pinned and not) given one condition set: each key all of them test, with
    the union of their values; a key some do not test is dropped. They can then merge (rung 5)."""
    by_service: dict[str, list[StatementShape]] = defaultdict(list)
    for st in statements:
        services = {a.split(":")[0] for a in st.actions}
        if len(services) == 1:
            by_service[services.pop()].append(st)
    out = []
    for service, sts in sorted(by_service.items()):
        variants = {st.conditions for st in sts}
        if len(variants) < 2:
            continue
        tested = [{(c.operator, c.key): c.values for c in conds} for conds in variants]
        common = set.intersection(*(set(t) for t in tested))
        merged = tuple(
            Condition(op, key, tuple(sorted({v for t in tested for v in t[(op, key)]})))
            for op, key in sorted(common)
        )
        dropped = sorted({key for t in tested for (_, key) in t} - {key for _, key in common})
        acts = sorted({a for st in sts for a in st.actions})
        res = sorted({r for st in sts for r in st.resources})
        saved = sum(st.size for st in sts) - _merged_size(acts, res, merged)
        if saved <= 0:
            continue
        said = [f"{service} calls without {key} (some calls had none)" for key in dropped]
        said += [
            f"{service} calls with {c.key} any of {', '.join(c.values)}"
            for c in merged
            if any(t[(c.operator, c.key)] != c.values for t in tested)
        ]
        out.append(
            Candidate(
                WideningKind.CONDITION_MERGE,
                f"{service}:{len(variants)} condition sets",
                frozenset(res),
                saved,
                _WEIGHT[WideningKind.CONDITION_MERGE] * len(variants),
                f"on each of its {len(res)} resources: " + "; ".join(said),
                (),
                service=service,
                conditions=merged,
            )
        )
    return out


def choose(found: Sequence[Candidate], overflow: int) -> list[Candidate]:
    """Best-scoring steps whose covered resources do not overlap, until their estimated savings
    reach *overflow*. Steps covering a denied-only call are chosen only when no other exists."""
    clean = [c for c in found if not c.denied]
    pool = clean or list(found)
    chosen: list[Candidate] = []
    taken: set[str] = set()
    saved = 0
    for c in pool:
        if c.covers & taken:
            continue
        if c.kind in MERGE_KINDS and chosen:
            continue
        chosen.append(c)
        taken |= c.covers
        saved += c.saved
        if saved >= overflow or c.kind in MERGE_KINDS:
            break
    return chosen
