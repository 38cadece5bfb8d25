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
from tasks.api_terms import READ_STATUSES
from tasks.keys import Keys, as_text
from tasks.tracking.events import Row, now_text

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


@dataclass(frozen=True)
class Due:
    lookup: list[str]  # messageUuids to look up now
    given_up: Recorded  # final statuses `unknown` published
    vanished: int  # due messages whose record had expired: nothing could be published


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
    for row, (result, age_ms, channel) in zip(rows, reply, strict=True):
        name = as_text(result)
        done.results[name] += 1
        if name == "final":
            status = "delivered" if row[2] in READ_STATUSES else row[2]
            done.finals.append((as_text(channel), status, max(0.0, int(age_ms) / 1000)))
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

    def due(self, limit: int, *, lookups: bool = True) -> Due:
        """Messages to look up now (none with `lookups` False: the circuit is open); those
        past STATUS_GIVE_UP_S get their final status `unknown` in the same step."""
        s = self._settings
        lookup, given_up, vanished = self._due(
            args=[
                self._args.names,
                limit,
                int(s.status_poll_after_s * 1000),
                int(s.status_poll_max_interval_s * 1000),
                int(s.status_give_up_s * 1000),
                self._args.ttl_s,
                int(lookups),
                now_text(),
            ]
        )
        gave_up = Recorded()
        for channel, age_ms in given_up:
            gave_up.results["final"] += 1
            gave_up.finals.append((as_text(channel), "unknown", int(age_ms) / 1000))
        return Due([as_text(u) for u in lookup], gave_up, int(vanished))

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
