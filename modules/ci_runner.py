"""The CI runner inside the VPC: a CodeBuild project that GitHub Actions jobs run on, so the apps stack is
planned and applied next to the cluster's private API endpoint (docs/ci-cd.md).

- ``GitHubConnection``: the AWS CodeConnections connection to GitHub. AWS creates it PENDING; a person
  authorises it once in the console, during the first platform apply (docs/implementation-guide.md, "First
  deploy"). CodeBuild cannot create the runner's webhook over a connection that is not AVAILABLE, so the
  webhook is created late in that apply (``webhook_after``); a missed authorisation fails only the webhook,
  and the next apply creates it.
- ``CiRunner`` (platform stack): the connection and the CodeBuild project in the private subnets with a webhook on
  GitHub's
  ``WORKFLOW_JOB_QUEUED`` event; a job that says
  ``runs-on: codebuild-<project name>-${{ github.run_id }}-${{ github.run_attempt }}`` runs in it
  (https://docs.aws.amazon.com/codebuild/latest/userguide/action-runner.html). Its own security group
  (HTTPS out only), encrypted log group with retention, and a role that can only run the build (logs, the
  VPC network interface, the connection). The job itself assumes the environment's deploy role through
  GitHub's OIDC token, exactly as on GitHub's runners: one identity applies both stacks.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from cdktf import ITerraformDependable
from cdktf_cdktf_provider_aws.codebuild_project import (
    CodebuildProject,
    CodebuildProjectArtifacts,
    CodebuildProjectEnvironment,
    CodebuildProjectLogsConfig,
    CodebuildProjectLogsConfigCloudwatchLogs,
    CodebuildProjectLogsConfigS3Logs,
    CodebuildProjectSource,
    CodebuildProjectSourceAuth,
    CodebuildProjectVpcConfig,
)
from cdktf_cdktf_provider_aws.codebuild_webhook import (
    CodebuildWebhook,
    CodebuildWebhookFilterGroup,
    CodebuildWebhookFilterGroupFilter,
)
from cdktf_cdktf_provider_aws.codeconnections_connection import CodeconnectionsConnection
from cdktf_cdktf_provider_aws.iam_role import IamRole
from cdktf_cdktf_provider_aws.iam_role_policy import IamRolePolicy
from cdktf_cdktf_provider_aws.security_group import SecurityGroup
from cdktf_cdktf_provider_aws.vpc_security_group_egress_rule import VpcSecurityGroupEgressRule
from cdktf_cdktf_provider_aws.vpc_security_group_ingress_rule import VpcSecurityGroupIngressRule
from constructs import Construct

from modules.boundary import workload_boundary_arn
from modules.kms import encrypted_log_group
from modules.settings import EnvironmentSettings

RUNNER_COMPONENT = "ci-runner"  # not in the document; tagged <env>/ci-runner
JOB_QUEUED = "WORKFLOW_JOB_QUEUED"
# Only jobs of the deploy workflow start the runner. WORKFLOW_NAME is the filter CodeBuild evaluates on
# WORKFLOW_JOB_QUEUED (CodeBuild API reference, WebhookFilter; HEAD_REF is documented for push and pull-request
# events only). A reusable workflow's jobs may report the caller's name or their own, so both are accepted.
# A name is not a secret: a same-repository branch could rename its workflow, so this narrows who starts a build;
# what the build can do is bounded by the runner role (no AWS rights beyond running it) and by the roles' OIDC
# trust (GitHub environments <env> and <env>-plan, main only) (docs/ci-cd.md).
DEPLOY_WORKFLOWS = "^(deploy|apply)$"
# CodeBuild's maximum build timeout (CreateProject timeoutInMinutes: 5 to 2160 minutes).
MAX_BUILD_TIMEOUT_MINUTES = 2160
# The build clock starts when the job is queued (network interface, runner registration): CodeBuild must not stop
# a long apply before GitHub's timeout-minutes does, or the lock row stays behind.
BUILD_TIMEOUT_MARGIN_MINUTES = 20
# The network-interface calls CodeBuild makes with the project's role to put a build into the VPC
# (AWS CodeBuild user guide, "Allow CodeBuild access to AWS services required to create a VPC network interface":
# docs.aws.amazon.com/codebuild/latest/userguide/auth-and-access-control-iam-identity-based-access-control.html).
# AWS documents these on "*": the network interface does not exist (no ARN) when CodeBuild creates it, and the
# Describe calls support no resource-level permissions. CreateNetworkInterfacePermission, which hands the
# interface to CodeBuild, is the one AWS scopes: to the project's subnets and to codebuild.amazonaws.com.
VPC_ACTIONS = (
    "ec2:CreateNetworkInterface", "ec2:DescribeDhcpOptions", "ec2:DescribeNetworkInterfaces",
    "ec2:DeleteNetworkInterface", "ec2:DescribeSubnets", "ec2:DescribeSecurityGroups", "ec2:DescribeVpcs",
)  # fmt: skip
CONNECTION_ACTIONS = (
    "codeconnections:GetConnection", "codeconnections:GetConnectionToken", "codeconnections:UseConnection",
)  # fmt: skip


def build_timeout_minutes(job_timeout_minutes: int) -> int:
    """The runner's build timeout: the job's timeout-minutes plus the queue-time margin, within CodeBuild's cap."""
    return min(job_timeout_minutes + BUILD_TIMEOUT_MARGIN_MINUTES, MAX_BUILD_TIMEOUT_MINUTES)


def connection_name(settings: EnvironmentSettings) -> str:
    return settings.stack_name("github")  # twentycrm-dev-github (CodeConnections allows 32 characters)


def runner_project_name(settings: EnvironmentSettings) -> str:
    return settings.stack_name("ci-runner")


def runs_on_label(settings: EnvironmentSettings) -> str:
    """What a workflow job names in ``runs-on`` to run on this environment's runner."""
    return f"codebuild-{runner_project_name(settings)}-${{{{ github.run_id }}}}-${{{{ github.run_attempt }}}}"


class GitHubConnection(Construct):
    """The CodeConnections connection to GitHub (PENDING until authorised once in the console).
    Exposes ``connection``, ``arn`` and ``name``."""

    def __init__(self, scope: Construct, construct_id: str, *, settings: EnvironmentSettings) -> None:
        super().__init__(scope, construct_id)
        self.name = connection_name(settings)
        self.connection = CodeconnectionsConnection(
            self,
            "connection",
            name=self.name,
            provider_type="GitHub",
            tags={"Name": self.name, "Component": settings.component(RUNNER_COMPONENT)},
        )
        self.arn = self.connection.arn


class CiRunner(Construct):
    """The in-VPC GitHub Actions runner. Exposes ``connection``, ``project``, ``role``, ``security_group`` and
    ``log_group``."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: EnvironmentSettings,
        vpc_id: str,
        subnet_ids: Sequence[str],
        cluster_security_group_id: str,
        webhook_after: Sequence[ITerraformDependable] = (),
    ) -> None:
        super().__init__(scope, construct_id)
        ci = settings.ci
        name = runner_project_name(settings)
        tags = {"Name": name, "Component": settings.component(RUNNER_COMPONENT)}
        github = GitHubConnection(self, "github", settings=settings)
        self.connection, connection_arn = github.connection, github.arn
        self.log_group, key = encrypted_log_group(
            self, "logs", log_group_name=f"/aws/codebuild/{name}", retention_days=ci.runner_log_retention_days,
            alias=f"{name}-logs", description=f"Encrypts the logs of the CI runner of {settings.name}",
            region=settings.region, tags=tags,
        )  # fmt: skip
        self.security_group = self._security_group(
            name=name, vpc_id=vpc_id, cluster_security_group_id=cluster_security_group_id, tags=tags
        )
        self.role = IamRole(
            self,
            "role",
            name=name,
            description=f"CodeBuild runs the GitHub Actions jobs of {settings.name} inside its VPC",
            assume_role_policy=json.dumps({"Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Principal": {"Service": "codebuild.amazonaws.com"}, "Action": "sts:AssumeRole",
                "Condition": {"StringEquals": {"aws:SourceAccount": key.account_id}},
            }]}),
            tags=tags,
            permissions_boundary=workload_boundary_arn(settings, partition=key.partition, account=key.account_id),
        )  # fmt: skip
        arn = f"arn:{key.partition}:ec2:{settings.region}:{key.account_id}"
        policy = IamRolePolicy(
            self,
            "role-policy",
            role=self.role.id,
            name="ci-runner",
            policy=json.dumps({"Version": "2012-10-17", "Statement": [
                {"Sid": "Logs", "Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                 "Resource": f"{self.log_group.arn}:*"},
                {"Sid": "LogKey", "Effect": "Allow", "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
                 "Resource": key.arn},
                {"Sid": "VpcNetworkInterface", "Effect": "Allow", "Action": list(VPC_ACTIONS), "Resource": "*"},
                {"Sid": "VpcNetworkInterfacePermission", "Effect": "Allow",
                 "Action": "ec2:CreateNetworkInterfacePermission", "Resource": f"{arn}:network-interface/*",
                 "Condition": {"StringEquals": {"ec2:AuthorizedService": "codebuild.amazonaws.com"},
                               "ArnEquals": {"ec2:Subnet": [f"{arn}:subnet/{s}" for s in subnet_ids]}}},
                {"Sid": "GitHubConnection", "Effect": "Allow", "Action": list(CONNECTION_ACTIONS),
                 "Resource": connection_arn},
            ]}),
        )  # fmt: skip
        self.project = CodebuildProject(
            self,
            "project",
            name=name,
            description=f"GitHub Actions runner in the private subnets of {settings.name} (runs-on: "
            f"codebuild-{name}-<run id>-<attempt>)",
            service_role=self.role.arn,
            build_timeout=build_timeout_minutes(ci.apply_timeout_minutes),
            encryption_key=key.arn,
            artifacts=CodebuildProjectArtifacts(type="NO_ARTIFACTS"),
            environment=CodebuildProjectEnvironment(
                type="LINUX_CONTAINER", compute_type=ci.runner_compute_type, image=ci.runner_image,
                image_pull_credentials_type="CODEBUILD", privileged_mode=False,
            ),
            # The runner registers with this repository; the job's steps come from the workflow, not a buildspec.
            source=CodebuildProjectSource(
                type="GITHUB", location=f"https://github.com/{ci.github_repository}.git",
                auth=CodebuildProjectSourceAuth(type="CODECONNECTIONS", resource=connection_arn),
            ),
            vpc_config=CodebuildProjectVpcConfig(
                vpc_id=vpc_id, subnets=list(subnet_ids), security_group_ids=[self.security_group.id]
            ),
            logs_config=CodebuildProjectLogsConfig(
                cloudwatch_logs=CodebuildProjectLogsConfigCloudwatchLogs(
                    status="ENABLED", group_name=self.log_group.name
                ),
                s3_logs=CodebuildProjectLogsConfigS3Logs(status="DISABLED"),
            ),
            tags=tags,
            # CodeBuild checks the role's VPC permissions when the project is created.
            depends_on=[policy],
        )  # fmt: skip
        CodebuildWebhook(
            self,
            "webhook",
            project_name=self.project.name,
            build_type="BUILD",
            filter_group=[CodebuildWebhookFilterGroup(filter=[
                CodebuildWebhookFilterGroupFilter(type="EVENT", pattern=JOB_QUEUED),
                CodebuildWebhookFilterGroupFilter(type="WORKFLOW_NAME", pattern=DEPLOY_WORKFLOWS),
            ])],
            depends_on=list(webhook_after) or None,
        )  # fmt: skip

    def _security_group(
        self, *, name: str, vpc_id: str, cluster_security_group_id: str, tags: dict[str, str]
    ) -> SecurityGroup:
        """HTTPS out only: GitHub, the AWS APIs (through the NAT gateways) and the cluster's private endpoint.
        DNS needs no rule: security groups do not filter traffic to the VPC's Amazon DNS server
        (https://docs.aws.amazon.com/vpc/latest/userguide/security-group-rules.html)."""
        sg = SecurityGroup(
            self,
            "sg",
            name_prefix=f"{name}-",  # a prefix, so a replacement can exist next to the old one
            description=f"CI runner {name}: HTTPS out only",
            vpc_id=vpc_id,
            tags=tags,
            lifecycle={"create_before_destroy": True},
        )
        VpcSecurityGroupEgressRule(
            self, "egress-https", security_group_id=sg.id, cidr_ipv4="0.0.0.0/0", ip_protocol="tcp", from_port=443,
            to_port=443, description="HTTPS: GitHub, AWS APIs, the EKS API endpoint", tags=tags,
        )  # fmt: skip
        VpcSecurityGroupIngressRule(
            self, "cluster-api-from-runner", security_group_id=cluster_security_group_id,
            referenced_security_group_id=sg.id, ip_protocol="tcp", from_port=443, to_port=443,
            description="Kubernetes API from the CI runner (Helm and kubernetes providers of the apps stack)",
            tags={**tags, "Name": f"{name}-to-cluster-api"},
        )  # fmt: skip
        return sg
