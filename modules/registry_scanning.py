"""The account's ECR registry scanning configuration (account stack): one per registry, that is per account and
region, so no environment's stack may own it (two environments in one account would fight over it).

Every repository is scanned on push with BASIC scanning: free, it reports the CVEs of the image's operating-system
packages (ECR user guide, "Scan images for OS vulnerabilities in Amazon ECR") each time the pull-through cache
stores an image. ENHANCED (Amazon Inspector, continuous, language packages too) is billed per image and month;
an account can switch to it here. Findings: ``aws ecr describe-image-scan-findings`` (docs/images.md).
"""

from __future__ import annotations

from cdktf_cdktf_provider_aws.ecr_registry_scanning_configuration import (
    EcrRegistryScanningConfiguration,
    EcrRegistryScanningConfigurationRule,
    EcrRegistryScanningConfigurationRuleRepositoryFilter,
)
from constructs import Construct


class RegistryScanning(Construct):
    """Scan on push, every repository of the account's registry in the provider's region. Exposes ``configuration``."""

    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        self.configuration = EcrRegistryScanningConfiguration(
            self, "configuration", scan_type="BASIC",
            rule=[EcrRegistryScanningConfigurationRule(
                scan_frequency="SCAN_ON_PUSH",
                repository_filter=[EcrRegistryScanningConfigurationRuleRepositoryFilter(
                    filter="*", filter_type="WILDCARD")],
            )],
        )  # fmt: skip
