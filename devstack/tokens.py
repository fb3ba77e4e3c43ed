"""Capability tokens: EdDSA (Ed25519) JWTs signed by the development issuer, verified by services.

The local stack generates one key at start. The issuer signs `Grant`s with it; the minter and the
Query Service hold only the public half (a `TokenVerifier`), in process. The runner never holds
either: it decodes claims without verification, only to fail fast.
"""

from __future__ import annotations

import secrets
import time
import uuid
from dataclasses import dataclass, field

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import ValidationError

from devstack._http import ApiRequest, unauthorized
from devstack.claims import AUDIENCE, Claims, Grant, subject
from runner.errors import TokenRejectedError

ALGORITHM = "EdDSA"
#: Development issuer's `iss`.
DEFAULT_ISSUER = "udf-devstack"
#: Clock skew tolerated between the issuer and a service (seconds).
LEEWAY_SECONDS = 5
_REQUIRED = ["iss", "aud", "sub", "iat", "nbf", "exp", "jti"]


@dataclass(frozen=True)
class SigningKey:
    """An Ed25519 key pair and the `kid` that names it in token headers."""

    private_key: Ed25519PrivateKey = field(repr=False)
    kid: str

    @classmethod
    def generate(cls) -> SigningKey:
        """A fresh key, named by a random `kid`."""
        return cls(Ed25519PrivateKey.generate(), f"devstack-{secrets.token_hex(8)}")

    def verifier(self, issuer: str = DEFAULT_ISSUER) -> TokenVerifier:
        """A verifier holding only the public half."""
        return TokenVerifier(self.private_key.public_key(), self.kid, issuer)


@dataclass(frozen=True)
class TokenIssuer:
    """Signs grants into capability tokens."""

    key: SigningKey
    issuer: str = DEFAULT_ISSUER

    def claims(self, grant: Grant, *, now: int | None = None) -> Claims:
        """The claims a token for `grant` carries, issued at `now` (default: the current time)."""
        issued = int(time.time()) if now is None else now
        return Claims(
            iss=self.issuer,
            aud=AUDIENCE,
            sub=subject(grant.task_id, grant.attempt),
            task_id=grant.task_id,
            attempt=grant.attempt,
            bundle_sha256=grant.bundle_sha256,
            datasets=grant.datasets,
            prefixes=grant.prefixes,
            iat=issued,
            nbf=issued,
            exp=issued + grant.ttl_seconds,
            jti=str(uuid.uuid4()),
        )

    def sign(self, claims: Claims) -> str:
        """A JWT carrying exactly `claims`."""
        return jwt.encode(
            claims.model_dump(mode="json"),
            self.key.private_key,
            algorithm=ALGORITHM,
            headers={"kid": self.key.kid, "typ": "JWT"},
        )

    def issue(self, grant: Grant) -> str:
        """A token for `grant`, valid from now for its TTL."""
        return self.sign(self.claims(grant))


@dataclass(frozen=True)
class TokenVerifier:
    """Checks a token's signature, time window, issuer and audience, and parses its claims."""

    public_key: Ed25519PublicKey
    kid: str
    issuer: str = DEFAULT_ISSUER

    def claims_of(self, request: ApiRequest) -> Claims:
        """The claims of `request`'s bearer token; a 401 when it has none or it does not
        verify (both services answer the same way)."""
        try:
            return self.verify(request.bearer())
        except TokenRejectedError as e:
            raise unauthorized(e.message) from e

    def verify(self, token: str) -> Claims:
        """The token's claims; raise TokenRejectedError (saying why, never echoing it) otherwise."""
        try:
            header = jwt.get_unverified_header(token)
            if header.get("kid") != self.kid:
                raise TokenRejectedError("token is not signed by this platform's key (unknown kid)")
            payload = jwt.decode(
                token,
                self.public_key,
                algorithms=[ALGORITHM],
                audience=AUDIENCE,
                issuer=self.issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": _REQUIRED},
            )
        except jwt.ExpiredSignatureError as e:
            raise TokenRejectedError("token has expired") from e
        except jwt.ImmatureSignatureError as e:
            raise TokenRejectedError("token is not valid yet") from e
        except jwt.InvalidSignatureError as e:
            raise TokenRejectedError("token signature does not verify") from e
        except jwt.PyJWTError as e:
            raise TokenRejectedError(f"token is invalid: {e}") from e
        try:
            return Claims.model_validate(payload)
        except ValidationError as e:
            raise TokenRejectedError(f"token claims do not match the contract: {_first(e)}") from e


def _first(error: ValidationError) -> str:
    err = error.errors()[0]
    return f"{'.'.join(map(str, err['loc']))}: {err['msg']}"
