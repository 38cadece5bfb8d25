"""Delivery tracking end to end: a worker, the callback receiver and the sandbox delivering and
calling back, over real HTTP and a real Redis. Every accepted job ends with exactly one final
status on the statuses stream, equal to the sandbox's truth, whatever happens to callbacks."""

from __future__ import annotations

import os
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from devenv.processes import RunningServer, receiver_process
from devenv.redis_server import RedisServer
from tasks.contract import ContractContext
from tasks.keys import Keys
from tasks.producer import Producer
from tasks.statuses import iter_statuses
from tests.conftest import SANDBOX_TOKEN
from tests.contract_cases import variant
from tests.e2e.conftest import E2E
from tests.e2e.harness import FAST, WorkerProcess, wait_until
from tests.e2e.sandbox_view import received

USER, PASSWORD = "dlr", "e2e-pa55"
#: Statuses come within a second; lookups start two seconds after a 201.
DELIVERY = {"sentAfterMs": 50, "finalAfterMs": 300}
TRACKING = {"STATUS_POLL_AFTER_S": "2", "STATUS_POLL_MAX_INTERVAL_S": "2", "STATUS_POLL_RPS": "50"}


def sms_jobs(n: int, prefix: str, **fields: Any) -> list[dict[str, object]]:
    return [
        {"jobId": f"{prefix}-{i}", "message": variant("SMS", content=f"{prefix} {i}", **fields)}
        for i in range(n)
    ]


@dataclass
class Tracked:
    """One run: the receiver's address and the worker's settings that point at it."""

    e2e: E2E
    receiver: RunningServer
    env: dict[str, str]

    def callback_url(self, password: str = PASSWORD) -> str:
        return f"http://{USER}:{password}@{self.receiver.url.removeprefix('http://')}/callbacks"

    def worker(self, *, pod: bool = False, **settings: str) -> WorkerProcess:
        return self.e2e.start_worker(
            pod=pod, **{"CALLBACK_URL": self.callback_url(), **TRACKING, **settings}
        )

    def deliver(self, **plan: Any) -> None:
        self.e2e.sandbox.put("/_sandbox/delivery", json={**DELIVERY, **plan}).raise_for_status()


@pytest.fixture
def tracked(e2e: E2E, worker_env: dict[str, str], tmp_path: Path) -> Iterator[Tracked]:
    env = {**worker_env, "CALLBACK_USERNAME": USER, "CALLBACK_PASSWORD": PASSWORD}
    with receiver_process(env, log=tmp_path / "receiver.log") as receiver:
        yield Tracked(e2e, receiver, env)
    log = (tmp_path / "receiver.log").read_text()
    assert PASSWORD not in log
    assert "Traceback" not in log


def finals(client: redis.Redis, keys: Keys) -> dict[str, list[dict[str, Any]]]:
    """jobId -> its entries with `final: true` (exactly one each is the promise)."""
    found: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for _, entry in iter_statuses(client, keys):
        if entry.final:
            found[entry.jobId].append(entry.model_dump())
    return found


def wait_for_finals(client: redis.Redis, keys: Keys, count: int, timeout: float) -> None:
    wait_until(lambda: len(finals(client, keys)) >= count, timeout, f"{count} final statuses")


def truth(sandbox: httpx.Client) -> dict[str, str]:
    """messageUuid -> the final status the sandbox gave it."""
    return {r["messageUuid"]: r["finalStatus"] for r in received(sandbox)}


def assert_one_final_each_as_the_sandbox_says(tracked: Tracked, jobs: int) -> dict[str, str]:
    e2e = tracked.e2e
    outcomes = e2e.outcomes(jobs)
    wait_for_finals(e2e.redis, e2e.keys, jobs, 60)
    time.sleep(1)  # anything late would show as a second final
    found = finals(e2e.redis, e2e.keys)
    assert len(found) == jobs
    assert {job: len(entries) for job, entries in found.items() if len(entries) != 1} == {}
    sandbox = truth(e2e.sandbox)
    mine = {job: entries[0]["status"] for job, entries in found.items()}
    expected = {job: sandbox[o.messageUuid or ""] for job, o in outcomes.items()}
    assert mine == expected
    return {job: entries[0]["source"] for job, entries in found.items()}


def test_2000_sms_duplicated_and_reordered_callbacks_one_final_each(tracked: Tracked) -> None:
    tracked.deliver(
        delivered=0.8,
        undelivered=0.15,
        unsent=0.05,
        duplicateFraction=0.1,
        reorderFraction=0.1,
    )
    tracked.e2e.producer.enqueue_many(sms_jobs(2000, "dup"))
    tracked.worker(pod=True, STATUS_POLL_AFTER_S="600")  # a whole pod; callbacks only
    sources = assert_one_final_each_as_the_sandbox_says(tracked, 2000)
    assert set(sources.values()) == {"callback"}
    page = httpx.get(f"{tracked.receiver.url}/metrics").text
    assert 'revicom_status_events_total{result="duplicate",source="callback"}' in page


def test_dropped_callbacks_are_completed_by_polling(tracked: Tracked) -> None:
    tracked.deliver(delivered=0.7, undelivered=0.3, dropFraction=0.2)
    tracked.e2e.producer.enqueue_many(sms_jobs(500, "drop"))
    tracked.worker()
    sources = assert_one_final_each_as_the_sandbox_says(tracked, 500)
    counts = {s: list(sources.values()).count(s) for s in ("callback", "poll")}
    assert counts["poll"] > 40, counts  # about 100 dropped
    assert counts["callback"] > 300, counts


def test_a_callback_before_its_outcome_is_parked_then_published(tracked: Tracked) -> None:
    # The API creates the messages, calls back at once, and answers the POST a second later:
    # the callbacks reach us before the worker could map the messages to their jobs.
    tracked.deliver(sentAfterMs=0, finalAfterMs=0)
    tracked.e2e.sandbox.put("/_sandbox/faults", json={"answerDelayMs": 1500}).raise_for_status()
    tracked.e2e.producer.enqueue_many(sms_jobs(20, "early"))
    tracked.worker(STATUS_POLL_AFTER_S="600")
    assert_one_final_each_as_the_sandbox_says(tracked, 20)
    page = httpx.get(f"{tracked.receiver.url}/metrics").text
    parked = [line for line in page.splitlines() if 'result="parked"' in line]
    assert parked, page
    assert float(parked[0].rsplit(" ", 1)[1]) >= 20


def test_the_receiver_down_for_10_s_loses_nothing(
    tracked: Tracked, worker_env: dict[str, str], tmp_path: Path
) -> None:
    # The finals are due 5 s after creation: well after the outcomes are in and the receiver
    # is stopped, even on a loaded machine (at 2 s they could all arrive before the stop).
    tracked.deliver(sentAfterMs=200, finalAfterMs=5000, retries=20, retryDelayMs=1000)
    tracked.e2e.producer.enqueue_many(sms_jobs(300, "down"))
    port = int(tracked.receiver.url.rsplit(":", 1)[1])
    tracked.worker(STATUS_POLL_AFTER_S="600")
    tracked.e2e.outcomes(300)
    os.kill(tracked.receiver.pid, 15)  # the receiver stops while the callbacks are due
    time.sleep(10)
    env = {**tracked.env}
    with receiver_process(env, port=port, log=tmp_path / "receiver-2.log"):
        sources = assert_one_final_each_as_the_sandbox_says(tracked, 300)
    assert set(sources.values()) == {"callback"}
    calls = tracked.e2e.sandbox.get("/_sandbox/callbacks").json()
    assert calls["postsFailed"] > 0, calls


def test_bad_credentials_are_refused_and_polling_completes(tracked: Tracked) -> None:
    tracked.deliver(retries=0)
    tracked.e2e.producer.enqueue_many(sms_jobs(50, "badauth"))
    tracked.worker(CALLBACK_URL=tracked.callback_url("wrong"))
    sources = assert_one_final_each_as_the_sandbox_says(tracked, 50)
    assert set(sources.values()) == {"poll"}
    page = httpx.get(f"{tracked.receiver.url}/metrics").text
    assert 'revicom_callback_requests_total{outcome="unauthorized"}' in page


def test_without_callback_url_polling_alone_gives_every_final(tracked: Tracked) -> None:
    tracked.deliver(delivered=0.5, undelivered=0.5)
    own_url = "https://app.example.com/dlr"
    tracked.e2e.producer.enqueue_many(
        sms_jobs(100, "poll") + sms_jobs(10, "own", callbackUrl=own_url)
    )
    tracked.e2e.start_worker(**TRACKING)
    sources = assert_one_final_each_as_the_sandbox_says(tracked, 110)
    assert set(sources.values()) == {"poll"}
    sent = {r["message"]["content"]: r["message"] for r in received(tracked.e2e.sandbox)}
    assert sent["own 3"]["callbackUrl"] == own_url
    assert "callbackEvents" not in sent["own 3"]
    assert "callbackUrl" not in sent["poll 3"]


def test_a_message_read_before_its_lookup_is_delivered(tracked: Tracked) -> None:
    """A lookup shows the status now: `read` for a read WHATSAPP message. Its one final
    status is `delivered`, then `read` follows."""
    tracked.deliver(readFraction=1.0, sentAfterMs=0, finalAfterMs=100)
    jobs = [{"jobId": f"wa-{i}", "message": variant("WHATSAPP")} for i in range(10)]
    tracked.e2e.producer.enqueue_many(jobs)
    tracked.e2e.start_worker(**TRACKING)
    assert set(assert_one_final_each_as_the_sandbox_says(tracked, 10).values()) == {"poll"}
    after = [e for _, e in iter_statuses(tracked.e2e.redis, tracked.e2e.keys) if not e.final]
    assert {e.status for e in after} == {"read"}


def test_with_callback_url_a_job_with_its_own_is_sent_untouched(tracked: Tracked) -> None:
    own_url = "https://app.example.com/dlr"
    tracked.deliver()
    tracked.e2e.producer.enqueue_many(
        sms_jobs(5, "ours") + sms_jobs(5, "theirs", callbackUrl=own_url)
    )
    tracked.worker()
    sources = assert_one_final_each_as_the_sandbox_says(tracked, 10)
    sent = {r["message"]["content"]: r["message"] for r in received(tracked.e2e.sandbox)}
    assert sent["theirs 1"]["callbackUrl"] == own_url
    assert sent["ours 1"]["callbackUrl"] == tracked.callback_url()
    assert sent["ours 1"]["callbackEvents"] == ["sent", "delivered"]
    assert {sources["theirs-1"], sources["ours-1"]} == {"poll", "callback"}


def test_redis_unreachable_for_a_while_loses_nothing(
    sandbox: httpx.Client, worker_env: dict[str, str], tmp_path: Path
) -> None:
    """The receiver answers 503 while Redis is down; the sandbox retries; nothing is lost."""
    with ExitStack() as stack:
        server = stack.enter_context(
            RedisServer({"appendonly": "yes", "appendfsync": "always"}, log=tmp_path / "redis.log")
        )
        client = server.client()
        keys = Keys("outage")
        env = {**worker_env, "REDIS_URL": server.url, "DISPATCH_KEY_PREFIX": keys.prefix}
        receiver_env = {**env, "CALLBACK_USERNAME": USER, "CALLBACK_PASSWORD": PASSWORD}
        receiver = stack.enter_context(
            receiver_process(receiver_env, log=tmp_path / "receiver.log")
        )
        host = receiver.url.removeprefix("http://")
        sandbox.put(
            "/_sandbox/delivery",
            json={"sentAfterMs": 500, "finalAfterMs": 3000, "retries": 20, "retryDelayMs": 1000},
        ).raise_for_status()
        worker = WorkerProcess(
            {**env, **FAST, "CALLBACK_URL": f"http://{USER}:{PASSWORD}@{host}/callbacks"},
            tmp_path / "worker.log",
            "w1",
        )
        stack.callback(worker.stop)
        Producer(client, keys, context=ContractContext()).enqueue_many(sms_jobs(200, "outage"))
        wait_until(lambda: client.xlen(keys.results) >= 200, 60, "200 outcomes")
        server.restart(down_s=4)  # callbacks meet 503s meanwhile
        client = server.client()
        wait_until(lambda: len(finals(client, keys)) >= 200, 60, "200 final statuses")
        found = finals(client, keys)
        assert {job: len(e) for job, e in found.items() if len(e) != 1} == {}
        calls = sandbox.get("/_sandbox/callbacks").json()
        assert calls["postsFailed"] > 0, calls
    assert SANDBOX_TOKEN not in (tmp_path / "receiver.log").read_text()
