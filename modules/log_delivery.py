"""CloudWatch Logs resource policies that let AWS services deliver logs into the account: once per account.

A resource policy belongs to the account and region, not to a log group (``logs:PutResourcePolicy`` has no
resource in IAM), so no environment's role may write one (modules/boundary.py ``NoAccountWidePermissions``) and
the account stack, applied by an administrator, holds them:

- in us-east-1, Route53 may write the query logs of this account's hosted zones to ``/aws/route53/*``
  (Route53 developer guide, "Public DNS query logging": the policy Route53 needs, in us-east-1 only);
- in every region an environment of the account uses, CloudWatch Logs' log delivery (vended logs, as WAF sends
  them) may write to ``aws-waf-logs-*`` (CloudWatch Logs user guide, "Enable logging from AWS services", logs sent
  to CloudWatch Logs; WAF requires that prefix).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from cdktf import TerraformProvider, TerraformStack
from cdktf_cdktf_provider_aws.cloudwatch_log_resource_policy import CloudwatchLogResourcePolicy
from cdktf_cdktf_provider_aws.data_aws_partition import DataAwsPartition
from cdktf_cdktf_provider_aws.provider import AwsProvider, AwsProviderDefaultTags
from constructs import Construct

ROUTE53_LOGS_REGION = "us-east-1"
ROUTE53_LOG_GROUPS = "/aws/route53/*"
WAF_LOG_GROUPS = "aws-waf-logs-*"


def route53_query_log_policy(*, partition: str, account_id: str) -> dict:
    return {"Version": "2012-10-17", "Statement": [{
        "Sid": "Route53QueryLogs", "Effect": "Allow", "Principal": {"Service": "route53.amazonaws.com"},
        "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
        "Resource": f"arn:{partition}:logs:{ROUTE53_LOGS_REGION}:{account_id}:log-group:{ROUTE53_LOG_GROUPS}",
        "Condition": {"StringEquals": {"aws:SourceAccount": account_id},
                      "ArnLike": {"aws:SourceArn": f"arn:{partition}:route53:::hostedzone/*"}},
    }]}  # fmt: skip


def vended_waf_log_policy(*, partition: str, region: str, account_id: str) -> dict:
    return {"Version": "2012-10-17", "Statement": [{
        "Sid": "WafLogDelivery", "Effect": "Allow", "Principal": {"Service": "delivery.logs.amazonaws.com"},
        "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
        "Resource": f"arn:{partition}:logs:{region}:{account_id}:log-group:{WAF_LOG_GROUPS}",
        "Condition": {"StringEquals": {"aws:SourceAccount": account_id},
                      "ArnLike": {"aws:SourceArn": f"arn:{partition}:logs:{region}:{account_id}:*"}},
    }]}  # fmt: skip


def provider_alias(region: str) -> str:
    return region.replace("-", "_")


class LogDeliveryPolicies(Construct):
    """The account's log delivery resource policies. ``regions``: the regions of the account's environments
    (WAF logs); ``route53_query_logs``: whether any of them logs Route53 queries. ``provider_for(region)`` gives
    the stack's provider of a region: its default one in ``home_region``, else an aliased one (alias: the region
    with underscores) with the same account fence and ``default_tags``, created in the stack.
    Exposes ``route53`` (the us-east-1 policy or None) and ``waf`` (region → policy)."""

    def __init__(self, scope: Construct, construct_id: str, *, project: str, account_id: str, home_region: str,
                 regions: Sequence[str], route53_query_logs: bool, default_tags: dict[str, str]) -> None:  # fmt: skip
        super().__init__(scope, construct_id)
        self._providers: dict[str, TerraformProvider | None] = {home_region: None}
        self._account_id, self._tags = account_id, default_tags
        partition = DataAwsPartition(self, "partition").partition
        self.route53 = None
        if route53_query_logs:
            self.route53 = CloudwatchLogResourcePolicy(
                self, "route53-query-logs", policy_name=f"{project}-route53-query-logs",
                policy_document=json.dumps(route53_query_log_policy(partition=partition, account_id=account_id)),
                provider=self._provider(ROUTE53_LOGS_REGION),
            )  # fmt: skip
        self.waf = {
            region: CloudwatchLogResourcePolicy(
                self, f"waf-logs-{region}", policy_name=f"{project}-waf-logs",
                policy_document=json.dumps(vended_waf_log_policy(partition=partition, region=region,
                                                                 account_id=account_id)),
                provider=self._provider(region),
            )  # fmt: skip
            for region in sorted(set(regions))
        }

    def _provider(self, region: str) -> TerraformProvider | None:
        if region not in self._providers:
            alias = provider_alias(region)
            self._providers[region] = AwsProvider(
                TerraformStack.of(self), alias, alias=alias, region=region, allowed_account_ids=[self._account_id],
                default_tags=[AwsProviderDefaultTags(tags=self._tags)],
            )  # fmt: skip
        return self._providers[region]
