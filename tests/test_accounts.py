"""One AWS account per environment (issue 13): every provider and backend names its account, the account
stack owns what exists once per account, and a stack aimed at the wrong account stops before changing anything.

The synthesized checks read the session's synth; the proofs run the real terraform CLI and provider against the
session's moto server, which plays dev's account (terraform_support.local_aws), so qa's stacks are "the wrong
profile": the same credentials, another environment's account.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from aws_requests import read_recording
from conftest import add_staging, copy_envs
from terraform_support import BOOTSTRAP_ENV, provider_aliases, write_json

from modules.account import OIDC_PROVIDER_ADDRESS
from modules.stacks import FORMER_OIDC_PROVIDER_ADDRESS

OIDC_HOST = "token.actions.githubusercontent.com"
# The provider's and the S3 backend's own words (hashicorp/aws-sdk-go-base config.VerifyAccountIDAllowed;
# terraform internal/backend/remote-state/s3/backend.go adds the summary "Invalid account ID").
NOT_ALLOWED = "AWS account ID not allowed: {}"
READS = ("Get", "List", "Describe", "Head")
# How the provider and the backend learn the account (aws-sdk-go-base GetAwsAccountIDAndPartition: IAM's GetUser,
# then STS's GetCallerIdentity): the only calls a wrong-account run may make.
ACCOUNT_LOOKUPS = {"iam:GetUser", "sts:GetCallerIdentity"}


def _account_stacks(settings) -> dict[str, str]:
    return {env.account.id: f"twentycrm-account-{env.account.id}" for env in settings.values()}


def _stacks_of(settings, env: str) -> list[str]:
    return [f"twentycrm-{env}-{part}" for part in ("state", "platform", "apps")]


# --- synthesized -----------------------------------------------------------------------------


def test_one_account_stack_per_distinct_account_first(synthesized, settings):
    accounts = _account_stacks(settings)
    first = len(accounts)  # the shipped files: one placeholder account per environment; a file added may share one
    assert list(synthesized.names[:first]) == sorted(accounts.values(), key=list(synthesized.names).index)
    assert set(synthesized.names[:first]) == set(accounts.values())
    assert set(synthesized.names[first:]) == {s for env in settings for s in _stacks_of(settings, env)}


def test_every_provider_and_backend_refuses_other_accounts(synthesized, settings):
    by_stack = {s: env.account.id for env in settings.values() for s in _stacks_of(settings, env.name)}
    by_stack |= {name: account for account, name in _account_stacks(settings).items()}
    for name, account in by_stack.items():
        stack = synthesized.stack(name).json
        # the default provider and every aliased one (us-east-1 for Route53's DNSSEC and query logs)
        for aws in stack["provider"]["aws"]:
            assert aws["allowed_account_ids"] == [account], (name, aws.get("alias"))
        backend = stack["terraform"]["backend"]
        if "s3" in backend:
            assert backend["s3"]["allowed_account_ids"] == [account], name
        for remote in stack.get("data", {}).get("terraform_remote_state", {}).values():
            assert remote["config"]["allowed_account_ids"] == [account], name


def test_the_oidc_provider_lives_only_in_account_stacks(synthesized, settings):
    for env in settings.values():
        state = synthesized.stack(env.stack_name("state"))
        assert not state.resources("aws_iam_openid_connect_provider")
        # looked up by its ARN (so a missing provider stops the plan), under a construct ID of its own
        [(lookup_id, lookup)] = state.json["data"]["aws_iam_openid_connect_provider"].items()
        assert lookup_id.startswith("deploy_github-oidc-provider_")
        assert lookup["arn"].endswith(f":iam::{env.account.id}:oidc-provider/{OIDC_HOST}")
        roles = [r for r in state.resources("aws_iam_role").values() if r["name"].startswith(f"twentycrm-{env.name}-")]
        assert roles and all(
            json.loads(r["assume_role_policy"])["Statement"][0]["Principal"]["Federated"]
            == f"${{data.aws_iam_openid_connect_provider.{lookup_id}.arn}}"
            for r in roles
        )
        # what the state stack held before the move is forgotten, never destroyed
        assert state.json["removed"] == [{"from": FORMER_OIDC_PROVIDER_ADDRESS, "lifecycle": [{"destroy": False}]}]
    for account, name in _account_stacks(settings).items():
        stack = synthesized.stack(name)
        assert stack.only("aws_iam_openid_connect_provider")["url"] == f"https://{OIDC_HOST}"
        assert sorted(b["bucket"] for b in stack.resources("aws_s3_bucket").values()) == [
            f"olhai-twentycrm-account-{account}-tfstate", f"olhai-twentycrm-account-{account}-tfstate-access-logs"]
        # as this repository's env files say: the local file until scripts/bootstrap moved it into its bucket
        backend = stack.json["terraform"]["backend"]
        if next(e for e in settings.values() if e.account.id == account).account.own_backend == "local":
            assert backend == {"local": {"path": f"../../../terraform.{name}.tfstate"}}
        else:
            assert backend["s3"]["bucket"] == f"olhai-twentycrm-account-{account}-tfstate"


def test_the_account_stacks_resources_are_tagged_environment_account(synthesized, settings):
    """The deploy roles' fences deny resources whose Environment tag is another environment's; the account stack's
    resources carry Environment = "account" (no file may be named so), so no environment's role may touch them."""
    for name in _account_stacks(settings).values():
        stack = synthesized.stack(name).json
        for aws in stack["provider"]["aws"]:  # the us-east-1 alias too (modules/log_delivery.py)
            assert aws["default_tags"] == [{"tags": {"Project": "twentycrm", "Scope": "account",
                                                     "Environment": "account", "ManagedBy": "cdktf"}}]  # fmt: skip
        tagged = {kind: body for kind, body in stack["resource"].items() if any("tags" in r for r in body.values())}
        assert set(tagged) == {"aws_kms_key", "aws_s3_bucket", "aws_dynamodb_table",
                               "aws_iam_openid_connect_provider"}  # fmt: skip
        for kind, body in tagged.items():
            for resource in body.values():
                assert "Environment" not in resource["tags"], f"{kind} overrides the Environment default tag"


def _state_bucket(stack_json: dict) -> dict:
    """The account stack's state bucket (its server access logs go to the bucket beside it)."""
    [bucket] = [b for b in stack_json["resource"]["aws_s3_bucket"].values() if b["bucket"].endswith("-tfstate")]
    return bucket


def test_the_account_stacks_lock_table_protection_follows_the_setting(synthesized, settings):
    from cdktf import Testing

    from modules.account import AccountStack

    [table] = synthesized.stack(f"twentycrm-account-{settings['dev'].account.id}").resources(
        "aws_dynamodb_table").values()
    assert table["deletion_protection_enabled"] is True  # the default of every shipped file
    bucket = _state_bucket(synthesized.stack(f"twentycrm-account-{settings['dev'].account.id}").json)
    assert bucket["force_destroy"] is False
    account = settings["dev"].account.model_copy(update={"deletion_protection": False})
    stack = json.loads(Testing.synth(AccountStack(Testing.app(), project="twentycrm", account=account)))
    [table] = stack["resource"]["aws_dynamodb_table"].values()
    assert table["deletion_protection_enabled"] is False
    assert _state_bucket(stack)["force_destroy"] is True
    # the access-log bucket beside it follows the same protection (a destroy empties it only once lifted)
    assert {b["bucket"]: b["force_destroy"] for b in stack["resource"]["aws_s3_bucket"].values()}[
        f"{account.state_bucket}-access-logs"] is True
    protected = synthesized.stack(f"twentycrm-account-{settings['dev'].account.id}").json["resource"]
    for kind in ("aws_s3_bucket", "aws_dynamodb_table", "aws_kms_key", "aws_iam_openid_connect_provider"):
        [resource] = [r for r in protected[kind].values() if not r.get("bucket", "").endswith("-access-logs")]
        assert resource["lifecycle"] == {"prevent_destroy": True}, kind
        [resource] = [r for r in stack["resource"][kind].values() if not r.get("bucket", "").endswith("-access-logs")]
        assert "lifecycle" not in resource, kind


def test_the_account_stack_moves_into_its_own_bucket_when_told(settings):
    from cdktf import Testing

    from modules.account import AccountStack

    account = settings["prod"].account.model_copy(update={"own_backend": "s3"})
    stack = AccountStack(Testing.app(), project="twentycrm", account=account)
    backend = json.loads(Testing.synth(stack))["terraform"]["backend"]
    assert backend == {"s3": {
        "bucket": "olhai-twentycrm-account-777788889999-tfstate",
        "key": "twentycrm-account-777788889999/terraform.tfstate",
        "region": "sa-east-1", "encrypt": True, "kms_key_id": "alias/twentycrm-account-tfstate",
        "dynamodb_table": "twentycrm-account-tflock", "allowed_account_ids": ["777788889999"],
    }}  # fmt: skip


def test_the_former_provider_address_is_the_one_cdktf_gave_it():
    """The removed block and the README's runbook name the address cdktf gave <state stack>/deploy/github-oidc."""
    from cdktf import App, TerraformStack
    from cdktf_cdktf_provider_aws.iam_openid_connect_provider import IamOpenidConnectProvider
    from cdktf_cdktf_provider_aws.provider import AwsProvider
    from constructs import Construct

    app = App(outdir=str(Path("/nonexistent")))
    stack = TerraformStack(app, "twentycrm-dev-state")
    AwsProvider(stack, "aws", region="sa-east-1")
    provider = IamOpenidConnectProvider(Construct(stack, "deploy"), "github-oidc", url=f"https://{OIDC_HOST}",
                                        client_id_list=["sts.amazonaws.com"])  # fmt: skip
    assert f"aws_iam_openid_connect_provider.{stack.get_logical_id(provider)}" == FORMER_OIDC_PROVIDER_ADDRESS


def _outputs(out: Path) -> dict[str, str]:
    return {d.name: (d / "cdk.tf.json").read_text() for d in sorted((out / "stacks").iterdir())}


def test_a_new_environment_in_a_new_account_adds_its_stacks_and_one_account_stack(tmp_path, synthesized):
    from main import synth

    envs = copy_envs(tmp_path)
    add_staging(envs, account="999988887777")
    names = synth(envs, tmp_path / "out")
    added = set(names) - set(synthesized.names)
    assert added == {"twentycrm-account-999988887777", "twentycrm-staging-state", "twentycrm-staging-platform",
                     "twentycrm-staging-apps"}  # fmt: skip
    before = _outputs(synthesized.outdir)
    after = _outputs(tmp_path / "out")
    assert {n: after[n] for n in before} == before, "another environment's or account's stack changed"


def test_a_new_environment_in_an_existing_account_changes_no_other_stack(tmp_path, synthesized, settings):
    """staging joins qa's account: its own three stacks, and not a byte of any other stack (qa's account
    stack included) changes, so applying it can destroy nothing of the others."""
    from main import synth

    envs = copy_envs(tmp_path)
    qa = settings["qa"]
    add_staging(envs)  # qa's account (and account stack), shared explicitly both ways
    names = synth(envs, tmp_path / "out")
    assert set(names) - set(synthesized.names) == {f"twentycrm-staging-{p}" for p in ("state", "platform", "apps")}
    before = _outputs(synthesized.outdir)
    after = _outputs(tmp_path / "out")
    assert {n: after[n] for n in before} == before  # qa.toml's shared_with is settings data, not Terraform


def test_a_shared_account_with_an_existing_provider_creates_none(tmp_path):
    from main import synth

    envs = copy_envs(tmp_path)
    for env in ("dev", "qa", "prod"):
        text = (envs / f"{env}.toml").read_text()
        for placeholder in ("111122223333", "444455556666", "777788889999"):
            text = text.replace(placeholder, "210987654321")
        others = [f'"{other}"' for other in ("dev", "qa", "prod") if other != env]
        text = text.replace("shared_with = []", f"shared_with = [{', '.join(others)}]")
        (envs / f"{env}.toml").write_text(text.replace('github_oidc_provider = "create"',
                                                       'github_oidc_provider = "existing"'))  # fmt: skip
    names = synth(envs, tmp_path / "out")
    assert [n for n in names if "-account-" in n] == ["twentycrm-account-210987654321"]
    account = json.loads((tmp_path / "out" / "stacks" / names[0] / "cdk.tf.json").read_text())
    assert "aws_iam_openid_connect_provider" not in account["resource"]
    # a stack that created it before the switch forgets it (proven in test_account_teardown.py)
    assert account["removed"] == [{"from": OIDC_PROVIDER_ADDRESS, "lifecycle": [{"destroy": False}]}]
    assert account["output"]["github_oidc_provider_arn"]["value"].endswith(
        f":iam::210987654321:oidc-provider/{OIDC_HOST}")


# --- against moto: the wrong account stops at plan; the provider moves without being deleted ----------


def _mutations(lines: list[str]) -> list[str]:
    return [c.action for c in read_recording("\n".join(lines)) if not c.operation.startswith(READS)]


@pytest.mark.slow
def test_a_stack_in_the_wrong_account_stops_at_plan_having_created_nothing(terraform, local_aws, synthesized,
                                                                            settings, tmp_path):  # fmt: skip
    """qa's state stack (local backend), run with credentials of dev's account: the provider's own account check
    fails the plan, and moto saw no call that changes anything (only the account lookups)."""
    moto_account = local_aws.account_id
    assert settings["qa"].account.id != moto_account == settings[BOOTSTRAP_ENV].account.id
    work = terraform.stack_copy(synthesized.outdir / "stacks" / "twentycrm-qa-state", tmp_path / "qa-state")
    write_json(work / "aws_override.tf.json", local_aws.provider_override())
    write_json(work / "backend_override.tf.json", {"terraform": {"backend": {"local": {"path": "qa.tfstate"}}}})
    terraform.run(work, "init", "-input=false")
    with local_aws.recording() as lines:
        result = terraform.run(work, "plan", "-input=false", check=False)
    assert result.returncode == 1
    assert NOT_ALLOWED.format(moto_account) in result.stderr, result.stderr
    assert _mutations(lines) == [], _mutations(lines)
    assert {c.action for c in read_recording("\n".join(lines))} <= ACCOUNT_LOOKUPS
    assert not (work / "qa.tfstate").exists() or not json.loads((work / "qa.tfstate").read_text())["resources"]


@pytest.mark.slow
def test_an_s3_backend_in_the_wrong_account_stops_at_init(terraform, local_aws, synthesized, settings, tmp_path):
    """qa's platform stack: its S3 backend checks the account before it reads or locks any state."""
    qa = settings["qa"]
    work = terraform.stack_copy(synthesized.outdir / "stacks" / "twentycrm-qa-platform", tmp_path / "qa-platform")
    flags = local_aws.backend_config_flags(bucket=qa.state.bucket, lock_table=qa.state.lock_table)
    with local_aws.recording() as lines:
        result = terraform.run(work, "init", "-input=false", *flags, check=False)
    assert result.returncode == 1
    assert "Invalid account ID" in result.stderr and NOT_ALLOWED.format(local_aws.account_id) in result.stderr
    assert {c.action for c in read_recording("\n".join(lines))} <= ACCOUNT_LOOKUPS


@pytest.mark.slow
def test_the_oidc_provider_moves_from_devs_state_stack_to_the_account_stack(account_applied, terraform,
                                                                             local_aws, synthesized, settings,
                                                                             tmp_path):  # fmt: skip
    """The README's runbook, in its order: an installation whose dev state stack held the provider (the code
    before the account stack) -> 1. the account stack imports it, 2. dev's state stack forgets it; no call
    deletes it. The session's account stack made the provider; the former state
    stack takes it into its state by import, as if it had created it."""
    dev = settings[BOOTSTRAP_ENV]
    account_name = f"twentycrm-account-{dev.account.id}"
    arn = f"arn:aws:iam::{dev.account.id}:oidc-provider/{OIDC_HOST}"
    state = terraform.stack_copy(synthesized.outdir / "stacks" / dev.stack_name("state"), tmp_path / "dev-state")
    write_json(state / "aws_override.tf.json", local_aws.provider_override())
    write_json(state / "backend_override.tf.json", {"terraform": {"backend": {"local": {"path": "dev.tfstate"}}}})

    # Before: the former code, i.e. this stack with the provider at its former address and no removed block.
    new_config = (state / "cdk.tf.json").read_text()
    former = json.loads(new_config)
    del former["removed"]
    kind, name = FORMER_OIDC_PROVIDER_ADDRESS.split(".")
    former["resource"][kind] = {name: {"url": f"https://{OIDC_HOST}", "client_id_list": ["sts.amazonaws.com"],
                                       "thumbprint_list": ["6938fd4d98bab03faadb97b34396831e3780aea1"]}}  # fmt: skip
    (state / "cdk.tf.json").write_text(json.dumps(former))
    terraform.run(state, "init", "-input=false")
    terraform.run(state, "import", "-input=false", FORMER_OIDC_PROVIDER_ADDRESS, arn)
    assert FORMER_OIDC_PROVIDER_ADDRESS in terraform.run(state, "state", "list").stdout
    (state / "cdk.tf.json").write_text(new_config)  # the code of this branch

    account = terraform.stack_copy(synthesized.outdir / "stacks" / account_name, tmp_path / "account")
    write_json(account / "aws_override.tf.json", local_aws.provider_override(provider_aliases(account)))
    write_json(account / "backend_override.tf.json", {"terraform": {"backend": {"local": {"path": "acct.tfstate"}}}})

    def take_over() -> None:
        """README step 1: the account stack imports the provider (its state bucket, table and key the session's
        account stack has made already on this one moto server, so only the provider is applied here)."""
        terraform.run(account, "init", "-input=false")
        terraform.run(account, "import", "-input=false", "aws_iam_openid_connect_provider.github-oidc", arn)
        terraform.run(account, "apply", "-input=false", "-auto-approve",
                      "-target=aws_iam_openid_connect_provider.github-oidc")

    def let_go() -> dict:
        """README step 2: dev's state stack forgets it (the removed block), destroying nothing."""
        terraform.run(state, "plan", "-input=false", "-out=forget.tfplan", f"-target={FORMER_OIDC_PROVIDER_ADDRESS}")
        planned = json.loads(terraform.run(state, "show", "-json", "forget.tfplan").stdout)
        terraform.run(state, "apply", "-input=false", "forget.tfplan")
        return planned

    with local_aws.recording() as lines:
        take_over()
        planned = let_go()
    changes = {c["address"]: c["change"]["actions"] for c in planned["resource_changes"]}
    assert changes == {FORMER_OIDC_PROVIDER_ADDRESS: ["forget"]}, changes
    assert FORMER_OIDC_PROVIDER_ADDRESS not in terraform.run(state, "state", "list").stdout
    assert "aws_iam_openid_connect_provider.github-oidc" in terraform.run(account, "state", "list").stdout
    assert "iam:DeleteOpenIDConnectProvider" not in {c.action for c in read_recording("\n".join(lines))}
    providers = local_aws.client("iam").list_open_id_connect_providers()["OpenIDConnectProviderList"]
    assert [p["Arn"] for p in providers if p["Arn"].endswith(OIDC_HOST)] == [arn]
    # the account stack's plan now holds the provider: nothing to create or replace for it
    plan = terraform.run(account, "plan", "-input=false", "-detailed-exitcode",
                         "-target=aws_iam_openid_connect_provider.github-oidc", check=False)  # fmt: skip
    assert plan.returncode == 0, plan.stdout


def _remote_state_reader(work: Path, remote: dict, local_aws, **where) -> Path:
    """A configuration holding only an apps stack's ``terraform_remote_state`` block, pointed at the moto server
    (endpoints and test credentials added; account, bucket and key as given)."""
    config = {**remote["config"], **where, "access_key": "test", "secret_key": "test",
              "skip_credentials_validation": True, "skip_requesting_account_id": False,
              "skip_metadata_api_check": True, "use_path_style": True, "custom_ca_bundle": str(local_aws.ca_bundle),
              "endpoints": {service: local_aws.url for service in ("s3", "sts", "iam", "dynamodb")}}  # fmt: skip
    work.mkdir()
    write_json(work / "main.tf.json", {
        "data": {"terraform_remote_state": {"platform": {**remote, "config": config}}},
        "output": {"read": {"value": "${data.terraform_remote_state.platform.outputs}"}},
    })  # fmt: skip
    return work


@pytest.mark.slow
def test_the_apps_stacks_remote_state_read_refuses_another_account(bootstrapped, terraform, local_aws, synthesized,
                                                                  settings, tmp_path):  # fmt: skip
    """qa's apps stack's real terraform_remote_state block, aimed at a state object in dev's account (moto): its
    allowed_account_ids stops the read. The same block with dev's account reads that object (the control)."""
    dev = settings[BOOTSTRAP_ENV]
    remote = synthesized.stack("twentycrm-qa-apps").json["data"]["terraform_remote_state"]["platform"]
    assert remote["config"]["allowed_account_ids"] == [settings["qa"].account.id]
    where = {"bucket": dev.state.bucket, "key": f"{dev.stack_name('state')}/terraform.tfstate",
             "region": dev.region}  # the bootstrapped state stack's own state object  # fmt: skip
    refused = _remote_state_reader(tmp_path / "qa", remote, local_aws, **where)
    terraform.run(refused, "init", "-input=false")
    result = terraform.run(refused, "plan", "-input=false", check=False)
    assert result.returncode == 1 and NOT_ALLOWED.format(local_aws.account_id) in result.stderr, result.stderr
    control = _remote_state_reader(tmp_path / "dev", remote, local_aws, allowed_account_ids=[dev.account.id], **where)
    terraform.run(control, "init", "-input=false")
    assert "state_bucket" in terraform.run(control, "plan", "-input=false").stdout
