"""The lock command (scripts/images) against a real registry: the CNCF distribution registry (Debian's
``docker-registry``) on 127.0.0.1, an OCI image index pushed into it by ``skopeo``, and the digest the command
writes compared with the sha256 of the index's bytes as the registry serves them."""

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


def _oci_index(layout: Path, tag: str) -> str:
    """An OCI layout holding a two-platform image index (amd64, arm64) under ``tag``; returns the index digest."""
    (layout / "blobs" / "sha256").mkdir(parents=True)
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    manifests = []
    for arch in ("amd64", "arm64"):
        layer = _blob(layout, f"layer of {arch}".encode(), "application/vnd.oci.image.layer.v1.tar")
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
