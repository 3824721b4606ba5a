"""The stacks of one environment and the constructs each one holds.

``twentycrm-account-<id>``  once per AWS account (modules/account.py): the GitHub OIDC provider and the
                           account stack's own state bucket and lock table
``twentycrm-<env>-state``    the state bucket and lock table (bootstrapped on a local backend), the CI
                           deploy/review/plan roles and the image cache's Docker Hub credential
``twentycrm-<env>-platform`` everything AWS: network, DNS and certificate, ALB, EKS cluster and node groups,
                           the PostgreSQL host and its backups, alarms, dashboard and Container Insights
``twentycrm-<env>-apps``     what runs on the cluster: Twenty's three Helm releases, their secret, file bucket
                           and roles, the gp3 StorageClass, load balancer controller, metrics-server and
                           Cluster Autoscaler (the only stack with the kubernetes and helm providers)

Each stack is planned and applied on its own, so a change to the platform never risks the state.
"""

from __future__ import annotations

from cdktf import (
    AssetType,
    DataTerraformRemoteStateS3,
    Fn,
    LocalBackend,
    S3Backend,
    TerraformAsset,
    TerraformOutput,
    TerraformStack,
)
from cdktf_cdktf_provider_aws.data_aws_caller_identity import DataAwsCallerIdentity
from cdktf_cdktf_provider_aws.provider import AwsProvider, AwsProviderDefaultTags
from cdktf_cdktf_provider_helm.provider import HelmProvider, HelmProviderKubernetes, HelmProviderKubernetesExec
from cdktf_cdktf_provider_kubernetes.namespace_v1 import NamespaceV1, NamespaceV1Metadata
from cdktf_cdktf_provider_kubernetes.provider import KubernetesProvider, KubernetesProviderExec
from constructs import Construct

from modules.account import AccountStack
from modules.registry import DockerHubCredential, ImageRegistry
from modules.apps import (
    CHART_DIR, RELEASES, ClusterAddons, FilesBucket, TwentySecret, image_reference, twenty_release,
)  # fmt: skip
from modules.ci_runner import CiRunner
from modules.cluster import POD_IDENTITY_PRINCIPAL, Cluster
from modules.database import MOUNT_POINT, DatabaseHost
from modules.boundary import WorkloadBoundary, workload_boundary_arn
from modules.deploy_role import DEPLOY_COMPONENT, DeployRole
from modules.dns import Dns
from modules.load_balancer import LoadBalancer
from modules.monitoring import Monitoring
from modules.network import Network
from modules.node_group import TIER_LABEL, NodeGroup, NodeRole
from modules.node_security_group import NodeSecurityGroup
from modules.settings import EnvironmentSettings
from modules.state import TerraformState
from modules.waf import WebApplicationFirewall


# Where the state stack held the account's GitHub OIDC provider before it moved to the account stack
# (construct path <state stack>/deploy/github-oidc; the construct ID hash is cdktf's, the same in every state stack).
FORMER_OIDC_PROVIDER_ADDRESS = "aws_iam_openid_connect_provider.deploy_github-oidc_D1604D37"


def _aws_provider(stack: TerraformStack, settings: EnvironmentSettings, *, alias: str | None = None,
                  region: str | None = None) -> AwsProvider:  # fmt: skip
    """The stack's provider, or with ``alias`` another region's (the same account fence and tags)."""
    return AwsProvider(
        stack,
        alias or "aws",
        alias=alias,
        region=region or settings.region,
        # a wrong profile or role fails before any change: the provider refuses every other account
        allowed_account_ids=[settings.account.id],
        default_tags=[
            AwsProviderDefaultTags(
                tags={"Project": settings.project, "Environment": settings.name, "ManagedBy": "cdktf"}
            )
        ],
    )


def state_key_alias(settings: EnvironmentSettings) -> str:
    """The alias of the state key (modules/state.py names it); the S3 backend encrypts state objects with it."""
    return f"alias/{settings.stack_name('tfstate')}"


def _s3_backend(stack: TerraformStack, settings: EnvironmentSettings, stack_name: str) -> None:
    S3Backend(
        stack,
        bucket=settings.state.bucket,
        key=f"{stack_name}/terraform.tfstate",
        region=settings.region,
        encrypt=True,
        # Without it, encrypt=true writes state objects with SSE-S3 whatever the bucket's default; with the
        # state key's alias (Terraform 1.11 accepts alias/...), state is SSE-KMS and readable only with Decrypt on it.
        kms_key_id=state_key_alias(settings),
        dynamodb_table=settings.state.lock_table,
        # Terraform's S3 backend (1.6+) asks STS for the account and refuses any other at init
        allowed_account_ids=[settings.account.id],
    )
    if settings.state.use_lockfile:
        # cdktf 0.21's S3Backend predates Terraform 1.10's S3-native locking; set it directly.
        stack.add_override("terraform.backend.s3.use_lockfile", True)


class StateStack(TerraformStack):
    """``<project>-<env>-state``: exposes ``state`` (a TerraformState), ``deploy`` (the environment's
    deploy, review and plan roles, which trust the account stack's GitHub OIDC provider) and
    ``registry_credential`` (the image cache's Docker Hub credential and its key, seeded by an operator)."""

    def __init__(self, scope: Construct, *, settings: EnvironmentSettings) -> None:
        name = settings.stack_name("state")
        super().__init__(scope, name)
        _aws_provider(self, settings)
        if settings.state.own_backend == "s3":
            _s3_backend(self, settings, name)
        else:
            # Relative to cdktf.out/stacks/<stack>/: the file lives in the project root, outside
            # cdktf.out, so a re-synth never deletes the only copy of the bootstrap state.
            LocalBackend(self, path=f"../../../terraform.{name}.tfstate")
        self.state = TerraformState.for_environment(self, "state", settings=settings)
        TerraformOutput(self, "state_bucket", value=self.state.bucket.bucket)
        TerraformOutput(self, "lock_table", value=self.state.lock_table.name)
        TerraformOutput(self, "state_key_arn", value=self.state.key.arn)
        # here, not in the platform stack: the pull-through cache rule needs it to exist, seeded, when it is created
        # (modules/registry.py, docs/images.md "Seeding the Docker Hub credential")
        self.registry_credential = DockerHubCredential(self, "registry-credential", settings=settings)
        self.deploy = DeployRole(
            self,
            "deploy",
            settings=settings,
            state_bucket_arn=self.state.bucket.arn,
            lock_table_arn=self.state.lock_table.arn,
            state_key=self.state.key,
            oidc_provider_arn=settings.account.oidc_provider_arn(self.state.key.partition),
            credential_key_arn=self.registry_credential.key.arn,
        )
        # the ceiling of every role the platform and apps stacks create (modules/boundary.py); here, so only an
        # administrator applies it
        self.workload_boundary = WorkloadBoundary(
            self, "workload-boundary", settings=settings, partition=self.state.key.partition,
            account=self.state.key.account_id, tags={"Component": settings.component(DEPLOY_COMPONENT)},
        )  # fmt: skip
        TerraformOutput(self, "deploy_role_arn", value=self.deploy.role.arn, description="AWS_DEPLOY_ROLE_ARN of the "
                        f"GitHub environment {settings.ci.github_environment} (docs/ci-cd.md)")
        TerraformOutput(self, "plan_role_arn", value=self.deploy.plan_role.arn,
                        description="Assumed by pull-request plans (docs/ci-cd.md)")
        TerraformOutput(self, "review_role_arn", value=self.deploy.review_role.arn,
                        description="Assumed by main's plan jobs before approval (docs/ci-cd.md)")
        TerraformOutput(self, "github_oidc_provider_arn", value=self.deploy.oidc_provider_arn)
        # Before the account stack existed, the first environment of an account created the GitHub OIDC provider
        # here. Terraform forgets it without deleting it (a no-op where it never was); the account stack imports
        # it (README, "Move the GitHub OIDC provider"). cdktf 0.21 has no construct for a removed block.
        self.add_override("removed", [{"from": FORMER_OIDC_PROVIDER_ADDRESS, "lifecycle": [{"destroy": False}]}])


class PlatformStack(TerraformStack):
    """``<project>-<env>-platform``: exposes ``network``, ``node_security_group``, ``dns``,
    ``load_balancer``, ``waf``, ``cluster``, ``node_groups``, ``database``, ``monitoring`` and ``us_east_1_provider``
    (the aws provider alias ``us_east_1``: Route53's DNSSEC key, query log group and DNSSEC alarms live only there)."""

    def __init__(self, scope: Construct, *, settings: EnvironmentSettings) -> None:
        name = settings.stack_name("platform")
        super().__init__(scope, name)
        _aws_provider(self, settings)
        # Route53's DNSSEC keys and query log groups live in us-east-1 only (modules/dnssec.py)
        self.us_east_1_provider = _aws_provider(self, settings, alias="us_east_1", region="us-east-1")
        _s3_backend(self, settings, name)
        self._network(settings)
        self._edge(settings)
        self._cluster(settings)
        self.registry = ImageRegistry(self, "registry", settings=settings)
        self._database(settings)
        self._monitoring(settings)
        self._ci_runner(settings)

    def _network(self, settings: EnvironmentSettings) -> None:
        self.network = Network(self, "network", settings=settings)
        self.node_security_group = NodeSecurityGroup(
            self, "node-security-group", settings=settings, vpc_id=self.network.vpc.id
        )
        TerraformOutput(self, "vpc_id", value=self.network.vpc.id)
        TerraformOutput(self, "public_subnet_ids", value=[s.id for s in self.network.public_subnets])
        TerraformOutput(self, "private_subnet_ids", value=[s.id for s in self.network.private_subnets])
        TerraformOutput(self, "node_security_group_id", value=self.node_security_group.id)

    def _edge(self, settings: EnvironmentSettings) -> None:
        self.dns = Dns(self, "dns", settings=settings, us_east_1=self.us_east_1_provider)
        self.load_balancer = LoadBalancer(
            self,
            "load-balancer",
            settings=settings,
            vpc_id=self.network.vpc.id,
            public_subnet_ids=[s.id for s in self.network.public_subnets],
            node_security_group_id=self.node_security_group.id,
            certificate_arn=self.dns.certificate_arn,
            zone_id=self.dns.zone_id,
        )
        # the web ACL in front of the ALB (modules/waf.py, docs/edge.md "Web application firewall")
        self.waf = WebApplicationFirewall(self, "waf", settings=settings, alb_arn=self.load_balancer.alb.arn)
        TerraformOutput(
            self,
            "zone_name_servers",
            value=self.dns.name_servers,
            description=f"Delegate {self.dns.zone_name} to these from its parent zone (docs/edge.md)",
        )
        TerraformOutput(self, "zone_id", value=self.dns.zone_id)
        if self.dns.signing:
            self._dnssec_outputs(self.dns.signing.key_signing_key)
        if self.dns.query_logging:
            TerraformOutput(self, "query_log_group", value=self.dns.query_logging.log_group.name,
                            description="Route53's query logs of the zone, in us-east-1 (docs/edge.md)")
        TerraformOutput(self, "certificate_arn", value=self.dns.certificate_arn)
        TerraformOutput(self, "alb_dns_name", value=self.load_balancer.alb.dns_name)
        TerraformOutput(self, "alb_security_group_id", value=self.load_balancer.security_group.id)
        TerraformOutput(self, "web_acl_arn", value=self.waf.web_acl.arn)
        TerraformOutput(self, "waf_log_group", value=self.waf.log_group.name,
                        description="WAF logs: docs/edge.md, reading the logs")
        TerraformOutput(
            self,
            "server_target_group_arn",
            value=self.load_balancer.target_group_arn,
            description="For the TargetGroupBinding of Twenty's server (ip targets, port "
            f"{settings.load_balancer.target_port})",
        )

    def _dnssec_outputs(self, ksk) -> None:
        """What the parent zone olhai.app.br needs to publish (the DS record), and the KSK's fields behind it."""
        TerraformOutput(self, "ds_record", value=ksk.ds_record,
                        description="Publish in the parent zone as the DS record of this zone, after signing "
                        "(docs/edge.md, DNSSEC and query logging)")  # fmt: skip
        TerraformOutput(self, "dnssec_key_tag", value=ksk.key_tag)
        TerraformOutput(self, "dnssec_signing_algorithm", value=ksk.signing_algorithm_type,
                        description="13: ECDSA P-256 with SHA-256")  # fmt: skip
        TerraformOutput(self, "dnssec_digest_algorithm", value=ksk.digest_algorithm_type,
                        description="2: SHA-256")  # fmt: skip
        TerraformOutput(self, "dnssec_digest", value=ksk.digest_value)
        TerraformOutput(self, "dnssec_public_key", value=ksk.public_key,
                        description="The KSK's public key (DNSKEY), for parents that take a key instead of a DS")

    def _cluster(self, settings: EnvironmentSettings) -> None:
        private_subnet_ids = [s.id for s in self.network.private_subnets]
        self.cluster = Cluster(
            self,
            "cluster",
            settings=settings,
            vpc_id=self.network.vpc.id,
            subnet_ids=private_subnet_ids,
            node_security_group_id=self.node_security_group.id,
        )
        node_role = NodeRole(self, "node-role", settings=settings, partition=self.cluster.partition,
                             account=self.cluster.account_id)
        self.node_groups = {
            tier: NodeGroup(
                self,
                f"{tier}-nodes",
                settings=settings,
                tier=tier,
                cluster_name=self.cluster.eks.name,
                kubernetes_version=self.cluster.eks.version,
                node_role=node_role,
                subnet_ids=private_subnet_ids,
                node_security_group_id=self.node_security_group.id,
                depends_on=self.cluster.network_addons,
            )
            for tier in ("frontend", "backend")
        }
        self.cluster.add_workload_addons(after=[g.node_group for g in self.node_groups.values()])
        # What the apps stack needs to reach the cluster and give service accounts IAM roles.
        TerraformOutput(self, "cluster_name", value=self.cluster.eks.name)
        TerraformOutput(self, "cluster_arn", value=self.cluster.eks.arn)
        TerraformOutput(self, "cluster_endpoint", value=self.cluster.endpoint)
        TerraformOutput(self, "cluster_certificate_authority_data", value=self.cluster.certificate_authority)
        TerraformOutput(self, "cluster_version", value=self.cluster.eks.version)
        TerraformOutput(self, "cluster_security_group_id", value=self.cluster.security_group.id)
        TerraformOutput(self, "cluster_oidc_issuer_url", value=self.cluster.oidc_issuer_url)
        TerraformOutput(self, "pod_identity_principal", value=POD_IDENTITY_PRINCIPAL)
        TerraformOutput(self, "node_role_arn", value=node_role.role.arn)
        TerraformOutput(self, "node_tier_label", value=TIER_LABEL)

    def _database(self, settings: EnvironmentSettings) -> None:
        # The host sits in the first private zone; pg_hba admits every private subnet, where the
        # EKS pods get their addresses (VPC CNI).
        zone = min(s.zone for s in settings.network.subnets if s.tier == "private")
        self.database = DatabaseHost(
            self,
            "database",
            settings=settings,
            vpc_id=self.network.vpc.id,
            subnet=self.network.private_subnets[0],
            zone=zone,
            client_cidrs=[s.cidr for s in settings.network.subnets if s.tier == "private"],
            client_security_group_id=self.node_security_group.id,
            egress=self.network.private_egress[zone],
        )
        db = self.database
        TerraformOutput(self, "db_host", value=db.private_dns, description="Private DNS name of the PostgreSQL host")
        TerraformOutput(self, "db_private_ip", value=db.private_ip)
        TerraformOutput(self, "db_port", value=db.port)
        TerraformOutput(self, "db_name", value=db.database_name)
        TerraformOutput(self, "db_username", value=db.username)
        TerraformOutput(self, "db_password_secret_arn", value=db.password_secret.arn)
        TerraformOutput(self, "twenty_encryption_key_secret_arn", value=db.encryption_key_secret.arn)
        TerraformOutput(self, "db_secrets_kms_key_arn", value=db.key.arn, description="Decrypts both secrets")
        TerraformOutput(self, "db_security_group_id", value=db.security_group.id)
        TerraformOutput(self, "db_instance_id", value=db.instance.id)
        TerraformOutput(self, "db_dump_bucket", value=db.backup.bucket.bucket)

    def _ci_runner(self, settings: EnvironmentSettings) -> None:
        self.ci_runner = CiRunner(
            self,
            "ci-runner",
            settings=settings,
            vpc_id=self.network.vpc.id,
            subnet_ids=[s.id for s in self.network.private_subnets],
            cluster_security_group_id=self.cluster.security_group.id,
            # The webhook needs the connection authorised by a person: it waits until the certificate is issued
            # (the listener waits for it, i.e. for the zone delegation, the other person-step of a first apply)
            # and the nodes exist, 20+ minutes into the first apply (README).
            webhook_after=[self.load_balancer.https_listener, *(g.node_group for g in self.node_groups.values())],
        )
        # The deploy role applies the apps stack from that runner: it needs the cluster's API.
        self.cluster.grant_deployer(role_name=settings.stack_name("deploy"))
        # main's plan of the apps stack (review role, before approval) reads the cluster, never writes it
        self.cluster.grant_reviewer(role_name=settings.stack_name("review"))
        TerraformOutput(self, "github_connection_arn", value=self.ci_runner.connection.arn,
                        description="Authorise it once in the console during the first apply (README)")
        TerraformOutput(self, "github_connection_status", value=self.ci_runner.connection.connection_status)
        TerraformOutput(self, "ci_runner_project", value=self.ci_runner.project.name,
                        description="Jobs say runs-on: codebuild-<this>-<github.run_id>-<github.run_attempt>")

    def _monitoring(self, settings: EnvironmentSettings) -> None:
        groups = {tier: g.node_group for tier, g in self.node_groups.items()}
        self.monitoring = Monitoring(
            self,
            "monitoring",
            settings=settings,
            alb_arn_suffix=self.load_balancer.alb.arn_suffix,
            target_group_arn_suffix=self.load_balancer.target_group.arn_suffix,
            db_instance_id=self.database.instance.id,
            db_data_mount_point=MOUNT_POINT,
            node_group_asg_names={
                tier: g.resources.get(0).autoscaling_groups.get(0).name for tier, g in groups.items()
            },
            nat_gateway_ids={zone: nat.id for zone, nat in self.network.nat_gateways.items()},
            cluster_name=self.cluster.eks.name,
            after=list(groups.values()),
            web_acl_name=self.waf.web_acl.name,
            # a request deleting state or a dump is an alert; lifecycle expirations are not (docs/monitoring.md)
            watched_buckets=[settings.state.bucket, settings.database.dump_bucket],
            zone_id=self.dns.zone_id,
            us_east_1=self.us_east_1_provider,
        )
        TerraformOutput(self, "alarm_topic_arn", value=self.monitoring.topic.arn)
        if self.monitoring.dnssec_alarms:
            TerraformOutput(self, "dnssec_alarm_topic_arn", value=self.monitoring.dnssec_alarms.topic.arn,
                            description="us-east-1 topic of the DNSSEC alarms (docs/monitoring.md)")
        TerraformOutput(self, "dashboard_name", value=self.monitoring.dashboard.dashboard_name)


def exec_auth(settings: EnvironmentSettings) -> dict:
    """Short-lived tokens from the AWS CLI on every run (``aws eks get-token``); never a static token."""
    return {
        "api_version": "client.authentication.k8s.io/v1beta1",
        "command": "aws",
        "args": ["eks", "get-token", "--cluster-name", settings.cluster.name, "--region", settings.region],
    }


class AppsStack(TerraformStack):
    """``<project>-<env>-apps``: Twenty on the cluster. Reads the platform stack's outputs from its state
    (same environment, same bucket); exposes ``files``, ``secret``, ``addons`` and ``releases``."""

    def __init__(self, scope: Construct, *, settings: EnvironmentSettings) -> None:
        name = settings.stack_name("apps")
        super().__init__(scope, name)
        _aws_provider(self, settings)
        _s3_backend(self, settings, name)
        platform = DataTerraformRemoteStateS3(
            self, "platform", bucket=settings.state.bucket, key=f"{settings.stack_name('platform')}/terraform.tfstate",
            region=settings.region, encrypt=True, allowed_account_ids=[settings.account.id],
        )  # fmt: skip
        endpoint = platform.get_string("cluster_endpoint")
        ca = Fn.base64decode(platform.get_string("cluster_certificate_authority_data"))
        KubernetesProvider(
            self, "kubernetes", host=endpoint, cluster_ca_certificate=ca,
            exec=[KubernetesProviderExec(**exec_auth(settings))],
        )  # fmt: skip
        HelmProvider(
            self, "helm",
            kubernetes=HelmProviderKubernetes(
                host=endpoint, cluster_ca_certificate=ca, exec=HelmProviderKubernetesExec(**exec_auth(settings))),
        )  # fmt: skip
        account_id = DataAwsCallerIdentity(self, "account").account_id
        target_group_arn = platform.get_string("server_target_group_arn")
        apps = settings.apps

        self.namespace = NamespaceV1(
            self, "namespace",
            metadata=NamespaceV1Metadata(name=apps.namespace, labels={
                # Every Twenty and Redis pod meets the "restricted" Pod Security Standard.
                "pod-security.kubernetes.io/enforce": "restricted",
                # The load balancer controller holds pods NotReady until the ALB sees them healthy.
                "elbv2.k8s.aws/pod-readiness-gate-inject": "enabled",
            }),
        )  # fmt: skip
        self.files = FilesBucket(self, "files", settings=settings, cluster_name=settings.cluster.name)
        self.secret = TwentySecret(
            self, "secret", settings=settings, namespace=self.namespace.metadata.name,
            password_secret_arn=platform.get_string("db_password_secret_arn"),
            encryption_key_secret_arn=platform.get_string("twenty_encryption_key_secret_arn"),
            # the key of Twenty's other secrets (database password, encryption key) encrypts Redis's too
            kms_key_arn=platform.get_string("db_secrets_kms_key_arn"),
            depends_on=[self.namespace],
        )  # fmt: skip
        database = {
            "host": platform.get_string("db_host"), "port": platform.get_number("db_port"),
            "name": platform.get_string("db_name"), "user": platform.get_string("db_username"),
        }  # fmt: skip
        self.addons = ClusterAddons(
            self, "addons", settings=settings, account_id=account_id, vpc_id=platform.get_string("vpc_id"),
            permissions_boundary=workload_boundary_arn(settings, partition=self.files.key.partition,
                                                       account=account_id),
            target_group_arn=target_group_arn,
        )  # fmt: skip
        # The chart is copied into cdktf.out next to the stack; the release refers to it by a relative path.
        chart = TerraformAsset(self, "twenty-chart", path=str(CHART_DIR), type=AssetType.DIRECTORY)
        self.releases = {}
        before: list = [self.secret.secret, self.addons.storage_class, self.addons.load_balancer_controller,
                        self.addons.metrics_server, *self.files.role.associations]  # fmt: skip
        for tier in RELEASES:  # redis, backend (migrates in its pre-install/pre-upgrade hook), frontend
            self.releases[tier] = twenty_release(
                self, f"twenty-{tier}", settings=settings, tier=tier, chart_path=chart.path,
                target_group_arn=target_group_arn, database=database, depends_on=list(before),
                backend=self.releases["backend"] if tier == "frontend" else None,
            )  # fmt: skip
            before.append(self.releases[tier])

        TerraformOutput(self, "public_url", value=f"https://{settings.domain}")
        TerraformOutput(self, "twenty_namespace", value=apps.namespace)
        for tier in RELEASES:
            TerraformOutput(self, f"{tier}_release", value=self.releases[tier].name)
        TerraformOutput(self, "files_bucket", value=self.files.bucket.bucket)
        TerraformOutput(self, "files_role_arn", value=self.files.role.role.arn)
        TerraformOutput(self, "twenty_image", value=f"twentycrm/twenty:{apps.twenty_image_tag}")
        TerraformOutput(self, "twenty_image_pulled",
                        value=f"{image_reference(settings, settings.images.twenty)}@{settings.images.twenty.digest}")


def build_accounts(scope: Construct, environments: list[EnvironmentSettings]) -> list[TerraformStack]:
    """One account stack per distinct ``account.id``, from the first environment of that account (check_across
    has made every environment of an account agree on its [account] values and project)."""
    first: dict[str, EnvironmentSettings] = {}
    for env in environments:
        first.setdefault(env.account.id, env)
    return [AccountStack(scope, project=env.project, account=env.account,
                         regions=[e.region for e in environments if e.account.id == env.account.id],
                         route53_query_logs=any(e.dns.query_logging for e in environments
                                                if e.account.id == env.account.id))
            for env in first.values()]  # fmt: skip


def build_environment(scope: Construct, settings: EnvironmentSettings) -> list[TerraformStack]:
    """Every stack of one environment, in apply order."""
    return [
        StateStack(scope, settings=settings),
        PlatformStack(scope, settings=settings),
        AppsStack(scope, settings=settings),
    ]
