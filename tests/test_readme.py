"""The README's configuration table names every setting, with its real default."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import SecretStr

from config import Settings

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("name", sorted(Settings.model_fields))
def test_every_setting_is_documented_with_its_default(name: str) -> None:
    rows = [
        row
        for row in README.splitlines()
        if row.startswith("| `") and f"`{name.upper()}`" in row.split("|")[1]
    ]
    assert rows, f"{name.upper()} is missing from the README's configuration table"
    default = Settings.model_fields[name].default
    if default is None or isinstance(default, SecretStr):
        return
    names = re.findall(r"`([A-Z_]+)`", rows[0].split("|")[1])
    defaults = re.findall(r"`([^`]+)`", rows[0].split("|")[2])
    assert str(default) == dict(zip(names, defaults, strict=True))[name.upper()]
