"""Issue 13's scaling figure: 1, 2 and 4 worker pods (`revicom-dispatch worker`, each a bulk
and an OTP node) draining the same N SMS jobs, against a sandbox that answers every request
LATENCY_MS late, on a real Redis.

For each pod count the N jobs are enqueued with the producer onto a stream of their own (with
the pods' consumer group), the pods are started (METRICS_PORT=0: several on one host) and
waited for until every node has logged ` ready.`, and then that stream is renamed onto the SMS
job stream: the pods find the whole backlog at once, and the time runs from the rename to the
last outcome. So neither the producer (one process: about 14,000 jobs/s beside 2 or 4 pods on
2 cores, which would cap the figure) nor the pods' start-up is in it; pipeline part 2 measures
the producer with one pod.

Per pod count: msg/s, the speed-up against 1 pod, and the latency ceiling beside it: a bulk
pool process has one request in flight at a time, so pods x BULK_CONCURRENCY x SMS_BATCH_SIZE
/ latency msg/s is the most the pods can send, however many cores; and what a batch took a pool
process (pool processes x wall time / batches: the latency, the process's CPU, its waits for
Redis and for a core), against that latency. Then the CPU seconds per 1,000 messages of the
pods, Redis (INFO cpu: all its clients) and the sandbox, and each as cores (CPU seconds per
second of wall time), beside the machine's busy cores (/proc/stat: everything, other load
included) against its core count: where the sum reaches the cores, more pods cannot help.

Alone (`python -m bench.scaling`) it runs on a redis-server of its own, so INFO cpu is its
Redis work alone; as part 6 of bench.pipeline, on the pipeline's Redis.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import redis

from bench.jobs import sms_jobs
from bench.proc import (
    Pod,
    cpu_seconds,
    delete_prefix,
    machine_busy_seconds,
    redis_cpu_seconds,
    wait_ready,
)
from bench.report import report
from config import Settings
from devenv.processes import RunningServer, sandbox_process
from devenv.redis_server import RedisServer
from tasks.contract import ContractContext
from tasks.keys import CONSUMER_GROUP, Keys
from tasks.producer import Producer

TOKEN = "bench-token"
#: The sandbox's fixed answer delay (its `latencyMs` fault), every request.
LATENCY_MS = 50
#: Pods per point of the figure.
POD_COUNTS = (1, 2, 4)
#: Longest wait for a point's outcomes (s).
TIMEOUT_S = 600
LOGS = Path("bench-results")


def measure(
    url: str,
    prefix: str,
    n: int,
    *,
    latency_ms: int = LATENCY_MS,
    pod_counts: tuple[int, ...] = POD_COUNTS,
) -> dict[str, Any]:
    """The figure (see the module's docstring); every key it writes starts with `prefix`."""
    LOGS.mkdir(exist_ok=True)
    settings = Settings()  # the pods' BULK_CONCURRENCY and SMS_BATCH_SIZE: the same environment
    per_pod = settings.bulk_concurrency * settings.sms_batch_size / (latency_ms / 1000)
    results: dict[str, Any] = {
        "latency_ms": latency_ms,
        "messages": n,
        "bulk_concurrency": settings.bulk_concurrency,
        "machine_cores": os.cpu_count(),
    }
    faults = orjson.dumps({"latencyMs": latency_ms}).decode()
    log = LOGS / "scaling-sandbox.log"
    with sandbox_process(["--token", TOKEN, "--faults", faults], log=log) as sandbox:
        for count in pod_counts:
            keys = Keys(f"{prefix}:{count}")
            try:
                figures = point(url, keys, sandbox, count, n)
            finally:
                httpx.delete(f"{sandbox.url}/_sandbox/received", timeout=60).raise_for_status()
                delete_prefix(redis.Redis.from_url(url), keys.prefix)
            figures["latency_ceiling_messages_per_second"] = round(count * per_pod)
            processes = count * settings.bulk_concurrency
            batches = n / settings.sms_batch_size
            figures["ms_per_batch_per_pool_process"] = round(
                processes * figures["seconds"] / batches * 1000
            )
            results[label(count)] = figures
    if "1 pod" in results:
        one = results["1 pod"]["messages_per_second"]
        for count in pod_counts:
            figures = results[label(count)]
            figures["speedup_vs_1_pod"] = round(figures["messages_per_second"] / one, 2)
    return results


def label(count: int) -> str:
    return f"{count} pod{'s' if count > 1 else ''}"


def point(url: str, keys: Keys, sandbox: RunningServer, count: int, n: int) -> dict[str, Any]:
    """`count` pods drain a backlog of n SMS jobs, put before them once every pod is ready."""
    client = redis.Redis.from_url(url)
    staged = Keys(f"{keys.prefix}:staged").jobs("SMS")
    client.xgroup_create(staged, CONSUMER_GROUP, id="0", mkstream=True)
    Producer(client, Keys(f"{keys.prefix}:staged"), context=ContractContext()).enqueue_many(
        sms_jobs(n, f"scaling{count}")
    )
    env = {
        **os.environ,
        "REDIS_URL": url,
        "DISPATCH_KEY_PREFIX": keys.prefix,
        "REVICOM_API_URL": sandbox.url,
        "REVICOM_API_TOKEN": TOKEN,
        "METRICS_PORT": "0",
    }
    pods = [Pod(env, LOGS / f"scaling-{count}-pod{i}.log", loglevel="INFO") for i in range(count)]
    try:
        wait_ready(pods)
        pods_before = sum(pod.cpu_seconds() for pod in pods)
        parts_before = [pod.cpu_by_process() for pod in pods]
        redis_before, sandbox_before = redis_cpu_seconds(client), cpu_seconds(sandbox.pid)
        busy_before = machine_busy_seconds()
        started = time.perf_counter()
        client.rename(staged, keys.jobs("SMS"))  # over the empty one the pods made
        deadline = time.monotonic() + TIMEOUT_S
        while client.xlen(keys.results) < n:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {client.xlen(keys.results)} of {n} outcomes")
            time.sleep(0.01)
        finished = time.perf_counter()
        spent = {
            "pods": sum(pod.cpu_seconds() for pod in pods) - pods_before,
            "redis": redis_cpu_seconds(client) - redis_before,
            "sandbox": cpu_seconds(sandbox.pid) - sandbox_before,
        }
        busy = machine_busy_seconds() - busy_before
        parts: dict[str, float] = {}
        for pod, before in zip(pods, parts_before, strict=True):
            for part, seconds in pod.cpu_by_process().items():
                parts[part] = parts.get(part, 0.0) + seconds - before.get(part, 0.0)
    finally:
        for pod in pods:
            pod.stop()
    wall = finished - started
    thousands = n / 1000
    return {
        "pods": count,
        "seconds": round(wall, 3),
        "messages_per_second": round(n / wall),
        **{f"{who}_cpu_seconds_per_1000": round(s / thousands, 4) for who, s in spent.items()},
        "pods_cpu_seconds_per_1000_by_process": {
            part: round(seconds / thousands, 4) for part, seconds in sorted(parts.items())
        },
        **{f"{who}_cores": round(s / wall, 2) for who, s in spent.items()},
        "sum_cores": round(sum(spent.values()) / wall, 2),
        "machine_busy_cores": round(busy / wall, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--latency-ms", type=int, default=LATENCY_MS)
    parser.add_argument("--pods", type=int, nargs="+", default=list(POD_COUNTS))
    parser.add_argument("--out", type=Path, default=LOGS / "scaling.json")
    args = parser.parse_args()
    LOGS.mkdir(exist_ok=True)
    with RedisServer(log=LOGS / "scaling-redis.log") as server:
        prefix = f"bench-scaling-{int(time.time())}"
        results = measure(
            server.url,
            prefix,
            args.messages,
            latency_ms=args.latency_ms,
            pod_counts=tuple(args.pods),
        )
    results["machine"] = f"{os.cpu_count()} cores, everything on this machine"
    report(results, args.out, width=44)


if __name__ == "__main__":
    main()
