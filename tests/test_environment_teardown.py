"""docs/implementation-guide.md "Tear down an environment", step 4, executed as written against moto: the repositories ECR created through
the pull-through cache under the environment's prefixes are deleted with their images; another environment's and
a look-alike prefix's stay. moto 5.2.5 emulates ECR repositories and images (not pull-through cache rules), which is
all the commands touch."""

from __future__ import annotations

import json
import os
import re
import subprocess

import pytest
from conftest import ROOT

SECTION = "## Tear down an environment"
ENVIRONMENT = ("sa-east-1", "twentycrm-dev")  # the block's example: dev's region and <project>-<env>


def cleanup_block() -> str:
    """The shell block of step 4 ("The cached repositories") of the guide's teardown section."""
    readme = (ROOT / "docs" / "implementation-guide.md").read_text()
    assert SECTION in readme, f"docs/implementation-guide.md has no section {SECTION!r} (envs/*.toml point to it)"
    section = readme.split(SECTION, 1)[1].split("\n## ", 1)[0]
    step = section.split("**The cached repositories", 1)[1]
    block = re.search(r"```sh\n(.*?)```", step, flags=re.S)
    assert block, "step 4 of the teardown section has no ```sh block"
    return re.sub(r"^ {3}", "", block.group(1), flags=re.M)  # the list item's indentation


def run_block(block: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-euo", "pipefail", "-c", block], env=env, capture_output=True, text=True,
                          timeout=120, check=False)  # fmt: skip


MANIFEST = json.dumps({
    "schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
    "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 2,
               "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"},
    "layers": [],
})  # fmt: skip


@pytest.fixture(scope="module")
def aws(tmp_path_factory):
    """One moto server for the module (each test uses repository names the other leaves alone)."""
    from terraform_support import LocalAws

    aws_cli = ROOT / ".venv" / "bin" / "aws"
    if not aws_cli.exists():
        pytest.skip("the aws CLI (PyPI awscli, Pipfile) is not installed in .venv")
    with LocalAws(tmp_path_factory.mktemp("teardown")) as local:
        env = {**os.environ, "PATH": f"{aws_cli.parent}:{os.environ['PATH']}", "AWS_ENDPOINT_URL": local.url,
               "AWS_CA_BUNDLE": str(local.ca_bundle), "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}
        yield local, env


def test_the_readme_deletes_the_environments_cached_repositories_and_no_other(aws):
    local, env = aws
    block = cleanup_block()
    region, prefix = ENVIRONMENT
    assert f"region={region} prefix={prefix}" in block, block
    ecr = local.client("ecr")
    own = [f"{prefix}/docker/twentycrm/twenty", f"{prefix}/docker/library/redis", f"{prefix}/k8s/kubectl"]
    others = ["twentycrm-qa/docker/library/redis", f"{prefix}2/docker/library/redis", "unrelated"]
    for name in own + others:
        ecr.create_repository(repositoryName=name, imageTagMutability="IMMUTABLE")
    # a repository holding an image: delete-repository without --force refuses it (RepositoryNotEmptyException)
    ecr.put_image(repositoryName=own[1], imageManifest=MANIFEST, imageTag="7.4.6-alpine")
    ecr.put_image(repositoryName=others[0], imageManifest=MANIFEST, imageTag="7.4.6-alpine")

    done = run_block(block, env)
    assert done.returncode == 0, done.stdout + done.stderr
    left = sorted(r["repositoryName"] for r in ecr.describe_repositories()["repositories"])
    assert not [name for name in left if name.startswith(f"{prefix}/")], left
    assert set(others) <= set(left), left
    assert ecr.describe_images(repositoryName=others[0])["imageDetails"], "another environment's image is gone"

    again = run_block(block, env)  # nothing left to delete: the loop runs no command and succeeds
    assert again.returncode == 0, again.stderr


def test_without_force_the_step_would_stop_at_a_repository_holding_images(aws):
    """The gate on a deliberately bad input: the same block without --force fails on the cached image."""
    local, env = aws
    block = cleanup_block()
    assert " --force" in block
    ecr = local.client("ecr")
    name = f"{ENVIRONMENT[1]}/docker/library/postgres"
    ecr.create_repository(repositoryName=name)
    ecr.put_image(repositoryName=name, imageManifest=MANIFEST, imageTag="16")
    done = run_block(block.replace(" --force", ""), env)
    assert done.returncode != 0 and "RepositoryNotEmptyException" in done.stderr, done.stdout + done.stderr
    run_block(block, env)  # and with it, the repository goes
