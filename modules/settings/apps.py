"""The ``[apps]`` section: Twenty on the cluster (image, namespace, file bucket, replicas, pools, e-mail, Redis)."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from modules.settings.fields import _DNS_LABEL, BucketName, _Model, _pattern

_IMAGE_TAG = re.compile(r"^v([0-9]+)\.([0-9]+)\.([0-9]+)$")
# The migration Job's steps (charts/twenty/templates/migrations.yaml) were checked against Twenty 2.45:
# `database:init:prod` = setup-db + run-instance-commands, `upgrade`, `upgrade:status`. 1.x has no
# upgrade:status and a different entrypoint; a 3.x may change them again, so it is refused until checked.
TWENTY_MIN_VERSION = (2, 45, 0)
TWENTY_MAJOR = 2
# CVE-2025-49844 (Lua use-after-free, "RediShell"): the first fixed release of each (major, minor) line, from
# Redis's security advisory GHSA-4789-qfc9-5f9q (2025-10-03), which lists 8.2.2, 8.0.4, 7.4.6, 7.2.11 and 6.2.20
# (the same list: elastic/detection-rules#6269). 6.2 is left out: the chart runs the 7.x and 8.x lines. A line
# not listed here is refused until it is added.
REDIS_FIXED = {(7, 2): (7, 2, 11), (7, 4): (7, 4, 6), (8, 0): (8, 0, 4), (8, 2): (8, 2, 2)}
_REDIS_TAG = re.compile(r"^([0-9]+)\.([0-9]+)\.([0-9]+)(-[a-z0-9.]+)?$")
# Where the SMTP password must not be: a literal in the file. Secrets Manager holds it, and the setting names it
# by ARN or by a path-like name (at least one '/', e.g. twentycrm/<env>/smtp): a bare word could be the password.
_SECRET_ARN = re.compile(r"^arn:aws:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:[A-Za-z0-9/_+=.@-]+$")
_SECRET_NAME = re.compile(r"^[A-Za-z0-9_+=.@-]+(/[A-Za-z0-9_+=.@-]+)+$")
_LITERAL_PASSWORD_KEYS = ("password", "smtp_password", "email_smtp_password")


def _secret_reference(value: str) -> str:
    if _SECRET_ARN.match(value) or _SECRET_NAME.match(value):
        return value
    raise ValueError(
        "is not a Secrets Manager secret ARN (arn:aws:secretsmanager:<region>:<account>:secret:<name>) nor a "
        "path-like secret name with a '/' (e.g. 'twentycrm/<env>/smtp'); a literal password must not be in this "
        "file: store it in Secrets Manager and name that secret here (docs/apps.md, E-mail)"
    )


def _image_tag(value: str) -> str:
    match = _IMAGE_TAG.match(value)
    if not match:
        raise ValueError(
            f"{value!r} is not a released Twenty version; use the tag of a release as 'vMAJOR.MINOR.PATCH' "
            "(e.g. 'v2.45.6'). Moving tags such as 'latest' are refused: a node pulling a new image would "
            "run code the database was not migrated for"
        )
    version = tuple(int(part) for part in match.groups())
    if version[0] != TWENTY_MAJOR or version < TWENTY_MIN_VERSION:
        low = "v" + ".".join(map(str, TWENTY_MIN_VERSION))
        raise ValueError(
            f"{value!r} is outside the releases the migration Job is written for (v{TWENTY_MAJOR}.x from {low}); "
            f"pin a 2.x tag at or above {low} (docs/apps.md, 'Bump Twenty'), or check the Job's steps against "
            "the new release's entrypoint.sh before widening the range in modules/settings/apps.py"
        )
    return value


def _redis_tag(value: str) -> str:
    match = _REDIS_TAG.match(value)
    if not match:
        raise ValueError(
            f"{value!r} is not a pinned Redis version; use 'MAJOR.MINOR.PATCH[-variant]' (e.g. '7.4.6-alpine')"
        )
    version = tuple(int(part) for part in match.groups()[:3])
    fixed = REDIS_FIXED.get(version[:2])
    shown = ".".join(map(str, version))
    lines = ", ".join(f"{'.'.join(map(str, release))}+ on {major}.{minor}"
                      for (major, minor), release in REDIS_FIXED.items())  # fmt: skip
    if fixed is None:
        raise ValueError(f"Redis {shown} is not a line this chart runs; use one of {lines} (e.g. '7.4.6-alpine'); "
                         "a new line is added to REDIS_FIXED in modules/settings/apps.py once its fixed release "
                         "is known")  # fmt: skip
    if version < fixed:
        line, release = "{}.{}".format(*version[:2]), ".".join(map(str, fixed))
        raise ValueError(
            f"Redis {shown} is below the fixed release {release} of the {line} line (CVE-2025-49844, Lua "
            f"use-after-free, remote code execution); use {release} or later (e.g. '{release}-alpine')"
        )
    return value


# Twenty reads PG_DATABASE_REPLICA_URL (a second pool on a replica) and PG_POOL_*; any PG_* name would change
# the connections counted in the budget or the database the chart points at, so extra_env may not set one.
_RESERVED_ENV_PREFIX = "PG_"
_ENV_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")


def _extra_env(value: dict[str, str]) -> dict[str, str]:
    for name, setting in value.items():
        if not _ENV_NAME.match(name):
            raise ValueError(f"{name!r} is not an environment variable name; use upper-case letters, digits and '_'")
        if name.startswith(_RESERVED_ENV_PREFIX):
            raise ValueError(
                f"{name!r} is refused: PG_* variables (PG_DATABASE_REPLICA_URL, PG_POOL_*) open or size database "
                "pools outside the connection budget; remove it (the pool size is apps.pg_pool_max_connections, "
                "the database comes from the platform stack)"
            )
        if not setting:
            raise ValueError(f"{name!r} is empty; Twenty refuses empty variables, remove it or give it a value")
    return value


class EmailSettings(_Model):
    """Twenty's outgoing mail over SMTP. Without this table Twenty only logs mails (EMAIL_DRIVER=LOGGER)."""

    host: Annotated[str, Field(pattern=r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$")] = Field(
        description="SMTP server name, e.g. 'email-smtp.sa-east-1.amazonaws.com'."
    )
    port: int = Field(default=587, ge=1, le=65535, description="SMTP port (587: STARTTLS).")
    user: str = Field(min_length=1, description="SMTP user name.")
    from_address: Annotated[str, Field(pattern=r"^[^@\s]+@[a-z0-9.-]+\.[a-z]{2,}$")] = Field(
        description="Sender address of Twenty's mails."
    )
    from_name: str = Field(default="Twenty", min_length=1, description="Sender name of Twenty's mails.")
    password_secret: Annotated[str, AfterValidator(_secret_reference)] = Field(
        description="ARN or path-like name (e.g. 'twentycrm/prod/smtp') of the Secrets Manager secret whose "
        "plain-text value is the SMTP password."
    )

    @model_validator(mode="before")
    @classmethod
    def _no_literal_password(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key in _LITERAL_PASSWORD_KEYS:
                if key in data:
                    raise ValueError(
                        f"'{key}' holds the SMTP password as a literal; remove it, store the password in Secrets "
                        "Manager and set password_secret to that secret's ARN or name (docs/apps.md, E-mail)"
                    )
        return data


class AppsSettings(_Model):
    """What the apps stack deploys on the cluster: Twenty (three Helm releases), its file bucket, sizes."""

    twenty_image_tag: Annotated[str, AfterValidator(_image_tag)] = Field(
        description="Tag of twentycrm/twenty for the server, worker and migrations, e.g. 'v2.45.6' (2.x, >= v2.45.0)."
    )
    namespace: Annotated[str, _pattern(_DNS_LABEL, "a Kubernetes namespace name (lower-case DNS label)")] = Field(
        default="twenty", description="Kubernetes namespace of Twenty's releases and secrets."
    )
    files_bucket: BucketName = Field(description="Globally unique S3 bucket for Twenty's files (attachments, avatars).")
    files_noncurrent_days: int = Field(
        default=30, ge=1, le=3650, description="Days an overwritten or deleted file version is kept."
    )
    server_min_replicas: int | None = Field(
        default=None,
        ge=1,
        le=100,
        description="HPA minimum of server pods; default: the frontend node group's desired_size (one per node).",
    )
    server_max_replicas: int = Field(default=6, ge=1, le=100, description="HPA maximum of server pods.")
    worker_replicas: int = Field(default=1, ge=1, le=20, description="Worker pods (background jobs).")
    pg_pool_max_connections: int = Field(
        default=10, ge=1, le=100,
        description="Twenty's PG_POOL_MAX_CONNECTIONS: the size of each of the two pools a Twenty process opens.",
    )  # fmt: skip
    redis_image_tag: Annotated[str, AfterValidator(_redis_tag)] = Field(
        default="7.4.6-alpine", description="Tag of the redis image; at or above its line's CVE-2025-49844 fix "
        "(7.2.11, 7.4.6, 8.0.4, 8.2.2)."
    )
    redis_volume_size_gb: int = Field(default=10, ge=1, le=1000, description="gp3 volume of Redis's append-only file.")
    multiworkspace: bool = Field(
        default=False,
        description="IS_MULTIWORKSPACE_ENABLED: several workspaces on sub-domains. Refused for now: it needs a "
        "'*.<domain>' certificate name and alias record, which dns.extra_certificate_names does not accept yet.",
    )
    workspace_creation_limited_to_admins: bool = Field(
        default=True,
        description="IS_WORKSPACE_CREATION_LIMITED_TO_SERVER_ADMINS: only server admins create workspaces "
        "(the first one is always allowed).",
    )
    telemetry: bool = Field(default=False, description="TELEMETRY_ENABLED: anonymous usage data sent to Twenty.")
    email: EmailSettings | None = Field(default=None, description="SMTP mail; absent: mails are only logged.")
    secret_revision: int = Field(
        default=1,
        ge=1,
        description="Bump after rotating the database or SMTP password: Terraform rewrites the write-only Secret.",
    )
    upgrade_strategy: Literal["stop", "rolling"] = Field(
        default="stop",
        description="'stop': before the migration Job, a hook scales the server and worker to zero and waits for "
        "their pods to be gone (downtime, no old pod on a half-migrated schema); 'rolling': old pods keep running "
        "while the Job migrates (docs/apps.md, Release order).",
    )
    extra_env: Annotated[dict[str, str], AfterValidator(_extra_env)] = Field(
        default_factory=dict,
        description="More plain environment variables for Twenty's processes; PG_* names are refused.",
    )

    @field_validator("multiworkspace")
    @classmethod
    def _no_multiworkspace_yet(cls, value: bool) -> bool:
        if value:
            raise ValueError(
                "true is refused for now: workspaces live on sub-domains, which need '*.<domain>' in "
                "dns.extra_certificate_names and a wildcard alias record, and dns.extra_certificate_names does not "
                "accept a '*' name yet; keep multiworkspace = false"
            )
        return value


# Connections a Twenty process may hold per PG_POOL_MAX_CONNECTIONS: the core TypeORM data source and
# the workspace data source each open a pool of that size (docs/apps.md, "Connection budget").
POOLS_PER_PROCESS = 2
# Connections kept free for people and maintenance: PostgreSQL's superuser_reserved_connections (3),
# one pg_dump of the nightly backup and two psql sessions of an operator.
MAINTENANCE_CONNECTIONS = 3 + 1 + 2
MIGRATION_JOBS = 1
# Extra pods a rolling update adds (the Deployments' maxSurge in charts/twenty: server 1, worker 1).
SERVER_MAX_SURGE = 1
WORKER_MAX_SURGE = 1


def twenty_pods(apps: AppsSettings) -> int:
    """Most Twenty processes that can exist at once: every server the HPA allows and every worker, each with
    its rollout surge, plus the migration Job."""
    return apps.server_max_replicas + SERVER_MAX_SURGE + apps.worker_replicas + WORKER_MAX_SURGE + MIGRATION_JOBS


def twenty_connections(apps: AppsSettings) -> int:
    """Worst case of connections Twenty's own role holds at once (its CONNECTION LIMIT)."""
    return twenty_pods(apps) * POOLS_PER_PROCESS * apps.pg_pool_max_connections


def connection_budget(apps: AppsSettings) -> int:
    """Worst case of connections Twenty and its maintenance hold at once."""
    return twenty_connections(apps) + MAINTENANCE_CONNECTIONS

