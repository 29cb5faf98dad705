"""Merging a generated resource policy into the one the resource has now.

A bucket or key policy holds one document, so applying iamtrim's proposal replaces the whole
policy (``PutBucketPolicy``, ``PutKeyPolicy``). Statements iamtrim does not manage — written by
hand, by another tool, or by AWS (a key's default ``Enable IAM User Permissions``) — must survive:
they are kept as they are, before the generated statements. A current statement is *managed*,
and replaced, when its ``Sid`` is one iamtrim writes (the given prefixes, or any generated Sid) or
when it is the same statement as a generated one apart from its ``Sid``.
https://docs.aws.amazon.com/AmazonS3/latest/API/API_PutBucketPolicy.html
https://docs.aws.amazon.com/kms/latest/APIReference/API_PutKeyPolicy.html

The merged document is what the generator then verifies (observed calls replayed, lockout
checked): a kept ``Deny`` that would break a seen call refuses the output like a generated one.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass

from iamtrim.errors import SynthError
from iamtrim.model.policy import Policy, Statement

__all__ = ["CurrentResourcePolicy", "Merge", "merge_current"]


@dataclass(frozen=True, slots=True)
class CurrentResourcePolicy:
    """The policy a bucket or key has now (None: it has none), and where it was read."""

    policy: Policy | None
    source: str


@dataclass(frozen=True, slots=True)
class Merge:
    """How the proposal was merged: the current statements kept and replaced (``Sid`` or, for a
    statement without one, ``#N`` = its 1-based position in the current policy) and the
    generated ones added."""

    source: str  # where the current policy came from, e.g. "s3:GetBucketPolicy acme-ml"
    had_policy: bool
    kept: tuple[str, ...]
    replaced: tuple[str, ...]
    added: tuple[str, ...]


def _label(statement: Statement, position: int) -> str:
    return statement.sid or f"#{position}"


def _unnamed(statement: Statement) -> Statement:
    return dataclasses.replace(statement, sid="")


def merge_current(
    current: Policy | None, generated: Policy, managed_prefixes: Sequence[str], source: str
) -> tuple[Policy, Merge]:
    """The merged policy (kept current statements, then the generated ones) and what was done."""
    generated_sids = {s.sid for s in generated.statements if s.sid}
    generated_bodies = {_unnamed(s) for s in generated.statements}
    kept: list[Statement] = []
    kept_labels: list[str] = []
    replaced: list[str] = []
    for i, s in enumerate(current.statements if current else (), start=1):
        managed = (
            s.sid and (s.sid in generated_sids or s.sid.startswith(tuple(managed_prefixes)))
        ) or _unnamed(s) in generated_bodies
        if managed:
            replaced.append(_label(s, i))
        else:
            kept.append(s)
            kept_labels.append(_label(s, i))
    merged = dataclasses.replace(generated, statements=(*kept, *generated.statements))
    if (
        current is not None
        and current.version != generated.version
        and any("${" in json.dumps(s.to_json()) for s in kept)
    ):
        # The generator writes 2012-10-17, where ``${...}`` is a policy variable; in a 2008-10-17
        # document it is literal text, so the kept statement would change meaning.
        # https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_version.html
        raise SynthError(
            f"{source}: the current policy is Version {current.version} and a statement to keep "
            "holds '${': merged into a 2012-10-17 document it would read as a policy variable"
        )
    added = tuple(s.sid for s in generated.statements)
    return merged, Merge(source, current is not None, tuple(kept_labels), tuple(replaced), added)
