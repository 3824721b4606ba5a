"""The ``[state]`` and ``[network]`` sections: Terraform state, the VPC and its subnets."""

from __future__ import annotations

import ipaddress
from itertools import combinations
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from modules.settings.fields import _DYNAMODB_TABLE, BucketName, Cidr, ComponentId, LogRetentionDays, _Model, _pattern


# S3 server access logs of a state bucket and of the environment's other buckets go to "<state bucket>-access-logs"
# (modules/state.py), created with the state bucket; S3 bucket names have at most 63 characters.
ACCESS_LOG_SUFFIX = "-access-logs"


def access_log_bucket_for(state_bucket: str) -> str:
    return f"{state_bucket}{ACCESS_LOG_SUFFIX}"


def check_room_for_access_logs(bucket: str) -> str:
    if len(access_log_bucket_for(bucket)) > 63:
        raise ValueError(f"at most {63 - len(ACCESS_LOG_SUFFIX)} characters, so that its server access log bucket "
                         f"'{access_log_bucket_for(bucket)}' fits S3's 63; shorten it")  # fmt: skip
    return bucket


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
    access_log_retention_days: int = Field(
        default=365, ge=1, le=3650,
        description="Days the environment's S3 server access logs (<state bucket>-access-logs) are kept.",
    )  # fmt: skip

    _room_for_access_logs = field_validator("bucket")(check_room_for_access_logs)

    @property
    def access_log_bucket(self) -> str:
        """Where every bucket of the environment sends its S3 server access logs."""
        return access_log_bucket_for(self.bucket)


class SubnetSettings(_Model):
    id: ComponentId = Field(description="The document's component ID, e.g. NET-201.")
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9-]{1,32}$")] = Field(
        description="The document's name, e.g. Public-1A."
    )
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
    flow_log_retention_days: LogRetentionDays = 365
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
                problems.append(
                    f"needs {tier} subnets in at least two zones (EKS and the ALB require it), found {zones}"
                )
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
