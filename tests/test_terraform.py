"""The synthesized stacks under the real terraform CLI and hashicorp/aws provider, offline.

1. ``terraform validate`` on every stack (backend overridden to local).
2. A full bootstrap against a local AWS API (moto): apply the state stack, migrate its state into
   the bucket it created, then init the platform stack on that S3 backend with -backend-config
   flags and plan it, watching the DynamoDB lock row appear and go.

Skips (with the missing piece named) only where terraform or the provider mirror is absent.
"""

from __future__ import annotations

import json
import re
import time

import pytest
from conftest import ENVIRONMENTS
from terraform_support import BOOTSTRAP_ENV, STATE_STACK_NOT_APPLIED, provider_aliases, write_json

pytestmark = pytest.mark.slow

STACK_PARTS = ("state", "platform")


@pytest.mark.parametrize("part", STACK_PARTS)
@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_stack_is_valid_terraform(terraform, synthesized, tmp_path, env, part):
    name = f"twentycrm-{env}-{part}"
    work = terraform.stack_copy(synthesized.outdir / "stacks" / name, tmp_path / name)
    write_json(work / "backend_override.tf.json", {"terraform": {"backend": {"local": {"path": "validate.tfstate"}}}})
    terraform.run(work, "init", "-input=false")
    report = json.loads(terraform.run(work, "validate", "-json", check=False).stdout)
    problems = [f"{d['severity']}: {d['summary']}: {d.get('detail', '')}" for d in report["diagnostics"]]
    assert report["valid"] and not problems, f"{name}:\n" + "\n".join(problems)


def test_validate_catches_a_known_bad_stack(terraform, synthesized, tmp_path):
    """The same gate on a copy of the dev network with a misspelt argument and a bad reference."""
    work = terraform.stack_copy(synthesized.outdir / "stacks" / "twentycrm-dev-platform", tmp_path / "bad")
    stack = json.loads((work / "cdk.tf.json").read_text())
    vpc = next(iter(stack["resource"]["aws_vpc"].values()))
    vpc["enable_dns_hostname"] = True  # the real argument is enable_dns_hostnames
    subnet = next(iter(stack["resource"]["aws_subnet"].values()))
    subnet["vpc_id"] = "${aws_vpc.no_such_vpc.id}"
    write_json(work / "cdk.tf.json", stack)
    write_json(work / "backend_override.tf.json", {"terraform": {"backend": {"local": {"path": "validate.tfstate"}}}})
    terraform.run(work, "init", "-input=false")
    report = json.loads(terraform.run(work, "validate", "-json", check=False).stdout)
    summaries = " | ".join(d["summary"] for d in report["diagnostics"])
    assert not report["valid"]
    assert "Extraneous JSON object property" in summaries and "Reference to undeclared resource" in summaries


# --- bootstrap against a local AWS API ------------------------------------------------------

ENV = BOOTSTRAP_ENV


def test_state_stack_creates_the_bucket_and_lock_table(bootstrapped, local_aws, settings):
    env = settings[ENV]
    buckets = [b["Name"] for b in local_aws.client("s3").list_buckets()["Buckets"]]
    assert env.state.bucket in buckets
    s3 = local_aws.client("s3")
    assert s3.get_bucket_versioning(Bucket=env.state.bucket)["Status"] == "Enabled"
    rule = s3.get_bucket_encryption(Bucket=env.state.bucket)["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
    table = local_aws.client("dynamodb").describe_table(TableName=env.state.lock_table)["Table"]
    assert table["KeySchema"] == [{"AttributeName": "LockID", "KeyType": "HASH"}]


def test_migrated_state_is_readable_with_the_terraform_cli(bootstrapped, terraform, local_aws, settings):
    env = settings[ENV]
    work = bootstrapped["state_dir"]
    listed = terraform.run(work, "state", "list").stdout.split()
    assert any(a.startswith("aws_s3_bucket.state_bucket") for a in listed)
    assert any(a.startswith("aws_dynamodb_table.state_lock-table") for a in listed)
    pulled = json.loads(terraform.run(work, "state", "pull").stdout)
    assert pulled["serial"] >= 1 and {r["type"] for r in pulled["resources"]} >= {"aws_s3_bucket", "aws_kms_key"}
    # the state object now lives in the bucket it describes
    key = f"{env.stack_name('state')}/terraform.tfstate"
    body = local_aws.client("s3").get_object(Bucket=env.state.bucket, Key=key)["Body"].read()
    assert json.loads(body)["lineage"] == pulled["lineage"]


def test_migrated_state_object_is_encrypted_with_the_state_key(bootstrapped, terraform, local_aws, settings):
    """The README's migration: the state object is SSE-KMS with the state key, not SSE-S3 (review 12, item 10)."""
    env = settings[ENV]
    assert bootstrapped["backend"]["kms_key_id"] == f"alias/{env.stack_name('tfstate')}"
    key = f"{env.stack_name('state')}/terraform.tfstate"
    head = local_aws.client("s3").head_object(Bucket=env.state.bucket, Key=key)
    assert head["ServerSideEncryption"] == "aws:kms", head
    pulled = json.loads(terraform.run(bootstrapped["state_dir"], "state", "pull").stdout)
    aliases = [i["attributes"] for r in pulled["resources"] if r["type"] == "aws_kms_alias" for i in r["instances"]]
    state_key = next(a["target_key_arn"] for a in aliases if a["name"] == f"alias/{env.stack_name('tfstate')}")
    # AWS answers with the key's ARN; moto keeps what the request named (the alias): both must be the state key
    used = local_aws.client("kms").describe_key(KeyId=head["SSEKMSKeyId"])["KeyMetadata"]["Arn"]
    assert used == state_key, f"state object encrypted with {head['SSEKMSKeyId']} ({used}), not the state key"


def test_an_s3_backend_without_kms_key_id_writes_sse_s3(bootstrapped, terraform, local_aws, settings, tmp_path):
    """The check above on a deliberately bad input: the old override (no kms_key_id) leaves the object SSE-S3."""
    env = settings[ENV]
    work = tmp_path / "no-kms"
    work.mkdir()
    backend = {k: v for k, v in bootstrapped["backend"].items() if k != "kms_key_id"}
    backend["key"] = "review12-item10/no-kms.tfstate"
    write_json(work / "main.tf.json", {"terraform": {"backend": {"s3": backend}}, "output": {"x": {"value": 1}}})
    terraform.run(work, "init", "-input=false", *bootstrapped["flags"])
    terraform.run(work, "apply", "-input=false", "-auto-approve")
    head = local_aws.client("s3").head_object(Bucket=env.state.bucket, Key=backend["key"])
    assert head["ServerSideEncryption"] == "AES256" and "SSEKMSKeyId" not in head, head


def test_state_stack_has_no_drift_after_apply(bootstrapped, terraform, record_property):
    """Re-planning changes nothing but the bucket policy that moto cannot enforce (see the fixture)."""
    listed = [a for a in terraform.run(bootstrapped["state_dir"], "state", "list").stdout.split() if not a.startswith("data.")]
    not_applied = sorted(set(bootstrapped["planned"]) - set(listed))
    assert [a.split(".")[0] for a in not_applied] == sorted(STATE_STACK_NOT_APPLIED)
    why = STATE_STACK_NOT_APPLIED["aws_s3_bucket_policy"]
    record_property("moto_state_apply", f"{len(listed)} of {len(bootstrapped['planned'])} resources of the state "
                    f"stack applied; not applied: {', '.join(not_applied)} ({why})")
    result = terraform.run(bootstrapped["state_dir"], "plan", "-input=false", "-detailed-exitcode", "-json", check=False)
    changes = [json.loads(line) for line in result.stdout.splitlines() if '"type":"planned_change"' in line]
    # moto stores a bucket's EventBridge setting on PUT but leaves it out of its GET, so the notifications re-plan
    # their `eventbridge` (tests/test_platform_apply.py MOTO_READS_BACK_DIFFERENTLY): an update, never a replacement.
    rereads = [c for c in changes if c["change"]["resource"]["resource_type"] == "aws_s3_bucket_notification"]
    assert all(c["change"]["action"] == "update" for c in rereads), result.stdout[-3000:]
    pending = sorted(c["change"]["resource"]["resource_type"] for c in changes if c not in rereads)
    assert pending == sorted(STATE_STACK_NOT_APPLIED), result.stdout[-3000:]


@pytest.fixture(scope="module")
def platform_dir(bootstrapped, terraform, local_aws, synthesized, settings, tmp_path_factory):
    env = settings[ENV]
    work = terraform.stack_copy(
        synthesized.outdir / "stacks" / env.stack_name("platform"), tmp_path_factory.mktemp("platform") / "platform"
    )
    write_json(work / "aws_override.tf.json", local_aws.provider_override(provider_aliases(work)))
    terraform.run(work, "init", "-input=false", *bootstrapped["flags"])
    return work


def test_platform_plans_on_its_s3_backend(platform_dir, terraform, synthesized, settings):
    result = terraform.run(platform_dir, "plan", "-input=false", "-out=platform.tfplan", timeout=600)
    assert re.search(r"Plan: \d+ to add, 0 to change, 0 to destroy", result.stdout)
    plan = json.loads(terraform.run(platform_dir, "show", "-json", "platform.tfplan").stdout)
    planned_types = {r["type"] for r in plan["resource_changes"]}
    synthesized_types = set(synthesized.stack(settings[ENV].stack_name("platform")).json["resource"])
    assert planned_types == synthesized_types, "every resource type of the stack is in the plan"


def test_a_lock_row_exists_while_terraform_works_and_is_released(platform_dir, terraform, local_aws, settings):
    """``terraform apply`` holds the state lock while it waits for its confirmation prompt."""
    env = settings[ENV]
    table = local_aws.client("dynamodb")
    lock_id = f"{env.state.bucket}/{env.stack_name('platform')}/terraform.tfstate"

    def lock_rows():
        items = table.scan(TableName=env.state.lock_table)["Items"]
        return [i for i in items if i["LockID"]["S"] == lock_id]

    assert lock_rows() == []
    process = terraform.popen(platform_dir, "apply")
    try:
        deadline = time.monotonic() + 300
        while not lock_rows():
            assert process.poll() is None, process.stdout.read()
            assert time.monotonic() < deadline, "no lock row appeared"
            time.sleep(0.5)
        info = json.loads(lock_rows()[0]["Info"]["S"])
        assert info["Operation"] == "OperationTypeApply" and info["Path"] == lock_id
        # locked: a second writer is refused
        refused = terraform.run(platform_dir, "plan", "-input=false", "-lock-timeout=0s", check=False)
        assert refused.returncode != 0 and "Error acquiring the state lock" in refused.stderr
    finally:
        process.communicate("no\n", timeout=120)  # decline: nothing is created
    assert lock_rows() == [], "the lock is released when terraform ends"


def test_platform_state_is_kept_in_s3_and_readable_with_the_terraform_cli(
    platform_dir, terraform, local_aws, settings
):
    """Apply the subnets (and the VPC they need) so the platform state has something to show."""
    env = settings[ENV]
    plan = json.loads(terraform.run(platform_dir, "show", "-json", "platform.tfplan").stdout)
    subnets = [r["address"] for r in plan["resource_changes"] if r["type"] == "aws_subnet"]
    terraform.run(platform_dir, "apply", "-input=false", "-auto-approve", *(f"-target={a}" for a in subnets))
    listed = terraform.run(platform_dir, "state", "list").stdout.split()
    assert sorted(a.split(".")[0] for a in listed) == ["aws_subnet"] * 4 + ["aws_vpc"]
    pulled = json.loads(terraform.run(platform_dir, "state", "pull").stdout)
    cidrs = sorted(i["attributes"]["cidr_block"] for r in pulled["resources"] if r["type"] == "aws_subnet" for i in r["instances"])
    assert cidrs == sorted(s.cidr for s in env.network.subnets)
    key = f"{env.stack_name('platform')}/terraform.tfstate"
    stored = json.loads(local_aws.client("s3").get_object(Bucket=env.state.bucket, Key=key)["Body"].read())
    assert stored["serial"] == pulled["serial"]
