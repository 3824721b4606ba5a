"""The architecture diagram in docs/architecture.md is generated from envs/ and kept fresh."""

from __future__ import annotations

import subprocess
import sys

from conftest import ROOT, copy_envs

sys.path.insert(0, str(ROOT / "scripts"))
import diagram  # noqa: E402

from modules.settings import load_all  # noqa: E402


def test_the_committed_diagram_matches_envs():
    """Fails when an environment file changed and `python scripts/diagram.py` was not run."""
    page = diagram.PAGE.read_text()
    fresh = diagram.replace_between_markers(page, diagram.render(load_all(ROOT / "envs")))
    assert fresh == page, "docs/architecture.md is stale: run `python scripts/diagram.py` and commit it"


def test_the_check_command_agrees():
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "diagram.py"), "--check"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_a_changed_environment_makes_the_diagram_stale(tmp_path):
    envs = copy_envs(tmp_path)
    path = envs / "qa.toml"
    path.write_text(path.read_text().replace('instance_type = "t3.large"', 'instance_type = "m6i.large"', 1))
    page = diagram.PAGE.read_text()
    assert diagram.replace_between_markers(page, diagram.render(load_all(envs))) != page


def test_one_subgraph_per_environment_with_ids_cidrs_and_sizes(settings):
    block = diagram.render(list(settings.values()))
    for env in settings.values():
        title = diagram.TITLES.get(env.name, env.name.upper())  # a new file: its name
        assert f'["{title} - {env.domain}"]' in block
        assert f"{env.network.vpc_id}: {env.name} VPC ({env.network.cidr}" in block
        for subnet in env.network.subnets:
            assert f"{subnet.id}: {subnet.name}<br/>{subnet.cidr}" in block
        c = env.cluster
        assert f"{c.frontend.instance_type} x{c.frontend.desired_size}" in block
        assert f"{env.database.id}: Database" in block and f"GP3 {env.database.volume_size_gb}GB" in block


def test_only_the_text_between_the_markers_changes():
    page = "# Title\n\nbefore\n" + diagram.BEGIN + "\nold\n" + diagram.END + "\nafter\n"
    out = diagram.replace_between_markers(page, "new\n")
    assert out == "# Title\n\nbefore\n" + diagram.BEGIN + "\nnew\n" + diagram.END + "\nafter\n"
