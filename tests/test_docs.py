"""The documentation keeps up with the code: every settings key is described in docs/settings.md."""

from __future__ import annotations

import re
import typing

from conftest import ROOT
from pydantic import BaseModel

from modules.settings import EnvironmentSettings


def _fields(model: type[BaseModel], prefix: str = "") -> list[str]:
    names = []
    for name, field in model.model_fields.items():
        if field.exclude or name == "name":
            continue  # set by the loader, not by the file
        names.append(f"{prefix}{name}")
        for arg in (field.annotation, *typing.get_args(field.annotation)):
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                names.extend(_fields(arg, f"{prefix}{name}."))
    return names


def test_every_settings_key_is_documented():
    page = (ROOT / "docs" / "settings.md").read_text()
    documented = set(re.findall(r"^\| `([a-z0-9_]+)`(?:, `([a-z0-9_]+)`)?", page, re.MULTILINE))
    keys = {k for pair in documented for k in pair if k}
    keys |= {section.rsplit(".", 1)[-1] for section in re.findall(r"`\[\[?([a-z_.]+)\]\]?`", page)}
    missing = [f for f in _fields(EnvironmentSettings) if f.rsplit(".", 1)[-1] not in keys]
    assert not missing, f"add these keys to docs/settings.md: {missing}"
