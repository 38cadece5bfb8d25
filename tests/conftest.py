"""Fixtures shared by the suite: a real Redis, and a key prefix per test so runs never collide."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import httpx
import pytest
import redis

from devenv.processes import sandbox_process
from devenv.redis_server import ensure_redis
from tasks.keys import CONSUMER_GROUP, Keys
from worker.ownership import LeaseTimes, Ownership


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """REDIS_URL if it answers, else a redis-server started for this session."""
    with ensure_redis(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")) as url:
        yield url


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def keys(redis_client: redis.Redis) -> Iterator[Keys]:
    """A fresh prefix; every key under it is deleted after the test."""
    prefix = f"test-{uuid.uuid4().hex[:12]}"
    yield Keys(prefix)
    stale = list(redis_client.scan_iter(match=f"{prefix}:*", count=1000))
    if stale:
        redis_client.delete(*stale)


@pytest.fixture
def own(redis_client: redis.Redis, keys: Keys) -> Ownership:
    """Ownership of the SMS stream (its group made), with leases of 5 s."""
    redis_client.xgroup_create(keys.jobs("SMS"), CONSUMER_GROUP, id="0", mkstream=True)
    return Ownership(redis_client, keys, LeaseTimes(5000, 5000))


SANDBOX_TOKEN = "test-token-1"
OTHER_TYPE_TOKEN = "test-token-2"


@pytest.fixture(scope="session")
def sandbox_url() -> Iterator[str]:
    """One real sandbox process (uvicorn on 127.0.0.1) for the session."""
    args = ["--token", SANDBOX_TOKEN, "--other-token", OTHER_TYPE_TOKEN, "--seed", "7"]
    with sandbox_process(args) as server:
        yield server.url


@pytest.fixture
def sandbox(sandbox_url: str) -> Iterator[httpx.Client]:
    """A client of the session's sandbox, reset to no faults, nothing received, real clock."""
    with httpx.Client(base_url=sandbox_url, timeout=10) as client:
        client.post("/_sandbox/reset").raise_for_status()
        yield client
