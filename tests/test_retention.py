"""Retention on a real Redis: old outcomes go, what a consumer group still needs never does."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from config import Settings
from tasks.keys import Keys
from worker import retention

DAY_MS = 86_400_000


def contents(client: redis.Redis, stream: str) -> list[bytes]:
    entries: Any = client.xrange(stream)
    return [fields[b"outcome"] for _, fields in entries]


def now_ms(client: redis.Redis) -> int:
    seconds, micros = client.time()
    return int(seconds) * 1000 + int(micros) // 1000


@pytest.fixture
def settings() -> Settings:
    return Settings(results_retention_s=3600, dead_retention_s=7200, statuses_retention_s=600)


def test_old_entries_go_unless_a_group_still_needs_them(
    redis_client: redis.Redis, keys: Keys, settings: Settings
) -> None:
    old = now_ms(redis_client) - 2 * DAY_MS
    for i in range(5):
        redis_client.xadd(keys.results, {"outcome": f"old-{i}"}, id=f"{old + i}-0")
    redis_client.xadd(keys.results, {"outcome": "new"})
    redis_client.xadd(keys.dead, {"job": "old"}, id=f"{old}-0")
    redis_client.xadd(keys.dead, {"job": "new"})
    redis_client.xadd(keys.statuses, {"status": "old"}, id=f"{now_ms(redis_client) - 700_000}-0")
    redis_client.xadd(keys.statuses, {"status": "new"})
    # An app's group has read up to old-1 and not acknowledged old-1.
    redis_client.xgroup_create(keys.results, "app", id=f"{old}-0")
    redis_client.xreadgroup("app", "c1", {keys.results: ">"}, count=1)

    removed = retention.trim(redis_client, keys, settings)
    # Only old-0: the app still needs old-1. Statuses are kept 600 s.
    assert removed == {keys.results: 1, keys.dead: 1, keys.statuses: 1}
    assert contents(redis_client, keys.results)[0] == b"old-1"
    assert retention.trim(redis_client, keys, settings) == {}  # another trimmer holds the lease

    redis_client.xreadgroup("app", "c1", {keys.results: ">"})
    everything: Any = redis_client.xrange(keys.results)
    redis_client.xack(keys.results, "app", *[e for e, _ in everything])
    redis_client.delete(keys.lease(retention.TRIMMER))
    assert retention.trim(redis_client, keys, settings) == {
        keys.results: 4,
        keys.dead: 0,
        keys.statuses: 0,
    }
    assert contents(redis_client, keys.results) == [b"new"]


def test_a_group_that_has_read_nothing_keeps_everything(
    redis_client: redis.Redis, keys: Keys, settings: Settings
) -> None:
    old = now_ms(redis_client) - 2 * DAY_MS
    redis_client.xgroup_create(keys.results, "slow-app", id="0", mkstream=True)
    redis_client.xadd(keys.results, {"outcome": "old"}, id=f"{old}-0")
    assert retention.trim(redis_client, keys, settings)[keys.results] == 0
