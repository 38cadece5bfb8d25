"""`revicom-dispatch statuses` and `track`, run as the installed console script."""

from __future__ import annotations

import json

import pytest
import redis

from config import Settings
from tasks.keys import Keys
from tasks.tracking.store import StatusStore
from tests.test_cli import run
from tests.test_status_model import accept, event
from worker.ledger import Ledger
from worker.ownership import LeaseTimes, Ownership


@pytest.fixture
def delivered(redis_client: redis.Redis, keys: Keys) -> None:
    """j1 accepted, sent then delivered; j2 accepted, no status yet."""
    redis_client.xgroup_create(keys.jobs("SMS"), "dispatch", id="0", mkstream=True)
    own = Ownership(redis_client, keys, LeaseTimes(5000, 5000))
    ledger = Ledger(redis_client, keys, ttl_s=3600, leases=LeaseTimes(5000, 5000))
    accept(redis_client, keys, own, ledger, "j1", uuid="u-1")
    accept(redis_client, keys, own, ledger, "j2", uuid="u-2")
    price = '{"currency":"RUB","final":true,"invoicedParts":1,"totalPrice":1.5}'
    StatusStore(redis_client, keys, Settings()).record(
        [
            event("u-1", "sent", "2026-11-24T10:00:00Z", "sent"),
            event("u-1", "delivered", "2026-11-24T10:00:05Z", price=price),
        ]
    )


def env(redis_url: str, keys: Keys) -> dict[str, str]:
    return {"REDIS_URL": redis_url, "DISPATCH_KEY_PREFIX": keys.prefix}


@pytest.mark.usefixtures("delivered")
def test_statuses_prints_each_change_as_json(redis_url: str, keys: Keys) -> None:
    done = run("statuses", **env(redis_url, keys))
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(e["jobId"], e["status"], e["final"]) for e in lines] == [
        ("j1", "sent", False),
        ("j1", "delivered", True),
    ]
    assert lines[1]["price"]["totalPrice"] == 1.5


@pytest.mark.usefixtures("delivered")
def test_statuses_through_a_group_resumes(redis_url: str, keys: Keys) -> None:
    first = run("statuses", "--group", "app", "--consumer", "c1", **env(redis_url, keys))
    assert len(first.stdout.splitlines()) == 2
    again = run("statuses", "--group", "app", "--consumer", "c2", **env(redis_url, keys))
    assert again.stdout == ""


@pytest.mark.usefixtures("delivered")
def test_track_prints_the_outcome_and_the_history(redis_url: str, keys: Keys) -> None:
    done = run("track", "j1", "j2", **env(redis_url, keys))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "j1:"
    assert "accepted u-1" in lines[1]
    assert lines[2].startswith("  2026-11-24T10:00:00Z  sent  [callback sent]")
    assert "delivered (final) price 1.5 RUB" in lines[3]
    assert lines[4:] == ["j2:", lines[5]]
    assert "accepted u-2" in lines[5]


@pytest.mark.usefixtures("delivered")
def test_track_json_and_an_unknown_job(redis_url: str, keys: Keys) -> None:
    done = run("track", "j1", "nope", "--json", **env(redis_url, keys))
    assert done.returncode == 1
    known, unknown = (json.loads(line) for line in done.stdout.splitlines())
    assert [o["status"] for o in known["outcomes"]] == ["accepted"]
    assert [s["status"] for s in known["statuses"]] == ["sent", "delivered"]
    assert unknown == {"jobId": "nope", "outcomes": [], "statuses": [], "trimmed": 0}
    plain = run("track", "x" * 5000, **env(redis_url, keys))
    assert plain.returncode == 1
    assert len(plain.stdout) < 200
    assert plain.stderr == ""


def test_redis_unreachable_is_one_line(keys: Keys) -> None:
    for command in (["statuses"], ["track", "j1"]):
        done = run(*command, REDIS_URL="redis://127.0.0.1:1/0", DISPATCH_KEY_PREFIX=keys.prefix)
        assert done.returncode == 2
        assert done.stderr.startswith("Redis error:")
        assert "Traceback" not in done.stderr
