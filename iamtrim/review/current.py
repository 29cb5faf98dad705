"""A principal's current policies: from a GetAccountAuthorizationDetails dump or policy files.

What AWS evaluates for an IAM principal's own calls (no SCPs, no session policy):
* a role: its inline policies (``RolePolicyList``) and attached managed policies, intersected with
  its permissions boundary;
* a user: the same, plus the inline and managed policies of every group it belongs to.
https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html

Managed policy documents are the *default* version in ``Policies[].PolicyVersionList``; older
versions are kept by AWS but never evaluated. The API returns documents URL-encoded; the AWS CLI
decodes them into objects: both are accepted.
https://docs.aws.amazon.com/IAM/latest/APIReference/API_GetAccountAuthorizationDetails.html
"""

from __future__ import annotations

import hashlib
import json
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from iamtrim.errors import AuthzError, PolicyError
from iamtrim.model.policy import Policy
from iamtrim.model.principal import Principal, PrincipalKind
from iamtrim.query import resolve_among

if TYPE_CHECKING:
    from iamtrim.aws import Aws

__all__ = [
    "AuthzDetails",
    "AuthzEntry",
    "CurrentPolicies",
    "authz_entries",
    "authz_from_aws",
    "authz_from_file",
    "authz_principals",
    "aws_managed_policy_names",
    "current_from_authz",
    "current_from_authz_data",
    "current_from_aws",
    "current_from_files",
    "principal_for",
    "read_authz",
]


@dataclass(frozen=True, slots=True)
class CurrentPolicies:
    """The identity policies and permissions boundary in force for one principal.

    Each policy's ``name`` says where it came from: ``managed:<name>``, ``inline:<name>``,
    ``group:<group>/inline:<name>``, ``group:<group>/managed:<name>``, ``file:<path>``, and
    ``boundary:<name>`` for the boundary.
    """

    principal: str  # the IAM ARN ("" when only policy files were given)
    identity: tuple[Policy, ...]
    boundary: Policy | None = None
    source: str = ""

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.identity) + ((self.boundary.name,) if self.boundary else ())


def _too_big(exc: RecursionError | MemoryError) -> str:
    """Why a JSON file could not be held: Python's parser recurses once per nesting level."""
    if isinstance(exc, RecursionError):
        return "JSON nested too deeply to read (no IAM document nests more than a few levels)"
    return "too large to hold in memory"


def _document(raw: object, where: str) -> object:
    if isinstance(raw, str):
        text = raw if raw.lstrip().startswith("{") else urllib.parse.unquote(raw)
        try:
            return json.loads(text)
        except ValueError as exc:
            raise AuthzError(f"{where}: policy document is not JSON: {exc}") from None
        except (RecursionError, MemoryError) as exc:
            raise AuthzError(f"{where}: policy document {_too_big(exc)}") from None
    return raw


def _policy(raw: object, name: str, where: str) -> Policy:
    try:
        return Policy.from_json(_document(raw, where), name=name)
    except PolicyError as exc:
        raise AuthzError(f"{where}: {exc}") from None


def read_authz(path: Path) -> Mapping[str, object]:
    """The file, parsed and checked, for :func:`current_from_authz_data`: the review job reads it
    once for every principal rather than once per principal."""
    return _load(path)


def _load(path: Path) -> Mapping[str, object]:
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise AuthzError(f"cannot read {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise AuthzError(f"{path}: not JSON: {exc}") from None
    except (RecursionError, MemoryError) as exc:
        raise AuthzError(f"{path}: {_too_big(exc)}") from None
    if not isinstance(data, Mapping) or not any(
        k in data for k in ("RoleDetailList", "UserDetailList", "GroupDetailList")
    ):
        raise AuthzError(
            f"{path}: not GetAccountAuthorizationDetails output "
            "(no RoleDetailList/UserDetailList/GroupDetailList)"
        )
    return data


@dataclass(frozen=True, slots=True, eq=False)
class AuthzDetails:
    """One account's ``GetAccountAuthorizationDetails`` response, read from a file or the account.

    ``source`` names it for a reader (the file's path, or the call and the account), ``origin``
    in messages, ``uri`` as a SARIF artifact (the file, or the account's root ARN); ``sha256``
    is of its content, so a review of the same account state has the same inputs either way."""

    data: Mapping[str, object]
    source: str
    origin: str
    uri: str
    sha256: str


def authz_from_file(path: Path) -> AuthzDetails:
    """An ``--authz FILE`` (``aws iam get-account-authorization-details`` output), checked."""
    data = _load(path)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    return AuthzDetails(data, str(path), path.name, str(path).replace("\\", "/"), sha)


def authz_from_aws(aws: Aws, via: str = "") -> AuthzDetails:
    """Every page of ``GetAccountAuthorizationDetails`` from the account *aws* reaches (through
    the role *via*, when one was assumed). Its digest is of the response in a canonical form
    (keys sorted), the same for the same account state on every run."""
    from iamtrim.sources.aws_policies import authorization_details

    data = authorization_details(aws)
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    arns = [
        _str(e, "Arn").split(":")
        for k in ("RoleDetailList", "UserDetailList", "GroupDetailList")
        for e in _list(data, k)
        if _str(e, "Arn").count(":") >= 5
    ]
    accounts = sorted({a[4] for a in arns})
    account = accounts[0] if len(accounts) == 1 else ""
    call = "iam:GetAccountAuthorizationDetails"
    source = f"{call} of account {account or '(no principals)'}" + (f" as {via}" if via else "")
    # The account's root ARN names it as a SARIF artifact (an ARN is a URI).
    uri = f"arn:{arns[0][1]}:iam::{account}:root" if account else call
    return AuthzDetails(data, source, call, uri, hashlib.sha256(canonical.encode()).hexdigest())


def _data(source: Path | AuthzDetails) -> Mapping[str, object]:
    return source.data if isinstance(source, AuthzDetails) else _load(source)


def _list(data: Mapping[str, object], key: str) -> list[Mapping[str, object]]:
    value = data.get(key) or []
    if not isinstance(value, list):
        raise AuthzError(f"{key} must be a list")
    return [v for v in value if isinstance(v, Mapping)]


def _str(entry: Mapping[str, object], key: str) -> str:
    value = entry.get(key, "")
    return value if isinstance(value, str) else ""


def authz_principals(path: Path | AuthzDetails) -> tuple[str, ...]:
    """The role and user ARNs in an authorization-details file or response."""
    data = _data(path)
    return tuple(sorted(_str(e, "Arn") for k in ("RoleDetailList", "UserDetailList") for e in _list(data, k)))


@dataclass(frozen=True, slots=True)
class AuthzEntry:
    """What the dump says about a role or user besides its policies."""

    arn: str
    created: str  # CreateDate as AWS gave it ("" when absent)
    tags: tuple[tuple[str, str], ...]


def authz_entries(path: Path | AuthzDetails) -> tuple[AuthzEntry, ...]:
    """Every role and user of an authorization-details file, with its creation date and tags."""
    data = _data(path)
    out = []
    for kind in ("RoleDetailList", "UserDetailList"):
        for e in _list(data, kind):
            raw = e.get("Tags") or []
            tags = tuple(
                sorted((_str(t, "Key"), _str(t, "Value")) for t in raw if isinstance(t, Mapping))
                if isinstance(raw, list)
                else ()
            )
            out.append(AuthzEntry(_str(e, "Arn"), _str(e, "CreateDate"), tags))
    return tuple(sorted(out, key=lambda a: a.arn))


def aws_managed_policy_names(path: Path | AuthzDetails) -> frozenset[str]:
    """Names of the AWS managed policies in an authorization-details file (``arn:aws:iam::aws:policy/…``):
    AWS writes and sizes them, so the customer-managed size limit does not apply to them."""
    data = _data(path)
    return frozenset(
        _str(p, "PolicyName") for p in _list(data, "Policies") if _str(p, "Arn").split(":")[4:5] == ["aws"]
    )


def _find(data: Mapping[str, object], query: str, path: Path | str) -> tuple[str, Mapping[str, object]]:
    """The role or user *query* names, written any way `iamtrim usage` accepts (query.resolve_among)."""
    entries: dict[str, tuple[str, Mapping[str, object]]] = {}
    principals = []
    for kind, pk, name_key in (
        ("RoleDetailList", PrincipalKind.ROLE, "RoleName"),
        ("UserDetailList", PrincipalKind.USER, "UserName"),
    ):
        for entry in _list(data, kind):
            arn = _str(entry, "Arn")
            parts = arn.split(":")
            entries[arn] = (kind, entry)
            principals.append(Principal(arn, pk, parts[4] if len(parts) > 5 else "", _str(entry, name_key)))
    return entries[resolve_among(principals, query, f"in {path}").arn]


def _policy_name(arn: str) -> str:
    """A managed policy's name from its ARN (``arn:aws:iam::ACCOUNT:policy/PATH/NAME``), for an
    entry that does not repeat ``PolicyName``.
    https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_identifiers.html#identifiers-arns"""
    return arn.rsplit("/", 1)[-1]


def _managed_documents(data: Mapping[str, object]) -> dict[str, tuple[str, object]]:
    """Policy ARN → (name, default-version document)."""
    out: dict[str, tuple[str, object]] = {}
    for pol in _list(data, "Policies"):
        arn, default = _str(pol, "Arn"), _str(pol, "DefaultVersionId")
        versions = pol.get("PolicyVersionList") or []
        if not isinstance(versions, list):
            continue
        for v in versions:
            if isinstance(v, Mapping) and (
                v.get("IsDefaultVersion") is True or _str(v, "VersionId") == default
            ):
                out[arn] = (_str(pol, "PolicyName"), v.get("Document"))
                break
    return out


def _attached(
    entry: Mapping[str, object], managed: dict[str, tuple[str, object]], prefix: str, where: str
) -> list[Policy]:
    out = []
    attached = entry.get("AttachedManagedPolicies") or []
    for att in attached if isinstance(attached, list) else []:
        if not isinstance(att, Mapping):
            continue
        arn = _str(att, "PolicyArn")
        if arn not in managed:
            # Without the document the granted set is unknown: refuse rather than under-report.
            raise AuthzError(
                f"{where}: attached policy {arn} has no document in Policies "
                "(run get-account-authorization-details with --filter including "
                "LocalManagedPolicy and AWSManagedPolicy)"
            )
        name, doc = managed[arn]
        out.append(_policy(doc, f"{prefix}managed:{name or _policy_name(arn)}", f"{where}: {arn}"))
    return out


def _inline(entry: Mapping[str, object], key: str, prefix: str, where: str) -> list[Policy]:
    out = []
    items = entry.get(key) or []
    for item in items if isinstance(items, list) else []:
        if isinstance(item, Mapping):
            name = _str(item, "PolicyName")
            doc = item.get("PolicyDocument")
            out.append(_policy(doc, f"{prefix}inline:{name}", f"{where}: inline {name}"))
    return out


def current_from_authz(path: Path, principal: str) -> CurrentPolicies:
    """The policies in force for *principal* (an ARN, or a unique role/user name) per *path*."""
    return current_from_authz_data(_load(path), principal, path.name, str(path))


def current_from_authz_data(
    data: Mapping[str, object], principal: str, origin: str, source: str
) -> CurrentPolicies:
    """The same as :func:`current_from_authz` for a response already read (a file, or the pages of
    ``GetAccountAuthorizationDetails`` from the account); *origin* names it in messages."""
    kind, entry = _find(data, principal, source)
    arn = _str(entry, "Arn")
    managed = _managed_documents(data)
    where = f"{origin}: {arn}"
    if kind == "RoleDetailList":
        identity = _inline(entry, "RolePolicyList", "", where) + _attached(entry, managed, "", where)
    else:
        identity = _inline(entry, "UserPolicyList", "", where) + _attached(entry, managed, "", where)
        groups = {_str(g, "GroupName"): g for g in _list(data, "GroupDetailList")}
        member_of = entry.get("GroupList") or []
        names = sorted(g for g in member_of if isinstance(g, str)) if isinstance(member_of, list) else []
        for group in names:
            if group not in groups:
                raise AuthzError(f"{where}: group {group!r} is not in GroupDetailList")
            gwhere = f"{origin}: group {group}"
            identity += _inline(groups[group], "GroupPolicyList", f"group:{group}/", gwhere)
            identity += _attached(groups[group], managed, f"group:{group}/", gwhere)
    boundary = None
    pb = entry.get("PermissionsBoundary")
    if isinstance(pb, Mapping) and _str(pb, "PermissionsBoundaryArn"):
        barn = _str(pb, "PermissionsBoundaryArn")
        if barn not in managed:
            raise AuthzError(f"{where}: permissions boundary {barn} has no document in Policies")
        bname, bdoc = managed[barn]
        boundary = _policy(bdoc, f"boundary:{bname or _policy_name(barn)}", f"{where}: boundary {barn}")
    return CurrentPolicies(arn, tuple(identity), boundary, source)


def instance_profiles_of(data: Mapping[str, object]) -> tuple[tuple[str, str, tuple[str, ...]], ...]:
    """``(account, profile name, role ARNs)`` of every instance profile the response shows.

    GetAccountAuthorizationDetails lists a profile under each role it holds, with its ``Roles``:
    ``RoleDetailList[].InstanceProfileList[].Roles[].Arn``
    (https://docs.aws.amazon.com/IAM/latest/APIReference/API_RoleDetail.html,
    https://docs.aws.amazon.com/IAM/latest/APIReference/API_InstanceProfile.html)."""
    roles: dict[tuple[str, str], set[str]] = {}
    for role in _list(data, "RoleDetailList"):
        for profile in _list(role, "InstanceProfileList"):
            parts = _str(profile, "Arn").split(":")
            name = _str(profile, "InstanceProfileName")
            if len(parts) < 6 or not name:
                continue
            held = roles.setdefault((parts[4], name), set())
            held.update(a for r in _list(profile, "Roles") if (a := _str(r, "Arn")))
    return tuple((acct, name, tuple(sorted(held))) for (acct, name), held in sorted(roles.items()))


def current_from_aws(aws: Aws, principal: str) -> CurrentPolicies:
    """The policies in force for *principal* as the account holds them now: every page of
    ``GetAccountAuthorizationDetails`` (one read-only call type, the same response an
    ``--authz`` file holds), read the same way."""
    from iamtrim.sources.aws_policies import authorization_details

    source = "iam:GetAccountAuthorizationDetails"
    return current_from_authz_data(authorization_details(aws), principal, source, f"the account ({source})")


def _file_document(data: object) -> object:
    """Accept a bare policy document or the AWS CLI's get-policy-version / get-role-policy output."""
    if isinstance(data, Mapping):
        if isinstance(data.get("PolicyVersion"), Mapping):
            return data["PolicyVersion"].get("Document")
        if "PolicyDocument" in data and "Statement" not in data:
            return data["PolicyDocument"]
    return data


def current_from_files(
    paths: Sequence[Path], boundary: Path | None = None, principal: str = ""
) -> CurrentPolicies:
    """Identity policies from policy documents (one per file), and an optional boundary file."""

    def read(p: Path, name: str) -> Policy:
        try:
            raw = json.loads(p.read_text())
        except OSError as exc:
            raise AuthzError(f"cannot read {p}: {exc.strerror or exc}") from None
        except ValueError as exc:
            raise AuthzError(f"{p}: not JSON: {exc}") from None
        except (RecursionError, MemoryError) as exc:
            raise AuthzError(f"{p}: {_too_big(exc)}") from None
        return _policy(_file_document(raw), name, str(p))

    identity = tuple(read(p, f"file:{p.name}") for p in paths)
    bound = read(boundary, f"boundary:{boundary.name}") if boundary is not None else None
    return CurrentPolicies(principal, identity, bound, ", ".join(str(p) for p in paths))


def principal_for(arn: str) -> Principal:
    """A :class:`Principal` for an IAM role or user ARN that has no usage in the data."""
    parts = arn.split(":", 5)
    resource = parts[5] if len(parts) == 6 else arn
    kind = PrincipalKind.USER if resource.startswith("user/") else PrincipalKind.ROLE
    return Principal(arn, kind, parts[4] if len(parts) == 6 else "", resource.rsplit("/", 1)[-1])
