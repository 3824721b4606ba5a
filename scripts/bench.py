#!/usr/bin/env python
"""Synth speed and memory, measured side by side with the floor. Rerun: ``./scripts/bench`` .

For each of --runs rounds (interleaved, so machine noise hits both alike) it times:
  floor    a process that only imports cdktf, constructs and the provider submodules that
           modules/ really uses (the way modules/__init__.py loads them), then exits: what no
           synth can go below;
  plain    ``import cdktf_cdktf_provider_aws`` as the package's own __init__ does it (every
           submodule): what the floor was before modules/__init__.py, for comparison;
  synth-3  main.py over the three real environment files;
  synth-30 main.py over 30 generated environment files (copies of envs/dev.toml with their own
           ranges and names), for the marginal cost of one more environment.
Reports medians, the ratio to the floor and the peak resident memory of the whole process tree
(Python and its jsii Node child, sampled from /proc every 10 ms; Linux only).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGETS = {"ratio": 1.15, "per_env_s": 0.15, "peak_mb": 1536}


def provider_imports() -> list[str]:
    """The provider submodules modules/ imports: the floor imports exactly these."""
    found = set()
    for path in (ROOT / "modules").glob("*.py"):
        found |= set(re.findall(r"^from (cdktf_cdktf_provider_\w+\.\w+) import", path.read_text(), re.MULTILINE))
    return sorted(found)


def generated_envs(directory: Path, count: int) -> Path:
    template = (ROOT / "envs" / "dev.toml").read_text()
    for n in range(count):
        text = (
            template.replace("10.0.", f"10.{100 + n}.")
            .replace("mGenialDev", f"bench{n:02d}")
            .replace("-dev-", f"-b{n:02d}-")
            .replace('"twentycrm-dev"', f'"twentycrm-b{n:02d}"')
            .replace('github_environment = "dev"', f'github_environment = "b{n:02d}"')
            # all in dev's one account, so each lists the others (envs/ sharing is explicit)
            .replace("shared_with = []", f"shared_with = {[f'b{m:02d}' for m in range(count) if m != n]}")
        )
        (directory / f"b{n:02d}.toml").write_text(text)
    return directory


def _tree_rss_kb(pid: int) -> int:
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        try:
            status = Path(f"/proc/{p}/status").read_text()
            total += int(re.search(r"VmRSS:\s+(\d+)", status).group(1))
            for task in Path(f"/proc/{p}/task").iterdir():
                stack += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError, AttributeError):
            continue
    return total


def measure(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and peak MB of the process tree."""
    with tempfile.TemporaryFile(mode="w+") as errors:  # a file, not a pipe: a full pipe would block the child
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=errors, text=True)
        peak = 0
        while proc.poll() is None:
            peak = max(peak, _tree_rss_kb(proc.pid))
            time.sleep(0.01)
        elapsed = time.perf_counter() - start
        if proc.returncode != 0:
            errors.seek(0)
            raise SystemExit(f"{' '.join(cmd)} failed:\n{errors.read()[-5000:]}")
    return elapsed, peak / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="rounds per measurement (default 5)")
    parser.add_argument("--many", type=int, default=30, help="generated environments for the marginal cost")
    args = parser.parse_args()

    python = sys.executable
    floor_code = "import modules, cdktf, constructs\n" + "".join(f"import {m}\n" for m in provider_imports())
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        (tmp_path / "many").mkdir()
        many = generated_envs(tmp_path / "many", args.many)
        base = {**os.environ, "CDKTF_OUTDIR": str(tmp_path / "out")}
        cases = {
            "floor": ([python, "-c", floor_code], base),
            "plain": ([python, "-c", "import cdktf, constructs, cdktf_cdktf_provider_aws"], base),
            "synth-3": ([python, "main.py"], {**base, "TWENTYCRM_ENVS_DIR": str(ROOT / "envs")}),
            f"synth-{args.many}": ([python, "main.py"], {**base, "TWENTYCRM_ENVS_DIR": str(many)}),
        }
        measure(*cases["floor"])  # warm the OS file cache and the jsii package cache once
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
        for _ in range(args.runs):
            for name, (cmd, env) in cases.items():
                results[name].append(measure(cmd, env))

    med = {name: statistics.median(t for t, _ in runs) for name, runs in results.items()}
    peak = {name: max(m for _, m in runs) for name, runs in results.items()}
    node = os.environ.get("JSII_NODE", "node")
    node_version = subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip()
    print(f"python {sys.version.split()[0]}, jsii on node {node_version}, {os.cpu_count()} CPUs, {args.runs} runs each")
    print(f"floor imports cdktf, constructs and {len(provider_imports())} provider submodules")
    print(f"{'case':<10} {'median s':>9} {'min s':>7} {'max s':>7} {'peak MB':>8} {'x floor':>8}")
    for name, runs in results.items():
        times = [t for t, _ in runs]
        print(f"{name:<10} {med[name]:>9.2f} {min(times):>7.2f} {max(times):>7.2f} {peak[name]:>8.0f} "
              f"{med[name] / med['floor']:>8.2f}")  # fmt: skip
    ratio = med["synth-3"] / med["floor"]
    per_env = (med[f"synth-{args.many}"] - med["synth-3"]) / (args.many - 3)
    top = max(m for name, m in peak.items() if name != "plain")
    print(f"synth of every stack: {ratio:.2f}x the floor (target <= {TARGETS['ratio']}), "
          f"{med['synth-3'] / med['plain']:.2f}x a plain provider import")  # fmt: skip
    print(f"marginal cost: {per_env:.3f} s per extra environment (target < {TARGETS['per_env_s']})")
    print(f"peak memory: {top:.0f} MB (target < {TARGETS['peak_mb']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
