"""The limits as configured and as they stand now (ADAPTIVE_RATE), and the endpoints a 429
paused, read for `status` and the metrics."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis

from config import Settings
from tasks.channels import CHANNELS
from tasks.keys import Keys, as_text
from worker.rate_limits import adaptive
from worker.rate_limits.scripts import source


@dataclass(frozen=True)
class Limit:
    bucket: str  # `channel:SMS`, `account`, `bulk`
    configured: float  # units a second; 0: none
    effective: float  # what it draws on now (ADAPTIVE_RATE: learnt from 429s); 0: none


@dataclass(frozen=True)
class Pause:
    endpoint: str
    remaining_s: float  # 0: not paused


@dataclass(frozen=True)
class Rates:
    unit: str  # RATE_LIMIT_UNIT
    burst_s: float
    adaptive: bool
    limits: list[Limit]
    pauses: list[Pause]


def read_rates(client: redis.Redis, keys: Keys, settings: Settings) -> Rates:
    channels = list(CHANNELS)
    endpoints = sorted({c.endpoint for c in CHANNELS.values()})
    configured = [settings.tuning(c).rate_limit for c in channels]
    reply: Any = client.eval(
        source("rates"),
        len(channels) + len(endpoints),
        *(keys.rate_adaptive(c) for c in channels),
        *(keys.pause(e) for e in endpoints),
        len(channels),
        int(settings.adaptive_rate),
        adaptive.INCREASE_PER_S,
        adaptive.CREEP_PER_S,
        *configured,
    )
    limits = [
        Limit(f"channel:{c}", rate, float(as_text(now)))
        for c, rate, now in zip(channels, configured, reply[: len(channels)], strict=True)
    ]
    account = settings.account_rate_limit
    bulk = account * (1 - settings.otp_rate_share)
    limits += [Limit("account", account, account), Limit("bulk", bulk, bulk)]
    pauses = [
        Pause(e, int(ms) / 1000) for e, ms in zip(endpoints, reply[len(channels) :], strict=True)
    ]
    return Rates(
        settings.rate_limit_unit, settings.rate_burst_s, settings.adaptive_rate, limits, pauses
    )
