"""ALB-x01: the internet-facing Application Load Balancer in front of Twenty's server.

Path built here (docs/network.md explains the choice): internet --80/443--> ALB security group
--target port--> node security group, where the pods of Twenty's server answer on their own VPC
addresses. The target group has ``ip`` targets and no members: the AWS Load Balancer Controller
(apps stack) registers the pods through a TargetGroupBinding on ``target_group_arn``.

Access logs go to a bucket encrypted with SSE-S3: ALB log delivery supports no other server-side
encryption (SSE-KMS buckets silently receive nothing).
"""

from __future__ import annotations

from collections.abc import Sequence

from cdktf import TerraformResourceLifecycle
from cdktf_cdktf_provider_aws.data_aws_caller_identity import DataAwsCallerIdentity
from cdktf_cdktf_provider_aws.data_aws_partition import DataAwsPartition
from cdktf_cdktf_provider_aws.lb import Lb, LbAccessLogs
from cdktf_cdktf_provider_aws.lb_listener import (
    LbListener,
    LbListenerDefaultAction,
    LbListenerDefaultActionRedirect,
)
from cdktf_cdktf_provider_aws.lb_target_group import LbTargetGroup, LbTargetGroupHealthCheck
from cdktf_cdktf_provider_aws.route53_record import Route53Record, Route53RecordAlias
from cdktf_cdktf_provider_aws.s3_bucket import S3Bucket
from cdktf_cdktf_provider_aws.security_group import SecurityGroup
from cdktf_cdktf_provider_aws.vpc_security_group_ingress_rule import VpcSecurityGroupIngressRule
from constructs import Construct

from modules.node_security_group import allow_tcp
from modules.private_bucket import private_bucket
from modules.settings import EnvironmentSettings

# Regions opened before August 2022 deliver ALB logs from a regional ELB account (AWS "Enable access
# logs", step 2); newer regions use the log-delivery service principal instead. sa-east-1 is an old
# region: its account is 507241528517. Add a row here before deploying to another old region.
ELB_LOG_ACCOUNTS = {"sa-east-1": "507241528517"}
ELB_LOG_SERVICE = "logdelivery.elasticloadbalancing.amazonaws.com"
LOG_PREFIX = "alb"


class LoadBalancer(Construct):
    """The ALB, its listeners, the target group of Twenty's server, security groups, logs and alias records.

    Exposes ``alb``, ``security_group``, ``target_group`` (and ``target_group_arn``) and ``log_bucket``.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: EnvironmentSettings,
        vpc_id: str,
        public_subnet_ids: Sequence[str],
        node_security_group_id: str,
        certificate_arn: str,
        zone_id: str,
    ) -> None:
        super().__init__(scope, construct_id)
        lb = settings.load_balancer
        self._settings = settings
        self._component = settings.component(lb.id)
        name = f"{settings.project}-{settings.name}"  # <= 32 characters, checked by the settings

        self.log_bucket = self._log_bucket()
        self.security_group = self._security_groups(
            name=name, vpc_id=vpc_id, node_security_group_id=node_security_group_id
        )

        self.alb = Lb(
            self,
            "alb",
            name=name,
            load_balancer_type="application",
            internal=False,
            subnets=list(public_subnet_ids),
            security_groups=[self.security_group.id],
            ip_address_type="ipv4",  # the VPC has no IPv6 range yet, hence A records only (no AAAA)
            drop_invalid_header_fields=True,  # header names with invalid characters never reach Twenty
            desync_mitigation_mode=lb.desync_mitigation_mode,
            idle_timeout=lb.idle_timeout_seconds,
            enable_deletion_protection=lb.deletion_protection,
            enable_http2=True,
            xff_header_processing_mode="append",  # Twenty sees the client address in X-Forwarded-For
            access_logs=LbAccessLogs(bucket=self.log_bucket.id, prefix=LOG_PREFIX, enabled=True),
            tags=self._tags(name),
            # ELB checks it may write to the bucket when logging is switched on.
            depends_on=[self._log_bucket_policy],
        )

        self.target_group = LbTargetGroup(
            self,
            "server",
            name=f"{name}-server",
            vpc_id=vpc_id,
            target_type="ip",  # pod IPs, registered by the controller's TargetGroupBinding
            port=lb.target_port,
            protocol="HTTP",  # TLS ends at the ALB; the hop to the pod stays inside the VPC
            protocol_version="HTTP1",
            deregistration_delay=str(lb.deregistration_delay_seconds),
            health_check=LbTargetGroupHealthCheck(
                enabled=True,
                protocol="HTTP",
                port="traffic-port",
                path=lb.health_check_path,
                matcher="200",
                interval=15,
                timeout=5,
                healthy_threshold=2,
                unhealthy_threshold=3,
            ),
            tags=self._tags(f"{name}-server"),
        )
        self.target_group_arn = self.target_group.arn

        self.https_listener = LbListener(
            self,
            "https",
            load_balancer_arn=self.alb.arn,
            port=443,
            protocol="HTTPS",
            ssl_policy=lb.ssl_policy,
            certificate_arn=certificate_arn,  # the validated ARN: the listener waits for issuance
            default_action=[LbListenerDefaultAction(type="forward", target_group_arn=self.target_group.arn)],
            tags=self._tags(f"{name}-https"),
        )
        LbListener(
            self,
            "http",
            load_balancer_arn=self.alb.arn,
            port=80,
            protocol="HTTP",
            # Port 80 exists only to send browsers to HTTPS; nothing is served in clear text.
            default_action=[
                LbListenerDefaultAction(
                    type="redirect",
                    redirect=LbListenerDefaultActionRedirect(port="443", protocol="HTTPS", status_code="HTTP_301"),
                )
            ],
            tags=self._tags(f"{name}-http"),
        )

        for record_name in settings.certificate_names:
            Route53Record(
                self,
                "alias" if record_name == settings.domain else f"alias-{record_name.replace('.', '-')}",
                zone_id=zone_id,
                name=record_name,
                type="A",
                alias=Route53RecordAlias(name=self.alb.dns_name, zone_id=self.alb.zone_id, evaluate_target_health=True),
            )

    def _tags(self, name: str) -> dict[str, str]:
        return {"Name": name, "Component": self._component}

    def _security_groups(self, *, name: str, vpc_id: str, node_security_group_id: str) -> SecurityGroup:
        port = self._settings.load_balancer.target_port
        sg = SecurityGroup(
            self,
            "sg",
            name_prefix=f"{name}-alb-",  # a prefix, so a replacement can exist next to the old one
            description=f"ALB of Twenty CRM ({self._settings.name}): HTTP/HTTPS in, Twenty's pods out",
            vpc_id=vpc_id,
            tags=self._tags(f"{name}-alb"),
            lifecycle=TerraformResourceLifecycle(create_before_destroy=True),
        )
        # The internet reaches the ALB on 80 (redirect only) and 443; nothing else is open.
        for listener_port, what in ((443, "HTTPS"), (80, "HTTP, redirected to HTTPS")):
            VpcSecurityGroupIngressRule(
                self,
                f"ingress-{listener_port}",
                security_group_id=sg.id,
                cidr_ipv4="0.0.0.0/0",
                ip_protocol="tcp",
                from_port=listener_port,
                to_port=listener_port,
                description=f"{what} from the internet",
                tags=self._tags(f"{name}-alb-{listener_port}"),
            )
        # The ALB talks only to the nodes' security group, on the port Twenty's pods listen on
        # (requests and health checks alike); with the VPC CNI a pod's IP sits on a node ENI.
        allow_tcp(
            self,
            port=port,
            source_security_group_id=sg.id,
            target_security_group_id=node_security_group_id,
            egress=(
                "egress-to-nodes",
                f"To Twenty's server pods on {port} (requests and health checks)",
                self._tags(f"{name}-alb-to-nodes"),
            ),
            ingress=(
                "nodes-from-alb",
                f"From the ALB to Twenty's server pods on {port}",
                self._tags(f"{name}-nodes-from-alb"),
            ),
        )
        return sg

    def _log_bucket(self) -> S3Bucket:
        lb = self._settings.load_balancer
        tags = self._tags(lb.access_log_bucket)
        account_id = DataAwsCallerIdentity(self, "account").account_id
        partition = DataAwsPartition(self, "partition").partition
        region = self._settings.region
        writer = (
            {"AWS": f"arn:{partition}:iam::{ELB_LOG_ACCOUNTS[region]}:root"}
            if region in ELB_LOG_ACCOUNTS
            else {"Service": ELB_LOG_SERVICE}
        )
        logs = private_bucket(
            self,
            "logs",
            bucket_name=lb.access_log_bucket,
            tags=tags,
            kms_key_arn=None,  # SSE-S3, not KMS: the only server-side encryption ALB log delivery supports
            lifecycle_rule_id="expire-old-logs",
            expire_after_days=lb.access_log_retention_days,
            noncurrent_days=1,
            # Where the ALB is protected (prod), so are its logs; elsewhere the stack can be torn down.
            force_destroy=not lb.deletion_protection,
            access_log_bucket=self._settings.state.access_log_bucket,
            statements=lambda bucket: [
                {
                    "Sid": "ElbWritesAccessLogs",
                    "Effect": "Allow",
                    "Principal": writer,
                    "Action": "s3:PutObject",
                    "Resource": f"{bucket.arn}/{LOG_PREFIX}/AWSLogs/{account_id}/*",
                }
            ],
        )
        self._log_bucket_policy = logs.policy
        return logs.bucket

