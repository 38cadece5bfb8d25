"""The holder invariant and the finish step, on a real Redis: each script's refusals as well as
its successes, since the promise rests on what they refuse."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from config import Settings
from tasks.keys import CONSUMER_GROUP, Keys, as_text
from worker import ownership as ownership_module
from worker.batch import isolate
from worker.ledger import Finished, Ledger
from worker.ownership import (
    Lease,
    LeaseKeeper,
    LeaseTimes,
    Ownership,
    new_batch_id,
    waiting_holder,
)

LEASE_MS = 1000
CHANNEL = "SMS"


@pytest.fixture
def own(redis_client: redis.Redis, keys: Keys) -> Ownership:
    redis_client.xgroup_create(keys.jobs(CHANNEL), CONSUMER_GROUP, id="0", mkstream=True)
    return Ownership(redis_client, keys, LeaseTimes(LEASE_MS, LEASE_MS))


@pytest.fixture
def ledger(redis_client: redis.Redis, keys: Keys) -> Ledger:
    return Ledger(redis_client, keys, ttl_s=86_400, leases=LeaseTimes(LEASE_MS, LEASE_MS))


def enqueue(client: redis.Redis, keys: Keys, *jobs: str) -> list[str]:
    return [as_text(client.xadd(keys.jobs(CHANNEL), {"job": job})) for job in jobs]


def read(client: redis.Redis, keys: Keys, reader: str) -> list[str]:
    reply: Any = client.xreadgroup(CONSUMER_GROUP, reader, {keys.jobs(CHANNEL): ">"})
    return [as_text(e) for e, _ in reply[0][1]] if reply else []


def holders(client: redis.Redis, keys: Keys) -> dict[str, int]:
    consumers: Any = client.xinfo_consumers(keys.jobs(CHANNEL), CONSUMER_GROUP)
    return {as_text(c["name"]): int(c["pending"]) for c in consumers}


def queued_batch(
    client: redis.Redis, keys: Keys, own: Ownership, batch: str = "b-1", jobs: int = 2
) -> list[str]:
    ids = enqueue(client, keys, *(f'{{"jobId": "j{i}"}}' for i in range(jobs)))
    own.new_reader("r-1", LEASE_MS)
    assert read(client, keys, "r-1") == ids
    assert own.hand_over(CHANNEL, "r-1", batch, ids)
    return ids


def test_hand_over_moves_entries_to_the_batch_without_counting_a_delivery(
    redis_client: redis.Redis, keys: Keys, own: Ownership
) -> None:
    ids = queued_batch(redis_client, keys, own)
    assert holders(redis_client, keys) == {"r-1": 0, "b-1": 2}
    assert redis_client.get(keys.lease("b-1")) == b"queued"
    started = own.start(CHANNEL, "b-1")
    assert started is not None
    assert abs(started.redis_ms - time.time() * 1000) < 5000
    assert [(h.entry_id, h.deliveries, h.raw) for h in started.entries] == [
        (ids[0], 1, b'{"jobId": "j0"}'),
        (ids[1], 1, b'{"jobId": "j1"}'),
    ]
    assert redis_client.get(keys.lease("b-1")) == b"running"


def test_a_batch_gets_its_own_entries_however_they_lie_in_the_stream(
    redis_client: redis.Redis, keys: Keys, own: Ownership
) -> None:
    """start.lua reads a batch's span of the stream at once: entries of other holders in it
    are skipped, ones beyond its count read alone, deleted ones come back as gone, and each
    entry's stamp comes with it."""
    stream = keys.jobs(CHANNEL)
    ids = [
        as_text(redis_client.xadd(stream, {"job": f"j{i}", "stamp": f"s{i}"})) for i in range(60)
    ]
    own.new_reader("r-1", LEASE_MS)
    assert read(redis_client, keys, "r-1") == ids
    # The batch holds the first two, then every 7th entry: the span holds 3x more entries
    # than the batch, past the span's count, so the last ones are read one by one.
    mine = ids[:2] + ids[7::7]
    assert own.hand_over(CHANNEL, "r-1", "b-1", mine)
    redis_client.xdel(stream, ids[14])
    redis_client.xadd(stream, {"other": "field"})  # an entry without a job, held by nobody
    started = own.start(CHANNEL, "b-1")
    assert started is not None
    expected = [
        (i, None if i == ids[14] else f"j{ids.index(i)}".encode(), f"s{ids.index(i)}".encode())
        for i in mine
    ]
    assert [(h.entry_id, h.raw, h.stamp or None) for h in started.entries] == [
        (i, raw, None if raw is None else seal) for i, raw, seal in expected
    ]


def test_a_reader_whose_lease_lapsed_cannot_hand_over(
    redis_client: redis.Redis, keys: Keys, own: Ownership
) -> None:
    ids = enqueue(redis_client, keys, "{}")
    own.new_reader("r-1", LEASE_MS)
    read(redis_client, keys, "r-1")
    own.end("r-1")
    assert not own.hand_over(CHANNEL, "r-1", "b-1", ids)
    assert holders(redis_client, keys) == {"r-1": 1}
    assert not redis_client.exists(keys.lease("b-1"))


def test_a_batch_starts_once_and_never_once_taken_over(
    redis_client: redis.Redis, keys: Keys, own: Ownership
) -> None:
    queued_batch(redis_client, keys, own, "b-1")
    assert own.start(CHANNEL, "b-1") is not None
    assert own.start(CHANNEL, "b-1") is None  # a second copy of the task
    queued_batch(redis_client, keys, own, "b-2")
    redis_client.delete(keys.lease("b-2"))  # its batcher died while it waited...
    own.new_reader("r-2", LEASE_MS)
    assert own.reclaim(CHANNEL, "b-2", "r-2", 1000)  # ...and its entries were taken over
    assert own.start(CHANNEL, "b-2") is None


def test_a_batch_whose_lease_lapsed_but_kept_its_entries_starts(
    redis_client: redis.Redis, keys: Keys, own: Ownership
) -> None:
    """Its lease lapsed (Redis restarted, its batcher stalled) and nobody took its entries:
    the task starts it, rather than leaving it to be revived as queued with no task left."""
    ids = queued_batch(redis_client, keys, own, "b-1")
    redis_client.delete(keys.lease("b-1"))
    started = own.start(CHANNEL, "b-1")
    assert started is not None
    assert [e.entry_id for e in started.entries] == ids
    assert redis_client.get(keys.lease("b-1")) == b"running"


def test_reclaim_leaves_live_holders_alone_and_takes_over_dead_ones(
    redis_client: redis.Redis, keys: Keys, own: Ownership
) -> None:
    ids = queued_batch(redis_client, keys, own, "b-1", jobs=3)
    own.new_reader("r-2", LEASE_MS)
    assert own.reclaim(CHANNEL, "b-1", "r-2", 1000) is None  # queued: alive
    assert own.dead_holders(CHANNEL, exclude="r-2") == []
    redis_client.delete(keys.lease("b-1"))
    assert own.dead_holders(CHANNEL, exclude="r-2") == ["b-1"]
    assert own.reclaim(CHANNEL, "b-1", "r-2", 2) == ids[:2]  # in pieces, oldest first
    assert own.reclaim(CHANNEL, "b-1", "r-2", 2) == ids[2:]
    assert own.reclaim(CHANNEL, "b-1", "r-2", 2) == []  # nothing left: the holder is forgotten
    assert holders(redis_client, keys) == {"r-1": 0, "r-2": 3}
    pending: Any = redis_client.xpending_range(keys.jobs(CHANNEL), CONSUMER_GROUP, "-", "+", 10)
    assert [p["times_delivered"] for p in pending] == [2, 2, 2]


def test_reclaim_acknowledges_entries_deleted_meanwhile(
    redis_client: redis.Redis, keys: Keys, own: Ownership
) -> None:
    ids = queued_batch(redis_client, keys, own, "b-1")
    redis_client.xdel(keys.jobs(CHANNEL), ids[0])
    redis_client.delete(keys.lease("b-1"))
    own.new_reader("r-2", LEASE_MS)
    assert own.reclaim(CHANNEL, "b-1", "r-2", 1000) == ids[1:]
    assert holders(redis_client, keys)["r-2"] == 1


def test_renew_never_revives_a_lapsed_lease_nor_keeps_a_started_batch_queued(
    redis_client: redis.Redis, keys: Keys, own: Ownership
) -> None:
    queued_batch(redis_client, keys, own, "b-1")
    queued_batch(redis_client, keys, own, "b-2")
    own.start(CHANNEL, "b-2")
    redis_client.delete(keys.lease("r-1"))
    leases = {
        "r-1": Lease("reader", LEASE_MS),
        "b-1": Lease("queued", LEASE_MS, CHANNEL),
        "b-2": Lease("queued", LEASE_MS, CHANNEL),
    }
    assert own.renew(leases) == {"r-1": False, "b-1": True, "b-2": False}
    assert not redis_client.exists(keys.lease("r-1"))


def test_a_batch_whose_lease_lapsed_while_redis_was_away_keeps_its_entries(
    redis_client: redis.Redis, keys: Keys, own: Ownership
) -> None:
    """Redis restarted (or was out of reach) longer than a lease: the batch still holds its
    entries, nobody took them over, so its lease is set again, and a reader finds it alive."""
    queued_batch(redis_client, keys, own, "b-1")
    own.start(CHANNEL, "b-1")
    redis_client.delete(keys.lease("b-1"))
    assert own.renew({"b-1": Lease("running", LEASE_MS, CHANNEL)}) == {"b-1": True}
    assert redis_client.get(keys.lease("b-1")) == b"running"
    own.new_reader("r-2", LEASE_MS)
    assert own.reclaim(CHANNEL, "b-1", "r-2", 1000) is None


def test_a_batch_whose_entries_were_taken_over_is_not_revived(
    redis_client: redis.Redis, keys: Keys, own: Ownership
) -> None:
    queued_batch(redis_client, keys, own, "b-1")
    own.start(CHANNEL, "b-1")
    redis_client.delete(keys.lease("b-1"))
    own.new_reader("r-2", LEASE_MS)
    assert own.reclaim(CHANNEL, "b-1", "r-2", 1000)
    assert own.renew({"b-1": Lease("running", LEASE_MS, CHANNEL)}) == {"b-1": False}
    assert not redis_client.exists(keys.lease("b-1"))


def outcome_row(entry: str, job: str, state: str = "accepted:u1") -> Finished:
    return Finished(entry, job, state, f'{{"jobId": "{job}", "status": "{state}"}}')


def test_finish_publishes_acknowledges_and_ends_the_batch(
    redis_client: redis.Redis, keys: Keys, own: Ownership, ledger: Ledger
) -> None:
    ids = queued_batch(redis_client, keys, own)
    own.start(CHANNEL, "b-1")
    assert ledger.claim("b-1", ["j0", "j1"]) == ["claimed", "claimed"]
    report = ledger.finish(CHANNEL, "b-1", [outcome_row(ids[0], "j0"), outcome_row(ids[1], "j1")])
    assert (report.published, report.acknowledged) == (2, 2)
    assert redis_client.xlen(keys.results) == 2
    assert redis_client.xlen(keys.jobs(CHANNEL)) == 0
    assert redis_client.get(keys.ledger("j0")) == b"accepted:u1"
    assert "b-1" not in holders(redis_client, keys)
    assert not redis_client.exists(keys.lease("b-1"))


def test_a_claim_redis_lost_still_ends_in_an_outcome(
    redis_client: redis.Redis, keys: Keys, own: Ownership, ledger: Ledger
) -> None:
    """The AOF tail cut at a power loss took the claim: the job was sent, so it is published,
    and only then acknowledged."""
    ids = queued_batch(redis_client, keys, own, jobs=1)
    own.start(CHANNEL, "b-1")
    ledger.claim("b-1", ["j0"])
    redis_client.delete(keys.ledger("j0"))
    report = ledger.finish(CHANNEL, "b-1", [outcome_row(ids[0], "j0")])
    assert (report.published, report.acknowledged) == (1, 1)
    assert redis_client.xlen(keys.results) == 1


def test_an_entry_taken_over_is_neither_published_nor_acknowledged_by_the_old_batch(
    redis_client: redis.Redis, keys: Keys, own: Ownership, ledger: Ledger
) -> None:
    ids = queued_batch(redis_client, keys, own, jobs=1)
    own.start(CHANNEL, "b-1")
    ledger.claim("b-1", ["j0"])
    redis_client.delete(keys.lease("b-1"))  # b-1 stalled past its lease
    own.new_reader("r-2", LEASE_MS)
    assert own.reclaim(CHANNEL, "b-1", "r-2", 10) == ids
    assert own.hand_over(CHANNEL, "r-2", "b-2", ids)
    own.start(CHANNEL, "b-2")
    assert ledger.claim("b-2", ["j0"]) == ["claimed"]  # b-1's claim is dead: taken over
    late = ledger.finish(CHANNEL, "b-1", [outcome_row(ids[0], "j0", "failed")])
    assert (late.published, late.taken, late.acknowledged) == (0, 1, 0)
    assert redis_client.xlen(keys.results) == 0
    assert holders(redis_client, keys)["b-2"] == 1
    done = ledger.finish(CHANNEL, "b-2", [outcome_row(ids[0], "j0")])
    assert (done.published, done.acknowledged) == (1, 1)
    assert redis_client.xlen(keys.results) == 1


def test_a_job_final_by_another_batch_is_acknowledged_not_published(
    redis_client: redis.Redis, keys: Keys, own: Ownership, ledger: Ledger
) -> None:
    ids = queued_batch(redis_client, keys, own, jobs=1)
    own.start(CHANNEL, "b-1")
    redis_client.set(keys.ledger("j0"), "rejected")
    report = ledger.finish(CHANNEL, "b-1", [outcome_row(ids[0], "j0")])
    assert (report.published, report.already, report.acknowledged) == (0, 1, 1)
    assert redis_client.xlen(keys.results) == 0


def test_entries_left_pending_wait_then_come_back_without_counting_a_delivery(
    redis_client: redis.Redis, keys: Keys, own: Ownership, ledger: Ledger
) -> None:
    """A jobId busy in another live batch, or a job given back because the circuit opened:
    the entry waits a lease under a holder of its own, then a reader takes it over."""
    ids = queued_batch(redis_client, keys, own, jobs=3)
    own.start(CHANNEL, "b-1")
    redis_client.set(keys.lease("b-other"), "running", px=60_000)
    redis_client.set(keys.ledger("j1"), "inflight:b-other")
    assert ledger.claim("b-1", ["j0", "j1", "j2"]) == ["claimed", "busy", "claimed"]
    report = ledger.finish(
        CHANNEL, "b-1", [outcome_row(ids[0], "j0"), Finished(ids[2], "j2", "returned")]
    )
    assert (report.published, report.acknowledged) == (1, 1)
    assert not redis_client.exists(keys.ledger("j2"))  # the returned job's claim is released
    assert not redis_client.exists(keys.lease("b-1"))
    assert holders(redis_client, keys) == {"r-1": 0, "w-1": 2}
    assert redis_client.get(keys.lease("w-1")) == b"waiting"
    own.new_reader("r-2", LEASE_MS)
    assert own.reclaim(CHANNEL, "w-1", "r-2", 10) is None  # still waiting
    time.sleep(LEASE_MS / 1000 + 0.2)
    assert own.reclaim(CHANNEL, "w-1", "r-2", 10) == ids[1:]
    pending: Any = redis_client.xpending_range(keys.jobs(CHANNEL), CONSUMER_GROUP, "-", "+", 10)
    assert [p["times_delivered"] for p in pending] == [1, 1]


def test_a_released_claim_can_be_claimed_by_the_next_batch(keys: Keys, ledger: Ledger) -> None:
    assert ledger.claim("b-1", ["j0"]) == ["claimed"]
    ledger.release("b-1", ["j0"])
    assert ledger.claim("b-2", ["j0"]) == ["claimed"]


def test_claims_by_state(redis_client: redis.Redis, keys: Keys, ledger: Ledger) -> None:
    redis_client.set(keys.ledger("failed"), "failed")
    redis_client.set(keys.ledger("accepted"), "accepted:u")
    redis_client.set(keys.ledger("rejected"), "rejected")
    redis_client.set(keys.ledger("dead-claim"), "inflight:b-dead")
    redis_client.set(keys.lease("b-live"), "running", px=60_000)
    redis_client.set(keys.ledger("live-claim"), "inflight:b-live")
    jobs = ["failed", "accepted", "rejected", "dead-claim", "live-claim", "new"]
    assert ledger.claim("b-1", jobs) == ["done", "done", "done", "claimed", "busy", "claimed"]


def test_a_poison_job_is_isolated_before_its_neighbours_could_fail(
    redis_client: redis.Redis, keys: Keys
) -> None:
    """The real scripts, and a job that kills whoever sends it: each crash halves what the
    batch sends, so the poison is alone after log2(batch) crashes, and no neighbour ever
    reaches MAX_DELIVERIES."""
    lease_ms, batch_size = 100, 64
    max_deliveries = batch_size.bit_length() + 2  # the least the settings allow: 9
    times = LeaseTimes(lease_ms, lease_ms)
    own = Ownership(redis_client, keys, times)
    ledger = Ledger(redis_client, keys, ttl_s=86_400, leases=times)
    redis_client.xgroup_create(keys.jobs(CHANNEL), CONSUMER_GROUP, id="0", mkstream=True)
    ids = enqueue(redis_client, keys, *(f'{{"jobId": "j{i}"}}' for i in range(batch_size)))
    poison = ids[37]
    finished: dict[str, int] = {}  # entry -> its deliveries when it finished
    for round_ in range(60):
        if redis_client.xlen(keys.jobs(CHANNEL)) == 0:
            break
        reader, batch = f"r-{round_}", f"b-{round_}"
        time.sleep(lease_ms / 1000 + 0.05)  # the dead and the waiting lapse
        own.new_reader(reader, lease_ms)
        for dead in own.dead_holders(CHANNEL, exclude=reader):
            own.reclaim(CHANNEL, dead, reader, 1000)
        read(redis_client, keys, reader)
        held: Any = redis_client.xpending_range(
            keys.jobs(CHANNEL), CONSUMER_GROUP, "-", "+", 1000, consumername=reader
        )
        assert own.hand_over(CHANNEL, reader, batch, [as_text(p["message_id"]) for p in held])
        own.end(reader)
        started = own.start(CHANNEL, batch)
        assert started is not None
        sent = isolate(started.entries, batch_size)
        own.set_aside(CHANNEL, batch, [e.entry_id for e in started.entries if e not in sent])
        poisoned = any(e.entry_id == poison for e in sent)
        if poisoned and max(e.deliveries for e in sent) <= max_deliveries:
            redis_client.delete(keys.lease(batch))  # the process died sending it
            continue
        rows = [outcome_row(e.entry_id, f"job-{e.entry_id}") for e in sent]
        ledger.finish(CHANNEL, batch, rows)
        finished.update({e.entry_id: e.deliveries for e in sent})
    assert set(finished) == set(ids)
    assert finished[poison] > max_deliveries  # given up, alone
    assert max(d for e, d in finished.items() if e != poison) <= max_deliveries


def test_a_batch_whose_lease_is_not_renewed_in_time_is_told_to_stop(
    redis_client: redis.Redis, keys: Keys
) -> None:
    """Its entries may be another batch's by now: it must not send them as well."""
    times = LeaseTimes(300, 300)
    own = Ownership(redis_client, keys, times)
    redis_client.xgroup_create(keys.jobs(CHANNEL), CONSUMER_GROUP, id="0", mkstream=True)
    queued_batch(redis_client, keys, own, "b-1")
    own.start(CHANNEL, "b-1")
    keeper = LeaseKeeper(own)
    keeper.add(CHANNEL, "b-1")
    assert keeper.current("b-1")
    time.sleep(0.5)
    assert keeper.current("b-1")  # renewed meanwhile
    redis_client.delete(keys.lease("b-1"))
    own.new_reader("r-2", 300)
    assert own.reclaim(CHANNEL, "b-1", "r-2", 1000)  # taken over: renewals fail from now on
    deadline = time.monotonic() + 5
    while keeper.current("b-1"):
        assert time.monotonic() < deadline, "still current after its entries were taken"
        time.sleep(0.02)
    keeper.remove("b-1")
    assert not keeper.current("b-1")


def test_holder_names_say_what_holds_the_entries() -> None:
    """reclaim.lua counts no delivery for a `w-` holder's entries: a batch is `b-{uuid}`, and
    what it leaves unsent waits under `w-{the same uuid}`; no two batches share a name."""
    batch = new_batch_id()
    assert batch.startswith("b-")
    assert len(batch) == 34
    assert waiting_holder(batch) == "w-" + batch.removeprefix("b-")
    assert new_batch_id() != batch


def test_lease_times_per_lane() -> None:
    """Codes (the OTP channels) are taken over sooner than campaigns: each lane's lease."""
    settings = Settings.model_validate({"lease_ms": 30_000, "otp_lease_ms": 2_000})
    times = LeaseTimes.from_settings(settings)
    assert times == LeaseTimes(bulk_ms=30_000, otp_ms=2_000)
    lanes = {c: times.of(c) for c in ["SMS", "WHATSAPP", "VK", "FLASHCALL", "VOICECODE"]}
    assert lanes == {
        "SMS": 30_000,
        "WHATSAPP": 30_000,
        "VK": 30_000,
        "FLASHCALL": 2_000,
        "VOICECODE": 2_000,
    }
    assert times.of("FLASHCALL_CONVERSION") == 2_000
    assert (times.shortest_ms, times.longest_ms) == (2_000, 30_000)


def test_every_lease_lives_its_lanes_time(redis_client: redis.Redis, keys: Keys) -> None:
    """A queued, running or waiting batch of codes lapses after OTP_LEASE_MS, one of a
    campaign after LEASE_MS; a reader after the time its batcher gives."""
    own = Ownership(redis_client, keys, LeaseTimes(bulk_ms=30_000, otp_ms=2_000))
    for channel in ["SMS", "FLASHCALL"]:
        redis_client.xgroup_create(keys.jobs(channel), CONSUMER_GROUP, id="0", mkstream=True)
    own.new_reader("r-1", 5_000)
    assert 4_000 < redis_client.pttl(keys.lease("r-1")) <= 5_000
    expected = {"SMS": (2_000, 30_000), "FLASHCALL": (0, 2_000)}
    for channel, (low, high) in expected.items():
        ids = [as_text(redis_client.xadd(keys.jobs(channel), {"job": "{}"})) for _ in range(2)]
        redis_client.xreadgroup(CONSUMER_GROUP, "r-1", {keys.jobs(channel): ">"})
        batch = f"b-{channel}"
        assert own.hand_over(channel, "r-1", batch, ids)
        assert redis_client.get(keys.lease(batch)) == b"queued"
        assert low < redis_client.pttl(keys.lease(batch)) <= high, channel
        redis_client.pexpire(keys.lease(batch), 60_000)
        assert own.start(channel, batch) is not None
        assert low < redis_client.pttl(keys.lease(batch)) <= high, channel
        own.set_aside(channel, batch, ids[1:])
        waiting = f"w-{channel}"
        assert holders_of(redis_client, keys, channel)[waiting] == 1
        assert redis_client.get(keys.lease(waiting)) == b"waiting"
        assert low < redis_client.pttl(keys.lease(waiting)) <= high, channel


def holders_of(client: redis.Redis, keys: Keys, channel: str) -> dict[str, int]:
    consumers: Any = client.xinfo_consumers(keys.jobs(channel), CONSUMER_GROUP)
    return {as_text(c["name"]): int(c["pending"]) for c in consumers}


def test_a_live_reader_whose_entries_were_deleted_is_not_lost(
    redis_client: redis.Redis, keys: Keys, own: Ownership
) -> None:
    """Nothing to move is no sign of a lapsed lease: the batcher would drop its reader."""
    [entry] = enqueue(redis_client, keys, "{}")
    own.new_reader("r-1", LEASE_MS)
    read(redis_client, keys, "r-1")
    redis_client.xdel(keys.jobs(CHANNEL), entry)
    assert own.hand_over(CHANNEL, "r-1", "b-1", [entry])
    assert redis_client.get(keys.lease("b-1")) == b"queued"


def test_a_reader_never_finds_itself_dead(
    redis_client: redis.Redis, keys: Keys, own: Ownership
) -> None:
    """Its own lease may have just lapsed: it must not take over its own entries."""
    enqueue(redis_client, keys, "{}")
    read(redis_client, keys, "r-1")  # r-1 holds an entry and has no lease
    assert own.dead_holders(CHANNEL, exclude="r-1") == []
    assert own.dead_holders(CHANNEL, exclude="r-2") == ["r-1"]
    assert own.renew({}) == {}


class Clock:
    """Stands in for the `time` module of worker.ownership: the test sets the monotonic
    clock, and the renewal thread takes a beat only when the test lets it. Threads that were
    running before (other tests' keepers) keep the real clock."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.naps: list[float] = []  # what the thread asked to sleep, one per beat
        self._go = threading.Semaphore(0)
        self._beats = 0
        self._closed = False
        here = threading.current_thread()
        self._others = {t for t in threading.enumerate() if t is not here}

    def monotonic(self) -> float:
        if threading.current_thread() in self._others:
            return time.monotonic()
        return self.now

    def sleep(self, seconds: float) -> None:
        if threading.current_thread() in self._others:
            time.sleep(seconds)
            return
        self.naps.append(seconds)
        self._go.acquire()
        while self._closed:  # the test is over: the (daemon) thread renews nothing more
            self._go.acquire()

    def beat(self) -> None:
        """Let the thread run one beat, and wait until it is asleep again."""
        self._wait_asleep()
        self._beats += 1
        self._go.release()
        self._wait_asleep()

    def _wait_asleep(self) -> None:
        deadline = time.monotonic() + 5
        while len(self.naps) < self._beats + 1:
            assert time.monotonic() < deadline, "the renewal thread is not asleep"
            time.sleep(0.001)

    def close(self) -> None:
        self._closed = True
        self._go.release()


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[Clock]:
    fake = Clock()
    monkeypatch.setattr(ownership_module, "time", fake)
    yield fake
    fake.close()


def running_batch(
    client: redis.Redis, keys: Keys, own: Ownership, channel: str, batch: str
) -> None:
    """A started batch of one entry on `channel`, its lease set far longer than its lane's."""
    client.xgroup_create(keys.jobs(channel), CONSUMER_GROUP, id="0", mkstream=True)
    entry = as_text(client.xadd(keys.jobs(channel), {"job": "{}"}))
    own.new_reader("r-1", 60_000)
    client.xreadgroup(CONSUMER_GROUP, "r-1", {keys.jobs(channel): ">"})
    assert own.hand_over(channel, "r-1", batch, [entry])
    assert own.start(channel, batch) is not None
    client.pexpire(keys.lease(batch), 60_000)


def test_the_keeper_renews_running_leases_with_their_lanes_time(
    redis_client: redis.Redis, keys: Keys, clock: Clock
) -> None:
    """Every third of the shortest lease, each added batch's `running` lease is set to its
    channel's lease time; a removed batch's is left alone."""
    own = Ownership(redis_client, keys, LeaseTimes(bulk_ms=30_000, otp_ms=1_500))
    running_batch(redis_client, keys, own, "SMS", "b-sms")
    running_batch(redis_client, keys, own, "FLASHCALL", "b-code")
    keeper = LeaseKeeper(own)
    keeper.add("SMS", "b-sms")
    keeper.add("FLASHCALL", "b-code")
    lease_threads = [t for t in threading.enumerate() if t.name == "lease"]
    assert lease_threads
    assert all(t.daemon for t in lease_threads)  # it never holds up a worker's exit
    clock.beat()
    assert clock.naps[0] == 0.5  # a third of 1,500 ms
    assert 20_000 < redis_client.pttl(keys.lease("b-sms")) <= 30_000
    assert 0 < redis_client.pttl(keys.lease("b-code")) <= 1_500
    assert redis_client.get(keys.lease("b-code")) == b"running"

    keeper.remove("b-sms")
    keeper.remove("b-sms")  # a failed batch removes itself twice (worker/batch.py)
    assert not keeper.current("b-sms")
    redis_client.pexpire(keys.lease("b-sms"), 60_000)
    redis_client.pexpire(keys.lease("b-code"), 60_000)
    clock.beat()
    assert redis_client.pttl(keys.lease("b-code")) <= 1_500  # the beat renewed b-code...
    assert redis_client.pttl(keys.lease("b-sms")) > 50_000  # ...and not b-sms any more


def test_the_keeper_knows_how_long_a_lease_is_held(
    redis_client: redis.Redis, keys: Keys, clock: Clock
) -> None:
    """`current` holds for two thirds of a lease after the last renewal Redis confirmed
    (counted from when it was asked), and not after one Redis refused."""
    own = Ownership(redis_client, keys, LeaseTimes(bulk_ms=3_000, otp_ms=3_000))
    running_batch(redis_client, keys, own, CHANNEL, "b-1")
    keeper = LeaseKeeper(own)
    keeper.add(CHANNEL, "b-1")  # at 1000.0: held for 2 s
    clock.now = 1001.9999
    assert keeper.current("b-1")
    clock.now = 1002.0
    assert not keeper.current("b-1")
    clock.now = 1001.5
    clock.beat()  # renewed at 1001.5
    clock.now = 1003.4999
    assert keeper.current("b-1")
    clock.now = 1003.5
    assert not keeper.current("b-1")
    redis_client.delete(keys.lease("b-1"))
    own.new_reader("r-2", 60_000)
    assert own.reclaim(CHANNEL, "b-1", "r-2", 10)  # taken over: renewals fail from now on
    clock.now = 1003.0
    clock.beat()
    clock.now = 1004.9
    assert not keeper.current("b-1")  # still counted from 1001.5
    assert not redis_client.exists(keys.lease("b-1"))


def test_the_keeper_revives_a_lease_redis_lost_and_outlives_errors_and_idle_beats(
    redis_client: redis.Redis, keys: Keys, clock: Clock
) -> None:
    """A lease gone while its batch still holds its entries (Redis restarted) is set again
    with its lane's time; a failed renewal, or a beat with no batch, stops no renewal."""
    real = Ownership(redis_client, keys, LeaseTimes(bulk_ms=30_000, otp_ms=1_500))
    failures = [redis.ConnectionError("Redis is restarting")]

    class Flaky(Ownership):
        def renew(self, leases: dict[str, Lease]) -> dict[str, bool]:
            if failures:
                raise failures.pop()
            return super().renew(leases)

    own = Flaky(redis_client, keys, real.leases)
    keeper = LeaseKeeper(own)
    keeper.add(CHANNEL, "b-idle")
    keeper.remove("b-idle")
    clock.beat()  # nothing to renew
    running_batch(redis_client, keys, own, "FLASHCALL", "b-1")
    keeper.add("FLASHCALL", "b-1")
    redis_client.delete(keys.lease("b-1"))
    clock.now = 1000.5
    clock.beat()  # the renewal fails
    assert not redis_client.exists(keys.lease("b-1"))
    clock.now = 1001.0
    clock.beat()
    assert redis_client.get(keys.lease("b-1")) == b"running"
    assert 0 < redis_client.pttl(keys.lease("b-1")) <= 1_500
    clock.now = 1001.9
    assert keeper.current("b-1")  # held again from 1001.0


def test_the_keeper_forgets_each_batch_it_is_told_to(redis_client: redis.Redis, keys: Keys) -> None:
    """A pod runs for months: a batch removed must leave nothing behind in the keeper."""
    keeper = LeaseKeeper(Ownership(redis_client, keys, LeaseTimes(60_000, 60_000)))
    for n in range(100):
        keeper.add(CHANNEL, f"b-{n}")
        keeper.remove(f"b-{n}")
        keeper.remove(f"b-{n}")  # the batch flow may remove twice (its except and finally)
    assert (keeper._live, keeper._held_at) == ({}, {})
