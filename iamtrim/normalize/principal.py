"""userIdentity → the principal whose policies allowed the call.

Reference: https://docs.aws.amazon.com/awscloudtrail/latest/userguide/cloudtrail-event-reference-user-identity.html
"""

from __future__ import annotations

from collections.abc import Iterable

from iamtrim.model import Principal, PrincipalKind, Skipped, SkipReason
from iamtrim.sources.records import UserIdentity


def _name_of(arn: str) -> str:
    return arn.rsplit("/", 1)[-1] if "/" in arn else arn.rsplit(":", 1)[-1]


def _role_from_session_arn(arn: str) -> str | None:
    """``arn:aws:sts::A:assumed-role/Name/session`` → ``arn:aws:iam::A:role/Name`` (path unknown)."""
    parts = arn.split(":", 5)
    if len(parts) != 6 or not parts[5].startswith("assumed-role/"):
        return None
    name = parts[5].split("/")[1]
    return f"arn:{parts[1]}:iam::{parts[4]}:role/{name}"


def _is_arn(text: str) -> bool:
    """``arn:partition:service:region:account:resource``: a hand-edited or damaged record may
    hold anything, and one bad record is skipped, never an exception."""
    return text.startswith("arn:") and text.count(":") >= 5


def _role_kind(role_arn: str) -> PrincipalKind:
    # Identity Center permission sets are provisioned as roles named AWSReservedSSO_<set>_<hash>
    # under path /aws-reserved/sso.amazonaws.com/ (https://docs.aws.amazon.com/singlesignon/latest/userguide/using-service-linked-roles.html)
    return PrincipalKind.SSO_ROLE if _name_of(role_arn).startswith("AWSReservedSSO_") else PrincipalKind.ROLE


def resolve_principal(ui: UserIdentity | None) -> Principal | Skipped:
    if ui is None or not ui.type:
        if ui is not None and ui.arn:
            return _from_arn(ui.arn, ui.accountId)
        return Skipped(SkipReason.NO_IDENTITY, "userIdentity missing")
    kind = ui.type
    if kind == "AssumedRole":
        issuer = ui.sessionContext.sessionIssuer if ui.sessionContext else None
        # The issuer ARN carries the role's path (role/service-role/Name); the session ARN does not.
        role_arn = (
            issuer.arn if issuer and issuer.arn and ":role/" in issuer.arn and _is_arn(issuer.arn) else None
        )
        if role_arn is None and ui.arn:
            role_arn = _role_from_session_arn(ui.arn)
        if role_arn is None:
            return Skipped(SkipReason.NO_IDENTITY, "assumed role without role ARN")
        return Principal(role_arn, _role_kind(role_arn), role_arn.split(":")[4], _name_of(role_arn))
    if kind == "IAMUser":
        if not ui.arn or not _is_arn(ui.arn):
            return Skipped(SkipReason.NO_IDENTITY, "IAM user without ARN")
        return Principal(ui.arn, PrincipalKind.USER, ui.arn.split(":")[4], _name_of(ui.arn))
    if kind == "Root":
        arn_ok = bool(ui.arn) and _is_arn(ui.arn or "")
        account = ui.accountId or (ui.arn.split(":")[4] if ui.arn and arn_ok else "")
        if not account:
            return Skipped(SkipReason.NO_IDENTITY, "root without account")
        partition = ui.arn.split(":")[1] if ui.arn and arn_ok else "aws"
        return Principal(f"arn:{partition}:iam::{account}:root", PrincipalKind.ROOT, account, "root")
    if kind == "FederatedUser":
        if not ui.arn or not _is_arn(ui.arn):
            return Skipped(SkipReason.NO_IDENTITY, "federated user without ARN")
        return Principal(ui.arn, PrincipalKind.FEDERATED_USER, ui.arn.split(":")[4], _name_of(ui.arn))
    if kind in ("SAMLUser", "WebIdentityUser"):
        # For web identity, identityProvider is the issuer (accounts.google.com,
        # token.actions.githubusercontent.com) or the IAM OIDC provider's ARN; for SAML it is the
        # NameQualifier hash, which saml_named() replaces by the provider's name where the record
        # names it. https://docs.aws.amazon.com/awscloudtrail/latest/userguide/cloudtrail-event-reference-user-identity.html#STS-API-SAML-WIF
        provider = _provider_name(ui.identityProvider or "") or "unknown-provider"
        subject = ui.userName or ui.principalId or "unknown"
        pk = PrincipalKind.SAML_USER if kind == "SAMLUser" else PrincipalKind.WEB_IDENTITY_USER
        return Principal(f"{provider}:{subject}", pk, ui.accountId or "", subject)
    if kind == "IdentityCenterUser":
        subject = ui.userName or ui.principalId or "unknown"
        return Principal(
            f"identitycenter:{subject}", PrincipalKind.IDENTITY_CENTER_USER, ui.accountId or "", subject
        )
    if kind == "AWSService":
        return Skipped(SkipReason.SERVICE_PRINCIPAL, ui.invokedBy or "")
    if kind == "AWSAccount":
        if ui.arn:
            return _from_arn(ui.arn, ui.accountId)
        return Skipped(SkipReason.CROSS_ACCOUNT_UNNAMED, ui.accountId or "")
    if kind == "Unknown":
        # Identity Center / anonymous callers logged without details.
        return Skipped(SkipReason.NO_IDENTITY, "userIdentity type Unknown")
    if kind == "Anonymous":
        return Skipped(SkipReason.ANONYMOUS, "")
    if ui.arn:
        return _from_arn(ui.arn, ui.accountId)
    return Skipped(SkipReason.NO_IDENTITY, f"userIdentity type {kind}")


def _provider_name(provider: str) -> str:
    """An IAM identity provider's ARN → ``saml-provider/NAME`` / ``oidc-provider/HOST``: a
    federated caller's identifier must never read as an IAM ARN (policies attach to none)."""
    if provider.startswith("arn:"):
        return provider.split(":", 5)[-1]
    return provider


def saml_named(principal: Principal, provider_arns: Iterable[str]) -> Principal:
    """A SAML caller by its provider's name: ``saml-provider/AcmeOkta:jane@acme.example`` instead
    of the NameQualifier hash (BASE64(SHA1(issuer + account + "/" + provider name))), when the
    AssumeRoleWithSAML record names the provider (``resources``, ``requestParameters.principalArn``).
    https://docs.aws.amazon.com/STS/latest/APIReference/API_AssumeRoleWithSAML.html"""
    for arn in provider_arns:
        if ":saml-provider/" in arn:
            parts = arn.split(":")
            # SAMLUser identities carry no accountId; the provider's ARN names its account.
            account = principal.account or (parts[4] if len(parts) > 5 else "")
            return Principal(
                f"{_provider_name(arn)}:{principal.name}", principal.kind, account, principal.name
            )
    return principal


def _from_arn(arn: str, account: str | None) -> Principal | Skipped:
    role = _role_from_session_arn(arn)
    if role:
        return Principal(role, _role_kind(role), role.split(":")[4], _name_of(role))
    parts = arn.split(":", 5)
    if len(parts) != 6:
        return Skipped(SkipReason.NO_IDENTITY, "unparseable principal ARN")
    if parts[5].startswith("user/"):
        return Principal(arn, PrincipalKind.USER, parts[4], _name_of(arn))
    if parts[5] == "root":
        return Principal(arn, PrincipalKind.ROOT, parts[4], "root")
    if parts[5].startswith("role/"):
        return Principal(arn, _role_kind(arn), parts[4], _name_of(arn))
    return Skipped(SkipReason.NO_IDENTITY, "principal ARN of unknown kind")
