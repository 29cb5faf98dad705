"""How many distinct S3 object keys a folded ``folder/*`` row stands for (docs/store.md).

A :class:`KeySketch` holds the 64-bit hashes of the keys exactly up to :data:`EXACT_BOUND`
(256), then a HyperLogLog of :data:`REGISTERS` (1,024) registers: the count is exact up to the
bound and an estimate past it, with a relative standard error of 1.04/sqrt(1024) ≈ 3.25 %
(Flajolet et al., "HyperLogLog: the analysis of a near-optimal cardinality estimation
algorithm", 2007, https://algo.inria.fr/flajolet/Publications/FlFuGaMe07.pdf).

Sketches merge like the sets they stand for: ``merge`` is commutative and associative, and
whether a sketch is exact or a HyperLogLog depends only on the set of keys added (exact while it
holds at most EXACT_BOUND distinct hashes; a register is the maximum over the keys that map to
it), never on the order keys arrived in or how the input was split. Equal sets therefore give
byte-identical :meth:`to_bytes`, which is what the store keeps (``usage.key_sketch``).

The hash is BLAKE2b (8 bytes, personalized), stable across processes and machines (Python's
``hash()`` is salted per process). Pure Python, standard library only.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from dataclasses import dataclass

EXACT_BOUND = 256  # distinct key hashes kept exactly; one more and the sketch is a HyperLogLog
PRECISION = 10  # HyperLogLog index bits
REGISTERS = 1 << PRECISION  # 1,024 registers, one byte each
STANDARD_ERROR = 1.04 / math.sqrt(REGISTERS)  # ≈ 0.0325 (Flajolet et al. 2007, section 4)

_RANK_BITS = 64 - PRECISION  # the hash bits left after the register index
_RANK_MASK = (1 << _RANK_BITS) - 1
_PERSON = b"iamtrim-s3-keys"  # apart from the event-id hashes (ingest.event_hash)

# Serialized form: one tag byte, then the body. The tag's low bits say the kind, bit 7 that the
# count is a lower bound (keys folded before schema 5 were not kept: docs/store.md).
_EXACT, _DENSE, _SPARSE = 1, 2, 3
_PARTIAL = 0x80


_HASHER = hashlib.blake2b(digest_size=8, person=_PERSON)  # copied per key: no keyword parsing
_PENDING = 64  # keys added but not hashed yet, per sketch: hashed in a batch (bounds their memory)


def key_hash(key: str) -> int:
    """The stable 64-bit hash (unsigned) of one object key (its ARN as the store keeps it)."""
    h = _HASHER.copy()
    h.update(key.encode("utf-8", "surrogatepass"))
    return int.from_bytes(h.digest(), "big")


class KeySketch:
    """A set of distinct keys, exact up to EXACT_BOUND hashes, then a HyperLogLog (p=10).

    ``partial`` marks a count that is only a lower bound: the row also stands for keys that were
    folded before the store kept sketches (a migrated schema-4 store). It survives every merge.
    A plain slots class (one per folded row, made on ingest's hot path). Keys added are kept as
    they are, up to _PENDING of them, and hashed in a batch when more come or the sketch is read:
    ingest adds one per call on a folded key, and a set insertion costs a tenth of a hash.
    """

    __slots__ = ("_exact", "_pending", "_registers", "partial")

    def __init__(self, partial: bool = False) -> None:
        # While exact: the 8-byte big-endian digests (sorted as bytes, they sort as numbers).
        self._exact: set[bytes] | None = set()
        self._registers: bytearray | None = None
        self._pending: set[str] = set()
        self.partial = partial

    # -- adding and merging ---------------------------------------------------------------

    def add(self, key: str) -> None:
        """Add one key (an object ARN)."""
        pending = self._pending
        pending.add(key)
        if len(pending) > _PENDING:
            self._hash_pending()

    def _hash_pending(self) -> None:
        pending = self._pending
        if not pending:
            return
        self._pending = set()
        copy = _HASHER.copy
        digests = []
        for key in pending:
            h = copy()
            h.update(key.encode("utf-8", "surrogatepass"))
            digests.append(h.digest())
        self._add_digests(digests)

    def _add_digests(self, digests: Iterable[bytes]) -> None:
        exact = self._exact
        if exact is not None:
            exact.update(digests)
            if len(exact) > EXACT_BOUND:
                self._to_registers()
            return
        for d in digests:
            self._register(int.from_bytes(d, "big"))

    def _register(self, h: int) -> None:
        registers = self._registers
        assert registers is not None
        index = h >> _RANK_BITS
        rank = _RANK_BITS - (h & _RANK_MASK).bit_length() + 1
        if rank > registers[index]:
            registers[index] = rank

    def _to_registers(self) -> None:
        exact = self._exact
        assert exact is not None
        self._exact = None
        self._registers = bytearray(REGISTERS)
        for d in exact:
            self._register(int.from_bytes(d, "big"))

    def merge(self, other: KeySketch) -> None:
        """Add the keys of *other* (left as it was): the sketch of the union."""
        self.partial = self.partial or other.partial
        if other._pending:  # its keys not hashed yet join ours (each distinct key is hashed once)
            pending = self._pending
            pending |= other._pending
            if len(pending) > _PENDING:
                self._hash_pending()
        if other._exact is not None:
            if other._exact:
                self._add_digests(other._exact)
            return
        if self._exact is not None:
            self._to_registers()
        mine, theirs = self._registers, other._registers
        assert mine is not None and theirs is not None
        for i, value in enumerate(theirs):
            if value > mine[i]:
                mine[i] = value

    def copy(self) -> KeySketch:
        out = KeySketch(self.partial)
        out._pending = set(self._pending)
        out._exact = None if self._exact is None else set(self._exact)
        out._registers = None if self._registers is None else bytearray(self._registers)
        return out

    # -- reading --------------------------------------------------------------------------

    @property
    def exact(self) -> bool:
        """Whether :meth:`estimate` is the exact count of the keys added (at most EXACT_BOUND)."""
        self._hash_pending()
        return self._exact is not None

    def estimate(self) -> int:
        """The number of distinct keys: exact while exact, else HyperLogLog's estimate with the
        small-range correction (linear counting while the raw estimate is at most 2.5 m and some
        register is still zero; Flajolet et al. 2007, figure 3). 64-bit hashes need no
        large-range correction."""
        self._hash_pending()
        if self._exact is not None:
            return len(self._exact)
        registers = self._registers
        assert registers is not None
        m = REGISTERS
        alpha = 0.7213 / (1 + 1.079 / m)
        raw = alpha * m * m / math.fsum(2.0**-r for r in registers)
        zeros = registers.count(0)
        if raw <= 2.5 * m and zeros:
            return round(m * math.log(m / zeros))
        return round(raw)

    def describe(self) -> str:
        """The count as reports show it: ``312``, ``~41,700`` (estimated), ``at least 20`` (a lower
        bound), ``an unknown number of`` (a lower bound of none)."""
        n = self.estimate()
        if self.partial:
            return f"at least {n:,}" if n else "an unknown number of"
        return f"{n:,}" if self.exact else f"~{n:,}"

    # -- bytes ----------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """The compact form the store keeps: a tag byte, then the sorted hashes (8 bytes each,
        big-endian) while exact, else the registers, sparse (index and value, 3 bytes per
        non-zero register) when that is shorter than the 1,024 dense bytes."""
        self._hash_pending()
        flag = _PARTIAL if self.partial else 0
        if self._exact is not None:
            return bytes([_EXACT | flag]) + b"".join(sorted(self._exact))
        registers = self._registers
        assert registers is not None
        used = [(i, r) for i, r in enumerate(registers) if r]
        if 3 * len(used) < REGISTERS:
            return bytes([_SPARSE | flag]) + b"".join(i.to_bytes(2, "big") + bytes([r]) for i, r in used)
        return bytes([_DENSE | flag]) + bytes(registers)

    @classmethod
    def from_bytes(cls, data: bytes) -> KeySketch:
        """The sketch :meth:`to_bytes` wrote; ``ValueError`` for bytes it cannot have written."""
        if not data:
            raise ValueError("an empty key sketch")
        tag, body = data[0], data[1:]
        out = cls(bool(tag & _PARTIAL))
        kind = tag & ~_PARTIAL
        if kind == _EXACT and len(body) % 8 == 0 and len(body) // 8 <= EXACT_BOUND:
            out._exact = {body[i : i + 8] for i in range(0, len(body), 8)}
            if len(out._exact) * 8 != len(body):
                raise ValueError("a key sketch with a hash twice")
            return out
        if kind == _DENSE and len(body) == REGISTERS:
            out._exact, out._registers = None, bytearray(body)
        elif kind == _SPARSE and len(body) % 3 == 0:
            registers = bytearray(REGISTERS)
            for i in range(0, len(body), 3):
                index = int.from_bytes(body[i : i + 2], "big")
                if index >= REGISTERS:
                    raise ValueError("a key sketch register out of range")
                registers[index] = body[i + 2]
            out._exact, out._registers = None, registers
        else:
            raise ValueError(f"not a key sketch (tag {tag:#x}, {len(body)} bytes)")
        if max(out._registers) > _RANK_BITS + 1:
            raise ValueError("a key sketch register out of range")
        return out

    def __reduce__(self) -> tuple[object, tuple[bytes]]:
        # Crosses from an ingest worker to the parent by pickle: as its compact bytes.
        return (KeySketch.from_bytes, (self.to_bytes(),))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, KeySketch) and self.to_bytes() == other.to_bytes()

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"KeySketch({self.describe()})"


@dataclass(frozen=True, slots=True)
class ObservedKeys:
    """How many distinct object keys a fold the store made (``folder/*``) stands for, from the
    key sketches of its rows (docs/store.md, "Distinct keys of a folded row")."""

    count: int
    exact: bool  # counted exactly (up to 256 keys); else a HyperLogLog estimate, ±3.25 % (1 SE)
    lower_bound: bool  # the store also folded keys before it counted them (a migrated schema 4)
    text: str  # as reports show it: "312", "~41,700", "at least 5", "an unknown number of"

    @classmethod
    def of(cls, sketches: Iterable[KeySketch]) -> ObservedKeys | None:
        """The count of the union of *sketches*; None when there is none."""
        union: KeySketch | None = None
        for sketch in sketches:
            if union is None:
                union = sketch.copy()
            else:
                union.merge(sketch)
        if union is None:
            return None
        return cls(union.estimate(), union.exact, union.partial, union.describe())

    def as_json(self) -> dict[str, object]:
        """The ``observed_keys`` object of JSON reports (generate-policy, usage)."""
        return {"count": self.count, "exact": self.exact, "lower_bound": self.lower_bound, "text": self.text}

    def phrase(self) -> str:
        """``covers ~41,700 distinct observed keys``."""
        keys = "key" if self.count == 1 and self.exact and not self.lower_bound else "keys"
        return f"covers {self.text} distinct observed {keys}"
