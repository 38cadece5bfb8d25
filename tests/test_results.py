"""Reading outcomes: the Python iterator and `revicom-dispatch results`, on real Redis."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import redis

from tasks.jobs import Outcome
from tasks.keys import OUTCOME_FIELD, Keys
from tasks.results import iter_outcomes

SCRIPT = Path(sys.executable).with_name("revicom-dispatch")


def publish(client: redis.Redis, keys: Keys, *job_ids: str) -> None:
    for job_id in job_ids:
        outcome = Outcome(jobId=job_id, status="accepted", channelType="SMS")
        client.xadd(keys.results, {OUTCOME_FIELD: outcome.to_wire()})


def test_iterator_reads_everything_and_stops(redis_client: redis.Redis, keys: Keys) -> None:
    publish(redis_client, keys, "a", "b", "c")
    assert [o.jobId for _, o in iter_outcomes(redis_client, keys)] == ["a", "b", "c"]


def test_a_group_resumes_where_it_stopped(redis_client: redis.Redis, keys: Keys) -> None:
    publish(redis_client, keys, "a", "b", "c")
    reader = iter_outcomes(redis_client, keys, group="app")
    assert next(reader)[1].jobId == "a"
    assert next(reader)[1].jobId == "b"  # acknowledges a
    reader.close()  # crashed while handling b: a, b, c were given to it, none acknowledged
    publish(redis_client, keys, "d")
    again = [o.jobId for _, o in iter_outcomes(redis_client, keys, group="app")]
    assert again == ["a", "b", "c", "d"]  # at least once: a batch is acknowledged as a whole
    assert redis_client.xpending(keys.results, "app")["pending"] == 0
    other = [o.jobId for _, o in iter_outcomes(redis_client, keys, group="app", consumer="2")]
    assert other == []  # the group has delivered everything


def test_results_command_prints_json_lines(
    redis_url: str, redis_client: redis.Redis, keys: Keys
) -> None:
    publish(redis_client, keys, "x", "y")
    env = {**os.environ, "REDIS_URL": redis_url, "DISPATCH_KEY_PREFIX": keys.prefix}
    done = subprocess.run(
        [str(SCRIPT), "results"], env=env, capture_output=True, text=True, timeout=30, check=True
    )
    assert [json.loads(line)["jobId"] for line in done.stdout.splitlines()] == ["x", "y"]


def test_results_follow_prints_new_outcomes(
    redis_url: str, redis_client: redis.Redis, keys: Keys
) -> None:
    env = {**os.environ, "REDIS_URL": redis_url, "DISPATCH_KEY_PREFIX": keys.prefix}
    follower = subprocess.Popen(
        [str(SCRIPT), "results", "--follow", "--group", "cli"],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not _consumers(redis_client, keys.results, "cli"):  # it has read once: following
            assert follower.poll() is None, "the follower exited"
            assert time.monotonic() < deadline, "the follower never read"
            time.sleep(0.02)
        publish(redis_client, keys, "late")
        assert follower.stdout is not None
        ready, _, _ = select.select([follower.stdout], [], [], 30)
        assert ready, "nothing printed within 30 s"
        assert json.loads(follower.stdout.readline())["jobId"] == "late"
    finally:
        follower.terminate()
        follower.wait(timeout=10)


def _consumers(client: redis.Redis, stream: str, group: str) -> int:
    if not client.exists(stream):
        return 0
    groups: Any = client.xinfo_groups(stream)
    return sum(int(g["consumers"]) for g in groups if g["name"] in (group, group.encode()))
