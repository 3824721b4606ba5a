"""``scripts/images lock <registry>/<path>:<tag>``: resolve a tag's digest from its registry, rewrite the lock.
``scripts/images warm <env>``: fill the environment's ECR pull-through cache by tag and check it holds the lock.

The digest is the one the registry serves for the tag: a HEAD of ``/v2/<path>/manifests/<tag>`` asking for an OCI
image index or a Docker manifest list first (so a multi-arch image gives its index digest, the one every node
architecture resolves), read from ``Docker-Content-Digest``; when the registry omits that header the manifest is
fetched and hashed (the digest is by definition the sha256 of the manifest's bytes). A registry that answers 401
with a ``Bearer`` challenge (Docker Hub, registry.k8s.io's backends) gets an anonymous token from the realm it
names. Nothing here trusts a digest it did not compute or receive from the registry.

``warm``: a pull-through cache imports an image only when it is asked for by tag (a first pull by digest answers
"not found": aws/containers-roadmap#2837), and an official image's tag is rebuilt upstream, so the digest the cache
imports may differ from the locked one. For every image of the environment (the references modules/apps.py
builds from the settings and the lock) it requests the manifest by tag through the environment's registry (Basic
auth with the ``ecr:GetAuthorizationToken`` token), waits until ``ecr:DescribeImages`` lists the tag, and fails
unless ECR's digest for the tag is the locked one. Before that, the Docker Hub credential's secret must have a
value (``secretsmanager:DescribeSecret``; the value itself is never read). The AWS calls go through the ``aws``
CLI, so its configuration applies (credentials, ``AWS_ENDPOINT_URL``, ``AWS_ENDPOINT_URL_ECR``,
``AWS_ENDPOINT_URL_SECRETS_MANAGER``, ``AWS_CA_BUNDLE``); the registry host is
``<account>.dkr.ecr.<region>.amazonaws.com`` unless ``--registry`` names another.

By hand, ``warm <env>`` resolves the environment through the settings model (the project's .venv: the
``scripts/images`` wrapper installs it). CI's ``apply-apps`` job passes ``--resolved <ci-settings.json>``, the
values the synth job resolved through the same model (``resolved_images``, written by ``ci-terraform settings``
and carried with the saved plan): then only the standard library and the ``aws`` CLI are used, and the wrapper
runs the system's ``python3`` without installing anything.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # modules.settings (the settings and the lock the stacks are built from)
LOCK_FILE = ROOT / "images.lock.toml"
INDEX_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
# Where each registry host serves the registry API (Docker Hub's images are named docker.io/…).
API_HOSTS = {"docker.io": "registry-1.docker.io"}
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
REFERENCE = re.compile(
    r"^(?P<registry>[a-z0-9.-]+(:[0-9]+)?)/(?P<path>[a-z0-9._/-]+):(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})$"
)
HEADER = """\
# Image digests the releases are pinned to (docs/images.md). One table per upstream image and tag:
#   digest  the image index (multi-arch manifest list) digest, as the upstream registry serves it
#   source  where the digest was taken from, so a reviewer can check it
# Update an entry with `scripts/images lock <image>:<tag>` (it asks the upstream registry), never by hand-typing
# a digest. The settings loader refuses an environment whose image tag has no entry here.
"""


class RegistryError(RuntimeError):
    pass


def _bearer_token(challenge: str) -> str:
    """An anonymous token from the realm of a ``WWW-Authenticate: Bearer realm=…,service=…,scope=…`` challenge."""
    params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
    if "realm" not in params:
        raise RegistryError(f"unsupported authentication challenge: {challenge!r}")
    query = urllib.parse.urlencode({k: v for k, v in params.items() if k in ("service", "scope")})
    with urllib.request.urlopen(f"{params['realm']}?{query}", timeout=30) as response:  # noqa: S310 (https realm)
        body = json.load(response)
    return body.get("token") or body["access_token"]


def _request(url: str, method: str, token: str | None, scheme: str = "Bearer") -> tuple[dict[str, str], bytes]:
    headers = {"Accept": ", ".join(INDEX_TYPES)}
    if token:
        headers["Authorization"] = f"{scheme} {token}"
    request = urllib.request.Request(url, method=method, headers=headers)
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 (registry URL built above)
        return {k.lower(): v for k, v in response.headers.items()}, response.read()


def resolve(image: str, tag: str, *, plain_http: bool = False) -> str:
    """The digest ``image`` (``<registry>/<path>``) serves for ``tag``."""
    registry, path = image.split("/", 1)
    url = f"{'http' if plain_http else 'https'}://{API_HOSTS.get(registry, registry)}/v2/{path}/manifests/{tag}"
    token = None
    for attempt in (1, 2):
        try:
            headers, _ = _request(url, "HEAD", token)
            digest = headers.get("docker-content-digest")
            if not digest:  # the header is optional in the distribution spec: hash the manifest itself
                _, body = _request(url, "GET", token)
                digest = "sha256:" + hashlib.sha256(body).hexdigest()
            break
        except urllib.error.HTTPError as err:
            challenge = err.headers.get("WWW-Authenticate", "")
            if err.code == 401 and attempt == 1 and challenge.lower().startswith("bearer"):
                token = _bearer_token(challenge)
                continue
            raise RegistryError(f"{url}: HTTP {err.code} {err.reason}; does {image}:{tag} exist?") from None
    if not DIGEST.match(digest):
        raise RegistryError(f"{url}: the registry answered {digest!r}, not a sha256 digest")
    return digest


def _quote(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)  # a TOML basic string: JSON escapes are valid TOML escapes


def write_lock(path: Path, lock: dict[str, dict[str, dict[str, str]]]) -> None:
    lines = [HEADER]
    for image in sorted(lock):
        for tag in sorted(lock[image]):
            entry = lock[image][tag]
            lines += [f"[{_quote(image)}.{_quote(tag)}]", f"digest = {_quote(entry['digest'])}",
                      f"source = {_quote(entry['source'])}", ""]  # fmt: skip
    path.write_text("\n".join(lines))


def lock_image(reference: str, *, lock_file: Path, plain_http: bool = False) -> str:
    match = REFERENCE.match(reference)
    if not match:
        raise RegistryError(f"{reference!r} is not <registry>/<path>:<tag> (e.g. docker.io/twentycrm/twenty:v2.46.0; "
                            "Docker Hub's official images are docker.io/library/<name>)")
    image = f"{match['registry']}/{match['path']}"
    digest = resolve(image, match["tag"], plain_http=plain_http)
    lock = tomllib.loads(lock_file.read_text()) if lock_file.exists() else {}
    when = datetime.now(UTC).strftime("%Y-%m-%d")
    lock.setdefault(image, {})[match["tag"]] = {
        "digest": digest,
        "source": f"resolved by `scripts/images lock` on {when}: HEAD /v2/{match['path']}/manifests/{match['tag']} "
                  f"on {API_HOSTS.get(match['registry'], match['registry'])}, Docker-Content-Digest",
    }
    write_lock(lock_file, lock)
    return digest


# --- warm: the environment's pull-through cache ---------------------------------------------------------------


class WarmError(RuntimeError):
    pass


@dataclass(frozen=True)
class CachedImage:
    """One image of a release as the environment pulls it: ``<registry host>/<repository>@<digest>``."""

    upstream: str  # docker.io/library/redis
    tag: str
    digest: str  # the lock's
    repository: str  # <project>-<env>/docker/library/redis, the cached repository in ECR


def environment_images(settings: Any) -> list[CachedImage]:
    """The images modules/apps.py pulls (``image_reference``: ``<prefix>/<upstream path>``), from the same settings
    and lock. tests/test_images.py checks the two agree."""
    from modules.settings.images import ecr_prefix  # noqa: PLC0415 (needs ROOT on sys.path)

    images = settings.images
    return [CachedImage(upstream=image.upstream, tag=image.tag, digest=image.digest,
                        repository=f"{ecr_prefix(settings.project, settings.name, image.registry)}/{image.path}")
            for image in (images.twenty, images.redis, images.kubectl)]  # fmt: skip


def credential_secret_name(settings: Any) -> str:
    """The Docker Hub credential of the pull-through cache (modules/registry.py ``credential_secret_name``)."""
    return f"ecr-pullthroughcache/{settings.project}/{settings.name}/docker-hub"


def resolved_images(settings: Any) -> dict[str, Any]:
    """What ``warm --resolved`` needs of an environment, resolved through the settings model: JSON-ready values
    (``ci-terraform settings`` writes them, with the preflights' values, into ci-settings.json)."""
    return {
        "environment": settings.name,
        "account_id": settings.account.id,
        "region": settings.region,
        "registry_credential": credential_secret_name(settings),
        "images": [asdict(image) for image in environment_images(settings)],
    }


RESOLVED_KEYS = ("environment", "account_id", "region", "registry_credential", "images")


def read_resolved(path: Path, env: str) -> dict[str, Any]:
    """The values of a ci-settings.json, checked against ``env`` (standard library only)."""
    try:
        values = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise WarmError(f"cannot read {path}: {err}; the synth job writes it (`./scripts/ci-terraform settings "
                        f"{env}`) and it travels with the saved plan of the apps stack") from None
    missing = [key for key in RESOLVED_KEYS if key not in values]
    if missing:
        raise WarmError(f"{path} has no {', '.join(missing)}: an older scripts/ci-terraform wrote it; run the "
                        "workflow again")
    if values["environment"] != env:
        raise WarmError(f"{path} holds the settings of environment {values['environment']!r}, not {env!r}")
    return values


class AwsCliError(RuntimeError):
    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code  # the AWS error code ("ResourceNotFoundException"), or "" when the CLI says none


class AwsCli:
    """The ``aws`` CLI as the job has it (a runner's or the project's .venv), JSON in and out."""

    def __init__(self, region: str, binary: str = "aws") -> None:
        self.region, self.binary = region, binary

    def __call__(self, service: str, operation: str, *args: str) -> Any:
        command = [self.binary, "--region", self.region, "--output", "json", service, operation, *args]
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=120)
        except FileNotFoundError:
            raise WarmError(f"the aws CLI ({self.binary}) is not installed") from None
        if result.returncode != 0:
            error = result.stderr.strip()
            match = re.search(r"\((\w+)\) when calling", error)
            raise AwsCliError(f"aws {service} {operation}: {error}", match.group(1) if match else "")
        return json.loads(result.stdout or "null")


class CacheWarmer:
    """Warms one environment's cache. ``aws`` runs the AWS calls (``AwsCli``); ``registry`` the registry host
    (``<account>.dkr.ecr.<region>.amazonaws.com``); ``timeout``/``interval`` bound the wait for DescribeImages."""

    def __init__(self, *, aws: AwsCli, registry: str, account: str, plain_http: bool = False,
                 timeout: float = 300, interval: float = 5, log=print) -> None:  # fmt: skip
        self.aws, self.registry, self.account = aws, registry, account
        self.scheme = "http" if plain_http else "https"
        self.timeout, self.interval, self.log = timeout, interval, log

    def check_credential(self, secret_id: str, seed_command: str) -> None:
        """The secret must have a current version; DescribeSecret lists versions without reading a value."""
        try:
            versions = self.aws("secretsmanager", "describe-secret", "--secret-id", secret_id).get(
                "VersionIdsToStages") or {}
        except AwsCliError as err:
            if err.code != "ResourceNotFoundException":
                raise
            raise WarmError(f"the Docker Hub credential secret {secret_id} does not exist: apply the platform "
                            "stack first (docs/images.md, first deploy order)") from None
        if not any("AWSCURRENT" in stages for stages in versions.values()):
            raise WarmError(f"the Docker Hub credential secret {secret_id} has no value yet, so the cache cannot "
                            f"pull from Docker Hub. Seed it once (docs/images.md, \"Seeding the Docker Hub "
                            f"credential\"):\n  {seed_command}")

    def _token(self) -> str:
        data = self.aws("ecr", "get-authorization-token", "--registry-ids", self.account)["authorizationData"]
        return data[0]["authorizationToken"]  # base64 of AWS:<password>: the registry API's Basic credential

    def request_by_tag(self, image: CachedImage, token: str) -> str | None:
        """GET the manifest by tag (what makes the cache import it); returns the digest the registry names."""
        url = f"{self.scheme}://{self.registry}/v2/{image.repository}/manifests/{image.tag}"
        try:
            headers, body = _request(url, "GET", token, scheme="Basic")
        except urllib.error.HTTPError as err:
            raise WarmError(f"{url}: HTTP {err.code} {err.reason}: the cache could not fetch {image.upstream}:"
                            f"{image.tag} (does the tag exist upstream? is the pull-through cache rule and its "
                            "credential valid? `aws ecr validate-pull-through-cache-rule`)") from None
        except urllib.error.URLError as err:
            raise WarmError(f"{url}: {err.reason}") from None
        return headers.get("docker-content-digest") or "sha256:" + hashlib.sha256(body).hexdigest()

    def listed_digest(self, image: CachedImage) -> str:
        """The digest ECR lists for the tag, polled until the import shows up or ``timeout`` passes."""
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                details = self.aws("ecr", "describe-images", "--repository-name", image.repository,
                                   "--image-ids", f"imageTag={image.tag}")["imageDetails"]  # fmt: skip
                if details:
                    return details[0]["imageDigest"]
            except AwsCliError as err:
                if err.code not in ("RepositoryNotFoundException", "ImageNotFoundException"):
                    raise
            if time.monotonic() >= deadline:
                raise WarmError(f"{image.repository}:{image.tag}: ECR did not list the tag within {self.timeout:g}s "
                                "after the pull by tag (ecr:DescribeImages); the import may still be running: re-run "
                                "the step, or pass --timeout to wait longer")
            time.sleep(self.interval)

    def warm(self, images: list[CachedImage]) -> list[str]:
        """Every image pulled by tag and compared; returns the problems (empty when the cache holds the lock)."""
        token, problems = self._token(), []
        for image in images:
            served = self.request_by_tag(image, token)
            listed = self.listed_digest(image)
            if listed != image.digest:
                problems.append(
                    f"{image.upstream}:{image.tag}: the cache holds {listed} for the tag (the registry served "
                    f"{served}), but images.lock.toml pins {image.digest}. The upstream tag was rebuilt after it was "
                    f"locked, and the cache keeps the build it imported first, so the pinned digest can never be "
                    f"pulled here. Fix: `scripts/images lock {image.upstream}:{image.tag}`, check the new digest's "
                    "source, and merge it through a pull request (docs/troubleshooting.md); nothing is deployed "
                    "with an unlocked digest")
            else:
                self.log(f"ok {self.registry}/{image.repository}:{image.tag} = {listed}")
        return problems


def warm_resolved(values: dict[str, Any], *, registry: str | None = None, plain_http: bool = False,
                  timeout: float = 300, interval: float = 5) -> list[str]:  # fmt: skip
    """Warm from resolved values (``resolved_images`` or a ci-settings.json): standard library and the aws CLI."""
    region, account, secret = values["region"], values["account_id"], values["registry_credential"]
    warmer = CacheWarmer(aws=AwsCli(region), registry=registry or f"{account}.dkr.ecr.{region}.amazonaws.com",
                         account=account, plain_http=plain_http, timeout=timeout, interval=interval)  # fmt: skip
    warmer.check_credential(secret, f"aws secretsmanager put-secret-value --region {region} --secret-id {secret} "
                                    "--secret-string '{\"username\":\"<docker hub user>\",\"accessToken\":"
                                    "\"<access token>\"}'")  # fmt: skip
    return warmer.warm([CachedImage(**image) for image in values["images"]])


def warm_environment(env: str, *, lock_file: Path = LOCK_FILE, envs_dir: Path = ROOT / "envs",
                     registry: str | None = None, plain_http: bool = False, timeout: float = 300,
                     interval: float = 5) -> list[str]:  # fmt: skip
    """By hand: resolve ``envs/<env>.toml`` and the lock through the settings model (the project's .venv)."""
    from modules.settings.environment import load_environment  # noqa: PLC0415

    settings = load_environment(envs_dir / f"{env}.toml", lock_file)
    return warm_resolved(resolved_images(settings), registry=registry, plain_http=plain_http, timeout=timeout,
                         interval=interval)  # fmt: skip


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="scripts/images", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    lock = commands.add_parser("lock", help="resolve <registry>/<path>:<tag> and write its digest to the lock")
    lock.add_argument("reference", nargs="+")
    lock.add_argument("--lock-file", type=Path, default=LOCK_FILE)
    lock.add_argument("--plain-http", action="store_true", help="a local test registry without TLS")
    warm = commands.add_parser("warm", help="pull each image of <env> by tag through its ECR pull-through cache and "
                                            "check ECR holds the locked digest (CI, before the apps stack)")
    warm.add_argument("env", help="an environment file's name: envs/<env>.toml")
    warm.add_argument("--resolved", type=Path, metavar="CI_SETTINGS_JSON",
                      help="take the environment's values from this ci-settings.json (written by `ci-terraform "
                           "settings` in the synth job) instead of envs/ and the lock: no settings model needed")
    warm.add_argument("--lock-file", type=Path, default=LOCK_FILE)
    warm.add_argument("--envs-dir", type=Path, default=ROOT / "envs")
    warm.add_argument("--registry", help="registry host (default <account>.dkr.ecr.<region>.amazonaws.com)")
    warm.add_argument("--plain-http", action="store_true", help="a local test registry without TLS")
    warm.add_argument("--timeout", type=float, default=300, help="seconds to wait for ECR to list each tag")
    warm.add_argument("--interval", type=float, default=5, help="seconds between DescribeImages calls")
    args = parser.parse_args(argv)
    if args.command == "warm":
        return _warm(args)
    try:
        for reference in args.reference:
            print(f"{reference} -> {lock_image(reference, lock_file=args.lock_file, plain_http=args.plain_http)}")
    except (RegistryError, urllib.error.URLError) as err:
        print(f"scripts/images: {err}", file=sys.stderr)
        return 1
    print(f"wrote {args.lock_file}; commit it, open a pull request, and read the apps stack's plan (docs/images.md)")
    return 0


def _warm(args: argparse.Namespace) -> int:
    options = {"registry": args.registry, "plain_http": args.plain_http, "timeout": args.timeout,
               "interval": args.interval}  # fmt: skip
    try:
        if args.resolved:
            problems = warm_resolved(read_resolved(args.resolved, args.env), **options)
        else:
            from modules.settings.fields import SettingsError  # noqa: PLC0415 (the settings model: .venv)

            try:
                problems = warm_environment(args.env, lock_file=args.lock_file, envs_dir=args.envs_dir, **options)
            except SettingsError as err:
                raise WarmError(str(err)) from None
    except (WarmError, AwsCliError) as err:
        print(f"scripts/images warm: {err}", file=sys.stderr)
        return 1
    for problem in problems:
        print(f"scripts/images warm: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
