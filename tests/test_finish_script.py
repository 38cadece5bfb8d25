"""finish.lua, the one step that ends a job: each of its effects asserted, on a real Redis.

The Lua scripts are beyond mutmut's reach, so this file is written to fail on each one-line
change to the script that breaks the promise: an entry left unacknowledged, an outcome
published by a batch that no longer holds the job, a ledger state or dead letter missing.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
import redis

from tasks.keys import CONSUMER_GROUP, Keys, as_text
from worker.ledger import Finished, Ledger
from worker.ownership import LeaseTimes, Ownership

LEASE_MS = 5000
CHANNEL = "SMS"


@pytest.fixture
def ledger(redis_client: redis.Redis, keys: Keys) -> Ledger:
    return Ledger(redis_client, keys, ttl_s=3600, leases=LeaseTimes(LEASE_MS, LEASE_MS))


def running(client: redis.Redis, keys: Keys, own: Ownership, batch: str, *jobs: str) -> list[str]:
    """`batch` running and holding one entry per job (a JSON text each)."""
    ids = [as_text(client.xadd(keys.jobs(CHANNEL), {"job": job})) for job in jobs]
    reader = f"r-{batch}"
    own.new_reader(reader, LEASE_MS)
    client.xreadgroup(CONSUMER_GROUP, reader, {keys.jobs(CHANNEL): ">"})
    assert own.hand_over(CHANNEL, reader, batch, ids)
    assert own.start(CHANNEL, batch) is not None
    own.end(reader)
    return ids


def pending(client: redis.Redis, keys: Keys) -> dict[str, str]:
    """Entry id -> its holder, for every entry the group has handed out and not acknowledged."""
    rows: Any = client.xpending_range(keys.jobs(CHANNEL), CONSUMER_GROUP, "-", "+", 1000)
    return {as_text(r["message_id"]): as_text(r["consumer"]) for r in rows}


def results(client: redis.Redis, stream: str) -> list[dict[str, str]]:
    entries: Any = client.xrange(stream)
    return [{as_text(k): as_text(v) for k, v in fields.items()} for _, fields in entries]


def outcome(job: str, status: str = "accepted") -> str:
    return orjson.dumps({"jobId": job, "status": status}).decode()


def test_a_final_job_is_published_then_acknowledged_and_deleted(
    redis_client: redis.Redis, keys: Keys, own: Ownership, ledger: Ledger
) -> None:
    [entry] = running(redis_client, keys, own, "b-1", '{"jobId": "j"}')
    assert ledger.claim("b-1", ["j"]) == ["claimed"]
    report = ledger.finish(CHANNEL, "b-1", [Finished(entry, "j", "accepted:u-1", outcome("j"))])
    assert (report.published, report.already, report.taken, report.acknowledged) == (1, 0, 0, 1)
    assert results(redis_client, keys.results) == [{"outcome": outcome("j")}]
    assert redis_client.get(keys.ledger("j")) == b"accepted:u-1"
    assert 0 < int(redis_client.ttl(keys.ledger("j"))) <= 3600
    assert pending(redis_client, keys) == {}  # acknowledged: no holder will ever resend it
    assert redis_client.xlen(keys.jobs(CHANNEL)) == 0  # deleted
    assert redis_client.xlen(keys.dead) == 0
    consumers: Any = redis_client.xinfo_consumers(keys.jobs(CHANNEL), CONSUMER_GROUP)
    assert [as_text(c["name"]) for c in consumers] == ["r-b-1"]  # the batch is gone...
    assert not redis_client.exists(keys.lease("b-1"))  # ...with its lease
    waiting = list(redis_client.scan_iter(match=keys.lease("w-*"), count=1000))
    assert not waiting  # nothing left waiting


def test_a_failed_job_is_dead_lettered_with_the_job_as_enqueued(
    redis_client: redis.Redis, keys: Keys, own: Ownership, ledger: Ledger
) -> None:
    job = '{"jobId": "j", "message": {"x": 1}}'
    [entry] = running(redis_client, keys, own, "b-1", job)
    ledger.claim("b-1", ["j"])
    failed = outcome("j", "failed")
    ledger.finish(CHANNEL, "b-1", [Finished(entry, "j", "failed", failed, job)])
    assert results(redis_client, keys.dead) == [{"job": job, "outcome": failed}]
    assert results(redis_client, keys.results) == [{"outcome": failed}]
    assert redis_client.get(keys.ledger("j")) == b"failed"
    assert pending(redis_client, keys) == {}


def test_a_batch_whose_claim_went_to_a_live_batch_publishes_nothing(
    redis_client: redis.Redis, keys: Keys, own: Ownership, ledger: Ledger
) -> None:
    """The owner check: b-1's lease lapsed and b-2 (alive) claimed the job since; b-1's late
    outcome must not be published, nor its entry acknowledged, nor the claim overwritten."""
    [entry] = running(redis_client, keys, own, "b-1", '{"jobId": "j"}')
    redis_client.set(keys.lease("b-2"), "running", px=LEASE_MS)
    redis_client.set(keys.ledger("j"), "inflight:b-2")
    report = ledger.finish(CHANNEL, "b-1", [Finished(entry, "j", "failed", outcome("j"), "{}")])
    assert (report.published, report.taken, report.acknowledged) == (0, 1, 0)
    assert results(redis_client, keys.results) == []
    assert results(redis_client, keys.dead) == []
    assert redis_client.get(keys.ledger("j")) == b"inflight:b-2"
    assert list(pending(redis_client, keys).values()) == ["w-1"]  # waits, not lost


def test_a_job_another_batch_finished_is_acknowledged_without_a_second_outcome(
    redis_client: redis.Redis, keys: Keys, own: Ownership, ledger: Ledger
) -> None:
    [entry] = running(redis_client, keys, own, "b-1", '{"jobId": "j"}')
    redis_client.set(keys.ledger("j"), "rejected")
    report = ledger.finish(CHANNEL, "b-1", [Finished(entry, "j", "accepted:u", outcome("j"))])
    assert (report.published, report.already, report.acknowledged) == (0, 1, 1)
    assert results(redis_client, keys.results) == []
    assert redis_client.get(keys.ledger("j")) == b"rejected"
    assert pending(redis_client, keys) == {}


def test_an_acknowledgement_only_row_follows_its_jobs_outcome(
    redis_client: redis.Redis, keys: Keys, own: Ownership, ledger: Ledger
) -> None:
    """The same jobId twice in a batch: the second entry is acknowledged once the first's
    outcome is in, in the same step."""
    first, second = running(redis_client, keys, own, "b-1", '{"jobId": "j"}', '{"jobId": "j"}')
    ledger.claim("b-1", ["j"])
    rows = [Finished(first, "j", "accepted:u", outcome("j")), Finished(second, "j")]
    report = ledger.finish(CHANNEL, "b-1", rows)
    assert (report.published, report.already, report.acknowledged) == (1, 0, 2)
    assert len(results(redis_client, keys.results)) == 1
    assert pending(redis_client, keys) == {}


def test_entries_left_unfinished_wait_under_one_holder_with_a_lease(
    redis_client: redis.Redis, keys: Keys, own: Ownership, ledger: Ledger
) -> None:
    """A returned job's claim is released and its entry waits, with the ones the batch did not
    mention (a crash between parts): none is acknowledged, none lost."""
    a, b, c = running(redis_client, keys, own, "b-9", *(f'{{"jobId": "{j}"}}' for j in "abc"))
    ledger.claim("b-9", ["a", "b", "c"])
    report = ledger.finish(
        CHANNEL, "b-9", [Finished(a, "a", "rejected", outcome("a")), Finished(b, "b", "returned")]
    )
    assert (report.published, report.acknowledged) == (1, 1)
    assert not redis_client.exists(keys.ledger("b"))  # released: the next batch claims it
    assert redis_client.get(keys.ledger("c")) == b"inflight:b-9"  # dead with b-9's lease
    assert pending(redis_client, keys) == {b: "w-9", c: "w-9"}
    assert redis_client.get(keys.lease("w-9")) == b"waiting"
    assert 0 < int(redis_client.pttl(keys.lease("w-9"))) <= LEASE_MS


def test_an_entry_deleted_meanwhile_is_only_acknowledged(
    redis_client: redis.Redis, keys: Keys, own: Ownership, ledger: Ledger
) -> None:
    [entry] = running(redis_client, keys, own, "b-1", '{"jobId": "j"}')
    redis_client.xdel(keys.jobs(CHANNEL), entry)
    report = ledger.finish(CHANNEL, "b-1", [Finished(entry, "")])
    assert (report.published, report.already, report.acknowledged) == (0, 0, 1)
    assert pending(redis_client, keys) == {}


def test_a_batch_acknowledges_only_entries_it_still_holds(
    redis_client: redis.Redis, keys: Keys, own: Ownership, ledger: Ledger
) -> None:
    """b-1 stalled past its lease and a reader took its entry over; the job is final, but the
    entry is the reader's now: b-1 must not acknowledge it from under its new holder."""
    [entry] = running(redis_client, keys, own, "b-1", '{"jobId": "j"}')
    redis_client.delete(keys.lease("b-1"))
    own.new_reader("r-2", LEASE_MS)
    assert own.reclaim(CHANNEL, "b-1", "r-2", 10) == [entry]
    redis_client.set(keys.ledger("j"), "accepted:u")
    report = ledger.finish(CHANNEL, "b-1", [Finished(entry, "j")])
    assert report.acknowledged == 0
    assert pending(redis_client, keys) == {entry: "r-2"}


def test_a_claim_left_by_a_dead_batch_does_not_stop_the_outcome(
    redis_client: redis.Redis, keys: Keys, own: Ownership, ledger: Ledger
) -> None:
    """The ledger shows a claim of a batch that died (its lease is gone), as Redis restored
    from an older AOF may: the job was sent by this batch, so its outcome is published."""
    [entry] = running(redis_client, keys, own, "b-1", '{"jobId": "j"}')
    redis_client.set(keys.ledger("j"), "inflight:b-dead")
    report = ledger.finish(CHANNEL, "b-1", [Finished(entry, "j", "accepted:u", outcome("j"))])
    assert (report.published, report.taken, report.acknowledged) == (1, 0, 1)
    assert redis_client.get(keys.ledger("j")) == b"accepted:u"


def test_a_row_sees_the_ledger_state_the_rows_before_it_wrote(
    redis_client: redis.Redis, keys: Keys, own: Ownership, ledger: Ledger
) -> None:
    """The ledger is read once for the whole batch: a jobId whose outcome an earlier row
    published is final for the rows after it, which publish nothing more."""
    first, second = running(redis_client, keys, own, "b-1", '{"jobId": "j"}', '{"jobId": "j"}')
    ledger.claim("b-1", ["j"])
    rows = [
        Finished(first, "j", "accepted:u", outcome("j")),
        Finished(second, "j", "rejected", outcome("j", "rejected")),
    ]
    report = ledger.finish(CHANNEL, "b-1", rows)
    assert (report.published, report.already, report.acknowledged) == (1, 1, 2)
    assert results(redis_client, keys.results) == [{"outcome": outcome("j")}]
    assert redis_client.get(keys.ledger("j")) == b"accepted:u"


def test_a_returned_job_is_released_only_while_the_batch_holds_its_claim(
    redis_client: redis.Redis, keys: Keys, own: Ownership, ledger: Ledger
) -> None:
    """A jobId returned after an earlier row published its outcome keeps that outcome."""
    first, second = running(redis_client, keys, own, "b-1", '{"jobId": "j"}', '{"jobId": "j"}')
    ledger.claim("b-1", ["j"])
    rows = [Finished(first, "j", "rejected", outcome("j")), Finished(second, "j", "returned")]
    report = ledger.finish(CHANNEL, "b-1", rows)
    assert (report.published, report.acknowledged) == (1, 2)
    assert redis_client.get(keys.ledger("j")) == b"rejected"


def test_an_outcome_given_as_bytes_is_published_as_given(
    redis_client: redis.Redis, keys: Keys, own: Ownership, ledger: Ledger
) -> None:
    job = '{"jobId": "j"}'
    [entry] = running(redis_client, keys, own, "b-1", job)
    ledger.claim("b-1", ["j"])
    failed = outcome("j", "failed").encode()
    ledger.finish(CHANNEL, "b-1", [Finished(entry, "j", "failed", failed, job.encode())])
    assert results(redis_client, keys.results) == [{"outcome": failed.decode()}]
    assert results(redis_client, keys.dead) == [{"job": job, "outcome": failed.decode()}]


def test_a_batch_larger_than_a_chunk_acknowledges_and_leaves_each_entry_once(
    redis_client: redis.Redis, keys: Keys, own: Ownership, ledger: Ledger
) -> None:
    """Acknowledgements, deletions and the entries left to wait go in chunks of 500: with
    1,203 entries, each chunk's edges are finished or left as their rows say."""
    jobs = [f"j{i}" for i in range(1203)]
    ids = running(redis_client, keys, own, "b-1", *(f'{{"jobId": "{j}"}}' for j in jobs))
    assert ledger.claim("b-1", jobs) == ["claimed"] * len(jobs)
    rows = [
        Finished(e, j, "rejected", outcome(j, "rejected")) if i % 2 else Finished(e, j, "returned")
        for i, (e, j) in enumerate(zip(ids, jobs, strict=True))
    ]
    report = ledger.finish(CHANNEL, "b-1", rows)
    assert (report.published, report.acknowledged) == (601, 601)
    assert pending(redis_client, keys) == dict.fromkeys(ids[::2], "w-1")
    remaining: Any = redis_client.xrange(keys.jobs(CHANNEL))
    assert [as_text(e) for e, _ in remaining] == ids[::2]
    assert redis_client.mget([keys.ledger(j) for j in jobs[:4]]) == [None, b"rejected"] * 2
