"""Unit tests for iamtrim.model.policy (parse/render) and iamtrim.evaluate (one test per rule)."""

from __future__ import annotations

from typing import Any

import pytest

from iamtrim.errors import InputError, PolicyError
from iamtrim.evaluate import Decision, PolicyKind, Request, evaluate
from iamtrim.model.policy import Condition, Effect, Policy, PolicyVersion, Principals, PrincipalType

ACCT = "111122223333"
OTHER = "444455556666"
ROLE = f"arn:aws:iam::{ACCT}:role/app"
USER = f"arn:aws:iam::{ACCT}:user/alice"
SESSION = f"arn:aws:sts::{ACCT}:assumed-role/app/worker-1"
EXT_ROLE = f"arn:aws:iam::{OTHER}:role/partner"
KEY = f"arn:aws:kms:us-east-1:{ACCT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
OBJ = "arn:aws:s3:::data-bucket/reports/q1.csv"


def pol(*statements: dict[str, Any], version: str = "2012-10-17", name: str = "p") -> Policy:
    return Policy.from_json({"Version": version, "Statement": list(statements)}, name=name)


def allow(action: Any = "s3:GetObject", resource: Any = "*", **extra: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}


def deny(action: Any = "s3:GetObject", resource: Any = "*", **extra: Any) -> dict[str, Any]:
    return {"Effect": "Deny", "Action": action, "Resource": resource, **extra}


def decide(
    policies: list[Policy] | Policy,
    action: str = "s3:GetObject",
    resource: str = OBJ,
    principal: str = ROLE,
    context: dict[str, Any] | None = None,
    **kw: Any,
) -> Decision:
    ids = policies if isinstance(policies, list) else [policies]
    account = kw.pop("resource_account", "")
    req = Request.make(principal, action, resource, context or {}, resource_account=account)
    return evaluate(req, ids, **kw).decision


ALLOW, IMPLICIT, EXPLICIT = Decision.ALLOWED, Decision.IMPLICIT_DENY, Decision.EXPLICIT_DENY


# --------------------------------------------------------------------------------- policy model


class TestPolicyModel:
    def test_single_strings_and_lists_parse_alike(self) -> None:
        one = pol(allow("s3:GetObject", "arn:aws:s3:::b/*"))
        many = pol(allow(["s3:GetObject"], ["arn:aws:s3:::b/*"]))
        assert one.statements == many.statements
        assert one.statements[0].actions == ("s3:GetObject",)

    def test_single_statement_object_is_accepted(self) -> None:
        p = Policy.from_json({"Version": "2012-10-17", "Statement": allow()})
        assert len(p.statements) == 1

    def test_missing_version_is_2008(self) -> None:
        assert Policy.from_json({"Statement": [allow()]}).version is PolicyVersion.V2008

    def test_principal_forms(self) -> None:
        p = pol(
            allow(Principal="*"),
            allow(Principal={"AWS": "*"}),
            allow(Principal={"AWS": [ROLE, ACCT], "Service": "s3.amazonaws.com"}),
        )
        assert p.statements[0].principals == Principals(wildcard=True)
        assert p.statements[1].principals == Principals(entries=((PrincipalType.AWS, ("*",)),))
        third = p.statements[2].principals
        assert third is not None and third.values(PrincipalType.AWS) == (ROLE, ACCT)
        assert third.values(PrincipalType.SERVICE) == ("s3.amazonaws.com",)

    def test_conditions_keep_every_key_and_stringify_scalars(self) -> None:
        p = pol(
            allow(
                Condition={
                    "Bool": {"aws:SecureTransport": False},
                    "NumericLessThan": {"s3:max-keys": 10},
                    "StringEquals": {"aws:SourceVpce": ["vpce-1", "vpce-2"], "aws:PrincipalAccount": ACCT},
                }
            )
        )
        conds = set(p.statements[0].conditions)
        assert Condition("Bool", "aws:SecureTransport", ("false",)) in conds
        assert Condition("NumericLessThan", "s3:max-keys", ("10",)) in conds
        assert Condition("StringEquals", "aws:SourceVpce", ("vpce-1", "vpce-2")) in conds
        assert len(conds) == 4

    def test_round_trip_is_deterministic(self) -> None:
        doc = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Resource": ["arn:aws:s3:::b", "arn:aws:s3:::b/*"],
                    "Condition": {
                        "StringLike": {"b": "x*", "a": ["1", "2"]},
                        "Bool": {"aws:SecureTransport": "true"},
                    },
                    "Action": "s3:GetObject",
                    "Principal": {"Service": "s3.amazonaws.com", "AWS": ROLE},
                    "Effect": "Allow",
                    "Sid": "One",
                },
                {"Effect": "Deny", "NotAction": ["iam:*"], "NotResource": "arn:aws:iam::*:role/x"},
            ],
        }
        p = Policy.from_json(doc)
        out = p.to_json()
        assert list(out["Statement"][0]) == [  # type: ignore[index]
            "Sid",
            "Effect",
            "Principal",
            "Action",
            "Resource",
            "Condition",
        ]
        assert list(out["Statement"][0]["Condition"]) == ["Bool", "StringLike"]  # type: ignore[index]
        assert list(out["Statement"][0]["Condition"]["StringLike"]) == ["a", "b"]  # type: ignore[index]
        assert Policy.from_json(out) == p
        assert Policy.from_json(p.to_text()).to_text() == p.to_text()
        assert p.statements[1].effect is Effect.DENY and p.statements[1].not_actions == ("iam:*",)

    def test_json_text_is_accepted(self) -> None:
        assert Policy.from_json(
            '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}'
        )

    @pytest.mark.parametrize(
        "doc",
        [
            [],
            "not json",
            {"Statement": []},
            {"Version": "2012-10-17"},
            {"Version": "2020-01-01", "Statement": [allow()]},
            {"Version": "2012-10-17", "Statement": [{"Effect": "Maybe", "Action": "*", "Resource": "*"}]},
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Resource": "*"}]},
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "NotAction": "s3:*"}]},
            {"Version": "2012-10-17", "Statement": [{**allow(), "NotResource": "x"}]},
            {"Version": "2012-10-17", "Statement": [allow(action="GetObject")]},
            {"Version": "2012-10-17", "Statement": [allow(action=[])]},
            {"Version": "2012-10-17", "Statement": [allow(Condition={"StringEqualz": {"a": "b"}})]},
            {
                "Version": "2012-10-17",
                "Statement": [allow(Condition={"ForSomeValues:StringEquals": {"a": "b"}})],
            },
            {"Version": "2012-10-17", "Statement": [allow(Principal={"Robot": "x"})]},
            {"Version": "2012-10-17", "Statement": [allow(Bogus=1)]},
        ],
    )
    def test_invalid_documents_raise_policy_error(self, doc: Any) -> None:
        with pytest.raises(PolicyError):
            Policy.from_json(doc)

    def test_policy_error_is_an_input_error(self) -> None:
        assert issubclass(PolicyError, InputError)


# ------------------------------------------------------------------------------ actions/resources


class TestMatching:
    def test_allow_and_implicit_deny(self) -> None:
        assert decide(pol(allow())) is ALLOW
        assert decide(pol(allow("s3:PutObject"))) is IMPLICIT
        assert decide([]) is IMPLICIT

    @pytest.mark.parametrize(
        "pattern", ["s3:GetObject", "S3:getobject", "s3:Get*", "s3:*Object", "s3:?etObject", "*"]
    )
    def test_action_patterns_case_insensitive(self, pattern: str) -> None:
        assert decide(pol(allow(pattern))) is ALLOW

    @pytest.mark.parametrize("pattern", ["s3:Get", "s3:Put*", "s3:?GetObject", "ec2:*", "s3:GetObjectAcl"])
    def test_action_patterns_that_do_not_match(self, pattern: str) -> None:
        assert decide(pol(allow(pattern))) is IMPLICIT

    def test_not_action(self) -> None:
        p = pol({"Effect": "Allow", "NotAction": ["s3:Put*", "iam:*"], "Resource": "*"})
        assert decide(p) is ALLOW
        assert decide(p, action="s3:PutObject") is IMPLICIT

    @pytest.mark.parametrize(
        ("pattern", "expected"),
        [
            ("arn:aws:s3:::data-bucket/*", ALLOW),
            ("arn:aws:s3:::data-bucket/reports/q?.csv", ALLOW),
            ("arn:aws:s3:::data-bucket/reports/q??.csv", IMPLICIT),
            ("arn:aws:s3:::data-bucket/Reports/*", IMPLICIT),  # resource matching is case-sensitive
            ("arn:aws:s3:::data-*", ALLOW),
            ("arn:aws:s3:::data-bucket", IMPLICIT),
            ("arn:aws:s3:*", ALLOW),  # a trailing * in a short ARN spans the missing segments
            ("arn:aws:s3", IMPLICIT),
        ],
    )
    def test_resource_patterns(self, pattern: str, expected: Decision) -> None:
        assert decide(pol(allow(resource=pattern))) is expected

    def test_star_stays_inside_arn_segments_before_the_resource(self) -> None:
        p = pol(allow("sqs:SendMessage", f"arn:aws:sqs:us-*:{ACCT}:*"))
        assert decide(p, "sqs:SendMessage", f"arn:aws:sqs:us-east-1:{ACCT}:q") is ALLOW
        assert decide(p, "sqs:SendMessage", f"arn:aws:sqs:eu-west-1:{ACCT}:q") is IMPLICIT

    def test_star_in_resource_type_spans_slash(self) -> None:
        p = pol(allow("quicksight:DescribeTheme", "arn:aws:quicksight:*:*:*/*"))
        assert decide(p, "quicksight:DescribeTheme", f"arn:aws:quicksight:us-east-1:{ACCT}:theme/t") is ALLOW

    def test_not_resource(self) -> None:
        p = pol({"Effect": "Allow", "Action": "s3:*", "NotResource": "arn:aws:s3:::secret/*"})
        assert decide(p) is ALLOW
        assert decide(p, resource="arn:aws:s3:::secret/x") is IMPLICIT

    def test_wildcard_only_action_matches_only_star(self) -> None:
        assert decide(pol(allow("ec2:DescribeInstances", "*")), "ec2:DescribeInstances", "*") is ALLOW
        assert (
            decide(pol(allow("ec2:DescribeInstances", "arn:aws:ec2:*:*:*")), "ec2:DescribeInstances", "*")
            is IMPLICIT
        )

    def test_policy_variables_in_resources(self) -> None:
        p = pol(allow(resource="arn:aws:s3:::home/${aws:username}/*"))
        assert decide(p, resource="arn:aws:s3:::home/alice/x", principal=USER) is ALLOW
        assert decide(p, resource="arn:aws:s3:::home/bob/x", principal=USER) is IMPLICIT
        # no aws:username for a role: the element cannot match
        assert decide(p, resource="arn:aws:s3:::home/alice/x", principal=ROLE) is IMPLICIT

    def test_policy_variable_default_and_specials(self) -> None:
        p = pol(allow(resource="arn:aws:s3:::home/${aws:PrincipalTag/team, 'none'}/${*}x${?}"))
        assert decide(p, resource="arn:aws:s3:::home/none/*x?") is ALLOW
        assert decide(p, resource="arn:aws:s3:::home/none/ax?") is IMPLICIT
        assert (
            decide(p, resource="arn:aws:s3:::home/ml/*x?", context={"aws:PrincipalTag/team": "ml"}) is ALLOW
        )

    def test_variables_are_literal_in_version_2008(self) -> None:
        p = pol(allow(resource="arn:aws:s3:::home/${aws:username}/*"), version="2008-10-17")
        assert decide(p, resource="arn:aws:s3:::home/alice/x", principal=USER) is IMPLICIT


# ------------------------------------------------------------------------------------ conditions


def cond(block: dict[str, Any], context: dict[str, Any] | None = None, principal: str = ROLE) -> bool:
    return decide(pol(allow(Condition=block)), context=context, principal=principal) is ALLOW


class TestConditions:
    def test_string_equals_values_ored_keys_anded(self) -> None:
        block = {"StringEquals": {"aws:SourceVpce": ["vpce-1", "vpce-2"], "aws:RequestedRegion": "us-east-1"}}
        assert cond(block, {"aws:SourceVpce": "vpce-2", "aws:RequestedRegion": "us-east-1"})
        assert not cond(block, {"aws:SourceVpce": "vpce-2", "aws:RequestedRegion": "eu-west-1"})
        assert not cond(block, {"aws:SourceVpce": "vpce-3", "aws:RequestedRegion": "us-east-1"})

    def test_keys_are_case_insensitive_values_are_not(self) -> None:
        assert cond({"StringEquals": {"AWS:SOURCEVPCE": "vpce-1"}}, {"aws:SourceVpce": "vpce-1"})
        assert not cond({"StringEquals": {"aws:SourceVpce": "VPCE-1"}}, {"aws:SourceVpce": "vpce-1"})
        assert cond({"StringEqualsIgnoreCase": {"aws:SourceVpce": "VPCE-1"}}, {"aws:SourceVpce": "vpce-1"})
        assert not cond(
            {"StringNotEqualsIgnoreCase": {"aws:SourceVpce": "VPCE-1"}}, {"aws:SourceVpce": "vpce-1"}
        )

    def test_string_equals_has_no_wildcards_string_like_does(self) -> None:
        assert not cond({"StringEquals": {"aws:SourceVpce": "vpce-*"}}, {"aws:SourceVpce": "vpce-1"})
        assert cond({"StringLike": {"aws:SourceVpce": "vpce-?"}}, {"aws:SourceVpce": "vpce-1"})
        assert not cond({"StringNotLike": {"aws:SourceVpce": "vpce-*"}}, {"aws:SourceVpce": "vpce-1"})

    def test_missing_key_positive_false_negated_true(self) -> None:
        assert not cond({"StringEquals": {"aws:SourceVpce": "vpce-1"}})
        assert cond({"StringNotEquals": {"aws:SourceVpce": "vpce-1"}})
        assert cond({"StringNotLike": {"aws:SourceVpce": "vpce-*"}})
        assert cond({"ArnNotLike": {"aws:SourceArn": "arn:aws:s3:::x"}})
        assert cond({"NotIpAddress": {"aws:SourceIp": "10.0.0.0/8"}})
        assert not cond({"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}})

    def test_if_exists(self) -> None:
        block = {"StringEqualsIfExists": {"aws:SourceVpce": "vpce-1"}}
        assert cond(block)
        assert cond(block, {"aws:SourceVpce": "vpce-1"})
        assert not cond(block, {"aws:SourceVpce": "vpce-2"})

    def test_null(self) -> None:
        assert cond({"Null": {"aws:SourceVpce": "true"}})
        assert not cond({"Null": {"aws:SourceVpce": "true"}}, {"aws:SourceVpce": "v"})
        assert cond({"Null": {"aws:SourceVpce": "false"}}, {"aws:SourceVpce": "v"})

    def test_bool(self) -> None:
        assert cond({"Bool": {"aws:SecureTransport": "true"}}, {"aws:SecureTransport": "TRUE"})
        assert not cond({"Bool": {"aws:SecureTransport": "true"}}, {"aws:SecureTransport": "false"})
        assert not cond({"Bool": {"aws:SecureTransport": "true"}}, {"aws:SecureTransport": "yes"})

    def test_numeric(self) -> None:
        ctx = {"s3:max-keys": "10"}
        assert cond({"NumericLessThanEquals": {"s3:max-keys": "10"}}, ctx)
        assert not cond({"NumericLessThan": {"s3:max-keys": "10"}}, ctx)
        assert cond({"NumericGreaterThan": {"s3:max-keys": "9.5"}}, ctx)
        assert cond({"NumericEquals": {"s3:max-keys": ["1", "10"]}}, ctx)
        assert not cond({"NumericNotEquals": {"s3:max-keys": ["1", "10"]}}, ctx)
        assert not cond({"NumericEquals": {"s3:max-keys": "10"}}, {"s3:max-keys": "ten"})

    def test_dates(self) -> None:
        ctx = {"aws:CurrentTime": "2024-06-01T12:00:00Z"}
        assert cond({"DateLessThan": {"aws:CurrentTime": "2024-07-01T00:00:00Z"}}, ctx)
        assert not cond({"DateGreaterThan": {"aws:CurrentTime": "2024-07-01"}}, ctx)
        assert cond(
            {"DateGreaterThanEquals": {"aws:EpochTime": "1700000000"}}, {"aws:EpochTime": "1700000000"}
        )
        assert cond({"DateNotEquals": {"aws:CurrentTime": "2024-06-01T12:00:01Z"}}, ctx)

    def test_ip_address(self) -> None:
        assert cond(
            {"IpAddress": {"aws:SourceIp": ["10.0.0.0/16", "2001:db8::/32"]}}, {"aws:SourceIp": "2001:db8::1"}
        )
        assert not cond({"IpAddress": {"aws:SourceIp": "10.0.0.0/16"}}, {"aws:SourceIp": "10.1.0.1"})
        assert cond({"IpAddress": {"aws:SourceIp": "192.168.1.7"}}, {"aws:SourceIp": "192.168.1.7"})
        assert cond({"NotIpAddress": {"aws:SourceIp": "10.0.0.0/8"}}, {"aws:SourceIp": "2001:db8::1"})
        assert not cond({"NotIpAddress": {"aws:SourceIp": "10.0.0.0/8"}}, {"aws:SourceIp": "10.2.3.4"})
        assert not cond({"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}, {"aws:SourceIp": "not-an-ip"})

    def test_arn_operators(self) -> None:
        ctx = {"aws:SourceArn": "arn:aws:s3:::data-bucket"}
        assert cond({"ArnLike": {"aws:SourceArn": "arn:aws:s3:::data-*"}}, ctx)
        assert cond({"ArnEquals": {"aws:SourceArn": "arn:aws:s3:::data-bucket"}}, ctx)
        assert not cond({"ArnNotEquals": {"aws:SourceArn": "arn:aws:s3:::data-bucket"}}, ctx)
        assert cond({"ArnNotLike": {"aws:SourceArn": "arn:aws:s3:::logs-*"}}, ctx)
        assert not cond(
            {"ArnLike": {"aws:SourceArn": "arn:aws:s3:::data-*"}}, {"aws:SourceArn": "data-bucket"}
        )
        # wildcards do not cross segments before the resource part
        assert not cond({"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::*"}}, principal=ROLE)
        assert cond({"ArnLike": {"aws:PrincipalArn": f"arn:aws:iam::{ACCT}:role/*"}}, principal=ROLE)

    def test_binary_equals(self) -> None:
        assert cond({"BinaryEquals": {"x:blob": "QmluYXJ5"}}, {"x:blob": "QmluYXJ5"})
        assert not cond({"BinaryEquals": {"x:blob": "QmluYXJ5"}}, {"x:blob": "other"})

    def test_set_operators(self) -> None:
        tags = {"aws:TagKeys": ["team", "cost"]}
        assert cond({"ForAllValues:StringEquals": {"aws:TagKeys": ["team", "cost", "env"]}}, tags)
        assert not cond({"ForAllValues:StringEquals": {"aws:TagKeys": ["team"]}}, tags)
        assert cond({"ForAllValues:StringEquals": {"aws:TagKeys": ["team"]}})  # vacuously true
        assert cond({"ForAnyValue:StringEquals": {"aws:TagKeys": ["team"]}}, tags)
        assert not cond({"ForAnyValue:StringEquals": {"aws:TagKeys": ["env"]}}, tags)
        assert not cond({"ForAnyValue:StringEquals": {"aws:TagKeys": ["team"]}})
        assert cond({"ForAnyValue:StringEquals": {"aws:SourceVpce": ["v1", "v2"]}}, {"aws:SourceVpce": "v2"})

    def test_single_valued_operator_on_multivalued_key_does_not_match(self) -> None:
        assert not cond({"StringEquals": {"aws:TagKeys": "team"}}, {"aws:TagKeys": ["team"]})

    def test_variables_in_condition_values(self) -> None:
        block = {"StringEquals": {"s3:prefix": "home/${aws:username}/"}}
        assert cond(block, {"s3:prefix": "home/alice/"}, principal=USER)
        assert not cond(block, {"s3:prefix": "home/bob/"}, principal=USER)

    def test_principal_keys_are_derived(self) -> None:
        assert cond(
            {"StringEquals": {"aws:PrincipalArn": ROLE, "aws:PrincipalAccount": ACCT}}, principal=SESSION
        )
        assert cond({"StringEquals": {"aws:PrincipalType": "User", "aws:username": "alice"}}, principal=USER)
        req = Request.make(ROLE, "s3:GetObject", OBJ, auto_context=False)
        p = pol(allow(Condition={"StringEquals": {"aws:PrincipalAccount": ACCT}}))
        assert evaluate(req, [p]).decision is IMPLICIT


# ---------------------------------------------------------------------------------- combination


class TestEvaluationLogic:
    def test_explicit_deny_wins_everywhere(self) -> None:
        ok = pol(allow())
        assert decide([ok, pol(deny())]) is EXPLICIT
        assert decide(ok, boundary=pol(allow(), deny())) is EXPLICIT
        bucket = pol({**deny(), "Principal": "*"})
        assert decide(ok, resource_policy=bucket) is EXPLICIT
        assert decide(ok, session_policy=pol(deny("s3:*"))) is EXPLICIT

    def test_boundary_intersects_identity(self) -> None:
        assert decide(pol(allow()), boundary=pol(allow("s3:Get*"))) is ALLOW
        assert decide(pol(allow()), boundary=pol(allow("s3:List*"))) is IMPLICIT
        assert decide(pol(allow("s3:List*")), boundary=pol(allow())) is IMPLICIT

    def test_same_account_resource_policy_alone_allows(self) -> None:
        bucket = pol({**allow(resource="arn:aws:s3:::data-bucket/*"), "Principal": {"AWS": ROLE}})
        assert decide([], resource_policy=bucket, resource_account=ACCT) is ALLOW
        # naming the account only delegates to IAM policies
        acct = pol({**allow(resource="arn:aws:s3:::data-bucket/*"), "Principal": {"AWS": ACCT}})
        assert decide([], resource_policy=acct, resource_account=ACCT) is IMPLICIT
        assert decide(pol(allow()), resource_policy=acct, resource_account=ACCT) is ALLOW

    def test_resource_policy_role_arn_matches_its_sessions(self) -> None:
        bucket = pol({**allow(), "Principal": {"AWS": ROLE}})
        assert decide([], principal=SESSION, resource_policy=bucket, resource_account=ACCT) is ALLOW
        other = pol({**allow(), "Principal": {"AWS": f"arn:aws:iam::{ACCT}:role/other"}})
        assert decide([], principal=SESSION, resource_policy=other, resource_account=ACCT) is IMPLICIT

    def test_boundary_does_not_limit_resource_policy_naming_the_user(self) -> None:
        # https://docs.aws.amazon.com/IAM/latest/UserGuide/access_policies_boundaries.html
        limited = pol(allow("s3:List*"))
        by_user = pol({**allow(), "Principal": {"AWS": USER}})
        assert (
            decide([], principal=USER, boundary=limited, resource_policy=by_user, resource_account=ACCT)
            is ALLOW
        )
        by_role = pol({**allow(), "Principal": {"AWS": ROLE}})
        assert (
            decide([], principal=SESSION, boundary=limited, resource_policy=by_role, resource_account=ACCT)
            is IMPLICIT
        )
        by_session = pol({**allow(), "Principal": {"AWS": SESSION}})
        assert (
            decide([], principal=SESSION, boundary=limited, resource_policy=by_session, resource_account=ACCT)
            is ALLOW
        )

    def test_cross_account_needs_both_sides(self) -> None:
        ident = pol(allow())
        bucket = pol({**allow(), "Principal": {"AWS": EXT_ROLE}})
        root = pol({**allow(), "Principal": {"AWS": f"arn:aws:iam::{OTHER}:root"}})
        assert decide(ident, principal=EXT_ROLE, resource_account=ACCT) is IMPLICIT
        assert decide([], principal=EXT_ROLE, resource_policy=bucket, resource_account=ACCT) is IMPLICIT
        assert decide(ident, principal=EXT_ROLE, resource_policy=bucket, resource_account=ACCT) is ALLOW
        assert decide(ident, principal=EXT_ROLE, resource_policy=root, resource_account=ACCT) is ALLOW
        assert (
            decide(
                ident,
                principal=EXT_ROLE,
                resource_policy=bucket,
                resource_account=ACCT,
                boundary=pol(allow("s3:List*")),
            )
            is IMPLICIT
        )

    def test_resource_account_comes_from_the_arn(self) -> None:
        q = f"arn:aws:sqs:us-east-1:{OTHER}:q"
        assert decide(pol(allow("sqs:SendMessage")), "sqs:SendMessage", q) is IMPLICIT
        assert (
            decide(pol(allow("sqs:SendMessage")), "sqs:SendMessage", f"arn:aws:sqs:us-east-1:{ACCT}:q")
            is ALLOW
        )

    def test_kms_key_policy_must_trust_the_account(self) -> None:
        ident = pol(allow("kms:Decrypt"))
        trusting = pol(
            {
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{ACCT}:root"},
                "Action": "kms:*",
                "Resource": "*",
            }
        )
        direct = pol(
            {"Effect": "Allow", "Principal": {"AWS": ROLE}, "Action": "kms:Decrypt", "Resource": "*"}
        )
        assert decide(ident, "kms:Decrypt", KEY) is IMPLICIT  # no key policy
        assert (
            decide(ident, "kms:Decrypt", KEY, resource_policy=direct) is ALLOW
        )  # the key policy alone grants
        assert decide(ident, "kms:Encrypt", KEY, resource_policy=direct) is IMPLICIT
        assert decide(ident, "kms:Decrypt", KEY, resource_policy=trusting) is ALLOW
        assert decide([], "kms:Decrypt", KEY, resource_policy=trusting) is IMPLICIT
        # a key policy trusting the account for other actions only does not enable kms:Decrypt
        narrow = pol(
            {"Effect": "Allow", "Principal": {"AWS": ACCT}, "Action": "kms:DescribeKey", "Resource": "*"}
        )
        assert decide(ident, "kms:Decrypt", KEY, resource_policy=narrow) is IMPLICIT
        # wildcard-only KMS actions are not key resources
        assert decide(pol(allow("kms:ListKeys")), "kms:ListKeys", "*") is ALLOW

    def test_role_trust_policy_needs_account_trust_for_identity_grants(self) -> None:
        target = f"arn:aws:iam::{ACCT}:role/target"
        ident = pol(allow("sts:AssumeRole", target))
        trust_role = Policy.from_json(
            {
                "Version": "2012-10-17",
                "Statement": {"Effect": "Allow", "Principal": {"AWS": USER}, "Action": "sts:AssumeRole"},
            }
        )
        trust_acct = Policy.from_json(
            {
                "Version": "2012-10-17",
                "Statement": {"Effect": "Allow", "Principal": {"AWS": ACCT}, "Action": "sts:AssumeRole"},
            }
        )
        assert decide([], "sts:AssumeRole", target, principal=USER, resource_policy=trust_role) is ALLOW
        assert decide(ident, "sts:AssumeRole", target, principal=ROLE, resource_policy=trust_role) is IMPLICIT
        assert decide(ident, "sts:AssumeRole", target, principal=ROLE, resource_policy=trust_acct) is ALLOW

    def test_session_policy_limits_identity_grants(self) -> None:
        assert decide(pol(allow()), principal=SESSION, session_policy=pol(allow("s3:*"))) is ALLOW
        assert decide(pol(allow()), principal=SESSION, session_policy=pol(allow("s3:List*"))) is IMPLICIT

    def test_not_principal_deny_always_hits_a_principal_with_a_boundary(self) -> None:
        bucket = pol({**deny(), "NotPrincipal": {"AWS": ROLE}}, {**allow(), "Principal": {"AWS": ROLE}})
        assert decide(pol(allow()), resource_policy=bucket, resource_account=ACCT) is ALLOW
        assert (
            decide(pol(allow()), resource_policy=bucket, resource_account=ACCT, boundary=pol(allow()))
            is EXPLICIT
        )
        assert decide(pol(allow()), principal=USER, resource_policy=bucket, resource_account=ACCT) is EXPLICIT

    def test_anonymous_needs_a_public_resource_policy(self) -> None:
        public = pol({**allow(), "Principal": "*"})
        assert decide([], principal="anonymous", resource_policy=public, resource_account=ACCT) is ALLOW
        assert decide([pol(allow())], principal="anonymous") is IMPLICIT

    def test_aws_owned_resources_refuse_changes(self) -> None:
        admin = pol(allow("*"))
        assert decide(admin, "iam:CreatePolicyVersion", "arn:aws:iam::aws:policy/ReadOnlyAccess") is IMPLICIT
        assert decide(admin, "iam:CreatePolicyVersion", f"arn:aws:iam::{ACCT}:policy/Mine") is ALLOW
        alias = f"arn:aws:kms:us-east-1:{ACCT}:alias/aws/s3"
        assert decide(admin, "kms:DeleteAlias", alias) is IMPLICIT

    def test_get_caller_identity_cannot_be_denied(self) -> None:
        assert decide(pol(deny("*")), "sts:GetCallerIdentity", "*") is ALLOW

    def test_explanation_names_the_statements(self) -> None:
        p = pol({**allow(), "Sid": "Read"}, name="reader")
        d = pol({**deny(), "Sid": "NoRead"}, name="guard")
        ev = evaluate(Request.make(ROLE, "s3:GetObject", OBJ), [p])
        assert ev.allowed and [(m.kind, m.policy, m.index, m.sid) for m in ev.statements] == [
            (PolicyKind.IDENTITY, "reader", 0, "Read")
        ]
        ev = evaluate(Request.make(ROLE, "s3:GetObject", OBJ), [p, d])
        assert ev.decision is EXPLICIT and [m.sid for m in ev.statements] == ["NoRead"]
        assert ev.reason
