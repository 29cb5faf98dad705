"""One CloudTrail record → ``Usage`` items or one ``Skipped``. Never raises for a bad record."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Any, NamedTuple

import msgspec

from iamtrim import catalog
from iamtrim.model import (
    Context,
    Outcome,
    Principal,
    PrincipalKind,
    Skipped,
    SkipReason,
    Usage,
    escape_literal,
    is_service_principal,
    partition_for_region,
)
from iamtrim.model.profile import ProfileChange, ProfileChangeKind, instance_profile_of
from iamtrim.normalize import dynamodb
from iamtrim.normalize.actions import S3_VERSIONED, resolve_actions
from iamtrim.normalize.principal import resolve_principal, saml_named
from iamtrim.normalize.resources import Resolver
from iamtrim.normalize.tables import ActionRule, encryption_context_services
from iamtrim.sources.records import USER_IDENTITY_DECODER, Record, UserIdentity

# Errors that mean IAM (or an SCP, boundary, VPC endpoint or resource policy) refused the call.
# https://docs.aws.amazon.com/IAM/latest/UserGuide/troubleshoot_access-denied.html
DENIED_CODES = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "Client.UnauthorizedOperation",
        "UnauthorizedOperation",
        "Client.UnauthorizedAccess",
        "UnauthorizedAccess",
        "UnauthorizedException",
        "AuthorizationError",
        "AuthorizationErrorException",
        "Forbidden",
        "ForbiddenException",
        "VpceAccessDenied",
        "AllAccessDisabled",
        "KMS.AccessDeniedException",
    }
)
# Errors raised before authorization (the caller was never authenticated): no evidence either way.
# https://docs.aws.amazon.com/STS/latest/APIReference/CommonErrors.html
UNAUTHENTICATED_CODES = frozenset(
    {
        "InvalidClientTokenId",
        "ExpiredToken",
        "ExpiredTokenException",
        "RequestExpired",
        "SignatureDoesNotMatch",
        "InvalidSignatureException",
        "IncompleteSignature",
        "MissingAuthenticationToken",
        "UnrecognizedClientException",
        "InvalidAccessKeyId",
        "AuthFailure",
        "Client.AuthFailure",
        "CloudTrailInvalidClientTokenIdException",
        "InvalidToken",
        "TokenRefreshRequired",
    }
)

# eventType values that are not calls authorized by the caller's policies.
# https://docs.aws.amazon.com/awscloudtrail/latest/userguide/cloudtrail-event-reference-record-contents.html
_EVENT_TYPE_SKIPS = {
    "AwsConsoleSignIn": SkipReason.CONSOLE_SIGN_IN,
    "AwsServiceEvent": SkipReason.SERVICE_EVENT,
    "AwsCloudTrailInsight": SkipReason.INSIGHT,
    "AwsVpceEvent": SkipReason.NETWORK_ACTIVITY,
}


_SIGNIN_SOURCE = "signin.amazonaws.com"


def _is_denied(record: Record) -> bool:
    code = record.errorCode or ""
    if code in DENIED_CODES:
        return True
    if code.endswith("AccessDenied") or code.endswith("AccessDeniedException"):
        return True
    message = record.errorMessage or ""
    return bool(code) and ("not authorized to perform" in message or "is not authorized" in message)


def _failed(code: str | None) -> str:
    """The error of an authorized call that failed, for ``Context.error_code``. A dry run
    (``Client.DryRunOperation``) is no failure: EC2 answers it when the call would have succeeded,
    on resources that exist. https://docs.aws.amazon.com/AWSEC2/latest/APIReference/errors-overview.html
    """
    if not code or code.endswith("DryRunOperation"):
        return ""
    return code


# eventTime is UTC in ISO 8601 as CloudTrail writes it, ``2021-05-20T15:53:47Z``; CloudTrail Lake
# and Athena results write the same UTC time as ``2021-05-20 15:53:47.000``. Fractional seconds
# are dropped (the store keeps seconds). A time before CloudTrail existed (it launched on
# 2013-11-13) or after tomorrow (UTC, when the run started) is not a time a trail wrote: such a
# record is skipped (``bad-event-time``) and never reaches LAST SEEN or coverage.
# https://docs.aws.amazon.com/awscloudtrail/latest/userguide/cloudtrail-event-reference-record-contents.html
EARLIEST_DAY = "2013-11-01"
_TIME = re.compile(
    r"([0-9]{4}-[0-9]{2}-[0-9]{2})[T ]([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,9})?Z?"
)
_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_HHMM = frozenset(f"{h:02}:{m:02}" for h in range(24) for m in range(60))
_SS = frozenset(f":{s:02}" for s in range(60))
# Bounds of a Normalizer's memo tables: each is cleared when full (answers never depend on them).
_GOOD_TIMES_LIMIT = 50_000
_DAYS_LIMIT = 20_000  # hostile input can make up days; real trails have a few thousand
_IDENTITIES_LIMIT = 20_000  # each of the two identity tables; ~0.6 KB an entry
_IP_KINDS_LIMIT = 50_000  # past it, kinds are worked out again (not cleared)
_CONTEXTS_LIMIT = 100_000  # cleared once it holds more
_PLANS_LIMIT = 20_000
_RULES_LIMIT = 20_000  # (eventSource, eventName) → resolve_actions' answer


def _calendar_day(day: str) -> bool:
    if _DAY.fullmatch(day) is None:
        return False
    try:
        date.fromisoformat(day)
    except ValueError:
        return False
    return True


def bad_event_time(value: str) -> Skipped:
    """Why *value* (for which :func:`event_time` gave ``""``) was refused."""
    day = value[:10]
    if _TIME.fullmatch(value) is None or not _calendar_day(day):
        return Skipped(SkipReason.BAD_EVENT_TIME, "not an ISO 8601 UTC time")
    if day < EARLIEST_DAY:
        return Skipped(SkipReason.BAD_EVENT_TIME, f"before CloudTrail existed ({EARLIEST_DAY})")
    return Skipped(SkipReason.BAD_EVENT_TIME, "in the future (after tomorrow, UTC)")


def _saml_provider_arns(record: Record) -> list[str]:
    arns = [r.ARN for r in record.resources or () if r.ARN]
    params = record.requestParameters
    if isinstance(params, dict) and isinstance(params.get("principalArn"), str):
        arns.append(params["principalArn"])
    return arns


def _source_ip_kind(ip: str) -> str:
    if not ip:
        return ""
    if ip.endswith(".amazonaws.com") or ip == "AWS Internal":
        return "service"
    return "ip"


_NO_PAIRS: tuple[tuple[str, str], ...] = ()


def _service_of_context(keys: tuple[str, ...]) -> str:
    """The service principal whose encryption context *keys* are, or ``""``.

    A KMS call a service made for the caller may name no service in ``invokedBy`` ("AWS
    Internal"); the encryption context each service writes says which one it was
    (``data/encryption_context_services.csv``), so ``kms:ViaService`` can still name it.
    """
    if keys:
        for key, service in encryption_context_services():
            if key in keys:
                return service
    return ""


_SSE = "x-amz-server-side-encryption"
_SSE_KEY_ID = "x-amz-server-side-encryption-aws-kms-key-id"


# A request parameter naming a role the service will use on the caller's behalf. Passing a role
# to a service needs iam:PassRole on it, which CloudTrail never logs: when such a call succeeded,
# PassRole was allowed. https://docs.aws.amazon.com/IAM/latest/UserGuide/id_roles_use_passrole.html
# Besides the *Role/*RoleArn names (roleArn, serviceRoleArn, executionRoleArn, dataAccessRoleArn),
# EC2 flow logs take their role as deliverLogsPermissionArn
# (https://docs.aws.amazon.com/vpc/latest/userguide/flow-logs-iam-role.html#flow-logs-iam-user).
_PASSED_ROLE_PARAM = re.compile(
    r"(?i)^(?:[a-z]*rolearn|role|servicerole|[a-z]*role|deliverlogspermissionarn)$"
)
_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/.+")
# An instance profile passes the role inside it: AWS checks iam:PassRole on that role, which the
# request does not name (defaultInstanceProfileArn of OpsWorks, iamInstanceProfile of EC2
# RunInstances — {"arn": ...} or {"name": ...} —, the instance profile of an EMR cluster's
# jobFlowRole). The pass is recorded on the profile's ARN; the role is resolved when a policy is
# made, from the profile's logged changes or IAM authorization details (model/profile.py).
# https://docs.aws.amazon.com/IAM/latest/UserGuide/id_roles_use_switch-role-ec2.html#roles-usingrole-ec2instance-permissions
# https://docs.aws.amazon.com/opsworks/latest/userguide/opsworks-security-appsrole.html
# https://docs.aws.amazon.com/emr/latest/APIReference/API_JobFlowInstancesConfig.html (JobFlowRole:
# "also called instance profile and Amazon EC2 role")
_PROFILE_PARAM = re.compile(r"(?i)^(?:[a-z]*instanceprofile(?:arn|name)?|jobflowrole)$")
_PROFILE_NAME = re.compile(r"^[\w+=,.@-]{1,128}$")  # IAM's name pattern (API_CreateInstanceProfile)
# Services whose role-ARN parameters name a role to *assume* or *manage*, not one to pass.
_NOT_PASSING = frozenset({"sts", "iam", "sso", "identitystore"})
_READS = frozenset({"Read", "List"})
_ADD_ROLE_TO_PROFILE = "iam:AddRoleToInstanceProfile"


def passed_roles(
    action: str, params: dict[str, Any], partition: str = "aws", account: str = ""
) -> list[str | None]:
    """Role ARNs a call passes to its service (top-level request parameters only), and the ARN
    of an instance profile whose role it passes (``arn:...:instance-profile/NAME``, in
    *account* when the request names it by name); ``None`` for a profile the request does not
    name usably."""
    if action == _ADD_ROLE_TO_PROFILE:
        # "The caller of this operation must be granted the PassRole permission on the IAM role"
        # (https://docs.aws.amazon.com/IAM/latest/APIReference/API_AddRoleToInstanceProfile.html);
        # the request names the role by name, without its path.
        name = params.get("roleName")
        if type(name) is str and _PROFILE_NAME.match(name) and account:
            return [f"arn:{partition}:iam::{account}:role/{name}"]
        return []
    if action.partition(":")[0] in _NOT_PASSING:
        return []
    out: list[str | None] = []
    for key, value in params.items():
        # The cheap test first: this runs for every record with request parameters.
        if (
            type(value) is str
            and ":role/" in value
            and _ROLE_ARN.match(value)
            and _PASSED_ROLE_PARAM.match(key)
            and escape_literal(value) not in out
        ):
            out.append(escape_literal(value))  # a literal * in the request is no wildcard
        elif ("rofile" in key or key == "jobFlowRole") and _PROFILE_PARAM.match(key) and value:
            profile = _profile_arn(value, partition, account)
            if profile not in out:
                out.append(profile)
    return out


def _profile_arn(value: object, partition: str, account: str) -> str | None:
    """The instance profile a parameter names: its ARN, or its name (``{"arn"|"name": ...}`` in
    EC2's records) in *account*, where an instance must find its profile."""
    if isinstance(value, dict):
        value = value.get("arn") or value.get("Arn") or value.get("name") or value.get("Name")
    if type(value) is not str:
        return None
    if instance_profile_of(value):
        return escape_literal(value)
    if _PROFILE_NAME.match(value) and account:
        return f"arn:{partition}:iam::{account}:instance-profile/{value}"
    return None


def _pass_role_uses(
    action: str,
    params: dict[str, Any],
    uses: list[tuple[str, str | None]],
    notes: list[Skipped],
    region: str,
    account: str,
) -> None:
    for arn in passed_roles(action, params, partition_for_region(region), account):
        uses.append(("iam:PassRole", arn))
        if arn is None or ":instance-profile/" in arn:
            # The role itself is not in the record (resolved from the profile, if at all, later).
            notes.append(Skipped(SkipReason.RESOURCE_UNKNOWN, "iam:PassRole"))


# The changes that say which role an instance profile holds (model/profile.py), calls of IAM.
# https://docs.aws.amazon.com/IAM/latest/APIReference/API_AddRoleToInstanceProfile.html
PROFILE_SOURCE = "iam.amazonaws.com"
PROFILE_EVENTS = {
    "CreateInstanceProfile": ProfileChangeKind.CREATE,
    "AddRoleToInstanceProfile": ProfileChangeKind.ADD,
    "RemoveRoleFromInstanceProfile": ProfileChangeKind.REMOVE,
    "DeleteInstanceProfile": ProfileChangeKind.DELETE,
}


def profile_change(record: Record) -> ProfileChange | None:
    """The change a successful IAM instance-profile call made, or ``None`` (another call, a
    failed one, or one whose names are not IAM names)."""
    kind = PROFILE_EVENTS.get(record.eventName or "")
    params = record.requestParameters
    account = record.recipientAccountId or ""
    if (
        kind is None
        or record.eventSource != PROFILE_SOURCE
        or record.errorCode
        or type(params) is not dict
        or not account
        or not record.eventTime
    ):
        return None
    name = params.get("instanceProfileName")
    if type(name) is not str or not _PROFILE_NAME.match(name):
        return None
    role = ""
    if kind in (ProfileChangeKind.ADD, ProfileChangeKind.REMOVE):
        role_name = params.get("roleName")
        if type(role_name) is not str or not _PROFILE_NAME.match(role_name):
            return None
        # IAM is global: the partition is the region's (aws-cn, aws-us-gov), the path unknown.
        role = f"arn:{partition_for_region(record.awsRegion or '')}:iam::{account}:role/{role_name}"
    return ProfileChange(record.eventTime, account, name, kind, role, record.eventID or "")


class RecordParts(NamedTuple):
    """What one record means, before it is spread into one ``Usage`` per (action, resource)."""

    principal: Principal
    outcome: Outcome
    context: Context
    encryption_context: tuple[tuple[str, str], ...]
    time: str
    event_id: str
    source_ip: str
    uses: list[tuple[str, str | None]]  # (action, resource or None when unknown)
    notes: list[Skipped]
    context_key: str  # Context.to_key(), computed once per distinct context


_new_parts = tuple.__new__
_USED, _DENIED = Outcome.USED, Outcome.DENIED  # enum attribute lookups cost, per record


def _one_action_uses(
    action: str, found: tuple[str, ...]
) -> tuple[list[tuple[str, str | None]], list[Skipped]]:
    """(uses, notes) of one action on the resources found; an unknown resource is noted."""
    if len(found) == 1:
        return [(action, found[0])], []
    if found:
        return [(action, arn) for arn in found], []
    return [(action, None)], [Skipped(SkipReason.RESOURCE_UNKNOWN, action)]


def _parts(
    record: Record,
    principal: Principal,
    outcome: Outcome,
    context: Context,
    enc_ctx: tuple[tuple[str, str], ...],
    uses: list[tuple[str, str | None]],
    notes: list[Skipped],
    context_key: str,
    when: str,
) -> RecordParts:
    # tuple.__new__ directly: a NamedTuple's generated __new__ is a Python-level call per record.
    return _new_parts(
        RecordParts,
        (
            principal,
            outcome,
            context,
            enc_ctx,
            when,
            record.eventID or "",
            record.sourceIPAddress or "",
            uses,
            notes,
            context_key,
        ),
    )


class _Plan(NamedTuple):
    """What every plain call of one (eventSource, eventName) needs, worked out once."""

    action: str
    versioned: str  # the S3 *Version action when the request names a versionId ("" if none)
    passes_roles: bool  # not a Read or List call: a role named in the request is passed


_UNPLANNED = _Plan("", "", False)  # a name not looked at yet (None: the general path)


def _plan(rules: tuple[ActionRule, ...] | Skipped) -> _Plan | None:
    if isinstance(rules, Skipped) or len(rules) != 1 or rules[0].role:
        return None  # skipped, several actions, or a source/destination role: the general path
    action = rules[0].action
    return _Plan(
        action,
        S3_VERSIONED.get(action, ""),
        catalog.access_level(action) not in _READS,
    )


class Normalizer:
    """Turns CloudTrail records into what they mean (``RecordParts``, ``Usage``) or ``Skipped``.

    The answers are functions of the record (and of the day the normalizer first checked a
    time, see :data:`EARLIEST_DAY`); the instance owns the memo tables that make them cheap on
    a trail, each bounded: checked event times and days, resolved identities, built contexts,
    per-event-name plans, and the resource ``Resolver``'s tables. Two normalizers share
    nothing, so each ingest worker (a process today, a Spark executor tomorrow) owns one, and a
    fresh one gives the same answers as a warm one. The module-level ``normalize_parts``,
    ``fast_parts``, ``normalize_record``, ``event_time`` and ``identity_of`` are the methods of
    one default instance, for callers that keep none.
    """

    __slots__ = (
        "contexts",
        "days",
        "good_times",
        "identities",
        "identity_fields",
        "ip_kinds",
        "latest",
        "plans",
        "resolver",
        "rules",
    )

    def __init__(self) -> None:
        # eventTimes in CloudTrail's own form already found good. The check runs for every
        # record; a trail file's records fall within minutes, so most times repeat and the check
        # is one lookup (callers on the hot path test membership themselves, saving a call).
        # Bounded; never rebound.
        self.good_times: set[str] = set()
        self.days: dict[str, bool] = {}  # YYYY-MM-DD → a calendar day from EARLIEST_DAY to tomorrow
        self.latest = ""  # tomorrow (UTC) when this normalizer first checked a time
        # userIdentity JSON → (principal or why none, invokedBy); and the same by decoded fields.
        self.identities: dict[bytes, tuple[Principal | Skipped, str]] = {}
        self.identity_fields: dict[UserIdentity | None, tuple[Principal | Skipped, str]] = {}
        self.ip_kinds: dict[str, str] = {}  # sourceIPAddress → "service", "ip" or ""
        self.contexts: dict[tuple[object, ...], tuple[Context, str]] = {}  # → (Context, its key)
        self.plans: dict[tuple[str, str], _Plan | None] = {}  # (eventSource, eventName) → plan
        # (eventSource, eventName) → resolve_actions(eventSource, eventName)
        self.rules: dict[tuple[str, str], tuple[ActionRule, ...] | Skipped] = {}
        self.resolver = Resolver()

    def sizes(self) -> dict[str, int]:
        """Entries held by each memo table (the resource ``Resolver``'s as ``resolver.*``), to
        check them against their bounds."""
        r = self.resolver
        return {
            "good_times": len(self.good_times),
            "days": len(self.days),
            "identities": len(self.identities),
            "identity_fields": len(self.identity_fields),
            "ip_kinds": len(self.ip_kinds),
            "contexts": len(self.contexts),
            "plans": len(self.plans),
            "rules": len(self.rules),
            "resolver.cache": len(r.cache),
            "resolver.consulted": len(r.consulted),
            "resolver.projected": len(r.projected),
            "resolver.ref_types": len(r.ref_types),
        }

    # ---------------------------------------------------------------- event times

    def _latest_day(self) -> str:
        if not self.latest:
            self.latest = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
        return self.latest

    def _day_ok(self, day: str) -> bool:
        days = self.days
        ok = days.get(day)
        if ok is None:
            if len(days) >= _DAYS_LIMIT:
                days.clear()
            ok = days[day] = _calendar_day(day) and EARLIEST_DAY <= day <= self._latest_day()
        return ok

    def event_time(self, value: str) -> str:
        """*value* as ``YYYY-MM-DDTHH:MM:SSZ`` (sortable), or ``""`` when it is not a UTC time a
        trail wrote (see :data:`EARLIEST_DAY`). Runs for every record: CloudTrail's own form is
        checked with a few slices and set lookups (once per distinct time), other forms by a
        regular expression."""
        good = self.good_times
        if value in good:
            return value
        if len(value) == 20 and value[10] == "T" and value[19] == "Z":
            if self._day_ok(value[:10]) and value[11:16] in _HHMM and value[16:19] in _SS:
                if len(good) >= _GOOD_TIMES_LIMIT:
                    good.clear()
                good.add(value)
                return value
            return ""
        if _TIME.fullmatch(value) is None or not self._day_ok(value[:10]):
            return ""
        return f"{value[:10]}T{value[11:19]}Z"

    # ---------------------------------------------------------------- what was called

    def resolve_actions(self, source: str, name: str) -> tuple[ActionRule, ...] | Skipped:
        """:func:`~iamtrim.normalize.actions.resolve_actions`, remembered (bounded: the table is
        cleared when it holds ``_RULES_LIMIT`` answers; made-up event names cannot grow it)."""
        rules = self.rules.get((source, name))
        if rules is None:
            if len(self.rules) >= _RULES_LIMIT:
                self.rules.clear()
            rules = self.rules[(source, name)] = resolve_actions(source, name)
        return rules

    # ---------------------------------------------------------------- who called

    def identity_of(self, record: Record) -> tuple[Principal | Skipped, str]:
        """(the principal, or why there is none; ``userIdentity.invokedBy``) of *record*.

        Resolved once per distinct ``userIdentity`` JSON: every call of one session carries the
        same bytes. A ``userIdentity`` that is not an object (a hand-edited record) counts as
        missing.
        """
        raw = bytes(record.userIdentity)
        identities = self.identities
        hit = identities.get(raw)
        if hit is None:
            # The bytes also differ by accessKeyId and session creationDate; the fields read
            # here repeat far more often, so resolving is cached on them too.
            try:
                ui = USER_IDENTITY_DECODER.decode(raw)
            except (msgspec.ValidationError, msgspec.DecodeError):
                ui = None
            fields = self.identity_fields
            hit = fields.get(ui)
            if hit is None:
                if len(fields) >= _IDENTITIES_LIMIT:
                    fields.clear()
                hit = fields[ui] = (resolve_principal(ui), (ui.invokedBy or "") if ui else "")
            if len(identities) >= _IDENTITIES_LIMIT:
                identities.clear()  # ~0.6 KB each: bounded, and rebuilt from the fields cache
            identities[raw] = hit
        found = hit[0]
        if isinstance(found, Principal) and found.kind is PrincipalKind.SAML_USER:
            # Named per record, not cached: the provider is in the record, not in userIdentity.
            return saml_named(found, _saml_provider_arns(record)), hit[1]
        return hit

    def _ip_kind(self, ip: str) -> str:
        kind = _source_ip_kind(ip)
        if len(self.ip_kinds) < _IP_KINDS_LIMIT:
            self.ip_kinds[ip] = kind
        return kind

    # ---------------------------------------------------------------- what was called

    def build_context(
        self, record: Record, region: str, invoked_by: str, error_code: str = ""
    ) -> tuple[Context, tuple[tuple[str, str], ...], str]:
        """(the call's Context, its KMS encryption context, the Context's store key).

        *error_code*: the errorCode of a call that passed authorization (``""`` for a success or a
        denial)."""
        params = record.requestParameters
        if type(params) is not dict:
            params = None
        kms_key = sse_header = sse_kms_key_header = ""
        enc_ctx = _NO_PAIRS
        enc_keys: tuple[str, ...] = ()
        if record.eventSource == "kms.amazonaws.com":
            for res in record.resources or ():
                if res.ARN and ":key/" in res.ARN:
                    kms_key = res.ARN
                    break
            ctx = params.get("encryptionContext") if params else None
            if isinstance(ctx, dict) and ctx:
                enc_ctx = tuple(sorted((str(k), str(v)) for k, v in ctx.items()))
                enc_keys = tuple(k for k, _ in enc_ctx)
            if invoked_by and not is_service_principal(invoked_by):
                invoked_by = _service_of_context(enc_keys) or invoked_by
        else:
            # S3's SSE request headers, and the key the response says it used.
            if params:
                value = params.get(_SSE_KEY_ID)
                if type(value) is str:
                    sse_kms_key_header = kms_key = value
                value = params.get(_SSE)
                if type(value) is str:
                    sse_header = value
            response = record.responseElements
            if type(response) is dict and response:
                value = response.get(_SSE_KEY_ID)
                if type(value) is str and value:
                    kms_key = value
        extra = record.additionalEventData
        tls = record.tlsDetails
        ip = record.sourceIPAddress or ""
        key = (
            region,
            record.vpcEndpointId or "",
            invoked_by,
            kms_key,
            enc_keys,
            sse_header,
            sse_kms_key_header,
            (extra.SSEApplied or "") if extra is not None else "",
            (tls.tlsVersion or "") if tls is not None else "",
            self.ip_kinds.get(ip) or self._ip_kind(ip),
            error_code,
        )
        # Contexts repeat across records: build each distinct one (and its store key) once.
        contexts = self.contexts
        hit = contexts.get(key)
        if hit is None:
            if len(contexts) > _CONTEXTS_LIMIT:
                contexts.clear()
            context = Context(*key)
            hit = contexts[key] = (context, context.to_key())
        return hit[0], enc_ctx, hit[1]

    def normalize_parts(self, record: Record) -> RecordParts | Skipped:
        """The record's facts, by every rule, without building a ``Usage`` per action.

        ``fast_parts`` gives the same answer sooner for plain calls; ingest tries it first."""
        event_type = record.eventType or ""
        if event_type in _EVENT_TYPE_SKIPS:
            return Skipped(_EVENT_TYPE_SKIPS[event_type], event_type)
        if record.eventCategory == "NetworkActivity":
            return Skipped(SkipReason.NETWORK_ACTIVITY, "")
        if event_type and event_type != "AwsApiCall":
            return Skipped(SkipReason.NOT_API_CALL, event_type)
        if not record.eventSource or not record.eventName or not record.eventTime:
            return Skipped(SkipReason.MISSING_FIELDS, "eventSource/eventName/eventTime")
        if not event_type and record.eventSource == _SIGNIN_SOURCE:
            # Records before eventVersion 1.02 have no eventType; their sign-in events (ConsoleLogin,
            # SwitchRole, CheckMfa) are still AwsConsoleSignIn events, not API calls.
            # https://docs.aws.amazon.com/awscloudtrail/latest/userguide/cloudtrail-event-reference-aws-console-sign-in-events.html
            return Skipped(SkipReason.CONSOLE_SIGN_IN, "AwsConsoleSignIn")
        when = self.event_time(record.eventTime)
        if not when:
            return bad_event_time(record.eventTime)
        principal, invoked_by = self.identity_of(record)
        if isinstance(principal, Skipped):
            return principal
        code = record.errorCode
        if code and code in UNAUTHENTICATED_CODES:
            return Skipped(SkipReason.NOT_AUTHENTICATED, code)
        rules = self.resolve_actions(record.eventSource, record.eventName)
        if isinstance(rules, Skipped):
            if record.eventSource == "dynamodb.amazonaws.com" and record.eventName in dynamodb.EVENTS:
                return self._dynamodb_parts(record, principal, invoked_by, rules, when)
            return rules
        outcome = _DENIED if code and _is_denied(record) else _USED
        region = record.awsRegion or ""
        account = record.recipientAccountId or principal.account
        context, enc_ctx, context_key = self.build_context(
            record, region, invoked_by, _failed(code) if outcome is _USED else ""
        )
        params = record.requestParameters if type(record.requestParameters) is dict else None
        uses: list[tuple[str, str | None]] = []
        notes: list[Skipped] = []
        if len(rules) == 1 and not rules[0].role:
            action = rules[0].action
            if params and action in S3_VERSIONED and params.get("versionId"):
                action = S3_VERSIONED[action]
            uses, notes = _one_action_uses(
                action, self.resolver.resolve_resources(action, "", record, region, account, principal.arn)
            )
        else:
            self._multi_rule_uses(rules, params, record, region, account, principal.arn, uses, notes)
        if code and outcome is _USED and not params and notes:
            # An error that is no authorization outcome (ThrottlingException, InternalError) on a
            # request without parameters: the call may never have reached authorization, and it
            # names nothing, so it is no evidence for a grant on the action's whole ARN format.
            # https://docs.aws.amazon.com/awscloudtrail/latest/userguide/cloudtrail-event-reference-record-contents.html
            uses = [(action, arn) for action, arn in uses if arn is not None]
            notes = []
            if not uses:
                return Skipped(SkipReason.FAILED_WITHOUT_RESOURCE, code)
        # Passing a role is part of creating or changing something: never of a Read or List call.
        if outcome is _USED and params and catalog.access_level(rules[0].action) not in _READS:
            _pass_role_uses(rules[0].action, params, uses, notes, region, account)
        return _parts(record, principal, outcome, context, enc_ctx, uses, notes, context_key, when)

    def fast_parts(self, record: Record) -> RecordParts | None:
        """``normalize_parts`` for the bulk of a trail, or ``None`` to take the general path.

        Handles a successful API call of one action by a principal (S3 data events, KMS, reads and
        writes of most services): the same answer as ``normalize_parts`` (a test holds the two equal
        on every record of the samples, the corpus and a benchmark trail), with the work that
        depends only on the event name done once per name. Errors, skips, calls of several actions
        and DynamoDB transactions take the general path.
        """
        if record.errorCode or record.eventType != "AwsApiCall":
            return None
        source, name = record.eventSource, record.eventName
        if not source or not name or not record.eventTime or record.eventCategory == "NetworkActivity":
            return None
        plans = self.plans
        plan = plans.get((source, name), _UNPLANNED)
        if plan is _UNPLANNED:
            if len(plans) >= _PLANS_LIMIT:
                plans.clear()
            plan = plans[(source, name)] = _plan(self.resolve_actions(source, name))
        if plan is None:
            return None
        when = record.eventTime
        if when not in self.good_times:
            when = self.event_time(when)
            if not when:
                return None
        principal, invoked_by = self.identity_of(record)
        if isinstance(principal, Skipped):
            return None
        params = record.requestParameters
        if type(params) is not dict or not params:
            params = None
        action = plan.action
        if plan.versioned and params and params.get("versionId"):
            action = plan.versioned
        region = record.awsRegion or ""
        account = record.recipientAccountId or principal.account
        uses, notes = _one_action_uses(
            action, self.resolver.resolve_resources(action, "", record, region, account, principal.arn)
        )
        if plan.passes_roles and params:
            _pass_role_uses(plan.action, params, uses, notes, region, account)
        context, enc_ctx, context_key = self.build_context(record, region, invoked_by)
        return _parts(record, principal, _USED, context, enc_ctx, uses, notes, context_key, when)

    def _multi_rule_uses(
        self,
        rules: tuple[ActionRule, ...],
        params: dict[str, Any] | None,
        record: Record,
        region: str,
        account: str,
        caller_arn: str,
        uses: list[tuple[str, str | None]],
        notes: list[Skipped],
    ) -> None:
        """Uses of a call that needs several actions, or one action on a role-named resource."""
        # Calls with a source and a destination (CopyObject, UploadPartCopy): resources[] lists
        # both objects, so the destination's action must not also take the source's ARN.
        resolve = self.resolver.resolve_resources
        sources: set[str] = set()
        if len(rules) > 1:
            for rule in rules:
                if rule.role == "source":
                    sources.update(resolve(rule.action, rule.role, record, region, account, caller_arn))
        for rule in rules:
            action = rule.action
            if params and action in S3_VERSIONED and params.get("versionId"):
                action = S3_VERSIONED[action]
            resources = resolve(action, rule.role, record, region, account, caller_arn)
            if sources and not rule.role:
                kept = tuple(r for r in resources if r not in sources)
                resources = kept or resources
            if not resources:
                notes.append(Skipped(SkipReason.RESOURCE_UNKNOWN, action))
                uses.append((action, None))
            else:
                uses.extend((action, resource) for resource in resources)

    def _dynamodb_parts(
        self, record: Record, principal: Principal, invoked_by: str, unknown: Skipped, when: str
    ) -> RecordParts | Skipped:
        """Transactions and PartiQL: the actions depend on the items or statements of the request."""
        region = record.awsRegion or ""
        account = record.recipientAccountId or principal.account
        uses = dynamodb.request_uses(
            record.eventName or "", record.requestParameters, partition_for_region(region), region, account
        )
        if not uses:
            return unknown
        outcome = Outcome.DENIED if record.errorCode and _is_denied(record) else Outcome.USED
        failed = _failed(record.errorCode) if outcome is Outcome.USED else ""
        context, enc_ctx, context_key = self.build_context(record, region, invoked_by, failed)
        pairs: list[tuple[str, str | None]] = list(uses)
        return _parts(record, principal, outcome, context, enc_ctx, pairs, [], context_key, when)

    def normalize_record(self, record: Record) -> tuple[list[Usage], list[Skipped]] | Skipped:
        """Usage items of *record* plus per-action notes (``resource-unknown``), or why it was skipped."""
        parts = self.normalize_parts(record)
        if isinstance(parts, Skipped):
            return parts
        usages = [
            Usage(
                parts.principal,
                action,
                resource,
                parts.outcome,
                parts.context,
                parts.time,
                parts.event_id,
                parts.source_ip,
                parts.encryption_context,
            )
            for action, resource in parts.uses
        ]
        return usages, parts.notes


# The default normalizer, for callers that keep none of their own (one-off lookups, tests).
_DEFAULT = Normalizer()
event_time = _DEFAULT.event_time
identity_of = _DEFAULT.identity_of
normalize_parts = _DEFAULT.normalize_parts
fast_parts = _DEFAULT.fast_parts
normalize_record = _DEFAULT.normalize_record
