"""The development token issuer: `POST /v1/tokens` (`contracts/token-issuer.openapi.yaml`).

It stands in for the control plane, which is what really decides a task's scope; so it answers
only a caller holding the stack's admin key. A bundle, which can reach loopback too, must not be
able to sign itself a wider token.
"""

from __future__ import annotations

import hmac

from pydantic import ValidationError

from devstack._http import (
    DEFAULT_MAX_IN_FLIGHT,
    ApiRequest,
    JsonApiServer,
    JsonObject,
    invalid_body,
    unauthorized,
)
from devstack.claims import Grant
from devstack.tokens import TokenIssuer

TOKENS_PATH = "/v1/tokens"


class IssuerService(JsonApiServer):
    """Signs a token for the grant in the body, for callers presenting the admin key."""

    def __init__(self, issuer: TokenIssuer, admin_key: str, *, port: int = 0,
                 max_in_flight: int = DEFAULT_MAX_IN_FLIGHT) -> None:
        self._issuer = issuer
        self._admin_key = admin_key.encode()
        super().__init__("token-issuer", {TOKENS_PATH: self._issue}, port=port,
                         max_in_flight=max_in_flight)

    def _issue(self, request: ApiRequest) -> JsonObject:
        if not hmac.compare_digest(request.bearer().encode(), self._admin_key):
            raise unauthorized("the token issuer needs the local stack's admin key")
        try:
            grant = Grant.model_validate(request.body)
        except ValidationError as e:
            raise invalid_body(e) from e
        claims = self._issuer.claims(grant)
        return {"token": self._issuer.sign(claims), "claims": claims.model_dump(mode="json")}
