"""The ``[apps]`` section: Twenty on the cluster (image, namespace, file bucket, replicas)."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, Field

from modules.settings.fields import _DNS_LABEL, BucketName, _Model, _pattern

_IMAGE_TAG = re.compile(r"^v[0-9]+\.[0-9]+\.[0-9]+$")


def _image_tag(value: str) -> str:
    if not _IMAGE_TAG.match(value):
        raise ValueError(
            f"{value!r} is not a released Twenty version; use the tag of a release as 'vMAJOR.MINOR.PATCH' "
            "(e.g. 'v1.14.0'). Moving tags such as 'latest' are refused: a node pulling a new image would "
            "run code the database was not migrated for"
        )
    return value


class AppsSettings(_Model):
    """What the apps stack deploys on the cluster: Twenty (two Helm releases), its file bucket, sizes."""

    twenty_image_tag: Annotated[str, AfterValidator(_image_tag)] = Field(
        description="Tag of twentycrm/twenty for both releases (server, worker and migrations), e.g. 'v1.14.0'."
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
    redis_volume_size_gb: int = Field(default=10, ge=1, le=1000, description="gp3 volume of Redis's append-only file.")
    secret_revision: int = Field(
        default=1,
        ge=1,
        description="Bump after rotating the database password: Terraform rewrites the write-only Kubernetes Secret.",
    )
