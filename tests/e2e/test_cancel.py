"""Cancelling end to end: `revicom-dispatch cancel` (a real process) against a running worker,
the callback receiver and the sandbox. Every job ends with exactly one outcome, `cancelled` or
`accepted`; the sandbox never receives a cancelled job; a stopped message's final `unsent`
comes back as its one final status."""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson

from tests.e2e.harness import outcomes, wait_until
from tests.e2e.sandbox_view import received
from tests.e2e.test_delivery_tracking import Tracked, finals, sms_jobs, tracked

__all__ = ["tracked"]  # the fixture, used by name

#: Accepted messages stay `sending` for two minutes: there is time to stop them.
SLOW_SENDING = {"sentAfterMs": 120_000, "finalAfterMs": 120_000}


def cancel(tracked: Tracked, *args: str) -> tuple[int, list[dict[str, Any]], float]:
    """The command's exit status, its JSON rows, and how long it took (s)."""
    started = time.monotonic()
    run = subprocess.run(
        [Path(sys.executable).with_name("revicom-dispatch"), "cancel", "--json", *args],
        env=tracked.env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    took = time.monotonic() - started
    assert "Traceback" not in run.stderr, run.stderr
    return run.returncode, [orjson.loads(line) for line in run.stdout.splitlines()], took


def contents(tracked: Tracked) -> set[str]:
    return {r["message"]["content"] for r in received(tracked.e2e.sandbox)}


def test_cancelling_10000_queued_sms_while_a_worker_sends(tracked: Tracked, tmp_path: Path) -> None:
    e2e = tracked.e2e
    tracked.deliver(**SLOW_SENDING)
    # 100-message batches answered after 100 ms: the worker needs seconds for the campaign,
    # so the cancel meets jobs queued, jobs in a batch being sent, and jobs accepted.
    e2e.sandbox.put("/_sandbox/faults", json={"latencyMs": 100}).raise_for_status()
    jobs = sms_jobs(10_000, "camp")
    e2e.producer.enqueue_many(jobs)
    tracked.worker(SMS_BATCH_SIZE="100", SMS_LINGER_MS="50", STATUS_POLL_AFTER_S="600")
    wait_until(lambda: e2e.redis.xlen(e2e.keys.results) >= 300, 60, "the first outcomes")
    ids = tmp_path / "campaign.txt"
    ids.write_text("\n".join(str(j["jobId"]) for j in jobs))
    status, rows, took = cancel(tracked, "--jobs-file", str(ids))
    print(f"cancel of 10,000 jobs took {took:.2f} s")
    # A job a batch was sending when the cancel met it is waited for (--wait), then stopped.
    assert Counter(r["result"] for r in rows).keys() <= {"cancelled", "stop requested"}, rows
    assert status == 0
    assert len(rows) == 10_000
    assert {r["jobId"] for r in rows} == {j["jobId"] for j in jobs}
    found = e2e.outcomes(10_000)  # exactly one each
    by_status = Counter(o.status for o in found.values())
    assert by_status.keys() == {"cancelled", "accepted"}, by_status
    assert by_status["cancelled"] > 1000, by_status
    assert by_status["accepted"] >= 300, by_status
    result = {r["jobId"]: r["result"] for r in rows}
    assert {j for j, o in found.items() if o.status == "cancelled"} == {
        j for j, r in result.items() if r == "cancelled"
    }
    sent = contents(tracked)
    cancelled_contents = {
        str(j["message"]["content"])  # type: ignore[index]
        for j in jobs
        if found[str(j["jobId"])].status == "cancelled"
    }
    assert sent.isdisjoint(cancelled_contents)
    assert len(sent) == by_status["accepted"]
    # Each stopped message's final `unsent` arrives (by callback) as its one final status.
    accepted = {j for j, o in found.items() if o.status == "accepted"}
    wait_until(lambda: len(finals(e2e.redis, e2e.keys)) >= len(accepted), 60, "unsent finals")
    time.sleep(1)
    final = finals(e2e.redis, e2e.keys)
    assert final.keys() == accepted
    assert {(len(f), f[0]["status"]) for f in final.values()} == {(1, "unsent")}
    assert len(outcomes(e2e.redis, e2e.keys)) == 10_000  # a stop publishes no outcome


def test_a_tag_stops_sent_messages_and_cancels_queued_ones(tracked: Tracked) -> None:
    e2e = tracked.e2e
    tracked.deliver(**SLOW_SENDING)
    spring = sms_jobs(200, "spring-sent", tags=["spring"])
    other = sms_jobs(100, "other-sent", tags=["autumn"])
    e2e.producer.enqueue_many(spring + other)
    worker = tracked.worker(STATUS_POLL_AFTER_S="600")
    e2e.outcomes(300)
    worker.stop()
    queued = sms_jobs(150, "spring-queued", tags=["spring", "x"])
    kept = sms_jobs(50, "kept", tags=["autumn"])
    e2e.producer.enqueue_many(queued + kept)
    status, rows, _ = cancel(tracked, "--tag", "spring")
    assert status == 0
    assert Counter(r["result"] for r in rows) == {"cancelled": 150, "stop requested": 200}
    assert {r["jobId"] for r in rows if r["result"] == "stop requested"} == {
        j["jobId"] for j in spring
    }
    tracked.worker(STATUS_POLL_AFTER_S="600")
    found = e2e.outcomes(500)
    assert Counter(o.status for o in found.values()) == {"accepted": 350, "cancelled": 150}
    assert not any(c.startswith("spring-queued") for c in contents(tracked))
    wait_until(lambda: len(finals(e2e.redis, e2e.keys)) >= 200, 60, "unsent finals")
    time.sleep(1)
    final = finals(e2e.redis, e2e.keys)
    assert final.keys() == {j["jobId"] for j in spring}
    assert {(len(f), f[0]["status"]) for f in final.values()} == {(1, "unsent")}
    # Again: the queued ones are gone from the stream, the sent ones no longer `sending`.
    assert cancel(tracked, "--tag", "spring")[:2] == (0, [])
