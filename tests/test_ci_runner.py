"""The deploy path: the in-VPC CI runner, the deploy role's way into the cluster, the [ci] settings, and what the
pull-request plan role may and may not do, judged by a real IAM evaluator (@cloud-copilot/iam-simulate)."""

from __future__ import annotations

import json
import re
import subprocess

import pytest
import yaml
from conftest import ROOT, copy_envs, edit, problems_for

from modules.ci_runner import build_timeout_minutes, runs_on_label

ACCOUNT = "111122223333"


def ref(resource: dict, resource_type: str, attribute: str = "id") -> str:
    return f"${{{resource_type}.{resource['//']['metadata']['uniqueId']}.{attribute}}}"


# --- the runner ---------------------------------------------------------------------------


def test_runner_is_a_codebuild_project_in_the_private_subnets(platform_stack, settings, env):
    ci = settings[env].ci
    project = platform_stack.only("aws_codebuild_project")
    assert project["name"] == f"twentycrm-{env}-ci-runner"
    private = [platform_stack.by_path("aws_subnet", f"network/private-{z}") for z in ("a", "b")]
    runner_sg = platform_stack.by_path("aws_security_group", "ci-runner/sg")
    assert project["vpc_config"] == {
        "vpc_id": ref(platform_stack.only("aws_vpc"), "aws_vpc"),
        "subnets": [ref(s, "aws_subnet") for s in private],
        "security_group_ids": [ref(runner_sg, "aws_security_group")],
    }
    assert project["environment"] == {
        "type": "LINUX_CONTAINER", "compute_type": ci.runner_compute_type, "image": ci.runner_image,
        "image_pull_credentials_type": "CODEBUILD", "privileged_mode": False,
    }  # fmt: skip
    # the build clock starts at queue time: 20 minutes more than GitHub's job timeout
    assert project["build_timeout"] == ci.apply_timeout_minutes + 20
    assert project["artifacts"] == {"type": "NO_ARTIFACTS"}
    assert project["encryption_key"].startswith("${aws_kms_key.")
    connection = platform_stack.only("aws_codeconnections_connection")
    assert project["source"] == {
        "type": "GITHUB", "location": f"https://github.com/{ci.github_repository}.git",
        "auth": {"type": "CODECONNECTIONS", "resource": ref(connection, "aws_codeconnections_connection", "arn")},
    }  # fmt: skip
    group = platform_stack.by_path("aws_cloudwatch_log_group", "ci-runner/logs")
    assert group["retention_in_days"] == ci.runner_log_retention_days and group["kms_key_id"].startswith("${aws_kms")
    assert project["logs_config"]["cloudwatch_logs"] == {
        "status": "ENABLED", "group_name": ref(group, "aws_cloudwatch_log_group", "name")
    }
    assert project["logs_config"]["s3_logs"] == {"status": "DISABLED"}


def test_runner_takes_jobs_from_the_workflow_job_queued_webhook(platform_stack):
    webhook = platform_stack.only("aws_codebuild_webhook")
    assert webhook["project_name"] == ref(platform_stack.only("aws_codebuild_project"), "aws_codebuild_project", "name")
    assert webhook["build_type"] == "BUILD"
    # only jobs of the deploy workflow (or its called apply workflow) start the runner
    assert webhook["filter_group"] == [{"filter": [
        {"type": "EVENT", "pattern": "WORKFLOW_JOB_QUEUED"}, {"type": "WORKFLOW_NAME", "pattern": "^(deploy|apply)$"},
    ]}]  # fmt: skip
    pattern = re.compile(webhook["filter_group"][0]["filter"][1]["pattern"])
    names = {f: yaml.safe_load((ROOT / ".github" / "workflows" / f).read_text())["name"]
             for f in ("deploy.yml", "apply.yml", "pull-request.yml")}  # fmt: skip
    assert [f for f, n in names.items() if pattern.search(n)] == ["deploy.yml", "apply.yml"]
    # created late in a first apply, when a person has had time to authorise the connection: after the HTTPS
    # listener (which waits for the certificate, i.e. the zone delegation) and the node groups
    https = platform_stack.by_path("aws_lb_listener", "load-balancer/https")["//"]["metadata"]["uniqueId"]
    groups = [g["//"]["metadata"]["uniqueId"] for g in platform_stack.resources("aws_eks_node_group").values()]
    expected = [f"aws_lb_listener.{https}", *(f"aws_eks_node_group.{g}" for g in groups)]
    assert sorted(webhook["depends_on"]) == sorted(expected)


def test_runner_speaks_https_out_only_and_reaches_the_private_api(platform_stack):
    runner = ref(platform_stack.by_path("aws_security_group", "ci-runner/sg"), "aws_security_group")
    cluster = ref(platform_stack.by_path("aws_security_group", "cluster/sg"), "aws_security_group")
    egress = [r for r in platform_stack.resources("aws_vpc_security_group_egress_rule").values()
              if r["security_group_id"] == runner]  # fmt: skip
    assert [(r["cidr_ipv4"], r["ip_protocol"], r["from_port"], r["to_port"]) for r in egress] == [
        ("0.0.0.0/0", "tcp", 443, 443)
    ]
    ingress = platform_stack.resources("aws_vpc_security_group_ingress_rule").values()
    assert not [r for r in ingress if r["security_group_id"] == runner]  # nothing connects to the runner
    [api] = [r for r in ingress if r.get("referenced_security_group_id") == runner]
    assert (api["security_group_id"], api["from_port"], api["to_port"]) == (cluster, 443, 443)
    assert platform_stack.only("aws_eks_cluster")["vpc_config"]["endpoint_public_access"] is False


def test_runner_role_can_only_run_the_build(platform_stack):
    role = platform_stack.by_path("aws_iam_role", "ci-runner/role")
    [trust] = json.loads(role["assume_role_policy"])["Statement"]
    assert trust["Principal"] == {"Service": "codebuild.amazonaws.com"}
    assert "aws:SourceAccount" in trust["Condition"]["StringEquals"]
    policy = json.loads(platform_stack.by_path("aws_iam_role_policy", "ci-runner/role-policy")["policy"])
    actions = {a for s in policy["Statement"] for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    services = {a.split(":")[0] for a in actions}
    # no codestar-connections: a policy's action prefix must match the resource's ARN, and the connection is a
    # codeconnections one (docs.aws.amazon.com/dtconsole/latest/userguide/rename.html)
    assert services == {"logs", "kms", "ec2", "codeconnections"}
    assert not [a for a in actions if "*" in a]
    permission = next(s for s in policy["Statement"] if s["Sid"] == "VpcNetworkInterfacePermission")
    assert permission["Condition"]["StringEquals"] == {"ec2:AuthorizedService": "codebuild.amazonaws.com"}
    assert len(permission["Condition"]["ArnEquals"]["ec2:Subnet"]) == 2


@pytest.mark.parametrize(("job", "build"), [(60, 80), (150, 170), (720, 740), (2150, 2160), (3000, 2160)])
def test_the_build_outlasts_the_job_within_codebuilds_maximum(job, build):
    assert build_timeout_minutes(job) == build


def test_the_github_connection_is_the_runners(platform_stack, env):
    connection = platform_stack.only("aws_codeconnections_connection")
    assert connection["name"] == f"twentycrm-{env}-github" and connection["provider_type"] == "GitHub"
    outputs = set(platform_stack.json["output"])
    assert {"github_connection_arn", "github_connection_status", "ci_runner_project"} <= outputs


def test_the_apply_workflow_names_the_runner_it_creates(settings, env):
    text = (ROOT / ".github" / "workflows" / "apply.yml").read_text()
    generic = runs_on_label(settings[env]).replace(f"-{env}-", "-${{ inputs.environment }}-")
    assert f"runs-on: {generic}" in text


# --- [ci] settings ----------------------------------------------------------------------


def test_role_sessions_last_what_the_settings_say(state_stack, settings, env):
    hours = settings[env].ci.session_hours
    for path in ("deploy/role", "deploy/plan-role"):
        assert state_stack.by_path("aws_iam_role", path)["max_session_duration"] == hours * 3600


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("session_hours = 3 ", "session_hours = 13 ", "ci.session_hours: Input should be less than or equal to 12"),
        ("apply_timeout_minutes = 150", "apply_timeout_minutes = 200",
         "ci: apply_timeout_minutes (200) outlasts session_hours (3): credentials would expire before the job "
         "times out; raise session_hours or lower apply_timeout_minutes"),
        ('runner_compute_type = "BUILD_GENERAL1_MEDIUM"', 'runner_compute_type = "BUILD_GENERAL1_HUGE"',
         "ci.runner_compute_type: allowed values are"),
        ('runner_image = "aws/codebuild/amazonlinux-x86_64-standard:5.0"', 'runner_image = "ubuntu:latest"',
         "ci.runner_image: 'ubuntu:latest' is not a CodeBuild curated Linux image"),
    ],
)  # fmt: skip
def test_bad_runner_and_session_settings_are_named(tmp_path, old, new, message):
    envs = copy_envs(tmp_path)
    edit(envs / "qa.toml", old, new)
    problems = problems_for(envs)
    assert message in problems, problems
    assert str(envs / "qa.toml") in problems


# --- the plan role under a real IAM evaluator --------------------------------------------


def _concrete(policy: str, env: str, settings) -> dict:
    """A synthesized policy with its Terraform references replaced by the ARNs they become."""
    s = settings[env]
    values = {
        r"\$\{aws_s3_bucket\.state_bucket_\w+\.arn\}": f"arn:aws:s3:::{s.state.bucket}",
        r"\$\{aws_dynamodb_table\.state_lock-table_\w+\.arn\}":
            f"arn:aws:dynamodb:{s.region}:{ACCOUNT}:table/{s.state.lock_table}",
        r"\$\{aws_kms_key\.state_key_\w+\.arn\}": f"arn:aws:kms:{s.region}:{ACCOUNT}:key/state-key",
        r"\$\{aws_kms_key\.registry-credential_key_\w+\.arn\}": f"arn:aws:kms:{s.region}:{ACCOUNT}:key/credential-key",
        r"\$\{data\.aws_partition\.[\w-]+\.partition\}": "aws",
        r"\$\{data\.aws_caller_identity\.[\w-]+\.account_id\}": ACCOUNT,
    }  # fmt: skip
    for pattern, value in values.items():
        policy = re.sub(pattern, value, policy)
    assert "${" not in policy, policy
    return json.loads(policy)


def decide(requests: list[dict]) -> list[str]:
    from modules.jsii_node import PROJECT_NODE

    evaluator = ROOT / "node_modules" / "@cloud-copilot" / "iam-simulate"
    if not evaluator.exists():
        pytest.skip(f"the IAM evaluator is not installed ({evaluator} missing); run ./scripts/test (npm ci)")
    node = str(PROJECT_NODE) if PROJECT_NODE.exists() else "node"
    result = subprocess.run([node, str(ROOT / "tests" / "iam_decide.cjs")], input=json.dumps(requests),
                            capture_output=True, text=True, timeout=60, check=True)  # fmt: skip
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def plan_role_decisions(synthesized, settings):
    """Every (environment, action, resource) below judged against that environment's plan role policies."""
    requests, keys = [], []
    for env in ("dev", "qa", "prod"):
        s = settings[env]
        stack = synthesized.stack(f"twentycrm-{env}-state")
        policies = [_concrete(stack.by_path("aws_iam_role_policy", f"deploy/{p}")["policy"], env, settings)
                    for p in ("plan-state-access", "plan-read")]  # fmt: skip
        state_object = f"arn:aws:s3:::{s.state.bucket}/twentycrm-{env}-platform/terraform.tfstate"
        table = f"arn:aws:dynamodb:{s.region}:{ACCOUNT}:table/{s.state.lock_table}"
        key = f"arn:aws:kms:{s.region}:{ACCOUNT}:key/state-key"
        key_policy = _concrete(stack.by_path("aws_kms_key", "state/key/key")["policy"], env, settings)
        for name, action, resource in [
            ("read state", "s3:GetObject", state_object),
            ("list state", "s3:ListBucket", f"arn:aws:s3:::{s.state.bucket}"),
            ("read digest", "dynamodb:GetItem", table),
            ("decrypt state", "kms:Decrypt", key),
            ("head alb logs", "s3:ListBucket", f"arn:aws:s3:::{s.load_balancer.access_log_bucket}"),
            ("head dumps", "s3:ListBucket", f"arn:aws:s3:::{s.database.dump_bucket}"),
            ("bucket policy", "s3:GetBucketPolicy", f"arn:aws:s3:::{s.database.dump_bucket}"),
            ("write state", "s3:PutObject", state_object),
            ("delete state", "s3:DeleteObject", state_object),
            ("take lock", "dynamodb:PutItem", table),
            ("drop lock", "dynamodb:DeleteItem", table),
            ("encrypt state", "kms:Encrypt", key),
            ("new data key", "kms:GenerateDataKey", key),
            ("read a dump", "s3:GetObject", f"arn:aws:s3:::{s.database.dump_bucket}/dumps/twenty.dump"),
            ("head another bucket", "s3:ListBucket", "arn:aws:s3:::somebody-elses-bucket"),
            ("secret value", "secretsmanager:GetSecretValue",
             f"arn:aws:secretsmanager:{s.region}:{ACCOUNT}:secret:twentycrm-{env}-db-password-AbCdEf"),
            ("describe secret", "secretsmanager:DescribeSecret",
             f"arn:aws:secretsmanager:{s.region}:{ACCOUNT}:secret:twentycrm-{env}-db-password-AbCdEf"),
            # nothing the plan role plans generates a password (the apps stack's Redis password: deploy role only)
            ("generate a password", "secretsmanager:GetRandomPassword", "*"),
        ]:  # fmt: skip
            requests.append({"policies": policies, "action": action, "resource": resource, "account": ACCOUNT,
                             **({"resourcePolicy": key_policy} if resource == key else {})})
            keys.append((env, name))
    return dict(zip(keys, decide(requests), strict=True))


ALLOWED = ("read state", "list state", "read digest", "decrypt state", "head alb logs", "head dumps", "bucket policy",
           "describe secret")  # fmt: skip
DENIED = ("write state", "delete state", "take lock", "drop lock", "encrypt state", "new data key", "read a dump",
          "head another bucket", "secret value", "generate a password")  # fmt: skip


@pytest.mark.parametrize("name", ALLOWED)
def test_the_plan_role_can_refresh(plan_role_decisions, env, name):
    assert plan_role_decisions[(env, name)] == "Allowed"


@pytest.mark.parametrize("name", DENIED)
def test_the_plan_role_reads_only(plan_role_decisions, env, name):
    assert plan_role_decisions[(env, name)] == "ImplicitlyDenied"


REDIS_PASSWORD_CALLS = [  # what the apps stack's RedisPassword and its ephemeral reads call (modules/apps.py)
    ("secretsmanager:GetRandomPassword", "*"),
    ("secretsmanager:CreateSecret", "secret"), ("secretsmanager:TagResource", "secret"),
    ("secretsmanager:PutSecretValue", "secret"), ("secretsmanager:DescribeSecret", "secret"),
    ("secretsmanager:GetSecretValue", "secret"), ("secretsmanager:GetResourcePolicy", "secret"),
    ("kms:GenerateDataKey", "key"), ("kms:Decrypt", "key"),
]  # fmt: skip


def test_the_deploy_role_can_keep_redis_password(state_stack, platform_stack, settings, env):
    """Its identity policy and its boundary both allow every call of the Redis password's create, refresh and
    read, in the environment's region; the plan role allows none of the writes or the read."""
    s = settings[env]
    region = s.region
    resources = {"*": "*", "secret": f"arn:aws:secretsmanager:{region}:{ACCOUNT}:secret:twentycrm/{env}/twenty/"
                 "redis-password-AbCdEf", "key": f"arn:aws:kms:{region}:{ACCOUNT}:key/db-secrets"}  # fmt: skip
    deploy = _concrete(state_stack.by_path("aws_iam_role_policy", "deploy/platform-access")["policy"], env, settings)
    boundary = _concrete(state_stack.by_path("aws_iam_policy", "deploy/boundary")["policy"], env, settings)
    plan = [_concrete(state_stack.by_path("aws_iam_role_policy", f"deploy/{p}")["policy"], env, settings)
            for p in ("plan-state-access", "plan-read")]  # fmt: skip
    context = {"aws:RequestedRegion": region}
    # the key of Twenty's secrets (the platform stack's database key), whose policy KMS always consults
    key_policy = _concrete(platform_stack.by_path("aws_kms_key", "database/key/key")["policy"], env, settings)

    def request(policies: list[dict], action: str, kind: str) -> dict:
        return {"policies": policies, "action": action, "resource": resources[kind], "account": ACCOUNT,
                "context": context, **({"resourcePolicy": key_policy} if kind == "key" else {})}

    requests = [request([policy], action, kind)
                for policy in (deploy, boundary) for action, kind in REDIS_PASSWORD_CALLS]  # fmt: skip
    decisions = decide(requests)
    assert set(decisions) == {"Allowed"}, [(r["action"], d) for r, d in zip(requests, decisions) if d != "Allowed"]
    closed = {"secretsmanager:GetRandomPassword", "secretsmanager:CreateSecret", "secretsmanager:PutSecretValue",
              "secretsmanager:GetSecretValue", "kms:GenerateDataKey"}  # fmt: skip
    plan_requests = [request(plan, a, k) for a, k in REDIS_PASSWORD_CALLS if a in closed]
    assert set(decide(plan_requests)) == {"ImplicitlyDenied"}


def test_the_evaluator_catches_a_plan_role_that_writes_state(state_stack, settings, env):
    """The same judge on the deploy role's state policy (what the plan role used to share): writes pass."""
    deploy_state = _concrete(state_stack.by_path("aws_iam_role_policy", "deploy/state-access")["policy"], env, settings)
    s = settings[env]
    obj = f"arn:aws:s3:::{s.state.bucket}/twentycrm-{env}-platform/terraform.tfstate"
    table = f"arn:aws:dynamodb:{s.region}:{ACCOUNT}:table/{s.state.lock_table}"
    assert decide([
        {"policies": [deploy_state], "action": "s3:PutObject", "resource": obj, "account": ACCOUNT},
        {"policies": [deploy_state], "action": "dynamodb:PutItem", "resource": table, "account": ACCOUNT},
    ]) == ["Allowed", "Allowed"]  # fmt: skip


# --- the review role: main's plans before approval --------------------------------------------------------------

REVIEW_ALLOWED = ("read platform state", "read apps state", "list state", "read digest", "take lock", "drop lock",
                  "decrypt state", "db password", "encryption key", "redis password", "describe secret",
                  "random password", "decrypt a secret via secrets manager", "describe cluster", "head files bucket")
REVIEW_DENIED = (  # a sample of writes across what the stacks manage, and reads beyond the app's secrets
    "write state", "delete state", "encrypt state", "new data key", "another secret", "another environment's secret",
    "decrypt outside secrets manager", "decrypt via another region", "put secret value", "create secret",
    "delete secret", "run instance", "terminate instance", "delete cluster", "create access entry", "create role",
    "pass role", "put object in files", "delete bucket", "delete table", "schedule key deletion", "start build",
    "update project", "delete log group", "delete load balancer", "change records", "put parameter", "publish",
    "read a dump",
)  # fmt: skip


def _review_requests(policies: list[dict], s, env: str, key_policies: dict[str, dict]) -> list[tuple[str, dict]]:
    region = s.region
    secret = f"arn:aws:secretsmanager:{region}:{ACCOUNT}:secret:twentycrm/{env}"
    state = f"arn:aws:s3:::{s.state.bucket}/twentycrm-{env}"
    table = f"arn:aws:dynamodb:{region}:{ACCOUNT}:table/{s.state.lock_table}"
    key = f"arn:aws:kms:{region}:{ACCOUNT}:key/state-key"
    db_key = f"arn:aws:kms:{region}:{ACCOUNT}:key/db-secrets"
    via = {"kms:ViaService": f"secretsmanager.{region}.amazonaws.com"}
    ec2, eks = f"arn:aws:ec2:{region}:{ACCOUNT}", f"arn:aws:eks:{region}:{ACCOUNT}"
    runner = f"arn:aws:codebuild:{region}:{ACCOUNT}:project/twentycrm-{env}-ci-runner"
    calls = [
        ("read platform state", "s3:GetObject", f"{state}-platform/terraform.tfstate", {}),
        ("read apps state", "s3:GetObject", f"{state}-apps/terraform.tfstate", {}),
        ("list state", "s3:ListBucket", f"arn:aws:s3:::{s.state.bucket}", {}),
        ("read digest", "dynamodb:GetItem", table, {}),
        ("take lock", "dynamodb:PutItem", table, {}),
        ("drop lock", "dynamodb:DeleteItem", table, {}),
        ("decrypt state", "kms:Decrypt", key, {}),
        ("db password", "secretsmanager:GetSecretValue", f"{secret}/database/password-AbCdEf", {}),
        ("encryption key", "secretsmanager:GetSecretValue", f"{secret}/twenty/encryption-key-AbCdEf", {}),
        ("redis password", "secretsmanager:GetSecretValue", f"{secret}/twenty/redis-password-AbCdEf", {}),
        ("describe secret", "secretsmanager:DescribeSecret", f"{secret}/twenty/redis-password-AbCdEf", {}),
        ("random password", "secretsmanager:GetRandomPassword", "*", {}),
        ("decrypt a secret via secrets manager", "kms:Decrypt", db_key, via),
        ("describe cluster", "eks:DescribeCluster", f"{eks}:cluster/{s.cluster.name}", {}),
        ("head files bucket", "s3:ListBucket", f"arn:aws:s3:::{s.apps.files_bucket}", {}),
        ("write state", "s3:PutObject", f"{state}-apps/terraform.tfstate", {}),
        ("delete state", "s3:DeleteObject", f"{state}-apps/terraform.tfstate", {}),
        ("encrypt state", "kms:Encrypt", key, {}),
        ("new data key", "kms:GenerateDataKey", key, {}),
        ("another secret", "secretsmanager:GetSecretValue",
         f"arn:aws:secretsmanager:{region}:{ACCOUNT}:secret:somebody/else-AbCdEf", {}),
        ("another environment's secret", "secretsmanager:GetSecretValue",
         f"arn:aws:secretsmanager:{region}:{ACCOUNT}:secret:twentycrm/other/database/password-AbCdEf", {}),
        ("decrypt outside secrets manager", "kms:Decrypt", db_key, {}),
        ("decrypt via another region", "kms:Decrypt", db_key,
         {"kms:ViaService": "secretsmanager.us-east-1.amazonaws.com"}),
        ("put secret value", "secretsmanager:PutSecretValue", f"{secret}/twenty/redis-password-AbCdEf", {}),
        ("create secret", "secretsmanager:CreateSecret", f"{secret}/new-AbCdEf", {}),
        ("delete secret", "secretsmanager:DeleteSecret", f"{secret}/database/password-AbCdEf", {}),
        ("run instance", "ec2:RunInstances", f"{ec2}:instance/*", {}),
        ("terminate instance", "ec2:TerminateInstances", f"{ec2}:instance/i-0123456789abcdef0", {}),
        ("delete cluster", "eks:DeleteCluster", f"{eks}:cluster/{s.cluster.name}", {}),
        ("create access entry", "eks:CreateAccessEntry", f"{eks}:cluster/{s.cluster.name}", {}),
        ("create role", "iam:CreateRole", f"arn:aws:iam::{ACCOUNT}:role/twentycrm-{env}-x", {}),
        ("pass role", "iam:PassRole", f"arn:aws:iam::{ACCOUNT}:role/twentycrm-{env}-deploy", {}),
        ("put object in files", "s3:PutObject", f"arn:aws:s3:::{s.apps.files_bucket}/x", {}),
        ("delete bucket", "s3:DeleteBucket", f"arn:aws:s3:::{s.apps.files_bucket}", {}),
        ("delete table", "dynamodb:DeleteTable", table, {}),
        ("schedule key deletion", "kms:ScheduleKeyDeletion", db_key, {}),
        ("start build", "codebuild:StartBuild", runner, {}),
        ("update project", "codebuild:UpdateProject", runner, {}),
        ("delete log group", "logs:DeleteLogGroup", f"arn:aws:logs:{region}:{ACCOUNT}:log-group:x", {}),
        ("delete load balancer", "elasticloadbalancing:DeleteLoadBalancer",
         f"arn:aws:elasticloadbalancing:{region}:{ACCOUNT}:loadbalancer/app/x/0123456789abcdef", {}),
        ("change records", "route53:ChangeResourceRecordSets", "arn:aws:route53:::hostedzone/Z0123456789", {}),
        ("put parameter", "ssm:PutParameter", f"arn:aws:ssm:{region}:{ACCOUNT}:parameter/x", {}),
        ("publish", "sns:Publish", f"arn:aws:sns:{region}:{ACCOUNT}:x", {}),
        ("read a dump", "s3:GetObject", f"arn:aws:s3:::{s.database.dump_bucket}/dumps/twenty.dump", {}),
    ]  # fmt: skip
    # KMS always consults the key's own policy: the state key's and the database key's, as synthesized
    keys = {key: key_policies["state"], db_key: key_policies["database"]}
    return [(name, {"policies": policies, "action": action, "resource": resource, "account": ACCOUNT,
                    "context": {"aws:RequestedRegion": region, **context},
                    **({"resourcePolicy": keys[resource]} if resource in keys else {})})
            for name, action, resource, context in calls]  # fmt: skip


def _review_policies(state_stack, settings, env: str) -> list[dict]:
    return [_concrete(state_stack.by_path("aws_iam_role_policy", f"deploy/{p}")["policy"], env, settings)
            for p in ("review-state-access", "review-read")]  # fmt: skip


def review_mismatches(policies: list[dict], boundary: dict, key_policies: dict[str, dict], s, env: str) -> list[str]:
    """Names whose decision differs from REVIEW_ALLOWED / REVIEW_DENIED: the identity policies must allow exactly the
    former, and the boundary (the role's ceiling) must allow the former too."""
    requests = _review_requests(policies, s, env, key_policies)
    assert {n for n, _ in requests} == set(REVIEW_ALLOWED) | set(REVIEW_DENIED)
    bounded = [(n, {**r, "policies": [boundary]}) for n, r in requests if n in REVIEW_ALLOWED]
    decisions = decide([r for _, r in requests] + [r for _, r in bounded])
    wrong = []
    for (name, _), decision in zip(requests + bounded, decisions, strict=True):
        if (decision == "Allowed") != (name in REVIEW_ALLOWED):
            wrong.append(f"{name}: {decision}")
    return wrong


def _key_policies(state_stack, platform_stack, settings, env: str) -> dict[str, dict]:
    return {"state": _concrete(state_stack.by_path("aws_kms_key", "state/key/key")["policy"], env, settings),
            "database": _concrete(platform_stack.by_path("aws_kms_key", "database/key/key")["policy"], env, settings)}


def test_the_review_role_reads_the_app_secrets_and_locks_and_writes_nothing(state_stack, platform_stack, settings, env):
    boundary = _concrete(state_stack.by_path("aws_iam_policy", "deploy/boundary")["policy"], env, settings)
    keys = _key_policies(state_stack, platform_stack, settings, env)
    wrong = review_mismatches(_review_policies(state_stack, settings, env), boundary, keys, settings[env], env)
    assert not wrong, "; ".join(wrong)


def test_the_evaluator_catches_a_review_role_that_writes(state_stack, platform_stack, settings, env):
    boundary = _concrete(state_stack.by_path("aws_iam_policy", "deploy/boundary")["policy"], env, settings)
    policies = _review_policies(state_stack, settings, env)
    policies[1]["Statement"].append({"Sid": "TooMuch", "Effect": "Allow", "Action": ["ec2:*", "s3:PutObject"],
                                     "Resource": "*"})  # fmt: skip
    keys = _key_policies(state_stack, platform_stack, settings, env)
    wrong = review_mismatches(policies, boundary, keys, settings[env], env)
    assert "terminate instance: Allowed" in wrong and "write state: Allowed" in wrong
