#!/usr/bin/env python
"""Write a synthesized stack (Terraform's JSON syntax, ``cdk.tf.json``) as plain HCL (``main.tf``): the exit from
cdktf, which HashiCorp archived in December 2025 (README, "cdktf is archived: the exits").

``cdktf synth --hcl`` would be the obvious exit, but cdktf 0.21 renders every string that holds both quotes and a
``${...}`` reference (IAM and key policies, user data, the dashboard) as invalid HCL
(https://github.com/hashicorp/terraform-cdk/issues/3911, open when the project was archived). This converter
writes those as escaped HCL templates instead. JSON cannot say whether ``{...}`` is a nested block or an object
attribute, so it reads that from the provider schema (``terraform providers schema -json``).

    python scripts/hcl_export.py <stack dir with cdk.tf.json> <schema.json> <output dir>
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
META_BLOCKS = {"lifecycle", "provisioner", "connection"}
# meta-arguments whose JSON strings are references or keywords, written bare in HCL
BARE_LISTS = {"depends_on", "ignore_changes", "replace_triggered_by"}


def _template(text: str) -> str:
    """A JSON-syntax string as an HCL quoted template: text escaped, ``${...}`` interpolations kept verbatim."""
    out, i = ['"'], 0
    while i < len(text):
        if text.startswith("$${", i):  # an escaped literal "${" stays escaped
            out.append("$${")
            i += 3
        elif text.startswith("${", i):
            end = _interpolation_end(text, i + 2)
            out.append(text[i:end])
            i = end
        elif text.startswith("%%{", i):  # an escaped literal "%{" stays escaped
            out.append("%%{")
            i += 3
        elif text.startswith("%{", i):
            out.append("%%{")
            i += 2
        else:
            ch = text[i]
            out.append({"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(ch, ch))
            i += 1
    out.append('"')
    return "".join(out)


def _interpolation_end(text: str, i: int) -> int:
    """Index just past the ``}`` closing an interpolation whose expression starts at ``i``."""
    depth, quoted = 1, False
    while i < len(text):
        ch = text[i]
        if quoted:
            if ch == "\\":
                i += 1
            elif ch == '"':
                quoted = False
        elif ch == '"':
            quoted = True
        elif ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    raise ValueError(f"unterminated interpolation in {text!r}")


def _value(value, indent: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return json.dumps(value)
    if isinstance(value, str):
        whole = re.fullmatch(r"\$\{(.*)\}", value, re.DOTALL)
        if whole and _interpolation_end(value, 2) == len(value):
            return whole.group(1)  # a single expression: written as the expression itself
        return _template(value)
    inner = indent + "  "
    if isinstance(value, list):
        if not value:
            return "[]"
        return "[\n" + "".join(f"{inner}{_value(v, inner)},\n" for v in value) + f"{indent}]"
    if not value:
        return "{}"
    return "{\n" + "".join(f"{inner}{_template(k)} = {_value(v, inner)}\n" for k, v in value.items()) + f"{indent}}}"


def _body(body: dict, schema: dict | None, indent: str) -> str:
    """The arguments and nested blocks of one block; ``schema`` is the provider's for that block (or None)."""
    lines = []
    blocks = (schema or {}).get("block_types", {})
    for key, value in body.items():
        if key == "//":
            continue
        if key in BARE_LISTS:
            lines.append(f"{indent}{key} = [{', '.join(v.strip('${}') for v in value)}]")
        elif key in blocks or key in META_BLOCKS:
            for item in value if isinstance(value, list) else [value]:
                nested = blocks.get(key, {}).get("block")
                lines.append(f"{indent}{key} {{\n{_body(item, nested, indent + '  ')}{indent}}}")
        elif key == "provider" and isinstance(value, str):
            lines.append(f"{indent}provider = {value}")
        else:
            lines.append(f"{indent}{key} = {_value(value, indent)}")
    return "".join(line + "\n" for line in lines)


def _schema_of(schemas: dict, kind: str, type_name: str) -> dict:
    provider = next(iter(schemas["provider_schemas"].values()))
    table = {"resource": "resource_schemas", "data": "data_source_schemas",
             "ephemeral": "ephemeral_resource_schemas"}[kind]  # fmt: skip
    return provider.get(table, {})[type_name]["block"]


def to_hcl(config: dict, schemas: dict) -> str:
    parts = []
    terraform = config.get("terraform", {})
    inner = []
    if "required_providers" in terraform:
        providers = "".join(f"    {n} = {_value(p, '    ')}\n" for n, p in terraform["required_providers"].items())
        inner.append(f"  required_providers {{\n{providers}  }}\n")
    for backend, settings in terraform.get("backend", {}).items():
        inner.append(f'  backend "{backend}" {{\n{_body(settings, None, "    ")}  }}\n')
    parts.append("terraform {\n" + "".join(inner) + "}\n")
    provider_schema = next(iter(schemas["provider_schemas"].values()))["provider"]["block"]
    for name, configs in config.get("provider", {}).items():
        for body in configs:
            parts.append(f'provider "{name}" {{\n{_body(body, provider_schema, "  ")}}}\n')
    for kind in ("data", "ephemeral", "resource"):
        for type_name, items in config.get(kind, {}).items():
            schema = _schema_of(schemas, kind, type_name)
            for name, body in items.items():
                head = f'{kind} "{type_name}" "{name}"' if kind != "data" else f'data "{type_name}" "{name}"'
                parts.append(f"{head} {{\n{_body(body, schema, '  ')}}}\n")
    for name, body in config.get("output", {}).items():
        # an output's description is literal text in JSON syntax, a template in HCL: escape any "${"
        literal = {k: v.replace("${", "$${") if k == "description" else v for k, v in body.items()}
        parts.append(f'output "{name}" {{\n{_body(literal, None, "  ")}}}\n')
    for name, body in config.get("variable", {}).items():
        parts.append(f'variable "{name}" {{\n{_body(body, None, "  ")}}}\n')
    if config.get("locals"):
        parts.append(f"locals {{\n{_body(config['locals'], None, '  ')}}}\n")
    for removed in config.get("removed", []):
        # `from` is an address (a traversal), not a string; lifecycle is a block
        destroy = str(removed["lifecycle"][0]["destroy"]).lower()
        parts.append(f"removed {{\n  from = {removed['from']}\n  lifecycle {{\n    destroy = {destroy}\n  }}\n}}\n")
    unknown = set(config) - {"//", "terraform", "provider", "data", "ephemeral", "resource", "output", "variable",
                             "locals", "removed"}  # fmt: skip
    if unknown:
        raise ValueError(f"top-level blocks this converter does not know: {sorted(unknown)}")
    return "\n".join(parts)


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    stack, schema_file, out = (Path(a) for a in argv)
    hcl = to_hcl(json.loads((stack / "cdk.tf.json").read_text()), json.loads(schema_file.read_text()))
    out.mkdir(parents=True, exist_ok=True)
    (out / "main.tf").write_text(hcl)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
