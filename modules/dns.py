"""The environment's public name: its Route53 hosted zone (DNS-x01) and ACM certificate (DNS-x02).

The certificate is DNS-validated through records written in that zone, and ``certificate_arn``
comes from the ``aws_acm_certificate_validation``, so whatever uses it (the HTTPS listener)
waits until ACM has actually issued the certificate.
"""

from __future__ import annotations

from cdktf import TerraformIterator, TerraformProvider, TerraformResourceLifecycle, Token
from cdktf_cdktf_provider_aws.acm_certificate import AcmCertificate, AcmCertificateOptions
from cdktf_cdktf_provider_aws.acm_certificate_validation import AcmCertificateValidation
from cdktf_cdktf_provider_aws.data_aws_route53_zone import DataAwsRoute53Zone
from cdktf_cdktf_provider_aws.route53_record import Route53Record
from cdktf_cdktf_provider_aws.route53_zone import Route53Zone
from constructs import Construct

from modules.dnssec import QueryLogging, ZoneSigning
from modules.settings import EnvironmentSettings


class Dns(Construct):
    """The zone (created, or an existing one looked up) and the validated certificate.

    Exposes ``zone_id``, ``zone_name``, ``name_servers`` and ``certificate_arn`` (the validated one);
    ``zone`` is the ``Route53Zone`` or ``DataAwsRoute53Zone`` behind them, ``certificate`` the
    ``AcmCertificate``. With ``dns.dnssec`` and ``dns.query_logging`` (a zone created here only), ``signing``
    (ZoneSigning) and ``query_logging`` (QueryLogging) are built through ``us_east_1``, else they are None.
    """

    def __init__(self, scope: Construct, construct_id: str, *, settings: EnvironmentSettings,
                 us_east_1: TerraformProvider | None = None) -> None:  # fmt: skip
        super().__init__(scope, construct_id)
        dns = settings.dns
        self.zone_name = settings.zone_name
        if dns.existing_zone:
            # Someone else owns the zone (e.g. the parent olhai.app.br): read it, never manage it.
            self.zone = DataAwsRoute53Zone(self, "zone", name=dns.existing_zone, private_zone=False)
        else:
            self.zone = Route53Zone(
                self,
                "zone",
                name=settings.domain,
                comment=f"Public name of Twenty CRM ({settings.name}); delegated from the parent zone",
                force_destroy=False,  # a zone with records someone added by hand must not vanish silently
                tags={"Name": settings.domain, "Component": settings.component(dns.id)},
            )
        self.zone_id = self.zone.zone_id
        self.name_servers = self.zone.name_servers
        self._us_east_1(settings, us_east_1)

        self.certificate = AcmCertificate(
            self,
            "certificate",
            domain_name=settings.domain,
            subject_alternative_names=list(dns.extra_certificate_names) or None,
            validation_method="DNS",  # renews itself as long as the validation records stay in the zone
            options=AcmCertificateOptions(certificate_transparency_logging_preference="ENABLED"),
            # A change of names replaces the certificate: issue the new one before the listener lets go of the old.
            lifecycle=TerraformResourceLifecycle(create_before_destroy=True),
            tags={"Name": settings.domain, "Component": settings.component(dns.certificate_id)},
        )
        # One CNAME per name, keyed by the name (known at plan time, unlike the record values).
        options = TerraformIterator.from_complex_list(self.certificate.domain_validation_options, "domain_name")
        records = Route53Record(
            self,
            "validation",
            for_each=options,
            zone_id=self.zone_id,
            name=options.get_string("resource_record_name"),
            type=options.get_string("resource_record_type"),
            records=[options.get_string("resource_record_value")],
            ttl=300,
            allow_overwrite=True,  # a re-created certificate gets the same record; take it over, do not fail
        )
        validation = AcmCertificateValidation(
            self,
            "certificate-validation",
            certificate_arn=self.certificate.arn,
            validation_record_fqdns=Token.as_list(TerraformIterator.from_resources(records).pluck_property("fqdn")),
        )
        self.certificate_arn = validation.certificate_arn

    def _us_east_1(self, settings: EnvironmentSettings, provider: TerraformProvider | None) -> None:
        """DNSSEC and query logging; the settings have refused both with an existing zone (dnssec_problems)."""
        dns = settings.dns
        self.signing = self.query_logging = None
        if (dns.dnssec or dns.query_logging) and provider is None:
            raise ValueError("dns.dnssec and dns.query_logging need the stack's us-east-1 provider (us_east_1)")
        tags = {"Component": settings.component(dns.id)}
        if dns.dnssec:
            self.signing = ZoneSigning(self, "dnssec", settings=settings, zone_id=self.zone_id, provider=provider,
                                       tags={**tags, "Name": f"{settings.zone_name} DNSSEC"})  # fmt: skip
        if dns.query_logging:
            self.query_logging = QueryLogging(self, "query-logging", settings=settings, zone_id=self.zone_id,
                                              provider=provider, tags=tags)  # fmt: skip
