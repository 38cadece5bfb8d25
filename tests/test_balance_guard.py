"""The balance refresher and the guard, in process against a real Redis and the sandbox over
HTTP: one refresher at a time, what it stores and exports, failures, staleness, and a bulk
batch given back unsent while codes go out."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx
import pytest
import redis
from prometheus_client import REGISTRY

from config import Settings
from ops.status import snapshot
from tasks.balance_state import read_balance, stale_after_s, write_balance
from tasks.keys import Keys
from tests.conftest import SANDBOX_TOKEN
from tests.contract_cases import BASE
from tests.e2e.sandbox_view import received
from tests.test_batch_flow import LEASE_MS, job, outcomes, pending, queue
from worker.balance import BalanceRefresher, guard_now
from worker.batch import BatchReport, process_batch
from worker.metrics import StreamCollector
from worker.resources import Resources


@dataclass
class Rig:
    """This test's Redis, keys and sandbox, and refreshers and resources made for them."""

    redis_url: str
    redis: redis.Redis
    keys: Keys
    sandbox: httpx.Client
    sandbox_url: str
    made: list[BalanceRefresher] = field(default_factory=list)
    resources: list[Resources] = field(default_factory=list)

    def settings(self, **overrides: Any) -> Settings:
        return Settings.model_validate(
            {
                "redis_url": self.redis_url,
                "dispatch_key_prefix": self.keys.prefix,
                "revicom_api_url": self.sandbox_url,
                "revicom_api_token": SANDBOX_TOKEN,
                "balance_refresh_s": 30,
                "lease_ms": LEASE_MS,
                "otp_lease_ms": LEASE_MS,
                **overrides,
            }
        )

    def refresher(self, node: str = "node-a", **overrides: Any) -> BalanceRefresher:
        self.made.append(BalanceRefresher(self.settings(**overrides), node))
        return self.made[-1]

    def res(self, **overrides: Any) -> Resources:
        self.resources.append(Resources.create(self.settings(**overrides)))
        return self.resources[-1]


@pytest.fixture
def rig(
    redis_url: str, redis_client: redis.Redis, keys: Keys, sandbox: httpx.Client, sandbox_url: str
) -> Iterator[Rig]:
    made = Rig(redis_url, redis_client, keys, sandbox, sandbox_url)
    yield made
    for refresher in made.made:
        refresher.stop()
    for res in made.resources:
        res.api.close()
        res.redis.close()


def age(client: redis.Redis, keys: Keys, seconds: float) -> None:
    """Make the stored balance `seconds` old."""
    now_s, micros = client.time()
    client.hset(keys.balance, "at", int((now_s - seconds) * 1000 + micros // 1000))


def refreshes(result: str) -> float:
    return REGISTRY.get_sample_value("revicom_balance_refreshes_total", {"result": result}) or 0


def test_one_refresher_at_a_time_stores_the_balance(rig: Rig) -> None:
    redis_client, keys, sandbox = rig.redis, rig.keys, rig.sandbox
    a, b = rig.refresher("a"), rig.refresher("b")
    ok = refreshes("ok")
    assert a.tick()
    assert not b.tick()  # a holds the lease
    assert read_balance(redis_client, keys.balance).amounts == {"RUB": Decimal("1000000.0")}
    assert not a.tick()  # fresh: not asked again before BALANCE_REFRESH_S
    sandbox.put("/_sandbox/balance", json={"USD": 42.5}).raise_for_status()
    age(redis_client, keys, 31)
    assert not b.tick()
    assert a.tick()
    assert read_balance(redis_client, keys.balance).amounts == {"USD": Decimal("42.5")}
    assert refreshes("ok") == ok + 2
    redis_client.delete(keys.lease("balance"))  # a's pod died: b takes over
    age(redis_client, keys, 31)
    assert b.tick()
    assert not a.tick()


def test_the_gauges_show_the_stored_balance_and_the_guard(rig: Rig) -> None:
    redis_client, keys = rig.redis, rig.keys
    settings = rig.settings(min_balance="100")
    write_balance(redis_client, keys.balance, {"RUB": Decimal("12.5"), "USD": Decimal(300)})

    def samples() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        collector = StreamCollector(redis_client, keys, settings)
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in collector.collect()
            for s in family.samples
        }

    seen = samples()
    assert seen[("revicom_balance", (("currency", "RUB"),))] == 12.5
    assert seen[("revicom_balance", (("currency", "USD"),))] == 300
    assert seen[("revicom_bulk_paused", (("reason", "balance"),))] == 1
    assert seen[("revicom_balance_age_seconds", ())] < 5
    write_balance(redis_client, keys.balance, {"RUB": Decimal(100)})  # not below: sends
    assert samples()[("revicom_bulk_paused", (("reason", "balance"),))] == 0


def test_the_guard_pauses_below_min_balance_and_lifts_when_stale(rig: Rig) -> None:
    redis_client, keys = rig.redis, rig.keys
    settings = rig.settings(min_balance="100")
    assert not guard_now(redis_client, keys, settings).paused  # never refreshed: no guard
    write_balance(redis_client, keys.balance, {"USD": Decimal(500), "RUB": Decimal("99.99")})
    guard = guard_now(redis_client, keys, settings)
    assert guard.paused
    assert guard.reason == "balance RUB 99.99 below MIN_BALANCE 100"  # each currency counts
    state = snapshot(redis_client, keys, settings).balance
    assert (state.bulk_paused, state.stale, state.amounts) == (
        True,
        False,
        {"RUB": 99.99, "USD": 500},
    )
    age(redis_client, keys, stale_after_s(30) - 1)
    assert guard_now(redis_client, keys, settings).paused
    age(redis_client, keys, stale_after_s(30) + 1)
    guard = guard_now(redis_client, keys, settings)
    assert (guard.paused, guard.stale) == (False, True)
    assert snapshot(redis_client, keys, settings).balance.stale
    unguarded = rig.settings()
    write_balance(redis_client, keys.balance, {"RUB": Decimal(0)})
    assert not guard_now(redis_client, keys, unguarded).paused  # MIN_BALANCE unset


def test_a_failed_refresh_is_recorded_backs_off_and_logs_no_secret(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    a = rig.refresher(revicom_api_token="secret-wrong-key")
    errors = refreshes("error")
    with caplog.at_level(logging.WARNING):
        assert a.tick()
        assert not a.tick()  # backing off: not asked again at once
    assert refreshes("error") == errors + 1
    state = read_balance(rig.redis, rig.keys.balance)
    assert (state.error, state.age_s, state.amounts) == ("HTTP 401 4012", None, {})
    assert "refresh failed (HTTP 401 4012)" in caplog.text
    assert "secret-wrong-key" not in caplog.text
    assert "Bad credentials" not in caplog.text  # no body, only the status and code


def test_the_guard_changes_are_logged_once(rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    redis_client, keys, sandbox = rig.redis, rig.keys, rig.sandbox
    a, b = rig.refresher("a", min_balance="100"), rig.refresher("b", min_balance="100")
    sandbox.put("/_sandbox/balance", json={"RUB": 12.5}).raise_for_status()
    with caplog.at_level(logging.WARNING, logger="worker.balance"):
        assert a.tick()
        age(redis_client, keys, 31)
        assert a.tick()
        redis_client.delete(keys.lease("balance"))
        age(redis_client, keys, 31)
        assert b.tick()  # another pod, the same decision: not logged again
        sandbox.put("/_sandbox/balance", json={"RUB": 500}).raise_for_status()
        age(redis_client, keys, 31)
        assert b.tick()
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "balance guard: bulk channels PAUSED, balance RUB 12.5 below MIN_BALANCE 100; their "
        "jobs wait, codes go on",
        "balance guard: bulk channels resume, balance RUB 500.0 (MIN_BALANCE 100)",
    ]


def test_a_bulk_batch_gives_its_entries_back_while_codes_go_out(rig: Rig) -> None:
    sandbox, res = rig.sandbox, rig.res(min_balance="100")
    write_balance(res.redis, res.keys.balance, {"RUB": Decimal("12.5")})
    ids = queue(res, [job("a", 1), job("b", 2)])
    report = process_batch(res, "SMS", "b-1")
    assert report == BatchReport("SMS", 2, returned=2)
    assert received(sandbox) == []
    assert outcomes(res) == []
    assert pending(res) == {ids[0]: "w-1", ids[1]: "w-1"}  # waiting, no delivery counted
    queue(res, [{"jobId": "code", "message": BASE["FLASHCALL"]}], batch="b-2", channel="FLASHCALL")
    code = process_batch(res, "FLASHCALL", "b-2")
    assert code is not None
    assert code.accepted == 1
    assert [o["jobId"] for o in outcomes(res)] == ["code"]
    write_balance(res.redis, res.keys.balance, {"RUB": Decimal(500)})
    queue(res, [job("c", 3)], batch="b-3")
    sent = process_batch(res, "SMS", "b-3")
    assert sent is not None
    assert sent.accepted == 1
