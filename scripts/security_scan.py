#!/usr/bin/env python
"""Security gate: checkov over the synthesized stacks and the rendered charts, minus the findings
accepted in one file.

    python scripts/security_scan.py [CDKTF_OUT]      (default: cdktf.out)

Runs checkov with ``--framework terraform_json`` (the plain ``terraform`` framework finds nothing
in cdktf output) and no skips; then renders charts/twenty for every environment with helm
(scripts/render_charts.py) and runs ``--framework kubernetes`` on those manifests. It drops the
findings that ``security/checkov-allowlist.yaml`` accepts (an entry with ``framework: kubernetes``
matches only manifest findings; without it, only Terraform ones). Exit status 1 when a finding is
left, or when an allowlist entry matches nothing (a
stale excuse); 0 otherwise. checkov runs from its own virtual environment (tools/checkov), so
its dependencies never meet the project's.
"""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
ALLOWLIST = ROOT / "security" / "checkov-allowlist.yaml"


@dataclass(frozen=True)
class Finding:
    check: str
    name: str
    stack: str
    resource: str  # the construct's unique ID (network_flow-logs_D7C94307) or Kind.namespace.name
    framework: str = "terraform_json"

    def __str__(self) -> str:
        return f"{self.check} {self.stack} {self.resource}: {self.name}"


def checkov_binary() -> str | None:
    local = ROOT / "tools" / "checkov" / ".venv" / "bin" / "checkov"
    return str(local) if local.exists() else shutil.which("checkov")


# Top-level blocks that checkov 3.3.30's terraform_json parser refuses ("Failed to parse template", counted as a
# parsing error, the stack silently unscanned) and that configure no resource: the state stacks' `removed` block
# (modules/stacks.py, the OIDC provider's move). They are left out of the copy checkov reads.
NOT_FOR_CHECKOV = ("removed",)


def _checkov_view(directory: Path, scratch: Path) -> Path:
    """A copy of the synthesized stacks without ``NOT_FOR_CHECKOV`` blocks, laid out as stacks/<name>/."""
    for source in directory.glob("stacks/*/cdk.tf.json"):
        config = json.loads(source.read_text())
        target = scratch / "stacks" / source.parent.name / source.name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps({k: v for k, v in config.items() if k not in NOT_FOR_CHECKOV}))
    return scratch


def run_checkov(directory: Path, framework: str = "terraform_json") -> list[Finding]:
    if framework == "terraform_json" and (directory / "stacks").is_dir():
        with tempfile.TemporaryDirectory(prefix="checkov-view-") as scratch:
            return _run_checkov(_checkov_view(directory, Path(scratch)), framework)
    return _run_checkov(directory, framework)


def _run_checkov(directory: Path, framework: str) -> list[Finding]:
    binary = checkov_binary()
    if not binary:
        raise FileNotFoundError("checkov is not installed (scripts/env.sh installs it into tools/checkov/.venv)")
    result = subprocess.run(
        [binary, "--directory", str(directory), "--framework", framework, "--output", "json", "--quiet", "--compact"],
        capture_output=True,
        text=True,
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE", "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false"},
        timeout=600,
    )
    if result.returncode not in (0, 1):  # 1 means "findings", anything else is a crash
        raise RuntimeError(f"checkov failed ({result.returncode}):\n{result.stderr[-3000:]}")
    reports = json.loads(result.stdout or "[]")
    if isinstance(reports, dict):
        reports = [reports]
    findings = []
    for report in reports:
        if not report.get("results"):
            continue
        for failed in report["results"]["failed_checks"]:
            parts = Path(failed["file_path"]).parts
            stack = parts[parts.index("stacks") + 1] if "stacks" in parts else Path(failed["file_path"]).parent.name
            resource = failed["resource"] if framework == "kubernetes" else failed["resource"].split(".", 1)[-1]
            findings.append(Finding(failed["check_id"], failed["check_name"], stack, resource, framework))
    return sorted(set(findings), key=str)


def load_allowlist(path: Path = ALLOWLIST) -> list[dict]:
    entries = yaml.safe_load(path.read_text()) or []
    for i, entry in enumerate(entries):
        missing = {"check", "resources", "reason"} - set(entry)
        if missing or not str(entry.get("reason", "")).strip():
            raise ValueError(f"{path}: entry {i} ({entry.get('check')}) needs check, resources and a reason")
    return entries


def _accepted(finding: Finding, entry: dict) -> bool:
    return (
        finding.framework == entry.get("framework", "terraform_json")
        and finding.check == entry["check"]
        and any(fnmatch.fnmatchcase(finding.stack, g) for g in entry.get("stacks", ["*"]))
        and any(fnmatch.fnmatchcase(finding.resource, g) for g in entry["resources"])
    )


def gate(findings: list[Finding], entries: list[dict]) -> tuple[list[Finding], list[dict]]:
    """The findings no entry accepts, and the entries that accept nothing."""
    left = [f for f in findings if not any(_accepted(f, e) for e in entries)]
    unused = [e for e in entries if not any(_accepted(f, e) for f in findings)]
    return left, unused


def scan_charts(directory: Path) -> list[Finding]:
    """Render charts/twenty for every environment into ``directory`` and run checkov's kubernetes
    framework on the manifests. Findings name the apps stack and ``Kind.namespace.name``."""
    sys.path.insert(0, str(ROOT / "scripts"))
    import render_charts

    from modules.settings import load_all

    render_charts.render_all(directory, load_all(ROOT / "envs"))
    return run_checkov(directory, framework="kubernetes")


def main(argv: list[str]) -> int:
    directory = Path(argv[1]) if len(argv) > 1 else ROOT / "cdktf.out"
    if not (directory / "stacks").is_dir():
        print(f"{directory}/stacks not found: run ./scripts/synth first", file=sys.stderr)
        return 2
    findings = run_checkov(directory)
    if any(p.name.endswith("-apps") for p in (directory / "stacks").iterdir()):
        with tempfile.TemporaryDirectory(prefix="rendered-charts-") as rendered:
            findings += scan_charts(Path(rendered))
    left, unused = gate(findings, load_allowlist())
    print(f"checkov: {len(findings)} findings, {len(findings) - len(left)} accepted in {ALLOWLIST.relative_to(ROOT)}")
    for finding in left:
        print(f"  FAILED {finding}")
    for entry in unused:
        print(f"  STALE allowlist entry {entry['check']} {entry['resources']}: it matches nothing; remove it")
    return 1 if left or unused else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
