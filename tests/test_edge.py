"""The edge in every environment: zone, certificate, ALB, listeners, target group, security groups, logs."""

from __future__ import annotations

import json
import re

import pytest
from cdktf import Testing as CdktfTesting  # renamed so pytest does not collect it
from conftest import build_stack, with_changes

from modules.stacks import PlatformStack

DOCUMENT_IDS = {  # env: (zone DNS-x01, certificate DNS-x02, load balancer ALB-x01), as the document draws them
    "dev": ("DNS-101", "DNS-102", "ALB-101"),
    "qa": ("DNS-201", "DNS-202", "ALB-201"),
    "prod": ("DNS-301", "DNS-302", "ALB-301"),
}
DOMAINS = {"dev": "mgenialdev.olhai.app.br", "qa": "mgenialqa.olhai.app.br", "prod": "mgenial.olhai.app.br"}


def ref(resource: dict, resource_type: str) -> str:
    """The Terraform address prefix of a resource, to check what another one points at."""
    return f"${{{resource_type}.{resource['//']['metadata']['uniqueId']}."


def test_zone_is_the_environment_domain(platform_stack, env):
    zone = platform_stack.only("aws_route53_zone")
    assert zone["name"] == DOMAINS[env]
    assert zone["force_destroy"] is False
    assert zone["tags"]["Component"] == f"{env}/{DOCUMENT_IDS[env][0]}"
    outputs = platform_stack.json["output"]
    assert outputs["zone_name_servers"]["value"] == f"{ref(zone, 'aws_route53_zone')}name_servers}}"


def test_certificate_is_dns_validated_in_the_zone(platform_stack, env):
    assert CdktfTesting.to_have_resource_with_properties(
        platform_stack.text,
        "aws_acm_certificate",
        {"domain_name": DOMAINS[env], "validation_method": "DNS", "lifecycle": {"create_before_destroy": True}},
    )
    cert = platform_stack.only("aws_acm_certificate")
    assert cert["tags"]["Component"] == f"{env}/{DOCUMENT_IDS[env][1]}"
    assert "subject_alternative_names" not in cert
    zone = platform_stack.only("aws_route53_zone")
    records = platform_stack.by_path("aws_route53_record", "dns/validation")
    cert_id = cert["//"]["metadata"]["uniqueId"]
    # one record per certificate name, keyed by the name (known at plan time)
    assert records["for_each"] == (
        f"${{{{ for key, val in tolist(aws_acm_certificate.{cert_id}.domain_validation_options): "
        "val.domain_name => val }}"
    )
    assert records["zone_id"] == f"{ref(zone, 'aws_route53_zone')}zone_id}}"
    assert (records["name"], records["type"], records["records"]) == (
        "${each.value.resource_record_name}",
        "${each.value.resource_record_type}",
        ["${each.value.resource_record_value}"],
    )
    validation = platform_stack.only("aws_acm_certificate_validation")
    assert validation["certificate_arn"] == f"{ref(cert, 'aws_acm_certificate')}arn}}"
    records_id = records["//"]["metadata"]["uniqueId"]
    assert validation["validation_record_fqdns"] == f"${{[ for key, val in aws_route53_record.{records_id}: val.fqdn]}}"
    # the HTTPS listener takes the ARN from the validation, so it waits for an issued certificate
    https = platform_stack.by_path("aws_lb_listener", "load-balancer/https")
    assert https["certificate_arn"] == f"{ref(validation, 'aws_acm_certificate_validation')}certificate_arn}}"


def test_alb_is_public_hardened_and_logged(platform_stack, settings, env):
    lb = settings[env].load_balancer
    alb = platform_stack.only("aws_lb")
    assert alb["load_balancer_type"] == "application" and alb["internal"] is False
    assert sorted(alb["subnets"]) == sorted(platform_stack.json["output"]["public_subnet_ids"]["value"])
    assert alb["drop_invalid_header_fields"] is True
    assert alb["desync_mitigation_mode"] == lb.desync_mitigation_mode != "monitor"
    assert alb["idle_timeout"] == lb.idle_timeout_seconds
    assert alb["enable_deletion_protection"] is True  # every shipped file (CKV_AWS_150 is not accepted)
    assert alb["access_logs"]["enabled"] is True
    bucket = platform_stack.by_path("aws_s3_bucket", "load-balancer/logs")
    assert alb["access_logs"]["bucket"] == f"{ref(bucket, 'aws_s3_bucket')}id}}"
    assert alb["tags"]["Component"] == f"{env}/{DOCUMENT_IDS[env][2]}"
    assert platform_stack.json["output"]["alb_dns_name"]["value"] == f"{ref(alb, 'aws_lb')}dns_name}}"


def test_listeners_https_with_tls12_policy_and_http_redirect(platform_stack, env):
    listeners = {res["port"]: res for res in platform_stack.resources("aws_lb_listener").values()}
    assert sorted(listeners) == [80, 443]
    https, http = listeners[443], listeners[80]
    assert https["protocol"] == "HTTPS"
    assert https["ssl_policy"] == "ELBSecurityPolicy-TLS13-1-2-2021-06"
    target_group = platform_stack.only("aws_lb_target_group")
    assert https["default_action"] == [
        {"type": "forward", "target_group_arn": f"{ref(target_group, 'aws_lb_target_group')}arn}}"}
    ]
    assert http["protocol"] == "HTTP"
    assert http["default_action"] == [
        {"type": "redirect", "redirect": {"port": "443", "protocol": "HTTPS", "status_code": "HTTP_301"}}
    ]


def test_target_group_reaches_twenty_pods_on_3000_with_healthz(platform_stack, env):
    assert CdktfTesting.to_have_resource_with_properties(
        platform_stack.text,
        "aws_lb_target_group",
        {
            "target_type": "ip",
            "port": 3000,
            "protocol": "HTTP",
            "health_check": {
                "enabled": True, "path": "/healthz", "port": "traffic-port", "protocol": "HTTP", "matcher": "200"
            },
        },
    )
    target_group = platform_stack.only("aws_lb_target_group")
    assert target_group["name"] == f"twentycrm-{env}-server"
    assert target_group["vpc_id"].startswith("${aws_vpc.")
    assert "aws_lb_target_group_attachment" not in platform_stack.json["resource"], "the controller registers pods"
    output = platform_stack.json["output"]["server_target_group_arn"]["value"]
    assert output == f"{ref(target_group, 'aws_lb_target_group')}arn}}"


def test_alias_record_points_the_domain_at_the_alb(platform_stack, env):
    alb = platform_stack.only("aws_lb")
    zone = platform_stack.only("aws_route53_zone")
    aliases = [r for r in platform_stack.resources("aws_route53_record").values() if "alias" in r]
    assert len(aliases) == 1  # IPv4-only VPC: an A record, no AAAA
    alias = aliases[0]
    assert (alias["name"], alias["type"]) == (DOMAINS[env], "A")
    assert alias["zone_id"] == f"{ref(zone, 'aws_route53_zone')}zone_id}}"
    assert alias["alias"] == {
        "name": f"{ref(alb, 'aws_lb')}dns_name}}",
        "zone_id": f"{ref(alb, 'aws_lb')}zone_id}}",
        "evaluate_target_health": True,
    }


def _rules(stack, kind: str) -> list[dict]:
    return list(stack.resources(f"aws_vpc_security_group_{kind}_rule").values())


def test_security_groups_allow_exactly_internet_to_alb_to_pods(platform_stack, env):
    alb_sg = ref(platform_stack.by_path("aws_security_group", "load-balancer/sg"), "aws_security_group") + "id}"
    node_sg = ref(platform_stack.by_path("aws_security_group", "node-security-group/sg"), "aws_security_group") + "id}"
    assert platform_stack.only("aws_lb")["security_groups"] == [alb_sg]

    # from the internet: only the ALB, only 80 and 443, only TCP
    from_internet = [r for r in _rules(platform_stack, "ingress") if "cidr_ipv4" in r or "cidr_ipv6" in r]
    ports = sorted(
        (r["security_group_id"], r["cidr_ipv4"], r["ip_protocol"], r["from_port"], r["to_port"]) for r in from_internet
    )
    assert ports == [
        (alb_sg, "0.0.0.0/0", "tcp", 80, 80),
        (alb_sg, "0.0.0.0/0", "tcp", 443, 443),
    ]
    # into the ALB: nothing else at all
    assert len([r for r in _rules(platform_stack, "ingress") if r["security_group_id"] == alb_sg]) == 2
    # out of the ALB: only to the nodes, only on Twenty's port
    alb_egress = [r for r in _rules(platform_stack, "egress") if r["security_group_id"] == alb_sg]
    out = [(r["referenced_security_group_id"], r["ip_protocol"], r["from_port"], r["to_port"]) for r in alb_egress]
    assert out == [
        (node_sg, "tcp", 3000, 3000)
    ]
    # into the nodes from the ALB: only Twenty's port
    nodes_from_alb = [r for r in _rules(platform_stack, "ingress") if r.get("referenced_security_group_id") == alb_sg]
    assert [(r["security_group_id"], r["ip_protocol"], r["from_port"], r["to_port"]) for r in nodes_from_alb] == [
        (node_sg, "tcp", 3000, 3000)
    ]
    for rule in _rules(platform_stack, "ingress") + _rules(platform_stack, "egress"):
        assert rule["description"]


def test_log_bucket_is_private_sse_s3_expiring_and_writable_by_elb(platform_stack, settings, env):
    lb = settings[env].load_balancer
    bucket = platform_stack.by_path("aws_s3_bucket", "load-balancer/logs")
    assert bucket["bucket"] == f"olhai-twentycrm-{env}-alb-logs"
    assert bucket["force_destroy"] is (not lb.deletion_protection) is False  # on in every shipped file
    encryption = platform_stack.by_path(
        "aws_s3_bucket_server_side_encryption_configuration", "load-balancer/logs-encryption"
    )
    # ALB log delivery supports SSE-S3 only; a KMS default would make delivery fail
    assert encryption["rule"][0]["apply_server_side_encryption_by_default"] == {"sse_algorithm": "AES256"}
    block = platform_stack.by_path("aws_s3_bucket_public_access_block", "load-balancer/logs-public-access")
    flags = ("block_public_acls", "block_public_policy", "ignore_public_acls", "restrict_public_buckets")
    assert all(block[k] is True for k in flags)
    lifecycle = platform_stack.by_path("aws_s3_bucket_lifecycle_configuration", "load-balancer/logs-lifecycle")
    assert lifecycle["rule"][0]["expiration"] == [{"days": lb.access_log_retention_days}]
    policy = json.loads(platform_stack.by_path("aws_s3_bucket_policy", "load-balancer/logs-policy")["policy"])
    write = next(s for s in policy["Statement"] if s["Sid"] == "ElbWritesAccessLogs")
    # sa-east-1 predates August 2022, so the regional ELB account writes the logs
    elb_account = r"arn:\$\{data\.aws_partition\.[\w-]+\.partition\}:iam::507241528517:root"
    assert re.fullmatch(elb_account, write["Principal"]["AWS"])
    assert write["Action"] == "s3:PutObject"
    identities = platform_stack.json["data"]["aws_caller_identity"].items()
    account = next(k for k, v in identities if "/load-balancer/" in v["//"]["metadata"]["path"])
    bucket_arn = f"{ref(bucket, 'aws_s3_bucket')}arn}}"
    assert write["Resource"] == f"{bucket_arn}/alb/AWSLogs/${{data.aws_caller_identity.{account}.account_id}}/*"
    assert any(s["Sid"] == "DenyInsecureTransport" and s["Effect"] == "Deny" for s in policy["Statement"])


EDGE_TYPES = (
    "aws_route53_zone", "aws_acm_certificate", "aws_lb", "aws_lb_listener", "aws_lb_target_group",
    "aws_s3_bucket", "aws_security_group", "aws_vpc_security_group_ingress_rule", "aws_vpc_security_group_egress_rule",
)  # fmt: skip


def test_every_edge_resource_carries_its_document_id(platform_stack, env):
    zone_id, cert_id, alb_id = DOCUMENT_IDS[env]
    seen = set()
    for kind in EDGE_TYPES:
        for res in platform_stack.resources(kind).values():
            path = res["//"]["metadata"]["path"]
            if "/dns/" in path or "/load-balancer/" in path:
                assert res["tags"]["Component"] in {f"{env}/{zone_id}", f"{env}/{cert_id}", f"{env}/{alb_id}"}, path
                seen.add(res["tags"]["Component"])
    assert seen == {f"{env}/{zone_id}", f"{env}/{cert_id}", f"{env}/{alb_id}"}


@pytest.fixture(scope="module")
def existing_zone_stack(settings):
    """dev writing into the existing parent zone, with www on the certificate too, and the ALB's deletion
    protection lifted as the teardown runbook does (docs/implementation-guide.md, "Tear down an environment", step 2)."""
    changed = with_changes(
        settings["dev"],
        dns={"existing_zone": "olhai.app.br", "extra_certificate_names": ["www.mgenialdev.olhai.app.br"],
             "dnssec": False, "query_logging": False},  # refused on a zone that is not ours
        load_balancer={"deletion_protection": False},
    )
    return build_stack(PlatformStack, changed)


def test_an_existing_zone_is_looked_up_not_created(existing_zone_stack):
    stack = existing_zone_stack
    assert "aws_route53_zone" not in stack.json["resource"]
    lookup = stack.json["data"]["aws_route53_zone"]
    assert [(z["name"], z["private_zone"]) for z in lookup.values()] == [("olhai.app.br", False)]
    zone_ref = f"${{data.aws_route53_zone.{next(iter(lookup))}.zone_id}}"
    assert all(r["zone_id"] == zone_ref for r in stack.resources("aws_route53_record").values())
    assert stack.json["output"]["zone_name_servers"]["value"].startswith("${data.aws_route53_zone.")


def test_extra_certificate_names_are_on_the_certificate_and_aliased(existing_zone_stack):
    stack = existing_zone_stack
    cert = stack.only("aws_acm_certificate")
    assert cert["domain_name"] == "mgenialdev.olhai.app.br"
    assert cert["subject_alternative_names"] == ["www.mgenialdev.olhai.app.br"]
    aliases = sorted(r["name"] for r in stack.resources("aws_route53_record").values() if "alias" in r)
    assert aliases == ["mgenialdev.olhai.app.br", "www.mgenialdev.olhai.app.br"]


def test_lifting_the_deletion_protection_lets_a_destroy_remove_the_alb_and_its_logs(existing_zone_stack):
    """The teardown step: ELB refuses DeleteLoadBalancer while the attribute is on, and a bucket holding objects
    is deleted only with force_destroy."""
    stack = existing_zone_stack
    assert stack.only("aws_lb")["enable_deletion_protection"] is False
    [logs] = [b for b in stack.resources("aws_s3_bucket").values() if b["bucket"] == "olhai-twentycrm-dev-alb-logs"]
    assert logs["force_destroy"] is True


# --- security groups that can be replaced ------------------------------------------------------


def unreplaceable_groups(stack_json: dict) -> list[str]:
    """Security groups with a fixed ``name`` and ``create_before_destroy``: their replacement would be
    created while the old group still holds the name, and EC2 refuses it (InvalidGroup.Duplicate)."""
    return [
        group["//"]["metadata"]["path"]
        for group in stack_json.get("resource", {}).get("aws_security_group", {}).values()
        if "name" in group and group.get("lifecycle", {}).get("create_before_destroy")
    ]


def test_every_security_group_can_be_replaced(synthesized):
    seen = 0
    for name in synthesized.names:
        stack = synthesized.stack(name).json
        groups = stack.get("resource", {}).get("aws_security_group", {}).values()
        seen += len(groups)
        assert not unreplaceable_groups(stack), f"{name}: use name_prefix, not name"
        assert all(g.get("name_prefix", "").endswith("-") for g in groups), name
    assert seen >= 3 * 4  # nodes, control plane, ALB and database in every environment (and the CI runner)


def test_the_replaceable_group_gate_catches_a_fixed_name(platform_stack):
    bad = json.loads(json.dumps(platform_stack.json))
    group = next(iter(bad["resource"]["aws_security_group"].values()))
    group["name"] = group.pop("name_prefix").rstrip("-")
    assert unreplaceable_groups(bad) == [group["//"]["metadata"]["path"]]
