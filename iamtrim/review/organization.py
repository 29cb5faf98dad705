"""The review of several accounts: ``iamtrim review --accounts FILE``.

Each account is read through a role assumed in it (STS ``AssumeRole``, the ``--role-arn``
machinery of :mod:`iamtrim.aws`): its ``GetAccountAuthorizationDetails``, then the store's
principals of that account are reviewed against it. One account that cannot be read (the role
is missing, its trust policy refuses the caller, the role may not read IAM) is reported with its
one-line error, its principals' earlier findings are kept as they were, and the other accounts go
on. https://docs.aws.amazon.com/organizations/latest/userguide/orgs_manage_accounts_access.html

The accounts file, JSON or YAML (schema in docs/commands/review.md)::

    role: iamtrim-review              # the role's name (or path/name) in every account
    accounts:
      - id: "111122223333"
        name: prod
      - id: "444455556666"
        role_arn: arn:aws:iam::444455556666:role/security/iamtrim-review   # this one's own role
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from iamtrim import catalog
from iamtrim.errors import AccountsFileError, AuthzError, AwsError, OptionsError
from iamtrim.review.current import AuthzDetails
from iamtrim.review.job import (
    REVIEWED_KINDS,
    AccountResult,
    Review,
    ReviewOptions,
    inputs_and_digest,
    review_part,
    window_and_caveats,
)
from iamtrim.store import Store

if TYPE_CHECKING:
    from iamtrim.aws import Aws, AwsConfig

__all__ = [
    "AccountSpec",
    "AccountsFileError",
    "Fetch",
    "aws_fetch",
    "load_accounts",
    "not_reviewed",
    "prefetch",
    "prepare_review",
    "review_accounts",
]

# https://docs.aws.amazon.com/accounts/latest/reference/manage-acct-identifiers.html (12 digits)
_ACCOUNT = re.compile(r"^\d{12}$")
# arn:PARTITION:iam::ACCOUNT:role/PATH/NAME
# https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_identifiers.html#identifiers-arns
_ROLE_ARN = re.compile(r"^arn:(aws|aws-cn|aws-us-gov|aws-iso[a-z-]*):iam::(\d{12}):role/[\w+=,.@/-]{1,512}$")
_ROLE_NAME = re.compile(r"^[\w+=,.@/-]{1,512}$")
_PARTITIONS = ("aws", "aws-cn", "aws-us-gov", "aws-iso", "aws-iso-b", "aws-iso-e", "aws-iso-f")


@dataclass(frozen=True, slots=True)
class AccountSpec:
    account: str  # 12-digit account id
    role_arn: str  # the role to assume in it
    name: str = ""  # a label for reports


Fetch = Callable[[AccountSpec], AuthzDetails]


def _read(path: Path) -> object:
    try:
        text = path.read_text()
    except OSError as exc:
        raise AccountsFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:  # pragma: no cover - policy_sentry depends on PyYAML
            raise AccountsFileError(f"{path}: YAML needs PyYAML; write the file as JSON") from None
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise AccountsFileError(f"{path}: not YAML: {str(exc).splitlines()[0]}") from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise AccountsFileError(f"{path}: not JSON: {exc}") from None


def _text(entry: Mapping[str, object], key: str, where: str) -> str:
    value = entry.get(key, "")
    if isinstance(value, bool) or not isinstance(value, str):
        # YAML reads an unquoted 12-digit id as a number (and one with a leading 0 as octal).
        hint = " (quote it: YAML read it as a number)" if isinstance(value, int | float) else ""
        raise AccountsFileError(f"{where}: '{key}' must be a string{hint}")
    return value


def load_accounts(path: Path) -> tuple[AccountSpec, ...]:
    """The accounts of *path*, checked: ids of 12 digits, each once, and a role for each (its
    own ``role_arn`` in that account, or the file's ``role`` name)."""
    data = _read(path)
    if isinstance(data, list):
        data = {"accounts": data}
    if not isinstance(data, Mapping) or not isinstance(data.get("accounts"), list) or not data["accounts"]:
        raise AccountsFileError(f"{path}: expected {{'accounts': [...]}} with at least one account")
    unknown = sorted(set(data) - {"role", "partition", "accounts"})
    if unknown:
        raise AccountsFileError(f"{path}: unknown key(s) {', '.join(map(repr, unknown))}")
    role = _text(data, "role", f"{path}") if "role" in data else ""
    if role and not _ROLE_NAME.match(role.strip("/")):
        raise AccountsFileError(f"{path}: 'role' must be a role name or path/name, not {role!r}")
    partition = _text(data, "partition", f"{path}") if "partition" in data else "aws"
    if partition not in _PARTITIONS:
        raise AccountsFileError(f"{path}: unknown partition {partition!r} ({', '.join(_PARTITIONS)})")
    out: dict[str, AccountSpec] = {}
    for i, item in enumerate(data["accounts"]):
        where = f"{path}: account {i + 1}"
        if isinstance(item, str | int) and not isinstance(item, bool):
            item = {"id": item}
        if not isinstance(item, Mapping):
            raise AccountsFileError(f"{where}: must be an account id or an object")
        extra = sorted(set(item) - {"id", "name", "role_arn"})
        if extra:
            raise AccountsFileError(f"{where}: unknown key(s) {', '.join(map(repr, extra))}")
        account = _text(item, "id", where)
        if not _ACCOUNT.match(account):
            raise AccountsFileError(f"{where}: 'id' must be a 12-digit account id, not {account!r}")
        if account in out:
            raise AccountsFileError(f"{where}: account {account} is listed twice")
        name = _text(item, "name", where) if "name" in item else ""
        if "role_arn" in item:
            arn = _text(item, "role_arn", where)
            m = _ROLE_ARN.match(arn)
            if not m:
                raise AccountsFileError(f"{where}: 'role_arn' is not a role ARN: {arn!r}")
            if m.group(2) != account:
                raise AccountsFileError(f"{where}: 'role_arn' {arn} is not in account {account}")
        elif role:
            arn = f"arn:{partition}:iam::{account}:role/{role.strip('/')}"
        else:
            raise AccountsFileError(
                f"{where}: no role to assume: give 'role_arn', or 'role' for every account"
            )
        out[account] = AccountSpec(account, arn, name)
    return tuple(sorted(out.values(), key=lambda a: a.account))


def review_accounts(
    store: Store,
    accounts: Sequence[AccountSpec],
    fetch: Fetch,
    options: ReviewOptions | None = None,
    origin: str = "",
) -> Review:
    """Review each account's principals of *store* against its authorization details, which
    *fetch* reads (through the account's role). An account *fetch* fails for (an
    :class:`~iamtrim.errors.AwsError` or an unreadable response) is kept in the result with its
    error; the others go on. *origin* names the accounts file in the inputs."""
    options = options or ReviewOptions()
    wanted = {a.account for a in accounts}
    named = [p for p in options.principals if not p.startswith("arn:")]
    if named:
        raise OptionsError(f"review --accounts: give --principal as an ARN (not {named[0]!r})")
    parts = []
    results = []
    lines = [f"accounts: {origin or 'given'} ({len(accounts)} account(s))"]
    hashed = []
    missing = sorted({p for p in options.principals if p.split(":")[4:5] and p.split(":")[4] not in wanted})
    if missing:
        raise OptionsError(f"review --accounts: {missing[0]} is not in an account of the accounts file")
    for spec in accounts:
        own = dataclasses.replace(
            options, principals=tuple(p for p in options.principals if p.split(":")[4:5] == [spec.account])
        )
        try:
            authz = fetch(spec)
            # --principal ARNs of other accounts only: nothing of this one is reviewed.
            part = (
                review_part(store, authz, own, spec.account)
                if own.principals or not options.principals
                else None
            )
        except (AwsError, AuthzError) as exc:
            # Not read, or what it returned cannot be read (a policy document that is not JSON):
            # this account is reported, the others go on.
            results.append(AccountResult(spec.account, spec.name, spec.role_arn, "", "", str(exc), ()))
            lines.append(f"account {spec.account}: not reviewed: {exc}")
            hashed.append(f"{spec.account}:failed:{exc}")
            continue
        if part is not None:
            parts.append(part)
        arns = tuple(p.principal for p in part.principals) if part else ()
        results.append(
            AccountResult(spec.account, spec.name, spec.role_arn, authz.source, authz.uri, "", arns)
        )
        lines.append(f"account {spec.account}: {authz.source} (sha256 {authz.sha256[:12]})")
        hashed.append(f"{spec.account}:{authz.sha256}")
    first, last, caveats = window_and_caveats(parts, options)
    failed = [r for r in results if r.error]
    caveats += [
        f"account {r.account}{f' ({r.name})' if r.name else ''} was not reviewed: {r.error}; the "
        "earlier findings of its principals are kept as they were"
        for r in failed
    ]
    elsewhere = sorted(
        {p.account for p in store.principals() if p.account not in wanted and p.kind in REVIEWED_KINDS}
    )
    if elsewhere:
        caveats.append(
            f"the store holds roles or users of {len(elsewhere)} account(s) not in the accounts file "
            f"({', '.join(elsewhere[:5])}{', …' if len(elsewhere) > 5 else ''}): not reviewed"
        )
    inputs, digest = inputs_and_digest(store, lines, hashed, options)
    return Review(
        principals=tuple(p for part in parts for p in part.principals),
        authz=origin or "accounts",
        inputs=inputs,
        inputs_digest=digest,
        window=f"{first}..{last}" if first else "",
        catalog=catalog.catalog_version(),
        caveats=tuple(caveats),
        skipped=tuple(s for part in parts for s in part.skipped_by_filter),
        accounts=tuple(results),
    )


def aws_fetch(base: AwsConfig) -> Fetch:
    """Read each account's authorization details through its role, with *base*'s profile,
    region and endpoint as the caller's (a fresh session per account: no credentials shared)."""
    from iamtrim.aws import Aws
    from iamtrim.review.current import authz_from_aws

    def fetch(spec: AccountSpec) -> AuthzDetails:
        config = dataclasses.replace(base, role_arn=spec.role_arn, session_name="iamtrim-review")
        return authz_from_aws(Aws(config), via=spec.role_arn)

    return fetch


def prefetch(accounts: Sequence[AccountSpec], fetch: Fetch) -> Fetch:
    """Read every account now (before the store is locked for the review), and replay what each
    gave, its authorization details or its error, when the review asks."""
    got: dict[str, AuthzDetails | AwsError | AuthzError] = {}
    for spec in accounts:
        try:
            got[spec.account] = fetch(spec)
        except (AwsError, AuthzError) as exc:
            got[spec.account] = exc

    def replay(spec: AccountSpec) -> AuthzDetails:
        out = got[spec.account]
        if isinstance(out, AuthzDetails):
            return out
        raise out

    return replay


def not_reviewed(result: Review) -> str:
    """The one line that says which accounts could not be reviewed (the run exits 3)."""
    failed = result.failed_accounts
    first = failed[0]
    return (
        f"review: {len(failed)} of {len(result.accounts)} account(s) not reviewed (the report says why); "
        f"{first.account}: {first.error}"
    )


def prepare_review(
    options: ReviewOptions,
    *,
    authz: Path | None = None,
    aws: Aws | None = None,
    via: str = "",
    accounts: Sequence[AccountSpec] = (),
    origin: str = "",
) -> Callable[[Store], Review]:
    """Read the current policies now — an ``--authz`` file, the account *aws* reaches (through the
    role *via*), or each of *accounts* through its role with *aws*'s profile, region and endpoint —
    and return the review of a store against them. AWS is read before the store is locked for the
    review; an account that fails is kept with its error (a failure of ``--from-aws`` raises)."""
    from iamtrim.review.current import authz_from_aws
    from iamtrim.review.job import review

    if accounts:
        if aws is None:
            raise OptionsError("review --accounts: no AWS configuration to reach the accounts with")
        fetched = prefetch(accounts, aws_fetch(aws.config))
        return lambda store: review_accounts(store, accounts, fetched, options, origin)
    source: Path | AuthzDetails
    if aws is not None:
        source = authz_from_aws(aws, via)
    elif authz is not None:
        source = authz
    else:
        raise OptionsError("review: give --authz FILE, --from-aws or --accounts FILE")
    return lambda store: review(store, source, options)
