"""Synthesize policies from observed usage: identity policies (and, later, bucket and key policies)."""

from iamtrim.synth.identity import (
    AdvisedGrant,
    GeneratedPolicy,
    StatementEvidence,
    SynthOptions,
    advised_grants,
    generate_identity_policy,
)
from iamtrim.synth.limits import Target
from iamtrim.synth.widen import Widening, WideningKind

__all__ = [
    "AdvisedGrant",
    "GeneratedPolicy",
    "StatementEvidence",
    "SynthOptions",
    "Target",
    "Widening",
    "WideningKind",
    "advised_grants",
    "generate_identity_policy",
]
