"""Applying events in Redis: one script call per callback request or lookup, whatever its size.

The sync client serves the worker's poller, the asyncio one the receiver; both run the same
scripts (`lua/`, each prepended with `lua/status.lua`, the model they share with finish.lua).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import redis
import redis.asyncio
from redis.commands.core import AsyncScript, Script

from config import Settings
from tasks.keys import Keys, as_text
from tasks.tracking.events import Row

LUA = Path(__file__).parent / "lua"
#: Status rules every script that applies events starts with.
STATUS_LUA = (LUA / "status.lua").read_text(encoding="utf-8")


def with_status_model(source: str) -> str:
    """A script's source with the status model's functions before it."""
    return STATUS_LUA + source


def key_names(keys: Keys) -> bytes:
    """The key names `lua/status.lua` works with, as the scripts' first ARGV."""
    return orjson.dumps(
        {
            "message": keys.message(""),
            "parked": keys.parked(""),
            "parkedIndex": keys.parked_index,
            "tracking": keys.tracking,
            "statuses": keys.statuses,
            "track": keys.track(""),
        }
    )


@dataclass
class Recorded:
    """What became of a request's events: counts by result, and per final status (by channel)
    how long after its acceptance the message reached it (s)."""

    results: Counter[str] = field(default_factory=Counter)
    finals: list[tuple[str, str, float]] = field(default_factory=list)  # channel, status, s


def _source(name: str) -> str:
    return with_status_model((LUA / f"{name}.lua").read_text(encoding="utf-8"))


class _Args:
    def __init__(self, keys: Keys, settings: Settings) -> None:
        self.names = key_names(keys)
        self.ttl_s = settings.ledger_ttl_s
        self.park_ms = int(settings.callback_park_s * 1000)

    def record(self, rows: Sequence[Row]) -> list[Any]:
        return [self.names, self.ttl_s, self.park_ms, orjson.dumps(list(rows))]


def _recorded(rows: Sequence[Row], reply: Any) -> Recorded:
    done = Recorded()
    for row, (result, age_ms) in zip(rows, reply, strict=True):
        name = as_text(result)
        done.results[name] += 1
        if name == "final":
            done.finals.append((row[6], row[2], max(0.0, int(age_ms) / 1000)))
    return done


class StatusStore:
    """The poller's side (sync client)."""

    def __init__(self, client: redis.Redis, keys: Keys, settings: Settings) -> None:
        self._args = _Args(keys, settings)
        self._record: Script = client.register_script(_source("record"))
        self._due: Script = client.register_script(_source("due"))
        self._sweep: Script = client.register_script(_source("sweep"))
        self._settings = settings

    def record(self, rows: Sequence[Row]) -> Recorded:
        if not rows:
            return Recorded()
        return _recorded(rows, self._record(args=self._args.record(rows)))

    def due(self, limit: int) -> tuple[list[str], list[tuple[str, str]]]:
        """Messages to look up now, and those given up (messageUuid, channel)."""
        s = self._settings
        lookup, given_up = self._due(
            args=[
                self._args.names,
                limit,
                int(s.status_poll_after_s * 1000),
                int(s.status_poll_max_interval_s * 1000),
                int(s.status_give_up_s * 1000),
            ]
        )
        return [as_text(u) for u in lookup], [(as_text(u), as_text(c)) for u, c in given_up]

    def sweep(self, limit: int = 1000) -> tuple[int, int]:
        """Drop parked events past their wait: (messages, events)."""
        messages, events = self._sweep(args=[self._args.names, limit])
        return int(messages), int(events)


class AsyncStatusStore:
    """The receiver's side (asyncio client): recording only."""

    def __init__(self, client: redis.asyncio.Redis, keys: Keys, settings: Settings) -> None:
        self._args = _Args(keys, settings)
        self._record: AsyncScript = client.register_script(_source("record"))

    async def record(self, rows: Sequence[Row]) -> Recorded:
        if not rows:
            return Recorded()
        return _recorded(rows, await self._record(args=self._args.record(rows)))
