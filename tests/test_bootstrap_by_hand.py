"""docs/implementation-guide.md, "Bootstrap by hand", walked as written for dev's state stack.

The manual move from the local state file to S3 is ``./scripts/synth`` then ``terraform init -migrate-state``.
It works only when the synth keeps the stack's ``.terraform/`` directory, which records that the last backend was the
local file: without it, Terraform configures S3 as a first init, finds nothing to migrate, and the bucket holds no
state. The account stack's part, GitHub's OIDC provider that the state stack looks up, is made in the account before
the walk. The walk itself is tests/test_first_deploy.py's terminal, against a moto server of this module.
"""

from __future__ import annotations

import json

import pytest
from terraform_support import LocalAws
from test_first_deploy import GUIDE, Walk, addresses, person
from walk_support import fresh_copy

pytestmark = pytest.mark.slow
ENV = "dev"


@pytest.fixture(scope="module")
def by_hand(tmp_path_factory, terraform, settings):
    base = tmp_path_factory.mktemp("by-hand")
    project = fresh_copy(base / "project")
    with LocalAws(base, account_id=settings[ENV].account.id, tls_only_policies=True) as aws:
        aws.client("iam").create_open_id_connect_provider(
            Url="https://token.actions.githubusercontent.com", ClientIDList=["sts.amazonaws.com"],
            ThumbprintList=["6938fd4d98bab03faadb97b34396831e3780aea1"],
        )
        yield Walk(project, person(terraform, aws, project, base / "plugins"), aws)


def test_the_manual_bootstrap_moves_every_resource_of_the_state_stack_into_its_bucket(by_hand, settings):
    env = settings[ENV]
    stack = env.stack_name("state")
    done = by_hand.follow("## Bootstrap by hand")
    assert [b.kind for b, _, _ in done] == ["sh", "toml", "sh"], f"{GUIDE.name}: the manual steps changed"
    local = json.loads((by_hand.project / f"terraform.{stack}.tfstate").read_text())
    remote = by_hand.state(env.state.bucket, f"{stack}/terraform.tfstate")
    assert addresses(local) and addresses(local) == addresses(remote)
    listed = set(done[-1][2].split())
    assert addresses(local) <= listed, "terraform state list from the bucket lacks resources of the local file"
