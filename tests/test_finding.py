"""Findings have identity: (principal, code, target), never a count or a date."""

from __future__ import annotations

from iamtrim.model import Context, Outcome, Principal, PrincipalKind, UsageRow
from iamtrim.model.finding import Finding
from iamtrim.model.policy import Policy
from iamtrim.review.current import CurrentPolicies
from iamtrim.review.diff import diff_principal

ROLE = "arn:aws:iam::111122223333:role/app"
PRINCIPAL = Principal(ROLE, PrincipalKind.ROLE, "111122223333", "app")
POLICY = Policy.from_json(
    {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": ["s3:*"], "Resource": "*"},
            {"Effect": "Deny", "Action": "s3:DeleteBucket", "Resource": "*"},
        ],
    },
    name="inline:app",
)


def _rows(count: int, day: str, buckets: tuple[str, ...]) -> list[UsageRow]:
    when = f"2026-10-{day}T10:00:00Z"
    ctx = Context(region="us-east-1")
    out = [UsageRow(ROLE, "s3:GetObject", "arn:aws:s3:::data/a", Outcome.USED, ctx, count, when, when, ())]
    out += [
        UsageRow(ROLE, "s3:DeleteBucket", f"arn:aws:s3:::{b}", Outcome.DENIED, ctx, count, when, when, ())
        for b in buckets
    ]
    return out


def test_key_leaves_out_counts_and_dates_which_the_messages_carry() -> None:
    current = CurrentPolicies(ROLE, (POLICY,))
    one = diff_principal(PRINCIPAL, _rows(1, "01", ("x",)), current, propose=False)
    two = diff_principal(PRINCIPAL, _rows(7, "09", ("x", "y", "z")), current, propose=False)
    assert {f.key for f in one.findings} == {f.key for f in two.findings}
    assert {f.fingerprint for f in one.findings} == {f.fingerprint for f in two.findings}
    # ...while the messages differ where the counts do
    denied1 = next(f for f in one.findings if f.code == "DENIED_CALL")
    denied2 = next(f for f in two.findings if f.code == "DENIED_CALL")
    assert denied1.message != denied2.message and "3 resource(s), 21 call(s)" in denied2.message
    for f in two.findings:
        assert f.principal == ROLE
        assert "21" not in f.key and "2026" not in f.key and "3 resource" not in f.key


def test_fingerprint_is_the_hash_of_principal_code_and_target() -> None:
    a = Finding("RESOURCE_UNKNOWN", "ec2:RunInstances", "m1", ROLE, "ec2:RunInstances instance")
    b = Finding("RESOURCE_UNKNOWN", "ec2:RunInstances", "m2", ROLE, "ec2:RunInstances volume")
    assert a.fingerprint != b.fingerprint  # same subject, other target
    assert a.fingerprint == Finding("RESOURCE_UNKNOWN", "x", "other", ROLE, a.target).fingerprint
    assert Finding("UNUSED_ACTIONS", ROLE, "5 actions").key == f"|UNUSED_ACTIONS|{ROLE}"  # target = subject
    assert len(a.fingerprint) == 32 and int(a.fingerprint, 16) >= 0
