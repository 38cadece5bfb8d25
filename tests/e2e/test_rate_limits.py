"""Send-rate limits across real worker processes, counted at the sandbox (`receivedAt`), and
a 429 that pauses every pod: no job lost or sent twice because it waited."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest

from tests.contract_cases import variant
from tests.e2e.conftest import E2E
from tests.e2e.harness import wait_until
from tests.e2e.sandbox_view import received, stats
from tests.e2e.test_batching import sms_jobs
from tests.sandbox_client import set_faults


def arrivals(records: list[dict[str, Any]]) -> list[float]:
    return sorted(r["receivedAt"] for r in records)


def sent_batches(log: str, channel: str) -> bool:
    """Whether a worker's log shows a batch of `channel` it sent and had accepted."""
    return re.search(rf"batch channel={channel} size=\d+ accepted=[1-9]", log) is not None


def test_three_workers_share_one_limit(e2e: E2E) -> None:
    """SMS_RATE_LIMIT=200 over 3 worker processes, 2,000 jobs: every 1-second window holds
    at most the rate plus 10 % plus the 1 s burst, and the steady rate is the limit within
    10 %, counted from when the sandbox received each message."""
    limits = {"SMS_RATE_LIMIT": "200", "SMS_BATCH_SIZE": "50", "RATE_BURST_S": "1"}
    workers = [e2e.start_worker(name, concurrency=1, **limits) for name in ("w1", "w2", "w3")]
    e2e.producer.enqueue_many(sms_jobs(2000))
    by_job = e2e.outcomes(2000, timeout=90)
    assert {o.status for o in by_job.values()} == {"accepted"}
    records = received(e2e.sandbox)
    texts = sorted(r["message"]["content"] for r in records)
    assert texts == sorted(f"sms {i}" for i in range(2000))
    times = arrivals(records)
    windows = [sum(1 for t in times[i:] if t < start + 1) for i, start in enumerate(times)]
    assert max(windows) <= 200 * 1.1 + 200
    first, last = times[0] + 1, times[-1] - 1  # the steady part: past the burst's second
    steady = sum(1 for t in times if first <= t < last)
    assert steady / (last - first) == pytest.approx(200, rel=0.1)
    for worker in workers:  # each process drew on the one budget
        assert "batch channel=SMS size=50 accepted=50" in worker.log.read_text()


def test_codes_are_not_slowed_by_a_bulk_limit(e2e: E2E) -> None:
    """SMS at 5/s with a 60-SMS campaign queued (12 s of it): FLASHCALL codes enqueued
    meanwhile reach the sandbox within a second, in the pod's own OTP node."""
    e2e.start_worker(pod=True, SMS_RATE_LIMIT="5", SMS_BATCH_SIZE="5")
    e2e.producer.enqueue_many(sms_jobs(60))
    wait_until(lambda: len(received(e2e.sandbox)) >= 5, 30, "the campaign started")
    codes = [
        {"jobId": f"code-{i}", "message": variant("FLASHCALL", content=f"{1000 + i}")}
        for i in range(5)
    ]
    enqueued = time.time()
    e2e.producer.enqueue_many(codes)
    by_job = e2e.outcomes(65, timeout=60)
    assert {o.status for o in by_job.values()} == {"accepted"}
    records = received(e2e.sandbox)
    assert len(records) == 65
    code_times = arrivals([r for r in records if r["message"]["channelType"] == "FLASHCALL"])
    sms_times = arrivals([r for r in records if r["message"]["channelType"] == "SMS"])
    assert len(code_times) == 5
    assert max(code_times) - enqueued < 1.0
    assert sum(1 for t in sms_times if t > max(code_times)) >= 30  # the campaign still ran
    assert sms_times[-1] - sms_times[0] >= 10  # paced: 60 at 5/s, burst 1 s


def test_a_429_pauses_every_worker(e2e: E2E) -> None:
    """The sandbox answers 429 with Retry-After 2 to the first request; the jobs enqueued
    right after are taken by both workers, and no request from either reaches the sandbox
    in those 2 s; then every job is accepted exactly once."""
    set_faults(e2e.sandbox, status={"status": 429, "next": 1, "retryAfter": 2})
    settings = {"SMS_BATCH_SIZE": "10", "SMS_LINGER_MS": "50"}
    workers = [e2e.start_worker(name, concurrency=1, **settings) for name in ("w1", "w2")]
    e2e.producer.enqueue_many(sms_jobs(1, "first"))  # one request: nothing else in flight
    before = time.time()  # no request yet; the 429 comes after this
    while stats(e2e.sandbox)["requests"] == 0:
        before = time.time()
        time.sleep(0.005)
    e2e.producer.enqueue_many(sms_jobs(200))
    by_job = e2e.outcomes(201, timeout=60)
    assert {o.status for o in by_job.values()} == {"accepted"}
    records = received(e2e.sandbox)
    assert len(records) == 201
    assert len({r["message"]["content"] for r in records}) == 201  # none sent twice
    assert min(r["receivedAt"] for r in records) >= before + 2.0
    counts = stats(e2e.sandbox)["requestsByStatus"]
    assert counts["429"] == 1  # the refused request, once: nobody else was refused
    assert set(counts) == {"429", "200"}
    for worker in workers:
        assert sent_batches(worker.log.read_text(), "SMS")
