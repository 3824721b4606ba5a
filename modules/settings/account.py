"""The ``[account]`` section: the AWS account an environment lives in, and what exists once per account."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, field_validator

from modules.settings.fields import _DYNAMODB_TABLE, _ENV_NAME, _REGION, BucketName, _Model, _pattern
from modules.settings.network import check_room_for_access_logs

_ACCOUNT_ID = re.compile(r"^[0-9]{12}$")
# The account stack's name part and its resources' Environment tag: no environment may be called so.
ACCOUNT_SCOPE = "account"

# The fields every environment of one account must agree on (check_across): they configure the one account
# stack (modules/account.py) that the environments of that account share.
ACCOUNT_WIDE_FIELDS = (
    "github_oidc_provider", "region", "state_bucket", "lock_table", "own_backend",
    "noncurrent_version_expiration_days", "deletion_protection",
)  # fmt: skip


def _account_id(value: object) -> object:
    """A string of exactly 12 digits. TOML has no integers with leading zeros, and AWS account IDs have them,
    so an integer is refused with the fix rather than converted (000123456789 would silently lose digits)."""
    if isinstance(value, bool) or not isinstance(value, str):
        raise ValueError(
            f"{value!r} is not a string; write the 12-digit AWS account ID in quotes, e.g. id = \"111122223333\" "
            "(TOML integers drop leading zeros)"
        )
    if not _ACCOUNT_ID.match(value):
        raise ValueError(f"'{value}' is not an AWS account ID; use exactly 12 digits in quotes, e.g. \"111122223333\"")
    return value


AccountId = Annotated[str, BeforeValidator(_account_id)]


class AccountSettings(_Model):
    """The AWS account of the environment (one per environment is the recommended layout, docs/ci-cd.md
    "Accounts") and the account stack ``<project>-account-<id>`` that owns what exists once per account."""

    id: AccountId = Field(
        description="The 12-digit AWS account ID, in quotes. Every provider and S3 backend of the environment's "
        "stacks refuses any other account (allowed_account_ids)."
    )
    github_oidc_provider: Literal["create", "existing"] = Field(
        default="create",
        description="'create': the account stack creates the account's GitHub OIDC provider; 'existing': one "
        "exists already (made outside these stacks), and is used by its ARN, which the account ID determines.",
    )
    region: Annotated[str, _pattern(_REGION, "an AWS region code such as 'sa-east-1'")] = Field(
        default="sa-east-1", description="Region of the account stack's state bucket, lock table and key."
    )
    state_bucket: BucketName = Field(
        description="Globally unique S3 bucket for the account stack's own state, apart from every environment's "
        "state, so destroying an environment never touches it."
    )
    lock_table: Annotated[str, _pattern(_DYNAMODB_TABLE, "a DynamoDB table name (3-255 of A-Z a-z 0-9 _ . -)")] = (
        Field(default="twentycrm-account-tflock", description="DynamoDB lock table of the account stack's state.")
    )
    own_backend: Literal["local", "s3"] = Field(
        default="local",
        description="Where the account stack keeps its state: 'local' to bootstrap, 's3' once migrated into "
        "state_bucket by scripts/bootstrap (docs/implementation-guide.md, \"First deploy\").",
    )
    noncurrent_version_expiration_days: int = Field(
        default=90, ge=1, le=3650, description="Days an overwritten version of the account stack's state is kept."
    )

    deletion_protection: bool = Field(
        default=True,
        description="DynamoDB deletion protection on the account stack's lock table; false also lets a destroy "
        "empty its state bucket (force_destroy). Set false only to tear the account stack down "
        "(docs/implementation-guide.md, \"Tear down an account stack\").",
    )
    shared_with: list[Annotated[str, Field(pattern=_ENV_NAME.pattern)]] = Field(
        default_factory=list,
        description="The other environments (by file name) that live in this same account. Two files with one "
        "account id must each list the other, so that sharing is a decision, never a copied id.",
    )

    _room_for_access_logs = field_validator("state_bucket")(check_room_for_access_logs)

    def oidc_provider_arn(self, partition: str) -> str:
        return f"arn:{partition}:iam::{self.id}:oidc-provider/token.actions.githubusercontent.com"
