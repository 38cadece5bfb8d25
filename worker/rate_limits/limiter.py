"""What the API client asks around each attempt: wait for the request's budget (and out any
pause a 429 set), and tell what the API answered.

One per process (worker/resources.py). Redis is the truth for every pod; while Redis cannot
answer, a request goes without budget (a limit is not worth a batch stuck behind an outage
that will hold its outcomes anyway), but a 429 this process saw still pauses it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import redis

from config import Settings
from tasks.keys import Keys, as_text
from tasks.segments import message_units
from worker import metrics
from worker.rate_limits import adaptive
from worker.rate_limits.buckets import buckets
from worker.rate_limits.scripts import script

log = logging.getLogger(__name__)

#: A pause's 429s in a row are forgotten this long after it ends (the backoff starts over).
STRIKES_FORGOTTEN_MS = 60_000


class RateLimiter:
    def __init__(self, client: redis.Redis, keys: Keys, settings: Settings) -> None:
        self._redis, self._keys, self._settings = client, keys, settings
        self._acquire = script(client, "acquire")
        self._throttled = script(client, "throttled")
        self._accepted = script(client, "accepted")
        self._local_pause: dict[str, float] = {}  # endpoint → time.monotonic() it ends
        self._lock = threading.Lock()

    def units(self, channel: str, objects: Sequence[Mapping[str, Any]]) -> int:
        """What a request of these objects costs (RATE_LIMIT_UNIT)."""
        unit = self._settings.rate_limit_unit
        return sum(message_units(channel, obj, unit) for obj in objects)

    def reserve(self, channel: str, endpoint: str, units: int) -> float:
        """Reserve `units` of budget now; the seconds to wait before sending them."""
        s = self._settings
        drawn = buckets(s, self._keys, channel)
        args: list[str | int | float] = [
            units,
            s.rate_burst_s * 1000,
            int(s.adaptive_rate),
            adaptive.INCREASE_PER_S,
            adaptive.CREEP_PER_S,
        ]
        for b in drawn:
            args += [b.rate, int(b.charged), b.hides, b.share]
        try:
            reply: Any = self._acquire(
                keys=[
                    self._keys.pause(endpoint),
                    self._keys.rate_adaptive(channel),
                    *(b.key for b in drawn),
                ],
                args=args,
            )
            wait = int(reply[0]) / 1000
        except redis.RedisError as error:
            log.warning("rate limit: %s sends without budget, Redis error: %s", channel, error)
            wait = 0.0
        return max(wait, self._local_wait(endpoint))

    def paused_for(self, endpoint: str) -> float:
        """Seconds the endpoint is still paused by a 429 (any pod's)."""
        try:
            until, now = self._redis.hget(self._keys.pause(endpoint), "until"), self._redis.time()
        except redis.RedisError:
            return self._local_wait(endpoint)
        if until is None:
            return self._local_wait(endpoint)
        now_ms = now[0] * 1000 + now[1] / 1000
        return max((float(until) - now_ms) / 1000, self._local_wait(endpoint))

    def wait(self, channel: str, endpoint: str, units: int) -> float:
        """Block until the request may go: its budget, then any pause set meanwhile. The
        seconds waited (counted by channel), never part of a batch's retry deadline."""
        started = time.monotonic()
        delay = self.reserve(channel, endpoint, units)
        while delay > 0:
            time.sleep(delay)
            delay = self.paused_for(endpoint)  # a 429 while this request waited its turn
        waited = time.monotonic() - started
        metrics.RATE_WAIT.labels(channel).observe(waited)
        return waited

    def throttled(self, channel: str, endpoint: str, retry_after: float | None) -> float:
        """A 429 on `endpoint`: pause it for every pod (and cut the channel's rate with
        ADAPTIVE_RATE); the seconds it is paused from now."""
        s = self._settings
        args: list[str | int | float] = [
            -1 if retry_after is None else int(retry_after * 1000),
            s.retry_backoff_ms,
            s.retry_backoff_max_ms,
            STRIKES_FORGOTTEN_MS,
            int(s.adaptive_rate),
            s.tuning(channel).rate_limit,
            adaptive.INCREASE_PER_S,
            adaptive.CREEP_PER_S,
            adaptive.DECREASE,
            adaptive.CAP_MARGIN,
            adaptive.HOLD_MS,
            adaptive.FORGET_MS,
            adaptive.FLOOR,
            adaptive.WINDOW_S,
            adaptive.LEARN_MS,
        ]
        try:
            reply: Any = self._throttled(
                keys=[
                    self._keys.pause(endpoint),
                    self._keys.rate_adaptive(channel),
                    self._keys.rate_accepted(channel),
                ],
                args=args,
            )
            pause, cut = int(reply[0]) / 1000, as_text(reply[1])
        except redis.RedisError as error:
            log.warning("rate limit: a 429 not shared, Redis error: %s", error)
            pause = retry_after if retry_after is not None else s.retry_backoff_ms / 1000
            cut = ""
        with self._lock:
            self._local_pause[endpoint] = time.monotonic() + pause
        metrics.RATE_PAUSES.labels(endpoint).inc()
        log.warning(
            "429 on POST %s (%s): every pod pauses it for %.2f s%s",
            endpoint,
            channel,
            pause,
            f"; {channel} now sends at most {float(cut):.1f}/s" if cut else "",
        )
        return pause

    def accepted(self, channel: str, units: int) -> None:
        """The API took a request: counted per second for ADAPTIVE_RATE to learn a rate from
        (only where none is configured)."""
        if not self._settings.adaptive_rate or self._settings.tuning(channel).rate_limit > 0:
            return
        try:
            self._accepted(
                keys=[self._keys.rate_accepted(channel)], args=[units, adaptive.WINDOW_S]
            )
        except redis.RedisError as error:
            log.warning("rate limit: accepted units not counted, Redis error: %s", error)

    def _local_wait(self, endpoint: str) -> float:
        with self._lock:
            until = self._local_pause.get(endpoint, 0.0)
        return max(0.0, until - time.monotonic())
