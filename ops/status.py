"""A snapshot of every channel's stream, the results stream, the dead letters, delivery
tracking, the balance guard, and the send-rate limits with the endpoints a 429 paused."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import redis

from config import Settings
from tasks.balance_state import bulk_guard, read_balance, stale_after_s
from tasks.channels import CHANNELS
from tasks.circuit_state import read_state
from tasks.keys import CONSUMER_GROUP, Keys, as_text
from worker.rate_limits.state import Rates, read_rates


@dataclass(frozen=True)
class ChannelStatus:
    channel: str
    queue: str
    length: int  # entries in the stream: not yet read, or read and not yet finished
    unread: int | None  # not yet read by any worker (Redis >= 7 reports it)
    pending: int  # read by a worker, not yet finished
    consumers: int
    oldest_pending_age_s: float | None  # since the oldest pending job was enqueued


@dataclass(frozen=True)
class StrayStream:
    """A stream under `{prefix}:jobs:` that no worker reads (`jobs:sms`, `jobs:VIBER`): its
    entries never get an outcome until they are moved to a channel's stream."""

    stream: str
    length: int


@dataclass(frozen=True)
class Circuit:
    open: bool
    reason: str  # why it opened (an API answer or a network error; never the token)
    open_for_s: float | None


@dataclass(frozen=True)
class Tracking:
    statuses: int  # entries on the statuses stream
    awaiting_final: int  # accepted messages without a final status (scheduled for lookups)
    overdue: int  # of those, due for a lookup now: the poller is behind (or not running)
    parked: int  # messageUuids with callbacks that came before their outcome


@dataclass(frozen=True)
class Balance:
    amounts: dict[str, float]  # currency → amount, as last refreshed (empty: never)
    age_s: float | None  # since the last successful refresh
    stale: bool  # too old to guard anything (or never refreshed)
    error: str  # why the last refresh failed ('' after a success)
    min_balance: float | None  # MIN_BALANCE of the pod asking
    bulk_paused: bool  # the bulk channels wait for the balance to come back
    reason: str  # why they wait


@dataclass(frozen=True)
class Status:
    channels: list[ChannelStatus]
    results: int
    dead: int
    stray: list[StrayStream]
    circuit: Circuit
    results_bytes: int  # memory the results stream takes in Redis (sampled estimate)
    dead_bytes: int
    tracking: Tracking
    balance: Balance
    rates: Rates | None = None  # with the pod's settings only: the limits are theirs

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def snapshot(client: redis.Redis, keys: Keys, settings: Settings | None = None) -> Status:
    """Everything as stored; the guard judged with `settings` (MIN_BALANCE,
    BALANCE_REFRESH_S), or without a threshold and the default refresh period; the rate
    limits with `settings` only."""
    now_ms = time.time() * 1000
    channels = [_channel(client, keys, name, now_ms) for name in CHANNELS]
    circuit = read_state(client, keys.circuit)
    open_for = None
    if circuit.open and circuit.opened_ms is not None:
        open_for = round(max(0.0, now_ms - circuit.opened_ms) / 1000, 1)
    return Status(
        channels,
        int(client.xlen(keys.results)),
        int(client.xlen(keys.dead)),
        _stray(client, keys),
        Circuit(circuit.open, circuit.reason, open_for),
        _bytes(client, keys.results),
        _bytes(client, keys.dead),
        Tracking(
            int(client.xlen(keys.statuses)),
            int(client.zcard(keys.tracking)),
            int(client.zcount(keys.tracking, "-inf", int(now_ms))),
            int(client.zcard(keys.parked_index)),
        ),
        _balance(client, keys, settings),
        None if settings is None else read_rates(client, keys, settings),
    )


def _balance(client: redis.Redis, keys: Keys, settings: Settings | None) -> Balance:
    refresh_s = Settings.model_fields["balance_refresh_s"].default
    minimum = None
    if settings is not None:
        refresh_s, minimum = settings.balance_refresh_s, settings.min_balance
    state = read_balance(client, keys.balance)
    guard = bulk_guard(state, minimum, stale_after_s(refresh_s))
    return Balance(
        {c: float(a) for c, a in sorted(state.amounts.items())},
        None if state.age_s is None else round(state.age_s, 1),
        guard.stale,
        state.error,
        None if minimum is None else float(minimum),
        guard.paused,
        guard.reason,
    )


def _bytes(client: redis.Redis, key: str) -> int:
    return int(client.memory_usage(key) or 0)


def _stray(client: redis.Redis, keys: Keys) -> list[StrayStream]:
    known = {keys.jobs(name) for name in CHANNELS}
    stray = []
    for key in client.scan_iter(match=keys.jobs("*"), count=1000, _type="stream"):
        name = as_text(key)
        if name not in known:
            stray.append(StrayStream(name, int(client.xlen(name))))
    return sorted(stray, key=lambda s: s.stream)


def _channel(client: redis.Redis, keys: Keys, name: str, now_ms: float) -> ChannelStatus:
    stream = keys.jobs(name)
    queue = CHANNELS[name].queue
    if not client.exists(stream):
        return ChannelStatus(name, queue, 0, 0, 0, 0, None)
    groups: Any = client.xinfo_groups(stream)
    group = next((g for g in groups if as_text(g["name"]) == CONSUMER_GROUP), None)
    if group is None:  # no worker has started on this stream yet: everything is unread
        length = int(client.xlen(stream))
        return ChannelStatus(name, queue, length, length, 0, 0, None)
    pending: Any = client.xpending(stream, CONSUMER_GROUP)
    oldest = None
    if pending["pending"]:
        oldest_ms = int(as_text(pending["min"]).split("-")[0])
        oldest = round(max(0.0, now_ms - oldest_ms) / 1000, 3)
    lag = group.get("lag")
    return ChannelStatus(
        name,
        queue,
        int(client.xlen(stream)),
        None if lag is None else int(lag),
        int(pending["pending"]),
        int(group["consumers"]),
        oldest,
    )
