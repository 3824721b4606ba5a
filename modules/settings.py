"""The model of one environment file (``envs/<env>.toml``), its loader and the cross-file checks.

Everything here is plain Python and pydantic: no cdktf import, so a bad file is reported in
well under a second, before the (slow) provider packages are loaded and before anything is
written to ``cdktf.out``.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from collections import Counter
from itertools import combinations
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

# An EKS-style DNS label: lower-case letters, digits, hyphens; no leading/trailing hyphen.
_DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_ENV_NAME = re.compile(r"^[a-z][a-z0-9-]{0,11}$")
_COMPONENT_ID = re.compile(r"^[A-Z]{2,5}-[0-9]{3}$")
_REGION = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-[0-9]$")
_S3_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_DYNAMODB_TABLE = re.compile(r"^[A-Za-z0-9_.-]{3,255}$")
_INSTANCE_TYPE = re.compile(r"^[a-z][a-z0-9-]*\.[a-z0-9]+$")
_ADDON_VERSION = re.compile(r"^v[0-9]+\.[0-9]+\.[0-9]+-eksbuild\.[0-9]+$")
# An IAM role or user ARN (roles may carry a path, e.g. the SSO ones). EKS access entries take
# these, not the sts "assumed-role" session ARN that `aws sts get-caller-identity` prints.
_EMAIL = re.compile(r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}$")
# GitHub's rules: owner 1-39 of letters, digits, hyphens; repository 1-100 of letters, digits, . _ -
_GITHUB_REPOSITORY = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}$")
_GITHUB_ENVIRONMENT = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
_OIDC_PROVIDER_ARN = re.compile(r"^arn:aws[a-z-]*:iam::[0-9]{12}:oidc-provider/token\.actions\.githubusercontent\.com$")
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


class SettingsError(Exception):
    """A problem in one or more environment files, worded for the person who edits them.

    Each entry of ``problems`` names the file, the field (a dotted path) and what is allowed.
    """

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


# --- field types -------------------------------------------------------------------------


def _domain(value: str) -> str:
    """Lower-case the name (DNS is case-insensitive, ACM and Route53 store lower case) and check it."""
    name = value.strip().rstrip(".").lower()
    labels = name.split(".")
    if len(name) > 253 or len(labels) < 2 or not all(_DNS_LABEL.match(label) for label in labels):
        raise ValueError(
            f"{value!r} is not a valid DNS name: use dot-separated labels of letters, digits and "
            "hyphens (1-63 characters each, no leading or trailing hyphen), e.g. 'crm.example.com'"
        )
    if labels[-1].isdigit():
        raise ValueError(f"{value!r} is not a valid DNS name: the top-level label cannot be numeric")
    return name


def _bucket(value: str) -> str:
    if (
        not _S3_BUCKET.match(value)
        or ".." in value
        or ".-" in value
        or "-." in value
        or value.startswith(("xn--", "sthree-"))
        or value.endswith(("-s3alias", "--ol-s3"))
        or re.fullmatch(r"\d+\.\d+\.\d+\.\d+", value)
    ):
        raise ValueError(
            f"{value!r} is not a valid S3 bucket name: use 3-63 lower-case letters, digits, dots and "
            "hyphens, starting and ending with a letter or digit, not shaped like an IP address"
        )
    return value


def _network(value: str) -> str:
    try:
        net = ipaddress.IPv4Network(value, strict=True)
    except ValueError as err:
        raise ValueError(f"{value!r} is not an IPv4 network in CIDR form such as '10.0.0.0/16' ({err})") from None
    return str(net)


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


def _pattern(regex: re.Pattern[str], what: str):
    def check(value: str) -> str:
        if not regex.match(value):
            raise ValueError(f"{value!r} is not {what}")
        return value

    return AfterValidator(check)


DomainName = Annotated[str, AfterValidator(_domain)]
BucketName = Annotated[str, AfterValidator(_bucket)]
Cidr = Annotated[str, AfterValidator(_network)]
ComponentId = Annotated[str, _pattern(_COMPONENT_ID, "a document component ID such as 'NET-201'")]
InstanceType = Annotated[str, _pattern(_INSTANCE_TYPE, "an EC2 instance type such as 't3.large'")]
PublicAccessCidr = Annotated[str, AfterValidator(_public_access_cidr)]
KubernetesVersion = Annotated[str, AfterValidator(_kubernetes_version)]
AddonVersion = Annotated[str, _pattern(_ADDON_VERSION, "an EKS add-on version such as 'v1.14.2-eksbuild.4'")]
IamPrincipalArn = Annotated[
    str, _pattern(_IAM_PRINCIPAL_ARN, "an IAM role or user ARN such as 'arn:aws:iam::111122223333:role/Admin'")
]
LogRetentionDays = Literal[1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 3653]


class _Model(BaseModel):
    """Frozen and strict about keys: a typo in a file is an error, never a silently ignored key."""

    model_config = ConfigDict(frozen=True, extra="forbid")


# --- sections ----------------------------------------------------------------------------


class StateSettings(_Model):
    """The S3 bucket and DynamoDB table that hold this environment's Terraform state."""

    bucket: BucketName = Field(description="Globally unique S3 bucket name for Terraform state.")
    lock_table: Annotated[str, _pattern(_DYNAMODB_TABLE, "a DynamoDB table name (3-255 of A-Z a-z 0-9 _ . -)")] = Field(
        description="DynamoDB table used for state locking."
    )
    noncurrent_version_expiration_days: int = Field(
        default=90, ge=1, le=3650, description="Days an overwritten state version is kept before it expires."
    )
    deletion_protection: bool = Field(default=False, description="DynamoDB deletion protection on the lock table.")
    own_backend: Literal["local", "s3"] = Field(
        default="local",
        description="Where the state stack keeps its own state: 'local' to bootstrap, 's3' once migrated.",
    )
    use_lockfile: bool = Field(
        default=False,
        description="Also take Terraform 1.10+ S3-native locks (a .tflock object); DynamoDB locking stays on.",
    )


class SubnetSettings(_Model):
    id: ComponentId = Field(description="The document's component ID, e.g. NET-201.")
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9-]{1,32}$")] = Field(description="The document's name, e.g. Public-1A.")
    tier: Literal["public", "private"]
    zone: Annotated[str, Field(pattern=r"^[a-z]$")] = Field(description="Zone letter: 'a' means <region>a.")
    cidr: Cidr


class NetworkSettings(_Model):
    """The VPC (VPC-x01) and what the document draws inside it (NET-x..)."""

    vpc_id: ComponentId
    network_id: ComponentId = Field(description="The document's ID of the subnet group, e.g. NET-200.")
    internet_gateway_id: ComponentId
    nat_gateway_id: ComponentId
    cidr: Cidr
    nat_gateways: Literal["single", "per_zone"] = Field(
        default="single",
        description="'single' shares one NAT gateway (cheaper); 'per_zone' survives the loss of a zone.",
    )
    flow_log_retention_days: LogRetentionDays = 90
    subnets: tuple[SubnetSettings, ...]

    @model_validator(mode="after")
    def _subnets_fit(self) -> "NetworkSettings":
        vpc = ipaddress.IPv4Network(self.cidr)
        problems = []
        for i, subnet in enumerate(self.subnets):
            if not ipaddress.IPv4Network(subnet.cidr).subnet_of(vpc):
                problems.append(f"subnets[{i}] ({subnet.name}) {subnet.cidr} lies outside the VPC {self.cidr}")
        for (i, a), (j, b) in combinations(enumerate(self.subnets), 2):
            if ipaddress.IPv4Network(a.cidr).overlaps(ipaddress.IPv4Network(b.cidr)):
                problems.append(f"subnets[{i}] ({a.name}) {a.cidr} overlaps subnets[{j}] ({b.name}) {b.cidr}")
        for tier in ("public", "private"):
            zones = [s.zone for s in self.subnets if s.tier == tier]
            if len(set(zones)) < 2:
                problems.append(f"needs {tier} subnets in at least two zones (EKS and the ALB require it), found {zones}")
            if len(zones) != len(set(zones)):
                problems.append(f"has two {tier} subnets in one zone ({zones}); use one per zone")
        if {s.zone for s in self.subnets if s.tier == "private"} - {s.zone for s in self.subnets if s.tier == "public"}:
            problems.append("every zone with a private subnet needs a public subnet for its NAT gateway")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def zones(self) -> tuple[str, ...]:
        return tuple(sorted({s.zone for s in self.subnets}))


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
    log_retention_days: LogRetentionDays = Field(default=90, description="Days the control-plane logs are kept.")
    addon_versions: dict[
        Literal[
            "vpc-cni", "kube-proxy", "coredns", "eks-pod-identity-agent", "aws-ebs-csi-driver",
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


# PostgreSQL majors that Twenty runs on (it needs 15 or newer; its docker-compose uses postgres:16)
# and that Amazon Linux 2023 packages as postgresql<N>-server. Add one here once both hold.
POSTGRES_VERSIONS = (15, 16)
# PostgreSQL's end-of-life dates for the versions people may carry over from older documents.
_POSTGRES_EOL = {11: "November 2023", 12: "November 2024", 13: "November 2025", 14: "November 2026"}
_TIME_OF_DAY = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$")
_PG_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
# Memory (GiB) of the instance families the database may run on: PostgreSQL's memory settings are
# derived from it. Sizes large..4xlarge; t3.medium too, for a cheap sandbox.
_GIB_PER_VCPU = {"t3": 4, "t3a": 4, "m5": 4, "m6i": 4, "m7i": 4, "m6a": 4, "m7a": 4, "r5": 8, "r6i": 8, "r7i": 8}
_VCPUS = {"large": 2, "xlarge": 4, "2xlarge": 8, "4xlarge": 16}


def instance_memory_gib(instance_type: str) -> int | None:
    """The memory of a known x86_64 instance type, or None when the table does not know it."""
    if instance_type in ("t3.medium", "t3a.medium"):
        return 4
    family, _, size = instance_type.partition(".")
    if family in _GIB_PER_VCPU and size in _VCPUS:
        return _GIB_PER_VCPU[family] * _VCPUS[size]
    return None


def _postgres_version(value: int) -> int:
    allowed = ", ".join(str(v) for v in POSTGRES_VERSIONS)
    if value in POSTGRES_VERSIONS:
        return value
    if value in _POSTGRES_EOL:
        why = f"PostgreSQL {value} is end-of-life ({_POSTGRES_EOL[value]}) and Twenty requires 15 or newer"
        if value == 13:
            why = "PostgreSQL 13 (the version the infrastructure document names) is end-of-life (November 2025) " \
                  "and Twenty requires 15 or newer"
    elif value < 15:
        why = f"PostgreSQL {value} is end-of-life and Twenty requires 15 or newer"
    else:
        why = f"PostgreSQL {value} is not a version this project knows Amazon Linux 2023 packages and Twenty supports"
    raise ValueError(f"{why}; allowed values are {allowed} (default 16, the version Twenty's own docker set-up uses)")


def _database_instance(value: str) -> str:
    if instance_memory_gib(value) is None:
        families = ", ".join(sorted(_GIB_PER_VCPU))
        raise ValueError(
            f"{value!r} is not an instance type the database knows the memory of (its PostgreSQL memory settings "
            f"are derived from it); use t3.medium or a {families} instance of size large, xlarge, 2xlarge or 4xlarge"
        )
    return value


class DatabaseSettings(_Model):
    """DB-x00: PostgreSQL on an EC2 instance with a GP3 data volume, its secrets and backups."""

    id: ComponentId
    instance_type: Annotated[InstanceType, AfterValidator(_database_instance)]
    volume_size_gb: int = Field(ge=20, le=16384, description="Size of the GP3 data volume in GiB.")
    root_volume_size_gb: int = Field(default=20, ge=8, le=200, description="Size of the encrypted root volume.")
    postgres_version: Annotated[int, AfterValidator(_postgres_version)] = Field(
        default=16, description="PostgreSQL major version; the document's 13 is end-of-life, Twenty needs >= 15."
    )
    database_name: Annotated[str, _pattern(_PG_NAME, "a PostgreSQL identifier (lower-case letters, digits, _)")] = "twenty"
    username: Annotated[str, _pattern(_PG_NAME, "a PostgreSQL identifier (lower-case letters, digits, _)")] = "twenty"
    max_connections: int = Field(default=100, ge=20, le=1000)
    termination_protection: bool = Field(
        default=False,
        description="EC2 termination protection on the host and prevent_destroy on the data volume (prod: true).",
    )
    secret_recovery_days: int = Field(
        default=7, ge=7, le=30, description="Days a deleted secret can still be restored."
    )
    snapshot_retention_days: int = Field(
        default=7, ge=1, le=1000, description="Days each daily DLM snapshot of the data volume is kept."
    )
    snapshot_time_utc: Annotated[str, _pattern(_TIME_OF_DAY, "a time of day 'HH:MM' (UTC)")] = Field(
        default="05:00", description="When DLM starts the daily snapshot (UTC; 05:00 is 02:00 in Sao Paulo)."
    )
    dump_bucket: BucketName = Field(description="Globally unique S3 bucket for the nightly pg_dump files.")
    dump_time_utc: Annotated[str, _pattern(_TIME_OF_DAY, "a time of day 'HH:MM' (UTC)")] = Field(
        default="04:30", description="When the host runs the nightly pg_dump (UTC)."
    )
    dump_retention_days: int = Field(
        default=30, ge=1, le=3650, description="Days a dump stays current before S3 expires it."
    )
    dump_noncurrent_days: int = Field(
        default=7, ge=1, le=3650, description="Days an overwritten or deleted dump version is kept after that."
    )

    @property
    def memory_gib(self) -> int:
        return instance_memory_gib(self.instance_type)  # type: ignore[return-value]  # validated above


class DnsSettings(_Model):
    """DNS-x01 (the Route53 zone) and DNS-x02 (the ACM certificate) of the document."""

    id: ComponentId = Field(description="The document's ID of the hosted zone, e.g. DNS-101.")
    certificate_id: ComponentId = Field(description="The document's ID of the certificate, e.g. DNS-102.")
    existing_zone: DomainName | None = Field(
        default=None,
        description="Use this existing public zone (the domain itself or a parent such as 'olhai.app.br') "
        "instead of creating a zone for the domain.",
    )
    extra_certificate_names: tuple[DomainName, ...] = Field(
        default=(),
        description="More names on the certificate (e.g. 'www.<domain>'); each gets an alias record to the ALB "
        "and must lie inside the zone.",
    )


# ALB listener policies that allow TLS 1.2 and 1.3 only (AWS's recommended family, plus its stricter variants).
TlsPolicy = Literal[
    "ELBSecurityPolicy-TLS13-1-2-2021-06",
    "ELBSecurityPolicy-TLS13-1-2-Res-2021-06",
    "ELBSecurityPolicy-TLS13-1-3-2021-06",
]


class LoadBalancerSettings(_Model):
    """ALB-x01: the internet-facing Application Load Balancer in front of Twenty's server."""

    id: ComponentId = Field(description="The document's ID of the load balancer, e.g. ALB-101.")
    access_log_bucket: BucketName = Field(description="Globally unique S3 bucket name for the ALB access logs.")
    access_log_retention_days: int = Field(
        default=90, ge=1, le=3650, description="Days an access log object is kept before it expires."
    )
    deletion_protection: bool = Field(
        default=False,
        description="ALB deletion protection; also keeps the log bucket from being destroyed while it holds logs.",
    )
    idle_timeout_seconds: int = Field(
        default=60, ge=1, le=4000, description="Seconds an idle client connection stays open (Twenty's websockets)."
    )
    desync_mitigation_mode: Literal["defensive", "strictest"] = Field(
        default="defensive",
        description="HTTP desync protection; 'monitor' is not offered because it lets ambiguous requests through.",
    )
    ssl_policy: TlsPolicy = Field(
        default="ELBSecurityPolicy-TLS13-1-2-2021-06", description="HTTPS listener policy (TLS 1.2 and 1.3 only)."
    )
    target_port: int = Field(default=3000, ge=1, le=65535, description="Port Twenty's server listens on in its pods.")
    health_check_path: Annotated[str, Field(pattern=r"^/[A-Za-z0-9/_.-]*$")] = Field(
        default="/healthz", description="Path the target group probes on every pod."
    )
    deregistration_delay_seconds: int = Field(
        default=30, ge=0, le=3600, description="Seconds a pod keeps its in-flight requests when it leaves."
    )


class AlarmThresholds(_Model):
    """When an alarm fires. Defaults suit a small Twenty installation; docs/monitoring.md explains each."""

    alb_5xx_percent: float = Field(
        default=5.0, gt=0, le=100, description="ALB + target 5xx responses as a share of requests over 5 minutes."
    )
    alb_p99_latency_seconds: float = Field(
        default=3.0, gt=0, le=60, description="99th percentile target response time over 5 minutes."
    )
    alb_unhealthy_targets: int = Field(
        default=1, ge=1, le=100, description="Unhealthy server pods in the target group, for 3 minutes."
    )
    db_cpu_percent: float = Field(default=80.0, gt=0, le=100, description="Database host CPU, 15-minute average.")
    db_memory_percent: float = Field(
        default=90.0, gt=0, le=100, description="Database host memory in use (CloudWatch agent mem_used_percent)."
    )
    db_root_disk_percent: float = Field(
        default=85.0, gt=0, le=100, description="Database host root disk in use (CloudWatch agent)."
    )
    db_data_free_percent: float = Field(
        default=20.0, gt=0, lt=100, description="Alarm when the data volume has less free space than this."
    )
    node_cpu_percent: float = Field(
        default=80.0, gt=0, le=100, description="Average CPU of each node group's instances, 15 minutes."
    )


class MonitoringSettings(_Model):
    """The SNS topic, alarms, dashboard and log groups of the environment (docs/monitoring.md)."""

    alarm_mode: Literal["page", "record"] = Field(
        default="record",
        description="'page' sends alarm and recovery notifications to the topic; 'record' keeps alarm history only.",
    )
    email_subscribers: tuple[Annotated[str, _pattern(_EMAIL, "an e-mail address such as 'oncall@example.com'")], ...] = (
        Field(default=(), description="Addresses subscribed to the alarm topic (each confirms by e-mail).")
    )
    log_retention_days: LogRetentionDays = Field(
        default=90, description="Days the Container Insights log groups keep their logs."
    )
    thresholds: AlarmThresholds = Field(default_factory=AlarmThresholds)

    @model_validator(mode="after")
    def _pages_someone(self) -> "MonitoringSettings":
        dupes = sorted({a for a in self.email_subscribers if self.email_subscribers.count(a) > 1})
        if dupes:
            raise ValueError(f"email_subscribers lists {', '.join(dupes)} more than once; list each only once")
        return self


class CiSettings(_Model):
    """GitHub Actions deploys through OIDC: the provider and this environment's deploy role (docs/ci-cd.md)."""

    github_repository: Annotated[str, _pattern(_GITHUB_REPOSITORY, "a GitHub repository 'owner/name'")] = Field(
        description="The repository whose workflows may assume the deploy role, as 'owner/name'."
    )
    github_environment: Annotated[
        str, _pattern(_GITHUB_ENVIRONMENT, "a GitHub environment name (letters, digits, - and _)")
    ] = Field(description="The GitHub environment a job must run in to assume the role (the token's sub claim).")
    oidc_provider: Literal["create", "existing"] = Field(
        default="create",
        description="'create' the account's GitHub OIDC provider here, or use the 'existing' one (one per account).",
    )
    existing_oidc_provider_arn: Annotated[
        str, _pattern(_OIDC_PROVIDER_ARN, "the ARN of the GitHub OIDC provider, "
                      "'arn:aws:iam::<account>:oidc-provider/token.actions.githubusercontent.com'")
    ] | None = Field(
        default=None,
        description="With oidc_provider = 'existing': the provider's ARN; unset = look it up by its URL.",
    )

    @model_validator(mode="after")
    def _provider_choice(self) -> "CiSettings":
        if self.oidc_provider == "create" and self.existing_oidc_provider_arn:
            raise ValueError(
                "existing_oidc_provider_arn is set but oidc_provider is 'create'; set oidc_provider = 'existing' "
                "to use that provider, or remove the ARN"
            )
        return self


_IMAGE_TAG = re.compile(r"^v[0-9]+\.[0-9]+\.[0-9]+$")


def _image_tag(value: str) -> str:
    if not _IMAGE_TAG.match(value):
        raise ValueError(
            f"{value!r} is not a released Twenty version; use the tag of a release as 'vMAJOR.MINOR.PATCH' "
            "(e.g. 'v1.14.0'). Moving tags such as 'latest' are refused: a node pulling a new image would "
            "run code the database was not migrated for"
        )
    return value


class AppsSettings(_Model):
    """What the apps stack deploys on the cluster: Twenty (two Helm releases), its file bucket, sizes."""

    twenty_image_tag: Annotated[str, AfterValidator(_image_tag)] = Field(
        description="Tag of twentycrm/twenty for both releases (server, worker and migrations), e.g. 'v1.14.0'."
    )
    namespace: Annotated[str, _pattern(_DNS_LABEL, "a Kubernetes namespace name (lower-case DNS label)")] = Field(
        default="twenty", description="Kubernetes namespace of Twenty's releases and secrets."
    )
    files_bucket: BucketName = Field(description="Globally unique S3 bucket for Twenty's files (attachments, avatars).")
    files_noncurrent_days: int = Field(
        default=30, ge=1, le=3650, description="Days an overwritten or deleted file version is kept."
    )
    server_min_replicas: int | None = Field(
        default=None, ge=1, le=100,
        description="HPA minimum of server pods; default: the frontend node group's desired_size (one per node).",
    )
    server_max_replicas: int = Field(default=6, ge=1, le=100, description="HPA maximum of server pods.")
    worker_replicas: int = Field(default=1, ge=1, le=20, description="Worker pods (background jobs).")
    redis_volume_size_gb: int = Field(default=10, ge=1, le=1000, description="gp3 volume of Redis's append-only file.")
    secret_revision: int = Field(
        default=1, ge=1,
        description="Bump after rotating the database password: Terraform rewrites the write-only Kubernetes Secret.",
    )


class EnvironmentSettings(_Model):
    """One environment, as read from ``envs/<name>.toml``. The file name is the environment name."""

    name: Annotated[str, Field(pattern=_ENV_NAME.pattern)]
    source: str = Field(description="The file this was read from, for messages.", exclude=True)
    project: Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{1,20}$")] = "twentycrm"
    region: Annotated[str, _pattern(_REGION, "an AWS region code such as 'sa-east-1'")] = "sa-east-1"
    domain: DomainName
    state: StateSettings
    network: NetworkSettings
    cluster: ClusterSettings
    database: DatabaseSettings
    dns: DnsSettings
    load_balancer: LoadBalancerSettings
    monitoring: MonitoringSettings = Field(default_factory=MonitoringSettings)
    ci: CiSettings
    apps: AppsSettings

    @model_validator(mode="after")
    def _names_fit_the_zone(self) -> "EnvironmentSettings":
        """Every certificate name is validated and aliased through records in the zone, so it must lie inside it."""
        problems = []
        zone = self.zone_name
        if zone != self.domain and not self.domain.endswith(f".{zone}"):
            problems.append(
                f"dns.existing_zone '{zone}' must be the domain '{self.domain}' or a parent of it, "
                "because the certificate is validated and the alias record written in that zone"
            )
        for i, name in enumerate(self.dns.extra_certificate_names):
            if name == self.domain or name in self.dns.extra_certificate_names[:i]:
                problems.append(f"dns.extra_certificate_names[{i}] '{name}' is listed twice (the domain is always on)")
            elif name != zone and not name.endswith(f".{zone}"):
                problems.append(
                    f"dns.extra_certificate_names[{i}] '{name}' lies outside the zone '{zone}'; "
                    f"use a name ending in '.{zone}'"
                )
        longest = f"{self.project}-{self.name}-server"
        if len(longest) > 32:
            problems.append(
                f"project '{self.project}' and environment '{self.name}' make the target group name '{longest}' "
                f"{len(longest)} characters long; AWS allows 32, so shorten one of them"
            )
        if self.load_balancer.access_log_bucket == self.state.bucket:
            problems.append("load_balancer.access_log_bucket must differ from state.bucket")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @model_validator(mode="after")
    def _apps_fit(self) -> "EnvironmentSettings":
        problems = []
        if self.server_min_replicas > self.apps.server_max_replicas:
            problems.append(
                f"apps.server_max_replicas ({self.apps.server_max_replicas}) is below the minimum of server pods "
                f"({self.server_min_replicas}, apps.server_min_replicas or cluster.frontend.desired_size); raise it"
            )
        others = {"state.bucket": self.state.bucket, "database.dump_bucket": self.database.dump_bucket,
                  "load_balancer.access_log_bucket": self.load_balancer.access_log_bucket}  # fmt: skip
        for field, bucket in others.items():
            if self.apps.files_bucket == bucket:
                problems.append(f"apps.files_bucket must differ from {field} ('{bucket}')")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def server_min_replicas(self) -> int:
        """The server HPA's minimum: the setting, or one pod per frontend node."""
        return self.apps.server_min_replicas or self.cluster.frontend.desired_size

    @property
    def zone_name(self) -> str:
        """The hosted zone that holds this environment's records: an existing one, or one for the domain."""
        return self.dns.existing_zone or self.domain

    @property
    def certificate_names(self) -> tuple[str, ...]:
        return (self.domain, *self.dns.extra_certificate_names)

    @model_validator(mode="after")
    def _ids_unique(self) -> "EnvironmentSettings":
        counts = Counter(self.component_ids())
        dupes = sorted(i for i, n in counts.items() if n > 1)
        if dupes:
            raise ValueError(f"component IDs must be unique within one environment; repeated: {', '.join(dupes)}")
        return self

    @model_validator(mode="after")
    def _buckets_distinct(self) -> "EnvironmentSettings":
        if self.database.dump_bucket == self.state.bucket:
            raise ValueError(
                f"database.dump_bucket and state.bucket are both '{self.state.bucket}'; give the dumps their own bucket"
            )
        return self

    def component_ids(self) -> list[str]:
        n, c = self.network, self.cluster
        return [
            n.vpc_id, n.network_id, n.internet_gateway_id, n.nat_gateway_id,
            *(s.id for s in n.subnets),
            c.id, c.control_plane_id, c.node_groups_id,
            self.database.id,
            self.dns.id, self.dns.certificate_id, self.load_balancer.id,
        ]  # fmt: skip

    def stack_name(self, part: str) -> str:
        return f"{self.project}-{self.name}-{part}"

    def component(self, component_id: str) -> str:
        """The tag value that makes a document ID unique across environments (the document reuses some)."""
        return f"{self.name}/{component_id}"


# --- loading -----------------------------------------------------------------------------


def _describe(err: ValidationError, source: str) -> list[str]:
    problems = []
    for e in err.errors():
        field = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key; remove it or check its spelling against docs/settings.md"
        elif e["type"] == "missing":
            msg = "required field is missing; add it (see docs/settings.md)"
        elif e["type"] == "literal_error":
            msg = msg.replace("Input should be", "allowed values are")
        problems.append(f"{source}: {field}: {msg}")
    return problems


def load_environment(path: Path) -> EnvironmentSettings:
    """Read and validate one file; raise SettingsError naming the file and field."""
    source = str(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise SettingsError([f"{source}: not valid TOML: {err}"]) from None
    for reserved in ("name", "source"):
        if reserved in data:
            raise SettingsError([f"{source}: {reserved}: do not set it; the environment name is the file name"])
    if not _ENV_NAME.match(path.stem):
        raise SettingsError(
            [f"{source}: file name: '{path.stem}' is not a valid environment name; use 1-12 lower-case letters, "
             "digits or hyphens, starting with a letter (e.g. envs/staging.toml)"]
        )  # fmt: skip
    try:
        return EnvironmentSettings(name=path.stem, source=source, **data)
    except ValidationError as err:
        raise SettingsError(_describe(err, source)) from None


def check_across(envs: list[EnvironmentSettings]) -> None:
    """Checks that need every file at once: peered or VPN-joined VPCs must not overlap, names must not clash."""
    problems = []
    for a, b in combinations(envs, 2):
        if ipaddress.IPv4Network(a.network.cidr).overlaps(ipaddress.IPv4Network(b.network.cidr)):
            problems.append(
                f"{b.source}: network.cidr: {b.network.cidr} overlaps {a.network.cidr} of {a.source}; "
                "give every environment its own range"
            )
        for field, get in (
            ("domain", lambda e: e.domain),
            ("state.bucket", lambda e: e.state.bucket),
            ("state.lock_table", lambda e: e.state.lock_table),
            ("cluster.name", lambda e: e.cluster.name),
            ("load_balancer.access_log_bucket", lambda e: e.load_balancer.access_log_bucket),
            ("database.dump_bucket", lambda e: e.database.dump_bucket),
            ("apps.files_bucket", lambda e: e.apps.files_bucket),
        ):
            if get(a) == get(b):
                problems.append(f"{b.source}: {field}: '{get(b)}' is already used by {a.source}; pick another")
        if (a.ci.github_repository, a.ci.github_environment) == (b.ci.github_repository, b.ci.github_environment):
            problems.append(
                f"{b.source}: ci.github_environment: '{b.ci.github_environment}' of {b.ci.github_repository} already "
                f"deploys {a.source}; one GitHub environment per deploy role, or one approval would open two"
            )
    if problems:
        raise SettingsError(problems)


def load_all(directory: Path) -> list[EnvironmentSettings]:
    """Every ``*.toml`` in the directory, validated one by one and then together, sorted by name."""
    files = sorted(directory.glob("*.toml"))
    if not files:
        raise SettingsError([f"{directory}: no environment files (*.toml) found; add one such as {directory}/dev.toml"])
    envs, problems = [], []
    for path in files:
        try:
            envs.append(load_environment(path))
        except SettingsError as err:
            problems.extend(err.problems)
    if problems:
        raise SettingsError(problems)
    check_across(envs)
    return envs
