"""The circuit breaker end to end: an outage or a wrong key burns nothing, codes too old to be of
use expire, and only a batch's own deadline (the API not known to be down) dead-letters."""

from __future__ import annotations

from typing import Any

from tasks.circuit_state import read_state
from tests.contract_cases import BASE
from tests.e2e.conftest import E2E
from tests.e2e.harness import pending, settled, wait_until
from tests.e2e.sandbox_view import received, stats
from tests.e2e.test_batching import sms_jobs
from tests.sandbox_client import set_faults


def circuit_open(e2e: E2E) -> bool:
    return read_state(e2e.redis, e2e.keys.circuit).open


def waiting(e2e: E2E, channel: str = "SMS") -> int:
    """Entries still in the channel's stream: unread, or pending without an outcome."""
    return int(e2e.redis.xlen(e2e.keys.jobs(channel)))


def test_an_outage_pauses_every_lane_and_dead_letters_nothing(e2e: E2E) -> None:
    set_faults(e2e.sandbox, status={"status": 503, "fraction": 1.0})
    worker = e2e.start_worker()
    e2e.producer.enqueue_many(sms_jobs(300))
    wait_until(lambda: circuit_open(e2e), 30, "the circuit to open")
    assert "503" in read_state(e2e.redis, e2e.keys.circuit).reason
    requests_while_down = stats(e2e.sandbox)["requests"]
    assert e2e.redis.xlen(e2e.keys.results) == 0
    assert waiting(e2e) == 300
    # While down, probes only: one request per cooldown (0.5 s, doubling up to 2 s).
    wait_until(lambda: stats(e2e.sandbox)["requests"] >= requests_while_down + 2, 20, "probes")
    assert e2e.redis.xlen(e2e.keys.results) == 0
    assert e2e.redis.xlen(e2e.keys.dead) == 0
    set_faults(e2e.sandbox)  # the API is back
    by_job = e2e.outcomes(300, timeout=60)
    assert {o.status for o in by_job.values()} == {"accepted"}
    assert e2e.redis.xlen(e2e.keys.dead) == 0
    assert not circuit_open(e2e)
    assert len(received(e2e.sandbox)) == 300
    log = worker.log.read_text()
    assert "circuit OPEN" in log
    assert "circuit closed" in log


def test_a_wrong_token_burns_nothing_and_sending_resumes_once_it_is_fixed(e2e: E2E) -> None:
    e2e.producer.enqueue_many(sms_jobs(50))
    e2e.producer.enqueue({"jobId": "code", "message": BASE["FLASHCALL"]})
    wrong = e2e.start_worker(name="wrong", REVICOM_API_TOKEN="wrong-token")
    wait_until(lambda: circuit_open(e2e), 30, "the circuit to open")
    state = read_state(e2e.redis, e2e.keys.circuit)
    assert "401" in state.reason
    assert "4012" in state.reason
    assert "wrong-token" not in state.reason
    wait_until(lambda: stats(e2e.sandbox)["requests"] >= 3, 20, "probes with the wrong key")
    assert e2e.redis.xlen(e2e.keys.results) == 0  # nothing rejected, nothing failed
    assert stats(e2e.sandbox)["requestsByStatus"].keys() == {"401"}
    log = wrong.log.read_text()
    assert "fix REVICOM_API_TOKEN" in log
    assert "wrong-token" not in log
    assert wrong.terminate() == 0
    e2e.start_worker(name="fixed")
    by_job = e2e.outcomes(51, timeout=60)
    assert {o.status for o in by_job.values()} == {"accepted"}
    assert len(received(e2e.sandbox)) == 51


def test_codes_too_old_when_they_could_go_expire_and_campaigns_do_not(e2e: E2E) -> None:
    set_faults(e2e.sandbox, status={"status": 503, "fraction": 1.0})
    e2e.start_worker(FLASHCALL_MAX_AGE_S="2")
    e2e.producer.enqueue({"jobId": "first", "message": BASE["SMS"]})
    wait_until(lambda: circuit_open(e2e), 30, "the circuit to open")
    e2e.producer.enqueue_many(
        [{"jobId": f"code-{i}", "message": BASE["FLASHCALL"]} for i in range(5)]
        + [{"jobId": f"sms-{i}", "message": BASE["SMS"]} for i in range(5)]
    )
    # The codes wait out their 2 s while the API is down.
    wait_until(lambda: e2e.redis.time()[0] >= _enqueued_s(e2e, "FLASHCALL") + 2.5, 10, "2 s")
    set_faults(e2e.sandbox)
    by_job = e2e.outcomes(11, timeout=60)
    for i in range(5):
        code = by_job[f"code-{i}"]
        assert code.status == "expired"
        assert code.error is not None
        assert "MAX_AGE" in code.error.msg
        assert by_job[f"sms-{i}"].status == "accepted"
    assert by_job["first"].status == "accepted"
    assert {r["message"]["channelType"] for r in received(e2e.sandbox)} == {"SMS"}
    assert e2e.redis.xlen(e2e.keys.dead) == 0


def _enqueued_s(e2e: E2E, channel: str) -> float:
    entries: Any = e2e.redis.xrange(e2e.keys.jobs(channel), count=1)
    return int(entries[0][0].split(b"-")[0]) / 1000


def test_retries_cut_by_the_batch_deadline_fail_and_dead_letter(e2e: E2E) -> None:
    """The API slow and failing, but not (yet) known to be down: the batch's one deadline
    ends its retries, and its jobs fail into the dead letters for a replay."""
    set_faults(e2e.sandbox, status={"status": 503, "fraction": 1.0}, latencyMs=600)
    e2e.producer.enqueue_many(sms_jobs(5))
    e2e.start_worker(RETRY_MAX_SECONDS="0.3")
    by_job = e2e.outcomes(5)
    outcome = by_job["sms-0"]
    assert (outcome.status, outcome.attempts, outcome.httpStatus) == ("failed", 1, 503)
    assert e2e.redis.xlen(e2e.keys.dead) == 5
    assert stats(e2e.sandbox)["requests"] == 1
    assert not circuit_open(e2e)  # one failure is not an outage
    wait_until(lambda: settled(e2e.redis, e2e.keys), 10, "entries acknowledged")
    assert pending(e2e.redis, e2e.keys, "SMS") == 0
