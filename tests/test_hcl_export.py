"""The exit from cdktf (archived by HashiCorp in December 2025) to plain HCL: ``scripts/hcl_export.py`` writes every
state and platform stack as ``main.tf``; each passes ``terraform validate`` with the pinned hashicorp/aws provider
and (dev's, checked once) has the same dependency graph (``terraform graph``) as the JSON that CI applies today.

``cdktf synth --hcl`` is not that exit: cdktf 0.21 writes invalid HCL for every string holding quotes and a
``${...}`` reference (hashicorp/terraform-cdk#3911), i.e. every policy of these stacks (README, "cdktf is archived").
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import ENVIRONMENTS, ROOT
from terraform_support import Terraform, missing_tools, write_json

pytestmark = pytest.mark.slow

LOCAL_BACKEND = {"terraform": {"backend": {"local": {"path": "validate.tfstate"}}}}
EXPORT = ROOT / "scripts" / "hcl_export.py"


@pytest.fixture(scope="session")
def hcl_terraform(tmp_path_factory) -> Terraform:
    reason = missing_tools()
    if reason:
        pytest.skip(reason)
    terraform = Terraform(tmp_path_factory.mktemp("hcl-terraform"))
    # 12 inits of the same provider: link it from one cache instead of copying ~700 MB each time
    terraform.env["TF_PLUGIN_CACHE_DIR"] = str(tmp_path_factory.mktemp("plugin-cache"))
    return terraform


@pytest.fixture(scope="session")
def provider_schema(hcl_terraform, synthesized, tmp_path_factory):
    """hashicorp/aws 5.100.0's schema, from an initialised copy of one stack (once per session)."""
    stack = synthesized.outdir / "stacks" / "twentycrm-dev-state"
    work = hcl_terraform.stack_copy(stack, tmp_path_factory.mktemp("schema") / "stack")
    write_json(work / "backend_override.tf.json", LOCAL_BACKEND)
    hcl_terraform.run(work, "init", "-input=false")
    schema = work.parent / "schema.json"
    schema.write_text(hcl_terraform.run(work, "providers", "schema", "-json").stdout)
    return schema


def _export(stack_dir, schema, out):
    result = subprocess.run([sys.executable, str(EXPORT), str(stack_dir), str(schema), str(out)],
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr
    return out


def _prepare(terraform: Terraform, work) -> None:
    write_json(work / "backend_override.tf.json", LOCAL_BACKEND)
    terraform.run(work, "init", "-input=false")


@pytest.mark.parametrize("part", ("state", "platform"))
@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_the_hcl_export_is_valid_and_the_same_graph(hcl_terraform, provider_schema, synthesized, tmp_path, env, part):
    name = f"twentycrm-{env}-{part}"
    json_dir = hcl_terraform.stack_copy(synthesized.outdir / "stacks" / name, tmp_path / "json")
    hcl_dir = _export(json_dir, provider_schema, tmp_path / "hcl")
    assert (hcl_dir / "main.tf").exists() and not (hcl_dir / "cdk.tf.json").exists()
    _prepare(hcl_terraform, hcl_dir)
    report = json.loads(hcl_terraform.run(hcl_dir, "validate", "-json", check=False).stdout)
    problems = [f"{d['severity']}: {d['summary']}: {d.get('detail', '')}" for d in report["diagnostics"]]
    assert report["valid"] and not problems, f"{name} (HCL):\n" + "\n".join(problems)
    if env == "dev":  # the other environments are the same code with other values; a graph costs ~5 s
        _prepare(hcl_terraform, json_dir)
        graphs = [sorted(hcl_terraform.run(d, "graph").stdout.splitlines()) for d in (json_dir, hcl_dir)]
        assert graphs[0] == graphs[1], f"{name}: the HCL's resources or dependencies differ from the JSON's"
    resources = synthesized.stack(name).json["resource"]
    hcl = (hcl_dir / "main.tf").read_text()
    assert all(f'resource "{kind}" "{address}"' in hcl for kind, items in resources.items() for address in items)


def test_validate_fails_a_broken_hcl_export(hcl_terraform, provider_schema, synthesized, tmp_path):
    """The same gate on an export whose policy template lost an escape: terraform refuses it."""
    hcl_dir = _export(synthesized.outdir / "stacks" / "twentycrm-dev-state", provider_schema, tmp_path / "bad")
    text = (hcl_dir / "main.tf").read_text()
    assert '\\"Version\\"' in text
    (hcl_dir / "main.tf").write_text(text.replace('\\"Version\\"', '"Version"', 1))
    write_json(hcl_dir / "backend_override.tf.json", LOCAL_BACKEND)
    result = hcl_terraform.run(hcl_dir, "init", "-input=false", check=False)
    assert result.returncode != 0 and "main.tf" in result.stderr, result.stdout + result.stderr
