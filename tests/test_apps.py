"""The apps stack of every environment: providers, secrets, file bucket, roles, add-ons, releases, order.

What these tests cannot do: ``terraform validate``/``plan`` of the apps stack. Those need the
hashicorp/kubernetes and hashicorp/helm providers, which the offline mirror does not carry, and a
plan needs a live cluster anyway (docs/apps.md, "What is not validated offline").
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
from conftest import ROOT, build_stack, copy_envs, edit, lock_with, problems_for, with_changes

from modules.apps import (
    CLUSTER_AUTOSCALER,
    CLUSTER_AUTOSCALER_IMAGE_TAGS,
    LOAD_BALANCER_CONTROLLER,
    METRICS_SERVER,
    SECRET_NAME,
    chart_values,
    secret_data_revision,
    secret_keys,
)
from modules.settings import KUBERNETES_VERSIONS, SettingsError, load_all
from modules.stacks import AppsStack

REMOTE = "data.terraform_remote_state.platform.outputs"


def releases(stack) -> dict[str, dict]:
    return {r["name"]: r for r in stack.resources("helm_release").values()}


def address(resource_type: str, resource: dict) -> str:
    return f"{resource_type}.{resource['//']['metadata']['uniqueId']}"


def policy(stack, path_suffix: str) -> dict:
    return json.loads(stack.by_path("aws_iam_role_policy", path_suffix)["policy"])


# --- settings ------------------------------------------------------------------------------


def test_the_image_tag_is_a_release_never_latest(tmp_path):
    envs = copy_envs(tmp_path)
    edit(envs / "qa.toml", 'twenty_image_tag = "v2.45.6"', 'twenty_image_tag = "latest"')
    message = problems_for(envs)
    assert "qa.toml: apps.twenty_image_tag: 'latest' is not a released Twenty version" in message
    assert "vMAJOR.MINOR.PATCH" in message


def test_the_server_minimum_defaults_to_the_frontend_node_count(settings):
    for env in settings.values():
        assert env.apps.server_min_replicas is None
        assert env.server_min_replicas == env.cluster.frontend.desired_size


def test_the_server_maximum_must_reach_the_minimum(settings):
    with pytest.raises(ValueError, match=r"apps.server_max_replicas \(2\) is below the minimum of server pods \(3"):
        with_changes(settings["prod"], apps={"server_max_replicas": 2})


def test_the_files_bucket_is_unique(tmp_path, settings):
    with pytest.raises(ValueError, match="apps.files_bucket must differ from state.bucket"):
        with_changes(settings["dev"], apps={"files_bucket": settings["dev"].state.bucket})
    envs = copy_envs(tmp_path)
    path = envs / "qa.toml"
    path.write_text(path.read_text().replace("olhai-twentycrm-qa-files", "olhai-twentycrm-dev-files"))
    with pytest.raises(SettingsError, match="apps.files_bucket: 'olhai-twentycrm-dev-files' is already used"):
        load_all(envs)


# --- providers, backend, remote state ------------------------------------------------------


def test_kubernetes_and_helm_authenticate_with_aws_eks_get_token(apps_stack, settings, env):
    s = settings[env]
    expected_exec = {
        "api_version": "client.authentication.k8s.io/v1beta1",
        "command": "aws",
        "args": ["eks", "get-token", "--cluster-name", s.cluster.name, "--region", s.region],
    }
    providers = apps_stack.json["provider"]
    (kubernetes,) = providers["kubernetes"]
    (helm,) = providers["helm"]
    for config, exec_block in ((kubernetes, kubernetes["exec"][0]), (helm["kubernetes"], helm["kubernetes"]["exec"])):
        assert exec_block == expected_exec
        assert config["host"] == f"${{{REMOTE}.cluster_endpoint}}"
        assert config["cluster_ca_certificate"] == f"${{base64decode({REMOTE}.cluster_certificate_authority_data)}}"
        assert not {"token", "client_key", "client_certificate", "password", "config_path"} & set(config)


def test_only_the_apps_stack_has_kubernetes_and_helm(apps_stack):
    assert apps_stack.json["terraform"]["required_providers"] == {
        "aws": {"source": "aws", "version": "5.100.0"},
        "helm": {"source": "helm", "version": "3.1.1"},
        "kubernetes": {"source": "kubernetes", "version": "2.38.0"},
    }


def test_apps_state_and_platform_outputs_come_from_this_environment(apps_stack, settings, env):
    s = settings[env]
    assert apps_stack.json["terraform"]["backend"]["s3"]["key"] == f"twentycrm-{env}-apps/terraform.tfstate"
    assert apps_stack.json["terraform"]["backend"]["s3"]["bucket"] == s.state.bucket
    (remote,) = apps_stack.json["data"]["terraform_remote_state"].values()
    assert remote["backend"] == "s3"
    assert remote["config"]["bucket"] == s.state.bucket
    assert remote["config"]["key"] == f"twentycrm-{env}-platform/terraform.tfstate"


def test_every_platform_output_read_exists(apps_stack, synthesized, env):
    used = set(re.findall(rf"{re.escape(REMOTE)}\.([a-z_]+)", apps_stack.text))
    outputs = set(synthesized.stack(f"twentycrm-{env}-platform").json["output"])
    assert used and used <= outputs, used - outputs


# --- secrets -------------------------------------------------------------------------------


def test_the_secret_is_written_only_through_write_only_data(apps_stack):
    secret = apps_stack.only("kubernetes_secret_v1")
    assert secret["metadata"]["name"] == SECRET_NAME
    assert "data" not in secret and "binary_data" not in secret
    assert set(secret["data_wo"]) == {"PG_DATABASE_PASSWORD", "APP_SECRET", "ENCRYPTION_KEY", "REDIS_PASSWORD"}
    ephemeral = "${ephemeral.aws_secretsmanager_secret_version."
    assert secret["data_wo"]["PG_DATABASE_PASSWORD"] == f"{ephemeral}secret_password.secret_string}}"
    assert secret["data_wo"]["APP_SECRET"] == secret["data_wo"]["ENCRYPTION_KEY"]
    assert secret["data_wo"]["ENCRYPTION_KEY"].startswith(ephemeral)
    assert secret["data_wo_revision"] == secret_data_revision(1, secret_keys(smtp=False))
    # The Redis password: generated once by AWS into its own Secrets Manager secret (write-only, version 1),
    # then read like the others, so a rewrite of the Secret hands out the password Redis already runs with.
    (generated,) = apps_stack.json["ephemeral"]["aws_secretsmanager_random_password"].values()
    assert generated == {"password_length": 40, "exclude_punctuation": True, "include_space": False}
    (stored,) = apps_stack.json["resource"]["aws_secretsmanager_secret"].values()
    (version,) = apps_stack.json["resource"]["aws_secretsmanager_secret_version"].values()
    assert stored["kms_key_id"] == f"${{{REMOTE}.db_secrets_kms_key_arn}}"
    assert stored["name"].endswith("/twenty/redis-password")
    assert version["secret_string_wo"] == (
        "${ephemeral.aws_secretsmanager_random_password.secret_redis_generated.random_password}"
    )
    assert version["secret_string_wo_version"] == 1 and "secret_string" not in version
    assert secret["data_wo"]["REDIS_PASSWORD"] == (
        "${ephemeral.aws_secretsmanager_secret_version.secret_redis_password.secret_string}"
    )
    reads = apps_stack.json["ephemeral"]["aws_secretsmanager_secret_version"]
    assert {r["secret_id"] for r in reads.values()} == {
        f"${{{REMOTE}.db_password_secret_arn}}",
        f"${{{REMOTE}.twenty_encryption_key_secret_arn}}",
        f"${{aws_secretsmanager_secret.{next(iter(apps_stack.json['resource']['aws_secretsmanager_secret']))}.arn}}",
    }
    (redis_read,) = [r for r in reads.values() if "depends_on" in r]
    (version_id,) = apps_stack.json["resource"]["aws_secretsmanager_secret_version"]
    assert redis_read["depends_on"] == [f"aws_secretsmanager_secret_version.{version_id}"], (
        "on the first apply the secret has a value only once the version exists"
    )
    assert "aws_secretsmanager_secret_version" not in apps_stack.json.get("data", {}), "a data source lands in state"


SECRET_LITERALS = [
    re.compile(r"postgres(ql)?://[^$\s\"]*:[^$\s\"{<]+@"),  # a URL with a literal password
    re.compile(r"replace_me|changeme|(?i:BEGIN [A-Z ]*PRIVATE KEY)"),
    re.compile(r"AKIA[0-9A-Z]{16}"),  # an AWS access key ID
    re.compile(r"\"(token|password|secret_string|set_sensitive|set_wo)\"\s*:"),  # arguments that hold values
]


def test_no_secret_literal_anywhere_in_cdktf_out(synthesized):
    """Every file the synth writes (stacks, chart assets): no credential, no URL with a password."""
    offenders = []
    for path in synthesized.outdir.rglob("*"):
        if path.is_file():
            text = path.read_text(errors="replace")
            found = [p.pattern for p in SECRET_LITERALS if p.search(text)]
            offenders += [f"{path.relative_to(synthesized.outdir)}: {pattern}" for pattern in found]
    assert not offenders, offenders


@pytest.mark.parametrize("leak", [
    '"PG_DATABASE_URL": "postgres://twenty:s3cretPassw0rd@db.internal:5432/twenty"',
    '{"token": "k8s-aws-v1.abc"}',
    'key = "AKIAABCDEFGHIJKLMNOP"',
])  # fmt: skip
def test_the_secret_scan_would_catch_a_leak(leak):
    assert any(p.search(leak) for p in SECRET_LITERALS)


# --- file bucket and roles -----------------------------------------------------------------


def test_the_files_bucket_is_private_encrypted_and_versioned(apps_stack, settings, env):
    assert apps_stack.by_path("aws_s3_bucket", "files/bucket")["bucket"] == settings[env].apps.files_bucket
    assert apps_stack.by_path("aws_s3_bucket_versioning", "files/bucket-versioning")["versioning_configuration"] == {
        "status": "Enabled"
    }
    (rule,) = apps_stack.by_path("aws_s3_bucket_server_side_encryption_configuration", "files/bucket-encryption")["rule"]
    assert rule["apply_server_side_encryption_by_default"]["sse_algorithm"] == "aws:kms"
    block = apps_stack.by_path("aws_s3_bucket_public_access_block", "files/bucket-public-access")
    assert all(block[k] is True for k in ("block_public_acls", "block_public_policy", "ignore_public_acls",
                                          "restrict_public_buckets"))  # fmt: skip
    deny = json.loads(apps_stack.by_path("aws_s3_bucket_policy", "files/bucket-policy")["policy"])["Statement"][0]
    assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_twenty_pods_get_only_object_access_to_their_bucket(apps_stack, settings, env):
    statements = policy(apps_stack, "files/role/policy")["Statement"]
    actions = sorted(a for s in statements for a in s["Action"])
    assert actions == sorted(["s3:ListBucket", "s3:GetBucketLocation", "s3:GetObject", "s3:PutObject",
                              "s3:DeleteObject", "kms:Decrypt", "kms:GenerateDataKey"])  # fmt: skip
    assert all("*" not in s["Resource"] or s["Resource"].endswith("}/*") for s in statements)
    trust = json.loads(apps_stack.by_path("aws_iam_role", "files/role/role")["assume_role_policy"])
    assert trust["Statement"][0]["Principal"] == {"Service": "pods.eks.amazonaws.com"}
    associations = apps_stack.resources("aws_eks_pod_identity_association").values()
    pairs = {(a["namespace"], a["service_account"]) for a in associations}
    ns = settings[env].apps.namespace
    assert pairs == {(ns, "twenty-frontend"), (ns, "twenty-backend"), (ns, "twenty-backend-migrate"),
                     ("kube-system", "aws-load-balancer-controller"),
                     ("kube-system", "cluster-autoscaler")}  # fmt: skip
    for association in apps_stack.resources("aws_eks_pod_identity_association").values():
        assert association["cluster_name"] == settings[env].cluster.name


def test_the_load_balancer_controller_may_only_register_targets_in_the_server_group(apps_stack):
    statements = policy(apps_stack, "addons/lbc-role/policy")["Statement"]
    write = [s for s in statements if any(not a.split(":")[1].startswith("Describe") for a in s["Action"])]
    assert write == [{
        "Sid": "Targets", "Effect": "Allow", "Resource": f"${{{REMOTE}.server_target_group_arn}}",
        "Action": ["elasticloadbalancing:RegisterTargets", "elasticloadbalancing:DeregisterTargets"],
    }]  # fmt: skip


def test_the_autoscaler_may_only_scale_this_clusters_node_groups(apps_stack, settings, env):
    statements = {s["Sid"]: s for s in policy(apps_stack, "addons/autoscaler-role/policy")["Statement"]}
    scale = statements["ScaleOwnNodeGroups"]
    assert scale["Action"] == ["autoscaling:SetDesiredCapacity", "autoscaling:TerminateInstanceInAutoScalingGroup"]
    assert scale["Condition"] == {
        "StringEquals": {f"aws:ResourceTag/k8s.io/cluster-autoscaler/{settings[env].cluster.name}": "owned"}
    }
    assert all(a.split(":")[1].startswith(("Describe", "Get")) for a in statements["Read"]["Action"])


# --- Kubernetes objects and releases -------------------------------------------------------


def test_the_namespace_enforces_the_restricted_pod_security_standard(apps_stack, settings, env):
    namespace = apps_stack.only("kubernetes_namespace_v1")["metadata"]
    assert namespace["name"] == settings[env].apps.namespace
    assert namespace["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_the_vpc_cni_enforces_the_charts_network_policies(platform_stack):
    cni = platform_stack.by_path("aws_eks_addon", "cluster/addon-vpc-cni")
    assert json.loads(cni["configuration_values"])["enableNetworkPolicy"] == "true"


def test_the_gp3_storage_class(apps_stack, settings, env):
    sc = apps_stack.only("kubernetes_storage_class_v1")
    assert sc["metadata"]["name"] == "gp3"
    assert sc["storage_provisioner"] == "ebs.csi.aws.com"
    assert sc["parameters"] == {
        "type": "gp3", "encrypted": "true", "fsType": "ext4",
        "tagSpecification_1": f"Environment={env}", "tagSpecification_2": f"Project={settings[env].project}",
    }  # fmt: skip
    assert sc["volume_binding_mode"] == "WaitForFirstConsumer"


def volume_tags(storage_class: dict) -> dict[str, str]:
    """The tags the EBS CSI driver puts on each volume it provisions from ``storage_class``: every
    ``tagSpecification*`` parameter is one ``key=value`` (aws-ebs-csi-driver docs/tagging.md)."""
    specs = [v for k, v in storage_class.get("parameters", {}).items() if k.startswith("tagSpecification")]
    return dict(spec.split("=", 1) for spec in specs)


def test_redis_volumes_carry_the_environment_fence_tag(apps_stack, settings, env):
    sc = apps_stack.only("kubernetes_storage_class_v1")
    assert volume_tags(sc) == {"Environment": env, "Project": settings[env].project}


def test_the_volume_tag_check_sees_an_untagged_storage_class(apps_stack):
    sc = apps_stack.only("kubernetes_storage_class_v1")
    bare = {**sc, "parameters": {k: v for k, v in sc["parameters"].items() if not k.startswith("tagSpecification")}}
    assert "Environment" not in volume_tags(bare)


def test_every_twenty_release_runs_the_pinned_tag_from_the_chart_asset(apps_stack, synthesized, settings, env):
    tag = settings[env].apps.twenty_image_tag
    found = releases(apps_stack)
    for name in ("twenty-redis", "twenty-backend", "twenty-frontend"):
        release = found[name]
        assert release["namespace"] == settings[env].apps.namespace
        assert f'"tag" = "{tag}"' in release["values"][0]
        assert "latest" not in release["values"][0]
        assert release["chart"].startswith("assets/"), "a relative path inside the stack directory"
        chart = synthesized.outdir / "stacks" / f"twentycrm-{env}-apps" / release["chart"]
        assert (chart / "Chart.yaml").is_file() and (chart / "values.schema.json").is_file()
        assert release["wait"] is True and release["wait_for_jobs"] is True


def test_the_release_values_are_chart_values(apps_stack, settings, env):
    """The stack passes exactly what the chart tests render (modulo HCL syntax)."""
    for tier in ("redis", "backend", "frontend"):
        values = chart_values(settings[env], tier, target_group_arn="TG", database={})
        text = releases(apps_stack)[f"twenty-{tier}"]["values"][0]
        database = (f'"database" = {{"host" = {REMOTE}.db_host, "port" = {REMOTE}.db_port, "name" = {REMOTE}.db_name, '
                    f'"user" = {REMOTE}.db_username, "allowSelfSignedTls" = true}}')  # fmt: skip
        assert database in text, "a new database host rolls the pods through the release values"
        assert f'"tier" = "{tier}"' in text
        assert f'"minReplicas" = {values["server"]["autoscaling"]["minReplicas"]}' in text
        assert f'"targetGroupARN" = {REMOTE}.server_target_group_arn' in text
        assert f'"serverUrl" = "https://{settings[env].domain}"' in text


def test_redis_then_backend_then_frontend_and_the_controller_before_the_binding(apps_stack):
    """The release graph of docs/apps.md, "Release order": Redis is Ready before the backend release's
    pre-install hook (the migration Job) needs it; the server's release waits for the backend's."""
    found = releases(apps_stack)
    redis, backend, frontend = found["twenty-redis"], found["twenty-backend"], found["twenty-frontend"]
    lbc = found["aws-load-balancer-controller"]
    lbc_address = address("helm_release", lbc)
    assert address("helm_release", redis) in backend["depends_on"]
    assert address("helm_release", backend) in frontend["depends_on"]
    assert address("helm_release", redis) in frontend["depends_on"]
    assert not any(d.startswith("helm_release.twenty-") for d in redis["depends_on"]), "Redis waits for no Twenty"
    for release in (redis, backend, frontend):
        assert release["wait"] is True, "the next release starts only once this one's pods are Ready"
        assert lbc_address in release["depends_on"]  # its CRD and readiness-gate webhook come first
        assert address("helm_release", found["metrics-server"]) in release["depends_on"]
        assert "kubernetes_secret_v1.secret_D2F9FB97" in release["depends_on"]
        assert any(d.startswith("kubernetes_storage_class_v1.") for d in release["depends_on"])
        assert sum(d.startswith("aws_eks_pod_identity_association.files_role") for d in release["depends_on"]) == 3
    assert any(d.startswith("aws_eks_pod_identity_association.addons_lbc-role") for d in lbc["depends_on"])


def test_cluster_addons_are_pinned_charts(apps_stack, settings, env):
    found = releases(apps_stack)
    for pin in (LOAD_BALANCER_CONTROLLER, METRICS_SERVER, CLUSTER_AUTOSCALER):
        release = found[pin["chart"]]
        assert (release["repository"], release["chart"], release["version"]) == (
            pin["repository"], pin["chart"], pin["version"]
        )  # fmt: skip
        assert release["namespace"] == "kube-system"
        assert re.fullmatch(r"\d+\.\d+\.\d+", release["version"])
    lbc = found["aws-load-balancer-controller"]["values"][0]
    assert f'"region" = "{settings[env].region}"' in lbc and f'"vpcId" = {REMOTE}.vpc_id' in lbc
    autoscaler = found["cluster-autoscaler"]["values"][0]
    assert '"balance-similar-node-groups" = true' in autoscaler
    assert f'"autoDiscovery" = {{"clusterName" = "{settings[env].cluster.name}"}}' in autoscaler
    version = settings[env].cluster.kubernetes_version
    assert f'"tag" = "{CLUSTER_AUTOSCALER_IMAGE_TAGS[version]}"' in autoscaler


def test_the_autoscaler_image_follows_every_supported_kubernetes_version():
    assert set(CLUSTER_AUTOSCALER_IMAGE_TAGS) == set(KUBERNETES_VERSIONS)
    for version, tag in CLUSTER_AUTOSCALER_IMAGE_TAGS.items():
        assert tag.startswith(f"v{version}."), "Cluster Autoscaler's minor version must match the cluster's"


def test_outputs(apps_stack, settings, env):
    outputs = apps_stack.json["output"]
    assert outputs["public_url"]["value"] == f"https://{settings[env].domain}"
    assert outputs["redis_release"]["value"] == "${helm_release.twenty-redis.name}"
    assert outputs["backend_release"]["value"] == "${helm_release.twenty-backend.name}"
    assert outputs["frontend_release"]["value"] == "${helm_release.twenty-frontend.name}"


def test_the_secret_revision_is_a_setting(settings):
    one = build_stack(AppsStack, settings["qa"]).only("kubernetes_secret_v1")["data_wo_revision"]
    two = build_stack(AppsStack, with_changes(settings["qa"], apps={"secret_revision": 2}))
    assert two.only("kubernetes_secret_v1")["data_wo_revision"] != one


def test_a_new_secret_key_rewrites_the_secret_without_a_bump(settings):
    """Adding [apps.email] adds EMAIL_SMTP_PASSWORD: the revision changes, so Terraform writes the new key
    before the chart refers to it; the same settings always give the same revision (no rewrite per apply)."""
    email = {"host": "email-smtp.sa-east-1.amazonaws.com", "user": "crm", "from_address": "crm@olhai.app.br",
             "password_secret": "twentycrm/qa/smtp"}  # fmt: skip
    plain = build_stack(AppsStack, settings["qa"]).only("kubernetes_secret_v1")["data_wo_revision"]
    again = build_stack(AppsStack, settings["qa"]).only("kubernetes_secret_v1")["data_wo_revision"]
    smtp = build_stack(AppsStack, with_changes(settings["qa"], apps={"email": email}))
    assert plain == again
    assert smtp.only("kubernetes_secret_v1")["data_wo_revision"] != plain
    # the same in another interpreter with another string-hash seed: a digest, not Python's salted hash()
    code = "from modules.apps import secret_data_revision as r, secret_keys as k; print(r(1, k(smtp=False)))"
    other = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, "PYTHONHASHSEED": "12345"},
                           capture_output=True, text=True, check=True)  # fmt: skip
    assert int(other.stdout) == secret_data_revision(1, secret_keys(smtp=False))
    assert all(0 < secret_data_revision(r, secret_keys(smtp=m)) < 2**53 for r in (1, 99) for m in (False, True))


def test_a_changed_tag_reaches_every_release_by_its_locked_digest(settings, tmp_path):
    lock = lock_with(tmp_path, ("docker.io/twentycrm/twenty", "v2.46.1"))
    changed = with_changes(settings["dev"], lock=lock, apps={"twenty_image_tag": "v2.46.1"})
    digest = changed.images.twenty.digest
    assert digest != settings["dev"].images.twenty.digest
    stack = build_stack(AppsStack, changed)
    for name in ("twenty-redis", "twenty-backend", "twenty-frontend"):
        assert '"tag" = "v2.46.1"' in releases(stack)[name]["values"][0]
        assert f'twentycrm-dev/docker/twentycrm/twenty", "tag" = "v2.46.1", "digest" = "{digest}"' in releases(
            stack)[name]["values"][0]


def test_the_chart_directory_is_the_one_in_the_repository():
    from modules.apps import CHART_DIR

    assert CHART_DIR == ROOT / "charts" / "twenty"


def test_an_smtp_password_reaches_the_secret_only_through_an_ephemeral_read(settings):
    email = {"host": "email-smtp.sa-east-1.amazonaws.com", "user": "AKIAEXAMPLE", "from_address": "crm@olhai.app.br",
             "password_secret": "twentycrm/qa/smtp"}  # fmt: skip
    stack = build_stack(AppsStack, with_changes(settings["qa"], apps={"email": email}))
    secret = stack.only("kubernetes_secret_v1")
    assert secret["data_wo"]["EMAIL_SMTP_PASSWORD"] == (
        "${ephemeral.aws_secretsmanager_secret_version.secret_smtp_password.secret_string}"
    )
    reads = stack.json["ephemeral"]["aws_secretsmanager_secret_version"]
    assert "twentycrm/qa/smtp" in {r["secret_id"] for r in reads.values()}
    values = releases(stack)["twenty-backend"]["values"][0]
    assert '"enabled" = true' in values and '"host" = "email-smtp.sa-east-1.amazonaws.com"' in values
    assert "password" not in values.lower().replace("password_secret", ""), "no password in the release values"


# --- the Redis password against a local AWS API (moto), with the real terraform CLI and provider -------------


@pytest.mark.slow
def test_the_redis_password_is_generated_once_and_read_back_unchanged(synthesized, tmp_path):
    """The apps stack's own AWS blocks for Redis's password, applied twice by terraform against moto: the first
    apply generates and stores it, the ephemeral read (waiting for the version) gets the stored value, and a
    second apply changes nothing. The key comes from the platform stack in real life; here a key of moto's."""
    from terraform_support import LocalAws, Terraform, missing_tools, write_json

    reason = missing_tools()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; CI must not skip this test")
        pytest.skip(reason)
    apps = synthesized.stack("twentycrm-dev-apps").json
    (secret_id, secret), = apps["resource"]["aws_secretsmanager_secret"].items()
    (version_id, version), = apps["resource"]["aws_secretsmanager_secret_version"].items()
    reads = apps["ephemeral"]["aws_secretsmanager_secret_version"]
    redis_read = {name: r for name, r in reads.items() if "depends_on" in r}
    config = {
        "terraform": {"required_providers": {"aws": {"source": "hashicorp/aws", "version": "5.100.0"}}},
        "provider": {"aws": {"region": "sa-east-1"}},
        "ephemeral": {"aws_secretsmanager_random_password": apps["ephemeral"]["aws_secretsmanager_random_password"],
                      "aws_secretsmanager_secret_version": redis_read},
        "resource": {
            "aws_kms_key": {"secrets": {"description": "stands in for the platform stack's secrets key"}},
            "aws_secretsmanager_secret": {
                secret_id: {**secret, "kms_key_id": "${aws_kms_key.secrets.arn}"},
                # where the test sees what the ephemeral read returned (the chart's Secret in real life)
                "seen": {"name": "seen-by-the-read", "recovery_window_in_days": 0},
            },
            "aws_secretsmanager_secret_version": {
                version_id: version,
                "seen": {"secret_id": "${aws_secretsmanager_secret.seen.id}", "secret_string_wo_version": 1,
                         "secret_string_wo": f"${{ephemeral.aws_secretsmanager_secret_version.{next(iter(redis_read))}"
                                             ".secret_string}"},
            },
        },
    }  # fmt: skip
    work = tmp_path / "redis-password"
    work.mkdir()
    terraform = Terraform(tmp_path)
    with LocalAws(tmp_path) as aws:
        write_json(work / "main.tf.json", config)
        write_json(work / "aws_override.tf.json", aws.provider_override())
        terraform.run(work, "init", "-input=false")
        terraform.run(work, "apply", "-input=false", "-auto-approve", timeout=600)
        client = aws.client("secretsmanager")
        stored = client.get_secret_value(SecretId=secret["name"])["SecretString"]
        assert re.fullmatch(r"[A-Za-z0-9]{40}", stored), "letters and digits: it goes into redis:// unescaped"
        assert client.get_secret_value(SecretId="seen-by-the-read")["SecretString"] == stored
        again = terraform.run(work, "plan", "-input=false", "-detailed-exitcode", check=False)
        assert again.returncode == 0, f"a second run would change something:\n{again.stdout}\n{again.stderr}"
        terraform.run(work, "apply", "-input=false", "-auto-approve", timeout=600)
        assert client.get_secret_value(SecretId=secret["name"])["SecretString"] == stored, "generated only once"
        state = (work / "terraform.tfstate").read_text()
        assert stored not in state, "write-only: the password is not in the state"


def test_every_backend_upgrade_upgrades_the_frontend_after_it(apps_stack):
    """A "stop" upgrade of the backend scales the server to 0; only an upgrade of the frontend release sets its
    replicas back. The frontend's values carry the backend release's revision, so they change (unknown in the
    plan) whenever the backend is upgraded, even when nothing of the frontend's own changed (e.g. the old tag set
    back after a failed migration). Redis and the backend carry no such reference."""
    found = releases(apps_stack)
    revision = '"backendRevision" = helm_release.twenty-backend.metadata.revision'
    assert revision in found["twenty-frontend"]["values"][0], found["twenty-frontend"]["values"][0]
    assert address("helm_release", found["twenty-backend"]) in found["twenty-frontend"]["depends_on"]
    for name in ("twenty-redis", "twenty-backend"):
        assert '"backendRevision" = 0' in found[name]["values"][0]
