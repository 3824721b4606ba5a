"""Runs the jobs of .github/workflows/*.yml here as GitHub's runners would, to show that each job can run its steps
with what it installs itself (tests/test_workflow_jobs.py).

What a job gets, as on a runner:

- a workspace that is empty until ``actions/checkout``, which clones the repository at the run's commit (a fresh
  clone of the working tree's HEAD: no .venv, no node_modules, no cdktf.out);
- a PATH of the system's tools only (/usr/sbin, /usr/bin, /sbin, /bin: bash, git, curl, jq, python3, node) plus the
  AWS CLI that GitHub's ubuntu-24.04 image and the CodeBuild runner image both carry (played by the project's pinned
  awscli, linked alone: nothing else of the developer's .venv), and what the job's own steps add: ``setup-python``
  and ``setup-node`` the system's python3 and node, ``setup-terraform`` the terraform on the developer's PATH,
  ``$GITHUB_PATH`` lines. A step that needs a tool its job does not install fails as it would on GitHub (exit 127);
- an environment of GitHub's default variables (CI=true, GITHUB_*, RUNNER_*), the workflow's, job's and step's
  ``env:``, and ``$GITHUB_ENV``; ``$GITHUB_OUTPUT`` (step outputs, ``steps.<id>.outputs``) and
  ``$GITHUB_STEP_SUMMARY`` files per step;
- each ``run:`` step, with its ``${{ }}`` substituted from the contexts (github, inputs, vars, env, matrix, steps,
  needs, job, runner, strategy, secrets; tests/workflow_expressions.py), written to a file and run with
  ``bash --noprofile --norc -eo pipefail <file>`` in the workspace;
- ``uses:`` steps emulated by what they do: checkout (above), setup-* (above), upload-/download-artifact (a directory
  of the run, by name: the least common ancestor of the paths as root, hidden files only with
  ``include-hidden-files``), configure-aws-credentials (with the job's ``id-token: write`` only: STS
  AssumeRoleWithWebIdentity of ``role-to-assume`` on a moto server, which answers as the role's account, and the
  action's variables, plus ``AWS_ENDPOINT_URL``/``AWS_CA_BUNDLE`` pointing at moto). An action it does not know
  stops the run, naming it.

Jobs run in the order of their ``needs``; a job's ``if:`` (``success()`` by default) sees the results of its needs,
``strategy.matrix`` expands (include/exclude too), ``timeout-minutes`` must evaluate to a positive number (GitHub
fails the job otherwise), ``environment:`` selects that GitHub environment's variables, and a job that ``uses:`` a
workflow of the repository runs that workflow's jobs with its ``with:`` as ``inputs``, after the permission check
GitHub makes when the run starts (a called job may not ask for more than its caller grants).

Steps not run here, and why, are ``NOT_RUN``; a step that runs until it reaches a service this machine cannot reach
is ``STOPS_SHORT``. Both are matched on the step's ``run:`` text, so a new job or step is run unless it matches.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import shlex
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from workflow_expressions import ExpressionError, condition, substitute, to_string

SYSTEM_PATH = ("/usr/sbin", "/usr/bin", "/sbin", "/bin")
TOOLCHAIN = (".venv", ".tools", "node_modules", "tools/checkov/.venv")  # what scripts/env.sh installs
LOCKS = {".venv": "Pipfile.lock", ".tools": "tools/pipenv/requirements.txt", "node_modules": "package-lock.json",
         "tools/checkov/.venv": "tools/checkov/Pipfile.lock"}
STAMPS = {".venv": ".venv/.installed", ".tools": ".tools/pipenv/.installed",
          "node_modules": "node_modules/.installed", "tools/checkov/.venv": "tools/checkov/.venv/.installed"}
LEVELS = {"none": 0, "read": 1, "write": 2}
SCOPES = ("actions", "attestations", "checks", "contents", "deployments", "discussions", "id-token", "issues",
          "models", "packages", "pages", "pull-requests", "repository-projects", "security-events", "statuses")


class WorkflowRefused(RuntimeError):
    """GitHub would not start the run (what it shows instead of any job)."""


class HarnessError(RuntimeError):
    """The harness cannot emulate something the workflow uses: extend it (this file)."""


@dataclass(frozen=True)
class NotRun:
    pattern: str  # searched in the step's run: text
    reason: str
    stand_in: str | None = None  # Harness method leaving what the step leaves for later steps and jobs
    heavy: bool = False  # run for real when the harness is asked to (``heavy=True``)


NOT_RUN = (
    NotRun(r"^\./scripts/test\b", "the test suite, which holds this harness (it would run itself); tests/test_ci.py "
           "checks every such job runs ./scripts/ci-prepare first"),
    NotRun(r"^\./scripts/ci-prepare$", "fetches hashicorp/aws from releases.hashicorp.com and apt-get installs "
           "cloud-init: no network here but the package registries (tests/test_ci.py checks its pin and checksum)"),
    NotRun(r"ci-terraform check-environment ", "GitHub's REST API (gh api …/environments/…) with the job's token; "
           "tests/test_ci.py runs the check against a stand-in gh"),
    NotRun(r"ci-terraform plan ", "a plan against the environment's state (S3 backend) and its AWS account; "
           "tests/test_platform_apply.py plans and applies the stacks against moto"),
    NotRun(r"ci-terraform save-plan ", "a plan against the environment's state (S3 backend) and its AWS account; "
           "tests/test_ci.py runs save-plan and apply-plan with real terraform on a local stack. Stood in for by what "
           "save-plan leaves the later jobs (the stack's files, ci-settings.json among them, without a tfplan, and "
           "changes=true), so the apply jobs run", stand_in="saved_plan"),
    NotRun(r"ci-terraform apply-plan ", "applies to the environment's AWS account (the apps stack also through its "
           "private EKS endpoint)"),
    NotRun(r"^\./scripts/synth$", "scripts/env.sh installs the toolchain (about 2.5 min) and cdktf synthesizes: "
           "stood in for by what it leaves, cdktf.out of the session's synthesized app (same envs/ and code) and the "
           "toolchain scripts/env.sh installed from the same lock files (the developer's, linked in after comparing "
           "the lock files' hashes); run for real by the heavy test", stand_in="synthesized", heavy=True),
    NotRun(r"security_scan\.py cdktf\.out", "checkov over every stack and chart (about 40 s); run for real by the "
           "heavy test", heavy=True),
)


@dataclass(frozen=True)
class StopsShort:
    pattern: str  # the step's run: text
    expected: str  # what it must print where it stops (stderr or stdout)
    reason: str


STOPS_SHORT = (
    StopsShort(r"^\./scripts/images warm ",
               r"scripts/images warm: https://\d{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com/v2/\S+/manifests/\S+: "
               r"\[Errno -?\d+\]",
               "the environment's ECR registry endpoint is not reachable here: the step ran on the job's own tools, "
               "made its AWS calls (DescribeSecret, GetAuthorizationToken) against moto and stopped at its first "
               "manifest request by tag; tests/test_images.py runs the whole warm against a local registry"),
)


@dataclass
class StepResult:
    name: str
    outcome: str  # success | failure | skipped | not run | stand-in | stopped short
    reason: str = ""
    output: str = ""
    exit_code: int | None = None
    outputs: dict[str, str] = field(default_factory=dict)
    run: str = ""  # the step's run: text as written (uses: steps: the action)

    def line(self) -> str:
        text = f"    {self.outcome:<13} {self.name}"
        if self.reason:
            text += f"  ({self.reason})"
        if self.outcome == "failure" and self.exit_code is not None:
            text += f"  (exit {self.exit_code})"
        if self.outcome == "failure":
            text += "\n" + "\n".join("      | " + line for line in self.output.strip().splitlines()[-25:])
        return text


@dataclass
class JobResult:
    key: str  # workflow/job[ (matrix)]
    result: str  # success | failure | skipped
    steps: list[StepResult] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)
    workspace: Path | None = None
    path: str = ""
    installed: list[str] = field(default_factory=list)  # toolchain directories present at the job's end
    roles: list[str] = field(default_factory=list)  # role ARNs assumed by configure-aws-credentials
    runs_on: str = ""
    reason: str = ""

    def step(self, pattern: str) -> StepResult:
        """The one step whose run: text (or action) matches ``pattern``."""
        found = [s for s in self.steps if re.search(pattern, s.run)]
        assert len(found) == 1, f"{self.key}: {len(found)} steps match {pattern!r}: {[s.run for s in self.steps]}"
        return found[0]


@dataclass
class WorkflowRun:
    jobs: list[JobResult] = field(default_factory=list)

    def job(self, key: str) -> JobResult:
        found = [j for j in self.jobs if j.key == key]
        assert len(found) == 1, f"no single job {key!r} in {[j.key for j in self.jobs]}"
        return found[0]

    def summary(self) -> str:
        lines = []
        for job in self.jobs:
            lines.append(f"{job.result:<8} {job.key}" + (f"  ({job.reason})" if job.reason else ""))
            lines += [s.line() for s in job.steps]
        return "\n".join(lines)


def load_workflow(path: Path) -> dict:
    data = yaml.safe_load(path.read_text())
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as True
    return data


def _permissions(value: Any) -> dict[str, int]:
    if value is None:
        return {}
    if value in ("read-all", "write-all"):
        level = LEVELS[value.split("-")[0]]
        return {scope: level for scope in SCOPES}
    if value == {}:
        return {scope: 0 for scope in SCOPES}
    return {scope: LEVELS[value.get(scope, "none")] for scope in SCOPES}


DEFAULT_PERMISSIONS = {scope: 0 for scope in SCOPES} | {"contents": 1, "packages": 1}  # GitHub's "restricted"


def _toolchain_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Harness:
    """One repository (``origin``: a fresh clone), one moto server (``aws``), GitHub's set-up (``repository``,
    ``variables`` of the repository, ``environments``: each GitHub environment's variables)."""

    def __init__(self, *, origin: Path, work: Path, aws: Any, environments: dict[str, dict[str, str]],
                 repository: str, variables: dict[str, str] | None = None, synthesized: Path | None = None,
                 toolchain: Path | None = None, heavy: bool = False) -> None:
        self.origin, self.work, self.aws = origin, work, aws
        self.environments, self.repository, self.variables = environments, repository, variables or {}
        self.synthesized, self.toolchain, self.heavy = synthesized, toolchain, heavy
        self.sha = subprocess.run(["git", "-C", str(origin), "rev-parse", "HEAD"], check=True, capture_output=True,
                                  text=True).stdout.strip()
        self.runner_bin = work / "runner-tools"
        self.runner_bin.mkdir(parents=True, exist_ok=True)
        aws_cli = (toolchain or Path("/nonexistent")) / ".venv" / "bin" / "aws"
        if not aws_cli.is_file():
            raise HarnessError(f"no aws CLI at {aws_cli} to play the runner image's (run scripts/env.sh)")
        link = self.runner_bin / "aws"
        if not link.exists():
            link.symlink_to(aws_cli)
        self.terraform = shutil.which("terraform")
        self._runs = itertools.count(1000)

    # --- workflows and jobs ---------------------------------------------------------------------------------

    def run(self, workflow: Path, *, event: str, payload: dict | None = None, inputs: dict | None = None,
            only: tuple[str, ...] | None = None) -> WorkflowRun:
        """One run of ``workflow`` (a path in or outside the clone) for ``event``."""
        run_id = next(self._runs)
        base = self.work / f"run-{run_id}"
        base.mkdir(parents=True)
        github = self._github(event, payload or {}, run_id, workflow)
        result = WorkflowRun()
        self._workflow(load_workflow(workflow), workflow.name, github, inputs or {}, base, result, only=only,
                       granted=None, artifacts={})
        return result

    def _github(self, event: str, payload: dict, run_id: int, workflow: Path) -> dict:
        owner = self.repository.split("/")[0]
        ref = {"push": "refs/heads/main", "workflow_dispatch": "refs/heads/main"}.get(event, "refs/heads/main")
        if event == "pull_request":
            number = payload.get("pull_request", {}).get("number", 1)
            ref = f"refs/pull/{number}/merge"
        return {"repository": self.repository, "repository_owner": owner, "sha": self.sha, "ref": ref,
                "ref_name": ref.rsplit("/", 1)[-1], "event_name": event, "event": payload, "run_id": str(run_id),
                "run_attempt": "1", "run_number": "1", "token": "ghs_harness-token-not-valid-anywhere",
                "actor": "harness", "workflow": workflow.stem, "server_url": "https://github.com",
                "api_url": "https://api.github.com", "head_ref": "", "base_ref": ""}

    def _workflow(self, data: dict, name: str, github: dict, inputs: dict, base: Path, result: WorkflowRun, *,
                  only: tuple[str, ...] | None, granted: dict[str, int] | None, artifacts: dict,
                  prefix: str = "") -> tuple[str, dict]:
        declared = ((data.get("on") or {}).get("workflow_call") or {}).get("inputs") or {} \
            if isinstance(data.get("on"), dict) else {}
        inputs = {**{k: v.get("default") for k, v in declared.items()}, **inputs}
        for key, spec in declared.items():
            if spec.get("required") and inputs.get(key) in (None, ""):
                raise WorkflowRefused(f"{name}: input {key!r} is required")
        top = {"github": github, "inputs": inputs, "vars": self.variables, "secrets": {"GITHUB_TOKEN": github["token"]}}
        workflow_env = {k: to_string(substitute(v, top)) for k, v in (data.get("env") or {}).items()}
        workflow_permissions = data.get("permissions")
        jobs: dict = data["jobs"]
        if granted is not None:  # a called workflow: GitHub checks every job's permissions before starting the run
            for job_id, job in jobs.items():
                asked = _permissions(job.get("permissions", workflow_permissions))
                for scope, level in asked.items():
                    if level > granted.get(scope, 0):
                        allowed = [k for k, v in LEVELS.items() if v == granted.get(scope, 0)][0]
                        wanted = [k for k, v in LEVELS.items() if v == level][0]
                        raise WorkflowRefused(f"The nested job '{job_id}' is requesting '{scope}: {wanted}', but is "
                                              f"only allowed '{scope}: {allowed}'.")
        results: dict[str, dict] = {}
        for job_id in _ordered(jobs):
            job = jobs[job_id]
            needs = [job["needs"]] if isinstance(job.get("needs"), str) else list(job.get("needs") or [])
            needs_ctx = {n: results[n] for n in needs}
            status = {"success": all(r["result"] == "success" for r in needs_ctx.values()),
                      "failure": any(r["result"] == "failure" for r in needs_ctx.values()), "cancelled": False}
            context = {**top, "needs": needs_ctx, "env": dict(workflow_env)}
            key = f"{prefix}{name}/{job_id}"
            if only is not None and job_id not in only:
                results[job_id] = {"result": "skipped", "outputs": {}}
                continue
            if not condition(job.get("if"), context, status):
                result.jobs.append(JobResult(key, "skipped", reason=f"if: {job.get('if', 'success()')}"))
                results[job_id] = {"result": "skipped", "outputs": {}}
                continue
            permissions = _permissions(job.get("permissions", workflow_permissions)) or dict(DEFAULT_PERMISSIONS)
            if granted is not None:
                permissions = {s: min(v, granted.get(s, 0)) for s, v in permissions.items()}
            if "uses" in job:
                results[job_id] = self._call(job, context, github, base, result, artifacts, permissions, key)
                continue
            combos = self._matrix(job, context)
            outcome, outputs = "success", {}
            for combo in combos:
                label = f"{key} ({', '.join(to_string(v) for v in combo.values())})" if combo else key
                home = base / re.sub(r"[^\w.-]+", "_", label)
                job_result = self._job(job_id, job, {**context, "matrix": combo, "strategy": {}}, workflow_env, home,
                                       label, permissions, artifacts)
                result.jobs.append(job_result)
                outputs.update({k: v for k, v in job_result.outputs.items() if v not in (None, "")})
                if job_result.result == "failure":
                    outcome = "failure"
            results[job_id] = {"result": outcome, "outputs": outputs}
        failed = any(r["result"] == "failure" for r in results.values())
        return ("failure" if failed else "success"), results

    def _call(self, job: dict, context: dict, github: dict, base: Path, result: WorkflowRun, artifacts: dict,
              permissions: dict[str, int], key: str) -> dict:
        uses = job["uses"]
        if not uses.startswith("./"):
            raise HarnessError(f"{key}: only workflows of this repository can be called here, not {uses}")
        called = self.origin / uses[2:].split("@")[0]
        data = load_workflow(called)
        if ((data.get("on") or {}).get("workflow_call") or {}).get("outputs"):
            raise HarnessError(f"{called.name}: workflow_call outputs are not emulated yet (tests/workflow_harness.py)")
        inputs = {k: substitute(v, context) for k, v in (job.get("with") or {}).items()}
        outcome, _ = self._workflow(data, called.name, github, inputs, base, result,
                                          only=None, granted=permissions, artifacts=artifacts,
                                          prefix=f"{key} → ")
        return {"result": outcome, "outputs": {}}

    def _matrix(self, job: dict, context: dict) -> list[dict]:
        matrix = (job.get("strategy") or {}).get("matrix")
        if matrix is None:
            return [{}]
        matrix = substitute(matrix, context)
        if not isinstance(matrix, dict):
            raise HarnessError(f"strategy.matrix evaluated to {matrix!r}, not a mapping")
        include, exclude = matrix.pop("include", []) or [], matrix.pop("exclude", []) or []
        for key, values in matrix.items():
            if not isinstance(values, list) or not values:
                raise WorkflowRefused(f"Matrix vector '{key}' does not contain any values ({values!r})")
        combos = [dict(zip(matrix, values)) for values in itertools.product(*matrix.values())] if matrix else []
        combos = [c for c in combos if not any(all(c.get(k) == v for k, v in e.items()) for e in exclude)]
        for extra in include:
            matched = [c for c in combos if all(c.get(k) == v for k, v in extra.items() if k in matrix)]
            if matched:
                for c in matched:
                    c.update(extra)
            else:
                combos.append(dict(extra))
        return combos or [{}]

    def _job(self, job_id: str, job: dict, context: dict, workflow_env: dict, home: Path, key: str,
             permissions: dict[str, int], artifacts: dict) -> JobResult:
        workspace, temp, bin_dir = home / "work", home / "runner-temp", home / "tools"
        for d in (workspace, temp, bin_dir):
            d.mkdir(parents=True)
        status = {"success": True, "failure": False, "cancelled": False}
        result = JobResult(key, "success", workspace=workspace)
        try:
            result.runs_on = to_string(substitute(job.get("runs-on"), context))
            environment = substitute(job.get("environment"), context)
            environment = environment.get("name") if isinstance(environment, dict) else environment
            variables = {**self.variables, **self.environments.get(environment or "", {})}
            context = {**context, "vars": variables, "runner": {"os": "Linux", "arch": "X64", "temp": str(temp)},
                       "job": {"status": "success"}, "steps": {}}
            if "timeout-minutes" in job:
                minutes = substitute(job["timeout-minutes"], context)
                if isinstance(minutes, str):
                    minutes = float(minutes) if re.fullmatch(r"\d+(\.\d+)?", minutes) else minutes
                if not isinstance(minutes, (int, float)) or isinstance(minutes, bool) or minutes <= 0:
                    raise ExpressionError(f"timeout-minutes is {minutes!r}, not a positive number")
            job_env = {k: to_string(substitute(v, context)) for k, v in (job.get("env") or {}).items()}
        except ExpressionError as err:
            result.result, result.reason = "failure", f"the job cannot start: {err}"
            return result
        env_context = {**workflow_env, **job_env}  # the `env` context: what env: and $GITHUB_ENV set
        env = {
            "HOME": os.environ.get("HOME", str(home)), "LANG": "C.UTF-8", "CI": "true", "GITHUB_ACTIONS": "true",
            "RUNNER_OS": "Linux", "RUNNER_ARCH": "X64", "RUNNER_TEMP": str(temp), "GITHUB_WORKSPACE": str(workspace),
            "GITHUB_REPOSITORY": self.repository, "GITHUB_REPOSITORY_OWNER": context["github"]["repository_owner"],
            "GITHUB_SHA": self.sha, "GITHUB_REF": context["github"]["ref"],
            "GITHUB_REF_NAME": context["github"]["ref_name"], "GITHUB_EVENT_NAME": context["github"]["event_name"],
            "GITHUB_RUN_ID": context["github"]["run_id"], "GITHUB_RUN_ATTEMPT": "1", "GITHUB_RUN_NUMBER": "1",
            "GITHUB_JOB": job_id, "GITHUB_WORKFLOW": context["github"]["workflow"], "GITHUB_ACTOR": "harness",
            "GITHUB_SERVER_URL": "https://github.com", "GITHUB_API_URL": "https://api.github.com",
            **workflow_env, **job_env,
        }
        (temp / "event.json").write_text(json.dumps(context["github"]["event"]))
        env["GITHUB_EVENT_PATH"] = str(temp / "event.json")
        added_path: list[str] = []
        exported: dict[str, str] = {}
        steps_ctx: dict[str, dict] = {}
        for index, step in enumerate(job.get("steps") or []):
            name = step.get("name") or step.get("uses") or step.get("run", "").splitlines()[0]
            context = {**context, "steps": steps_ctx, "env": {**env_context, **exported}}
            path = ":".join([*reversed(added_path), str(bin_dir), str(self.runner_bin), *SYSTEM_PATH])
            try:  # an expression GitHub cannot evaluate fails the step, as there
                if not condition(step.get("if"), context, status):
                    result.steps.append(StepResult(name, "skipped", f"if: {step.get('if', 'success()')}"))
                    if step.get("id"):
                        steps_ctx[step["id"]] = {"outputs": {}, "outcome": "skipped", "conclusion": "skipped"}
                    continue
                step_env = {k: to_string(substitute(v, context)) for k, v in (step.get("env") or {}).items()}
                context = {**context, "env": {**context["env"], **step_env}}
                files = {n: temp / f"{n.lower()}-{index}" for n in ("GITHUB_OUTPUT", "GITHUB_ENV", "GITHUB_PATH",
                                                                   "GITHUB_STEP_SUMMARY")}
                for f in files.values():
                    f.write_text("")
                step_env_all = {**env, **exported, **step_env, **{k: str(v) for k, v in files.items()}, "PATH": path}
                if "uses" in step:
                    outcome = self._action(step, context, step_env_all, workspace, bin_dir, permissions, artifacts,
                                           result, files)
                else:
                    outcome = self._run(step, context, step_env_all, workspace, files, name, result)
            except ExpressionError as err:
                outcome = StepResult(name, "failure", output=str(err))
            outcome.name, outcome.run = name, step.get("run", step.get("uses", ""))
            if outcome.outcome in ("success", "stand-in", "stopped short"):
                outcome.outputs = _key_values(files["GITHUB_OUTPUT"]) | outcome.outputs
                exported.update(_key_values(files["GITHUB_ENV"]))
                added_path += [line for line in files["GITHUB_PATH"].read_text().splitlines() if line.strip()]
            result.steps.append(outcome)
            failed = outcome.outcome == "failure" and not step.get("continue-on-error")
            conclusion = "failure" if failed else "success" if outcome.outcome != "skipped" else "skipped"
            if step.get("id"):
                steps_ctx[step["id"]] = {"outputs": outcome.outputs, "outcome": outcome.outcome, "conclusion":
                                         conclusion}
            if failed:
                status = {"success": False, "failure": True, "cancelled": False}
                result.result = "failure"
        context = {**context, "steps": steps_ctx}
        try:
            result.outputs = {k: to_string(substitute(v, context)) for k, v in (job.get("outputs") or {}).items()}
        except ExpressionError as err:
            result.result, result.reason = "failure", f"outputs: {err}"
        result.path = ":".join([*reversed(added_path), str(bin_dir), str(self.runner_bin), *SYSTEM_PATH])
        result.installed = [d for d in TOOLCHAIN if (workspace / d).exists()]
        return result

    # --- run: steps -------------------------------------------------------------------------------------------

    def _run(self, step: dict, context: dict, env: dict, workspace: Path, files: dict, name: str,
             job: JobResult) -> StepResult:
        raw = step["run"].strip()
        for entry in NOT_RUN:
            if re.search(entry.pattern, raw, re.MULTILINE) and not (entry.heavy and self.heavy):
                if entry.stand_in:
                    getattr(self, f"_stand_in_{entry.stand_in}")(substitute(raw, context), workspace, files)
                    return StepResult(name, "stand-in", entry.reason)
                return StepResult(name, "not run", entry.reason)
        script = substitute(step["run"], context)
        shell = step.get("shell") or "bash"
        if shell != "bash":
            raise HarnessError(f"{job.key}: step {name!r} uses shell {shell!r}; only bash is emulated")
        script_file = Path(env["RUNNER_TEMP"]) / f"step-{len(job.steps)}.sh"
        script_file.write_text(script)
        bash = shutil.which("bash", path=env["PATH"])
        if bash is None:
            return StepResult(name, "failure", output="bash is not on the job's PATH")
        cwd = workspace / step["working-directory"] if step.get("working-directory") else workspace
        minutes = float(substitute(step.get("timeout-minutes", 60), context))
        try:
            done = subprocess.run([bash, "--noprofile", "--norc", "-eo", "pipefail", str(script_file)], cwd=cwd,
                                  env=env, capture_output=True, text=True, timeout=minutes * 60)
        except subprocess.TimeoutExpired as err:
            return StepResult(name, "failure", output=f"timed out after {minutes:g} min: {err}")
        output = done.stdout + done.stderr
        if done.returncode != 0:
            for stop in STOPS_SHORT:
                if re.search(stop.pattern, raw) and re.search(stop.expected, output):
                    return StepResult(name, "stopped short", stop.reason, output, done.returncode)
        return StepResult(name, "success" if done.returncode == 0 else "failure", output=output,
                          exit_code=done.returncode)

    def _stand_in_synthesized(self, command: str, workspace: Path, files: dict) -> None:
        """What ./scripts/synth leaves: the toolchain (linked from the developer's, which must have been installed
        from this commit's lock files) and cdktf.out (the session's synthesized app)."""
        if self.synthesized is None or self.toolchain is None:
            raise HarnessError("the synth stand-in needs the session's synthesized app and the developer's toolchain")
        for directory, lock in LOCKS.items():
            stamp = self.toolchain / STAMPS[directory]
            if not stamp.is_file() or stamp.read_text().strip() != _toolchain_hash(workspace / lock):
                raise HarnessError(f"{self.toolchain / directory} was not installed from this commit's {lock}: run "
                                   "`source scripts/env.sh` (or commit the lock file) first")
            target = workspace / directory
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(self.toolchain / directory)
        shutil.copytree(self.synthesized, workspace / "cdktf.out", symlinks=True)

    def _stand_in_saved_plan(self, command: str, workspace: Path, files: dict) -> None:
        """What `ci-terraform save-plan <env> <part> <dir>` leaves for later steps and jobs, but the plan itself:
        <dir>/<stack>/ with the stack's files (no .terraform, no tfplan) and changes=true in $GITHUB_OUTPUT."""
        words = shlex.split(command)
        env, part, plans = words[words.index("save-plan") + 1:][:3]
        [stack] = (workspace / "cdktf.out" / "stacks").glob(f"*-{env}-{part}")
        shutil.copytree(stack, workspace / plans / stack.name, ignore=shutil.ignore_patterns(".terraform"))
        with files["GITHUB_OUTPUT"].open("a") as f:
            f.write("changes=true\n")

    # --- uses: steps ------------------------------------------------------------------------------------------

    def _action(self, step: dict, context: dict, env: dict, workspace: Path, bin_dir: Path,
                permissions: dict[str, int], artifacts: dict, job: JobResult, files: dict) -> StepResult:
        action = step["uses"].split("@")[0]
        inputs = {k: substitute(v, context) for k, v in (step.get("with") or {}).items()}
        name = step.get("name") or step["uses"]
        if action == "actions/checkout":
            subprocess.run(["git", "clone", "-q", "--shared", str(self.origin), str(workspace)], check=True)
            subprocess.run(["git", "-C", str(workspace), "checkout", "-q", "--detach", self.sha], check=True)
            return StepResult(name, "success", "a clone of the fresh clone at the run's commit")
        if action in ("actions/setup-python", "actions/setup-node"):
            tool = "python3" if action.endswith("python") else "node"
            system = shutil.which(tool, path=":".join(SYSTEM_PATH))
            if system is None:
                return StepResult(name, "failure", output=f"the system has no {tool}")
            names = ("python", "python3") if tool == "python3" else ("node",)
            for n in names:
                (bin_dir / n).unlink(missing_ok=True)
                (bin_dir / n).symlink_to(system)
            version = subprocess.run([system, "--version"], capture_output=True, text=True).stdout.strip()
            wanted = inputs.get("python-version") or inputs.get("node-version")
            return StepResult(name, "success", f"the system's {tool} ({version}; the workflow asks for {wanted})")
        if action == "hashicorp/setup-terraform":
            if self.terraform is None:
                return StepResult(name, "failure", output="no terraform on the developer's PATH to set up")
            (bin_dir / "terraform").unlink(missing_ok=True)
            (bin_dir / "terraform").symlink_to(self.terraform)
            return StepResult(name, "success", f"the developer's terraform (the workflow asks for "
                                               f"{inputs.get('terraform_version')})")
        if action == "actions/upload-artifact":
            return self._upload(name, inputs, workspace, artifacts)
        if action == "actions/download-artifact":
            return self._download(name, inputs, workspace, artifacts)
        if action == "aws-actions/configure-aws-credentials":
            return self._credentials(name, inputs, permissions, job, files)
        raise HarnessError(f"{job.key}: no emulation of the action {step['uses']} (tests/workflow_harness.py)")

    def _upload(self, name: str, inputs: dict, workspace: Path, artifacts: dict) -> StepResult:
        artifact = to_string(inputs.get("name") or "artifact")
        if artifact in artifacts:
            return StepResult(name, "failure", output=f"an artifact named {artifact!r} already exists in this run")
        patterns = [p.strip() for p in to_string(inputs["path"]).splitlines() if p.strip()]
        hidden = to_string(inputs.get("include-hidden-files")).lower() == "true"
        search = [workspace / re.split(r"[*?\[]", p)[0] for p in patterns]
        roots = [s if s.is_dir() and not re.search(r"[*?\[]", p) else s.parent for s, p in zip(search, patterns)]
        root = Path(os.path.commonpath([str(r) for r in roots]))
        found: list[Path] = []
        for pattern in patterns:
            for match in sorted(workspace.glob(pattern)) if re.search(r"[*?\[]", pattern) else [workspace / pattern]:
                if match.is_dir():
                    found += [p for p in match.rglob("*") if p.is_file()]
                elif match.is_file():
                    found.append(match)
        found = [p for p in found if hidden or not any(part.startswith(".") for part in p.relative_to(root).parts)]
        if not found:
            mode = to_string(inputs.get("if-no-files-found") or "warn")
            if mode == "error":
                return StepResult(name, "failure", output=f"No files were found with the provided path: {patterns}")
            return StepResult(name, "success", f"no files found ({mode}): no artifact {artifact!r}")
        store = Path(tempfile.mkdtemp(prefix=f"artifact-{artifact}-", dir=self.work))
        for path in found:
            target = store / path.relative_to(root)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
        artifacts[artifact] = store
        where = root.relative_to(workspace)
        return StepResult(name, "success", f"artifact {artifact!r}: {len(found)} files under {where}")

    def _download(self, name: str, inputs: dict, workspace: Path, artifacts: dict) -> StepResult:
        artifact = to_string(inputs.get("name"))
        target = workspace / to_string(inputs.get("path") or ".")
        if artifact not in artifacts:
            return StepResult(name, "failure", output=f"Unable to download artifact(s): Artifact not found for name: "
                                                      f"{artifact}")
        shutil.copytree(artifacts[artifact], target, dirs_exist_ok=True)
        return StepResult(name, "success", f"artifact {artifact!r} into {target.relative_to(workspace)}")

    def _credentials(self, name: str, inputs: dict, permissions: dict[str, int], job: JobResult,
                     files: dict) -> StepResult:
        if permissions.get("id-token", 0) < LEVELS["write"]:
            return StepResult(name, "failure", output="Credentials could not be loaded: the job has no id-token: "
                                                      "write permission, so no OIDC token to exchange")
        role = to_string(inputs.get("role-to-assume")).strip()
        if not re.fullmatch(r"arn:aws:iam::\d{12}:role/[\w+=,.@/-]+", role):
            return StepResult(name, "failure", output=f"role-to-assume {role!r} is not a role ARN")
        session = to_string(inputs.get("role-session-name") or "GitHubActions")
        if not re.fullmatch(r"[\w+=,.@-]{2,64}", session):
            return StepResult(name, "failure", output=f"role-session-name {session!r}: STS takes 2-64 of [\\w+=,.@-]")
        seconds = to_string(inputs.get("role-duration-seconds") or "3600")
        if not re.fullmatch(r"\d+", seconds) or not 900 <= int(seconds) <= 43200:
            return StepResult(name, "failure", output=f"role-duration-seconds {seconds!r}: STS takes 900 to 43200")
        region = to_string(inputs.get("aws-region"))
        if not region:
            return StepResult(name, "failure", output="Region is not valid: aws-region is empty")
        import boto3  # noqa: PLC0415 (the harness process's own: the job's tools are not touched)

        sts = boto3.client("sts", endpoint_url=self.aws.url, region_name=region, verify=str(self.aws.ca_bundle),
                           aws_access_key_id="harness", aws_secret_access_key="harness")
        answer = sts.assume_role_with_web_identity(RoleArn=role, RoleSessionName=session, DurationSeconds=int(seconds),
                                                   WebIdentityToken="harness-oidc-token")
        credentials = answer["Credentials"]
        values = {"AWS_ACCESS_KEY_ID": credentials["AccessKeyId"],
                  "AWS_SECRET_ACCESS_KEY": credentials["SecretAccessKey"],
                  "AWS_SESSION_TOKEN": credentials["SessionToken"], "AWS_REGION": region, "AWS_DEFAULT_REGION": region,
                  "AWS_ENDPOINT_URL": self.aws.url, "AWS_CA_BUNDLE": str(self.aws.ca_bundle)}
        with files["GITHUB_ENV"].open("a") as f:
            f.writelines(f"{k}={v}\n" for k, v in values.items())
        job.roles.append(role)
        return StepResult(name, "success", f"assumed {role} on moto", outputs={"aws-account-id": role.split(":")[4]})


def _ordered(jobs: dict) -> list[str]:
    """Job ids in an order that respects ``needs`` (file order otherwise), or a clear error for a cycle."""
    done: list[str] = []
    pending = list(jobs)
    while pending:
        for job_id in pending:
            needs = jobs[job_id].get("needs") or []
            needs = [needs] if isinstance(needs, str) else needs
            missing = [n for n in needs if n not in jobs]
            if missing:
                raise WorkflowRefused(f"job {job_id!r} needs {missing}, which the workflow does not define")
            if all(n in done for n in needs):
                done.append(job_id)
                pending.remove(job_id)
                break
        else:
            raise WorkflowRefused(f"the needs of {pending} form a cycle")
    return done


def _key_values(path: Path) -> dict[str, str]:
    """$GITHUB_OUTPUT / $GITHUB_ENV: ``key=value`` lines and ``key<<DELIMITER`` … ``DELIMITER`` blocks."""
    values: dict[str, str] = {}
    lines = path.read_text().splitlines() if path.exists() else []
    i = 0
    while i < len(lines):
        line = lines[i]
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            key, delimiter = line.split("<<", 1)
            end = lines.index(delimiter, i + 1)
            values[key] = "\n".join(lines[i + 1:end])
            i = end + 1
            continue
        if "=" in line:
            key, value = line.split("=", 1)
            values[key] = value
        i += 1
    return values

