"""Delivering a batch (worker/delivery.py over worker/api_client.py): what each answer of the
API means for every job, against the real sandbox over HTTP and a real Redis for the circuit.

A scripted httpx transport stands in only for answers the sandbox never gives (a 404 or 400,
a 200 without one item per message, odd items, a ReadTimeout raised by the transport).
"""

from __future__ import annotations

import logging
import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import redis
from prometheus_client import REGISTRY

from config import Settings
from tasks.keys import Keys, as_text
from tests.conftest import OTHER_TYPE_TOKEN, SANDBOX_TOKEN
from tests.contract_cases import BASE
from tests.sandbox_client import set_faults
from worker.api_client import Answer, ApiClient
from worker.circuit import Circuit
from worker.delivery import ItemResult, Sending, deliver

ENDPOINT = "/api/v1/message"


def settings(url: str, **overrides: Any) -> Settings:
    """Fast retries against `url` (the sandbox, or a loopback port nobody listens on)."""
    values: dict[str, Any] = {
        "revicom_api_url": url,
        "revicom_api_token": SANDBOX_TOKEN,
        "retry_backoff_ms": 1,
        "retry_backoff_max_ms": 5,
        "retry_max_attempts": 3,
        "circuit_failures": 3,
    }
    return Settings.model_validate(values | overrides)


def sms(destination: str) -> dict[str, Any]:
    return BASE["SMS"] | {"destination": destination}


def batch(count: int) -> list[dict[str, Any]]:
    return [sms(f"1408555{i:04d}") for i in range(count)]


def sending(
    seconds: float = 10.0,
    circuit: Circuit | None = None,
    probe: bool = False,
    still_held: Callable[[], bool] | None = None,
) -> Sending:
    return Sending(ENDPOINT, "SMS", time.monotonic() + seconds, circuit, probe, still_held)


def stats(sandbox: httpx.Client) -> dict[str, Any]:
    result: dict[str, Any] = sandbox.get("/_sandbox/stats").json()
    return result


def received(sandbox: httpx.Client) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = sandbox.get("/_sandbox/received").json()
    return result


@dataclass(frozen=True)
class Shared:
    """What the pods share in Redis: the circuit, under this test's key prefix."""

    redis: redis.Redis
    keys: Keys

    def circuit(self, config: Settings) -> Circuit:
        return Circuit(self.redis, self.keys, config)

    def state(self) -> dict[str, str]:
        raw = self.redis.hgetall(self.keys.circuit)
        return {as_text(k): as_text(v) for k, v in raw.items()}


@pytest.fixture
def shared(redis_client: redis.Redis, keys: Keys) -> Shared:
    return Shared(redis_client, keys)


def scripted(handler: Callable[[httpx.Request], httpx.Response], **overrides: Any) -> ApiClient:
    """A client whose transport answers with `handler` (nothing leaves the process)."""
    return ApiClient(settings("http://127.0.0.1:9", **overrides), httpx.MockTransport(handler))


def answering(status: int, body: Any) -> Callable[[httpx.Request], httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        if isinstance(body, str):
            return httpx.Response(status, text=body)
        return httpx.Response(status, json=body)

    return handler


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


# -- answers the sandbox gives ---------------------------------------------------------------


def test_accepted_items_carry_their_message_uuid(sandbox_url: str, sandbox: httpx.Client) -> None:
    objects = batch(3)
    results, delivery = deliver(ApiClient(settings(sandbox_url)), sending(), objects)
    created = {r["message"]["destination"]: r["messageUuid"] for r in received(sandbox)}
    assert results == [
        ItemResult("accepted", 1, 200, created[o["destination"]], 201) for o in objects
    ]
    assert (delivery.requests, delivery.splits) == (1, 0)


def test_item_codes_other_than_201_reject_only_their_item(
    sandbox_url: str, sandbox: httpx.Client
) -> None:
    set_faults(sandbox, itemCodes=[{"destination": "0001$", "code": 4041}])
    results, _ = deliver(ApiClient(settings(sandbox_url)), sending(), batch(3))
    assert results[1] == ItemResult(
        "rejected", 1, 200, None, 4041, (4041, "item refused with code 4041")
    )
    assert [r.status for r in results] == ["accepted", "rejected", "accepted"]
    assert len(received(sandbox)) == 2


def test_422_halves_count_requests_splits_and_attempts(
    sandbox_url: str, sandbox: httpx.Client
) -> None:
    """One bad number in 8, its first request answered 503 once: the halves isolate it, each
    item's attempts add up the requests that carried it, its http_status is the last one's."""
    set_faults(sandbox, rejectDestinations="0005$", status={"status": 503, "next": 1})
    results, delivery = deliver(ApiClient(settings(sandbox_url)), sending(), batch(8))
    # [0-7] 503 then 422; [0-3] 200; [4-7] 422; [4-5] 422; [4] 200; [5] 422; [6-7] 200.
    error = (4220, "Invalid msisdn")
    assert results[5] == ItemResult("rejected", 2 + 1 + 1 + 1, 422, None, 4220, error)
    assert [r.attempts for r in results] == [3, 3, 3, 3, 5, 5, 4, 4]
    assert [r.status for i, r in enumerate(results) if i != 5] == ["accepted"] * 7
    assert {r.http_status for i, r in enumerate(results) if i != 5} == {200}
    assert (delivery.requests, delivery.splits) == (stats(sandbox)["requests"], 3)
    assert len(received(sandbox)) == 7


def test_a_422_for_one_item_rejects_it_with_the_apis_code(
    sandbox_url: str, sandbox: httpx.Client
) -> None:
    set_faults(sandbox, rejectSenders="SENDER")
    results, delivery = deliver(ApiClient(settings(sandbox_url)), sending(), batch(1))
    error = (4220, "No active sender name: (SMS, SENDER)")
    assert results == [ItemResult("rejected", 1, 422, None, 4220, error)]
    assert (delivery.requests, delivery.splits) == (1, 0)


@pytest.mark.parametrize("status", [500, 502, 503, 504, 429])
def test_failures_are_retried_and_told_to_the_circuit(
    sandbox_url: str,
    sandbox: httpx.Client,
    shared: Shared,
    status: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = settings(sandbox_url, circuit_failures=3)
    circuit = shared.circuit(config)
    set_faults(sandbox, status={"status": status, "next": 2})
    retried = sample("revicom_api_retries_total", reason=str(status))
    with caplog.at_level(logging.WARNING, logger="worker.api_client"):
        results, delivery = deliver(ApiClient(config), sending(circuit=circuit), batch(2))
    assert [(r.status, r.attempts, r.http_status) for r in results] == [("accepted", 3, 200)] * 2
    assert delivery.requests == 3
    assert sample("revicom_api_retries_total", reason=str(status)) == retried + 2
    assert f"retrying POST {ENDPOINT} (SMS, 2 items) after HTTP {status}" in caplog.text
    assert SANDBOX_TOKEN not in caplog.text
    assert shared.state() == {}  # the success forgot the two failures


def test_failures_in_a_row_open_the_circuit_and_the_jobs_wait(
    sandbox_url: str, sandbox: httpx.Client, shared: Shared
) -> None:
    """The circuit opens on the third 503: the request stops retrying, the jobs are returned
    (no outcome, no dead letter), though two attempts were left."""
    config = settings(sandbox_url, circuit_failures=3, retry_max_attempts=5)
    circuit = shared.circuit(config)
    set_faults(sandbox, status={"status": 503, "next": 10})
    results, delivery = deliver(ApiClient(config), sending(circuit=circuit), batch(2))
    assert [(r.status, r.attempts, r.http_status) for r in results] == [("returned", 3, 503)] * 2
    assert delivery.requests == 3
    state = shared.state()
    assert (state.get("state"), state.get("failures")) == ("open", "3")
    assert state["reason"] == f"POST {ENDPOINT} answered 503"
    assert stats(sandbox)["requestsByStatus"] == {"503": 3}


def test_a_deadline_that_ends_the_retries_fails_the_jobs_with_the_last_error(
    sandbox_url: str, sandbox: httpx.Client
) -> None:
    """Retries run out with no circuit to pause them: failed, with the API's error."""
    set_faults(sandbox, status={"status": 503, "next": 10})
    results, delivery = deliver(ApiClient(settings(sandbox_url)), sending(), batch(2))
    error = (5030, "Url shortener is unavailable")
    assert results == [ItemResult("failed", 3, 503, None, 5030, error)] * 2
    assert delivery.requests == 3


def test_a_retry_after_beyond_the_deadline_ends_the_retries_at_once(
    sandbox_url: str, sandbox: httpx.Client
) -> None:
    """The server asks for 5 s, the batch has 1 s left: no sleep, no second attempt."""
    set_faults(sandbox, status={"status": 429, "next": 2, "retryAfter": 5})
    started = time.monotonic()
    results, _ = deliver(ApiClient(settings(sandbox_url)), sending(1.0), batch(1))
    assert [(r.status, r.attempts, r.http_status) for r in results] == [("failed", 1, 429)]
    assert time.monotonic() - started < 1.0
    assert stats(sandbox)["requests"] == 1


def test_retry_after_is_the_servers_delay_not_the_backoff(
    sandbox_url: str, sandbox: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    """Retry-After: 0 overrides a 5 s backoff, so both retries fit in a 1 s deadline."""
    config = settings(sandbox_url, retry_backoff_ms=5000, retry_backoff_max_ms=5000)
    set_faults(sandbox, status={"status": 503, "next": 2, "retryAfter": 0})
    with caplog.at_level(logging.WARNING, logger="worker.api_client"):
        results, _ = deliver(ApiClient(config), sending(1.0), batch(1))
    assert [(r.status, r.attempts) for r in results] == [("accepted", 3)]
    assert re.findall(r"next in ([\d.]+)s", caplog.text) == ["0.00", "0.00"]


def test_backoff_grows_exponentially_with_jitter_up_to_its_maximum(
    sandbox_url: str, sandbox: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    """Each planned sleep (as logged) is 20 ms * 2^n plus up to 20 ms of jitter, capped at
    50 ms: 20-40 ms, 40-50 ms, 50 ms."""
    config = settings(
        sandbox_url, retry_backoff_ms=20, retry_backoff_max_ms=50, retry_max_attempts=4
    )
    set_faults(sandbox, status={"status": 500, "next": 3})
    with caplog.at_level(logging.WARNING, logger="worker.api_client"):
        results, _ = deliver(ApiClient(config), sending(), batch(1))
    assert [(r.status, r.attempts) for r in results] == [("accepted", 4)]
    first, second, third = (float(s) for s in re.findall(r"next in ([\d.]+)s", caplog.text))
    assert 0.02 <= first <= 0.04
    assert 0.04 <= second <= 0.05
    assert third == 0.05


def test_a_latency_above_the_send_timeout_is_retried_then_failed(
    sandbox_url: str, sandbox: httpx.Client
) -> None:
    config = settings(sandbox_url, send_timeout_s=0.2, retry_max_attempts=2, circuit_failures=2)
    set_faults(sandbox, latencyMs=400)
    retried = sample("revicom_api_retries_total", reason="ReadTimeout")
    results, _ = deliver(ApiClient(config), sending(), batch(1))
    assert results == [ItemResult("failed", 2, None, None, None, (None, "ReadTimeout: timed out"))]
    assert sample("revicom_api_retries_total", reason="ReadTimeout") == retried + 1
    # The sandbox answers the abandoned requests late: wait for them, so they land here.
    deadline = time.monotonic() + 5
    while stats(sandbox)["requestsByStatus"].get("200", 0) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert stats(sandbox)["requestsByStatus"] == {"200": 2}


def test_a_dropped_connection_is_retried(sandbox_url: str, sandbox: httpx.Client) -> None:
    """And each attempt is timed, by its answer's status ("error": none)."""
    metric = "revicom_api_request_seconds"
    before = {s: sample(f"{metric}_count", endpoint=ENDPOINT, status=s) for s in ("error", "200")}
    seconds = sum(sample(f"{metric}_sum", endpoint=ENDPOINT, status=s) for s in before)
    set_faults(sandbox, dropNext=1)
    retried = sample("revicom_api_retries_total", reason="RemoteProtocolError")
    results, _ = deliver(ApiClient(settings(sandbox_url)), sending(), batch(2))
    assert [(r.status, r.attempts, r.http_status) for r in results] == [("accepted", 2, 200)] * 2
    assert stats(sandbox)["requestsByStatus"] == {"dropped": 1, "200": 1}
    assert sample("revicom_api_retries_total", reason="RemoteProtocolError") == retried + 1
    for status, count in before.items():
        assert sample(f"{metric}_count", endpoint=ENDPOINT, status=status) == count + 1
    spent = sum(sample(f"{metric}_sum", endpoint=ENDPOINT, status=s) for s in before) - seconds
    assert 0 < spent < 5


def test_dropped_connections_until_the_attempts_run_out_fail_with_the_last_error(
    sandbox_url: str, sandbox: httpx.Client
) -> None:
    set_faults(sandbox, dropNext=3)
    results, _ = deliver(ApiClient(settings(sandbox_url)), sending(), batch(1))
    [result] = results
    assert (result.status, result.attempts, result.http_status) == ("failed", 3, None)
    assert result.error is not None
    assert (result.error[0], result.error[1].split(":")[0]) == (None, "RemoteProtocolError")
    assert received(sandbox) == []


def test_connect_errors_are_told_to_the_circuit(shared: Shared) -> None:
    """Nobody listens on the port: each ConnectError counts, the third opens the circuit."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = settings(f"http://127.0.0.1:{port}", retry_max_attempts=5)
    circuit = shared.circuit(config)
    results, _ = deliver(ApiClient(config), sending(circuit=circuit), batch(1))
    assert [(r.status, r.attempts) for r in results] == [("returned", 3)]
    state = shared.state()
    assert (state.get("state"), state.get("reason")) == ("open", f"ConnectError on POST {ENDPOINT}")


@pytest.mark.parametrize(
    ("token", "refusal"),
    [(OTHER_TYPE_TOKEN, "403 4030 Access Denied"), ("wrong", "401 4012 Bad credentials")],
)
def test_a_refused_key_returns_the_jobs_and_opens_the_circuit_at_once(
    sandbox_url: str,
    sandbox: httpx.Client,
    shared: Shared,
    token: str,
    refusal: str,
) -> None:
    """401/403 say nothing about the jobs: not failed, not retried; they wait unsent."""
    config = settings(sandbox_url, revicom_api_token=token, circuit_failures=3)
    circuit = shared.circuit(config)
    results, delivery = deliver(ApiClient(config), sending(circuit=circuit), batch(2))
    status = int(refusal[:3])
    assert [(r.status, r.attempts, r.http_status, r.error) for r in results] == [
        ("returned", 1, status, None)
    ] * 2
    assert delivery.requests == 1
    state = shared.state()
    assert (state.get("state"), state.get("failures")) == ("open", "1")
    assert state["reason"] == f"POST {ENDPOINT} answered {refusal}"
    assert received(sandbox) == []


def test_an_open_circuit_sends_nothing(
    sandbox_url: str, sandbox: httpx.Client, shared: Shared
) -> None:
    config = settings(sandbox_url)
    circuit = shared.circuit(config)
    circuit.failure("down", at_once=True)
    results, delivery = deliver(ApiClient(config), sending(circuit=circuit), batch(2))
    assert results == [ItemResult("returned")] * 2
    assert delivery.requests == 0
    assert stats(sandbox)["requests"] == 0


def test_an_open_circuit_pauses_a_request_that_is_no_probe(
    sandbox_url: str, sandbox: httpx.Client, shared: Shared
) -> None:
    config = settings(sandbox_url)
    circuit = shared.circuit(config)
    circuit.failure("down", at_once=True)
    answer = ApiClient(config).post(ENDPOINT, batch(1), "SMS", circuit=circuit)
    assert answer == Answer(None, None, 0, "the circuit is open", paused=True)
    assert stats(sandbox)["requests"] == 0


def test_a_refusal_is_told_to_the_circuit_cut_to_300_characters(shared: Shared) -> None:
    """The API may echo anything in its msg: the circuit's reason stays short."""
    body = {"error": {"code": 4012, "msg": "Bad credentials " + "x" * 400}}
    client = scripted(answering(401, body))
    circuit = shared.circuit(settings("http://127.0.0.1:9"))
    client.post(ENDPOINT, batch(1), "SMS", circuit=circuit)
    reason = shared.state()["reason"]
    assert reason.startswith(f"POST {ENDPOINT} answered 401 4012 Bad credentials xxx")
    assert len(reason) == 300


def test_a_refusal_without_an_api_error_is_told_by_its_status(shared: Shared) -> None:
    client = scripted(answering(403, "Forbidden"))
    client.post(ENDPOINT, batch(1), "SMS", circuit=shared.circuit(settings("http://127.0.0.1:9")))
    assert shared.state()["reason"] == f"POST {ENDPOINT} answered 403 None HTTP 403: Forbidden"


def test_a_probe_sends_one_request_and_its_halves_follow_the_circuit(
    sandbox_url: str, sandbox: httpx.Client, shared: Shared
) -> None:
    """The probe goes although the circuit is open; its 422 closes it, but another pod opens
    it again before the halves go: they are not probes, so they wait."""
    config = settings(sandbox_url)
    circuit, other_pod = shared.circuit(config), shared.circuit(config)
    circuit.failure("down", at_once=True)
    set_faults(sandbox, rejectDestinations="0001$")
    asked = 0

    def still_held() -> bool:
        nonlocal asked
        asked += 1
        if asked == 2:  # the first half is about to go
            other_pod.failure("down again", at_once=True)
        return True

    how = sending(circuit=circuit, probe=True, still_held=still_held)
    results, delivery = deliver(ApiClient(config), how, batch(4))
    # Nothing more was sent: the last response any of them had is the probe's 422.
    assert [(r.status, r.attempts, r.http_status) for r in results] == [("returned", 1, 422)] * 4
    assert (delivery.requests, delivery.splits) == (1, 1)
    assert stats(sandbox)["requestsByStatus"] == {"422": 1}


def test_a_probe_that_fails_is_not_retried(
    sandbox_url: str, sandbox: httpx.Client, shared: Shared
) -> None:
    config = settings(sandbox_url)
    circuit = shared.circuit(config)
    circuit.failure("down", at_once=True)
    set_faults(sandbox, status={"status": 503, "next": 5})
    results, _ = deliver(ApiClient(config), sending(circuit=circuit, probe=True), batch(1))
    assert [(r.status, r.attempts) for r in results] == [("returned", 1)]
    assert stats(sandbox)["requests"] == 1


def test_a_batch_no_longer_held_stops_sending(sandbox_url: str, sandbox: httpx.Client) -> None:
    """Its lease is in doubt once its first request went: the halves are returned, unsent."""
    set_faults(sandbox, rejectDestinations="0001$")
    how = sending(still_held=lambda: stats(sandbox)["requests"] == 0)
    results, delivery = deliver(ApiClient(settings(sandbox_url)), how, batch(4))
    assert [(r.status, r.attempts, r.http_status) for r in results] == [("returned", 1, 422)] * 4
    assert (delivery.requests, delivery.splits) == (1, 1)
    assert stats(sandbox)["requests"] == 1


def test_a_past_deadline_sends_nothing(sandbox_url: str, sandbox: httpx.Client) -> None:
    results, delivery = deliver(ApiClient(settings(sandbox_url)), sending(-1.0), batch(2))
    error = (None, "the batch's deadline (RETRY_MAX_SECONDS) passed")
    assert results == [ItemResult("failed", 0, None, None, None, error)] * 2
    assert delivery.requests == 0
    assert stats(sandbox)["requests"] == 0


# -- answers only a scripted transport gives -------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (404, {"error": {"code": 4040, "msg": "Not found"}}, (4040, "Not found")),
        (400, "Bad Request", (None, "HTTP 400: Bad Request")),
        (409, {"error": "x"}, (None, "HTTP 409: {'error': 'x'}")),
    ],
)
def test_an_unlisted_error_answer_fails_the_jobs(
    status: int, body: Any, error: tuple[int | None, str]
) -> None:
    results, delivery = deliver(scripted(answering(status, body)), sending(), batch(2))
    assert results == [ItemResult("failed", 1, status, None, error[0], error)] * 2
    assert delivery.requests == 1


@pytest.mark.parametrize(
    "body",
    [
        {"errors": False, "items": [{"messageUuid": "u", "code": 201}]},
        {"errors": False, "items": [{"messageUuid": "u", "code": 201}] * 3},
        {"errors": False},
        [{"messageUuid": "u", "code": 201}] * 2,
        "OK",
    ],
)
def test_a_200_without_one_item_per_message_fails_the_jobs(body: Any) -> None:
    results, _ = deliver(scripted(answering(200, body)), sending(), batch(2))
    error = (None, f"a 200 answer without one item per message: {str(body)[:200]}")
    assert results == [ItemResult("failed", 1, 200, None, None, error)] * 2


def test_a_200_body_is_quoted_in_the_error_cut_to_200_characters() -> None:
    body = {"items": ["x" * 500]}
    results, _ = deliver(scripted(answering(200, body)), sending(), batch(2))
    assert results[0].error == (
        None,
        f"a 200 answer without one item per message: {str(body)[:200]}",
    )


@pytest.mark.parametrize(
    ("item", "error"),
    [
        ("created", "unreadable item 'created'"),
        ({"messageUuid": "u"}, "unreadable item {'messageUuid': 'u'}"),
        (
            {"messageUuid": "u", "code": "201"},
            "unreadable item {'messageUuid': 'u', 'code': '201'}",
        ),
        ({"code": 201}, "a 201 item without messageUuid: {'code': 201}"),
        (
            {"messageUuid": 7, "code": 201},
            "a 201 item without messageUuid: {'messageUuid': 7, 'code': 201}",
        ),
    ],
)
def test_an_item_the_docs_do_not_list_fails_only_its_job(item: Any, error: str) -> None:
    body = {"errors": True, "items": [{"messageUuid": "u-0", "code": 201}, item]}
    results, _ = deliver(scripted(answering(200, body)), sending(), batch(2))
    assert results == [
        ItemResult("accepted", 1, 200, "u-0", 201),
        ItemResult("failed", 1, 200, None, None, (None, error)),
    ]


@pytest.mark.parametrize(
    ("item", "error"),
    [
        ("x" * 500, "unreadable item "),
        ({"code": 201, "note": "x" * 500}, "a 201 item without messageUuid: "),
    ],
)
def test_an_odd_item_is_quoted_cut_to_200_characters(item: Any, error: str) -> None:
    body = {"errors": True, "items": [item]}
    results, _ = deliver(scripted(answering(200, body)), sending(), batch(1))
    assert results[0].error == (None, error + repr(item)[:200])


def test_a_read_timeout_is_retried_then_failed(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[dict[str, float]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.extensions["timeout"])
        raise httpx.ReadTimeout("timed out", request=request)

    client = scripted(handler, send_timeout_s=2.5, connect_timeout_s=0.5)
    with caplog.at_level(logging.WARNING, logger="worker.api_client"):
        results, _ = deliver(client, sending(), batch(1))
    assert "(SMS, 1 items) after ReadTimeout: timed out: attempt 2 failed" in caplog.text
    assert results == [ItemResult("failed", 3, None, None, None, (None, "ReadTimeout: timed out"))]
    # SEND_TIMEOUT_S bounds reading the answer (and writing, and the pool), connecting its own.
    assert calls == [{"connect": 0.5, "read": 2.5, "write": 2.5, "pool": 2.5}] * 3
