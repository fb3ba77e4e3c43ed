"""S3 URIs as the minter compares them: bucket exact, keys on a `/` or exact-object boundary."""

from __future__ import annotations

import pytest

from devstack.s3_uri import S3Uri


@pytest.mark.parametrize(("text", "bucket", "key", "is_prefix"), [
    ("s3://udf-outputs/acme/task-1/", "udf-outputs", "acme/task-1/", True),
    ("s3://udf-bundles/acme/fn.zip", "udf-bundles", "acme/fn.zip", False),
    ("s3://udf-inputs/", "udf-inputs", "", True),
    ("s3://my.bucket/dt=2024-01-01/part-0.parquet", "my.bucket", "dt=2024-01-01/part-0.parquet",
     False),
    ("s3://udf-outputs/acme/task:7f3a.1/", "udf-outputs", "acme/task:7f3a.1/", True),
])
def test_valid_uris_parse(text: str, bucket: str, key: str, is_prefix: bool) -> None:
    uri = S3Uri.parse(text)

    assert (uri.bucket, uri.key, uri.is_prefix) == (bucket, key, is_prefix)
    assert str(uri) == text


@pytest.mark.parametrize("text", [
    "https://udf-outputs/acme/",
    "s3://udf-outputs",  # no key part at all
    "s3:///acme/",
    "s3://ab/acme/",  # bucket too short
    "s3://UDF-outputs/acme/",
    "s3://udf..outputs/acme/",
    "s3://udf-outputs/acme/../other/",
    "s3://udf-outputs/acme/./x",
    "s3://udf-outputs/../x",
    "s3://udf-outputs/acme//x",
    "s3://udf-outputs//",
    "s3://udf-outputs/acme/*",
    "s3://udf-outputs/acme/?",
    "s3://udf-outputs/acme/${aws:username}/",
    "s3://udf-outputs/acme/a b",
    "s3://udf-outputs/acme/%2e%2e/",
    "s3://udf-outputs/acme\\x",
    "s3://udf-outputs/acme/\x00",
    "s3://udf-outputs/acme/x|y",
    "s3://udf-outputs/" + "k" * 1025,
])
def test_invalid_uris_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="s3"):
        S3Uri.parse(text)


@pytest.mark.parametrize(("grant", "request_", "covered"), [
    ("s3://out/acme/t1/", "s3://out/acme/t1/", True),
    ("s3://out/acme/t1/", "s3://out/acme/t1/sub/", True),
    ("s3://out/acme/t1/", "s3://out/acme/t1/result.json", True),
    ("s3://out/acme/t1/", "s3://out/acme/t10/", False),  # not on a "/" boundary
    ("s3://out/acme/t1/", "s3://out/acme/t1", False),
    ("s3://out/acme/t1/", "s3://out/acme/", False),
    ("s3://out/acme/t1/", "s3://other/acme/t1/", False),  # bucket exact
    ("s3://out/acme/t1/", "s3://outx/acme/t1/", False),
    ("s3://bun/acme/fn.zip", "s3://bun/acme/fn.zip", True),  # exact object
    ("s3://bun/acme/fn.zip", "s3://bun/acme/fn.zip.evil", False),
    ("s3://bun/acme/fn.zip", "s3://bun/acme/fn.zip/", False),
    ("s3://bun/acme/fn.zip", "s3://bun/acme/", False),
    ("s3://bun/", "s3://bun/anything/at/all", True),  # the whole bucket
])
def test_covers(grant: str, request_: str, covered: bool) -> None:
    assert S3Uri.parse(grant).covers(S3Uri.parse(request_)) is covered
