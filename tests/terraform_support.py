"""Run the real terraform CLI on synthesized stacks, offline, and a local AWS API (moto) for it to talk to.

- The provider comes from a filesystem mirror (``$TWENTYCRM_PROVIDER_MIRROR``, default
  ``/opt/tf-plugins``) through a temporary CLI configuration; nothing is downloaded.
- ``LocalAws`` starts ``moto_server`` on 127.0.0.1 on a free port, over TLS with a throw-away
  certificate (the state bucket's policy denies plain HTTP, so the test must speak HTTPS like AWS).
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

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
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "moto-cert.pem", directory / "moto-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


class LocalAws:
    """moto_server on 127.0.0.1 (a free port, TLS); a context manager that always stops it."""

    SERVICES = ("s3", "dynamodb", "kms", "sts", "iam", "ec2", "logs", "eks", "secretsmanager", "ssm",
                "elbv2", "acm", "route53", "cloudwatch", "sns", "dlm")  # fmt: skip

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.port = _free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.ca_bundle, self._key = _self_signed(workdir)
        self._process: subprocess.Popen | None = None

    def __enter__(self) -> "LocalAws":
        server = Path(sys.executable).with_name("moto_server")
        self._log = open(self.workdir / "moto.log", "w")  # noqa: SIM115 - closed in __exit__
        self._process = subprocess.Popen(
            [str(server), "-H", "127.0.0.1", "-p", str(self.port), "-c", str(self.ca_bundle), "-k", str(self._key)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        context = ssl.create_default_context(cafile=str(self.ca_bundle))
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
        if self._process and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
        self._log.close()

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

    def provider_override(self) -> dict:
        """``*_override.tf.json`` content that points the aws provider of a stack at this server."""
        return {
            "provider": {
                "aws": {
                    "access_key": "test",
                    "secret_key": "test",
                    "skip_credentials_validation": True,
                    "skip_requesting_account_id": True,
                    "skip_metadata_api_check": True,
                    "s3_use_path_style": True,
                    "custom_ca_bundle": str(self.ca_bundle),
                    "endpoints": [{service: self.url for service in self.SERVICES}],
                }
            }
        }

    def backend_config_flags(self, *, bucket: str, lock_table: str) -> list[str]:
        """``terraform init -backend-config`` flags redirecting a stack's S3 backend to this server."""
        endpoints = ",".join(f'{s}="{self.url}"' for s in ("s3", "dynamodb", "sts", "iam"))
        settings = {
            "bucket": bucket,
            "dynamodb_table": lock_table,
            "access_key": "test",
            "secret_key": "test",
            "skip_credentials_validation": "true",
            "skip_requesting_account_id": "true",
            "skip_metadata_api_check": "true",
            "use_path_style": "true",
            "custom_ca_bundle": str(self.ca_bundle),
            "endpoints": f"{{{endpoints}}}",
        }
        return [f"-backend-config={k}={v}" for k, v in settings.items()]
