"""``scripts/images lock <registry>/<path>:<tag>``: resolve a tag's digest from its registry, rewrite the lock.

The digest is the one the registry serves for the tag: a HEAD of ``/v2/<path>/manifests/<tag>`` asking for an OCI
image index or a Docker manifest list first (so a multi-arch image gives its index digest, the one every node
architecture resolves), read from ``Docker-Content-Digest``; when the registry omits that header the manifest is
fetched and hashed (the digest is by definition the sha256 of the manifest's bytes). A registry that answers 401
with a ``Bearer`` challenge (Docker Hub, registry.k8s.io's backends) gets an anonymous token from the realm it
names. Nothing here trusts a digest it did not compute or receive from the registry.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import tomllib
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
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


def _request(url: str, method: str, token: str | None) -> tuple[dict[str, str], bytes]:
    headers = {"Accept": ", ".join(INDEX_TYPES)}
    if token:
        headers["Authorization"] = f"Bearer {token}"
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


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="scripts/images", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    lock = commands.add_parser("lock", help="resolve <registry>/<path>:<tag> and write its digest to the lock")
    lock.add_argument("reference", nargs="+")
    lock.add_argument("--lock-file", type=Path, default=LOCK_FILE)
    lock.add_argument("--plain-http", action="store_true", help="a local test registry without TLS")
    args = parser.parse_args(argv)
    try:
        for reference in args.reference:
            print(f"{reference} -> {lock_image(reference, lock_file=args.lock_file, plain_http=args.plain_http)}")
    except (RegistryError, urllib.error.URLError) as err:
        print(f"scripts/images: {err}", file=sys.stderr)
        return 1
    print(f"wrote {args.lock_file}; commit it, open a pull request, and read the apps stack's plan (docs/images.md)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
