"""The environment's own image registry: ECR pull-through cache rules in front of Docker Hub and registry.k8s.io
(docs/images.md).

Pods never pull from the Internet's registries: every image comes from ECR in the environment's account, as
``<account>.dkr.ecr.<region>.amazonaws.com/<project>-<env>/<docker|k8s>/<upstream path>@sha256:…``. The first pull
of a tag through a rule creates the cached repository from this environment's creation template: immutable tags,
encrypted with the environment's images key, tagged as the environment's, with a lifecycle policy. Docker Hub is
pulled with the account's Docker Hub credential (Secrets Manager, seeded by an operator: never in Terraform), so
the anonymous limit of 10 pulls per hour per IP behind one NAT address no longer applies.

The credential's secret and its key belong to the **state stack** (``DockerHubCredential``), applied by an
administrator before the platform stack: ECR's CreatePullThroughCacheRule checks the secret when the rule is
created (SecretNotFoundException, UnableToAccessSecretException, UnableToDecryptSecretValueException in the ECR API
reference), so the secret must exist, and hold a value, before the platform apply that creates the rule. The
platform stack only looks it up by name (DescribeSecret: metadata, never the value).

Per-environment prefixes keep two environments in one account apart: each has its own rules, templates and
repositories, and the node role and the fences admit only its own (``<project>-<env>/*``).
"""

from __future__ import annotations

import json
from typing import Any

from cdktf import TerraformOutput
from cdktf_cdktf_provider_aws.data_aws_secretsmanager_secret import DataAwsSecretsmanagerSecret
from cdktf_cdktf_provider_aws.ecr_pull_through_cache_rule import EcrPullThroughCacheRule
from cdktf_cdktf_provider_aws.ecr_repository_creation_template import (
    EcrRepositoryCreationTemplate,
    EcrRepositoryCreationTemplateEncryptionConfiguration,
)
from cdktf_cdktf_provider_aws.iam_role import IamRole
from cdktf_cdktf_provider_aws.iam_role_policy import IamRolePolicy
from cdktf_cdktf_provider_aws.secretsmanager_secret import SecretsmanagerSecret
from constructs import Construct

from modules.boundary import workload_boundary_arn
from modules.kms import EncryptionKey
from modules.settings import EnvironmentSettings
from modules.settings.images import UPSTREAMS, ecr_prefix

# AWS requires this name prefix for a pull-through cache credential (ECR user guide, "Storing your upstream
# repository credentials in an AWS Secrets Manager secret"); the pull-through cache service-linked role may read
# only secrets under it (AWSECRPullThroughCache_ServiceRolePolicy).
CREDENTIAL_PREFIX = "ecr-pullthroughcache/"
PULL_THROUGH_CACHE_ROLE = "aws-service-role/pullthroughcache.ecr.amazonaws.com/AWSServiceRoleForECRPullThroughCache"
# A cached repository keeps at most this many images: far above the handful of pinned releases an environment
# pulls, so a pinned image is never expired, while a forgotten cache does not grow for ever.
KEEP_IMAGES = 200


def credential_secret_name(settings: EnvironmentSettings) -> str:
    return f"{CREDENTIAL_PREFIX}{settings.project}/{settings.name}/docker-hub"


def repository_arn_pattern(settings: EnvironmentSettings, *, partition: str, account: str) -> str:
    """Every cached repository of this environment (both rules' prefixes)."""
    return f"arn:{partition}:ecr:{settings.region}:{account}:repository/{settings.project}-{settings.name}/*"


def lifecycle_policy() -> str:
    return json.dumps({"rules": [{
        "rulePriority": 1, "description": f"Keep the newest {KEEP_IMAGES} images of a cached repository",
        "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": KEEP_IMAGES},
        "action": {"type": "expire"},
    }]})  # fmt: skip


class ImageRegistry(Construct):
    """Pull-through cache rules, creation templates, their role and the cached images' key (platform stack).

    Exposes ``key``, ``credential`` (the state stack's secret, looked up: metadata only), ``rules`` and
    ``templates`` (by upstream registry host) and ``template_role``.
    """

    def __init__(self, scope: Construct, construct_id: str, *, settings: EnvironmentSettings) -> None:
        super().__init__(scope, construct_id)
        tags = {"Component": settings.component(settings.cluster.id)}
        self.key = EncryptionKey(
            self, "key", alias=settings.stack_name("images"), tags=tags,
            description=f"Encrypts the cached images of {settings.name}",
        )  # fmt: skip
        partition, account = self.key.partition, self.key.account_id
        # The state stack's secret (DockerHubCredential), by name: DescribeSecret and GetResourcePolicy, no value.
        # A plan stops here, naming the secret, while the state stack that creates it is not applied.
        self.credential = DataAwsSecretsmanagerSecret(
            self, "docker-hub-credential-lookup", name=credential_secret_name(settings))
        self.template_role = self._template_role(settings, partition=partition, account=account, tags=tags)
        self.rules: dict[str, EcrPullThroughCacheRule] = {}
        self.templates: dict[str, EcrRepositoryCreationTemplate] = {}
        for registry, (upstream_url, suffix) in UPSTREAMS.items():
            prefix = ecr_prefix(settings.project, settings.name, registry)
            self.rules[registry] = EcrPullThroughCacheRule(
                self, f"{suffix}-rule", ecr_repository_prefix=prefix, upstream_registry_url=upstream_url,
                credential_arn=self.credential.arn if registry == "docker.io" else None,
            )  # fmt: skip
            self.templates[registry] = EcrRepositoryCreationTemplate(
                self, f"{suffix}-template", prefix=prefix, applied_for=["PULL_THROUGH_CACHE"],
                description=f"Repositories cached from {upstream_url} for {settings.name}",
                image_tag_mutability="IMMUTABLE", custom_role_arn=self.template_role.arn,
                encryption_configuration=[EcrRepositoryCreationTemplateEncryptionConfiguration(
                    encryption_type="KMS", kms_key=self.key.arn)],
                # what the provider's default_tags give every other resource: the templates' repositories are made
                # by ECR, not Terraform, so they are tagged here (the Environment tag fence covers them)
                resource_tags={"Project": settings.project, "Environment": settings.name, "ManagedBy": "cdktf",
                               **tags},
                lifecycle_policy=lifecycle_policy(),
            )  # fmt: skip
        TerraformOutput(self, "image_registry", value=f"{account}.dkr.ecr.{settings.region}.amazonaws.com")

    def _template_role(self, settings: EnvironmentSettings, *, partition: str, account: str,
                       tags: dict[str, str]) -> IamRole:  # fmt: skip
        """The role ECR uses to create a cached repository with tags and a KMS key (ECR user guide, "Create an
        IAM role for repository creation templates"), narrowed to this environment's repositories and key."""
        name = settings.stack_name("ecr-templates")
        role = IamRole(
            self, "template-role", name=name, tags={**tags, "Name": name},
            description=f"ECR creates {settings.name}'s pull-through cache repositories with it",
            permissions_boundary=workload_boundary_arn(settings, partition=partition, account=account),
            assume_role_policy=json.dumps({"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Principal": {"Service": "ecr.amazonaws.com"}, "Action": "sts:AssumeRole"}]}),
        )  # fmt: skip
        IamRolePolicy(self, "template-policy", name=name, role=role.id, policy=json.dumps({
            "Version": "2012-10-17", "Statement": [
                {"Sid": "CreateOwnRepositories", "Effect": "Allow",
                 "Action": ["ecr:CreateRepository", "ecr:ReplicateImage", "ecr:TagResource"],
                 "Resource": repository_arn_pattern(settings, partition=partition, account=account)},
                {"Sid": "EncryptWithOwnKey", "Effect": "Allow",
                 "Action": ["kms:CreateGrant", "kms:RetireGrant", "kms:DescribeKey"], "Resource": self.key.arn},
            ]}))  # fmt: skip
        return role


class DockerHubCredential(Construct):
    """The Docker Hub credential's secret (no value) and the key that encrypts it, in the **state stack**.

    ECR's CreatePullThroughCacheRule refuses a rule whose secret does not exist or cannot be read or decrypted
    (SecretNotFoundException, UnableToAccessSecretException, UnableToDecryptSecretValueException: ECR API reference),
    so the secret exists, and an operator seeds it, before the platform stack creates the rule
    (docs/implementation-guide.md, "First deploy"; docs/images.md). The administrator-applied state stack owns it; the CI roles may only describe it (the fence
    ``OnlyOperatorsChangeTheCredential``, modules/boundary.py). Exposes ``key`` and ``secret``.
    """

    def __init__(self, scope: Construct, construct_id: str, *, settings: EnvironmentSettings) -> None:
        super().__init__(scope, construct_id)
        tags = {"Component": settings.component(settings.cluster.id)}
        self.key = EncryptionKey(
            self, "key", alias=settings.stack_name("docker-hub"), tags=tags,
            description=f"Encrypts the Docker Hub credential of {settings.name}'s image cache",
            service_statements=[self._pull_through_cache_reads_credential(settings)],
        )  # fmt: skip
        name = credential_secret_name(settings)
        # No value here: an operator stores {"username": …, "accessToken": …} (docs/images.md), so the token is
        # never in the configuration, the plan or the state.
        self.secret = SecretsmanagerSecret(
            self, "docker-hub-credential", name=name, kms_key_id=self.key.arn,
            description="Docker Hub user name and access token of the ECR pull-through cache (docs/images.md)",
            recovery_window_in_days=settings.database.secret_recovery_days, tags={**tags, "Name": name},
        )  # fmt: skip
        TerraformOutput(self, "docker_hub_credential_secret_arn", value=self.secret.arn,
                        description="Seed it right after this stack, before the platform stack (docs/images.md)")

    @staticmethod
    def _pull_through_cache_reads_credential(settings: EnvironmentSettings) -> dict[str, Any]:
        """The pull-through cache's service-linked role reads the credential (its managed policy grants
        GetSecretValue on ecr-pullthroughcache/*, no KMS): this key policy lets it decrypt, through Secrets Manager
        in this region only. Same account, so the key policy alone grants it (KMS key policies, "Allows access to
        the AWS account and enables IAM policies")."""
        return {
            "Sid": "PullThroughCacheReadsCredential", "Effect": "Allow",
            # "Resource": "*" in a key policy is the key itself (AWS KMS developer guide, "Key policies")
            "Principal": {"AWS": "*"}, "Action": "kms:Decrypt", "Resource": "*",
            "Condition": {
                "StringEquals": {"kms:ViaService": f"secretsmanager.{settings.region}.amazonaws.com",
                                 "aws:PrincipalAccount": settings.account.id},
                "ArnLike": {"aws:PrincipalArn": f"arn:*:iam::{settings.account.id}:role/{PULL_THROUGH_CACHE_ROLE}"},
            },
        }  # fmt: skip
