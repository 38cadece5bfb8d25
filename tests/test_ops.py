"""`status` and `replay` against a real Redis."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import redis

from ops.replay import replay
from ops.status import snapshot
from tasks.jobs import Outcome
from tasks.keys import CONSUMER_GROUP, JOB_FIELD, Keys
from tasks.producer import Producer
from tests.contract_cases import BASE

SCRIPT = Path(sys.executable).with_name("revicom-dispatch")


def test_status_counts_every_stream(redis_client: redis.Redis, keys: Keys) -> None:
    producer = Producer(redis_client, keys)
    producer.enqueue_many([BASE["SMS"]] * 5 + [BASE["FLASHCALL"]] * 2)
    redis_client.xgroup_create(keys.jobs("SMS"), CONSUMER_GROUP, id="0")
    redis_client.xreadgroup(CONSUMER_GROUP, "w1", {keys.jobs("SMS"): ">"}, count=3)
    redis_client.xadd(keys.results, {"outcome": "{}"})
    redis_client.xadd(keys.dead, {"job": "{}"})

    state = snapshot(redis_client, keys)
    by_channel = {c.channel: c for c in state.channels}
    sms = by_channel["SMS"]
    assert (sms.length, sms.pending, sms.consumers, sms.queue) == (5, 3, 1, "bulk")
    assert sms.unread in (2, None)  # Redis < 7 does not report the group's lag
    assert sms.oldest_pending_age_s is not None
    assert sms.oldest_pending_age_s >= 0
    flashcall = by_channel["FLASHCALL"]
    assert (flashcall.length, flashcall.unread, flashcall.pending, flashcall.queue) == (
        2,
        2,
        0,
        "otp",
    )
    assert by_channel["VOICECODE"].length == 0
    assert (state.results, state.dead) == (1, 1)


def test_status_command_json(redis_url: str, redis_client: redis.Redis, keys: Keys) -> None:
    Producer(redis_client, keys).enqueue(BASE["WHATSAPP"])
    env = {**os.environ, "REDIS_URL": redis_url, "DISPATCH_KEY_PREFIX": keys.prefix}
    done = subprocess.run(
        [str(SCRIPT), "status", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    data = json.loads(done.stdout)
    [whatsapp] = [c for c in data["channels"] if c["channel"] == "WHATSAPP"]
    assert whatsapp["length"] == 1
    assert set(data) == {
        "channels",
        "results",
        "dead",
        "stray",
        "circuit",
        "results_bytes",
        "dead_bytes",
        "tracking",
        "balance",
        "rates",
    }
    assert data["circuit"] == {"open": False, "reason": "", "open_for_s": None}
    assert data["tracking"] == {"statuses": 0, "awaiting_final": 0, "overdue": 0, "parked": 0}


def test_status_names_streams_no_worker_reads(
    redis_url: str, redis_client: redis.Redis, keys: Keys
) -> None:
    redis_client.xadd(f"{keys.prefix}:jobs:sms", {"job": "{}"})
    redis_client.xadd(f"{keys.prefix}:jobs:VIBER", {"job": "{}"})
    redis_client.xadd(f"{keys.prefix}:jobs:VIBER", {"job": "{}"})
    redis_client.set(f"{keys.prefix}:jobs:not-a-stream", "x")
    Producer(redis_client, keys).enqueue(BASE["SMS"])
    state = snapshot(redis_client, keys)
    assert [(s.stream, s.length) for s in state.stray] == [
        (f"{keys.prefix}:jobs:VIBER", 2),
        (f"{keys.prefix}:jobs:sms", 1),
    ]
    env = {**os.environ, "REDIS_URL": redis_url, "DISPATCH_KEY_PREFIX": keys.prefix}
    done = subprocess.run(
        [str(SCRIPT), "status"], env=env, capture_output=True, text=True, timeout=30, check=True
    )
    assert f"{keys.prefix}:jobs:VIBER holds 2 entries that no worker reads" in done.stdout


def dead_letter(client: redis.Redis, keys: Keys, job_id: str, message: dict[str, Any]) -> None:
    job = json.dumps({"jobId": job_id, "message": message})
    outcome = Outcome(jobId=job_id, status="failed", channelType="X").to_wire()
    client.xadd(keys.dead, {JOB_FIELD: job, "outcome": outcome})


def test_replay_moves_dead_letters_back_with_their_job_ids(
    redis_client: redis.Redis, keys: Keys
) -> None:
    for i in range(3):
        dead_letter(redis_client, keys, f"sms-{i}", BASE["SMS"])
    dead_letter(redis_client, keys, "otp-0", BASE["FLASHCALL"])
    dead_letter(redis_client, keys, "conv-0", BASE["FLASHCALL_CONVERSION"])

    assert replay(redis_client, keys, channel="SMS", limit=2) == {"SMS": 2}
    assert redis_client.xlen(keys.dead) == 3
    assert replay(redis_client, keys) == {"SMS": 1, "FLASHCALL": 1, "FLASHCALL_CONVERSION": 1}
    assert redis_client.xlen(keys.dead) == 0

    sms: Any = redis_client.xrange(keys.jobs("SMS"))
    assert [json.loads(f[b"job"])["jobId"] for _, f in sms] == ["sms-0", "sms-1", "sms-2"]
    assert redis_client.xlen(keys.jobs("FLASHCALL_CONVERSION")) == 1


def test_replay_command(redis_url: str, redis_client: redis.Redis, keys: Keys) -> None:
    dead_letter(redis_client, keys, "v", BASE["VOICECODE"])
    env = {**os.environ, "REDIS_URL": redis_url, "DISPATCH_KEY_PREFIX": keys.prefix}
    done = subprocess.run(
        [str(SCRIPT), "replay", "--channel", "VOICECODE"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert "VOICECODE: 1 job(s) replayed" in done.stdout
    refused = subprocess.run(
        [str(SCRIPT), "replay", "--channel", "VIBER"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert refused.returncode == 2
