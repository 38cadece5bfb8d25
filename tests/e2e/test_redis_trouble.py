"""Redis trouble while a pod works: a restart, or Redis full (maxmemory, noeviction).

Every node must stay alive (the same two node processes from start to end), wait, and resume;
every job that was enqueued gets exactly one outcome. Each test runs against a redis-server
of its own (never the shared one), with AOF on as in docker-compose.yml, so a restart keeps
the data; one restarts a Redis that keeps nothing and comes back empty.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import redis

from devenv.redis_server import RedisServer
from tasks.contract import ContractContext
from tasks.jobs import Outcome
from tasks.keys import Keys
from tasks.producer import Enqueued, Producer, WriteError
from tests.contract_cases import variant
from tests.e2e.conftest import E2E
from tests.e2e.harness import WorkerProcess, outcomes, settled, wait_until
from tests.e2e.sandbox_view import received
from worker import pod as pod_module
from worker.batcher import Batcher

pytestmark = pytest.mark.timeout(120)

#: Until worker/batcher.py and worker/batch.py wait out Redis trouble (issue 9, item 8: a
#: batch cut or started while Redis refuses writes, or whose task a node lost with its broker
#: connection, waits QUEUED_BATCH_TIMEOUT_S or forever; a Redis that came back empty is never
#: read again), these tests fail or are flaky; they arm themselves once the batcher has
#: `broker_reconnected`, which comes with those changes.
needs_batcher_changes = pytest.mark.xfail(
    not hasattr(Batcher, "broker_reconnected"),
    reason="worker/batcher.py, worker/batch.py: Redis trouble not waited out yet",
    strict=False,
)

REDIS_OPTIONS = {
    "appendonly": "yes",
    "appendfsync": "always",  # a SIGKILL loses nothing Redis acknowledged
    "maxmemory-policy": "noeviction",
}


@pytest.fixture
def redis_options() -> dict[str, str]:
    return REDIS_OPTIONS


@pytest.fixture
def redis_server(tmp_path: Path, redis_options: dict[str, str]) -> Iterator[RedisServer]:
    with RedisServer(redis_options, log=tmp_path / "redis.log") as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """This module's tests (their workers, producer and key cleanup) use their own Redis."""
    return redis_server.url


class Feeder:
    """Enqueues SMS and FLASHCALL jobs in chunks and remembers what happened to each: written
    (`enqueued`), refused by Redis (OOM: never written), or unknown (the connection failed
    mid-pipeline: written or not)."""

    def __init__(self, url: str, keys: Keys) -> None:
        client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2)
        self._producer = Producer(client, keys, context=ContractContext())
        self.enqueued: list[str] = []
        self.unknown: list[str] = []
        self.refused = 0
        self._n = 0
        self._lock = threading.Lock()

    def enqueue(self, count: int) -> None:
        with self._lock:
            jobs = [self._job(self._n + i) for i in range(count)]
            self._n += count
            try:
                results = self._producer.enqueue_many(jobs)
            except WriteError as partial:
                self.enqueued += [e.jobId for e in partial.enqueued]
                self.refused += len(jobs) - len(partial.enqueued)
            except redis.RedisError:
                self.unknown += [str(job["jobId"]) for job in jobs]
            else:
                self.enqueued += [r.jobId for r in results if isinstance(r, Enqueued)]

    @contextmanager
    def running(self, chunk: int, every_s: float) -> Iterator[Feeder]:
        """Keep enqueuing in the background while the block runs."""
        stop = threading.Event()

        def feed() -> None:
            while not stop.is_set():
                self.enqueue(chunk)
                stop.wait(every_s)

        thread = threading.Thread(target=feed, name="feeder", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            stop.set()
            thread.join(timeout=10)

    @staticmethod
    def _job(n: int) -> dict[str, Any]:
        """Unique per job in what the API receives, so a message sent twice shows."""
        job_id = f"job-{n}"
        if n % 2:
            return {"jobId": job_id, "message": variant("FLASHCALL", destination=f"1408{n:07d}")}
        return {"jobId": job_id, "message": variant("SMS", content=f"message {job_id}")}


def node_pids(pod: WorkerProcess) -> set[int]:
    """The pod's node processes (its children)."""
    pid = pod.process.pid
    return {int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}


def answered(check: Callable[[], object]) -> Callable[[], bool]:
    """A wait condition that counts a Redis error (down, restarting) as not yet."""

    def safe() -> bool:
        try:
            return bool(check())
        except redis.RedisError:
            return False

    return safe


def results_reach(e2e: E2E, count: int) -> Callable[[], bool]:
    return answered(lambda: e2e.redis.xlen(e2e.keys.results) >= count)


def outcome_ids(client: redis.Redis, keys: Keys) -> Counter[str]:
    return Counter(o.jobId for o in outcomes(client, keys))


def wait_for_one_outcome_each(
    e2e: E2E, feeder: Feeder, pod: WorkerProcess, timeout: float = 45
) -> list[Outcome]:
    """Every enqueued job gets its outcome; no job gets two; none comes from nowhere."""
    expected = set(feeder.enqueued)
    wait_until(
        answered(lambda: expected <= set(outcome_ids(e2e.redis, e2e.keys))),
        timeout,
        f"an outcome for each of the {len(expected)} jobs enqueued",
        abort=lambda: pod.process.poll() is not None,
    )
    wait_until(answered(lambda: settled(e2e.redis, e2e.keys)), timeout, "streams settled")
    found = outcomes(e2e.redis, e2e.keys)
    counts = Counter(o.jobId for o in found)
    assert [job for job, n in counts.items() if n > 1] == [], "jobs with two outcomes"
    assert set(counts) - expected <= set(feeder.unknown), "outcomes of jobs never enqueued"
    return found


def assert_nodes_lived_through(pod: WorkerProcess, nodes: set[int]) -> None:
    assert pod.process.poll() is None, "the pod exited"
    assert node_pids(pod) == nodes, "a node died and was replaced"
    assert b"unasked" not in pod.log.read_bytes()


@needs_batcher_changes
def test_a_redis_restart_leaves_every_node_alive_and_work_resumes(
    e2e: E2E, redis_server: RedisServer
) -> None:
    pod = e2e.start_worker("pod", pod=True)
    nodes = node_pids(pod)
    assert len(nodes) == 2
    feeder = Feeder(redis_server.url, e2e.keys)
    with feeder.running(chunk=20, every_s=0.05):
        wait_until(results_reach(e2e, 200), 20, "outcomes before the restart")
        redis_server.restart("shutdown", down_s=1.0)  # a clean restart (AOF kept)
        before = e2e.redis.xlen(e2e.keys.results)
        wait_until(results_reach(e2e, before + 200), 30, "outcomes after the restart")
        redis_server.restart("kill", down_s=0.5)  # a crash
        before = e2e.redis.xlen(e2e.keys.results)
        wait_until(results_reach(e2e, before + 200), 30, "outcomes after the crash")
    feeder.enqueue(100)  # new jobs, once it is all over
    found = wait_for_one_outcome_each(e2e, feeder, pod)
    assert {o.status for o in found} == {"accepted"}
    assert_nodes_lived_through(pod, nodes)
    log = pod.log.read_bytes()
    assert b"Unrecoverable error" not in log
    assert b"Error on restarting" not in log
    assert pod.terminate(timeout=30) == 0


@needs_batcher_changes
@pytest.mark.parametrize("redis_options", [{"appendonly": "no", "save": ""}], ids=["no-aof"])
def test_a_redis_that_comes_back_empty_is_set_up_again(e2e: E2E, redis_server: RedisServer) -> None:
    """No persistence (or a failover to a replica that lacked the data): the job streams,
    their consumer group and the broker's queues are gone; the nodes make them again."""
    pod = e2e.start_worker("pod", pod=True)
    nodes = node_pids(pod)
    feeder = Feeder(redis_server.url, e2e.keys)
    feeder.enqueue(100)
    wait_for_one_outcome_each(e2e, feeder, pod)
    redis_server.restart("shutdown", down_s=0.5)
    # Everything is gone (the nodes may already have written a lease or two again).
    assert not e2e.redis.exists(e2e.keys.results, e2e.keys.jobs("SMS"))
    assert list(e2e.redis.scan_iter(match=e2e.keys.ledger("*"), count=1000)) == []
    feeder = Feeder(redis_server.url, e2e.keys)  # what was enqueued before is gone
    for _ in range(5):
        feeder.enqueue(20)
    found = wait_for_one_outcome_each(e2e, feeder, pod, timeout=30)
    assert {o.status for o in found} == {"accepted"}
    assert_nodes_lived_through(pod, nodes)
    assert pod.terminate(timeout=30) == 0


@needs_batcher_changes
def test_a_full_redis_leaves_every_node_alive_and_work_resumes(
    e2e: E2E, redis_server: RedisServer
) -> None:
    pod = e2e.start_worker("pod", pod=True)
    nodes = node_pids(pod)
    admin = redis_server.client()
    feeder = Feeder(redis_server.url, e2e.keys)
    with feeder.running(chunk=20, every_s=0.05):
        wait_until(results_reach(e2e, 200), 20, "outcomes before Redis is full")
        used = int(admin.info("memory")["used_memory"])
        admin.config_set("maxmemory", used + 256 * 1024)
        wait_until(lambda: feeder.refused > 0, 20, "Redis refusing writes (OOM)")
        full_until = time.monotonic() + 4  # Redis stays full this long while jobs flow
        wait_until(
            lambda: time.monotonic() > full_until,
            10,
            "Redis full for 4 s",
            abort=lambda: pod.process.poll() is not None,
        )
        assert_nodes_lived_through(pod, nodes)
        admin.config_set("maxmemory", "0")
        before = len(feeder.enqueued)
        wait_until(lambda: len(feeder.enqueued) >= before + 100, 10, "enqueuing again")
    feeder.enqueue(100)
    found = wait_for_one_outcome_each(e2e, feeder, pod)
    assert {o.status for o in found} == {"accepted"}
    assert_nodes_lived_through(pod, nodes)
    assert b"Unrecoverable error" not in pod.log.read_bytes()
    # Nothing reached the API twice: a batch that sent waits until it can publish.
    sent = Counter(
        (r["message"].get("destination"), r["message"].get("content"))
        for r in received(e2e.sandbox)
    )
    assert [m for m, n in sent.items() if n > 1] == [], "messages sent twice"
    assert sum(sent.values()) == len(found)
    assert pod.terminate(timeout=30) == 0


def test_a_node_that_dies_is_started_again_and_the_other_works_on(e2e: E2E) -> None:
    """The pod's safety net: whatever kills a node, the pod starts it again (the other node
    untouched) instead of going down whole."""
    pod = e2e.start_worker("pod", pod=True)
    nodes = node_pids(pod)
    victim = max(nodes)
    os.kill(victim, signal.SIGKILL)
    wait_until(
        lambda: pod.log.read_bytes().count(b" ready.") == 3,
        30,
        "the node started again",
        abort=lambda: pod.process.poll() is not None,
    )
    assert len(node_pids(pod)) == 2
    assert node_pids(pod) & nodes == nodes - {victim}
    e2e.producer.enqueue_many([Feeder._job(n) for n in range(40)])
    e2e.outcomes(40)
    assert b"exited with -9 unasked" in pod.log.read_bytes()
    assert pod.terminate(timeout=30) == 0


def test_a_crash_looping_node_takes_the_pod_down(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pod_module, "RESTART_DELAY_S", 0.01)
    monkeypatch.setattr(pod_module, "POLL_S", 0.01)
    env = dict(os.environ)
    dying = pod_module.Node("bulk", [sys.executable, "-c", "raise SystemExit(3)"], env)
    steady = pod_module.Node("otp", [sys.executable, "-c", "import time; time.sleep(60)"], env)
    for node in (dying, steady):
        node.start()
    started = time.monotonic()
    assert pod_module._supervise([steady, dying], lambda: False) is True
    assert time.monotonic() - started < 10
    assert len(dying.deaths) == pod_module.MAX_RESTARTS + 1
    assert dying.returncode == 3
    assert steady.returncode == -signal.SIGTERM  # stopped so the orchestrator restarts all
