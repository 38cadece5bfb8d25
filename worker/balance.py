"""The balance refresher, and the low-balance guard as the batchers and batches obey it.

Every node runs a refresher (a bootstep, like the status poller); one at a time, across all
pods, holds the lease `{prefix}:lease:balance` and asks GET /api/v1/balance every
BALANCE_REFRESH_S, storing the answer in Redis (`{prefix}:balance`, tasks/balance_state.py)
for every pod, `status` and the metrics exporter. The schedule follows the stored time of the
last refresh, so a new holder does not ask again at once. A failed refresh is recorded (its
status and code, never the body or the token) and asked again after a pause that doubles up
to MAX_PAUSE_S (or the API's Retry-After).

The guard (MIN_BALANCE) is decided from what is stored: the holder logs each change once
(pause, resume, with the amounts and the threshold); batchers stop reading and cutting the
bulk channels while it holds, and a bulk batch that starts meanwhile gives its entries back
unsent (worker/batch.py). OTP channels never wait for it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

import redis
from celery import bootsteps

from config import Settings, get_settings
from tasks.balance_state import (
    BALANCE_TIMEOUT_S,
    Guard,
    bulk_guard,
    parse_balance,
    read_balance,
    stale_after_s,
    swap_paused,
    write_balance,
    write_error,
)
from tasks.keys import Keys
from worker import metrics
from worker.api_client import Answer, ApiClient
from worker.ownership import script

log = logging.getLogger(__name__)

#: The lease's name under `{prefix}:lease:`, and its length: well above one request's timeout,
#: so a slow answer never lets a second refresher in.
REFRESHER = "balance"
LEASE_MS = 15_000
#: How often the refresher renews its lease, or looks whether it could take it (s).
IDLE_S = 1.0
#: Longest pause after failed refreshes in a row (s); the pause doubles from IDLE_S.
MAX_PAUSE_S = 300.0
#: How long a batcher or batch trusts the guard it read (s).
GUARD_TTL_S = 1.0


class BalanceRefresher:
    def __init__(self, settings: Settings, node: str) -> None:
        self._settings = settings
        self._keys = Keys(settings.dispatch_key_prefix)
        self._redis = redis.Redis.from_url(
            settings.redis_url, socket_connect_timeout=5, socket_timeout=30
        )
        self._singleton = script(self._redis, "singleton")
        self._api = ApiClient(settings)
        self.name = f"{node}-{os.getpid()}"
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="balance", daemon=True)
        self._failures = 0  # failed refreshes in a row
        self._resume_at = 0.0  # no request before (time.monotonic())

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout=BALANCE_TIMEOUT_S + 1)
        self._api.close()

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self.tick()
            except redis.RedisError as error:
                log.warning("balance: Redis error, retrying in 1 s: %s", error)
            except Exception:
                log.exception("balance: unexpected error, retrying in 1 s")
            self._stopping.wait(IDLE_S)

    def tick(self) -> bool:
        """Refresh if this process holds the lease and a refresh is due; whether it asked."""
        if not self._singleton(keys=[self._keys.lease(REFRESHER)], args=[self.name, LEASE_MS]):
            return False
        state = read_balance(self._redis, self._keys.balance)
        due = state.age_s is None or state.age_s >= self._settings.balance_refresh_s
        if not due or time.monotonic() < self._resume_at:
            self._decide()  # a threshold changed by a redeploy, or staleness, is seen too
            return False
        self._refresh()
        self._decide()
        return True

    def _refresh(self) -> None:
        answer = self._api.balance(BALANCE_TIMEOUT_S)
        amounts = parse_balance(answer.body) if answer.status == 200 else None
        if amounts is not None:
            write_balance(self._redis, self._keys.balance, amounts)
            metrics.BALANCE_REFRESHES.labels("ok").inc()
            if self._failures:
                log.warning("balance: read again after %d failed refresh(es)", self._failures)
            self._failures = 0
            return
        metrics.BALANCE_REFRESHES.labels("error").inc()
        self._failures += 1
        pause = min(MAX_PAUSE_S, IDLE_S * 2 ** (self._failures - 1))
        if answer.retry_after is not None:
            pause = max(pause, min(answer.retry_after, MAX_PAUSE_S))
        self._resume_at = time.monotonic() + pause
        reason = _failure(answer)
        write_error(self._redis, self._keys.balance, reason)
        log.warning("balance: refresh failed (%s); asked again in %.0f s", reason, pause)

    def _decide(self) -> None:
        """Log the guard's change, once across pods (the decision is stored with it)."""
        if self._settings.min_balance is None:
            return
        state = read_balance(self._redis, self._keys.balance)
        guard = bulk_guard(
            state, self._settings.min_balance, stale_after_s(self._settings.balance_refresh_s)
        )
        if not swap_paused(self._redis, self._keys.balance, guard.paused):
            return
        if guard.paused:
            log.warning(
                "balance guard: bulk channels PAUSED, %s; their jobs wait, codes go on",
                guard.reason,
            )
        else:
            now = ", ".join(f"{c} {a}" for c, a in sorted(state.amounts.items()))
            why = "the balance is stale" if guard.stale else f"balance {now}"
            log.warning(
                "balance guard: bulk channels resume, %s (MIN_BALANCE %s)",
                why,
                self._settings.min_balance,
            )


def _failure(answer: Answer) -> str:
    """What went wrong, from the status and the API's error code only: the body may be
    anything (and an error's msg may echo what was sent)."""
    if answer.transport_error is not None:
        return answer.transport_error.partition(":")[0]
    if answer.status == 200:
        return f"an answer that is not currency → amount (a {type(answer.body).__name__})"
    code, _ = answer.error
    return f"HTTP {answer.status}" + (f" {code}" if code is not None else "")


def guard_now(client: redis.Redis, keys: Keys, settings: Settings) -> Guard:
    """The guard as stored now; not paused while Redis cannot say (a Redis outage stops the
    batchers by itself, and must not make a batch that could send give its entries back)."""
    if settings.min_balance is None:
        return Guard(paused=False, reason="", stale=False)
    try:
        state = read_balance(client, keys.balance)
    except redis.RedisError:
        return Guard(paused=False, reason="", stale=True)
    return bulk_guard(state, settings.min_balance, stale_after_s(settings.balance_refresh_s))


class BalanceGuard:
    """`guard_now`, read at most once a GUARD_TTL_S (a batcher asks at every tick)."""

    def __init__(self, client: redis.Redis, keys: Keys, settings: Settings) -> None:
        self._args = (client, keys, settings)
        self._guard = Guard(paused=False, reason="", stale=False)
        self._read_at = float("-inf")

    def current(self) -> Guard:
        now = time.monotonic()
        if now - self._read_at >= GUARD_TTL_S:
            self._guard = guard_now(*self._args)
            self._read_at = now
        return self._guard


class BalanceStep(bootsteps.StartStopStep):
    """Runs a balance refresher in every node (BALANCE_REFRESH_S > 0); the lease lets one
    work at a time."""

    requires = ("celery.worker.components:Pool",)

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self.refresher: BalanceRefresher | None = None

    def start(self, worker: Any) -> None:
        settings = get_settings()
        if not settings.balance_refresh_s:
            return
        self.refresher = BalanceRefresher(settings, worker.hostname)
        self.refresher.start()

    def stop(self, worker: Any) -> None:
        if self.refresher is not None:
            self.refresher.stop()
            self.refresher = None
