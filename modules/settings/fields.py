"""Field types and validators shared by every section of an environment file, and the error type."""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict

# An EKS-style DNS label: lower-case letters, digits, hyphens; no leading/trailing hyphen.
_DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


_ENV_NAME = re.compile(r"^[a-z][a-z0-9-]{0,11}$")


_COMPONENT_ID = re.compile(r"^[A-Z]{2,5}-[0-9]{3}$")


_REGION = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-[0-9]$")


_S3_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


_DYNAMODB_TABLE = re.compile(r"^[A-Za-z0-9_.-]{3,255}$")


_INSTANCE_TYPE = re.compile(r"^[a-z][a-z0-9-]*\.[a-z0-9]+$")


class SettingsError(Exception):
    """A problem in one or more environment files, worded for the person who edits them.

    Each entry of ``problems`` names the file, the field (a dotted path) and what is allowed.
    """

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


def _domain(value: str) -> str:
    """Lower-case the name (DNS is case-insensitive, ACM and Route53 store lower case) and check it."""
    name = value.strip().rstrip(".").lower()
    labels = name.split(".")
    if len(name) > 253 or len(labels) < 2 or not all(_DNS_LABEL.match(label) for label in labels):
        raise ValueError(
            f"{value!r} is not a valid DNS name: use dot-separated labels of letters, digits and "
            "hyphens (1-63 characters each, no leading or trailing hyphen), e.g. 'crm.example.com'"
        )
    if labels[-1].isdigit():
        raise ValueError(f"{value!r} is not a valid DNS name: the top-level label cannot be numeric")
    return name


def _bucket(value: str) -> str:
    if (
        not _S3_BUCKET.match(value)
        or ".." in value
        or ".-" in value
        or "-." in value
        or value.startswith(("xn--", "sthree-"))
        or value.endswith(("-s3alias", "--ol-s3"))
        or re.fullmatch(r"\d+\.\d+\.\d+\.\d+", value)
    ):
        raise ValueError(
            f"{value!r} is not a valid S3 bucket name: use 3-63 lower-case letters, digits, dots and "
            "hyphens, starting and ending with a letter or digit, not shaped like an IP address"
        )
    return value


def _network(value: str) -> str:
    try:
        net = ipaddress.IPv4Network(value, strict=True)
    except ValueError as err:
        raise ValueError(f"{value!r} is not an IPv4 network in CIDR form such as '10.0.0.0/16' ({err})") from None
    return str(net)


def _pattern(regex: re.Pattern[str], what: str):
    def check(value: str) -> str:
        if not regex.match(value):
            raise ValueError(f"{value!r} is not {what}")
        return value

    return AfterValidator(check)


DomainName = Annotated[str, AfterValidator(_domain)]


BucketName = Annotated[str, AfterValidator(_bucket)]


Cidr = Annotated[str, AfterValidator(_network)]


ComponentId = Annotated[str, _pattern(_COMPONENT_ID, "a document component ID such as 'NET-201'")]


InstanceType = Annotated[str, _pattern(_INSTANCE_TYPE, "an EC2 instance type such as 't3.large'")]


LogRetentionDays = Literal[1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 3653]


class _Model(BaseModel):
    """Frozen and strict about keys: a typo in a file is an error, never a silently ignored key."""

    model_config = ConfigDict(frozen=True, extra="forbid")
