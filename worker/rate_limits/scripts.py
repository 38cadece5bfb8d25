"""The Lua scripts of this package; those that read an adaptive rate get `effective.lua`
first, so the rate is computed in one place."""

from __future__ import annotations

from pathlib import Path

import redis
from redis.commands.core import Script

HERE = Path(__file__).parent

#: Scripts that call `effective_rate`.
_ADAPTIVE = frozenset({"acquire", "throttled", "rates"})


def source(name: str) -> str:
    """The text of `{name}.lua` (its KEYS and ARGV are documented at its top)."""
    text = (HERE / f"{name}.lua").read_text(encoding="utf-8")
    if name in _ADAPTIVE:
        return (HERE / "effective.lua").read_text(encoding="utf-8") + text
    return text


def script(client: redis.Redis, name: str) -> Script:
    return client.register_script(source(name))
