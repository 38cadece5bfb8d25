"""POST to the Revicom API with retries: 5xx, 429 and network errors are retried, with
exponential backoff and jitter (or the server's Retry-After), bounded by attempts and time;
401, 403, 422 and other answers are returned as they are.
"""

from __future__ import annotations

import logging
import time
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
    stop_before_delay,
    wait_exponential_jitter,
)

from config import Settings
from worker import metrics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Answer:
    """The last thing an API request produced: a response, or the network error instead."""

    status: int | None  # None: no HTTP response (connect error, timeout, dropped connection)
    body: Any  # parsed JSON, or the text when the body is not JSON
    attempts: int
    transport_error: str | None = None

    @property
    def error(self) -> tuple[int | None, str]:
        """The API's `error` {code, msg}, or the best description of what went wrong."""
        if self.transport_error is not None:
            return None, self.transport_error
        if isinstance(self.body, dict) and isinstance(self.body.get("error"), dict):
            error = self.body["error"]
            return error.get("code"), str(error.get("msg", ""))
        return None, f"HTTP {self.status}: {str(self.body)[:200]}"


def retryable(response: httpx.Response) -> bool:
    return response.status_code == 429 or response.status_code >= 500


class ApiClient:
    """One per process: a keep-alive httpx client and the retry policy."""

    def __init__(self, settings: Settings, transport: httpx.BaseTransport | None = None) -> None:
        token = settings.revicom_api_token
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Basic {token.get_secret_value()}"
        self._http = httpx.Client(
            base_url=settings.revicom_api_url,
            headers=headers,
            timeout=httpx.Timeout(settings.send_timeout_s, connect=settings.connect_timeout_s),
            limits=httpx.Limits(max_connections=8, max_keepalive_connections=8),
            transport=transport,
        )
        self._settings = settings

    def close(self) -> None:
        self._http.close()

    def post(self, endpoint: str, objects: list[dict[str, Any]], label: str) -> Answer:
        """POST `objects` (a JSON array) to `endpoint`; `label` names the batch in logs."""
        body = orjson.dumps(objects)
        attempts = 0

        def once() -> httpx.Response:
            nonlocal attempts
            attempts += 1
            started = time.perf_counter()
            status = "error"
            try:
                response = self._http.post(endpoint, content=body)
                status = str(response.status_code)
                return response
            finally:
                seconds = time.perf_counter() - started
                metrics.API_SECONDS.labels(endpoint, status).observe(seconds)

        s = self._settings
        retrying = Retrying(
            retry=retry_if_exception_type(httpx.TransportError) | retry_if_result(retryable),
            stop=stop_after_attempt(s.retry_max_attempts) | stop_before_delay(s.retry_max_seconds),
            wait=_RetryAfterOr(s.retry_backoff_ms / 1000, s.retry_backoff_max_ms / 1000),
            before_sleep=lambda state: _log_retry(state, endpoint, label, len(objects)),
            retry_error_callback=_last_outcome,
        )
        return _answer(retrying(once), attempts)


def _last_outcome(state: RetryCallState) -> httpx.Response | BaseException | None:
    """When retries run out: the last response, or the last network error, as a value."""
    outcome = state.outcome
    if outcome is None:
        return None
    return outcome.exception() if outcome.failed else outcome.result()


class _RetryAfterOr:
    """The server's Retry-After when it sent one, else exponential backoff with jitter."""

    def __init__(self, initial_s: float, max_s: float) -> None:
        self._backoff = wait_exponential_jitter(multiplier=initial_s, max=max_s, jitter=initial_s)

    def __call__(self, state: RetryCallState) -> float:
        outcome = state.outcome
        if outcome is not None and not outcome.failed:
            response = outcome.result()
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
    sleep = state.next_action.sleep if state.next_action else 0.0
    log.warning(
        "retrying POST %s (%s, %d items) after %s: attempt %d failed, next in %.2fs",
        endpoint,
        label,
        size,
        reason,
        state.attempt_number,
        sleep,
    )


def _answer(result: httpx.Response | BaseException | None, attempts: int) -> Answer:
    if isinstance(result, httpx.Response):
        try:
            body: Any = orjson.loads(result.content)
        except orjson.JSONDecodeError:
            body = result.text
        return Answer(result.status_code, body, attempts)
    name = type(result).__name__ if result is not None else "no attempt"
    return Answer(None, None, attempts, transport_error=f"{name}: {result}")
