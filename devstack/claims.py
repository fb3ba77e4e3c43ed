"""What a capability token says (`contracts/capability-token.schema.json`), and what asks for one.

`Grant` is what the control plane (here: the development issuer) decides a task attempt may do;
`Claims` is that decision as signed into the token, which both services treat as authoritative.
"""

from __future__ import annotations

from typing import Annotated, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from devstack.s3_uri import S3Uri

#: The `aud` of every capability token: the platform's services, not any one of them.
AUDIENCE = "udf-platform"
#: Longest lifetime the development issuer signs (the real control plane sizes it per task).
MAX_TTL_SECONDS = 12 * 3600
DEFAULT_TTL_SECONDS = 3600

_STRICT = ConfigDict(extra="forbid", strict=True, frozen=True)


def _valid_uri(text: str) -> str:
    S3Uri.parse(text)
    return text


TaskId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")]
Attempt = Annotated[int, Field(ge=1, le=1000)]
Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
DatasetName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,62}$")]
PrefixUri = Annotated[str, AfterValidator(_valid_uri)]
PrefixList = Annotated[list[PrefixUri], Field(max_length=32)]


def subject(task_id: str, attempt: int) -> str:
    """The token's `sub` for one task attempt."""
    return f"task:{task_id}/{attempt}"


class Prefixes(BaseModel):
    """S3 locations the task may read, and those it may write (and therefore read)."""

    model_config = _STRICT

    read: PrefixList = []
    write: PrefixList = []

    def readable(self) -> list[S3Uri]:
        """Every location a read credential may cover: write implies read."""
        return [S3Uri.parse(uri) for uri in (*self.read, *self.write)]

    def writable(self) -> list[S3Uri]:
        """Every location a write credential may cover."""
        return [S3Uri.parse(uri) for uri in self.write]


class Grant(BaseModel):
    """What one task attempt may do; the issuer signs it into a token."""

    model_config = _STRICT

    task_id: TaskId
    attempt: Attempt
    bundle_sha256: Sha256
    datasets: Annotated[list[DatasetName], Field(max_length=64)] = []
    prefixes: Prefixes = Prefixes()
    ttl_seconds: Annotated[int, Field(ge=1, le=MAX_TTL_SECONDS)] = DEFAULT_TTL_SECONDS

    @classmethod
    def for_task(
        cls,
        *,
        task_id: str,
        attempt: int,
        bundle_uri: str,
        bundle_sha256: str,
        datasets: list[str] | None = None,
        output_prefix: str | None = None,
        input_prefixes: list[str] | None = None,
        ttl_seconds: int = DEFAULT_TTL_SECONDS,
    ) -> Grant:
        """The grant a task payload implies: read its bundle and inputs, write its outputs."""
        return cls(
            task_id=task_id,
            attempt=attempt,
            bundle_sha256=bundle_sha256,
            datasets=list(datasets or []),
            prefixes=Prefixes(
                read=[bundle_uri, *(input_prefixes or [])],
                write=[output_prefix] if output_prefix else [],
            ),
            ttl_seconds=ttl_seconds,
        )


class Claims(BaseModel):
    """The claims of a capability token, exactly as signed."""

    model_config = _STRICT

    iss: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    aud: Annotated[str, StringConstraints(pattern=f"^{AUDIENCE}$")]
    sub: str
    task_id: TaskId
    attempt: Attempt
    bundle_sha256: Sha256
    datasets: Annotated[list[DatasetName], Field(max_length=64)]
    prefixes: Prefixes
    iat: int
    nbf: int
    exp: int
    jti: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-"
                                                  r"[0-9a-f]{4}-[0-9a-f]{12}$")]

    @model_validator(mode="after")
    def _subject_names_the_attempt(self) -> Self:
        if self.sub != subject(self.task_id, self.attempt):
            raise ValueError(f"sub must be {subject(self.task_id, self.attempt)!r}")
        return self
