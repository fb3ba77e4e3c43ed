"""The task's capability token and the platform services it opens: the credential minter and
the Query Service, both reached over HTTP with only that token (docs/contract.md)."""

from runner.platform._http import Reply, ServiceClient, ServiceUnavailable
from runner.platform.capability import Claims
from runner.platform.minter import MinterClient, ScopedCredentials
from runner.platform.query import INPUTS_KEY, TRUNCATED_MESSAGE, QueryClient

__all__ = [
    "INPUTS_KEY",
    "TRUNCATED_MESSAGE",
    "Claims",
    "MinterClient",
    "QueryClient",
    "Reply",
    "ScopedCredentials",
    "ServiceClient",
    "ServiceUnavailable",
]
