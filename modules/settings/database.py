"""The ``[database]`` section: the PostgreSQL host (DB-x00), its secrets and backups."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, Field

from modules.settings.fields import BucketName, ComponentId, InstanceType, _Model, _pattern

# PostgreSQL majors that Twenty runs on (it needs 15 or newer; its docker-compose uses postgres:16)
# and that Amazon Linux 2023 packages as postgresql<N>-server. Add one here once both hold.
POSTGRES_VERSIONS = (15, 16)


# PostgreSQL's end-of-life dates for the versions people may carry over from older documents.
_POSTGRES_EOL = {11: "November 2023", 12: "November 2024", 13: "November 2025", 14: "November 2026"}


_TIME_OF_DAY = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$")


_PG_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


# Memory (GiB) of the instance families the database may run on: PostgreSQL's memory settings are
# derived from it. Sizes large..4xlarge; t3.medium too, for a cheap sandbox.
_GIB_PER_VCPU = {"t3": 4, "t3a": 4, "m5": 4, "m6i": 4, "m7i": 4, "m6a": 4, "m7a": 4, "r5": 8, "r6i": 8, "r7i": 8}


_VCPUS = {"large": 2, "xlarge": 4, "2xlarge": 8, "4xlarge": 16}


def instance_memory_gib(instance_type: str) -> int | None:
    """The memory of a known x86_64 instance type, or None when the table does not know it."""
    if instance_type in ("t3.medium", "t3a.medium"):
        return 4
    family, _, size = instance_type.partition(".")
    if family in _GIB_PER_VCPU and size in _VCPUS:
        return _GIB_PER_VCPU[family] * _VCPUS[size]
    return None


def _postgres_version(value: int) -> int:
    allowed = ", ".join(str(v) for v in POSTGRES_VERSIONS)
    if value in POSTGRES_VERSIONS:
        return value
    if value in _POSTGRES_EOL:
        why = f"PostgreSQL {value} is end-of-life ({_POSTGRES_EOL[value]}) and Twenty requires 15 or newer"
        if value == 13:
            why = (
                "PostgreSQL 13 (the version the infrastructure document names) is end-of-life (November 2025) "
                "and Twenty requires 15 or newer"
            )
    elif value < 15:
        why = f"PostgreSQL {value} is end-of-life and Twenty requires 15 or newer"
    else:
        why = f"PostgreSQL {value} is not a version this project knows Amazon Linux 2023 packages and Twenty supports"
    raise ValueError(f"{why}; allowed values are {allowed} (default 16, the version Twenty's own docker set-up uses)")


def _database_instance(value: str) -> str:
    if instance_memory_gib(value) is None:
        families = ", ".join(sorted(_GIB_PER_VCPU))
        raise ValueError(
            f"{value!r} is not an instance type the database knows the memory of (its PostgreSQL memory settings "
            f"are derived from it); use t3.medium or a {families} instance of size large, xlarge, 2xlarge or 4xlarge"
        )
    return value


class DatabaseSettings(_Model):
    """DB-x00: PostgreSQL on an EC2 instance with a GP3 data volume, its secrets and backups."""

    id: ComponentId
    instance_type: Annotated[InstanceType, AfterValidator(_database_instance)]
    volume_size_gb: int = Field(ge=20, le=16384, description="Size of the GP3 data volume in GiB.")
    root_volume_size_gb: int = Field(default=20, ge=8, le=200, description="Size of the encrypted root volume.")
    postgres_version: Annotated[int, AfterValidator(_postgres_version)] = Field(
        default=16, description="PostgreSQL major version; the document's 13 is end-of-life, Twenty needs >= 15."
    )
    database_name: Annotated[str, _pattern(_PG_NAME, "a PostgreSQL identifier (lower-case letters, digits, _)")] = (
        "twenty"
    )
    username: Annotated[str, _pattern(_PG_NAME, "a PostgreSQL identifier (lower-case letters, digits, _)")] = "twenty"
    max_connections: int = Field(default=100, ge=20, le=1000)
    termination_protection: bool = Field(
        default=False,
        description="EC2 termination protection on the host and prevent_destroy on the data volume (prod: true).",
    )
    secret_recovery_days: int = Field(
        default=7, ge=7, le=30, description="Days a deleted secret can still be restored."
    )
    snapshot_retention_days: int = Field(
        default=7, ge=1, le=1000, description="Days each daily DLM snapshot of the data volume is kept."
    )
    snapshot_time_utc: Annotated[str, _pattern(_TIME_OF_DAY, "a time of day 'HH:MM' (UTC)")] = Field(
        default="05:00", description="When DLM starts the daily snapshot (UTC; 05:00 is 02:00 in Sao Paulo)."
    )
    dump_bucket: BucketName = Field(description="Globally unique S3 bucket for the nightly pg_dump files.")
    dump_time_utc: Annotated[str, _pattern(_TIME_OF_DAY, "a time of day 'HH:MM' (UTC)")] = Field(
        default="04:30", description="When the host runs the nightly pg_dump (UTC)."
    )
    dump_retention_days: int = Field(
        default=30, ge=1, le=3650, description="Days a dump stays current before S3 expires it."
    )
    dump_noncurrent_days: int = Field(
        default=7, ge=1, le=3650, description="Days an overwritten or deleted dump version is kept after that."
    )

    @property
    def memory_gib(self) -> int:
        return instance_memory_gib(self.instance_type)  # type: ignore[return-value]  # validated above
