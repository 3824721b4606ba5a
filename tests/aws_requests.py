"""What AWS was asked to do: moto's request recording turned into IAM requests (action, resource, context).

moto_server records every request it serves when ``MOTO_ENABLE_RECORDING`` is set (one JSON line
per request: method, url, headers, body; ``moto/moto_api/_internal/recorder/models.py``). Each
line becomes one ``AwsCall``:

- the **service** is the signing name in the SigV4 credential scope (``Credential=key/date/region/
  service/aws4_request``), which is also the IAM prefix except CloudWatch (signs as ``monitoring``);
- the **operation** comes from the protocol: ``Action=`` for query services (EC2, IAM, STS, ELBv2,
  SNS, Auto Scaling), ``X-Amz-Target`` for JSON services (KMS, DynamoDB, Logs, ACM, SSM, Secrets
  Manager), the Smithy RPCv2 path for CloudWatch, and botocore's own HTTP bindings (method +
  request URI) for the REST services (S3, EKS, Route 53, DLM);
- the **IAM action** is ``prefix:Operation`` except where AWS's authorization reference names it
  differently (``IAM_ACTION_NAMES``; S3 mostly). An action IAM does not know is an error in the
  evaluator, so a missing row here cannot pass silently.
- the **resource** is the ARN IAM authorizes for the call where our policies fence by resource
  (S3 buckets and objects, DynamoDB tables, IAM roles/policies/profiles, SSM parameters, KMS keys
  by ARN); elsewhere ``*``, which the evaluator treats as "every resource of the action's types"
  (our policies grant those services on ``*`` and fence them by region and tags).
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass, field
from functools import cache
from urllib.parse import parse_qs, unquote, urlsplit

# Operation names whose IAM action differs from ``prefix:Operation`` (AWS Service Authorization
# Reference, "Actions defined by Amazon S3" lists the API each action authorizes).
IAM_ACTION_NAMES = {
    "s3:HeadBucket": "s3:ListBucket",
    "s3:ListObjects": "s3:ListBucket",
    "s3:ListObjectsV2": "s3:ListBucket",
    "s3:ListObjectVersions": "s3:ListBucketVersions",
    "s3:HeadObject": "s3:GetObject",
    "s3:ListBuckets": "s3:ListAllMyBuckets",
    "s3:DeleteObjects": "s3:DeleteObject",
    "s3:CopyObject": "s3:PutObject",  # and s3:GetObject on the source, which Terraform's copies never leave
    "s3:GetBucketEncryption": "s3:GetEncryptionConfiguration",
    "s3:PutBucketEncryption": "s3:PutEncryptionConfiguration",
    "s3:DeleteBucketEncryption": "s3:PutEncryptionConfiguration",
    "s3:GetBucketLifecycleConfiguration": "s3:GetLifecycleConfiguration",
    "s3:PutBucketLifecycleConfiguration": "s3:PutLifecycleConfiguration",
    "s3:DeleteBucketLifecycle": "s3:PutLifecycleConfiguration",
    "s3:GetBucketAccelerateConfiguration": "s3:GetAccelerateConfiguration",
    "s3:GetBucketReplication": "s3:GetReplicationConfiguration",
    "s3:GetBucketCors": "s3:GetBucketCORS",
    "s3:GetObjectLockConfiguration": "s3:GetBucketObjectLockConfiguration",
    "s3:GetBucketNotificationConfiguration": "s3:GetBucketNotification",
    "s3:PutBucketNotificationConfiguration": "s3:PutBucketNotification",
    "s3:DeleteBucketOwnershipControls": "s3:PutBucketOwnershipControls",
    "s3:GetPublicAccessBlock": "s3:GetBucketPublicAccessBlock",
    "s3:PutPublicAccessBlock": "s3:PutBucketPublicAccessBlock",
    "s3:DeletePublicAccessBlock": "s3:PutBucketPublicAccessBlock",
    "s3:DeleteBucketTagging": "s3:PutBucketTagging",
    "s3:GetBucketLogging": "s3:GetBucketLogging",
    "s3:GetBucketWebsite": "s3:GetBucketWebsite",
    "s3:PutBucketTagging": "s3:PutBucketTagging",
    "s3:CreateBucket": "s3:CreateBucket",
    "elasticloadbalancing:DescribeListenerAttributes": "elasticloadbalancing:DescribeListenerAttributes",
}
# Signing name → IAM prefix where they differ.
IAM_PREFIX = {"monitoring": "cloudwatch"}
# botocore service names of the REST services (whose operation is found from method + path).
REST_SERVICES = {"s3": "s3", "eks": "eks", "route53": "route53", "dlm": "dlm"}
# IAM and Route 53 are global: AWS signs (and sets aws:RequestedRegion) with us-east-1. moto's
# single endpoint makes the provider sign them with the stack's region, so this is restored here.
GLOBAL_SERVICES = {"iam": "us-east-1", "route53": "us-east-1"}
# Requests that are no AWS API call: moto's own control plane.
NOT_AWS = re.compile(r"^/moto-api/")


@dataclass(frozen=True)
class AwsCall:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    service: str = ""
    region: str = ""
    operation: str = ""
    params: dict[str, str] = field(default_factory=dict)

    @property
    def action(self) -> str:
        name = f"{IAM_PREFIX.get(self.service, self.service)}:{self.operation}"
        return IAM_ACTION_NAMES.get(name, name)

    def describe(self) -> str:
        return f"{self.method} {self.path} ({self.service} {self.operation})"


def read_recording(text: str) -> list[AwsCall]:
    """Every AWS call in a moto recording, in order; moto's own /moto-api requests are left out."""
    calls = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as error:
            raise AssertionError(f"moto recording line {number} is not JSON ({error}): {line[:200]}") from None
        url = urlsplit(entry["url"])
        if NOT_AWS.match(url.path):
            continue
        body = base64.b64decode(entry["body"]) if entry.get("body_encoded") else (entry.get("body") or "").encode()
        calls.append(parse_call(entry["method"], url.path, url.query, entry["headers"], body))
    return calls


def parse_call(method: str, path: str, query_string: str, headers: dict[str, str], body: bytes) -> AwsCall:
    headers = {k.lower(): v for k, v in headers.items()}
    scope = re.search(r"Credential=[^/]+/\d{8}/([^/]+)/([^/]+)/aws4_request", headers.get("authorization", ""))
    if not scope:
        raise AssertionError(f"unsigned request, no service to judge: {method} {path}")
    region, service = scope.groups()
    query = parse_qs(query_string, keep_blank_values=True)
    params: dict[str, str] = {}
    content_type = headers.get("content-type", "")
    if "x-amz-target" in headers:
        operation = headers["x-amz-target"].rsplit(".", 1)[-1]
        params = _json_params(body)
    elif service in REST_SERVICES:
        operation, params = _rest_operation(REST_SERVICES[service], method, path, query, headers)
    elif content_type.startswith("application/x-www-form-urlencoded"):
        params = {k: v[0] for k, v in parse_qs(body.decode(), keep_blank_values=True).items()}
        operation = params.get("Action", "")
    elif m := re.match(r"^/service/[^/]+/operation/([^/]+)$", path):  # Smithy RPCv2 (CloudWatch)
        operation = m.group(1)
    else:
        raise AssertionError(f"cannot tell which {service} operation this is: {method} {path}")
    return AwsCall(method, path, query, headers, body, service, GLOBAL_SERVICES.get(service, region), operation, params)


def _json_params(body: bytes) -> dict[str, str]:
    try:
        data = json.loads(body or b"{}")
    except ValueError:
        return {}
    return {k: v for k, v in data.items() if isinstance(v, (str, list, dict))} if isinstance(data, dict) else {}


@cache
def _rest_routes(service: str) -> list[tuple[str, re.Pattern, frozenset[str], frozenset[str], str]]:
    """(method, path regex, required query keys, required headers, operation) for every operation of a REST
    service; the required query and header members tell apart operations on one URI (PutObject, CopyObject
    with its x-amz-copy-source header, UploadPart with partNumber and uploadId)."""
    import botocore.session

    model = botocore.session.get_session().get_service_model(service)
    routes = []
    for name in model.operation_names:
        operation = model.operation_model(name)
        if operation.deprecated:  # e.g. GetBucketLifecycle, replaced by GetBucketLifecycleConfiguration
            continue
        http = operation.http
        uri, _, query = http["requestUri"].partition("?")
        pattern = re.sub(
            r"\\\{(\w+)(\\\+)?\\\}",
            lambda m: f"(?P<{m.group(1)}>.+)" if m.group(2) else f"(?P<{m.group(1)}>[^/]+)",
            re.escape(uri.rstrip("/") or "/"),
        )
        keys = {part.split("=")[0] for part in query.split("&") if part}
        headers = set()
        shape = operation.input_shape
        for member in shape.required_members if shape else ():
            location = shape.members[member].serialization
            if location.get("location") == "querystring":
                keys.add(location["name"])
            elif location.get("location") == "header":
                headers.add(location["name"].lower())
        routes.append((http["method"], re.compile(f"^{pattern}/?$"), frozenset(keys), frozenset(headers), name))
    return routes


def _rest_operation(service: str, method: str, path: str, query: dict, headers: dict) -> tuple[str, dict[str, str]]:
    best = None
    for route_method, pattern, keys, required_headers, name in _rest_routes(service):
        if route_method != method or not keys <= query.keys() or not required_headers <= headers.keys():
            continue
        if m := pattern.match(path.rstrip("/") or "/"):
            # the most specific route wins: most required members, then most literal path characters
            score = (len(keys) + len(required_headers), len(path) - sum(len(g or "") for g in m.groupdict().values()))
            if best is None or score > best[0]:
                best = (score, name, {k: unquote(v) for k, v in m.groupdict().items()})
    if best is None:
        raise AssertionError(f"no {service} operation answers {method} {path}?{'&'.join(query)}")
    return best[1], best[2]


def resource_arn(call: AwsCall, account: str) -> str:
    """The ARN IAM authorizes ``call`` against, where our policies name resources; else ``*``."""
    p, region = call.params, call.region
    if call.service == "s3":
        bucket, key = p.get("Bucket"), p.get("Key")
        if not bucket:
            return "*"
        return f"arn:aws:s3:::{bucket}/{key}" if key else f"arn:aws:s3:::{bucket}"
    if call.service == "dynamodb" and p.get("TableName"):
        return f"arn:aws:dynamodb:{region}:{account}:table/{p['TableName']}"
    if call.service == "iam":
        iam = f"arn:aws:iam::{account}"
        path = p.get("Path", "/")
        if call.operation == "CreateServiceLinkedRole":
            return f"{iam}:role/aws-service-role/{p.get('AWSServiceName', '')}/*"
        # AddRoleToInstanceProfile and friends name a role too, but IAM authorizes them on the profile
        if p.get("InstanceProfileName"):
            return f"{iam}:instance-profile{path}{p['InstanceProfileName']}"
        if p.get("RoleName"):
            return f"{iam}:role{path}{p['RoleName']}"
        if p.get("PolicyArn"):
            return p["PolicyArn"]
        if call.operation == "CreatePolicy":
            return f"{iam}:policy{path}{p['PolicyName']}"
        if p.get("OpenIDConnectProviderArn"):
            return p["OpenIDConnectProviderArn"]
        return "*"
    if call.service == "ssm":
        name = p.get("Name") or (p.get("Names") or [None])[0]
        if isinstance(name, str):
            # AWS's public parameters (/aws/service/...) have no account in their ARN
            owner = "" if name.startswith("/aws/") else account
            return f"arn:aws:ssm:{region}:{owner}:parameter{name if name.startswith('/') else '/' + name}"
        return "*"
    if call.service == "eks" and (cluster := _eks_cluster(call)):
        # the cluster's actions are authorized on the cluster (the EKS name fence reads its ARN); the rest
        # (node groups, add-ons, access entries by their own ARNs) stay "*"
        return f"arn:aws:eks:{region}:{account}:cluster/{cluster}"
    if call.service == "logs":
        # the log group by name (the deploy role's us-east-1 statement names Route53's query log group)
        if str(p.get("resourceArn", "")).startswith("arn:"):
            return p["resourceArn"]
        if isinstance(p.get("logGroupName"), str):
            return f"arn:aws:logs:{region}:{account}:log-group:{p['logGroupName']}"
        return "*"
    if call.service == "kms" and str(p.get("KeyId", "")).startswith("arn:"):
        return p["KeyId"]
    if call.service == "secretsmanager" and str(p.get("SecretId", "")).startswith("arn:"):
        return p["SecretId"]  # the provider names secrets by ARN
    if call.service == "events":
        # the deletion alert's rule by name (the deploy role's DeletionAlertRule names rule/<project>-<env>-*)
        if str(p.get("ResourceARN", "")).startswith("arn:"):
            return p["ResourceARN"]
        rule = p.get("Rule") or p.get("Name")
        return f"arn:aws:events:{region}:{account}:rule/{rule}" if isinstance(rule, str) else "*"
    if call.service == "sns":
        # topics by ARN or, on creation, by name (the DNSSEC alarms' us-east-1 topic is granted by name); the
        # subscription calls have no resource type in IAM
        for name in ("TopicArn", "ResourceArn"):
            if str(p.get(name, "")).startswith("arn:"):
                return p[name]
        if call.operation == "CreateTopic" and isinstance(p.get("Name"), str):
            return f"arn:aws:sns:{region}:{account}:{p['Name']}"
        return "*"
    if call.service == "monitoring":
        # alarms by name (the DNSSEC alarms in us-east-1 are granted by name); dashboards and the rest stay "*"
        if str(p.get("ResourceARN", "")).startswith("arn:"):
            return p["ResourceARN"]
        names = p.get("AlarmNames") or [p.get("AlarmName") or p.get("AlarmNames.member.1")]
        name = names[0] if isinstance(names, list) and len(names) == 1 else None
        return f"arn:aws:cloudwatch:{region}:{account}:alarm:{name}" if isinstance(name, str) else "*"
    return "*"


# EKS operations IAM authorizes on the cluster itself (Service Authorization Reference, Amazon EKS: resource
# type "cluster"), named in the path. CreateCluster has no resource type in IAM: "*".
EKS_CLUSTER_OPERATIONS = frozenset({
    "DescribeCluster", "DeleteCluster", "UpdateClusterConfig", "UpdateClusterVersion",
    "CreateNodegroup", "CreateAddon", "CreateAccessEntry", "ListNodegroups", "ListAddons", "ListAccessEntries",
    "DescribeUpdate", "ListUpdates",
})  # fmt: skip


def _eks_cluster(call: AwsCall) -> str | None:
    return call.params.get("name") if call.operation in EKS_CLUSTER_OPERATIONS else None


def request_tags(call: AwsCall) -> dict[str, str]:
    """The tags a call asks to put on what it creates (every tagging syntax the provider uses)."""
    p, tags = call.params, {}
    # query protocol: TagSpecification.1.Tag.2.Key / Tags.member.1.Key / Tag.1.Key
    for name, key in p.items():
        if isinstance(key, str) and (m := re.match(r"^(.*Tags?(?:\.member)?\.\d+)\.Key$", name)):
            tags[key] = p.get(f"{m.group(1)}.Value", "")
    # JSON protocol: Tags: [{Key, Value}] or {k: v}; tags: {k: v}
    for container in (p.get("Tags"), p.get("tags"), p.get("TagList")):
        if isinstance(container, dict):
            tags.update({k: str(v) for k, v in container.items()})
        elif isinstance(container, list):
            tags.update({t.get("Key", t.get("TagKey")): str(t.get("Value", t.get("TagValue"))) for t in container
                         if isinstance(t, dict)})  # fmt: skip
    # S3: x-amz-tagging header
    if "x-amz-tagging" in call.headers:
        tags.update({k: v[0] for k, v in parse_qs(call.headers["x-amz-tagging"]).items()})
    # REST JSON bodies (EKS, DLM): {"tags": {...}}
    if call.service in ("eks", "dlm") and call.body:
        tags.update({k: str(v) for k, v in (_json_params(call.body).get("tags") or {}).items()})
    return tags


def named_values(call: AwsCall) -> set[str]:
    """Every string a call names (ids, names, ARNs), from its parameters, path and query."""
    found: set[str] = set()

    def collect(value) -> None:
        if isinstance(value, str):
            found.add(value)
        elif isinstance(value, dict):
            for item in value.values():
                collect(item)
        elif isinstance(value, list):
            for item in value:
                collect(item)

    collect(call.params)
    collect(call.query)
    if call.service in ("eks", "dlm", "codebuild") and call.body:
        collect(_json_params(call.body))
    return found


def existing_resource_tags(call: AwsCall, tags_by_name: dict[str, dict[str, str]]) -> dict[str, str]:
    """The tags of the existing resources a call names (``tags_by_name``: id, name or ARN → tags).

    A call that creates a resource names no tagged resource of its own (its parent's id, a VPC's,
    is looked up like any other); when it names several, the first in sorted order with tags wins
    (in this stack every resource carries its own environment's tag, so they agree).
    """
    for value in sorted(named_values(call)):
        if value in tags_by_name and tags_by_name[value]:
            return tags_by_name[value]
    return {}


def record_changes(call: AwsCall) -> dict[str, list[str]]:
    """Route53's ChangeResourceRecordSets condition keys, from the request's XML body: the record names
    (normalized: lower case, no trailing dot), the change actions and the record types (Route 53 developer
    guide, "Using IAM policy conditions for fine-grained access control")."""
    if (call.service, call.operation) != ("route53", "ChangeResourceRecordSets") or not call.body:
        return {}
    import xml.etree.ElementTree as ElementTree

    root = ElementTree.fromstring(call.body)
    changes = [element for element in root.iter() if element.tag.rsplit("}", 1)[-1] == "Change"]

    def child(element, name: str) -> list:
        return [e for e in element.iter() if e.tag.rsplit("}", 1)[-1] == name]

    names = sorted({e.text.lower().rstrip(".") for c in changes for e in child(c, "Name")[:1] if e.text})
    actions = sorted({e.text for c in changes for e in child(c, "Action")[:1] if e.text})
    types = sorted({e.text for c in changes for e in child(c, "Type")[:1] if e.text})
    return {"route53:ChangeResourceRecordSetsNormalizedRecordNames": names,
            "route53:ChangeResourceRecordSetsActions": actions,
            "route53:ChangeResourceRecordSetsRecordTypes": types}  # fmt: skip


def permissions_boundary(call: AwsCall, boundaries_by_role: dict[str, str] | None) -> str | None:
    """``iam:PermissionsBoundary``: the boundary a CreateRole or PutRolePermissionsBoundary asks for, else the
    boundary the named role has (``boundaries_by_role``, from the applied state, as AWS reads it)."""
    if call.service != "iam":
        return None
    if call.operation in ("CreateRole", "PutRolePermissionsBoundary"):
        return call.params.get("PermissionsBoundary")
    role = call.params.get("RoleName")
    return (boundaries_by_role or {}).get(role) if role else None


def context_for(call: AwsCall, tags_by_name: dict[str, dict[str, str]] | None = None,
                boundaries_by_role: dict[str, str] | None = None) -> dict[str, object]:  # fmt: skip
    """Condition keys from what the request itself carried (the only source an evaluator may use).

    - ``aws:RequestedRegion``: the region of the SigV4 credential scope (us-east-1 for IAM and
      Route 53, which AWS serves from there);
    - ``aws:SecureTransport``: true, every call went over TLS to moto;
    - ``aws:RequestTag/<key>`` and ``aws:TagKeys``: the tags in the request (``request_tags``);
    - ``iam:PolicyARN``: the policy an Attach/Detach call names;
    - ``iam:PermissionsBoundary``: the boundary a CreateRole asks for, or the named role's (``permissions_boundary``);
    - Route53's ``ChangeResourceRecordSets*`` keys: the record names, actions and types of the change batch.
    - ``aws:ResourceTag/<key>``: the tags of the existing resource the call names, which the
      request does not carry: looked up in ``tags_by_name`` (built from the applied state's
      ``tags_all``, as AWS would read them), so the boundary's "other environment's resources"
      deny is judged on every call that names a tagged resource.
    """
    context: dict[str, object] = {"aws:RequestedRegion": call.region, "aws:SecureTransport": "true"}
    if tags_by_name:
        context.update({f"aws:ResourceTag/{k}": v for k, v in existing_resource_tags(call, tags_by_name).items()})
    tags = request_tags(call)
    if tags:
        context.update({f"aws:RequestTag/{k}": v for k, v in tags.items()})
        context["aws:TagKeys"] = sorted(tags)
    if call.service == "iam" and call.params.get("PolicyArn"):
        context["iam:PolicyARN"] = call.params["PolicyArn"]
    if boundary := permissions_boundary(call, boundaries_by_role):
        context["iam:PermissionsBoundary"] = boundary
    context.update(record_changes(call))
    return context


# S3 encrypts and decrypts SSE-KMS objects with the caller's KMS permissions: PutObject makes S3 call
# kms:GenerateDataKey, GetObject (and HeadObject) kms:Decrypt, on the object's key, with
# kms:ViaService = s3.<region>.amazonaws.com (Amazon S3 user guide, "Using server-side encryption with
# AWS KMS keys": "Permissions", and AWS KMS developer guide, "kms:ViaService").
S3_KMS_ACTIONS = {"PutObject": "kms:GenerateDataKey", "CopyObject": "kms:GenerateDataKey",
                  "CreateMultipartUpload": "kms:GenerateDataKey", "GetObject": "kms:Decrypt",
                  "HeadObject": "kms:Decrypt"}  # fmt: skip


def kms_calls_by_s3(call: AwsCall, keys_by_bucket: dict[str, tuple[str, dict]]) -> list[dict]:
    """The KMS requests S3 makes on the caller's behalf for an object call in a bucket whose objects are SSE-KMS.

    ``keys_by_bucket``: bucket → (ARN, key policy) of the key its objects are encrypted with (the state
    bucket and state key: the backend writes every state object with ``kms_key_id``). A KMS key's own
    policy must allow as well as the caller's (AWS KMS developer guide, "Key policies"), so it goes with
    each request as its resource policy.
    """
    action = S3_KMS_ACTIONS.get(call.operation) if call.service == "s3" else None
    bucket, key = call.params.get("Bucket"), call.params.get("Key")
    if not action or not key or bucket not in keys_by_bucket:
        return []
    if action == "kms:GenerateDataKey" and call.headers.get("x-amz-server-side-encryption") != "aws:kms":
        return []  # written SSE-S3 (no kms_key_id in the backend): S3 asks KMS nothing
    context = {"aws:RequestedRegion": call.region, "aws:SecureTransport": "true",
               "kms:ViaService": f"s3.{call.region}.amazonaws.com"}  # fmt: skip
    key_arn, key_policy = keys_by_bucket[bucket]
    return [{"action": action, "resource": key_arn, "context": context, "resourcePolicy": key_policy,
             "call": f"{call.describe()}: S3 asks KMS on the caller's behalf"}]  # fmt: skip
