"""How a client reaches a running local stack: its endpoints, and the development-only keys.

`StackAccess` is the same whether the stack runs in this process (`LocalStack.access`) or in
another one (`udf-runner devstack` prints `to_environ()`; `StackAccess.from_environ` reads it
back). With it a tool can issue a token for a task, upload a bundle with the admin credentials,
and hand the runner its `UDF_RUNNER_*` endpoints.
"""

from __future__ import annotations

import functools
import hashlib
import http.client
import json
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload
from urllib.parse import urlsplit
from xml.etree import ElementTree

import urllib3

from devstack.claims import Grant
from devstack.s3_uri import S3Uri
from runner.platform.minter import ScopedCredentials
from runner.platform.s3 import S3Error, locate
from runner.platform.sigv4 import UNSIGNED_PAYLOAD, canonical_query, sign

if TYPE_CHECKING:
    from mypy_boto3_iam import IAMClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sts import STSClient

REGION = "us-east-1"
#: The buckets the local stack creates at start.
BUCKETS = ("udf-bundles", "udf-inputs", "udf-outputs")
_ISSUER_TIMEOUT_SECONDS = 10
#: The namespace of S3's XML answers.
_S3_XML = "{http://s3.amazonaws.com/doc/2006-03-01/}"

# Variables `to_environ` writes and `from_environ` reads. The first three are the runner's own
# settings (runner/settings.py); the rest are for development tools only.
MINTER_URL = "UDF_RUNNER_MINTER_URL"
QUERY_URL = "UDF_RUNNER_QUERY_URL"
S3_ENDPOINT_URL = "UDF_RUNNER_S3_ENDPOINT_URL"
ISSUER_URL = "UDF_DEVSTACK_ISSUER_URL"
STACK_REGION = "UDF_DEVSTACK_REGION"
ADMIN_ACCESS_KEY_ID = "UDF_DEVSTACK_ADMIN_ACCESS_KEY_ID"
ADMIN_SECRET_ACCESS_KEY = "UDF_DEVSTACK_ADMIN_SECRET_ACCESS_KEY"  # noqa: S105 - a name
ISSUER_KEY = "UDF_DEVSTACK_ISSUER_KEY"


class StackError(RuntimeError):
    """The local stack failed to start, or one of its services refused a request of ours."""


@dataclass(frozen=True)
class AdminCredentials:
    """The embedded S3's administrator: for the stack itself and humans, never for a bundle."""

    access_key_id: str
    secret_access_key: str = field(repr=False)
    arn: str = ""


@dataclass(frozen=True)
class StackAccess:
    """Endpoints of a running local stack and its development-only admin keys."""

    minter_url: str
    query_url: str
    s3_endpoint_url: str
    issuer_url: str
    admin: AdminCredentials
    issuer_key: str = field(repr=False)
    region: str = REGION

    def runner_environ(self) -> dict[str, str]:
        """The `UDF_RUNNER_*` settings that point the runner at this stack (no secrets)."""
        return {MINTER_URL: self.minter_url, QUERY_URL: self.query_url,
                S3_ENDPOINT_URL: self.s3_endpoint_url}

    def to_environ(self) -> dict[str, str]:
        """Everything `from_environ` needs, the development-only keys included."""
        return {
            **self.runner_environ(),
            ISSUER_URL: self.issuer_url,
            STACK_REGION: self.region,
            ADMIN_ACCESS_KEY_ID: self.admin.access_key_id,
            ADMIN_SECRET_ACCESS_KEY: self.admin.secret_access_key,
            ISSUER_KEY: self.issuer_key,
        }

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> StackAccess | None:
        """The stack `environ` describes, or None when it names none (no issuer URL)."""
        if not environ.get(ISSUER_URL):
            return None
        missing = [name for name in (MINTER_URL, QUERY_URL, S3_ENDPOINT_URL, ADMIN_ACCESS_KEY_ID,
                                     ADMIN_SECRET_ACCESS_KEY, ISSUER_KEY) if not environ.get(name)]
        if missing:
            raise StackError(f"{ISSUER_URL} is set but not {', '.join(missing)}")
        return cls(
            minter_url=environ[MINTER_URL], query_url=environ[QUERY_URL],
            s3_endpoint_url=environ[S3_ENDPOINT_URL], issuer_url=environ[ISSUER_URL],
            admin=AdminCredentials(environ[ADMIN_ACCESS_KEY_ID], environ[ADMIN_SECRET_ACCESS_KEY]),
            issuer_key=environ[ISSUER_KEY], region=environ.get(STACK_REGION) or REGION,
        )

    def issue_token(self, grant: Grant) -> str:
        """A capability token for `grant`, from the stack's issuer (`POST /v1/tokens`).
        Plain `http.client`: the issuer is on loopback, and urllib.request would build a TLS
        context (loading the CA store) for an http:// URL."""
        where = urlsplit(self.issuer_url)
        connection = http.client.HTTPConnection(where.hostname or "127.0.0.1", where.port,
                                                timeout=_ISSUER_TIMEOUT_SECONDS)
        try:
            connection.request("POST", f"{where.path.rstrip('/')}/v1/tokens",
                               body=grant.model_dump_json().encode(),
                               headers={"Content-Type": "application/json",
                                        "Authorization": f"Bearer {self.issuer_key}"})
            response = connection.getresponse()
            body = response.read()
        except OSError as e:
            raise StackError(f"the token issuer is unreachable: {e}") from e
        finally:
            connection.close()
        if response.status != 200:
            raise StackError(f"the token issuer refused: {response.status} {body.decode()}")
        return str(json.loads(body)["token"])

    @overload
    def client(self, service: Literal["s3"]) -> S3Client: ...
    @overload
    def client(self, service: Literal["iam"]) -> IAMClient: ...
    @overload
    def client(self, service: Literal["sts"]) -> STSClient: ...

    def client(self, service: Literal["s3", "iam", "sts"]) -> Any:
        """An admin (botocore) client for the embedded `service`."""
        return admin_client(service, self.s3_endpoint_url, self.admin, self.region)

    def upload(self, uri: str, data: bytes) -> str:
        """Put `data` at `uri` with the admin credentials; return its SHA-256 (lowercase hex)."""
        location = S3Uri.parse(uri)
        if location.is_prefix:
            raise ValueError(f"{uri} is a prefix, not an object")
        digest = hashlib.sha256(data).hexdigest()
        self._s3("PUT", location.bucket, location.key, body=data, body_sha256=digest)
        return digest

    def list_objects(self, bucket: str, prefix: str) -> list[tuple[str, int]]:
        """Every object under `prefix` in `bucket` (key, size), with the admin credentials."""
        found: list[tuple[str, int]] = []
        params = {"list-type": "2", "prefix": prefix}
        while True:
            # The stack's own S3 wrote it; expat (2.4 and later) refuses runaway entities.
            page = ElementTree.fromstring(self._s3("GET", bucket, "", query=params))  # noqa: S314
            found += [(item.findtext(f"{_S3_XML}Key", ""),
                       int(item.findtext(f"{_S3_XML}Size", "0")))
                      for item in page.iter(f"{_S3_XML}Contents")]
            token = page.findtext(f"{_S3_XML}NextContinuationToken")
            if not token:
                return found
            params["continuation-token"] = token

    def _s3(self, method: str, bucket: str, key: str, *, body: bytes = b"",
            body_sha256: str = UNSIGNED_PAYLOAD, query: Mapping[str, str] | None = None) -> bytes:
        """One request to the embedded S3, signed like the runner's GET (`runner.platform.sigv4`)
        rather than made by a botocore client: a command that uploads one bundle and lists its
        outputs would otherwise spend most of its time loading an SDK. Its body, or StackError
        with S3's code."""
        where = locate(bucket, key, region=self.region, endpoint_url=self.s3_endpoint_url)
        path = where.path if key else where.path.rstrip("/")  # a bucket: `/{bucket}`, as S3's own
        encoded = canonical_query(query or {})
        admin = ScopedCredentials(self.admin.access_key_id, self.admin.secret_access_key, "")
        headers = sign(method, where.host_header, path, region=self.region, credentials=admin,
                       now=datetime.now(UTC), payload_sha256=body_sha256, query=encoded)
        try:
            response = _POOL.connection_from_url(where.url).urlopen(
                method, f"{path}?{encoded}" if encoded else path, body=body or None,
                headers=headers, retries=False, redirect=False,
                timeout=urllib3.Timeout(connect=5.0, read=60.0))
        except urllib3.exceptions.HTTPError as e:
            raise StackError(f"the local stack's S3 did not answer {method} s3://{bucket}/{key}: "
                             f"{e}") from e
        if response.status != HTTPStatus.OK:
            refusal = S3Error.parse(response.status, response.headers, response.data)
            raise StackError(f"the local stack's S3 refused {method} s3://{bucket}/{key}: "
                             f"{refusal}")
        return response.data

    def upload_bundle(self, source: Path | bytes, uri: str) -> str:
        """Upload a bundle zip (a file or its bytes) to `uri`; return the SHA-256 to pin."""
        return self.upload(uri, source.read_bytes() if isinstance(source, Path) else source)


# Making a client takes tens of milliseconds even from a warm session (the service's model and
# endpoint rules): once per stack and service is enough, and it keeps `invoke --watch` re-runs
# quick. Clients are thread-safe.
@functools.lru_cache(maxsize=32)
def admin_client(service: str, endpoint_url: str, admin: AdminCredentials,
                 region: str = REGION) -> Any:
    """A client for the embedded `service` with the admin credentials: botocore's, from one
    session for the whole process (each session loads the service models again, and boto3's
    import alone costs more than the command that needs one upload)."""
    with _SESSION_LOCK:  # a botocore session is not safe to share between threads unguarded
        return _session().create_client(
            service, endpoint_url=endpoint_url, region_name=region,
            aws_access_key_id=admin.access_key_id,
            aws_secret_access_key=admin.secret_access_key)


def preload(services: Iterable[str]) -> None:
    """Import botocore and load the models of `services` now (a client for each is made and
    dropped). The stack does this while moto starts in its own process: the clients it makes
    once moto answers then cost milliseconds instead of most of a second."""
    for service in services:
        with _SESSION_LOCK:  # the client is never used: no request, no credentials sent
            _session().create_client(service, endpoint_url="http://127.0.0.1:9", region_name=REGION,
                                     aws_access_key_id="preload",
                                     aws_secret_access_key="preload").close()  # noqa: S106


_SESSION_LOCK = threading.Lock()
#: Connections to the stack's S3 for uploads, kept for the next one (`invoke --watch`).
_POOL = urllib3.PoolManager(retries=False)


@functools.cache
def _session() -> Any:
    import botocore.session  # noqa: PLC0415 - only the commands that talk to S3 pay for it

    return botocore.session.get_session()
