"""POST to the Revicom API with retries: 5xx, 429 and network errors are retried, with
exponential backoff and jitter (or the server's Retry-After), bounded by attempts and time;
401, 403, 422 and other answers are returned as they are.

With a rate limiter (worker/rate_limits/) every attempt first waits for its budget, and a 429
pauses the endpoint for every pod instead of only this request's retries.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import orjson
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    retry_if_result,
    stop_after_attempt,
    wait_exponential_jitter,
)
from tenacity.stop import stop_base

from config import Settings
from tasks.balance_state import BALANCE_ENDPOINT
from tasks.channels import MESSAGE_ENDPOINT, STOP_ENDPOINT
from tasks.untrusted import quote
from worker import metrics
from worker.circuit import Circuit
from worker.rate_limits.limiter import RateLimiter

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Answer:
    """The last thing an API request produced: a response, or the network error instead."""

    status: int | None  # None: no HTTP response (connect error, timeout, dropped connection)
    body: Any  # parsed JSON, or the text when the body is not JSON
    attempts: int
    transport_error: str | None = None
    paused: bool = False  # the circuit is open: the items wait to be sent later, no outcome
    retry_after: float | None = None  # the server's Retry-After (s), on a lookup
    waited_s: float = 0.0  # waited for rate budget (or out a 429's pause): not retry time

    @property
    def error(self) -> tuple[int | None, str]:
        """The API's `error` {code, msg}, or the best description of what went wrong."""
        if self.transport_error is not None:
            return None, self.transport_error
        if isinstance(self.body, dict) and isinstance(self.body.get("error"), dict):
            error = self.body["error"]
            code = error.get("code")
            msg = quote(str(error.get("msg", "")), MAX_ERROR_CHARS)  # it may echo a 10 MB tag
            return code if isinstance(code, int) else None, msg
        return None, f"HTTP {self.status}: {str(self.body)[:200]}"


#: Longest API error message kept in an outcome.
MAX_ERROR_CHARS = 300


def retryable(response: httpx.Response) -> bool:
    return retryable_status(response.status_code)


class ApiClient:
    """One per process: a keep-alive httpx client and the retry policy."""

    def __init__(
        self,
        settings: Settings,
        transport: httpx.BaseTransport | None = None,
        limiter: RateLimiter | None = None,
    ) -> None:
        token = settings.revicom_api_token
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Basic {token.get_secret_value()}"
        self._http = httpx.Client(
            base_url=settings.revicom_api_url,
            headers=headers,
            timeout=httpx.Timeout(settings.send_timeout_s, connect=settings.connect_timeout_s),
            # One client per process; the OTP node's threads share it, one request each.
            limits=httpx.Limits(
                max_connections=max(8, settings.otp_concurrency),
                max_keepalive_connections=max(8, settings.otp_concurrency),
            ),
            transport=transport,
        )
        self._settings = settings
        self._limiter = limiter

    def close(self) -> None:
        self._http.close()

    def post(
        self,
        endpoint: str,
        objects: list[dict[str, Any]],
        label: str,
        *,
        deadline: float | None = None,
        circuit: Circuit | None = None,
        probe: bool = False,
        still_held: Callable[[], bool] | None = None,
    ) -> Answer:
        """POST `objects` (a JSON array) to `endpoint`; `label` names the batch in logs and
        is its channel, whose rate budget each attempt waits for.

        No attempt starts after `deadline` (time.monotonic(); one batch shares it across all
        its requests), else after RETRY_MAX_SECONDS; time waited for budget moves it later.
        Each answer is told to the `circuit`; while it is open no attempt starts (but the
        first of a `probe`), and the answer says `paused`, as it does when `still_held` says
        the batch may have lost its entries, and when the API still answers 429 after the
        last attempt (the account is throttled, the messages are not at fault).
        """
        body = orjson.dumps(objects)
        attempts = 0
        waited = 0.0
        limiter = self._limiter
        units = limiter.units(label, objects) if limiter is not None else 0

        def once() -> httpx.Response:
            nonlocal attempts, waited
            if limiter is not None:
                waited_now = limiter.wait(label, endpoint, units)
                waited += waited_now
                if waited_now and lost():
                    raise _NotSentError("the batch's lease is in doubt")
                if waited_now and not (probe and attempts == 0) and circuit_open():
                    raise _NotSentError("the circuit is open")
            attempts += 1
            try:
                response = self._timed("POST", endpoint, content=body)
            except httpx.TransportError as error:
                if circuit is not None:
                    circuit.failure(f"{type(error).__name__} on POST {endpoint}")
                raise
            if response.status_code == THROTTLED:
                metrics.THROTTLED.labels(endpoint).inc()
                if limiter is not None:
                    retry_after = retry_after_seconds(response.headers.get("Retry-After"))
                    limiter.throttled(label, endpoint, retry_after)
            elif response.status_code == 200 and limiter is not None:
                limiter.accepted(label, units)
            if circuit is not None and not (limiter and response.status_code == THROTTLED):
                _tell(circuit, endpoint, response)
            return response

        def lost() -> bool:
            return still_held is not None and not still_held()

        def circuit_open() -> bool:
            return circuit is not None and circuit.state().open

        def paused() -> bool:
            return lost() or circuit_open()

        if lost():
            return Answer(None, None, 0, "the batch's lease is in doubt", paused=True)
        if not probe and paused():
            return Answer(None, None, 0, "the circuit is open", paused=True)
        s = self._settings
        if deadline is None:
            deadline = time.monotonic() + s.retry_max_seconds
        elif time.monotonic() >= deadline:
            return Answer(None, None, 0, "the batch's deadline (RETRY_MAX_SECONDS) passed")
        until = deadline
        stop = stop_after_attempt(s.retry_max_attempts) | _StopBefore(lambda: until + waited)
        retrying = Retrying(
            retry=retry_if_exception_type(httpx.TransportError) | retry_if_result(retryable),
            stop=stop | _StopIf(paused),
            wait=_RetryAfterOr(
                s.retry_backoff_ms / 1000,
                s.retry_backoff_max_ms / 1000,
                # The shared pause makes the next attempt wait, outside the deadline.
                throttled_wait=0.0 if limiter is not None else None,
            ),
            before_sleep=lambda state: _log_retry(state, endpoint, label, len(objects)),
            retry_error_callback=_last_outcome,
        )
        try:
            answer = _answer(retrying(once), attempts)
        except _NotSentError as reason:
            return Answer(None, None, attempts, str(reason), paused=True, waited_s=waited)
        answer = dataclasses.replace(answer, waited_s=waited)
        failed = answer.status is None or retryable_status(answer.status)
        throttled = answer.status == THROTTLED and limiter is not None
        if answer.status in AUTH_REFUSED or (failed and paused()) or throttled:
            # Not the messages' fault: they wait for the API (or the key, or the account's
            # rate) to be fixed.
            return dataclasses.replace(answer, paused=True)
        return answer

    def lookup(self, message_uuids: list[str], timeout_s: float) -> Answer:
        """GET /api/v1/message for these messages (at most 100: one page), once: the poller's
        schedule is its retry (a message not answered now is asked again later)."""
        return self.messages(
            {"message_uuid": message_uuids, "per_page": max(1, len(message_uuids))}, timeout_s
        )

    def messages(self, query: Mapping[str, str | int | list[str]], timeout_s: float) -> Answer:
        """One page of GET /api/v1/message (filters as notes.md lists them), asked once; read
        its messages with `listed_messages`."""
        try:
            response = self._timed(
                "GET", MESSAGE_ENDPOINT, params=httpx.QueryParams(query), timeout=timeout_s
            )
        except httpx.TransportError as error:
            return _answer(error, 1)
        retry_after = retry_after_seconds(response.headers.get("Retry-After"))
        return dataclasses.replace(_answer(response, 1), retry_after=retry_after)

    def balance(self, timeout_s: float) -> Answer:
        """GET /api/v1/balance, once (its callers ask again on their own schedule); the body
        is read with `tasks.balance_state.parse_balance`."""
        try:
            response = self._timed("GET", BALANCE_ENDPOINT, timeout=timeout_s)
        except httpx.TransportError as error:
            return _answer(error, 1)
        retry_after = retry_after_seconds(response.headers.get("Retry-After"))
        return dataclasses.replace(_answer(response, 1), retry_after=retry_after)

    def stop(self, message_uuids: Sequence[str]) -> Answer:
        """POST /api/v1/message/stop for these messages (at most MAX_STOP_UUIDS), retried as a
        send is: asking twice is safe, a stopped message answers 200 again."""
        body = orjson.dumps({"uuids": list(message_uuids)})
        attempts = 0

        def once() -> httpx.Response:
            nonlocal attempts
            attempts += 1
            return self._timed("POST", STOP_ENDPOINT, content=body)

        s = self._settings
        retrying = Retrying(
            retry=retry_if_exception_type(httpx.TransportError) | retry_if_result(retryable),
            stop=stop_after_attempt(s.retry_max_attempts)
            | _StopBefore(time.monotonic() + s.retry_max_seconds),
            wait=_RetryAfterOr(s.retry_backoff_ms / 1000, s.retry_backoff_max_ms / 1000),
            before_sleep=lambda state: _log_retry(state, STOP_ENDPOINT, "stop", len(message_uuids)),
            retry_error_callback=_last_outcome,
        )
        return _answer(retrying(once), attempts)

    def _timed(self, method: str, endpoint: str, **request: Any) -> httpx.Response:
        """One request, its duration observed by endpoint and answer."""
        started = time.perf_counter()
        status = "error"
        try:
            response = self._http.request(method, endpoint, **request)
            status = str(response.status_code)
        finally:
            name = endpoint if method == "POST" else f"{method} {endpoint}"
            metrics.API_SECONDS.labels(name, status).observe(time.perf_counter() - started)
        return response


def listed_messages(body: Any) -> list[Any] | None:
    """The messages of a GET /api/v1/message answer: the docs show none, so a bare array
    (what the page's title, "Getting array of messages", says) or an object's `items`."""
    if isinstance(body, list):
        return body
    if isinstance(body, dict) and isinstance(body.get("items"), list):
        return list(body["items"])
    return None


#: Answers that refuse the key, not the messages: they open the circuit at once.
AUTH_REFUSED = (401, 403)
#: Too Many Requests: with a rate limiter, a pause for every pod rather than a failure the
#: circuit counts (a throttled account is not a down API, and opening the circuit would stop
#: the codes for a cooldown the Retry-After does not ask for).
THROTTLED = 429


class _NotSentError(Exception):
    """While an attempt waited for its budget the batch lost its lease or the circuit
    opened: nothing is sent, the items are returned."""


def retryable_status(status: int) -> bool:
    return status == 429 or status >= 500


def _tell(circuit: Circuit, endpoint: str, response: httpx.Response) -> None:
    status = response.status_code
    if status in AUTH_REFUSED:
        code, msg = Answer(status, _json_or_text(response), 1).error
        circuit.failure(f"POST {endpoint} answered {status} {code} {msg}"[:300], at_once=True)
    elif retryable_status(status):
        circuit.failure(f"POST {endpoint} answered {status}")
    else:
        circuit.success()


class _StopBefore(stop_base):
    """Stop when the next attempt would start after the deadline."""

    def __init__(self, deadline: float | Callable[[], float]) -> None:
        self._deadline = deadline

    def __call__(self, retry_state: RetryCallState) -> bool:
        deadline = self._deadline() if callable(self._deadline) else self._deadline
        return time.monotonic() + (retry_state.upcoming_sleep or 0.0) >= deadline


class _StopIf(stop_base):
    """Stop when a condition holds (the circuit opened meanwhile)."""

    def __init__(self, condition: Callable[[], bool]) -> None:
        self._condition = condition

    def __call__(self, retry_state: RetryCallState) -> bool:
        return self._condition()


def _last_outcome(state: RetryCallState) -> httpx.Response | BaseException | None:
    """When retries run out: the last response, or the last network error, as a value."""
    outcome = state.outcome
    if outcome is None:
        return None
    return outcome.exception() if outcome.failed else outcome.result()


class _RetryAfterOr:
    """The server's Retry-After when it sent one, else exponential backoff with jitter; after
    a 429, `throttled_wait` when given (a shared pause does the waiting)."""

    def __init__(self, initial_s: float, max_s: float, throttled_wait: float | None = None) -> None:
        self._backoff = wait_exponential_jitter(multiplier=initial_s, max=max_s, jitter=initial_s)
        self._throttled_wait = throttled_wait

    def __call__(self, state: RetryCallState) -> float:
        outcome = state.outcome
        if outcome is not None and not outcome.failed:
            response = outcome.result()
            if response.status_code == THROTTLED and self._throttled_wait is not None:
                return self._throttled_wait
            delay = retry_after_seconds(response.headers.get("Retry-After"))
            if delay is not None:
                return delay
        return float(self._backoff(state))


def retry_after_seconds(value: str | None) -> float | None:
    """Retry-After as delta-seconds or an HTTP date (RFC 9110)."""
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (moment - datetime.now(UTC)).total_seconds())


def _log_retry(state: RetryCallState, endpoint: str, label: str, size: int) -> None:
    outcome = state.outcome
    if outcome is None:
        return
    if outcome.failed:
        kind = type(outcome.exception()).__name__
        reason = f"{kind}: {outcome.exception()}"
    else:
        kind = str(outcome.result().status_code)
        reason = f"HTTP {kind}"
    metrics.RETRIES.labels(kind).inc()
    log.warning(
        "retrying POST %s (%s, %d items) after %s: attempt %d failed, next in %.2fs",
        endpoint,
        label,
        size,
        reason,
        state.attempt_number,
        state.upcoming_sleep,
    )


def _answer(result: httpx.Response | BaseException | None, attempts: int) -> Answer:
    if isinstance(result, httpx.Response):
        return Answer(result.status_code, _json_or_text(result), attempts)
    name = type(result).__name__ if result is not None else "no attempt"
    return Answer(None, None, attempts, transport_error=f"{name}: {result}")


def _json_or_text(response: httpx.Response) -> Any:
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return response.text
