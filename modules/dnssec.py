"""DNSSEC signing and query logging of the environment's hosted zone, in us-east-1 as Route53 requires.

Route53 signs a public zone only with a key-signing key (KSK) backed by an asymmetric KMS key (ECC_NIST_P256,
SIGN_VERIFY) in us-east-1, and writes query logs only to a CloudWatch Logs group in us-east-1 (Route53 developer
guide, "Working with customer managed keys for DNSSEC" and "Public DNS query logging"). Both are built through the
platform stack's ``us_east_1`` provider. The resource policy that lets Route53 write to ``/aws/route53/*`` is
account-wide, so the account stack owns it (modules/log_delivery.py); it must exist before the query log config.
"""

from __future__ import annotations

import json

from cdktf import TerraformProvider
from cdktf_cdktf_provider_aws.data_aws_caller_identity import DataAwsCallerIdentity
from cdktf_cdktf_provider_aws.data_aws_partition import DataAwsPartition
from cdktf_cdktf_provider_aws.kms_alias import KmsAlias
from cdktf_cdktf_provider_aws.kms_key import KmsKey
from cdktf_cdktf_provider_aws.route53_hosted_zone_dnssec import Route53HostedZoneDnssec
from cdktf_cdktf_provider_aws.route53_key_signing_key import Route53KeySigningKey
from cdktf_cdktf_provider_aws.route53_query_log import Route53QueryLog
from constructs import Construct

from modules.kms import encrypted_log_group
from modules.settings import EnvironmentSettings

# Route53 keeps DNSSEC keys and query logs in this region only, whatever the environment's region.
ROUTE53_REGION = "us-east-1"
DNSSEC_SERVICE = "dnssec-route53.amazonaws.com"


def query_log_group_name(zone_name: str) -> str:
    """Route53's documented name for a zone's query log group (its resource policy covers /aws/route53/*)."""
    return f"/aws/route53/{zone_name}"


def signing_key_policy(*, partition: str, account_id: str) -> dict:
    """The key policy AWS documents for a DNSSEC KSK's key: Route53's DNSSEC service may describe it, read its
    public key and sign, and grant itself that use, only for hosted zones of this account."""
    source = {
        "StringEquals": {"aws:SourceAccount": account_id},
        "ArnLike": {"aws:SourceArn": f"arn:{partition}:route53:::hostedzone/*"},
    }
    return {"Version": "2012-10-17", "Statement": [
        {"Sid": "AccountAdministersKey", "Effect": "Allow",
         "Principal": {"AWS": f"arn:{partition}:iam::{account_id}:root"}, "Action": "kms:*", "Resource": "*"},
        {"Sid": "Route53DnssecUsesKey", "Effect": "Allow", "Principal": {"Service": DNSSEC_SERVICE},
         "Action": ["kms:DescribeKey", "kms:GetPublicKey", "kms:Sign"], "Resource": "*", "Condition": source},
        {"Sid": "Route53DnssecGrantsItself", "Effect": "Allow", "Principal": {"Service": DNSSEC_SERVICE},
         "Action": "kms:CreateGrant", "Resource": "*",
         "Condition": {"Bool": {"kms:GrantIsForAWSResource": "true"}, **source}},
    ]}  # fmt: skip


class ZoneSigning(Construct):
    """The zone's KSK on its own asymmetric key in us-east-1, and DNSSEC signing turned on once the KSK is active.

    Exposes ``key`` (the KmsKey), ``key_signing_key`` and ``dnssec``. The KSK's ``ds_record`` is what the parent
    zone publishes (docs/edge.md, "DNSSEC and query logging")."""

    def __init__(self, scope: Construct, construct_id: str, *, settings: EnvironmentSettings, zone_id: str,
                 provider: TerraformProvider, tags: dict[str, str]) -> None:  # fmt: skip
        super().__init__(scope, construct_id)
        account_id = DataAwsCallerIdentity(self, "account", provider=provider).account_id
        partition = DataAwsPartition(self, "partition", provider=provider).partition
        self.key = KmsKey(
            self,
            "key",
            description=f"Signs the DNSSEC key-signing key of {settings.zone_name} ({settings.name})",
            customer_master_key_spec="ECC_NIST_P256",
            key_usage="SIGN_VERIFY",
            # KMS rotates symmetric keys only; a KSK is rolled by a new KSK on a new key (docs/edge.md)
            enable_key_rotation=False,
            deletion_window_in_days=30,
            policy=json.dumps(signing_key_policy(partition=partition, account_id=account_id)),
            tags=tags,
            provider=provider,
        )
        KmsAlias(self, "alias", name=f"alias/{settings.stack_name('dnssec')}", target_key_id=self.key.key_id,
                 provider=provider)  # fmt: skip
        self.key_signing_key = Route53KeySigningKey(
            self,
            "key-signing-key",
            # Route53 allows letters, digits and underscores only (3-128)
            name=f"{settings.project}_{settings.name}_ksk".replace("-", "_"),
            hosted_zone_id=zone_id,
            key_management_service_arn=self.key.arn,
            status="ACTIVE",
        )
        self.dnssec = Route53HostedZoneDnssec(
            self,
            "signing",
            hosted_zone_id=self.key_signing_key.hosted_zone_id,
            signing_status="SIGNING",
            depends_on=[self.key_signing_key],  # Route53 signs only with an active KSK
        )


class QueryLogging(Construct):
    """Every query Route53 answers for the zone, to ``/aws/route53/<zone>`` in us-east-1, encrypted by its own key.

    Exposes ``log_group``, ``key`` (EncryptionKey) and ``query_log``."""

    def __init__(self, scope: Construct, construct_id: str, *, settings: EnvironmentSettings, zone_id: str,
                 provider: TerraformProvider, tags: dict[str, str]) -> None:  # fmt: skip
        super().__init__(scope, construct_id)
        self.log_group, self.key = encrypted_log_group(
            self,
            "log-group",
            log_group_name=query_log_group_name(settings.zone_name),
            retention_days=settings.dns.query_log_retention_days,
            alias=settings.stack_name("route53-query-logs"),
            description=f"Encrypts the Route53 query logs of {settings.zone_name} ({settings.name})",
            region=ROUTE53_REGION,
            tags=tags,
            provider=provider,
        )
        # Needs the account stack's resource policy for /aws/route53/* (modules/log_delivery.py), applied first:
        # without it Route53 refuses the config (InsufficientCloudWatchLogsResourcePolicy).
        self.query_log = Route53QueryLog(
            self, "query-log", zone_id=zone_id, cloudwatch_log_group_arn=self.log_group.arn
        )  # fmt: skip
