"""The state stack of every environment: bucket, lock table, key, and its own backend."""

from __future__ import annotations

import json

from cdktf import Testing as CdktfTesting  # renamed so pytest does not collect it
from conftest import build_stack, with_changes

from modules.stacks import StateStack


def test_bucket_is_named_from_settings_and_kept_on_destroy(state_stack, settings, env):
    assert CdktfTesting.to_have_resource_with_properties(
        state_stack.text, "aws_s3_bucket", {"bucket": settings[env].state.bucket, "force_destroy": False}
    )
    assert state_stack.by_path("aws_s3_bucket", "state/bucket")["tags"]["Component"] == f"{env}/terraform-state"


def test_bucket_is_versioned_encrypted_private_and_owner_enforced(state_stack):
    assert CdktfTesting.to_have_resource_with_properties(
        state_stack.text, "aws_s3_bucket_versioning", {"versioning_configuration": {"status": "Enabled"}}
    )
    sse = state_stack.by_path("aws_s3_bucket_server_side_encryption_configuration", "state/bucket-encryption")["rule"][0]
    assert sse["apply_server_side_encryption_by_default"]["sse_algorithm"] == "aws:kms"
    assert sse["apply_server_side_encryption_by_default"]["kms_master_key_id"].startswith("${aws_kms_key.")
    assert CdktfTesting.to_have_resource_with_properties(
        state_stack.text,
        "aws_s3_bucket_public_access_block",
        {"block_public_acls": True, "block_public_policy": True, "ignore_public_acls": True, "restrict_public_buckets": True},
    )
    assert CdktfTesting.to_have_resource_with_properties(
        state_stack.text, "aws_s3_bucket_ownership_controls", {"rule": {"object_ownership": "BucketOwnerEnforced"}}
    )


def test_bucket_policy_denies_requests_without_tls(state_stack):
    policy = json.loads(state_stack.by_path("aws_s3_bucket_policy", "state/bucket-policy")["policy"])
    [deny] = policy["Statement"]
    assert deny["Effect"] == "Deny" and deny["Principal"] == "*" and deny["Action"] == "s3:*"
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert len(deny["Resource"]) == 2 and deny["Resource"][1].endswith("/*")


def test_lifecycle_expires_old_versions_and_aborts_uploads(state_stack, settings, env):
    [rule] = state_stack.by_path("aws_s3_bucket_lifecycle_configuration", "state/bucket-lifecycle")["rule"]
    assert rule["status"] == "Enabled"
    assert rule["noncurrent_version_expiration"] == [
        {"noncurrent_days": settings[env].state.noncurrent_version_expiration_days}
    ]
    assert rule["abort_incomplete_multipart_upload"] == [{"days_after_initiation": 7}]


def test_key_rotates_and_its_policy_is_explicit(state_stack):
    key = state_stack.by_path("aws_kms_key", f"{state_stack.name}/state/key/key")
    assert key["enable_key_rotation"] is True
    statement = json.loads(key["policy"])["Statement"][0]
    assert statement["Action"] == "kms:*" and statement["Principal"]["AWS"].endswith(":root")
    alias = state_stack.by_path("aws_kms_alias", f"{state_stack.name}/state/key/alias")
    assert alias["name"] == f"alias/twentycrm-{state_stack.name.split('-')[1]}-tfstate"


def test_the_docker_hub_credential_is_the_state_stacks_without_a_value(state_stack, synthesized):
    """Created here, before the platform stack's pull-through cache rule needs it (docs/images.md); the platform
    stack only looks it up by name, and no stack holds a version (the value is an operator's)."""
    env = state_stack.name.split("-")[1]
    name = f"ecr-pullthroughcache/twentycrm/{env}/docker-hub"
    [secret] = state_stack.resources("aws_secretsmanager_secret").values()
    assert secret["name"] == name and secret["kms_key_id"].startswith("${aws_kms_key.registry-credential_key_")
    key = state_stack.by_path("aws_kms_key", "registry-credential/key/key")
    assert key["enable_key_rotation"] is True
    sids = [s.get("Sid") for s in json.loads(key["policy"])["Statement"]]
    assert "PullThroughCacheReadsCredential" in sids
    platform = synthesized.stack(f"twentycrm-{env}-platform").json
    assert [d["name"] for d in platform["data"]["aws_secretsmanager_secret"].values()] == [name]
    assert name not in {s["name"] for s in platform["resource"].get("aws_secretsmanager_secret", {}).values()}
    for stack in (state_stack.json, platform):
        assert "aws_secretsmanager_secret_version" not in stack["resource"]


def test_lock_table_matches_what_terraform_expects(state_stack, settings, env):
    table = state_stack.only("aws_dynamodb_table")
    assert table["name"] == settings[env].state.lock_table
    assert table["hash_key"] == "LockID"
    assert table["attribute"] == [{"name": "LockID", "type": "S"}]
    assert table["billing_mode"] == "PAY_PER_REQUEST"
    assert table["point_in_time_recovery"] == {"enabled": True}
    assert table["server_side_encryption"]["enabled"] is True
    assert table["server_side_encryption"]["kms_key_arn"].startswith("${aws_kms_key.")
    assert table["deletion_protection_enabled"] is (env == "prod")


def test_state_stack_bootstraps_on_a_local_backend_outside_cdktf_out(settings, env):
    """Before scripts/bootstrap moves it (own_backend "local", whatever this repository's env files reached)."""
    local = with_changes(settings[env], state={"own_backend": "local"}, ci={"handed_over": False})
    before = build_stack(StateStack, local)
    backend = before.json["terraform"]["backend"]
    assert backend == {"local": {"path": f"../../../terraform.{before.name}.tfstate"}}


def test_state_stack_moves_into_its_own_bucket_when_told(settings):
    migrated = with_changes(settings["prod"], state={"own_backend": "s3", "use_lockfile": True})
    backend = build_stack(StateStack, migrated).json["terraform"]["backend"]
    assert backend == {
        "s3": {
            "bucket": "olhai-twentycrm-prod-tfstate",
            "key": "twentycrm-prod-state/terraform.tfstate",
            "region": "sa-east-1",
            "encrypt": True,
            "kms_key_id": "alias/twentycrm-prod-tfstate",
            "dynamodb_table": "twentycrm-prod-tflock",
            "allowed_account_ids": ["777788889999"],
            "use_lockfile": True,
        }
    }


def test_state_stack_outputs_what_the_bootstrap_needs(state_stack):
    assert set(state_stack.json["output"]) >= {"state_bucket", "lock_table", "state_key_arn"}


def test_every_bucket_of_the_environment_sends_its_access_logs_to_the_state_stacks_log_bucket(synthesized, settings, env):
    """S3 server access logs: each bucket of every stack of the environment logs into <state bucket>-access-logs
    under its own name; that bucket logs nowhere (it would log its own logs), is SSE-S3 and admits only the
    logging service, for exactly those buckets of this account."""
    s = settings[env]
    log_bucket = s.state.access_log_bucket
    assert log_bucket == f"{s.state.bucket}-access-logs"
    logged = {}
    for part in ("state", "platform", "apps"):
        stack = synthesized.stack(s.stack_name(part))
        names = {f"${{aws_s3_bucket.{key}.id}}": b["bucket"] for key, b in stack.resources("aws_s3_bucket").items()}
        for logging in stack.resources("aws_s3_bucket_logging").values():
            target = logging["target_bucket"]  # the name, or in the state stack a reference to the bucket
            assert target == log_bucket or names.get(target.replace(".bucket}", ".id}")) == log_bucket, target
            logged[names[logging["bucket"]]] = logging["target_prefix"]
    expected = {s.state.bucket, s.load_balancer.access_log_bucket, s.database.dump_bucket, s.apps.files_bucket}
    assert logged == {b: f"{b}/" for b in expected}
    state = synthesized.stack(s.stack_name("state"))
    sse = state.by_path("aws_s3_bucket_server_side_encryption_configuration", "state/access-logs-encryption")
    assert sse["rule"][0]["apply_server_side_encryption_by_default"] == {"sse_algorithm": "AES256"}
    policy = json.loads(state.by_path("aws_s3_bucket_policy", "state/access-logs-policy")["policy"])
    [grant] = [st for st in policy["Statement"] if st["Effect"] == "Allow"]
    assert grant["Principal"] == {"Service": "logging.s3.amazonaws.com"} and grant["Action"] == "s3:PutObject"
    sources = grant["Condition"]["ArnLike"]["aws:SourceArn"]
    assert sorted(a.rsplit(":", 1)[1] for a in sources) == sorted(expected)
    assert grant["Condition"]["StringEquals"]["aws:SourceAccount"].startswith("${data.aws_caller_identity.")
    assert state.by_path("aws_s3_bucket", "state/access-logs")["force_destroy"] is (not s.state.deletion_protection)


def test_a_state_bucket_name_too_long_for_its_access_log_bucket_is_refused(tmp_path):
    from conftest import copy_envs, edit, problems_for

    envs = copy_envs(tmp_path)
    long_name = "olhai-twentycrm-dev-tfstate-" + "x" * 24  # 52 characters: 64 with -access-logs
    edit(envs / "dev.toml", 'bucket = "olhai-twentycrm-dev-tfstate"', f'bucket = "{long_name}"')
    message = problems_for(envs)
    assert "dev.toml" in message and "state.bucket" in message and "at most 51 characters" in message, message
