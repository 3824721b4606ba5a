"""A private S3 bucket with this project's baseline, written once for every bucket we own.

Versioned; encrypted (SSE-KMS with a customer key, or SSE-S3 where the writer supports nothing
else, e.g. ALB log delivery); all four public-access blocks; ACLs disabled (BucketOwnerEnforced);
a policy denying any request not made over TLS, plus the caller's own statements; and a lifecycle
rule that expires old versions and aborts stale multipart uploads.

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
) -> PrivateBucket:
    """Create the bucket in ``scope``.

    ``kms_key_arn`` None means SSE-S3 (AES256): only for writers that cannot use KMS.
    ``expire_after_days`` expires current objects too (logs, dumps); None keeps them (state).
    ``statements(bucket)`` returns extra bucket-policy statements, e.g. a log writer's grant.
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
    return PrivateBucket(bucket=bucket, public_access=public_access, policy=policy)
