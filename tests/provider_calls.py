"""The AWS calls the provider makes to create what moto cannot emulate, so IAM can judge them anyway.

moto records nothing for a resource it cannot create (``NOT_EMULATED`` in ``test_platform_apply``)
nor for what depends on one. For each such resource type this table lists the calls that
hashicorp/terraform-provider-aws v5.100.0's create function makes (its file is cited; read through
the search tools), as IAM requests: the action, the resource ARN built from the planned values
(the first plan, its references to applied resources (a role's ARN, a cluster's name) read
from the applied state), the request's tags, and ``iam:PassRole`` wherever a role is
handed to a service. Reads the waiters make (Describe*, Get*, List*) are listed too: the deploy
role needs them as much as the writes.

A left-out resource of a type with no row fails the test: the table must grow with the stack.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

PROVIDER_SOURCE = "hashicorp/terraform-provider-aws v5.100.0"


@dataclass(frozen=True)
class Planned:
    """What the requests are built from: one left-out resource's planned values and the applied state."""

    address: str
    values: dict
    region: str
    account: str
    # applied resources: instance profile name → role name; resource type → [attributes]
    profile_roles: dict[str, str]
    # role name → its permissions boundary (planned or applied): iam:PermissionsBoundary of calls naming the role
    role_boundaries: dict[str, str] = field(default_factory=dict)
    # ARN of an applied resource → its attributes (tags_all, a KMS key's policy: e.g. a KSK's key)
    applied_by_arn: dict[str, dict] = field(default_factory=dict)

    def arn(self, service: str, resource: str) -> str:
        return f"arn:aws:{service}:{self.region}:{self.account}:{resource}"

    def get(self, name: str) -> str:
        """A planned value, or ``*`` while it is unknown (it names a resource that is not applied either)."""
        return self.values.get(name) or "*"

    def tags(self) -> dict[str, str]:
        return {k: str(v) for k, v in (self.values.get("tags_all") or self.values.get("tags") or {}).items()}


def _request(planned: Planned, action: str, resource: str = "*", *, tags: dict | None = None,
             resource_tags: dict | None = None, extra: dict | None = None) -> dict:  # fmt: skip
    # IAM and Route53 are global: their requests are signed for us-east-1
    region = "us-east-1" if action.startswith(("iam:", "route53:")) else planned.region
    context: dict[str, object] = {"aws:RequestedRegion": region, "aws:SecureTransport": "true"}
    if tags:
        context.update({f"aws:RequestTag/{k}": v for k, v in tags.items()})
        context["aws:TagKeys"] = sorted(tags)
    if resource_tags:
        context.update({f"aws:ResourceTag/{k}": v for k, v in resource_tags.items()})
    context.update(extra or {})
    return {"action": action, "resource": resource, "context": context,
            "call": f"{planned.address}: {action} (provider's create, not emulated by moto)"}  # fmt: skip


def _pass_role(planned: Planned, role_arn: str | None, service: str) -> list[dict]:
    if not role_arn:
        return []
    # iam:PassedToService narrows a PassRole grant to the service the role is handed to
    return [_request(planned, "iam:PassRole", role_arn, extra={"iam:PassedToService": service})]


def _role_arn(planned: Planned, name: str) -> str:
    return f"arn:aws:iam::{planned.account}:role/{name}"


def instance(p: Planned) -> list[dict]:
    """internal/service/ec2/ec2_instance.go: resourceInstanceCreate builds RunInstances (instance and volume
    TagSpecifications, IamInstanceProfile by name, Monitoring, MetadataOptions, MaintenanceOptions), waits
    with DescribeInstances, then returns resourceInstanceUpdate, whose ``d.HasChange("monitoring")`` (true for
    a new resource) calls MonitorInstances; the read calls DescribeInstanceAttribute (disableApiTermination,
    instanceInitiatedShutdownBehavior, userData), DescribeVolumes and DescribeTags."""
    tags = p.tags()
    instance_arn = p.arn("ec2", "instance/*")
    profile = p.values.get("iam_instance_profile")
    role = p.profile_roles.get(profile or "")
    assert not profile or role, f"{p.address}: instance profile {profile} is not in the applied state"
    return [
        _request(p, "ec2:RunInstances", instance_arn, tags=tags),
        # tag-on-create: RunInstances with TagSpecifications is also authorized as ec2:CreateTags
        _request(p, "ec2:CreateTags", instance_arn, tags=tags, extra={"ec2:CreateAction": "RunInstances"}),
        _request(p, "ec2:CreateTags", p.arn("ec2", "volume/*"), tags=tags, extra={"ec2:CreateAction": "RunInstances"}),
        *_pass_role(p, role and _role_arn(p, role), "ec2.amazonaws.com"),
        _request(p, "ec2:DescribeInstances"),
        _request(p, "ec2:MonitorInstances", instance_arn, resource_tags=tags),
        _request(p, "ec2:DescribeInstanceAttribute", instance_arn, resource_tags=tags),
        _request(p, "ec2:DescribeVolumes"),
        _request(p, "ec2:DescribeTags"),
    ]


def dlm_policy(p: Planned) -> list[dict]:
    """internal/service/dlm/lifecycle_policy.go: resourceLifecyclePolicyCreate calls CreateLifecyclePolicy
    (ExecutionRoleArn, Tags) and the read GetLifecyclePolicy."""
    return [
        _request(p, "dlm:CreateLifecyclePolicy", tags=p.tags()),  # IAM knows no resource for it
        *_pass_role(p, p.values.get("execution_role_arn"), "dlm.amazonaws.com"),
        _request(p, "dlm:GetLifecyclePolicy", p.arn("dlm", "policy/*"), resource_tags=p.tags()),
    ]


def eks_addon(p: Planned) -> list[dict]:
    """internal/service/eks/addon.go: resourceAddonCreate calls CreateAddon (addonName, addonVersion,
    configurationValues, podIdentityAssociations, resolveConflicts, tags), waits with DescribeAddon; a pod
    identity association hands its role to EKS (iam:PassRole, as CreatePodIdentityAssociation needs)."""
    cluster = p.get("cluster_name")
    requests = [
        _request(p, "eks:CreateAddon", p.arn("eks", f"cluster/{cluster}"), tags=p.tags()),
        _request(p, "eks:DescribeAddon", p.arn("eks", f"addon/{cluster}/{p.get('addon_name')}/*"),
                 resource_tags=p.tags()),  # fmt: skip
    ]
    for association in p.values.get("pod_identity_association") or []:
        requests += _pass_role(p, association.get("role_arn"), "pods.eks.amazonaws.com")
    return requests


def eks_access_entry(p: Planned) -> list[dict]:
    """internal/service/eks/access_entry.go: resourceAccessEntryCreate calls CreateAccessEntry (principalArn,
    type, tags) and the read DescribeAccessEntry."""
    cluster, principal = p.get("cluster_name"), p.get("principal_arn")
    role = principal.rsplit("/", 1)[-1]
    return [
        _request(p, "eks:CreateAccessEntry", p.arn("eks", f"cluster/{cluster}"), tags=p.tags()),
        _request(p, "eks:DescribeAccessEntry", p.arn("eks", f"access-entry/{cluster}/role/{p.account}/{role}/*"),
                 resource_tags=p.tags()),  # fmt: skip
    ]


def eks_access_policy_association(p: Planned) -> list[dict]:
    """internal/service/eks/access_policy_association.go: resourceAccessPolicyAssociationCreate calls
    AssociateAccessPolicy (accessScope, policyArn, principalArn), then ListAssociatedAccessPolicies to read."""
    cluster, principal = p.get("cluster_name"), p.get("principal_arn")
    entry = p.arn("eks", f"access-entry/{cluster}/role/{p.account}/{principal.rsplit('/', 1)[-1]}/*")
    return [
        _request(p, "eks:AssociateAccessPolicy", entry),
        _request(p, "eks:ListAssociatedAccessPolicies", entry),
    ]


def codeconnections_connection(p: Planned) -> list[dict]:
    """internal/service/codeconnections/connection.go: the framework resource's Create calls CreateConnection
    (ConnectionName, ProviderType, Tags) and reads it back with GetConnection."""
    connection = p.arn("codeconnections", "connection/*")
    return [
        _request(p, "codeconnections:CreateConnection", tags=p.tags()),  # no resource type in IAM
        _request(p, "codeconnections:GetConnection", connection, resource_tags=p.tags()),
        _request(p, "codeconnections:ListTagsForResource", connection, resource_tags=p.tags()),
    ]


def codebuild_project(p: Planned) -> list[dict]:
    """internal/service/codebuild/project.go: resourceProjectCreate calls CreateProject (serviceRole,
    encryptionKey, source.auth naming the connection, tags) and the read BatchGetProjects. CodeBuild takes the
    service role (iam:PassRole) and, for a CodeConnections source, the connection (codeconnections:UseConnection,
    codeconnections:GetConnectionToken: AWS CodeBuild user guide, "Access to CodeConnections")."""
    project = p.arn("codebuild", f"project/{p.get('name')}")
    requests = [
        _request(p, "codebuild:CreateProject", project, tags=p.tags()),
        *_pass_role(p, p.values.get("service_role"), "codebuild.amazonaws.com"),
        _request(p, "codebuild:BatchGetProjects", project, resource_tags=p.tags()),
    ]
    for source in p.values.get("source") or []:
        for auth in source.get("auth") or []:
            connection = auth.get("resource") or p.arn("codeconnections", "connection/*")
            requests += [_request(p, "codeconnections:UseConnection", connection),
                         _request(p, "codeconnections:GetConnectionToken", connection)]  # fmt: skip
    return requests


def codebuild_webhook(p: Planned) -> list[dict]:
    """internal/service/codebuild/webhook.go: resourceWebhookCreate calls CreateWebhook (projectName, buildType,
    filterGroups), and the read BatchGetProjects (the webhook is a property of the project)."""
    project = p.arn("codebuild", f"project/{p.values.get('project_name') or '*'}")  # unknown: the project is left out
    return [
        _request(p, "codebuild:CreateWebhook", project),
        _request(p, "codebuild:BatchGetProjects", project),
    ]


def volume_attachment(p: Planned) -> list[dict]:
    """internal/service/ec2/ebs_volume_attachment.go: resourceVolumeAttachmentCreate calls AttachVolume
    (Device, InstanceId, VolumeId) after DescribeVolumes/DescribeInstances, and waits with DescribeVolumes.
    AttachVolume is authorized on both the instance and the volume; both carry the environment's tags."""
    return [
        _request(p, "ec2:DescribeInstances"),
        _request(p, "ec2:DescribeVolumes"),
        _request(p, "ec2:AttachVolume", p.arn("ec2", "instance/*")),
        _request(p, "ec2:AttachVolume", p.arn("ec2", "volume/*")),
    ]


def metric_alarm(p: Planned) -> list[dict]:
    """internal/service/cloudwatch/metric_alarm.go: resourceMetricAlarmCreate calls PutMetricAlarm (Tags),
    then DescribeAlarms and ListTagsForResource to read."""
    alarm = p.arn("cloudwatch", f"alarm:{p.get('alarm_name')}")
    return [
        _request(p, "cloudwatch:PutMetricAlarm", alarm, tags=p.tags()),
        _request(p, "cloudwatch:DescribeAlarms", alarm),
        _request(p, "cloudwatch:ListTagsForResource", alarm),
    ]


def eks_node_group(p: Planned) -> list[dict]:
    """internal/service/eks/node_group.go: resourceNodeGroupCreate calls CreateNodegroup (NodeRole, Subnets,
    LaunchTemplate id and version, ScalingConfig, Tags) and waits with DescribeNodegroup. EKS takes the node
    role (iam:PassRole); the launch template it names is applied (its own calls are recorded)."""
    cluster, name = p.get("cluster_name"), p.values.get("node_group_name") or "*"
    return [
        _request(p, "eks:CreateNodegroup", p.arn("eks", f"cluster/{cluster}"), tags=p.tags()),
        *_pass_role(p, p.values.get("node_role_arn"), "eks.amazonaws.com"),
        _request(p, "eks:DescribeNodegroup", p.arn("eks", f"nodegroup/{cluster}/{name}/*"), resource_tags=p.tags()),
        _request(p, "ec2:DescribeLaunchTemplateVersions"),
    ]


def dashboard(p: Planned) -> list[dict]:
    """internal/service/cloudwatch/dashboard.go: resourceDashboardPut calls PutDashboard, then GetDashboard."""
    board = f"arn:aws:cloudwatch::{p.account}:dashboard/{p.get('dashboard_name')}"
    return [_request(p, "cloudwatch:PutDashboard", board), _request(p, "cloudwatch:GetDashboard", board)]


def role_policy(p: Planned) -> list[dict]:
    """internal/service/iam/role_policy.go: resourceRolePolicyPut calls PutRolePolicy, then GetRolePolicy."""
    role = _role_arn(p, p.get("role"))
    boundary = p.role_boundaries.get(p.get("role"))
    extra = {"iam:PermissionsBoundary": boundary} if boundary else None
    return [_request(p, "iam:PutRolePolicy", role, extra=extra), _request(p, "iam:GetRolePolicy", role, extra=extra)]


def ecr_pull_through_cache_rule(p: Planned) -> list[dict]:
    """internal/service/ecr/pull_through_cache_rule.go: resourcePullThroughCacheRuleCreate calls
    CreatePullThroughCacheRule (EcrRepositoryPrefix, UpstreamRegistryUrl, CredentialArn) and reads it back with
    DescribePullThroughCacheRules. IAM knows no resource type for either (Service Authorization Reference, ECR)."""
    return [_request(p, "ecr:CreatePullThroughCacheRule"), _request(p, "ecr:DescribePullThroughCacheRules")]


def ecr_repository_creation_template(p: Planned) -> list[dict]:
    """internal/service/ecr/repository_creation_template.go: resourceRepositoryCreationTemplateCreate calls
    CreateRepositoryCreationTemplate (Prefix, AppliedFor, CustomRoleArn, EncryptionConfiguration, ResourceTags,
    LifecyclePolicy) and reads it back with DescribeRepositoryCreationTemplates; ECR takes the custom role
    (iam:PassRole, ECR user guide, "Creating a repository creation template")."""
    return [
        _request(p, "ecr:CreateRepositoryCreationTemplate"),
        *_pass_role(p, p.values.get("custom_role_arn"), "ecr.amazonaws.com"),
        _request(p, "ecr:DescribeRepositoryCreationTemplates"),
    ]


def _zone(p: Planned, attribute: str) -> str:
    return f"arn:aws:route53:::hostedzone/{p.get(attribute)}"


def key_signing_key(p: Planned) -> list[dict]:
    """internal/service/route53/key_signing_key.go: resourceKeySigningKeyCreate calls CreateKeySigningKey
    (CallerReference, HostedZoneId, KeyManagementServiceArn, Name, Status), waits on the change with GetChange,
    and reads with GetDNSSEC. Route53 uses the KMS key in us-east-1 for the caller (DescribeKey, GetPublicKey, Sign,
    CreateGrant: Route53 developer guide, "Working with customer managed keys for DNSSEC"): judged on the key as
    the caller's, in us-east-1, with the key's applied tags and its key policy (which must allow too)."""
    key = p.get("key_management_service_arn")
    applied = p.applied_by_arn.get(key, {})
    assert applied.get("policy"), f"{p.address}: its KMS key {key} is not in the applied state"
    us_east_1 = {"aws:RequestedRegion": "us-east-1"}
    return [
        _request(p, "route53:CreateKeySigningKey", _zone(p, "hosted_zone_id")),
        *({**_request(p, action, key, resource_tags=applied.get("tags_all") or {}, extra=us_east_1),
           "resourcePolicy": json.loads(applied["policy"])}
          for action in ("kms:DescribeKey", "kms:GetPublicKey", "kms:Sign", "kms:CreateGrant")),
        _request(p, "route53:GetChange", "arn:aws:route53:::change/*"),
        _request(p, "route53:GetDNSSEC", _zone(p, "hosted_zone_id")),
    ]  # fmt: skip


def hosted_zone_dnssec(p: Planned) -> list[dict]:
    """internal/service/route53/hosted_zone_dnssec.go: resourceHostedZoneDNSSECCreate calls EnableHostedZoneDNSSEC
    (signing_status SIGNING), waits with GetChange, and reads with GetDNSSEC."""
    return [
        _request(p, "route53:EnableHostedZoneDNSSEC", _zone(p, "hosted_zone_id")),
        _request(p, "route53:GetChange", "arn:aws:route53:::change/*"),
        _request(p, "route53:GetDNSSEC", _zone(p, "hosted_zone_id")),
    ]


def query_log(p: Planned) -> list[dict]:
    """internal/service/route53/query_log.go: resourceQueryLogCreate calls CreateQueryLoggingConfig
    (CloudWatchLogsLogGroupArn, HostedZoneId), then GetQueryLoggingConfig to read (IAM: resource "*")."""
    return [
        _request(p, "route53:CreateQueryLoggingConfig", _zone(p, "zone_id")),
        _request(p, "route53:GetQueryLoggingConfig"),
    ]


# resource type → the create function's calls (each builder's docstring cites the provider's file)
PROVIDER_CALLS: dict[str, Callable[[Planned], list[dict]]] = {
    "aws_instance": instance,
    "aws_dlm_lifecycle_policy": dlm_policy,
    "aws_eks_addon": eks_addon,
    "aws_eks_access_entry": eks_access_entry,
    "aws_eks_access_policy_association": eks_access_policy_association,
    "aws_codeconnections_connection": codeconnections_connection,
    "aws_codebuild_project": codebuild_project,
    "aws_codebuild_webhook": codebuild_webhook,
    "aws_volume_attachment": volume_attachment,
    "aws_cloudwatch_metric_alarm": metric_alarm,
    "aws_eks_node_group": eks_node_group,
    "aws_cloudwatch_dashboard": dashboard,
    "aws_iam_role_policy": role_policy,
    "aws_ecr_pull_through_cache_rule": ecr_pull_through_cache_rule,
    "aws_ecr_repository_creation_template": ecr_repository_creation_template,
    "aws_route53_key_signing_key": key_signing_key,
    "aws_route53_hosted_zone_dnssec": hosted_zone_dnssec,
    "aws_route53_query_log": query_log,
}


def profile_roles(state: dict) -> dict[str, str]:
    """Instance profile name → role name, from a ``terraform show -json`` state of the applied resources."""
    found = {}
    for resource in _state_resources(state):
        if resource["type"] == "aws_iam_instance_profile":
            found[resource["values"]["name"]] = resource["values"]["role"]
    return found


def _state_resources(state: dict) -> list[dict]:
    module = (state.get("values") or {}).get("root_module") or {}
    return list(module.get("resources", []))


def left_out_requests(plan: dict, state: dict, left_out: set[str], region: str, account: str) -> list[dict]:
    """Every left-out resource's create calls, from the first plan with its references to applied resources resolved.

    A plan of the left-out resources after the apply cannot be made: once its references are known, the
    database instance's ``user_data`` (17066 bytes) fails the provider's 16384-byte validation (see the
    report in docs/offline-proofs.md). So each unknown value whose expression is a plain reference to an
    applied resource's attribute (a role's ARN, a cluster's name) is read from the applied state instead.
    Raises when a left-out resource's type has no row in ``PROVIDER_CALLS``.
    """
    roles, applied = profile_roles(state), _applied_attributes(state)
    boundaries = {c["change"]["after"]["name"]: c["change"]["after"]["permissions_boundary"]
                  for c in plan["resource_changes"] if c["type"] == "aws_iam_role" and c["mode"] == "managed"
                  and (c["change"]["after"] or {}).get("permissions_boundary")}  # fmt: skip
    boundaries.update({v["name"]: v["permissions_boundary"] for a, v in applied.items()
                       if a.startswith("aws_iam_role.") and v.get("permissions_boundary")})  # fmt: skip
    by_arn = {v["arn"]: v for v in applied.values() if isinstance(v.get("arn"), str)}
    resources = plan.get("configuration", {}).get("root_module", {}).get("resources", [])
    configs = {r["address"]: r.get("expressions", {}) for r in resources}
    requests, missing = [], set()
    for change in plan["resource_changes"]:
        if change["address"] not in left_out or change["mode"] != "managed":
            continue
        builder = PROVIDER_CALLS.get(change["type"])
        if builder is None:
            missing.add(change["type"])
            continue
        after = _resolved(change["change"]["after"] or {}, change["change"].get("after_unknown") or {},
                          configs.get(change["address"], {}), applied)  # fmt: skip
        requests += builder(Planned(change["address"], after, region, account, roles, boundaries, by_arn))
    if missing:
        raise AssertionError(f"left-out resource types with no row in PROVIDER_CALLS (tests/provider_calls.py): "
                             f"{sorted(missing)}")  # fmt: skip
    return requests


def _applied_attributes(state: dict) -> dict[str, dict]:
    """Resource address → its attributes, for every applied resource of a ``terraform show -json`` state."""
    return {r["address"]: r.get("values") or {} for r in _state_resources(state)}


def _resolved(after, unknown, expression, applied: dict[str, dict]):
    """The planned values; an unknown one is read from the applied state when its expression is one reference
    to an applied resource's attribute (``aws_iam_role.x.arn``), else it is None."""
    if unknown is True:
        refs = [r for r in (expression or {}).get("references", []) if r.count(".") == 2] if isinstance(
            expression, dict) else []  # fmt: skip
        for ref in refs:
            kind, name, attribute = ref.split(".")
            value = applied.get(f"{kind}.{name}", {}).get(attribute)
            if value is not None:
                return value
        return None
    if isinstance(after, dict):
        unknown = unknown if isinstance(unknown, dict) else {}
        expression = expression if isinstance(expression, dict) else {}
        keys = set(after) | {k for k, v in unknown.items() if v is True}
        return {k: _resolved(after.get(k), unknown.get(k), expression.get(k), applied) for k in keys}
    if isinstance(after, list):
        unknown = unknown if isinstance(unknown, list) else []
        expression = expression if isinstance(expression, list) else []
        return [_resolved(v, unknown[i] if i < len(unknown) else None, expression[i] if i < len(expression) else None,
                          applied) for i, v in enumerate(after)]  # fmt: skip
    return after


def dumps(requests: list[dict]) -> str:
    return "\n".join(json.dumps(r, sort_keys=True) for r in requests)
