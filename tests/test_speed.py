"""The provider packages are loaded once per process, and only the submodules the code names."""

from __future__ import annotations

import subprocess
import sys

from conftest import ROOT

PROBE = """
import sys, modules.stacks
loaded = [m for m in sys.modules if m.startswith("cdktf_cdktf_provider_aws.") and m.count(".") == 1]
print(len(loaded), "cdktf_cdktf_provider_aws.lambda_function" in sys.modules)
"""


def test_only_the_used_provider_submodules_are_imported():
    """modules/__init__.py skips the provider package's __init__, which would import ~1,500 submodules."""
    result = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    count, unused_loaded = result.stdout.split()
    assert unused_loaded == "False"
    assert 10 < int(count) < 150, f"{count} provider submodules loaded"


def test_the_benchmark_environments_are_valid(tmp_path):
    """scripts/bench.py's 30 generated files must pass validation, or the benchmark measures an error."""
    sys.path.insert(0, str(ROOT / "scripts"))
    import bench

    from modules.settings import load_all

    envs = load_all(bench.generated_envs(tmp_path, 30))
    assert len({e.network.cidr for e in envs}) == 30
