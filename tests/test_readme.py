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
    if default == "":
        assert rows[0].split("|")[2].strip() == "empty"
        return
    names = re.findall(r"`([A-Z_]+)`", rows[0].split("|")[1])
    defaults = re.findall(r"`([^`]+)`", rows[0].split("|")[2])
    assert str(default) == dict(zip(names, defaults, strict=True))[name.upper()]


def _guards() -> list[tuple[str, str]]:
    """(row, test reference) for each test the failure table's guard table names; `…name`
    is a test of the file named before it in the same cell."""
    table = README[README.index("| row | fast test | end to end |") :].split("\n\n", 1)[0]
    found: list[tuple[str, str]] = []
    for line in table.splitlines()[2:]:
        row, *cells = line.split("|")[1:4]
        for cell in cells:
            last = ""
            for named in re.findall(r"`([^`]+)`", cell):
                ref = f"{last}::{named[1:]}" if named.startswith("…") else named
                last = ref.split("::")[0]
                found.append((row.strip(), ref))
    return found


def test_every_test_the_failure_table_names_exists() -> None:
    tests = Path(__file__).resolve().parent
    guards = _guards()
    assert len(guards) > 40
    for row, ref in guards:
        path, _, name = ref.partition("::")
        source = (tests / f"{path}.py").read_text(encoding="utf-8")
        assert not name or f"def {name}(" in source, f"{row}: {ref} does not exist"
