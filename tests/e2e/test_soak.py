"""Soak: a mixed load through repeated worker kills and API faults (`make soak`)."""

from __future__ import annotations

import itertools
import time
from collections import Counter, defaultdict
from typing import Any

import pytest

from tests.contract_cases import variant
from tests.e2e.conftest import E2E
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
    by_job = e2e.outcomes(len(jobs), timeout=240)  # exactly one outcome per jobId
    assert set(by_job) == {j["jobId"] for j in jobs}
    statuses = Counter(o.status for o in by_job.values())
    assert statuses["accepted"] + statuses["failed"] == len(jobs)

    # Every job's message is told apart by (destination, content): the copies the sandbox
    # created are counted per job, each with the request that carried it.
    job_of = {message_key(j["message"]): str(j["jobId"]) for j in jobs}
    assert len(job_of) == len(jobs)
    copies: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for record in received(e2e.sandbox):
        copies[job_of[message_key(record["message"])]].append(
            (record["requestIndex"], record["messageUuid"])
        )
    for job_id, outcome in by_job.items():
        if outcome.status == "accepted":  # its messageUuid is one the API created for it
            assert outcome.messageUuid in {uuid for _, uuid in copies[job_id]}, job_id
    for job_id, sent in copies.items():
        # A job is sent again only when a worker died between two of its requests: its
        # first request was in flight at a kill, and the next came after it.
        indices = sorted(request for request, _ in sent)
        for before, again in itertools.pairwise(indices):
            assert any(before < k <= again for k in reached_before_kills), (job_id, indices)
    spread = Counter(len(sent) for sent in copies.values())
    print(
        f"\nsoak: {len(jobs)} jobs, outcomes {dict(statuses)}, {len(reached_before_kills)} "
        f"kills, messages by copies received {dict(sorted(spread.items()))}, "
        f"{stats(e2e.sandbox)['requests']} requests"
    )


def message_key(message: Any) -> tuple[str, str]:
    return (message["destination"], message["content"])
