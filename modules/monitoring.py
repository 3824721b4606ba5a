"""Monitoring and alerting of one environment: topic, alarms, dashboard, Container Insights.

- one SNS topic, encrypted with its own rotating key, with the e-mail subscribers of the settings;
- CloudWatch alarms on the ALB (5xx rate, unhealthy and missing targets, p99 latency), the
  database host (CPU, status checks, memory and disks through the CloudWatch agent), each node
  group (CPU) and each NAT gateway (port allocation errors, dropped packets);
- ``monitoring.alarm_mode``: ``page`` sends alarm and recovery to the topic, ``record`` only keeps
  the alarm history (dev, qa);
- the ``amazon-cloudwatch-observability`` EKS add-on (Container Insights) with its Pod Identity
  role, created after the node groups, and its log groups created first with retention and KMS;
- one dashboard per environment.

Thresholds and their reasons: docs/monitoring.md.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence

from cdktf import ITerraformDependable
from cdktf_cdktf_provider_aws.cloudwatch_dashboard import CloudwatchDashboard
from cdktf_cdktf_provider_aws.cloudwatch_log_group import CloudwatchLogGroup
from cdktf_cdktf_provider_aws.cloudwatch_metric_alarm import (
    CloudwatchMetricAlarm,
    CloudwatchMetricAlarmMetricQuery,
    CloudwatchMetricAlarmMetricQueryMetric,
)
from cdktf_cdktf_provider_aws.eks_addon import EksAddon, EksAddonPodIdentityAssociation
from cdktf_cdktf_provider_aws.iam_role import IamRole
from cdktf_cdktf_provider_aws.iam_role_policy_attachment import IamRolePolicyAttachment
from cdktf_cdktf_provider_aws.sns_topic import SnsTopic
from cdktf_cdktf_provider_aws.sns_topic_subscription import SnsTopicSubscription
from constructs import Construct

from modules.boundary import workload_boundary_arn
from modules.cluster import pod_identity_trust_policy
from modules.database import BOOT_METRIC_NAME, BOOT_METRIC_NAMESPACE
from modules.kms import EncryptionKey
from modules.settings import EnvironmentSettings

OBSERVABILITY_ADDON = "amazon-cloudwatch-observability"
OBSERVABILITY_NAMESPACE = "amazon-cloudwatch"
OBSERVABILITY_SERVICE_ACCOUNT = "cloudwatch-agent"
# The log groups the add-on's Fluent Bit writes to; created here first so they get retention and a key.
CONTAINER_INSIGHTS_LOG_GROUPS = ("application", "dataplane", "host", "performance")
AGENT_NAMESPACE = "CWAgent"  # where the database host's CloudWatch agent publishes memory and disk
MONITORING_COMPONENT = "monitoring"  # not in the document; tagged <env>/monitoring


class Monitoring(Construct):
    """Exposes ``topic``, ``alarms`` (construct ID -> alarm), ``dashboard``, ``addon`` and ``key``."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: EnvironmentSettings,
        alb_arn_suffix: str,
        target_group_arn_suffix: str,
        db_instance_id: str,
        db_data_mount_point: str,
        node_group_asg_names: Mapping[str, str],
        nat_gateway_ids: Mapping[str, str],
        cluster_name: str,
        after: Sequence[ITerraformDependable],
        web_acl_name: str,
    ) -> None:
        """``node_group_asg_names``: tier -> Auto Scaling group of the managed node group;
        ``nat_gateway_ids``: zone letter -> NAT gateway; ``after``: what the add-on waits for (the nodes);
        ``web_acl_name``: the WAF web ACL in front of the ALB (modules/waf.py)."""
        super().__init__(scope, construct_id)
        self._settings = settings
        m = settings.monitoring
        self._prefix = settings.stack_name("")[:-1]  # twentycrm-dev
        self._tags = {"Component": settings.component(MONITORING_COMPONENT)}
        region = settings.region

        # the literal name (not the cluster's attribute): the key policy matches it before the cluster exists
        log_group_prefix = f"/aws/containerinsights/{settings.cluster.name}"
        self.key = EncryptionKey(
            self,
            "key",
            alias=f"{self._prefix}-monitoring",
            description=f"Encrypts the alarm topic and the Container Insights logs of {settings.name}",
            tags=self._tags,
            logs_region=region,
            log_group_name=f"{log_group_prefix}/*",
            service_statements=[
                {
                    # CloudWatch alarms publish to the encrypted topic; SNS needs the data key from them.
                    "Sid": "CloudWatchAlarmsPublish",
                    "Effect": "Allow",
                    "Principal": {"Service": "cloudwatch.amazonaws.com"},
                    "Action": ["kms:Decrypt", "kms:GenerateDataKey*"],
                    "Resource": "*",
                }
            ],
        )
        self.topic = SnsTopic(
            self,
            "topic",
            name=f"{self._prefix}-alarms",
            display_name=f"Twenty CRM {settings.name} alarms",
            kms_master_key_id=self.key.arn,
            tags={**self._tags, "Name": f"{self._prefix}-alarms"},
        )
        for address in m.email_subscribers:
            # the ID comes from the address, not its position: reordering the list changes nothing
            suffix = hashlib.sha256(address.lower().encode()).hexdigest()[:8]
            SnsTopicSubscription(
                self, f"email-{suffix}", topic_arn=self.topic.arn, protocol="email", endpoint=address
            )

        self.log_groups = [
            CloudwatchLogGroup(
                self,
                f"logs-{kind}",
                name=f"{log_group_prefix}/{kind}",
                retention_in_days=m.log_retention_days,
                kms_key_id=self.key.arn,
                tags={**self._tags, "Name": f"{log_group_prefix}/{kind}"},
            )
            for kind in CONTAINER_INSIGHTS_LOG_GROUPS
        ]
        self.addon = self._observability_addon(cluster_name=cluster_name, after=[*after, *self.log_groups])

        self.alarms: dict[str, CloudwatchMetricAlarm] = {}
        self._alb_alarms(alb_arn_suffix, target_group_arn_suffix)
        self._database_alarms(db_instance_id, db_data_mount_point)
        for tier, asg in node_group_asg_names.items():
            self._alarm(
                f"nodes-{tier}-cpu",
                f"{tier} node group CPU above {m.thresholds.node_cpu_percent}% for 15 minutes: "
                f"raise cluster.{tier}.max_size or the instance type (docs/monitoring.md)",
                metric=("AWS/EC2", "CPUUtilization", {"AutoScalingGroupName": asg}, "Average"),
                threshold=m.thresholds.node_cpu_percent,
                period=300,
                periods=3,
            )
        for zone, nat in nat_gateway_ids.items():
            self._nat_alarms(zone, nat)
        self._waf_alarm(web_acl_name)
        self.dashboard = self._dashboard(
            alb=alb_arn_suffix,
            target_group=target_group_arn_suffix,
            db=db_instance_id,
            mount=db_data_mount_point,
            asgs=node_group_asg_names,
            nats=nat_gateway_ids,
        )

    # --- alarms ------------------------------------------------------------------------------

    def _alarm(
        self,
        construct_id: str,
        description: str,
        *,
        threshold: float,
        period: int = 60,
        periods: int = 1,
        datapoints: int | None = None,
        comparison: str = "GreaterThanThreshold",
        metric: tuple[str, str, Mapping[str, str], str] | None = None,
        queries: Sequence[CloudwatchMetricAlarmMetricQuery] = (),
        missing: str = "missing",
    ) -> CloudwatchMetricAlarm:
        page = self._settings.monitoring.alarm_mode == "page"
        actions = [self.topic.arn] if page else None
        single = {}
        if metric:
            namespace, name, dimensions, stat = metric
            single = {"namespace": namespace, "metric_name": name, "dimensions": dict(dimensions), "period": period}
            if stat.startswith("p"):
                single["extended_statistic"] = stat
            else:
                single["statistic"] = stat
        alarm = CloudwatchMetricAlarm(
            self,
            f"alarm-{construct_id}",
            alarm_name=f"{self._prefix}-{construct_id}",
            alarm_description=description,
            comparison_operator=comparison,
            threshold=threshold,
            evaluation_periods=periods,
            datapoints_to_alarm=datapoints or periods,
            treat_missing_data=missing,
            metric_query=list(queries) or None,
            alarm_actions=actions,
            ok_actions=actions,
            tags={**self._tags, "Name": f"{self._prefix}-{construct_id}"},
            **single,
        )
        self.alarms[construct_id] = alarm
        return alarm

    @staticmethod
    def _query(query_id: str, namespace: str, name: str, dimensions: Mapping[str, str], stat: str = "Sum",
               period: int = 300) -> CloudwatchMetricAlarmMetricQuery:  # fmt: skip
        return CloudwatchMetricAlarmMetricQuery(
            id=query_id,
            metric=CloudwatchMetricAlarmMetricQueryMetric(
                namespace=namespace, metric_name=name, dimensions=dict(dimensions), stat=stat, period=period
            ),
            return_data=False,
        )

    def _alb_alarms(self, alb: str, target_group: str) -> None:
        t = self._settings.monitoring.thresholds
        lb = {"LoadBalancer": alb}
        tg = {"LoadBalancer": alb, "TargetGroup": target_group}
        self._alarm(
            "alb-5xx-rate",
            f"More than {t.alb_5xx_percent}% of requests answered 5xx (ALB or Twenty) in 5 minutes",
            threshold=t.alb_5xx_percent,
            periods=2,
            datapoints=2,
            missing="notBreaching",  # no requests, no errors
            queries=[
                self._query("elb5xx", "AWS/ApplicationELB", "HTTPCode_ELB_5XX_Count", lb),
                self._query("target5xx", "AWS/ApplicationELB", "HTTPCode_Target_5XX_Count", lb),
                self._query("requests", "AWS/ApplicationELB", "RequestCount", lb),
                CloudwatchMetricAlarmMetricQuery(
                    id="rate",
                    label="5xx per 100 requests",
                    expression="IF(requests > 0, 100 * (FILL(elb5xx, 0) + FILL(target5xx, 0)) / requests, 0)",
                    return_data=True,
                ),
            ],
        )
        self._alarm(
            "alb-unhealthy-targets",
            f"{t.alb_unhealthy_targets} or more server pods fail the ALB health check for 3 minutes",
            metric=("AWS/ApplicationELB", "UnHealthyHostCount", tg, "Maximum"),
            threshold=t.alb_unhealthy_targets,
            comparison="GreaterThanOrEqualToThreshold",
            periods=3,
            missing="notBreaching",
        )
        self._alarm(
            "alb-no-healthy-targets",
            "No healthy server pod behind the ALB for 2 minutes: Twenty is down for every user",
            metric=("AWS/ApplicationELB", "HealthyHostCount", tg, "Minimum"),
            threshold=1,
            comparison="LessThanThreshold",
            periods=2,
            missing="breaching",
        )
        self._alarm(
            "alb-p99-latency",
            f"p99 response time of Twenty's server above {t.alb_p99_latency_seconds}s in 3 of 5 minutes",
            metric=("AWS/ApplicationELB", "TargetResponseTime", lb, "p99"),
            threshold=t.alb_p99_latency_seconds,
            periods=5,
            datapoints=3,
            missing="notBreaching",
        )

    def _database_alarms(self, instance_id: str, mount_point: str) -> None:
        t = self._settings.monitoring.thresholds
        host = {"InstanceId": instance_id}
        self._alarm(
            "db-cpu",
            f"Database host CPU above {t.db_cpu_percent}% for 15 minutes (docs/scaling.md: vertical path)",
            metric=("AWS/EC2", "CPUUtilization", host, "Average"),
            threshold=t.db_cpu_percent,
            period=300,
            periods=3,
        )
        self._alarm(
            "db-status-check",
            "Database host failed an EC2 status check (the system check also triggers auto-recovery)",
            metric=("AWS/EC2", "StatusCheckFailed", host, "Maximum"),
            threshold=1,
            comparison="GreaterThanOrEqualToThreshold",
            periods=2,
        )
        self._alarm(
            "db-memory",
            f"Database host memory above {t.db_memory_percent}% for 15 minutes (CloudWatch agent)",
            metric=(AGENT_NAMESPACE, "mem_used_percent", host, "Average"),
            threshold=t.db_memory_percent,
            period=300,
            periods=3,
        )
        self._alarm(
            "db-root-disk",
            f"Database host root disk above {t.db_root_disk_percent}% used (CloudWatch agent)",
            metric=(AGENT_NAMESPACE, "disk_used_percent", {**host, "path": "/"}, "Maximum"),
            threshold=t.db_root_disk_percent,
            period=300,
        )
        # The boot script publishes 1 when it fails part-way (packages, volume, cluster, secrets)
        # and 0 when it completes, once per run: between runs there is no data, and "ignore" keeps
        # the last state, so a failed boot stays ALARM until a re-run publishes 0 (docs/database.md).
        self._alarm(
            "db-boot-failed",
            "Database host boot script (twenty-db-setup) failed: PostgreSQL may not be serving. Read "
            "`cloud-init status --long` and the twenty-db-setup lines of its log (docs/troubleshooting.md)",
            metric=(BOOT_METRIC_NAMESPACE, BOOT_METRIC_NAME, host, "Maximum"),
            threshold=1,
            comparison="GreaterThanOrEqualToThreshold",
            missing="ignore",
        )
        self._alarm(
            "db-data-free",
            f"Less than {t.db_data_free_percent}% free on the PostgreSQL data volume: grow it "
            "(docs/scaling.md, database volume resize)",
            metric=(AGENT_NAMESPACE, "disk_used_percent", {**host, "path": mount_point}, "Maximum"),
            threshold=100 - t.db_data_free_percent,
            period=300,
        )

    def _nat_alarms(self, zone: str, nat_id: str) -> None:
        nat = {"NatGatewayId": nat_id}
        self._alarm(
            f"nat-{zone}-port-allocation",
            f"NAT gateway in zone {zone} could not allocate a source port: outbound connections fail",
            metric=("AWS/NATGateway", "ErrorPortAllocation", nat, "Sum"),
            threshold=0,
            period=300,
            missing="notBreaching",
        )
        self._alarm(
            f"nat-{zone}-packets-dropped",
            f"NAT gateway in zone {zone} dropped more than 0.01% of its packets in 5 minutes",
            threshold=0.01,
            periods=2,
            missing="notBreaching",
            queries=[
                self._query("dropped", "AWS/NATGateway", "PacketsDropCount", nat),
                self._query("fromsource", "AWS/NATGateway", "PacketsInFromSource", nat),
                self._query("fromdest", "AWS/NATGateway", "PacketsInFromDestination", nat),
                CloudwatchMetricAlarmMetricQuery(
                    id="droprate",
                    label="dropped packets, % of packets in",
                    expression="IF((fromsource + fromdest) > 0, 100 * FILL(dropped, 0) / (fromsource + fromdest), 0)",
                    return_data=True,
                ),
            ],
        )

    def _waf_alarm(self, web_acl: str) -> None:
        # WAF publishes per web ACL, Region and rule; Rule=ALL sums every rule. In count mode nothing is blocked and
        # CountedRequests is what would have been (AWS WAF Developer Guide, "AWS WAF metrics and dimensions").
        waf = self._settings.waf
        metric = "CountedRequests" if waf.mode == "count" else "BlockedRequests"
        self._alarm(
            "waf-blocked-requests",
            f"WAF {metric} above {waf.alarm_threshold} in 5 minutes: an attack, or a rule blocking Twenty's own "
            "traffic. Read the WAF logs (docs/edge.md, reading the logs) before tuning a rule",
            metric=("AWS/WAFV2", metric, {"WebACL": web_acl, "Region": self._settings.region, "Rule": "ALL"}, "Sum"),
            threshold=waf.alarm_threshold,
            period=300,
            missing="notBreaching",  # no request blocked, no data
        )

    # --- Container Insights ---------------------------------------------------------------

    def _observability_addon(self, *, cluster_name: str, after: Sequence[ITerraformDependable]) -> EksAddon:
        c = self._settings.cluster
        tags = {"Name": f"{c.name}-{OBSERVABILITY_ADDON}", "Component": self._settings.component(c.id)}
        role = IamRole(
            self,
            "observability-role",
            name=f"{c.name}-cloudwatch-agent",
            assume_role_policy=pod_identity_trust_policy(self.key.account_id),
            tags=tags,
            permissions_boundary=workload_boundary_arn(self._settings, partition=self.key.partition,
                                                       account=self.key.account_id),
        )
        IamRolePolicyAttachment(
            self,
            "observability-policy",
            role=role.name,
            policy_arn=f"arn:{self.key.partition}:iam::aws:policy/CloudWatchAgentServerPolicy",
        )
        return EksAddon(
            self,
            "addon-observability",
            cluster_name=cluster_name,
            addon_name=OBSERVABILITY_ADDON,
            addon_version=c.addons()[OBSERVABILITY_ADDON],
            resolve_conflicts_on_create="OVERWRITE",
            resolve_conflicts_on_update="OVERWRITE",
            pod_identity_association=[
                EksAddonPodIdentityAssociation(role_arn=role.arn, service_account=OBSERVABILITY_SERVICE_ACCOUNT)
            ],
            tags=tags,
            # its agents run as DaemonSets on the nodes; its log groups must exist before Fluent Bit makes them
            depends_on=list(after),
        )

    # --- dashboard ------------------------------------------------------------------------

    def _dashboard(self, *, alb: str, target_group: str, db: str, mount: str, asgs: Mapping[str, str],
                   nats: Mapping[str, str]) -> CloudwatchDashboard:  # fmt: skip
        region = self._settings.region

        def graph(title: str, metrics: list, *, stat: str = "Sum", x: int, y: int) -> dict:
            return {
                "type": "metric", "x": x, "y": y, "width": 12, "height": 6,
                "properties": {"title": title, "region": region, "stat": stat, "period": 300, "view": "timeSeries",
                               "metrics": metrics},
            }  # fmt: skip

        lb, tg = ["LoadBalancer", alb], ["LoadBalancer", alb, "TargetGroup", target_group]
        widgets = [
            {
                "type": "alarm", "x": 0, "y": 0, "width": 24, "height": 4,
                "properties": {"title": f"Alarms of {self._settings.name}",
                               "alarms": [a.arn for a in self.alarms.values()]},
            },  # fmt: skip
            graph("ALB requests and 5xx", [
                ["AWS/ApplicationELB", "RequestCount", *lb],
                ["AWS/ApplicationELB", "HTTPCode_ELB_5XX_Count", *lb],
                ["AWS/ApplicationELB", "HTTPCode_Target_5XX_Count", *lb],
            ], x=0, y=4),  # fmt: skip
            graph("Server response time p99 (s)", [["AWS/ApplicationELB", "TargetResponseTime", *lb]],
                  stat="p99", x=12, y=4),  # fmt: skip
            graph("Server pods healthy / unhealthy", [
                ["AWS/ApplicationELB", "HealthyHostCount", *tg],
                ["AWS/ApplicationELB", "UnHealthyHostCount", *tg],
            ], stat="Minimum", x=0, y=10),  # fmt: skip
            graph("Node groups CPU %", [
                ["AWS/EC2", "CPUUtilization", "AutoScalingGroupName", asg, {"label": tier}] for tier, asg in asgs.items()
            ], stat="Average", x=12, y=10),  # fmt: skip
            graph("Database host CPU, memory, disks %", [
                ["AWS/EC2", "CPUUtilization", "InstanceId", db, {"label": "cpu"}],
                [AGENT_NAMESPACE, "mem_used_percent", "InstanceId", db, {"label": "memory"}],
                [AGENT_NAMESPACE, "disk_used_percent", "InstanceId", db, "path", "/", {"label": "root disk"}],
                [AGENT_NAMESPACE, "disk_used_percent", "InstanceId", db, "path", mount, {"label": "data volume"}],
            ], stat="Average", x=0, y=16),  # fmt: skip
            graph("NAT gateways: port allocation errors, dropped packets", [
                ["AWS/NATGateway", metric, "NatGatewayId", nat, {"label": f"{zone} {metric}"}]
                for zone, nat in nats.items() for metric in ("ErrorPortAllocation", "PacketsDropCount")
            ], x=12, y=16),  # fmt: skip
        ]
        return CloudwatchDashboard(
            self, "dashboard", dashboard_name=self._prefix, dashboard_body=json.dumps({"widgets": widgets})
        )
