"""Client of the credential minter: short-lived S3 credentials for the task's prefixes.

Contract (docs/contract.md#minter, contracts/credential-minter.openapi.yaml):
`POST {minter}/v1/credentials` `{"access": "read"|"write", "prefixes": [...]}` with the task's
capability token as bearer → `{"access_key_id", "secret_access_key", "session_token",
"expiration"}`; 401 bad token, 403 prefix outside the token, 429/5xx retried.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from runner.deadline import Deadline
from runner.errors import AccessDeniedError, CredentialsUnavailableError, TokenRejectedError
from runner.platform._http import ServiceClient, ServiceUnavailable
from runner.steps import NEVER, Cancellation

__all__ = ["Access", "MinterClient", "ScopedCredentials"]

Access = Literal["read", "write"]


@dataclass(frozen=True)
class ScopedCredentials:
    """Short-lived S3 credentials minted for this task's prefixes."""

    access_key_id: str
    secret_access_key: str
    session_token: str
    expiration: str = ""

    def __repr__(self) -> str:
        return f"ScopedCredentials(access_key_id={self.access_key_id!r}, ...)"


class MinterClient:
    """Mints credentials with one task's token."""

    def __init__(self, client: ServiceClient) -> None:
        self._client = client

    def mint(self, access: Access, prefixes: list[str], deadline: Deadline,
             cancellation: Cancellation = NEVER) -> ScopedCredentials:
        """Credentials for `access` to `prefixes`, or the error the result reports."""
        try:
            reply = self._client.post("/v1/credentials",
                                      {"access": access, "prefixes": prefixes}, deadline,
                                      cancellation)
        except ServiceUnavailable as e:
            raise CredentialsUnavailableError(f"credential minter unavailable: {e}") from e
        if reply.status == 401:
            raise TokenRejectedError(f"credential minter rejected the token: {reply.message()}")
        if reply.status == 403:
            raise AccessDeniedError(
                f"credential minter refused {access} access to {', '.join(prefixes)}: "
                f"{reply.message()}")
        body = reply.body
        if reply.status != 200 or not isinstance(body, dict):
            raise CredentialsUnavailableError(
                f"credential minter answered HTTP {reply.status}: {reply.message()}")
        try:
            return ScopedCredentials(
                access_key_id=str(body["access_key_id"]),
                secret_access_key=str(body["secret_access_key"]),
                session_token=str(body["session_token"]),
                expiration=str(body.get("expiration", "")),
            )
        except KeyError as e:
            raise CredentialsUnavailableError(
                f"credential minter's answer lacks {e.args[0]}") from None
