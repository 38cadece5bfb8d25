"""Jobs are grouped per channel into requests of up to 1,000."""

from __future__ import annotations

import time

from tasks.channels import CHANNELS
from tests.contract_cases import BASE, variant
from tests.e2e.conftest import E2E
from tests.e2e.sandbox_view import received, requests, stats


def sms_jobs(n: int, prefix: str = "sms") -> list[dict[str, object]]:
    return [
        {"jobId": f"{prefix}-{i}", "message": variant("SMS", content=f"{prefix} {i}")}
        for i in range(n)
    ]


def test_1000_sms_make_one_post(e2e: E2E) -> None:
    e2e.producer.enqueue_many(sms_jobs(1000))
    e2e.start_worker()
    by_job = e2e.outcomes(1000)
    assert stats(e2e.sandbox)["requests"] == 1
    assert {o.status for o in by_job.values()} == {"accepted"}
    uuids = {r["messageUuid"] for r in received(e2e.sandbox)}
    assert {o.messageUuid for o in by_job.values()} == uuids
    assert {o.attempts for o in by_job.values()} == {1}


def test_2500_sms_make_three_posts(e2e: E2E) -> None:
    e2e.producer.enqueue_many(sms_jobs(2500))
    e2e.start_worker()
    e2e.outcomes(2500)
    sizes = sorted(len(messages) for messages in requests(e2e.sandbox).values())
    assert sizes == [500, 1000, 1000]
    assert stats(e2e.sandbox)["requests"] == 3


def test_channels_never_share_a_post(e2e: E2E) -> None:
    channels = list(CHANNELS)
    jobs = []
    for i in range(8 * len(channels)):
        channel = channels[i % len(channels)]
        jobs.append({"jobId": f"mixed-{i}", "message": BASE[channel]})
    e2e.producer.enqueue_many(jobs)
    e2e.start_worker()
    by_job = e2e.outcomes(len(jobs))
    assert {o.status for o in by_job.values()} == {"accepted"}
    for messages in requests(e2e.sandbox).values():
        kinds = {m.get("channelType", "CONVERSION") for m in messages}
        assert len(kinds) == 1, kinds
    per_request = [r["endpoint"] for r in received(e2e.sandbox)]
    assert per_request.count("/api/v1/flashcall-conversion") == 8
    conversion = f"mixed-{channels.index('FLASHCALL_CONVERSION')}"
    assert by_job[conversion].channelType == "FLASHCALL_CONVERSION"
    assert by_job[conversion].destination is None


def test_a_small_batch_is_cut_by_the_linger(e2e: E2E) -> None:
    e2e.start_worker(SMS_LINGER_MS="700", SMS_BATCH_SIZE="1000")
    started = time.monotonic()
    e2e.producer.enqueue_many(sms_jobs(7))
    e2e.outcomes(7)
    waited = time.monotonic() - started
    assert [len(m) for m in requests(e2e.sandbox).values()] == [7]
    assert waited >= 0.7  # the batch waited for company for the channel's linger


def test_batch_size_setting_is_honoured(e2e: E2E) -> None:
    e2e.producer.enqueue_many(sms_jobs(250))
    e2e.start_worker(SMS_BATCH_SIZE="100")
    e2e.outcomes(250)
    assert sorted(len(m) for m in requests(e2e.sandbox).values()) == [50, 100, 100]
