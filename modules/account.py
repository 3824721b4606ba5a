"""What exists once per AWS account, owned apart from every environment: the account stack.

``<project>-account-<id>`` holds the account's GitHub OIDC provider (unless the account has one already) and
its own state bucket, lock table and key, bootstrapped on a local backend like an environment's state stack.
Its state lives in none of the environments' buckets, so adding, changing or destroying an environment never
touches the provider every environment's CI roles trust. One stack per distinct ``account.id`` in ``envs/``.
"""

from __future__ import annotations

from collections.abc import Sequence

from cdktf import LocalBackend, S3Backend, TerraformOutput, TerraformStack
from cdktf_cdktf_provider_aws.iam_openid_connect_provider import IamOpenidConnectProvider
from cdktf_cdktf_provider_aws.provider import AwsProvider, AwsProviderDefaultTags
from constructs import Construct

from modules.deploy_role import AUDIENCE, GITHUB_OIDC_HOST, GITHUB_OIDC_URL
from modules.registry_scanning import RegistryScanning
from modules.log_delivery import LogDeliveryPolicies
from modules.settings import ACCOUNT_SCOPE, AccountSettings
from modules.state import STATE_COMPONENT, TerraformState

# AWS documents this value for GitHub; IAM trusts GitHub's certificate through its own CA store, the
# thumbprint is only required by the API.
GITHUB_THUMBPRINT = "6938fd4d98bab03faadb97b34396831e3780aea1"

# Where "create" puts the provider. With "existing", a `removed` block at this address makes Terraform forget a
# provider this stack created before the switch instead of destroying it (prevent_destroy leaves with the resource
# block); where the stack never held it, the block is a no-op.
OIDC_PROVIDER_ADDRESS = "aws_iam_openid_connect_provider.github-oidc"


def account_stack_name(project: str, account: AccountSettings) -> str:
    return f"{project}-account-{account.id}"


class AccountStack(TerraformStack):
    """``<project>-account-<id>``: exposes ``state`` (a TerraformState) and ``oidc_provider`` (None when the
    account's provider exists already). A person applies it, once per account, before any environment."""

    def __init__(self, scope: Construct, *, project: str, account: AccountSettings, regions: Sequence[str] = (),
                 route53_query_logs: bool = False) -> None:  # fmt: skip
        """``regions``: those of the account's environments; ``route53_query_logs``: whether any logs DNS queries."""
        name = account_stack_name(project, account)
        super().__init__(scope, name)
        # Environment = "account" (a name no environment file may take): the deploy roles' fences deny
        # every resource whose Environment tag is not their own environment's, so these are covered too.
        default_tags = {"Project": project, "Scope": ACCOUNT_SCOPE, "Environment": ACCOUNT_SCOPE, "ManagedBy": "cdktf"}
        AwsProvider(
            self,
            "aws",
            region=account.region,
            allowed_account_ids=[account.id],
            default_tags=[AwsProviderDefaultTags(tags=default_tags)],
        )
        key_alias = f"{project}-account-tfstate"
        if account.own_backend == "s3":
            S3Backend(
                self,
                bucket=account.state_bucket,
                key=f"{name}/terraform.tfstate",
                region=account.region,
                encrypt=True,
                kms_key_id=f"alias/{key_alias}",
                dynamodb_table=account.lock_table,
                allowed_account_ids=[account.id],
            )
        else:
            # Outside cdktf.out (relative to cdktf.out/stacks/<stack>/), so a re-synth never deletes it.
            LocalBackend(self, path=f"../../../terraform.{name}.tfstate")
        self.state = TerraformState(
            self,
            "state",
            bucket_name=account.state_bucket,
            lock_table_name=account.lock_table,
            key_alias=key_alias,
            description=f"Encrypts the Terraform state and locks of the account stack {name}",
            noncurrent_days=account.noncurrent_version_expiration_days,
            # the lock table of the stack that owns every environment's way in: lifted only to tear it down
            deletion_protection=account.deletion_protection,
            tags={"Component": f"{ACCOUNT_SCOPE}/{STATE_COMPONENT}"},
        )
        # Lifting protection also lets `terraform destroy` empty the bucket of its state versions (README, "Tear
        # down an account stack"); while protected, a bucket holding any state refuses to be deleted.
        self.state.bucket.force_destroy = not account.deletion_protection
        self.oidc_provider = None
        if account.github_oidc_provider == "create":
            self.oidc_provider = IamOpenidConnectProvider(
                self,
                "github-oidc",
                url=GITHUB_OIDC_URL,
                client_id_list=[AUDIENCE],
                thumbprint_list=[GITHUB_THUMBPRINT],
                tags={"Component": f"{ACCOUNT_SCOPE}/github-oidc", "Name": GITHUB_OIDC_HOST},
            )
        else:
            # cdktf 0.21 has no construct for a removed block (as the state stacks' FORMER_OIDC_PROVIDER_ADDRESS).
            self.add_override("removed", [{"from": OIDC_PROVIDER_ADDRESS, "lifecycle": [{"destroy": False}]}])
        if account.deletion_protection:
            # A destroy (or replacement) of what every environment of the account depends on is refused at plan,
            # before any change: table deletion protection alone fails only halfway, the provider gone already.
            for resource in (self.state.bucket, self.state.lock_table, self.state.key.key, self.oidc_provider):
                if resource is not None:
                    resource.add_override("lifecycle.prevent_destroy", True)
        self.registry_scanning = RegistryScanning(self, "registry-scanning")  # ECR: one per account and region
        self.log_delivery = LogDeliveryPolicies(
            self, "log-delivery", project=project, account_id=account.id, home_region=account.region,
            regions=regions, route53_query_logs=route53_query_logs, default_tags=default_tags,
        )  # fmt: skip
        TerraformOutput(self, "state_bucket", value=self.state.bucket.bucket)
        TerraformOutput(self, "lock_table", value=self.state.lock_table.name)
        TerraformOutput(self, "state_key_arn", value=self.state.key.arn)
        TerraformOutput(
            self,
            "github_oidc_provider_arn",
            value=self.oidc_provider.arn if self.oidc_provider else account.oidc_provider_arn(self.state.key.partition),
            description="Trusted by the CI roles of every environment in this account",
        )
