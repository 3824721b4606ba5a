"""The fences between environments, and the permissions boundary of every workload role.

One AWS account may hold several environments (docs/ci-cd.md, "Least privilege"), so what one environment's
roles may touch is fenced twice:

- by **tag**, where the service authorizes on it: every resource the stacks create carries
  ``Environment = <env>`` (the provider's ``default_tags``), so where ``aws:ResourceTag/Environment`` is another
  environment's everything but metadata reads (``TAG_FENCE_EXEMPT_READS``) is denied; IAM judges every resource
  of a request, so this also stops launching into another environment's subnet or security group. A deny on
  ``aws:RequestTag/Environment`` stops creating or tagging anything as another environment's;
- by **name**, where tags are not in the request: secrets (``<project>/<env>/*`` and the pull-through cache's
  ``ecr-pullthroughcache/<project>/<env>/*``), ECR repositories (``<project>-<env>/*``), the EKS cluster and its
  access entries (``cluster.name``), Route53 records (names at or under ``domain``), S3 buckets and state
  objects, the lock table, KMS aliases.

``environment_fences`` returns those deny statements; the deploy boundary (modules/deploy_role.py) and the
workload boundary ``<project>-<env>-workload-boundary`` (``WorkloadBoundary``, in the state stack, applied by an
administrator) both carry them. Every role the platform and apps stacks create has the workload boundary, and
the deploy boundary refuses to create or change a role without it (``iam:PermissionsBoundary``).
"""

from __future__ import annotations

import json
from typing import Any

from cdktf_cdktf_provider_aws.iam_policy import IamPolicy
from constructs import Construct

from modules.settings import EnvironmentSettings

ENVIRONMENT_TAG = "Environment"
WORKLOAD_BOUNDARY = "workload-boundary"

# What a role may still do on a resource tagged as another environment's: the metadata reads a plan or refresh
# makes (Describe/List and configuration Gets; never GetSecretValue, GetObject, GetLogEvents, GetParameter* or
# GetPasswordData) and sts:GetCallerIdentity. Every other action is denied there (an allow-list: an action nobody
# thought of is closed too). S3 and DynamoDB are fenced by name (OnlyThisEnvironmentsBuckets,
# OnlyThisEnvironmentsLockTable), so the shared state bucket and lock table stay reachable.
TAG_FENCE_EXEMPT_READS = (
    "acm:Describe*", "acm:List*", "acm:GetCertificate",
    "autoscaling:Describe*",
    "cloudwatch:Describe*", "cloudwatch:GetDashboard", "cloudwatch:ListTagsForResource",
    "codebuild:BatchGetProjects", "codebuild:ListProjects",
    "codeconnections:GetConnection", "codeconnections:ListTagsForResource",
    "dlm:GetLifecyclePolicies", "dlm:GetLifecyclePolicy", "dlm:ListTagsForResource",
    "ec2:Describe*", "ec2:GetLaunchTemplateData",
    "eks:Describe*", "eks:List*",
    "elasticloadbalancing:Describe*",
    "iam:Get*", "iam:List*",
    "kms:DescribeKey", "kms:GetKeyPolicy", "kms:GetKeyRotationStatus", "kms:List*",
    "logs:Describe*", "logs:ListTags*",
    "route53:Get*", "route53:List*",
    "secretsmanager:DescribeSecret", "secretsmanager:GetResourcePolicy", "secretsmanager:ListSecretVersionIds",
    "sns:GetTopicAttributes", "sns:GetSubscriptionAttributes", "sns:ListTagsForResource",
    "sns:ListSubscriptionsByTopic",
    "sts:GetCallerIdentity",
    "wafv2:GetWebACL", "wafv2:GetWebACLForResource", "wafv2:GetLoggingConfiguration", "wafv2:ListTagsForResource",
    "s3:*", "dynamodb:*",
)  # fmt: skip
# Account-wide permissions with no resource in IAM, so no tag or name can fence them: CloudWatch Logs' resource
# policies (which services may write to which log groups) and CodeBuild's stored source credentials. The stacks
# create neither (no aws_cloudwatch_log_resource_policy, no aws_codebuild_source_credential: the CI runner reaches
# GitHub through its CodeConnections connection), so no environment's role may.
ACCOUNT_WIDE_ACTIONS = (
    "logs:PutResourcePolicy", "logs:DeleteResourcePolicy", "codebuild:ImportSourceCredentials",
    "codebuild:DeleteSourceCredentials",
    # ECR's registry-wide settings (one per account and region): the account stack owns scanning
    # (modules/registry_scanning.py); no stack sets the others
    "ecr:PutRegistryScanningConfiguration", "ecr:PutRegistryPolicy", "ecr:DeleteRegistryPolicy",
    "ecr:PutReplicationConfiguration", "ecr:PutAccountSetting",
)  # fmt: skip
# Removing the Environment tag would take a resource out of the tag fence. Each carries aws:TagKeys (S3's
# PutBucketTagging and Route53's ChangeTagsForResource do not: there the buckets' names and the record names fence).
UNTAG_ACTIONS = (
    "ec2:DeleteTags", "eks:UntagResource", "kms:UntagResource", "secretsmanager:UntagResource",
    "elasticloadbalancing:RemoveTags", "logs:UntagResource", "sns:UntagResource", "cloudwatch:UntagResource",
    "dlm:UntagResource", "iam:UntagRole", "iam:UntagPolicy", "iam:UntagInstanceProfile", "ssm:RemoveTagsFromResource",
    "acm:RemoveTagsFromCertificate",
    "wafv2:UntagResource",
)  # fmt: skip
# Secrets Manager actions on a secret: only the environment's own secrets (names <project>/<env>/...), metadata
# reads included (CI's preflight describes its own Docker Hub credential, never another environment's).
SECRET_ACTIONS = (
    "secretsmanager:DescribeSecret", "secretsmanager:GetResourcePolicy", "secretsmanager:ListSecretVersionIds",
    "secretsmanager:GetSecretValue", "secretsmanager:PutSecretValue", "secretsmanager:UpdateSecret",
    "secretsmanager:CreateSecret", "secretsmanager:DeleteSecret", "secretsmanager:RestoreSecret",
    "secretsmanager:RotateSecret", "secretsmanager:PutResourcePolicy", "secretsmanager:DeleteResourcePolicy",
    "secretsmanager:UpdateSecretVersionStage", "secretsmanager:TagResource", "secretsmanager:UntagResource",
)  # fmt: skip
# EKS writes: only the environment's own cluster, its node groups, add-ons and access entries.
# (Not eks:Create*: CreateCluster has no resource in IAM, so a NotResource deny would deny it everywhere.)
EKS_WRITE_ACTIONS = (
    "eks:CreateNodegroup", "eks:CreateAddon", "eks:CreateAccessEntry", "eks:CreateFargateProfile",
    "eks:CreatePodIdentityAssociation", "eks:Delete*", "eks:Update*", "eks:AssociateAccessPolicy",
    "eks:DisassociateAccessPolicy",
    "eks:AssociateIdentityProviderConfig", "eks:DisassociateIdentityProviderConfig", "eks:TagResource",
    "eks:UntagResource",
)  # fmt: skip
# Commands and shells on instances: no pipeline or workload role needs them (operators use their own roles).
REMOTE_COMMAND_ACTIONS = (
    "ssm:SendCommand", "ssm:StartSession", "ssm:ResumeSession", "ssm:StartAutomationExecution",
    "ec2-instance-connect:SendSSHPublicKey", "ec2-instance-connect:SendSerialConsoleSSHPublicKey",
    "ec2-instance-connect:OpenTunnel",
    # associations and maintenance-window tasks run documents (AWS-RunShellScript) on instances: the stacks create
    # none (no aws_ssm_association, no aws_ssm_maintenance_window_task)
    "ssm:CreateAssociation*", "ssm:StartAssociationsOnce", "ssm:RegisterTaskWithMaintenanceWindow",
    "ssm:UpdateAssociation*",
)  # fmt: skip
# ECR actions that write a repository or its images: only the environment's pull-through cache repositories
# (<project>-<env>/*, modules/registry.py). Pulls stay open: nodes pull EKS add-on images from AWS's accounts.
ECR_WRITE_ACTIONS = (
    "ecr:CreateRepository", "ecr:DeleteRepository", "ecr:BatchImportUpstreamImage", "ecr:PutImage",
    "ecr:BatchDeleteImage", "ecr:InitiateLayerUpload", "ecr:UploadLayerPart", "ecr:CompleteLayerUpload",
    "ecr:SetRepositoryPolicy", "ecr:DeleteRepositoryPolicy", "ecr:PutLifecyclePolicy", "ecr:DeleteLifecyclePolicy",
    "ecr:PutImageTagMutability", "ecr:PutImageScanningConfiguration", "ecr:StartImageScan", "ecr:ReplicateImage",
    "ecr:TagResource", "ecr:UntagResource",
)  # fmt: skip
# S3 actions that read or change a bucket's objects or its configuration.
S3_DATA_ACTIONS = (
    "s3:GetObject*", "s3:PutObject*", "s3:DeleteObject*", "s3:RestoreObject", "s3:ListBucket*",
    "s3:PutBucket*", "s3:DeleteBucket*", "s3:PutLifecycleConfiguration", "s3:PutEncryptionConfiguration",
    "s3:PutReplicationConfiguration",
)  # fmt: skip
KMS_ALIAS_ACTIONS = ("kms:CreateAlias", "kms:UpdateAlias", "kms:DeleteAlias")
# A hosted zone's deletion or re-association is an administrator's act (its name servers are delegated from the
# parent domain); Route53 authorizes hosted zones on no resource tag, so no environment's role may.
ZONE_ADMIN_ACTIONS = (
    "route53:DeleteHostedZone", "route53:AssociateVPCWithHostedZone", "route53:DisassociateVPCFromHostedZone",
    "route53:UpdateHostedZoneComment", "route53:ChangeCidrCollection",
    # Unsigning a zone whose DS record the parent still publishes makes it unresolvable (docs/edge.md, DNSSEC): only
    # an administrator turns signing or query logging off, after the DS record is gone. Route53 authorizes these on
    # the zone, which has no tag, so this also keeps one environment off another's signing.
    "route53:DisableHostedZoneDNSSEC", "route53:DeactivateKeySigningKey", "route53:DeleteKeySigningKey",
    "route53:DeleteQueryLoggingConfig",
)  # fmt: skip


# The services the workload roles use, from every role's identity policies (modules/cluster.py, database.py,
# apps.py pod identities, ci_runner.py) and the AWS managed policies the stacks attach (ATTACHABLE_AWS_POLICIES in
# modules/deploy_role.py): EKS cluster/node/CNI/EBS CSI (autoscaling, ec2, eks, eks-auth, elasticloadbalancing,
# kms), ECR pulls, SSM's agent (ssm, ssmmessages, ec2messages), the CloudWatch agent (cloudwatch, logs, xray),
# Data Lifecycle Manager (ec2, events) and the CI runner (codeconnections, ec2, logs, s3). Allowed only in
# the environment's region; tests/test_iam_fences.py checks every action those policies grant is inside.
WORKLOAD_SERVICES = (
    "autoscaling", "cloudwatch", "codeconnections", "ec2", "ec2messages", "ecr", "eks", "eks-auth",
    "elasticloadbalancing", "events", "kms", "logs", "s3", "secretsmanager", "ssm", "ssmmessages", "xray",
)  # fmt: skip
# Global (no region in the request): IAM's reads, service-linked roles and STS.
WORKLOAD_GLOBAL_ACTIONS = ("iam:Get*", "iam:List*", "sts:*")


def workload_boundary_name(settings: EnvironmentSettings) -> str:
    return settings.stack_name(WORKLOAD_BOUNDARY)


def workload_boundary_arn(settings: EnvironmentSettings, *, partition: str, account: str) -> str:
    """The ARN of ``<project>-<env>-workload-boundary``, derivable by name (the state stack creates it)."""
    return f"arn:{partition}:iam::{account}:policy/{workload_boundary_name(settings)}"


def own_buckets(settings: EnvironmentSettings) -> list[str]:
    """The environment's own bucket names (not the state bucket, which only the CI roles reach)."""
    return sorted({settings.load_balancer.access_log_bucket, settings.database.dump_bucket,
                   settings.apps.files_bucket})  # fmt: skip


def own_secret_arns(settings: EnvironmentSettings, *, partition: str, account: str) -> list[str]:
    prefix = f"arn:{partition}:secretsmanager:{settings.region}:{account}:secret:"
    arns = [f"{prefix}{settings.project}/{settings.name}/*",
            # the Docker Hub credential of the pull-through cache, under the prefix ECR requires (modules/registry.py)
            f"{prefix}ecr-pullthroughcache/{settings.project}/{settings.name}/*"]
    smtp = settings.apps.email.password_secret if settings.apps.email else None
    if smtp:
        arns.append(smtp if smtp.startswith("arn:") else f"{prefix}{smtp}-??????")
    return arns


def credential_arn_pattern(settings: EnvironmentSettings, *, partition: str, account: str) -> str:
    """The Docker Hub credential of the image cache (modules/registry.py), whatever suffix Secrets Manager adds."""
    return (f"arn:{partition}:secretsmanager:{settings.region}:{account}:secret:"
            f"ecr-pullthroughcache/{settings.project}/{settings.name}/*")


# What a role may do on the Docker Hub credential: its metadata (the platform stack's lookup, CI's preflight
# `ci-terraform check-registry-credential`). The administrator-applied state stack creates it, an operator seeds
# it; no pipeline or workload writes it or reads its value (the pull-through cache's service-linked role does).
CREDENTIAL_METADATA_READS = (
    "secretsmanager:DescribeSecret", "secretsmanager:GetResourcePolicy", "secretsmanager:ListSecretVersionIds",
)


def own_cluster_arns(settings: EnvironmentSettings, *, partition: str, account: str) -> list[str]:
    eks, cluster = f"arn:{partition}:eks:{settings.region}:{account}", settings.cluster.name
    return [f"{eks}:cluster/{cluster}", *(f"{eks}:{kind}/{cluster}/*" for kind in (
        "nodegroup", "addon", "access-entry", "fargateprofile", "identityproviderconfig", "podidentityassociation"))]


def record_names(settings: EnvironmentSettings) -> list[str]:
    """Route53's normalized record names (lower case, no trailing dot) this environment may change."""
    domain = settings.domain.lower().rstrip(".")
    return [domain, f"*.{domain}"]


def environment_fences(settings: EnvironmentSettings, *, partition: str, account: str,
                       s3_resources: list[str], lock_tables: list[str]) -> list[dict[str, Any]]:  # fmt: skip
    """The deny statements that keep a role of this environment off every other environment's resources.

    ``s3_resources``: the bucket and object ARNs the role may ever touch (everything else in S3 is denied);
    ``lock_tables``: the DynamoDB tables it may touch (the state's lock table for the CI roles, none for workloads).
    """
    env = settings.name
    other_env = {"StringNotEquals": {f"aws:ResourceTag/{ENVIRONMENT_TAG}": env},
                 "Null": {f"aws:ResourceTag/{ENVIRONMENT_TAG}": "false"}}  # fmt: skip
    kms = f"arn:{partition}:kms:{settings.region}:{account}"
    # Route53's DNSSEC and query log keys live in us-east-1 (modules/dnssec.py), aliased <project>-<env>-*
    kms_us_east_1 = f"arn:{partition}:kms:us-east-1:{account}"
    dynamodb = f"arn:{partition}:dynamodb:{settings.region}:{account}:table/"
    return [
        {"Sid": "OnlyThisEnvironmentsTaggedResources", "Effect": "Deny", "NotAction": list(TAG_FENCE_EXEMPT_READS),
         "Resource": "*", "Condition": other_env},
        {"Sid": "NoTaggingAsAnotherEnvironment", "Effect": "Deny", "Action": "*", "Resource": "*",
         "Condition": {"StringNotEquals": {f"aws:RequestTag/{ENVIRONMENT_TAG}": env},
                       "Null": {f"aws:RequestTag/{ENVIRONMENT_TAG}": "false"}}},
        {"Sid": "KeepTheEnvironmentTag", "Effect": "Deny", "Action": list(UNTAG_ACTIONS), "Resource": "*",
         "Condition": {"ForAnyValue:StringEquals": {"aws:TagKeys": [ENVIRONMENT_TAG]}}},
        {"Sid": "NoRemoteCommands", "Effect": "Deny", "Action": list(REMOTE_COMMAND_ACTIONS), "Resource": "*"},
        {"Sid": "NoAccountWidePermissions", "Effect": "Deny", "Action": list(ACCOUNT_WIDE_ACTIONS), "Resource": "*"},
        {"Sid": "NoHostedZoneAdministration", "Effect": "Deny", "Action": list(ZONE_ADMIN_ACTIONS), "Resource": "*"},
        {"Sid": "OnlyThisEnvironmentsSecrets", "Effect": "Deny", "Action": list(SECRET_ACTIONS),
         "NotResource": own_secret_arns(settings, partition=partition, account=account)},
        {"Sid": "OnlyOperatorsChangeTheCredential", "Effect": "Deny", "NotAction": list(CREDENTIAL_METADATA_READS),
         "Resource": credential_arn_pattern(settings, partition=partition, account=account)},
        {"Sid": "OnlyThisEnvironmentsCluster", "Effect": "Deny", "Action": list(EKS_WRITE_ACTIONS),
         "NotResource": own_cluster_arns(settings, partition=partition, account=account)},
        {"Sid": "OnlyThisEnvironmentsRecords", "Effect": "Deny", "Action": "route53:ChangeResourceRecordSets",
         "Resource": "*", "Condition": {"ForAnyValue:StringNotLike": {
             "route53:ChangeResourceRecordSetsNormalizedRecordNames": record_names(settings)}}},
        {"Sid": "OnlyThisEnvironmentsRepositories", "Effect": "Deny", "Action": list(ECR_WRITE_ACTIONS),
         "NotResource": [f"arn:{partition}:ecr:{settings.region}:{account}:repository/{settings.project}-{env}/*"]},
        {"Sid": "OnlyThisEnvironmentsBuckets", "Effect": "Deny", "Action": list(S3_DATA_ACTIONS),
         "NotResource": s3_resources},
        # all of DynamoDB but the lock table, its account-wide listings (no resource in IAM) included: no pipeline
        # or workload uses another table
        {"Sid": "OnlyThisEnvironmentsLockTable", "Effect": "Deny", "Action": "dynamodb:*",
         **({"NotResource": [f"{dynamodb}{t}" for t in lock_tables]} if lock_tables else {"Resource": "*"})},
        {"Sid": "OnlyThisEnvironmentsKeyAliases", "Effect": "Deny", "Action": list(KMS_ALIAS_ACTIONS),
         "NotResource": [f"{kms}:alias/{settings.stack_name('')}*", f"{kms}:alias/{settings.cluster.name}-*",
                         f"{kms}:key/*", f"{kms_us_east_1}:alias/{settings.stack_name('')}*",
                         f"{kms_us_east_1}:key/*"]},
    ]  # fmt: skip


def _bucket_arns(partition: str, buckets: list[str]) -> list[str]:
    return [arn for b in buckets for arn in (f"arn:{partition}:s3:::{b}", f"arn:{partition}:s3:::{b}/*")]


class WorkloadBoundary(Construct):
    """``<project>-<env>-workload-boundary``: the ceiling of every role the platform and apps stacks create.

    Only the services the workloads use (``WORKLOAD_SERVICES``), only in the environment's region; IAM reads,
    service-linked roles and STS globally; no other IAM write. Inside the environment's fences: on a resource
    tagged as another environment's only metadata reads, and the name fences where tags are not in the request.
    A role someone gave ``*`` (or one the deploy role creates with a ``*`` inline policy) reaches no other
    service, region or environment. In the state stack, so only an administrator changes it (the deploy boundary's
    NoTouchingCiIdentity names it)."""

    def __init__(self, scope: Construct, construct_id: str, *, settings: EnvironmentSettings, partition: str,
                 account: str, tags: dict[str, str]) -> None:  # fmt: skip
        super().__init__(scope, construct_id)
        fences = environment_fences(settings, partition=partition, account=account,
                                    s3_resources=_bucket_arns(partition, own_buckets(settings)), lock_tables=[])
        self.policy = IamPolicy(
            self,
            "policy",
            name=workload_boundary_name(settings),
            description=f"Caps every workload role of {settings.name}: its own environment only (docs/security.md)",
            policy=json.dumps({"Version": "2012-10-17", "Statement": [
                {"Sid": "WorkloadServicesInRegion", "Effect": "Allow",
                 "Action": [f"{service}:*" for service in WORKLOAD_SERVICES], "Resource": "*",
                 "Condition": {"StringEquals": {"aws:RequestedRegion": settings.region}}},
                {"Sid": "GlobalReads", "Effect": "Allow", "Action": list(WORKLOAD_GLOBAL_ACTIONS), "Resource": "*"},
                # a service-linked role's path is always /aws-service-role/<service>/ (IAM names it)
                {"Sid": "ServiceLinkedRoles", "Effect": "Allow", "Action": "iam:CreateServiceLinkedRole",
                 "Resource": f"arn:{partition}:iam::{account}:role/aws-service-role/*"},
                *fences,
            ]}),  # fmt: skip
            tags=tags,
        )
