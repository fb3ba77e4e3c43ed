"""The runner's SigV4 signer against botocore's own (`S3SigV4Auth`), for the same GET: the same
canonical request, the same Authorization header, whatever the key, the region or the endpoint.
botocore is only the oracle here; the runner never imports it."""

from __future__ import annotations

import hashlib
import itertools
from datetime import UTC, datetime

import pytest
from botocore import auth as botocore_auth
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

from runner.platform import ScopedCredentials
from runner.platform.s3 import locate
from runner.platform.sigv4 import UNSIGNED_PAYLOAD, canonical_request, encode_key, sign

NOW = datetime(2026, 3, 9, 23, 59, 58, tzinfo=UTC)
CREDENTIALS = [
    ScopedCredentials("ASIAEXAMPLEKEY000001", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                      "IQoJb3JpZ2luX2VjE//////////wEaCXVzLWVhc3QtMSJHMEUCIQD+token=="),
    ScopedCredentials("AKIAEXAMPLEKEY000002", "secret with spaces", ""),
]
KEYS = ["bundle.zip", "acme/fn v2/b.zip", "a+b=c~d/e f", "ünïcödé/日本語.zip", "x/../y/./z",
        "//lead//trail/", "sym!'()*;:@&$,?#[]%25", "tab\there", "percent%2Fslash"]
#: (region, endpoint URL): real S3 in three partitions' worth of regions, and local stacks.
WHERE = [("us-east-1", ""), ("eu-west-1", ""), ("cn-north-1", ""),
         ("us-east-1", "http://127.0.0.1:4566"), ("eu-central-1", "https://s3.example:9443/base/")]
BUCKETS = ["udf-bundles", "dotted.bucket.name"]


def _botocore_signed(url: str, region: str, credentials: ScopedCredentials,
                     monkeypatch: pytest.MonkeyPatch) -> tuple[AWSRequest, S3SigV4Auth]:
    monkeypatch.setattr(botocore_auth, "get_current_datetime",
                        lambda: NOW.replace(tzinfo=None))
    request = AWSRequest(method="GET", url=url, headers={})
    # As the runner: the payload declared unsigned, over http as over https.
    request.context["client_config"] = Config(s3={"payload_signing_enabled": False})
    signer = S3SigV4Auth(Credentials(credentials.access_key_id, credentials.secret_access_key,
                                     credentials.session_token or None), "s3", region)
    signer.add_auth(request)
    return request, signer


def _canonical(request: AWSRequest, signer: S3SigV4Auth) -> str:
    """botocore's canonical request for `request` as it was signed (without the signature)."""
    unsigned = AWSRequest(method=request.method, url=request.url, headers={
        name: value for name, value in request.headers.items() if name != "Authorization"})
    unsigned.context.update(request.context)
    return str(signer.canonical_request(unsigned))


@pytest.mark.parametrize(("key", "where", "bucket", "credentials"),
                         list(itertools.product(KEYS, WHERE, BUCKETS, CREDENTIALS)))
def test_the_signature_is_botocores(key: str, where: tuple[str, str], bucket: str,
                                    credentials: ScopedCredentials,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    region, endpoint_url = where
    location = locate(bucket, key, region=region, endpoint_url=endpoint_url)

    ours = sign("GET", location.host_header, location.path, region=region,
                credentials=credentials, now=NOW)
    theirs, signer = _botocore_signed(location.url, region, credentials, monkeypatch)

    unsigned = {name: value for name, value in ours.items() if name != "Authorization"}
    assert canonical_request("GET", location.path, unsigned) == _canonical(theirs, signer)
    assert ours["Authorization"] == theirs.headers["Authorization"]
    assert ours["X-Amz-Date"] == theirs.headers["X-Amz-Date"] == "20260309T235958Z"
    assert ours["X-Amz-Content-SHA256"] == theirs.headers["X-Amz-Content-SHA256"] \
        == UNSIGNED_PAYLOAD
    assert ours.get("X-Amz-Security-Token") == theirs.headers.get("X-Amz-Security-Token")


@pytest.mark.parametrize("credentials", CREDENTIALS)
def test_a_put_with_its_payload_hash_is_signed_as_botocore_signs_it(
        credentials: ScopedCredentials, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the local stack's tools upload with (`devstack.access`): a PUT whose body's SHA-256
    is signed, as botocore signs it when payload signing is on."""
    body = b"PK\x05\x06" + b"\x00" * 18
    location = locate("udf-bundles", "local/a b+.zip", region="us-east-1",
                      endpoint_url="http://127.0.0.1:4566")
    digest = hashlib.sha256(body).hexdigest()
    ours = sign("PUT", location.host_header, location.path, region="us-east-1",
                credentials=credentials, now=NOW, payload_sha256=digest)
    monkeypatch.setattr(botocore_auth, "get_current_datetime", lambda: NOW.replace(tzinfo=None))
    theirs = AWSRequest(method="PUT", url=location.url, data=body, headers={})
    theirs.context["client_config"] = Config(s3={"payload_signing_enabled": True})
    S3SigV4Auth(Credentials(credentials.access_key_id, credentials.secret_access_key,
                            credentials.session_token or None), "s3", "us-east-1").add_auth(theirs)

    assert ours["X-Amz-Content-SHA256"] == theirs.headers["X-Amz-Content-SHA256"] == digest
    assert ours["Authorization"] == theirs.headers["Authorization"]


def test_the_token_is_signed_when_there_is_one() -> None:
    with_token, without = (sign("GET", "h", "/k", region="us-east-1", credentials=c, now=NOW)
                           for c in CREDENTIALS)

    assert "x-amz-security-token" in with_token["Authorization"]
    assert "x-amz-security-token" not in without["Authorization"]
    assert "X-Amz-Security-Token" not in without


@pytest.mark.parametrize(("key", "encoded"), [
    ("a b/c", "a%20b/c"),
    ("a+b=c~d", "a%2Bb%3Dc~d"),
    ("ü", "%C3%BC"),
    ("-_.~AZaz09", "-_.~AZaz09"),
    ("x/../y", "x/../y"),
    ("%2F", "%252F"),
    ("?#&", "%3F%23%26"),
])
def test_a_key_is_encoded_once_per_segment_with_uppercase_hex(key: str, encoded: str) -> None:
    assert encode_key(key) == encoded
