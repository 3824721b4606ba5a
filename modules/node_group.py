"""The document's node groups (EKS-x00 node groups ID): one managed node group per tier.

Each tier gets its own launch template (IMDSv2 only, hop limit 1, encrypted gp3 root volume, the
shared node security group, no SSH key) and a Kubernetes label, ``twentycrm/tier``, so the
frontend and backend workloads can be pinned to their own nodes with a nodeSelector.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Literal

from cdktf import ITerraformDependable, Token
from cdktf_cdktf_provider_aws.eks_node_group import (
    EksNodeGroup,
    EksNodeGroupLaunchTemplate,
    EksNodeGroupNodeRepairConfig,
    EksNodeGroupScalingConfig,
    EksNodeGroupUpdateConfig,
)
from cdktf_cdktf_provider_aws.iam_role import IamRole
from cdktf_cdktf_provider_aws.iam_role_policy import IamRolePolicy
from cdktf_cdktf_provider_aws.iam_role_policy_attachment import IamRolePolicyAttachment
from cdktf_cdktf_provider_aws.launch_template import (
    LaunchTemplate,
    LaunchTemplateBlockDeviceMappings,
    LaunchTemplateBlockDeviceMappingsEbs,
    LaunchTemplateMetadataOptions,
    LaunchTemplateTagSpecifications,
)
from constructs import Construct

from modules.boundary import workload_boundary_arn
from modules.settings import EnvironmentSettings

Tier = Literal["frontend", "backend"]
TIER_LABEL = "twentycrm/tier"
AMI_TYPE = "AL2023_x86_64_STANDARD"
# What a managed node needs: join the cluster, pull images from ECR, and (for the VPC CNI,
# which runs with the host network) manage the pods' ENIs and addresses.
NODE_POLICIES = ("AmazonEKSWorkerNodePolicy", "AmazonEC2ContainerRegistryPullOnly", "AmazonEKS_CNI_Policy")


class NodeRole(Construct):
    """The IAM role both node groups' instances run as. Exposes ``role`` and ``attachments``."""

    def __init__(self, scope: Construct, construct_id: str, *, settings: EnvironmentSettings, partition: str,
                 account: str) -> None:  # fmt: skip
        super().__init__(scope, construct_id)
        name = f"{settings.cluster.name}-nodes"
        self.role = IamRole(
            self,
            "role",
            name=name,
            assume_role_policy=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}
                    ],
                }
            ),
            tags={"Name": name, "Component": settings.component(settings.cluster.node_groups_id)},
            permissions_boundary=workload_boundary_arn(settings, partition=partition, account=account),
        )
        self.attachments: list[ITerraformDependable] = [
            IamRolePolicyAttachment(
                self, policy, role=self.role.name, policy_arn=f"arn:{partition}:iam::aws:policy/{policy}"
            )
            for policy in NODE_POLICIES
        ]
        # A pull through the environment's cache rules: the first pull of an image imports it from upstream and
        # creates its repository, which takes these two on the repository besides the pull actions
        # (ECR user guide, "IAM permissions required to sync an upstream registry"). Only this environment's prefix.
        prefix = f"{settings.project}-{settings.name}"
        self.attachments.append(IamRolePolicy(
            self, "pull-through-cache", name=f"{name}-pull-through-cache", role=self.role.id,
            policy=json.dumps({"Version": "2012-10-17", "Statement": [{
                "Sid": "PullThroughOwnCache", "Effect": "Allow",
                "Action": ["ecr:BatchImportUpstreamImage", "ecr:CreateRepository"],
                "Resource": f"arn:{partition}:ecr:{settings.region}:{account}:repository/{prefix}/*"}]}),
        ))  # fmt: skip


class NodeGroup(Construct):
    """One tier's managed node group and launch template. Exposes ``node_group``, ``launch_template``, ``labels``."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: EnvironmentSettings,
        tier: Tier,
        cluster_name: str,
        kubernetes_version: str,
        node_role: NodeRole,
        subnet_ids: Sequence[str],
        node_security_group_id: str,
        depends_on: Sequence[ITerraformDependable] = (),
    ) -> None:
        super().__init__(scope, construct_id)
        sizes = getattr(settings.cluster, tier)
        name = f"{settings.cluster.name}-{tier}"
        tags = {"Name": name, "Component": settings.component(settings.cluster.node_groups_id), "Tier": tier}
        self.labels = {TIER_LABEL: tier}

        self.launch_template = LaunchTemplate(
            self,
            "launch-template",
            name=name,
            description=f"{tier} nodes of {settings.cluster.name}",
            update_default_version=True,
            # No image_id: EKS picks the AL2023 AMI for the cluster version and rolls it on upgrades.
            # No key_name and no remote access: nodes are reached, if ever, through the Kubernetes API.
            vpc_security_group_ids=[node_security_group_id],
            metadata_options=LaunchTemplateMetadataOptions(
                http_endpoint="enabled",
                http_tokens="required",
                # 1 hop: pods (one hop further, behind the CNI) cannot read the node role's
                # credentials; they get their own through Pod Identity instead.
                http_put_response_hop_limit=1,
                instance_metadata_tags="disabled",
            ),
            block_device_mappings=[
                LaunchTemplateBlockDeviceMappings(
                    device_name="/dev/xvda",  # the AL2023 EKS AMI's root device
                    ebs=LaunchTemplateBlockDeviceMappingsEbs(
                        volume_size=sizes.disk_size_gb,
                        volume_type="gp3",
                        encrypted="true",
                        delete_on_termination="true",
                    ),
                )
            ],
            # Default tags stop at the launch template; these reach the instances and volumes.
            tag_specifications=[
                LaunchTemplateTagSpecifications(
                    resource_type=kind,
                    tags={**tags, "Project": settings.project, "Environment": settings.name},
                )
                for kind in ("instance", "volume", "network-interface")
            ],
            tags=tags,
        )

        self.node_group = EksNodeGroup(
            self,
            "node-group",
            cluster_name=cluster_name,
            node_group_name=name,
            version=kubernetes_version,
            node_role_arn=node_role.role.arn,
            subnet_ids=list(subnet_ids),
            ami_type=AMI_TYPE,
            capacity_type="ON_DEMAND",
            instance_types=[sizes.instance_type],
            scaling_config=EksNodeGroupScalingConfig(
                desired_size=sizes.desired_size, min_size=sizes.min_size, max_size=sizes.max_size
            ),
            # One node at a time (by default): new node up, pods drained off the old one, repeat.
            update_config=EksNodeGroupUpdateConfig(max_unavailable=sizes.max_unavailable),
            node_repair_config=EksNodeGroupNodeRepairConfig(enabled=True),
            launch_template=EksNodeGroupLaunchTemplate(
                id=self.launch_template.id, version=Token.as_string(self.launch_template.latest_version)
            ),
            labels=self.labels,
            tags=tags,
            # The role's policies must outlive the nodes on destroy, and the CNI must exist
            # before nodes try to become Ready.
            depends_on=[*node_role.attachments, *depends_on],
        )
