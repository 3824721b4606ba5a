"""The Terraform state of one environment: an S3 bucket, a DynamoDB lock table and their KMS key.

Modelled on terraform-aws-modules/s3-bucket's secure defaults: versioned, SSE-KMS with a rotating
customer key, every public-access-block flag on, ACLs disabled, TLS-only, old versions expire. Beside them,
``<bucket>-access-logs`` receives the S3 server access logs of the state bucket and, for an environment, of its
other buckets (created here, first, so it exists before the platform and apps stacks point their buckets at it).
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
from modules.private_bucket import private_bucket, server_access_log_bucket
from modules.settings import EnvironmentSettings
from modules.settings.network import access_log_bucket_for

STATE_COMPONENT = "terraform-state"  # not in the document; the tag still pairs it with the environment


class TerraformState(Construct):
    """A state bucket, its lock table and the key that encrypts both: an environment's (``for_environment``)
    or an account stack's (modules/account.py), and the bucket of their S3 server access logs.

    Exposes ``bucket``, ``lock_table``, ``key`` and ``access_logs`` (the log bucket's PrivateBucket) for the stacks that use them.
    ``logged_buckets``: the names of other buckets (same account and region) that send their access logs here.
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
        logged_buckets: tuple[str, ...] = (),
        access_log_retention_days: int = 365,
    ) -> None:
        super().__init__(scope, construct_id)
        self.key = EncryptionKey(self, "key", alias=key_alias, description=description, tags=tags)
        log_bucket_name = access_log_bucket_for(bucket_name)
        self.access_logs = server_access_log_bucket(
            self,
            "access-logs",
            bucket_name=log_bucket_name,
            source_buckets=[bucket_name, *logged_buckets],
            account_id=self.key.account_id,
            partition=self.key.partition,
            retention_days=access_log_retention_days,
            tags={**tags, "Name": log_bucket_name},
            # Protected with the lock table: while on, a destroy stops at a bucket that holds logs.
            force_destroy=not deletion_protection,
        )
        self.bucket = private_bucket(
            self,
            "bucket",
            bucket_name=bucket_name,
            tags=tags,
            kms_key_arn=self.key.arn,
            lifecycle_rule_id="expire-old-state-versions",
            noncurrent_days=noncurrent_days,
            access_log_bucket=self.access_logs,
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
            logged_buckets=(settings.load_balancer.access_log_bucket, settings.database.dump_bucket,
                            settings.apps.files_bucket),  # fmt: skip
            access_log_retention_days=state.access_log_retention_days,
        )
