"""A private S3 bucket with this project's baseline, written once for every bucket we own.

Versioned; encrypted (SSE-KMS with a customer key, or SSE-S3 where the writer supports nothing
else, e.g. ALB log delivery); all four public-access blocks; ACLs disabled (BucketOwnerEnforced);
a policy denying any request not made over TLS, plus the caller's own statements; a lifecycle
rule that expires old versions and aborts stale multipart uploads; and, given ``access_log_bucket``, S3 server
access logging into that bucket under ``<bucket name>/`` (``server_access_log_bucket`` makes one).

It adds its resources to the caller's scope as ``<name>``, ``<name>-versioning``,
``<name>-encryption`` … so their Terraform addresses read as part of the construct that owns
the bucket (``state/bucket``, ``load-balancer/logs``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cdktf_cdktf_provider_aws.s3_bucket import S3Bucket
from cdktf_cdktf_provider_aws.s3_bucket_lifecycle_configuration import (
    S3BucketLifecycleConfiguration,
    S3BucketLifecycleConfigurationRule,
    S3BucketLifecycleConfigurationRuleAbortIncompleteMultipartUpload,
    S3BucketLifecycleConfigurationRuleExpiration,
    S3BucketLifecycleConfigurationRuleFilter,
    S3BucketLifecycleConfigurationRuleNoncurrentVersionExpiration,
)
from cdktf_cdktf_provider_aws.s3_bucket_logging import S3BucketLoggingA
from cdktf_cdktf_provider_aws.s3_bucket_notification import S3BucketNotification
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


@dataclass(frozen=True)
class PrivateBucket:
    """What callers need: the bucket, and the resources other resources must wait for."""

    bucket: S3Bucket
    public_access: S3BucketPublicAccessBlock
    policy: S3BucketPolicy


def private_bucket(
    scope: Construct,
    name: str,
    *,
    bucket_name: str,
    tags: dict[str, str],
    kms_key_arn: str | None,
    lifecycle_rule_id: str,
    noncurrent_days: int,
    abort_upload_days: int = 7,
    expire_after_days: int | None = None,
    force_destroy: bool = False,
    statements: Callable[[S3Bucket], list[dict[str, Any]]] | None = None,
    access_log_bucket: "str | PrivateBucket | None" = None,
) -> PrivateBucket:
    """Create the bucket in ``scope``.

    ``kms_key_arn`` None means SSE-S3 (AES256): only for writers that cannot use KMS.
    ``expire_after_days`` expires current objects too (logs, dumps); None keeps them (state).
    ``statements(bucket)`` returns extra bucket-policy statements, e.g. a log writer's grant.
    ``access_log_bucket`` receives the bucket's S3 server access logs (a ``server_access_log_bucket``): its name
    when another stack made it, or the PrivateBucket itself in the same stack (the logging then waits for its
    policy: S3 refuses PutBucketLogging until the target grants the logging service, InvalidTargetBucketForLogging).
    """
    bucket = S3Bucket(scope, name, bucket=bucket_name, force_destroy=force_destroy, tags=tags)
    S3BucketVersioningA(
        scope,
        f"{name}-versioning",
        bucket=bucket.id,
        versioning_configuration=S3BucketVersioningVersioningConfiguration(status="Enabled"),
    )
    default = (
        S3BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultA(
            sse_algorithm="aws:kms", kms_master_key_id=kms_key_arn
        )
        if kms_key_arn
        else S3BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultA(sse_algorithm="AES256")
    )
    S3BucketServerSideEncryptionConfigurationA(
        scope,
        f"{name}-encryption",
        bucket=bucket.id,
        rule=[
            S3BucketServerSideEncryptionConfigurationRuleA(
                apply_server_side_encryption_by_default=default,
                bucket_key_enabled=True if kms_key_arn else None,  # fewer KMS calls, same protection
            )
        ],
    )
    public_access = S3BucketPublicAccessBlock(
        scope,
        f"{name}-public-access",
        bucket=bucket.id,
        block_public_acls=True,
        block_public_policy=True,
        ignore_public_acls=True,
        restrict_public_buckets=True,
    )
    S3BucketOwnershipControls(
        scope,
        f"{name}-ownership",
        bucket=bucket.id,
        rule=S3BucketOwnershipControlsRule(object_ownership="BucketOwnerEnforced"),
    )
    deny_plain_http = {
        "Sid": "DenyInsecureTransport",
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": [bucket.arn, f"{bucket.arn}/*"],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }
    policy = S3BucketPolicy(
        scope,
        f"{name}-policy",
        bucket=bucket.id,
        policy=json.dumps(
            {"Version": "2012-10-17", "Statement": [*(statements(bucket) if statements else []), deny_plain_http]}
        ),
        # S3 rejects concurrent changes to a bucket's policy and its public access block.
        depends_on=[public_access],
    )
    S3BucketLifecycleConfiguration(
        scope,
        f"{name}-lifecycle",
        bucket=bucket.id,
        rule=[
            S3BucketLifecycleConfigurationRule(
                id=lifecycle_rule_id,
                status="Enabled",
                filter=[S3BucketLifecycleConfigurationRuleFilter(prefix="")],
                expiration=(
                    [S3BucketLifecycleConfigurationRuleExpiration(days=expire_after_days)]
                    if expire_after_days
                    else None
                ),
                noncurrent_version_expiration=[
                    S3BucketLifecycleConfigurationRuleNoncurrentVersionExpiration(noncurrent_days=noncurrent_days)
                ],
                abort_incomplete_multipart_upload=[
                    S3BucketLifecycleConfigurationRuleAbortIncompleteMultipartUpload(
                        days_after_initiation=abort_upload_days
                    )
                ],
            )
        ],
    )
    # Every event of the bucket goes to the account's default event bus (S3 sends all of them once EventBridge is on,
    # https://docs.aws.amazon.com/AmazonS3/latest/userguide/EventBridge.html); rules there choose what to alert on.
    # One notification configuration per bucket: S3 keeps one, so no other construct may add its own.
    S3BucketNotification(scope, f"{name}-events", bucket=bucket.id, eventbridge=True)
    if access_log_bucket:
        same_stack = isinstance(access_log_bucket, PrivateBucket)
        S3BucketLoggingA(
            scope, f"{name}-access-logging", bucket=bucket.id,
            target_bucket=access_log_bucket.bucket.bucket if same_stack else access_log_bucket,
            target_prefix=access_log_prefix(bucket_name),
            depends_on=[access_log_bucket.policy] if same_stack else None,
        )  # fmt: skip
    return PrivateBucket(bucket=bucket, public_access=public_access, policy=policy)


def access_log_prefix(bucket_name: str) -> str:
    """Where a bucket's server access logs land in the log bucket: one folder per source bucket."""
    return f"{bucket_name}/"


def server_access_log_bucket(
    scope: Construct,
    name: str,
    *,
    bucket_name: str,
    source_buckets: list[str],
    account_id: str,
    partition: str,
    retention_days: int,
    tags: dict[str, str],
    force_destroy: bool,
) -> PrivateBucket:
    """The destination of S3 server access logs for ``source_buckets`` (names, same account and region).

    SSE-S3: AWS supports only SSE-S3 default encryption on a server access log destination bucket; it logs
    nothing itself (AWS: a bucket logging into the bucket that receives its logs makes logs about logs, an endless
    loop). The grant is the one AWS documents: logging.s3.amazonaws.com may PutObject, for the named source buckets
    of this account only (https://docs.aws.amazon.com/AmazonS3/latest/userguide/enable-server-access-logging.html).
    """
    return private_bucket(
        scope,
        name,
        bucket_name=bucket_name,
        tags=tags,
        kms_key_arn=None,  # SSE-S3: the only default encryption S3 server access log delivery supports
        lifecycle_rule_id="expire-old-access-logs",
        expire_after_days=retention_days,
        noncurrent_days=1,
        force_destroy=force_destroy,
        statements=lambda bucket: [
            {
                "Sid": "S3ServerAccessLogs",
                "Effect": "Allow",
                "Principal": {"Service": "logging.s3.amazonaws.com"},
                "Action": "s3:PutObject",
                "Resource": f"{bucket.arn}/*",
                "Condition": {
                    "ArnLike": {"aws:SourceArn": [f"arn:{partition}:s3:::{b}" for b in sorted(source_buckets)]},
                    "StringEquals": {"aws:SourceAccount": account_id},
                },
            }
        ],
    )
