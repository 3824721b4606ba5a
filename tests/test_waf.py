"""The WAF in front of every environment's ALB (modules/waf.py): synthesized rules, logs, alarm, settings errors, and
the rules read as WAF reads them.

``WafEvaluator`` walks the synthesized rule blocks the way AWS WAF evaluates a web ACL (AWS WAF Developer Guide, "How
AWS WAF processes a web ACL", "Rule actions", "Labels"): rules by priority; a managed group's matching rules add their
labels, a counted one lets the request go on, a blocking one ends it; custom rules evaluate their statement tree
(and / or / not / label match / byte match on the URI path / rate-based) against the request and its labels. AWS's
managed rules are not public, so their matching is modelled only for the inputs the tests send (``MANAGED_MATCHES``,
each with AWS's documented description); everything else in the evaluator reads the synthesized JSON. No offline WAF
emulator exists (moto stores a web ACL's rules without evaluating them), hence this small one; an unknown statement
type raises, so a new kind of rule cannot pass unread.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import build_stack, copy_envs, edit, problems_for, with_changes

from modules.stacks import PlatformStack
from modules.waf import (
    LOG_GROUP_PREFIX,
    REDACTED_HEADERS,
    TWENTY_API_PATHS,
    WCU_BUDGET,
    body_rule_label,
    web_acl_capacity,
)

BODY_INSPECTION_LIMIT = 8 * 1024  # ALB forwards the first 8 KB of a body to WAF (web-acl-setting-body-inspection-limit)


@dataclass
class Request:
    method: str
    path: str
    body: bytes = b""
    over_rate: bool = False  # the client IP is over the rate-based rule's limit
    anonymizer: bool = False  # the client IP is a Tor exit / anonymizing proxy
    hosting_provider: bool = False  # the client IP is a cloud provider's (an integration calling the API)


# What each AWS managed rule matches, modelled for the tests' inputs only (AWS WAF Developer Guide, rule group lists):
# SizeRestrictions_BODY "request body is over 8 KB"; CrossSiteScripting_BODY common XSS patterns in the body;
# Log4JRCE_BODY a ${jndi: lookup in the body; SQLi_BODY SQL injection patterns in the body; AnonymousIPList and
# HostingProviderIPList by source address. WAF sees only the first 8 KB of the body.
MANAGED_MATCHES = {
    "AWSManagedRulesCommonRuleSet": {
        "SizeRestrictions_BODY": lambda r: len(r.body) > BODY_INSPECTION_LIMIT,
        "CrossSiteScripting_BODY": lambda r: b"<script>" in r.body[:BODY_INSPECTION_LIMIT],
    },
    "AWSManagedRulesKnownBadInputsRuleSet": {
        "Log4JRCE_BODY": lambda r: b"${jndi:" in r.body[:BODY_INSPECTION_LIMIT],
    },
    "AWSManagedRulesSQLiRuleSet": {"SQLi_BODY": lambda r: b"' OR '1'='1" in r.body[:BODY_INSPECTION_LIMIT]},
    "AWSManagedRulesAnonymousIpList": {
        "AnonymousIPList": lambda r: r.anonymizer,
        "HostingProviderIPList": lambda r: r.hosting_provider,
    },
    "AWSManagedRulesAmazonIpReputationList": {},
}
LABEL_NAMESPACES = {
    "AWSManagedRulesCommonRuleSet": "awswaf:managed:aws:core-rule-set",
    "AWSManagedRulesKnownBadInputsRuleSet": "awswaf:managed:aws:known-bad-inputs",
    "AWSManagedRulesSQLiRuleSet": "awswaf:managed:aws:sql-database",
    "AWSManagedRulesAnonymousIpList": "awswaf:managed:aws:anonymous-ip-list",
    "AWSManagedRulesAmazonIpReputationList": "awswaf:managed:aws:amazon-ip-list",
}


@dataclass
class Verdict:
    action: str  # "BLOCK" or "ALLOW"
    terminating_rule: str | None
    counted: list[str] = field(default_factory=list)  # rules (group/rule) that matched with count
    labels: set[str] = field(default_factory=set)


def _one(block):
    """A nested block as synthesized: a list of one object (or the object itself)."""
    return block[0] if isinstance(block, list) else block


class WafEvaluator:
    def __init__(self, rules: list[dict]):
        self.rules = sorted(rules, key=lambda r: r["priority"])

    def evaluate(self, request: Request) -> Verdict:
        verdict = Verdict("ALLOW", None)
        for rule in self.rules:
            statement = _one(rule["statement"])
            if "managed_rule_group_statement" in statement:
                if self._managed(rule, _one(statement["managed_rule_group_statement"]), request, verdict):
                    return verdict
            elif self._matches(statement, request, verdict.labels):
                if "block" in _one(rule["action"]):
                    verdict.action, verdict.terminating_rule = "BLOCK", rule["name"]
                    return verdict
                verdict.counted.append(rule["name"])
        return verdict

    @staticmethod
    def _managed(rule: dict, group: dict, request: Request, verdict: Verdict) -> bool:
        overrides = {o["name"]: _one(o["action_to_use"]) for o in group.get("rule_action_override", [])}
        group_counts = "count" in _one(rule["override_action"])
        for name, matches in MANAGED_MATCHES[group["name"]].items():
            if not matches(request):
                continue
            short = name.removesuffix("_BODY") + "_Body" if name.endswith("_BODY") else name
            label = f"{LABEL_NAMESPACES[group['name']]}:{short}"
            verdict.labels.add(label)
            if group_counts or "count" in overrides.get(name, {}):
                verdict.counted.append(f"{rule['name']}/{name}")
                continue
            verdict.action, verdict.terminating_rule = "BLOCK", f"{rule['name']}/{name}"
            return True
        return False

    def _matches(self, statement: dict, request: Request, labels: set[str]) -> bool:
        (kind, body), = statement.items()
        body = _one(body)
        if kind == "and_statement":
            return all(self._matches(s, request, labels) for s in body["statement"])
        if kind == "or_statement":
            return any(self._matches(s, request, labels) for s in body["statement"])
        if kind == "not_statement":
            return not self._matches(_one(body["statement"]), request, labels)
        if kind == "label_match_statement":
            assert body["scope"] == "LABEL"
            return body["key"] in labels
        if kind == "byte_match_statement":
            assert list(_one(body["field_to_match"])) == ["uri_path"], body
            assert [_one(t)["type"] for t in body["text_transformation"]] == ["NONE"], body
            value, wanted = request.path, body["search_string"]
            return {"EXACTLY": value == wanted, "STARTS_WITH": value.startswith(wanted),
                    "ENDS_WITH": value.endswith(wanted), "CONTAINS": wanted in value}[body["positional_constraint"]]
        if kind == "rate_based_statement":
            # WAF counts, and acts on, only the requests its scope-down statement matches
            assert body["aggregate_key_type"] == "IP"
            return request.over_rate and self.rate_counts(body, request, labels)
        raise AssertionError(f"the evaluator does not know {kind}: teach it before relying on the rule")

    def rate_counts(self, rate: dict, request: Request, labels: set[str] = frozenset()) -> bool:
        """Whether the rate-based statement counts this request (no scope-down: every request)."""
        scope = rate.get("scope_down_statement")
        return not scope or self._matches(_one(scope), request, set(labels))

    def rate_limited(self, requests: list[Request]) -> bool:
        """Whether one client IP sending ``requests`` within one window goes over the rate rule's limit."""
        (rate,) = [_one(_one(r["statement"])["rate_based_statement"]) for r in self.rules
                   if "rate_based_statement" in _one(r["statement"])]  # fmt: skip
        return sum(self.rate_counts(rate, r) for r in requests) > rate["limit"]


def web_acl(stack) -> dict:
    return stack.only("aws_wafv2_web_acl")


def verdict(stack, request: Request) -> Verdict:
    return WafEvaluator(web_acl(stack)["rule"]).evaluate(request)


LARGE = b'{"query":"mutation { createNote(data: {bodyV2: {markdown: \\"' + b"x" * 20_000 + b'\\"}}) { id } }"}'
UPLOAD = b"--b\r\nContent-Disposition: form-data; name=\"operations\"\r\n\r\n{}\r\n" + b"\0" * 50_000


# --- the synthesized web ACL of every environment ----------------------------------------------------------------


def test_each_alb_has_a_regional_web_acl(platform_stack, env):
    acl = web_acl(platform_stack)
    assert acl["scope"] == "REGIONAL" and acl["name"] == f"twentycrm-{env}"
    assert "allow" in _one(acl["default_action"])
    association = platform_stack.only("aws_wafv2_web_acl_association")
    assert association["resource_arn"].startswith("${aws_lb.load-balancer_alb_")
    assert association["web_acl_arn"].startswith("${aws_wafv2_web_acl.waf_web-acl_")
    assert acl["tags"]["Component"] == f"{env}/waf"


def test_rules_are_the_managed_groups_the_rate_rule_and_the_scoped_block(platform_stack, settings, env):
    rules = {r["name"]: r for r in web_acl(platform_stack)["rule"]}
    groups = {n: _one(_one(r["statement"])["managed_rule_group_statement"])["name"] for n, r in rules.items()
              if "managed_rule_group_statement" in _one(r["statement"])}
    assert groups == {
        "aws-ip-reputation": "AWSManagedRulesAmazonIpReputationList",
        "aws-anonymous-ip": "AWSManagedRulesAnonymousIpList",
        "aws-known-bad-inputs": "AWSManagedRulesKnownBadInputsRuleSet", "aws-common": "AWSManagedRulesCommonRuleSet",
        "aws-sqli": "AWSManagedRulesSQLiRuleSet",
    }  # fmt: skip
    rate = _one(_one(rules["rate-per-ip"]["statement"])["rate_based_statement"])
    waf = settings[env].waf
    assert {k: v for k, v in rate.items() if k != "scope_down_statement"} == {
        "limit": waf.rate_limit, "aggregate_key_type": "IP", "evaluation_window_sec": waf.rate_window_seconds}
    assert "sizerestrictions-body-outside-api" in rules
    assert len({r["priority"] for r in rules.values()}) == len(rules)
    assert all(_one(r["visibility_config"])["cloudwatch_metrics_enabled"] for r in rules.values())


def test_mode_count_in_dev_block_in_qa_and_prod(platform_stack, settings, env):
    mode = settings[env].waf.mode
    assert mode == ("count" if env == "dev" else "block")
    rules = {r["name"]: r for r in web_acl(platform_stack)["rule"]}
    for name, rule in rules.items():
        if "override_action" in rule:
            expected = "none" if name == "aws-known-bad-inputs" or mode == "block" else "count"
            assert list(_one(rule["override_action"])) == [expected], name
        else:
            assert list(_one(rule["action"])) == ["count" if mode == "count" else "block"], name


def test_capacity_is_within_the_budget_and_written_down(settings, env):
    capacity = web_acl_capacity(settings[env])
    # 25 + 50 + 200 + 700 + 200 managed, 2 rate-based + 2 its scope-down byte match, 1 label + 7 x 2 byte matches
    # per outside-api rule
    assert capacity == 1194 <= WCU_BUDGET
    from conftest import ROOT

    assert "**1,194 WCUs**" in (ROOT / "docs" / "edge.md").read_text()
    assert all("the ACL then uses 1,194 of 1,500" in (ROOT / "envs" / f"{e}.toml").read_text()
               for e in ("dev", "qa", "prod"))


def test_logs_go_to_an_encrypted_group_with_the_waf_prefix(platform_stack, settings, env):
    group = platform_stack.by_path("aws_cloudwatch_log_group", "waf/logs")
    assert group["name"] == f"{LOG_GROUP_PREFIX}twentycrm-{env}"
    assert group["retention_in_days"] == settings[env].waf.log_retention_days == 365
    assert group["kms_key_id"].startswith("${aws_kms_key.waf_logs-key_")
    key = platform_stack.by_path("aws_kms_key", "waf/logs-key/key")
    logs = [s for s in json.loads(key["policy"])["Statement"] if s["Sid"] == "CloudWatchLogsUsesKey"][0]
    assert logs["Principal"] == {"Service": f"logs.{settings[env].region}.amazonaws.com"}
    assert logs["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"].endswith(
        f":log-group:{LOG_GROUP_PREFIX}twentycrm-{env}")
    logging = platform_stack.only("aws_wafv2_web_acl_logging_configuration")
    (destination,) = logging["log_destination_configs"]
    assert destination.startswith("${aws_cloudwatch_log_group.waf_logs_") and destination.endswith(".arn}")
    assert sorted(f["single_header"]["name"] for f in logging["redacted_fields"]) == sorted(REDACTED_HEADERS)


def test_the_alarm_watches_blocked_requests_or_counted_in_count_mode(platform_stack, settings, env):
    alarm = [a for a in platform_stack.resources("aws_cloudwatch_metric_alarm").values()
             if a["alarm_name"] == f"twentycrm-{env}-waf-blocked-requests"][0]
    waf = settings[env].waf
    assert alarm["namespace"] == "AWS/WAFV2"
    assert alarm["metric_name"] == ("CountedRequests" if waf.mode == "count" else "BlockedRequests")
    assert alarm["dimensions"]["Rule"] == "ALL" and alarm["dimensions"]["Region"] == settings[env].region
    assert alarm["dimensions"]["WebACL"].startswith("${aws_wafv2_web_acl.waf_web-acl_")
    assert alarm["threshold"] == waf.alarm_threshold and alarm["period"] == 300


# --- the rules read as WAF reads them ----------------------------------------------------------------------------


@pytest.fixture
def prod(synthesized):
    return synthesized.stack("twentycrm-prod-platform")


WORKSPACE, WORKFLOW = "20202020-1c25-4d02-bf25-6aeccf7ea419", "0f6f3b4e-8a0c-4c5e-9d1c-2b3f4a5d6e7f"
# A large body on each of Twenty's large-body routes (docs/edge.md, "Exclusions": method, path as the server routes it)
TWENTY_LARGE_BODY_ROUTES = [
    ("POST", "/graphql"), ("POST", "/metadata"), ("POST", "/rest/companies"), ("POST", "/rest/batch/people"),
    ("PATCH", "/rest/metadata/objects/0f6f3b4e"), ("PUT", f"/file-upload/{WORKFLOW}"), ("POST", "/mcp"),
    ("POST", f"/webhooks/workflows/{WORKSPACE}/{WORKFLOW}"), ("POST", "/s/quote-request"), ("PUT", "/s/a/b/c"),
]  # fmt: skip
# Near misses: one character off a route, a route's parent, and Twenty's small-body routes
NEAR_MISSES = ["/", "/graphqlx", "/graphql/x", "/rest", "/healthz", "/auth/login", "/file-upload", "/file-uploadx/1",
               "/mcpx", "/mcp/x", "/webhooks/stripe", "/webhooks/workflows", "/webhooks/workflow/x", "/s", "/sx/y",
               "/apps/connections", "/assets/x.js", "/files/attachment/x"]  # fmt: skip


@pytest.mark.parametrize(("method", "path"), TWENTY_LARGE_BODY_ROUTES)
def test_a_large_body_to_twentys_apis_passes(prod, method, path):
    for body in (LARGE, UPLOAD):
        result = verdict(prod, Request(method, path, body))
        assert result.action == "ALLOW", result
        assert body_rule_label("SizeRestrictions_BODY") in result.labels  # counted, still labelled and logged


@pytest.mark.parametrize("path", NEAR_MISSES)
def test_a_large_body_anywhere_else_is_blocked_by_the_scoped_rule(prod, path):
    result = verdict(prod, Request("POST", path, LARGE))
    assert (result.action, result.terminating_rule) == ("BLOCK", "sizerestrictions-body-outside-api")


def test_the_other_rules_still_block_on_the_api_paths(prod):
    xss = b'{"query":"<script>alert(1)</script>"}'
    assert verdict(prod, Request("POST", "/graphql", xss)).terminating_rule == "aws-common/CrossSiteScripting_BODY"
    jndi = b'{"query":"${jndi:ldap://x/a}"}'
    assert verdict(prod, Request("POST", "/rest/people", jndi)).terminating_rule == "aws-known-bad-inputs/Log4JRCE_BODY"
    sqli = b"{\"filter\":\"' OR '1'='1\"}"
    assert verdict(prod, Request("POST", "/rest/people", sqli)).terminating_rule == "aws-sqli/SQLi_BODY"
    assert verdict(prod, Request("GET", "/graphql", over_rate=True)).terminating_rule == "rate-per-ip"
    assert verdict(prod, Request("GET", "/", anonymizer=True)).terminating_rule == "aws-anonymous-ip/AnonymousIPList"
    small = verdict(prod, Request("POST", "/graphql", b'{"query":"{ currentUser { id } }"}'))
    assert small.action == "ALLOW" and not small.counted


def test_an_api_client_on_a_cloud_provider_is_counted_not_blocked(prod):
    result = verdict(prod, Request("POST", "/rest/companies", b"{}", hosting_provider=True))
    assert result.action == "ALLOW" and result.counted == ["aws-anonymous-ip/HostingProviderIPList"]


def test_count_mode_blocks_only_log4j(synthesized):
    dev = synthesized.stack("twentycrm-dev-platform")
    large = verdict(dev, Request("POST", "/", LARGE))
    assert large.action == "ALLOW" and "sizerestrictions-body-outside-api" in large.counted
    assert verdict(dev, Request("GET", "/", over_rate=True)).action == "ALLOW"
    jndi = verdict(dev, Request("POST", "/graphql", b"${jndi:ldap://x/a}"))
    assert (jndi.action, jndi.terminating_rule) == ("BLOCK", "aws-known-bad-inputs/Log4JRCE_BODY")


def test_the_reading_fails_on_rules_without_the_exclusion(prod):
    """The gate on a deliberately bad input: the core rule set left as AWS ships it blocks Twenty's uploads."""
    rules = json.loads(json.dumps(web_acl(prod)["rule"]))
    for rule in rules:
        if rule["name"] == "aws-common":
            _one(_one(rule["statement"])["managed_rule_group_statement"]).pop("rule_action_override")
    result = WafEvaluator(rules).evaluate(Request("POST", "/graphql", UPLOAD))
    assert (result.action, result.terminating_rule) == ("BLOCK", "aws-common/SizeRestrictions_BODY")
    with pytest.raises(AssertionError, match="does not know geo_match_statement"):
        WafEvaluator([{"name": "x", "priority": 0, "action": [{"block": [{}]}],
                       "statement": [{"geo_match_statement": [{"country_codes": ["BR"]}]}]}]).evaluate(
            Request("GET", "/"))


def test_api_paths_match_twentys_routes():
    assert dict((p, how) for how, p in TWENTY_API_PATHS) == {
        "/graphql": "EXACTLY", "/metadata": "EXACTLY", "/rest/": "STARTS_WITH", "/file-upload/": "STARTS_WITH",
        "/mcp": "EXACTLY", "/webhooks/workflows/": "STARTS_WITH", "/s/": "STARTS_WITH"}


# --- the rate rule and the front's static assets -----------------------------------------------------------------


def office_login(users: int, assets: int, api_calls: int) -> list[Request]:
    """What one office behind one NAT address sends when ``users`` open Twenty: the SPA's chunks, then API calls."""
    page = [Request("GET", "/")]
    page += [Request("GET", f"/assets/chunk-{i}.js") for i in range(assets)]
    page += [Request("POST", "/graphql", b'{"query":"{ currentUser { id } }"}') for _ in range(api_calls)]
    return page * users


def test_an_office_logging_in_stays_under_the_rate_limit(prod, settings):
    """60 users x (1 page + 80 assets + 20 API calls) = 6,060 requests from one address in 5 minutes: the rate rule
    counts 1,260 (not the assets), under 3,000. The gate on a bad input: without the scope-down all 6,060 count."""
    assert settings["prod"].waf.rate_limit == 3000
    evaluator = WafEvaluator(web_acl(prod)["rule"])
    office = office_login(users=60, assets=80, api_calls=20)
    assert len(office) == 6060 and not evaluator.rate_limited(office)
    assert evaluator.rate_limited(office_login(users=60, assets=0, api_calls=50))  # 3,060 API requests: limited
    rules = json.loads(json.dumps(web_acl(prod)["rule"]))
    for rule in rules:
        if rule["name"] == "rate-per-ip":
            _one(_one(rule["statement"])["rate_based_statement"]).pop("scope_down_statement")
    assert WafEvaluator(rules).rate_limited(office)


def test_an_ip_over_the_limit_still_gets_the_assets_but_not_the_api(prod):
    assert verdict(prod, Request("GET", "/assets/index-3f2a.js", over_rate=True)).action == "ALLOW"
    for path in ("/", "/graphql", "/assetsx/a.js", "/rest/people"):
        assert verdict(prod, Request("GET", path, over_rate=True)).terminating_rule == "rate-per-ip", path


# --- settings ----------------------------------------------------------------------------------------------------


def test_a_second_body_rule_adds_a_scoped_rule(settings):
    dev = with_changes(settings["dev"], waf={"api_body_rules": ("SizeRestrictions_BODY", "CrossSiteScripting_BODY")})
    stack = build_stack(PlatformStack, dev)
    rules = {r["name"]: r for r in web_acl(stack)["rule"]}
    assert "crosssitescripting-body-outside-api" in rules
    overrides = _one(_one(rules["aws-common"]["statement"])["managed_rule_group_statement"])["rule_action_override"]
    assert [o["name"] for o in overrides] == ["SizeRestrictions_BODY", "CrossSiteScripting_BODY"]
    assert web_acl_capacity(dev) == 1194 + 15


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('mode = "block"', 'mode = "detect"', "waf.mode"),
        ("rate_limit = 3000", "rate_limit = 5", "waf.rate_limit"),
        ("rate_window_seconds = 300", "rate_window_seconds = 30", "waf.rate_window_seconds"),
        ("log_retention_days = 365       #", "log_retention_days = 366       #", "waf.log_retention_days"),
        ('api_body_rules = ["SizeRestrictions_BODY"]', 'api_body_rules = ["CrossSiteScripting_BODY"]',
         "must keep 'SizeRestrictions_BODY'"),
        ('api_body_rules = ["SizeRestrictions_BODY"]', 'api_body_rules = ["SizeRestrictions_BODY", "Log4JRCE_BODY"]',
         "waf.api_body_rules"),
        ("sql_injection = true", "sql_injection = false\nfoo = 1", "foo"),
    ],
)
def test_bad_waf_settings_name_the_file_and_field(tmp_path, old, new, message):
    envs = copy_envs(tmp_path)
    edit(envs / "qa.toml", old, new)
    problems = problems_for(envs)
    assert "qa.toml" in problems and message in problems, problems


def test_sqli_body_rule_needs_the_sqli_group(tmp_path):
    envs = copy_envs(tmp_path)
    edit(envs / "prod.toml", "sql_injection = true", "sql_injection = false")
    edit(envs / "prod.toml", 'api_body_rules = ["SizeRestrictions_BODY"]',
         'api_body_rules = ["SizeRestrictions_BODY", "SQLi_BODY"]')
    problems = problems_for(envs)
    assert "prod.toml" in problems and "SQLi_BODY" in problems and "sql_injection = true" in problems, problems


def test_the_construct_refuses_an_acl_above_the_budget(settings, monkeypatch):
    """The budget on a deliberately bad input: a budget below the ACL's 1,194 WCUs."""
    import modules.waf

    monkeypatch.setattr(modules.waf, "WCU_BUDGET", 1000)
    with pytest.raises(ValueError, match="would use 1194 WCUs, above 1000"):
        build_stack(PlatformStack, settings["dev"])


# --- the emergency runbook (docs/edge.md, "Emergency: WAF blocks real users"), executed against moto -------------


def runbook_block(name: str) -> str:
    """The bash block docs/edge.md marks ``<!-- runbook: name -->``."""
    from conftest import ROOT

    page = (ROOT / "docs" / "edge.md").read_text()
    found = re.search(rf"<!-- runbook: {re.escape(name)} -->\n```bash\n(.*?)\n```", page, re.DOTALL)
    assert found, f"docs/edge.md has no runbook block {name!r}"
    return found.group(1)


def run_runbook(aws, workdir: Path, *blocks: str, check: bool = True) -> subprocess.CompletedProcess:
    """The blocks as an administrator pastes them into one shell, the AWS CLI pointed at moto."""
    script = "set -euo pipefail\n" + "\n".join(runbook_block(b) for b in blocks)
    env = {**os.environ, "AWS_ENDPOINT_URL": aws.url, "AWS_CA_BUNDLE": str(aws.ca_bundle),
           "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}  # fmt: skip
    result = subprocess.run(["bash", "-c", script], cwd=workdir, env=env, capture_output=True, text=True, timeout=120)
    if check:
        assert result.returncode == 0, f"runbook {blocks} failed:\n{result.stdout}\n{result.stderr}"
    return result


def rules_by_name(client, acl: dict) -> dict[str, dict]:
    found = client.get_web_acl(Scope="REGIONAL", Name=acl["Name"], Id=acl["Id"])["WebACL"]
    return {r["Name"]: r for r in found["Rules"]}


@pytest.mark.slow
def test_the_emergency_runbook_counts_a_rule_and_the_next_apply_restores_it(prod, tmp_path):
    """prod's web ACL, applied by terraform against moto from the synthesized JSON and associated with an ALB; the
    runbook's CLI steps count one managed rule, one group and one of our rules, a stale lock token is refused, the
    ACL is disassociated; then `terraform plan` reports the drift and an apply restores the code's ACL."""
    from terraform_support import LocalAws, Terraform, missing_tools, write_json

    reason = missing_tools() or (None if shutil.which("jq") else "jq is not on PATH (the runbook edits JSON with it)")
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; CI must not skip this test")
        pytest.skip(reason)
    acl_resource = web_acl(prod)
    work = tmp_path / "waf"
    work.mkdir()
    terraform = Terraform(tmp_path)
    with LocalAws(tmp_path) as aws:
        ec2, elbv2, wafv2 = aws.client("ec2"), aws.client("elbv2"), aws.client("wafv2")
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24", AvailabilityZone=f"sa-east-1{z}")
                   ["Subnet"]["SubnetId"] for i, z in enumerate("ab")]  # fmt: skip
        alb_arn = elbv2.create_load_balancer(Name="twentycrm-prod", Subnets=subnets)["LoadBalancers"][0][
            "LoadBalancerArn"]
        write_json(work / "main.tf.json", {
            "terraform": {"required_providers": {"aws": {"source": "hashicorp/aws", "version": "5.100.0"}}},
            "provider": {"aws": {"region": "sa-east-1"}},
            "resource": {
                "aws_wafv2_web_acl": {"acl": acl_resource},
                "aws_wafv2_web_acl_association": {"alb": {
                    "resource_arn": alb_arn, "web_acl_arn": "${aws_wafv2_web_acl.acl.arn}"}},
            },
        })  # fmt: skip
        write_json(work / "aws_override.tf.json", aws.provider_override())
        terraform.run(work, "init", "-input=false")
        terraform.run(work, "apply", "-input=false", "-auto-approve")
        (acl,) = wafv2.list_web_acls(Scope="REGIONAL")["WebACLs"]
        applied = rules_by_name(wafv2, acl)

        run_runbook(aws, work, "get-web-acl", "count-one-rule", "update-web-acl")
        now = rules_by_name(wafv2, acl)
        overrides = now["aws-common"]["Statement"]["ManagedRuleGroupStatement"]["RuleActionOverrides"]
        assert {o["Name"]: o["ActionToUse"] for o in overrides} == {
            "SizeRestrictions_BODY": {"Count": {}}, "CrossSiteScripting_BODY": {"Count": {}}}
        assert {k: v for k, v in now.items() if k != "aws-common"} == {
            k: v for k, v in applied.items() if k != "aws-common"}, "only the one group changed"

        run_runbook(aws, work, "get-web-acl", "count-group", "update-web-acl")
        assert rules_by_name(wafv2, acl)["aws-sqli"]["OverrideAction"] == {"Count": {}}
        # the gate on a bad input: the update run twice, the second time with the token the first one spent
        twice = run_runbook(aws, work, "get-web-acl", "count-own-rule", "update-web-acl", "update-web-acl",
                            check=False)  # fmt: skip
        assert twice.returncode != 0 and "WAFOptimisticLockException" in twice.stderr, twice.stderr
        now = rules_by_name(wafv2, acl)
        assert now["rate-per-ip"]["Action"] == {"Count": {}}, "the first update went through"
        assert "CrossSiteScripting_BODY" in json.dumps(now["aws-common"]), "the earlier override is kept"

        run_runbook(aws, work, "get-web-acl", "disassociate")
        assert "WebACL" not in wafv2.get_web_acl_for_resource(ResourceArn=alb_arn)

        drift = terraform.run(work, "plan", "-input=false", "-detailed-exitcode", check=False)
        assert drift.returncode == 2, drift.stdout
        assert "aws_wafv2_web_acl.acl will be updated in-place" in drift.stdout
        assert "aws_wafv2_web_acl_association.alb will be created" in drift.stdout
        terraform.run(work, "apply", "-input=false", "-auto-approve")
        assert rules_by_name(wafv2, acl) == applied, "the apply restores the code's rules"
        assert wafv2.get_web_acl_for_resource(ResourceArn=alb_arn)["WebACL"]["Name"] == "twentycrm-prod"
