"""WAF-x01: the AWS WAFv2 web ACL (scope REGIONAL) in front of the environment's ALB, its logs and their key.

Rules, in the order WAF evaluates them (priority):

0. ``aws-ip-reputation``: AWSManagedRulesAmazonIpReputationList (addresses AWS threat intelligence flags);
1. ``aws-anonymous-ip``: AWSManagedRulesAnonymousIpList, blocking Tor and anonymizers, counting cloud hosting ranges;
2. ``rate-per-ip``: a rate-based rule, ``waf.rate_limit`` requests per client IP in ``waf.rate_window_seconds``,
   counting every request but the front's static assets (STATIC_ASSETS_PREFIX);
3. ``aws-known-bad-inputs``: AWSManagedRulesKnownBadInputsRuleSet (Log4j JNDI lookups, Java deserialization, ...);
4. ``aws-common``: AWSManagedRulesCommonRuleSet (the core rule set), with ``waf.api_body_rules`` overridden to count;
5. ``aws-sqli``: AWSManagedRulesSQLiRuleSet when ``waf.sql_injection``;
10+. ``<rule>-outside-api``: blocks what a counted body rule labelled, unless the path is one of Twenty's routes
     that take large bodies.

Why the exclusions (docs/edge.md, "Exclusions"): an ALB forwards at most the first 8 KB of a body to WAF and the core
rule set's SizeRestrictions_BODY blocks every body above 8 KB, while Twenty's server takes bodies far larger than that
on its APIs, its file uploads, its MCP endpoint and its public webhook and route triggers (TWENTY_API_PATHS). Counting
that one rule on those paths only, and blocking it by label everywhere else, keeps every other rule in force.
"""

from __future__ import annotations

from typing import Any

from cdktf_cdktf_provider_aws.wafv2_web_acl import (
    Wafv2WebAcl,
    Wafv2WebAclDefaultAction,
    Wafv2WebAclVisibilityConfig,
)
from cdktf_cdktf_provider_aws.wafv2_web_acl_association import Wafv2WebAclAssociation
from cdktf_cdktf_provider_aws.wafv2_web_acl_logging_configuration import (
    Wafv2WebAclLoggingConfiguration,
    Wafv2WebAclLoggingConfigurationRedactedFields,
    Wafv2WebAclLoggingConfigurationRedactedFieldsSingleHeader,
)
from constructs import Construct

from modules.kms import encrypted_log_group
from modules.settings import EnvironmentSettings

WAF_COMPONENT = "waf"  # not in the document; tagged <env>/waf
# WAF delivers to CloudWatch Logs only into groups whose name starts with this (AWS WAF Developer Guide, "Sending web
# ACL traffic logs to an Amazon CloudWatch Logs log group"); the account stack's resource policy lets
# delivery.logs.amazonaws.com write to aws-waf-logs-* (contract with modules/account.py).
LOG_GROUP_PREFIX = "aws-waf-logs-"
# Headers WAF writes to its logs in clear unless redacted: Twenty's access and refresh tokens travel as
# "Authorization: Bearer <token>" (API keys too) and its session as a cookie (tokenPair); WAF wants them lower-case.
REDACTED_HEADERS = ("authorization", "cookie")

# The routes of Twenty's server that legitimately take bodies above 8 KB, read from twentyhq/twenty (route names:
# packages/twenty-shared/src/types/ApiPath.ts; docs/edge.md, "Exclusions", cites each controller), each matched as
# narrowly as the route is declared:
# - /graphql, /metadata: the two GraphQL APIs, JSON bodies and graphql-upload multipart uploads;
# - /rest/...: the REST API (/rest/<object>, /rest/metadata/...), JSON bodies (batch creates, imports);
# - /file-upload/<id>: PUT of the raw file (attachments, avatars, app tarballs) when Twenty's S3 driver does not
#   presign uploads, which is its default (STORAGE_S3_PRESIGNED_URL_ENABLED = false) and this chart's setting;
# - /mcp: the MCP endpoint, JSON-RPC tool calls that carry record data like the REST API;
# - /webhooks/workflows/<workspace>/<workflow>: a workflow's webhook trigger, a third party's payload as is;
# - /s/<path>: route triggers of logic functions, any body a workspace's own endpoint accepts.
# Left out: /apps (app connections, small JSON; tarballs go through /file-upload/) and Twenty's other routes (auth,
# files download, health, OAuth, ...), which take small bodies.
TWENTY_API_PATHS: tuple[tuple[str, str], ...] = (
    ("EXACTLY", "/graphql"),
    ("EXACTLY", "/metadata"),
    ("STARTS_WITH", "/rest/"),
    ("STARTS_WITH", "/file-upload/"),
    ("EXACTLY", "/mcp"),
    ("STARTS_WITH", "/webhooks/workflows/"),
    ("STARTS_WITH", "/s/"),
)
# Twenty's server serves the front's build (ServeStaticModule on dist/front, packages/twenty-server/src/app.module.ts)
# and Vite writes its hashed JS/CSS chunks under /assets/ (twenty-front/vite.config.ts: no base, no assetsDir). One
# login loads dozens of them: the rate rule does not count them, so an office behind one NAT address is limited by
# its API calls, not by its page loads.
STATIC_ASSETS_PREFIX = "/assets/"

# The managed groups, their vendor, capacity in WCUs (AWS WAF Developer Guide, "AWS Managed Rules rule groups list":
# baseline and use-case groups) and label namespace.
MANAGED_GROUPS: dict[str, dict[str, Any]] = {
    "aws-ip-reputation": {"name": "AWSManagedRulesAmazonIpReputationList", "wcu": 25,
                          "labels": "awswaf:managed:aws:amazon-ip-list"},
    "aws-anonymous-ip": {"name": "AWSManagedRulesAnonymousIpList", "wcu": 50,
                         "labels": "awswaf:managed:aws:anonymous-ip-list"},
    "aws-known-bad-inputs": {"name": "AWSManagedRulesKnownBadInputsRuleSet", "wcu": 200,
                             "labels": "awswaf:managed:aws:known-bad-inputs"},
    "aws-common": {"name": "AWSManagedRulesCommonRuleSet", "wcu": 700, "labels": "awswaf:managed:aws:core-rule-set"},
    "aws-sqli": {"name": "AWSManagedRulesSQLiRuleSet", "wcu": 200, "labels": "awswaf:managed:aws:sql-database"},
}  # fmt: skip
# Count mode counts every rule but the Log4j JNDI-lookup rules (Log4JRCE_*) of the known bad inputs group: those
# block in every environment (checkov CKV_AWS_192 and CKV2_AWS_76 require it; Twenty is Node.js, and a ${jndi:
# lookup is never its traffic). The group's other rules (AWS WAF Developer Guide, "Known bad inputs managed rule
# group") are counted one by one; a rule AWS adds later blocks until it is listed here.
KNOWN_BAD_INPUTS_COUNTED_IN_COUNT_MODE = (
    "JavaDeserializationRCE_HEADER", "JavaDeserializationRCE_BODY", "JavaDeserializationRCE_URIPATH",
    "JavaDeserializationRCE_QUERYSTRING", "Host_localhost_HEADER", "PROPFIND_METHOD", "ExploitablePaths_URIPATH",
)  # fmt: skip
# The anonymous IP group's HostingProviderIPList matches every cloud provider's addresses, where Twenty's API clients
# run (integrations, workflows and scripts calling /rest and /graphql with an API key): counted, never blocked. Its
# AnonymousIPList (Tor exits, anonymizing VPNs and proxies) blocks (AWS WAF Developer Guide, "Anonymous IP list").
ANONYMOUS_IP_COUNTED = ("HostingProviderIPList",)
# Which group holds each body rule of waf.api_body_rules; its label is <namespace>:<rule with _BODY as _Body>.
BODY_RULE_GROUPS = {
    "SizeRestrictions_BODY": "aws-common", "CrossSiteScripting_BODY": "aws-common", "GenericLFI_BODY": "aws-common",
    "GenericRFI_BODY": "aws-common", "EC2MetaDataSSRF_BODY": "aws-common", "SQLi_BODY": "aws-sqli",
}  # fmt: skip
# WCUs of the statements the custom rules use (AWS WAF Developer Guide, "Rule statements": rate-based base cost 2
# plus its scope-down statement's, label match 1, string match EXACTLY/STARTS_WITH 2 with no text transformation;
# AND/OR/NOT add nothing of their own).
RATE_BASED_WCU = 2
LABEL_MATCH_WCU = 1
BYTE_MATCH_WCU = {"EXACTLY": 2, "STARTS_WITH": 2}
# A web ACL may use 5,000 WCUs; above 1,500 every request costs more (AWS WAF Developer Guide, "Web ACL capacity
# units"). The ACL stays within the lower one.
WCU_BUDGET = 1500


def body_rule_label(rule: str) -> str:
    """The label a managed body rule adds to a request it matches, e.g.
    ``awswaf:managed:aws:core-rule-set:SizeRestrictions_Body``."""
    group = MANAGED_GROUPS[BODY_RULE_GROUPS[rule]]["labels"]
    return f"{group}:{rule.removesuffix('_BODY')}_Body"


def _uri_path_match(how: str, path: str) -> dict[str, Any]:
    """A byte match on the URI path as sent (no text transformation: Twenty's routes are case-sensitive)."""
    return {"byte_match_statement": [{
        "positional_constraint": how, "search_string": path, "field_to_match": [{"uri_path": [{}]}],
        "text_transformation": [{"priority": 0, "type": "NONE"}],
    }]}  # fmt: skip


def web_acl_capacity(settings: EnvironmentSettings) -> int:
    """The WCUs the ACL's rules use, from AWS's documented capacities (docs/edge.md, "Capacity")."""
    waf = settings.waf
    groups = sum(g["wcu"] for key, g in MANAGED_GROUPS.items() if key != "aws-sqli" or waf.sql_injection)
    outside_api = LABEL_MATCH_WCU + sum(BYTE_MATCH_WCU[how] for how, _ in TWENTY_API_PATHS)
    rate = RATE_BASED_WCU + BYTE_MATCH_WCU["STARTS_WITH"]  # its scope-down statement: not the static assets
    return groups + rate + outside_api * len(waf.api_body_rules)


class WebApplicationFirewall(Construct):
    """The web ACL, its association with the ALB, its log group (with its own key) and logging configuration.

    Exposes ``web_acl``, ``association``, ``log_group``, ``logging`` and ``rules`` (the rule blocks as synthesized).
    """

    def __init__(self, scope: Construct, construct_id: str, *, settings: EnvironmentSettings, alb_arn: str) -> None:
        super().__init__(scope, construct_id)
        waf = settings.waf
        self._settings = settings
        self._count = waf.mode == "count"
        name = f"{settings.project}-{settings.name}"
        tags = {"Component": settings.component(WAF_COMPONENT)}
        capacity = web_acl_capacity(settings)
        if capacity > WCU_BUDGET:  # the settings cannot reach it today; a new rule must not slip past the budget
            raise ValueError(f"the web ACL of {settings.name} would use {capacity} WCUs, above {WCU_BUDGET}")

        self.rules = self._rules()
        self.web_acl = Wafv2WebAcl(
            self,
            "web-acl",
            name=name,
            description=f"Twenty CRM {settings.name}: AWS managed rules, rate limit per IP ({waf.mode} mode)",
            scope="REGIONAL",
            default_action=Wafv2WebAclDefaultAction(allow={}),
            visibility_config=Wafv2WebAclVisibilityConfig(
                cloudwatch_metrics_enabled=True, metric_name=name, sampled_requests_enabled=True
            ),
            tags={**tags, "Name": name},
        )
        # Rules as Terraform JSON: the typed classes of cdktf's bindings stop short of the nesting the label rules
        # need (and -> not -> or -> byte match) and lack rate_based_statement.evaluation_window_sec, which
        # hashicorp/aws 5.100.0's schema has.
        self.web_acl.add_override("rule", self.rules)
        self.association = Wafv2WebAclAssociation(
            self, "association", resource_arn=alb_arn, web_acl_arn=self.web_acl.arn
        )
        log_group_name = f"{LOG_GROUP_PREFIX}{name}"
        self.log_group, self.log_key = encrypted_log_group(
            self,
            "logs",
            log_group_name=log_group_name,
            retention_days=waf.log_retention_days,
            alias=f"{name}-waf-logs",
            description=f"Encrypts the WAF logs of {settings.name} ({log_group_name})",
            region=settings.region,
            tags={**tags, "Name": log_group_name},
        )
        self.logging = Wafv2WebAclLoggingConfiguration(
            self,
            "logging",
            resource_arn=self.web_acl.arn,
            log_destination_configs=[self.log_group.arn],
            redacted_fields=[
                Wafv2WebAclLoggingConfigurationRedactedFields(
                    single_header=Wafv2WebAclLoggingConfigurationRedactedFieldsSingleHeader(name=header)
                )
                for header in REDACTED_HEADERS
            ],
        )

    # --- rules --------------------------------------------------------------------------------

    def _rules(self) -> list[dict[str, Any]]:
        waf = self._settings.waf
        counted = {key: [r for r in waf.api_body_rules if BODY_RULE_GROUPS[r] == key] for key in MANAGED_GROUPS}
        rules = [
            self._managed("aws-ip-reputation", 0),
            self._managed("aws-anonymous-ip", 1, count_rules=list(ANONYMOUS_IP_COUNTED)),
            self._rate_rule(2),
            self._managed("aws-known-bad-inputs", 3, count_rules=list(KNOWN_BAD_INPUTS_COUNTED_IN_COUNT_MODE)
                          if self._count else [], group_counts=False),
            self._managed("aws-common", 4, count_rules=counted["aws-common"]),
        ]
        if waf.sql_injection:
            rules.append(self._managed("aws-sqli", 5, count_rules=counted["aws-sqli"]))
        for i, body_rule in enumerate(waf.api_body_rules):
            rules.append(self._outside_api_rule(body_rule, 10 + i))
        return rules

    def _visibility(self, rule_name: str) -> list[dict[str, Any]]:
        metric = f"{self._settings.project}-{self._settings.name}-{rule_name}"
        return [{"cloudwatch_metrics_enabled": True, "metric_name": metric, "sampled_requests_enabled": True}]

    def _action(self) -> list[dict[str, Any]]:
        return [{"count": [{}]}] if self._count else [{"block": [{}]}]

    def _managed(self, key: str, priority: int, *, count_rules: list[str] = (),
                 group_counts: bool = True) -> dict[str, Any]:  # fmt: skip
        """``count_rules``: rules overridden to count; ``group_counts``: whether count mode counts the whole group."""
        group: dict[str, Any] = {"name": MANAGED_GROUPS[key]["name"], "vendor_name": "AWS"}
        if count_rules:
            # these rules still label what they match; the *-outside-api rules block on that label
            group["rule_action_override"] = [
                {"name": rule, "action_to_use": [{"count": [{}]}]} for rule in count_rules
            ]
        return {
            "name": key,
            "priority": priority,
            # "none" keeps each rule's own action (block); "count" turns the whole group into counting
            "override_action": [{"count": [{}]}] if self._count and group_counts else [{"none": [{}]}],
            "statement": [{"managed_rule_group_statement": [group]}],
            "visibility_config": self._visibility(key),
        }

    def _rate_rule(self, priority: int) -> dict[str, Any]:
        waf = self._settings.waf
        return {
            "name": "rate-per-ip",
            "priority": priority,
            "action": self._action(),
            "statement": [{"rate_based_statement": [{
                "limit": waf.rate_limit, "aggregate_key_type": "IP", "evaluation_window_sec": waf.rate_window_seconds,
                # WAF counts (and acts on) only the requests that match the scope-down statement
                "scope_down_statement": [{"not_statement": [{"statement": [_uri_path_match(
                    "STARTS_WITH", STATIC_ASSETS_PREFIX)]}]}],
            }]}],  # fmt: skip
            "visibility_config": self._visibility("rate-per-ip"),
        }

    def _outside_api_rule(self, body_rule: str, priority: int) -> dict[str, Any]:
        paths = [_uri_path_match(how, path) for how, path in TWENTY_API_PATHS]
        name = f"{body_rule.lower().replace('_', '-')}-outside-api"
        return {
            "name": name,
            "priority": priority,
            "action": self._action(),
            "statement": [{"and_statement": [{"statement": [
                {"label_match_statement": [{"scope": "LABEL", "key": body_rule_label(body_rule)}]},
                {"not_statement": [{"statement": [{"or_statement": [{"statement": paths}]}]}]},
            ]}]}],  # fmt: skip
            "visibility_config": self._visibility(name),
        }
