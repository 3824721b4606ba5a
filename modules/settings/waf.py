"""The ``[waf]`` section: the WAFv2 web ACL in front of the environment's ALB (modules/waf.py, docs/edge.md)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from modules.settings.fields import LogRetentionDays, _Model

# Rules of the AWS managed groups that inspect the request body and may be counted (not blocked) on Twenty's API
# paths, then blocked everywhere else by a label rule (docs/edge.md, "Tune a rule"). Group of each: modules/waf.py.
BodyRule = Literal[
    "SizeRestrictions_BODY",
    "CrossSiteScripting_BODY",
    "GenericLFI_BODY",
    "GenericRFI_BODY",
    "EC2MetaDataSSRF_BODY",
    "SQLi_BODY",
]
SQLI_BODY_RULES = ("SQLi_BODY",)


class WafSettings(_Model):
    """WAF-x01: the web ACL on the ALB; AWS managed rule groups, a rate limit per client IP and Twenty's body
    exclusions (docs/edge.md, "Web application firewall")."""

    mode: Literal["count", "block"] = Field(
        default="block",
        description="'block' blocks what the rules match; 'count' only counts and logs it (every rule and rule "
        "group overridden to count), to learn the traffic before blocking (docs/edge.md, count to block).",
    )
    sql_injection: bool = Field(
        default=True, description="Add AWS's SQL database rule group (AWSManagedRulesSQLiRuleSet, 200 WCUs)."
    )
    rate_limit: int = Field(
        default=3000,
        ge=10,
        le=2_000_000_000,
        description="Requests one client IP may send in one evaluation window (rate_window_seconds) before the "
        "rate-based rule blocks it; the front's static assets (/assets/) are not counted. AWS allows 10 to "
        "2,000,000,000. Raise it for many users behind one NAT address (docs/edge.md, tuning a rule).",
    )
    rate_window_seconds: Literal[60, 120, 300, 600] = Field(
        default=300, description="The rate-based rule's evaluation window: the last 60, 120, 300 or 600 seconds."
    )
    api_body_rules: tuple[BodyRule, ...] = Field(
        default=("SizeRestrictions_BODY",),
        description="Body rules counted, not blocked, on the Twenty routes that take large bodies (/graphql, "
        "/metadata, /rest/, /file-upload/, /mcp, /webhooks/workflows/, /s/) and blocked everywhere else. "
        "SizeRestrictions_BODY must stay: Twenty accepts bodies far above the 8 KB it allows (uploads, imports).",
    )
    log_retention_days: LogRetentionDays = Field(
        default=365, description="Days the WAF log group aws-waf-logs-<project>-<env> keeps its logs."
    )
    alarm_threshold: int = Field(
        default=100,
        ge=1,
        description="Blocked requests (counted requests in count mode) in 5 minutes, over all rules, that raise "
        "the waf-blocked-requests alarm.",
    )

    @model_validator(mode="after")
    def _rules_fit(self) -> "WafSettings":
        problems = []
        if "SizeRestrictions_BODY" not in self.api_body_rules:
            problems.append(
                "api_body_rules must keep 'SizeRestrictions_BODY': Twenty's GraphQL uploads and REST imports send "
                "bodies above its 8 KB limit, which would block them (docs/edge.md, exclusions)"
            )
        dupes = sorted({r for r in self.api_body_rules if self.api_body_rules.count(r) > 1})
        if dupes:
            problems.append(f"api_body_rules lists {', '.join(dupes)} more than once; list each only once")
        sqli = [r for r in self.api_body_rules if r in SQLI_BODY_RULES]
        if sqli and not self.sql_injection:
            problems.append(
                f"api_body_rules lists {', '.join(sqli)} of the SQL database rule group, which sql_injection = false "
                "leaves out; remove it or set sql_injection = true"
            )
        if problems:
            raise ValueError("; ".join(problems))
        return self
