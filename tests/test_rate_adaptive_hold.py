"""ADAPTIVE_RATE's hold (worker/rate_limits/adaptive.HOLD_MS), on a real Redis: the 429s of
requests reserved before a cut are not a new event. They come after the pause the first 429
set (a Retry-After is whole seconds) and for as long as the reservations the bulk processes
made at the old rate last; counted as new, each cut the rate again (bench/rate_limits.py,
2026-11-24: four cuts in 6 s, from the operator's 1000/s to 55/s)."""

from __future__ import annotations

import pytest
import redis

from tasks.keys import Keys
from tests.test_rate_limits import ENDPOINT, effective, settings
from worker.rate_limits import adaptive
from worker.rate_limits.limiter import RateLimiter


def test_429s_from_reservations_older_than_the_cut_cut_no_more(
    redis_client: redis.Redis, keys: Keys
) -> None:
    config = settings(sms_rate_limit=1000, adaptive_rate=True)
    rl = RateLimiter(redis_client, keys, config)
    rl.throttled("SMS", ENDPOINT, 1.0)
    assert effective(redis_client, keys, config, "channel:SMS") == pytest.approx(500, abs=10)
    state = keys.rate_adaptive("SMS")
    cut_at = float(redis_client.hget(state, "hit") or 0)
    # Past the 1 s pause: requests 3 pods x 2 processes reserved at 1000/s, 1000 SMS each.
    for ms in (2000, 6000):
        redis_client.hset(state, "hit", cut_at - ms)  # as if the cut was `ms` ago
        redis_client.hset(keys.pause(ENDPOINT), "until", 0)
        rl.throttled("SMS", ENDPOINT, 1.0)
        assert effective(redis_client, keys, config, "channel:SMS") == pytest.approx(500, abs=10)
    # Past the hold, a 429 is news: the rate is still too high.
    redis_client.hset(state, "hit", cut_at - adaptive.HOLD_MS - 1)
    redis_client.hset(keys.pause(ENDPOINT), "until", 0)
    rl.throttled("SMS", ENDPOINT, 1.0)
    assert effective(redis_client, keys, config, "channel:SMS") == pytest.approx(250, abs=10)
