"""Fixtures for end-to-end runs: a worker factory bound to this test's prefix and sandbox."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis

from tasks.contract import ContractContext
from tasks.jobs import Outcome
from tasks.keys import Keys
from tasks.producer import Producer
from tests.conftest import SANDBOX_TOKEN
from tests.e2e.harness import FAST, WorkerProcess, wait_for_outcomes

StartWorker = Callable[..., WorkerProcess]


@pytest.fixture
def worker_env(redis_url: str, keys: Keys, sandbox_url: str, tmp_path: Path) -> dict[str, str]:
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    return {
        **os.environ,
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),  # this test's workers' counters only
        "REDIS_URL": redis_url,
        "DISPATCH_KEY_PREFIX": keys.prefix,
        "REVICOM_API_URL": sandbox_url,
        "REVICOM_API_TOKEN": SANDBOX_TOKEN,
        **FAST,
    }


@pytest.fixture
def start_worker(
    worker_env: dict[str, str], tmp_path: Path, sandbox: httpx.Client
) -> Iterator[StartWorker]:
    started: list[WorkerProcess] = []

    def start(
        name: str = "w1",
        concurrency: int = 2,
        queues: str | None = None,
        pod: bool = False,
        **settings: str,
    ) -> WorkerProcess:
        env = {**worker_env, **settings}
        worker = WorkerProcess(
            env, tmp_path / f"{name}.log", name, concurrency=concurrency, queues=queues, pod=pod
        )
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


@dataclass
class E2E:
    """One end-to-end run: start workers, enqueue, and look at Redis and the sandbox."""

    start_worker: StartWorker
    producer: Producer
    redis: redis.Redis
    keys: Keys
    sandbox: httpx.Client

    def outcomes(self, count: int, timeout: float = 60) -> dict[str, Outcome]:
        return wait_for_outcomes(self.redis, self.keys, count, timeout)


@pytest.fixture
def e2e(
    start_worker: StartWorker, redis_client: redis.Redis, keys: Keys, sandbox: httpx.Client
) -> E2E:
    producer = Producer(redis_client, keys, context=ContractContext())
    return E2E(start_worker, producer, redis_client, keys, sandbox)
