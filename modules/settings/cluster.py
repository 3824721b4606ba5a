"""The ``[cluster]`` section: EKS, its node groups and the add-on versions pinned per Kubernetes version."""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from modules.settings.fields import ComponentId, InstanceType, LogRetentionDays, _Model, _network, _pattern

_ADDON_VERSION = re.compile(r"^v[0-9]+\.[0-9]+\.[0-9]+-eksbuild\.[0-9]+$")


# An IAM role or user ARN (roles may carry a path, e.g. the SSO ones). EKS access entries take
# these, not the sts "assumed-role" session ARN that `aws sts get-caller-identity` prints.
_IAM_PRINCIPAL_ARN = re.compile(r"^arn:aws[a-z-]*:iam::[0-9]{12}:(role|user)/[A-Za-z0-9+=,.@_/-]{1,512}$")


# Kubernetes versions this project can build, with the EKS managed add-on versions pinned for
# each (checked against the EKS docs' version tables and `aws eks describe-addon-versions`).
# Only versions in EKS standard support belong here; docs/cluster.md says how to add the next one.
KUBERNETES_VERSIONS: dict[str, dict[str, str]] = {
    # EKS release 2026-01-28, standard support until 2027-03-27
    "1.35": {
        "vpc-cni": "v1.21.1-eksbuild.8",
        "kube-proxy": "v1.35.3-eksbuild.5",
        "coredns": "v1.14.2-eksbuild.4",
        "eks-pod-identity-agent": "v1.3.10-eksbuild.3",
        "aws-ebs-csi-driver": "v1.59.0-eksbuild.1",
        "amazon-cloudwatch-observability": "v6.0.1-eksbuild.1",
    },
    # the newest EKS version; standard support runs 14 months from its release
    "1.36": {
        "vpc-cni": "v1.21.2-eksbuild.2",
        "kube-proxy": "v1.36.0-eksbuild.7",
        "coredns": "v1.14.2-eksbuild.4",
        "eks-pod-identity-agent": "v1.3.10-eksbuild.3",
        "aws-ebs-csi-driver": "v1.62.0-eksbuild.1",
        "amazon-cloudwatch-observability": "v6.0.1-eksbuild.1",
    },
}


DEFAULT_KUBERNETES_VERSION = "1.35"


def _public_access_cidr(value: str) -> str:
    net = ipaddress.IPv4Network(_network(value))
    if net.prefixlen < 8:
        raise ValueError(
            f"{value!r} opens the Kubernetes API to too much of the internet; list the /8 or narrower "
            "ranges (e.g. an office or CI egress address as '203.0.113.10/32'), or leave the list empty "
            "for a private-only endpoint"
        )
    return str(net)


def _kubernetes_version(value: str) -> str:
    if value not in KUBERNETES_VERSIONS:
        raise ValueError(
            f"{value!r} is not a Kubernetes version this project pins add-ons for; allowed: "
            f"{', '.join(KUBERNETES_VERSIONS)} (EKS standard support). To add one, see docs/cluster.md, "
            "'Upgrading Kubernetes'"
        )
    return value


PublicAccessCidr = Annotated[str, AfterValidator(_public_access_cidr)]


KubernetesVersion = Annotated[str, AfterValidator(_kubernetes_version)]


AddonVersion = Annotated[str, _pattern(_ADDON_VERSION, "an EKS add-on version such as 'v1.14.2-eksbuild.4'")]


IamPrincipalArn = Annotated[
    str, _pattern(_IAM_PRINCIPAL_ARN, "an IAM role or user ARN such as 'arn:aws:iam::111122223333:role/Admin'")
]


class NodeGroupSettings(_Model):
    instance_type: InstanceType
    desired_size: int = Field(ge=1, le=100)
    min_size: int = Field(ge=1, le=100)
    max_size: int = Field(ge=1, le=100)
    max_unavailable: int = Field(
        default=1, ge=1, le=100, description="Nodes replaced at a time during an update (one keeps capacity)."
    )
    disk_size_gb: int = Field(default=50, ge=20, le=1000, description="Encrypted gp3 root volume of each node, GiB.")

    @model_validator(mode="after")
    def _ordered(self) -> "NodeGroupSettings":
        if not self.min_size <= self.desired_size <= self.max_size:
            raise ValueError(
                f"min_size ({self.min_size}) <= desired_size ({self.desired_size}) <= max_size ({self.max_size}) "
                "must hold"
            )
        return self


class ClusterSettings(_Model):
    """EKS-x00 and its node groups, as the document sizes them."""

    id: ComponentId
    control_plane_id: ComponentId
    node_groups_id: ComponentId
    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{0,38}$")] = Field(
        description="EKS cluster name; also used in the subnets' kubernetes.io/cluster tag."
    )
    kubernetes_version: KubernetesVersion = Field(
        default=DEFAULT_KUBERNETES_VERSION, description="EKS Kubernetes minor version; picks the pinned add-ons."
    )
    public_access_cidrs: tuple[PublicAccessCidr, ...] = Field(
        default=(),
        description="Networks that may reach the API endpoint from the internet; empty = private endpoint only.",
    )
    admin_principal_arns: tuple[IamPrincipalArn, ...] = Field(
        default=(),
        description="IAM roles/users given cluster-admin through EKS access entries (no implicit creator admin).",
    )
    log_retention_days: LogRetentionDays = Field(default=365, description="Days the control-plane logs are kept.")
    addon_versions: dict[
        Literal[
            "vpc-cni",
            "kube-proxy",
            "coredns",
            "eks-pod-identity-agent",
            "aws-ebs-csi-driver",
            "amazon-cloudwatch-observability",
        ],
        AddonVersion,
    ] = Field(default_factory=dict, description="Overrides of the add-on versions pinned for kubernetes_version.")
    frontend: NodeGroupSettings
    backend: NodeGroupSettings

    @model_validator(mode="after")
    def _distinct(self) -> "ClusterSettings":
        for field in ("public_access_cidrs", "admin_principal_arns"):
            values = getattr(self, field)
            dupes = sorted({v for v in values if values.count(v) > 1})
            if dupes:
                raise ValueError(f"{field} lists {', '.join(dupes)} more than once; list each only once")
        return self

    def addons(self) -> dict[str, str]:
        """EKS add-on name -> version: the pins for ``kubernetes_version`` with this file's overrides."""
        return {**KUBERNETES_VERSIONS[self.kubernetes_version], **self.addon_versions}


def deploy_role_admin_problems(cluster: ClusterSettings, *, deploy_role_name: str) -> list[str]:
    """The deploy role gets its cluster-admin access entry in code (Cluster.grant_deployer); listing it in
    admin_principal_arns as well would create a second entry for the same principal, which EKS refuses
    (ResourceInUseException). Matched by role name, in any account or partition."""
    return [
        f"cluster.admin_principal_arns[{i}] '{arn}' is the environment's deploy role: the deploy role gets its access "
        "entry in code; remove it from admin_principal_arns"
        for i, arn in enumerate(cluster.admin_principal_arns)
        if arn.split(":", 5)[-1].startswith("role/") and arn.rsplit("/", 1)[-1] == deploy_role_name
    ]
