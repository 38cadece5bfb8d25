"""Crashes and shutdowns: every job still ends with exactly one outcome."""

from __future__ import annotations

import time
from collections import Counter

from tasks.keys import CONSUMER_GROUP
from tests.contract_cases import BASE, variant
from tests.e2e.conftest import E2E
from tests.e2e.harness import pending, wait_until
from tests.e2e.sandbox_view import received, stats
from tests.e2e.test_batching import sms_jobs
from tests.sandbox_client import set_faults


def test_sigkill_mid_request_loses_nothing(e2e: E2E) -> None:
    set_faults(e2e.sandbox, latencyMs=1500)
    doomed = e2e.start_worker("doomed")
    e2e.producer.enqueue_many(sms_jobs(3000))
    wait_until(lambda: stats(e2e.sandbox)["requests"] >= 1, 20, "a request in flight")
    doomed.kill()
    time.sleep(0.5)  # a request already written to the socket may still land
    reached_before_kill = stats(e2e.sandbox)["requests"]
    set_faults(e2e.sandbox)

    e2e.start_worker("rescuer")
    by_job = e2e.outcomes(3000, timeout=90)

    assert {o.status for o in by_job.values()} == {"accepted"}
    copies: dict[str, list[int]] = {}
    for record in received(e2e.sandbox):
        copies.setdefault(record["message"]["content"], []).append(record["requestIndex"])
    assert len(copies) == 3000
    twice = {content: idx for content, idx in copies.items() if len(idx) > 1}
    for content, indexes in twice.items():
        assert len(indexes) == 2, content
        assert min(indexes) < reached_before_kill, (content, indexes, reached_before_kill)
    # Reported, not asserted: the duplicates the API's lack of an idempotency key allows.
    print(
        f"\nSIGKILL: {reached_before_kill} request(s) had reached the e2e.sandbox; "
        f"{len(twice)} of 3000 messages were received twice (all from those requests)"
    )
    # Each received message maps to the outcome's messageUuid once: one of the copies.
    uuids = Counter(o.messageUuid for o in by_job.values())
    assert max(uuids.values()) == 1


def test_sigterm_drains_and_exits_cleanly(e2e: E2E) -> None:
    set_faults(e2e.sandbox, latencyMs=1500)
    worker = e2e.start_worker(SMS_LINGER_MS="60000", SHUTDOWN_GRACE_S="20")
    e2e.producer.enqueue_many(sms_jobs(50))  # held in the batcher's buffer (long linger)
    e2e.producer.enqueue_many(
        [{"jobId": f"otp-{i}", "message": variant("FLASHCALL")} for i in range(20)]
    )  # sent at once, slow to answer
    wait_until(lambda: pending(e2e.redis, e2e.keys, "SMS") == 50, 10, "SMS read by the batcher")
    wait_until(lambda: stats(e2e.sandbox)["requests"] >= 1, 10, "the OTP request in flight")

    started = time.monotonic()
    assert worker.terminate(timeout=30) == 0
    took = time.monotonic() - started

    # Everything it had read was finished before it exited: no other worker is running.
    by_job = e2e.outcomes(70, timeout=1)
    assert {o.status for o in by_job.values()} == {"accepted"}
    assert len(received(e2e.sandbox)) == 70
    assert took < 20
    log = worker.log.read_text()
    assert "Traceback" not in log


def test_a_job_that_never_finishes_is_given_up_after_max_deliveries(e2e: E2E) -> None:
    """As if a job had crashed its worker again and again: Redis counts the deliveries."""
    stream = e2e.keys.jobs("SMS")
    e2e.redis.xgroup_create(stream, CONSUMER_GROUP, id="0", mkstream=True)
    poison = e2e.producer.enqueue({"jobId": "poison", "message": BASE["SMS"]})
    survivor = e2e.producer.enqueue({"jobId": "survivor", "message": BASE["SMS"]})
    e2e.redis.xreadgroup(CONSUMER_GROUP, "dead-pod", {stream: ">"})
    for entry, count in ((poison, 16), (survivor, 2)):
        e2e.redis.xclaim(
            stream, CONSUMER_GROUP, "dead-pod", 0, [entry.entryId], idle=60_000, retrycount=count
        )

    e2e.start_worker(MAX_DELIVERIES="16")
    by_job = e2e.outcomes(2)

    given_up = by_job["poison"]
    assert given_up.status == "failed"
    assert given_up.error is not None
    assert given_up.error.msg == "gave up after 17 deliveries without an outcome"
    assert by_job["survivor"].status == "accepted"
    assert e2e.redis.xlen(e2e.keys.dead) == 1
    assert [r["message"] for r in received(e2e.sandbox)] == [BASE["SMS"]]
