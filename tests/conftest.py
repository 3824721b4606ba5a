"""Shared fixtures: the app is synthesized once per test session from the real envs/ files.

Tests read the synthesized JSON, through cdktf's Testing matchers or as parsed dicts. Tests that
need a different input build their own small app (see ``build_stack``), never a second copy of
the whole one.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from modules.settings import EnvironmentSettings, load_all  # noqa: E402

# the terraform CLI, the session's moto server and the bootstrapped state stack (one per session); PostgreSQL 16
# outside the checkout and the database host (tests/postgres_support.py)
pytest_plugins = ("terraform_support", "iam_fences_report", "postgres_support")

ENVIRONMENTS = ("dev", "qa", "prod")


def _no_skip() -> str | None:
    """Who forbids skipping: ./scripts/test (TWENTYCRM_TEST_NO_SKIP=1) and CI (CI=true), where every tool is there."""
    if os.environ.get("TWENTYCRM_TEST_NO_SKIP") == "1":
        return "./scripts/test"
    return "CI=true" if os.environ.get("CI") == "true" else None


def _skip_to_failure(report) -> None:
    if report.skipped and not hasattr(report, "wasxfail") and (who := _no_skip()):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped, and {who} runs every test: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    _skip_to_failure((yield).get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    _skip_to_failure((yield).get_result())


@dataclass(frozen=True)
class Stack:
    """One synthesized stack: ``text`` for cdktf's Testing matchers, ``json`` for direct reads."""

    name: str
    text: str

    @property
    def json(self) -> dict:
        return json.loads(self.text)

    def resources(self, resource_type: str) -> dict[str, dict]:
        return self.json.get("resource", {}).get(resource_type, {})

    def only(self, resource_type: str) -> dict:
        found = list(self.resources(resource_type).values())
        assert len(found) == 1, f"{self.name}: expected one {resource_type}, found {len(found)}"
        return found[0]

    def local(self, name_prefix: str):
        """The one ``locals`` value whose name starts with ``name_prefix`` (e.g. 'database_boot-config')."""
        found = [v for k, v in self.json.get("locals", {}).items() if k.startswith(name_prefix)]
        assert len(found) == 1, f"{self.name}: expected one local {name_prefix}*, found {len(found)}"
        return found[0]

    def by_path(self, resource_type: str, path_suffix: str) -> dict:
        """The resource whose construct path ends with ``path_suffix`` (e.g. 'network/public-a')."""
        for res in self.resources(resource_type).values():
            if res["//"]["metadata"]["path"].endswith(path_suffix):
                return res
        raise AssertionError(f"{self.name}: no {resource_type} at .../{path_suffix}")


@dataclass(frozen=True)
class Synthesized:
    outdir: Path
    names: tuple[str, ...]

    def stack(self, name: str) -> Stack:
        return Stack(name, (self.outdir / "stacks" / name / "cdk.tf.json").read_text())


@pytest.fixture(scope="session")
def settings() -> dict[str, EnvironmentSettings]:
    return {env.name: env for env in load_all(ROOT / "envs")}


@pytest.fixture(scope="session")
def synthesized(tmp_path_factory) -> Synthesized:
    from main import synth

    outdir = tmp_path_factory.mktemp("synth") / "cdktf.out"
    names = synth(ROOT / "envs", outdir)
    return Synthesized(outdir, tuple(names))


@pytest.fixture(params=ENVIRONMENTS)
def env(request) -> str:
    return request.param


@pytest.fixture
def state_stack(synthesized, env) -> Stack:
    return synthesized.stack(f"twentycrm-{env}-state")


@pytest.fixture
def platform_stack(synthesized, env) -> Stack:
    return synthesized.stack(f"twentycrm-{env}-platform")


@pytest.fixture
def apps_stack(synthesized, env) -> Stack:
    return synthesized.stack(f"twentycrm-{env}-apps")


def build_stack(stack_class, settings: EnvironmentSettings) -> Stack:
    """Synthesize one stack class for modified settings in a bare app (aws-samples style)."""
    from cdktf import Testing

    app = Testing.app()
    stack = stack_class(app, settings=settings)
    return Stack(stack.node.id, Testing.synth(stack))


def with_changes(settings: EnvironmentSettings, *, lock: Path | None = None, **sections) -> EnvironmentSettings:
    """A copy of ``settings`` with some fields of its sections replaced, re-validated; with ``lock``, its images
    pinned again from that lock file (else they stay those of ``settings``)."""
    data = settings.model_dump()
    for section, changes in sections.items():
        if isinstance(changes, dict):
            data[section] = {**data[section], **changes}
        else:
            data[section] = changes
    changed = EnvironmentSettings(source=settings.source, images=settings.images, **data)
    if lock is not None:
        from modules.settings.environment import with_images

        return with_images(changed, lock)
    return changed


def lock_with(tmp_path: Path, *entries: tuple[str, str]) -> Path:
    """A copy of images.lock.toml with test entries (image, tag): their digests are sha256 of the entry's name,
    plainly test data, never pulled."""
    import hashlib

    lock = tmp_path / "images.lock.toml"
    text = (ROOT / "images.lock.toml").read_text()
    for image, tag in entries:
        digest = hashlib.sha256(f"test {image}:{tag}".encode()).hexdigest()
        text += f'\n["{image}"."{tag}"]\ndigest = "sha256:{digest}"\nsource = "test data (tests/conftest.py)"\n'
    lock.write_text(text)
    return lock


def edit(path: Path, old: str, new: str, count: int = 1) -> None:
    """Replace text in a copied environment file; the test's own setup fails loudly if it is not there."""
    text = path.read_text()
    assert old in text, f"test setup: {old!r} not in {path}"
    path.write_text(text.replace(old, new, count))


def problems_for(envs: Path) -> str:
    """The message of the SettingsError that loading ``envs`` must raise."""
    from modules.settings import SettingsError

    with pytest.raises(SettingsError) as caught:
        load_all(envs)
    return str(caught.value)


def copy_envs(tmp_path: Path) -> Path:
    target = tmp_path / "envs"
    shutil.copytree(ROOT / "envs", target)
    return target


def add_staging(envs: Path, *, account: str | None = None) -> Path:
    """``envs/staging.toml``, made from qa.toml with its own names and address range: in ``account`` (a new
    account), or without it in qa's account, shared explicitly both ways (``[account] shared_with``)."""
    text = (envs / "qa.toml").read_text()
    staging = (
        text.replace("mGenialQA", "mGenialStaging")
        .replace("-qa-", "-staging-")
        .replace('"twentycrm-qa"', '"twentycrm-staging"')
        .replace("10.1.", "10.7.")
        .replace('github_environment = "qa"', 'github_environment = "staging"')
    )
    if account:
        qa_account = re.search(r'^id = "([0-9]{12})"', text, re.M).group(1)
        staging = staging.replace(qa_account, account)
    else:
        staging = staging.replace("shared_with = []", 'shared_with = ["qa"]')
        (envs / "qa.toml").write_text(text.replace("shared_with = []", 'shared_with = ["staging"]'))
    (envs / "staging.toml").write_text(staging)
    return envs / "staging.toml"
