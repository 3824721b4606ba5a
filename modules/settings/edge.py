"""The ``[dns]`` and ``[load_balancer]`` sections: the zone, certificate and ALB in front of Twenty."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from modules.settings.fields import BucketName, ComponentId, DomainName, LogRetentionDays, _Model


class DnsSettings(_Model):
    """DNS-x01 (the Route53 zone) and DNS-x02 (the ACM certificate) of the document."""

    id: ComponentId = Field(description="The document's ID of the hosted zone, e.g. DNS-101.")
    certificate_id: ComponentId = Field(description="The document's ID of the certificate, e.g. DNS-102.")
    existing_zone: DomainName | None = Field(
        default=None,
        description="Use this existing public zone (the domain itself or a parent such as 'olhai.app.br') "
        "instead of creating a zone for the domain.",
    )
    extra_certificate_names: tuple[DomainName, ...] = Field(
        default=(),
        description="More names on the certificate (e.g. 'www.<domain>'); each gets an alias record to the ALB "
        "and must lie inside the zone.",
    )
    dnssec: bool = Field(
        default=True,
        description="Sign the zone with DNSSEC (a KMS key in us-east-1, as Route53 requires); the parent zone then "
        "needs the DS record of the output ds_record (docs/edge.md, DNSSEC). Only for a zone these stacks create.",
    )
    query_logging: bool = Field(
        default=True,
        description="Log every DNS query Route53 answers for the zone to the us-east-1 log group "
        "/aws/route53/<zone> (Route53 writes query logs only there). Only for a zone these stacks create.",
    )
    query_log_retention_days: LogRetentionDays = Field(
        default=365, description="Days the query logs are kept (a CloudWatch Logs retention value)."
    )


def dnssec_problems(dns: DnsSettings) -> list[str]:
    """Signing and query logging change the zone itself: refused on a zone someone else owns (existing_zone)."""
    return [
        f"dns.{field} = true needs a zone these stacks create, but dns.existing_zone '{dns.existing_zone}' is "
        f"someone else's: set dns.{field} = false (and {why} in that zone's own configuration), or remove "
        "dns.existing_zone"
        for field, why in (("dnssec", "sign it"), ("query_logging", "log its queries"))
        if dns.existing_zone and getattr(dns, field)
    ]


# ALB listener policies that allow TLS 1.2 and 1.3 only (AWS's recommended family, plus its stricter variants).
TlsPolicy = Literal[
    "ELBSecurityPolicy-TLS13-1-2-2021-06",
    "ELBSecurityPolicy-TLS13-1-2-Res-2021-06",
    "ELBSecurityPolicy-TLS13-1-3-2021-06",
]


class LoadBalancerSettings(_Model):
    """ALB-x01: the internet-facing Application Load Balancer in front of Twenty's server."""

    id: ComponentId = Field(description="The document's ID of the load balancer, e.g. ALB-101.")
    access_log_bucket: BucketName = Field(description="Globally unique S3 bucket name for the ALB access logs.")
    access_log_retention_days: int = Field(
        default=90, ge=1, le=3650, description="Days an access log object is kept before it expires."
    )
    deletion_protection: bool = Field(
        default=True,
        description="ALB deletion protection; also keeps the log bucket from being destroyed while it holds logs.",
    )
    idle_timeout_seconds: int = Field(
        default=60, ge=1, le=4000, description="Seconds an idle client connection stays open (Twenty's websockets)."
    )
    desync_mitigation_mode: Literal["defensive", "strictest"] = Field(
        default="defensive",
        description="HTTP desync protection; 'monitor' is not offered because it lets ambiguous requests through.",
    )
    ssl_policy: TlsPolicy = Field(
        default="ELBSecurityPolicy-TLS13-1-2-2021-06", description="HTTPS listener policy (TLS 1.2 and 1.3 only)."
    )
    target_port: int = Field(default=3000, ge=1, le=65535, description="Port Twenty's server listens on in its pods.")
    health_check_path: Annotated[str, Field(pattern=r"^/[A-Za-z0-9/_.-]*$")] = Field(
        default="/healthz", description="Path the target group probes on every pod."
    )
    deregistration_delay_seconds: int = Field(
        default=30, ge=0, le=3600, description="Seconds a pod keeps its in-flight requests when it leaves."
    )
