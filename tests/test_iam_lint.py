"""The IAM lint gate: PyPI's ``parliament`` over every IAM policy document of every synthesized stack.

What is linted, found generically in each stack's ``cdk.tf.json`` (so a new construct is linted
without a change here):

- every string attribute of a resource or data block, at any depth, that parses as a JSON policy
  document (``aws_iam_policy.policy``, ``aws_iam_role_policy.policy``, ``aws_iam_role.assume_role_policy``,
  ``aws_kms_key.policy``, ``aws_s3_bucket_policy.policy``, and SNS, Secrets Manager or CloudWatch Logs
  resource policies when a construct adds one);
- every ``data.aws_iam_policy_document``, rendered to the JSON Terraform would produce.

How:

- **References.** A policy that holds Terraform references (``${aws_kms_key.x.arn}``) is linted after
  each reference is replaced by a realistic value of its type: an ARN in the format the Service
  Authorization Reference gives for that resource type (a bucket ARN for ``aws_s3_bucket.x.arn``, a
  key ARN for ``aws_kms_key.x.arn``, ...), built from the resource's own name where it has one, in
  the stack's region and account; ``data.terraform_remote_state`` outputs are followed into the
  stack that writes them. No statement is dropped. A reference with no known rendering fails the
  test (add it to ``ARN_FORMATS`` or ``ID_FORMATS``) instead of being guessed.
- **Trust policies** (``aws_iam_role.assume_role_policy``, or the ``data.aws_iam_policy_document`` it
  names). parliament requires a ``Resource`` in every statement, and a trust policy has none: the
  role it is attached to is the resource (IAM User Guide, "Roles terms and concepts": a role trust
  policy is a resource-based policy attached to the role). So a trust policy is linted with
  ``Resource`` set to its own role's ARN; its principals are then checked like any resource policy's.
- **Resource policies** (key, bucket, topic policies) are linted as they are: parliament checks the
  ``Principal`` element of any statement that has one.
- **Actions parliament does not know.** parliament stops analysing a statement (and the policy's
  cross-statement checks) at an action missing from its bundled IAM data. Each such action is
  reported as ``UNKNOWN_ACTION`` and must be justified; then the policy is linted again without
  those actions, so the statement's other actions still get every check.
- **Community auditors** are on (privilege escalation, permissions management, credentials exposure).
- parliament 1.6.4 imports ``pkg_resources``, which setuptools 82 removed: the Pipfile pins setuptools 81.

Every finding must match an entry of ``security/parliament-allowlist.yaml`` (see security/README.md),
and every entry must still match a finding. Run: ``./scripts/test tests/test_iam_lint.py``.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import yaml
from conftest import ROOT

ALLOWLIST = ROOT / "security" / "parliament-allowlist.yaml"
EXAMPLE_ACCOUNT = "111122223333"  # AWS's documentation example account, when a stack names none
PARTITION = "aws"

# ${<type>.<name>.arn} -> the ARN format of the Service Authorization Reference for that resource
# type. {name} is the resource's own name attribute (see NAME_ATTRIBUTES), else its construct ID.
ARN_FORMATS = {
    "aws_s3_bucket": "arn:{partition}:s3:::{name}",
    "aws_kms_key": "arn:{partition}:kms:{region}:{account}:key/1234abcd-12ab-34cd-56ef-1234567890ab",
    "aws_cloudwatch_log_group": "arn:{partition}:logs:{region}:{account}:log-group:{name}",
    "aws_secretsmanager_secret": "arn:{partition}:secretsmanager:{region}:{account}:secret:{name}-AbCdEf",
    "aws_dynamodb_table": "arn:{partition}:dynamodb:{region}:{account}:table/{name}",
    "aws_iam_openid_connect_provider": "arn:{partition}:iam::{account}:oidc-provider/{name}",
    "aws_iam_role": "arn:{partition}:iam::{account}:role/{name}",
    "aws_iam_policy": "arn:{partition}:iam::{account}:policy/{name}",
    "aws_codeconnections_connection": (
        "arn:{partition}:codeconnections:{region}:{account}:connection/1234abcd-12ab-34cd-56ef-1234567890ab"
    ),
    "aws_sns_topic": "arn:{partition}:sns:{region}:{account}:{name}",
    "aws_lb_target_group": (
        "arn:{partition}:elasticloadbalancing:{region}:{account}:targetgroup/{name}/73e2d6bc24d8a067"
    ),
    "aws_lb": "arn:{partition}:elasticloadbalancing:{region}:{account}:loadbalancer/app/{name}/50dc6c495c0c9188",
    "aws_eks_cluster": "arn:{partition}:eks:{region}:{account}:cluster/{name}",
    "aws_instance": "arn:{partition}:ec2:{region}:{account}:instance/i-0123456789abcdef0",
    "aws_route53_zone": "arn:{partition}:route53:::hostedzone/Z0123456789ABCDEFGHIJ",
    "aws_codebuild_project": "arn:{partition}:codebuild:{region}:{account}:project/{name}",
    "aws_ssm_document": "arn:{partition}:ssm:{region}:{account}:document/{name}",
    "aws_cloudwatch_event_rule": "arn:{partition}:events:{region}:{account}:rule/{name}",
}
NAME_ATTRIBUTES = ("bucket", "name", "url")
# ${<type>.<name>.id} -> an ID of the form AWS gives that resource type.
ID_FORMATS = {
    "aws_subnet": "subnet-0123456789abcdef0",
    "aws_vpc": "vpc-0123456789abcdef0",
    "aws_security_group": "sg-0123456789abcdef0",
    "aws_instance": "i-0123456789abcdef0",
    "aws_kms_key": "1234abcd-12ab-34cd-56ef-1234567890ab",
    "aws_route53_zone": "Z0123456789ABCDEFGHIJ",
}
TRUST_ATTRIBUTE = "assume_role_policy"
# resource types that always carry a policy document: a stack with one must yield documents
POLICY_HOLDERS = {"aws_iam_role", "aws_iam_policy", "aws_iam_role_policy", "aws_kms_key", "aws_s3_bucket_policy"}
REFERENCE = re.compile(r"\$\{([^{}]*)\}")


class UnresolvedReference(Exception):
    pass


class AllowlistError(Exception):
    pass


@dataclass(frozen=True)
class PolicyDocument:
    """One policy as the linter sees it: references replaced, and where it came from."""

    stack: str
    location: str  # stack-independent: <resource type>.<construct path without the environment>
    attribute: str
    kind: str  # identity | resource | trust
    text: str


@dataclass(frozen=True)
class Finding:
    issue: str
    location: str
    sid: str | None
    actions: tuple[str, ...]
    detail: str
    stacks: tuple[str, ...] = ()

    def key(self) -> tuple:
        return (self.issue, self.location, self.sid, self.actions, self.detail)

    def __str__(self) -> str:
        sid = f" Sid {self.sid}" if self.sid else " (no Sid: policy-wide or unnamed statement)"
        actions = f" actions {list(self.actions)}" if self.actions else ""
        return f"{self.issue} at {self.location}{sid}{actions}: {self.detail} [in {', '.join(self.stacks)}]"


# --- finding the policies ----------------------------------------------------------------------


class StackReferences:
    """Replaces the Terraform references of one stack's policies by realistic values of their type."""

    def __init__(self, name: str, tf: dict, stacks: dict[str, dict]) -> None:
        self.name, self.tf, self.stacks = name, tf, stacks
        provider = (tf.get("provider", {}).get("aws") or [{}])[0]
        self.region = provider.get("region", "us-east-1")
        self.account = str((provider.get("allowed_account_ids") or [EXAMPLE_ACCOUNT])[0])

    def substitute(self, text: str, depth: int = 0) -> str:
        return REFERENCE.sub(lambda m: self.value(m.group(1), depth), text)

    def value(self, expression: str, depth: int = 0) -> str:
        if depth > 5:
            raise UnresolvedReference(f"{self.name}: ${{{expression}}} refers to itself")
        parts = expression.split(".")
        if not all(re.fullmatch(r"[\w-]+", p) for p in parts):
            raise UnresolvedReference(f"{self.name}: ${{{expression}}} is an expression, not a reference")
        if parts[:2] == ["data", "aws_partition"] and parts[-1] == "partition":
            return PARTITION
        if parts[:2] == ["data", "aws_caller_identity"] and parts[-1] == "account_id":
            return self.account
        if parts[:2] == ["data", "aws_region"] and parts[-1] in ("name", "region"):
            return self.region
        if parts[:2] == ["data", "terraform_remote_state"] and len(parts) == 5 and parts[3] == "outputs":
            return self._remote_output(parts[2], parts[4], depth)
        if parts[0] == "data" and len(parts) == 4 and parts[3] == "arn" and parts[1] in ARN_FORMATS:
            block = self.tf.get("data", {}).get(parts[1], {}).get(parts[2])  # a looked-up resource, same ARN
            if block is None:
                raise UnresolvedReference(f"{self.name}: ${{{expression}}} names no data source of this stack")
            return self.substitute(self.arn_of(parts[1], parts[2], block), depth + 1)
        if len(parts) == 3 and parts[2] == "arn" and parts[0] in ARN_FORMATS:
            resource = self.tf.get("resource", {}).get(parts[0], {}).get(parts[1])
            if resource is None:
                raise UnresolvedReference(f"{self.name}: ${{{expression}}} names no resource of this stack")
            return self.substitute(self.arn_of(parts[0], parts[1], resource), depth + 1)
        if len(parts) == 3 and parts[2] == "id" and parts[0] in ID_FORMATS:
            return ID_FORMATS[parts[0]]
        raise UnresolvedReference(
            f"{self.name}: no realistic value for ${{{expression}}}; add its resource type to ARN_FORMATS "
            "or ID_FORMATS in tests/test_iam_lint.py (the format of the Service Authorization Reference)"
        )

    def arn_of(self, resource_type: str, construct_id: str, resource: dict) -> str:
        name = next((resource[a] for a in NAME_ATTRIBUTES if isinstance(resource.get(a), str)), construct_id)
        if resource_type == "aws_iam_openid_connect_provider":
            name = name.removeprefix("https://")
        return ARN_FORMATS[resource_type].format(
            partition=PARTITION, region=self.region, account=self.account, name=name
        )

    def _remote_output(self, state: str, output: str, depth: int) -> str:
        config = self.tf["data"]["terraform_remote_state"][state]["config"]
        writer = config["key"].split("/")[0]  # <stack>/terraform.tfstate (modules/stacks.py)
        if writer not in self.stacks:
            raise UnresolvedReference(f"{self.name}: remote state {state} is written by no synthesized stack")
        value = self.stacks[writer].get("output", {}).get(output, {}).get("value")
        if not isinstance(value, str):
            raise UnresolvedReference(f"{self.name}: stack {writer} has no string output {output}")
        return StackReferences(writer, self.stacks[writer], self.stacks).substitute(value, depth + 1)


def _policy_strings(value: Any, attribute: str = "") -> Iterator[tuple[str, str]]:
    """(attribute path, text) of every string in ``value`` that parses as a policy document."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key != "//":
                yield from _policy_strings(item, f"{attribute}.{key}" if attribute else key)
    elif isinstance(value, list):
        for item in value:
            yield from _policy_strings(item, attribute)
    elif isinstance(value, str) and '"Statement"' in value:
        try:
            parsed = json.loads(value)
        except ValueError:
            return
        if isinstance(parsed, dict) and "Statement" in parsed:
            yield attribute, value


def _string_list(values: list[str]) -> str | list[str]:
    """As the provider renders a list: one value as a string, more in reverse sorted order."""
    return values[0] if len(values) == 1 else sorted(values, reverse=True)


def render_policy_document(data: dict) -> str:
    """The JSON of a ``data.aws_iam_policy_document``, rendered as hashicorp/aws renders its statement blocks
    (internal/service/iam/policy_model.go, policyDecodeConfigStringList)."""
    statements = []
    for block in data.get("statement", []):
        statement: dict[str, Any] = {}
        if "sid" in block:
            statement["Sid"] = block["sid"]
        statement["Effect"] = block.get("effect", "Allow")
        for key, element in (("actions", "Action"), ("not_actions", "NotAction"), ("resources", "Resource"),
                             ("not_resources", "NotResource")):
            if key in block:
                statement[element] = _string_list(block[key])
        for key, element in (("principals", "Principal"), ("not_principals", "NotPrincipal")):
            for principal in block.get(key, []):
                principals = statement.setdefault(element, {})
                principals[principal["type"]] = _string_list(principal["identifiers"])
        for condition in block.get("condition", []):
            statement.setdefault("Condition", {}).setdefault(condition["test"], {})[condition["variable"]] = (
                _string_list(condition["values"])
            )
        statements.append(statement)
    return json.dumps({"Version": data.get("version", "2012-10-17"), "Statement": statements})


def _stack_part(stack: str, prefixes: list[str]) -> str:
    """``twentycrm-dev-state`` -> ``state``: the same construct in every environment has one location."""
    for prefix in prefixes:
        if stack.startswith(prefix):
            return stack[len(prefix):]
    return stack


def collect_policies(stacks: dict[str, dict], prefixes: list[str]) -> tuple[list[PolicyDocument], list[str]]:
    """Every policy document of every stack, and the references that could not be resolved."""
    documents, unresolved = [], []
    for stack, tf in stacks.items():
        refs = StackReferences(stack, tf, stacks)
        blocks = [(t, n, b) for t, bs in tf.get("resource", {}).items() for n, b in bs.items()]
        blocks += [(f"data.{t}", n, b) for t, bs in tf.get("data", {}).items() for n, b in bs.items()]
        # a role whose trust policy is a policy document data source: that document is a trust policy
        trusting = {m.group(1): (n, r) for n, r in tf.get("resource", {}).get("aws_iam_role", {}).items()
                    if (m := re.fullmatch(r"\$\{data\.aws_iam_policy_document\.([\w-]+)\.json\}",
                                          str(r.get(TRUST_ATTRIBUTE, ""))))}
        for block_type, name, block in blocks:
            path = block.get("//", {}).get("metadata", {}).get("path", f"{stack}/{name}")
            location = f"{block_type}.{_stack_part(path.split('/')[0], prefixes)}/{path.split('/', 1)[1]}"
            role = (name, block)
            if block_type == "data.aws_iam_policy_document":
                found = [(TRUST_ATTRIBUTE if name in trusting else "json", render_policy_document(block))]
                role = trusting.get(name, role)
            else:
                found = list(_policy_strings(block))
            for attribute, text in found:
                try:
                    policy = json.loads(refs.substitute(text))
                except UnresolvedReference as err:
                    unresolved.append(f"{location} ({attribute}): {err}")
                    continue
                statements = policy["Statement"] if isinstance(policy["Statement"], list) else [policy["Statement"]]
                if attribute == TRUST_ATTRIBUTE:
                    kind = "trust"
                    role_arn = refs.substitute(refs.arn_of("aws_iam_role", *role))
                    for statement in statements:
                        statement.setdefault("Resource", role_arn)
                elif any("Principal" in s or "NotPrincipal" in s for s in statements):
                    kind = "resource"
                else:
                    kind = "identity"
                documents.append(PolicyDocument(stack, location, attribute, kind, json.dumps(policy)))
    return documents, unresolved


# --- linting -----------------------------------------------------------------------------------


def _parliament():
    import parliament  # needs pkg_resources: setuptools is pinned below 82 in the Pipfile

    community = Path(parliament.__file__).parent / "community_auditors" / "config_override.yaml"
    parliament.override_config(str(community))  # their issue codes, as `parliament --include-community-auditors`
    return parliament


def _actions_of(issue: str, parliament_finding) -> list[tuple[str, ...]]:
    """The actions a finding is about, one tuple per finding we report."""
    detail, location = parliament_finding.detail, parliament_finding.location
    if issue in ("UNKNOWN_ACTION", "UNKNOWN_PREFIX"):
        return [(str(location.get("string")),)]
    if issue == "RESOURCE_MISMATCH":
        return [tuple(sorted({item["action"] for item in detail}))]
    if issue == "RESOURCE_STAR":
        return [tuple(sorted(detail))]
    if issue == "UNKNOWN_CONDITION_FOR_ACTION":
        return [(str(detail).rsplit(" ", 1)[-1],)]
    if isinstance(location, dict) and isinstance(location.get("actions"), list):
        return [tuple(sorted(location["actions"]))]
    return [()]


def _detail_of(issue: str, parliament_finding) -> str:
    if issue in ("RESOURCE_MISMATCH", "RESOURCE_STAR", "UNKNOWN_ACTION"):
        return parliament_finding.title
    if issue == "UNKNOWN_CONDITION_FOR_ACTION":
        return str(parliament_finding.detail).rsplit(" for action", 1)[0]
    if isinstance(parliament_finding.location, dict) and parliament_finding.location.get("type"):
        return f"{parliament_finding.title}: {parliament_finding.location['type']}"  # the escalation method
    return str(parliament_finding.detail or parliament_finding.title)


def _findings_of(parliament, document: PolicyDocument, text: str) -> list[Finding]:
    try:
        policy = parliament.analyze_policy_string(text, document.location, include_community_auditors=True)
    except Exception as err:  # parliament crashes on some valid shapes (a list under Bool); say where
        return [Finding("EXCEPTION", document.location, None, (), f"parliament raised {err!r}")]
    raw = [(None, f) for f in policy._findings] + [(s.sid, f) for s in policy.statements for f in s.findings]
    found = []
    for sid, item in raw:
        item = parliament.enhance_finding(item)
        for actions in _actions_of(item.issue, item):
            found.append(Finding(item.issue, document.location, sid, actions, _detail_of(item.issue, item)))
    return found


def _without_actions(text: str, unknown: set[str]) -> str:
    policy = json.loads(text)
    statements = policy["Statement"] if isinstance(policy["Statement"], list) else [policy["Statement"]]
    kept = []
    for statement in statements:
        element = "Action" if "Action" in statement else "NotAction"
        actions = statement[element] if isinstance(statement[element], list) else [statement[element]]
        remaining = [a for a in actions if a not in unknown]
        if remaining:
            kept.append({**statement, element: remaining})
    policy["Statement"] = kept
    return json.dumps(policy)


def lint(parliament, document: PolicyDocument) -> list[Finding]:
    """parliament's findings for one policy; actions its data lacks are reported, then linted around."""
    first = _findings_of(parliament, document, document.text)
    unknown = {a for f in first if f.issue in ("UNKNOWN_ACTION", "UNKNOWN_PREFIX") for a in f.actions}
    if not unknown:
        return first
    rest = _without_actions(document.text, unknown)
    second = _findings_of(parliament, document, rest) if json.loads(rest)["Statement"] else []
    return [f for f in first if f.issue in ("UNKNOWN_ACTION", "UNKNOWN_PREFIX")] + second


class EnvironmentNeutral:
    """The names that differ between environments, each replaced by one placeholder: the account ID, domain,
    buckets, lock table, cluster and name prefixes, secret paths and the bare environment name. Every
    environment's policies are built by the same code from these names, so once they are neutral the three
    environments' documents are mostly identical and parliament analyses each shape once (a third of the time).
    The placeholders keep each ARN's shape (an account stays 12 digits), and ``restore`` puts the environment's
    names back into a finding's detail, so the findings equal those of linting every document
    (``test_neutral_documents_give_the_findings_of_the_originals``); a name left out only costs an analysis."""

    def __init__(self, settings: list) -> None:
        self.tables = []
        for env in settings:
            names = {
                env.account.id: "000000000000", env.domain: "environment.example.com",
                f"{env.project}/{env.name}/": f"{env.project}/environment/", env.state.lock_table: "environment-lock",
                **{bucket: f"environment-{field.replace('.', '-').replace('_', '-')}"
                   for field, bucket in env.buckets().items()},
                env.cluster.name: "environment-cluster", env.stack_name(""): f"{env.project}-environment-",
            }  # fmt: skip
            self.tables.append((env.stack_name(""), f"{env.project}-account-{env.account.id}", names, env.name))

    def _table(self, stack: str):
        return next((t for t in self.tables if stack.startswith(t[0]) or stack == t[1]), None)

    def neutral(self, stack: str, text: str) -> str:
        table = self._table(stack)
        if table is None:
            return text
        names, name = table[2], table[3]
        for original in sorted(names, key=len, reverse=True):
            text = text.replace(original, names[original])
        return re.sub(rf'(?<=[":]){re.escape(name)}(?=["/-])', "ENVIRONMENT", text)

    def restore(self, stack: str, text: str) -> str:
        table = self._table(stack)
        if table is None:
            return text
        names, name = table[2], table[3]
        text = text.replace("ENVIRONMENT", name)
        for original in sorted(names, key=lambda o: len(names[o]), reverse=True):
            text = text.replace(names[original], original)
        return text


def lint_all(parliament, documents: list[PolicyDocument], names: EnvironmentNeutral | None = None) -> list[Finding]:
    """One finding per (issue, location, Sid, actions, detail), naming the stacks it was seen in. With ``names``,
    documents equal but for their environment's names are analysed once."""
    merged: dict[tuple, Finding] = {}
    analysed: dict[tuple, list[Finding]] = {}
    for document in documents:
        text = names.neutral(document.stack, document.text) if names else document.text
        shape = (document.location, document.kind, text)
        if shape not in analysed:
            analysed[shape] = lint(parliament, dataclasses.replace(document, text=text))
        for finding in analysed[shape]:
            if names:
                finding = dataclasses.replace(finding, detail=names.restore(document.stack, finding.detail))
            seen = merged.get(finding.key())
            stacks = tuple(sorted({*(seen.stacks if seen else ()), document.stack}))
            merged[finding.key()] = Finding(*finding.key(), stacks=stacks)
    return sorted(merged.values(), key=Finding.key)


# --- the allowlist -----------------------------------------------------------------------------

ENTRY_FIELDS = {"issue", "location", "sid", "actions", "reason", "source"}
# The field that once marked a known defect waiting for a fix (issue 13's fences closed the last ones): a defect is
# fixed in its construct, never accepted, so an entry carrying it is refused with how to proceed.
DEFECT_FIELD = "fix_in_code"


def load_allowlist(path: Path, known_issues: set[str]) -> list[dict]:
    """The entries of ``path``, refused with the entry, the field and the fix when one is not justified."""
    entries = yaml.safe_load(path.read_text()) or []
    problems = []
    for index, entry in enumerate(entries, start=1):
        where = f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}, entry {index}"
        if not isinstance(entry, dict):
            problems.append(f"{where}: an entry is a mapping with issue, location, reason and source")
            continue
        where += f" ({entry.get('issue')} at {entry.get('location')})"
        if DEFECT_FIELD in entry:
            problems.append(f"{where}: field {DEFECT_FIELD!r}: a defect is not accepted; change the policy in the "
                            "construct that writes it and remove the entry, or, if AWS requires the policy as it is, "
                            f"drop {DEFECT_FIELD!r} and state that fact in 'reason' with its source")
        for key in sorted(set(entry) - ENTRY_FIELDS - {DEFECT_FIELD}):
            problems.append(f"{where}: unknown field {key!r}; the fields are {sorted(ENTRY_FIELDS)}")
        if isinstance(entry.get("location"), list) and all(isinstance(g, str) and g for g in entry["location"]):
            entry = {**entry, "location": ",".join(entry["location"])}  # checked as a string below
        for key in ("issue", "location", "reason", "source"):
            if not isinstance(entry.get(key), str) or not entry[key].strip():
                problems.append(f"{where}: field {key!r} is missing or empty; "
                                + ("say why the finding is acceptable: a fact of AWS or the platform"
                                   if key == "reason" else "fill it in"))
        reason = str(entry.get("reason") or "")
        if reason.strip() and (len(reason.split()) < 8 or reason.lower().lstrip().startswith("follow")):
            problems.append(f"{where}: field 'reason' must state the fact that makes the finding acceptable "
                            "(8 words or more, not a follow-up note)")
        if entry.get("source") and not str(entry["source"]).startswith("https://"):
            problems.append(f"{where}: field 'source' must be the https URL of the documentation that says so")
        if entry.get("issue") and entry["issue"] not in known_issues:
            problems.append(f"{where}: field 'issue' is not a parliament issue code; use one of {sorted(known_issues)}")
        actions = entry.get("actions", [])
        if not isinstance(actions, list) or not all(isinstance(a, str) and a for a in actions):
            problems.append(f"{where}: field 'actions' is a list of action globs (e.g. ['codeconnections:*'])")
    if problems:
        raise AllowlistError("\n".join(problems))
    return entries


def _locations(entry: dict) -> list[str]:
    return entry["location"] if isinstance(entry["location"], list) else [entry["location"]]


def _applies(entry: dict, finding: Finding) -> bool:
    """Issue, location and Sid match; the actions are judged one by one in ``gate``."""
    if entry["issue"] != finding.issue:
        return False
    if not any(fnmatch.fnmatchcase(finding.location, glob) for glob in _locations(entry)):
        return False
    return "sid" not in entry or (finding.sid is not None and fnmatch.fnmatchcase(finding.sid, entry["sid"]))


def _glob_matches(glob: str, action: str) -> bool:
    return fnmatch.fnmatchcase(action.lower(), glob.lower())  # IAM action names are case-insensitive


def gate(findings: list[Finding], entries: list[dict]) -> tuple[list[Finding], list[str]]:
    """(findings, or the actions of findings, no entry accepts; entries or action globs that accept nothing).

    An entry without ``actions`` accepts the whole finding; one with ``actions`` accepts the finding's
    actions its globs match, so each action of a finding is justified by some entry."""
    left, used_entries, used_globs = [], set(), set()
    for finding in findings:
        applying = [i for i, e in enumerate(entries) if _applies(e, finding)]
        whole = [i for i in applying if not entries[i].get("actions")]
        used_entries.update(whole)
        uncovered = []
        for action in finding.actions if not whole else ():
            covering = [(i, g) for i in applying for g in entries[i].get("actions", []) if _glob_matches(g, action)]
            used_entries.update(i for i, _ in covering)
            used_globs.update(covering)
            if not covering:
                uncovered.append(action)
        if not whole and (uncovered or not finding.actions):
            left.append(Finding(finding.issue, finding.location, finding.sid, tuple(uncovered) or finding.actions,
                                finding.detail, finding.stacks))
    stale = []
    for i, entry in enumerate(entries):
        name = f"entry {i + 1} ({entry['issue']} at {entry['location']}, Sid {entry.get('sid', '*')})"
        if i not in used_entries:
            stale.append(f"{name} matches no finding: remove it")
        else:
            stale += [f"{name}: action glob {g!r} matches no finding: remove it"
                      for g in entry.get("actions", []) if (i, g) not in used_globs]
    return left, stale


def explain(finding: Finding) -> str:
    return (f"{finding}\n    fix the policy in the construct that writes it, or, if AWS requires it, add an entry "
            f"to {ALLOWLIST.relative_to(ROOT)} (issue {finding.issue}, location {finding.location}"
            + (f", sid {finding.sid}" if finding.sid else "")
            + (f", actions {list(finding.actions)}" if finding.actions else "")
            + ") with the reason and its source URL")


# --- fixtures and tests ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def parliament():
    try:
        return _parliament()
    except ImportError as err:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(f"parliament is not installed ({err}): run ./scripts/test, which installs Pipfile.lock")


@pytest.fixture(scope="module")
def known_issues(parliament) -> set[str]:
    return set(parliament.config)


@pytest.fixture(scope="module")
def stacks(synthesized) -> dict[str, dict]:
    return {name: synthesized.stack(name).json for name in synthesized.names}


@pytest.fixture(scope="module")
def collected(stacks, settings):
    return collect_policies(stacks, [env.stack_name("") for env in settings.values()])


@pytest.fixture(scope="module")
def findings(parliament, collected, allowlist, settings) -> list[Finding]:
    """Linted only once the allowlist has been checked, so an unjustified entry fails first."""
    return lint_all(parliament, collected[0], EnvironmentNeutral(list(settings.values())))


@pytest.fixture(scope="module")
def allowlist(known_issues) -> list[dict]:
    return load_allowlist(ALLOWLIST, known_issues)


def test_every_policy_of_every_stack_is_found_and_every_reference_resolves(collected, stacks):
    documents, unresolved = collected
    assert not unresolved, "references with no realistic value:\n" + "\n".join(unresolved)
    kinds = {(d.location.split(".")[0], d.attribute, d.kind) for d in documents}
    print(f"\nparliament lints {len(documents)} policy documents: "
          + ", ".join(f"{t}.{a} ({k})" for t, a, k in sorted(kinds)))
    # the kinds the constructs write today; a kind that disappears means the search broke
    assert {
        ("aws_iam_role", TRUST_ATTRIBUTE, "trust"), ("aws_iam_role_policy", "policy", "identity"),
        ("aws_iam_policy", "policy", "identity"), ("aws_kms_key", "policy", "resource"),
        ("aws_s3_bucket_policy", "policy", "resource"),
    } <= kinds
    holders = {name for name, tf in stacks.items() if set(tf.get("resource", {})) & POLICY_HOLDERS}
    assert holders <= {d.stack for d in documents}, "a stack with policy resources yields no policy: search blind?"
    for document in documents:
        assert "${" not in document.text, f"{document.location}: unresolved after substitution"


def test_no_finding_is_left_and_no_entry_is_stale(findings, allowlist):
    left, stale = gate(findings, allowlist)
    accepted = [f for f in findings if f not in left]
    print(f"\nparliament findings: {len(findings)}, accepted by {ALLOWLIST.name}: {len(accepted)}")
    for finding in accepted:
        print(f"  accepted  {finding}")
    assert not left, "parliament findings with no allowlist entry:\n" + "\n".join(map(explain, left))
    assert not stale, "stale allowlist entries:\n" + "\n".join(stale)


def test_every_entry_states_a_fact_with_its_source(allowlist):
    """load_allowlist refuses an unjustified entry; this pins that the shipped file passes it."""
    assert allowlist, f"{ALLOWLIST} is empty, yet today's policies have findings"
    for entry in allowlist:
        assert entry["source"].startswith("https://"), entry


# --- the gate, shown failing on deliberately bad input -----------------------------------------


def _document(policy: dict, kind: str = "identity", location: str = "aws_iam_role_policy.bad/policy"):
    return PolicyDocument("twentycrm-bad-state", location, "policy", kind, json.dumps(policy))


def test_the_gate_fails_on_a_known_bad_policy(parliament, allowlist):
    """An action that does not exist and iam:PassRole on every role must both be left by the gate."""
    bad = {"Version": "2012-10-17", "Statement": [
        {"Sid": "Typo", "Effect": "Allow", "Action": "s3:GetObjects", "Resource": "arn:aws:s3:::bucket/*"},
        {"Sid": "PassAnyRole", "Effect": "Allow", "Action": "iam:PassRole", "Resource": "*"},
    ]}  # fmt: skip
    left, _ = gate(lint_all(parliament, [_document(bad)]), allowlist)
    issues = {(f.issue, f.sid, f.actions) for f in left}
    assert ("UNKNOWN_ACTION", "Typo", ("s3:GetObjects",)) in issues, issues
    # linted around the unknown action: the other statement still gets every check
    assert ("RESOURCE_STAR", "PassAnyRole", ("iam:PassRole",)) in issues, issues
    assert any(f.issue == "PERMISSIONS_MANAGEMENT_ACTIONS" and "iam:passrole" in f.actions for f in left), left
    assert "s3:GetObjects" in explain(next(f for f in left if f.issue == "UNKNOWN_ACTION"))


def test_a_reference_is_linted_as_the_arn_it_resolves_to(parliament):
    """Object actions on ${aws_s3_bucket.x.arn} (a bucket ARN, not an object ARN) is a real mismatch."""
    tf = {"provider": {"aws": [{"region": "sa-east-1"}]},
          "resource": {"aws_s3_bucket": {"b": {"bucket": "example-files"}}}}  # fmt: skip
    text = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Sid": "Objects", "Effect": "Allow", "Action": "s3:GetObject", "Resource": "${aws_s3_bucket.b.arn}"}]})
    resolved = StackReferences("twentycrm-bad-apps", tf, {}).substitute(text)
    assert "arn:aws:s3:::example-files" in resolved
    found = lint_all(parliament, [PolicyDocument("twentycrm-bad-apps", "x.y", "policy", "identity", resolved)])
    assert ("RESOURCE_MISMATCH", ("s3:GetObject",)) in {(f.issue, f.actions) for f in found}, found


def test_a_reference_with_no_known_rendering_is_refused():
    tf = {"provider": {"aws": [{"region": "sa-east-1"}]}, "resource": {"aws_mq_broker": {"b": {}}}}
    with pytest.raises(UnresolvedReference, match="ARN_FORMATS"):
        StackReferences("twentycrm-bad-apps", tf, {}).substitute('"${aws_mq_broker.b.arn}"')


def test_a_trust_policy_is_linted_with_its_role_as_the_resource(parliament):
    stacks = {"twentycrm-bad-state": {"provider": {"aws": [{"region": "sa-east-1"}]}, "resource": {"aws_iam_role": {
        "r": {"//": {"metadata": {"path": "twentycrm-bad-state/deploy/role"}}, "name": "twentycrm-bad-deploy",
              "assume_role_policy": json.dumps({"Version": "2012-10-17", "Statement": [
                  {"Effect": "Allow", "Principal": {"AWS": "not-an-account"}, "Action": "sts:AssumeRole"}]})}}}}}
    documents, unresolved = collect_policies(stacks, ["twentycrm-bad-"])
    assert not unresolved and [d.kind for d in documents] == ["trust"]
    assert '"Resource": "arn:aws:iam::111122223333:role/twentycrm-bad-deploy"' in documents[0].text
    assert documents[0].location == "aws_iam_role.state/deploy/role"
    assert "UNKNOWN_PRINCIPAL" in {f.issue for f in lint_all(parliament, documents)}


def test_resource_policies_of_other_services_are_found(parliament):
    """A topic, secret or log resource policy is linted the day a construct adds one, with no change here."""
    statement = {"Sid": "AccountPublishes", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:root"},
                 "Action": "sns:Publish", "Resource": "${aws_sns_topic.alarms.arn}"}
    stacks = {"twentycrm-bad-platform": {"provider": {"aws": [{"region": "sa-east-1"}]}, "resource": {
        "aws_sns_topic": {"alarms": {"name": "twentycrm-bad-alarms"}},
        "aws_sns_topic_policy": {"p": {"//": {"metadata": {"path": "twentycrm-bad-platform/monitoring/topic-policy"}},
                                       "policy": json.dumps({"Version": "2012-10-17", "Statement": [statement]})}},
        "aws_cloudwatch_log_resource_policy": {"l": {
            "//": {"metadata": {"path": "twentycrm-bad-platform/monitoring/log-policy"}},
            "policy_document": json.dumps({"Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Principal": {"Service": "events.amazonaws.com"},
                "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                "Resource": "arn:aws:logs:sa-east-1:111122223333:log-group:/aws/events/*:*"}]})}},
    }}}  # fmt: skip
    documents, unresolved = collect_policies(stacks, ["twentycrm-bad-"])
    assert not unresolved
    assert {(d.location, d.attribute, d.kind) for d in documents} == {
        ("aws_sns_topic_policy.platform/monitoring/topic-policy", "policy", "resource"),
        ("aws_cloudwatch_log_resource_policy.platform/monitoring/log-policy", "policy_document", "resource"),
    }
    assert "arn:aws:sns:sa-east-1:111122223333:twentycrm-bad-alarms" in documents[0].text + documents[1].text
    assert not [f for f in lint_all(parliament, documents) if f.issue in ("MALFORMED", "EXCEPTION", "INVALID_ARN")]


def test_a_policy_document_data_source_is_rendered_and_linted(parliament):
    data = {"statement": [{"sid": "Read", "effect": "Allow", "actions": ["s3:GetObject"],
                           "resources": ["arn:aws:s3:::bucket/*"],
                           "principals": [{"type": "AWS", "identifiers": ["arn:aws:iam::111122223333:root"]}],
                           "condition": [{"test": "Bool", "variable": "aws:SecureTransport", "values": ["true"]}]}]}
    rendered = render_policy_document(data)
    assert json.loads(rendered)["Statement"][0] == {
        "Sid": "Read", "Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::bucket/*",
        "Principal": {"AWS": "arn:aws:iam::111122223333:root"}, "Condition": {"Bool": {"aws:SecureTransport": "true"}},
    }  # fmt: skip
    document = PolicyDocument("twentycrm-bad-apps", "data.aws_iam_policy_document.x", "json", "resource", rendered)
    assert lint_all(parliament, [document]) == []  # a well-formed bucket read: parliament has nothing to say


def test_a_trust_policy_from_a_policy_document_data_source_is_linted_as_one():
    trust = {"statement": [{"effect": "Allow", "actions": ["sts:AssumeRole"],
                            "principals": [{"type": "Service", "identifiers": ["ec2.amazonaws.com"]}]}]}
    stacks = {"twentycrm-bad-platform": {"provider": {"aws": [{"region": "sa-east-1"}]},
        "data": {"aws_iam_policy_document": {"trust": trust}},
        "resource": {"aws_iam_role": {"r": {"name": "twentycrm-bad-node",
                                            "assume_role_policy": "${data.aws_iam_policy_document.trust.json}"}}}}}
    documents, unresolved = collect_policies(stacks, ["twentycrm-bad-"])
    assert not unresolved and [(d.location, d.kind) for d in documents] == [
        ("data.aws_iam_policy_document.platform/trust", "trust")]
    assert '"Resource": "arn:aws:iam::111122223333:role/twentycrm-bad-node"' in documents[0].text


def test_an_entry_without_a_reason_is_refused(tmp_path, known_issues):
    path = tmp_path / "parliament-allowlist.yaml"
    source = "https://docs.aws.amazon.com/kms/latest/developerguide/key-policy-overview.html"
    path.write_text(yaml.safe_dump([{"issue": "RESOURCE_STAR", "location": "aws_kms_key.*", "reason": "",
                                     "source": source}]))
    with pytest.raises(AllowlistError) as refused:
        load_allowlist(path, known_issues)
    assert "entry 1 (RESOURCE_STAR at aws_kms_key.*): field 'reason' is missing or empty" in str(refused.value)
    assert str(path) in str(refused.value)


def test_an_entry_that_defers_a_defect_is_refused(tmp_path, known_issues):
    path = tmp_path / "parliament-allowlist.yaml"
    path.write_text(yaml.safe_dump([{
        "issue": "RESOURCE_STAR", "location": "aws_iam_role_policy.state/deploy/platform-access", "fix_in_code": True,
        "reason": "Defect: every action of every service on every resource, to be fenced by tag later.",
        "source": "https://docs.aws.amazon.com/IAM/latest/UserGuide/access_tags.html"}]))  # fmt: skip
    with pytest.raises(AllowlistError) as refused:
        load_allowlist(path, known_issues)
    assert "field 'fix_in_code': a defect is not accepted; change the policy" in str(refused.value)


def test_an_entry_that_matches_nothing_is_stale(findings, allowlist):
    entry = {"issue": "RESOURCE_STAR", "location": "aws_iam_role_policy.no-such-construct/*", "reason": "x",
             "source": "https://example.com"}
    left, stale = gate(findings, [*allowlist, entry])
    assert not left and len(stale) == 1 and "no-such-construct" in stale[0], stale
    narrowed = [{**e, "actions": [*e["actions"], "nosuch:Action"]} if e.get("actions") else e for e in allowlist]
    assert any("'nosuch:Action' matches no finding" in s for s in gate(findings, narrowed)[1])


def test_neutral_documents_give_the_findings_of_the_originals(parliament, collected, settings):
    """The speed-up is exact: the platform and apps stacks' policies (the state stacks' boundaries are the slow
    ones to lint twice) give the same findings, details included, neutral or not; and the three environments'
    deploy boundaries become one shape."""
    names = EnvironmentNeutral(list(settings.values()))
    documents = [d for d in collected[0] if d.stack.endswith(("-platform", "-apps"))]
    assert len({d.stack for d in documents}) == 2 * len(settings)
    assert lint_all(parliament, documents, names) == lint_all(parliament, documents)
    boundary = "aws_iam_policy.state/deploy/boundary"
    boundaries = {names.neutral(d.stack, d.text) for d in collected[0] if d.location == boundary}
    assert len(boundaries) == 1, "the deploy boundaries still differ between environments once neutral"
