"""Who made a call."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class PrincipalKind(StrEnum):
    ROLE = "role"  # IAM role, reached through an assumed-role session
    SSO_ROLE = "sso-role"  # IAM Identity Center permission-set role (AWSReservedSSO_*)
    USER = "user"  # IAM user
    ROOT = "root"  # the account root user
    FEDERATED_USER = "federated-user"  # sts:GetFederationToken session
    SAML_USER = "saml-user"  # caller of sts:AssumeRoleWithSAML
    WEB_IDENTITY_USER = "web-identity-user"  # caller of sts:AssumeRoleWithWebIdentity
    IDENTITY_CENTER_USER = "identity-center-user"  # IAM Identity Center user (portal/OIDC calls)


@dataclass(frozen=True, slots=True, order=True)
class Principal:
    """A principal whose permissions iamtrim can reason about.

    ``arn`` is the IAM ARN the policies attach to (a role ARN *with its path*, never the
    ``sts:assumed-role`` session ARN). For principals without an IAM ARN (SAML / web-identity
    callers) it is a stable identifier ``<provider>:<subject>``.
    """

    arn: str
    kind: PrincipalKind
    account: str
    name: str

    @property
    def is_iam(self) -> bool:
        return self.arn.startswith("arn:")
