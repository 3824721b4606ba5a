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
    """Monitoring's alarms by their name without the '<project>-<env>-' prefix."""
    found = {}
    for alarm in stack.resources("aws_cloudwatch_metric_alarm").values():
        name = alarm["alarm_name"].split("-", 2)[2]
        if name != "db-recover":  # the database's own auto-recovery alarm (tests/test_database.py)
            found[name] = alarm
    return found


def test_topic_is_encrypted_with_its_own_rotating_key(platform_stack, env):
    topic = platform_stack.only("aws_sns_topic")
    assert topic["name"] == f"twentycrm-{env}-alarms"
    assert topic["kms_master_key_id"].startswith("${aws_kms_key.monitoring_key_")
    key = platform_stack.by_path("aws_kms_key", "monitoring/key/key")
    assert key["enable_key_rotation"] is True
    statements = json.loads(key["policy"])["Statement"]
    cloudwatch = [s for s in statements if s["Principal"] == {"Service": "cloudwatch.amazonaws.com"}]
    assert cloudwatch and set(cloudwatch[0]["Action"]) == {"kms:Decrypt", "kms:GenerateDataKey*"}


def test_email_subscribers_come_from_the_settings(platform_stack, settings, env):
    subscriptions = platform_stack.resources("aws_sns_topic_subscription").values()
    assert sorted(s["endpoint"] for s in subscriptions) == sorted(settings[env].monitoring.email_subscribers)
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
    assert len(stack.resources("aws_sns_topic_subscription")) == 2
    assert all("alarm_actions" in a for a in alarms(stack).values())


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
