"""Issue 13's measuring side: the Celery baseline drains every job it sends, once, and the
profile's phases are net of what timing them costs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis

from bench import worker_profile
from bench.baseline import done_key, measure
from bench.jobs import sms_jobs
from tasks.keys import Keys


def test_the_baseline_runs_one_task_per_job(
    redis_url: str, redis_client: redis.Redis, keys: Keys, tmp_path: Path
) -> None:
    jobs = sms_jobs(200, "baseline")
    figures = measure(redis_url, keys, jobs, log=tmp_path / "node.log", timeout_s=60)
    assert figures["messages"] == 200
    assert int(redis_client.get(done_key(keys)) or 0) == 200  # each task counted once
    assert figures["messages_per_second"] > 0
    assert figures["worker_cpu_seconds"] > 0  # the node's processes were found and read


def test_phases_take_the_cost_of_timing_off_each_part(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(worker_profile, "PROFILE_DIR", tmp_path)
    calls = worker_profile.CALLS
    measured = {
        worker_profile.OVERHEAD: 1e-6,  # 1 µs a timed call
        worker_profile.TASK: 100e-6,
        "read the entries (EntryReader.parse)": 30e-6,
        f"read the entries (EntryReader.parse) {calls}": 10,
        "  stamp check (stamp.verify)": 15e-6,
        f"  stamp check (stamp.verify) {calls}": 5,
    }
    (tmp_path / "1.json").write_text(json.dumps(measured))
    table = worker_profile.phases(messages=1)
    # 5 inner calls cost the inner part, its parent and the task; 10 outer calls cost the
    # outer part and the task.
    assert table["  stamp check (stamp.verify)"] == 10.0
    assert table["read the entries (EntryReader.parse)"] == 15.0
    assert table[worker_profile.TASK] == 85.0
    assert table[worker_profile.OTHER] == 70.0  # the task less its unindented parts
    assert table["timed calls per message"] == 15.0
