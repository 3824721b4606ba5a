"""Adopting CI one environment at a time, and adding an environment in one step.

``[ci] handed_over`` decides whether CI runs an environment: the pull request's plan matrix holds only those handed
over, and the deploy chain (deploy.yml, generated from envs/ in ``[ci] deploy_after`` order) skips one not handed
over while the next still runs, and stops after a failure. Proven with the workflows' own step commands, run as
written, and their ``if:`` conditions, evaluated by tests/gh_expressions.py over the ``needs:`` graph.

``scripts/new-env`` is run as the README writes it, in a fresh copy of the repository, and then the checks a pull
request runs that depend on envs/ are run there: the settings loader, the generated-file checks, the synthesis and
actionlint.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tomllib
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


def template_envs(tmp_path: Path) -> Path:
    """A copy of envs/ as the template ships it, whatever this repository's own environments have reached: nothing
    bootstrapped (own_backend "local") and nothing handed over."""
    envs = copy_envs(tmp_path)
    for path in envs.glob("*.toml"):
        text = re.sub(r'^own_backend = "s3"', 'own_backend = "local"', path.read_text(), flags=re.M)
        path.write_text(re.sub(r"^handed_over = true", "handed_over = false", text, flags=re.M))
    return envs


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
         "finished, so CI's plans would fail; finish it (scripts/bootstrap <env>: "
         "state.own_backend = \"s3\"; docs/implementation-guide.md, \"First deploy\", step 2) before handing the "
         "environment over, or set handed_over = false"),
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
    envs = template_envs(tmp_path)
    edit(envs / "dev.toml", old, new)
    problems = problems_for(envs)
    assert message in problems, problems
    assert str(envs / "dev.toml") in problems


def test_a_file_without_the_keys_is_not_handed_over_and_deploys_first(tmp_path):
    """The default lives in the settings model only: the workflows read it through the model."""
    envs = template_envs(tmp_path)
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
    envs = template_envs(tmp_path)
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
    for envs, expected in ((template_envs(tmp_path), "skipped"),):
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
    envs = template_envs(tmp_path)
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
    envs = template_envs(tmp_path)
    hand_over(envs, *handed)
    results = deploy(envs, tmp_path, outcomes)
    assert {k: v for k, v in results.items() if k != "test"} == expected


def test_a_cancelled_run_promotes_nothing_and_the_shipped_files_deploy_nothing(tmp_path):
    envs = template_envs(tmp_path)
    hand_over(envs, "dev", "qa", "prod")
    assert deploy(envs, tmp_path, cancel_during="dev") == {
        "test": "success", "dev": "cancelled", "qa": "skipped", "prod": "skipped"}
    assert deploy(envs, tmp_path, cancel_during="test") == {
        "test": "cancelled", "dev": "skipped", "qa": "skipped", "prod": "skipped"}
    shipped = deploy(template_envs(tmp_path / "template"), tmp_path)
    assert shipped == {"test": "success", "dev": "skipped", "qa": "skipped", "prod": "skipped"}


def test_each_environment_file_has_its_deploy_job_in_promotion_order():
    """deploy.yml's environment jobs are generated from envs/ (scripts/ci_environments.py; the committed file is
    fresh), one per file, each a call of apply.yml in its own concurrency group."""
    jobs = workflow("deploy.yml")["jobs"]
    assert list(jobs) == ["test", "dev", "qa", "prod"]
    assert [jobs[e]["needs"] for e in ("dev", "qa", "prod")] == [["test"], ["test", "dev"], ["test", "dev", "qa"]]
    for env in ("dev", "qa", "prod"):
        assert jobs[env]["uses"] == "./.github/workflows/apply.yml" and jobs[env]["with"] == {"environment": env}
        assert jobs[env]["concurrency"] == {"group": f"deploy-{env}", "cancel-in-progress": False}
        # apply.yml's synth job reads the GitHub environments: a caller must grant at least that
        assert jobs[env]["permissions"] == {"contents": "read", "id-token": "write", "actions": "read"}
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
    envs = template_envs(tmp_path)
    edit(envs / "prod.toml", 'deploy_after = "qa"', 'deploy_after = "dev"')
    stale = _python("scripts/ci_environments.py", "--check", env={"TWENTYCRM_ENVS_DIR": str(envs)})
    assert stale.returncode == 1, stale.stdout + stale.stderr
    assert "is stale: run `python scripts/ci_environments.py` and commit it" in stale.stderr


# --- scripts/new-env ----------------------------------------------------------------------------------------------

README_SECTION = "## Add an environment"
NEW_ACCOUNT, SHARED = "123456789012", "444455556666"  # a new account; qa's (placeholder) account


def fresh_copy(target: Path) -> Path:
    """The repository's files (tracked and new, not ignored) copied, the installed toolchains linked in."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    for tool in (".venv", "node_modules", ".tools", "tools/checkov/.venv"):
        if (ROOT / tool).exists():
            (target / tool).symlink_to(ROOT / tool)
    return target


def sh(command: str, cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    """A documented command, run by bash as written (``python`` is the project's: .venv/bin first on PATH)."""
    env = {k: v for k, v in os.environ.items() if k != "TWENTYCRM_ENVS_DIR"}
    env["PATH"] = f"{cwd / '.venv' / 'bin'}:{env['PATH']}"
    return subprocess.run(["bash", "-e", "-c", command], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def readme_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    assert README_SECTION in readme
    section = readme.split(README_SECTION, 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, re.S).group(1)
    return [line.split("  #")[0].strip() for line in block.splitlines() if line.strip() and not line.startswith("#")]


def fingerprint(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for d in ("envs", "docs", ".github") for p in sorted((root / d).rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def added(tmp_path_factory):
    """A fresh copy where the README's command added an environment in a new account, and a second command one in
    qa's account; (copy, the README command's result, the shared one's, the files before)."""
    repo = fresh_copy(tmp_path_factory.mktemp("repo"))
    before = fingerprint(repo)
    [command] = readme_commands()
    assert command == f"scripts/new-env uat --from qa --account {NEW_ACCOUNT}"
    first = sh(command, repo)
    shared = sh(f"scripts/new-env demo --from dev --account {SHARED} --after qa", repo)
    return repo, first, shared, before


@pytest.mark.slow
def test_new_env_writes_the_file_from_its_source_and_prints_what_is_left(added):
    repo, first, shared, before = added
    assert first.returncode == 0, first.stdout + first.stderr
    uat_text = (repo / "envs" / "uat.toml").read_text()
    uat = tomllib.loads(uat_text)
    qa = tomllib.loads((repo / "envs" / "qa.toml").read_text())
    assert uat["domain"] == "mgenialuat.olhai.app.br"
    assert (uat["network"]["cidr"], [s["cidr"] for s in uat["network"]["subnets"]]) == (
        "10.3.0.0/16", ["10.3.1.0/24", "10.3.2.0/24", "10.3.3.0/24", "10.3.4.0/24"])
    assert uat["account"] == {**qa["account"], "id": NEW_ACCOUNT, "own_backend": "local", "shared_with": [],
                              "state_bucket": f"olhai-twentycrm-account-{NEW_ACCOUNT}-tfstate"}
    assert uat["ci"] == {**qa["ci"], "github_environment": "uat", "handed_over": False}
    assert (uat["state"]["bucket"], uat["state"]["lock_table"], uat["cluster"]["name"]) == (
        "olhai-twentycrm-uat-tfstate", "twentycrm-uat-tflock", "twentycrm-uat")
    assert uat["apps"]["files_bucket"] == "olhai-twentycrm-uat-files"
    # the rest is qa's, comments included
    assert uat["cluster"]["frontend"] == qa["cluster"]["frontend"] and uat["waf"] == qa["waf"]
    assert "# each address confirms the SNS subscription by e-mail" in uat_text
    assert "# log group aws-waf-logs-twentycrm-uat, KMS-encrypted" in uat_text
    intro, rest = uat_text.split("\n", 1)
    assert intro == "# uat: made from envs/qa.toml by scripts/new-env. Every key is described in docs/settings.md."
    assert "qa" not in rest.lower()  # no value or comment still names qa, its domain (mGenialQA) included
    out = " ".join(first.stdout.split())
    for step in (f"scripts/bootstrap uat` applies the account stack twentycrm-account-{NEW_ACCOUNT}",
                 "the state stack twentycrm-uat-state", "GitHub environments uat (required reviewers",
                 f"uat-plan (branch main), each with the variable AWS_ACCOUNT_ID = {NEW_ACCOUNT}",
                 "delegate mgenialuat.olhai.app.br from its parent zone", "publish the DS record",
                 "handed_over = true in envs/uat.toml"):
        assert step in out, out
    changed = {k for k, v in fingerprint(repo).items() if before.get(k) != v}
    assert changed == {"envs/uat.toml", "envs/demo.toml", "envs/qa.toml", "docs/architecture.md",
                       ".github/workflows/deploy.yml", "docs/security.md"}


@pytest.mark.slow
def test_new_env_in_an_existing_account_adds_the_mutual_shared_with(added):
    repo, _, shared, _ = added
    assert shared.returncode == 0, shared.stdout + shared.stderr
    demo = tomllib.loads((repo / "envs" / "demo.toml").read_text())
    qa = tomllib.loads((repo / "envs" / "qa.toml").read_text())
    assert demo["account"] == {**qa["account"], "shared_with": ["qa"]}
    assert qa["account"]["shared_with"] == ["demo"]
    assert demo["ci"]["deploy_after"] == "qa" and demo["domain"] == "mgenialdemo.olhai.app.br"
    assert demo["network"]["cidr"] == "10.4.0.0/16"  # dev's size, after uat's 10.3
    out = " ".join(shared.stdout.split())
    assert f"in account {SHARED} with qa (one account stack, twentycrm-account-{SHARED}, bootstrapped once" in out
    assert "the account stack" not in out.split("Bootstrap:")[1].split("the state stack")[0]


@pytest.mark.slow
def test_the_checks_of_a_pull_request_pass_after_new_env(added):
    """What a pull request runs that depends on envs/: the settings, the generated files' checks (as the docs
    write them), the synthesis of the new stacks, the suite's tests over every environment file and actionlint;
    and the deploy chain now holds both, uat after dev (qa's place), demo after qa."""
    repo, first, shared, _ = added
    assert first.returncode == 0 and shared.returncode == 0, first.stderr + shared.stderr
    assert [e.name for e in load_all(repo / "envs")] == ["demo", "dev", "prod", "qa", "uat"]
    generated = fingerprint(repo)
    for command in ("python scripts/diagram.py --check", "python scripts/ci_environments.py --check",
                    "python scripts/diagram.py", "python scripts/ci_environments.py"):
        done = sh(command, repo)
        assert done.returncode == 0, command + done.stderr
    assert fingerprint(repo) == generated, "new-env left a generated file stale"
    synth = subprocess.run([str(repo / ".venv" / "bin" / "python"), "main.py"], cwd=repo, capture_output=True,
                           text=True, timeout=600, env={**os.environ, "CDKTF_OUTDIR": str(repo / "cdktf.out")})
    assert synth.returncode == 0, synth.stderr
    stacks = {p.name for p in (repo / "cdktf.out" / "stacks").iterdir()}
    assert {f"twentycrm-uat-{p}" for p in ("state", "platform", "apps")} <= stacks
    assert {f"twentycrm-demo-{p}" for p in ("state", "platform", "apps")} <= stacks
    assert f"twentycrm-account-{NEW_ACCOUNT}" in stacks
    # the tests that hold for every environment file, among them the IAM fence table of docs/security.md
    suite = sh("./scripts/test -n 0 -q -p no:cacheprovider tests/test_iam_fences.py::test_docs_keep_the_computed_table "
               "tests/test_diagram.py tests/test_stacks.py::test_every_environment_has_its_stacks "
               "tests/test_accounts.py::test_one_account_stack_per_distinct_account_first", repo)
    assert suite.returncode == 0, suite.stdout[-4000:] + suite.stderr
    from test_ci import actionlint

    lint = actionlint(*sorted(str(p) for p in (repo / ".github" / "workflows").glob("*.yml")))
    assert lint.returncode == 0, lint.stdout + lint.stderr
    jobs = yaml.safe_load((repo / ".github" / "workflows" / "deploy.yml").read_text())["jobs"]
    assert list(jobs) == ["test", "dev", "qa", "uat", "demo", "prod"]
    assert (jobs["uat"]["needs"], jobs["demo"]["needs"]) == (["test", "dev"], ["test", "dev", "qa"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ("qa --from dev --account 123456789012", "envs/qa.toml already exists; pick another name"),
        ("Staging --from qa --account 123456789012", "<name> 'Staging': not a valid environment name"),
        ("account --from qa --account 123456789012", "<name> 'account': not a valid environment name"),
        ("uat --from stage --account 123456789012", "--from 'stage': there is no envs/stage.toml; copy one of dev, "
                                                    "prod, qa"),
        ("uat --from qa --account 12345678901", "--account '12345678901': not an AWS account ID; give all 12 digits"),
        ("uat --from qa --account 123456789012 --cidr 10.1.0.0/16",
         "envs/uat.toml: network.cidr: 10.1.0.0/16 overlaps 10.1.0.0/16 of envs/qa.toml; give every environment "
         "its own range"),
        ("uat --from qa --account 123456789012 --cidr 10.9.0.1/16", "--cidr '10.9.0.1/16': not an IPv4 network"),
        ("uat --from qa --account 123456789012 --domain mGenialQA.olhai.app.br",
         "envs/uat.toml: domain: 'mgenialqa.olhai.app.br' is already used by envs/qa.toml; pick another"),
        ("uat --from qa --account 123456789012 --after stage", "--after 'stage': there is no envs/stage.toml"),
        ("uat --from qa", "the following arguments are required: --account"),
    ],
    ids=["exists", "bad-name", "reserved-name", "unknown-from", "bad-account", "overlapping-cidr", "bad-cidr",
         "taken-domain", "unknown-after", "no-account"],
)
def test_new_env_refuses_bad_input_and_writes_nothing(tmp_path, args, message):
    repo = fresh_copy(tmp_path)
    before = fingerprint(repo)
    done = sh(f"scripts/new-env {args}", repo)
    assert done.returncode == 2, done.stdout + done.stderr
    assert message in " ".join(done.stderr.split()), done.stderr
    assert fingerprint(repo) == before


def test_new_env_puts_everything_back_when_a_regeneration_fails(tmp_path):
    """deploy.yml without its markers: the diagram was already rewritten when that fails; both come back."""
    repo = fresh_copy(tmp_path)
    deploy_yml = repo / ".github" / "workflows" / "deploy.yml"
    deploy_yml.write_text(deploy_yml.read_text().replace("  # environments:end\n", ""))
    before = fingerprint(repo)
    done = sh(f"scripts/new-env uat --from qa --account {NEW_ACCOUNT}", repo)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "updated docs/architecture.md" in done.stdout
    assert "needs exactly one pair of marker lines" in done.stderr and "Nothing was changed." in done.stderr
    assert fingerprint(repo) == before and not (repo / "envs" / "uat.toml").exists()


def test_the_documented_commands_are_these(tmp_path):
    """README and docs/ci-cd.md name the commands the tests above run."""
    readme = (ROOT / "README.md").read_text()
    doc = (ROOT / "docs" / "ci-cd.md").read_text()
    assert readme_commands() == [f"scripts/new-env uat --from qa --account {NEW_ACCOUNT}"]
    for command in ("python scripts/ci_environments.py", "python scripts/ci_environments.py --check"):
        assert f"\n{command}" in doc, command
    assert "Handing an environment over to CI" in doc and "Handing an environment over to CI" in readme
    handed_over = json.loads(_python("scripts/ci_environments.py", "--handed-over").stdout.split("=", 1)[1])
    assert set(handed_over) == {e.name for e in load_all(ROOT / "envs") if e.ci.handed_over}
