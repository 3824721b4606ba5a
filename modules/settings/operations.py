"""The ``[monitoring]`` and ``[ci]`` sections: alarms and the GitHub deploy identity."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, model_validator

from modules.settings.fields import LogRetentionDays, _Model, _pattern

_EMAIL = re.compile(r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}$")


# GitHub's rules: owner 1-39 of letters, digits, hyphens; repository 1-100 of letters, digits, . _ -
_GITHUB_REPOSITORY = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}$")


_GITHUB_ENVIRONMENT = re.compile(r"^[A-Za-z0-9_-]{1,255}$")


# An environment name (fields._ENV_NAME) or "" (deploys first, right after the tests).
_DEPLOY_AFTER = re.compile(r"^(?:[a-z][a-z0-9-]{0,11})?$")


def _toml_boolean(value: object) -> object:
    """A TOML true/false only: a quoted "false" is a non-empty string, which a lax bool would read as true."""
    if not isinstance(value, bool):
        raise ValueError(
            f"{value!r} is not a TOML boolean; write handed_over = true (CI plans and deploys the environment) or "
            "handed_over = false (bootstrapped and deployed by hand), without quotes"
        )
    return value


# CodeBuild's curated x86-64 Linux images (the runner is a LINUX_CONTAINER): no registry login needed.
_CODEBUILD_IMAGE = re.compile(r"^aws/codebuild/(amazonlinux-x86_64-standard|standard):[0-9]+\.[0-9]+$")


class AlarmThresholds(_Model):
    """When an alarm fires. Defaults suit a small Twenty installation; docs/monitoring.md explains each."""

    alb_5xx_percent: float = Field(
        default=5.0, gt=0, le=100, description="ALB + target 5xx responses as a share of requests over 5 minutes."
    )
    alb_p99_latency_seconds: float = Field(
        default=3.0, gt=0, le=60, description="99th percentile target response time over 5 minutes."
    )
    alb_unhealthy_targets: int = Field(
        default=1, ge=1, le=100, description="Unhealthy server pods in the target group, for 3 minutes."
    )
    db_cpu_percent: float = Field(default=80.0, gt=0, le=100, description="Database host CPU, 15-minute average.")
    db_memory_percent: float = Field(
        default=90.0, gt=0, le=100, description="Database host memory in use (CloudWatch agent mem_used_percent)."
    )
    db_root_disk_percent: float = Field(
        default=85.0, gt=0, le=100, description="Database host root disk in use (CloudWatch agent)."
    )
    db_data_free_percent: float = Field(
        default=20.0, gt=0, lt=100, description="Alarm when the data volume has less free space than this."
    )
    node_cpu_percent: float = Field(
        default=80.0, gt=0, le=100, description="Average CPU of each node group's instances, 15 minutes."
    )


class MonitoringSettings(_Model):
    """The SNS topic, alarms, dashboard and log groups of the environment (docs/monitoring.md)."""

    alarm_mode: Literal["page", "record"] = Field(
        default="record",
        description="'page' sends alarm and recovery notifications to the topic; 'record' keeps alarm history only.",
    )
    email_subscribers: tuple[
        Annotated[str, _pattern(_EMAIL, "an e-mail address such as 'oncall@example.com'")], ...
    ] = Field(default=(), description="Addresses subscribed to the alarm topic (each confirms by e-mail).")
    log_retention_days: LogRetentionDays = Field(
        default=365, description="Days the Container Insights log groups keep their logs."
    )
    thresholds: AlarmThresholds = Field(default_factory=AlarmThresholds)

    @model_validator(mode="after")
    def _pages_someone(self) -> "MonitoringSettings":
        dupes = sorted({a for a in self.email_subscribers if self.email_subscribers.count(a) > 1})
        if dupes:
            raise ValueError(f"email_subscribers lists {', '.join(dupes)} more than once; list each only once")
        return self


class CiSettings(_Model):
    """GitHub Actions deploys through OIDC: this environment's deploy role (docs/ci-cd.md); the account's
    OIDC provider is in ``[account]``."""

    github_repository: Annotated[str, _pattern(_GITHUB_REPOSITORY, "a GitHub repository 'owner/name'")] = Field(
        description="The repository whose workflows may assume the deploy role, as 'owner/name'."
    )
    github_environment: Annotated[
        str, _pattern(_GITHUB_ENVIRONMENT, "a GitHub environment name (letters, digits, - and _)")
    ] = Field(
        description="The GitHub environment a job must run in to assume the deploy role (the token's sub claim); "
        "must be the environment's name, as the workflows use it (with its '-plan' twin for the review role)."
    )
    handed_over: Annotated[bool, BeforeValidator(_toml_boolean)] = Field(
        default=False,
        description="Whether CI runs this environment: true = pull requests plan it and deploys on main apply it, "
        "in its place in the promotion order (deploy_after); false = it is bootstrapped and deployed by hand, CI "
        "neither plans nor deploys it, and the other environments' pull requests and promotion go on without it. "
        "Set true only once the account and state stacks are applied (both own_backend = \"s3\") and the GitHub "
        "environments <env> and <env>-plan hold AWS_ACCOUNT_ID (docs/ci-cd.md, \"Handing an environment over to "
        "CI\").",
    )
    deploy_after: Annotated[
        str, _pattern(_DEPLOY_AFTER, "an environment name (its file name without .toml) or \"\" (first)")
    ] = Field(
        default="",
        description="The environment this one is promoted from on main: its deploy job runs once that "
        "environment's deploy succeeded, or was skipped because that one is not handed over (a failure stops it). "
        "\"\" (the default): right after the tests. deploy.yml's environment jobs are generated from this "
        "(python scripts/ci_environments.py).",
    )
    session_hours: int = Field(
        default=3,
        ge=1,
        le=12,
        description="Length of the deploy, review and plan roles' sessions (max_session_duration and the workflows' "
        "role-duration-seconds); IAM allows 1 to 12 hours. Must cover the longest apply.",
    )
    apply_timeout_minutes: int = Field(
        default=150,
        ge=60,
        le=720,
        description="timeout-minutes of the plan and apply jobs (1 to 12 hours; GitHub-hosted jobs stop at 6 hours "
        "whatever this says); the CI runner's build timeout is this plus 20 minutes. At most session_hours.",
    )
    runner_compute_type: Literal[
        "BUILD_GENERAL1_SMALL", "BUILD_GENERAL1_MEDIUM", "BUILD_GENERAL1_LARGE"
    ] = Field(default="BUILD_GENERAL1_MEDIUM", description="CodeBuild compute of the in-VPC runner that applies apps.")
    runner_image: Annotated[
        str, _pattern(_CODEBUILD_IMAGE, "a CodeBuild curated Linux image such as "
                      "'aws/codebuild/amazonlinux-x86_64-standard:5.0'")
    ] = Field(
        default="aws/codebuild/amazonlinux-x86_64-standard:5.0",
        description="The runner's CodeBuild image (AWS-curated: no registry credentials, no Docker Hub pulls).",
    )
    runner_log_retention_days: LogRetentionDays = Field(
        default=365, description="Days the runner's CloudWatch log group keeps the job logs."
    )

    @model_validator(mode="after")
    def _session_covers_the_job(self) -> "CiSettings":
        if self.apply_timeout_minutes > self.session_hours * 60:
            raise ValueError(
                f"apply_timeout_minutes ({self.apply_timeout_minutes}) outlasts session_hours ({self.session_hours}): "
                "credentials would expire before the job times out; raise session_hours or lower apply_timeout_minutes"
            )
        return self


def github_environment_problems(ci: CiSettings, *, environment: str) -> list[str]:
    """The workflows run environment <env> in GitHub environments ``<env>`` and ``<env>-plan`` and assume
    ``<project>-<env>-*`` roles; the roles trust ``ci.github_environment``. They must agree, or every
    AssumeRoleWithWebIdentity of that environment fails."""
    if ci.github_environment == environment:
        return []
    return [
        f"ci.github_environment '{ci.github_environment}' is not the environment's name '{environment}': the workflows "
        f"run its jobs in GitHub environments '{environment}' and '{environment}-plan', so the roles would trust a "
        f"token no job gets; set github_environment = \"{environment}\""
    ]


def handed_over_problems(ci: CiSettings, *, environment: str, state_backend: str, account_backend: str) -> list[str]:
    """CI plans the platform stack against the state stack's bucket and the roles the state stack creates: an
    environment whose state or account stack is still on its local bootstrap backend is not ready for CI."""
    problems = []
    if ci.deploy_after == environment:
        problems.append(f"ci.deploy_after names '{environment}', this environment itself; name the environment it is "
                        "promoted from, or \"\" to deploy right after the tests")
    if ci.handed_over:
        for field, backend in (("state.own_backend", state_backend), ("account.own_backend", account_backend)):
            if backend != "s3":
                problems.append(
                    f"ci.handed_over is true but {field} is \"{backend}\": the bootstrap is not finished, so CI's "
                    f"plans would fail; finish it (scripts/bootstrap <env>: "
                    f"{field} = \"s3\"; docs/implementation-guide.md, \"First deploy\", step 2) before handing the "
                    "environment over, or set handed_over = false"
                )
    return problems


def deploy_after_problems(after: dict[str, str], sources: dict[str, str]) -> list[str]:
    """Across files: ``ci.deploy_after`` names an existing environment and the chain has no cycle."""
    problems = []
    for name in sorted(after):
        previous = after[name]
        if previous and previous != name and previous not in after:
            problems.append(
                f"{sources[name]}: ci.deploy_after: '{previous}' names no environment (there is no "
                f"envs/{previous}.toml); name one of {', '.join(sorted(set(after) - {name}))}, or \"\" to deploy right after the tests"
            )
    reported: set[str] = set()
    for start in sorted(after):
        path, name = [], start
        while name and name in after and name not in path and after[name] != name:
            path.append(name)
            name = after[name]
        if name in path and not reported & set(path[path.index(name):]):
            cycle = path[path.index(name):]
            reported |= set(cycle)
            chain = " -> ".join([*cycle, name])
            problems.append(
                f"{sources[cycle[0]]}: ci.deploy_after: the environments deploy after each other in a circle "
                f"({chain}), so none would ever deploy; set deploy_after = \"\" in the file of the one that comes "
                "first"
            )
    return problems


def promotion_order(after: dict[str, str]) -> list[str]:
    """Environment names in deploy order: each after the one its ``ci.deploy_after`` names (by name among equals).
    ``after`` must be free of the problems ``deploy_after_problems`` reports."""
    depth: dict[str, int] = {}

    def level(name: str) -> int:
        if name not in depth:
            previous = after[name]
            depth[name] = 0 if not previous else level(previous) + 1
        return depth[name]

    return sorted(after, key=lambda name: (level(name), name))


def promoted_from(after: dict[str, str], name: str) -> list[str]:
    """Every environment ``name`` is promoted from, nearest last (dev, qa for prod)."""
    chain = []
    while after[name]:
        name = after[name]
        chain.insert(0, name)
    return chain
