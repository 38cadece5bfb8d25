"""The holder invariant and the finish step, on a real Redis: each script's refusals as well as
its successes, since the promise rests on what they refuse."""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis

from tasks.keys import CONSUMER_GROUP, Keys, as_text
from worker.batch import isolate
from worker.ledger import Finished, Ledger
from worker.ownership import Lease, LeaseKeeper, LeaseTimes, Ownership

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
