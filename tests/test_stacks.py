"""How environments become stacks: names, backends, provider tags, new environments, the CLI."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from cdktf import Testing as CdktfTesting  # renamed so pytest does not collect it
from conftest import ROOT, add_staging, build_stack, copy_envs, with_changes

from modules.stacks import PlatformStack


def test_every_environment_has_its_stacks(synthesized, settings):
    assert sorted(synthesized.names) == sorted(
        [f"twentycrm-{env}-{part}" for env in settings for part in ("state", "platform", "apps")]
        + [f"twentycrm-account-{account}" for account in {e.account.id for e in settings.values()}]
    )


def test_platform_state_lives_in_the_environment_bucket(platform_stack, settings, env):
    backend = platform_stack.json["terraform"]["backend"]
    assert backend == {
        "s3": {
            "bucket": settings[env].state.bucket,
            "key": f"twentycrm-{env}-platform/terraform.tfstate",
            "region": "sa-east-1",
            "encrypt": True,
            "kms_key_id": f"alias/twentycrm-{env}-tfstate",  # SSE-KMS with the state key, not SSE-S3
            "dynamodb_table": settings[env].state.lock_table,
            "allowed_account_ids": [settings[env].account.id],  # the backend refuses another account at init
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
    add_staging(envs)  # in qa's account, shared on purpose
    names = synth(envs, tmp_path / "out")
    assert {"twentycrm-staging-state", "twentycrm-staging-platform", "twentycrm-staging-apps"} <= set(names)
    stack = (tmp_path / "out" / "stacks" / "twentycrm-staging-platform" / "cdk.tf.json").read_text()
    assert CdktfTesting.to_have_resource_with_properties(stack, "aws_vpc", {"cidr_block": "10.7.0.0/16"})


def test_a_synth_keeps_each_stacks_terraform_working_directory_and_a_failed_one_keeps_everything(tmp_path):
    """``terraform init -migrate-state`` reads the last backend from the stack's .terraform/; a synth that replaced
    cdktf.out wholesale lost it, and the move from the local file to S3 migrated nothing."""
    from main import synth
    from modules.settings import SettingsError

    envs, out = copy_envs(tmp_path), tmp_path / "out"
    synth(envs, out)
    stack = out / "stacks" / "twentycrm-dev-state"
    (stack / ".terraform").mkdir()
    (stack / ".terraform" / "terraform.tfstate").write_text('{"backend": {"type": "local"}}')
    (stack / ".terraform.lock.hcl").write_text("# lock")
    (out / "stacks" / "twentycrm-qa-state" / "tfplan").write_text("a saved plan of the old configuration")
    synth(envs, out)
    assert (stack / ".terraform" / "terraform.tfstate").read_text() == '{"backend": {"type": "local"}}'
    assert (stack / ".terraform.lock.hcl").read_text() == "# lock"
    assert not (out / "stacks" / "twentycrm-qa-state" / "tfplan").exists(), "only the working directory is kept"

    (envs / "qa.toml").write_text((envs / "qa.toml").read_text().replace('cidr = "10.1.0.0/16"', 'cidr = "10.0.0.0/16"'))
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with pytest.raises(SettingsError):
        synth(envs, out)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == []


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


# --- the Node that runs jsii on every documented path ---------------------------------------

EOL_BANNER = "is end-of-life"


def _python_under_pipenv(args: list[str], tmp_path, **env_changes) -> tuple[subprocess.CompletedProcess, str]:
    """Run ``pipenv run python <args>`` with JSII_NODE unset (as a fresh shell has it); return the result
    and the Node version that actually ran jsii, recorded by a --require probe in NODE_OPTIONS."""
    pipenv = ROOT / ".tools" / "pipenv" / "bin" / "pipenv"
    if not pipenv.exists():
        pytest.skip(f"the project's pipenv is not installed ({pipenv} missing); run ./scripts/test once")
    probe, seen = tmp_path / "probe.js", tmp_path / "node-version"
    probe.write_text(f"require('fs').appendFileSync({str(seen)!r}, process.version + '\\n');\n")
    env = {k: v for k, v in os.environ.items() if k not in ("JSII_NODE", "NODE_OPTIONS", "NODE")}
    env.update(NODE_OPTIONS=f"--require {probe}", PIPENV_VENV_IN_PROJECT="1", PIPENV_VERBOSITY="-1", **env_changes)
    result = subprocess.run([str(pipenv), "run", "python", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=600)  # fmt: skip
    return result, seen.read_text() if seen.exists() else ""


@pytest.mark.slow
def test_pipenv_run_python_main_py_runs_jsii_on_node_22(tmp_path):
    from modules.jsii_node import PROJECT_NODE

    if not PROJECT_NODE.is_file():
        pytest.skip(f"the project's Node 22 is not installed ({PROJECT_NODE} missing; x86-64 Linux, npm ci)")
    result, versions = _python_under_pipenv(["main.py"], tmp_path, CDKTF_OUTDIR=str(tmp_path / "cdktf.out"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert EOL_BANNER not in result.stderr + result.stdout
    assert "DeprecationWarning" not in result.stderr
    assert versions and all(int(v.lstrip("v").split(".")[0]) >= 22 for v in versions.split()), versions


@pytest.mark.slow
def test_the_banner_check_sees_an_end_of_life_node(tmp_path):
    """The same check on a caller who chose an old Node: its choice is kept, and the banner shows."""
    # the project's own end-of-life Node (package.json: node-eol-20), and any on PATH
    nodes = {shutil.which("node", path=d) for d in os.environ.get("PATH", "").split(os.pathsep)} - {None}
    nodes |= {str(n) for n in [ROOT / "node_modules" / "node-eol-20" / "bin" / "node"] if n.exists()}
    versions_of = {n: subprocess.run([n, "--version"], capture_output=True, text=True).stdout.strip() for n in nodes}
    old_nodes = [n for n, v in sorted(versions_of.items()) if v and int(v.lstrip("v").split(".")[0]) < 22]
    if not old_nodes:
        pytest.skip(f"no end-of-life Node (< 22) on PATH to compare with: {versions_of}")
    old, version = old_nodes[0], versions_of[old_nodes[0]]
    result, versions = _python_under_pipenv(["-c", "import modules, cdktf"], tmp_path, JSII_NODE=old)
    assert EOL_BANNER in result.stderr + result.stdout
    assert set(versions.split()) == {version}


def test_jsii_node_keeps_the_callers_choice(tmp_path):
    from modules.jsii_node import use_project_node

    node = tmp_path / "node"
    node.write_text("")
    chosen = {"JSII_NODE": "/opt/node24/bin/node"}
    use_project_node(chosen, node)
    assert chosen == {"JSII_NODE": "/opt/node24/bin/node"}
    unset = {"NODE_OPTIONS": "--max-old-space-size=4096"}
    use_project_node(unset, node)
    assert unset == {"JSII_NODE": str(node), "NODE_OPTIONS": "--max-old-space-size=4096 --no-deprecation"}
    absent: dict = {}
    use_project_node(absent, tmp_path / "missing")
    assert absent == {}
