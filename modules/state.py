"""The Terraform state of one environment: an S3 bucket, a DynamoDB lock table and their KMS key.

Modelled on terraform-aws-modules/s3-bucket's secure defaults: versioned, SSE-KMS with a rotating
customer key, every public-access-block flag on, ACLs disabled, TLS-only, old versions expire.
"""

from __future__ import annotations

from cdktf_cdktf_provider_aws.dynamodb_table import (
    DynamodbTable,
    DynamodbTableAttribute,
    DynamodbTablePointInTimeRecovery,
    DynamodbTableServerSideEncryption,
)
from constructs import Construct

from modules.kms import EncryptionKey
from modules.private_bucket import private_bucket
from modules.settings import EnvironmentSettings

STATE_COMPONENT = "terraform-state"  # not in the document; the tag still pairs it with the environment


class TerraformState(Construct):
    """A state bucket, its lock table and the key that encrypts both: an environment's (``for_environment``)
    or an account stack's (modules/account.py).

    Exposes ``bucket``, ``lock_table`` and ``key`` for the stacks that use them.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        bucket_name: str,
        lock_table_name: str,
        key_alias: str,
        description: str,
        noncurrent_days: int,
        deletion_protection: bool,
        tags: dict[str, str],
    ) -> None:
        super().__init__(scope, construct_id)
        self.key = EncryptionKey(self, "key", alias=key_alias, description=description, tags=tags)
        self.bucket = private_bucket(
            self,
            "bucket",
            bucket_name=bucket_name,
            tags=tags,
            kms_key_arn=self.key.arn,
            lifecycle_rule_id="expire-old-state-versions",
            noncurrent_days=noncurrent_days,
        ).bucket

        self.lock_table = DynamodbTable(
            self,
            "lock-table",
            name=lock_table_name,
            billing_mode="PAY_PER_REQUEST",
            hash_key="LockID",
            attribute=[DynamodbTableAttribute(name="LockID", type="S")],
            point_in_time_recovery=DynamodbTablePointInTimeRecovery(enabled=True),
            server_side_encryption=DynamodbTableServerSideEncryption(enabled=True, kms_key_arn=self.key.arn),
            deletion_protection_enabled=deletion_protection,
            tags=tags,
        )

    @classmethod
    def for_environment(cls, scope: Construct, construct_id: str, *, settings: EnvironmentSettings) -> "TerraformState":
        state = settings.state
        return cls(
            scope,
            construct_id,
            bucket_name=state.bucket,
            lock_table_name=state.lock_table,
            key_alias=settings.stack_name("tfstate"),
            description=f"Encrypts the Terraform state and locks of {settings.name}",
            noncurrent_days=state.noncurrent_version_expiration_days,
            deletion_protection=state.deletion_protection,
            tags={"Component": settings.component(STATE_COMPONENT)},
        )
