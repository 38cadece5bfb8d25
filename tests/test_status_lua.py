"""The delivery-tracking Lua (tasks/tracking/lua/, and finish.lua's part) held to the exact
numbers it writes: times on the Redis clock, each key's lifetime, the lookup schedule, the
limits it is given. Each test fails on a one-line change to a script that test_status_model.py
lets through (the scripts are beyond mutmut's reach; they are mutated by hand)."""

from __future__ import annotations

import pytest
import redis

from config import Settings
from tasks.keys import Keys, as_text
from tasks.tracking.store import StatusStore
from tests.test_status_model import T0, T1, T2, accept, entries, event
from worker.ledger import Ledger
from worker.ownership import LeaseTimes, Ownership, script

LEASE_MS = 5000
LEDGER_TTL_S = 100_000  # the store's ttl (the ledger's below is 3600): each is told apart
PARK_S = 60
SLACK_MS = 2000  # a script's clock read against ours, on a loaded machine


@pytest.fixture
def settings() -> Settings:
    return Settings(
        ledger_ttl_s=LEDGER_TTL_S,
        callback_park_s=PARK_S,
        status_poll_after_s=10,
        status_poll_max_interval_s=50,
        status_give_up_s=86_400,
    )


@pytest.fixture
def store(redis_client: redis.Redis, keys: Keys, settings: Settings) -> StatusStore:
    return StatusStore(redis_client, keys, settings)


@pytest.fixture
def ledger(redis_client: redis.Redis, keys: Keys) -> Ledger:
    return Ledger(redis_client, keys, ttl_s=3600, leases=LeaseTimes(LEASE_MS, LEASE_MS))


def redis_ms(client: redis.Redis) -> int:
    """The Redis clock (what the scripts read), in ms."""
    seconds, micros = client.time()
    return int(seconds) * 1000 + int(micros) // 1000


def test_acceptance_is_stamped_with_the_redis_clock_in_ms(
    redis_client: redis.Redis, keys: Keys, own: Ownership, ledger: Ledger
) -> None:
    before = redis_ms(redis_client)
    accept(redis_client, keys, own, ledger, "j1", uuid="u-1")
    after = redis_ms(redis_client)
    assert before <= int(redis_client.hget(keys.message("u-1"), "accepted") or 0) <= after


def test_a_parked_event_waits_callback_park_s_and_its_list_an_hour_longer(
    redis_client: redis.Redis, keys: Keys, store: StatusStore
) -> None:
    before = redis_ms(redis_client)
    store.record([event("u-x", "delivered", T1)])
    after = redis_ms(redis_client)
    until = int(redis_client.zscore(keys.parked_index, "u-x") or 0)
    assert before + PARK_S * 1000 <= until <= after + PARK_S * 1000
    expires_at = redis_ms(redis_client) + int(redis_client.pttl(keys.parked("u-x")))
    assert until + 3_600_000 - SLACK_MS <= expires_at <= until + 3_600_000


def test_each_entry_names_its_message_and_job(
    redis_client: redis.Redis, keys: Keys, own: Ownership, ledger: Ledger, store: StatusStore
) -> None:
    accept(redis_client, keys, own, ledger, "j1", uuid="u-1")
    store.record([event("u-1", "sent", T0, "sent"), event("u-1", "read", T1, "read")])
    found = entries(redis_client, keys)
    assert [(e["messageUuid"], e["jobId"], e["event"]) for e in found] == [
        ("u-1", "j1", "sent"),
        ("u-1", "j1", "read"),  # the `delivered` it implies
        ("u-1", "j1", "read"),
    ]


def test_each_status_entry_keeps_the_jobs_history_for_ledger_ttl_s(
    redis_client: redis.Redis, keys: Keys, own: Ownership, ledger: Ledger, store: StatusStore
) -> None:
    """finish.lua starts the history with the ledger's ttl; every status entry extends it to
    the store's (LEDGER_TTL_S), on the job's own list, whichever script published it."""
    accept(redis_client, keys, own, ledger, "j1", uuid="u-1")
    accept(redis_client, keys, own, ledger, "j2", uuid="u-2")
    assert int(redis_client.ttl(keys.track("j1"))) <= 3600
    store.record([event("u-1", "sent", T0, "sent")])
    assert LEDGER_TTL_S - 60 < int(redis_client.ttl(keys.track("j1"))) <= LEDGER_TTL_S
    redis_client.hset(keys.message("u-2"), "accepted", 0)  # past STATUS_GIVE_UP_S
    redis_client.zadd(keys.tracking, {"u-2": 0})
    assert [f[1] for f in store.due(100).given_up.finals] == ["unknown"]
    assert LEDGER_TTL_S - 60 < int(redis_client.ttl(keys.track("j2"))) <= LEDGER_TTL_S
    assert not redis_client.exists(keys.track("SMS"))  # not the channel's


def test_a_price_entry_repeats_the_status_and_its_time(
    redis_client: redis.Redis, keys: Keys, own: Ownership, ledger: Ledger, store: StatusStore
) -> None:
    accept(redis_client, keys, own, ledger, "j1", uuid="u-1")
    price = '{"currency":"RUB","final":true,"invoicedParts":1,"totalPrice":1.5}'
    store.record([event("u-1", "undelivered", T1, code="6969")])
    store.record([event("u-1", "delivered", T2, "price", price=price)])
    last = entries(redis_client, keys)[-1]
    assert (last["status"], last["statusTime"], last["errorCode"]) == ("undelivered", T1, 6969)
    assert last["price"] is not None


def test_a_lookup_takes_at_most_the_limit_it_is_given(
    redis_client: redis.Redis, keys: Keys, own: Ownership, ledger: Ledger, store: StatusStore
) -> None:
    for i in range(3):
        accept(redis_client, keys, own, ledger, f"j{i}", uuid=f"u-{i}")
    redis_client.zadd(keys.tracking, {"u-0": 0, "u-1": 1, "u-2": 2})
    assert store.due(2).lookup == ["u-0", "u-1"]
    assert store.due(2).lookup == ["u-2"]


def test_a_give_up_reports_the_age_of_the_message(
    redis_client: redis.Redis, keys: Keys, own: Ownership, ledger: Ledger, store: StatusStore
) -> None:
    accept(redis_client, keys, own, ledger, "j1", uuid="u-1")
    accepted = redis_ms(redis_client) - 90_000_000
    redis_client.hset(keys.message("u-1"), "accepted", accepted)
    redis_client.zadd(keys.tracking, {"u-1": 0})
    [(channel, status, age_s)] = store.due(100).given_up.finals
    assert (channel, status) == ("SMS", "unknown")
    assert 90_000 <= age_s < 90_000 + SLACK_MS / 1000


def test_the_pause_doubles_from_status_poll_after_s_up_to_the_longest(
    redis_client: redis.Redis, keys: Keys, own: Ownership, ledger: Ledger, store: StatusStore
) -> None:
    """STATUS_POLL_AFTER_S 10 s, longest pause 50 s: 20 s, 40 s, then 50 s (not 80 s)."""
    accept(redis_client, keys, own, ledger, "j1", uuid="u-1")
    for pause_ms in [20_000, 40_000, 50_000]:
        redis_client.zadd(keys.tracking, {"u-1": 0})
        before = redis_ms(redis_client)
        assert store.due(100).lookup == ["u-1"]
        after = redis_ms(redis_client)
        next_ms = int(redis_client.zscore(keys.tracking, "u-1") or 0)
        assert before + pause_ms <= next_ms <= after + pause_ms
    assert as_text(redis_client.hget(keys.message("u-1"), "polls") or b"") == "3"


def test_a_single_parked_event_is_applied_with_the_outcome_and_the_ledgers_ttl(
    redis_client: redis.Redis, keys: Keys, own: Ownership, ledger: Ledger, store: StatusStore
) -> None:
    """finish.lua applies what was parked (one event is enough) with the ledger's ttl."""
    assert dict(store.record([event("u-1", "delivered", T1)]).results) == {"parked": 1}
    assert accept(redis_client, keys, own, ledger, "j1", uuid="u-1") == 1
    assert [(e["status"], e["final"]) for e in entries(redis_client, keys)] == [("delivered", True)]
    assert 3500 < int(redis_client.ttl(keys.track("j1"))) <= 3600
    assert not redis_client.exists(keys.parked("u-1"))


def test_the_lease_is_one_holders_who_renews_it(redis_client: redis.Redis, keys: Keys) -> None:
    """singleton.lua: 1 for the holder (taken, or renewed to the full lease), 0 for another."""
    singleton = script(redis_client, "singleton")
    lease = keys.lease("poller")
    assert singleton(keys=[lease], args=["node-a", LEASE_MS]) == 1
    assert singleton(keys=[lease], args=["node-b", LEASE_MS]) == 0
    redis_client.pexpire(lease, 100)
    assert singleton(keys=[lease], args=["node-a", LEASE_MS]) == 1
    assert LEASE_MS - SLACK_MS < int(redis_client.pttl(lease)) <= LEASE_MS
    assert singleton(keys=[lease], args=["node-b", LEASE_MS]) == 0
    assert redis_client.get(lease) == b"node-a"
