"""What a task wrote under its output prefix, listed or copied out of the local stack's S3.

The embedded S3 lives as long as the stack, often only as long as one `udf-runner invoke`:
`--outputs DIR` copies the objects out before it goes. The keys come from the bundle, so a key
that would land outside DIR (a `..` or empty segment) is skipped, never followed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from devstack.access import StackAccess
from devstack.s3_uri import S3Uri


@dataclass(frozen=True)
class OutputObject:
    """One object under the prefix: its key below the prefix and its size."""

    name: str
    size: int


@dataclass
class Saved:
    """What `save` wrote, and the keys it would not write."""

    files: list[Path] = field(default_factory=list)
    bytes: int = 0
    skipped: list[str] = field(default_factory=list)


def list_outputs(access: StackAccess, prefix: str) -> list[OutputObject]:
    """Every object under `prefix` (`s3://bucket/key/`), by name below it."""
    location = S3Uri.parse(prefix)
    return [OutputObject(key[len(location.key):], size)
            for key, size in access.list_objects(location.bucket, location.key)]


def save(access: StackAccess, prefix: str, dest: Path) -> Saved:
    """Copy every object under `prefix` into `dest`, its key below the prefix as its path."""
    location = S3Uri.parse(prefix)
    s3 = access.client("s3")
    saved = Saved()
    for item in list_outputs(access, prefix):
        target = _target(dest, item.name)
        if target is None:
            saved.skipped.append(item.name)
            continue
        body = s3.get_object(Bucket=location.bucket, Key=location.key + item.name)["Body"]
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(body.read())
        except OSError:  # `a` beside `a/b`: a key cannot be both a file and a folder here
            saved.skipped.append(item.name)
            continue
        saved.files.append(target)
        saved.bytes += item.size
    return saved


def _target(dest: Path, name: str) -> Path | None:
    """Where `name` goes below `dest`, or None when it cannot go there safely."""
    segments = name.split("/")
    if any(segment in ("", ".", "..") or "\x00" in segment for segment in segments):
        return None
    return dest.joinpath(*PurePosixPath(name).parts)
