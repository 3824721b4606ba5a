"""What runs on the cluster: Twenty's three Helm releases and what they need (docs/apps.md, docs/scaling.md).

- ``chart_values`` is the one place the values of the ``charts/twenty`` releases are built; the
  stack and the chart tests both call it, so the tests render exactly what the stack installs.
- ``FilesBucket``: Twenty's S3 bucket for attachments, with the IAM role its pods get by Pod Identity.
- ``TwentySecret``: the Kubernetes Secret with the database password, the encryption key, the Redis
  password and the SMTP password (if any), written through the kubernetes provider's write-only
  ``data_wo`` from ephemeral values, so none reaches the synthesized JSON, the plan or the state.
  The Redis password is generated once into a Secrets Manager secret of its own (``RedisPassword``).
- ``ClusterAddons``: the gp3 StorageClass, the AWS Load Balancer Controller, metrics-server and the
  Cluster Autoscaler, each chart pinned, each controller with a least-privilege Pod Identity role.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from cdktf import Fn, ITerraformDependable, TerraformResource, TerraformStack
from cdktf_cdktf_provider_aws.data_aws_partition import DataAwsPartition
from cdktf_cdktf_provider_aws.eks_pod_identity_association import EksPodIdentityAssociation
from cdktf_cdktf_provider_aws.iam_role import IamRole
from cdktf_cdktf_provider_aws.iam_role_policy import IamRolePolicy
from cdktf_cdktf_provider_aws.secretsmanager_secret import SecretsmanagerSecret
from cdktf_cdktf_provider_aws.secretsmanager_secret_version import SecretsmanagerSecretVersion
from cdktf_cdktf_provider_helm.release import Release
from cdktf_cdktf_provider_kubernetes.secret_v1 import SecretV1, SecretV1Metadata
from cdktf_cdktf_provider_kubernetes.storage_class_v1 import StorageClassV1, StorageClassV1Metadata
from constructs import Construct

from modules.boundary import workload_boundary_arn
from modules.cluster import pod_identity_trust_policy
from modules.kms import EncryptionKey
from modules.node_group import TIER_LABEL
from modules.private_bucket import private_bucket
from modules.settings import EnvironmentSettings
from modules.settings.apps import SERVER_MAX_SURGE, WORKER_MAX_SURGE
from modules.settings.images import PinnedImage, ecr_prefix

CHART_DIR = Path(__file__).resolve().parent.parent / "charts" / "twenty"
SECRET_NAME = "twenty-secrets"
STORAGE_CLASS = "gp3"
TIERS = ("backend", "frontend")  # Twenty's two halves; each release has its own service account
# Install order (docs/apps.md, "Release order"): Redis; then the backend, whose pre-install/pre-upgrade
# hook migrates before its worker starts; then the frontend (the server).
RELEASES = ("redis", "backend", "frontend")
MIGRATION_SERVICE_ACCOUNT = "twenty-backend-migrate"  # the Job's own hook account (charts/twenty)


def release_name(tier: str) -> str:
    return f"twenty-{tier}"


# Charts of the cluster add-ons, pinned. Upgrading one: bump here, read the chart's release notes,
# run the tests, plan dev first (docs/scaling.md).
LOAD_BALANCER_CONTROLLER = {
    "repository": "https://aws.github.io/eks-charts",
    "chart": "aws-load-balancer-controller",
    "version": "1.13.0",  # controller v2.13.0
}
METRICS_SERVER = {
    "repository": "https://kubernetes-sigs.github.io/metrics-server/",
    "chart": "metrics-server",
    "version": "3.12.2",  # metrics-server v0.7.2
}
CLUSTER_AUTOSCALER = {
    "repository": "https://kubernetes.github.io/autoscaler",
    "chart": "cluster-autoscaler",
    "version": "9.59.0",  # pairs with the image tags below (CA 1.35)
}
# The Cluster Autoscaler's minor version must match the cluster's Kubernetes minor version.
CLUSTER_AUTOSCALER_IMAGE_TAGS = {"1.35": "v1.35.0", "1.36": "v1.36.0"}
SYSTEM_NAMESPACE = "kube-system"
LBC_SERVICE_ACCOUNT = "aws-load-balancer-controller"
AUTOSCALER_SERVICE_ACCOUNT = "cluster-autoscaler"


def image_reference(settings: EnvironmentSettings, image: PinnedImage) -> str:
    """``<account>.dkr.ecr.<region>.amazonaws.com/<prefix>/<upstream path>`` (no tag): the environment's pull-through
    cache repository of an upstream image (modules/registry.py); pods pull ``<this>@<digest>``."""
    host = f"{settings.account.id}.dkr.ecr.{settings.region}.amazonaws.com"
    return f"{host}/{ecr_prefix(settings.project, settings.name, image.registry)}/{image.path}"


def _image_values(settings: EnvironmentSettings, image: PinnedImage) -> dict[str, str]:
    return {"repository": image_reference(settings, image), "tag": image.tag, "digest": image.digest,
            "pullPolicy": "IfNotPresent"}  # fmt: skip


def chart_values(
    settings: EnvironmentSettings, tier: str, *, target_group_arn: str, database: dict[str, Any],
    backend_revision: Any = 0,
) -> dict[str, Any]:
    """The values of one Twenty release (``tier`` is 'redis', 'backend' or 'frontend') in one environment.

    ``database`` holds host, port, name and user (the platform stack's db_* outputs). ``backend_revision``
    (frontend only): the backend release's revision, so every backend upgrade upgrades the frontend after it.
    """
    apps, images = settings.apps, settings.images
    if images is None:
        raise ValueError(f"{settings.source}: images are not pinned; load settings with load_environment/load_all")
    return {
        "tier": tier,
        "image": _image_values(settings, images.twenty),
        "serverUrl": f"https://{settings.domain}",
        "secretName": SECRET_NAME,
        "database": {**database, "allowSelfSignedTls": True},
        "storage": {"s3": {"bucket": apps.files_bucket, "region": settings.region}},
        "serviceAccount": {
            "name": release_name(tier),
            "annotations": {
                "twentycrm/pod-identity": f"files bucket {apps.files_bucket} (aws_eks_pod_identity_association)"
            },
        },
        # Redis runs beside the worker, on the backend nodes.
        "nodeSelector": {TIER_LABEL: "backend" if tier == "redis" else tier},
        "redis": {
            "storageClassName": STORAGE_CLASS, "storage": f"{apps.redis_volume_size_gb}Gi",
            "image": _image_values(settings, images.redis),
        },
        "twenty": {
            "pgPoolMaxConnections": apps.pg_pool_max_connections,
            "multiworkspace": apps.multiworkspace,
            "workspaceCreationLimitedToAdmins": apps.workspace_creation_limited_to_admins,
            "telemetry": apps.telemetry,
            "email": _email_values(apps.email),
        },
        "server": {
            "port": settings.load_balancer.target_port,
            "probes": {"path": settings.load_balancer.health_check_path},
            "autoscaling": {
                "enabled": True,
                "minReplicas": settings.server_min_replicas,
                "maxReplicas": apps.server_max_replicas,
            },
            "targetGroupBinding": {"enabled": tier == "frontend", "targetGroupARN": target_group_arn},
            "maxSurge": SERVER_MAX_SURGE,
        },
        "worker": {"replicas": apps.worker_replicas, "maxSurge": WORKER_MAX_SURGE},
        "extraEnv": dict(apps.extra_env),
        "upgrade": {
            "strategy": apps.upgrade_strategy,
            "kubectlImage": f"{image_reference(settings, images.kubectl)}@{images.kubectl.digest}",
            "stopTimeoutSeconds": 600,
            "backendRevision": backend_revision if tier == "frontend" else 0,
            "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"cpu": "200m", "memory": "128Mi"}},
        },
    }


def _email_values(email: Any) -> dict[str, Any]:
    if email is None:
        return {"enabled": False, "host": "", "port": 587, "user": "", "fromAddress": "", "fromName": "Twenty"}
    return {"enabled": True, "host": email.host, "port": email.port, "user": email.user,
            "fromAddress": email.from_address, "fromName": email.from_name}  # fmt: skip


def _policy(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


class PodIdentityRole(Construct):
    """An IAM role that one or more service accounts get through EKS Pod Identity."""

    def __init__(self, scope: Construct, construct_id: str, *, name: str, account_id: str, cluster_name: str,
                 service_accounts: list[tuple[str, str]], policy: str, tags: dict[str, str],
                 permissions_boundary: str) -> None:  # fmt: skip
        super().__init__(scope, construct_id)
        self.role = IamRole(
            self, "role", name=name, assume_role_policy=pod_identity_trust_policy(account_id), tags=tags,
            permissions_boundary=permissions_boundary,
            description=f"Pod Identity role of {', '.join(f'{ns}/{sa}' for ns, sa in service_accounts)}",
        )  # fmt: skip
        IamRolePolicy(self, "policy", name=name, role=self.role.id, policy=policy)
        self.associations = [
            EksPodIdentityAssociation(
                self, f"association-{namespace}-{account}", cluster_name=cluster_name, namespace=namespace,
                service_account=account, role_arn=self.role.arn, tags=tags,
            )  # fmt: skip
            for namespace, account in service_accounts
        ]


class FilesBucket(Construct):
    """Twenty's file storage: a private, versioned, SSE-KMS bucket and the role its pods use.

    Exposes ``bucket``, ``key`` and ``role`` (a PodIdentityRole for both Twenty releases).
    """

    def __init__(
        self, scope: Construct, construct_id: str, *, settings: EnvironmentSettings, cluster_name: str
    ) -> None:
        super().__init__(scope, construct_id)
        apps = settings.apps
        tags = {"Component": settings.component(settings.cluster.id), "Name": apps.files_bucket}
        self.key = EncryptionKey(
            self, "key", alias=f"{settings.project}-{settings.name}-files",
            description=f"Encrypts Twenty's files in {settings.name}", tags=tags,
        )  # fmt: skip
        self.bucket = private_bucket(
            self,
            "bucket",
            bucket_name=apps.files_bucket,
            tags=tags,
            kms_key_arn=self.key.arn,
            lifecycle_rule_id="expire-old-file-versions",
            noncurrent_days=apps.files_noncurrent_days,
            access_log_bucket=settings.state.access_log_bucket,
        ).bucket
        # Twenty reads, writes and deletes objects and checks the bucket exists; nothing else.
        self.role = PodIdentityRole(
            self, "role", name=f"{settings.project}-{settings.name}-twenty-files",
            account_id=self.key.account_id, cluster_name=cluster_name, tags=tags,
            permissions_boundary=workload_boundary_arn(settings, partition=self.key.partition,
                                                       account=self.key.account_id),
            service_accounts=[*((apps.namespace, release_name(tier)) for tier in TIERS),
                              (apps.namespace, MIGRATION_SERVICE_ACCOUNT)],
            policy=_policy(
                {"Sid": "Bucket", "Effect": "Allow", "Action": ["s3:ListBucket", "s3:GetBucketLocation"],
                 "Resource": self.bucket.arn},
                {"Sid": "Objects", "Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                 "Resource": f"{self.bucket.arn}/*"},
                {"Sid": "Key", "Effect": "Allow", "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
                 "Resource": self.key.arn,
                 "Condition": {"StringEquals": {"kms:ViaService": f"s3.{settings.region}.amazonaws.com"}}},
            ),
        )  # fmt: skip


def _ephemeral_secret(scope: Construct, construct_id: str, secret_arn: str,
                      after: TerraformResource | None = None) -> str:  # fmt: skip
    """An ephemeral read of a Secrets Manager secret (never saved in plan or state); returns its reference.
    ``after``: a resource the read must wait for (the version that stores the value).

    cdktf 0.21 has no class for ephemeral resources, so the block is added to the stack directly.
    """
    within_stack = scope.node.path.split("/", 1)[1]
    name = re.sub(r"\W", "_", f"{within_stack}_{construct_id}")
    block: dict[str, Any] = {"secret_id": secret_arn}
    if after is not None:
        block["depends_on"] = [f"{after.terraform_resource_type}.{after.friendly_unique_id}"]
    TerraformStack.of(scope).add_override(f"ephemeral.aws_secretsmanager_secret_version.{name}", block)
    return f"${{ephemeral.aws_secretsmanager_secret_version.{name}.secret_string}}"


def _ephemeral_random_password(scope: Construct, construct_id: str, length: int) -> str:
    """A password AWS generates for this apply only (ephemeral: never in plan or state); returns its reference."""
    within_stack = scope.node.path.split("/", 1)[1]
    name = re.sub(r"\W", "_", f"{within_stack}_{construct_id}")
    TerraformStack.of(scope).add_override(
        f"ephemeral.aws_secretsmanager_random_password.{name}",
        # letters and digits: it goes into redis://:<password>@… unescaped
        {"password_length": length, "exclude_punctuation": True, "include_space": False},
    )
    return f"${{ephemeral.aws_secretsmanager_random_password.{name}.random_password}}"


# The value of a write-only version is sent only when its version number changes; 1 means "once, at creation".
REDIS_PASSWORD_VERSION = 1


class RedisPassword(Construct):
    """Redis's password, generated once and kept in Secrets Manager, so a rewrite of the Kubernetes Secret
    (``secret_revision``, a new key) hands Redis and Twenty the same password Redis already runs with.

    The value is generated by an ephemeral ``aws_secretsmanager_random_password`` and stored through the
    write-only ``secret_string_wo`` (version ``REDIS_PASSWORD_VERSION``): it is never in plan or state.
    Only the apps stack has it; that stack is planned and applied by the deploy role alone, whose refresh of
    the version calls GetSecretValue (docs/security.md). Exposes ``secret``.
    """

    def __init__(self, scope: Construct, construct_id: str, *, settings: EnvironmentSettings, kms_key_arn: str,
                 tags: dict[str, str]) -> None:  # fmt: skip
        super().__init__(scope, construct_id)
        name = f"{settings.project}/{settings.name}/twenty/redis-password"
        self.secret = SecretsmanagerSecret(
            self, "secret", name=name, description="Redis requirepass of Twenty's queue and cache",
            kms_key_id=kms_key_arn, recovery_window_in_days=settings.database.secret_recovery_days,
            tags={**tags, "Name": name},
        )  # fmt: skip
        self.version = SecretsmanagerSecretVersion(
            self, "version", secret_id=self.secret.id,
            secret_string_wo=_ephemeral_random_password(self, "generated", 40),
            secret_string_wo_version=REDIS_PASSWORD_VERSION,
        )  # fmt: skip


def secret_keys(*, smtp: bool) -> tuple[str, ...]:
    """The keys of the Kubernetes Secret Twenty's pods read (the chart's values.yaml lists them), sorted."""
    keys = ["PG_DATABASE_PASSWORD", "APP_SECRET", "ENCRYPTION_KEY", "REDIS_PASSWORD"]
    return tuple(sorted([*keys, *(["EMAIL_SMTP_PASSWORD"] if smtp else [])]))


def secret_data_revision(revision: int, keys: tuple[str, ...]) -> int:
    """``data_wo_revision`` of the Secret: the setting ``apps.secret_revision`` and the set of keys, so a new key
    (e.g. EMAIL_SMTP_PASSWORD when [apps.email] is added) rewrites the Secret without a manual bump. Stable: the
    same settings give the same number (a hash, not Python's salted ``hash``)."""
    digest = hashlib.sha256(("\n".join(sorted(keys)) + f"\n{revision}").encode()).digest()
    return int.from_bytes(digest[:6], "big")  # 48 bits: an exact number in Terraform and JSON


class TwentySecret(Construct):
    """The Secret Twenty's pods read: PG_DATABASE_PASSWORD, APP_SECRET, ENCRYPTION_KEY, REDIS_PASSWORD
    and, with SMTP, EMAIL_SMTP_PASSWORD.

    Written through the write-only ``data_wo`` from ephemeral reads of Secrets Manager: the values exist only
    while Terraform applies. A write-only value is written again only when ``data_wo_revision`` changes:
    ``secret_data_revision`` of the setting ``apps.secret_revision`` (bump it after rotating the database or
    SMTP password, docs/apps.md) and the key set. The rest of the database URL is in the chart values.
    Exposes ``secret`` and ``redis_password`` (the RedisPassword).
    """

    def __init__(self, scope: Construct, construct_id: str, *, settings: EnvironmentSettings, namespace: str,
                 password_secret_arn: str, encryption_key_secret_arn: str, kms_key_arn: str,
                 depends_on: list[ITerraformDependable]) -> None:  # fmt: skip
        super().__init__(scope, construct_id)
        apps = settings.apps
        self.redis_password = RedisPassword(
            self, "redis", settings=settings, kms_key_arn=kms_key_arn,
            tags={"Component": settings.component(settings.cluster.id)},
        )  # fmt: skip
        password = _ephemeral_secret(self, "password", password_secret_arn)
        key = _ephemeral_secret(self, "encryption-key", encryption_key_secret_arn)
        # read after the version: on the first apply the secret has no value before it
        extra = {"REDIS_PASSWORD": _ephemeral_secret(self, "redis-password", self.redis_password.secret.arn,
                                                     after=self.redis_password.version)}
        if apps.email:
            extra["EMAIL_SMTP_PASSWORD"] = _ephemeral_secret(self, "smtp-password", apps.email.password_secret)
        data = {
            "PG_DATABASE_PASSWORD": password,
            # One value under both names: the pinned release reads APP_SECRET, newer ones
            # ENCRYPTION_KEY; keeping them equal means an upgrade decrypts what the old one stored.
            "APP_SECRET": key,
            "ENCRYPTION_KEY": key,
            **extra,
        }
        self.secret = SecretV1(
            self, "secret",
            metadata=SecretV1Metadata(name=SECRET_NAME, namespace=namespace,
                                      labels={"app.kubernetes.io/part-of": "twenty"}),
            type="Opaque",
            data_wo=data,
            data_wo_revision=secret_data_revision(apps.secret_revision, tuple(data)),
            depends_on=depends_on,
        )  # fmt: skip


def twenty_release(scope: Construct, construct_id: str, *, settings: EnvironmentSettings, tier: str, chart_path: str,
                   target_group_arn: str, database: dict[str, Any], depends_on: list[ITerraformDependable],
                   backend: Release | None = None) -> Release:  # fmt: skip
    """One Twenty release. ``backend`` (for the frontend): the backend release, whose revision goes into the
    frontend's values. A "stop" upgrade of the backend scales the server to 0 and only a frontend upgrade sets
    it back; Terraform upgrades a release only when its values change, and a new backend revision (unknown
    in the plan while the backend changes) makes them change every time."""
    values = chart_values(settings, tier, target_group_arn=target_group_arn, database=database,
                          backend_revision=backend.metadata.revision if backend is not None else 0)
    return Release(
        scope, construct_id, name=release_name(tier), chart=chart_path, namespace=settings.apps.namespace,
        values=[Fn.yamlencode(values)],
        # Wait for the pods so the next release starts on a ready base; hooks (the backend's migration
        # Job) are always waited for, and a failed one fails the release.
        wait=True, wait_for_jobs=True, timeout=1800, max_history=10, cleanup_on_fail=False,
        depends_on=depends_on,
    )  # fmt: skip


class ClusterAddons(Construct):
    """gp3 StorageClass, AWS Load Balancer Controller, metrics-server and Cluster Autoscaler.

    Exposes ``storage_class`` and ``load_balancer_controller`` / ``metrics_server`` /
    ``cluster_autoscaler`` (the releases) for the stack's dependency order.
    """

    def __init__(self, scope: Construct, construct_id: str, *, settings: EnvironmentSettings, account_id: str,
                 vpc_id: str, target_group_arn: str, permissions_boundary: str) -> None:  # fmt: skip
        super().__init__(scope, construct_id)
        cluster = settings.cluster.name
        tags = {"Component": settings.component(settings.cluster.id)}
        system_nodes = {TIER_LABEL: "backend"}  # controllers run beside the worker, away from the HTTP tier

        self.storage_class = StorageClassV1(
            self, "gp3",
            metadata=StorageClassV1Metadata(name=STORAGE_CLASS),
            storage_provisioner="ebs.csi.aws.com",  # the aws-ebs-csi-driver add-on of the platform stack
            volume_binding_mode="WaitForFirstConsumer",  # create the volume in the zone the pod lands in
            reclaim_policy="Delete",
            allow_volume_expansion=True,
            # tagSpecification_<n> = "key=value" tags each volume the driver creates (aws-ebs-csi-driver
            # docs/tagging.md, since v1.6.0): without them Redis's volume misses the Environment fence.
            parameters={"type": "gp3", "encrypted": "true", "fsType": "ext4",
                        "tagSpecification_1": f"Environment={settings.name}",
                        "tagSpecification_2": f"Project={settings.project}"},
        )  # fmt: skip

        lbc_role = PodIdentityRole(
            self, "lbc-role", name=f"{cluster}-aws-load-balancer-controller", account_id=account_id,
            permissions_boundary=permissions_boundary,
            cluster_name=cluster, tags=tags, service_accounts=[(SYSTEM_NAMESPACE, LBC_SERVICE_ACCOUNT)],
            policy=self._load_balancer_controller_policy(target_group_arn),
        )  # fmt: skip
        self.load_balancer_controller = Release(
            self, "aws-load-balancer-controller", name="aws-load-balancer-controller", namespace=SYSTEM_NAMESPACE,
            **LOAD_BALANCER_CONTROLLER,
            values=[Fn.yamlencode({
                "clusterName": cluster,
                # IMDS is closed to pods (hop limit 1), so the controller cannot discover these itself.
                "region": settings.region,
                "vpcId": vpc_id,
                "replicaCount": 2,
                "serviceAccount": {"create": True, "name": LBC_SERVICE_ACCOUNT},
                "nodeSelector": system_nodes,
                # Only TargetGroupBindings are used; no Service of type LoadBalancer is mutated.
                "enableServiceMutatorWebhook": False,
            })],
            wait=True, timeout=600, depends_on=lbc_role.associations,
        )  # fmt: skip

        self.metrics_server = Release(
            self, "metrics-server", name="metrics-server", namespace=SYSTEM_NAMESPACE, **METRICS_SERVER,
            values=[Fn.yamlencode({
                "replicas": 2,
                "nodeSelector": system_nodes,
                "podDisruptionBudget": {"enabled": True, "maxUnavailable": 1},
                # 4443 is open from the control plane to the nodes (modules/cluster.py).
                "containerPort": 4443,
            })],
            wait=True, timeout=600,
        )  # fmt: skip

        autoscaler_role = PodIdentityRole(
            self, "autoscaler-role", name=f"{cluster}-cluster-autoscaler", account_id=account_id,
            permissions_boundary=permissions_boundary,
            cluster_name=cluster, tags=tags, service_accounts=[(SYSTEM_NAMESPACE, AUTOSCALER_SERVICE_ACCOUNT)],
            policy=self._autoscaler_policy(
                cluster, nodegroups=f"arn:{DataAwsPartition(self, 'partition').partition}:eks:{settings.region}:"
                f"{account_id}:nodegroup/{cluster}/*/*",
            ),
        )  # fmt: skip
        self.cluster_autoscaler = Release(
            self, "cluster-autoscaler", name="cluster-autoscaler", namespace=SYSTEM_NAMESPACE, **CLUSTER_AUTOSCALER,
            values=[Fn.yamlencode({
                "cloudProvider": "aws",
                "awsRegion": settings.region,
                # Finds the node groups by the tags EKS puts on their Auto Scaling groups:
                # k8s.io/cluster-autoscaler/enabled and k8s.io/cluster-autoscaler/<cluster>.
                "autoDiscovery": {"clusterName": cluster},
                "image": {"tag": CLUSTER_AUTOSCALER_IMAGE_TAGS[settings.cluster.kubernetes_version]},
                "rbac": {"serviceAccount": {"create": True, "name": AUTOSCALER_SERVICE_ACCOUNT}},
                "nodeSelector": system_nodes,
                "extraArgs": {
                    "balance-similar-node-groups": True,
                    "expander": "least-waste",
                    "skip-nodes-with-local-storage": False,
                    "scale-down-unneeded-time": "10m",
                },
            })],
            wait=True, timeout=600, depends_on=autoscaler_role.associations,
        )  # fmt: skip

    @staticmethod
    def _load_balancer_controller_policy(target_group_arn: str) -> str:
        """Enough for TargetGroupBindings without a networking block: read, and (de)register targets
        in the one target group. No create/delete of load balancers, target groups or security groups."""
        return _policy(
            {"Sid": "Read", "Effect": "Allow", "Resource": "*",
             "Action": ["elasticloadbalancing:DescribeTargetGroups", "elasticloadbalancing:DescribeTargetHealth",
                        "elasticloadbalancing:DescribeTargetGroupAttributes", "elasticloadbalancing:DescribeTags",
                        "elasticloadbalancing:DescribeLoadBalancers", "elasticloadbalancing:DescribeListeners",
                        "ec2:DescribeInstances", "ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets",
                        "ec2:DescribeSecurityGroups", "ec2:DescribeVpcs", "ec2:DescribeAvailabilityZones"]},
            {"Sid": "Targets", "Effect": "Allow", "Resource": target_group_arn,
             "Action": ["elasticloadbalancing:RegisterTargets", "elasticloadbalancing:DeregisterTargets"]},
        )  # fmt: skip

    @staticmethod
    def _autoscaler_policy(cluster: str, *, nodegroups: str) -> str:
        """Read everything it needs to simulate; change only the Auto Scaling groups tagged for this cluster.
        DescribeNodegroup takes a node group ARN (Service Authorization Reference, Amazon EKS): this cluster's."""
        return _policy(
            {"Sid": "Read", "Effect": "Allow", "Resource": "*",
             "Action": ["autoscaling:DescribeAutoScalingGroups", "autoscaling:DescribeAutoScalingInstances",
                        "autoscaling:DescribeLaunchConfigurations", "autoscaling:DescribeScalingActivities",
                        "autoscaling:DescribeTags", "ec2:DescribeImages", "ec2:DescribeInstanceTypes",
                        "ec2:DescribeLaunchTemplateVersions", "ec2:GetInstanceTypesFromInstanceRequirements"]},
            {"Sid": "ReadOwnNodeGroups", "Effect": "Allow", "Resource": nodegroups, "Action": "eks:DescribeNodegroup"},
            {"Sid": "ScaleOwnNodeGroups", "Effect": "Allow", "Resource": "*",
             "Action": ["autoscaling:SetDesiredCapacity", "autoscaling:TerminateInstanceInAutoScalingGroup"],
             "Condition": {"StringEquals": {f"aws:ResourceTag/k8s.io/cluster-autoscaler/{cluster}": "owned"}}},
        )  # fmt: skip
