"""The IAM policy that scopes minted credentials to exactly the prefixes they were asked for.

Read: get the objects (any version) under each prefix, and list the bucket only with an
`s3:prefix` inside it. Write adds putting objects (multipart included) under the prefix; write
implies read there. Nothing else: no delete, no copy source outside, no bucket configuration.
A prefix URI (`.../`) covers `key*`; any other URI covers exactly one object.
"""

from __future__ import annotations

from typing import Any, Literal

from devstack.s3_uri import S3Uri

Access = Literal["read", "write"]

READ_ACTIONS = ("s3:GetObject", "s3:GetObjectVersion")
WRITE_ACTIONS = (
    *READ_ACTIONS,
    "s3:PutObject",
    "s3:AbortMultipartUpload",
    "s3:ListMultipartUploadParts",
)
LIST_ACTIONS = ("s3:ListBucket", "s3:ListBucketVersions")


def scope_policy(access: Access, locations: list[S3Uri]) -> dict[str, Any]:
    """An identity policy allowing `access` to `locations` and nothing else."""
    objects = sorted({_pattern(location) for location in locations})
    listing: dict[str, set[str]] = {}
    for location in locations:
        listing.setdefault(location.bucket, set()).add(_list_prefix(location))
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "Objects",
                "Effect": "Allow",
                "Action": list(WRITE_ACTIONS if access == "write" else READ_ACTIONS),
                "Resource": [f"arn:aws:s3:::{pattern}" for pattern in objects],
            },
            *(
                {
                    "Sid": f"List{index}",
                    "Effect": "Allow",
                    "Action": list(LIST_ACTIONS),
                    "Resource": f"arn:aws:s3:::{bucket}",
                    "Condition": {"StringLike": {"s3:prefix": sorted(prefixes)}},
                }
                for index, (bucket, prefixes) in enumerate(sorted(listing.items()))
            ),
        ],
    }


def _pattern(location: S3Uri) -> str:
    return f"{location.bucket}/{location.key}{'*' if location.is_prefix else ''}"


def _list_prefix(location: S3Uri) -> str:
    return f"{location.key}*" if location.is_prefix else location.key
