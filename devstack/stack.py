"""The local stack: S3, the credential minter, the Query Service and the token issuer, on loopback.

    with LocalStack.start() as stack:
        sha256 = stack.access.upload_bundle(zip_path, "s3://udf-bundles/acme/fn.zip")
        token = stack.issue_token(Grant.for_task(task_id=..., attempt=1, bundle_uri=...,
                                                 bundle_sha256=sha256, ...))
        settings = Settings.from_env({**stack.access.runner_environ(), ...})

Everything listens on 127.0.0.1 on ports the OS picks, and `start` returns only when every part
answers. `run_foreground` is `udf-runner devstack`: the same stack until SIGINT or SIGTERM.
"""

from __future__ import annotations

import contextlib
import secrets
import signal
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from types import FrameType, TracebackType
from typing import Self, TextIO

from devstack import datasets
from devstack.access import (
    BUCKETS,
    ISSUER_URL,
    STACK_REGION,
    StackAccess,
    admin_client,
    preload,
)
from devstack.claims import Grant
from devstack.issuer_service import IssuerService
from devstack.minter import CredentialMinter
from devstack.query_service import QueryService
from devstack.s3_server import DEFAULT_STARTUP_TIMEOUT_SECONDS, EmbeddedS3
from devstack.sql_sandbox import SqlSandbox
from devstack.tokens import SigningKey, TokenIssuer, TokenVerifier

__all__ = ["LocalStack", "run_foreground", "stop_on_signals"]


@dataclass(frozen=True)
class LocalStack:
    """A running local stack; `close()` (or leaving the `with` block) stops all of it."""

    access: StackAccess
    issuer: TokenIssuer
    verifier: TokenVerifier
    _resources: contextlib.ExitStack

    @classmethod
    def start(cls, *, timeout: float = DEFAULT_STARTUP_TIMEOUT_SECONDS,
              base_port: int = 0, s3: EmbeddedS3 | None = None) -> LocalStack:
        """Start every part; return once all of them answer (StackError if one does not).
        With `base_port`, S3, the minter, the Query Service and the issuer listen on it and the
        next three ports (for tools that need fixed addresses); otherwise the OS picks. `s3` is
        an embedded S3 already spawned for this stack (`devstack.launch`); the stack owns it."""
        ports = [base_port + offset if base_port else 0 for offset in range(4)]
        resources = contextlib.ExitStack()
        try:
            # The slowest part (moto's imports): spawned first, unless it already was.
            s3 = resources.enter_context(s3 if s3 is not None else EmbeddedS3.spawn(ports[0]))
            key = SigningKey.generate()
            issuer, verifier = TokenIssuer(key), key.verifier()
            database = datasets.sample_database()
            query = resources.enter_context(
                QueryService(verifier, SqlSandbox(database, datasets.DATASETS), port=ports[2]))
            issuer_key = secrets.token_urlsafe(32)
            issuer_service = resources.enter_context(IssuerService(issuer, issuer_key,
                                                                   port=ports[3]))
            preload(("s3", "iam", "sts"))  # while moto is still starting
            endpoint = s3.ready(timeout)
            admin_s3 = admin_client("s3", endpoint.url, endpoint.admin)
            for bucket in BUCKETS:
                admin_s3.create_bucket(Bucket=bucket)
            minter = resources.enter_context(CredentialMinter(
                verifier,
                iam=admin_client("iam", endpoint.url, endpoint.admin),
                sts=admin_client("sts", endpoint.url, endpoint.admin),
                trusted_principal=endpoint.admin.arn, port=ports[1],
            ))
            access = StackAccess(
                minter_url=minter.url, query_url=query.url, s3_endpoint_url=endpoint.url,
                issuer_url=issuer_service.url, admin=endpoint.admin, issuer_key=issuer_key,
            )
            return cls(access, issuer, verifier, resources)
        except BaseException:
            resources.close()
            raise

    def issue_token(self, grant: Grant) -> str:
        """A capability token for `grant`, signed in process with the stack's key."""
        return self.issuer.issue(grant)

    def close(self) -> None:
        """Stop every part."""
        self._resources.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def run_foreground(out: TextIO = sys.stdout, *, base_port: int = 0) -> int:
    """`udf-runner devstack`: run the stack, print its environment, stop on SIGINT or SIGTERM."""
    stop = threading.Event()
    with stop_on_signals(stop), LocalStack.start(base_port=base_port) as stack:
        out.write(describe(stack.access))
        out.flush()
        stop.wait()
        out.write("udf-runner devstack: stopping\n")
        out.flush()
    return 0


def describe(access: StackAccess) -> str:
    """The environment of `access` as shell `export` lines, secrets set apart and labelled."""
    env = access.to_environ()
    runner = access.runner_environ()
    tools = {name: env[name] for name in (ISSUER_URL, STACK_REGION)}
    secret = {name: value for name, value in env.items() if name not in runner | tools}
    return "\n".join([
        "udf-runner devstack: S3, credential minter, Query Service and token issuer on loopback.",
        "Press Ctrl-C to stop. In another shell, paste these lines:",
        "",
        "# The runner's endpoints",
        *_exports(runner),
        "# Development tools",
        *_exports(tools),
        "# DEVELOPMENT-ONLY SECRETS of this local stack (admin of its embedded S3, key of its",
        "# token issuer). Valid nowhere else, gone when it stops; never give them to a bundle.",
        *_exports(secret),
        "",
        f"Buckets: {', '.join(BUCKETS)}. Datasets: {', '.join(sorted(datasets.DATASETS))}.",
        "",
    ])


def _exports(env: dict[str, str]) -> list[str]:
    return [f"export {name}={value}" for name, value in env.items()]


@contextlib.contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """Set `stop` on SIGINT or SIGTERM while inside the block."""
    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
