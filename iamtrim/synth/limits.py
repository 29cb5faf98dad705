"""IAM policy size limits: packing statements into at most ``max_policies`` policies.

Whether a packing fits is :func:`plan`'s answer; :mod:`iamtrim.synth.identity` widens (by the
ladder of :mod:`iamtrim.synth.widen`) until it does, or, with ``--no-widen``, refuses.

Limits (characters, whitespace not counted):
https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html#reference_iam-quotas-entity-length
managed policy 6,144; inline policies per role 10,240 in total, per user 2,048, per group 5,120;
managed policies attached to a role or user: 10 by default (quota raisable to 20).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from itertools import accumulate

from iamtrim.errors import SizeLimitError
from iamtrim.model import Principal, PrincipalKind
from iamtrim.model.policy import Policy, Statement

MANAGED_POLICY_CHARS = 6144
MANAGED_POLICIES_PER_ENTITY = 10
MANAGED_POLICIES_MAX = 20  # the attachment quota can be raised to 20, no further
INLINE_TOTAL_CHARS = {PrincipalKind.USER: 2048, PrincipalKind.ROLE: 10240, PrincipalKind.SSO_ROLE: 10240}
_ENVELOPE = len('{"Version":"2012-10-17","Statement":[]}')


@dataclass(frozen=True, slots=True)
class NamedPolicy:
    """One policy of a packing, with the name it is created under."""

    name: str
    policy: Policy


class Target(StrEnum):
    MANAGED = "managed"
    INLINE = "inline"


# Resource policies are limited in bytes of the document:
# bucket policy 20 KB, https://docs.aws.amazon.com/AmazonS3/latest/userguide/using-iam-policies.html
# key policy 32 KB (32,768 bytes), https://docs.aws.amazon.com/kms/latest/developerguide/key-policy-overview.html#key-policy-format
BUCKET_POLICY_BYTES = 20 * 1024
KEY_POLICY_BYTES = 32 * 1024


def check_resource_policy(policy: Policy, limit: int, what: str) -> None:
    """Raise :class:`SizeLimitError` when *policy* (compact JSON, the smallest form iamtrim
    writes) is over *limit* bytes: no resource policy is emitted that AWS would refuse."""
    size = len(policy.to_text().encode())
    if size > limit:
        raise SizeLimitError(f"the {what} is {size} bytes; AWS accepts at most {limit}")


def size_of(obj: object) -> int:
    """Characters IAM counts: the JSON without whitespace outside strings."""
    return len(json.dumps(obj, separators=(",", ":")))


# ``,"Resource":`` — the characters a statement's Resource element adds besides its value.
_RESOURCE_KEY = len(',"Resource":')


def _encoded_lengths(values: Sequence[str]) -> list[int]:
    """The length of each string as :func:`size_of` writes it (json.dumps, ASCII escapes)."""
    encode = json.encoder.encode_basestring_ascii
    return [len(encode(v)) for v in values]


def _list_size(lengths: Sequence[int], count: int) -> int:
    """Characters of a JSON value of *count* strings whose encoded lengths sum to *lengths*'s
    total: one string is written alone, several as a list (Statement.to_json's _one_or_list)."""
    total = sum(lengths)
    return total if count == 1 else total + 2 + count - 1


def statement_size(statement: Statement, lengths: Sequence[int] | None = None) -> int:
    """``size_of(statement.to_json())``, computed from its parts: the statement without its
    resources is serialized, and each resource adds its encoded length and a comma. A statement
    of tens of thousands of resources is sized again each round of the ladder and at each
    halving of :func:`_split`; serializing it whole each time was a fifth of the ladder's time on
    a 10M-record store's busiest role. *lengths*: :func:`_encoded_lengths` of its resources, if
    known. Equal to size_of (tests/test_synth_limits.py)."""
    resources = statement.resources
    if not resources:
        return size_of(statement.to_json())
    if lengths is None:
        lengths = _encoded_lengths(resources)
    # Resource follows Effect in to_json (never first): removing it removes ``,"Resource":…``.
    bare = size_of(replace(statement, resources=()).to_json())
    return bare + _RESOURCE_KEY + _list_size(lengths, len(resources))


def _split_sized(
    statement: Statement, budget: int, lengths: Sequence[int] | None = None, numbered: bool = False
) -> list[tuple[Statement, int]]:
    """A statement too large alone split into parts by resources (same actions and conditions):
    halves, and halves of halves, until each part fits or holds one resource; each part with its
    :func:`statement_size` (from the prefix sums the halving adds anyway). *lengths*:
    :func:`_encoded_lengths` of its resources, if known. *numbered*: the parts of a split
    statement named ``Sid`` → ``SidPart1`` … ``SidPartN``, and sized so."""
    resources = statement.resources
    if len(resources) <= 1:
        return [(statement, statement_size(statement, lengths))]
    if lengths is None:
        lengths = _encoded_lengths(resources)
    bare = size_of(replace(statement, resources=()).to_json()) + _RESOURCE_KEY
    prefix = list(accumulate(lengths, initial=0))
    spans: list[tuple[int, int, int]] = []

    def halve(lo: int, hi: int) -> None:
        count = hi - lo
        size = bare + (prefix[hi] - prefix[lo]) + (0 if count == 1 else 2 + count - 1)
        if size <= budget or count <= 1:
            spans.append((lo, hi, size))
            return
        half = lo + count // 2
        halve(lo, half)
        halve(half, hi)

    halve(0, len(resources))
    if len(spans) == 1:
        return [(statement, spans[0][2])]
    sid = statement.sid
    suffixes = [f"Part{i + 1}" if numbered else "" for i in range(len(spans))]
    return [
        (
            Statement(
                statement.effect,
                actions=statement.actions,
                resources=resources[lo:hi],
                conditions=statement.conditions,
                sid=sid + suffix,
            ),
            size + _sid_growth(sid, suffix),
        )
        for (lo, hi, size), suffix in zip(spans, suffixes, strict=True)
    ]


def _sid_growth(sid: str, suffix: str) -> int:
    """Characters ``Sid`` + *suffix* (ASCII) adds to a statement: the suffix, or the element
    (``"Sid":"PartN",``, written first by Statement.to_json) for a statement without a Sid."""
    if not suffix:
        return 0
    return len(suffix) if sid else len('"Sid":"",') + len(suffix)


def _name(principal: Principal, index: int, total: int) -> str:
    base = re.sub(r"[^A-Za-z0-9+=,.@_-]", "-", principal.name)[:100]
    return f"iamtrim-{base}" if total == 1 else f"iamtrim-{base}-{index + 1}"


@dataclass(frozen=True, slots=True)
class Packing:
    """Statements packed first-fit into policies of ``budget`` characters each."""

    bins: tuple[tuple[Statement, ...], ...]
    sizes: tuple[int, ...]
    budget: int
    max_policies: int
    total_budget: int | None  # inline: one budget for all the policies together

    @property
    def fits(self) -> bool:
        if len(self.bins) > self.max_policies:
            return False
        return self.total_budget is None or sum(self.sizes) <= self.total_budget

    @property
    def overflow(self) -> int:
        """Characters to save, at least, before the packing can fit."""
        if self.fits:
            return 0
        if self.total_budget is not None:
            return max(sum(self.sizes) - self.total_budget, 1)
        capacity = self.max_policies * self.budget
        # First fit leaves gaps at the end of each policy: aim a little below the capacity.
        return max(sum(self.sizes) - capacity + 64 * self.max_policies, 1)


@dataclass(slots=True)
class PackMemo:
    """What :func:`plan` keeps from one call to the next while the ladder re-plans the same
    policy: each statement's pieces with their sizes (most statements of a round are the last
    round's: a busy role's statement of 28,000 resources splits into a thousand pieces), kept
    for the statements of the last call only, and each resource's encoded length. Lives for one
    policy (identity._fit)."""

    pieces: dict[tuple[Statement, int], list[tuple[Statement, int]]] = field(default_factory=dict)
    lengths: dict[str, int] = field(default_factory=dict)

    def encoded_lengths(self, resources: Sequence[str]) -> list[int]:
        known = self.lengths
        try:
            return [known[r] for r in resources]
        except KeyError:
            encode = json.encoder.encode_basestring_ascii
            known.update((r, len(encode(r))) for r in resources if r not in known)
            return [known[r] for r in resources]

    def statement_size(self, statement: Statement) -> int:
        return statement_size(statement, self.encoded_lengths(statement.resources))


def _budgets(principal: Principal, target: Target, max_policies: int) -> tuple[int, int | None, int]:
    """(characters per policy, characters of all the policies together or None, policies)."""
    if target is Target.MANAGED:
        return MANAGED_POLICY_CHARS, None, max_policies
    total = INLINE_TOTAL_CHARS.get(principal.kind, 2048)
    return total, total, 10**6


def plan(
    principal: Principal,
    statements: Sequence[Statement],
    target: Target,
    max_policies: int,
    memo: PackMemo | None = None,
) -> Packing:
    """*statements* split by resources where one is too large alone, and packed first fit (in
    statement order, deterministic) into policies. *memo*: the same object for each call of one
    ladder."""
    budget, total_budget, max_policies = _budgets(principal, target, max_policies)
    memo = memo or PackMemo()
    known, memo.pieces = memo.pieces, {}
    pieces: list[tuple[Statement, int]] = []
    for st in statements:
        got = known.get((st, budget))
        if got is None:
            got = _pieces(principal, st, budget, target, memo)
        memo.pieces[(st, budget)] = got
        pieces.extend(got)
    placed, sizes = _first_fit([size + 1 for _, size in pieces], budget)
    bins: list[list[Statement]] = [[] for _ in sizes]
    for (st, _), i in zip(pieces, placed, strict=True):
        bins[i].append(st)
    return Packing(tuple(tuple(b) for b in bins), tuple(sizes), budget, max_policies, total_budget)


def _pieces(
    principal: Principal, statement: Statement, budget: int, target: Target, memo: PackMemo
) -> list[tuple[Statement, int]]:
    """*statement* split into pieces that fit a policy of *budget* characters, each numbered and
    with its size; :class:`SizeLimitError` when one resource alone is too large."""
    lengths = memo.encoded_lengths(statement.resources) if len(statement.resources) > 1 else None
    # Each piece leaves room for its Sid's suffix: "Part10" while there are fewer than 100
    # pieces, and as long as the last piece's suffix when there are more ("Part1000": a piece
    # sized for "Part10" could be 2 characters over and refuse the policy).
    room = len("Part10")
    while True:
        pieces = _split_sized(statement, budget - _ENVELOPE - 1 - room, lengths, numbered=True)
        needed = len(f"Part{len(pieces)}")
        if needed <= room:
            break
        room = needed  # more room makes no fewer pieces: the count's digits only grow
    for piece, piece_size in pieces:
        # Splitting by resources cannot shrink one resource or a condition's values (a 10 MB
        # object key, 400 VPC endpoints): such a statement fits no policy, and is refused.
        size = piece_size + _ENVELOPE
        if size > budget:
            raise SizeLimitError(
                f"statement {piece.sid or '(no Sid)'} for {principal.arn} alone is {size} characters; "
                f"an IAM {'managed' if target is Target.MANAGED else 'inline'} policy holds at most {budget}"
            )
    return pieces


def _first_fit(sizes: Sequence[int], budget: int) -> tuple[list[int], list[int]]:
    """The policy each piece goes to (the first with room for it, or a new one) and the size of
    each policy. The room of the policies is kept in a tree of maxima (a segment tree), so the
    first with room is found in log(policies) steps: a policy far over the limit makes a
    thousand policies, and scanning them for each piece was most of plan's time on a busy role's
    ladder. Equal to scanning every policy (tests/test_synth_limits.py)."""
    leaves = 1
    while leaves < len(sizes):
        leaves *= 2
    # An unopened policy has room for everything but the envelope; policies open in order.
    room = [0] * leaves + [budget - _ENVELOPE] * len(sizes) + [0] * (leaves - len(sizes))
    for i in range(leaves - 1, 0, -1):
        room[i] = max(room[2 * i], room[2 * i + 1])
    placed: list[int] = []
    used: list[int] = []
    for s in sizes:
        i = 1
        if room[1] >= s:
            while i < leaves:
                i = 2 * i if room[2 * i] >= s else 2 * i + 1
            j = i - leaves
        else:
            j = len(used)  # a piece larger than an empty policy's room still opens one
        if j < len(used):
            used[j] += s
        else:
            j = len(used)
            used.append(_ENVELOPE + s)
        placed.append(j)
        i = j + leaves
        room[i] = budget - used[j]
        while i > 1:
            i //= 2
            room[i] = max(room[2 * i], room[2 * i + 1])
    return placed, used


def pack(packing: Packing, principal: Principal, widened: bool) -> tuple[list[NamedPolicy], list[str]]:
    """The policies of a packing that fits; :class:`SizeLimitError` when it does not."""
    bins, sizes, budget = packing.bins, packing.sizes, packing.budget
    how = (
        "even after widening as far as the ladder allows"
        if widened
        else "and --no-widen keeps every resource exact"
    )
    if len(bins) > packing.max_policies:
        raise SizeLimitError(
            f"the policy for {principal.arn} needs {len(bins)} managed policies of at most "
            f"{MANAGED_POLICY_CHARS} characters, {how}; --max-policies is {packing.max_policies}. "
            f"Allow more (--max-policies, up to {MANAGED_POLICIES_MAX}: IAM attaches "
            f"{MANAGED_POLICIES_PER_ENTITY} by default) or narrow the evidence"
        )
    if packing.total_budget is not None and sum(sizes) > packing.total_budget:
        raise SizeLimitError(
            f"the inline policies for {principal.arn} total {sum(sizes)} characters, {how}; IAM "
            f"allows {packing.total_budget} for a {principal.kind}. Use --target managed"
        )
    notes = []
    if len(bins) > 1:
        notes.append(
            f"{len(bins)} policies of {', '.join(str(s) for s in sizes)} characters (limit {budget} each)"
        )
    named = [
        NamedPolicy(
            _name(principal, i, len(bins)), Policy(statements=tuple(b), name=_name(principal, i, len(bins)))
        )
        for i, b in enumerate(bins)
    ]
    return named, notes
