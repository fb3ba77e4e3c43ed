"""The task's bundle: fetched from S3 with minted credentials (`fetch`), its SHA-256 checked
against the pin (`verify`), kept between tasks (`cache`), unpacked safely (`extract`, on the
strict zip reader `_zip`), and read for what it holds at its root (`layout`). The steps
themselves are `fetch.fetch` and `extract.extract`."""

from runner.bundle.cache import BundleCache, Lookup
from runner.bundle.extract import ExtractLimits, ExtractStats, limits_from
from runner.bundle.fetch import FetchedBundle, split_uri
from runner.bundle.layout import BOOTSTRAP, Layout
from runner.bundle.verify import sha256_file, verify

__all__ = [
    "BOOTSTRAP",
    "BundleCache",
    "ExtractLimits",
    "ExtractStats",
    "FetchedBundle",
    "Layout",
    "Lookup",
    "limits_from",
    "sha256_file",
    "split_uri",
    "verify",
]
