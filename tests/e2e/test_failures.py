"""What happens when the API fails, refuses, or the input is bad."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

from tests.contract_cases import BASE, variant
from tests.e2e.conftest import E2E
from tests.e2e.harness import outcomes, settled, wait_until
from tests.e2e.sandbox_view import received, stats
from tests.e2e.test_batching import sms_jobs
from tests.sandbox_client import set_faults


def test_a_5xx_then_success_is_accepted_on_attempt_2(e2e: E2E) -> None:
    set_faults(e2e.sandbox, status={"status": 502, "next": 1})
    e2e.producer.enqueue_many(sms_jobs(10))
    e2e.start_worker()
    by_job = e2e.outcomes(10)
    assert {(o.status, o.attempts, o.httpStatus) for o in by_job.values()} == {("accepted", 2, 200)}
    assert len(received(e2e.sandbox)) == 10


def test_429_retry_after_is_honoured(e2e: E2E) -> None:
    set_faults(e2e.sandbox, status={"status": 429, "next": 1, "retryAfter": 2})
    e2e.start_worker()
    enqueued_at = datetime.now(UTC)
    e2e.producer.enqueue_many(sms_jobs(3))
    by_job = e2e.outcomes(3)
    outcome = by_job["sms-0"]
    assert (outcome.status, outcome.attempts) == ("accepted", 2)
    # Backoff here is 50-200 ms: only the server's Retry-After explains a 2 s wait.
    assert (outcome.finishedAt - enqueued_at).total_seconds() >= 2.0


def test_one_bad_number_in_1000_sinks_only_itself(e2e: E2E) -> None:
    set_faults(e2e.sandbox, rejectDestinations="^1999")
    jobs = sms_jobs(1000)
    jobs[637] = {"jobId": "bad", "message": variant("SMS", destination="19995550000")}
    e2e.producer.enqueue_many(jobs)
    e2e.start_worker()
    by_job = e2e.outcomes(1000)
    bad = by_job.pop("bad")
    assert bad.status == "rejected"
    assert bad.error is not None
    assert (bad.httpStatus, bad.code, bad.error.code, bad.error.msg) == (
        422,
        4220,
        4220,
        "Invalid msisdn",
    )
    assert {o.status for o in by_job.values()} == {"accepted"}
    assert len(received(e2e.sandbox)) == 999
    assert stats(e2e.sandbox)["requests"] <= 1 + 2 * math.ceil(math.log2(1000))


def test_per_item_codes(e2e: E2E) -> None:
    set_faults(e2e.sandbox, itemCodes=[{"destination": "^1777", "code": 4041}])
    e2e.producer.enqueue_many(
        [
            {"jobId": "ok", "message": BASE["SMS"]},
            {"jobId": "refused", "message": variant("SMS", destination="17775550000")},
        ]
    )
    e2e.start_worker()
    by_job = e2e.outcomes(2)
    assert by_job["ok"].status == "accepted"
    refused = by_job["refused"]
    assert (refused.status, refused.code, refused.httpStatus, refused.messageUuid) == (
        "rejected",
        4041,
        200,
        None,
    )


def test_a_duplicate_job_id_is_sent_once(e2e: E2E) -> None:
    twice = {"jobId": "otp-once", "message": BASE["FLASHCALL"]}
    e2e.producer.enqueue_many([twice, twice])  # same batch
    worker = e2e.start_worker()
    e2e.outcomes(1)
    e2e.producer.enqueue(twice)  # after it finished
    e2e.producer.enqueue({"jobId": "marker", "message": BASE["FLASHCALL"]})
    by_job = e2e.outcomes(2)
    assert set(by_job) == {"otp-once", "marker"}
    assert len(received(e2e.sandbox)) == 2
    assert worker.process.poll() is None


def test_malformed_entries_are_rejected_and_never_block_their_stream(e2e: E2E) -> None:
    stream = e2e.keys.jobs("SMS")
    e2e.producer.enqueue({"jobId": "before", "message": BASE["SMS"]})

    def add(fields: dict[str, str]) -> str:
        entry_id: Any = e2e.redis.xadd(stream, fields)  # type: ignore[arg-type]
        return str(entry_id.decode())

    not_json = add({"job": "{nope"})
    no_field = add({"payload": "x"})
    oversized = json.dumps({"jobId": "huge", "message": variant("SMS", content="x" * 70_000)})
    huge = add({"job": oversized})
    e2e.redis.xadd(
        stream, {"job": json.dumps({"jobId": "wrong-stream", "message": BASE["FLASHCALL"]})}
    )
    e2e.redis.xadd(
        stream,
        {"job": json.dumps({"jobId": "viber", "message": variant("SMS", channelType="VIBER")})},
    )
    e2e.redis.xadd(
        stream, {"job": json.dumps({"jobId": "invalid", "message": variant("SMS", ttl=5)})}
    )
    e2e.producer.enqueue({"jobId": "after", "message": BASE["SMS"]})
    e2e.start_worker()
    by_job = e2e.outcomes(8)
    assert by_job["before"].status == by_job["after"].status == "accepted"
    problems = {
        job_id: o.error.msg for job_id, o in by_job.items() if o.status == "rejected" and o.error
    }
    assert problems[not_json].startswith("the job is not valid JSON")
    assert problems[no_field] == "the entry has no 'job' field"
    assert problems[huge].endswith("bytes, over MAX_JOB_BYTES (65536)")
    assert problems["wrong-stream"] == "a FLASHCALL job on the SMS stream"
    assert problems["viber"].startswith("message.channelType: must be one of")
    assert problems["invalid"] == "message.ttl: must be at least 60"
    assert all(by_job[j].httpStatus is None for j in problems)
    assert len(received(e2e.sandbox)) == 2


def test_outcomes_publish_everything_an_upstream_app_needs(e2e: E2E) -> None:
    e2e.producer.enqueue(
        {"jobId": "vc", "message": variant("VOICECODE", externalMessageId="ext-1")}
    )
    e2e.start_worker()
    [outcome] = e2e.outcomes(1).values()
    assert outcome.externalMessageId == "ext-1"
    assert outcome.destination == "14085553911"
    assert outcome.channelType == "VOICECODE"
    assert outcomes(e2e.redis, e2e.keys) == [outcome]


def test_a_failed_job_is_sent_again_only_by_a_replay(e2e: E2E) -> None:
    from ops.replay import replay

    set_faults(e2e.sandbox, status={"status": 503, "fraction": 1.0}, latencyMs=600)
    e2e.producer.enqueue_many(sms_jobs(3))
    e2e.start_worker(RETRY_MAX_SECONDS="0.3")  # the batch's deadline ends its retries
    assert {o.status for o in e2e.outcomes(3).values()} == {"failed"}
    set_faults(e2e.sandbox)
    e2e.producer.enqueue({"jobId": "sms-0", "message": BASE["SMS"]})  # the app enqueued it again
    wait_until(lambda: settled(e2e.redis, e2e.keys), 30, "the duplicate acknowledged")
    assert e2e.redis.xlen(e2e.keys.results) == 3  # one outcome per job: it stays failed
    assert received(e2e.sandbox) == []

    assert replay(e2e.redis, e2e.keys) == {"SMS": 3}
    wait_until(lambda: e2e.redis.xlen(e2e.keys.results) == 6, 30, "the replayed jobs")
    wait_until(lambda: settled(e2e.redis, e2e.keys), 30, "replayed entries acknowledged")

    history: dict[str, list[str]] = {}
    for outcome in outcomes(e2e.redis, e2e.keys):
        history.setdefault(outcome.jobId, []).append(outcome.status)
    assert history == {f"sms-{i}": ["failed", "accepted"] for i in range(3)}
    assert len(received(e2e.sandbox)) == 3
    assert e2e.redis.xlen(e2e.keys.dead) == 0
