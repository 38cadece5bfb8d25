"""The circuit breaker every pod shares: when the API keeps failing, nobody sends.

Its state lives in Redis (`{prefix}:circuit`), so one pod's failures stop them all. Requests
that fail (5xx, 429, network errors) are counted in a row across pods; `CIRCUIT_FAILURES` of
them open the circuit, and a 401/403 opens it at once (a wrong key fails every request, and
says nothing about the jobs). While it is open the batchers stop reading, batches that start
give their entries back unsent, and a request in its retries stops retrying: jobs wait in
their streams with no outcome and no dead letter. After a cooldown one batch goes as the
probe (`{prefix}:circuit:probe`, taken by one batcher); its success closes the circuit and
sending resumes by itself, its failure doubles the cooldown (up to `CIRCUIT_COOLDOWN_MAX_S`).
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import redis

from config import Settings
from tasks.circuit_state import CLOSED, CircuitState, read_state
from tasks.keys import Keys
from worker import metrics
from worker.ownership import script

log = logging.getLogger(__name__)


class Circuit:
    def __init__(self, client: redis.Redis, keys: Keys, settings: Settings) -> None:
        self._redis = client
        self._key = keys.circuit
        self._probe_key = keys.circuit_probe
        self._threshold = settings.circuit_failures
        self._cooldown_ms = int(settings.circuit_cooldown_s * 1000)
        self._max_cooldown_ms = int(settings.circuit_cooldown_max_s * 1000)
        self._probe_ms = int((settings.retry_max_seconds + settings.send_timeout_s) * 1000)
        self._failure = script(client, "circuit_failure")
        self._success = script(client, "circuit_success")
        self._give_back = script(client, "circuit_probe")

    def state(self) -> CircuitState:
        """As stored; closed while Redis cannot say (the circuit is advice: a Redis outage
        must not fail a batch whose request may already have reached the API)."""
        try:
            return read_state(self._redis, self._key)
        except redis.RedisError:
            return CLOSED

    def failure(self, reason: str, *, at_once: bool = False) -> None:
        """One failed request; `at_once` for a refused key."""
        try:
            reply: Any = self._failure(
                keys=[self._key],
                args=[
                    self._threshold,
                    self._cooldown_ms,
                    self._max_cooldown_ms,
                    int(at_once),
                    reason,
                ],
            )
        except redis.RedisError as error:
            log.warning("circuit: a failure not counted, Redis error: %s", error)
            return
        if int(reply[2]):
            metrics.CIRCUIT_OPENED.labels("auth" if at_once else "unavailable").inc()
            level = logging.ERROR if at_once else logging.WARNING
            log.log(
                level,
                "circuit OPEN: %s; sending paused for every pod, jobs wait in their streams; "
                "a probe in %.1f s%s",
                reason,
                int(reply[1]) / 1000,
                " (fix REVICOM_API_TOKEN: a refused key fails every request)" if at_once else "",
            )

    def success(self) -> None:
        try:
            closed = int(self._success(keys=[self._key]))
        except redis.RedisError as error:
            log.warning("circuit: a success not counted, Redis error: %s", error)
            return
        if closed:
            log.warning("circuit closed: the API answers again; sending resumes")

    def take_probe(self, holder: str) -> bool:
        """Whether `holder` sends the one probe batch (until it ends, or its time is up)."""
        return bool(self._redis.set(self._probe_key, holder, nx=True, px=self._probe_ms))

    def hand_probe(self, holder: str, batch: str) -> None:
        """The token goes with the probe batch, which gives it back when it ends."""
        with contextlib.suppress(redis.RedisError):
            self._give_back(keys=[self._probe_key], args=[holder, batch])

    def probe_done(self, holder: str) -> None:
        """Give the token back if `holder` still has it (never another's)."""
        with contextlib.suppress(redis.RedisError):  # else the token lapses by itself
            self._give_back(keys=[self._probe_key], args=[holder, ""])
