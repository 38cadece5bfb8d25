"""Soak: a mixed load through repeated worker kills and API faults (`make soak`)."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from tests.contract_cases import variant
from tests.e2e.conftest import E2E
from tests.e2e.harness import settled, wait_until
from tests.e2e.sandbox_view import received, stats
from tests.e2e.test_batching import sms_jobs
from tests.sandbox_client import set_faults

pytestmark = pytest.mark.slow


def test_every_job_has_one_outcome_through_kills_and_faults(e2e: E2E) -> None:
    # Slow answers keep requests in flight, so the kills land mid-request.
    set_faults(e2e.sandbox, latencyMs=300, status={"status": 503, "fraction": 0.1}, dropNext=3)
    jobs = sms_jobs(20_000) + [
        {"jobId": f"otp-{i}", "message": variant("FLASHCALL", destination=f"1999{i:07d}")}
        for i in range(1000)
    ]
    e2e.producer.enqueue_many(jobs)
    reached_before_kills: list[int] = []
    for round_ in range(6):
        worker = e2e.start_worker(f"round{round_}", RETRY_MAX_ATTEMPTS="8", SMS_BATCH_SIZE="500")
        time.sleep(1.5)
        worker.kill()
        reached_before_kills.append(stats(e2e.sandbox)["requests"])
    e2e.start_worker("last", RETRY_MAX_ATTEMPTS="8", SMS_BATCH_SIZE="500")
    wait_until(lambda: e2e.redis.xlen(e2e.keys.results) >= len(jobs), 240, "every outcome")
    wait_until(lambda: settled(e2e.redis, e2e.keys), 60, "every entry acknowledged")

    by_job = Counter(o.jobId for o in e2e.outcomes(len(jobs)).values())
    assert set(by_job) == {j["jobId"] for j in jobs}
    statuses = Counter(o.status for o in e2e.outcomes(len(jobs)).values())
    copies = Counter(
        (r["message"]["destination"], r["message"]["content"]) for r in received(e2e.sandbox)
    )
    twice = sum(1 for n in copies.values() if n > 1)
    print(
        f"\nsoak: {len(jobs)} jobs, outcomes {dict(statuses)}, {len(reached_before_kills)} "
        f"kills, {twice} messages received twice, "
        f"{stats(e2e.sandbox)['requests']} requests"
    )
    assert statuses["accepted"] + statuses["failed"] == len(jobs)
    assert max(copies.values()) <= 1 + len(reached_before_kills)
    first_request: dict[tuple[str, str], int] = {}
    for record in received(e2e.sandbox):
        key = (record["message"]["destination"], record["message"]["content"])
        first_request.setdefault(key, record["requestIndex"])
    for key, count in copies.items():
        if count > 1:  # only a request that was in flight when a worker died is sent again
            assert first_request[key] < reached_before_kills[-1], key
