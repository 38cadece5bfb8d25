"""What a worker process holds for its whole life: settings, Redis, the ledger, the API client
(with the rate limiter every pod shares).

Created lazily and per process id, so each prefork child gets its own connections after the
fork (sockets and threads do not survive one).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import ClassVar

import redis

from config import Settings, get_settings
from tasks.keys import Keys
from worker.api_client import ApiClient
from worker.circuit import Circuit
from worker.ledger import Ledger
from worker.ownership import LeaseKeeper, LeaseTimes, Ownership
from worker.rate_limits.limiter import RateLimiter


@dataclass
class Resources:
    settings: Settings
    keys: Keys
    redis: redis.Redis
    ledger: Ledger
    ownership: Ownership
    leases: LeaseKeeper
    circuit: Circuit
    api: ApiClient

    _current: ClassVar[tuple[int, Resources] | None] = None

    @classmethod
    def current(cls) -> Resources:
        if cls._current is None or cls._current[0] != os.getpid():
            cls._current = (os.getpid(), cls.create(get_settings()))
        return cls._current[1]

    @classmethod
    def create(cls, settings: Settings) -> Resources:
        keys = Keys(settings.dispatch_key_prefix)
        client = redis.Redis.from_url(
            settings.redis_url,
            socket_connect_timeout=5,
            socket_timeout=30,
            health_check_interval=30,
        )
        leases = LeaseTimes.from_settings(settings)
        ownership = Ownership(client, keys, leases)
        return cls(
            settings,
            keys,
            client,
            Ledger(
                client,
                keys,
                settings.ledger_ttl_s,
                leases,
                int(settings.status_poll_after_s * 1000),
            ),
            ownership,
            LeaseKeeper(ownership),
            Circuit(client, keys, settings),
            # Every attempt waits for its budget in Redis: the limits hold for all pods.
            ApiClient(settings, limiter=RateLimiter(client, keys, settings)),
        )
