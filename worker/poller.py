"""The status poller: looks up accepted messages whose final status has not come by callback.

Callbacks get lost (the receiver down longer than the sender retries, a job with its own
callbackUrl, CALLBACK_URL unset), so every accepted message is scheduled for a lookup
STATUS_POLL_AFTER_S after its 201 (worker/lua/finish.lua); a final status that arrives first
takes it off the schedule. One poller at a time, across all pods, holds the lease
`{prefix}:lease:poller`: every node runs one and the others wait. It asks GET /api/v1/message
for up to 100 due messages a request, at most STATUS_POLL_RPS requests a second, and applies
what it finds like a callback (source `poll`). A message still open is asked again after a
pause that doubles (up to STATUS_POLL_MAX_INTERVAL_S); one still open STATUS_GIVE_UP_S after
its 201 gets the final status `unknown`, in the step that takes it off the schedule. No lookup
is made while the API circuit is open, and failed lookups pause them all (doubling, or as the
API's Retry-After says); give-ups go on meanwhile. The poller also drops parked callbacks whose
wait is over, and counts them.
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
from tasks.keys import Keys
from tasks.tracking.events import lookup_row, now_text
from tasks.tracking.store import StatusStore
from worker import metrics
from worker.api_client import Answer, ApiClient, listed_messages
from worker.circuit import Circuit
from worker.ownership import script

log = logging.getLogger(__name__)

#: The lease's name under `{prefix}:lease:`, and its length: a dead poller's place is taken
#: this soon.
POLLER = "poller"
LEASE_MS = 10_000
#: A lookup's timeout: well within the lease, so a slow API never lets a second poller in.
LOOKUP_TIMEOUT_S = 5.0
#: Messages in one lookup: the API's default page.
LOOKUP_SIZE = 100
#: How often a poller without the lease, or with nothing due, looks again (s).
IDLE_S = 1.0
#: How often parked callbacks are swept (s).
SWEEP_EVERY_S = 10.0
#: Longest pause of all lookups after failed ones in a row (s); the pause doubles from IDLE_S.
MAX_PAUSE_S = 60.0


class Poller:
    def __init__(self, settings: Settings, node: str) -> None:
        self._settings = settings
        self._keys = Keys(settings.dispatch_key_prefix)
        self._redis = redis.Redis.from_url(
            settings.redis_url, socket_connect_timeout=5, socket_timeout=30
        )
        self._store = StatusStore(self._redis, self._keys, settings)
        self._singleton = script(self._redis, "singleton")
        self._circuit = Circuit(self._redis, self._keys, settings)
        self._api = ApiClient(settings)
        self.name = f"{node}-{os.getpid()}"
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="status-poller", daemon=True)
        self._next_sweep = 0.0
        self._failures = 0  # failed lookups in a row
        self._resume_at = 0.0  # no lookup before (time.monotonic())

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self._api.close()

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                pause = self.tick()
            except redis.RedisError as error:
                log.warning("status poller: Redis error, retrying in 1 s: %s", error)
                pause = IDLE_S
            except Exception:
                # Never let the thread die: statuses would stop for every pod.
                log.exception("status poller: unexpected error, retrying in 1 s")
                pause = IDLE_S
            self._stopping.wait(pause)

    def tick(self) -> float:
        """One round if this process holds the lease; the pause before the next (s)."""
        if not self._singleton(keys=[self._keys.lease(POLLER)], args=[self.name, LEASE_MS]):
            return IDLE_S
        now = time.monotonic()
        if now >= self._next_sweep:
            self._sweep()
            self._next_sweep = now + SWEEP_EVERY_S
        # While the API is down or refuses the key, nothing is looked up; give-ups go on.
        lookups = now >= self._resume_at and not self._circuit.state().open
        due = self._store.due(LOOKUP_SIZE, lookups=lookups)
        metrics.STATUS.observe(due.given_up, "poll")
        if due.given_up.finals:
            log.info(
                "status poller: %d message(s) without a final status: unknown",
                len(due.given_up.finals),
            )
        if due.vanished:
            metrics.FORGOTTEN.inc(due.vanished)
            log.warning(
                "status poller: %d message(s) forgotten before a final status (their record "
                "expired: LEDGER_TTL_S, or Redis lost it)",
                due.vanished,
            )
        if not due.lookup:
            return 0.0 if due.given_up.finals else IDLE_S
        return self._look_up(due.lookup)

    def _look_up(self, uuids: list[str]) -> float:
        """Look the messages up and record what came; the pause before the next lookup."""
        answer = self._api.lookup(uuids, LOOKUP_TIMEOUT_S)
        items = listed_messages(answer.body) if answer.status == 200 else None
        if items is None:
            metrics.POLLS.labels("error").inc()
            self._failures += 1
            pause = min(MAX_PAUSE_S, IDLE_S * 2 ** (self._failures - 1))
            if answer.retry_after is not None:
                pause = max(pause, min(answer.retry_after, MAX_PAUSE_S))
            self._resume_at = time.monotonic() + pause
            # The answer's body may hold the messages as sent (codes, numbers, a callbackUrl
            # with credentials): only its status and shape are logged.
            log.warning(
                "status poller: lookup of %d message(s) failed (%s, %s); asked again later, "
                "no lookup for %.0f s",
                len(uuids),
                answer.status if answer.status is not None else "no answer",
                _shape(answer),
                pause,
            )
            return IDLE_S
        self._failures = 0
        metrics.POLLS.labels("ok").inc()
        stamp = now_text()
        asked = set(uuids)
        rows = [row for item in items if (row := lookup_row(item, stamp)) and row[0] in asked]
        metrics.STATUS.observe(self._store.record(rows), "poll")
        return 1 / self._settings.status_poll_rps

    def _sweep(self) -> None:
        messages, events = self._store.sweep()
        if events:
            metrics.UNMATCHED.inc(events)
            log.warning(
                "status poller: %d callback event(s) of %d unknown message(s) dropped after "
                "CALLBACK_PARK_S",
                events,
                messages,
            )


def _shape(answer: Answer) -> str:
    if answer.transport_error is not None:
        return answer.transport_error.partition(":")[0]
    body = answer.body
    if isinstance(body, dict):
        return "an object with " + ", ".join(sorted(map(str, body))[:10])
    return f"a {type(body).__name__}"


class PollerStep(bootsteps.StartStopStep):
    """Runs a status poller in every node; the lease lets one work at a time."""

    requires = ("celery.worker.components:Pool",)

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self.poller: Poller | None = None

    def start(self, worker: Any) -> None:
        self.poller = Poller(get_settings(), worker.hostname)
        self.poller.start()

    def stop(self, worker: Any) -> None:
        if self.poller is not None:
            self.poller.stop()
            self.poller = None
