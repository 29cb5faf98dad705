"""The one exception tree of iamtrim.

    IamtrimError                 base; the CLI turns it into a one-line message and an exit code
     ├── InputError              bad input the run cannot go on without (exit 4)
     │    ├── NoReadableInput    nothing at all could be read from the given paths
     │    ├── PolicyError        a policy document that is not valid IAM policy grammar
     │    ├── AuthzError         an authorization-details or --current file that says nothing usable
     │    ├── SuppressionError   a review suppressions file that cannot be read or is invalid
     │    └── AccountsFileError  a review --accounts file that cannot be read or is invalid
     ├── PrincipalError          unknown / ambiguous principal, no usage (exit 2)
     ├── OptionsError            options that do not go together, a required choice not made (exit 2)
     ├── BucketError             nothing observed on the bucket, or options that cannot describe it
     │                           (exit 2)
     ├── KeyPolicyError          unknown or ambiguous KMS key, or a key nobody was seen using (exit 2)
     ├── StoreError              the usage store is unusable: not iamtrim's, locked, read-only,
     │                           full, damaged (exit 4, one line naming the file)
     ├── AwsError                a wrapped botocore/boto3 failure (exit 3)
     ├── SynthError              a policy that cannot be emitted without breaking an observed call
     │    │                      or IAM's limits (exit 1)
     │    └── LockoutError       a resource policy that would lock out a break-glass principal
     ├── SizeLimitError          no policy set within --max-policies meets IAM's size limits (exit 1)
     └── FailOnFindings          findings at or above --fail-on; the report was printed (exit 1)

One bad record or one bad file is never an exception: it becomes a counted ``Skipped``.

Two private control-flow exceptions stay in their modules and never leave them:
``_FileFailed`` (iamtrim/ingest.py: a worker's file failed, already recorded in its report) and
``_TooLarge`` (iamtrim/sources/files.py: a file decompresses past the size limit, turned into a
skip reason). Nothing outside this module defines a public exception (tests/test_errors.py).
"""

from __future__ import annotations


class IamtrimError(Exception):
    """Base of every error iamtrim raises on purpose."""

    exit_code = 1


class InputError(IamtrimError):
    exit_code = 4


class NoReadableInput(InputError):
    pass


class PolicyError(InputError):
    """A policy document that does not follow the IAM JSON policy grammar.

    https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_grammar.html
    """


class PrincipalError(IamtrimError):
    exit_code = 2

    def __init__(self, message: str, candidates: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.candidates = candidates


class StoreError(IamtrimError):
    exit_code = 4


class AwsError(IamtrimError):
    exit_code = 3


class AuthzError(InputError):
    """A GetAccountAuthorizationDetails file (or a --current policy file) that cannot be read or
    does not say what the principal's policies are (exit 4).

    https://docs.aws.amazon.com/IAM/latest/APIReference/API_GetAccountAuthorizationDetails.html
    """


class FailOnFindings(IamtrimError):
    """Entries at or above ``--fail-on`` exist (exit 1); the report itself was printed."""

    exit_code = 1


class SuppressionError(InputError):
    """A suppressions file that cannot be read or says something invalid (exit 4)."""


class AccountsFileError(InputError):
    """An accounts file (``review --accounts``) that cannot be read or says something invalid
    (exit 4)."""


class OptionsError(IamtrimError):
    """Options that do not go together, or a required choice not made (exit 2)."""

    exit_code = 2


class BucketError(IamtrimError):
    """Nothing observed on the bucket, or options that cannot describe it (exit 2)."""

    exit_code = 2


class KeyPolicyError(IamtrimError):
    """Unknown or ambiguous key, or a key nobody was seen using (exit 2)."""

    exit_code = 2


class SynthError(IamtrimError):
    """A policy that cannot be emitted without breaking an observed call or IAM's limits."""

    exit_code = 1


class LockoutError(SynthError):
    """The generated policy would deny a break-glass principal or the root the bucket policy."""


class SizeLimitError(IamtrimError):
    """No set of at most ``--max-policies`` policies meets IAM's size limits (exit 1).

    https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html
    """

    exit_code = 1
