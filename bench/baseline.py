"""The baseline of issue 13: the design a Celery user would write first, measured beside the
product in the same run (bench/pipeline.py's part 5).

One plain Celery task per job on the same Redis: Celery's Redis broker with its defaults (no
batching library, no result backend), a task that parses the job's JSON (orjson) and INCRs a
counter, one worker node (prefork, concurrency 2: one pool process per core of this machine,
as the product's bulk node has; no gossip or mingle, as the pod's nodes). The jobs are sent
with `send_task` on one producer connection, as fast as Celery publishes them, while the node
drains; the time runs from the first publish to the counter reaching N.

`celery -A bench.baseline worker` runs that node: it reads REDIS_URL and DISPATCH_KEY_PREFIX
(config/settings.py) like a pod, and its broker keys and counter live under that prefix.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import redis
from celery import Celery

from bench.proc import group_cpu_seconds
from config import get_settings
from devenv.processes import stop
from tasks.keys import Keys

#: The task's name on the broker.
TASK = "bench.baseline.parse"
#: The queue: Celery's default.
QUEUE = "celery"
#: Pool processes of the node: one per core of this 2-core machine.
CONCURRENCY = 2


def done_key(keys: Keys) -> str:
    """The counter every finished task INCRs (under the baseline's Celery prefix)."""
    return f"{keys.celery}baseline:done"


def baseline_app(url: str, keys: Keys) -> Celery:
    """A Celery app as its documentation starts one: the Redis broker and the defaults, its
    keys under `keys.celery` so the run cleans them up with the rest."""
    app = Celery("baseline", broker=url)
    app.conf.update(
        broker_transport_options={"global_keyprefix": keys.celery},
        task_ignore_result=True,
    )
    counter = redis.Redis.from_url(url)
    done = done_key(keys)

    @app.task(name=TASK)
    def parse(job: str) -> None:
        orjson.loads(job)
        counter.incr(done)

    return app


def _node_app() -> Celery:
    settings = get_settings()
    return baseline_app(settings.redis_url, Keys(settings.dispatch_key_prefix))


#: What `celery -A bench.baseline worker` runs.
app = _node_app()


def measure(
    url: str, keys: Keys, jobs: list[dict[str, Any]], log: Path, timeout_s: float = 900.0
) -> dict[str, Any]:
    """Start the node, publish every job, wait until each task is done; the node's CPU seconds
    are all its processes' (main and pool), read from /proc."""
    client = redis.Redis.from_url(url)
    sender = baseline_app(url, keys)
    payloads = [orjson.dumps(job).decode() for job in jobs]
    n = len(payloads)
    command = [sys.executable, "-m", "celery", "-A", "bench.baseline", "worker"]
    command += ["-P", "prefork", "-c", str(CONCURRENCY), "-Q", QUEUE, "--loglevel", "WARNING"]
    command += ["--without-gossip", "--without-mingle"]
    env = {"REDIS_URL": url, "DISPATCH_KEY_PREFIX": keys.prefix}
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as sink:
        node = subprocess.Popen(
            command,
            env={**os.environ, **env},
            stdout=sink,
            stderr=sink,
            start_new_session=True,
        )
        try:
            _wait_ready(sender, node)
            cpu_before = group_cpu_seconds(node.pid)
            started = time.perf_counter()
            with sender.producer_or_acquire() as producer:
                for payload in payloads:
                    sender.send_task(TASK, args=(payload,), queue=QUEUE, producer=producer)
            published = time.perf_counter()
            deadline = time.monotonic() + timeout_s
            while (done := int(client.get(done_key(keys)) or 0)) < n:
                if node.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"baseline: {done} of {n} tasks done")
                time.sleep(0.01)
            finished = time.perf_counter()
            cpu = group_cpu_seconds(node.pid) - cpu_before
        finally:
            stop(node, grace_s=30)
    return {
        "messages": n,
        "design": f"one Celery task per job, Redis broker, prefork -c {CONCURRENCY}",
        "publish_seconds": round(published - started, 3),
        "seconds": round(finished - started, 3),
        "messages_per_second": round(n / (finished - started)),
        "worker_cpu_seconds": round(cpu, 2),
        "worker_cpu_seconds_per_1000": round(cpu / (n / 1000), 4),
    }


def _wait_ready(sender: Celery, node: subprocess.Popen[bytes]) -> None:
    """Until the node answers a ping: its pool is up and its consumer reads the queue."""
    deadline = time.monotonic() + 60
    while not sender.control.ping(timeout=0.5):
        if node.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("baseline: the Celery node did not start")
