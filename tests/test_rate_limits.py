"""The send-rate limits every pod shares (worker/rate_limits/), on a real Redis: the GCRA
script over several buckets, the adaptive rate, the pause a 429 sets; and the API client
waiting for its budget against the real sandbox."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from config import Settings
from tasks.channels import CHANNELS
from tasks.keys import Keys, as_text
from tests.conftest import SANDBOX_TOKEN
from tests.contract_cases import BASE
from tests.sandbox_client import set_faults
from worker.api_client import ApiClient
from worker.circuit import Circuit
from worker.delivery import Sending, deliver
from worker.rate_limits import adaptive
from worker.rate_limits import limiter as limiter_module
from worker.rate_limits.limiter import RateLimiter
from worker.rate_limits.state import read_rates

ENDPOINT = "/api/v1/message"


def settings(**values: Any) -> Settings:
    return Settings.model_validate(values)


def limiter(client: redis.Redis, keys: Keys, **values: Any) -> RateLimiter:
    return RateLimiter(client, keys, settings(**values))


def redis_ms(client: redis.Redis) -> float:
    seconds, micros = client.time()
    return seconds * 1000 + micros / 1000


def tat_ahead_ms(client: redis.Redis, key: str) -> float:
    """How far a bucket's TAT is ahead of Redis's clock now."""
    value = client.get(key)
    assert value is not None
    return float(value) - redis_ms(client)


def test_a_burst_goes_at_once_then_the_rate_paces(redis_client: redis.Redis, keys: Keys) -> None:
    """100/s with a 1 s burst: ten requests of 10 go at once, the eleventh waits 100 ms."""
    rl = limiter(redis_client, keys, sms_rate_limit=100, rate_burst_s=1.0)
    waits = [rl.reserve("SMS", ENDPOINT, 10) for _ in range(11)]
    assert waits[:10] == [0.0] * 10
    assert 0.08 <= waits[10] <= 0.1


def test_reservations_queue_in_order(redis_client: redis.Redis, keys: Keys) -> None:
    """Once the burst is used, each request is given the next slot: 0.5 s apart at 20/s."""
    rl = limiter(redis_client, keys, sms_rate_limit=20, rate_burst_s=0.5)
    waits = [rl.reserve("SMS", ENDPOINT, 10) for _ in range(4)]
    assert waits[0] == 0.0
    for earlier, later in itertools.pairwise(waits[1:]):
        assert later - earlier == pytest.approx(0.5, abs=0.02)
    assert waits[1] == pytest.approx(0.5, abs=0.02)


def test_a_request_larger_than_the_burst_is_paced_not_refused(
    redis_client: redis.Redis, keys: Keys
) -> None:
    """300 units at 100/s (3 s, over the 1 s burst) go at once; the next request waits for
    the 3 s they cost, less the burst."""
    rl = limiter(redis_client, keys, sms_rate_limit=100, rate_burst_s=1.0)
    assert rl.reserve("SMS", ENDPOINT, 300) == 0.0
    assert rl.reserve("SMS", ENDPOINT, 1) == pytest.approx(2.01, abs=0.02)


def test_an_idle_bucket_fills_again(redis_client: redis.Redis, keys: Keys) -> None:
    rl = limiter(redis_client, keys, sms_rate_limit=1000, rate_burst_s=0.1)
    assert rl.reserve("SMS", ENDPOINT, 100) == 0.0
    assert rl.reserve("SMS", ENDPOINT, 10) > 0.0
    time.sleep(0.25)  # the 10 ms reserved and the 100 ms of burst have passed
    assert rl.reserve("SMS", ENDPOINT, 100) == 0.0


def test_bucket_keys_expire_once_full_again(redis_client: redis.Redis, keys: Keys) -> None:
    rl = limiter(redis_client, keys, sms_rate_limit=100, account_rate_limit=1000)
    rl.reserve("SMS", ENDPOINT, 200)
    for bucket, cost_ms in (("channel:SMS", 2000), ("account", 200), ("bulk", 250)):
        ttl = redis_client.pttl(keys.rate(bucket))
        assert cost_ms < ttl <= cost_ms + 1000, bucket
    assert not redis_client.exists(keys.rate("channel:WHATSAPP"))  # unlimited: never written


def test_the_slowest_bucket_sets_the_time_and_every_bucket_is_charged(
    redis_client: redis.Redis, keys: Keys
) -> None:
    """SMS at 50/s under an account of 1000/s (bulk 800/s): the channel decides; the
    account and bulk buckets are charged all the same, WHATSAPP then feels them."""
    rl = limiter(redis_client, keys, sms_rate_limit=50, account_rate_limit=1000, rate_burst_s=1)
    assert rl.reserve("SMS", ENDPOINT, 100) == 0.0  # 2 s of SMS, 0.1 s of the account
    assert rl.reserve("SMS", ENDPOINT, 10) == pytest.approx(1.2, abs=0.02)
    # Charged from when the request goes: 1.2 s, plus 10 ms for its 10 units.
    assert tat_ahead_ms(redis_client, keys.rate("account")) == pytest.approx(1210, abs=20)
    # WHATSAPP has no limit of its own, but the bulk bucket (800/s) is 1.2125 s ahead: 800
    # units (1 s of it, the whole burst) go when it has caught up.
    assert rl.reserve("WHATSAPP", ENDPOINT, 800) == pytest.approx(1.2125, abs=0.03)


def test_a_campaign_never_takes_the_codes_share(redis_client: redis.Redis, keys: Keys) -> None:
    """Account 1000/s, codes' share 0.2: a campaign of 8 requests queued ahead paces at
    800/s, and codes still go at once, never behind the campaign's queue; codes beyond the
    gaps the campaign leaves push its next request back."""
    rl = limiter(redis_client, keys, account_rate_limit=1000, otp_rate_share=0.2)
    campaign = [rl.reserve("SMS", ENDPOINT, 1000) for _ in range(8)]
    assert campaign == pytest.approx([1.25 * k for k in range(8)], abs=0.05)  # 800/s
    codes = [rl.reserve("FLASHCALL", ENDPOINT, 10) for _ in range(101)]
    assert codes == [0.0] * 101
    # Without the codes the next campaign request would go at 10 s (the bulk bucket); their
    # 1,010 units came first: 10.76 s (the account, 9.75 s ahead before them).
    assert rl.reserve("SMS", ENDPOINT, 1000) == pytest.approx(10.76, abs=0.05)


def test_codes_alone_may_use_the_whole_account(redis_client: redis.Redis, keys: Keys) -> None:
    rl = limiter(redis_client, keys, account_rate_limit=100, otp_rate_share=0.2, rate_burst_s=1)
    assert rl.reserve("FLASHCALL", ENDPOINT, 100) == 0.0  # all 100 of the burst, not 20
    assert rl.reserve("FLASHCALL", ENDPOINT, 10) == pytest.approx(0.1, abs=0.02)


def test_the_request_costs_the_units_of_its_objects(
    redis_client: redis.Redis,
    keys: Keys,
    sandbox_url: str,
    sandbox: httpx.Client,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The limiter charges the sum of `message_units` of the request's objects (whatever
    they are: tasks/segments.py decides), with RATE_LIMIT_UNIT passed on."""
    seen: list[str] = []

    def units(channel: str, obj: Mapping[str, Any], unit: str) -> int:
        seen.append(unit)
        return int(obj["destination"][-1]) + 1

    monkeypatch.setattr(limiter_module, "message_units", units)
    config = settings(
        revicom_api_url=sandbox_url,
        revicom_api_token=SANDBOX_TOKEN,
        sms_rate_limit=10,
        rate_limit_unit="segment",
    )
    api = ApiClient(config, limiter=RateLimiter(redis_client, keys, config))
    objects = [BASE["SMS"] | {"destination": f"1408555000{i}"} for i in range(4)]  # 1+2+3+4
    answer = api.post(ENDPOINT, objects, "SMS")
    assert answer.status == 200
    assert seen == ["segment"] * 4
    # 10 units at 10/s: the bucket is 1 s ahead.
    assert tat_ahead_ms(redis_client, keys.rate("channel:SMS")) == pytest.approx(1000, abs=60)


def test_a_429_pauses_the_endpoint_for_every_pod(redis_client: redis.Redis, keys: Keys) -> None:
    one, other = limiter(redis_client, keys), limiter(redis_client, keys)
    assert one.throttled("SMS", ENDPOINT, 2.0) == pytest.approx(2.0, abs=0.01)
    assert other.paused_for(ENDPOINT) == pytest.approx(2.0, abs=0.05)
    # Any channel of that endpoint waits (the account is throttled, codes too) ...
    assert other.reserve("FLASHCALL", ENDPOINT, 1) == pytest.approx(2.0, abs=0.05)
    # ... and no other endpoint.
    assert other.reserve("FLASHCALL_CONVERSION", "/api/v1/flashcall-conversion", 1) == 0.0
    ttl = redis_client.pttl(keys.pause(ENDPOINT))
    assert 2000 + 50_000 < ttl <= 2000 + 60_000  # forgotten a minute after it ends


def test_a_429_without_retry_after_backs_off_exponentially(
    redis_client: redis.Redis, keys: Keys
) -> None:
    rl = limiter(redis_client, keys, retry_backoff_ms=100, retry_backoff_max_ms=350)
    pauses = []
    for _ in range(4):
        redis_client.hset(keys.pause(ENDPOINT), "until", 0)  # the last pause is over
        pauses.append(rl.throttled("SMS", ENDPOINT, None))
    assert pauses == pytest.approx([0.1, 0.2, 0.35, 0.35], abs=0.002)


def test_a_shorter_retry_after_never_shortens_a_pause(
    redis_client: redis.Redis, keys: Keys
) -> None:
    rl = limiter(redis_client, keys)
    rl.throttled("SMS", ENDPOINT, 3.0)
    assert rl.throttled("SMS", ENDPOINT, 1.0) == pytest.approx(3.0, abs=0.05)


def effective(client: redis.Redis, keys: Keys, config: Settings, bucket: str) -> float:
    rates = read_rates(client, keys, config)
    return next(limit.effective for limit in rates.limits if limit.bucket == bucket)


def test_adaptive_rate_halves_on_a_429_and_climbs_back_to_its_limit(
    redis_client: redis.Redis, keys: Keys
) -> None:
    config = settings(sms_rate_limit=100, adaptive_rate=True)
    rl = RateLimiter(redis_client, keys, config)
    assert effective(redis_client, keys, config, "channel:SMS") == 100
    rl.throttled("SMS", ENDPOINT, 0.0)
    assert effective(redis_client, keys, config, "channel:SMS") == pytest.approx(50, abs=0.5)
    rl.throttled("SMS", ENDPOINT, 0.0)  # the same event (within HOLD_MS): no second cut
    assert effective(redis_client, keys, config, "channel:SMS") == pytest.approx(50, abs=0.5)
    # It is what the bucket draws on: 50 units now cost 1 s.
    assert rl.reserve("SMS", ENDPOINT, 50) == 0.0
    assert tat_ahead_ms(redis_client, keys.rate("channel:SMS")) == pytest.approx(1000, abs=30)
    # +5 % of the limit a second: 2 s later, 60; long after, the limit and never more.
    state = keys.rate_adaptive("SMS")
    at = float(redis_client.hget(state, "at") or 0)
    redis_client.hset(state, "at", at - 2000)
    assert effective(redis_client, keys, config, "channel:SMS") == pytest.approx(60, abs=0.5)
    redis_client.hset(state, "at", at - 600_000)
    assert effective(redis_client, keys, config, "channel:SMS") == 100


def accepted_history(client: redis.Redis, keys: Keys, requests: list[tuple[float, int]]) -> None:
    """A channel's accepted units as accepted.lua counts them, for requests (ms ago, units)
    accepted in that order."""
    now = redis_ms(client)
    key = keys.rate_accepted("SMS")
    client.delete(key)
    (first_ago, first), (last_ago, _) = requests[0], requests[-1]
    client.hset(key, mapping={"from": now - first_ago, "first": first, "last": now - last_ago})
    for ago, units in requests:
        client.hincrby(key, str(int((now - ago) // 1000)), units)


def test_accepted_units_are_counted_by_second_over_a_window(
    redis_client: redis.Redis, keys: Keys
) -> None:
    rl = limiter(redis_client, keys, adaptive_rate=True)
    key = keys.rate_accepted("SMS")
    old = int(redis_ms(redis_client) // 1000) - adaptive.WINDOW_S
    redis_client.hset(key, str(old), 999)  # a second out of the window: dropped
    before = redis_ms(redis_client)
    rl.accepted("SMS", 1000)
    rl.accepted("SMS", 500)
    count = {as_text(k): float(v) for k, v in redis_client.hgetall(key).items()}
    assert before <= count.pop("from") <= count.pop("last") <= redis_ms(redis_client)
    assert count.pop("first") == 1000
    assert sum(count.values()) == 1500
    assert all(int(second) > old for second in count)
    assert 0 < redis_client.pttl(key) <= adaptive.WINDOW_S * 1000
    # With a configured limit nothing is learnt, so nothing is counted.
    counted = redis_client.hgetall(key)
    limiter(redis_client, keys, adaptive_rate=True, sms_rate_limit=100).accepted("SMS", 7)
    assert redis_client.hgetall(key) == counted


def test_adaptive_rate_learns_a_rate_where_none_is_set(
    redis_client: redis.Redis, keys: Keys
) -> None:
    """No limit: the shared pause alone holds the channel until what the API accepted spans
    LEARN_MS; a 429 then starts the rate at CAP_MARGIN of it."""
    config = settings(adaptive_rate=True)
    rl = RateLimiter(redis_client, keys, config)
    assert effective(redis_client, keys, config, "channel:SMS") == 0
    for _ in range(6):
        rl.accepted("SMS", 100)
    assert rl.throttled("SMS", ENDPOINT, 1.0) == pytest.approx(1.0, abs=0.05)
    assert effective(redis_client, keys, config, "channel:SMS") == 0  # too short to tell
    # As the benchmark's operator allows it (1000/s, burst 1000) under the shared pause: a
    # 1000-unit request every 1.05 s. The last second or two held 0, 1 or 2 of them (what the
    # first 429 used to learn from: 51-90 % of the rate); 6.3 s of them hold 6 after the first.
    accepted_history(redis_client, keys, [(6300 - 1050 * i, 1000) for i in range(7)])
    rl.throttled("SMS", ENDPOINT, 1.0)
    learnt = effective(redis_client, keys, config, "channel:SMS")
    assert learnt == pytest.approx(6000 / 6.3 * adaptive.CAP_MARGIN, rel=0.01)
    cap = float(redis_client.hget(keys.rate_adaptive("SMS"), "cap") or 0)
    assert cap == pytest.approx(learnt, rel=0.001)
    # No climb above it but the cap's slow creep.
    at = float(redis_client.hget(keys.rate_adaptive("SMS"), "at") or 0)
    redis_client.hset(keys.rate_adaptive("SMS"), "at", at - 20_000)
    assert effective(redis_client, keys, config, "channel:SMS") == pytest.approx(
        cap * (1 + 20 * adaptive.CREEP_PER_S), rel=0.01
    )
    assert redis_client.pttl(keys.rate_adaptive("SMS")) > 3_500_000  # forgotten in an hour


def test_a_rate_learnt_after_a_long_history_is_the_window_s(
    redis_client: redis.Redis, keys: Keys
) -> None:
    """Sending for a minute before the first 429: the rate is the last WINDOW_S seconds'."""
    config = settings(adaptive_rate=True)
    accepted_history(redis_client, keys, [(60_000 - 250 * i, 100) for i in range(241)])
    RateLimiter(redis_client, keys, config).throttled("SMS", ENDPOINT, 1.0)
    learnt = effective(redis_client, keys, config, "channel:SMS") / adaptive.CAP_MARGIN
    # 400 units a second; the window's oldest second is counted whole.
    assert 390 <= learnt <= 400 * adaptive.WINDOW_S / (adaptive.WINDOW_S - 1)


def test_a_learnt_rate_is_cut_from_itself_not_from_the_last_seconds(
    redis_client: redis.Redis, keys: Keys
) -> None:
    """Once a rate is in force, a 429 halves it: what the API accepted over the last second
    or so says little when each request is a second of the rate."""
    config = settings(adaptive_rate=True)
    rl = RateLimiter(redis_client, keys, config)
    state = keys.rate_adaptive("SMS")
    now = redis_ms(redis_client)
    redis_client.hset(state, mapping={"rate": 900, "cap": 900, "at": now, "hit": now - 60_000})
    rl.accepted("SMS", 100)  # one small request in the last second
    rl.throttled("SMS", ENDPOINT, 1.0)
    assert effective(redis_client, keys, config, "channel:SMS") == pytest.approx(
        900 * adaptive.DECREASE, rel=0.01
    )
    assert float(redis_client.hget(state, "cap") or 0) == pytest.approx(
        900 * adaptive.CAP_MARGIN, rel=0.01
    )


def test_without_adaptive_rate_a_429_changes_no_rate(redis_client: redis.Redis, keys: Keys) -> None:
    config = settings(sms_rate_limit=100)
    RateLimiter(redis_client, keys, config).throttled("SMS", ENDPOINT, 0.0)
    assert effective(redis_client, keys, config, "channel:SMS") == 100
    assert not redis_client.exists(keys.rate_adaptive("SMS"))


def api_settings(url: str, **values: Any) -> Settings:
    return settings(
        revicom_api_url=url,
        revicom_api_token=SANDBOX_TOKEN,
        retry_backoff_ms=1,
        retry_backoff_max_ms=5,
        retry_max_attempts=3,
        circuit_failures=3,
        **values,
    )


def sms(count: int) -> list[dict[str, Any]]:
    return [BASE["SMS"] | {"destination": f"1408555{i:04d}"} for i in range(count)]


def test_a_429_is_waited_out_outside_the_deadline_and_not_told_to_the_circuit(
    redis_client: redis.Redis, keys: Keys, sandbox_url: str, sandbox: httpx.Client
) -> None:
    """Retry-After 1 s with 0.5 s of deadline left: the pause is waited out (it is no retry
    time), the second attempt is accepted, and the circuit counted nothing."""
    config = api_settings(sandbox_url)
    api = ApiClient(config, limiter=RateLimiter(redis_client, keys, config))
    circuit = Circuit(redis_client, keys, config)
    set_faults(sandbox, status={"status": 429, "next": 1, "retryAfter": 1})
    how = Sending(ENDPOINT, "SMS", time.monotonic() + 0.5, circuit)
    results, stats = deliver(api, how, sms(2))
    assert [(r.status, r.attempts) for r in results] == [("accepted", 2)] * 2
    assert stats.waited_s >= 0.95
    assert redis_client.hgetall(keys.circuit) == {}
    assert redis_client.exists(keys.pause(ENDPOINT))


def test_429s_until_the_last_attempt_return_the_jobs(
    redis_client: redis.Redis, keys: Keys, sandbox_url: str, sandbox: httpx.Client
) -> None:
    """A throttled account is not the messages' fault: they wait in their stream (returned),
    no outcome, no dead letter; and the circuit stays closed."""
    config = api_settings(sandbox_url)
    api = ApiClient(config, limiter=RateLimiter(redis_client, keys, config))
    circuit = Circuit(redis_client, keys, config)
    set_faults(sandbox, status={"status": 429, "next": 10, "retryAfter": 0})
    results, _ = deliver(api, Sending(ENDPOINT, "SMS", time.monotonic() + 10, circuit), sms(1))
    assert [(r.status, r.attempts, r.http_status) for r in results] == [("returned", 3, 429)]
    assert circuit.state().open is False


def test_a_batch_that_lost_its_lease_while_it_waited_sends_nothing(
    redis_client: redis.Redis, keys: Keys, sandbox_url: str, sandbox: httpx.Client
) -> None:
    config = api_settings(sandbox_url, sms_rate_limit=10, rate_burst_s=0.1)
    rl = RateLimiter(redis_client, keys, config)
    rl.reserve("SMS", ENDPOINT, 3)  # the next request waits 0.2 s
    api = ApiClient(config, limiter=rl)
    held = iter([True])  # held when the request starts, in doubt after the wait
    how = Sending(ENDPOINT, "SMS", time.monotonic() + 10, still_held=lambda: next(held, False))
    results, _ = deliver(api, how, sms(1))
    assert [(r.status, r.attempts) for r in results] == [("returned", 0)]
    assert sandbox.get("/_sandbox/stats").json()["requests"] == 0


@pytest.mark.parametrize(
    ("values", "problem"),
    [
        ({"otp_rate_share": 1}, "otp_rate_share"),
        ({"otp_rate_share": -0.1}, "otp_rate_share"),
        ({"sms_rate_limit": -1}, "sms_rate_limit"),
        ({"account_rate_limit": float("inf")}, "account_rate_limit"),
        ({"rate_limit_unit": "byte"}, "rate_limit_unit"),
        ({"rate_burst_s": 0}, "rate_burst_s"),
        ({"sms_rate_limit": 1}, "SMS_BATCH_SIZE x MAX_QUEUED_BATCHES"),
        ({"account_rate_limit": 5, "otp_rate_share": 0.5}, "SMS_BATCH_SIZE"),
    ],
)
def test_rate_settings_are_checked(values: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        settings(**values)


def test_every_channel_reads_its_rate_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    for channel in CHANNELS:
        monkeypatch.setenv(f"{channel}_RATE_LIMIT", "12.5")
    config = Settings()
    assert {config.tuning(c).rate_limit for c in CHANNELS} == {12.5}


def test_status_shows_the_limits_and_a_pause(
    redis_url: str, redis_client: redis.Redis, keys: Keys
) -> None:
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "DISPATCH_KEY_PREFIX": keys.prefix,
        "SMS_RATE_LIMIT": "200",
        "ACCOUNT_RATE_LIMIT": "1000",
        "ADAPTIVE_RATE": "true",
    }
    config = settings(sms_rate_limit=200, account_rate_limit=1000, adaptive_rate=True)
    RateLimiter(redis_client, keys, config).throttled("SMS", ENDPOINT, 30.0)
    script = str(Path(sys.executable).with_name("revicom-dispatch"))
    run = partial(subprocess.run, env=env, capture_output=True, text=True, timeout=30, check=True)
    data = json.loads(run([script, "status", "--json"]).stdout)["rates"]
    limits = {limit["bucket"]: limit for limit in data["limits"]}
    assert limits["channel:SMS"]["configured"] == 200
    # Halved by the 429, then climbing back by 10/s while the command starts.
    assert 100 <= limits["channel:SMS"]["effective"] < 130
    assert limits["bulk"] == {"bucket": "bulk", "configured": 800, "effective": 800}
    [pause] = [p for p in data["pauses"] if p["endpoint"] == ENDPOINT]
    assert 28 < pause["remaining_s"] <= 30
    text = run([script, "status"]).stdout
    assert "channel:SMS 200/s (now 1" in text
    assert "account 1000/s, bulk 800/s" in text
    assert f"POST {ENDPOINT} PAUSED for" in text
