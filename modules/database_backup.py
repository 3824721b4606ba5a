"""The two ways back for the database: daily EBS snapshots (DLM) and nightly pg_dump files in S3.

Snapshots restore the whole volume fast (crash-consistent: the cluster and its WAL share the
volume, so PostgreSQL recovers like after a power cut). Dumps are logical, portable across
versions and instance types, and survive the loss of the volume and its snapshots.
"""

from __future__ import annotations

import json

from cdktf_cdktf_provider_aws.dlm_lifecycle_policy import (
    DlmLifecyclePolicy,
    DlmLifecyclePolicyPolicyDetails,
    DlmLifecyclePolicyPolicyDetailsSchedule,
    DlmLifecyclePolicyPolicyDetailsScheduleCreateRule,
    DlmLifecyclePolicyPolicyDetailsScheduleRetainRule,
)
from cdktf_cdktf_provider_aws.iam_role import IamRole
from cdktf_cdktf_provider_aws.iam_role_policy_attachment import IamRolePolicyAttachment
from cdktf_cdktf_provider_aws.s3_bucket import S3Bucket
from cdktf_cdktf_provider_aws.s3_bucket_lifecycle_configuration import (
    S3BucketLifecycleConfiguration,
    S3BucketLifecycleConfigurationRule,
    S3BucketLifecycleConfigurationRuleAbortIncompleteMultipartUpload,
    S3BucketLifecycleConfigurationRuleExpiration,
    S3BucketLifecycleConfigurationRuleFilter,
    S3BucketLifecycleConfigurationRuleNoncurrentVersionExpiration,
)
from cdktf_cdktf_provider_aws.s3_bucket_ownership_controls import (
    S3BucketOwnershipControls,
    S3BucketOwnershipControlsRule,
)
from cdktf_cdktf_provider_aws.s3_bucket_policy import S3BucketPolicy
from cdktf_cdktf_provider_aws.s3_bucket_public_access_block import S3BucketPublicAccessBlock
from cdktf_cdktf_provider_aws.s3_bucket_server_side_encryption_configuration import (
    S3BucketServerSideEncryptionConfigurationA,
    S3BucketServerSideEncryptionConfigurationRuleA,
    S3BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultA,
)
from cdktf_cdktf_provider_aws.s3_bucket_versioning import (
    S3BucketVersioningA,
    S3BucketVersioningVersioningConfiguration,
)
from constructs import Construct

from modules.kms import EncryptionKey
from modules.settings import EnvironmentSettings


class DatabaseBackup(Construct):
    """Exposes ``bucket`` (the dump bucket), ``policy`` (DLM) and ``target_tags`` (put them on the
    volume that DLM must snapshot)."""

    def __init__(self, scope: Construct, construct_id: str, *, settings: EnvironmentSettings, key: EncryptionKey,
                 tags: dict[str, str]) -> None:  # fmt: skip
        super().__init__(scope, construct_id)
        name = settings.stack_name("db")
        self.target_tags = {"Snapshots": f"{name}-daily"}
        self._snapshots(settings, name, key.partition, tags)
        self._dump_bucket(settings, key, tags)

    def _snapshots(self, settings: EnvironmentSettings, name: str, partition: str, tags: dict[str, str]) -> None:
        db = settings.database
        role = IamRole(
            self, "dlm-role", name=f"{name}-dlm", tags=tags,
            assume_role_policy=json.dumps({"Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Principal": {"Service": "dlm.amazonaws.com"}, "Action": "sts:AssumeRole",
            }]}),
        )  # fmt: skip
        IamRolePolicyAttachment(
            self, "dlm-policy", role=role.name,
            policy_arn=f"arn:{partition}:iam::aws:policy/service-role/AWSDataLifecycleManagerServiceRole",
        )  # fmt: skip
        self.policy = DlmLifecyclePolicy(
            self, "snapshots", description=f"Daily snapshots of the {settings.name} database volume",
            execution_role_arn=role.arn, state="ENABLED", tags=tags,
            policy_details=DlmLifecyclePolicyPolicyDetails(
                resource_types=["VOLUME"], target_tags=self.target_tags,
                schedule=[DlmLifecyclePolicyPolicyDetailsSchedule(
                    name=f"daily-{db.snapshot_retention_days}d", copy_tags=True,
                    tags_to_add={"SnapshotCreator": "DLM", "Component": settings.component(db.id)},
                    create_rule=DlmLifecyclePolicyPolicyDetailsScheduleCreateRule(
                        interval=24, interval_unit="HOURS", times=[db.snapshot_time_utc],
                    ),
                    retain_rule=DlmLifecyclePolicyPolicyDetailsScheduleRetainRule(
                        interval=db.snapshot_retention_days, interval_unit="DAYS",
                    ),
                )],
            ),
        )  # fmt: skip

    def _dump_bucket(self, settings: EnvironmentSettings, key: EncryptionKey, tags: dict[str, str]) -> None:
        db = settings.database
        tags = {**tags, "Name": db.dump_bucket}
        self.bucket = S3Bucket(self, "dumps", bucket=db.dump_bucket, force_destroy=False, tags=tags)
        S3BucketVersioningA(
            self, "dumps-versioning", bucket=self.bucket.id,
            versioning_configuration=S3BucketVersioningVersioningConfiguration(status="Enabled"),
        )  # fmt: skip
        S3BucketServerSideEncryptionConfigurationA(
            self, "dumps-encryption", bucket=self.bucket.id,
            rule=[S3BucketServerSideEncryptionConfigurationRuleA(
                apply_server_side_encryption_by_default=(
                    S3BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultA(
                        sse_algorithm="aws:kms", kms_master_key_id=key.arn,
                    )
                ),
                bucket_key_enabled=True,
            )],
        )  # fmt: skip
        S3BucketPublicAccessBlock(
            self, "dumps-public-access", bucket=self.bucket.id, block_public_acls=True, block_public_policy=True,
            ignore_public_acls=True, restrict_public_buckets=True,
        )  # fmt: skip
        S3BucketOwnershipControls(
            self, "dumps-ownership", bucket=self.bucket.id,
            rule=S3BucketOwnershipControlsRule(object_ownership="BucketOwnerEnforced"),
        )  # fmt: skip
        S3BucketPolicy(
            self, "dumps-policy", bucket=self.bucket.id,
            policy=json.dumps({"Version": "2012-10-17", "Statement": [{
                "Sid": "DenyInsecureTransport", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
                "Resource": [self.bucket.arn, f"{self.bucket.arn}/*"],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            }]}),
        )  # fmt: skip
        S3BucketLifecycleConfiguration(
            self, "dumps-lifecycle", bucket=self.bucket.id,
            rule=[S3BucketLifecycleConfigurationRule(
                id="expire-old-dumps", status="Enabled",
                filter=[S3BucketLifecycleConfigurationRuleFilter(prefix="")],
                expiration=[S3BucketLifecycleConfigurationRuleExpiration(days=db.dump_retention_days)],
                noncurrent_version_expiration=[S3BucketLifecycleConfigurationRuleNoncurrentVersionExpiration(
                    noncurrent_days=db.dump_noncurrent_days,
                )],
                abort_incomplete_multipart_upload=[
                    S3BucketLifecycleConfigurationRuleAbortIncompleteMultipartUpload(days_after_initiation=1)
                ],
            )],
        )  # fmt: skip
