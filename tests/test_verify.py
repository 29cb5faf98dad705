"""verify.py's helpers that the replay tests do not reach on their own."""

from __future__ import annotations

from iamtrim.verify import account_trust_policy


def test_account_trust_policy_is_one_object_per_account_and_kind() -> None:
    a = account_trust_policy("arn:aws:kms:eu-west-1:111122223333:key/k1", "111122223333")
    b = account_trust_policy("arn:aws:kms:us-east-1:111122223333:key/k2", "111122223333")
    role = account_trust_policy("arn:aws:iam::111122223333:role/r", "111122223333")
    other = account_trust_policy("arn:aws:kms:eu-west-1:444455556666:key/k3", "111122223333")
    assert a is b  # the same compiled policy serves every key of the account
    assert a is not None and a.statements[0].actions == ("kms:*",)
    assert role is not None and role.statements[0].actions == ("sts:AssumeRole*",)
    assert other is not None and other.name == "assumed-resource-policy"
    assert account_trust_policy("arn:aws:s3:::bucket/key", "111122223333") is None
