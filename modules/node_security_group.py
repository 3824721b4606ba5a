"""The security group of the EKS worker nodes, created apart from the cluster so that the load
balancer and the database can name it as their only allowed source (and the nodes as theirs).

Rules owned here are the ones every node needs whatever runs on it: node-to-node traffic (pods
talk across nodes through the VPC CNI) and egress. The cluster, the load balancer and the
database each add the rule of their own path as a separate ``aws_vpc_security_group_*_rule``.
"""

from __future__ import annotations

from cdktf_cdktf_provider_aws.security_group import SecurityGroup
from cdktf_cdktf_provider_aws.vpc_security_group_egress_rule import VpcSecurityGroupEgressRule
from cdktf_cdktf_provider_aws.vpc_security_group_ingress_rule import VpcSecurityGroupIngressRule
from constructs import Construct

from modules.settings import EnvironmentSettings


class NodeSecurityGroup(Construct):
    """Exposes ``security_group`` (and ``id``) for the cluster, the load balancer and the database."""

    def __init__(self, scope: Construct, construct_id: str, *, settings: EnvironmentSettings, vpc_id: str) -> None:
        super().__init__(scope, construct_id)
        name = f"{settings.cluster.name}-nodes"
        self.security_group = SecurityGroup(
            self,
            "sg",
            name_prefix=f"{name}-",  # a prefix, so a replacement can exist next to the old one
            description=f"EKS worker nodes of {settings.cluster.name}",
            vpc_id=vpc_id,
            tags={
                "Name": name,
                "Component": settings.component(settings.cluster.node_groups_id),
                # the AWS Load Balancer Controller and Karpenter find the node group by this tag
                f"kubernetes.io/cluster/{settings.cluster.name}": "owned",
            },
            lifecycle={"create_before_destroy": True},
        )
        self.id = self.security_group.id
        VpcSecurityGroupIngressRule(
            self,
            "node-to-node",
            security_group_id=self.id,
            referenced_security_group_id=self.id,
            ip_protocol="-1",
            description="Node to node: pod-to-pod traffic, CoreDNS, kubelet between nodes",
        )
        # Nodes pull images (ECR, Docker Hub), reach AWS APIs and package mirrors through the
        # NAT gateways; the destinations are too many and too dynamic for an allow-list here.
        VpcSecurityGroupEgressRule(
            self,
            "egress",
            security_group_id=self.id,
            cidr_ipv4="0.0.0.0/0",
            ip_protocol="-1",
            description="Egress to the VPC and, through the NAT gateways, the internet",
        )


def allow_tcp(
    scope: Construct,
    *,
    port: int,
    source_security_group_id: str,
    target_security_group_id: str,
    egress: tuple[str, str, dict[str, str]],
    ingress: tuple[str, str, dict[str, str]],
) -> None:
    """One TCP port from one security group to another, written on both sides.

    ``egress`` and ``ingress`` are (construct ID, description, tags) of the rule on the source and
    on the target group: with separate rule resources each side must allow the flow itself.
    """
    for rule_class, (construct_id, description, tags), group, peer in (
        (VpcSecurityGroupEgressRule, egress, source_security_group_id, target_security_group_id),
        (VpcSecurityGroupIngressRule, ingress, target_security_group_id, source_security_group_id),
    ):
        rule_class(
            scope,
            construct_id,
            security_group_id=group,
            referenced_security_group_id=peer,
            ip_protocol="tcp",
            from_port=port,
            to_port=port,
            description=description,
            tags=tags,
        )
