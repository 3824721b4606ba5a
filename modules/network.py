"""The VPC of one environment: subnets in two zones, internet and NAT gateways, routes, flow logs.

Shaped like terraform-aws-modules/vpc with the EKS tags its docs recommend: public subnets carry
``kubernetes.io/role/elb`` so load balancers land there, private ones ``internal-elb``.
"""

from __future__ import annotations

import json

from cdktf_cdktf_provider_aws.default_security_group import DefaultSecurityGroup
from cdktf_cdktf_provider_aws.eip import Eip
from cdktf_cdktf_provider_aws.flow_log import FlowLog
from cdktf_cdktf_provider_aws.iam_role import IamRole
from cdktf_cdktf_provider_aws.iam_role_policy import IamRolePolicy
from cdktf_cdktf_provider_aws.internet_gateway import InternetGateway
from cdktf_cdktf_provider_aws.nat_gateway import NatGateway
from cdktf_cdktf_provider_aws.route import Route
from cdktf_cdktf_provider_aws.route_table import RouteTable
from cdktf_cdktf_provider_aws.route_table_association import RouteTableAssociation
from cdktf_cdktf_provider_aws.subnet import Subnet
from cdktf_cdktf_provider_aws.vpc import Vpc
from constructs import Construct

from modules.boundary import workload_boundary_arn
from modules.kms import encrypted_log_group
from modules.settings import EnvironmentSettings, SubnetSettings


class Network(Construct):
    """VPC-x01 and NET-x.. of the document.

    Exposes ``vpc``, ``public_subnets`` and ``private_subnets`` (lists, ordered by zone),
    ``nat_gateways`` and ``private_egress`` (zone -> the private default route and its association)
    for the constructs that need them.
    """

    def __init__(self, scope: Construct, construct_id: str, *, settings: EnvironmentSettings) -> None:
        super().__init__(scope, construct_id)
        net = settings.network
        self._settings = settings
        name = settings.stack_name("vpc")

        self.vpc = Vpc(
            self,
            "vpc",
            cidr_block=net.cidr,
            enable_dns_support=True,  # EKS nodes and private endpoints need both
            enable_dns_hostnames=True,
            tags=self._tags(net.vpc_id, name),
        )
        # Nothing may use the default security group: strip every rule from it (CIS 5.4).
        DefaultSecurityGroup(self, "default-sg", vpc_id=self.vpc.id, tags=self._tags(net.vpc_id, f"{name}-default"))

        subnets = {s.id: self._subnet(s) for s in net.subnets}
        self.public_subnets = [subnets[s.id] for s in self._tier("public")]
        self.private_subnets = [subnets[s.id] for s in self._tier("private")]

        igw = InternetGateway(
            self, "igw", vpc_id=self.vpc.id, tags=self._tags(net.internet_gateway_id, f"{name}-igw")
        )
        public_rt = RouteTable(self, "public-rt", vpc_id=self.vpc.id, tags=self._tags(net.network_id, f"{name}-public"))
        Route(self, "public-default", route_table_id=public_rt.id, destination_cidr_block="0.0.0.0/0", gateway_id=igw.id)
        for s in self._tier("public"):
            RouteTableAssociation(self, f"public-{s.zone}-rta", subnet_id=subnets[s.id].id, route_table_id=public_rt.id)

        # One NAT gateway (in the first zone) or one per zone; each zone's private route table
        # goes through its own NAT when there is one, so losing a zone does not cut the others off.
        nat_zones = [s.zone for s in self._tier("public")]
        if net.nat_gateways == "single":
            nat_zones = nat_zones[:1]
        self.nat_gateways = {}
        for s in self._tier("public"):
            if s.zone not in nat_zones:
                continue
            eip = Eip(self, f"nat-{s.zone}-eip", domain="vpc", tags=self._tags(net.nat_gateway_id, f"{name}-nat-{s.zone}"))
            self.nat_gateways[s.zone] = NatGateway(
                self,
                f"nat-{s.zone}",
                allocation_id=eip.id,
                subnet_id=subnets[s.id].id,
                tags=self._tags(net.nat_gateway_id, f"{name}-nat-{s.zone}"),
                depends_on=[igw],
            )
        # zone letter -> the private subnet's default route through its NAT gateway and the route
        # table's association: what a host that installs packages at boot waits for (the database).
        self.private_egress: dict[str, list[Route | RouteTableAssociation]] = {}
        for s in self._tier("private"):
            nat = self.nat_gateways.get(s.zone) or self.nat_gateways[nat_zones[0]]
            rt = RouteTable(
                self, f"private-{s.zone}-rt", vpc_id=self.vpc.id, tags=self._tags(net.network_id, f"{name}-private-{s.zone}")
            )
            route = Route(
                self, f"private-{s.zone}-default", route_table_id=rt.id, destination_cidr_block="0.0.0.0/0",
                nat_gateway_id=nat.id,
            )  # fmt: skip
            association = RouteTableAssociation(
                self, f"private-{s.zone}-rta", subnet_id=subnets[s.id].id, route_table_id=rt.id
            )
            self.private_egress[s.zone] = [route, association]

        self._flow_logs(name)

    def _tier(self, tier: str) -> list[SubnetSettings]:
        return sorted((s for s in self._settings.network.subnets if s.tier == tier), key=lambda s: s.zone)

    def _tags(self, component_id: str, name: str) -> dict[str, str]:
        return {"Name": name, "Component": self._settings.component(component_id)}

    def _subnet(self, s: SubnetSettings) -> Subnet:
        role = "kubernetes.io/role/elb" if s.tier == "public" else "kubernetes.io/role/internal-elb"
        return Subnet(
            self,
            f"{s.tier}-{s.zone}",
            vpc_id=self.vpc.id,
            cidr_block=s.cidr,
            availability_zone=f"{self._settings.region}{s.zone}",
            # Public subnets hold only the ALB and NAT gateways, which get their addresses
            # explicitly; nothing launched there should get a public IP by accident.
            map_public_ip_on_launch=False,
            tags={
                **self._tags(s.id, f"{self._settings.project}-{self._settings.name}-{s.name.lower()}"),
                "Tier": s.tier,
                role: "1",
                f"kubernetes.io/cluster/{self._settings.cluster.name}": "shared",
            },
        )

    def _flow_logs(self, name: str) -> None:
        net = self._settings.network
        tags = self._tags(net.vpc_id, f"{name}-flow-logs")
        log_group_name = f"/aws/vpc/{name}/flow-logs"
        log_group, key = encrypted_log_group(
            self,
            "flow-logs",
            log_group_name=log_group_name,
            retention_days=net.flow_log_retention_days,
            alias=f"{name}-flow-logs",
            description=f"Encrypts the VPC flow logs of {self._settings.name}",
            region=self._settings.region,
            tags=tags,
        )
        role = IamRole(
            self,
            "flow-logs-role",
            name=f"{name}-flow-logs",
            assume_role_policy=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"Service": "vpc-flow-logs.amazonaws.com"},
                            "Action": "sts:AssumeRole",
                            "Condition": {"StringEquals": {"aws:SourceAccount": key.account_id}},
                        }
                    ],
                }
            ),
            tags=tags,
            permissions_boundary=workload_boundary_arn(self._settings, partition=key.partition, account=key.account_id),
        )
        IamRolePolicy(
            self,
            "flow-logs-policy",
            role=role.id,
            policy=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Action": ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
                            "Resource": f"{log_group.arn}:*",
                        }
                    ],
                }
            ),
        )
        FlowLog(
            self,
            "flow-log",
            vpc_id=self.vpc.id,
            traffic_type="ALL",
            log_destination_type="cloud-watch-logs",
            log_destination=log_group.arn,
            iam_role_arn=role.arn,
            max_aggregation_interval=60,
            tags=tags,
        )
