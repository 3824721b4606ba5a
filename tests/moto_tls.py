"""``moto_server`` for the first-deploy walk, with two fixes that make it answer as AWS would:

1. It serves TLS only, so a request never arrives over plain HTTP, and an S3 bucket-policy statement whose only
   condition is ``aws:SecureTransport = false`` never applies, as on AWS.
2. What moto does not emulate fails once. moto answers a service it has no backend for, and an action it raises
   ``NotImplementedError`` for, with HTTP 500, which the AWS SDKs take for a transient fault and retry with back-off
   (Terraform's provider for many minutes per call). This server answers those with 501 Not Implemented, which no SDK
   retries, so the call fails at once and Terraform reports it on its resource.

moto 5.2.5 enforces a bucket policy's Deny statements on object requests but evaluates them without their
``Condition`` (``moto/s3/models.py`` ``S3Backend.put_bucket_policy``: "Conditions are not taken into account";
``FakeBucket.get_permission``), so the state bucket's "deny unless TLS" statement would deny Terraform its own state
objects, over TLS. Everything else is moto's: same arguments as ``moto_server``.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from moto.iam.access_control import IAMPolicy, PermissionResult
from moto.moto_server.werkzeug_app import DomainDispatcherApplication
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


def dispatch(self: DomainDispatcherApplication, environ: dict[str, Any], start_response: Any) -> Any:
    def start(status: str, headers: list, exc_info: Any = None) -> Any:
        return start_response("501 Not Implemented" if status.startswith("500") else status, headers, exc_info)

    try:
        return self.get_application(environ)(environ, start)
    except Exception as err:  # noqa: BLE001 - no backend for the service, or moto raised (NotImplementedError, ...)
        start_response("501 Not Implemented", [("Content-Type", "text/plain")], sys.exc_info())
        return [f"moto does not emulate this request ({type(err).__name__}: {err})".encode()]


FakeBucket.get_permission = get_permission  # type: ignore[method-assign]
DomainDispatcherApplication.__call__ = dispatch  # type: ignore[method-assign]

if __name__ == "__main__":
    main()
