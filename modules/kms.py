"""A customer-managed KMS key with rotation and an explicit key policy, shared by every construct.

The account root administers the key (the AWS default, written out so checkov and reviewers see
it); a construct may let CloudWatch Logs use it for one log group.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from cdktf import TerraformProvider
from cdktf_cdktf_provider_aws.cloudwatch_log_group import CloudwatchLogGroup
from cdktf_cdktf_provider_aws.data_aws_caller_identity import DataAwsCallerIdentity
from cdktf_cdktf_provider_aws.data_aws_partition import DataAwsPartition
from cdktf_cdktf_provider_aws.kms_alias import KmsAlias
from cdktf_cdktf_provider_aws.kms_key import KmsKey
from constructs import Construct


class EncryptionKey(Construct):
    """A rotating KMS key and its alias. Exposes ``key``, ``arn``, ``account_id`` and ``partition``."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        alias: str,
        description: str,
        tags: dict[str, str],
        logs_region: str | None = None,
        log_group_name: str | None = None,
        service_statements: Sequence[dict[str, Any]] = (),
        provider: TerraformProvider | None = None,
    ) -> None:
        """``logs_region`` and ``log_group_name`` let CloudWatch Logs use the key for that group only
        (``log_group_name`` may end in ``*`` for a family of groups); ``service_statements`` are
        further key-policy statements, e.g. CloudWatch alarms publishing to an encrypted topic.
        ``provider``: another region's provider (e.g. us-east-1 for Route53's query logs); the stack's default
        when None."""
        super().__init__(scope, construct_id)
        self.account_id = DataAwsCallerIdentity(self, "account", provider=provider).account_id
        self.partition = DataAwsPartition(self, "partition", provider=provider).partition
        statements = [
            {
                "Sid": "AccountAdministersKey",
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:{self.partition}:iam::{self.account_id}:root"},
                "Action": "kms:*",
                "Resource": "*",
            },
        ]
        if log_group_name:
            statements.append(
                self._logs_statement(
                    region=logs_region, partition=self.partition, account_id=self.account_id, log_group_name=log_group_name
                )
            )
        statements.extend(service_statements)
        self.key = KmsKey(
            self,
            "key",
            description=description,
            enable_key_rotation=True,
            deletion_window_in_days=30,
            policy=json.dumps({"Version": "2012-10-17", "Statement": statements}),
            tags=tags,
            provider=provider,
        )
        self.arn = self.key.arn
        KmsAlias(self, "alias", name=f"alias/{alias}", target_key_id=self.key.key_id, provider=provider)

    @staticmethod
    def _logs_statement(*, region: str, partition: str, account_id: str, log_group_name: str) -> dict[str, Any]:
                return {
            "Sid": "CloudWatchLogsUsesKey",
            "Effect": "Allow",
            "Principal": {"Service": f"logs.{region}.amazonaws.com"},
            "Action": ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"],
            "Resource": "*",
            "Condition": {
                "ArnLike": {
                    "kms:EncryptionContext:aws:logs:arn": (
                        f"arn:{partition}:logs:{region}:{account_id}:log-group:{log_group_name}"
                    )
                }
            },
        }


def encrypted_log_group(
    scope: Construct,
    name: str,
    *,
    log_group_name: str,
    retention_days: int,
    alias: str,
    description: str,
    region: str,
    tags: dict[str, str],
    provider: TerraformProvider | None = None,
) -> tuple[CloudwatchLogGroup, EncryptionKey]:
    """A CloudWatch log group with retention, encrypted by its own key that only Logs may use for it.

    Created in ``scope`` as ``<name>`` and ``<name>-key``, so addresses read as the owner's.
    """
    key = EncryptionKey(
        scope,
        f"{name}-key",
        alias=alias,
        description=description,
        tags=tags,
        logs_region=region,
        log_group_name=log_group_name,
        provider=provider,
    )
    group = CloudwatchLogGroup(
        scope, name, name=log_group_name, retention_in_days=retention_days, kms_key_id=key.arn, tags=tags,
        provider=provider,
    )  # fmt: skip
    return group, key
