"""How environments become stacks: names, backends, provider tags, new environments, the CLI."""

from __future__ import annotations

import os
import subprocess

import pytest
from cdktf import Testing as CdktfTesting  # renamed so pytest does not collect it
from conftest import ROOT, build_stack, copy_envs, with_changes

from modules.stacks import PlatformStack


def test_every_environment_has_its_stacks(synthesized):
    assert sorted(synthesized.names) == sorted(
        f"twentycrm-{env}-{part}" for env in ("dev", "qa", "prod") for part in ("state", "platform", "apps")
    )


def test_platform_state_lives_in_the_environment_bucket(platform_stack, settings, env):
    backend = platform_stack.json["terraform"]["backend"]
    assert backend == {
        "s3": {
            "bucket": settings[env].state.bucket,
            "key": f"twentycrm-{env}-platform/terraform.tfstate",
            "region": "sa-east-1",
            "encrypt": True,
            "dynamodb_table": settings[env].state.lock_table,
        }
    }


def test_use_lockfile_is_a_setting(settings):
    stack = build_stack(PlatformStack, with_changes(settings["qa"], state={"use_lockfile": True}))
    assert stack.json["terraform"]["backend"]["s3"]["use_lockfile"] is True


def test_provider_tags_every_resource(platform_stack, env):
    assert CdktfTesting.to_have_provider_with_properties(
        platform_stack.text,
        "aws",
        {
            "region": "sa-east-1",
            "default_tags": [{"tags": {"Project": "twentycrm", "Environment": env, "ManagedBy": "cdktf"}}],
        },
    )


def test_stacks_only_need_the_aws_provider(synthesized):
    """The state and platform stacks must stay plannable offline, where only hashicorp/aws is mirrored.
    The apps stack is the only one with the kubernetes and helm providers (tests/test_apps.py)."""
    for name in synthesized.names:
        if name.endswith("-apps"):
            continue
        providers = synthesized.stack(name).json["terraform"]["required_providers"]
        assert providers == {"aws": {"source": "aws", "version": "5.100.0"}}, name


def test_a_new_environment_file_yields_new_stacks(tmp_path):
    from main import synth

    envs = copy_envs(tmp_path)
    text = (envs / "qa.toml").read_text()
    staging = (
        text.replace("mGenialQA", "mGenialStaging")
        .replace("-qa-", "-staging-")
        .replace('"twentycrm-qa"', '"twentycrm-staging"')
        .replace("10.1.", "10.7.")
        .replace('github_environment = "qa"', 'github_environment = "staging"')
    )
    (envs / "staging.toml").write_text(staging)
    names = synth(envs, tmp_path / "out")
    assert {"twentycrm-staging-state", "twentycrm-staging-platform", "twentycrm-staging-apps"} <= set(names)
    stack = (tmp_path / "out" / "stacks" / "twentycrm-staging-platform" / "cdk.tf.json").read_text()
    assert CdktfTesting.to_have_resource_with_properties(stack, "aws_vpc", {"cidr_block": "10.7.0.0/16"})


def test_jsii_runs_on_a_supported_node():
    """jsii calls Node 20 end-of-life; the project's set-up must hand it Node 22 or newer."""
    node = os.environ.get("JSII_NODE", "node")
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=True).stdout
    assert int(version.lstrip("v").split(".")[0]) >= 22, f"jsii would run on {node} {version.strip()}"


@pytest.mark.slow
def test_the_cdktf_cli_writes_the_same_files_as_main_py(synthesized, tmp_path):
    cli = ROOT / "node_modules" / "cdktf-cli" / "bundle" / "bin" / "cdktf"
    if not cli.exists():
        pytest.skip(f"the pinned cdktf CLI is not installed ({cli} missing); run ./scripts/synth once")
    out = tmp_path / "cli.out"
    node = os.environ.get("JSII_NODE", "node")
    result = subprocess.run(
        [node, str(cli), "synth", "--output", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "CI": "1", "CHECKPOINT_DISABLE": "1"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for name in synthesized.names:
        cli_json = (out / "stacks" / name / "cdk.tf.json").read_text()
        assert cli_json == synthesized.stack(name).text, f"{name} differs between cdktf synth and main.py"
