"""AWS Signature Version 4 for S3: the headers that authorise a request with given credentials.

What reading and writing objects needs (the query string of a listing included). A GET declares
its (absent) payload `UNSIGNED-PAYLOAD` (what the task trusts is the object's SHA-256 against its
pin, not the transport); a PUT passes its body's SHA-256. The session token, when there is one,
is sent as `X-Amz-Security-Token` and signed with the other headers. S3 signs the path exactly
as it is sent: each key segment percent-encoded once (`encode_key`), never normalised or encoded
again, unlike the other services.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from datetime import datetime
from urllib.parse import quote

from runner.platform.minter import ScopedCredentials

__all__ = ["ALGORITHM", "UNSIGNED_PAYLOAD", "canonical_query", "canonical_request", "encode_key",
           "sign"]

ALGORITHM = "AWS4-HMAC-SHA256"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
_SERVICE = "s3"


def encode_key(key: str) -> str:
    """`key` as it goes in the path: its UTF-8 bytes percent-encoded (uppercase hex), except
    the unreserved characters (letters, digits, `-._~`) and the `/` between segments."""
    return quote(key, safe="/~")


def canonical_query(params: Mapping[str, str]) -> str:
    """`params` as SigV4 signs a query string, and as it is then sent: names and values
    percent-encoded (only the unreserved characters kept), sorted."""
    encoded = sorted((quote(name, safe="~"), quote(value, safe="~"))
                     for name, value in params.items())
    return "&".join(f"{name}={value}" for name, value in encoded)


def sign(method: str, host: str, path: str, *, region: str, credentials: ScopedCredentials,
         now: datetime, payload_sha256: str = UNSIGNED_PAYLOAD,
         query: str = "") -> dict[str, str]:
    """The headers of a `method` request of `path` (already encoded; `query` from
    `canonical_query`) on `host` (with its port unless the scheme's default), signed at `now`
    (UTC) for `region`, its body declared by `payload_sha256` (lowercase hex, or
    `UNSIGNED_PAYLOAD`): send exactly these."""
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    headers = {"Host": host, "X-Amz-Content-SHA256": payload_sha256, "X-Amz-Date": stamp}
    if credentials.session_token:
        headers["X-Amz-Security-Token"] = credentials.session_token
    scope = f"{stamp[:8]}/{region}/{_SERVICE}/aws4_request"
    signed = _signed_names(headers)
    request = canonical_request(method, path, headers, query)
    to_sign = "\n".join((ALGORITHM, stamp, scope, _sha256(request)))
    key = _signing_key(credentials.secret_access_key, stamp[:8], region)
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["Authorization"] = (f"{ALGORITHM} Credential={credentials.access_key_id}/{scope}, "
                                f"SignedHeaders={signed}, Signature={signature}")
    return headers


def canonical_request(method: str, path: str, headers: Mapping[str, str], query: str = "") -> str:
    """What SigV4 hashes for a request: every header in `headers` is signed (lowercase names,
    sorted; values trimmed, inner runs of spaces made one)."""
    canonical = {name.lower(): " ".join(value.split()) for name, value in headers.items()}
    lines = [f"{name}:{canonical[name]}\n" for name in sorted(canonical)]
    return "\n".join((method, path, query, "".join(lines), _signed_names(headers),
                      canonical.get("x-amz-content-sha256", UNSIGNED_PAYLOAD)))


def _signed_names(headers: Mapping[str, str]) -> str:
    return ";".join(sorted(name.lower() for name in headers))


def _signing_key(secret: str, date: str, region: str) -> bytes:
    key = f"AWS4{secret}".encode()
    for part in (date, region, _SERVICE, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
