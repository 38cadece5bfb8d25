"""The retry policy and the 422 splitting, against a scripted transport (no server needed)."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import orjson
import pytest
from prometheus_client import REGISTRY

from config import Settings
from worker.api_client import Answer, ApiClient, retry_after_seconds
from worker.delivery import Sending, deliver

TOKEN = "very-secret-token"


def client(handler: Callable[[httpx.Request], httpx.Response], max_attempts: int = 5) -> ApiClient:
    config = Settings.model_validate(
        {
            "revicom_api_token": TOKEN,
            "retry_backoff_ms": 1,
            "retry_backoff_max_ms": 5,
            "retry_max_attempts": max_attempts,
            "circuit_failures": min(max_attempts, 5),
        }
    )
    return ApiClient(config, transport=httpx.MockTransport(handler))


def test_retries_are_logged_without_the_token(caplog: pytest.LogCaptureFixture) -> None:
    answers = iter(
        [
            httpx.Response(503, json={"error": {"code": 5030, "msg": "x"}}),
            httpx.Response(200, json={"errors": False, "items": []}),
        ]
    )
    seen: list[tuple[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.headers["Authorization"], request.headers["Content-Type"]))
        return next(answers)

    with caplog.at_level(logging.WARNING):
        answer = client(handler).post("/api/v1/message", [{}], "SMS")
    assert (answer.status, answer.attempts) == (200, 2)
    assert seen == [(f"Basic {TOKEN}", "application/json")] * 2
    assert "retrying POST /api/v1/message (SMS, 1 items) after HTTP 503" in caplog.text
    assert TOKEN not in caplog.text


def test_network_errors_are_retried_then_reported() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    answer = client(handler, max_attempts=3).post("/api/v1/message", [{}], "SMS")
    assert (answer.status, answer.attempts) == (None, 3)
    assert answer.error == (None, "ConnectError: refused")


@pytest.mark.parametrize("status", [401, 403, 422, 404])
def test_other_answers_are_not_retried(status: int) -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(status, json={"error": {"code": status * 10, "msg": "no"}})

    answer = client(handler).post("/api/v1/message", [{}], "SMS")
    assert (answer.status, answer.attempts, len(calls)) == (status, 1, 1)


def test_retry_after_forms() -> None:
    assert retry_after_seconds("3") == 3.0
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 28 <= (retry_after_seconds(later) or 0) <= 30
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds(None) is None
    earlier = format_datetime(datetime.now(UTC) - timedelta(seconds=30), usegmt=True)
    assert retry_after_seconds(earlier) == 0.0  # a date gone by: retry at once


def split_server(
    bad: set[str],
) -> tuple[Callable[[httpx.Request], httpx.Response], list[set[str]]]:
    """Like the API: one bad destination makes the whole request a 422."""
    carried: list[set[str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        objects = orjson.loads(request.content)
        carried.append({o["destination"] for o in objects})
        if any(o["destination"] in bad for o in objects):
            return httpx.Response(422, json={"error": {"code": 4220, "msg": "Invalid msisdn"}})
        items = [{"messageUuid": f"u-{o['destination']}", "code": 201} for o in objects]
        return httpx.Response(200, json={"errors": False, "items": items})

    return handler, carried


@pytest.mark.parametrize("bad_count", [1, 2, 7])
def test_422_splitting_isolates_every_bad_item(bad_count: int) -> None:
    objects = [{"destination": str(i)} for i in range(1000)]
    bad = {str(i * 137 % 1000) for i in range(bad_count)}
    handler, carried = split_server(bad)
    how = Sending("/api/v1/message", "SMS", deadline=time.monotonic() + 60)
    results, stats = deliver(client(handler), how, objects)
    assert {str(i) for i, r in enumerate(results) if r.status == "rejected"} == bad
    assert all(r.status == "accepted" for i, r in enumerate(results) if str(i) not in bad)
    assert all(r.error == (4220, "Invalid msisdn") for r in results if r.status == "rejected")
    assert stats.requests == len(carried)
    if bad_count == 1:
        assert len(carried) <= 1 + 2 * math.ceil(math.log2(1000))
    for i, result in enumerate(results):
        assert result.attempts == sum(str(i) in request for request in carried)


def test_one_deadline_covers_every_422_half() -> None:
    """A batch's halves share its deadline: past it, no half is sent, each fails."""
    requests: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(len(orjson.loads(request.content)))
        time.sleep(0.3)
        return httpx.Response(422, json={"error": {"code": 4220, "msg": "Invalid msisdn"}})

    how = Sending("/api/v1/message", "SMS", deadline=time.monotonic() + 0.2)
    results, stats = deliver(client(handler), how, [{"destination": str(i)} for i in range(8)])
    assert requests == [8]  # the halves would have started after the deadline
    # failed, with the one response they had: the 422 (httpStatus is the last response's)
    assert {(r.status, r.attempts, r.http_status) for r in results} == {("failed", 1, 422)}
    assert all(
        r.error == (None, "the batch's deadline (RETRY_MAX_SECONDS) passed") for r in results
    )
    assert stats.splits == 1


def test_a_batch_that_may_have_lost_its_entries_sends_nothing() -> None:
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(200, json={"errors": False, "items": [{"code": 201}]})

    answer = client(handler).post("/api/v1/message", [{}], "SMS", still_held=lambda: False)
    assert answer == Answer(None, None, 0, "the batch's lease is in doubt", paused=True)
    assert calls == []


def api_seconds(status: str) -> tuple[float, float]:
    labels = {"endpoint": "GET /api/v1/message", "status": status}
    count = REGISTRY.get_sample_value("revicom_api_request_seconds_count", labels) or 0.0
    total = REGISTRY.get_sample_value("revicom_api_request_seconds_sum", labels) or 0.0
    return count, total


def test_a_lookup_asks_for_those_messages_once_with_its_timeout() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(429, headers={"Retry-After": "7"}, json=[{"messageUuid": "u-1"}])

    before = api_seconds("429")
    answer = client(handler).lookup(["u-1", "u-2"], 3.5)
    after = api_seconds("429")
    [request] = seen
    assert request.method == "GET"
    assert request.url.path == "/api/v1/message"
    assert request.url.params.get_list("message_uuid") == ["u-1", "u-2"]
    assert request.url.params["per_page"] == "2"
    assert request.extensions["timeout"]["read"] == 3.5
    assert request.headers["Authorization"] == f"Basic {TOKEN}"
    assert (answer.status, answer.attempts, answer.retry_after) == (429, 1, 7.0)
    assert answer.body == [{"messageUuid": "u-1"}]
    assert after[0] - before[0] == 1
    assert 0 <= after[1] - before[1] < 1  # seconds it took


def test_a_lookup_that_gets_no_answer_says_why() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    before = api_seconds("error")
    answer = client(handler).lookup(["u-1"], 1.0)
    assert (answer.status, answer.attempts, answer.retry_after) == (None, 1, None)
    assert answer.error == (None, "ReadTimeout: timed out")
    assert api_seconds("error")[0] - before[0] == 1
