"""The minter's scope policies, evaluated with AWS's semantics, as the embedded S3 enforces them."""

from __future__ import annotations

from typing import Any

import pytest

from devstack.iam_eval import evaluate, s3_context
from devstack.s3_uri import S3Uri
from devstack.scope_policy import Access, scope_policy


def allowed(policy: dict[str, Any], action: str, resource: str,
            context: dict[str, str] | None = None) -> bool:
    """AWS's rule for one identity policy: any Deny wins, else any Allow, else implicit deny."""
    verdicts = [evaluate(statement, action=action, resource=resource, context=context)
                for statement in policy["Statement"]]
    return "deny" not in verdicts and "allow" in verdicts


def scope(access: Access, *uris: str) -> dict[str, Any]:
    return scope_policy(access, [S3Uri.parse(uri) for uri in uris])


def test_read_scope_allows_getting_objects_under_the_prefix_only() -> None:
    policy = scope("read", "s3://udf-inputs/acme/in/")

    assert allowed(policy, "s3:GetObject", "arn:aws:s3:::udf-inputs/acme/in/a/b.csv")
    assert not allowed(policy, "s3:GetObject", "arn:aws:s3:::udf-inputs/acme/other.csv")
    assert not allowed(policy, "s3:GetObject", "arn:aws:s3:::udf-outputs/acme/in/a.csv")
    assert not allowed(policy, "s3:PutObject", "arn:aws:s3:::udf-inputs/acme/in/a.csv")
    assert not allowed(policy, "s3:DeleteObject", "arn:aws:s3:::udf-inputs/acme/in/a.csv")


def test_write_scope_allows_put_and_get_and_multipart_under_the_prefix() -> None:
    policy = scope("write", "s3://udf-outputs/acme/t1/")

    for action in ("s3:PutObject", "s3:GetObject", "s3:AbortMultipartUpload"):
        assert allowed(policy, action, "arn:aws:s3:::udf-outputs/acme/t1/out.json")
        assert not allowed(policy, action, "arn:aws:s3:::udf-outputs/acme/t2/out.json")
    assert not allowed(policy, "s3:DeleteObject", "arn:aws:s3:::udf-outputs/acme/t1/out.json")
    assert not allowed(policy, "s3:PutBucketPolicy", "arn:aws:s3:::udf-outputs")


def test_an_exact_object_scope_is_that_object_only() -> None:
    policy = scope("read", "s3://udf-bundles/acme/fn.zip")

    assert allowed(policy, "s3:GetObject", "arn:aws:s3:::udf-bundles/acme/fn.zip")
    assert not allowed(policy, "s3:GetObject", "arn:aws:s3:::udf-bundles/acme/fn.zip.bak")
    assert not allowed(policy, "s3:GetObject", "arn:aws:s3:::udf-bundles/acme/fn.zip/x")


def test_dots_in_keys_are_literal_not_regex_wildcards() -> None:
    # moto's own matcher would let `.` match any character (and `|` widen to everything).
    policy = scope("write", "s3://udf-outputs/acme/task.1/")

    assert allowed(policy, "s3:PutObject", "arn:aws:s3:::udf-outputs/acme/task.1/o")
    assert not allowed(policy, "s3:PutObject", "arn:aws:s3:::udf-outputs/acme/taskX1/o")


@pytest.mark.parametrize(("prefix", "listed"), [
    ("acme/in/", True),
    ("acme/in/deeper/", True),
    ("acme/", False),
    ("acme/in", False),
    ("", False),
    (None, False),  # no prefix: the whole bucket
])
def test_listing_is_allowed_only_with_a_prefix_inside_the_scope(prefix: str | None,
                                                                listed: bool) -> None:
    policy = scope("read", "s3://udf-inputs/acme/in/", "s3://udf-bundles/acme/fn.zip")
    query = "" if prefix is None else f"&prefix={prefix.replace('/', '%2F')}"
    context = s3_context(f"/udf-inputs?list-type=2{query}")

    assert allowed(policy, "s3:ListBucket", "arn:aws:s3:::udf-inputs", context) is listed


def test_a_failed_condition_for_one_bucket_does_not_deny_another() -> None:
    # moto turns an unmet condition into an explicit Deny, which would forbid every listing.
    policy = scope("read", "s3://udf-inputs/acme/in/", "s3://udf-bundles/acme/")

    assert allowed(policy, "s3:ListBucket", "arn:aws:s3:::udf-bundles",
                   {"s3:prefix": "acme/x"})
    assert allowed(policy, "s3:ListBucket", "arn:aws:s3:::udf-inputs",
                   {"s3:prefix": "acme/in/"})


def test_the_admin_policy_allows_everything() -> None:
    statement = {"Effect": "Allow", "Action": "*", "Resource": "*"}

    assert evaluate(statement, action="iam:CreateRole", resource="*") == "allow"


def test_deny_and_not_action() -> None:
    statement = {"Effect": "Deny", "NotAction": "s3:Get*", "Resource": "*"}

    assert evaluate(statement, action="s3:PutObject", resource="arn:aws:s3:::b/k") == "deny"
    assert evaluate(statement, action="s3:GetObject", resource="arn:aws:s3:::b/k") is None


def test_actions_ignore_case_and_resources_do_not() -> None:
    statement = {"Effect": "Allow", "Action": "s3:getobject", "Resource": "arn:aws:s3:::b/Key"}

    assert evaluate(statement, action="s3:GetObject", resource="arn:aws:s3:::b/Key") == "allow"
    assert evaluate(statement, action="s3:GetObject", resource="arn:aws:s3:::b/key") is None


def test_trust_policy_principals() -> None:
    trust = {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:user/admin"},
             "Action": "sts:AssumeRole"}

    assert evaluate(trust, action="sts:AssumeRole", resource="arn:aws:iam::123456789012:role/r",
                    principal="arn:aws:iam::123456789012:user/admin") == "allow"
    assert evaluate(trust, action="sts:AssumeRole", resource="arn:aws:iam::123456789012:role/r",
                    principal="arn:aws:iam::123456789012:user/other") is None


@pytest.mark.parametrize(("condition", "context", "holds"), [
    ({"StringEquals": {"s3:prefix": "a/"}}, {"s3:prefix": "a/"}, True),
    ({"StringEquals": {"s3:prefix": "a/"}}, {}, False),
    ({"StringNotEquals": {"s3:prefix": "a/"}}, {}, True),
    ({"StringLikeIfExists": {"s3:prefix": "a/*"}}, {}, True),
    ({"StringLike": {"S3:Prefix": "a/*"}}, {"s3:prefix": "a/b"}, True),
    ({"StringLike": {"s3:prefix": "a/?"}}, {"s3:prefix": "a/bc"}, False),
    ({"NumericLessThan": {"s3:max-keys": "10"}}, {"s3:max-keys": "5"}, False),  # unsupported
])
def test_conditions(condition: dict[str, Any], context: dict[str, str], holds: bool) -> None:
    statement = {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "*",
                 "Condition": condition}

    verdict = evaluate(statement, action="s3:ListBucket", resource="arn:aws:s3:::b",
                       context=context)

    assert (verdict == "allow") is holds
