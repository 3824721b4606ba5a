"""The network construct in every environment: the document's VPC, subnets and gateways."""

from __future__ import annotations

import json

import pytest
from cdktf import Testing as CdktfTesting  # renamed so pytest does not collect it
from conftest import build_stack, with_changes

from modules.stacks import PlatformStack


def test_vpc_has_the_document_range_and_dns(platform_stack, settings, env):
    net = settings[env].network
    assert CdktfTesting.to_have_resource_with_properties(
        platform_stack.text,
        "aws_vpc",
        {"cidr_block": net.cidr, "enable_dns_support": True, "enable_dns_hostnames": True},
    )
    assert platform_stack.only("aws_vpc")["tags"]["Component"] == f"{env}/{net.vpc_id}"


DOCUMENT_SUBNETS = {
    # env: [(component ID, name, tier, zone, cidr)] exactly as the document draws them
    "dev": [("NET-201", "public", "a", "10.0.1.0/24"), ("NET-202", "public", "b", "10.0.2.0/24"),
            ("NET-203", "private", "a", "10.0.3.0/24"), ("NET-204", "private", "b", "10.0.4.0/24")],
    "qa": [("NET-301", "public", "a", "10.1.1.0/24"), ("NET-302", "public", "b", "10.1.2.0/24"),
           ("NET-303", "private", "a", "10.1.3.0/24"), ("NET-304", "private", "b", "10.1.4.0/24")],
    "prod": [("NET-401", "public", "a", "10.2.1.0/24"), ("NET-402", "public", "b", "10.2.2.0/24"),
             ("NET-403", "private", "a", "10.2.3.0/24"), ("NET-404", "private", "b", "10.2.4.0/24")],
}  # fmt: skip


def test_subnets_are_the_document_ones_with_eks_tags(platform_stack, env):
    subnets = platform_stack.resources("aws_subnet")
    assert len(subnets) == 4
    for component_id, tier, zone, cidr in DOCUMENT_SUBNETS[env]:
        subnet = platform_stack.by_path("aws_subnet", f"network/{tier}-{zone}")
        assert subnet["cidr_block"] == cidr
        assert subnet["availability_zone"] == f"sa-east-1{zone}"
        assert subnet["map_public_ip_on_launch"] is False
        tags = subnet["tags"]
        assert tags["Component"] == f"{env}/{component_id}"
        assert tags[f"kubernetes.io/cluster/twentycrm-{env}"] == "shared"
        role = "kubernetes.io/role/elb" if tier == "public" else "kubernetes.io/role/internal-elb"
        assert tags[role] == "1"


def test_component_tags_are_unique_across_environments(synthesized):
    """The document reuses NET-201, NET-301 and NET-302; the environment prefix keeps tags apart."""
    seen = {}
    for env in ("dev", "qa", "prod"):
        stack = synthesized.stack(f"twentycrm-{env}-platform")
        for kind in ("aws_subnet", "aws_internet_gateway", "aws_vpc"):
            for res in stack.resources(kind).values():
                component = res["tags"]["Component"]
                assert component.startswith(f"{env}/")
                assert component not in seen, f"{component} tags both {seen.get(component)} and {kind}"
                seen[component] = kind
    assert seen["dev/NET-201"] == "aws_subnet" and seen["qa/NET-201"] == "aws_internet_gateway"


def test_public_subnets_route_to_the_internet_gateway(platform_stack, settings, env):
    igw = platform_stack.only("aws_internet_gateway")
    assert igw["tags"]["Component"] == f"{env}/{settings[env].network.internet_gateway_id}"
    route = platform_stack.by_path("aws_route", "network/public-default")
    assert route["destination_cidr_block"] == "0.0.0.0/0"
    assert route["gateway_id"].startswith("${aws_internet_gateway.")


@pytest.mark.parametrize(("env", "nat_count"), [("dev", 1), ("qa", 1), ("prod", 2)])
def test_nat_gateways_one_or_one_per_zone(synthesized, env, nat_count):
    stack = synthesized.stack(f"twentycrm-{env}-platform")
    nats = stack.resources("aws_nat_gateway")
    assert len(nats) == nat_count and len(stack.resources("aws_eip")) == nat_count
    for nat in nats.values():
        assert nat["subnet_id"].startswith("${aws_subnet.network_public-")
        assert nat["allocation_id"].startswith("${aws_eip.")
    # each private zone's default route goes through its own zone's NAT when there is one
    for zone in ("a", "b"):
        route = stack.by_path("aws_route", f"network/private-{zone}-default")
        expected_zone = zone if nat_count == 2 else "a"
        assert route["nat_gateway_id"].startswith(f"${{aws_nat_gateway.network_nat-{expected_zone}_")


def test_default_security_group_is_stripped(platform_stack):
    sg = platform_stack.only("aws_default_security_group")
    assert "ingress" not in sg and "egress" not in sg


def test_flow_logs_go_to_an_encrypted_log_group_with_retention(platform_stack, settings, env):
    flow = platform_stack.only("aws_flow_log")
    assert flow["traffic_type"] == "ALL" and flow["log_destination_type"] == "cloud-watch-logs"
    group = platform_stack.by_path("aws_cloudwatch_log_group", "network/flow-logs")
    assert group["retention_in_days"] == settings[env].network.flow_log_retention_days
    assert group["kms_key_id"].startswith("${aws_kms_key.")
    key = platform_stack.by_path("aws_kms_key", "network/flow-logs-key/key")
    assert key["enable_key_rotation"] is True
    logs = [s for s in json.loads(key["policy"])["Statement"] if s["Sid"] == "CloudWatchLogsUsesKey"]
    assert logs[0]["Principal"] == {"Service": "logs.sa-east-1.amazonaws.com"}
    role_policy = json.loads(platform_stack.by_path("aws_iam_role_policy", "network/flow-logs-policy")["policy"])
    assert role_policy["Statement"][0]["Action"] == ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"]


def test_nat_mode_is_a_setting(settings):
    """dev with one NAT per zone: two NAT gateways, each private zone on its own."""
    per_zone = with_changes(settings["dev"], network={"nat_gateways": "per_zone"})
    stack = build_stack(PlatformStack, per_zone)
    assert len(stack.resources("aws_nat_gateway")) == 2


def test_node_security_group_allows_nodes_to_each_other_and_out(platform_stack, env):
    sg = platform_stack.by_path("aws_security_group", "node-security-group/sg")
    assert sg["vpc_id"].startswith("${aws_vpc.") and sg["tags"]["kubernetes.io/cluster/twentycrm-" + env] == "owned"
    ingress = platform_stack.resources("aws_vpc_security_group_ingress_rule")
    node_to_node = [r for r in ingress.values() if r["//"]["metadata"]["path"].endswith("node-security-group/node-to-node")]
    assert node_to_node and node_to_node[0]["referenced_security_group_id"] == node_to_node[0]["security_group_id"]
    for rule in ingress.values():
        assert rule.get("cidr_ipv4") != "0.0.0.0/0", "no ingress from the internet to the nodes"
        assert rule["description"]
