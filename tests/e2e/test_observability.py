"""What an operator sees: Flower's view of the batches, and the worker's log lines."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx

from devenv.processes import answers_http, free_port, service
from tests.conftest import SANDBOX_TOKEN
from tests.e2e.conftest import E2E
from tests.e2e.harness import wait_until
from tests.e2e.test_batching import sms_jobs
from tests.sandbox_client import set_faults

CELERY = str(Path(sys.executable).with_name("celery"))


def test_flower_shows_each_batch_with_its_channel_size_and_result(
    e2e: E2E, worker_env: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()
    flower = f"http://127.0.0.1:{port}"
    command = [CELERY, "-A", "worker.app", "flower", f"--port={port}", "--address=127.0.0.1"]
    env = {**worker_env, "FLOWER_UNAUTHENTICATED_API": "true"}  # its REST API, for the test
    with service(
        command, answers_http(f"{flower}/healthcheck"), env=env, log=tmp_path / "flower.log"
    ):
        e2e.start_worker()
        e2e.producer.enqueue_many(sms_jobs(1500))
        e2e.outcomes(1500)

        def batches() -> list[dict[str, object]]:
            tasks = httpx.get(f"{flower}/api/tasks", timeout=5).json()
            return [
                t
                for t in tasks.values()
                if t.get("name") == "revicom.send_batch" and t.get("state") == "SUCCESS"
            ]

        wait_until(lambda: len(batches()) == 2, 20, "Flower saw both batches")
        shown = sorted(str(t["args"]) for t in batches())
        assert shown == ["('SMS', <1000 jobs>)", "('SMS', <500 jobs>)"]
        assert all("'accepted': " in str(t["result"]) for t in batches())


def test_the_log_has_a_line_per_batch_and_never_the_token(e2e: E2E) -> None:
    set_faults(e2e.sandbox, status={"status": 503, "next": 1})
    # The callback URL carries credentials: never in the log either (the poller's lookups
    # and the 503's retry line included).
    worker = e2e.start_worker(
        CALLBACK_URL="http://dlr:cb-pa55w0rd@127.0.0.1:9/callbacks",
        STATUS_POLL_AFTER_S="0.5",
        STATUS_POLL_MAX_INTERVAL_S="0.5",
    )
    e2e.producer.enqueue_many(sms_jobs(20))
    e2e.outcomes(20)
    wait_until(lambda: e2e.redis.xlen(e2e.keys.statuses) >= 20, 20, "statuses found by the poller")
    log = worker.log.read_text()
    assert "cb-pa55w0rd" not in log
    assert "sms 3" not in log  # a message's content
    assert (
        "batch channel=SMS size=20 accepted=20 rejected=0 failed=0 expired=0 returned=0 "
        "attempts=2" in log
    )
    assert "retrying POST /api/v1/message (SMS, 20 items) after HTTP 503" in log
    assert SANDBOX_TOKEN not in log
