"""CloudTrail trail buckets on S3: ``s3://BUCKET[/PREFIX]`` as a trail source.

A trail delivers its log files under ``[PREFIX/]AWSLogs/ACCOUNT/CloudTrail/REGION/YYYY/MM/DD/``;
an organization trail under ``[PREFIX/]AWSLogs/o-ORGID/ACCOUNT/CloudTrail/REGION/YYYY/MM/DD/``
(https://docs.aws.amazon.com/awscloudtrail/latest/userguide/get-and-view-cloudtrail-log-files.html,
https://docs.aws.amazon.com/awscloudtrail/latest/userguide/creating-trail-organization.html).
Digest files (``CloudTrail-Digest/``) and Insights (``CloudTrail-Insight/``) sit beside
``CloudTrail/`` and are not read.

The bucket is never listed whole: accounts, regions and date folders are discovered level by
level with delimiter listings (``ListObjectsV2`` with ``Delimiter="/"``, which returns the
folders under a prefix as ``CommonPrefixes``:
https://docs.aws.amazon.com/AmazonS3/latest/userguide/using-prefixes.html), pruned by
``--account``, ``--region`` and the date range, and only the day folders left are listed in full.

A day folder holds the files *delivered* that UTC day, and "a log file delivered at a specific
time can contain records written at any point before that time"
(https://docs.aws.amazon.com/awscloudtrail/latest/userguide/cloudtrail-log-file-examples.html):
the range therefore reads the folders from SINCE to the day after UNTIL, so that the events of
UNTIL's last minutes, delivered after midnight, are not missed. Records are not filtered by time
(a store's queries take ``--since``/``--until``).

Objects encrypted with SSE-KMS are decrypted by S3 for a caller allowed ``kms:Decrypt`` on the
key (https://docs.aws.amazon.com/AmazonS3/latest/userguide/UsingKMSEncryption.html): nothing to
do here but name that permission when it is missing.
"""

from __future__ import annotations

import calendar
import os
import re
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import Any

from iamtrim.aws import Aws, AwsConfig
from iamtrim.errors import InputError
from iamtrim.sources.files import SUFFIXES, size_text
from iamtrim.sources.objects import ObjectRef

__all__ = ["S3Trail", "is_s3_uri", "parse_s3_uri"]

_ACCOUNT = re.compile(r"^\d{12}$")
# Organization ids: "o-" and 10 to 32 lowercase letters or digits.
# https://docs.aws.amazon.com/organizations/latest/APIReference/API_Organization.html
_ORG = re.compile(r"^o-[a-z0-9]{10,32}$")
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d+$")
# Bucket names: 3-63 characters of lowercase letters, digits, dots and hyphens.
# https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
LIST_THREADS = 8  # day folders listed at once (a listing is one round trip per 1,000 keys)
# Objects each ingest worker downloads ahead of the one it decodes: a GetObject is mostly waiting
# (a round trip, then the bytes), so a few in flight keep a worker busy; bounded for memory.
READ_AHEAD = 4


def is_s3_uri(text: str) -> bool:
    return text.startswith("s3://")


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` → ("bucket", "some/prefix/") (a prefix names a folder)."""
    if not is_s3_uri(uri):
        raise InputError(f"{uri}: not an s3:// URI")
    bucket, _, prefix = uri[len("s3://") :].partition("/")
    if not _BUCKET.match(bucket):
        raise InputError(f"{uri}: not a valid S3 bucket name: {bucket!r}")
    prefix = prefix.strip("/")
    return bucket, prefix + "/" if prefix else ""


@dataclass(frozen=True, slots=True)
class _Walk:
    """Where a folder is in the trail layout, and what is known of it."""

    prefix: str  # the folder's key, ending in "/"
    level: str  # what its children are: owner, account, service, region, year, month, day, files


# The levels below AWSLogs/, in order (an organization trail adds one: "owner" is an account or
# an organization id; under an organization come its accounts).
_NEXT = {"owner": "service", "account": "service", "service": "region", "region": "year"}
_NEXT |= {"year": "month", "month": "day", "day": "files"}


class S3Trail:
    """A CloudTrail bucket (or a prefix of it) as a :class:`~iamtrim.sources.objects.TrailSource`.

    Holds only configuration: each process (the ingest's workers are forked) makes its own
    session and clients on first use, since a client's connection pool must not be shared
    across a fork.
    """

    read_ahead = READ_AHEAD  # ingest's workers read this many objects ahead (on threads)

    def __init__(
        self,
        uri: str,
        config: AwsConfig | None = None,
        *,
        accounts: Sequence[str] = (),
        regions: Sequence[str] = (),
        since: date | None = None,
        until: date | None = None,
        list_threads: int = LIST_THREADS,
    ) -> None:
        self.uri = uri.rstrip("/")
        self.bucket, self.prefix = parse_s3_uri(uri)
        self.config = config or AwsConfig()
        for account in accounts:
            if not _ACCOUNT.match(account):
                raise InputError(f"--account {account!r}: an AWS account id is 12 digits")
        self.accounts = frozenset(accounts)
        self.regions = frozenset(regions)
        if since and until and since > until:
            raise InputError(f"--since {since} is after --until {until}")
        self.since = since
        self.until = until
        self.list_threads = max(1, list_threads)
        self._aws: Aws | None = None
        self._pid = 0
        self._lock = threading.Lock()

    # A source crosses into worker processes: configuration only (see the class docstring).
    def __getstate__(self) -> dict[str, Any]:
        state = {k: getattr(self, k) for k in _STATE}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            setattr(self, key, value)
        self._aws, self._pid = None, 0
        self._lock = threading.Lock()

    def aws(self) -> Aws:
        """This process's session and S3 client (made once, under a lock: a boto3 session is
        not safe to use from several threads, its clients are)."""
        with self._lock:
            if self._aws is None or self._pid != os.getpid():
                aws = Aws(self.config)
                aws.client("s3")
                self._aws, self._pid = aws, os.getpid()
            return self._aws

    # -- listing ------------------------------------------------------------------------------------

    def list_objects(self) -> Iterator[ObjectRef]:
        start = self._start()
        if start is None:
            yield ObjectRef(self.uri, error=self._nothing("no AWSLogs/ folder of a CloudTrail trail"))
            return
        days = self._day_folders(start)
        if not days:
            yield ObjectRef(self.uri, error=self._nothing("no log folder"))
            return
        with ThreadPoolExecutor(max_workers=min(self.list_threads, len(days))) as pool:
            listed = list(pool.map(self._files_in, days))
        found = sorted((ref for refs in listed for ref in refs), key=lambda r: r.uri)
        if not found:
            yield ObjectRef(self.uri, error=self._nothing("no log file"))
        yield from found

    def _nothing(self, what: str) -> str:
        where = []
        if self.accounts:
            where.append("account " + ", ".join(sorted(self.accounts)))
        if self.regions:
            where.append("region " + ", ".join(sorted(self.regions)))
        if self.since or self.until:
            where.append(f"days {self.since or '…'} to {self.until or '…'}")
        return f"{what} under this prefix" + (f" for {'; '.join(where)}" if where else "")

    def _start(self) -> _Walk | None:
        """Where the walk starts: the user's prefix placed in the trail layout."""
        parts = self.prefix.split("/")[:-1] if self.prefix else []
        if "AWSLogs" not in parts:
            awslogs = self.prefix + "AWSLogs/"
            return _Walk(awslogs, "owner") if self._folders(awslogs, probe=True) else None
        at = len(parts) - 1 - parts[::-1].index("AWSLogs")
        walk = _Walk("/".join(parts[: at + 1]) + "/", "owner")
        for name in parts[at + 1 :]:
            level = self._level_of(walk, name)
            if level is None or not self._keep(walk, name):
                return _Walk(self.prefix, "none")  # the prefix is outside the filters
            walk = _Walk(walk.prefix + name + "/", level)
        return walk

    def _level_of(self, walk: _Walk, name: str) -> str | None:
        """The level of the children of folder *name* found at *walk*'s level (None: not a
        folder of the layout)."""
        if walk.level == "owner":
            if _ORG.match(name):
                return "account"
            return "service" if _ACCOUNT.match(name) else None
        if walk.level == "account":
            return "service" if _ACCOUNT.match(name) else None
        if walk.level == "service":
            return "region" if name == "CloudTrail" else None
        return _NEXT.get(walk.level)

    def _keep(self, walk: _Walk, name: str) -> bool:
        """Whether folder *name* at *walk*'s level is within --account, --region and the dates."""
        level = walk.level
        if level in ("owner", "account") and _ACCOUNT.match(name):
            return not self.accounts or name in self.accounts
        if level == "region":
            return bool(_REGION.match(name)) and (not self.regions or name in self.regions)
        if level in ("year", "month", "day"):
            return self._in_range(walk.prefix, level, name)
        return True

    def _in_range(self, prefix: str, level: str, name: str) -> bool:
        """A year, month or day folder whose days meet [since, until + 1 day]."""
        if not name.isdigit():
            return False
        upper = prefix.rstrip("/").split("/")
        try:
            if level == "year":
                first, last = date(int(name), 1, 1), date(int(name), 12, 31)
            elif level == "month":
                year, month = int(upper[-1]), int(name)
                first = date(year, month, 1)
                last = date(year, month, calendar.monthrange(year, month)[1])
            else:
                first = last = date(int(upper[-2]), int(upper[-1]), int(name))
        except ValueError:  # not a date (month 13, day 32)
            return False
        if self.since and last < self.since:
            return False
        return not (self.until and first > self.until + timedelta(days=1))

    def _day_folders(self, start: _Walk) -> list[str]:
        """The day folders under *start* within the filters, walked level by level."""
        if start.level == "none":
            return []
        if start.level == "files":
            return [start.prefix]
        days: list[str] = []
        stack = [start]
        while stack:
            walk = stack.pop()
            for name in self._folders(walk.prefix):
                level = self._level_of(walk, name)
                if level is None or not self._keep(walk, name):
                    continue
                child = _Walk(walk.prefix + name + "/", level)
                if level == "files":
                    days.append(child.prefix)
                else:
                    stack.append(child)
        return sorted(days)

    def _folders(self, prefix: str, *, probe: bool = False) -> list[str]:
        """The names of the folders directly under *prefix* (a delimiter listing); with *probe*,
        one key is enough: anything under *prefix* gives a non-empty list."""
        params: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix, "Delimiter": "/"}
        if probe:
            page = self.aws().call("s3", "ListObjectsV2", resource=self._arn(), MaxKeys=1, **params)
            return ["?"] if page and (page.get("CommonPrefixes") or page.get("Contents")) else []
        names: list[str] = []
        for page in self.aws().paginate("s3", "ListObjectsV2", resource=self._arn(), **params):
            names.extend(p["Prefix"][len(prefix) :].rstrip("/") for p in page.get("CommonPrefixes", ()))
        return names

    def _files_in(self, prefix: str) -> list[ObjectRef]:
        """The trail files of one day folder (a listing without delimiter: files only)."""
        refs: list[ObjectRef] = []
        for page in self.aws().paginate(
            "s3", "ListObjectsV2", resource=self._arn(), Bucket=self.bucket, Prefix=prefix
        ):
            for obj in page.get("Contents", ()):
                key = obj["Key"]
                name = key.rsplit("/", 1)[-1]
                if not name.lower().endswith(SUFFIXES) or name.startswith("."):
                    continue
                refs.append(
                    ObjectRef(
                        f"s3://{self.bucket}/{key}",
                        int(obj.get("Size", 0)),
                        _ns(obj.get("LastModified")),
                        str(obj.get("ETag", "")),
                    )
                )
        return refs

    def _arn(self, key: str = "") -> str:
        return f"arn:aws:s3:::{self.bucket}" + (f"/{key}" if key else "")

    # -- reading ------------------------------------------------------------------------------------

    def read(self, ref: ObjectRef, max_bytes: int) -> tuple[bytes, str, ObjectRef]:
        if ref.size > max_bytes:
            return b"", f"larger than the {size_text(max_bytes)} limit for one file: not read", ref
        key = ref.uri[len(f"s3://{self.bucket}/") :]
        aws = self.aws()
        resource = self._arn(key)
        response = aws.call("s3", "GetObject", resource=resource, missing=_GONE, Bucket=self.bucket, Key=key)
        if response is None:  # deleted since it was listed (a lifecycle rule): that file's problem
            return b"", "deleted since it was listed (NoSuchKey): not read", ref
        with aws.errors("s3", "GetObject", resource):
            body = response["Body"]
            try:
                raw: bytes = body.read(max_bytes + 1)
            finally:
                body.close()
        if len(raw) > max_bytes:
            return b"", f"larger than the {size_text(max_bytes)} limit for one file: not read", ref
        etag = str(response.get("ETag", ""))
        if etag and etag != ref.etag:
            # Replaced since it was listed: stored with the identity of the bytes read. (The
            # listing's LastModified is kept otherwise: GetObject gives it to the second only.)
            ref = replace(ref, size=len(raw), mtime_ns=_ns(response.get("LastModified")), etag=etag)
        return raw, "", ref


_GONE = frozenset({"NoSuchKey"})
_STATE = ("uri", "bucket", "prefix", "config", "accounts", "regions", "since", "until", "list_threads")


def _ns(when: Any) -> int:
    """A listing's LastModified (a datetime) in nanoseconds since the epoch."""
    if not isinstance(when, datetime):
        return 0
    return calendar.timegm(when.utctimetuple()) * 1_000_000_000 + when.microsecond * 1000
