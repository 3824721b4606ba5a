"""Monitoring of every environment: topic, alarms, dashboard, Container Insights add-on, log groups."""

from __future__ import annotations

import json

import pytest
from conftest import build_stack, copy_envs, edit, problems_for, with_changes

from modules.database import MOUNT_POINT
from modules.monitoring import CONTAINER_INSIGHTS_LOG_GROUPS, OBSERVABILITY_ADDON
from modules.settings import SettingsError, load_all
from modules.stacks import PlatformStack

EXPECTED_ALARMS = {
    "alb-5xx-rate", "alb-unhealthy-targets", "alb-no-healthy-targets", "alb-p99-latency",
    "db-cpu", "db-status-check", "db-memory", "db-root-disk", "db-boot-failed", "db-data-free",
    "nodes-frontend-cpu", "nodes-backend-cpu", "waf-blocked-requests",
}  # fmt: skip


def alarms(stack) -> dict[str, dict]:
    """Monitoring's alarms in the environment's region by their name without the '<project>-<env>-' prefix."""
    found = {}
    for alarm in stack.resources("aws_cloudwatch_metric_alarm").values():
        if alarm.get("provider") == "aws.us_east_1":
            continue  # the DNSSEC alarms (dnssec_alarms)
        name = alarm["alarm_name"].split("-", 2)[2]
        if name != "db-recover":  # the database's own auto-recovery alarm (tests/test_database.py)
            found[name] = alarm
    return found


def dnssec_alarms(stack) -> dict[str, dict]:
    """The alarms built through the us-east-1 provider, by name without the prefix."""
    return {a["alarm_name"].split("-", 2)[2]: a for a in stack.resources("aws_cloudwatch_metric_alarm").values()
            if a.get("provider") == "aws.us_east_1"}  # fmt: skip


def ref(resource_type: str, resource: dict, attribute: str = "arn") -> str:
    return "${%s.%s.%s}" % (resource_type, resource["//"]["metadata"]["uniqueId"], attribute)


def test_topic_is_encrypted_with_its_own_rotating_key(platform_stack, env):
    topic = platform_stack.by_path("aws_sns_topic", "monitoring/topic")
    assert "provider" not in topic
    assert topic["name"] == f"twentycrm-{env}-alarms"
    assert topic["kms_master_key_id"].startswith("${aws_kms_key.monitoring_key_")
    key = platform_stack.by_path("aws_kms_key", "monitoring/key/key")
    assert key["enable_key_rotation"] is True
    statements = json.loads(key["policy"])["Statement"]
    cloudwatch = [s for s in statements if s["Principal"] == {"Service": "cloudwatch.amazonaws.com"}]
    assert cloudwatch and set(cloudwatch[0]["Action"]) == {"kms:Decrypt", "kms:GenerateDataKey*"}


def test_email_subscribers_come_from_the_settings(platform_stack, settings, env):
    subscriptions = platform_stack.resources("aws_sns_topic_subscription").values()
    main = [s for s in subscriptions if "provider" not in s]
    assert sorted(s["endpoint"] for s in main) == sorted(settings[env].monitoring.email_subscribers)
    assert all(s["protocol"] == "email" for s in subscriptions)


def test_every_alarm_exists_once_per_environment(platform_stack, settings):
    nat = {f"nat-{zone}-{what}" for zone in platform_nat_zones(platform_stack) for what in ("port-allocation", "packets-dropped")}
    assert set(alarms(platform_stack)) == EXPECTED_ALARMS | nat


def platform_nat_zones(stack) -> list[str]:
    return [g["//"]["metadata"]["path"].rsplit("nat-", 1)[1] for g in stack.resources("aws_nat_gateway").values()]


def test_prod_has_a_nat_alarm_pair_per_zone_dev_one(synthesized):
    prod = synthesized.stack("twentycrm-prod-platform")
    dev = synthesized.stack("twentycrm-dev-platform")
    assert len([a for a in alarms(prod) if a.startswith("nat-")]) == 4
    assert len([a for a in alarms(dev) if a.startswith("nat-")]) == 2


def test_prod_pages_and_dev_only_records(platform_stack, settings, env):
    page = settings[env].monitoring.alarm_mode == "page"
    assert page == (env == "prod")
    for name, alarm in alarms(platform_stack).items():
        if page:
            assert alarm["alarm_actions"] == alarm["ok_actions"] == ["${aws_sns_topic.monitoring_topic_631C3BE1.arn}"], name
        else:
            assert "alarm_actions" not in alarm and "ok_actions" not in alarm, name


def test_thresholds_come_from_the_settings(platform_stack, settings, env):
    t = settings[env].monitoring.thresholds
    found = alarms(platform_stack)
    assert found["alb-5xx-rate"]["threshold"] == t.alb_5xx_percent
    assert found["alb-p99-latency"]["threshold"] == t.alb_p99_latency_seconds
    assert found["alb-p99-latency"]["extended_statistic"] == "p99"
    assert found["alb-unhealthy-targets"]["threshold"] == t.alb_unhealthy_targets
    assert found["db-cpu"]["threshold"] == t.db_cpu_percent
    assert found["db-memory"]["threshold"] == t.db_memory_percent
    assert found["db-data-free"]["threshold"] == 100 - t.db_data_free_percent
    assert found["nodes-frontend-cpu"]["threshold"] == t.node_cpu_percent


def test_alarms_watch_the_real_resources(platform_stack):
    found = alarms(platform_stack)
    rate = {q["id"]: q for q in found["alb-5xx-rate"]["metric_query"]}
    assert rate["requests"]["metric"]["dimensions"]["LoadBalancer"].startswith("${aws_lb.load-balancer_alb_")
    assert rate["rate"]["return_data"] is True and "requests > 0" in rate["rate"]["expression"]
    tg = found["alb-unhealthy-targets"]["dimensions"]
    assert tg["TargetGroup"].startswith("${aws_lb_target_group.") and tg["TargetGroup"].endswith(".arn_suffix}")
    for name in ("db-cpu", "db-status-check", "db-memory", "db-root-disk", "db-data-free"):
        assert found[name]["dimensions"]["InstanceId"].startswith("${aws_instance.database_instance_"), name
    assert (found["db-memory"]["namespace"], found["db-memory"]["metric_name"]) == ("CWAgent", "mem_used_percent")
    assert found["db-data-free"]["dimensions"]["path"] == MOUNT_POINT
    assert found["db-root-disk"]["dimensions"]["path"] == "/"
    asg = found["nodes-backend-cpu"]["dimensions"]["AutoScalingGroupName"]
    assert asg.startswith("${aws_eks_node_group.backend-nodes_node-group_") and "autoscaling_groups[0].name" in asg
    nat = next(a for n, a in found.items() if n.endswith("port-allocation"))
    assert nat["dimensions"]["NatGatewayId"].startswith("${aws_nat_gateway.network_nat-")


def test_the_database_agent_publishes_what_the_alarms_read(platform_stack):
    """The CWAgent alarms would sit in INSUFFICIENT_DATA forever if the host did not publish these series."""
    user_data = platform_stack.local("database_boot-config")  # sent gzipped as the instance's user data
    assert "amazon-cloudwatch-agent" in user_data and '["InstanceId", "path"]' in user_data
    assert f'"resources": ["/", "{MOUNT_POINT}"]' in user_data and "mem_used_percent" in user_data
    policies = [a["policy_arn"] for a in platform_stack.resources("aws_iam_role_policy_attachment").values()
                if a["//"]["metadata"]["path"].endswith("database/cloudwatch-agent")]  # fmt: skip
    assert len(policies) == 1 and policies[0].endswith(":iam::aws:policy/CloudWatchAgentServerPolicy")


def test_one_dashboard_per_environment_shows_every_alarm(platform_stack, env):
    dashboard = platform_stack.only("aws_cloudwatch_dashboard")
    assert dashboard["dashboard_name"] == f"twentycrm-{env}"
    body = json.loads(dashboard["dashboard_body"])
    [status] = [w for w in body["widgets"] if w["type"] == "alarm"]
    assert len(status["properties"]["alarms"]) == len(alarms(platform_stack))
    titles = " ".join(w["properties"]["title"] for w in body["widgets"])
    for part in ("ALB", "Database", "Node groups", "NAT"):
        assert part in titles


def test_container_insights_addon_is_pinned_and_comes_after_the_nodes(platform_stack, settings, env):
    [addon] = [a for a in platform_stack.resources("aws_eks_addon").values() if a["addon_name"] == OBSERVABILITY_ADDON]
    assert addon["addon_version"] == settings[env].cluster.addons()[OBSERVABILITY_ADDON]
    assert any(d.startswith("aws_eks_node_group.frontend-nodes") for d in addon["depends_on"])
    assert any(d.startswith("aws_eks_node_group.backend-nodes") for d in addon["depends_on"])
    [association] = addon["pod_identity_association"]
    assert association["service_account"] == "cloudwatch-agent"
    role = platform_stack.by_path("aws_iam_role", "monitoring/observability-role")
    assert association["role_arn"] == "${aws_iam_role.monitoring_observability-role_79B196AD.arn}"
    assert json.loads(role["assume_role_policy"])["Statement"][0]["Principal"] == {"Service": "pods.eks.amazonaws.com"}


def test_container_insights_log_groups_have_retention_and_a_key(platform_stack, settings, env):
    cluster = settings[env].cluster.name
    groups = {g["name"]: g for g in platform_stack.resources("aws_cloudwatch_log_group").values()}
    for kind in CONTAINER_INSIGHTS_LOG_GROUPS:
        group = groups[f"/aws/containerinsights/{cluster}/{kind}"]
        assert group["retention_in_days"] == settings[env].monitoring.log_retention_days
        assert group["kms_key_id"].startswith("${aws_kms_key.monitoring_key_")
    # every log group of the stack is encrypted and expires
    assert all(g.get("kms_key_id") and g.get("retention_in_days") for g in groups.values())


def test_record_mode_can_page_and_subscribers_are_added(settings):
    changed = with_changes(
        settings["dev"], monitoring={"alarm_mode": "page", "email_subscribers": ("a@example.com", "b@example.com")}
    )
    stack = build_stack(PlatformStack, changed)
    subscriptions = list(stack.resources("aws_sns_topic_subscription").values())
    # the same two addresses on the environment's topic and on the DNSSEC alarms' topic in us-east-1
    assert sorted((s.get("provider", "aws"), s["endpoint"]) for s in subscriptions) == [
        ("aws", "a@example.com"), ("aws", "b@example.com"),
        ("aws.us_east_1", "a@example.com"), ("aws.us_east_1", "b@example.com"),
    ]
    [dnssec_topic] = [i for i in stack.resources("aws_sns_topic") if i.startswith("monitoring_dnssec-alarms_topic")]
    assert {s["topic_arn"] for s in subscriptions if s.get("provider")} == {f"${{aws_sns_topic.{dnssec_topic}.arn}}"}
    assert all("alarm_actions" in a for a in [*alarms(stack).values(), *dnssec_alarms(stack).values()])


# --- DNSSEC alarms (us-east-1) -------------------------------------------------------------


def test_dnssec_alarms_watch_the_zone_in_us_east_1(platform_stack, settings, env):
    assert settings[env].dns.dnssec  # every shipped environment signs its zone
    found = dnssec_alarms(platform_stack)
    assert set(found) == {"dnssec-internal-failure", "dnssec-ksk-needs-action"}
    zone = platform_stack.by_path("aws_route53_zone", "dns/zone")
    topic = platform_stack.by_path("aws_sns_topic", "monitoring/dnssec-alarms/topic")
    assert topic["provider"] == "aws.us_east_1" and topic["name"] == f"twentycrm-{env}-dnssec-alarms"
    page = settings[env].monitoring.alarm_mode == "page"
    for alarm in found.values():
        assert (alarm["namespace"], alarm["comparison_operator"], alarm["threshold"]) == (
            "AWS/Route53", "GreaterThanThreshold", 0)
        assert alarm["dimensions"] == {"HostedZoneId": ref("aws_route53_zone", zone, "zone_id")}
        if page:
            assert alarm["alarm_actions"] == alarm["ok_actions"] == [ref("aws_sns_topic", topic)]
        else:
            assert "alarm_actions" not in alarm and "ok_actions" not in alarm
    assert {a["metric_name"] for a in found.values()} == {"DNSSECInternalFailure", "DNSSECKeySigningKeysNeedingAction"}


def test_dnssec_alarm_topic_has_its_own_us_east_1_key_that_cloudwatch_may_use(platform_stack):
    topic = platform_stack.by_path("aws_sns_topic", "monitoring/dnssec-alarms/topic")
    key = platform_stack.by_path("aws_kms_key", "monitoring/dnssec-alarms/key/key")
    assert key["provider"] == "aws.us_east_1" and key["enable_key_rotation"] is True
    assert topic["kms_master_key_id"] == ref("aws_kms_key", key)
    statements = {s["Sid"]: s for s in json.loads(key["policy"])["Statement"]}
    assert statements["CloudWatchAlarmsPublish"]["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    # nothing else of us-east-1 (the KSK's signing key, the query logs' key) is used for it
    others = [k for k in platform_stack.resources("aws_kms_key").values()
              if k.get("provider") == "aws.us_east_1" and "dnssec-alarms" not in k["//"]["metadata"]["path"]]
    assert others and all(topic["kms_master_key_id"] != ref("aws_kms_key", k) for k in others)


def test_no_dnssec_alarms_without_dnssec(settings):
    stack = build_stack(PlatformStack, with_changes(settings["prod"], dns={"dnssec": False}))
    assert dnssec_alarms(stack) == {}
    ids = [i for t in ("aws_sns_topic", "aws_kms_key", "aws_sns_topic_subscription") for i in stack.resources(t)]
    assert ids and not [i for i in ids if "dnssec-alarms" in i]
    assert "dnssec_alarm_topic_arn" not in stack.json.get("output", {})


# --- deletion alert (S3 -> EventBridge -> the alarm topic) ------------------------------------------------

# AWS's own samples of the event S3 sends to EventBridge, verbatim but for the bucket name (S3 User Guide,
# "EventBridge event message structure": "Object deleted (using DeleteObject)" and "(using lifecycle expiration)").
DELETE_OBJECT_SAMPLE = {
    "version": "0", "id": "2ee9cc15-d022-99ea-1fb8-1b1bac4850f9", "detail-type": "Object Deleted",
    "source": "aws.s3", "account": "111122223333", "time": "2021-11-12T00:00:00Z", "region": "ca-central-1",
    "resources": ["arn:aws:s3:::DOC-EXAMPLE-BUCKET1"],
    "detail": {
        "version": "0", "bucket": {"name": "DOC-EXAMPLE-BUCKET1"},
        "object": {"key": "example-key", "etag": "d41d8cd98f00b204e9800998ecf8427e",
                   "version-id": "1QW9g1Z99LUNbvaaYVpW9xDlOLU.qxgF", "sequencer": "617f0837b476e463"},
        "request-id": "0BH729840619AG5K", "requester": "123456789012", "source-ip-address": "1.2.3.4",
        "reason": "DeleteObject", "deletion-type": "Delete Marker Created",
    },
}  # fmt: skip
LIFECYCLE_EXPIRATION_SAMPLE = {
    "version": "0", "id": "ad1de317-e409-eba2-9552-30113f8d88e3", "detail-type": "Object Deleted",
    "source": "aws.s3", "account": "111122223333", "time": "2021-11-12T00:00:00Z", "region": "ca-central-1",
    "resources": ["arn:aws:s3:::DOC-EXAMPLE-BUCKET1"],
    "detail": {
        "version": "0", "bucket": {"name": "DOC-EXAMPLE-BUCKET1"},
        "object": {"key": "example-key", "etag": "d41d8cd98f00b204e9800998ecf8427e",
                   "version-id": "mtB0cV.jejK63XkRNceanNMC.qXPWLeK", "sequencer": "617b398000000000"},
        "request-id": "20EB74C14654DC47", "requester": "s3.amazonaws.com",
        "reason": "Lifecycle Expiration", "deletion-type": "Delete Marker Created",
    },
}  # fmt: skip


def in_bucket(sample: dict, bucket: str, key: str = "example-key", **detail) -> dict:
    event = json.loads(json.dumps(sample))
    event["resources"] = [f"arn:aws:s3:::{bucket}"]
    event["detail"]["bucket"]["name"] = bucket
    event["detail"]["object"]["key"] = key
    event["detail"].update(detail)
    return event


def deletion_rule_matches(stack, event: dict) -> bool:
    """The synthesized rule's pattern judged by moto's EventBridge pattern engine (moto/events/models.py)."""
    from moto.events.models import EventPattern

    rule = stack.by_path("aws_cloudwatch_event_rule", "monitoring/deletion-alert/rule")
    return EventPattern.load(rule["event_pattern"]).matches_event(event)


def test_deleting_state_or_a_dump_by_request_alerts_and_lifecycle_does_not(platform_stack, settings, env):
    s = settings[env]
    for bucket, key in ((s.state.bucket, f"twentycrm-{env}-platform/terraform.tfstate"),
                        (s.database.dump_bucket, "twenty/2026-11-26.dump")):  # fmt: skip
        assert deletion_rule_matches(platform_stack, in_bucket(DELETE_OBJECT_SAMPLE, bucket, key)), bucket
        permanent = in_bucket(DELETE_OBJECT_SAMPLE, bucket, key, **{"deletion-type": "Permanently Deleted"})
        assert deletion_rule_matches(platform_stack, permanent), bucket
        assert not deletion_rule_matches(platform_stack, in_bucket(LIFECYCLE_EXPIRATION_SAMPLE, bucket, key)), bucket
    # Twenty deletes its attachments itself, the ALB's logs and the access logs only expire: no alert
    for bucket in (s.apps.files_bucket, s.load_balancer.access_log_bucket, f"{s.state.bucket}-access-logs"):
        assert not deletion_rule_matches(platform_stack, in_bucket(DELETE_OBJECT_SAMPLE, bucket)), bucket
    # the S3 backend's lock object comes and goes with every run when use_lockfile is on
    lock = in_bucket(DELETE_OBJECT_SAMPLE, s.state.bucket, f"twentycrm-{env}-platform/terraform.tfstate.tflock")
    assert not deletion_rule_matches(platform_stack, lock)


def test_deletion_rule_publishes_to_the_alarm_topic_and_only_it_may(platform_stack):
    rule = platform_stack.by_path("aws_cloudwatch_event_rule", "monitoring/deletion-alert/rule")
    target = platform_stack.only("aws_cloudwatch_event_target")
    topic = platform_stack.by_path("aws_sns_topic", "monitoring/topic")
    assert target["arn"] == ref("aws_sns_topic", topic) and target["rule"] == ref("aws_cloudwatch_event_rule", rule,
                                                                                     "name")
    policy = platform_stack.by_path("aws_sns_topic_policy", "monitoring/deletion-alert/topic-policy")
    assert policy["arn"] == ref("aws_sns_topic", topic)
    statements = {s["Sid"]: s for s in json.loads(policy["policy"])["Statement"]}
    events = statements["DeletionRulePublishes"]
    assert events["Principal"] == {"Service": "events.amazonaws.com"} and events["Action"] == "sns:Publish"
    assert events["Condition"] == {"ArnEquals": {"aws:SourceArn": ref("aws_cloudwatch_event_rule", rule)}}
    assert statements["CloudWatchAlarmsPublish"]["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    key = platform_stack.by_path("aws_kms_key", "monitoring/key/key")
    principals = [s["Principal"] for s in json.loads(key["policy"])["Statement"]]
    assert {"Service": "events.amazonaws.com"} in principals  # an encrypted topic: EventBridge needs the key


def test_every_bucket_sends_its_events_to_eventbridge(synthesized):
    """CKV2_AWS_62 is no longer accepted: every bucket of every stack has its notification configuration."""
    checked = 0
    for name in synthesized.names:
        stack = synthesized.stack(name)
        notified = {n["bucket"]: n for n in stack.resources("aws_s3_bucket_notification").values()}
        for bucket in stack.resources("aws_s3_bucket").values():
            notification = notified.get(ref("aws_s3_bucket", bucket, "id"))
            assert notification and notification["eventbridge"] is True, bucket["bucket"]
            checked += 1
    assert checked >= 5 * 3  # state, access logs, ALB logs, dumps and files of each environment


# --- bad settings -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('alarm_mode = "record"', 'alarm_mode = "loud"', "monitoring.alarm_mode: allowed values are 'page' or 'record'"),
        ("email_subscribers = []", 'email_subscribers = ["oncall"]', "monitoring.email_subscribers.0: 'oncall' is not an e-mail"),
        ("db_data_free_percent = 20.0", "db_data_free_percent = 100", "monitoring.thresholds.db_data_free_percent"),
        ("alb_5xx_percent = 5.0", "alb_5xx_percnt = 5.0", "monitoring.thresholds.alb_5xx_percnt: unknown key"),
        ("log_retention_days = 365    # Container", "log_retention_days = 31    # Container", "monitoring.log_retention_days"),
    ],
)
def test_bad_monitoring_settings_are_named(tmp_path, old, new, message):
    envs = copy_envs(tmp_path)
    path = envs / "dev.toml"
    edit(path, old, new)
    assert f"{path}: {message}" in problems_for(envs)


def test_duplicate_subscribers_are_rejected(tmp_path):
    envs = copy_envs(tmp_path)
    path = envs / "dev.toml"
    path.write_text(path.read_text().replace("email_subscribers = []", 'email_subscribers = ["a@example.com", "a@example.com"]'))
    with pytest.raises(SettingsError, match="a@example.com more than once"):
        load_all(envs)
