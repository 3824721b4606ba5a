"""docs/implementation-guide.md, walked as written: the first deploy, the bootstrap by hand and the teardown.

A person at a terminal (``walk_support.Terminal``) runs every ``sh`` block and makes every ``toml`` edit of the
document's procedures, in order, in a fresh copy of the project, against a moto server of this module that plays
dev's (empty) account. The commands are the document's, unchanged; the terminal's environment points them at moto
the way any local AWS API is reached (``LocalAws.environment``: the SDKs' endpoint and CA-bundle variables, and a
proxy for S3's virtual-hosted bucket names). ``text`` blocks are steps that cannot run here; the document says why
beside each one.

Besides that, the terminal's environment holds only speed settings, which change no result: a provider plugin cache
(``TF_PLUGIN_CACHE_DIR``), ``AWS_MAX_ATTEMPTS=2`` (a call moto does not serve fails at once instead of being retried
with back-off for minutes), and a higher apply parallelism.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
from terraform_support import LocalAws
from test_platform_apply import MOTO_READS_BACK_DIFFERENTLY, NOT_EMULATED
from walk_support import Block, Terminal, apply_edit, fresh_copy, procedure

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "implementation-guide.md"
ENV = "dev"

pytestmark = pytest.mark.slow


class Walk:
    def __init__(self, project: Path, terminal: Terminal, aws: LocalAws):
        self.project, self.terminal, self.aws = project, terminal, aws

    def follow(self, heading: str) -> list[tuple[Block, int, str]]:
        """Every block under ``heading``, in order; a failed ``sh`` block fails the test, except a platform apply
        whose every error is on a resource moto does not emulate (checked here)."""
        done = []
        for block in procedure(GUIDE, heading):
            if block.kind == "toml":
                apply_edit(self.project, block)
                done.append((block, 0, ""))
            elif block.kind == "sh":
                code, shown = self.terminal.run(block.text)
                if code != 0 and not self.only_moto_gaps(block, shown):
                    unexplained = [e for e in errors(shown) if not explained(*e)]
                    raise AssertionError(f"{GUIDE.name} line {block.line} failed (exit {code}):\n{block.text}\n"
                                         f"errors moto's gaps do not explain: {unexplained}\n{shown[-3000:]}")
                done.append((block, code, shown))
            else:
                assert block.kind == "text", f"{GUIDE.name} line {block.line}: unknown block kind {block.kind!r}"
        return done

    @staticmethod
    def only_moto_gaps(block: Block, shown: str) -> bool:
        """A platform apply that failed only where moto falls short: creating a resource type it does not emulate
        (NOT_EMULATED), or, applied again, updating an attribute it reads back differently
        (MOTO_READS_BACK_DIFFERENTLY: Terraform then modifies what it sees as drift)."""
        if "platform" not in block.text or "apply" not in block.text:
            return False
        failures = errors(shown)
        return bool(failures) and all(explained(kind, message) for kind, message in failures)

    def state(self, bucket: str, key: str) -> dict:
        body = self.aws.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
        return json.loads(body)


def errors(shown: str) -> list[tuple[str, str]]:
    """Each error Terraform printed: the resource type it names (``with <address>,``) and its first line."""
    found = []
    for error in re.split(r"(?m)^[\s│]*Error: ", shown)[1:]:  # at a line's start: messages hold "UnknownError: "
        address = re.search(r"with ((?:data\.)?[a-z0-9_]+)\.[^,\s]+,", error)
        found.append((address.group(1) if address else "", error.splitlines()[0]))
    return found


def explained(kind: str, message: str) -> bool:
    read_back = {resource for resource, _ in MOTO_READS_BACK_DIFFERENTLY}
    return kind in NOT_EMULATED or (kind in read_back and message.startswith("updating"))


def moto_gaps(shown: str) -> set[str]:
    return {kind for kind, _ in errors(shown)}


def addresses(state: dict) -> set[str]:
    return _bootstrap().addresses(state)  # named as `terraform state list` names them


def objects(state: dict) -> dict[str, object]:
    return _bootstrap().objects(state)  # each managed instance and the ID of what it tracks


def _bootstrap():
    import importlib.util
    import sys

    if "bootstrap" not in sys.modules:  # registered before it runs: its dataclasses look their module up
        spec = importlib.util.spec_from_file_location("bootstrap", ROOT / "scripts" / "bootstrap.py")
        sys.modules["bootstrap"] = module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return sys.modules["bootstrap"]


def person(terraform, aws: LocalAws, project: Path, cache: Path) -> Terminal:
    """The environment of a person's terminal: their PATH (the AWS CLI from the project's venv stands in for theirs),
    credentials for the local AWS API, and the speed settings of the module docstring."""
    env = {key: value for key, value in terraform.env.items() if key not in ("TF_INPUT", "TF_IN_AUTOMATION")}
    cache.mkdir(exist_ok=True)
    env.update(aws.environment())
    env.update({
        "PATH": f"{project / '.venv' / 'bin'}:{os.environ['PATH']}",
        "TF_PLUGIN_CACHE_DIR": str(cache),
        "AWS_MAX_ATTEMPTS": "2",
        "TF_CLI_ARGS_apply": "-parallelism=32",
        "TF_CLI_ARGS_destroy": "-parallelism=32",
        "GIT_AUTHOR_NAME": "walk", "GIT_AUTHOR_EMAIL": "walk@example.invalid",
        "GIT_COMMITTER_NAME": "walk", "GIT_COMMITTER_EMAIL": "walk@example.invalid",
        "TERM": "xterm",
    })
    return Terminal(project, env)


@pytest.fixture(scope="module")
def walk(tmp_path_factory, terraform, settings):
    base = tmp_path_factory.mktemp("walk")
    project = fresh_copy(base / "project")
    with LocalAws(base, account_id=settings[ENV].account.id, tls_only_policies=True) as aws:
        yield Walk(project, person(terraform, aws, project, base / "plugins"), aws)


def test_the_first_deploy_runs_as_written_and_both_bootstrap_stacks_keep_every_resource_in_s3(walk, settings):
    env = settings[ENV]
    done = walk.follow("## First deploy")
    assert [b for b, _, _ in done if b.kind == "sh"], "the first-deploy procedure has no command block"
    for stack, bucket in ((f"{env.project}-account-{env.account.id}", env.account.state_bucket),
                          (env.stack_name("state"), env.state.bucket)):
        moved = walk.project / f"terraform.{stack}.tfstate.moved"
        assert moved.exists(), f"scripts/bootstrap kept no copy of the local state of {stack}"
        local = json.loads(moved.read_text())
        remote = walk.state(bucket, f"{stack}/terraform.tfstate")
        # `terraform state push` into an empty bucket gives the state a new lineage: the objects are what must match
        assert objects(local) and objects(local).items() <= objects(remote).items(), f"{stack}: resources lost"
        assert addresses(local) <= addresses(remote)
        assert not (walk.project / f"terraform.{stack}.tfstate").exists()
    # the platform apply got as far as moto goes: its state is in dev's bucket
    platform = walk.state(env.state.bucket, f"{env.stack_name('platform')}/terraform.tfstate")
    kinds = {r["type"] for r in platform["resources"]}
    assert {"aws_vpc", "aws_eks_cluster", "aws_lb", "aws_route53_zone", "aws_acm_certificate"} <= kinds
    applies = [shown for block, code, shown in done if "terraform apply" in block.text and "platform" in block.text]
    assert applies and moto_gaps(applies[0]) <= set(NOT_EMULATED)


def test_bootstrap_again_changes_nothing(walk, settings):
    env = settings[ENV]
    key = f"{env.stack_name('state')}/terraform.tfstate"
    before = walk.state(env.state.bucket, key)
    code, shown = walk.terminal.run(f"scripts/bootstrap {ENV}")
    assert code == 0, shown[-3000:]
    assert "already in its bucket" in shown
    after = walk.state(env.state.bucket, key)
    assert (after["lineage"], after["serial"]) == (before["lineage"], before["serial"])


def test_bootstrap_refuses_a_local_state_of_another_lineage(walk, settings):
    env = settings[ENV]
    stack = env.stack_name("state")
    key = f"{stack}/terraform.tfstate"
    stranger = walk.project / f"terraform.{stack}.tfstate"
    bucket = {"mode": "managed", "type": "aws_s3_bucket", "name": "bucket", "provider": "provider[\"aws\"]",
              "instances": [{"schema_version": 0, "attributes": {"id": "another-stacks-bucket"}}]}
    stranger.write_text(json.dumps({"version": 4, "terraform_version": "1.11.4", "serial": 99,
                                    "lineage": "0000-another-stack", "outputs": {}, "resources": [bucket]}))
    try:
        before = walk.state(env.state.bucket, key)
        code, shown = walk.terminal.run(f"scripts/bootstrap {ENV}")
        assert code == 1
        assert "lineage" in shown and "neither is overwritten" in shown
        assert walk.state(env.state.bucket, key)["serial"] == before["serial"]
    finally:
        stranger.unlink()


def test_bring_home_waits_until_the_environment_is_taken_back_from_ci(walk, settings):
    """The first deploy ended with dev handed over; bringing its state home then would leave CI deploying stacks that
    are coming apart, and a local backend the settings refuse for it. Nothing changes."""
    env = settings[ENV]
    before = (walk.project / "envs" / f"{ENV}.toml").read_text()
    assert "handed_over = true" in before
    code, shown = walk.terminal.run(f"scripts/bootstrap {ENV} --bring-home state")
    assert code == 1 and "still handed over to CI" in shown and "nothing was changed" in shown
    assert (walk.project / "envs" / f"{ENV}.toml").read_text() == before
    assert not (walk.project / f"terraform.{env.stack_name('state')}.tfstate").exists()


def test_the_teardown_runs_as_written(walk, settings):
    """From a clone that has no cdktf.out (a year later): every block synthesizes and initialises what it uses."""
    env = settings[ENV]
    shutil.rmtree(walk.project / "cdktf.out")
    walk.follow("## Tear down an environment")
    s3 = walk.aws.client("s3")
    buckets = {b["Name"] for b in s3.list_buckets()["Buckets"]}
    assert env.state.bucket not in buckets and env.state.access_log_bucket not in buckets
    assert not walk.aws.client("ec2").describe_vpcs(Filters=[{"Name": "tag:Environment", "Values": [ENV]}])["Vpcs"]
    home = json.loads((walk.project / f"terraform.{env.stack_name('state')}.tfstate").read_text())
    assert not addresses(home), "the state stack's local state still lists resources after its destroy"

    walk.follow("## Tear down an account stack")
    buckets = {b["Name"] for b in s3.list_buckets()["Buckets"]}
    assert env.account.state_bucket not in buckets
    assert not walk.aws.client("iam").list_open_id_connect_providers()["OpenIDConnectProviderList"]
