"""The circuit breaker's state in Redis (worker/circuit.py and its scripts), on a real Redis:
when it opens, how its cooldown grows, when it closes, and who holds the probe."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import redis

from config import Settings
from tasks.keys import Keys, as_text
from worker.circuit import Circuit

COOLDOWN_MS, MAX_COOLDOWN_MS = 5_000, 60_000


@pytest.fixture
def circuit(redis_client: redis.Redis, keys: Keys) -> Circuit:
    settings = Settings.model_validate(
        {
            "dispatch_key_prefix": keys.prefix,
            "circuit_failures": 3,
            "retry_max_attempts": 3,
            "circuit_cooldown_s": COOLDOWN_MS / 1000,
            "circuit_cooldown_max_s": MAX_COOLDOWN_MS / 1000,
        }
    )
    return Circuit(redis_client, keys, settings)


def stored(client: redis.Redis, keys: Keys) -> dict[str, str]:
    raw: Any = client.hgetall(keys.circuit)
    return {as_text(k): as_text(v) for k, v in raw.items()}


def redis_ms(client: redis.Redis) -> int:
    seconds, micros = client.time()
    return int(seconds) * 1000 + int(micros) // 1000


def cooldown_over(client: redis.Redis, keys: Keys) -> None:
    client.hset(keys.circuit, "until", redis_ms(client) - 1)


def test_failures_in_a_row_open_it_and_a_success_between_them_starts_again(
    circuit: Circuit, redis_client: redis.Redis, keys: Keys
) -> None:
    circuit.failure("503")
    circuit.failure("503")
    circuit.success()
    circuit.failure("503")
    circuit.failure("503")
    assert not circuit.state().open  # two in a row, not four
    before = redis_ms(redis_client)
    circuit.failure("503 again")
    state = circuit.state()
    assert (state.open, state.probe_due, state.reason) == (True, False, "503 again")
    fields = stored(redis_client, keys)
    assert int(fields["cooldown"]) == COOLDOWN_MS
    assert 0 <= int(fields["until"]) - before - COOLDOWN_MS < 1000


def test_a_refused_key_opens_it_at_once(circuit: Circuit) -> None:
    circuit.failure("401 Unauthorized", at_once=True)
    assert circuit.state().open


def test_a_failed_probe_doubles_the_cooldown_up_to_its_maximum(
    circuit: Circuit, redis_client: redis.Redis, keys: Keys
) -> None:
    circuit.failure("503", at_once=True)
    circuit.failure("503 while open")  # within the cooldown: it is not extended
    assert int(stored(redis_client, keys)["cooldown"]) == COOLDOWN_MS
    seen = []
    for _ in range(6):
        cooldown_over(redis_client, keys)
        assert circuit.state().probe_due
        before = redis_ms(redis_client)
        circuit.failure("the probe failed")
        fields = stored(redis_client, keys)
        seen.append(int(fields["cooldown"]))
        assert 0 <= int(fields["until"]) - before - seen[-1] < 1000
        assert fields["reason"] == "the probe failed"
        assert not circuit.state().probe_due
    assert seen == [10_000, 20_000, 40_000, 60_000, 60_000, 60_000]


def test_a_success_closes_it_and_says_so_once(
    circuit: Circuit, redis_client: redis.Redis, keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="worker.circuit")
    circuit.success()
    assert "circuit closed" not in caplog.text  # it was not open
    circuit.failure("503", at_once=True)
    circuit.success()
    assert not circuit.state().open
    assert not redis_client.exists(keys.circuit)
    assert caplog.text.count("circuit closed") == 1
    circuit.success()
    assert caplog.text.count("circuit closed") == 1


def test_one_probe_at_a_time_and_only_its_holder_gives_it_back(
    circuit: Circuit, redis_client: redis.Redis, keys: Keys
) -> None:
    assert circuit.take_probe("r-1")
    assert not circuit.take_probe("r-2")
    circuit.hand_probe("r-1", "b-1")  # the batcher cut the probe batch: it goes with it
    assert redis_client.get(keys.circuit_probe) == b"b-1"
    circuit.probe_done("r-1")  # no longer r-1's to give back
    assert redis_client.get(keys.circuit_probe) == b"b-1"
    circuit.probe_done("b-1")
    assert not redis_client.exists(keys.circuit_probe)
    assert circuit.take_probe("r-2")
