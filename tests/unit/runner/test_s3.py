"""Where the runner's S3 GET goes (against the URL botocore's own client builds for GetObject)
and how S3's error answers are read."""

from __future__ import annotations

import functools
from typing import Any

import botocore.session
import pytest
from botocore.config import Config

from runner.platform import S3Error, S3Reader
from runner.platform.s3 import locate

KEYS = ["bundle.zip", "a b/c+d=e~f/ü.zip", "x/../y", "//k/./", "sym!'()*;:@&$,?#[]"]
#: Bucket names that are DNS labels (virtual-hosted) and ones that are not (path-style).
BUCKETS = ["udf-bundles", "a--b", "abc", "dotted.bucket", "Upper_Case", "ab", "192.168.1.1"]
REGIONS = ["us-east-1", "eu-west-1", "cn-north-1", "cn-northwest-1", "ap-southeast-3"]


@functools.cache
def _botocore_client(region: str, endpoint_url: str | None) -> Any:
    config = Config(s3={"us_east_1_regional_endpoint": "regional",
                        **({"addressing_style": "path"} if endpoint_url else {})})
    return botocore.session.get_session().create_client(
        "s3", region_name=region, endpoint_url=endpoint_url, config=config,
        aws_access_key_id="AKIA", aws_secret_access_key="secret")


class _Sent(Exception):  # noqa: N818 - carries the request out of botocore's send
    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.url = url


def _botocore_url(bucket: str, key: str, region: str, endpoint_url: str | None = None) -> str:
    """The URL botocore's client sends GetObject to (stopped before it is sent)."""
    client = _botocore_client(region, endpoint_url)

    def stop(request: Any, **_: Any) -> None:
        raise _Sent(request.url)

    client.meta.events.register_first("before-send.s3.GetObject", stop)
    try:
        client.get_object(Bucket=bucket, Key=key)
    except _Sent as sent:
        return sent.url
    finally:
        client.meta.events.unregister("before-send.s3.GetObject", stop)
    raise AssertionError("botocore sent nothing")


@pytest.mark.parametrize("region", REGIONS)
@pytest.mark.parametrize("bucket", BUCKETS)
def test_real_s3_is_addressed_as_botocore_addresses_it(bucket: str, region: str) -> None:
    for key in KEYS:
        assert locate(bucket, key, region=region).url == _botocore_url(bucket, key, region)


@pytest.mark.parametrize("endpoint_url", ["http://127.0.0.1:4566", "http://localhost:80",
                                          "https://s3.example:9443", "http://[::1]:9000"])
def test_an_endpoint_url_is_addressed_path_style(endpoint_url: str) -> None:
    for key in KEYS:
        assert locate("udf-bundles", key, region="eu-west-1", endpoint_url=endpoint_url).url \
            == _botocore_url("udf-bundles", key, "eu-west-1", endpoint_url)


def test_the_host_header_carries_a_port_only_when_not_the_default() -> None:
    assert locate("b", "k", region="r", endpoint_url="http://h:80").host_header == "h"
    assert locate("b", "k", region="r", endpoint_url="https://h:443").host_header == "h"
    assert locate("b", "k", region="r", endpoint_url="http://h:443").host_header == "h:443"
    assert locate("b", "k", region="r", endpoint_url="http://[::1]:9").host_header == "[::1]:9"


def _xml(*fields: tuple[str, str], namespace: str = "") -> bytes:
    inner = "".join(f"<{name}>{value}</{name}>" for name, value in fields)
    xmlns = f' xmlns="{namespace}"' if namespace else ""
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<Error{xmlns}>{inner}</Error>'.encode()


def test_the_code_comes_from_the_error_document() -> None:
    error = S3Error.parse(404, {}, _xml(("Code", "NoSuchKey"), ("Message", "gone"),
                                        ("RequestId", "R")))

    assert (error.status, error.code, error.region, str(error)) == (404, "NoSuchKey", "",
                                                                    "HTTP 404 NoSuchKey")


def test_a_namespaced_document_is_read_too() -> None:
    body = _xml(("Code", "SlowDown"), namespace="http://s3.amazonaws.com/doc/2006-03-01/")

    assert S3Error.parse(503, {}, body).code == "SlowDown"


def test_the_region_comes_from_the_header_before_the_document() -> None:
    body = _xml(("Code", "AuthorizationHeaderMalformed"), ("Region", "eu-west-1"))

    assert S3Error.parse(400, {}, body).region == "eu-west-1"
    assert S3Error.parse(400, {"x-amz-bucket-region": "ap-south-1"}, body).region == "ap-south-1"


@pytest.mark.parametrize("body", [
    b"",
    b"<html><body>502 Bad Gateway</body></html",
    b"not xml at all",
    _xml(("Code", "AccessDenied"))[:40],  # cut short
    # An entity bomb: the parser refuses it instead of expanding it.
    b'<?xml version="1.0"?><!DOCTYPE e [<!ENTITY a "aaaaaaaaaa">'
    + b"".join(b'<!ENTITY %c "%s">' % (c, (b"&%c;" % (c - 1)) * 10)
               for c in range(ord("b"), ord("k")))
    + b"]><Error><Code>&j;</Code></Error>",
    b'<?xml version="1.0"?><!DOCTYPE e [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
    b"<Error><Code>&x;</Code></Error>",
])
def test_a_body_that_is_not_an_error_document_leaves_the_status(body: bytes) -> None:
    error = S3Error.parse(502, {}, body)

    assert (error.code, str(error)) == ("", "HTTP 502")


@pytest.mark.parametrize(("status", "code", "transient"), [
    (500, "InternalError", True), (502, "", True), (503, "SlowDown", True), (504, "", True),
    (429, "", True), (400, "RequestTimeout", True),
    (400, "InvalidRequest", False), (403, "AccessDenied", False), (404, "NoSuchKey", False),
    (301, "PermanentRedirect", False), (501, "NotImplemented", False),
])
def test_throttling_and_failures_are_transient_refusals_are_not(status: int, code: str,
                                                                transient: bool) -> None:
    assert S3Error(status, code).transient is transient


def test_the_reader_shows_no_credentials() -> None:
    assert repr(S3Reader(region="eu-west-1", endpoint_url="http://127.0.0.1:1")) == \
        "S3Reader(region='eu-west-1', endpoint_url='http://127.0.0.1:1')"
