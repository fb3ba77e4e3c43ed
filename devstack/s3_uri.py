"""S3 URIs as the token and the minter compare them: a bucket and a key or key prefix.

A URI whose key is empty or ends with `/` is a prefix and covers every key that starts with it;
any other URI names exactly one object. Keys are compared as literal strings, as S3 does, so
names that other layers might normalise or treat as patterns are refused outright: empty or
`.`/`..` segments, and any character outside a conservative set (which excludes IAM's `*`, `?`
and `${...}` as well as spaces, `%`, `\\` and control characters).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_URI = re.compile(r"^s3://(?P<bucket>[^/]*)/(?P<key>.*)$", re.DOTALL)
# S3's rules for new bucket names (lowercase, digits, dots, hyphens; 3-63; no "..").
_BUCKET = re.compile(r"^(?!xn--)(?!.*\.\.)[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
# AWS's "safe" key characters minus `*`, plus `=` (hive partitions), `:` (task ids), `,@+~`.
_KEY = re.compile(r"^[A-Za-z0-9!_.'()/=:,@+~-]*$")
MAX_KEY_BYTES = 1024


@dataclass(frozen=True, order=True)
class S3Uri:
    """`s3://bucket/key`: one object, or every object under the key when it is a prefix."""

    bucket: str
    key: str

    @classmethod
    def parse(cls, text: str) -> S3Uri:
        """Parse and validate `s3://bucket/key`; raise ValueError saying what is wrong."""
        match = _URI.match(text)
        if match is None:
            raise ValueError(f"{text!r} is not an s3://bucket/key URI")
        bucket, key = match["bucket"], match["key"]
        if not _BUCKET.match(bucket):
            raise ValueError(f"{text!r}: {bucket!r} is not a valid bucket name")
        if len(key.encode()) > MAX_KEY_BYTES:
            raise ValueError(f"{text!r}: the key is longer than {MAX_KEY_BYTES} bytes")
        if not _KEY.match(key):
            raise ValueError(f"{text!r}: the key has characters outside [A-Za-z0-9!_.'()/=:,@+~-]")
        segments = key.split("/")
        if key.endswith("/"):
            segments.pop()
        if key and any(segment in ("", ".", "..") for segment in segments):
            raise ValueError(f"{text!r}: the key has an empty, '.' or '..' segment")
        return cls(bucket, key)

    @property
    def is_prefix(self) -> bool:
        """Whether this names every key under it (empty key, or one ending with `/`)."""
        return self.key == "" or self.key.endswith("/")

    def covers(self, other: S3Uri) -> bool:
        """Whether everything `other` names is inside what this URI names."""
        if other.bucket != self.bucket:
            return False
        if self.is_prefix:
            return other.key.startswith(self.key)
        return other.key == self.key

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"
