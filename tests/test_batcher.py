"""The batcher in-process on a real Redis: when it cuts a batch, and what a stop, a dead holder,
a lost lease, a Redis error, the open circuit and a refusing broker leave in the streams.

The broker is a recording stub: what the batcher decides is which task it offers and what it
keeps pending, and that is what these tests look at (holders, leases, tasks, outcomes). The
batcher's loop steps (`_tick`, `_read`, `_dispatch_due`, `_reclaim`, ...) are called directly
with chosen clocks, so nothing waits for a linger or a lease.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, cast

import orjson
import pytest
import redis
from celery import Celery

import config
from config import Settings
from devenv.redis_server import RedisServer
from tasks.channels import CHANNELS, Channel
from tasks.keys import CONSUMER_GROUP, SEND_BATCH, Keys, as_text
from tasks.results import iter_outcomes
from tests.conftest import SANDBOX_TOKEN
from tests.contract_cases import BASE
from tests.e2e.sandbox_view import requests
from worker import batcher as batcher_module
from worker import retention
from worker.batch import process_batch
from worker.batcher import (
    Batcher,
    BatcherStep,
    BrokerReconnectStep,
    Buffer,
    Queued,
    _stream_gone,
)
from worker.resources import Resources

SMS = CHANNELS["SMS"]
FLASHCALL = CHANNELS["FLASHCALL"]
SIZE = 3
LINGER_MS = 60_000  # a partial batch never lingers out by itself in these tests
LEASE_MS = 5000
GRACE_S = 2 * LEASE_MS / 1000  # `_settled`: two of the longest lease
NOWHERE = "http://127.0.0.1:9"  # loopback, for batchers that never send a request


@dataclass(frozen=True)
class Task:
    name: str
    args: list[str]
    kwargs: dict[str, Any] | None
    queue: str
    argsrepr: str


class Broker:
    """Records `send_task`; `refuse` plays a broker that is down or out of memory."""

    def __init__(self) -> None:
        self.tasks: list[Task] = []
        self.refuse = False

    def send_task(
        self,
        name: str,
        args: list[str],
        kwargs: dict[str, Any] | None,
        queue: str,
        argsrepr: str,
    ) -> None:
        if self.refuse:
            raise ConnectionError("broker refused the task")
        self.tasks.append(Task(name, list(args), kwargs, queue, argsrepr))

    @property
    def batches(self) -> list[str]:
        return [task.args[1] for task in self.tasks]


def make_settings(url: str, keys: Keys, api_url: str = NOWHERE, **extra: Any) -> Settings:
    return Settings.model_validate(
        {
            "redis_url": url,
            "dispatch_key_prefix": keys.prefix,
            "revicom_api_url": api_url,
            "revicom_api_token": SANDBOX_TOKEN,
            "lease_ms": LEASE_MS,
            "otp_lease_ms": LEASE_MS,
            "sms_batch_size": SIZE,
            "sms_linger_ms": LINGER_MS,
            "flashcall_batch_size": SIZE,
            "flashcall_linger_ms": LINGER_MS,
            **extra,
        }
    )


@pytest.fixture
def broker() -> Broker:
    return Broker()


Make = Callable[..., Batcher]


@pytest.fixture
def make(redis_url: str, keys: Keys, broker: Broker) -> Iterator[Make]:
    """Batchers on the test prefix, started as `_run` starts them (groups, reader lease)."""
    made: list[Batcher] = []

    def build(channels: list[Channel] | None = None, node: str = "node", **extra: Any) -> Batcher:
        settings = make_settings(redis_url, keys, **extra)
        b = Batcher(cast(Celery, broker), settings, channels or [SMS], node)
        for name in b._buffers:
            b._create_group(keys.jobs(name))
        b._ownership.new_reader(b.reader, b._lease_ms)
        made.append(b)
        return b

    yield build
    for b in made:
        b._stopping.set()
        b._redis.close()


@pytest.fixture
def worker_env(
    monkeypatch: pytest.MonkeyPatch, redis_url: str, keys: Keys, sandbox_url: str
) -> Iterator[None]:
    """The environment `Resources.current()` builds from, as in a worker process: batches
    drained in-process go to the test sandbox and write under the test prefix."""
    env = {
        "REDIS_URL": redis_url,
        "DISPATCH_KEY_PREFIX": keys.prefix,
        "REVICOM_API_URL": sandbox_url,
        "REVICOM_API_TOKEN": SANDBOX_TOKEN,
        "LEASE_MS": str(LEASE_MS),
        "OTP_LEASE_MS": str(LEASE_MS),
        "SMS_BATCH_SIZE": str(SIZE),
        "SMS_LINGER_MS": str(LINGER_MS),
        "FLASHCALL_BATCH_SIZE": str(SIZE),
        "FLASHCALL_LINGER_MS": str(LINGER_MS),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    config.get_settings.cache_clear()
    Resources._current = None
    yield
    config.get_settings.cache_clear()
    Resources._current = None


def enqueue(client: redis.Redis, keys: Keys, n: int, channel: str = "SMS") -> list[str]:
    stamp = time.monotonic_ns()
    jobs = [{"jobId": f"{channel}-{stamp}-{i}", "message": BASE[channel]} for i in range(n)]
    return [as_text(client.xadd(keys.jobs(channel), {"job": orjson.dumps(j)})) for j in jobs]


def holders(client: redis.Redis, keys: Keys, channel: str = "SMS") -> dict[str, int]:
    """Pending entries per consumer of the channel's group (holders holding none included)."""
    consumers: Any = client.xinfo_consumers(keys.jobs(channel), CONSUMER_GROUP)
    return {as_text(c["name"]): int(c["pending"]) for c in consumers}


def held_by(client: redis.Redis, keys: Keys, holder: str, channel: str = "SMS") -> list[str]:
    pending: Any = client.xpending_range(
        keys.jobs(channel), CONSUMER_GROUP, min="-", max="+", count=1000, consumername=holder
    )
    return [as_text(p["message_id"]) for p in pending]


def read_as(
    client: redis.Redis, keys: Keys, consumer: str, count: int, channel: str = "SMS"
) -> None:
    """XREADGROUP outside the batcher: another holder, or a reply the batcher never saw."""
    client.xreadgroup(CONSUMER_GROUP, consumer, {keys.jobs(channel): ">"}, count=count)


def lease(client: redis.Redis, keys: Keys, holder: str) -> str | None:
    value = client.get(keys.lease(holder))
    return None if value is None else as_text(value)


def outcomes(client: redis.Redis, keys: Keys) -> dict[str, str]:
    return {o.entryId or "": o.status for _, o in iter_outcomes(client, keys)}


def fill(b: Batcher, channel: str = "SMS") -> Buffer:
    """Read once (no wait: the entries are there), as a tick's read does."""
    buffer = b._buffers[channel]
    b._read([buffer], block_ms=1)
    return buffer


def wait_for(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def settled_redis(client: redis.Redis) -> None:
    """`_settled` also wants Redis up for two leases: a session Redis started just now waits."""
    wait_for(lambda: int(client.info("server")["uptime_in_seconds"]) >= GRACE_S, 3 * GRACE_S)


def open_circuit(client: redis.Redis, keys: Keys, probe_in_ms: int) -> None:
    seconds, micros = client.time()
    now_ms = int(seconds) * 1000 + int(micros) // 1000
    client.hset(
        keys.circuit,
        mapping={
            "state": "open",
            "until": now_ms + probe_in_ms,
            "reason": "test",
            "opened": now_ms,
        },
    )


# -- the buffer ------------------------------------------------------------------------------


def test_a_full_buffer_is_due_at_once_a_partial_one_only_after_its_linger() -> None:
    buffer = Buffer(SMS, size=3, linger_s=0.5)
    assert not buffer.due(100.0)
    assert buffer.wait_s(100.0) == float("inf")
    buffer.entries = [("1-0", 100.0), ("2-0", 100.2)]
    assert not buffer.due(100.25)
    assert buffer.wait_s(100.25) == pytest.approx(0.25)
    assert buffer.due(100.5)  # the first entry waited exactly its linger
    assert buffer.wait_s(101.0) == 0.0
    buffer.entries.append(("3-0", 100.3))
    assert buffer.due(100.3)  # full: no linger


def test_a_buffer_gives_at_most_its_size() -> None:
    buffer = Buffer(SMS, size=2, linger_s=0.5)
    buffer.entries = [(f"{i}-0", 1.0) for i in range(1, 6)]
    assert buffer.peek() == ["1-0", "2-0"]
    assert len(buffer.entries) == 5  # peek leaves them until handed over
    buffer.drop(2)
    assert buffer.take() == ["3-0", "4-0"]
    assert buffer.entries == [("5-0", 1.0)]


# -- cutting ---------------------------------------------------------------------------------


def test_a_full_batch_is_cut_at_once_and_handed_to_the_batch_its_task_names(
    make: Make, broker: Broker, redis_client: redis.Redis, keys: Keys
) -> None:
    ids = enqueue(redis_client, keys, SIZE)
    b = make()
    b._tick()  # reads
    b._tick()  # cuts: full, although its linger is a minute
    assert len(broker.tasks) == 1
    batch = broker.batches[0]
    assert broker.tasks[0] == Task(SEND_BATCH, ["SMS", batch], None, "bulk", "('SMS', <3 jobs>)")
    assert held_by(redis_client, keys, batch) == ids
    assert holders(redis_client, keys) == {b.reader: 0, batch: SIZE}
    assert lease(redis_client, keys, batch) == "queued"
    assert b._queued[batch].on_broker


@pytest.mark.parametrize("protocol", [2, 3])
def test_the_reader_takes_entry_ids_in_either_protocol(
    protocol: int, make: Make, redis_url: str, redis_client: redis.Redis, keys: Keys
) -> None:
    """The reader reads XREADGROUP's answer unparsed: a map of streams in RESP3, a list of
    pairs in RESP2; each entry's id, in stream order, on its channel's buffer."""
    sms = enqueue(redis_client, keys, 2)
    code = as_text(redis_client.xadd(keys.jobs("FLASHCALL"), {"job": "{}"}))
    b = make([SMS, FLASHCALL], redis_url=f"{redis_url}?protocol={protocol}")
    b._tick()
    assert [e for e, _ in b._buffers["SMS"].entries] == sms
    assert [e for e, _ in b._buffers["FLASHCALL"].entries] == [code]


def test_a_batch_never_exceeds_the_batch_size(
    make: Make, broker: Broker, redis_client: redis.Redis, keys: Keys
) -> None:
    ids = enqueue(redis_client, keys, 2 * SIZE + 1)
    b = make()
    assert len(fill(b).entries) == SIZE  # one read takes one batch
    fill(b)
    fill(b)
    b._dispatch_due(time.monotonic())  # two full batches at once, the rest lingers
    assert [held_by(redis_client, keys, batch) for batch in broker.batches] == [
        ids[:SIZE],
        ids[SIZE : 2 * SIZE],
    ]
    assert held_by(redis_client, keys, b.reader) == ids[2 * SIZE :]  # waits for its linger
    assert [e for e, _ in b._buffers["SMS"].entries] == ids[2 * SIZE :]


def test_a_partial_batch_is_cut_only_after_its_linger(
    make: Make, broker: Broker, redis_client: redis.Redis, keys: Keys
) -> None:
    ids = enqueue(redis_client, keys, 2)
    b = make()
    read_at = fill(b).entries[0][1]
    b._dispatch_due(read_at + LINGER_MS / 1000 - 0.001)
    assert broker.tasks == []
    b._dispatch_due(read_at + LINGER_MS / 1000)
    assert [t.argsrepr for t in broker.tasks] == ["('SMS', <2 jobs>)"]
    assert held_by(redis_client, keys, broker.batches[0]) == ids
    assert b._queued[broker.batches[0]].since == read_at + LINGER_MS / 1000


def spy_blocks(b: Batcher, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The BLOCK of each XREADGROUP the batcher sends (the call itself goes to Redis)."""
    blocks: list[int] = []
    real = b._redis.xreadgroup

    def xreadgroup(*args: Any, **kwargs: Any) -> Any:
        blocks.append(kwargs["block"])
        return real(*args, **kwargs)

    monkeypatch.setattr(b._redis, "xreadgroup", xreadgroup)
    return blocks


def test_the_read_blocks_until_the_next_batch_is_due_and_at_most_max_block(
    make: Make, redis_client: redis.Redis, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The BLOCK bounds how late a lingering batch is cut, and how late leases, takeovers and
    a stop are looked at; a buffer whose queue is full sets no deadline (it cannot be cut),
    so the other channels' reads still block. The batcher's clock is frozen so the waits
    are exact."""
    b = make([SMS, FLASHCALL], max_queued_batches=1)
    blocks = spy_blocks(b, monkeypatch)
    monkeypatch.setattr(batcher_module, "time", SimpleNamespace(monotonic=lambda: 1000.0))
    b._tick()
    b._buffers["FLASHCALL"].entries = [("1-0", 1000.0 - LINGER_MS / 1000 + 0.07995)]
    b._tick()
    b._buffers["FLASHCALL"].entries = []
    redis_client.rpush(keys.celery + "bulk", "task")  # SMS batches wait; FLASHCALL is read
    b._buffers["SMS"].entries = [("1-0", 1000.0 - LINGER_MS / 1000)]  # due, cannot be cut
    b._tick()
    redis_client.rpush(keys.celery + "otp", "task")  # every queue full: nothing is read
    started = time.perf_counter()
    b._tick()
    assert time.perf_counter() - started < 0.5  # only a short pause before looking again
    assert blocks == [100, 79, 100]


def test_a_full_queue_stops_cutting_and_reading(
    make: Make, broker: Broker, redis_client: redis.Redis, keys: Keys
) -> None:
    b = make([SMS, FLASHCALL], max_queued_batches=2)
    ids = enqueue(redis_client, keys, 2 * SIZE)
    flashcalls = enqueue(redis_client, keys, SIZE, "FLASHCALL")
    fill(b)
    redis_client.rpush(keys.celery + "bulk", "task-1", "task-2")  # two batches wait already
    assert b._queue_full(SMS)
    assert not b._queue_full(FLASHCALL)  # another queue
    b._tick()
    b._tick()
    assert [t.args[0] for t in broker.tasks] == ["FLASHCALL"]  # a code never waits for SMS
    assert held_by(redis_client, keys, broker.batches[0], "FLASHCALL") == flashcalls
    assert held_by(redis_client, keys, b.reader) == ids[:SIZE]  # read, not cut
    assert sum(holders(redis_client, keys).values()) == SIZE  # the rest left unread
    redis_client.lpop(keys.celery + "bulk")
    b._tick()
    assert [t.args[0] for t in broker.tasks] == ["FLASHCALL", "SMS"]
    assert held_by(redis_client, keys, broker.batches[1]) == ids[:SIZE]


# -- a refusing broker -----------------------------------------------------------------------


def test_a_refused_batch_is_offered_again_next_tick_with_its_lease_kept(
    make: Make, broker: Broker, redis_client: redis.Redis, keys: Keys
) -> None:
    ids = enqueue(redis_client, keys, SIZE)
    b = make()
    broker.refuse = True
    fill(b)
    b._dispatch_due(time.monotonic())
    assert broker.tasks == []
    [batch] = b._queued
    assert held_by(redis_client, keys, batch) == ids  # handed over, waiting for the broker
    redis_client.pexpire(keys.lease(batch), 300)
    b._renew(time.monotonic())
    assert int(redis_client.pttl(keys.lease(batch))) > 1000  # the lease is kept
    broker.refuse = False
    b._tick()
    assert broker.tasks == [Task(SEND_BATCH, ["SMS", batch], None, "bulk", "('SMS', <3 jobs>)")]
    b._tick()
    assert len(broker.tasks) == 1  # once accepted, offered no more


def test_unsent_batches_count_towards_a_full_queue(
    make: Make, broker: Broker, redis_client: redis.Redis, keys: Keys
) -> None:
    enqueue(redis_client, keys, 3 * SIZE)
    b = make([SMS, FLASHCALL], max_queued_batches=2)
    for _ in range(3):
        fill(b)
    broker.refuse = True
    b._dispatch_due(time.monotonic())
    assert len(b._queued) == 2  # the broker holds none of them, but they wait all the same
    assert len(b._buffers["SMS"].entries) == SIZE
    assert not b._queue_full(FLASHCALL)
    broker.refuse = False
    b._dispatch_due(time.monotonic())
    assert len(broker.tasks) == 3
    assert b._buffers["SMS"].entries == []


def test_batches_on_the_broker_are_offered_again_after_it_reconnected(
    make: Make, broker: Broker, redis_client: redis.Redis, keys: Keys
) -> None:
    enqueue(redis_client, keys, SIZE)
    b = make()
    fill(b)
    b._dispatch_due(time.monotonic())
    [batch] = broker.batches
    b._dispatch_due(time.monotonic())
    assert broker.batches == [batch]
    b.broker_reconnected()
    b._dispatch_due(time.monotonic())
    assert broker.batches == [batch, batch]  # its task may have been lost with the connection
    b._dispatch_due(time.monotonic())
    assert broker.batches == [batch, batch]


def test_a_batch_queued_too_long_is_let_go(
    make: Make, broker: Broker, redis_client: redis.Redis, keys: Keys
) -> None:
    enqueue(redis_client, keys, SIZE)
    b = make(queued_batch_timeout_s=10)
    fill(b)
    b._dispatch_due(time.monotonic())
    [batch] = broker.batches
    since = b._queued[batch].since
    b._renew(since + 10)
    assert batch in b._queued
    redis_client.pexpire(keys.lease(batch), 300)
    b._renew(since + 10.5)
    assert batch not in b._queued
    assert int(redis_client.pttl(keys.lease(batch))) <= 300  # no longer renewed: taken over
    assert int(redis_client.pttl(keys.lease(b.reader))) > 1000  # the reader lives on


def test_a_queued_batch_keeps_its_lease_through_a_redis_restart(
    make: Make, broker: Broker, redis_client: redis.Redis, keys: Keys
) -> None:
    """Redis came back without the lease (or after it lapsed): the batch still holds its
    entries, so its lease is set again rather than its entries taken over."""
    ids = enqueue(redis_client, keys, SIZE)
    b = make()
    fill(b)
    b._dispatch_due(time.monotonic())
    [batch] = broker.batches
    redis_client.delete(keys.lease(batch))
    b._renew(time.monotonic())
    assert lease(redis_client, keys, batch) == "queued"
    assert batch in b._queued
    assert held_by(redis_client, keys, batch) == ids


def test_a_started_batch_is_no_longer_kept_by_the_batcher(
    make: Make, broker: Broker, redis_client: redis.Redis, keys: Keys
) -> None:
    enqueue(redis_client, keys, SIZE)
    b = make()
    fill(b)
    b._dispatch_due(time.monotonic())
    [batch] = broker.batches
    assert b._ownership.start("SMS", batch) is not None
    b._renew(time.monotonic())
    assert b._queued == {}
    assert lease(redis_client, keys, batch) == "running"


# -- a lost lease ----------------------------------------------------------------------------


def test_a_reader_that_lost_its_lease_forgets_what_it_read_and_reads_on_under_a_new_name(
    make: Make, broker: Broker, redis_client: redis.Redis, keys: Keys
) -> None:
    ids = enqueue(redis_client, keys, 3 * SIZE)
    b = make()
    fill(b)
    b._dispatch_due(time.monotonic())  # on the broker
    broker.refuse = True
    fill(b)
    b._dispatch_due(time.monotonic())  # refused: not on the broker
    fill(b)
    old = b.reader
    sent, unsent = list(b._queued)
    redis_client.delete(keys.lease(old))  # lapsed: a live reader may have taken them
    b._renew(time.monotonic())
    assert b.reader != old
    assert b.reader.startswith("r-node-")
    assert lease(redis_client, keys, b.reader) == "reader"
    assert 0 < int(redis_client.pttl(keys.lease(b.reader))) <= LEASE_MS
    assert b._buffers["SMS"].entries == []
    assert list(b._queued) == [sent]  # its task is on the broker; the other one is let go
    assert held_by(redis_client, keys, old) == ids[2 * SIZE :]  # left to whoever takes it
    assert held_by(redis_client, keys, unsent) == ids[SIZE : 2 * SIZE]
    more = enqueue(redis_client, keys, 2)
    fill(b)
    assert held_by(redis_client, keys, b.reader) == more


def test_a_reader_without_its_lease_cuts_nothing(
    make: Make, broker: Broker, redis_client: redis.Redis, keys: Keys
) -> None:
    ids = enqueue(redis_client, keys, 2 * SIZE)
    b = make()
    fill(b)
    fill(b)
    old = b.reader
    redis_client.delete(keys.lease(old))
    b._dispatch_due(time.monotonic())
    assert broker.tasks == []
    assert b._queued == {}
    assert b.reader != old
    assert b._buffers["SMS"].entries == []
    assert held_by(redis_client, keys, old) == ids


# -- taking over from dead holders -----------------------------------------------------------


def test_a_dead_holders_entries_are_taken_over_overdue_and_cut_at_once(
    make: Make, broker: Broker, redis_client: redis.Redis, keys: Keys
) -> None:
    settled_redis(redis_client)
    b = make()
    dead = enqueue(redis_client, keys, 2)
    read_as(redis_client, keys, "r-dead", 2)  # its process died: no lease
    live = enqueue(redis_client, keys, 2)
    redis_client.set(keys.lease("r-live"), "reader", px=LEASE_MS)
    read_as(redis_client, keys, "r-live", 2)
    now = time.monotonic()
    b._reclaim(now)
    assert [e for e, _ in b._buffers["SMS"].entries] == dead
    assert held_by(redis_client, keys, "r-live") == live  # a live holder is never taken over
    b._dispatch_due(now)  # overdue: a partial batch goes at once
    assert [held_by(redis_client, keys, batch) for batch in broker.batches] == [dead]


def test_every_dead_holder_of_every_channel_is_taken_over_in_one_pass(
    make: Make, redis_client: redis.Redis, keys: Keys
) -> None:
    settled_redis(redis_client)
    b = make([SMS, FLASHCALL])
    enqueue(redis_client, keys, 1)
    read_as(redis_client, keys, "r-a-empty", 1)
    redis_client.xack(keys.jobs("SMS"), CONSUMER_GROUP, *held_by(redis_client, keys, "r-a-empty"))
    first = enqueue(redis_client, keys, 1)
    read_as(redis_client, keys, "r-b-dead", 1)
    second = enqueue(redis_client, keys, 1)
    read_as(redis_client, keys, "r-c-dead", 1)
    codes = enqueue(redis_client, keys, 1, "FLASHCALL")
    read_as(redis_client, keys, "r-d-dead", 1, "FLASHCALL")
    b._reclaim(time.monotonic())
    assert [e for e, _ in b._buffers["SMS"].entries] == first + second
    assert [e for e, _ in b._buffers["FLASHCALL"].entries] == codes
    assert "r-a-empty" not in holders(redis_client, keys)  # holding nothing: forgotten


def test_a_takeover_stops_at_two_batches(
    make: Make, redis_client: redis.Redis, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Takeovers go as fast as batches are cut, not faster: the rest stays with the dead one."""
    settled_redis(redis_client)
    monkeypatch.setattr(batcher_module, "RECLAIM_COUNT", 2)
    b = make()
    ids = enqueue(redis_client, keys, 4 * SIZE)
    read_as(redis_client, keys, "b-dead", 4 * SIZE)
    b._reclaim(time.monotonic())
    assert [e for e, _ in b._buffers["SMS"].entries] == ids[: 2 * SIZE]
    assert held_by(redis_client, keys, "b-dead") == ids[2 * SIZE :]


def test_a_takeover_repeats_while_the_script_returns_full_calls(
    make: Make, redis_client: redis.Redis, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    settled_redis(redis_client)
    monkeypatch.setattr(batcher_module, "RECLAIM_COUNT", 2)
    b = make()
    ids = enqueue(redis_client, keys, 5)
    read_as(redis_client, keys, "b-dead", 5)
    b._reclaim(time.monotonic())
    assert [e for e, _ in b._buffers["SMS"].entries] == ids  # 2, 2, then 1


def test_nothing_is_taken_over_until_two_leases_after_a_reconnect(
    make: Make, redis_client: redis.Redis, keys: Keys
) -> None:
    """After a reconnect every lease may have lapsed while its holder lives."""
    settled_redis(redis_client)
    b = make()
    enqueue(redis_client, keys, 2)
    read_as(redis_client, keys, "r-quiet", 2)
    b._connected_since = None  # Redis is failing
    b._reclaim(1000.0)
    assert b._buffers["SMS"].entries == []
    b._connected_since = 1000.0 - GRACE_S + 0.005
    assert not b._settled(1000.0)
    b._reclaim(1000.0)
    assert b._buffers["SMS"].entries == []
    b._connected_since = 1000.0 - GRACE_S
    assert b._settled(1000.0)
    b._reclaim(1000.0)
    assert len(b._buffers["SMS"].entries) == 2


def test_nothing_is_taken_over_from_a_redis_that_just_started(broker: Broker, keys: Keys) -> None:
    """A restarted Redis lost its leases with its memory (or kept entries from the AOF)."""
    with RedisServer() as server:
        b = Batcher(cast(Celery, broker), make_settings(server.url, keys), [SMS], "node")
        try:
            assert not b._settled(time.monotonic())  # uptime 0 s < 2 leases
        finally:
            b._redis.close()


# -- Redis errors ----------------------------------------------------------------------------


def test_entries_read_with_a_lost_reply_are_recovered_and_cut_at_once(
    make: Make, broker: Broker, redis_client: redis.Redis, keys: Keys
) -> None:
    b = make([SMS, FLASHCALL])
    known = enqueue(redis_client, keys, 1)
    fill(b)
    lost = enqueue(redis_client, keys, 2)
    read_as(redis_client, keys, b.reader, 2)  # XREADGROUP ran, its reply never came back
    others = enqueue(redis_client, keys, 2)
    redis_client.set(keys.lease("r-other"), "reader", px=LEASE_MS)
    read_as(redis_client, keys, "r-other", 2)  # another holder's: never this reader's
    lost_codes = enqueue(redis_client, keys, 2, "FLASHCALL")
    read_as(redis_client, keys, b.reader, 2, "FLASHCALL")
    b._resync = True
    b._recover_read(time.monotonic())
    assert [e for e, _ in b._buffers["SMS"].entries] == known + lost
    b._buffers["SMS"].entries.clear()
    b._buffers["FLASHCALL"].entries.clear()
    b._tick()  # a tick after a Redis error recovers first, then cuts what is overdue
    assert not b._resync
    assert held_by(redis_client, keys, "r-other") == others
    held = {t.args[0]: held_by(redis_client, keys, t.args[1], t.args[0]) for t in broker.tasks}
    assert held == {"SMS": known + lost, "FLASHCALL": lost_codes}


@pytest.mark.parametrize(
    ("message", "gone"),
    [
        ("NOGROUP No such key 'x' or consumer group 'dispatch'", True),
        ("NOGROUP No such consumer group 'dispatch' for key name 'x'", True),
        ("ERR no such key", True),
        ("ERR No Such Key", True),
        ("ERR a reply about NOGROUP", False),
        ("OOM command not allowed when used memory > 'maxmemory'", False),
    ],
)
def test_a_missing_stream_or_group_is_told_from_other_errors(message: str, gone: bool) -> None:
    assert _stream_gone(redis.ResponseError(message)) is gone


class NoWait(threading.Event):
    """The loop's pauses, recorded instead of waited (a retry pause is a second)."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float | None] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout)
        return self.is_set()


def run_ticks(b: Batcher, monkeypatch: pytest.MonkeyPatch, *steps: Callable[[], None]) -> NoWait:
    """Run the batcher's loop in this thread, each tick one of `steps`, then stop."""
    stopping = NoWait()
    b._stopping = stopping
    script = iter(steps)

    def tick() -> None:
        step = next(script, None)
        if step is None:
            stopping.set()
        else:
            step()

    monkeypatch.setattr(b, "_tick", tick)
    b._run()
    return stopping


def test_the_loop_starts_by_creating_the_groups_and_the_reader_lease(
    redis_url: str,
    redis_client: redis.Redis,
    keys: Keys,
    broker: Broker,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    b = Batcher(cast(Celery, broker), make_settings(redis_url, keys), [SMS, FLASHCALL], "node")
    seen: list[tuple[str | None, int, int]] = []

    def look() -> None:
        sms, codes = (len(redis_client.xinfo_groups(keys.jobs(c))) for c in ("SMS", "FLASHCALL"))
        seen.append((lease(redis_client, keys, b.reader), sms, codes))
        assert 0 < int(redis_client.pttl(keys.lease(b.reader))) <= LEASE_MS

    try:
        stopping = run_ticks(b, monkeypatch, look, look)
    finally:
        b._redis.close()
    assert seen == [("reader", 1, 1), ("reader", 1, 1)]
    assert stopping.waits == []


def test_the_groups_are_created_again_when_redis_lost_the_streams(
    make: Make, redis_client: redis.Redis, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    b = make()
    real_tick = b._tick
    readers: list[str] = []
    real_new_reader = b._ownership.new_reader

    def new_reader(name: str, ms: int) -> None:
        readers.append(name)
        real_new_reader(name, ms)

    monkeypatch.setattr(b._ownership, "new_reader", new_reader)

    def redis_came_back_empty() -> None:
        redis_client.delete(keys.jobs("SMS"))
        real_tick()  # raises: no such key, or NOGROUP

    seen: list[tuple[bool, bool, int]] = []

    def look() -> None:
        groups = redis_client.xinfo_groups(keys.jobs("SMS"))
        seen.append((b._connected_since is None, b._resync, len(groups)))

    stopping = run_ticks(b, monkeypatch, redis_came_back_empty, look)
    assert seen == [(True, True, 1)]
    assert readers == [b.reader, b.reader]  # started, then started again under a fresh lease
    assert stopping.waits == [1]
    assert b._connected_since is not None  # a good tick: connected again


def test_other_redis_errors_retry_without_starting_again(
    make: Make, redis_client: redis.Redis, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    b = make()
    starts: list[str] = []
    seen: list[tuple[bool, bool]] = []

    def started() -> None:
        monkeypatch.setattr(b, "_create_group", starts.append)
        monkeypatch.setattr(b._ownership, "new_reader", lambda name, ms: starts.append(name))

    def fail(error: Exception) -> Callable[[], None]:
        def tick() -> None:
            raise error

        return tick

    def look() -> None:
        seen.append((b._connected_since is None, b._resync))

    stopping = run_ticks(
        b,
        monkeypatch,
        started,
        fail(redis.ResponseError("OOM command not allowed")),
        look,
        fail(redis.ConnectionError("Redis is down")),
        look,
    )
    assert starts == []
    assert seen == [(True, True), (True, True)]
    assert stopping.waits == [1, 1]


def test_the_loop_survives_an_unexpected_error(make: Make, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never let the thread die: a pod without its batcher sits idle."""
    b = make()

    def broken() -> None:
        raise ValueError("a bug")

    ran: list[bool] = []
    stopping = run_ticks(b, monkeypatch, broken, lambda: ran.append(True))
    assert ran == [True]
    assert stopping.waits == [1]
    assert not b._resync  # not a Redis error: nothing to recover
    assert b._connected_since == float("-inf")


def test_the_batcher_thread_never_starts_again_after_a_good_start(
    make: Make, redis_client: redis.Redis, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    b = make()
    b._create_group(keys.jobs("SMS"))
    calls: list[str] = []
    original = b._ownership.new_reader

    def new_reader(name: str, ms: int) -> None:
        calls.append(name)
        original(name, ms)

    monkeypatch.setattr(b._ownership, "new_reader", new_reader)
    run_ticks(b, monkeypatch, lambda: None, lambda: None, lambda: None)
    assert calls == [b.reader]


# -- the circuit -----------------------------------------------------------------------------


def test_nothing_is_read_or_cut_while_the_circuit_is_open(
    make: Make, broker: Broker, redis_client: redis.Redis, keys: Keys
) -> None:
    ids = enqueue(redis_client, keys, 2 * SIZE)
    b = make()
    fill(b)  # a full batch, read before the circuit opened
    open_circuit(redis_client, keys, probe_in_ms=60_000)
    b._tick()
    b._tick()
    assert broker.tasks == []
    assert held_by(redis_client, keys, b.reader) == ids[:SIZE]
    assert sum(holders(redis_client, keys).values()) == SIZE  # the rest waits in the stream
    assert redis_client.get(keys.circuit_probe) is None
    redis_client.delete(keys.circuit)  # the probe succeeded: closed
    b._tick()
    b._tick()
    assert [held_by(redis_client, keys, batch) for batch in broker.batches] == [
        ids[:SIZE],
        ids[SIZE:],
    ]


def test_the_probe_batch_is_cut_when_it_is_due(
    make: Make,
    broker: Broker,
    redis_client: redis.Redis,
    keys: Keys,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ids = enqueue(redis_client, keys, 2)
    b = make()
    blocks = spy_blocks(b, monkeypatch)
    open_circuit(redis_client, keys, probe_in_ms=-1)
    b._tick()
    assert blocks == [1]  # a paused batcher has read nothing: it reads without waiting
    assert [(t.args, t.kwargs) for t in broker.tasks] == [
        (["SMS", broker.batches[0]], {"probe": True})
    ]
    assert held_by(redis_client, keys, broker.batches[0]) == ids
    assert redis_client.get(keys.circuit_probe) == broker.batches[0].encode()  # the token
    b._tick()
    assert len(broker.tasks) == 1  # one probe at a time
    redis_client.pexpire(keys.lease(broker.batches[0]), 300)
    b._renew(time.monotonic())
    assert int(redis_client.pttl(keys.lease(broker.batches[0]))) > 1000  # kept while queued


def test_a_batcher_with_nothing_to_probe_gives_the_token_back(
    make: Make, broker: Broker, redis_client: redis.Redis, keys: Keys
) -> None:
    b = make()
    open_circuit(redis_client, keys, probe_in_ms=-1)
    b._tick()
    assert broker.tasks == []
    assert redis_client.get(keys.circuit_probe) is None  # another batcher may probe


def test_no_probe_while_another_batcher_holds_the_token(
    make: Make, broker: Broker, redis_client: redis.Redis, keys: Keys
) -> None:
    enqueue(redis_client, keys, 2)
    b = make()
    open_circuit(redis_client, keys, probe_in_ms=-1)
    redis_client.set(keys.circuit_probe, "r-other")
    b._tick()
    assert broker.tasks == []
    assert redis_client.get(keys.circuit_probe) == b"r-other"


def test_a_probe_uses_what_was_read_before_the_circuit_opened(
    make: Make, broker: Broker, redis_client: redis.Redis, keys: Keys
) -> None:
    b = make([SMS, FLASHCALL])
    codes = enqueue(redis_client, keys, 1, "FLASHCALL")
    fill(b, "FLASHCALL")
    enqueue(redis_client, keys, 1)
    open_circuit(redis_client, keys, probe_in_ms=-1)
    b._tick()
    assert [t.args[0] for t in broker.tasks] == ["FLASHCALL"]
    assert held_by(redis_client, keys, broker.batches[0], "FLASHCALL") == codes
    assert holders(redis_client, keys) == {}  # nothing more read for the probe


def test_a_refused_probe_is_offered_again_while_paused_but_no_other_batch(
    make: Make, broker: Broker, redis_client: redis.Redis, keys: Keys
) -> None:
    enqueue(redis_client, keys, SIZE + 1)
    b = make()
    broker.refuse = True
    fill(b)
    b._dispatch_due(time.monotonic())  # a batch the broker refused before the circuit opened
    [batch] = b._queued
    open_circuit(redis_client, keys, probe_in_ms=-1)
    b._tick()
    probe = next(q for q in b._queued if q != batch)
    broker.refuse = False
    b._tick()
    assert [(t.args[1], t.kwargs) for t in broker.tasks] == [(probe, {"probe": True})]
    assert not b._queued[batch].on_broker  # waits for the circuit to close


# -- shutdown --------------------------------------------------------------------------------


@pytest.mark.usefixtures("worker_env")
def test_stop_sends_what_the_batcher_holds_itself_and_ends_its_lease(
    make: Make,
    broker: Broker,
    redis_client: redis.Redis,
    keys: Keys,
    sandbox: Any,
) -> None:
    """SIGTERM: stop reading, send what was read in this process, within the grace period."""
    b = make(shutdown_grace_s=30)
    full = enqueue(redis_client, keys, SIZE)
    b.start()
    wait_for(lambda: len(broker.tasks) == 1)
    read = enqueue(redis_client, keys, 2)
    wait_for(lambda: held_by(redis_client, keys, b.reader) == read)
    b.stop()
    assert not b._thread.is_alive()
    assert outcomes(redis_client, keys) == dict.fromkeys(read, "accepted")
    assert [len(m) for m in requests(sandbox).values()] == [2]
    assert held_by(redis_client, keys, broker.batches[0]) == full  # on the broker: left there
    assert held_by(redis_client, keys, b.reader) == []
    assert lease(redis_client, keys, b.reader) is None


@pytest.mark.usefixtures("worker_env")
def test_after_the_grace_period_the_rest_stays_pending_and_is_taken_over_at_once(
    make: Make, broker: Broker, redis_client: redis.Redis, keys: Keys, sandbox: Any
) -> None:
    settled_redis(redis_client)
    b = make(shutdown_grace_s=0)
    b.start()
    read = enqueue(redis_client, keys, 2)
    wait_for(lambda: held_by(redis_client, keys, b.reader) == read)
    b.stop()
    assert outcomes(redis_client, keys) == {}
    assert requests(sandbox) == {}
    assert held_by(redis_client, keys, b.reader) == read  # not acknowledged
    assert lease(redis_client, keys, b.reader) is None
    live = make(node="live")
    live._reclaim(time.monotonic())  # at once, not a lease later
    assert [e for e, _ in live._buffers["SMS"].entries] == read


@pytest.mark.usefixtures("worker_env")
def test_the_drain_sends_refused_batches_and_every_buffer_in_batches_of_its_size(
    make: Make,
    broker: Broker,
    redis_client: redis.Redis,
    keys: Keys,
    sandbox: Any,
) -> None:
    ids = enqueue(redis_client, keys, 3 * SIZE - 1)
    b = make()
    broker.refuse = True
    fill(b)
    b._dispatch_due(time.monotonic())
    fill(b)
    fill(b)
    reader_ttls: list[int] = []
    send_here = b._send_here

    def sending(res: Resources, channel: Channel, batch: str) -> None:
        reader_ttls.append(int(redis_client.pttl(keys.lease(b.reader))))
        redis_client.pexpire(keys.lease(b.reader), 1000)  # the drain takes its time
        send_here(res, channel, batch)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(b, "_send_here", sending)
        b._drain(time.monotonic() + 30)
    assert outcomes(redis_client, keys) == dict.fromkeys(ids, "accepted")
    assert sorted(len(m) for m in requests(sandbox).values()) == [SIZE - 1, SIZE, SIZE]
    assert set(holders(redis_client, keys).values()) == {0}  # all acknowledged
    assert min(reader_ttls[1:]) > 1000  # renewed before each hand-over
    assert lease(redis_client, keys, b.reader) is None


@pytest.mark.usefixtures("worker_env")
def test_the_drain_stops_at_its_deadline(
    make: Make, broker: Broker, redis_client: redis.Redis, keys: Keys, sandbox: Any
) -> None:
    ids = enqueue(redis_client, keys, SIZE + 1)
    b = make()
    broker.refuse = True
    fill(b)
    b._dispatch_due(time.monotonic())
    [batch] = b._queued
    fill(b)
    b._drain(time.monotonic())
    assert outcomes(redis_client, keys) == {}
    assert requests(sandbox) == {}
    assert held_by(redis_client, keys, batch) == ids[:SIZE]
    assert held_by(redis_client, keys, b.reader) == ids[SIZE:]
    assert lease(redis_client, keys, b.reader) is None


@pytest.mark.usefixtures("worker_env")
def test_a_failing_batch_does_not_stop_the_drain(
    make: Make,
    redis_client: redis.Redis,
    keys: Keys,
    sandbox: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    enqueue(redis_client, keys, 2)
    codes = enqueue(redis_client, keys, 2, "FLASHCALL")
    b = make([SMS, FLASHCALL])
    fill(b)
    fill(b, "FLASHCALL")

    def process(res: Resources, channel: str, batch: str) -> Any:
        if channel == "SMS":
            raise redis.ConnectionError("Redis went away mid-batch")
        return process_batch(res, channel, batch)

    monkeypatch.setattr(batcher_module, "process_batch", process)
    b._drain(time.monotonic() + 30)
    assert outcomes(redis_client, keys) == dict.fromkeys(codes, "accepted")
    assert lease(redis_client, keys, b.reader) is None


# -- the Celery bootsteps --------------------------------------------------------------------


def fake_worker(broker: Broker, queues: set[str]) -> Any:
    amqp = SimpleNamespace(queues=SimpleNamespace(consume_from=dict.fromkeys(queues)))
    return SimpleNamespace(
        app=SimpleNamespace(amqp=amqp, send_task=broker.send_task), hostname="celery@node1"
    )


@pytest.mark.usefixtures("worker_env")
def test_the_bootstep_runs_a_batcher_for_the_consumed_queues(
    broker: Broker, redis_client: redis.Redis, keys: Keys
) -> None:
    worker = fake_worker(broker, {"otp", "celery"})
    step = BatcherStep(worker)
    step.start(worker)
    batcher = step.batcher
    assert batcher is not None
    try:
        assert set(batcher._buffers) == {"FLASHCALL", "VOICECODE", "FLASHCALL_CONVERSION"}
        assert batcher.reader.startswith("r-celery@node1-")
        assert batcher._thread.daemon  # never holds the process up at exit
        codes = enqueue(redis_client, keys, SIZE, "FLASHCALL")
        wait_for(lambda: len(broker.tasks) == 1)  # through the worker's app
        assert held_by(redis_client, keys, broker.batches[0], "FLASHCALL") == codes
    finally:
        step.stop(worker)
    assert step.batcher is None
    assert lease(redis_client, keys, batcher.reader) is None
    batcher._redis.close()


@pytest.mark.usefixtures("worker_env")
def test_the_bootstep_runs_no_batcher_without_channels(broker: Broker) -> None:
    worker = fake_worker(broker, {"celery"})
    step = BatcherStep(worker)
    step.start(worker)
    assert step.batcher is None
    step.stop(worker)


def test_a_broker_reconnect_reaches_the_batcher(make: Make, broker: Broker) -> None:
    b = make()
    b._queued["b-1"] = Queued(SMS, 1, 0.0, on_broker=True)
    with_batcher = BatcherStep(fake_worker(broker, set()))
    with_batcher.batcher = b
    parent = SimpleNamespace(
        controller=SimpleNamespace(
            steps=[object(), BatcherStep(fake_worker(broker, set())), with_batcher]
        )
    )
    step = BrokerReconnectStep(parent)
    step.start(parent)  # the first connection
    assert not b._queued["b-1"].maybe_lost
    step.start(parent)  # made again
    assert b._queued["b-1"].maybe_lost


def test_a_pause_and_the_resume_are_logged_once(
    make: Make, redis_client: redis.Redis, keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    """Operators see when and why reading stopped and started again, not one line per tick."""
    b = make()
    with caplog.at_level(logging.WARNING, logger="worker.batcher"):
        b._tick()
        open_circuit(redis_client, keys, probe_in_ms=60_000)
        b._tick()
        b._tick()
        redis_client.delete(keys.circuit)
        b._tick()
        b._tick()
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        f"batcher {b.reader} paused, circuit open: test",
        f"batcher {b.reader} reads again: the circuit closed",
    ]


def test_leases_are_renewed_and_takeovers_looked_for_every_quarter_lease(
    make: Make, redis_client: redis.Redis, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A quarter of a lease between renewals: three can fail before the lease lapses. The
    batcher's clock is set by the test; the trimmer runs every TRIM_EVERY_S."""
    b = make(max_queued_batches=1)
    redis_client.rpush(keys.celery + "bulk", "task")  # nothing to read: ticks do not block
    clock = SimpleNamespace(now=1000.0)
    monkeypatch.setattr(batcher_module, "time", SimpleNamespace(monotonic=lambda: clock.now))
    calls: list[tuple[str, float]] = []
    monkeypatch.setattr(b, "_renew", lambda now: calls.append(("renew", now)))
    monkeypatch.setattr(b, "_reclaim", lambda now: calls.append(("reclaim", now)))
    monkeypatch.setattr(retention, "trim", lambda *args: calls.append(("trim", clock.now)))
    quarter = LEASE_MS / 4000
    for now in (1000.0, 1000.0 + quarter - 0.0001, 1000.0 + quarter, 1000.0 + 2 * quarter):
        clock.now = now
        b._tick()
    assert calls == [
        ("renew", 1000.0),
        ("reclaim", 1000.0),
        ("trim", 1000.0),
        ("renew", 1000.0 + quarter),
        ("reclaim", 1000.0 + quarter),
        ("renew", 1000.0 + 2 * quarter),
        ("reclaim", 1000.0 + 2 * quarter),
    ]
    calls.clear()
    clock.now = 1000.0 + retention.TRIM_EVERY_S
    b._tick()
    assert ("trim", clock.now) in calls
