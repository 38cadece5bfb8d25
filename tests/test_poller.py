"""The status poller against the sandbox over real HTTP and a real Redis: one poller at a time,
lookups of due messages, backoff on errors, give-up, parked callbacks swept."""

from __future__ import annotations

import os
import time
import types
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis
from prometheus_client import REGISTRY
from pydantic import SecretStr

from config import Settings
from tasks.keys import Keys
from tasks.statuses import iter_statuses
from tasks.tracking.store import StatusStore
from tests.conftest import SANDBOX_TOKEN
from tests.contract_cases import variant
from tests.sandbox_client import wait_until
from tests.test_status_model import accept
from worker.api_client import Answer, listed_messages
from worker.ledger import Ledger
from worker.ownership import LeaseTimes, Ownership
from worker.poller import IDLE_S, LOOKUP_TIMEOUT_S, Poller, PollerStep, _shape

CHANNEL = "SMS"


@pytest.fixture
def settings(redis_url: str, keys: Keys, sandbox_url: str) -> Settings:
    return Settings(
        redis_url=redis_url,
        dispatch_key_prefix=keys.prefix,
        revicom_api_url=sandbox_url,
        revicom_api_token=SecretStr(SANDBOX_TOKEN),
        status_poll_after_s=0.1,
        status_poll_max_interval_s=0.4,
        status_poll_rps=100,
        callback_park_s=1,
    )


@pytest.fixture
def pollers(settings: Settings) -> Iterator[list[Poller]]:
    made = [Poller(settings, "node-a"), Poller(settings, "node-b")]
    yield made
    for poller in made:
        poller.stop()


@pytest.fixture
def ledger(redis_client: redis.Redis, keys: Keys) -> Ledger:
    return Ledger(redis_client, keys, ttl_s=3600, leases=LeaseTimes(5000, 5000), first_lookup_ms=0)


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def finals(status: str) -> float:
    """Final statuses the poller counted (the `poll` source) for SMS."""
    return sample("revicom_final_statuses_total", channel="SMS", status=status, source="poll")


def sent_to_sandbox(sandbox: httpx.Client, count: int) -> list[str]:
    """Messages created at the sandbox (their messageUuids)."""
    body = [variant("SMS", content=f"poll {i}") for i in range(count)]
    answer = sandbox.post(
        "/api/v1/message", json=body, headers={"Authorization": f"Basic {SANDBOX_TOKEN}"}
    )
    return [item["messageUuid"] for item in answer.json()["items"]]


def entries(client: redis.Redis, keys: Keys) -> list[dict[str, Any]]:
    return [e.model_dump() for _, e in iter_statuses(client, keys)]


def test_one_poller_looks_up_due_messages_and_publishes_their_statuses(
    *,
    sandbox: httpx.Client,
    redis_client: redis.Redis,
    keys: Keys,
    own: Ownership,
    ledger: Ledger,
    pollers: list[Poller],
) -> None:
    sandbox.put("/_sandbox/delivery", json={"sentAfterMs": 0, "finalAfterMs": 0}).raise_for_status()
    uuids = sent_to_sandbox(sandbox, 3)
    for i, message in enumerate(uuids):
        accept(redis_client, keys, own, ledger, f"j{i}", uuid=message)
    time.sleep(0.3)
    first, second = pollers
    before = sample("revicom_status_lookups_total", result="ok"), finals("delivered")
    assert first.tick() == 1 / 100  # it holds the lease and looked up: STATUS_POLL_RPS
    assert second.tick() == IDLE_S  # the other waits
    after = sample("revicom_status_lookups_total", result="ok"), finals("delivered")
    assert (after[0] - before[0], after[1] - before[1]) == (1, 3)
    found = entries(redis_client, keys)
    assert sorted((e["jobId"], e["status"], e["final"], e["source"]) for e in found) == [
        ("j0", "delivered", True, "poll"),
        ("j1", "delivered", True, "poll"),
        ("j2", "delivered", True, "poll"),
    ]
    assert redis_client.zcard(keys.tracking) == 0
    assert first.tick() == IDLE_S  # nothing left to look up
    assert len(entries(redis_client, keys)) == 3


def test_a_message_still_open_is_asked_again_later(
    *,
    sandbox: httpx.Client,
    redis_client: redis.Redis,
    keys: Keys,
    own: Ownership,
    ledger: Ledger,
    pollers: list[Poller],
) -> None:
    sandbox.put(
        "/_sandbox/delivery", json={"sentAfterMs": 0, "finalAfterMs": 60_000}
    ).raise_for_status()
    [message] = sent_to_sandbox(sandbox, 1)
    accept(redis_client, keys, own, ledger, "j-open", uuid=message)
    time.sleep(0.2)
    pollers[0].tick()
    assert [(e["status"], e["final"]) for e in entries(redis_client, keys)] == [("sent", False)]
    assert redis_client.zscore(keys.tracking, message) is not None  # asked again later
    time.sleep(0.5)
    pollers[0].tick()
    assert len(entries(redis_client, keys)) == 1  # unchanged: no new entry
    assert redis_client.hget(keys.message(message), "polls") == b"2"


def test_an_api_error_or_an_unknown_message_costs_nothing(
    *,
    sandbox: httpx.Client,
    redis_client: redis.Redis,
    keys: Keys,
    own: Ownership,
    ledger: Ledger,
    pollers: list[Poller],
) -> None:
    accept(redis_client, keys, own, ledger, "j-unknown", uuid="not-at-the-api")
    sandbox.put("/_sandbox/faults", json={"status": {"status": 500, "next": 1}})
    time.sleep(0.1)
    poller = pollers[0]
    poller.tick()  # a 500: lookups pause a second
    assert poller._resume_at > time.monotonic()
    assert redis_client.hget(keys.message("not-at-the-api"), "polls") == b"1"
    time.sleep(1.1)
    poller.tick()  # answered, without this message
    assert redis_client.hget(keys.message("not-at-the-api"), "polls") == b"2"
    assert poller._failures == 0
    assert entries(redis_client, keys) == []
    assert redis_client.zscore(keys.tracking, "not-at-the-api") is not None


def test_a_message_past_the_give_up_time_ends_unknown(
    *,
    redis_client: redis.Redis,
    keys: Keys,
    own: Ownership,
    ledger: Ledger,
    pollers: list[Poller],
) -> None:
    accept(redis_client, keys, own, ledger, "j-old", uuid="u-old")
    accept(redis_client, keys, own, ledger, "j-gone", uuid="u-gone")
    redis_client.hset(keys.message("u-old"), "accepted", 0)
    redis_client.delete(keys.message("u-gone"))  # expired, or lost by Redis
    before = finals("unknown"), sample("revicom_status_forgotten_total")
    assert pollers[0].tick() == 0.0  # it gave up: look again at once
    assert (
        finals("unknown") - before[0],
        sample("revicom_status_forgotten_total") - before[1],
    ) == (
        1,
        1,
    )
    assert pollers[0].tick() == IDLE_S  # nothing due
    [entry] = entries(redis_client, keys)
    assert (entry["status"], entry["final"], entry["event"]) == ("unknown", True, "give_up")


def test_parked_callbacks_past_their_wait_are_swept(
    redis_client: redis.Redis, keys: Keys, settings: Settings, pollers: list[Poller]
) -> None:
    row = ["u-stray", "delivered", "delivered", "2026-11-24T10:00:00Z", "", "", "SMS", "", ""]
    StatusStore(redis_client, keys, settings).record([row])
    pollers[0].tick()
    assert redis_client.exists(keys.parked("u-stray"))
    redis_client.zadd(keys.parked_index, {"u-stray": 0})
    pollers[0]._next_sweep = 0  # due now: the sweep runs every 10 s
    pollers[0].tick()
    assert not redis_client.exists(keys.parked("u-stray"))


def test_no_lookups_while_the_circuit_is_open(
    *,
    sandbox: httpx.Client,
    redis_client: redis.Redis,
    keys: Keys,
    own: Ownership,
    ledger: Ledger,
    pollers: list[Poller],
) -> None:
    accept(redis_client, keys, own, ledger, "j-wait", uuid="u-wait")
    redis_client.hset(keys.circuit, mapping={"state": "open", "reason": "test", "opened": 1})
    sandbox.delete("/_sandbox/stats")
    assert pollers[0].tick() == IDLE_S
    assert sandbox.get("/_sandbox/stats").json()["requests"] == 0


def test_failed_lookups_pause_them_all_and_log_no_body(
    *,
    sandbox: httpx.Client,
    redis_client: redis.Redis,
    keys: Keys,
    own: Ownership,
    ledger: Ledger,
    pollers: list[Poller],
    caplog: pytest.LogCaptureFixture,
) -> None:
    accept(redis_client, keys, own, ledger, "j-1", uuid="u-1")
    sandbox.put("/_sandbox/faults", json={"status": {"status": 429, "next": 100, "retryAfter": 3}})
    time.sleep(0.1)
    poller = pollers[0]
    poller.tick()
    requests = sandbox.get("/_sandbox/stats").json()["requests"]
    assert requests == 0  # lookups are not counted as API sends...
    assert poller._resume_at - time.monotonic() > 2  # but Retry-After holds them all
    time.sleep(0.5)
    redis_client.zadd(keys.tracking, {"u-1": 0})
    poller.tick()
    assert redis_client.hget(keys.message("u-1"), "polls") == b"1"  # not looked up again yet
    assert "lookup of 1 message(s) failed (429, a str)" in caplog.text
    assert sample("revicom_status_lookups_total", result="error") >= 1


class StubApi:
    """An API whose lookups answer what the test says (the sandbox never answers messages
    not asked for, or unusable ones)."""

    def __init__(self, *answers: Answer) -> None:
        self.answers = list(answers)
        self.asked: list[tuple[list[str], float]] = []

    def lookup(self, uuids: list[str], timeout_s: float) -> Answer:
        self.asked.append((uuids, timeout_s))
        return self.answers.pop(0)

    def close(self) -> None:
        pass


def test_failed_lookups_pause_longer_each_time_and_an_answer_ends_it(
    *,
    redis_client: redis.Redis,
    keys: Keys,
    own: Ownership,
    ledger: Ledger,
    pollers: list[Poller],
) -> None:
    accept(redis_client, keys, own, ledger, "j-1", uuid="u-1")
    accept(redis_client, keys, own, ledger, "j-2", uuid="u-2")
    delivered = {"status": "delivered", "statusTime": "2026-11-24T10:00:00Z"}
    stub = StubApi(
        Answer(500, [{"messageUuid": "u-1", **delivered}], 1),  # an error, whatever its body
        Answer(None, None, 1, "ConnectError: refused"),
        Answer(
            200,
            [{"messageUuid": "u-other", **delivered}, "junk", {"messageUuid": "u-2", **delivered}],
            1,
        ),
    )
    poller = pollers[0]
    poller._api = stub  # type: ignore[assignment]
    pauses = []
    for _ in range(3):
        redis_client.zadd(keys.tracking, {"u-1": 0, "u-2": 0})
        poller._resume_at = 0.0
        poller.tick()
        pauses.append(poller._resume_at - time.monotonic())
    assert 0.8 < pauses[0] <= 1.0  # IDLE_S
    assert 1.8 < pauses[1] <= 2.0  # doubled
    assert pauses[2] < 0  # an answer: no pause, and the count starts again
    assert poller._failures == 0
    assert [timeout for _, timeout in stub.asked] == [LOOKUP_TIMEOUT_S] * 3
    assert [e["jobId"] for e in entries(redis_client, keys)] == ["j-2"]  # u-other not asked


def test_parked_callbacks_are_swept_every_ten_seconds_not_every_round(
    redis_client: redis.Redis, keys: Keys, settings: Settings, pollers: list[Poller]
) -> None:
    store = StatusStore(redis_client, keys, settings)
    row = ["u-stray", "delivered", "delivered", "2026-11-24T10:00:00Z", "", "", "SMS", "", ""]
    poller = pollers[0]
    poller.tick()  # swept now: the next sweep is in SWEEP_EVERY_S
    store.record([row])
    redis_client.zadd(keys.parked_index, {"u-stray": 0})
    poller.tick()
    assert redis_client.exists(keys.parked("u-stray"))
    assert poller._thread.name == "status-poller"
    assert poller._thread.daemon


def test_an_answer_of_another_shape_is_logged_by_its_shape_only() -> None:
    body = {"data": [{"content": "Your code is 4711", "callbackUrl": "https://cb:S3cret@x/"}]}
    assert _shape(Answer(200, body, 1)) == "an object with data"
    assert _shape(Answer(200, {"meta": 1, **body}, 1)) == "an object with data, meta"
    eleven = {f"k{i:02d}": i for i in range(11)}
    assert _shape(Answer(200, eleven, 1)) == "an object with " + ", ".join(sorted(eleven)[:10])
    assert _shape(Answer(200, "<html>", 1)) == "a str"
    assert listed_messages(body) is None
    assert listed_messages({"items": []}) == []
    assert listed_messages([{"messageUuid": "u"}]) == [{"messageUuid": "u"}]
    assert _shape(Answer(None, None, 1, "ReadTimeout: timed out: 5 s")) == "ReadTimeout"


def test_the_poller_thread_looks_up_by_itself_and_stops(
    *,
    sandbox: httpx.Client,
    redis_client: redis.Redis,
    keys: Keys,
    own: Ownership,
    ledger: Ledger,
    settings: Settings,
) -> None:
    sandbox.put("/_sandbox/delivery", json={"sentAfterMs": 0, "finalAfterMs": 0}).raise_for_status()
    [message] = sent_to_sandbox(sandbox, 1)
    accept(redis_client, keys, own, ledger, "j-thread", uuid=message)
    poller = Poller(settings, "node-c")
    real_tick, calls = poller.tick, []

    def failing_first(self: Poller) -> float:
        """Redis down, then a bug of ours: the thread goes on after either."""
        calls.append(1)
        if len(calls) == 1:
            raise redis.ConnectionError("Redis is restarting")
        if len(calls) == 2:
            raise RuntimeError("a bug")
        return real_tick()

    poller.tick = types.MethodType(failing_first, poller)  # type: ignore[method-assign]
    poller.start()
    try:
        deadline = time.monotonic() + 15
        while not entries(redis_client, keys) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        poller.stop()
    assert [(e["jobId"], e["final"]) for e in entries(redis_client, keys)] == [("j-thread", True)]
    assert len(calls) >= 3
    assert redis_client.get(keys.lease("poller")) == b"node-c-" + str(os.getpid()).encode()


def test_the_bootstep_runs_one_poller_per_node_and_stops_it(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("worker.poller.get_settings", lambda: settings)
    node = types.SimpleNamespace(hostname="sms@pod-1")
    step = PollerStep(node)
    step.stop(node)  # before a start: nothing to stop
    assert step.poller is None
    step.start(node)
    poller = step.poller
    assert isinstance(poller, Poller)
    assert poller.name == f"sms@pod-1-{os.getpid()}"
    assert poller._settings is settings
    wait_until(poller._thread.is_alive)
    step.stop(node)
    assert step.poller is None
    assert not poller._thread.is_alive()
