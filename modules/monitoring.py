"""Monitoring and alerting of one environment: topic, alarms, dashboard, Container Insights.

- one SNS topic, encrypted with its own rotating key, with the e-mail subscribers of the settings;
- CloudWatch alarms on the ALB (5xx rate, unhealthy and missing targets, p99 latency), the
  database host (CPU, status checks, memory and disks through the CloudWatch agent), each node
  group (CPU) and each NAT gateway (port allocation errors, dropped packets);
- ``monitoring.alarm_mode``: ``page`` sends alarm and recovery to the topic, ``record`` only keeps
  the alarm history (dev, qa);
- with ``dns.dnssec``, Route53's two DNSSEC alarms in us-east-1, the only region where Route53 publishes them, and
  their own topic there (an alarm notifies only a topic of its own region): ``DnssecAlarms``;
- an EventBridge rule that sends a request's deletion of a state or database dump object to the topic (the
  buckets send their events to EventBridge, modules/private_bucket.py): ``DeletionAlert``;
- the ``amazon-cloudwatch-observability`` EKS add-on (Container Insights) with its Pod Identity
  role, created after the node groups, and its log groups created first with retention and KMS;
- one dashboard per environment.

Thresholds and their reasons: docs/monitoring.md.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence

from cdktf import ITerraformDependable, TerraformProvider
from cdktf_cdktf_provider_aws.cloudwatch_event_rule import CloudwatchEventRule
from cdktf_cdktf_provider_aws.cloudwatch_event_target import CloudwatchEventTarget
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
from cdktf_cdktf_provider_aws.sns_topic_policy import SnsTopicPolicy
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
# Route53 publishes its hosted-zone metrics, the DNSSEC ones included, in us-east-1 only (Route53 developer guide,
# "Monitoring hosted zones using Amazon CloudWatch": "you must specify US East (N. Virginia) for the Region").
ROUTE53_METRICS_REGION = "us-east-1"
DNSSEC_METRICS = {
    "dnssec-internal-failure": (
        "DNSSECInternalFailure",
        "Route53 could not sign {zone}: resolvers will fail to validate it once the signatures expire. Read "
        "`aws route53 get-dnssec` (StatusMessage) and fix the KSK's key or its policy (docs/edge.md)",
    ),
    "dnssec-ksk-needs-action": (
        "DNSSECKeySigningKeysNeedingAction",
        "A key-signing key of {zone} needs action (ACTION_NEEDED): its KMS key is disabled, scheduled for deletion "
        "or its policy changed. Restore the key before the signatures expire (docs/edge.md)",
    ),
}
# S3's EventBridge event for an object deleted by a request (reason DeleteObject), as opposed to one a lifecycle
# rule expired (reason "Lifecycle Expiration"); both "Permanently Deleted" and "Delete Marker Created" are deletions
# (https://docs.aws.amazon.com/AmazonS3/latest/userguide/EventBridge.html and .../ev-events.html).
DELETION_DETAIL_TYPE = "Object Deleted"
DELETION_REASON = "DeleteObject"
# The S3 backend's lock object, which Terraform creates and deletes on every run with use_lockfile (not state).
TERRAFORM_LOCK_SUFFIX = ".tflock"


def deletion_event_pattern(bucket_names: Sequence[str]) -> dict:
    """The EventBridge pattern of an object in ``bucket_names`` deleted by a request (not by lifecycle)."""
    return {
        "source": ["aws.s3"],
        "detail-type": [DELETION_DETAIL_TYPE],
        "detail": {
            "bucket": {"name": sorted(bucket_names)},
            "reason": [DELETION_REASON],
            "object": {"key": [{"anything-but": {"suffix": TERRAFORM_LOCK_SUFFIX}}]},
        },
    }


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
        watched_buckets: Sequence[str] = (),
        zone_id: str | None = None,
        us_east_1: TerraformProvider | None = None,
    ) -> None:
        """``node_group_asg_names``: tier -> Auto Scaling group of the managed node group;
        ``nat_gateway_ids``: zone letter -> NAT gateway; ``after``: what the add-on waits for (the nodes);
        ``web_acl_name``: the WAF web ACL in front of the ALB (modules/waf.py); ``watched_buckets``: the buckets
        whose objects' deletion by a request is sent to the topic; ``zone_id`` and ``us_east_1`` (the us-east-1
        provider): the signed zone, required with ``dns.dnssec``."""
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
                },
                {
                    # the deletion alert's rule publishes to it too (EventBridge User Guide, "Amazon SNS
                    # permissions": an encrypted topic's key must let events.amazonaws.com use it)
                    "Sid": "EventBridgePublishes",
                    "Effect": "Allow",
                    "Principal": {"Service": "events.amazonaws.com"},
                    "Action": ["kms:Decrypt", "kms:GenerateDataKey*"],
                    "Resource": "*",
                },
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
        _subscribe(self, self.topic, m.email_subscribers)

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
        self.deletion_alert = DeletionAlert(
            self, "deletion-alert", prefix=self._prefix, topic=self.topic, buckets=watched_buckets,
            account_id=self.key.account_id, partition=self.key.partition, region=region, tags=self._tags,
        ) if watched_buckets else None  # fmt: skip
        self.dnssec_alarms = None
        if settings.dns.dnssec:
            if zone_id is None or us_east_1 is None:
                raise ValueError("dns.dnssec needs zone_id and the us-east-1 provider for its alarms")
            self.dnssec_alarms = DnssecAlarms(self, "dnssec-alarms", settings=settings, zone_id=zone_id,
                                              provider=us_east_1, tags=self._tags)  # fmt: skip
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


def _subscribe(scope: Construct, topic: SnsTopic, addresses: Sequence[str], provider=None) -> None:
    for address in addresses:
        # the ID comes from the address, not its position: reordering the list changes nothing
        suffix = hashlib.sha256(address.lower().encode()).hexdigest()[:8]
        SnsTopicSubscription(scope, f"email-{suffix}", topic_arn=topic.arn, protocol="email", endpoint=address,
                             provider=provider)  # fmt: skip


class DnssecAlarms(Construct):
    """Route53's two DNSSEC alarms on the zone, > 0, in us-east-1 (the only region with the metrics), and the topic
    they notify there: a CloudWatch alarm's SNS action must be a topic of the alarm's own region (CloudWatch User
    Guide, "Using Amazon SNS with CloudWatch alarms"; PutMetricAlarm's AlarmActions take
    ``arn:aws:sns:<region>:...``), so the environment's topic cannot serve. The topic has the environment's
    subscribers and its own key in us-east-1 (the region's other keys are Route53's: the KSK's, asymmetric, and the
    query logs', whose policy admits Logs only). ``monitoring.alarm_mode`` applies as to every other alarm.

    Exposes ``key``, ``topic`` and ``alarms`` (construct ID -> alarm)."""

    def __init__(self, scope: Construct, construct_id: str, *, settings: EnvironmentSettings, zone_id: str,
                 provider: TerraformProvider, tags: dict[str, str]) -> None:  # fmt: skip
        super().__init__(scope, construct_id)
        prefix = settings.stack_name("")[:-1]
        name = f"{prefix}-dnssec-alarms"
        self.key = EncryptionKey(
            self, "key", alias=name, provider=provider, tags=tags,
            description=f"Encrypts the us-east-1 topic of the DNSSEC alarms of {settings.name}",
            service_statements=[{
                "Sid": "CloudWatchAlarmsPublish", "Effect": "Allow",
                "Principal": {"Service": "cloudwatch.amazonaws.com"},
                "Action": ["kms:Decrypt", "kms:GenerateDataKey*"], "Resource": "*",
            }],
        )  # fmt: skip
        self.topic = SnsTopic(self, "topic", name=name, display_name=f"Twenty CRM {settings.name} DNSSEC alarms",
                              kms_master_key_id=self.key.arn, tags={**tags, "Name": name}, provider=provider)
        _subscribe(self, self.topic, settings.monitoring.email_subscribers, provider)
        actions = [self.topic.arn] if settings.monitoring.alarm_mode == "page" else None
        self.alarms = {
            alarm_id: CloudwatchMetricAlarm(
                self, f"alarm-{alarm_id}", provider=provider,
                alarm_name=f"{prefix}-{alarm_id}",
                alarm_description=description.format(zone=settings.zone_name),
                namespace="AWS/Route53", metric_name=metric, dimensions={"HostedZoneId": zone_id},
                statistic="Maximum", period=300, evaluation_periods=1, threshold=0,
                comparison_operator="GreaterThanThreshold",
                treat_missing_data="notBreaching",  # Route53 publishes nothing while all is well
                alarm_actions=actions, ok_actions=actions, tags={**tags, "Name": f"{prefix}-{alarm_id}"},
            )
            for alarm_id, (metric, description) in DNSSEC_METRICS.items()
        }  # fmt: skip


class DeletionAlert(Construct):
    """An EventBridge rule on the default bus: an object of ``buckets`` deleted by a request (not by a lifecycle
    rule) is sent to ``topic``, whatever ``monitoring.alarm_mode`` (a deleted state or dump is never noise). The
    topic's policy lets this rule publish (``aws:SourceArn``) and CloudWatch alarms of this account and region.

    Exposes ``rule``, ``target`` and ``topic_policy``."""

    def __init__(self, scope: Construct, construct_id: str, *, prefix: str, topic: SnsTopic, buckets: Sequence[str],
                 account_id: str, partition: str, region: str, tags: dict[str, str]) -> None:  # fmt: skip
        super().__init__(scope, construct_id)
        name = f"{prefix}-object-deleted"
        self.rule = CloudwatchEventRule(
            self, "rule", name=name, tags={**tags, "Name": name},
            description=f"A request deleted an object of {', '.join(sorted(buckets))} (docs/monitoring.md)",
            event_pattern=json.dumps(deletion_event_pattern(buckets)),
        )  # fmt: skip
        self.target = CloudwatchEventTarget(self, "target", rule=self.rule.name, arn=topic.arn)
        self.topic_policy = SnsTopicPolicy(self, "topic-policy", arn=topic.arn, policy=json.dumps({
            "Version": "2012-10-17",
            "Statement": [
                # replaces SNS's default policy; the account's own principals need none (IAM policies suffice within
                # an account), the two services that publish do
                {"Sid": "CloudWatchAlarmsPublish", "Effect": "Allow",
                 "Principal": {"Service": "cloudwatch.amazonaws.com"}, "Action": "sns:Publish",
                 "Resource": topic.arn, "Condition": {
                     "ArnLike": {"aws:SourceArn": f"arn:{partition}:cloudwatch:{region}:{account_id}:alarm:*"},
                     "StringEquals": {"aws:SourceAccount": account_id}}},
                {"Sid": "DeletionRulePublishes", "Effect": "Allow", "Principal": {"Service": "events.amazonaws.com"},
                 "Action": "sns:Publish", "Resource": topic.arn,
                 "Condition": {"ArnEquals": {"aws:SourceArn": self.rule.arn}}},
            ],
        }))  # fmt: skip
