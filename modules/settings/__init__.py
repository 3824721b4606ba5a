"""The model of one environment file (``envs/<env>.toml``), its loader and the cross-file checks.

Everything here is plain Python and pydantic: no cdktf import, so a bad file is reported in
well under a second, before the (slow) provider packages are loaded and before anything is
written to ``cdktf.out``. One module per section of the file; ``environment`` ties them together.
"""

from modules.settings.account import ACCOUNT_SCOPE, AccountSettings
from modules.settings.apps import AppsSettings
from modules.settings.cluster import (
    DEFAULT_KUBERNETES_VERSION,
    KUBERNETES_VERSIONS,
    ClusterSettings,
    NodeGroupSettings,
)
from modules.settings.database import POSTGRES_VERSIONS, DatabaseSettings, instance_memory_gib
from modules.settings.edge import DnsSettings, LoadBalancerSettings
from modules.settings.environment import EnvironmentSettings, check_across, load_all, load_environment
from modules.settings.fields import SettingsError
from modules.settings.network import NetworkSettings, StateSettings, SubnetSettings
from modules.settings.operations import AlarmThresholds, CiSettings, MonitoringSettings
from modules.settings.waf import WafSettings

__all__ = [
    "ACCOUNT_SCOPE",
    "DEFAULT_KUBERNETES_VERSION",
    "KUBERNETES_VERSIONS",
    "POSTGRES_VERSIONS",
    "AccountSettings",
    "AlarmThresholds",
    "AppsSettings",
    "CiSettings",
    "ClusterSettings",
    "DatabaseSettings",
    "DnsSettings",
    "EnvironmentSettings",
    "LoadBalancerSettings",
    "MonitoringSettings",
    "NetworkSettings",
    "NodeGroupSettings",
    "SettingsError",
    "StateSettings",
    "SubnetSettings",
    "WafSettings",
    "check_across",
    "instance_memory_gib",
    "load_all",
    "load_environment",
]
