"""Crashes and shutdowns: every job still ends with exactly one outcome."""

from __future__ import annotations

import time
from collections import Counter

import httpx
import redis

from tasks.keys import Keys
from tasks.producer import Producer
from tests.contract_cases import variant
from tests.e2e.conftest import StartWorker
from tests.e2e.harness import pending, wait_for_outcomes, wait_until
from tests.e2e.sandbox_view import received, stats
from tests.e2e.test_batching import sms_jobs
from tests.sandbox_client import set_faults


def test_sigkill_mid_request_loses_nothing(
    start_worker: StartWorker,
    producer: Producer,
    redis_client: redis.Redis,
    keys: Keys,
    sandbox: httpx.Client,
) -> None:
    set_faults(sandbox, latencyMs=1500)
    doomed = start_worker("doomed")
    producer.enqueue_many(sms_jobs(3000))
    wait_until(lambda: stats(sandbox)["requests"] >= 1, 20, "a request in flight")
    doomed.kill()
    time.sleep(0.5)  # a request already written to the socket may still land
    reached_before_kill = stats(sandbox)["requests"]
    set_faults(sandbox)

    start_worker("rescuer")
    by_job = wait_for_outcomes(redis_client, keys, 3000, timeout=90)

    assert {o.status for o in by_job.values()} == {"accepted"}
    copies: dict[str, list[int]] = {}
    for record in received(sandbox):
        copies.setdefault(record["message"]["content"], []).append(record["requestIndex"])
    assert len(copies) == 3000
    twice = {content: idx for content, idx in copies.items() if len(idx) > 1}
    for content, indexes in twice.items():
        assert len(indexes) == 2, content
        assert min(indexes) < reached_before_kill, (content, indexes, reached_before_kill)
    # Reported, not asserted: the duplicates the API's lack of an idempotency key allows.
    print(
        f"\nSIGKILL: {reached_before_kill} request(s) had reached the sandbox; "
        f"{len(twice)} of 3000 messages were received twice (all from those requests)"
    )
    # Each received message maps to the outcome's messageUuid once: one of the copies.
    uuids = Counter(o.messageUuid for o in by_job.values())
    assert max(uuids.values()) == 1


def test_sigterm_drains_and_exits_cleanly(
    start_worker: StartWorker,
    producer: Producer,
    redis_client: redis.Redis,
    keys: Keys,
    sandbox: httpx.Client,
) -> None:
    set_faults(sandbox, latencyMs=1500)
    worker = start_worker(SMS_LINGER_MS="60000", SHUTDOWN_GRACE_S="20")
    producer.enqueue_many(sms_jobs(50))  # held in the batcher's buffer (long linger)
    producer.enqueue_many(
        [{"jobId": f"otp-{i}", "message": variant("FLASHCALL")} for i in range(20)]
    )  # sent at once, slow to answer
    wait_until(lambda: pending(redis_client, keys, "SMS") == 50, 10, "SMS read by the batcher")
    wait_until(lambda: stats(sandbox)["requests"] >= 1, 10, "the OTP request in flight")

    started = time.monotonic()
    assert worker.terminate(timeout=30) == 0
    took = time.monotonic() - started

    # Everything it had read was finished before it exited: no other worker is running.
    by_job = wait_for_outcomes(redis_client, keys, 70, timeout=1)
    assert {o.status for o in by_job.values()} == {"accepted"}
    assert len(received(sandbox)) == 70
    assert took < 20
    log = worker.log.read_text()
    assert "Traceback" not in log
