"""Amazon Resource Names.

Format: ``arn:partition:service:region:account-id:resource`` where *resource* may itself contain
``:`` and ``/`` (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference-arns.html).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass


@functools.lru_cache(maxsize=256)
def partition_for_region(region: str | None) -> str:
    """The partition a region belongs to (China and GovCloud have their own)."""
    if not region:
        return "aws"
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    if region.startswith("us-iso-"):
        return "aws-iso"
    if region.startswith("us-isob-"):
        return "aws-iso-b"
    return "aws"


@dataclass(frozen=True, slots=True)
class Arn:
    partition: str
    service: str
    region: str
    account: str
    resource: str

    @classmethod
    def parse(cls, text: str) -> Arn | None:
        """Parse *text*; ``None`` when it is not an ARN (never raises)."""
        if not text.startswith("arn:"):
            return None
        parts = text.split(":", 5)
        if len(parts) != 6 or not parts[1] or not parts[2]:
            return None
        return cls(parts[1], parts[2], parts[3], parts[4], parts[5])

    def __str__(self) -> str:
        return f"arn:{self.partition}:{self.service}:{self.region}:{self.account}:{self.resource}"


def is_s3_object_arn(resource: str) -> bool:
    """``arn:aws:s3:::bucket/key`` (or an object pattern such as ``bucket/folder/*``)."""
    return resource.startswith("arn:") and ":s3:::" in resource and "/" in resource
