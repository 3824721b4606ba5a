"""Constructs and settings of the TwentyCRM infrastructure generator.

Importing any prebuilt provider submodule (``cdktf_cdktf_provider_aws.vpc``) first runs the
package's ``__init__``, which imports every one of its ~1,500 submodules: about 7 of the 10
seconds the provider costs (measured with ``python -X importtime``; see README, "Speed").
We register each provider package without running that ``__init__``, so only the submodules
the constructs name are loaded. Each submodule imports its ``_jsii`` assembly itself, so
nothing else changes; ``tests/test_speed.py`` checks the saving stays real.
"""

from __future__ import annotations

import importlib.util
import sys

from modules.jsii_node import use_project_node

PROVIDER_PACKAGES = ("cdktf_cdktf_provider_aws", "cdktf_cdktf_provider_kubernetes", "cdktf_cdktf_provider_helm")


def _register_without_init(package: str) -> None:
    if package in sys.modules:
        return
    spec = importlib.util.find_spec(package)
    if spec is not None:  # when absent, the import that needs it fails with the usual error
        sys.modules[package] = importlib.util.module_from_spec(spec)


for _package in PROVIDER_PACKAGES:
    _register_without_init(_package)

# Before any cdktf import starts jsii: run it on the project's Node 22 (modules/jsii_node.py).
use_project_node()
