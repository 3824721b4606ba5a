"""Adopting CI one environment at a time, and adding an environment in one step.

``[ci] handed_over`` decides whether CI runs an environment: the pull request's plan matrix holds only those handed
over, and the deploy chain (deploy.yml, generated from envs/ in ``[ci] deploy_after`` order) skips one not handed
over while the next still runs, and stops after a failure. Proven with the workflows' own step commands, run as
written, and their ``if:`` conditions, evaluated by tests/gh_expressions.py over the ``needs:`` graph.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, copy_envs, edit, problems_for
from gh_expressions import evaluate, run_jobs

from modules.settings import load_all

WORKFLOWS = ROOT / ".github" / "workflows"


def workflow(name: str) -> dict:
    data = yaml.safe_load((WORKFLOWS / name).read_text())
    data["on"] = data.pop(True, data.get("on"))
    return data


def hand_over(envs: Path, *names: str) -> None:
    """As a person does it: the bootstrap finished (own_backend "s3" in [state] and [account]), handed_over true."""
    for name in names:
        path = envs / f"{name}.toml"
        text = re.sub(r'^own_backend = "local"', 'own_backend = "s3"', path.read_text(), flags=re.M)
        path.write_text(text)
        edit(path, "handed_over = false", "handed_over = true")


def job_outputs(workflow_name: str, envs: Path, tmp_path: Path) -> dict[str, object]:
    """The test job's outputs: its step ``environments`` run as written (bash, from the repository root, the
    environment files read from ``envs``), and the job's ``outputs:`` expressions evaluated on what it wrote."""
    job = workflow(workflow_name)["jobs"]["test"]
    step = next(s for s in job["steps"] if s.get("id") == "environments")
    output = tmp_path / "github_output"
    output.write_text("")
    subprocess.run(["bash", "-e", "-c", step["run"]], cwd=ROOT, check=True, timeout=60,
                   env={**os.environ, "GITHUB_OUTPUT": str(output), "TWENTYCRM_ENVS_DIR": str(envs)})
    written = dict(line.split("=", 1) for line in output.read_text().splitlines())
    context = {"steps": {"environments": {"outputs": written}}}
    return {name: evaluate(expr.strip()[3:-2], context) for name, expr in job["outputs"].items()}


def matrix(envs: Path, tmp_path: Path) -> list[str]:
    """The pull request's plan matrix, as GitHub expands it from the test job's output."""
    plan = workflow("pull-request.yml")["jobs"]["plan"]
    expression = plan["strategy"]["matrix"]["environment"].strip()[3:-2]
    return evaluate(expression, {"needs": {"test": {"outputs": job_outputs("pull-request.yml", envs, tmp_path)}}})


# --- the setting ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("handed_over = false", 'handed_over = "false"',
         "dev.toml: ci.handed_over: 'false' is not a TOML boolean; write handed_over = true (CI plans and deploys "
         "the environment) or handed_over = false (bootstrapped and deployed by hand), without quotes"),
        ("handed_over = false", "handed_over = true",
         "dev.toml: (top level): ci.handed_over is true but state.own_backend is \"local\": the bootstrap is not "
         "finished, so CI's plans would fail; finish it (README, \"Deploy Twenty from an empty AWS account\", step 2: "
         "state.own_backend = \"s3\") before handing the environment over, or set handed_over = false"),
        ('deploy_after = ""', 'deploy_after = "dev"',
         "dev.toml: (top level): ci.deploy_after names 'dev', this environment itself; name the environment it is "
         "promoted from, or \"\" to deploy right after the tests"),
        ('deploy_after = ""', 'deploy_after = "stage"',
         "dev.toml: ci.deploy_after: 'stage' names no environment (there is no envs/stage.toml); name one of prod, "
         "qa, or \"\" to deploy right after the tests"),
        ('deploy_after = ""', 'deploy_after = "prod"',
         "dev.toml: ci.deploy_after: the environments deploy after each other in a circle (dev -> prod -> qa -> "
         "dev), so none would ever deploy; set deploy_after = \"\" in the file of the one that comes first"),
        ('deploy_after = ""', 'deploy_after = "Dev"',
         "dev.toml: ci.deploy_after: 'Dev' is not an environment name (its file name without .toml) or \"\" "
         "(first)"),
    ],
    ids=["quoted", "not-bootstrapped", "itself", "unknown", "circle", "bad-name"],
)
def test_bad_hand_over_settings_are_named_with_the_fix(tmp_path, old, new, message):
    envs = copy_envs(tmp_path)
    edit(envs / "dev.toml", old, new)
    problems = problems_for(envs)
    assert message in problems, problems
    assert str(envs / "dev.toml") in problems


def test_a_file_without_the_keys_is_not_handed_over_and_deploys_first(tmp_path):
    """The default lives in the settings model only: the workflows read it through the model."""
    envs = copy_envs(tmp_path)
    hand_over(envs, "qa")
    edit(envs / "qa.toml", "handed_over = true\n", "")
    edit(envs / "qa.toml", re.search(r"deploy_after = .*\n", (envs / "qa.toml").read_text()).group(0), "")
    [qa] = [e for e in load_all(envs) if e.name == "qa"]
    assert (qa.ci.handed_over, qa.ci.deploy_after) == (False, "")
    assert matrix(envs, tmp_path) == []


# --- pull requests ------------------------------------------------------------------------------------------------


def test_the_plan_matrix_holds_only_the_environments_handed_over(tmp_path):
    """The test job's step, run as written: dev (not handed over) is not planned, qa and prod are; a new file
    joins only once handed over."""
    envs = copy_envs(tmp_path)
    hand_over(envs, "qa", "prod")
    assert matrix(envs, tmp_path) == ["qa", "prod"]
    staging = envs / "staging.toml"
    staging.write_text((envs / "qa.toml").read_text().replace("-qa-", "-staging-").replace("10.1.", "10.7.")
                       .replace('"twentycrm-qa"', '"twentycrm-staging"').replace("mGenialQA", "mGenialStaging")
                       .replace('github_environment = "qa"', 'github_environment = "staging"')
                       .replace("444455556666", "121212121212"))
    assert matrix(envs, tmp_path) == ["qa", "staging", "prod"]  # staging: after dev, as qa
    edit(staging, "handed_over = true", "handed_over = false")
    assert matrix(envs, tmp_path) == ["qa", "prod"]


def test_with_nothing_handed_over_the_plan_job_is_skipped_not_failed(tmp_path):
    """GitHub fails a job whose matrix is empty; the plan job's ``if:`` skips it instead. The shipped files hand
    nothing over (placeholder accounts): a fresh copy of the template gets green pull requests."""
    jobs = workflow("pull-request.yml")["jobs"]
    for envs, expected in ((ROOT / "envs", "skipped"), (copy_envs(tmp_path), "skipped")):
        outputs = {"test": job_outputs("pull-request.yml", envs, tmp_path)}
        assert outputs["test"]["environments"] == "[]"
        assert run_jobs(jobs, {}, outputs) == {"test": "success", "plan": expected}
    hand_over(tmp_path / "envs", "dev")
    outputs = {"test": job_outputs("pull-request.yml", tmp_path / "envs", tmp_path)}
    assert run_jobs(jobs, {}, outputs) == {"test": "success", "plan": "success"}
    assert run_jobs(jobs, {"test": "failure"}, outputs)["plan"] == "skipped"


# --- deploys on main ----------------------------------------------------------------------------------------------


def deploy(envs: Path, tmp_path: Path, outcomes: dict[str, str] | None = None, cancel_during: str | None = None
           ) -> dict[str, str]:
    jobs = workflow("deploy.yml")["jobs"]
    outputs = {"test": job_outputs("deploy.yml", envs, tmp_path)}
    return run_jobs(jobs, outcomes or {}, outputs, cancel_during=cancel_during)


def test_qa_is_promoted_past_a_dev_not_handed_over(tmp_path):
    envs = copy_envs(tmp_path)
    hand_over(envs, "qa", "prod")
    assert deploy(envs, tmp_path) == {"test": "success", "dev": "skipped", "qa": "success", "prod": "success"}
    # prod's own failure ends its run and nobody else's
    assert deploy(envs, tmp_path, {"prod": "failure"})["qa"] == "success"


@pytest.mark.parametrize(
    ("handed", "outcomes", "expected"),
    [
        (("dev", "qa", "prod"), {"dev": "failure"}, {"dev": "failure", "qa": "skipped", "prod": "skipped"}),
        (("qa", "prod"), {"qa": "failure"}, {"dev": "skipped", "qa": "failure", "prod": "skipped"}),
        (("dev", "prod"), {"dev": "failure"}, {"dev": "failure", "qa": "skipped", "prod": "skipped"}),
        (("dev", "prod"), {}, {"dev": "success", "qa": "skipped", "prod": "success"}),
        (("dev", "qa", "prod"), {"test": "failure"}, {"dev": "skipped", "qa": "skipped", "prod": "skipped"}),
    ],
    ids=["dev-fails", "qa-fails-after-skipped-dev", "dev-fails-qa-not-handed-over", "qa-not-handed-over",
         "tests-fail"],
)
def test_a_failure_stops_the_promotion_even_across_a_skipped_environment(tmp_path, handed, outcomes, expected):
    """Skipped (not handed over) lets the next environment go on; failed never does, also two steps down: with qa
    not handed over, a failed dev still stops prod (qa is skipped, and prod checks dev too)."""
    envs = copy_envs(tmp_path)
    hand_over(envs, *handed)
    results = deploy(envs, tmp_path, outcomes)
    assert {k: v for k, v in results.items() if k != "test"} == expected


def test_a_cancelled_run_promotes_nothing_and_the_shipped_files_deploy_nothing(tmp_path):
    envs = copy_envs(tmp_path)
    hand_over(envs, "dev", "qa", "prod")
    assert deploy(envs, tmp_path, cancel_during="dev") == {
        "test": "success", "dev": "cancelled", "qa": "skipped", "prod": "skipped"}
    assert deploy(envs, tmp_path, cancel_during="test") == {
        "test": "cancelled", "dev": "skipped", "qa": "skipped", "prod": "skipped"}
    assert deploy(ROOT / "envs", tmp_path) == {"test": "success", "dev": "skipped", "qa": "skipped", "prod": "skipped"}


def test_each_environment_file_has_its_deploy_job_in_promotion_order():
    """deploy.yml's environment jobs are generated from envs/ (scripts/ci_environments.py; the committed file is
    fresh), one per file, each a call of apply.yml in its own concurrency group."""
    jobs = workflow("deploy.yml")["jobs"]
    assert list(jobs) == ["test", "dev", "qa", "prod"]
    assert [jobs[e]["needs"] for e in ("dev", "qa", "prod")] == [["test"], ["test", "dev"], ["test", "dev", "qa"]]
    for env in ("dev", "qa", "prod"):
        assert jobs[env]["uses"] == "./.github/workflows/apply.yml" and jobs[env]["with"] == {"environment": env}
        assert jobs[env]["concurrency"] == {"group": f"deploy-{env}", "cancel-in-progress": False}
        assert jobs[env]["permissions"] == {"contents": "read", "id-token": "write"}
    # no run-wide group: a run waiting (up to GitHub's 30 days) for prod's approval must not hold dev and qa
    assert "concurrency" not in workflow("deploy.yml")
    # the same command computes the environments for the pull request's plans and for the deploys
    steps = [next(s for s in workflow(f)["jobs"]["test"]["steps"] if s.get("id") == "environments")["run"]
             for f in ("pull-request.yml", "deploy.yml")]
    assert steps[0] == steps[1]
    check = _python("scripts/ci_environments.py", "--check")
    assert check.returncode == 0, check.stderr


def _python(*args: str, env: dict | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([str(ROOT / ".venv" / "bin" / "python"), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env={**os.environ, **(env or {})})


def test_a_new_promotion_order_makes_deploy_yml_stale(tmp_path):
    envs = copy_envs(tmp_path)
    edit(envs / "prod.toml", 'deploy_after = "qa"', 'deploy_after = "dev"')
    stale = _python("scripts/ci_environments.py", "--check", env={"TWENTYCRM_ENVS_DIR": str(envs)})
    assert stale.returncode == 1, stale.stdout + stale.stderr
    assert "is stale: run `python scripts/ci_environments.py` and commit it" in stale.stderr
