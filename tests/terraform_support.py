"""Run the real terraform CLI on synthesized stacks, offline, and a local AWS API (moto) for it to talk to.

- The provider comes from a filesystem mirror (``$TWENTYCRM_PROVIDER_MIRROR``, default
  ``/opt/tf-plugins``) through a temporary CLI configuration; nothing is downloaded.
- ``LocalAws`` starts ``moto_server`` on 127.0.0.1 on a free port, over TLS with a throw-away
  certificate (the state bucket's policy denies plain HTTP, so the test must speak HTTPS like AWS).
  It records the requests it serves on demand (``recording()``), so a test can judge every call.
- The session's fixtures (``terraform``, ``local_aws``, ``bootstrapped``) live here, registered by
  ``conftest.py``, so that every test module shares one moto server and one bootstrapped state stack.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import select
import shutil
import socket
import socketserver
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

PROVIDER = "registry.terraform.io/hashicorp/aws"
PROVIDER_VERSION = "5.100.0"
DEFAULT_MIRROR = "/opt/tf-plugins"


def missing_tools() -> str | None:
    """Why terraform cannot run here, or None when it can."""
    if not shutil.which("terraform"):
        return "the terraform CLI is not on PATH (install Terraform 1.10+ to run these tests)"
    mirror = Path(os.environ.get("TWENTYCRM_PROVIDER_MIRROR", DEFAULT_MIRROR))
    wanted = mirror / PROVIDER / PROVIDER_VERSION
    if not any(wanted.glob(f"*/terraform-provider-aws_v{PROVIDER_VERSION}*")):
        return (
            f"no hashicorp/aws {PROVIDER_VERSION} build in the provider mirror {wanted} "
            "(set TWENTYCRM_PROVIDER_MIRROR to a filesystem mirror that has it)"
        )
    return None


class Terraform:
    """The terraform CLI pointed at the offline mirror; one instance per test session."""

    def __init__(self, workdir: Path):
        mirror = os.environ.get("TWENTYCRM_PROVIDER_MIRROR", DEFAULT_MIRROR)
        self.config = workdir / "offline.tfrc"
        self.config.write_text(
            "provider_installation {\n"
            f'  filesystem_mirror {{\n    path    = "{mirror}"\n    include = ["{PROVIDER}"]\n  }}\n'
            f'  direct {{\n    exclude = ["{PROVIDER}"]\n  }}\n'
            "}\n"
        )
        self.env = {
            **os.environ,
            "TF_CLI_CONFIG_FILE": str(self.config),
            "TF_IN_AUTOMATION": "1",
            "TF_INPUT": "0",
            "CHECKPOINT_DISABLE": "1",
        }

    def stack_copy(self, synthesized_stack_dir: Path, target: Path) -> Path:
        """A private copy of a stack directory, so overrides never touch the synthesized output."""
        shutil.copytree(synthesized_stack_dir, target)
        return target

    def run(self, workdir: Path, *args: str, check: bool = True, timeout: int = 300) -> subprocess.CompletedProcess:
        result = subprocess.run(
            ["terraform", *args, "-no-color"],
            cwd=workdir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"terraform {' '.join(args)} failed in {workdir}:\n{result.stdout}\n{result.stderr}")
        return result

    def popen(self, workdir: Path, *args: str) -> subprocess.Popen:
        return subprocess.Popen(
            ["terraform", *args, "-no-color"],
            cwd=workdir,
            env={**self.env, "TF_INPUT": "1"},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )


def write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _self_signed(directory: Path) -> tuple[Path, Path]:
    """A one-day certificate for 127.0.0.1 (cryptography comes with moto)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        # the IP, and every name under it: S3's virtual-hosted requests (<bucket>.127.0.0.1), through BucketProxy
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("*.127.0.0.1")]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "moto-cert.pem", directory / "moto-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


class BucketProxy:
    """An HTTPS proxy (CONNECT only) that takes S3's virtual-hosted names, ``<bucket>.127.0.0.1:<port>``, to moto on
    ``127.0.0.1:<port>``, and refuses every other destination.

    Terraform's S3 backend and the AWS provider address a bucket by virtual host unless their configuration says
    ``use_path_style``, which no environment variable sets; with ``HTTPS_PROXY`` pointing here, the commands a person
    types reach moto unchanged. Go sends loopback addresses (``127.0.0.1``) direct, never through a proxy.
    """

    def __init__(self, port: int):
        self.target_port = port
        self._server: socketserver.ThreadingTCPServer | None = None

    def __enter__(self) -> "BucketProxy":
        target = self.target_port

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                request = self.rfile.readline().decode("latin-1").split()
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                host, _, port = request[1].rpartition(":") if len(request) == 3 else ("", "", "")
                if request[:1] != ["CONNECT"] or port != str(target) or not f".{host}".endswith(".127.0.0.1"):
                    self.wfile.write(b"HTTP/1.1 403 Forbidden\r\n\r\n")
                    return
                with socket.create_connection(("127.0.0.1", target)) as upstream:
                    self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    self.wfile.flush()
                    _pipe(self.connection, upstream)

        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()


def _pipe(a: socket.socket, b: socket.socket) -> None:
    """Copy bytes both ways until either side closes."""
    sockets = [a, b]
    while True:
        readable, _, _ = select.select(sockets, [], [], 60)
        if not readable:
            return
        for source in readable:
            data = source.recv(65536)
            if not data:
                return
            (b if source is a else a).sendall(data)


class LocalAws:
    """moto_server on 127.0.0.1 (a free port, TLS); a context manager that always stops it."""

    SERVICES = ("s3", "dynamodb", "kms", "sts", "iam", "ec2", "logs", "eks", "secretsmanager", "ssm",
                "elbv2", "acm", "route53", "cloudwatch", "sns", "dlm", "codebuild",
                "codeconnections", "wafv2", "ecr", "events")  # fmt: skip
    # moto's settings (moto/settings.py, read once at start):
    SETTINGS = {
        # ACM DNS validation completes after this many seconds (default 60); the platform waits for it
        "MOTO_ACM_VALIDATION_WAIT": "0",
        # the AWS managed policies (AmazonEKSClusterPolicy, ...) exist only when loaded
        "MOTO_IAM_LOAD_MANAGED_POLICIES": "true",
    }

    def __init__(self, workdir: Path, *, account_id: str | None = "123456789012", tls_only_policies: bool = False):
        self.workdir = workdir
        # tests/moto_tls.py: bucket-policy statements that apply only over plain HTTP never apply (this server is
        # TLS-only), so a stack applied whole, its state bucket's "deny unless TLS" policy included, keeps working
        self.tls_only_policies = tls_only_policies
        # moto answers every request as this account (moto/core/responses.py reads MOTO_ACCOUNT_ID), so a stack
        # whose allowed_account_ids names it plans, and any other stack stops at its provider's account check.
        # None: each request as the account of the role whose assumed keys sign it (STS AssumeRole*), else 123456789012
        self.account_id = account_id
        self.port = _free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.ca_bundle, self._key = _self_signed(workdir)
        self._process: subprocess.Popen | None = None

    def __enter__(self) -> "LocalAws":
        server = [str(Path(sys.executable).with_name("moto_server"))]
        if self.tls_only_policies:
            server = [sys.executable, str(Path(__file__).with_name("moto_tls.py"))]
        self._log = open(self.workdir / "moto.log", "w")  # noqa: SIM115 - closed in __exit__
        self.recording_file = self.workdir / "recording.jsonl"
        self._process = subprocess.Popen(
            [*server, "-H", "127.0.0.1", "-p", str(self.port), "-c", str(self.ca_bundle), "-k", str(self._key)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **self.SETTINGS, **({"MOTO_ACCOUNT_ID": self.account_id} if self.account_id else {}),
                 "MOTO_RECORDER_FILEPATH": str(self.recording_file)},
        )
        self.proxy = BucketProxy(self.port).__enter__() if self.tls_only_policies else None
        self._tls = context = ssl.create_default_context(cafile=str(self.ca_bundle))
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{self.url}/moto-api/", context=context, timeout=2).close()
                return self
            except OSError:
                if self._process.poll() is not None or time.monotonic() > deadline:
                    self.__exit__(None, None, None)
                    raise RuntimeError(f"moto_server did not start; see {self.workdir / 'moto.log'}") from None
                time.sleep(0.2)

    def __exit__(self, *exc) -> None:
        if getattr(self, "proxy", None):
            self.proxy.__exit__()
        if self._process and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
        self._log.close()

    def _moto_api(self, path: str) -> None:
        request = urllib.request.Request(f"{self.url}/moto-api/{path}", method="POST", data=b"")
        urllib.request.urlopen(request, context=self._tls, timeout=10).close()

    @contextmanager
    def recording(self) -> Iterator[list[str]]:
        """Record every request moto serves inside the block; the list is filled with its JSON lines on exit.

        moto's recorder (``moto/moto_api/_internal/recorder``) appends one JSON line per request
        (method, url, headers, body) to ``MOTO_RECORDER_FILEPATH`` while recording is on.
        """
        lines: list[str] = []
        self._moto_api("recorder/reset-recording")
        self._moto_api("recorder/start-recording")
        try:
            yield lines
        finally:
            self._moto_api("recorder/stop-recording")
            lines.extend(self.recording_file.read_text().splitlines())

    def environment(self) -> dict[str, str]:
        """What a person's shell holds to point the unchanged commands (terraform, its S3 backend, the AWS CLI,
        boto3) at this server: the SDKs' own endpoint and CA-bundle variables and test credentials."""
        return {
            "AWS_ENDPOINT_URL": self.url,
            **{f"AWS_ENDPOINT_URL_{service}": self.url for service in ("S3", "DYNAMODB", "STS", "IAM")},
            "AWS_CA_BUNDLE": str(self.ca_bundle),
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_EC2_METADATA_DISABLED": "true",
            **({"HTTPS_PROXY": self.proxy.url, "https_proxy": self.proxy.url, "NO_PROXY": "", "no_proxy": ""}
               if self.proxy else {}),
        }

    def client(self, service: str):
        import boto3

        return boto3.client(
            service,
            endpoint_url=self.url,
            region_name="sa-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
            verify=str(self.ca_bundle),
        )

    def provider_override(self, aliases: Sequence[str] = ()) -> dict:
        """``*_override.tf.json`` content that points the aws provider of a stack at this server, and each of its
        aliased providers (``provider_aliases``: e.g. the platform stack's us-east-1 one; moto serves every region).
        Terraform refuses an override for an alias the stack does not define, so pass exactly the stack's."""
        base = self._provider_settings()
        return {"provider": {"aws": [base, *({**base, "alias": alias} for alias in aliases)] if aliases else base}}

    def _provider_settings(self) -> dict:
        return {
            "provider": {
                "aws": {
                    "access_key": "test",
                    "secret_key": "test",
                    "skip_credentials_validation": True,
                    # the provider asks STS for the account, as against AWS: without it, it reads rules
                    # that reference a group back as "<owner account>/sg-..." and sees drift
                    "skip_requesting_account_id": False,
                    "skip_metadata_api_check": True,
                    "s3_use_path_style": True,
                    "custom_ca_bundle": str(self.ca_bundle),
                    "endpoints": [{service: self.url for service in self.SERVICES}],
                }
            }
        }["provider"]["aws"]

    def backend_config_flags(self, *, bucket: str, lock_table: str) -> list[str]:
        """``terraform init -backend-config`` flags redirecting a stack's S3 backend to this server."""
        endpoints = ",".join(f'{s}="{self.url}"' for s in ("s3", "dynamodb", "sts", "iam"))
        settings = {
            "bucket": bucket,
            "dynamodb_table": lock_table,
            "access_key": "test",
            "secret_key": "test",
            "skip_credentials_validation": "true",
            # the backend's allowed_account_ids check needs the account: ask moto's STS, as the backend asks AWS's
            "skip_requesting_account_id": "false",
            "skip_metadata_api_check": "true",
            "use_path_style": "true",
            "custom_ca_bundle": str(self.ca_bundle),
            "endpoints": f"{{{endpoints}}}",
        }
        return [f"-backend-config={k}={v}" for k, v in settings.items()]


def provider_aliases(stack_dir: Path) -> list[str]:
    """The aliases of a synthesized stack's aws providers (for ``LocalAws.provider_override``)."""
    providers = json.loads((stack_dir / "cdk.tf.json").read_text()).get("provider", {}).get("aws", [])
    return [p["alias"] for p in providers if p.get("alias")]


# --- the session's shared fixtures (registered in conftest.py through ``pytest_plugins``) --------

BOOTSTRAP_ENV = "dev"  # one environment is enough: the others differ only in values `validate` checks
# The state stack's resource types moto cannot apply usefully, and why (see ``bootstrapped``).
STATE_STACK_NOT_APPLIED = {
    "aws_s3_bucket_policy": "moto 5.2.5 enforces bucket-policy Deny statements on object requests without their "
    "Condition (moto/s3/responses.py _key_response; S3Backend.put_bucket_policy), so 'deny unless TLS' would deny "
    "Terraform its own state objects",
}


@pytest.fixture(scope="session")
def terraform(tmp_path_factory) -> Terraform:
    reason = missing_tools()
    if reason and os.environ.get("CI") == "true":  # CI prepares terraform and the mirror: never skip there
        pytest.fail(reason)
    if reason:
        pytest.skip(reason)
    return Terraform(tmp_path_factory.mktemp("terraform"))


@pytest.fixture(scope="session")
def local_aws(tmp_path_factory, terraform, settings) -> Iterator[LocalAws]:
    """One moto server for the session: the bootstrap tests and the platform apply share it. It plays the
    bootstrapped environment's account (envs/dev.toml ``account.id``), so that environment's stacks plan against
    it unchanged and any other environment's stacks meet their own provider's account check."""
    with LocalAws(tmp_path_factory.mktemp("moto"), account_id=settings[BOOTSTRAP_ENV].account.id) as aws:
        yield aws


def account_stack_dir(synthesized, env) -> Path:
    return synthesized.outdir / "stacks" / f"{env.project}-account-{env.account.id}"


@pytest.fixture(scope="session")
def account_applied(terraform, local_aws, synthesized, settings, tmp_path_factory) -> dict:
    """Bootstrap order, README step 2: dev's account stack, applied whole (no -target) on its local backend,
    before any state stack: the state stacks look its GitHub OIDC provider up and stop without it."""
    env = settings[BOOTSTRAP_ENV]
    work = terraform.stack_copy(account_stack_dir(synthesized, env), tmp_path_factory.mktemp("account") / "account")
    write_json(work / "aws_override.tf.json", local_aws.provider_override(provider_aliases(work)))
    write_json(work / "backend_override.tf.json", {"terraform": {"backend": {"local": {"path": "account.tfstate"}}}})
    terraform.run(work, "init", "-input=false")
    terraform.run(work, "apply", "-input=false", "-auto-approve", "-parallelism=32", timeout=600)
    return {"account_dir": work}


@pytest.fixture(scope="session")
def bootstrapped(account_applied, terraform, local_aws, synthesized, settings, tmp_path_factory) -> dict:
    """The state stack applied against moto and migrated into its own bucket, as the README says.

    All but one resource: moto enforces a bucket policy's Deny statements on every object request
    (``moto/s3/responses.py``, ``_key_response``: "A bucket can deny all actions, regardless of who
    makes the request", through ``bucket.get_permission``) but evaluates them without their
    ``Condition`` (``S3Backend.put_bucket_policy``: "Conditions are not taken into account"), so our
    "deny unless TLS" statement would deny Terraform its own state objects. That policy is planned
    but not applied (``-target`` the rest); ``STATE_STACK_NOT_APPLIED`` names it and a test checks
    it is the only change left.
    """
    env = settings[BOOTSTRAP_ENV]
    base = tmp_path_factory.mktemp("bootstrap")
    work = terraform.stack_copy(synthesized.outdir / "stacks" / env.stack_name("state"), base / "state")
    write_json(work / "aws_override.tf.json", local_aws.provider_override())
    write_json(work / "backend_override.tf.json", {"terraform": {"backend": {"local": {"path": "bootstrap.tfstate"}}}})
    terraform.run(work, "init", "-input=false")
    terraform.run(work, "plan", "-input=false", "-out=bootstrap.tfplan")
    planned = json.loads(terraform.run(work, "show", "-json", "bootstrap.tfplan").stdout)
    addresses = [r["address"] for r in planned["resource_changes"] if r["change"]["actions"] == ["create"]]
    targets = [f"-target={a}" for a in addresses if a.split(".")[0] not in STATE_STACK_NOT_APPLIED]
    terraform.run(work, "apply", "-input=false", "-auto-approve", "-parallelism=32", *targets, timeout=600)

    # README step: switch the state stack's backend to its own bucket (own_backend = "s3") and migrate.
    backend = s3_backend_after_bootstrap(env)
    write_json(work / "backend_override.tf.json", {"terraform": {"backend": {"s3": backend}}})
    flags = local_aws.backend_config_flags(bucket=env.state.bucket, lock_table=env.state.lock_table)
    terraform.run(work, "init", "-input=false", "-migrate-state", "-force-copy", *flags)
    return {"state_dir": work, "planned": addresses, "flags": flags, "backend": backend}


def s3_backend_after_bootstrap(env) -> dict:
    """The state stack's S3 backend block as the code synthesizes it once ``state.own_backend = "s3"``.

    Synthesized, not written out here, so the migration runs with exactly what the README's step
    synthesizes: its ``kms_key_id`` (the state key's alias) included. The bucket and lock table,
    which ``backend_config_flags`` repeats, and the lock file setting are kept as synthesized.
    """
    from conftest import build_stack, with_changes

    from modules.stacks import StateStack

    after = build_stack(StateStack, with_changes(env, state={"own_backend": "s3"}))
    backend = after.json["terraform"]["backend"]
    assert list(backend) == ["s3"], f"the state stack's own backend is not S3 after the switch: {backend}"
    return backend["s3"]


def pytest_terminal_summary(terminalreporter) -> None:
    """Print the figures the platform apply recorded (``record_property``), so CI logs show them, xdist or not."""
    lines = []
    for reports in terminalreporter.stats.values():
        for report in reports:
            if getattr(report, "when", None) == "call":
                lines += [f"{name}: {value}" for name, value in report.user_properties if name.startswith("moto_")]
    if lines:
        terminalreporter.write_sep("-", "offline platform apply against moto")
        for line in sorted(set(lines)):
            terminalreporter.write_line(line)


# --- xdist: every test on the session's moto server runs on one worker ------------------------

# The modules whose tests share the session's moto server and its bootstrapped state. Under
# `-n 2 --dist loadscope` (pyproject.toml) they form one scope, so one worker runs them, in order,
# on one server, while the other worker runs the rest. (xdist's own `xdist_group` marks do nothing
# with pytest 9: xdist 3.8 renames items through `item._nodeid`, which pytest 9 no longer reads.)
MOTO_MODULES = ("tests/test_terraform.py", "tests/test_platform_apply.py", "tests/test_accounts.py")


def pytest_xdist_make_scheduler(config, log):
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class MotoScopeScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return "moto" if module in MOTO_MODULES else super()._split_scope(nodeid)

    return MotoScopeScheduling(config, log)
