"""``moto_server`` for the first-deploy walk, with one fidelity fix: it serves TLS only, so a request never arrives
over plain HTTP, and an S3 bucket-policy statement whose only condition is ``aws:SecureTransport = false`` never
applies, as on AWS.

moto 5.2.5 enforces a bucket policy's Deny statements on object requests but evaluates them without their
``Condition`` (``moto/s3/models.py`` ``S3Backend.put_bucket_policy``: "Conditions are not taken into account";
``FakeBucket.get_permission``), so the state bucket's "deny unless TLS" statement would deny Terraform its own state
objects, over TLS. Everything else is moto's: same arguments as ``moto_server``.
"""

from __future__ import annotations

import json
from typing import Any

from moto.iam.access_control import IAMPolicy, PermissionResult
from moto.s3.models import FakeBucket
from moto.server import main

INSECURE_TRANSPORT = {"Bool": {"aws:SecureTransport": "false"}}


def only_over_plain_http(statement: dict[str, Any]) -> bool:
    """Whether the statement applies only to requests over plain HTTP (which a TLS-only server never serves)."""
    return statement.get("Condition") == INSECURE_TRANSPORT


def get_permission(self: FakeBucket, action: str, resource: str) -> Any:
    if self.policy is None:
        return PermissionResult.NEUTRAL
    document = json.loads(self.policy.decode())
    statements = document["Statement"] if isinstance(document["Statement"], list) else [document["Statement"]]
    kept = [s for s in statements if not only_over_plain_http(s)]
    return IAMPolicy(json.dumps({**document, "Statement": kept})).is_action_permitted(action, resource)


FakeBucket.get_permission = get_permission  # type: ignore[method-assign]

if __name__ == "__main__":
    main()
