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
from constructs import Construct

from modules.boundary import workload_boundary_arn
from modules.kms import EncryptionKey
from modules.private_bucket import private_bucket
from modules.settings import EnvironmentSettings


class DatabaseBackup(Construct):
    """Exposes ``bucket`` (the dump bucket), ``policy`` (DLM) and ``target_tags`` (put them on the
    volume that DLM must snapshot)."""

    def __init__(self, scope: Construct, construct_id: str, *, settings: EnvironmentSettings, key: EncryptionKey,
                 tags: dict[str, str]) -> None:  # fmt: skip
        super().__init__(scope, construct_id)
        name = settings.stack_name("db")
        self.target_tags = {"Snapshots": f"{name}-daily"}
        self._account = key.account_id
        self._snapshots(settings, name, key.partition, tags)
        self._dump_bucket(settings, key, tags)

    def _snapshots(self, settings: EnvironmentSettings, name: str, partition: str, tags: dict[str, str]) -> None:
        db = settings.database
        role = IamRole(
            self, "dlm-role", name=f"{name}-dlm", tags=tags,
            permissions_boundary=workload_boundary_arn(settings, partition=partition, account=self._account),
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
        self.bucket = private_bucket(
            self,
            "dumps",
            bucket_name=db.dump_bucket,
            tags=tags,
            kms_key_arn=key.arn,
            lifecycle_rule_id="expire-old-dumps",
            expire_after_days=db.dump_retention_days,
            noncurrent_days=db.dump_noncurrent_days,
            abort_upload_days=1,
            access_log_bucket=settings.state.access_log_bucket,
        ).bucket
