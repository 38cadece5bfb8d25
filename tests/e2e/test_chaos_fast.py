"""The chaos scenarios that matter most, at CI's scale (`make chaos` runs the whole matrix at
full scale): each on its own Redis server, and each must keep the promise."""

from __future__ import annotations

from pathlib import Path

import pytest

from chaos.scenarios import FAST, SCENARIOS


@pytest.mark.parametrize("name", ["power-loss", "kill", "redis-full", "callbacks"])
def test_the_promise_holds(name: str, tmp_path: Path) -> None:
    row = SCENARIOS[name](tmp_path, FAST)
    print(f"\n{row}")
    assert row.lost == 0, row
    assert row.multiple_outcomes == 0, row
    assert row.double_sends == row.explained_double_sends, row
    assert row.finals_wrong == 0, row
    assert "died" not in row.notes, row
    assert row.jobs >= FAST.sms
