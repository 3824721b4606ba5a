"""DB-x00: PostgreSQL on one EC2 instance, its data on a separate encrypted GP3 volume.

The instance is disposable: everything that must survive it (the cluster, its TLS key) lives on
the data volume, which the boot script mounts and never formats when it holds a filesystem. The
backups (snapshots, dumps) are in ``modules/database_backup.py``.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Sequence
from pathlib import Path

from cdktf import Fn, ITerraformDependable, TerraformLocal
from cdktf_cdktf_provider_aws.cloudwatch_metric_alarm import CloudwatchMetricAlarm
from cdktf_cdktf_provider_aws.data_aws_ssm_parameter import DataAwsSsmParameter
from cdktf_cdktf_provider_aws.ebs_volume import EbsVolume
from cdktf_cdktf_provider_aws.iam_instance_profile import IamInstanceProfile
from cdktf_cdktf_provider_aws.iam_role import IamRole
from cdktf_cdktf_provider_aws.iam_role_policy import IamRolePolicy
from cdktf_cdktf_provider_aws.iam_role_policy_attachment import IamRolePolicyAttachment
from cdktf_cdktf_provider_aws.instance import (
    Instance,
    InstanceMaintenanceOptions,
    InstanceMetadataOptions,
    InstanceRootBlockDevice,
)
from cdktf_cdktf_provider_aws.secretsmanager_secret import SecretsmanagerSecret
from cdktf_cdktf_provider_aws.security_group import SecurityGroup
from cdktf_cdktf_provider_aws.subnet import Subnet
from cdktf_cdktf_provider_aws.volume_attachment import VolumeAttachment
from cdktf_cdktf_provider_aws.vpc_security_group_egress_rule import VpcSecurityGroupEgressRule
from cdktf_cdktf_provider_aws.vpc_security_group_ingress_rule import VpcSecurityGroupIngressRule
from constructs import Construct

from modules.boundary import workload_boundary_arn
from modules.database_backup import DatabaseBackup
from modules.kms import EncryptionKey
from modules.settings import EnvironmentSettings

PORT = 5432
MOUNT_POINT = "/srv/pgsql"
TEMPLATE = Path(__file__).with_name("database") / "cloud-init.yaml"
# AWS's public parameter for the newest Amazon Linux 2023 AMI: resolved at plan time, no owner filter to get wrong.
AMI_PARAMETER = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
_PLACEHOLDER = re.compile(r"\{\{\s*(\w+)\s*\}\}")
# What the boot script publishes (1 failed, 0 completed) and the db-boot-failed alarm reads.
BOOT_METRIC_NAMESPACE = "TwentyCRM/Database"
BOOT_METRIC_NAME = "BootFailed"
# The client request token of each secret's first value: a retried seeding writes the same version
# instead of a second one (Secrets Manager tokens are 32-64 characters).
SEED_REQUEST_TOKEN = "twentycrm-db-host-first-value-00001"


def postgresql_conf(settings: EnvironmentSettings) -> str:
    """PostgreSQL settings for the instance's memory (the usual 25% shared buffers, 75% cache)."""
    db = settings.database
    mem_mb = db.memory_gib * 1024
    shared = mem_mb // 4
    lines = {
        "max_connections": db.max_connections,
        "shared_buffers": f"{shared}MB",
        "effective_cache_size": f"{mem_mb * 3 // 4}MB",
        "maintenance_work_mem": f"{min(mem_mb // 16, 2048)}MB",
        # every connection may use a few work_mem at once (sorts, hashes): keep that within the
        # memory beside shared_buffers, whatever max_connections is (1 MB at the least, never more)
        "work_mem": f"{max(1, (mem_mb - shared) // (db.max_connections * 3))}MB",
        "wal_buffers": "16MB",
        "min_wal_size": "1GB",
        "max_wal_size": "4GB",
        "checkpoint_completion_target": 0.9,
        "random_page_cost": 1.1,  # gp3 is SSD
        "effective_io_concurrency": 200,
        "password_encryption": "'scram-sha-256'",
        "ssl": "on",
        "ssl_cert_file": "'server.crt'",
        "ssl_key_file": "'server.key'",
        "ssl_min_protocol_version": "'TLSv1.2'",
        "log_connections": "on",
        "log_min_duration_statement": "1000",  # slow queries, never statement text of every query (passwords)
    }
    return "\n".join(f"{key} = {value}" for key, value in lines.items())


def role_connection_limit(settings: EnvironmentSettings) -> int:
    """The Twenty role's CONNECTION LIMIT: max_connections less the maintenance headroom the connection
    budget reserves (superuser slots, the nightly pg_dump, operators), so surging or lingering pods can
    never take the connections an operator needs to repair things. One value with the settings' own
    (``EnvironmentSettings.twenty_connection_limit``), so the budget check and the host cannot disagree."""
    return settings.twenty_connection_limit


def render_cloud_init(settings: EnvironmentSettings, *, volume_id: str, secret_arn: str, encryption_key_secret_arn: str,
                      dump_bucket: str, client_cidrs: list[str]) -> str:  # fmt: skip
    """The boot configuration for these settings. Arguments may be Terraform references.

    The template's own ``${`` and ``%{`` (bash) are escaped so Terraform leaves them alone; only
    the references passed in are interpolated by Terraform.
    """
    db = settings.database
    hba = [f"hostssl  {db.database_name}  {db.username}  {cidr}  scram-sha-256" for cidr in client_cidrs]
    values = {
        "postgres_version": str(db.postgres_version),
        "mount_point": MOUNT_POINT,
        "pgdata": f"{MOUNT_POINT}/{db.postgres_version}/data",
        "volume_id": volume_id,
        "region": settings.region,
        "secret_arn": secret_arn,
        "encryption_key_secret_arn": encryption_key_secret_arn,
        "seed_request_token": SEED_REQUEST_TOKEN,
        "boot_metric_namespace": BOOT_METRIC_NAMESPACE,
        "boot_metric_name": BOOT_METRIC_NAME,
        "database_name": db.database_name,
        "username": db.username,
        "role_connection_limit": str(role_connection_limit(settings)),
        "dump_bucket": dump_bucket,
        "dump_prefix": settings.stack_name("db"),
        # `aws s3 cp -` needs a size hint for streams over 50 GB; the volume bounds the dump.
        "dump_expected_size": str(db.volume_size_gb * 1024**3),
        "dump_time_utc": db.dump_time_utc,
        "postgresql_conf": _indent(postgresql_conf(settings), 6),
        "pg_hba_rules": _indent("\n".join(hba), 6),
    }
    template = _template(TEMPLATE)
    used = set(_PLACEHOLDER.findall(template))
    if used != set(values):
        raise ValueError(f"{TEMPLATE}: placeholders {sorted(used)} do not match the values {sorted(values)}")
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


@functools.cache
def _template(path: Path) -> str:
    """The boot template, read once per process, with its own ${ and %{ escaped for Terraform."""
    return path.read_text(encoding="utf-8").replace("${", "$${").replace("%{", "%%{")


def _indent(text: str, spaces: int) -> str:
    return "\n".join(" " * spaces + line for line in text.splitlines())


class DatabaseHost(Construct):
    """The PostgreSQL host of one environment.

    Exposes ``instance``, ``security_group``, ``key`` (the KMS key of volumes, secrets and dumps),
    ``password_secret``, ``encryption_key_secret``, ``backup`` and ``port``/``database_name``/``username``.
    """

    def __init__(self, scope: Construct, construct_id: str, *, settings: EnvironmentSettings, vpc_id: str,
                 subnet: Subnet, zone: str, client_cidrs: list[str], client_security_group_id: str,
                 egress: Sequence[ITerraformDependable]) -> None:  # fmt: skip
        """``subnet`` (in ``zone``) holds the host; ``client_security_group_id`` (the EKS nodes) may
        connect on 5432, and ``client_cidrs`` (the private subnets) are what pg_hba admits.
        ``egress`` (the subnet's route to its NAT gateway) must exist before the host boots: its
        boot script installs packages and seeds the secrets through it."""
        super().__init__(scope, construct_id)
        db = settings.database
        name = settings.stack_name("db")
        tags = {"Name": name, "Component": settings.component(db.id)}
        self.port, self.database_name, self.username = PORT, db.database_name, db.username
        self._region = settings.region

        self.key = EncryptionKey(
            self, "key", alias=name, description=f"Encrypts the database volumes, secrets and dumps of {settings.name}",
            tags=tags,
        )  # fmt: skip
        self._boundary = workload_boundary_arn(settings, partition=self.key.partition, account=self.key.account_id)
        self.password_secret = self._secret(
            "password", f"{settings.project}/{settings.name}/database/password", f"Password of the {db.username} "
            "role of the Twenty database", tags=tags, recovery_days=db.secret_recovery_days,
        )  # fmt: skip
        # Twenty's ENCRYPTION_KEY, seeded by the host the same way; the apps stack reads it.
        self.encryption_key_secret = self._secret(
            "encryption-key", f"{settings.project}/{settings.name}/twenty/encryption-key", "Twenty ENCRYPTION_KEY",
            tags=tags, recovery_days=db.secret_recovery_days,
        )  # fmt: skip

        self.security_group = SecurityGroup(
            self, "sg", name_prefix=f"{name}-", description=f"PostgreSQL host of {settings.name}", vpc_id=vpc_id, tags=tags,
            lifecycle={"create_before_destroy": True},
        )  # fmt: skip
        VpcSecurityGroupIngressRule(
            self, "ingress-nodes", security_group_id=self.security_group.id, ip_protocol="tcp", from_port=PORT,
            to_port=PORT, referenced_security_group_id=client_security_group_id,
            description="PostgreSQL from the EKS worker nodes (Twenty server and worker pods)", tags=tags,
        )  # fmt: skip
        # HTTPS only: the AL2023 package mirrors (S3/CloudFront), SSM, Secrets Manager, S3, through
        # the NAT. DNS and NTP go to the VPC resolver and 169.254.169.123, which security groups do not filter.
        VpcSecurityGroupEgressRule(
            self, "egress-https", security_group_id=self.security_group.id, ip_protocol="tcp", from_port=443,
            to_port=443, cidr_ipv4="0.0.0.0/0",
            description="HTTPS to package mirrors and AWS APIs (SSM, Secrets Manager, S3) through the NAT", tags=tags,
        )  # fmt: skip

        self.backup = DatabaseBackup(self, "backup", settings=settings, key=self.key, tags=tags)
        self.volume = EbsVolume(
            self, "data", availability_zone=f"{settings.region}{zone}", size=db.volume_size_gb, type="gp3",
            encrypted=True, kms_key_id=self.key.arn, final_snapshot=True,
            tags={**tags, "Name": f"{name}-data", **self.backup.target_tags},
            lifecycle={"prevent_destroy": db.termination_protection},
        )  # fmt: skip
        profile = self._instance_profile(name, tags)

        ami = DataAwsSsmParameter(self, "ami", name=AMI_PARAMETER)
        # The boot configuration in plain text (a local: what the tests and an operator read), sent gzipped.
        boot_config = TerraformLocal(self, "boot-config", render_cloud_init(
            settings, volume_id=self.volume.id, secret_arn=self.password_secret.arn,
            encryption_key_secret_arn=self.encryption_key_secret.arn, dump_bucket=self.backup.bucket.bucket,
            client_cidrs=client_cidrs,
        ))  # fmt: skip
        self.instance = Instance(
            self, "instance", ami=ami.value, instance_type=db.instance_type, subnet_id=subnet.id,
            vpc_security_group_ids=[self.security_group.id], iam_instance_profile=profile.name,
            monitoring=True, ebs_optimized=True, disable_api_termination=db.termination_protection,
            metadata_options=InstanceMetadataOptions(
                http_endpoint="enabled", http_tokens="required", http_put_response_hop_limit=1,
            ),
            root_block_device=InstanceRootBlockDevice(
                volume_type="gp3", volume_size=db.root_volume_size_gb, encrypted=True, kms_key_id=self.key.arn,
                delete_on_termination=True, tags={**tags, "Name": f"{name}-root"},
            ),
            maintenance_options=InstanceMaintenanceOptions(auto_recovery="default"),
            # gzip: EC2 takes at most 16 KB of user data and the boot configuration (scripts with
            # their comments) is larger; cloud-init reads gzip-compressed user data as it is.
            user_data_base64=Fn.base64gzip(boot_config.as_string),
            # cloud-init runs once per instance: a changed boot config needs a new instance, which
            # is safe because the data lives on the volume. The AMI is pinned at creation so a new
            # AL2023 release does not replace the database unasked (docs/database.md: patching).
            user_data_replace_on_change=True,
            lifecycle={"ignore_changes": ["ami"]},
            # the boot installs packages and seeds the secrets through the NAT: no route, no database
            depends_on=list(egress),
            tags=tags,
        )  # fmt: skip
        VolumeAttachment(
            self, "data-attachment", device_name="/dev/sdf", volume_id=self.volume.id, instance_id=self.instance.id,
            stop_instance_before_detaching=True,  # a clean PostgreSQL shutdown before the volume goes
        )  # fmt: skip
        self.private_dns = self.instance.private_dns
        self.private_ip = self.instance.private_ip

        # EC2 auto-recovery: a failed system status check moves the instance to healthy hardware
        # (same ID, IP, volumes).
        CloudwatchMetricAlarm(
            self, "recover", alarm_name=f"{name}-recover", namespace="AWS/EC2", metric_name="StatusCheckFailed_System",
            dimensions={"InstanceId": self.instance.id}, statistic="Maximum", period=60, evaluation_periods=2,
            threshold=1, comparison_operator="GreaterThanOrEqualToThreshold",
            alarm_description=f"Recover the {settings.name} database host when the system status check fails",
            alarm_actions=[f"arn:{self.key.partition}:automate:{settings.region}:ec2:recover"], tags=tags,
        )  # fmt: skip

    def _secret(self, construct_id: str, name: str, description: str, *, tags: dict[str, str],
                recovery_days: int) -> SecretsmanagerSecret:  # fmt: skip
        """A Secrets Manager secret without a value: the host's first boot stores one (twenty-db-init).

        The platform stack holds no ``aws_secretsmanager_secret_version``: refreshing one calls
        ``GetSecretValue`` even when the value is write-only, which the read-only plan role must
        never be allowed to do (docs/database.md).
        """
        return SecretsmanagerSecret(
            self, construct_id, name=name, description=description, kms_key_id=self.key.arn,
            recovery_window_in_days=recovery_days, tags=tags,
        )  # fmt: skip

    def _instance_profile(self, name: str, tags: dict[str, str]) -> IamInstanceProfile:
        role = IamRole(
            self, "role", name=name, tags=tags, permissions_boundary=self._boundary,
            assume_role_policy=json.dumps({"Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole",
            }]}),
        )  # fmt: skip
        # Session Manager instead of SSH: no key pair, no port 22.
        IamRolePolicyAttachment(
            self, "ssm", role=role.name,
            policy_arn=f"arn:{self.key.partition}:iam::aws:policy/AmazonSSMManagedInstanceCore",
        )  # fmt: skip
        # The CloudWatch agent publishes memory and disk use (the monitoring alarms read them).
        IamRolePolicyAttachment(
            self, "cloudwatch-agent", role=role.name,
            policy_arn=f"arn:{self.key.partition}:iam::aws:policy/CloudWatchAgentServerPolicy",
        )  # fmt: skip
        IamRolePolicy(
            self, "policy", role=role.id,
            policy=json.dumps({"Version": "2012-10-17", "Statement": [
                # Seed the password once and read it on every twenty-db-init run.
                {"Sid": "SeedAndReadPassword", "Effect": "Allow",
                 "Action": ["secretsmanager:DescribeSecret", "secretsmanager:GetSecretValue",
                            "secretsmanager:PutSecretValue"],
                 "Resource": self.password_secret.arn},
                # Twenty's ENCRYPTION_KEY: seeded once, never read by the host (only the apps stack reads it).
                {"Sid": "SeedEncryptionKey", "Effect": "Allow",
                 "Action": ["secretsmanager:DescribeSecret", "secretsmanager:PutSecretValue"],
                 "Resource": self.encryption_key_secret.arn},
                # get-random-password acts on no resource (AWS: "Resource types: none").
                {"Sid": "GenerateSecretValues", "Effect": "Allow", "Action": "secretsmanager:GetRandomPassword",
                 "Resource": "*"},
                # Write dumps and remove a failed one; deleting versions (the backups) is not allowed.
                {"Sid": "WriteDumps", "Effect": "Allow", "Action": ["s3:PutObject", "s3:DeleteObject"],
                 "Resource": f"{self.backup.bucket.arn}/*"},
                # Restores run on the host (docs/database.md), so it may read the dumps back.
                {"Sid": "ReadDumps", "Effect": "Allow", "Action": ["s3:GetObject", "s3:ListBucket"],
                 "Resource": [self.backup.bucket.arn, f"{self.backup.bucket.arn}/*"]},
                {"Sid": "UseKeyThroughServices", "Effect": "Allow",
                 "Action": ["kms:Decrypt", "kms:GenerateDataKey"], "Resource": self.key.arn,
                 "Condition": {"StringEquals": {"kms:ViaService": [
                     f"secretsmanager.{self._region}.amazonaws.com",
                     f"s3.{self._region}.amazonaws.com"]}}},
            ]}),
        )  # fmt: skip
        return IamInstanceProfile(self, "profile", name=name, role=role.name, tags=tags)
