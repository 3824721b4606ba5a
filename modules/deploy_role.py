"""GitHub Actions' way into one environment: its deploy, review and plan roles.

- They trust the account's GitHub OIDC provider (``token.actions.githubusercontent.com``), which
  exists once per AWS account and belongs to the account stack (modules/account.py), so that no
  environment's stacks create, look up or destroy it.
- The role ``<project>-<env>-deploy`` trusts only tokens for audience ``sts.amazonaws.com`` whose
  subject is ``repo:<owner>/<name>:environment:<env>``: a job of that repository running in that
  GitHub environment (so behind its approval rules). Pull requests, other branches' jobs without
  the environment, forks and other repositories get nothing.
- Its permissions are what the platform stack manages, fenced in (docs/ci-cd.md says why each):
  state access only to this environment's bucket, lock table and key; other AWS actions only in
  the environment's region (IAM, Route53, ACM-for-CloudFront and STS are global); IAM writes only
  to roles, profiles and policies named after this environment; a permissions boundary that
  forbids touching the deploy roles, the OIDC provider, the boundary itself and the state
  resources, and anything but metadata reads on resources tagged for another environment.
"""

from __future__ import annotations

import json
from typing import Any

from cdktf_cdktf_provider_aws.data_aws_iam_openid_connect_provider import DataAwsIamOpenidConnectProvider
from cdktf_cdktf_provider_aws.iam_policy import IamPolicy
from cdktf_cdktf_provider_aws.iam_role import IamRole
from cdktf_cdktf_provider_aws.iam_role_policy import IamRolePolicy
from constructs import Construct

from modules.boundary import (
    ENVIRONMENT_TAG, environment_fences, own_buckets as environment_buckets, workload_boundary_arn,
)  # fmt: skip
from modules.kms import EncryptionKey
from modules.settings import EnvironmentSettings
from modules.settings.images import UPSTREAMS, ecr_prefix

GITHUB_OIDC_HOST = "token.actions.githubusercontent.com"
GITHUB_OIDC_URL = f"https://{GITHUB_OIDC_HOST}"
AUDIENCE = "sts.amazonaws.com"
DEPLOY_COMPONENT = "ci-deploy"  # not in the document; tagged <env>/ci-deploy

# The services the platform stack manages (and the read-only ones Terraform's refresh needs).
MANAGED_SERVICES = (
    "acm", "autoscaling", "cloudwatch", "codebuild", "codeconnections", "dlm", "ec2", "eks", "elasticloadbalancing",
    "kms", "logs", "secretsmanager", "sns", "ssm",
    "wafv2",  # the web ACL, its association with the ALB and its logging configuration (modules/waf.py)
)  # fmt: skip
# The ECR calls the platform stack's pull-through cache rules and creation templates make (modules/registry.py):
# nothing on repositories or images, which ECR itself creates. IAM knows no resource type and no condition key for
# these actions (Service Authorization Reference, Amazon ECR), so no fence can scope them to one environment
# (docs/images.md); the repositories are fenced by name (OnlyThisEnvironmentsRepositories).
ECR_CACHE_ACTIONS = (
    "ecr:CreatePullThroughCacheRule", "ecr:UpdatePullThroughCacheRule", "ecr:DeletePullThroughCacheRule",
    "ecr:DescribePullThroughCacheRules", "ecr:ValidatePullThroughCacheRule",
    "ecr:CreateRepositoryCreationTemplate", "ecr:UpdateRepositoryCreationTemplate",
    "ecr:DeleteRepositoryCreationTemplate", "ecr:DescribeRepositoryCreationTemplates",
)  # fmt: skip
# What `scripts/images warm` (the apply-apps job, before the apps stack) calls: a registry token (no resource in
# IAM), then, on the environment's own cached repositories only, the manifest GET by tag (BatchGetImage), which
# makes the pull-through cache create the repository and import the image as the caller (ECR user guide, "IAM
# permissions required to sync an upstream registry"), and DescribeImages to read the digest ECR stored.
ECR_WARM_ACTIONS = ("ecr:BatchImportUpstreamImage", "ecr:CreateRepository", "ecr:BatchGetImage", "ecr:DescribeImages")
# S3 is not among them: only the environment's own buckets (OwnBuckets), never another environment's, and only
# the calls hashicorp/aws 5.100.0 makes for the stacks' aws_s3_bucket* resources: create, read back (HeadBucket is
# s3:ListBucket; the bucket read is GetBucket* and the four configuration reads), configure (tags, versioning,
# policy, public access block, ownership, lifecycle, encryption, server access logging; their deletes are
# authorized as these Puts), and
# delete (force_destroy, set on the load balancer's log bucket, first lists and deletes every object version).
OWN_BUCKET_ACTIONS = (
    "s3:CreateBucket", "s3:DeleteBucket", "s3:ListBucket", "s3:ListBucketVersions", "s3:GetBucket*",
    "s3:GetLifecycleConfiguration", "s3:GetEncryptionConfiguration", "s3:GetReplicationConfiguration",
    "s3:GetAccelerateConfiguration", "s3:PutBucketTagging", "s3:PutBucketVersioning", "s3:PutBucketPolicy",
    "s3:DeleteBucketPolicy", "s3:PutBucketPublicAccessBlock", "s3:PutBucketOwnershipControls",
    "s3:PutLifecycleConfiguration", "s3:PutEncryptionConfiguration",
    "s3:PutBucketLogging",  # aws_s3_bucket_logging: server access logs into <state bucket>-access-logs
    # aws_s3_bucket_notification: events to EventBridge (modules/private_bucket.py); its read is s3:GetBucket*
    "s3:PutBucketNotification",
)  # fmt: skip
OWN_OBJECT_ACTIONS = ("s3:DeleteObject", "s3:DeleteObjectVersion")
# IAM actions that carry iam:PermissionsBoundary (the role's boundary, or the one a CreateRole asks for): the
# deploy boundary allows them only for roles under the workload boundary. TagRole/UntagRole and PassRole do not
# carry the key (Service Authorization Reference, IAM): for them the names (<project>-<env>-*) are the fence. Nor
# does UpdateAssumeRolePolicy in every source (iam-simulate's iam-data lists the key, parliament's data does not):
# a deny on a key that is absent would stop every trust-policy update, so the names fence it too.
BOUNDED_ROLE_ACTIONS = (
    "iam:CreateRole", "iam:PutRolePolicy", "iam:DeleteRolePolicy", "iam:AttachRolePolicy", "iam:DetachRolePolicy",
    "iam:PutRolePermissionsBoundary",
)  # fmt: skip
# IAM actions on the environment's own roles, instance profiles and policies (nothing else in IAM).
IAM_WRITE_ACTIONS = (
    "iam:CreateRole", "iam:DeleteRole", "iam:UpdateRole", "iam:UpdateRoleDescription", "iam:UpdateAssumeRolePolicy",
    "iam:TagRole", "iam:UntagRole", "iam:PutRolePolicy", "iam:DeleteRolePolicy", "iam:AttachRolePolicy",
    "iam:DetachRolePolicy", "iam:PassRole",
    "iam:CreateInstanceProfile", "iam:DeleteInstanceProfile", "iam:AddRoleToInstanceProfile",
    "iam:RemoveRoleFromInstanceProfile", "iam:TagInstanceProfile", "iam:UntagInstanceProfile",
    "iam:CreatePolicy", "iam:DeletePolicy", "iam:CreatePolicyVersion", "iam:DeletePolicyVersion", "iam:TagPolicy",
    "iam:UntagPolicy",
)  # fmt: skip
READ_ACTIONS = ("iam:Get*", "iam:List*", "route53:Get*", "route53:List*", "sts:GetCallerIdentity")
ROUTE53_WRITE_ACTIONS = (
    "route53:ChangeResourceRecordSets", "route53:CreateHostedZone", "route53:ChangeTagsForResource",
    # signing and query logging (modules/dnssec.py); turning either off is an administrator's act
    # (modules/boundary.py ZONE_ADMIN_ACTIONS)
    "route53:CreateKeySigningKey", "route53:ActivateKeySigningKey", "route53:EnableHostedZoneDNSSEC",
    "route53:CreateQueryLoggingConfig",
)  # fmt: skip
# Route53 keeps DNSSEC keys and query log groups in us-east-1 only (modules/dnssec.py): the only region besides the
# environment's where the deploy role may act, and there only on KMS keys tagged as its environment's (and
# creating such keys), its own key aliases (the alias fence) and its zone's query log group, by name.
ROUTE53_REGION = "us-east-1"
# What aws_cloudwatch_log_group manages on the query log group (create, retention, key, tags, delete); no log reads
QUERY_LOG_GROUP_ACTIONS = (
    "logs:CreateLogGroup", "logs:DeleteLogGroup", "logs:PutRetentionPolicy", "logs:DeleteRetentionPolicy",
    "logs:AssociateKmsKey", "logs:DisassociateKmsKey", "logs:TagResource", "logs:UntagResource",
    "logs:ListTagsForResource", "logs:TagLogGroup", "logs:UntagLogGroup", "logs:ListTagsLogGroup",
)  # fmt: skip
# EventBridge is not among them: only the deletion alert's rule, by name (modules/monitoring.py DeletionAlert), with
# what aws_cloudwatch_event_rule and aws_cloudwatch_event_target call on it (no event bus, archive or connection).
EVENT_RULE_ACTIONS = (
    "events:PutRule", "events:DeleteRule", "events:DescribeRule", "events:EnableRule", "events:DisableRule",
    "events:PutTargets", "events:RemoveTargets", "events:ListTargetsByRule", "events:TagResource",
    "events:UntagResource", "events:ListTagsForResource",
)  # fmt: skip
# What aws_sns_topic and aws_sns_topic_subscription manage on the DNSSEC alarms' us-east-1 topic (no Publish)
DNSSEC_TOPIC_ACTIONS = (
    "sns:CreateTopic", "sns:DeleteTopic", "sns:GetTopicAttributes", "sns:SetTopicAttributes", "sns:TagResource",
    "sns:UntagResource", "sns:ListTagsForResource", "sns:Subscribe", "sns:ListSubscriptionsByTopic",
)  # fmt: skip
# The subscription calls, which IAM authorizes on no resource type (Service Authorization Reference, Amazon SNS)
DNSSEC_SUBSCRIPTION_ACTIONS = ("sns:Unsubscribe", "sns:GetSubscriptionAttributes", "sns:SetSubscriptionAttributes")
# What aws_cloudwatch_metric_alarm manages on the two DNSSEC alarms in us-east-1
DNSSEC_ALARM_ACTIONS = (
    "cloudwatch:PutMetricAlarm", "cloudwatch:DeleteAlarms", "cloudwatch:DescribeAlarms", "cloudwatch:TagResource",
    "cloudwatch:UntagResource", "cloudwatch:ListTagsForResource",
)  # fmt: skip
# What a plan of the platform stack reads (no object contents, secret values or log events).
PLAN_READ_ACTIONS = (
    "acm:Describe*", "acm:Get*", "acm:List*",
    "autoscaling:Describe*",
    "cloudwatch:Describe*", "cloudwatch:GetDashboard", "cloudwatch:ListTagsForResource",
    "codebuild:BatchGetProjects", "codebuild:ListProjects",
    "codeconnections:GetConnection", "codeconnections:ListTagsForResource",
    "dlm:Get*",
    "events:DescribeRule", "events:ListTargetsByRule", "events:ListTagsForResource",
    "ec2:Describe*", "ec2:GetLaunchTemplateData",
    "eks:Describe*", "eks:List*",
    "ecr:DescribePullThroughCacheRules", "ecr:DescribeRepositoryCreationTemplates",
    "elasticloadbalancing:Describe*",
    "iam:Get*", "iam:List*",
    "kms:Describe*", "kms:GetKeyPolicy", "kms:GetKeyRotationStatus", "kms:List*",
    "logs:Describe*", "logs:ListTags*",
    "route53:Get*", "route53:List*",
    # an aws_s3_bucket's read: GetBucket{Acl,Cors,Website,Versioning,RequestPayment,Logging,Tagging,Policy,
    # ObjectLockConfiguration,OwnershipControls,PublicAccessBlock} and the four below (HeadBucket: BUCKET_READS)
    "s3:GetBucket*", "s3:GetLifecycleConfiguration", "s3:GetEncryptionConfiguration",
    "s3:GetReplicationConfiguration", "s3:GetAccelerateConfiguration", "s3:ListAllMyBuckets",
    "secretsmanager:DescribeSecret", "secretsmanager:GetResourcePolicy", "secretsmanager:ListSecretVersionIds",
    "sns:GetTopicAttributes", "sns:GetSubscriptionAttributes", "sns:ListTagsForResource",
    "sns:ListSubscriptionsByTopic",
    "sts:GetCallerIdentity",
    # the web ACL's refresh (GetSampledRequests is left out: it returns sampled requests, headers included)
    "wafv2:GetWebACL", "wafv2:GetWebACLForResource", "wafv2:GetLoggingConfiguration", "wafv2:ListTagsForResource",
)  # fmt: skip
# HeadBucket (every aws_s3_bucket refresh) is authorised as s3:ListBucket: granted on the environment's own
# buckets only, which also lists their keys, never their contents (no s3:GetObject).
BUCKET_READS = ("s3:ListBucket",)
# Plans read state and never write it: no PutObject/DeleteObject, no lock rows (PR plans run -lock=false).
# GetItem reads the state digest the S3 backend keeps in the lock table; Decrypt opens the SSE-KMS state objects.
PLAN_STATE_ACTIONS = {
    "bucket": ("s3:ListBucket", "s3:GetBucketVersioning"),
    "objects": ("s3:GetObject",),
    "lock": ("dynamodb:DescribeTable", "dynamodb:GetItem"),
    "key": ("kms:Decrypt", "kms:DescribeKey"),
}

# The apps stack's ephemeral reads (modules/database.py, modules/apps.py name them <project>/<env>/...).
REVIEWED_SECRETS = ("database/password", "twenty/encryption-key", "twenty/redis-password")
# What the review role adds to the plan role's reads: the apps stack's plan opens its ephemeral resources
# (Terraform opens ephemeral resources in every plan that references them), so it reads the secrets above and
# asks Secrets Manager for a random password (RedisPassword's generator; a random string, no resource).
REVIEW_SECRET_ACTIONS = ("secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret")
REVIEW_STATE_LOCK_ACTIONS = ("dynamodb:DescribeTable", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:DeleteItem")

# The AWS managed policies the stacks attach to their roles; the boundary lets the deploy role
# attach these and its environment's own policies, nothing else (no AdministratorAccess).
ATTACHABLE_AWS_POLICIES = (
    "AmazonEKSClusterPolicy", "AmazonEKSWorkerNodePolicy", "AmazonEC2ContainerRegistryPullOnly",
    "AmazonEKS_CNI_Policy", "AmazonSSMManagedInstanceCore", "CloudWatchAgentServerPolicy",
    "service-role/AmazonEBSCSIDriverPolicy", "service-role/AWSDataLifecycleManagerServiceRole",
)  # fmt: skip


def subject(settings: EnvironmentSettings) -> str:
    """The ``sub`` claim of GitHub's token for a job running in the environment's GitHub environment."""
    return f"repo:{settings.ci.github_repository}:environment:{settings.ci.github_environment}"


def plan_subject(settings: EnvironmentSettings) -> str:
    """The ``sub`` of the main-branch plan jobs: GitHub environment ``<github_environment>-plan``, which has no
    reviewers (the plan must exist before the approval) and admits the main branch only (docs/ci-cd.md).
    Only the review role trusts it: a job there runs before anyone approves, so it must not be able to write."""
    return f"{subject(settings)}-plan"


def app_secret_arns(settings: EnvironmentSettings, *, partition: str, account: str) -> list[str]:
    """The Secrets Manager secrets the apps stack reads ephemerally while planning: the database password,
    Twenty's ENCRYPTION_KEY, Redis's password and, if set, the SMTP password (modules/apps.py TwentySecret).
    Secrets Manager appends ``-`` and six random characters to a secret's name in its ARN."""
    prefix = f"arn:{partition}:secretsmanager:{settings.region}:{account}:secret:"
    names = [f"{settings.project}/{settings.name}/{n}" for n in REVIEWED_SECRETS]
    arns = [f"{prefix}{n}-??????" for n in names]
    smtp = settings.apps.email.password_secret if settings.apps.email else None
    if smtp:
        arns.append(smtp if smtp.startswith("arn:") else f"{prefix}{smtp}-??????")
    return arns


def us_east_1_statements(settings: EnvironmentSettings, *, partition: str, account: str) -> list[dict[str, Any]]:
    """What the zone's DNSSEC key and query log group need in us-east-1 (none when both are off)."""
    from modules.dnssec import query_log_group_name

    dns, region = settings.dns, {"aws:RequestedRegion": ROUTE53_REGION}
    statements: list[dict[str, Any]] = []
    if dns.dnssec or dns.query_logging:
        own = {"aws:RequestedRegion": ROUTE53_REGION, f"aws:ResourceTag/{ENVIRONMENT_TAG}": settings.name}
        statements += [
            {"Sid": "OwnKeysInUsEast1", "Effect": "Allow", "Action": "kms:*", "Resource": "*",
             "Condition": {"StringEquals": own}},
            {"Sid": "CreateOwnKeysInUsEast1", "Effect": "Allow", "Action": ["kms:CreateKey", "kms:TagResource"],
             "Resource": "*", "Condition": {"StringEquals": {
                 **region, f"aws:RequestTag/{ENVIRONMENT_TAG}": settings.name}}},
            # aliases carry no tags: OnlyThisEnvironmentsKeyAliases (modules/boundary.py) keeps these to its own
            {"Sid": "KeyAliasesInUsEast1", "Effect": "Allow",
             "Action": ["kms:CreateAlias", "kms:UpdateAlias", "kms:DeleteAlias", "kms:ListAliases"],
             "Resource": "*", "Condition": {"StringEquals": region}},
        ]  # fmt: skip
    if dns.query_logging:
        group = f"arn:{partition}:logs:{ROUTE53_REGION}:{account}:log-group:{query_log_group_name(settings.zone_name)}"
        statements += [
            {"Sid": "QueryLogGroupInUsEast1", "Effect": "Allow", "Action": list(QUERY_LOG_GROUP_ACTIONS),
             "Resource": [group, f"{group}:*"]},
            {"Sid": "ListLogGroupsInUsEast1", "Effect": "Allow", "Action": "logs:DescribeLogGroups", "Resource": "*",
             "Condition": {"StringEquals": region}},
        ]  # fmt: skip
    if dns.dnssec:
        # modules/monitoring.py DnssecAlarms: <project>-<env>-dnssec-alarms and the alarms <project>-<env>-dnssec-*
        prefix = settings.stack_name("")[:-1]
        topic = f"arn:{partition}:sns:{ROUTE53_REGION}:{account}:{prefix}-dnssec-alarms"
        statements += [
            {"Sid": "DnssecAlarmTopicInUsEast1", "Effect": "Allow", "Action": list(DNSSEC_TOPIC_ACTIONS),
             "Resource": topic},
            {"Sid": "DnssecAlarmSubscriptionsInUsEast1", "Effect": "Allow", "Action": list(DNSSEC_SUBSCRIPTION_ACTIONS),
             "Resource": "*", "Condition": {"StringEquals": region}},
            {"Sid": "DnssecAlarmsInUsEast1", "Effect": "Allow", "Action": list(DNSSEC_ALARM_ACTIONS),
             "Resource": f"arn:{partition}:cloudwatch:{ROUTE53_REGION}:{account}:alarm:{prefix}-dnssec-*"},
        ]  # fmt: skip
    return statements


def _doc(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def pull_request_subject(settings: EnvironmentSettings) -> str:
    """The ``sub`` claim of GitHub's token for a job triggered by a pull request of the repository."""
    return f"repo:{settings.ci.github_repository}:pull_request"


def _trust(provider_arn: str, sub: str | list[str]) -> str:
    return _doc(
        {
            "Sid": "GitHubOidcOnly",
            "Effect": "Allow",
            "Principal": {"Federated": provider_arn},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {"StringEquals": {f"{GITHUB_OIDC_HOST}:aud": AUDIENCE, f"{GITHUB_OIDC_HOST}:sub": sub}},
        }
    )


class DeployRole(Construct):
    """Exposes ``oidc_provider_arn``, ``role`` (applies, from the GitHub environment behind its reviewers),
    ``plan_role`` (read-only plans of pull requests), ``review_role`` (main's saved plans, before the approval)
    and ``boundary``."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: EnvironmentSettings,
        state_bucket_arn: str,
        lock_table_arn: str,
        state_key: EncryptionKey,
        oidc_provider_arn: str,
        credential_key_arn: str | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        ci = settings.ci
        tags = {"Component": settings.component(DEPLOY_COMPONENT)}
        partition, account = state_key.partition, state_key.account_id
        name = settings.stack_name("deploy")
        env_prefix = settings.stack_name("")[:-1]  # twentycrm-dev

        # The account's GitHub OIDC provider belongs to the account stack (modules/account.py), never to an
        # environment. Its ARN follows from the account ID; looking it up (iam:GetOpenIDConnectProvider) stops
        # the plan while it does not exist yet (account stack not applied, or "existing" when it is not),
        # instead of IAM refusing the roles' trust policies halfway through an apply.
        provider = DataAwsIamOpenidConnectProvider(self, "github-oidc-provider", arn=oidc_provider_arn)
        self.oidc_provider_arn = provider.arn

        iam = f"arn:{partition}:iam::{account}"
        # IAM names this environment's constructs use: <project>-<env>-* and <cluster name>-*.
        own_iam = sorted({
            f"{iam}:{kind}/{prefix}-*"
            for kind in ("role", "instance-profile", "policy")
            for prefix in (env_prefix, settings.cluster.name)
        })  # fmt: skip
        deploy_roles = f"{iam}:role/{settings.project}-*-deploy"
        boundary_arn = f"{iam}:policy/{name}-boundary"
        own_bucket_arns = [f"arn:{partition}:s3:::{b}" for b in environment_buckets(settings)]
        own_object_arns = [f"{arn}/*" for arn in own_bucket_arns]
        bucket_arns = [arn for pair in zip(own_bucket_arns, own_object_arns) for arn in pair]
        own_cache_prefixes = [ecr_prefix(settings.project, settings.name, registry) for registry in UPSTREAMS]

        allowed = [
            {
                "Sid": "ManagedServicesInRegion",
                "Effect": "Allow",
                "Action": [f"{service}:*" for service in MANAGED_SERVICES],
                "Resource": "*",
                "Condition": {"StringEquals": {"aws:RequestedRegion": settings.region}},
            },
            {"Sid": "DeletionAlertRule", "Effect": "Allow", "Action": list(EVENT_RULE_ACTIONS),
             "Resource": f"arn:{partition}:events:{settings.region}:{account}:rule/{env_prefix}-*"},
            {"Sid": "PullThroughCache", "Effect": "Allow", "Action": list(ECR_CACHE_ACTIONS), "Resource": "*",
             "Condition": {"StringEquals": {"aws:RequestedRegion": settings.region}}},
            *us_east_1_statements(settings, partition=partition, account=account),
            {"Sid": "RegistryToken", "Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*",
             "Condition": {"StringEquals": {"aws:RequestedRegion": settings.region}}},
            {"Sid": "WarmOwnCachedRepositories", "Effect": "Allow", "Action": list(ECR_WARM_ACTIONS),
             "Resource": [f"arn:{partition}:ecr:{settings.region}:{account}:repository/{prefix}/*"
                          for prefix in own_cache_prefixes]},
            {"Sid": "GlobalReads", "Effect": "Allow", "Action": list(READ_ACTIONS), "Resource": "*"},
            {"Sid": "OwnIamOnly", "Effect": "Allow", "Action": list(IAM_WRITE_ACTIONS), "Resource": own_iam},
            {"Sid": "ServiceLinkedRoles", "Effect": "Allow", "Action": "iam:CreateServiceLinkedRole",
             "Resource": f"{iam}:role/aws-service-role/*"},
            {"Sid": "Route53Zones", "Effect": "Allow", "Action": list(ROUTE53_WRITE_ACTIONS), "Resource": "*"},
            {"Sid": "OwnBuckets", "Effect": "Allow", "Action": list(OWN_BUCKET_ACTIONS), "Resource": own_bucket_arns,
             "Condition": {"StringEquals": {"aws:RequestedRegion": settings.region}}},
            {"Sid": "OwnBucketObjects", "Effect": "Allow", "Action": list(OWN_OBJECT_ACTIONS),
             "Resource": own_object_arns, "Condition": {"StringEquals": {"aws:RequestedRegion": settings.region}}},
            {"Sid": "BucketList", "Effect": "Allow", "Action": "s3:ListAllMyBuckets", "Resource": "*"},
        ]  # fmt: skip
        workload_boundary = workload_boundary_arn(settings, partition=partition, account=account)
        state_objects = f"{state_bucket_arn}/{settings.project}-{settings.name}-*"
        fences = environment_fences(
            settings, partition=partition, account=account, lock_tables=[settings.state.lock_table],
            s3_resources=[*bucket_arns, state_bucket_arn, state_objects],
        )  # fmt: skip
        self.boundary = IamPolicy(
            self,
            "boundary",
            name=f"{name}-boundary",
            description=f"Caps what the {settings.name} deploy role can ever do (docs/ci-cd.md)",
            policy=_doc(
                # the same allows as the identity policy below, plus the state: the boundary is the
                # ceiling even if someone widens the role's own policies later
                *allowed,
                {"Sid": "StateAccess", "Effect": "Allow", "Action": ["s3:*", "dynamodb:*", "kms:*"],
                 "Resource": [state_bucket_arn, f"{state_bucket_arn}/*", lock_table_arn, state_key.arn]},
                {
                    "Sid": "NoTouchingCiIdentity",
                    "Effect": "Deny",
                    "NotAction": ["iam:Get*", "iam:List*"],
                    "Resource": [deploy_roles, f"{iam}:role/{settings.project}-*-plan",
                                 f"{iam}:role/{settings.project}-*-review",
                                 f"{iam}:policy/{settings.project}-*-deploy-boundary",
                                 f"{iam}:policy/{settings.project}-*-workload-boundary",
                                 f"{iam}:oidc-provider/{GITHUB_OIDC_HOST}"],
                },  # fmt: skip
                {
                    # a role the stacks create or change carries the workload boundary: an inline policy put on
                    # it (then the role passed to EC2) still reaches only this environment
                    "Sid": "OnlyRolesUnderTheWorkloadBoundary",
                    "Effect": "Deny",
                    "Action": list(BOUNDED_ROLE_ACTIONS),
                    "Resource": "*",
                    "Condition": {"StringNotEquals": {"iam:PermissionsBoundary": workload_boundary}},
                },
                {
                    "Sid": "AttachOnlyKnownPolicies",
                    "Effect": "Deny",
                    "Action": ["iam:AttachRolePolicy", "iam:AttachUserPolicy", "iam:AttachGroupPolicy"],
                    "Resource": "*",
                    "Condition": {"ArnNotLike": {"iam:PolicyARN": [
                        *(f"arn:{partition}:iam::aws:policy/{p}" for p in ATTACHABLE_AWS_POLICIES),
                        *(arn for arn in own_iam if ":policy/" in arn),
                    ]}},
                },  # fmt: skip
                {
                    "Sid": "NoIamUsersOrKeys",
                    "Effect": "Deny",
                    "Action": ["iam:CreateUser", "iam:CreateAccessKey", "iam:CreateLoginProfile"],
                    "Resource": "*",
                },
                {
                    "Sid": "NoRemovingBoundaries",
                    "Effect": "Deny",
                    "Action": ["iam:DeleteRolePermissionsBoundary", "iam:DeleteUserPermissionsBoundary"],
                    "Resource": "*",
                },
                {
                    "Sid": "StateStaysInPlace",
                    "Effect": "Deny",
                    "Action": [
                        "s3:DeleteBucket", "s3:PutBucketPolicy", "s3:DeleteBucketPolicy", "s3:PutBucketVersioning",
                        "s3:PutLifecycleConfiguration", "s3:PutEncryptionConfiguration",
                        "dynamodb:DeleteTable", "dynamodb:UpdateTable",
                        "kms:ScheduleKeyDeletion", "kms:DisableKey", "kms:PutKeyPolicy",
                    ],
                    # and the key of the Docker Hub credential, which the state stack also owns (modules/registry.py)
                    "Resource": [state_bucket_arn, lock_table_arn, state_key.arn,
                                 *([credential_key_arn] if credential_key_arn else [])],
                },  # fmt: skip
                *fences,
            ),
            tags=tags,
        )

        # the apply jobs only, behind the environment's reviewers; main's plan jobs get the review role
        self.role = self._github_role(
            "role", name=name, settings=settings, sub=subject(settings), tags=tags, boundary_arn=boundary_arn,
            description=f"GitHub Actions deploys {settings.name} from {ci.github_repository} "
            f"(environment {ci.github_environment})",
        )  # fmt: skip
        state_policy = _doc(
                {"Sid": "StateBucket", "Effect": "Allow", "Action": ["s3:ListBucket", "s3:GetBucketVersioning"],
                 "Resource": state_bucket_arn},
                {"Sid": "StateObjects", "Effect": "Allow",
                 "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                 "Resource": f"{state_bucket_arn}/{settings.project}-{settings.name}-*"},
                {"Sid": "Lock", "Effect": "Allow",
                 "Action": ["dynamodb:DescribeTable", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:DeleteItem"],
                 "Resource": lock_table_arn},
                {"Sid": "StateKey", "Effect": "Allow",
                 "Action": ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:DescribeKey"],
                 "Resource": state_key.arn},
        )  # fmt: skip
        IamRolePolicy(self, "state-access", role=self.role.id, name="terraform-state", policy=state_policy)
        IamRolePolicy(
            self,
            "platform-access",
            role=self.role.id,
            name="platform-stack",
            policy=_doc(*allowed),
        )

        # Pull requests plan every environment, read-only: the Describe/Get/List calls Terraform's
        # refresh makes on the platform's services, written out instead of AWS's ReadOnlyAccess,
        # which would also read every S3 object, log event and SecureString parameter of the account.
        # Secret values and object contents stay closed, and nothing is generated: the platform stack holds
        # no secret versions and no ephemeral password (the host seeds its secrets; Redis's password is the
        # apps stack's, which only the deploy role plans).
        plan_name = settings.stack_name("plan")
        self.plan_role = self._github_role(
            "plan-role", name=plan_name, settings=settings, sub=pull_request_subject(settings), tags=tags,
            boundary_arn=boundary_arn,
            description=f"GitHub Actions plans {settings.name} for pull requests of {ci.github_repository}",
        )  # fmt: skip
        state_objects = f"{state_bucket_arn}/{settings.project}-{settings.name}-*"
        plan_state_policy = _doc(
                {"Sid": "StateBucket", "Effect": "Allow", "Action": list(PLAN_STATE_ACTIONS["bucket"]),
                 "Resource": state_bucket_arn},
                {"Sid": "ReadStateObjects", "Effect": "Allow", "Action": list(PLAN_STATE_ACTIONS["objects"]),
                 "Resource": state_objects},
                {"Sid": "ReadStateDigest", "Effect": "Allow", "Action": list(PLAN_STATE_ACTIONS["lock"]),
                 "Resource": lock_table_arn},
                {"Sid": "DecryptState", "Effect": "Allow", "Action": list(PLAN_STATE_ACTIONS["key"]),
                 "Resource": state_key.arn},
        )  # fmt: skip
        IamRolePolicy(
            self, "plan-state-access", role=self.plan_role.id, name="terraform-state", policy=plan_state_policy
        )  # fmt: skip
        own_buckets = sorted({
            f"arn:{partition}:s3:::{bucket}"
            for bucket in (settings.load_balancer.access_log_bucket, settings.database.dump_bucket,
                           settings.apps.files_bucket)
        })  # fmt: skip
        reads = [
            {"Sid": "DescribeManagedServices", "Effect": "Allow", "Action": list(PLAN_READ_ACTIONS), "Resource": "*"},
            {"Sid": "PublicAmiParameters", "Effect": "Allow", "Action": ["ssm:GetParameter", "ssm:GetParameters"],
             "Resource": f"arn:{partition}:ssm:{settings.region}::parameter/aws/service/*"},
            {"Sid": "HeadOwnBuckets", "Effect": "Allow", "Action": list(BUCKET_READS), "Resource": own_buckets},
        ]  # fmt: skip
        IamRolePolicy(self, "plan-read", role=self.plan_role.id, name="platform-read", policy=_doc(*reads))
        self.review_role = self._review_role(
            settings=settings, reads=reads, boundary_arn=boundary_arn, state_objects=state_objects,
            state_bucket_arn=state_bucket_arn, lock_table_arn=lock_table_arn, state_key=state_key, tags=tags,
        )  # fmt: skip

    def _github_role(self, construct_id: str, *, name: str, settings: EnvironmentSettings, sub: str | list[str],
                     description: str, tags: dict[str, str], boundary_arn: str | None = None) -> IamRole:  # fmt: skip
        """A role GitHub Actions assumes through OIDC from the subject(s) ``sub``, for a session as long as
        ``ci.session_hours``; under the deploy boundary when ``boundary_arn`` is given."""
        bounded = {"permissions_boundary": boundary_arn, "depends_on": [self.boundary]} if boundary_arn else {}
        return IamRole(
            self, construct_id, name=name, description=description,
            assume_role_policy=_trust(self.oidc_provider_arn, sub),
            max_session_duration=settings.ci.session_hours * 3600, tags={**tags, "Name": name}, **bounded,
        )  # fmt: skip

    def _review_role(
        self, *, settings: EnvironmentSettings, reads: list[dict[str, Any]], boundary_arn: str, state_objects: str,
        state_bucket_arn: str, lock_table_arn: str, state_key: EncryptionKey, tags: dict[str, str],
    ) -> IamRole:
        """``<project>-<env>-review``: main's plan jobs (GitHub environment ``<env>-plan``, no reviewers) plan both
        stacks before anyone approves. The plan role's reads, plus what a saved plan of the apps stack needs: the
        lock row (a saved plan locks, so it never races an apply), the app's secrets it reads ephemerally, a random
        password from Secrets Manager, decryption of those secrets through Secrets Manager only, and (in the
        cluster stack) a view-only EKS access entry. It writes no state and changes nothing."""
        ci, partition, account = settings.ci, state_key.partition, state_key.account_id
        name = settings.stack_name("review")
        role = self._github_role(
            "review-role", name=name, settings=settings, sub=plan_subject(settings), tags=tags,
            boundary_arn=boundary_arn, description=f"GitHub Actions plans {settings.name} on main before approval "
            f"(environment {ci.github_environment}-plan); reads only",
        )  # fmt: skip
        secrets = app_secret_arns(settings, partition=partition, account=account)
        IamRolePolicy(self, "review-state-access", role=role.id, name="terraform-state", policy=_doc(
            {"Sid": "StateBucket", "Effect": "Allow", "Action": list(PLAN_STATE_ACTIONS["bucket"]),
             "Resource": state_bucket_arn},
            {"Sid": "ReadStateObjects", "Effect": "Allow", "Action": list(PLAN_STATE_ACTIONS["objects"]),
             "Resource": state_objects},
            {"Sid": "LockRows", "Effect": "Allow", "Action": list(REVIEW_STATE_LOCK_ACTIONS),
             "Resource": lock_table_arn},
            {"Sid": "DecryptState", "Effect": "Allow", "Action": list(PLAN_STATE_ACTIONS["key"]),
             "Resource": state_key.arn},
        ))  # fmt: skip
        IamRolePolicy(self, "review-read", role=role.id, name="plan-read", policy=_doc(
            *reads,
            {"Sid": "AppSecrets", "Effect": "Allow", "Action": list(REVIEW_SECRET_ACTIONS), "Resource": secrets},
            {"Sid": "RandomPassword", "Effect": "Allow", "Action": "secretsmanager:GetRandomPassword",
             "Resource": "*"},
            # the secrets' key is the platform stack's (unknown here): any key, but only through Secrets Manager in
            # this region, which decrypts only for a GetSecretValue the statement above allows
            {"Sid": "DecryptAppSecrets", "Effect": "Allow", "Action": "kms:Decrypt", "Resource": "*",
             "Condition": {"StringEquals": {"kms:ViaService": f"secretsmanager.{settings.region}.amazonaws.com"}}},
        ))  # fmt: skip
        return role
