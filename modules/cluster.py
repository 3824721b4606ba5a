"""The EKS control plane (the document's EKS-x01) and what it needs before and after its nodes.

Choices, explained in docs/cluster.md:
- the API endpoint is private; public access only from ``cluster.public_access_cidrs``;
- authentication mode API: admins come from access entries, the creator gets nothing implicitly;
- Kubernetes secrets are envelope-encrypted with a rotating customer key;
- workload identity is EKS Pod Identity (no OIDC provider, no thumbprint, no extra provider);
- EKS installs no self-managed add-ons; the managed ones are pinned per Kubernetes version.
  vpc-cni, kube-proxy and the Pod Identity agent come before the nodes (nodes are not Ready
  without a CNI); coredns and the EBS CSI driver come after them (their pods need nodes).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

from cdktf import ITerraformDependable
from cdktf_cdktf_provider_aws.eks_access_entry import EksAccessEntry
from cdktf_cdktf_provider_aws.eks_access_policy_association import (
    EksAccessPolicyAssociation,
    EksAccessPolicyAssociationAccessScope,
)
from cdktf_cdktf_provider_aws.eks_addon import EksAddon, EksAddonPodIdentityAssociation
from cdktf_cdktf_provider_aws.eks_cluster import (
    EksCluster,
    EksClusterAccessConfig,
    EksClusterEncryptionConfig,
    EksClusterEncryptionConfigProvider,
    EksClusterVpcConfig,
)
from cdktf_cdktf_provider_aws.iam_role import IamRole
from cdktf_cdktf_provider_aws.iam_role_policy import IamRolePolicy
from cdktf_cdktf_provider_aws.iam_role_policy_attachment import IamRolePolicyAttachment
from cdktf_cdktf_provider_aws.security_group import SecurityGroup
from cdktf_cdktf_provider_aws.vpc_security_group_ingress_rule import VpcSecurityGroupIngressRule
from constructs import Construct

from modules.boundary import workload_boundary_arn
from modules.kms import EncryptionKey, encrypted_log_group
from modules.node_security_group import allow_tcp
from modules.settings import EnvironmentSettings

LOG_TYPES = ("api", "audit", "authenticator", "controllerManager", "scheduler")
POD_IDENTITY_PRINCIPAL = "pods.eks.amazonaws.com"
ADMIN_POLICY = "AmazonEKSClusterAdminPolicy"
# get/list/watch on every Kubernetes resource, Secrets included (Helm keeps its releases in Secrets
# sh.helm.release.v1.*, which the helm provider reads while planning); no create, update or delete
# (https://docs.aws.amazon.com/eks/latest/userguide/access-policy-permissions.html, AmazonEKSAdminViewPolicy).
VIEW_POLICY = "AmazonEKSAdminViewPolicy"

# Control plane -> node ports. The control plane calls the kubelet (logs, exec, metrics) and the
# admission webhooks that charts install (AWS Load Balancer Controller 9443, metrics-server 4443...).
CONTROL_PLANE_TO_NODE_PORTS = (
    (443, "admission webhooks served on 443"),
    (4443, "metrics-server"),
    (6443, "admission webhooks served on 6443"),
    (8443, "admission webhooks served on 8443"),
    (9443, "AWS Load Balancer Controller and other webhooks on 9443"),
    (10250, "kubelet API: logs, exec, port-forward, metrics"),
)


def pod_identity_trust_policy(account_id: str) -> str:
    """The trust policy of an IAM role that a service account gets through EKS Pod Identity.

    The apps stack uses it with ``aws_eks_pod_identity_association`` (cluster name, namespace,
    service account, role ARN); no OIDC provider or per-cluster trust is involved.
    """
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "EksPodIdentity",
                    "Effect": "Allow",
                    "Principal": {"Service": POD_IDENTITY_PRINCIPAL},
                    "Action": ["sts:AssumeRole", "sts:TagSession"],
                    "Condition": {"StringEquals": {"aws:SourceAccount": account_id}},
                }
            ],
        }
    )


class Cluster(Construct):
    """EKS-x01: control plane, its role, key, logs, security group, access entries and add-ons.

    Exposes ``eks`` (the aws_eks_cluster), ``name``, ``endpoint``, ``certificate_authority``,
    ``oidc_issuer_url``, ``security_group`` (the control plane's additional group),
    ``secrets_key``, ``account_id``, ``partition`` and ``network_addons`` (the add-ons that must
    exist before nodes join; node groups depend on them).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: EnvironmentSettings,
        vpc_id: str,
        subnet_ids: Sequence[str],
        node_security_group_id: str,
    ) -> None:
        super().__init__(scope, construct_id)
        self._settings = settings
        c = settings.cluster
        self.name = c.name
        tags = self._tags(c.name)

        self.secrets_key = EncryptionKey(
            self,
            "secrets-key",
            alias=f"{c.name}-secrets",
            description=f"Envelope encryption of the Kubernetes secrets of {c.name}",
            tags=tags,
        )
        self.account_id = self.secrets_key.account_id
        self.partition = self.secrets_key.partition
        # EKS writes to this exact name; creating it first gives it retention and a key.
        log_group_name = f"/aws/eks/{c.name}/cluster"
        log_group, _ = encrypted_log_group(
            self,
            "logs",
            log_group_name=log_group_name,
            retention_days=c.log_retention_days,
            alias=f"{c.name}-control-plane-logs",
            description=f"Encrypts the control-plane logs of {c.name}",
            region=settings.region,
            tags=tags,
        )

        role = IamRole(
            self,
            "role",
            name=f"{c.name}-cluster",
            assume_role_policy=self._service_trust("eks.amazonaws.com", ["sts:AssumeRole", "sts:TagSession"]),
            tags=tags,
            permissions_boundary=workload_boundary_arn(settings, partition=self.partition, account=self.account_id),
        )
        cluster_policy = IamRolePolicyAttachment(
            self,
            "role-cluster-policy",
            role=role.name,
            policy_arn=f"arn:{self.partition}:iam::aws:policy/AmazonEKSClusterPolicy",
        )
        # Only what envelope encryption needs, on this one key.
        key_policy = IamRolePolicy(
            self,
            "role-secrets-key",
            role=role.id,
            policy=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Action": ["kms:Encrypt", "kms:Decrypt", "kms:ListGrants", "kms:DescribeKey"],
                            "Resource": self.secrets_key.arn,
                        }
                    ],
                }
            ),
        )

        self.security_group = self._security_group(vpc_id=vpc_id, node_security_group_id=node_security_group_id)

        public = bool(c.public_access_cidrs)
        self.eks = EksCluster(
            self,
            "eks",
            name=c.name,
            version=c.kubernetes_version,
            role_arn=role.arn,
            vpc_config=EksClusterVpcConfig(
                subnet_ids=list(subnet_ids),
                security_group_ids=[self.security_group.id],
                endpoint_private_access=True,
                endpoint_public_access=public,
                # unset when private: EKS reports 0.0.0.0/0 for a disabled endpoint, [] would drift
                public_access_cidrs=list(c.public_access_cidrs) if public else None,
            ),
            enabled_cluster_log_types=list(LOG_TYPES),
            encryption_config=EksClusterEncryptionConfig(
                resources=["secrets"], provider=EksClusterEncryptionConfigProvider(key_arn=self.secrets_key.arn)
            ),
            access_config=EksClusterAccessConfig(
                authentication_mode="API", bootstrap_cluster_creator_admin_permissions=False
            ),
            # Every add-on is a pinned managed one below; EKS's unmanaged copies would shadow them.
            bootstrap_self_managed_addons=False,
            tags=tags,
            depends_on=[log_group, cluster_policy, key_policy],
        )
        self.endpoint = self.eks.endpoint
        self.certificate_authority = self.eks.certificate_authority.get(0).data
        self.oidc_issuer_url = self.eks.identity.get(0).oidc.get(0).issuer

        for arn in c.admin_principal_arns:
            self._admin(arn)

        versions = c.addons()
        self.network_addons: list[ITerraformDependable] = [
            self._addon("vpc-cni", versions["vpc-cni"], configuration=self._vpc_cni_configuration()),
            self._addon("kube-proxy", versions["kube-proxy"]),
            self._addon("eks-pod-identity-agent", versions["eks-pod-identity-agent"]),
        ]
        self.workload_addons: list[EksAddon] = []

    def add_workload_addons(self, *, after: Sequence[ITerraformDependable]) -> None:
        """coredns and the EBS CSI driver, created once ``after`` (the node groups) exist.

        Their pods need nodes: created earlier, the add-ons would sit DEGRADED and Terraform
        would wait on them until it times out.
        """
        versions = self._settings.cluster.addons()
        self.workload_addons.append(self._addon("coredns", versions["coredns"], depends_on=after))
        ebs_role = IamRole(
            self,
            "ebs-csi-role",
            name=f"{self.name}-ebs-csi",
            assume_role_policy=pod_identity_trust_policy(self.account_id),
            tags=self._tags(f"{self.name}-ebs-csi", whole_cluster=True),
            permissions_boundary=workload_boundary_arn(self._settings, partition=self.partition,
                                                       account=self.account_id),
        )
        IamRolePolicyAttachment(
            self,
            "ebs-csi-policy",
            role=ebs_role.name,
            policy_arn=f"arn:{self.partition}:iam::aws:policy/service-role/AmazonEBSCSIDriverPolicy",
        )
        self.workload_addons.append(
            self._addon(
                "aws-ebs-csi-driver",
                versions["aws-ebs-csi-driver"],
                depends_on=after,
                pod_identity=EksAddonPodIdentityAssociation(role_arn=ebs_role.arn, service_account="ebs-csi-controller-sa"),
            )
        )

    # --- parts -----------------------------------------------------------------------------

    def _vpc_cni_configuration(self) -> dict:
        """The network policy agent enforces the NetworkPolicies of charts/twenty (docs/apps.md).

        ``env.ADDITIONAL_ENI_TAGS`` (a JSON map in a string: the add-on's configuration schema types it
        ``string``; amazon-vpc-cni-k8s README, since v1.6.0) tags the secondary ENIs the CNI attaches to
        the nodes, which the launch template's tags never reach: without it they miss the Environment fence.
        """
        tags = {"Environment": self._settings.name, "Project": self._settings.project}
        return {"enableNetworkPolicy": "true", "env": {"ADDITIONAL_ENI_TAGS": json.dumps(tags)}}

    def _tags(self, name: str, *, whole_cluster: bool = False) -> dict[str, str]:
        """Control-plane parts carry EKS-x01; what belongs to the cluster as a whole (add-ons,
        access entries, add-on roles) carries the cluster's EKS-x00."""
        c = self._settings.cluster
        return {"Name": name, "Component": self._settings.component(c.id if whole_cluster else c.control_plane_id)}

    @staticmethod
    def _service_trust(service: str, actions: list[str]) -> str:
        return json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Principal": {"Service": service}, "Action": actions}],
            }
        )

    def _security_group(self, *, vpc_id: str, node_security_group_id: str) -> SecurityGroup:
        """The control plane's own group: the API from the nodes, and the nodes' ports from it.

        EKS also attaches the group it creates itself (all traffic between its members only);
        the nodes do not carry that one, because their launch templates name the node group.
        """
        name = f"{self.name}-control-plane"
        sg = SecurityGroup(
            self,
            "sg",
            name_prefix=f"{name}-",  # a prefix, so a replacement can exist next to the old one
            description=f"EKS control plane of {self.name}: API from the nodes, calls to the nodes",
            vpc_id=vpc_id,
            tags=self._tags(name),
            lifecycle={"create_before_destroy": True},
        )
        VpcSecurityGroupIngressRule(
            self,
            "api-from-nodes",
            security_group_id=sg.id,
            referenced_security_group_id=node_security_group_id,
            ip_protocol="tcp",
            from_port=443,
            to_port=443,
            description="Kubernetes API from the worker nodes and their pods",
            tags=self._tags(f"{name}-api-from-nodes"),
        )
        for port, why in CONTROL_PLANE_TO_NODE_PORTS:
            allow_tcp(
                self,
                port=port,
                source_security_group_id=sg.id,
                target_security_group_id=node_security_group_id,
                egress=(f"to-nodes-{port}", f"Control plane to nodes: {why}", self._tags(f"{name}-to-nodes-{port}")),
                ingress=(
                    f"nodes-from-control-plane-{port}",
                    f"From the EKS control plane: {why}",
                    self._tags(f"{self.name}-nodes-from-control-plane-{port}"),
                ),
            )
        return sg

    def _admin(self, principal_arn: str) -> None:
        # The ID comes from the ARN, not the list position: reordering the list changes nothing.
        suffix = hashlib.sha256(principal_arn.encode()).hexdigest()[:8]
        entry = EksAccessEntry(
            self,
            f"admin-{suffix}",
            cluster_name=self.eks.name,
            principal_arn=principal_arn,
            type="STANDARD",
            tags=self._tags(f"{self.name}-admin", whole_cluster=True),
        )
        EksAccessPolicyAssociation(
            self,
            f"admin-{suffix}-policy",
            cluster_name=self.eks.name,
            principal_arn=entry.principal_arn,
            policy_arn=f"arn:{self.partition}:eks::aws:cluster-access-policy/{ADMIN_POLICY}",
            access_scope=EksAccessPolicyAssociationAccessScope(type="cluster"),
        )

    def grant_deployer(self, *, role_name: str) -> None:
        """Cluster-admin for the CI deploy role (created by the state stack), which applies the apps stack from
        the in-VPC runner. Narrower policies do not suffice: the apps stack installs CRDs (the load balancer
        controller's), ClusterRoles and bindings (controller, metrics-server, autoscaler), an APIService,
        webhook configurations, a StorageClass and a namespace; all cluster-scoped, and binding a ClusterRole
        needs the rights it grants. AmazonEKSAdminPolicy is namespaced admin and creates none of these
        (https://docs.aws.amazon.com/eks/latest/userguide/access-policy-permissions.html)."""
        self._grant_ci_role("deployer", role_name=role_name, policy=ADMIN_POLICY)

    def grant_reviewer(self, *, role_name: str) -> None:
        """View-only access for the CI review role, which plans the apps stack on main before approval: the
        kubernetes and helm providers read the objects and release Secrets they manage, and write nothing.
        Like the deployer's, the entry binds to the role's unique ID: recreate it if the role is recreated
        (docs/ci-cd.md, runbook)."""
        self._grant_ci_role("reviewer", role_name=role_name, policy=VIEW_POLICY)

    def _grant_ci_role(self, construct_id: str, *, role_name: str, policy: str) -> None:
        """An access entry for a CI role of this environment's account, with one cluster-wide access policy."""
        arn = f"arn:{self.partition}:iam::{self.account_id}:role/{role_name}"
        entry = EksAccessEntry(
            self, construct_id, cluster_name=self.eks.name, principal_arn=arn, type="STANDARD",
            tags=self._tags(f"{self.name}-{construct_id}", whole_cluster=True),
        )  # fmt: skip
        EksAccessPolicyAssociation(
            self, f"{construct_id}-policy", cluster_name=self.eks.name, principal_arn=entry.principal_arn,
            policy_arn=f"arn:{self.partition}:eks::aws:cluster-access-policy/{policy}",
            access_scope=EksAccessPolicyAssociationAccessScope(type="cluster"),
        )  # fmt: skip

    def _addon(
        self,
        addon: str,
        version: str,
        *,
        depends_on: Sequence[ITerraformDependable] = (),
        pod_identity: EksAddonPodIdentityAssociation | None = None,
        configuration: dict | None = None,
    ) -> EksAddon:
        return EksAddon(
            self,
            f"addon-{addon}",
            cluster_name=self.eks.name,
            addon_name=addon,
            addon_version=version,
            # The add-on owns its Kubernetes objects: overwrite hand edits on create and update,
            # keep nothing behind on delete.
            resolve_conflicts_on_create="OVERWRITE",
            resolve_conflicts_on_update="OVERWRITE",
            pod_identity_association=[pod_identity] if pod_identity else None,
            configuration_values=json.dumps(configuration) if configuration else None,
            tags=self._tags(f"{self.name}-{addon}", whole_cluster=True),
            depends_on=list(depends_on) or None,
        )
