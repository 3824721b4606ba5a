"""The account stack's life on an account of its own (issue 13): a private moto server plays dev's account, so
this module needs none of the session's moto state and runs beside the session's moto proofs (another xdist
worker). The README's bootstrap order (the account stack before any state stack), the Environment tag added in
place, and "Tear down an account stack", for real.
"""

from __future__ import annotations

import json

import pytest
from aws_requests import read_recording
from terraform_support import BOOTSTRAP_ENV, provider_aliases, write_json

from modules.account import OIDC_PROVIDER_ADDRESS

OIDC_HOST = "token.actions.githubusercontent.com"
READS = ("Get", "List", "Describe", "Head")


def _mutations(lines: list[str]) -> list[str]:
    return [c.action for c in read_recording("\n".join(lines)) if not c.operation.startswith(READS)]


def _account_stack_json(settings, **changes) -> str:
    """What ./scripts/synth writes for dev's account stack after the given [account] edits."""
    from cdktf import Testing

    from modules.account import AccountStack

    env = settings[BOOTSTRAP_ENV]  # alone in its account: its region and query logging are the account's
    account = env.account.model_copy(update=changes)
    return Testing.synth(AccountStack(Testing.app(), project="twentycrm", account=account, regions=[env.region],
                                      route53_query_logs=env.dns.query_logging))  # fmt: skip


@pytest.mark.slow
def test_an_account_stack_lives_and_is_torn_down_by_the_readme(terraform, synthesized, settings, tmp_path):
    """On an account of its own (a fresh moto server as dev's account):
    1. dev's state stack planned before the account stack stops at the OIDC provider lookup, changing nothing;
    2. an account stack applied with the former default tags (no Environment) gets Environment = "account" by
       in-place updates only: nothing replaced; switched to github_oidc_provider = "existing" it forgets the
       provider (plan: forget, apply: no call changes anything, the provider stays), and imports it back;
    3. README "Tear down an account stack": its state back to local, protection lifted, destroyed: the bucket
       (with its state versions), the table and the provider are gone. With protection on, destroy fails."""
    from terraform_support import LocalAws

    dev = settings[BOOTSTRAP_ENV]
    arn = f"arn:aws:iam::{dev.account.id}:oidc-provider/{OIDC_HOST}"
    (tmp_path / "moto").mkdir()
    with LocalAws(tmp_path / "moto", account_id=dev.account.id) as aws:
        # 1. the wrong order: no provider yet
        state = terraform.stack_copy(synthesized.outdir / "stacks" / dev.stack_name("state"), tmp_path / "state")
        write_json(state / "aws_override.tf.json", aws.provider_override())
        write_json(state / "backend_override.tf.json", {"terraform": {"backend": {"local": {"path": "s.tfstate"}}}})
        terraform.run(state, "init", "-input=false")
        with aws.recording() as lines:
            early = terraform.run(state, "plan", "-input=false", check=False)
        assert early.returncode == 1
        assert "Error: reading IAM OIDC Provider: operation error IAM: GetOpenIDConnectProvider" in early.stderr
        assert "NoSuchEntity" in early.stderr and f"not found for arn {arn}" in early.stderr, early.stderr
        assert _mutations(lines) == [], _mutations(lines)

        # 2. the account stack as the code before this change tagged it, then the Environment tag in place
        name = f"twentycrm-account-{dev.account.id}"
        account = terraform.stack_copy(synthesized.outdir / "stacks" / name, tmp_path / "account")
        former_tags = {"Project": "twentycrm", "Scope": "account", "ManagedBy": "cdktf"}
        override = aws.provider_override(provider_aliases(account))
        write_json(account / "aws_override.tf.json", {"provider": {"aws": [
            {**p, "default_tags": [{"tags": former_tags}]} for p in override["provider"]["aws"]]}})  # fmt: skip
        write_json(account / "backend_override.tf.json", {"terraform": {"backend": {"local": {"path": "a.tfstate"}}}})
        terraform.run(account, "init", "-input=false")
        terraform.run(account, "plan", "-input=false", "-out=first.tfplan")
        first = json.loads(terraform.run(account, "show", "-json", "first.tfplan").stdout)
        # Left out: the deny-unless-TLS bucket policy, which moto enforces without its condition
        # (STATE_STACK_NOT_APPLIED), and the lifecycle rule, whose apply waits a minute on moto for a consistent
        # read (the session's account_applied fixture applies both; they play no part in tags or teardown).
        # Left out too: the buckets' EventBridge notifications, whose `eventbridge` moto leaves out of its GET, so
        # every later plan would re-plan them (tests/test_platform_apply.py MOTO_READS_BACK_DIFFERENTLY).
        skipped = {"aws_s3_bucket_policy", "aws_s3_bucket_lifecycle_configuration", "aws_s3_bucket_notification"}
        targets = [f"-target={c['address']}" for c in first["resource_changes"] if c["type"] not in skipped]
        terraform.run(account, "apply", "-input=false", "-auto-approve", "-parallelism=32", *targets)
        write_json(account / "aws_override.tf.json", override)
        terraform.run(account, "plan", "-input=false", "-out=tags.tfplan", *targets)
        retag = json.loads(terraform.run(account, "show", "-json", "tags.tfplan").stdout)
        actions = {c["address"]: c["change"]["actions"] for c in retag["resource_changes"]}
        updated = [c for c in retag["resource_changes"] if c["change"]["actions"] == ["update"]]
        assert set(map(tuple, actions.values())) == {("update",), ("no-op",)}, actions  # nothing replaced
        assert {c["type"] for c in updated} == {"aws_kms_key", "aws_s3_bucket", "aws_dynamodb_table",
                                                "aws_iam_openid_connect_provider"}, actions  # fmt: skip
        for change in updated:
            before, after = change["change"]["before"], change["change"]["after"]
            assert {k for k in after if before.get(k) != after[k]} <= {"tags_all"}, change["address"]
            assert after["tags_all"]["Environment"] == "account", change["address"]
        terraform.run(account, "apply", "-input=false", "tags.tfplan")
        assert terraform.run(state, "plan", "-input=false").returncode == 0  # now the lookup succeeds

        # README "Bootstrap the account stack": github_oidc_provider "create" -> "existing" forgets the provider
        (account / "cdk.tf.json").write_text(_account_stack_json(settings, github_oidc_provider="existing"))
        terraform.run(account, "plan", "-input=false", "-out=existing.tfplan", *targets)
        switch = json.loads(terraform.run(account, "show", "-json", "existing.tfplan").stdout)["resource_changes"]
        changed = {c["address"]: c["change"]["actions"] for c in switch if c["change"]["actions"] != ["no-op"]}
        assert changed == {OIDC_PROVIDER_ADDRESS: ["forget"]}, changed
        with aws.recording() as lines:
            terraform.run(account, "apply", "-input=false", "existing.tfplan")
        assert _mutations(lines) == [], _mutations(lines)  # no iam:DeleteOpenIDConnectProvider
        assert OIDC_PROVIDER_ADDRESS not in terraform.run(account, "state", "list").stdout
        assert aws.client("iam").get_open_id_connect_provider(OpenIDConnectProviderArn=arn)["Url"] == OIDC_HOST
        # and back ("existing" -> "create"): the README imports it, after which the plan changes nothing
        (account / "cdk.tf.json").write_text(_account_stack_json(settings))
        terraform.run(account, "import", "-input=false", OIDC_PROVIDER_ADDRESS, arn)
        back = terraform.run(account, "plan", "-input=false", "-detailed-exitcode", *targets, check=False)
        assert back.returncode == 0, back.stdout + back.stderr

        # bootstrap's end: the account stack's state in its own bucket (own_backend = "s3")
        s3 = json.loads(_account_stack_json(settings, own_backend="s3"))["terraform"]["backend"]["s3"]
        write_json(account / "backend_override.tf.json", {"terraform": {"backend": {"s3": s3}}})
        flags = aws.backend_config_flags(bucket=dev.account.state_bucket, lock_table=dev.account.lock_table)
        terraform.run(account, "init", "-input=false", "-migrate-state", "-force-copy", *flags)

        # 3. the runbook: state back to local (own_backend = "local"), then deletion_protection = false, apply
        write_json(account / "backend_override.tf.json", {"terraform": {"backend": {"local": {"path": "a.tfstate"}}}})
        terraform.run(account, "init", "-input=false", "-migrate-state", "-force-copy")
        assert aws.client("s3").list_object_versions(Bucket=dev.account.state_bucket).get("Versions")
        with aws.recording() as lines:
            refused = terraform.run(account, "destroy", "-input=false", "-auto-approve", check=False)
        assert refused.returncode == 1 and "Instance cannot be destroyed" in refused.stderr, refused.stderr
        assert _mutations(lines) == [], "a protected account stack's destroy changed something"
        (account / "cdk.tf.json").write_text(_account_stack_json(settings, deletion_protection=False))
        terraform.run(account, "plan", "-input=false", "-out=lift.tfplan", *targets)
        lift = json.loads(terraform.run(account, "show", "-json", "lift.tfplan").stdout)["resource_changes"]
        assert {c["type"]: c["change"]["after"].get("deletion_protection_enabled", c["change"]["after"].get(
            "force_destroy")) for c in lift if c["change"]["actions"] != ["no-op"]} == {
            "aws_dynamodb_table": False, "aws_s3_bucket": True}, lift  # fmt: skip
        terraform.run(account, "apply", "-input=false", "lift.tfplan")
        with aws.recording() as lines:
            terraform.run(account, "destroy", "-input=false", "-auto-approve")
        assert terraform.run(account, "state", "list", check=False).stdout.strip() == ""
        assert dev.account.state_bucket not in [b["Name"] for b in aws.client("s3").list_buckets()["Buckets"]]
        assert dev.account.lock_table not in aws.client("dynamodb").list_tables()["TableNames"]
        providers = aws.client("iam").list_open_id_connect_providers()["OpenIDConnectProviderList"]
        assert arn not in [p["Arn"] for p in providers]
        deleted = {c.action for c in read_recording("\n".join(lines))}
        assert {"iam:DeleteOpenIDConnectProvider", "dynamodb:DeleteTable", "s3:DeleteBucket"} <= deleted, deleted


