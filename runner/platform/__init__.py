"""The task's capability token and the platform services it opens: the credential minter and
the Query Service, both reached over HTTP with only that token (docs/contract.md), and S3, read
with the credentials the minter gave the task (a SigV4-signed GET, `s3` and `sigv4`)."""

from runner.platform._http import Reply, ServiceClient, ServiceUnavailable
from runner.platform.capability import Claims
from runner.platform.minter import MinterClient, ScopedCredentials
from runner.platform.query import INPUTS_KEY, TRUNCATED_MESSAGE, QueryClient
from runner.platform.s3 import BrokenStream, S3Error, S3Object, S3Reader

__all__ = [
    "INPUTS_KEY",
    "TRUNCATED_MESSAGE",
    "BrokenStream",
    "Claims",
    "MinterClient",
    "QueryClient",
    "Reply",
    "S3Error",
    "S3Object",
    "S3Reader",
    "ScopedCredentials",
    "ServiceClient",
    "ServiceUnavailable",
]
