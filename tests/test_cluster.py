"""The EKS cluster, its node groups, add-ons and security groups in every environment, and the
messages for bad cluster settings."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from cdktf import Testing as CdktfTesting  # renamed so pytest does not collect it
from conftest import build_stack, copy_envs, edit, problems_for, with_changes

from modules.settings import KUBERNETES_VERSIONS
from modules.stacks import PlatformStack

LOG_TYPES = ["api", "audit", "authenticator", "controllerManager", "scheduler"]
ADMIN_A = "arn:aws:iam::111122223333:role/aws-reserved/sso.amazonaws.com/sa-east-1/AWSReservedSSO_Admin_0123456789abcdef"
ADMIN_B = "arn:aws:iam::111122223333:role/platform-admin"

# The document's node groups: (instance type, count) per tier.
DOCUMENT_NODES = {
    "dev": {"frontend": ("t3.medium", 2), "backend": ("t3.large", 2)},
    "qa": {"frontend": ("t3.medium", 2), "backend": ("t3.large", 2)},
    "prod": {"frontend": ("t3.large", 3), "backend": ("t3.xlarge", 3)},
}


def ref(resource_type: str, res: dict, attribute: str = "id") -> str:
    """The Terraform reference to ``res``'s attribute as it appears in the synthesized JSON."""
    return f"${{{resource_type}.{res['//']['metadata']['uniqueId']}.{attribute}}}"


def policy_of(res: dict, key: str) -> dict:
    return json.loads(res[key])


# --- control plane ------------------------------------------------------------------------


def test_control_plane_is_private_encrypted_logged_and_api_authenticated(platform_stack, settings, env):
    c = settings[env].cluster
    assert CdktfTesting.to_have_resource_with_properties(
        platform_stack.text,
        "aws_eks_cluster",
        {
            "name": f"twentycrm-{env}",
            "version": c.kubernetes_version,
            "enabled_cluster_log_types": LOG_TYPES,
            "access_config": {"authentication_mode": "API", "bootstrap_cluster_creator_admin_permissions": False},
            "bootstrap_self_managed_addons": False,
            "vpc_config": {"endpoint_private_access": True, "endpoint_public_access": False},
        },
    )
    eks = platform_stack.only("aws_eks_cluster")
    private = [platform_stack.by_path("aws_subnet", f"network/private-{z}") for z in ("a", "b")]
    assert eks["vpc_config"]["subnet_ids"] == [ref("aws_subnet", s) for s in private]
    assert "public_access_cidrs" not in eks["vpc_config"], "a private-only endpoint must not list public CIDRs"
    assert eks["tags"]["Component"] == f"{env}/{c.control_plane_id}"

    key = platform_stack.by_path("aws_kms_key", "cluster/secrets-key/key")
    assert key["enable_key_rotation"] is True
    assert eks["encryption_config"] == {"resources": ["secrets"], "provider": {"key_arn": ref("aws_kms_key", key, "arn")}}


def test_control_plane_logs_go_to_an_encrypted_group_with_retention(platform_stack, settings, env):
    group = platform_stack.by_path("aws_cloudwatch_log_group", "cluster/logs")
    assert group["name"] == f"/aws/eks/twentycrm-{env}/cluster"
    assert group["retention_in_days"] == settings[env].cluster.log_retention_days
    assert group["kms_key_id"] == ref("aws_kms_key", platform_stack.by_path("aws_kms_key", "cluster/logs-key/key"), "arn")
    # created before the cluster, or EKS creates it without retention or key
    assert f"aws_cloudwatch_log_group.{group['//']['metadata']['uniqueId']}" in platform_stack.only("aws_eks_cluster")["depends_on"]


@pytest.mark.parametrize(("env", "days"), [("dev", 365), ("qa", 365), ("prod", 365)])
def test_log_retention_is_read_from_the_file(settings, env, days):
    assert settings[env].cluster.log_retention_days == days


def test_cluster_role_is_for_eks_only_and_may_use_its_key(platform_stack):
    role = platform_stack.by_path("aws_iam_role", "cluster/role")
    trust = policy_of(role, "assume_role_policy")["Statement"]
    assert [s["Principal"] for s in trust] == [{"Service": "eks.amazonaws.com"}]
    attached = platform_stack.by_path("aws_iam_role_policy_attachment", "cluster/role-cluster-policy")
    assert attached["policy_arn"].endswith(":iam::aws:policy/AmazonEKSClusterPolicy")
    key_policy = policy_of(platform_stack.by_path("aws_iam_role_policy", "cluster/role-secrets-key"), "policy")
    key = platform_stack.by_path("aws_kms_key", "cluster/secrets-key/key")
    assert key_policy["Statement"][0]["Resource"] == ref("aws_kms_key", key, "arn")
    assert "kms:*" not in key_policy["Statement"][0]["Action"]


def test_only_the_ci_roles_get_access_unless_admins_are_listed(platform_stack, settings, env):
    """The CI deploy role (it applies the apps stack from the in-VPC runner) gets cluster admin and the CI review role
    (main's plans before approval) view-only access, both in code; people come from cluster.admin_principal_arns,
    empty in the shipped files."""
    assert settings[env].cluster.admin_principal_arns == ()
    entries = {e["principal_arn"].rsplit("/", 1)[-1]: e
               for e in platform_stack.resources("aws_eks_access_entry").values()}  # fmt: skip
    assert set(entries) == {f"twentycrm-{env}-deploy", f"twentycrm-{env}-review"}
    assert {e["type"] for e in entries.values()} == {"STANDARD"}
    by_entry = {a["principal_arn"]: a for a in platform_stack.resources("aws_eks_access_policy_association").values()}
    assert len(by_entry) == 2

    def association(role: str) -> dict:
        return by_entry[f"${{aws_eks_access_entry.{entries[role]['//']['metadata']['uniqueId']}.principal_arn}}"]

    # CRDs, ClusterRoles, an APIService, webhooks and a StorageClass: cluster-scoped, so cluster admin
    deploy = association(f"twentycrm-{env}-deploy")
    assert deploy["policy_arn"].endswith(":cluster-access-policy/AmazonEKSClusterAdminPolicy")
    # get/list/watch everything (the helm provider reads its release Secrets), no writes
    review = association(f"twentycrm-{env}-review")
    assert review["policy_arn"].endswith(":cluster-access-policy/AmazonEKSAdminViewPolicy")
    assert deploy["access_scope"] == review["access_scope"] == {"type": "cluster"}
    assert platform_stack.by_path("aws_eks_access_entry", "cluster/reviewer")["principal_arn"].endswith(
        f":role/twentycrm-{env}-review")


# --- node groups --------------------------------------------------------------------------


@pytest.mark.parametrize("tier", ["frontend", "backend"])
def test_node_groups_have_the_document_types_and_counts(platform_stack, settings, env, tier):
    instance_type, count = DOCUMENT_NODES[env][tier]
    sizes = getattr(settings[env].cluster, tier)
    group = platform_stack.by_path("aws_eks_node_group", f"{tier}-nodes/node-group")
    assert group["node_group_name"] == f"twentycrm-{env}-{tier}"
    assert group["instance_types"] == [instance_type]
    assert group["scaling_config"] == {"desired_size": count, "min_size": sizes.min_size, "max_size": sizes.max_size}
    assert sizes.min_size <= count <= sizes.max_size
    assert group["ami_type"] == "AL2023_x86_64_STANDARD"
    assert group["capacity_type"] == "ON_DEMAND"
    assert group["labels"] == {"twentycrm/tier": tier}
    assert group["update_config"] == {"max_unavailable": 1}
    assert "remote_access" not in group and "disk_size" not in group
    private = [platform_stack.by_path("aws_subnet", f"network/private-{z}") for z in ("a", "b")]
    assert group["subnet_ids"] == [ref("aws_subnet", s) for s in private]
    template = platform_stack.by_path("aws_launch_template", f"{tier}-nodes/launch-template")
    assert group["launch_template"] == {
        "id": ref("aws_launch_template", template),
        "version": ref("aws_launch_template", template, "latest_version"),
    }
    assert group["tags"]["Component"] == f"{env}/{settings[env].cluster.node_groups_id}"


@pytest.mark.parametrize("tier", ["frontend", "backend"])
def test_launch_templates_require_imdsv2_encrypt_disks_and_allow_no_ssh(platform_stack, env, tier):
    template = platform_stack.by_path("aws_launch_template", f"{tier}-nodes/launch-template")
    assert template["metadata_options"] == {
        "http_endpoint": "enabled",
        "http_tokens": "required",
        "http_put_response_hop_limit": 1,
        "instance_metadata_tags": "disabled",
    }
    assert template["block_device_mappings"] == [
        {
            "device_name": "/dev/xvda",
            "ebs": {"volume_size": 50, "volume_type": "gp3", "encrypted": "true", "delete_on_termination": "true"},
        }
    ]
    assert "key_name" not in template and "network_interfaces" not in template
    node_sg = platform_stack.by_path("aws_security_group", "node-security-group/sg")
    assert template["vpc_security_group_ids"] == [ref("aws_security_group", node_sg)]
    kinds = {spec["resource_type"]: spec["tags"] for spec in template["tag_specifications"]}
    assert kinds["instance"]["Component"] == kinds["volume"]["Component"] == template["tags"]["Component"]


def fence_tag_gaps(tagged: dict[str, dict[str, str]], env: str, project: str) -> list[str]:
    """What in ``tagged`` (what AWS creates → the tags it gets) lacks this environment's fence tags."""
    want = {"Environment": env, "Project": project}
    return [f"{what}: {key}={tags.get(key)!r}, not {value!r}"
            for what, tags in tagged.items() for key, value in want.items() if tags.get(key) != value]  # fmt: skip


def node_created_tags(platform: dict) -> dict[str, dict[str, str]]:
    """The tags of what AWS creates for the nodes: instances, root volumes and primary ENIs (from the launch
    templates' tag specifications), and the secondary ENIs the VPC CNI attaches (its ADDITIONAL_ENI_TAGS)."""
    tagged = {}
    for res in platform["resource"]["aws_launch_template"].values():
        for spec in res.get("tag_specifications", []):
            tagged[f"{res['name']} {spec['resource_type']}"] = spec["tags"]
    for res in platform["resource"]["aws_eks_addon"].values():
        if res["addon_name"] == "vpc-cni":
            env_vars = json.loads(res.get("configuration_values") or "{}").get("env", {})
            tagged["vpc-cni secondary network-interface"] = json.loads(env_vars.get("ADDITIONAL_ENI_TAGS", "{}"))
    return tagged


def test_what_aws_creates_for_the_nodes_carries_the_environment_fence_tags(platform_stack, settings, env):
    tagged = node_created_tags(platform_stack.json)
    assert sorted(tagged) == sorted([f"{settings[env].cluster.name}-{tier} {kind}" for tier in ("frontend", "backend")
                                     for kind in ("instance", "volume", "network-interface")]
                                    + ["vpc-cni secondary network-interface"])  # fmt: skip
    assert fence_tag_gaps(tagged, env, settings[env].project) == []


def test_the_vpc_cni_keeps_network_policy_and_tags_its_enis(platform_stack, settings, env):
    cni = platform_stack.by_path("aws_eks_addon", "cluster/addon-vpc-cni")
    # ADDITIONAL_ENI_TAGS is a string holding a JSON map (the add-on's configuration schema types it string).
    assert json.loads(cni["configuration_values"]) == {
        "enableNetworkPolicy": "true",
        "env": {"ADDITIONAL_ENI_TAGS": json.dumps({"Environment": env, "Project": settings[env].project})},
    }


def test_the_fence_tag_check_names_an_untagged_eni_and_a_foreign_volume(platform_stack, settings, env):
    platform = platform_stack.json
    for res in platform["resource"]["aws_eks_addon"].values():
        if res["addon_name"] == "vpc-cni":
            res["configuration_values"] = json.dumps({"enableNetworkPolicy": "true"})
    template = next(iter(platform["resource"]["aws_launch_template"].values()))
    volume = next(spec for spec in template["tag_specifications"] if spec["resource_type"] == "volume")
    volume["tags"] = {**volume["tags"], "Environment": "someone-else"}
    gaps = fence_tag_gaps(node_created_tags(platform), env, settings[env].project)
    assert gaps == [f"{template['name']} volume: Environment='someone-else', not '{env}'",
                    f"vpc-cni secondary network-interface: Environment=None, not '{env}'",
                    f"vpc-cni secondary network-interface: Project=None, not '{settings[env].project}'"]  # fmt: skip


def test_node_role_has_only_the_node_policies(platform_stack):
    role = platform_stack.by_path("aws_iam_role", "node-role/role")
    assert [s["Principal"] for s in policy_of(role, "assume_role_policy")["Statement"]] == [{"Service": "ec2.amazonaws.com"}]
    attached = sorted(
        a["policy_arn"].rsplit("/", 1)[1]
        for a in platform_stack.resources("aws_iam_role_policy_attachment").values()
        if a["role"] == ref("aws_iam_role", role, "name")
    )
    assert attached == ["AmazonEC2ContainerRegistryPullOnly", "AmazonEKSWorkerNodePolicy", "AmazonEKS_CNI_Policy"]


# --- add-ons and workload identity --------------------------------------------------------


def addons(stack) -> dict[str, dict]:
    return {a["addon_name"]: a for a in stack.resources("aws_eks_addon").values()}


def test_addons_are_pinned_for_the_kubernetes_version(platform_stack, settings, env):
    c = settings[env].cluster
    found = addons(platform_stack)
    assert {name: a["addon_version"] for name, a in found.items()} == KUBERNETES_VERSIONS[c.kubernetes_version]
    for addon in found.values():
        assert re.fullmatch(r"v\d+\.\d+\.\d+-eksbuild\.\d+", addon["addon_version"])
        assert addon["resolve_conflicts_on_update"] == "OVERWRITE"
        assert addon["tags"]["Component"] == f"{env}/{c.id}"


def test_network_addons_come_before_the_nodes_and_coredns_after(platform_stack):
    found = addons(platform_stack)
    groups = [platform_stack.by_path("aws_eks_node_group", f"{t}-nodes/node-group") for t in ("frontend", "backend")]
    group_refs = {f"aws_eks_node_group.{g['//']['metadata']['uniqueId']}" for g in groups}
    for name in ("vpc-cni", "kube-proxy", "eks-pod-identity-agent"):
        addon_ref = f"aws_eks_addon.{found[name]['//']['metadata']['uniqueId']}"
        assert "depends_on" not in found[name], f"{name} must not wait for nodes"
        assert all(addon_ref in g["depends_on"] for g in groups), f"nodes must wait for {name}"
    for name in ("coredns", "aws-ebs-csi-driver"):
        assert set(found[name]["depends_on"]) == group_refs, f"{name} must wait for both node groups"


def test_ebs_csi_driver_gets_its_role_through_pod_identity(platform_stack):
    ebs = addons(platform_stack)["aws-ebs-csi-driver"]
    role = platform_stack.by_path("aws_iam_role", "cluster/ebs-csi-role")
    assert ebs["pod_identity_association"] == [
        {"role_arn": ref("aws_iam_role", role, "arn"), "service_account": "ebs-csi-controller-sa"}
    ]
    trust = policy_of(role, "assume_role_policy")["Statement"][0]
    assert trust["Principal"] == {"Service": "pods.eks.amazonaws.com"}
    assert trust["Action"] == ["sts:AssumeRole", "sts:TagSession"]
    attached = platform_stack.by_path("aws_iam_role_policy_attachment", "cluster/ebs-csi-policy")
    assert attached["policy_arn"].endswith(":iam::aws:policy/service-role/AmazonEBSCSIDriverPolicy")
    assert platform_stack.resources("aws_iam_openid_connect_provider") == {}, "Pod Identity needs no OIDC provider"


# --- security groups ----------------------------------------------------------------------


def test_no_rule_opens_the_nodes_or_the_api_to_the_internet(platform_stack):
    for kind in ("aws_vpc_security_group_ingress_rule", "aws_vpc_security_group_egress_rule"):
        for rule in platform_stack.resources(kind).values():
            assert rule["description"], f"{kind} {rule['//']['metadata']['path']} has no description"
    for rule in platform_stack.resources("aws_vpc_security_group_ingress_rule").values():
        if "aws_security_group.load-balancer_" in rule["security_group_id"]:
            continue  # the ALB's own 80/443 from the internet: tests/test_edge.py checks exactly those
        assert rule.get("cidr_ipv4") != "0.0.0.0/0" and rule.get("cidr_ipv6") != "::/0", rule["//"]["metadata"]["path"]
    for sg in platform_stack.resources("aws_security_group").values():
        assert "ingress" not in sg, "rules are separate resources, each with a description"
    public = platform_stack.only("aws_eks_cluster")["vpc_config"].get("public_access_cidrs", [])
    assert "0.0.0.0/0" not in public


def test_control_plane_and_nodes_accept_only_each_other_on_the_needed_ports(platform_stack):
    cluster_sg = platform_stack.by_path("aws_security_group", "cluster/sg")
    node_sg = platform_stack.by_path("aws_security_group", "node-security-group/sg")
    cluster_id, node_id = ref("aws_security_group", cluster_sg), ref("aws_security_group", node_sg)
    assert platform_stack.only("aws_eks_cluster")["vpc_config"]["security_group_ids"] == [cluster_id]

    ingress = platform_stack.resources("aws_vpc_security_group_ingress_rule").values()
    runner_id = ref("aws_security_group", platform_stack.by_path("aws_security_group", "ci-runner/sg"))
    into_cluster = [r for r in ingress if r["security_group_id"] == cluster_id]
    assert sorted((r["referenced_security_group_id"], r["ip_protocol"], r["from_port"], r["to_port"])
                  for r in into_cluster) == sorted([(node_id, "tcp", 443, 443), (runner_id, "tcp", 443, 443)])
    from_cluster = sorted(r["from_port"] for r in ingress if r.get("referenced_security_group_id") == cluster_id)
    assert from_cluster == [443, 4443, 6443, 8443, 9443, 10250]
    for r in ingress:
        if r.get("referenced_security_group_id") == cluster_id:
            assert r["security_group_id"] == node_id and r["ip_protocol"] == "tcp" and r["from_port"] == r["to_port"]
    egress = [r for r in platform_stack.resources("aws_vpc_security_group_egress_rule").values() if r["security_group_id"] == cluster_id]
    assert sorted(r["from_port"] for r in egress) == from_cluster
    assert {r["referenced_security_group_id"] for r in egress} == {node_id}


# --- outputs ------------------------------------------------------------------------------


def test_the_apps_stack_gets_what_it_needs(platform_stack):
    outputs = platform_stack.json["output"]
    eks = f"aws_eks_cluster.{platform_stack.only('aws_eks_cluster')['//']['metadata']['uniqueId']}"
    assert outputs["cluster_name"]["value"] == f"${{{eks}.name}}"
    assert outputs["cluster_endpoint"]["value"] == f"${{{eks}.endpoint}}"
    assert outputs["cluster_certificate_authority_data"]["value"] == f"${{{eks}.certificate_authority[0].data}}"
    assert outputs["cluster_oidc_issuer_url"]["value"] == f"${{{eks}.identity[0].oidc[0].issuer}}"
    assert outputs["pod_identity_principal"]["value"] == "pods.eks.amazonaws.com"
    assert outputs["node_tier_label"]["value"] == "twentycrm/tier"
    for name in ("node_security_group_id", "cluster_security_group_id", "node_role_arn", "cluster_arn", "cluster_version"):
        assert outputs[name]["value"].startswith("${aws_"), name


# --- settings that change the cluster -----------------------------------------------------


@pytest.fixture(scope="module")
def varied(settings):
    """qa with public access, two admins and 1.36; and the same admins listed the other way round."""
    changed = {"public_access_cidrs": ("203.0.113.10/32", "198.51.100.0/24"), "kubernetes_version": "1.36"}
    a = build_stack(PlatformStack, with_changes(settings["qa"], cluster={**changed, "admin_principal_arns": (ADMIN_A, ADMIN_B)}))
    b = build_stack(PlatformStack, with_changes(settings["qa"], cluster={**changed, "admin_principal_arns": (ADMIN_B, ADMIN_A)}))
    return a, b


def test_public_access_only_from_the_listed_networks(varied):
    vpc = varied[0].only("aws_eks_cluster")["vpc_config"]
    assert vpc["endpoint_private_access"] is True and vpc["endpoint_public_access"] is True
    assert vpc["public_access_cidrs"] == ["203.0.113.10/32", "198.51.100.0/24"]


def test_admins_get_cluster_admin_through_access_entries(varied):
    stack = varied[0]
    entries = {e["principal_arn"]: e for e in stack.resources("aws_eks_access_entry").values()}
    deployer = next(arn for arn in entries if arn.endswith(":role/twentycrm-qa-deploy"))
    reviewer = next(arn for arn in entries if arn.endswith(":role/twentycrm-qa-review"))
    assert set(entries) == {ADMIN_A, ADMIN_B, deployer, reviewer}
    assert {e["type"] for e in entries.values()} == {"STANDARD"}
    policies = [p for p in stack.resources("aws_eks_access_policy_association").values()
                if not p["policy_arn"].endswith("/AmazonEKSAdminViewPolicy")]  # fmt: skip
    assert len(policies) == 3
    for p in policies:
        assert p["policy_arn"].endswith(":eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy")
        assert p["access_scope"] == {"type": "cluster"}


def test_reordering_admins_keeps_their_terraform_addresses(varied):
    a, b = varied
    assert a.resources("aws_eks_access_entry") == b.resources("aws_eks_access_entry")


def test_another_kubernetes_version_brings_its_own_addon_pins(varied):
    stack = varied[0]
    assert stack.only("aws_eks_cluster")["version"] == "1.36"
    assert {n: a["addon_version"] for n, a in addons(stack).items()} == KUBERNETES_VERSIONS["1.36"]
    assert addons(stack)["kube-proxy"]["addon_version"].startswith("v1.36.")


def test_addon_versions_can_be_overridden_one_by_one(settings):
    changed = with_changes(settings["dev"], cluster={"addon_versions": {"coredns": "v1.14.3-eksbuild.1"}})
    assert changed.cluster.addons() == {**KUBERNETES_VERSIONS["1.35"], "coredns": "v1.14.3-eksbuild.1"}


def test_every_known_version_pins_every_addon():
    for version, pins in KUBERNETES_VERSIONS.items():
        assert set(pins) == {
            "vpc-cni", "kube-proxy", "coredns", "eks-pod-identity-agent", "aws-ebs-csi-driver",
            "amazon-cloudwatch-observability",
        }, version
        assert pins["kube-proxy"].startswith(f"v{version}."), "kube-proxy follows the Kubernetes minor version"


# --- bad settings -------------------------------------------------------------------------


@pytest.fixture
def envs(tmp_path) -> Path:
    return copy_envs(tmp_path)


def problems_after(envs: Path, old: str, new: str) -> str:
    edit(envs / "prod.toml", old, new)
    return problems_for(envs)


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        pytest.param('kubernetes_version = "1.35"', 'kubernetes_version = "1.29"',
                     r"prod\.toml: cluster\.kubernetes_version: '1\.29' is not a Kubernetes version this project pins add-ons for; allowed: 1\.35, 1\.36",
                     id="unknown-kubernetes-version"),
        pytest.param('kubernetes_version = "1.35"', "kubernetes_version = 1.35",
                     r"prod\.toml: cluster\.kubernetes_version: Input should be a valid string", id="version-as-number"),
        pytest.param("max_size = 6", "max_size = 101",
                     r"prod\.toml: cluster\.frontend\.max_size: Input should be less than or equal to 100", id="count-too-large"),
        pytest.param("desired_size = 3", "desired_size = 7",
                     r"prod\.toml: cluster\.frontend: min_size \(3\) <= desired_size \(7\) <= max_size \(6\) must hold", id="desired-above-max"),
        pytest.param("max_unavailable = 1", "max_unavailable = 0",
                     r"prod\.toml: cluster\.frontend\.max_unavailable: Input should be greater than or equal to 1", id="max-unavailable-zero"),
        pytest.param("public_access_cidrs = []", 'public_access_cidrs = ["203.0.113.300/32"]',
                     r"prod\.toml: cluster\.public_access_cidrs\.0: '203\.0\.113\.300/32' is not an IPv4 network in CIDR form", id="invalid-public-cidr"),
        pytest.param("public_access_cidrs = []", 'public_access_cidrs = ["203.0.113.10/24"]',
                     r"prod\.toml: cluster\.public_access_cidrs\.0: .*has host bits set", id="public-cidr-host-bits"),
        pytest.param("public_access_cidrs = []", 'public_access_cidrs = ["203.0.113.10/32", "0.0.0.0/0"]',
                     r"prod\.toml: cluster\.public_access_cidrs\.1: '0\.0\.0\.0/0' opens the Kubernetes API to too much of the internet.*leave the list empty",
                     id="public-cidr-whole-internet"),
        pytest.param("public_access_cidrs = []", 'public_access_cidrs = ["203.0.113.10/32", "203.0.113.10/32"]',
                     r"prod\.toml: cluster: public_access_cidrs lists 203\.0\.113\.10/32 more than once", id="public-cidr-twice"),
        pytest.param("admin_principal_arns = []", 'admin_principal_arns = ["arn:aws:sts::111122223333:assumed-role/Admin/me"]',
                     r"prod\.toml: cluster\.admin_principal_arns\.0: .* is not an IAM role or user ARN", id="sts-session-arn"),
        pytest.param("\nlog_retention_days = 365", "\nlog_retention_days = 100",
                     r"prod\.toml: cluster\.log_retention_days: allowed values are 1, 3, 5", id="bad-log-retention"),
        pytest.param("\nlog_retention_days = 365", '\nlog_retention_days = 365\naddon_versions = { coredns = "1.14" }',
                     r"prod\.toml: cluster\.addon_versions\.coredns: '1\.14' is not an EKS add-on version such as 'v1\.14\.2-eksbuild\.4'",
                     id="bad-addon-version"),
        pytest.param("\nlog_retention_days = 365", '\nlog_retention_days = 365\naddon_versions = { metrics-server = "v0.8.0-eksbuild.1" }',
                     r"prod\.toml: cluster\.addon_versions\.metrics-server\.\[key\]: allowed values are 'vpc-cni', 'kube-proxy'",
                     id="unknown-addon"),
    ],
)  # fmt: skip
def test_a_bad_cluster_setting_names_file_field_and_what_is_allowed(envs, old, new, expected):
    message = problems_after(envs, old, new)
    assert re.search(expected, message), message
