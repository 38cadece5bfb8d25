"""VK end to end: real Redis, a real worker process, the real sandbox. VK jobs go out as the
API takes them and each gets its outcome; a bad one is rejected locally, its neighbours in the
same batch are sent; delivery tracking follows VK messages to their final and read statuses."""

from __future__ import annotations

import json
from typing import Any

from tasks.contract import parse_message, to_api_json
from tasks.statuses import iter_statuses
from tests.contract_cases import variant
from tests.e2e.conftest import E2E
from tests.e2e.sandbox_view import received, requests, stats
from tests.e2e.test_delivery_tracking import TRACKING, finals, wait_for_finals
from tests.sandbox_client import set_delivery, set_faults


def vk_job(job_id: str, **fields: Any) -> dict[str, Any]:
    return {"jobId": job_id, "message": variant("VK", **fields)}


GOOD = [
    vk_job("vk-plain"),
    vk_job("vk-2048", content="я" * 2048),
    vk_job("vk-any-sender", senderName="Магазин «Ромашка» 24/7"),
    vk_job(
        "vk-scheduled",
        tags=["vk", "promo_1"],
        useLocalTime=True,
        ttl=3600,
        hours=[9, 10, 11],
        days=[1, 2, 3, 4, 5],
        shortUrl=False,
        callbackUrl="https://app.example.com/dlr",
        callbackEvents=["delivered", "read"],
    ),
    *(
        vk_job(f"vk-{i}", content=f"Заказ {i} готов 🎉", destination=f"1408555{i:04d}")
        for i in range(8)
    ),
]
#: Written as a producer in another language might (our producer refuses them): the worker
#: must reject each alone, naming the field, without a request to the API.
BAD = {
    "vk-too-long": (variant("VK", content="x" * 2049), "content: must have at most 2048"),
    "vk-no-sender": (variant("VK", senderName=""), "senderName: must not be blank"),
    "vk-bom": (variant("VK", content="\ufeffhi"), "content: must not start with a byte-order"),
    "vk-ttl": (variant("VK", ttl=59), "ttl: must be at least 60"),
}


def test_vk_jobs_are_accepted_and_a_bad_one_is_rejected_alone(e2e: E2E) -> None:
    # The sandbox refuses these names for SMS and WHATSAPP; a VK sender is any string.
    set_faults(e2e.sandbox, rejectSenders="^ACME")
    stream = e2e.keys.jobs("VK")
    e2e.producer.enqueue_many(GOOD[:6])
    for job_id, (message, _) in BAD.items():
        e2e.redis.xadd(stream, {"job": json.dumps({"jobId": job_id, "message": message})})
    e2e.producer.enqueue_many(GOOD[6:])

    worker = e2e.start_worker(VK_LINGER_MS="1000")
    by_job = e2e.outcomes(len(GOOD) + len(BAD))

    for job_id, (_, says) in BAD.items():
        outcome = by_job.pop(job_id)
        assert (outcome.status, outcome.channelType, outcome.httpStatus) == (
            "rejected",
            "VK",
            None,
        )
        assert outcome.error is not None
        assert says in outcome.error.msg, outcome.error.msg
    assert {o.status for o in by_job.values()} == {"accepted"}
    assert {o.channelType for o in by_job.values()} == {"VK"}
    assert {o.attempts for o in by_job.values()} == {1}
    # The good neighbours went in one request, each exactly as the API takes it.
    assert stats(e2e.sandbox)["requests"] == 1
    [sent] = requests(e2e.sandbox).values()
    assert sent == [to_api_json(parse_message(job["message"])) for job in GOOD]
    sent_by_uuid = {r["messageUuid"]: r["message"] for r in received(e2e.sandbox)}
    for job in GOOD:
        outcome = by_job[job["jobId"]]
        assert sent_by_uuid[outcome.messageUuid or ""] == to_api_json(parse_message(job["message"]))
        assert outcome.destination == job["message"]["destination"]
    assert "Traceback" not in worker.log.read_text()


def test_vk_messages_are_tracked_to_delivered_then_read(e2e: E2E) -> None:
    """One final status each (`delivered`), then `read`: VK has read statuses."""
    set_delivery(e2e.sandbox, readFraction=1.0, sentAfterMs=0, finalAfterMs=100)
    jobs = [vk_job(f"read-{i}", content=f"vk {i}") for i in range(10)]
    e2e.producer.enqueue_many(jobs)
    e2e.start_worker(**TRACKING)
    assert {o.status for o in e2e.outcomes(10).values()} == {"accepted"}
    wait_for_finals(e2e.redis, e2e.keys, 10, 60)
    found = finals(e2e.redis, e2e.keys)
    assert {job: [e["status"] for e in entries] for job, entries in found.items()} == {
        job["jobId"]: ["delivered"] for job in jobs
    }
    after = [e for _, e in iter_statuses(e2e.redis, e2e.keys) if not e.final]
    assert {(e.channelType, e.status) for e in after} == {("VK", "read")}
