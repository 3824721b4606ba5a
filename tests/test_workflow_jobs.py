"""The workflows' jobs run, each on what it installs itself: every job of .github/workflows, read from the files
(whatever jobs they hold), is run here as on a runner by tests/workflow_harness.py, in a fresh clone of the working
tree's HEAD (no .venv, no node_modules), with a PATH of the system's tools and what the job's steps add, and AWS
played by one moto server that answers each job as the account of the role it assumed.

What is not run, and why, is the harness's NOT_RUN (GitHub's API, a real AWS account or EKS cluster, the test suite
itself, steps that fetch from outside the package registries); the synth step and the security gate are stood in
for in the quick runs (the session's synthesized app and the developer's toolchain, installed from the same lock
files) and run for real in ``test_the_deploy_test_job_installs_its_toolchain_and_synthesizes_in_a_fresh_clone``.
Each environment's account is seeded as the state stack leaves it (the workload boundary, the state bucket logging to
its access-log bucket, the Docker Hub credential with a value), so the preflights pass for the right reason.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, edit
from workflow_expressions import ExpressionError, condition, evaluate
from workflow_harness import TOOLCHAIN, Harness, WorkflowRefused, load_workflow

FINE = ("success", "not run", "stand-in", "stopped short", "skipped")


@pytest.fixture(scope="module")
def origin(tmp_path_factory) -> Path:
    """The repository as a runner's checkout gets it: a clone of HEAD, nothing installed or synthesized."""
    if shutil.which("terraform") is None:
        pytest.fail("terraform is not on PATH: setup-terraform is played by it (README, tests)")
    clone = tmp_path_factory.mktemp("origin") / "repository"
    subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(ROOT), str(clone)], check=True, timeout=120)
    assert not [d for d in (*TOOLCHAIN, "cdktf.out") if (clone / d).exists()]
    # every environment bootstrapped and handed over to CI, as the operator's repository is once it is adopted
    # (docs/ci-cd.md), whatever the template ships: otherwise the plan and environment jobs are skipped
    for path in (clone / "envs").glob("*.toml"):
        text = re.sub(r'^own_backend = "local"', 'own_backend = "s3"', path.read_text(), flags=re.M)
        path.write_text(re.sub(r"^handed_over = false", "handed_over = true", text, flags=re.M))
    subprocess.run(["git", "-c", "user.name=harness", "-c", "user.email=harness@example.invalid", "commit", "-qam",
                    "every environment handed over to CI"], cwd=clone, check=True)
    return clone


def _client(aws, account: str, service: str, region: str):
    """A client acting in ``account`` on the moto server (moto answers an assumed role's keys as its account)."""
    import boto3

    sts = aws.client("sts")
    credentials = sts.assume_role(RoleArn=f"arn:aws:iam::{account}:role/administrator",
                                  RoleSessionName="seed")["Credentials"]
    return boto3.client(service, endpoint_url=aws.url, region_name=region, verify=str(aws.ca_bundle),
                        aws_access_key_id=credentials["AccessKeyId"], aws_secret_access_key=credentials[
                            "SecretAccessKey"], aws_session_token=credentials["SessionToken"])


@pytest.fixture(scope="module")
def aws(tmp_path_factory, settings):
    """One moto server; every environment's account as its state stack leaves it for CI (README's order)."""
    from modules.settings.network import access_log_bucket_for
    from terraform_support import LocalAws

    with LocalAws(tmp_path_factory.mktemp("workflow-moto"), account_id=None) as server:
        for env in settings.values():
            account, region = env.account.id, env.region
            _client(server, account, "iam", region).create_policy(
                PolicyName=f"{env.project}-{env.name}-workload-boundary", PolicyDocument=json.dumps(
                    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
            s3 = _client(server, account, "s3", region)
            state, logs = env.state.bucket, access_log_bucket_for(env.state.bucket)
            for bucket in (state, logs):
                s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region})
            s3.put_bucket_policy(Bucket=logs, Policy=json.dumps({"Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Principal": {"Service": "logging.s3.amazonaws.com"}, "Action": "s3:PutObject",
                "Resource": f"arn:aws:s3:::{logs}/*"}]}))
            s3.put_bucket_logging(Bucket=state, BucketLoggingStatus={"LoggingEnabled": {
                "TargetBucket": logs, "TargetPrefix": f"{state}/"}})
            _client(server, account, "secretsmanager", region).create_secret(
                Name=f"ecr-pullthroughcache/{env.project}/{env.name}/docker-hub",
                SecretString=json.dumps({"username": "u", "accessToken": "t"}))
        yield server


def _github_setup(settings) -> dict:
    """GitHub's side as docs/ci-cd.md sets it up: each GitHub environment <env> and <env>-plan holds
    AWS_ACCOUNT_ID = envs/<env>.toml's account.id; the repository is ci.github_repository."""
    [repository] = {env.ci.github_repository for env in settings.values()}
    environments = {}
    for env in settings.values():
        for name in (env.ci.github_environment, f"{env.ci.github_environment}-plan"):
            environments[name] = {"AWS_ACCOUNT_ID": env.account.id}
    return {"repository": repository, "environments": environments}


@pytest.fixture(scope="module")
def harness(origin, aws, synthesized, settings, tmp_path_factory) -> Harness:
    return Harness(origin=origin, work=tmp_path_factory.mktemp("runs"), aws=aws, synthesized=synthesized.outdir,
                   toolchain=ROOT, **_github_setup(settings))


def _problems(run) -> list[str]:
    """Failed jobs and steps (a job its ``if:`` skips is not one: e.g. an environment not handed to CI)."""
    return [f"{job.key}: {job.result}" for job in run.jobs if job.result == "failure"] + [
        f"{job.key}: {step.name}: {step.outcome}" for job in run.jobs for step in job.steps if step.outcome not in FINE]


def _synthesizes(job) -> bool:
    return any(re.fullmatch(r"\./scripts/synth", step.run.strip()) for step in job.steps)


def _check_roles(run, settings) -> int:
    """Every role a job assumed is in its environment's account (the account the job checked or read)."""
    assumed = 0
    for job in run.jobs:
        for role in job.roles:
            match = re.fullmatch(r"arn:aws:iam::(\d{12}):role/twentycrm-([a-z0-9-]+)-(plan|review|deploy)", role)
            assert match, f"{job.key}: {role}"
            assert match.group(1) == settings[match.group(2)].account.id, f"{job.key}: {role}"
            assumed += 1
    return assumed


def test_every_pull_request_job_runs_on_what_it_installs(harness, origin, settings):
    run = harness.run(origin / ".github" / "workflows" / "pull-request.yml", event="pull_request",
                      payload={"pull_request": {"number": 7}})
    summary = run.summary()
    assert not _problems(run), summary
    # every job that plans ran the preflights first, against moto, with the plan role of its environment's account
    planning = [job for job in run.jobs if any(re.search(r"ci-terraform plan ", s.run) for s in job.steps)]
    assert planning, summary
    for job in planning:
        for preflight in ("settings", "check-boundary", "check-registry-credential"):
            assert job.step(rf"ci-terraform {preflight} ").outcome == "success", summary
        assert [r.rsplit("-", 1)[-1] for r in job.roles] == ["plan"], summary
    assert _check_roles(run, settings) == len(planning)
    for job in run.jobs:
        assert ".venv" not in job.path and "node_modules" not in job.path, job.path
        assert job.installed == ([*TOOLCHAIN] if _synthesizes(job) else []), f"{job.key}: {job.installed}"


def test_every_deploy_job_runs_on_what_it_installs(harness, origin, settings):
    """push to main: the test job, then each environment's call of apply.yml (synth, plan and apply of both
    stacks). The jobs after synth install nothing: the preflights read the synth job's ci-settings.json with
    python3, the warm step runs the system's python3 and the aws CLI up to the registry it cannot reach here."""
    run = harness.run(origin / ".github" / "workflows" / "deploy.yml", event="push")
    summary = run.summary()
    assert not _problems(run), summary
    called = [job for job in run.jobs if " → " in job.key]
    environments = {re.match(r"deploy\.yml/([^ ]+) → ", job.key).group(1) for job in called}
    assert environments and environments <= set(settings), summary
    for job in called:
        if not _synthesizes(job):
            assert job.installed == [], f"{job.key} installs {job.installed}"
    warmed = [job for job in called if any("scripts/images warm" in s.run for s in job.steps)]
    assert len(warmed) == len(environments), summary
    for job in warmed:
        step = job.step(r"scripts/images warm")
        assert step.outcome == "stopped short", summary
        env = re.match(r"deploy\.yml/([^ ]+) → ", job.key).group(1)
        host = f"{settings[env].account.id}.dkr.ecr.{settings[env].region}.amazonaws.com"
        assert f"scripts/images warm: https://{host}/v2/twentycrm-{env}/" in step.output, step.output
        assert [r.rsplit("-", 1)[-1] for r in job.roles] == ["deploy"]
    assert _check_roles(run, settings) >= 4 * len(environments)


def test_the_deploy_test_job_installs_its_toolchain_and_synthesizes_in_a_fresh_clone(origin, aws, settings,
                                                                                        tmp_path_factory):
    """The one real ./scripts/synth (about 4 minutes): deploy.yml's first job that synthesizes, in a fresh clone:
    scripts/env.sh installs pipenv, .venv, checkov's venv and node_modules from the lock files with the system's
    python3 and npm, cdktf synthesizes every environment, and the security gate runs checkov on that output."""
    heavy = Harness(origin=origin, work=tmp_path_factory.mktemp("heavy"), aws=aws, toolchain=ROOT, heavy=True,
                    **_github_setup(settings))
    workflow = origin / ".github" / "workflows" / "deploy.yml"
    [first, *_] = [job_id for job_id, job in load_workflow(workflow)["jobs"].items()
                   if any((s.get("run") or "").strip() == "./scripts/synth" for s in job.get("steps") or [])]
    run = heavy.run(workflow, event="push", only=(first,))
    [job] = run.jobs
    summary = run.summary()
    assert job.result == "success", summary
    assert job.step(r"^\./scripts/synth$").outcome == "success", summary
    assert job.step(r"security_scan\.py").outcome == "success", summary
    assert job.installed == [*TOOLCHAIN] and not any((job.workspace / d).is_symlink() for d in TOOLCHAIN)
    stacks = {p.name for p in (job.workspace / "cdktf.out" / "stacks").iterdir()}
    assert {f"twentycrm-{env}-{part}" for env in settings for part in ("platform", "apps")} <= stacks


# --- the harness itself fails what GitHub would fail --------------------------------------------------------------


def _uses(origin: Path, action: str) -> str:
    """The pinned reference of ``action`` as the workflows use it."""
    text = (origin / ".github" / "workflows" / "apply.yml").read_text()
    return re.search(rf"uses: ({re.escape(action)}@[0-9a-f]{{40}})", text).group(1)


def test_a_step_fails_on_a_tool_its_job_does_not_install(harness, origin, tmp_path):
    checkout, terraform = _uses(origin, "actions/checkout"), _uses(origin, "hashicorp/setup-terraform")
    workflow = tmp_path / "tools.yml"
    workflow.write_text(yaml.safe_dump({"name": "tools", "on": {"push": {}}, "permissions": {"contents": "read"},
                                        "jobs": {
        "without-terraform": {"runs-on": "ubuntu-24.04", "steps": [{"uses": checkout}, {"run": "terraform version"}]},
        "with-terraform": {"runs-on": "ubuntu-24.04", "steps": [
            {"uses": checkout}, {"uses": terraform, "with": {"terraform_wrapper": False}},
            {"run": "terraform version"}]},
        "project-python": {"runs-on": "ubuntu-24.04", "steps": [{"uses": checkout},
                                                                {"run": ".venv/bin/python -c pass"}]},
        "cdktf-cli": {"runs-on": "ubuntu-24.04", "steps": [{"uses": checkout}, {"run": "cdktf --version"}]},
    }}))
    run = harness.run(workflow, event="push")
    failed = {job.key.split("/")[-1]: job.steps[-1] for job in run.jobs if job.result == "failure"}
    assert set(failed) == {"without-terraform", "project-python", "cdktf-cli"}, run.summary()
    assert {step.exit_code for step in failed.values()} == {127}
    assert "terraform: command not found" in failed["without-terraform"].output
    assert ".venv/bin/python: No such file or directory" in failed["project-python"].output
    assert run.job("tools.yml/with-terraform").result == "success"


def test_a_called_workflow_asking_more_than_its_caller_grants_is_refused(harness, origin, tmp_path):
    """As GitHub refuses the run at its start; the same finding as actionlint's [workflow-call] (tests/test_ci.py)."""
    caller = tmp_path / "deploy.yml"
    shutil.copy(origin / ".github" / "workflows" / "deploy.yml", caller)
    edit(caller, "      id-token: write\n      actions: read\n", "      id-token: write\n")
    with pytest.raises(WorkflowRefused, match=r"The nested job 'synth' is requesting 'actions: read', but is only "
                                              r"allowed 'actions: none'\."):
        harness.run(caller, event="push")


def test_a_job_assuming_a_role_without_an_oidc_token_fails(harness, origin, tmp_path):
    workflow = tmp_path / "oidc.yml"
    workflow.write_text(yaml.safe_dump({"name": "oidc", "on": {"push": {}}, "permissions": {"contents": "read"},
                                        "jobs": {"no-token": {"runs-on": "ubuntu-24.04", "steps": [
        {"uses": _uses(origin, "aws-actions/configure-aws-credentials"),
         "with": {"aws-region": "sa-east-1", "role-to-assume": "arn:aws:iam::111122223333:role/twentycrm-dev-plan"}},
        {"run": "aws sts get-caller-identity"}]}}}))
    run = harness.run(workflow, event="push")
    step = run.job("oidc.yml/no-token").steps[0]
    assert step.outcome == "failure" and "id-token: write" in step.output, run.summary()


@pytest.mark.parametrize(
    ("expression", "value"),
    [
        ("vars.AWS_REGION || 'sa-east-1'", "sa-east-1"),
        ("fromJSON('[\"dev\", \"qa\"]')", ["dev", "qa"]),
        ("needs.plan-platform.outputs.changes == 'TRUE'", True),  # strings compare ignoring case
        ("needs.plan-platform.outputs.missing == ''", True),  # a missing property is null, equal to ''
        ("fromJSON(needs.synth.outputs.timeout-minutes)", 150),
        ("contains(fromJSON('[\"dev\"]'), 'dev') && startsWith('prod-plan', 'PROD')", True),
        ("format('{0}-{1}', inputs.environment, 'plan')", "qa-plan"),
        ("1 == '1' && null == 0 && !('a' == 'b')", True),
    ],
)
def test_expressions_evaluate_as_github_documents(expression, value):
    context = {"vars": {}, "inputs": {"environment": "qa"},
               "needs": {"plan-platform": {"result": "success", "outputs": {"changes": "true"}},
                         "synth": {"outputs": {"timeout-minutes": "150"}}}}
    assert evaluate(expression, context) == value


def test_conditions_follow_the_needs_results():
    needs = {"plan-platform": {"result": "success"}, "apply-platform": {"result": "skipped"}}
    text = "${{ !cancelled() && needs.plan-platform.result == 'success' && needs.apply-platform.result != 'failure' }}"
    assert condition(text, {"needs": needs}, {"success": False, "failure": False, "cancelled": False})
    assert not condition("needs.plan-platform.result == 'success'", {"needs": needs},
                         {"success": False, "failure": False, "cancelled": False})  # implicit success() && …
    with pytest.raises(ExpressionError, match="not JSON"):
        evaluate("fromJSON('')", {})
    with pytest.raises(ExpressionError, match=r"hashFiles\(\) is not evaluated"):
        evaluate("hashFiles('x')", {})
