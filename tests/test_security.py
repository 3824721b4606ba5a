"""The security gate: checkov over every synthesized stack, with accepted findings in one file."""

from __future__ import annotations

import re
import sys

import pytest
from conftest import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
import security_scan  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def checkov():
    if not security_scan.checkov_binary():
        pytest.skip("checkov is not installed: run ./scripts/test, which installs it into tools/checkov/.venv")


@pytest.fixture(scope="module")
def findings(checkov, synthesized):
    return security_scan.run_checkov(synthesized.outdir)


def test_checkov_scans_every_stack(findings, synthesized):
    """Guard against a silent no-op scan (the plain 'terraform' framework finds nothing in cdktf JSON)."""
    assert {f.stack for f in findings} == set(synthesized.names)


def test_no_finding_is_left_and_no_excuse_is_stale(findings):
    """The Terraform findings; the charts' (framework: kubernetes) are gated in test_charts.py."""
    entries = [e for e in security_scan.load_allowlist() if e.get("framework", "terraform_json") == "terraform_json"]
    left, unused = security_scan.gate(findings, entries)
    assert not left, "new checkov failures:\n" + "\n".join(map(str, left))
    assert not unused, f"allowlist entries that match nothing (remove them): {unused}"


def test_every_accepted_finding_has_a_reason():
    for entry in security_scan.load_allowlist():
        assert len(entry["reason"].split()) >= 5, f"{entry['check']}: say why, in a sentence"


def test_the_gate_fails_on_a_known_bad_stack(checkov, tmp_path):
    """A public, unencrypted bucket and SSH open to the world must fail the gate."""
    from cdktf import App, TerraformStack
    from cdktf_cdktf_provider_aws.provider import AwsProvider
    from cdktf_cdktf_provider_aws.s3_bucket import S3Bucket
    from cdktf_cdktf_provider_aws.security_group import SecurityGroup
    from cdktf_cdktf_provider_aws.vpc_security_group_ingress_rule import VpcSecurityGroupIngressRule

    app = App(outdir=str(tmp_path))
    stack = TerraformStack(app, "twentycrm-bad-platform")
    AwsProvider(stack, "aws", region="sa-east-1")
    S3Bucket(stack, "bucket", bucket="bad-example-bucket")
    group = SecurityGroup(stack, "nodes", description="nodes")
    VpcSecurityGroupIngressRule(  # written the way our constructs write rules
        stack, "ssh", security_group_id=group.id, cidr_ipv4="0.0.0.0/0", ip_protocol="tcp", from_port=22, to_port=22
    )
    app.synth()
    findings = security_scan.run_checkov(tmp_path)
    left, _ = security_scan.gate(findings, security_scan.load_allowlist())
    checks = {f.check for f in left}
    assert {"CKV_AWS_24", "CKV2_AWS_6", "CKV_AWS_145"} <= checks, checks  # SSH open; bucket public, not KMS
    assert security_scan.main(["security_scan.py", str(tmp_path)]) == 1


def test_an_allowlist_entry_must_be_scoped_to_match(findings):
    """An entry for the right check but another resource accepts nothing, and is reported stale."""
    entry = {"check": "CKV_AWS_260", "resources": ["no-such-construct_*"], "reason": "x"}
    left, unused = security_scan.gate(findings, [entry])
    assert unused == [entry]
    assert any(f.check == "CKV_AWS_260" for f in left)


# --- the allowlist holds only limits of the platform (issue 14) -------------------------------------------------

# Distinct check IDs the allowlist may hold: each one a fact of AWS, Kubernetes, Twenty or Redis, with its source.
MAX_DISTINCT_CHECKS = 9
# A source: a URL, or a file of this repository or of an upstream one (packages/twenty-server/...).
SOURCE = re.compile(r"https://\S+|\b[\w.-]+(?:/[\w.-]+)*/(?:[\w.-]+\.(?:ts|py|md|sh|yaml|json|toml)|Dockerfile)\b")


def allowlist_problems(entries: list[dict]) -> list[str]:
    """Why an allowlist is not one of platform limits: too many distinct checks, a plan instead of a fact, or a
    reason that names no source."""
    kept = entries
    problems = []
    checks = sorted({e["check"] for e in kept})
    if len(checks) > MAX_DISTINCT_CHECKS:
        problems.append(f"{len(checks)} distinct checks, at most {MAX_DISTINCT_CHECKS}: {checks}")
    for e in kept:
        if re.search(r"follow-up", e["reason"], re.IGNORECASE):
            problems.append(f"{e['check']} {e['resources']}: a follow-up is a plan, not a limit of the platform")
        if not SOURCE.search(e["reason"]):
            problems.append(f"{e['check']} {e['resources']}: the reason names no source (a URL or a file path)")
    return problems


def test_the_allowlist_holds_only_platform_limits_with_their_sources():
    entries = security_scan.load_allowlist()
    assert not allowlist_problems(entries)


def test_the_allowlist_gate_fails_on_a_bad_allowlist():
    good = security_scan.load_allowlist()
    follow_up = {"check": "CKV_AWS_150", "resources": ["load-balancer_alb_*"], "reason": "Follow-up: turn it on later."}
    unsourced = {"check": "CKV_AWS_338", "resources": ["network_flow-logs_*"], "reason": "90 days is cheaper."}
    problems = allowlist_problems([*good, follow_up, unsourced])
    assert any("CKV_AWS_150" in p and "follow-up" in p for p in problems), problems
    assert any("CKV_AWS_338" in p and "no source" in p for p in problems), problems
    distinct = len({e["check"] for e in good}) + 2
    assert any(f"{distinct} distinct checks, at most {MAX_DISTINCT_CHECKS}" in p for p in problems), problems
