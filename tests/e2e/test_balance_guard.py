"""The balance guard end to end: a real worker, the sandbox's balance below MIN_BALANCE."""

from __future__ import annotations

import time

from config import Settings
from tasks.balance_state import read_balance
from tests.contract_cases import BASE
from tests.e2e.conftest import E2E
from tests.e2e.harness import outcomes, wait_until
from tests.e2e.sandbox_view import received
from tests.e2e.test_batching import sms_jobs
from worker.balance import GUARD_TTL_S, guard_now


def test_the_balance_guard_pauses_sms_while_flashcall_codes_still_go_out_and_resumes(
    e2e: E2E,
) -> None:
    e2e.sandbox.put("/_sandbox/balance", json={"RUB": 50}).raise_for_status()
    worker = e2e.start_worker(MIN_BALANCE="100", BALANCE_REFRESH_S="0.3")
    guard = Settings(dispatch_key_prefix=e2e.keys.prefix, min_balance=100, balance_refresh_s=0.3)
    wait_until(lambda: guard_now(e2e.redis, e2e.keys, guard).paused, 20, "the guard to pause")
    time.sleep(GUARD_TTL_S + 0.5)  # the batcher has seen it too
    e2e.producer.enqueue_many(sms_jobs(20))
    codes = [{"jobId": f"code-{i}", "message": BASE["FLASHCALL"]} for i in range(5)]
    e2e.producer.enqueue_many(codes)
    wait_until(lambda: e2e.redis.xlen(e2e.keys.results) >= 5, 30, "the codes' outcomes")
    time.sleep(2)  # several SMS lingers (0.3 s): nothing of them may go meanwhile
    sent = outcomes(e2e.redis, e2e.keys)
    assert sorted(o.jobId for o in sent) == [f"code-{i}" for i in range(5)]
    assert {o.status for o in sent} == {"accepted"}
    assert {r["message"]["channelType"] for r in received(e2e.sandbox)} == {"FLASHCALL"}
    assert e2e.redis.xlen(e2e.keys.jobs("SMS")) == 20  # waiting, none lost
    assert read_balance(e2e.redis, e2e.keys.balance).amounts == {"RUB": 50 - 5 * 1.5}

    e2e.sandbox.put("/_sandbox/balance", json={"RUB": 1000}).raise_for_status()
    by_job = e2e.outcomes(25, timeout=60)  # one outcome per job, streams emptied
    assert {o.status for o in by_job.values()} == {"accepted"}
    channels = [r["message"]["channelType"] for r in received(e2e.sandbox)]
    assert sorted(channels) == ["FLASHCALL"] * 5 + ["SMS"] * 20
    log = worker.log.read_text()
    assert "bulk channels PAUSED, balance RUB 50.0 below MIN_BALANCE 100" in log
    assert "bulk channels resume, balance RUB 1000.0 (MIN_BALANCE 100)" in log
    assert e2e.redis.xlen(e2e.keys.dead) == 0
