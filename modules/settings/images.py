"""The image lock (``images.lock.toml``): the digest every upstream image tag is pinned to (docs/images.md).

Releases reference images by digest (``<registry>/<prefix>/<path>@sha256:…``), never by tag: a tag of an official
image is rebuilt and moves, a digest names one image index for ever. The lock maps each upstream image and tag to
its index (multi-arch manifest list) digest and the public source it was taken from; ``scripts/images lock``
rewrites an entry from the upstream registry. The loader pins every environment's images from it and refuses a
tag the lock does not hold, naming the command that adds it.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Annotated

from pydantic import Field, ValidationError

from modules.settings.fields import SettingsError, _Model

LOCK_FILE = Path(__file__).resolve().parents[2] / "images.lock.toml"
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
# The upstream image of each part of Twenty's releases; the registry host picks the pull-through cache rule.
TWENTY_IMAGE = "docker.io/twentycrm/twenty"
REDIS_IMAGE = "docker.io/library/redis"
KUBECTL_IMAGE = "registry.k8s.io/kubectl"
# kubectl of the "stop" upgrade hook per cluster minor version. kubectl is supported within one minor version of
# the API server (kubernetes.io/releases/version-skew-policy, "kubectl"): 1.34 serves a 1.35 cluster. No public
# digest of a 1.35 or 1.36 kubectl was found; a 1.36 cluster needs
# `scripts/images lock registry.k8s.io/kubectl:v1.36.0`.
KUBECTL_TAGS = {"1.35": "v1.34.1", "1.36": "v1.36.0"}
# Upstream registry host -> (pull-through cache rule's upstream registry URL, the suffix of its ECR prefix).
UPSTREAMS = {"docker.io": ("registry-1.docker.io", "docker"), "registry.k8s.io": ("registry.k8s.io", "k8s")}
ECR_PREFIX_MAX = 30  # ECR: ecrRepositoryPrefix is 2-30 characters (API reference, CreatePullThroughCacheRule)


class LockedImage(_Model):
    digest: Annotated[str, Field(pattern=DIGEST.pattern)] = Field(
        description="sha256: and 64 lower-case hex digits: the image index digest")
    source: str = Field(min_length=10, description="Where the digest was taken from (a public, citable source)")


class PinnedImage(_Model):
    """One image of a release: the upstream image, its tag (for people and labels) and the digest pulled."""

    upstream: str
    tag: str
    digest: Annotated[str, Field(pattern=DIGEST.pattern)]

    @property
    def registry(self) -> str:
        return self.upstream.split("/", 1)[0]

    @property
    def path(self) -> str:
        """The repository path in the upstream registry (and, after the rule's prefix, in ECR)."""
        return self.upstream.split("/", 1)[1]


class PinnedImages(_Model):
    twenty: PinnedImage
    redis: PinnedImage
    kubectl: PinnedImage


def ecr_prefix(project: str, env: str, registry: str) -> str:
    """The ECR repository prefix of one environment's pull-through cache rule for one upstream registry: per
    environment, so two environments in one account never share a rule, a template or a cached repository."""
    return f"{project}-{env}/{UPSTREAMS[registry][1]}"


def prefix_problems(source: str, project: str, env: str) -> list[str]:
    longest = max((ecr_prefix(project, env, registry) for registry in UPSTREAMS), key=len)
    if len(longest) <= ECR_PREFIX_MAX:
        return []
    return [f"{source}: project: the ECR pull-through cache prefix '{longest}' is {len(longest)} characters, over "
            f"ECR's {ECR_PREFIX_MAX}; shorten project or the environment file's name"]


def load_lock(path: Path = LOCK_FILE) -> dict[str, dict[str, LockedImage]]:
    """Read and validate the lock; raise SettingsError naming the file, the entry and the fix."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SettingsError([f"{path}: missing; it pins every image by digest (docs/images.md)"]) from None
    except tomllib.TOMLDecodeError as err:
        raise SettingsError([f"{path}: not valid TOML: {err}"]) from None
    lock: dict[str, dict[str, LockedImage]] = {}
    problems = []
    for image, tags in data.items():
        if image.split("/", 1)[0] not in UPSTREAMS or not isinstance(tags, dict):
            problems.append(f"{path}: {image}: not an image of {', '.join(UPSTREAMS)} with tag tables")
            continue
        for tag, entry in tags.items():
            try:
                lock.setdefault(image, {})[tag] = LockedImage(**entry)
            except (ValidationError, TypeError) as err:
                detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                                   for e in err.errors()) if isinstance(err, ValidationError) else str(err)
                problems.append(f"{path}: [\"{image}\".\"{tag}\"]: {detail}; rewrite the entry with "
                                f"`scripts/images lock {image}:{tag}` (a digest is sha256: and 64 lower-case hex)")
    if problems:
        raise SettingsError(problems)
    return lock


def pin_images(source: str, *, field_tags: dict[str, tuple[str, str]],
               lock: dict[str, dict[str, LockedImage]], lock_path: Path) -> PinnedImages:  # fmt: skip
    """``field_tags``: part -> (the settings field that chose the tag, the tag). Raises SettingsError for a tag
    the lock does not hold."""
    upstream = {"twenty": TWENTY_IMAGE, "redis": REDIS_IMAGE, "kubectl": KUBECTL_IMAGE}
    pinned, problems = {}, []
    for part, (field, tag) in field_tags.items():
        entry = lock.get(upstream[part], {}).get(tag)
        if entry is None:
            problems.append(f"{source}: {field}: {upstream[part]}:{tag} has no digest in {lock_path.name}; run "
                            f"`scripts/images lock {upstream[part]}:{tag}` and commit the lock (docs/images.md)")
            continue
        pinned[part] = PinnedImage(upstream=upstream[part], tag=tag, digest=entry.digest)
    if problems:
        raise SettingsError(problems)
    return PinnedImages(**pinned)
