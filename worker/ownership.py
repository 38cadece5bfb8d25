"""Who holds a job stream's entries: the one invariant a batch's life rests on.

Every pending entry of a job stream belongs to exactly one holder, its consumer in the
group: a *reader* (a batcher, which read it and has not yet cut it into a batch) or a
*batch* (queued on Celery or running). A holder is alive while its lease key
`{prefix}:lease:{holder}` exists, and the key's value says what it is doing:

    reader   renewed by its batcher thread
    queued   a batch on the Celery queue, renewed by the batcher that cut it
    running  renewed by the process sending it (ledger heartbeat)
    waiting  entries a batch gave back unsent (the circuit was open, or their jobIds were
             busy in another batch), taken over when it lapses without counting a delivery

Entries change holder only in Lua scripts that check the leases: a reader hands entries to
a new batch (`hand_over.lua`); a batch starts only while it is `queued` (`start.lua`); the
entries of a holder whose lease is gone are taken over by a live reader (`reclaim.lua`),
all of a batch's in one step. A holder whose entries were taken over has lost them for good:
its lease is never set again (`renew.lua` sets a lapsed lease again only for a batch that
still holds its entries, as after a Redis restart), a stale Celery task (its batch taken over
while it waited) does nothing, and a slow but alive batch is never taken over. So an entry
belongs to at most one live batch, queued or running, and a `failed` job is sent again only
by an explicit replay (the ledger).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import redis
from redis.commands.core import Script

from config import Settings
from tasks.channels import CHANNELS
from tasks.keys import CONSUMER_GROUP, Keys, as_text

LUA = Path(__file__).with_name("lua")

#: Holder names: a reader is `r-{node}-{pid}-{n}`, a batch `b-{uuid}`, and entries a batch
#: gave back unsent (the circuit was open, or their jobId was busy) wait as `w-{uuid}`.
READER_PREFIX = "r-"
BATCH_PREFIX = "b-"
WAITING_PREFIX = "w-"


def source(name: str) -> str:
    """The text of a Lua script of `worker/lua/` (its KEYS and ARGV are documented at its top)."""
    return (LUA / f"{name}.lua").read_text(encoding="utf-8")


def script(client: redis.Redis, name: str) -> Script:
    return client.register_script(source(name))


def new_batch_id() -> str:
    return BATCH_PREFIX + uuid.uuid4().hex


def waiting_holder(batch: str) -> str:
    """Where the entries a batch leaves unsent wait to be taken over."""
    return WAITING_PREFIX + batch.removeprefix(BATCH_PREFIX)


@dataclass(slots=True)  # not frozen: a thousand a batch, and frozen __init__ is slow
class HeldEntry:
    """A stream entry as its new holder gets it."""

    entry_id: str
    deliveries: int  # times handed to a holder: 1, plus one per holder that died with it
    raw: bytes | None  # the `job` field; b"" when the entry has none, None when it is gone
    stamp: bytes = b""  # the `stamp` field (tasks/stamp.py); b"" when it has none

    @property
    def enqueued_ms(self) -> int:
        """When the entry was added (its id's first part, Redis's clock in ms)."""
        return int(self.entry_id.split("-", 1)[0])


@dataclass(frozen=True)
class Lease:
    """What a holder's lease must say ('reader', 'queued', 'running'), for how long, and for
    a batch the channel whose stream holds its entries (a reader's lease is never revived)."""

    value: str
    ms: int
    channel: str | None = None


@dataclass(frozen=True)
class Started:
    redis_ms: int  # Redis's clock when the batch started (entry ids carry the same clock)
    entries: list[HeldEntry]


@dataclass(frozen=True)
class LeaseTimes:
    """How long a holder's lease lives, per lane: a dead pod's codes are taken over sooner
    (`OTP_LEASE_MS`) than its campaign (`LEASE_MS`)."""

    bulk_ms: int
    otp_ms: int

    @classmethod
    def from_settings(cls, settings: Settings) -> LeaseTimes:
        return cls(settings.lease_ms, settings.otp_lease_ms)

    def of(self, channel: str) -> int:
        return self.otp_ms if CHANNELS[channel].otp else self.bulk_ms

    @property
    def shortest_ms(self) -> int:
        return min(self.bulk_ms, self.otp_ms)

    @property
    def longest_ms(self) -> int:
        return max(self.bulk_ms, self.otp_ms)


class Ownership:
    def __init__(self, client: redis.Redis, keys: Keys, leases: LeaseTimes) -> None:
        self._redis = client
        self._keys = keys
        self.leases = leases
        self._hand_over = script(client, "hand_over")
        self._set_aside = script(client, "set_aside")
        self._start = script(client, "start")
        self._reclaim = script(client, "reclaim")
        self._renew = script(client, "renew")

    def new_reader(self, name: str, lease_ms: int) -> None:
        self._redis.set(self._keys.lease(name), "reader", px=lease_ms)

    def end(self, holder: str) -> None:
        """A holder that stops: what it still holds is taken over at once."""
        self._redis.delete(self._keys.lease(holder))

    def hand_over(self, channel: str, reader: str, batch: str, entry_ids: Sequence[str]) -> bool:
        """Make `batch` (queued) the holder of these entries; False if the reader is dead."""
        moved = self._hand_over(
            keys=[self._keys.jobs(channel), self._keys.lease(reader), self._keys.lease(batch)],
            args=[CONSUMER_GROUP, batch, self.leases.of(channel), orjson.dumps(list(entry_ids))],
        )
        return int(moved) >= 0

    def set_aside(self, channel: str, batch: str, entry_ids: Sequence[str]) -> None:
        """Entries `batch` will not send now wait under `waiting_holder(batch)`."""
        if not entry_ids:
            return
        waiting = waiting_holder(batch)
        self._set_aside(
            keys=[self._keys.jobs(channel), self._keys.lease(waiting)],
            args=[CONSUMER_GROUP, waiting, self.leases.of(channel), orjson.dumps(list(entry_ids))],
        )

    def start(self, channel: str, batch: str) -> Started | None:
        """The entries of a queued batch, now running; None for a stale batch."""
        reply: Any = self._start(
            keys=[self._keys.jobs(channel), self._keys.lease(batch)],
            args=[CONSUMER_GROUP, batch, self.leases.of(channel)],
        )
        if reply is None:
            return None
        now_ms, rows = reply
        return Started(int(now_ms), [_held(row) for row in rows])

    def reclaim(self, channel: str, dead: str, reader: str, count: int) -> list[str] | None:
        """Ids of up to `count` entries of `dead` now held by `reader`; None if `dead` is
        alive after all."""
        reply: Any = self._reclaim(
            keys=[self._keys.jobs(channel), self._keys.lease(dead)],
            args=[CONSUMER_GROUP, dead, reader, count],
        )
        return None if reply is None else [as_text(e) for e in reply]

    def renew(self, leases: dict[str, Lease]) -> dict[str, bool]:
        """Keep each holder's lease if it still holds the expected value (or, for a batch,
        if it lapsed while the batch still holds its entries: Redis restarted)."""
        holders = list(leases)
        if not holders:
            return {}
        args: list[str | int] = [CONSUMER_GROUP]
        for holder in holders:
            lease = leases[holder]
            stream = self._keys.jobs(lease.channel) if lease.channel else ""
            args += [lease.value, stream, holder, lease.ms]
        reply: Any = self._renew(keys=[self._keys.lease(h) for h in holders], args=args)
        return {h: bool(r) for h, r in zip(holders, reply, strict=True)}

    def dead_holders(self, channel: str, exclude: str) -> list[str]:
        """Consumers of the channel's stream whose lease is gone (holding entries or not)."""
        consumers: Any = self._redis.xinfo_consumers(self._keys.jobs(channel), CONSUMER_GROUP)
        names = [as_text(c["name"]) for c in consumers if as_text(c["name"]) != exclude]
        if not names:
            return []
        pipe = self._redis.pipeline(transaction=False)
        for name in names:
            pipe.exists(self._keys.lease(name))
        return [n for n, alive in zip(names, pipe.execute(), strict=True) if not alive]


def _held(row: list[Any]) -> HeldEntry:
    entry_id, deliveries, raw, stamp = row
    return HeldEntry(as_text(entry_id), int(deliveries), raw, stamp or b"")


class LeaseKeeper:
    """One daemon thread per process renewing the leases of the batches it is sending.

    A lease that lapsed while Redis was away is set again only if the batch still holds its
    entries (`renew.lua`); one whose entries were taken over stays lapsed, and the batch's
    outcomes are then not published by it. `current(batch)` says whether the lease is known
    to be held: a batch cut off from Redis for most of a lease stops sending (its entries
    may be another batch's by then), so it does not send what another batch sends.
    """

    def __init__(self, ownership: Ownership) -> None:
        self._ownership = ownership
        self._live: dict[str, Lease] = {}
        self._held_at: dict[str, float] = {}  # when each lease was last known held
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def add(self, channel: str, batch: str) -> None:
        with self._lock:
            self._live[batch] = Lease("running", self._ownership.leases.of(channel), channel)
            self._held_at[batch] = time.monotonic()  # start.lua has just set it
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="lease", daemon=True)
                self._thread.start()

    def remove(self, batch: str) -> None:
        with self._lock:
            self._live.pop(batch, None)
            self._held_at.pop(batch, None)

    def current(self, batch: str) -> bool:
        """Whether `batch` still holds its lease, with a third of it to spare."""
        with self._lock:
            lease, held_at = self._live.get(batch), self._held_at.get(batch)
        if lease is None or held_at is None:
            return False
        return time.monotonic() - held_at < lease.ms * 2 / 3000

    def _run(self) -> None:
        interval = self._ownership.leases.shortest_ms / 3000
        while True:
            time.sleep(interval)
            with self._lock:
                live = dict(self._live)
            if not live:
                continue
            asked = time.monotonic()
            try:
                kept = self._ownership.renew(live)
            except redis.RedisError:
                continue  # the next beat tries again; a lapse only allows a takeover
            with self._lock:
                for batch, held in kept.items():
                    if held and batch in self._held_at:
                        self._held_at[batch] = asked
