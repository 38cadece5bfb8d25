"""`revicom-dispatch worker`: a pod of an OTP node and a bulk node."""

from __future__ import annotations

import time

from tests.contract_cases import BASE
from tests.e2e.conftest import E2E
from tests.e2e.sandbox_view import received
from tests.e2e.test_batching import sms_jobs
from tests.sandbox_client import set_faults


def test_a_code_is_not_held_up_by_a_slow_campaign(e2e: E2E) -> None:
    set_faults(e2e.sandbox, latencyMs=3000)  # every request is slow ...
    pod = e2e.start_worker(
        "pod", pod=True, OTP_CONCURRENCY="1", BULK_CONCURRENCY="1", SMS_BATCH_SIZE="10"
    )
    e2e.producer.enqueue_many(sms_jobs(40))  # ... and the campaign needs 4 of them, one at a time
    e2e.producer.enqueue({"jobId": "code", "message": BASE["FLASHCALL"]})
    by_job = e2e.outcomes(41, timeout=60)
    code = by_job.pop("code")
    assert code.status == "accepted"
    # The campaign's batches finish ~3, 6, 9 and 12 s in; the code, on a process of its own,
    # with the first. Sharing one process with the campaign, it would wait behind a batch.
    later = [o for o in by_job.values() if o.finishedAt > code.finishedAt]
    assert len(later) >= 30
    assert len(received(e2e.sandbox)) == 41
    assert pod.terminate(timeout=30) == 0


def test_codes_overlap_on_a_slow_api(e2e: E2E) -> None:
    """Codes wait on the API, not on CPU: on a 3 s API, eight codes cut into eight batches are
    all on the wire at once instead of queueing behind each other (two at a time before)."""
    set_faults(e2e.sandbox, latencyMs=3000)
    e2e.start_worker("pod", pod=True)
    for i in range(8):
        e2e.producer.enqueue({"jobId": f"code-{i}", "message": BASE["FLASHCALL"]})
        time.sleep(0.05)  # past the 20 ms linger: one batch each
    e2e.outcomes(8, timeout=60)
    arrivals = sorted(r["receivedAt"] for r in received(e2e.sandbox))
    assert len(arrivals) == 8
    # Queued behind each other, the last would arrive 3 s or more after the first.
    assert arrivals[-1] - arrivals[0] < 2.0, arrivals
