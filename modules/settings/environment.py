"""One environment file as a whole: the model, the loader, the checks across files."""

from __future__ import annotations

import ipaddress
import tomllib
from collections import Counter
from itertools import combinations
from pathlib import Path
from typing import Annotated

from pydantic import Field, ValidationError, model_validator

from modules.settings.account import ACCOUNT_SCOPE, ACCOUNT_WIDE_FIELDS, AccountSettings
from modules.settings.apps import (
    MAINTENANCE_CONNECTIONS, POOLS_PER_PROCESS, SERVER_MAX_SURGE, WORKER_MAX_SURGE, AppsSettings, connection_budget,
)  # fmt: skip
from modules.settings.cluster import ClusterSettings, deploy_role_admin_problems
from modules.settings.database import DatabaseSettings
from modules.settings.edge import DnsSettings, LoadBalancerSettings, dnssec_problems
from modules.settings.fields import _ENV_NAME, _REGION, DomainName, SettingsError, _Model, _pattern
from modules.settings.images import KUBECTL_TAGS, LOCK_FILE, PinnedImages, load_lock, pin_images, prefix_problems
from modules.settings.network import NetworkSettings, StateSettings
from modules.settings.operations import (
    CiSettings,
    MonitoringSettings,
    deploy_after_problems,
    github_environment_problems,
    handed_over_problems,
)
from modules.settings.waf import WafSettings


class EnvironmentSettings(_Model):
    """One environment, as read from ``envs/<name>.toml``. The file name is the environment name."""

    name: Annotated[str, Field(pattern=_ENV_NAME.pattern)]
    source: str = Field(description="The file this was read from, for messages.", exclude=True)
    project: Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{1,20}$")] = "twentycrm"
    region: Annotated[str, _pattern(_REGION, "an AWS region code such as 'sa-east-1'")] = "sa-east-1"
    domain: DomainName
    account: AccountSettings
    state: StateSettings
    network: NetworkSettings
    cluster: ClusterSettings
    database: DatabaseSettings
    dns: DnsSettings
    load_balancer: LoadBalancerSettings
    waf: WafSettings = Field(default_factory=WafSettings)
    monitoring: MonitoringSettings = Field(default_factory=MonitoringSettings)
    ci: CiSettings
    apps: AppsSettings
    # Not in the file: the loader pins the images from images.lock.toml (modules/settings/images.py).
    images: PinnedImages | None = Field(default=None, exclude=True)

    @model_validator(mode="after")
    def _names_fit_the_zone(self) -> "EnvironmentSettings":
        """Every certificate name is validated and aliased through records in the zone, so it must lie inside it."""
        problems = []
        zone = self.zone_name
        if zone != self.domain and not self.domain.endswith(f".{zone}"):
            problems.append(
                f"dns.existing_zone '{zone}' must be the domain '{self.domain}' or a parent of it, "
                "because the certificate is validated and the alias record written in that zone"
            )
        for i, name in enumerate(self.dns.extra_certificate_names):
            if name == self.domain or name in self.dns.extra_certificate_names[:i]:
                problems.append(f"dns.extra_certificate_names[{i}] '{name}' is listed twice (the domain is always on)")
            elif name != zone and not name.endswith(f".{zone}"):
                problems.append(
                    f"dns.extra_certificate_names[{i}] '{name}' lies outside the zone '{zone}'; "
                    f"use a name ending in '.{zone}'"
                )
        longest = f"{self.project}-{self.name}-server"
        if len(longest) > 32:
            problems.append(
                f"project '{self.project}' and environment '{self.name}' make the target group name '{longest}' "
                f"{len(longest)} characters long; AWS allows 32, so shorten one of them"
            )
        if self.load_balancer.access_log_bucket == self.state.bucket:
            problems.append("load_balancer.access_log_bucket must differ from state.bucket")
        problems += self._account_stack_clashes()
        problems += dnssec_problems(self.dns)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def _account_stack_clashes(self) -> list[str]:
        """Names the environment shares with its account stack, which exists even when the environment is alone in
        its account: checked per file, so the first (or only) environment of an account is checked too."""
        problems = []
        for field, bucket in self.buckets().items():
            if field != "account.state_bucket" and bucket == self.account.state_bucket:
                problems.append(f"account.state_bucket must differ from {field} ('{bucket}'): the account stack's "
                                "state must outlive every environment")
        if self.region == self.account.region and self.state.lock_table == self.account.lock_table:
            problems.append(f"state.lock_table '{self.state.lock_table}' is the account stack's lock table "
                            "(account.lock_table, same region); the state stack would try to create it again: pick "
                            "another")
        if self.name in self.account.shared_with:
            problems.append(f"account.shared_with lists '{self.name}', this environment itself; list only the other "
                            "environments in this account")
        return problems

    @model_validator(mode="after")
    def _apps_fit(self) -> "EnvironmentSettings":
        problems = []
        if self.server_min_replicas > self.apps.server_max_replicas:
            problems.append(
                f"apps.server_max_replicas ({self.apps.server_max_replicas}) is below the minimum of server pods "
                f"({self.server_min_replicas}, apps.server_min_replicas or cluster.frontend.desired_size); raise it"
            )
        others = {"state.bucket": self.state.bucket, "database.dump_bucket": self.database.dump_bucket,
                  "load_balancer.access_log_bucket": self.load_balancer.access_log_bucket}  # fmt: skip
        for field, bucket in others.items():
            if self.apps.files_bucket == bucket:
                problems.append(f"apps.files_bucket must differ from {field} ('{bucket}')")
        worst = connection_budget(self.apps)
        if worst > self.database.max_connections:
            apps = self.apps
            problems.append(
                f"database.max_connections ({self.database.max_connections}) is below Twenty's worst case of {worst} "
                f"connections: (apps.server_max_replicas {apps.server_max_replicas} + {SERVER_MAX_SURGE} rollout surge "
                "+ "
                f"apps.worker_replicas {apps.worker_replicas} + {WORKER_MAX_SURGE} rollout surge + 1 migration Job) x "
                f"{POOLS_PER_PROCESS} pools x apps.pg_pool_max_connections "
                f"{apps.pg_pool_max_connections} + {MAINTENANCE_CONNECTIONS} for maintenance; raise "
                "database.max_connections or lower those apps fields (docs/settings.md, connection budget)"
            )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def twenty_connection_limit(self) -> int:
        """The CONNECTION LIMIT of Twenty's database role on the host (modules/database.py uses this one value):
        max_connections less the maintenance headroom (superuser slots, the nightly pg_dump, operators), so
        surging or lingering pods can never take the connections an operator needs. ``_apps_fit`` has checked
        that Twenty's worst case (``twenty_connections``) fits under it."""
        return self.database.max_connections - MAINTENANCE_CONNECTIONS

    @property
    def server_min_replicas(self) -> int:
        """The server HPA's minimum: the setting, or one pod per frontend node."""
        return self.apps.server_min_replicas or self.cluster.frontend.desired_size

    @property
    def zone_name(self) -> str:
        """The hosted zone that holds this environment's records: an existing one, or one for the domain."""
        return self.dns.existing_zone or self.domain

    @property
    def certificate_names(self) -> tuple[str, ...]:
        return (self.domain, *self.dns.extra_certificate_names)

    @model_validator(mode="after")
    def _ci_identity_fits(self) -> "EnvironmentSettings":
        problems = [
            *github_environment_problems(self.ci, environment=self.name),
            *handed_over_problems(self.ci, environment=self.name, state_backend=self.state.own_backend,
                                  account_backend=self.account.own_backend),
            *deploy_role_admin_problems(self.cluster, deploy_role_name=self.stack_name("deploy")),
        ]
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @model_validator(mode="after")
    def _ids_unique(self) -> "EnvironmentSettings":
        counts = Counter(self.component_ids())
        dupes = sorted(i for i, n in counts.items() if n > 1)
        if dupes:
            raise ValueError(f"component IDs must be unique within one environment; repeated: {', '.join(dupes)}")
        return self

    @model_validator(mode="after")
    def _buckets_distinct(self) -> "EnvironmentSettings":
        if self.database.dump_bucket == self.state.bucket:
            raise ValueError(
                f"database.dump_bucket and state.bucket are both '{self.state.bucket}'; give the dumps their own bucket"
            )
        return self

    def component_ids(self) -> list[str]:
        n, c = self.network, self.cluster
        return [
            n.vpc_id, n.network_id, n.internet_gateway_id, n.nat_gateway_id,
            *(s.id for s in n.subnets),
            c.id, c.control_plane_id, c.node_groups_id,
            self.database.id,
            self.dns.id, self.dns.certificate_id, self.load_balancer.id,
        ]  # fmt: skip

    def buckets(self) -> dict[str, str]:
        """Every S3 bucket the environment names, by field (S3 bucket names are global across accounts)."""
        return {
            "state.bucket": self.state.bucket, "load_balancer.access_log_bucket": self.load_balancer.access_log_bucket,
            "database.dump_bucket": self.database.dump_bucket, "apps.files_bucket": self.apps.files_bucket,
            "account.state_bucket": self.account.state_bucket,
            "state.access_log_bucket": self.state.access_log_bucket,  # derived: <state.bucket>-access-logs
        }  # fmt: skip

    def iam_name_prefixes(self) -> tuple[str, ...]:
        """The prefixes of the IAM roles, profiles and policies the environment creates and its deploy role may
        write (modules/deploy_role.py: ``<project>-<env>-*`` and ``<cluster name>-*``). IAM names are per account."""
        return (f"{self.project}-{self.name}-", f"{self.cluster.name}-")

    def stack_name(self, part: str) -> str:
        return f"{self.project}-{self.name}-{part}"

    def component(self, component_id: str) -> str:
        """The tag value that makes a document ID unique across environments (the document reuses some)."""
        return f"{self.name}/{component_id}"


def _describe(err: ValidationError, source: str) -> list[str]:
    problems = []
    for e in err.errors():
        field = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key; remove it or check its spelling against docs/settings.md"
        elif e["type"] == "missing":
            msg = "required field is missing; add it (see docs/settings.md)"
        elif e["type"] == "literal_error":
            msg = msg.replace("Input should be", "allowed values are")
        problems.append(f"{source}: {field}: {msg}")
    return problems


# Keys that left [ci] when the GitHub OIDC provider moved to the account stack (README, "Move the GitHub OIDC
# provider"): an old file gets where the setting went, not just "unknown key".
MOVED_CI_KEYS = {
    "oidc_provider": "moved to [account] github_oidc_provider (the provider exists once per account and the "
    "account stack <project>-account-<id> owns it); remove it from [ci] and set github_oidc_provider in [account] "
    "(docs/settings.md)",
    "existing_oidc_provider_arn": "no longer needed: the provider's ARN follows from [account] id; remove it from "
    "[ci] and, if the provider was made outside these stacks, set github_oidc_provider = \"existing\" in [account]",
}


def load_environment(path: Path, lock_file: Path = LOCK_FILE) -> EnvironmentSettings:
    """Read and validate one file, and pin its images from ``lock_file``; raise SettingsError naming the file and
    field."""
    source = str(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise SettingsError([f"{source}: not valid TOML: {err}"]) from None
    ci = data.get("ci") if isinstance(data.get("ci"), dict) else {}
    moved = [key for key in MOVED_CI_KEYS if key in ci]
    if moved:
        raise SettingsError([f"{source}: ci.{key}: {MOVED_CI_KEYS[key]}" for key in moved])
    for reserved in ("name", "source", "images"):
        if reserved in data:
            raise SettingsError([f"{source}: {reserved}: do not set it; the environment name is the file name"])
    if path.stem == ACCOUNT_SCOPE:
        raise SettingsError([f"{source}: file name: 'account' is reserved: the account stack's names "
                             "(<project>-account-<id>, alias/<project>-account-tfstate) would collide with this "
                             "environment's, and its resources carry the tag Environment = \"account\", which the "
                             "deploy roles' fences must never take for an environment's; name the file after the "
                             "environment (e.g. envs/staging.toml)"])
    if not _ENV_NAME.match(path.stem):
        raise SettingsError(
            [f"{source}: file name: '{path.stem}' is not a valid environment name; use 1-12 lower-case letters, "
             "digits or hyphens, starting with a letter (e.g. envs/staging.toml)"]
        )  # fmt: skip
    try:
        env = EnvironmentSettings(name=path.stem, source=source, **data)
    except ValidationError as err:
        raise SettingsError(_describe(err, source)) from None
    return with_images(env, lock_file)


def with_images(env: EnvironmentSettings, lock_file: Path = LOCK_FILE) -> EnvironmentSettings:
    """``env`` with its images pinned from ``lock_file``; SettingsError for a tag the lock does not hold."""
    if problems := prefix_problems(env.source, env.project, env.name):
        raise SettingsError(problems)
    version = env.cluster.kubernetes_version
    images = pin_images(env.source, lock=load_lock(lock_file), lock_path=lock_file, field_tags={
        "twenty": ("apps.twenty_image_tag", env.apps.twenty_image_tag),
        "redis": ("apps.redis_image_tag", env.apps.redis_image_tag),
        "kubectl": (f"cluster.kubernetes_version (kubectl {KUBECTL_TAGS[version]} for {version})",
                    KUBECTL_TAGS[version]),
    })  # fmt: skip
    return env.model_copy(update={"images": images})


def check_across(envs: list[EnvironmentSettings]) -> None:
    """Checks that need every file at once: peered or VPN-joined VPCs must not overlap, names must not clash
    (S3 buckets and domains everywhere, per-account names within one account), and environments that share an
    account must agree on that account's settings and stay out of each other's IAM names and domains."""
    problems = []
    for a, b in combinations(envs, 2):
        if ipaddress.IPv4Network(a.network.cidr).overlaps(ipaddress.IPv4Network(b.network.cidr)):
            problems.append(
                f"{b.source}: network.cidr: {b.network.cidr} overlaps {a.network.cidr} of {a.source}; "
                "give every environment its own range"
            )
        problems += _global_name_problems(a, b)
        if a.account.id == b.account.id:
            problems += _sharing_problems(a, b)
            problems += _shared_account_problems(a, b)
        elif a.account.state_bucket == b.account.state_bucket:
            problems.append(
                f"{b.source}: account.state_bucket: '{b.account.state_bucket}' is already the state bucket of "
                f"account {a.account.id} ({a.source}); each account stack needs its own"
            )
        if (a.ci.github_repository, a.ci.github_environment) == (b.ci.github_repository, b.ci.github_environment):
            problems.append(
                f"{b.source}: ci.github_environment: '{b.ci.github_environment}' of {b.ci.github_repository} already "
                f"deploys {a.source}; one GitHub environment per deploy role, or one approval would open two"
            )
    by_name = {env.name: env for env in envs}
    problems += deploy_after_problems({e.name: e.ci.deploy_after for e in envs}, {e.name: e.source for e in envs})
    for env in envs:
        for other in env.account.shared_with:
            if other == env.name:
                continue  # the per-file check reports it
            where = (f"'{other}' is in account {by_name[other].account.id} ({by_name[other].source})"
                     if other in by_name else f"there is no envs/{other}.toml")
            if other not in by_name or by_name[other].account.id != env.account.id:
                problems.append(f"{env.source}: account.shared_with: lists '{other}', but {where}, not in this "
                                f"account {env.account.id}; remove it, or set the same account.id in both files")
    if problems:
        raise SettingsError(problems)


def _sharing_problems(a: EnvironmentSettings, b: EnvironmentSettings) -> list[str]:
    """Two files with one account.id: a copied file that kept its source's id would otherwise land silently in
    the source's account, so each must name the other in [account] shared_with."""
    missing = [(x, y) for x, y in ((a, b), (b, a)) if y.name not in x.account.shared_with]
    if not missing:
        return []
    lists = " and ".join(f'shared_with = ["{y.name}"] in {x.source}' for x, y in missing)
    return [f"{a.source} and {b.source}: account.id: both are account {a.account.id}, and sharing an account must be "
            f"explicit: if they really share it, add {lists} ([account]); otherwise give each its own account.id "
            "(one account per environment is the stronger choice: docs/ci-cd.md, \"Accounts\")"]


def _global_name_problems(a: EnvironmentSettings, b: EnvironmentSettings) -> list[str]:
    """S3 bucket names are global across all accounts, and a domain is one name on the Internet."""
    problems = []
    if a.domain == b.domain:
        problems.append(f"{b.source}: domain: '{b.domain}' is already used by {a.source}; pick another")
    theirs = {bucket: field for field, bucket in a.buckets().items() if field != "account.state_bucket"}
    for field, bucket in b.buckets().items():
        if field != "account.state_bucket" and bucket in theirs:
            problems.append(f"{b.source}: {field}: '{bucket}' is already used by {a.source}; pick another")
        elif field == "account.state_bucket" and bucket in theirs:
            problems.append(f"{b.source}: {field}: '{bucket}' is {theirs[bucket]} of {a.source}; the account "
                            "stack's state must outlive every environment, so give it its own bucket")
    return problems


def _shared_account_problems(a: EnvironmentSettings, b: EnvironmentSettings) -> list[str]:
    """Two environments in one account: one account stack, so one set of its settings; per-account names
    (IAM, EKS, DynamoDB per region) must differ; and neither may reach into the other's IAM names or domain,
    because the deploy role's IAM and Route53 rights are scoped by those names."""
    account, problems = a.account.id, []
    where = f"already used by {a.source} in the same account {account}"
    for field in ("project", *(f"account.{f}" for f in ACCOUNT_WIDE_FIELDS)):
        mine, theirs = _field(b, field), _field(a, field)
        if mine != theirs:
            problems.append(
                f"{b.source}: {field}: '{mine}' differs from '{theirs}' in {a.source}; both are in account {account}, "
                f"whose one account stack needs one value: make them equal"
            )
    if a.cluster.name == b.cluster.name:
        problems.append(f"{b.source}: cluster.name: '{b.cluster.name}' is {where}; pick another")
    if a.region == b.region and a.state.lock_table == b.state.lock_table:
        problems.append(f"{b.source}: state.lock_table: '{b.state.lock_table}' is {where} and region; pick another")
    for mine in sorted(set(b.iam_name_prefixes())):
        for theirs in sorted(set(a.iam_name_prefixes())):
            if mine.startswith(theirs) or theirs.startswith(mine):
                problems.append(
                    f"{b.source}: IAM names '{mine}*' and '{theirs}*' of {a.source} overlap in account {account}: one "
                    "environment's deploy role could write the other's roles; rename the environment file or "
                    "cluster.name so that neither prefix starts with the other"
                )
    for inner, outer in ((a, b), (b, a)):
        if inner.domain.endswith(f".{outer.domain}"):
            problems.append(
                f"{inner.source}: domain: '{inner.domain}' lies inside '{outer.domain}' of {outer.source} in the same "
                f"account {account}: the deploy roles' Route53 rights are scoped by domain name, so one could write "
                "the other's records; use sibling domains or separate accounts"
            )
    return problems


def _field(env: EnvironmentSettings, dotted: str) -> object:
    value: object = env
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


def load_all(directory: Path) -> list[EnvironmentSettings]:
    """Every ``*.toml`` in the directory, validated one by one and then together, sorted by name."""
    files = sorted(directory.glob("*.toml"))
    if not files:
        raise SettingsError([f"{directory}: no environment files (*.toml) found; add one such as {directory}/dev.toml"])
    envs, problems = [], []
    for path in files:
        try:
            envs.append(load_environment(path))
        except SettingsError as err:
            problems.extend(err.problems)
    if problems:
        raise SettingsError(problems)
    check_across(envs)
    return envs
