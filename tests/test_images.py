"""scripts/images against a real registry: the CNCF distribution registry (Debian's ``docker-registry``) on
127.0.0.1 holding OCI image indexes pushed by ``skopeo``.

- ``lock``: the digest the command writes is the sha256 of the index's bytes as the registry serves them.
- ``warm``: the manifest requests by tag go to that registry (as to ``<account>.dkr.ecr.<region>.amazonaws.com``),
  the AWS calls (GetAuthorizationToken, DescribeImages, DescribeSecret) to moto's server, where the test stores
  what a pull-through cache's import leaves in ECR (``put_image`` of the same index under the tag). Equal digests
  pass; a rebuilt tag, an unseeded credential, a missing tag and an import ECR never lists fail with their fix."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import tomllib
import urllib.request
from pathlib import Path

import pytest
from conftest import ROOT

TOOLS = ("docker-registry", "skopeo")


def _missing() -> list[str]:
    return [tool for tool in TOOLS if not shutil.which(tool)]


def _blob(layout: Path, data: bytes, media_type: str) -> dict:
    digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256" / digest).write_bytes(data)
    return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(data)}


def _oci_index(layout: Path, tag: str, build: str = "") -> str:
    """An OCI layout holding a two-platform image index (amd64, arm64) under ``tag``; returns the index digest.
    ``build`` changes the layers' bytes: another build of the same tag, another digest."""
    (layout / "blobs" / "sha256").mkdir(parents=True)
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    manifests = []
    for arch in ("amd64", "arm64"):
        layer = _blob(layout, f"layer of {arch}{build}".encode(), "application/vnd.oci.image.layer.v1.tar")
        config = _blob(layout, json.dumps({"architecture": arch, "os": "linux", "rootfs": {
            "type": "layers", "diff_ids": [layer["digest"]]}}).encode(), "application/vnd.oci.image.config.v1+json")
        manifest_type = "application/vnd.oci.image.manifest.v1+json"
        manifest = _blob(layout, json.dumps({"schemaVersion": 2, "mediaType": manifest_type, "config": config,
                                             "layers": [layer]}).encode(), manifest_type)
        manifests.append({**manifest, "platform": {"architecture": arch, "os": "linux"}})
    index = _blob(layout, json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                                      "manifests": manifests}).encode(), "application/vnd.oci.image.index.v1+json")
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
        {**index, "annotations": {"org.opencontainers.image.ref.name": tag}}]}))
    return index["digest"]


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """A distribution registry on a free port of 127.0.0.1 (plain HTTP), stopped by its process id afterwards."""
    if missing := _missing():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{', '.join(missing)} missing under CI=true: .ci/run installs docker-registry and skopeo")
        pytest.skip(f"{', '.join(missing)} not installed (Debian: apt-get install docker-registry skopeo)")
    work = tmp_path_factory.mktemp("registry")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    (work / "config.yml").write_text(
        f"version: 0.1\nlog: {{level: warn}}\nstorage: {{filesystem: {{rootdirectory: {work / 'data'}}}}}\n"
        f"http: {{addr: 127.0.0.1:{port}}}\n")
    process = subprocess.Popen(["docker-registry", "serve", str(work / "config.yml")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise AssertionError("docker-registry did not answer on /v2/")
        yield f"127.0.0.1:{port}", work
    finally:
        process.terminate()
        process.wait(timeout=10)


def _lock(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "images.py"), "lock", *args],
                          capture_output=True, text=True, timeout=120)  # fmt: skip


def test_the_lock_command_writes_the_index_digest_the_registry_serves(registry, tmp_path):
    host, work = registry
    expected = _oci_index(work / "layout", "1.0.0")
    target = f"docker://{host}/library/demo:1.0.0"
    subprocess.run(["skopeo", "copy", "--all", "--preserve-digests", "--dest-tls-verify=false",
                    f"oci:{work / 'layout'}:1.0.0", target], check=True, capture_output=True, timeout=120)  # fmt: skip
    served = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", target],
                            check=True, capture_output=True, timeout=60).stdout  # fmt: skip
    assert json.loads(served)["mediaType"] == "application/vnd.oci.image.index.v1+json"
    assert "sha256:" + hashlib.sha256(served).hexdigest() == expected

    lock_file = tmp_path / "images.lock.toml"
    lock_file.write_text((ROOT / "images.lock.toml").read_text())
    result = _lock("--plain-http", "--lock-file", str(lock_file), f"{host}/library/demo:1.0.0")
    assert result.returncode == 0, result.stderr
    lock = tomllib.loads(lock_file.read_text())
    assert lock[f"{host}/library/demo"]["1.0.0"]["digest"] == expected
    assert "Docker-Content-Digest" in lock[f"{host}/library/demo"]["1.0.0"]["source"]
    # the other entries are kept as they were
    before = tomllib.loads((ROOT / "images.lock.toml").read_text())
    assert {k: v for k, v in lock.items() if k in before} == before


def test_a_tag_the_registry_does_not_have_fails_and_leaves_the_lock_alone(registry, tmp_path):
    host, _ = registry
    lock_file = tmp_path / "images.lock.toml"
    lock_file.write_text((ROOT / "images.lock.toml").read_text())
    result = _lock("--plain-http", "--lock-file", str(lock_file), f"{host}/library/demo:9.9.9")
    assert result.returncode == 1
    assert "HTTP 404" in result.stderr and "does 127.0.0.1" in result.stderr
    assert lock_file.read_text() == (ROOT / "images.lock.toml").read_text()


def test_a_reference_without_a_tag_is_refused(tmp_path):
    result = _lock("--lock-file", str(tmp_path / "lock.toml"), "twentycrm/twenty@sha256:" + "0" * 64)
    assert result.returncode == 1 and "is not <registry>/<path>:<tag>" in result.stderr


# --- warm: the environment's pull-through cache -----------------------------------------------------------------

ENV = "dev"
INDEX_TYPE = "application/vnd.oci.image.index.v1+json"


def _push(host: str, work: Path, repository: str, tag: str, build: str) -> bytes:
    """An index pushed to ``host/repository:tag``; returns its bytes as the registry serves them."""
    layout = work / "layouts" / f"{repository.replace('/', '_')}-{tag}-{build}"
    digest = _oci_index(layout, tag, build)
    target = f"docker://{host}/{repository}:{tag}"
    subprocess.run(["skopeo", "copy", "--all", "--preserve-digests", "--dest-tls-verify=false",
                    f"oci:{layout}:{tag}", target], check=True, capture_output=True, timeout=120)  # fmt: skip
    served = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", target],
                            check=True, capture_output=True, timeout=60).stdout  # fmt: skip
    assert "sha256:" + hashlib.sha256(served).hexdigest() == digest
    return served


@pytest.fixture(scope="module")
def cache(registry, tmp_path_factory):
    """The dev environment's three images in the registry under their cached repositories' paths, a lock pinning
    exactly those indexes, and moto's server for the ECR and Secrets Manager calls."""
    from moto.server import ThreadedMotoServer
    from postgres_support import free_port

    sys.path.insert(0, str(ROOT / "scripts"))
    import images as script
    from modules.settings.environment import load_environment

    host, work = registry
    settings = load_environment(ROOT / "envs" / f"{ENV}.toml")
    indexes, lock = {}, tomllib.loads((ROOT / "images.lock.toml").read_text())
    for image in script.environment_images(settings):
        indexes[image.repository] = _push(host, work, image.repository, image.tag, build="first")
        lock[image.upstream][image.tag]["digest"] = "sha256:" + hashlib.sha256(indexes[image.repository]).hexdigest()
    lock_file = tmp_path_factory.mktemp("warm") / "images.lock.toml"
    script.write_lock(lock_file, lock)

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    aws_env = {"AWS_ENDPOINT_URL_ECR": url, "AWS_ENDPOINT_URL_SECRETS_MANAGER": url, "AWS_ACCESS_KEY_ID": "testing",
               "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing", "AWS_CONFIG_FILE": "/dev/null",
               "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"}  # fmt: skip
    try:
        yield {"host": host, "work": work, "settings": settings, "indexes": indexes, "lock_file": lock_file,
               "url": url, "env": aws_env, "script": script}  # fmt: skip
    finally:
        server.stop()


@pytest.fixture
def aws(cache):
    """Empty ECR and Secrets Manager for each test; clients on moto."""
    import boto3

    urllib.request.urlopen(urllib.request.Request(f"{cache['url']}/moto-api/reset", method="POST"), timeout=10)
    region = cache["settings"].region
    kwargs = {"endpoint_url": cache["url"], "region_name": region, "aws_access_key_id": "testing",
              "aws_secret_access_key": "testing"}  # fmt: skip
    return boto3.client("ecr", **kwargs), boto3.client("secretsmanager", **kwargs)


def _seed_credential(cache, secrets, *, value: bool = True) -> str:
    name = cache["script"].credential_secret_name(cache["settings"])
    extra = {"SecretString": json.dumps({"username": "u", "accessToken": "t"})} if value else {}
    secrets.create_secret(Name=name, **extra)
    return name


def _imported(ecr, repository: str, tag: str, index: bytes) -> None:
    """What the cache's import leaves in ECR: the repository and the index under the tag."""
    try:
        ecr.create_repository(repositoryName=repository)
    except ecr.exceptions.RepositoryAlreadyExistsException:
        pass
    ecr.put_image(repositoryName=repository, imageManifest=index.decode(), imageTag=tag,
                  imageManifestMediaType=INDEX_TYPE, imageDigest="sha256:" + hashlib.sha256(index).hexdigest())


def _warm(cache, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "images.py"), "warm", ENV, "--registry",
                           cache["host"], "--plain-http", "--lock-file", str(cache["lock_file"]), "--interval", "0.2",
                           *extra], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **cache["env"]})  # fmt: skip


def test_warm_requests_what_the_chart_pulls(cache):
    """The repositories warmed are the ones modules/apps.py puts in the release values, and the credential the one
    modules/registry.py creates."""
    from modules.apps import image_reference
    from modules.registry import credential_secret_name

    settings, script = cache["settings"], cache["script"]
    host = f"{settings.account.id}.dkr.ecr.{settings.region}.amazonaws.com"
    warmed = {f"{host}/{image.repository}@{image.digest}" for image in script.environment_images(settings)}
    images = settings.images
    assert warmed == {f"{image_reference(settings, i)}@{i.digest}" for i in (images.twenty, images.redis,
                                                                            images.kubectl)}  # fmt: skip
    assert script.credential_secret_name(settings) == credential_secret_name(settings)


def test_warm_passes_when_the_cache_holds_the_locked_digests(cache, aws):
    ecr, secrets = aws
    _seed_credential(cache, secrets)
    for image in cache["script"].environment_images(cache["settings"]):
        _imported(ecr, image.repository, image.tag, cache["indexes"][image.repository])
    result = _warm(cache)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("ok ") == 3, result.stdout


def test_warm_fails_when_the_upstream_tag_was_rebuilt(cache, aws):
    ecr, secrets = aws
    _seed_credential(cache, secrets)
    images = cache["script"].environment_images(cache["settings"])
    redis = next(image for image in images if image.upstream.endswith("/redis"))
    rebuilt = _push(cache["host"], cache["work"], redis.repository, "rebuild-" + redis.tag, build="second")
    for image in images:
        _imported(ecr, image.repository, image.tag, rebuilt if image is redis else cache["indexes"][image.repository])
    result = _warm(cache)
    assert result.returncode == 1
    new = "sha256:" + hashlib.sha256(rebuilt).hexdigest()
    assert f"docker.io/library/redis:{redis.tag}: the cache holds {new}" in result.stderr, result.stderr
    locked = "sha256:" + hashlib.sha256(cache["indexes"][redis.repository]).hexdigest()
    assert f"pins {locked}" in result.stderr and "upstream tag was rebuilt" in result.stderr
    assert f"scripts/images lock docker.io/library/redis:{redis.tag}" in result.stderr
    assert result.stdout.count("ok ") == 2  # the other two are checked too, and pass


def test_warm_stops_first_when_the_docker_hub_credential_has_no_value(cache, aws):
    _, secrets = aws
    name = _seed_credential(cache, secrets, value=False)
    result = _warm(cache)
    assert result.returncode == 1
    assert f"{name} has no value yet" in result.stderr, result.stderr
    assert f"aws secretsmanager put-secret-value --region {cache['settings'].region} --secret-id {name}" \
        in result.stderr and '"accessToken"' in result.stderr
    assert "ok " not in result.stdout


def test_warm_times_out_when_ecr_never_lists_the_tag(cache, aws):
    _, secrets = aws
    _seed_credential(cache, secrets)
    result = _warm(cache, "--timeout", "1")
    assert result.returncode == 1
    twenty = cache["script"].environment_images(cache["settings"])[0]
    assert f"{twenty.repository}:{twenty.tag}: ECR did not list the tag within 1s" in result.stderr, result.stderr


def test_warm_fails_when_the_registry_has_no_such_tag(cache, aws, tmp_path):
    _, secrets = aws
    _seed_credential(cache, secrets)
    lock = tomllib.loads(cache["lock_file"].read_text())
    envs = tmp_path / "envs"
    envs.mkdir()
    text = (ROOT / "envs" / f"{ENV}.toml").read_text().replace('twenty_image_tag = "v2.45.6"',
                                                                  'twenty_image_tag = "v2.45.7"')
    (envs / f"{ENV}.toml").write_text(text)
    lock["docker.io/twentycrm/twenty"]["v2.45.7"] = lock["docker.io/twentycrm/twenty"]["v2.45.6"]
    cache["script"].write_lock(tmp_path / "lock.toml", lock)
    result = _warm(cache, "--envs-dir", str(envs), "--lock-file", str(tmp_path / "lock.toml"))
    assert result.returncode == 1
    assert "/manifests/v2.45.7: HTTP 404" in result.stderr and "validate-pull-through-cache-rule" in result.stderr


def test_warm_with_the_synth_jobs_values_needs_only_python3_and_the_aws_cli(cache, aws, tmp_path):
    """CI's apply-apps job: `scripts/images warm <env> --resolved <ci-settings.json>` takes the values the synth job
    resolved (``resolved_images``) and runs on the system's python3 with the aws CLI alone. Proven from a directory
    holding only the two scripts (no env.sh to install a toolchain, no modules/ to import the settings model) and a
    PATH of /usr/bin, /bin and the aws CLI."""
    from modules.settings.environment import load_environment

    ecr, secrets = aws
    _seed_credential(cache, secrets)
    for image in cache["script"].environment_images(cache["settings"]):
        _imported(ecr, image.repository, image.tag, cache["indexes"][image.repository])
    resolved = tmp_path / "ci-settings.json"
    settings = load_environment(ROOT / "envs" / f"{ENV}.toml", cache["lock_file"])
    resolved.write_text(json.dumps(cache["script"].resolved_images(settings)))
    bare = tmp_path / "checkout" / "scripts"
    bare.mkdir(parents=True)
    for name in ("images", "images.py"):
        shutil.copy2(ROOT / "scripts" / name, bare / name)
    tools = tmp_path / "bin"
    tools.mkdir()
    (tools / "aws").symlink_to(ROOT / ".venv" / "bin" / "aws")

    def warm(env: str, *extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(bare / "images"), "warm", env, "--resolved", str(resolved), *extra],
                              capture_output=True, text=True, timeout=120, cwd=tmp_path,
                              env={"PATH": f"{tools}:/usr/bin:/bin", "HOME": str(tmp_path), **cache["env"]})

    result = warm(ENV, "--registry", cache["host"], "--plain-http", "--interval", "0.2")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("ok ") == 3, result.stdout
    other = warm("qa")
    assert other.returncode == 1 and f"holds the settings of environment '{ENV}', not 'qa'" in other.stderr
