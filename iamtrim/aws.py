"""boto3 sessions and clients: the one place iamtrim talks to AWS (read-only).

* Credentials come from botocore's default chain (environment, shared config and credentials
  files, SSO, container and instance roles), or a named ``--profile``; ``--role-arn`` then assumes
  a role with STS ``AssumeRole`` and every client uses its temporary credentials.
  https://boto3.amazonaws.com/v1/documentation/api/latest/guide/credentials.html
* Every client retries in botocore's *adaptive* mode: standard retries (exponential backoff with
  jitter on throttling and transient errors) plus a client-side rate limiter that slows down when
  AWS throttles. https://boto3.amazonaws.com/v1/documentation/api/latest/guide/retries.html
* Only the calls in :data:`CALLS` can be made (each with the IAM action it needs); anything else
  is refused before a request is signed. ``docs/permissions.md`` lists the same calls, and a test
  records every call made during the test session and fails on one that is not listed there.
* botocore errors are wrapped here, where they enter, into :class:`~iamtrim.errors.AwsError`
  with one line that says what to do (no credentials, expired credentials, AccessDenied naming
  the missing IAM action, a missing bucket, throttling beyond the retries).

Raw responses stay inside this module and ``sources/``; callers above get model values.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import boto3
import botocore.config
import botocore.exceptions

from iamtrim.errors import AwsError

__all__ = [
    "CALLS",
    "Aws",
    "AwsConfig",
    "CallObserver",
    "observe_calls",
    "observe_requests",
]

# (service, operation) → the IAM action that authorizes it. Every entry is read-only except
# sts:AssumeRole, which changes nothing in the account (it returns temporary credentials).
# IAM action names per API: https://docs.aws.amazon.com/service-authorization/latest/reference/
CALLS: Mapping[tuple[str, str], str] = {
    ("sts", "AssumeRole"): "sts:AssumeRole",
    ("iam", "GetAccountAuthorizationDetails"): "iam:GetAccountAuthorizationDetails",
    ("iam", "ListRoles"): "iam:ListRoles",
    ("iam", "ListUsers"): "iam:ListUsers",
    ("iam", "GetRole"): "iam:GetRole",
    ("iam", "GetUser"): "iam:GetUser",
    # Starts a report job; AWS classifies it as a Read action (it changes nothing in the account).
    ("iam", "GenerateServiceLastAccessedDetails"): "iam:GenerateServiceLastAccessedDetails",
    ("iam", "GetServiceLastAccessedDetails"): "iam:GetServiceLastAccessedDetails",
    ("sts", "GetCallerIdentity"): "sts:GetCallerIdentity",
    ("cloudtrail", "LookupEvents"): "cloudtrail:LookupEvents",
    ("ec2", "DescribeRegions"): "ec2:DescribeRegions",
    ("s3", "GetBucketPolicy"): "s3:GetBucketPolicy",
    # Trail buckets (ingest s3://...): ListObjectsV2 is authorized by s3:ListBucket (on the bucket,
    # narrowed with the s3:prefix condition key), GetObject by s3:GetObject, and S3 decrypts an
    # SSE-KMS object with the caller's kms:Decrypt on its key.
    # https://docs.aws.amazon.com/AmazonS3/latest/API/API_ListObjectsV2.html
    ("s3", "ListObjectsV2"): "s3:ListBucket",
    ("s3", "GetObject"): "s3:GetObject",
    ("kms", "DescribeKey"): "kms:DescribeKey",
    ("kms", "GetKeyPolicy"): "kms:GetKeyPolicy",
}

# Error codes, by what they mean for the user. AWS uses several codes per meaning across services.
# https://docs.aws.amazon.com/IAM/latest/UserGuide/troubleshoot_access-denied.html
_DENIED = frozenset(
    {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "AuthorizationError", "Forbidden"}
)
# https://docs.aws.amazon.com/STS/latest/APIReference/CommonErrors.html
_BAD_CREDENTIALS = frozenset(
    {
        "ExpiredToken",
        "ExpiredTokenException",
        "RequestExpired",
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "InvalidToken",
    }
)
_EXPIRED = frozenset({"ExpiredToken", "ExpiredTokenException", "RequestExpired"})
# https://docs.aws.amazon.com/sdkref/latest/guide/feature-retry-behavior.html (throttling codes)
_THROTTLED = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "RequestThrottled",
        "RequestThrottledException",
        "SlowDown",
        "ProvisionedThroughputExceededException",
        "BandwidthLimitExceeded",
        "LimitExceededException",
    }
)
# "User: arn:... is not authorized to perform: iam:GetRole on resource: ..." — most services name
# the action they refused in the message; when one does not, the action comes from CALLS.
_ACTION_IN_MESSAGE = re.compile(r"not authorized to perform:? ([a-z0-9-]+:[A-Za-z0-9]+)")

MAX_ATTEMPTS = 10  # botocore's adaptive mode: first call + 9 retries with backoff

CallObserver = Callable[[str, str], None]  # (IAM service prefix of the API, operation name)
_observers: list[CallObserver] = []
# (service, operation, the call's parameters): what a request asked for, e.g. S3's Bucket and Prefix.
RequestObserver = Callable[[str, str, Mapping[str, Any]], None]
_request_observers: list[RequestObserver] = []


def observe_calls(observer: CallObserver) -> Callable[[], None]:
    """Call *observer* before every API request a session made here sends (botocore's
    ``before-call`` event); return a function that stops observing. Tests use it to hold the code
    to the calls ``docs/permissions.md`` lists."""
    _observers.append(observer)
    return lambda: _observers.remove(observer)


def observe_requests(observer: RequestObserver) -> Callable[[], None]:
    """Like :func:`observe_calls`, with each call's parameters (botocore's
    ``before-parameter-build`` event): tests replay iamtrim's own requests through the IAM oracle
    against the policy docs/sources.md gives its role. Returns a function that stops observing."""
    _request_observers.append(observer)
    return lambda: _request_observers.remove(observer)


def _before_parameters(params: Mapping[str, Any], model: Any, **_: Any) -> None:
    service = model.service_model.service_name
    for observer in tuple(_request_observers):
        observer(service, model.name, dict(params))


def _before_call(model: Any, **_: Any) -> None:
    service = model.service_model.service_name
    for observer in tuple(_observers):
        observer(service, model.name)


@dataclass(frozen=True, slots=True)
class AwsConfig:
    """How to reach the account: the CLI's ``--profile``, ``--region``, ``--endpoint-url`` and
    ``--role-arn``. Empty means botocore's default."""

    profile: str = ""
    region: str = ""
    endpoint_url: str = ""
    role_arn: str = ""
    session_name: str = "iamtrim"


# Global services and the region their endpoint lives in when no region is configured.
_DEFAULT_REGION = "us-east-1"


class Aws:
    """A session (assumed into ``role_arn`` when given) and its clients, made on first use."""

    def __init__(self, config: AwsConfig = AwsConfig()) -> None:
        self.config = config
        self._session: Any = None
        self._clients: dict[tuple[str, str], Any] = {}

    # -- sessions and clients -------------------------------------------------------------------

    def _new_session(self, **kwargs: Any) -> Any:
        session = boto3.Session(**kwargs)
        session.events.register("before-call", _before_call)
        session.events.register("before-parameter-build", _before_parameters)
        return session

    def _botocore_config(self) -> botocore.config.Config:
        return botocore.config.Config(retries={"mode": "adaptive", "max_attempts": MAX_ATTEMPTS})

    def session(self) -> Any:
        if self._session is not None:
            return self._session
        cfg = self.config
        with _translated("sts", "AssumeRole", cfg.role_arn):
            base = self._new_session(profile_name=cfg.profile or None, region_name=cfg.region or None)
            if not cfg.role_arn:
                self._session = base
                return base
            sts = base.client(
                "sts",
                region_name=cfg.region or base.region_name or _DEFAULT_REGION,
                endpoint_url=cfg.endpoint_url or None,
                config=self._botocore_config(),
            )
            creds = sts.assume_role(RoleArn=cfg.role_arn, RoleSessionName=cfg.session_name)["Credentials"]
        self._session = self._new_session(
            aws_access_key_id=creds["AccessKeyId"],
            aws_secret_access_key=creds["SecretAccessKey"],
            aws_session_token=creds["SessionToken"],
            region_name=cfg.region or base.region_name or None,
        )
        return self._session

    def region(self) -> str:
        return str(self.config.region or self.session().region_name or _DEFAULT_REGION)

    def client(self, service: str, region: str = "") -> Any:
        region = region or self.region()
        key = (service, region)
        if key not in self._clients:
            with _translated(service, "", ""):
                self._clients[key] = self.session().client(
                    service,
                    region_name=region,
                    endpoint_url=self.config.endpoint_url or None,
                    config=self._botocore_config(),
                )
        return self._clients[key]

    # -- calls ------------------------------------------------------------------------------------

    def call(
        self,
        service: str,
        operation: str,
        *,
        region: str = "",
        missing: frozenset[str] = frozenset(),
        resource: str = "",
        **params: Any,
    ) -> Mapping[str, Any] | None:
        """One API call. An error code in *missing* (e.g. ``NoSuchBucketPolicy``) returns None:
        the thing is absent, which the caller can live with. Anything else fails as AwsError."""
        method = _method(service, operation)
        client = self.client(service, region)
        with _translated(service, operation, resource, missing):
            result: Mapping[str, Any] = getattr(client, method)(**params)
            return result
        return None  # the error code was one of *missing*

    def errors(self, service: str, operation: str, resource: str = "") -> AbstractContextManager[None]:
        """A block whose botocore errors become one-line AwsErrors, as in :meth:`call` (for the
        work done on a response after the call returned: reading a streamed body)."""
        return _translated(service, operation, resource)

    def paginate(
        self, service: str, operation: str, *, region: str = "", resource: str = "", **params: Any
    ) -> Iterator[Mapping[str, Any]]:
        """Every page of a paginated call, in order."""
        method = _method(service, operation)
        client = self.client(service, region)
        with _translated(service, operation, resource):
            yield from client.get_paginator(method).paginate(**params)


def _method(service: str, operation: str) -> str:
    if (service, operation) not in CALLS:
        # A programming error, caught by tests: iamtrim only makes the read-only calls listed.
        raise AwsError(f"iamtrim does not call {service}:{operation} (not in its read-only list)")
    return re.sub(r"(?<!^)(?=[A-Z])", "_", operation).lower()


class _translated:
    """Turns botocore exceptions raised inside the block into one-line AwsErrors; swallows a
    ClientError whose code is in *missing* (the block then ends without a result)."""

    def __init__(self, service: str, operation: str, resource: str, missing: frozenset[str] = frozenset()):
        self.service, self.operation, self.resource, self.missing = service, operation, resource, missing

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> bool:
        if exc is None or isinstance(exc, AwsError):
            return False
        if isinstance(exc, botocore.exceptions.ClientError) and _code(exc) in self.missing:
            return True
        err = translate(exc, self.service, self.operation, self.resource)
        if err is None:
            return False
        raise err from None


def _code(exc: botocore.exceptions.ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def translate(exc: BaseException, service: str, operation: str, resource: str = "") -> AwsError | None:
    """The AwsError for a botocore/boto3 exception, or None for anything else."""
    action = CALLS.get((service, operation), f"{service}:{operation}" if operation else "")
    what = f"{action} on {resource}" if resource else action
    if isinstance(exc, botocore.exceptions.NoCredentialsError):
        return AwsError(
            "no AWS credentials found (environment, ~/.aws/credentials, SSO, instance role): "
            "set AWS_PROFILE or pass --profile"
        )
    if isinstance(exc, botocore.exceptions.ProfileNotFound):
        return AwsError(f"AWS profile not found: {exc.kwargs.get('profile', '')}")
    if isinstance(exc, botocore.exceptions.TokenRetrievalError | botocore.exceptions.SSOTokenLoadError):
        return AwsError(f"AWS credentials could not be refreshed ({exc}): log in again (aws sso login)")
    if isinstance(exc, botocore.exceptions.ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        message = str(error.get("Message", "")).splitlines()[0] if error.get("Message") else ""
        if code in _DENIED:
            m = _ACTION_IN_MESSAGE.search(message)
            needed = m.group(1) if m else action
            where = f" on {resource}" if resource else ""
            if needed != action and action:
                # Another action than the call's own, refused on the caller's behalf: S3 reading
                # an SSE-KMS object needs the caller's kms:Decrypt on the key.
                where = f" (for {action}{where})"
            return AwsError(f"access denied: iamtrim needs {needed}{where} (see docs/permissions.md)")
        if code in _EXPIRED:
            return AwsError(f"AWS credentials have expired ({code}): refresh them and run again")
        if code in _BAD_CREDENTIALS:
            return AwsError(f"AWS rejected the credentials ({code}): {message or 'check the profile'}")
        if code == "NoSuchBucket":
            bucket = resource.removeprefix("arn:aws:s3:::").split("/", 1)[0]
            return AwsError(f"no such bucket: {bucket or message}")
        if code in _THROTTLED:
            return AwsError(
                f"{what}: still throttled after {MAX_ATTEMPTS} attempts ({code}); run again later"
            )
        return AwsError(f"{what}: {code}: {message}" if message else f"{what}: {code}")
    if isinstance(exc, botocore.exceptions.EndpointConnectionError):
        return AwsError(f"cannot reach AWS: {exc}")
    if isinstance(exc, botocore.exceptions.ParamValidationError):
        return AwsError(f"{what}: {exc}".replace("\n", " "))
    if isinstance(exc, botocore.exceptions.BotoCoreError):
        return AwsError(f"{what}: {exc}".replace("\n", " ") if what else str(exc).replace("\n", " "))
    return None
