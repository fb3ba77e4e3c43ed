"""JSON over HTTP to a platform service, with the capability token and retries within a budget.

Both platform services (the credential minter and the Query Service) take
`Authorization: Bearer <token>` and nothing else. Throttling (429), server errors (5xx),
timeouts and malformed answers are retried with exponential backoff and full jitter, but never
past the task's time budget; everything else is returned for the caller to map to its error.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any

import urllib3

from runner.deadline import Deadline
from runner.steps import NEVER, Cancellation

__all__ = ["RETRYABLE_STATUSES", "Reply", "ServiceClient", "ServiceUnavailable", "backoff"]

#: Statuses worth another attempt: the service is throttling or failing, not refusing.
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
_BACKOFF_BASE = 0.1
_BACKOFF_CAP = 2.0


@dataclass(frozen=True)
class Reply:
    """A final (non-retryable) answer from the service."""

    status: int
    body: Any  # parsed JSON, or None when the body was not JSON

    def message(self) -> str:
        """The service's own error message, wherever its body put it."""
        body = self.body
        if isinstance(body, dict):
            error = body.get("error")
            if isinstance(error, dict) and isinstance(error.get("message"), str):
                return str(error["message"])
            for key in ("message", "errorMessage", "error"):
                if isinstance(body.get(key), str):
                    return str(body[key])
        return f"HTTP {self.status}"


class ServiceUnavailable(Exception):  # noqa: N818 - the callers map it to their own error types
    """Every attempt failed with a retryable problem, or the budget ran out."""

    def __init__(self, reason: str, attempts: int) -> None:
        super().__init__(f"{reason} (after {attempts} attempt{'s' if attempts != 1 else ''})")
        self.reason = reason
        self.attempts = attempts


class ServiceClient:
    """POSTs JSON to one service."""

    def __init__(self, base_url: str, token: str, *, max_attempts: int = 5,
                 request_timeout: float = 10.0, pool: urllib3.PoolManager | None = None) -> None:
        self._base = base_url.rstrip("/")
        self._headers = {
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "Accept": "application/json",
        }
        self._max_attempts = max_attempts
        self._request_timeout = request_timeout
        self._pool = pool or urllib3.PoolManager(retries=False)

    def __repr__(self) -> str:  # never show the token
        return f"ServiceClient({self._base!r})"

    def post(self, path: str, payload: dict[str, Any], deadline: Deadline,
             cancellation: Cancellation = NEVER) -> Reply:
        """POST `payload`; a 2xx or a non-retryable status is returned, the rest retried.
        A cancellation stops it before the next attempt or during a backoff."""
        body = json.dumps(payload).encode()
        reason = "no attempt fitted in the time budget"
        attempt = 0
        while attempt < self._max_attempts and deadline.remaining() > 0:
            cancellation.check()
            attempt += 1
            reply, reason, retry_after = self._attempt(path, body, deadline)
            if reply is not None:
                return reply
            pause = self._pause(attempt, retry_after)
            if attempt >= self._max_attempts or pause >= deadline.remaining():
                break
            cancellation.sleep(pause)  # backoff between attempts, cut short by a cancellation
        raise ServiceUnavailable(reason, attempt)

    def _attempt(self, path: str, body: bytes,
                 deadline: Deadline) -> tuple[Reply | None, str, float | None]:
        timeout = min(self._request_timeout, deadline.remaining())
        try:
            response = self._pool.request(
                "POST", self._base + path, body=body, headers=self._headers,
                timeout=urllib3.Timeout(connect=min(timeout, 2.0), read=timeout),
                redirect=False)
        except urllib3.exceptions.HTTPError as e:
            return None, f"{type(e).__name__}: {e}", None
        parsed = _parse(response.data)
        if response.status in RETRYABLE_STATUSES:
            retry_after = _retry_after(response.headers.get("Retry-After"))
            return None, f"HTTP {response.status}: {Reply(response.status, parsed).message()}", \
                retry_after
        if 200 <= response.status < 300 and parsed is None:
            return None, f"HTTP {response.status} with a body that is not JSON", None
        return Reply(response.status, parsed), "", None

    def _pause(self, attempt: int, retry_after: float | None) -> float:
        return retry_after if retry_after is not None else backoff(attempt)


def backoff(attempt: int) -> float:
    """The pause after failed attempt `attempt` (1, 2, ...): exponential, capped, with full
    jitter so that clients failing together do not come back together."""
    return random.uniform(0, min(_BACKOFF_CAP, _BACKOFF_BASE * 2 ** attempt))  # noqa: S311


def _parse(data: bytes) -> Any:
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None
