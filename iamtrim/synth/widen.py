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
import itertools
import math
import operator
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import cast

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
    ordered = _SORTED.get(actions) if isinstance(actions, frozenset) else None
    if ordered is None:
        ordered = tuple(sorted(actions))
        if isinstance(actions, frozenset):
            if len(_SORTED) > 65536:
                _SORTED.clear()
            _SORTED[actions] = ordered
    for action in ordered:
        rt, values = typed_arn(action, arn)
        if rt is not None:
            return rt, values
    return None


# A set of actions, sorted (the sets a ladder types its resources with are few). Bounded as
# _GLOBS is.
_SORTED: dict[frozenset[str], tuple[str, ...]] = {}

_SCOPE = frozenset({"Partition", "Region", "Account", "AccountId"})


def _type_pattern(rt: catalog.ResourceType, values: tuple[tuple[str, str], ...] | None) -> str | None:
    """Every resource of *rt* in the partition, region and account of the ARN whose template
    *values* these are (``table/*``)."""
    if values is None:
        return None
    pick = _SCOPE_PICKS.get(rt.arn_template)
    if pick is None:  # where the scope variables are among the template's (the same for all)
        pick = _SCOPE_PICKS[rt.arn_template] = tuple(i for i, (n, _) in enumerate(values) if n in _SCOPE)
    scope = tuple([values[i] for i in pick])
    key = (rt.arn_template, scope)  # a type's resources share a few scopes: fill each once
    got = _TYPE_PATTERNS.get(key)
    if got is None:
        got = re.sub(r"\*+", "*", catalog.fill_template(rt.arn_template, dict(scope)))
        if len(_TYPE_PATTERNS) > 65536:
            _TYPE_PATTERNS.clear()
        _TYPE_PATTERNS[key] = got
    return got


_TYPE_PATTERNS: dict[tuple[str, tuple[tuple[str, str], ...]], str] = {}
_SCOPE_PICKS: dict[str, tuple[int, ...]] = {}  # catalog template → its scope variables' places


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


class _DeniedIndex:
    """The denied-only resources of each action, sorted once, so that a ``prefix*`` step finds
    those it would allow by bisection instead of testing every one (a busy role has thousands
    of denied keys and the ladder thousands of steps)."""

    def __init__(self, denied: Mapping[str, Sequence[str]]) -> None:
        self.denied = {action: tuple(values) for action, values in denied.items()}
        self._sorted: dict[str, tuple[list[str], list[int], list[int]]] = {}
        self._hits: dict[tuple[str, str], list[str]] = {}  # (pattern, action) → matching()

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
        got = self._hits.get((pattern, action))
        if got is None:
            got = self._hits[(pattern, action)] = self._matching(pattern, action, values)
        return got

    def _matching(self, pattern: str, action: str, values: Sequence[str]) -> list[str]:
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


# Where each resource sits in this round's statements: the index of its one statement, or the
# indexes of the several it is in (None: in none, e.g. dropped under a pattern that covers it).
_Owner = int | frozenset[int] | None


class _Round:
    """This round's statements as the steps are scored from them.

    A step replacing its covered resources by one pattern saves, in each statement holding one
    of them, that resource's characters (``len + 3`` with quotes and comma) and costs the pattern
    once per statement it lands in: ``sum(len(r) + 3 per statement of r) - (statements touched)
    * (len(pattern) + 3)``. Most resources are in one statement: the owner of each is its index,
    found with one dict update per statement."""

    __slots__ = ("owner", "shared")

    def __init__(self, statements: Sequence[StatementShape], labels: Sequence[int]) -> None:
        owner: dict[str, _Owner] = {}
        several: dict[str, set[int]] = {}  # resources in more than one statement: which
        for i, st in zip(labels, statements, strict=True):
            for r in owner.keys() & st.resources:
                if r in several:
                    several[r].add(i)
                else:
                    several[r] = {cast(int, owner[r]), i}
            owner.update(dict.fromkeys(st.resources, i))
        for r, holding in several.items():
            owner[r] = frozenset(holding)
        self.owner = owner
        self.shared = bool(several)

    def weights(self, resources: Sequence[str], owners: Sequence[_Owner]) -> list[int]:
        """Each resource's characters in the statements holding it."""
        out = [0 if o is None else len(r) + 3 for r, o in zip(resources, owners, strict=True)]
        if self.shared:
            for i, o in enumerate(owners):
                if isinstance(o, frozenset):
                    out[i] *= len(o)
        return out

    def touched(self, owners: Iterable[_Owner]) -> int:
        """How many statements hold one of the resources whose *owners* these are."""
        got: set[_Owner] = set(owners)
        got.discard(None)
        if not self.shared:
            return len(got)
        labels: set[int] = set()
        for o in got:
            if isinstance(o, frozenset):
                labels |= o
            elif o is not None:
                labels.add(o)
        return len(labels)

    def saved(self, covers: Collection[str], pattern: str) -> int:
        """The characters a step saves (walking its covered resources)."""
        owners = list(map(self.owner.get, covers))
        return sum(self.weights(list(covers), owners)) - self.touched(owners) * (len(pattern) + 3)


class _Names:
    """One resource type's names, sorted, and the name-prefix steps they propose.

    A step's prefix ends at a separator and is shared by two or more names; the names under a
    prefix are a contiguous range of the sorted names, so each step is a (start, end) range and
    is scored from per-name arrays (a sum, the statements of a slice) instead of walking its
    names: a busy role's log streams are 26k names under ~350k (prefix, name) pairs. The prefixes
    are found in one pass over neighbouring names: the prefixes a name shares with the next name
    but not with the one before first appear at that name (where splitting every name into all
    its prefixes first meets them too, so the steps come in the same order)."""

    __slots__ = ("_covers", "literal", "members", "prefixes", "segments", "whole")

    def __init__(
        self,
        literal: str,
        members: Sequence[str],
        chains: Callable[[str], tuple[tuple[int, ...], int]],
        before: _Names | None = None,
    ):
        self.literal = literal
        self.members = tuple(members)
        self.whole = frozenset(self.members)
        found = [chains(r) for r in self.members]
        # The segments below the literal of each name (0 for a name outside the literal).
        self.segments = [n for _, n in found]
        self.prefixes: list[tuple[str, int, int, int]] = []  # (prefix, start, end, open below)
        self._covers: dict[str, frozenset[str]] = {}  # prefix → the names under it
        if before is not None and before.literal == literal:
            changed = before.whole ^ self.whole
            if len(changed) * 8 < len(self.members):
                self._update(before, changed, chains)
                return
        shared = 0  # prefixes of this name shared with the name before
        for i in range(len(self.members) - 1):
            r, ends, after = self.members[i], found[i][0], self.members[i + 1]
            k = len(ends)
            while k > 0 and not after.startswith(r[: ends[k - 1]]):
                k -= 1
            for j in range(shared, k):
                self._prefix(r[: ends[j]], i, j + 1)
            shared = k

    def _update(
        self, before: _Names, changed: frozenset[str], chains: Callable[[str], tuple[tuple[int, ...], int]]
    ) -> None:
        """The prefixes of names that differ from *before*'s in the names *changed* (gone or
        come): the prefixes of the changed names are looked at again; every other prefix has the
        same names under it as before (only their place in the sorted names moved)."""
        again: dict[str, int] = {}  # prefix → its depth
        for r in changed:
            for j, e in enumerate(chains(r)[0]):
                again[r[:e]] = j + 1
        for prefix, start, end, open_below in before.prefixes:
            if prefix not in again:
                begin = self._start(prefix)
                self.prefixes.append((prefix, begin, begin + end - start, open_below))
                covered = before._covers.get(prefix)
                if covered is not None:
                    self._covers[prefix] = covered
        for prefix, depth in again.items():
            start = self._start(prefix)
            if start + 1 < len(self.members) and self.members[start + 1].startswith(prefix):
                self._prefix(prefix, start, depth)
        # The order a pass over the names finds them in: by first name, then shortest first.
        self.prefixes.sort(key=lambda p: (p[1], len(p[0])))

    def _start(self, prefix: str) -> int:
        """The first name under *prefix* (not *prefix* itself)."""
        start = bisect.bisect_left(self.members, prefix)
        return start + 1 if start < len(self.members) and self.members[start] == prefix else start

    def _prefix(self, prefix: str, start: int, depth: int) -> None:
        """The prefix ending *depth* segments below the literal, first reached at *start*."""
        stem = prefix[len(self.literal) :]
        if not re.search(r"[A-Za-z0-9]", stem):
            return
        end = bisect.bisect_left(self.members, prefix[:-1] + chr(ord(prefix[-1]) + 1), start + 2)
        n = len(self.literal)
        # Ids sharing only their type's prefix (sg-*, i-*): that is every resource of the type,
        # the resource-type step, listed as such, not a name prefix.
        if re.fullmatch(r"[A-Za-z]+-", stem) and all(_ID.fullmatch(r[n:]) for r in self.members[start:end]):
            return
        self.prefixes.append((prefix, start, end, max(self.segments[start:end]) - depth))

    def covers(self, prefix: str, start: int, end: int) -> frozenset[str]:
        """The names of a prefix's range, as a step's covered set (one object for the prefix
        while the names under it are the same)."""
        if end - start == len(self.members):
            return self.whole
        got = self._covers.get(prefix)
        if got is None:
            got = self._covers[prefix] = frozenset(self.members[start:end])
        return got

    def holds(self, value: str, start: int, end: int) -> bool:
        i = bisect.bisect_left(self.members, value, start, end)
        return i < end and self.members[i] == value


def _chain(literal: str, r: str) -> tuple[tuple[int, ...], int]:
    """Where the prefixes of *r* below *literal* that end at a separator end, up to the first
    segment with a wildcard; and how many segments *r* has below *literal*."""
    if not r.startswith(literal):
        return (), 0
    n = len(literal)
    segs = _TOKEN.findall(r, n)  # never an empty one
    ends = list(itertools.accumulate(map(len, segs[:-1]), initial=n))
    del ends[0]
    if "*" in r or "?" in r:
        wild = min(i for i in (r.find("*", n), r.find("?", n), len(r)) if i >= 0)
        del ends[bisect.bisect_right(ends, wild) :]
    return tuple(ends), len(segs)


class LadderMemo:
    """What one run of the ladder keeps from one round to the next, updated from what a round
    changed instead of found again.

    The grants change only where a step moved them (a merge round moves none): the actions of
    each resource, its type, the sorted names of each type and the ranges of their name prefixes
    (:class:`_Names`), the same name across regions and the S3 object steps are kept and updated
    for the resources whose grants changed. What a step saves depends on the statements each of
    its resources is in: a type (or the S3 objects) whose names, their statements (labelled so
    that a statement keeps its label while its actions and conditions stay) and their actions are
    those of the round before offers the steps it offered then; any other is scored anew, from
    per-name arrays. The steps found equal those found without a memo
    (tests/test_synth_widen.py). Lives for one policy: nothing here outlives
    :func:`identity._fit`."""

    __slots__ = (
        "_actions",
        "_chains",
        "_denied",
        "_free",
        "_frozen",
        "_keys",
        "_kinds",
        "_merges",
        "_names",
        "_object_steps",
        "_objects",
        "_order",
        "_region_counts",
        "_region_lists",
        "_regions",
        "_s3_objects",
        "_types",
        "labels",
        "offered",
    )

    def __init__(self) -> None:
        self._start()
        self._free: dict[str, str | None] = {}  # resource → the same with * for its region
        self._names: dict[tuple[str, str], _Names] = {}
        self._chains: dict[tuple[str, str], tuple[tuple[int, ...], int]] = {}
        self._object_steps: tuple[tuple[str, list[str]], list[_Proposal]] | None = None
        self._merges: dict[tuple[str, tuple[Condition, ...]], tuple[object, Candidate | None]] = {}
        self._denied: _DeniedIndex | None = None
        # (actions, conditions, occurrence) of a statement → its label: a statement the round did
        # not change keeps its label, so a type whose names are in the same statements scores
        # the same (what it offered is kept in *offered*).
        self.labels: dict[tuple[tuple[str, ...], tuple[Condition, ...], int], int] = {}
        self.offered: dict[tuple[str, str], tuple[tuple[object, ...], list[_Offer]]] = {}

    def _start(self) -> None:
        """No grants: what follows from them is empty."""
        self._keys: frozenset[tuple[str, str]] = frozenset()
        self._actions: dict[str, set[str]] = {}  # resource → the actions granted on it
        self._frozen: dict[str, frozenset[str]] = {}  # the same, one object per set of actions
        self._kinds: dict[str, tuple[str, str] | None] = {}  # resource → (type name, type pattern)
        self._s3_objects: set[str] = set()
        self._order: list[str] = []  # the resources, sorted
        self._objects: list[str] = []  # the S3 objects among them
        self._types: dict[str, tuple[str, list[str]]] = {}  # type pattern → (type name, members)
        self._regions: list[tuple[str, list[str], str]] = []  # (pattern, resources, admits)
        self._region_counts: Counter[str] = Counter()  # region-free pattern → resources
        self._region_lists: dict[str, list[str]] = {}  # the same, of those with two or more

    @property
    def actions_of(self) -> Mapping[str, set[str]]:
        return self._actions

    def grants(self, keys: Collection[tuple[str, str]]) -> None:
        """Take this round's (action, resource) grants: what depends on them is updated for the
        resources whose actions changed."""
        now = frozenset(keys)
        if now == self._keys and self._keys:
            return
        gone = self._keys - now
        if len(gone) > len(now):  # most grants moved: start again from the new ones
            self._start()
            gone = frozenset()
        touched: set[str] = set()
        removed: set[str] = set()
        for action, r in gone:
            if r != "*":
                left = self._actions[r]
                left.discard(action)
                if not left:
                    del self._actions[r]
                    removed.add(r)
                touched.add(r)
        new = []  # resources not granted before
        added = now - self._keys if self._keys else now
        granted = self._actions
        for action, r in added:
            got = granted.get(r)
            if got is None:
                granted[r] = {action}
                if r not in removed:
                    new.append(r)
            else:
                got.add(action)
        touched.update(map(operator.itemgetter(1), added))
        if "*" in granted:  # Resource "*": no step widens it
            del granted["*"]
            touched.discard("*")
            new = [r for r in new if r != "*"]
        self._keys = now
        self._retype(touched, new, removed)

    def _retype(self, touched: set[str], new: list[str], removed: set[str]) -> None:
        """Type the resources whose actions changed; regroup the types, objects and regions
        they are in (the others keep their groups)."""
        interned = {f: f for f in self._frozen.values()}  # one object per set of actions
        affected: set[str] = set()  # the type patterns whose members changed
        objects = False  # whether the S3 objects changed
        granted, frozen, kinds, free, s3_objects = (
            self._actions,
            self._frozen,
            self._kinds,
            self._free,
            self._s3_objects,
        )
        for r in touched:
            old = kinds.pop(r, None)
            if old is not None:
                affected.add(old[1])
            if r in granted:
                actions = frozenset(granted[r])
                actions = frozen[r] = interned.setdefault(actions, actions)
                if is_s3_object_arn(r):
                    s3_objects.add(r)
                    objects = True
                else:
                    kind = kinds[r] = _typed(r, actions)
                    if kind is not None:
                        affected.add(kind[1])
                if r not in free:
                    free[r] = _region_free(r)
            else:
                frozen.pop(r, None)
                if r in s3_objects:
                    s3_objects.discard(r)
                    objects = True
        gone = [r for r in removed if r not in self._actions]
        self._order = [r for r in self._order if r in self._actions] + new
        self._order.sort()  # nearly sorted already: one pass
        if objects:
            self._objects = sorted(self._s3_objects)
        self._regroup_types(affected, touched)
        self._regroup_regions(new, gone)

    def _regroup_types(self, affected: set[str], touched: set[str]) -> None:
        """The members of each type whose members changed, sorted; the types in the order of
        their first member."""
        kinds, types = self._kinds, self._types
        added: dict[str, list[str]] = defaultdict(list)
        for r in touched:
            kind = kinds.get(r)
            if kind is not None:
                added[kind[1]].append(r)
        for tp in affected:
            members = [r for r in types[tp][1] if r not in touched] if tp in types else []
            members += added.get(tp, ())
            members.sort()
            if members:
                types[tp] = (cast(tuple[str, str], kinds[members[-1]])[0], members)
            else:
                del types[tp]
        if affected:
            self._types = dict(sorted(types.items(), key=lambda kv: kv[1][1][0]))

    def _regroup_regions(self, new: list[str], gone: list[str]) -> None:
        """The names seen in two or more regions, counted per region-free pattern and listed
        only for those (few names are)."""
        free, counts = self._free, self._region_counts
        counts.update(filter(None, map(free.__getitem__, new)))
        counts.subtract(filter(None, map(free.__getitem__, gone)))
        changed = {f for f in map(free.__getitem__, [*new, *gone]) if f is not None}
        lists = self._region_lists
        targets = {f for f in changed if counts[f] >= 2 or f in lists}
        if not targets:
            return
        for f in targets:
            lists.pop(f, None)
        for r in self._order:
            free_r = free[r]
            if free_r is not None and free_r in targets and counts[free_r] >= 2:
                lists.setdefault(free_r, []).append(r)
        self._regions = []
        for pattern, covered in sorted(lists.items(), key=lambda kv: kv[1][0]):
            regions = ", ".join(sorted({r.split(":")[3] for r in covered}))
            self._regions.append((pattern, covered, f"the same name in every region, not only {regions}"))

    def label(self, statements: Sequence[StatementShape]) -> list[int]:
        """A label per statement, the same as last round's for the same (actions, conditions)."""
        seen: dict[tuple[tuple[str, ...], tuple[Condition, ...]], int] = defaultdict(int)
        out = []
        for st in statements:
            n = seen[(st.actions, st.conditions)]
            seen[(st.actions, st.conditions)] = n + 1
            out.append(self.labels.setdefault((st.actions, st.conditions, n), len(self.labels)))
        return out

    def denied(self, denied: Mapping[str, Sequence[str]]) -> _DeniedIndex:
        """The denied-only resources, indexed (kept while they are the same: one ladder's are)."""
        if (
            self._denied is None
            or any(tuple(values) != self._denied.denied.get(action, ()) for action, values in denied.items())
            or len(denied) != len(self._denied.denied)
        ):
            self._denied = _DeniedIndex(denied)
        return self._denied

    def types(self) -> dict[str, tuple[str, list[str]]]:
        """Non-object resources by their type's account-and-region pattern: (type name, members)."""
        return self._types

    def objects(self) -> list[str]:
        """The S3 object resources, sorted."""
        return self._objects

    def frozen(self) -> Mapping[str, frozenset[str]]:
        """The actions granted on each resource, one object per set of actions."""
        return self._frozen

    def names(self, tp: str, type_name: str, members: list[str]) -> _Names:
        """The name prefixes of a type's *members* (kept while its members are the same)."""
        got = self._names.get((tp, type_name))
        if got is None or len(got.members) != len(members) or list(got.members) != members:
            literal = tp.split("*", 1)[0]
            chains = self._chains

            def chain(r: str) -> tuple[tuple[int, ...], int]:
                found = chains.get((literal, r))
                if found is None:
                    found = chains[(literal, r)] = _chain(literal, r)
                return found

            got = self._names[(tp, type_name)] = _Names(literal, members, chain, got)
        return got

    def regions(self) -> list[tuple[str, list[str], str]]:
        """(pattern, resources, admits) of each name seen in two or more regions."""
        return self._regions

    def object_steps(
        self, threshold: int, objects: list[str], propose: Callable[[], list[_Proposal]]
    ) -> list[_Proposal]:
        """The S3 object steps (kept while the objects are the same)."""
        key = (str(threshold), objects)
        if self._object_steps is None or self._object_steps[0] != key:
            self._object_steps = (key, propose())
        return self._object_steps[1]

    def merge(
        self, key: tuple[str, tuple[Condition, ...]], inputs: object, score: Callable[[], Candidate | None]
    ) -> Candidate | None:
        """A service merge, scored again only when its statements' *inputs* changed."""
        got = self._merges.get(key)
        if got is None or got[0] != inputs:
            got = self._merges[key] = (inputs, score())
        return got[1]


def _region_free(resource: str) -> str | None:
    """*resource* with ``*`` for its region (None: no region to free)."""
    parts = resource.split(":", 5)
    if len(parts) == 6 and parts[3] and parts[3] != "*":
        parts[3] = "*"
        return ":".join(parts)
    return None


# What a type offered: kind, pattern, whether it was new this round, the step (None: saves nothing).
_Offer = tuple[WideningKind, str, bool, "Candidate | None"]


# A step a generator proposes: kind, pattern, covered resources, literal part, admits (the
# arguments of _Steps.add).
_Proposal = tuple[WideningKind, str, Collection[str], str, str]


class _Steps:
    """The ladder steps found so far from one set of grants (:func:`candidates`)."""

    def __init__(
        self, memo: LadderMemo, statements: Sequence[StatementShape], denied: Mapping[str, Sequence[str]]
    ) -> None:
        self.memo = memo
        self.actions_of = memo.actions_of
        self.round = _Round(statements, memo.label(statements))
        self.denied = memo.denied(denied)
        self.found: list[Candidate] = []
        self.seen: set[tuple[WideningKind, str]] = set()

    def fresh(self, kind: WideningKind, pattern: str) -> bool:
        """Whether no step of this kind and pattern was offered yet (it is now)."""
        if (kind, pattern) in self.seen:
            return False
        self.seen.add((kind, pattern))
        return True

    def add(
        self,
        kind: WideningKind,
        pattern: str,
        covers: Collection[str],
        literal: str,
        admits: str,
        offered: list[_Offer] | None = None,
    ) -> None:
        """A step replacing *covers* by *pattern*, if it covers two or more and saves characters
        (what was offered is added to *offered*, when given)."""
        if len(covers) < 2 or pattern == "*" or pattern in covers:
            return
        new = self.fresh(kind, pattern)
        step = None
        if new:
            saved = self.round.saved(covers, pattern)
            if saved > 0:
                acts: set[str] = set().union(*map(self.actions_of.__getitem__, covers))
                breadth = _WEIGHT[kind] * _open_segments(literal, covers)
                step = self.offer(kind, pattern, frozenset(covers), saved, acts, breadth, admits)
        if offered is not None:
            offered.append((kind, pattern, new, step))

    def offer(
        self,
        kind: WideningKind,
        pattern: str,
        covered: frozenset[str],
        saved: int,
        acts: Collection[str],
        breadth: float,
        admits: str,
    ) -> Candidate:
        step = Candidate(
            kind, pattern, covered, saved, breadth, admits, _denied_by(pattern, acts, self.denied)
        )
        self.found.append(step)
        return step

    def replay(self, key: tuple[str, str], inputs: tuple[object, ...]) -> bool:
        """Offer again what a type offered the round before, if it had the same *inputs* (names,
        their statements, their actions, the denied index) and the steps found before it this
        round leave the same of its patterns new; False (nothing offered) otherwise."""
        got = self.memo.offered.get(key)
        if got is None or got[0] != inputs:
            return False
        offered = got[1]
        seen = self.seen
        fresh: set[tuple[WideningKind, str]] = set()  # what this replay offers anew
        for kind, pattern, new, _ in offered:
            if ((kind, pattern) not in seen and (kind, pattern) not in fresh) != new:
                return False
            if new:
                fresh.add((kind, pattern))
        seen |= fresh
        self.found += [step for _, _, new, step in offered if new and step is not None]
        return True


def candidates(
    keys: Collection[tuple[str, str]],
    statements: Sequence[StatementShape],
    denied: Mapping[str, Sequence[str]],
    object_threshold: int,
    memo: LadderMemo | None = None,
) -> list[Candidate]:
    """Every ladder step that could be taken from the current (action, resource) grants.
    *memo*: the same object for every round of one ladder (what earlier rounds found)."""
    memo = memo if memo is not None else LadderMemo()
    memo.grants(keys)
    steps = _Steps(memo, statements, denied)
    objects = memo.objects()

    def object_steps() -> list[_Proposal]:
        found: list[_Proposal] = []
        _s3_prefix_steps(found, objects, object_threshold)  # 1. deeper S3 prefixes
        _bucket_prefix_steps(found, objects)  # 2. buckets sharing a name prefix
        return found

    # The object steps, scored again only when the objects' statements or actions changed.
    proposals = memo.object_steps(object_threshold, objects, object_steps)
    frozen = memo.frozen()
    inputs = (
        proposals,
        list(map(steps.round.owner.get, objects)),
        [frozen[r] for r in objects],
        steps.denied,
    )
    if not steps.replay(("", "objects"), inputs):
        offered: list[_Offer] = []
        for proposal in proposals:
            steps.add(*proposal, offered=offered)
        memo.offered[("", "objects")] = (inputs, offered)
    for tp, (type_name, members) in memo.types().items():  # 2, 4. other resources, by type
        _type_steps(steps, tp, type_name, memo.names(tp, type_name, members))
    for pattern, covered, admits in memo.regions():  # 3. the same name across regions
        steps.add(WideningKind.ACROSS_REGIONS, pattern, covered, pattern, admits)
    steps.found += _service_merges(statements, denied, memo)  # 5. statements of one service merged
    steps.found += _condition_merges(statements)  # 6. one service's conditions merged
    if not steps.found:  # 7. only when nothing narrower is left: every resource of a service
        _service_wide_steps(steps)
    out = steps.found
    out.sort(key=lambda c: (-c.score, -len(c.pattern), c.kind, c.pattern))
    return out


def _s3_prefix_steps(found: list[_Proposal], objects: list[str], object_threshold: int) -> None:
    """1. Deeper S3 prefixes: the object-key folding at lower thresholds."""
    for threshold in range(max(object_threshold, 2) - 1, 0, -1):
        if not objects:
            break
        folded: dict[str, list[str]] = defaultdict(list)
        for arn, target in generalize_object_arns(objects, threshold).items():
            if target != arn:
                folded[target].append(arn)
        for target, arns in folded.items():
            found.append(
                (
                    WideningKind.S3_PREFIX,
                    target,
                    arns,
                    target[:-1],
                    f"any object under {target[:-1]} ({len(arns)} seen)",
                )
            )


def _bucket_prefix_steps(found: list[_Proposal], objects: list[str]) -> None:
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
            found.append(
                (
                    WideningKind.NAME_PREFIX,
                    prefix + "*/*",
                    covered,
                    prefix,
                    f"any object of any bucket whose name starts with "
                    f"{prefix.partition(':::')[2]!r} ({len(covered)} buckets seen)",
                )
            )


def _typed(r: str, actions: frozenset[str]) -> tuple[str, str] | None:
    """(type name, the type's account-and-region pattern) of *r* granted *actions*."""
    found = _type_of(actions, r)
    tp = _type_pattern(*found) if found is not None else None
    return (found[0].name, tp) if found is not None and tp is not None else None


def _type_steps(steps: _Steps, tp: str, type_name: str, names: _Names) -> None:
    """2. Shared name prefixes, cut at a separator (billing-fn-*), longer than the type's; and
    4. every resource of the type in the account and region, never without an account (an S3
    bucket ARN names none: arn:aws:s3:::* would be every bucket of every account). Each scored
    from the range of sorted names it covers; the steps of a type whose names, statements and
    actions are those of the round before are that round's."""
    members, rnd = names.members, steps.round
    owners = list(map(rnd.owner.get, members))
    acts = list(map(steps.memo.frozen().__getitem__, members))
    key = (tp, type_name)
    inputs = (names, owners, acts, steps.denied)
    if steps.replay(key, inputs):
        return
    sums = list(itertools.accumulate(rnd.weights(members, owners), initial=0))
    literal = names.literal
    offered: list[tuple[WideningKind, str, bool, Candidate | None]] = []

    def offer(
        kind: WideningKind, pattern: str, prefix: str, start: int, end: int, breadth: int, admits: str
    ) -> None:
        if not steps.fresh(kind, pattern):
            offered.append((kind, pattern, False, None))
            return
        saved = sums[end] - sums[start] - rnd.touched(owners[start:end]) * (len(pattern) + 3)
        step = None
        if saved > 0:
            granted: set[str] = set().union(*set(acts[start:end]))
            covered = names.covers(prefix, start, end)
            step = steps.offer(kind, pattern, covered, saved, granted, _WEIGHT[kind] * breadth, admits)
        offered.append((kind, pattern, True, step))

    for prefix, start, end, open_below in names.prefixes:
        pattern = prefix + "*"
        if not names.holds(pattern, start, end):
            offer(
                WideningKind.NAME_PREFIX,
                pattern,
                prefix,
                start,
                end,
                open_below,
                f"any {type_name} whose name starts with {prefix[len(literal) :]!r} ({end - start} seen)",
            )
    parts = tp.split(":", 5)
    n = len(members)
    typed = len(parts) == 6 and parts[4] and parts[4] != "*"
    if typed and n >= 2 and tp not in names.whole:
        where = f"account {parts[4]}" + (f", region {parts[3]}" if parts[3] else "")
        offer(
            WideningKind.RESOURCE_TYPE,
            tp,
            literal,
            0,
            n,
            max(names.segments, default=0) or 1,
            f"every {type_name} in {where} ({n} seen)",
        )
    steps.memo.offered[key] = (inputs, offered)


def _merged_size(
    acts: Collection[str], res: Collection[str], conditions: Sequence[Condition] | None = None
) -> int:
    """About the characters of one statement of *acts* on *res*, with a Condition block of
    *conditions* unless None (the merge steps' estimate; statements are measured once rebuilt)."""
    shell = '{"Effect":"Allow","Action":[],"Resource":[],"Sid":""' + (
        "}" if conditions is None else ',"Condition":{}}'
    )
    size = len(shell) + 40 + sum(len(a) + 3 for a in acts) + sum(len(r) + 3 for r in res)
    return size + sum(len(c.key) + 20 + sum(len(v) + 3 for v in c.values) for c in conditions or ())


def _service_merges(
    statements: Sequence[StatementShape], denied: Mapping[str, Sequence[str]], memo: LadderMemo | None = None
) -> list[Candidate]:
    """5. Statements of one service (same conditions, no Resource "*") merged into one. With a
    *memo*, a merge whose statements did not change since the round before is not scored again
    (a busy role's log streams are one statement of 28k resources, unchanged most rounds)."""
    by_service: dict[tuple[str, tuple[Condition, ...]], list[StatementShape]] = defaultdict(list)
    for st in statements:
        services = {a.split(":")[0] for a in st.actions}
        if len(services) == 1 and "*" not in st.resources:
            by_service[(services.pop(), st.conditions)].append(st)
    out = []
    for (service, conds), sts in sorted(by_service.items(), key=lambda kv: (kv[0][0], repr(kv[0][1]))):
        if len(sts) < 2:
            continue
        step: Candidate | None
        if memo is None:
            step = _service_merge(service, conds, sts, denied)
        else:
            inputs = (tuple((st.actions, st.resources, st.size) for st in sts), denied)
            step = memo.merge(
                (service, conds), inputs, functools.partial(_service_merge, service, conds, sts, denied)
            )
        if step is not None:
            out.append(step)
    return out


def _service_merge(
    service: str,
    conds: tuple[Condition, ...],
    sts: Sequence[StatementShape],
    denied: Mapping[str, Sequence[str]],
) -> Candidate | None:
    acts = sorted({a for st in sts for a in st.actions})
    res = frozenset().union(*(st.resources for st in sts))  # no order needed: sized, indexed
    saved = sum(st.size for st in sts) - _merged_size(acts, res)
    if saved <= 0:
        return None
    observed = sum(len(st.actions) * len(st.resources) for st in sts)
    pairs = len(acts) * len(res)
    denied_hits: tuple[str, ...] = ()
    if any(denied.get(a) for a in acts):  # indexing tens of thousands of resources costs
        granted = PatternIndex(res)
        denied_hits = tuple(f"{a} {d}" for a in acts for d in denied.get(a, ()) if granted.covers(d))
    return Candidate(
        WideningKind.SERVICE_MERGE,
        f"{service}:{len(sts)} statements",
        res,
        saved,
        _WEIGHT[WideningKind.SERVICE_MERGE] * max(1.0, math.log2(pairs / max(observed, 1)) + 1),
        f"each of {len(acts)} {service} actions on each of {len(res)} resources "
        f"({pairs} action-resource pairs, {observed} granted before)",
        denied_hits,
        service=service,
        conditions=conds,
    )


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
