"""The product's benchmark: one worker pod, the sandbox validating, a real Redis.

1. ceiling: raw XADD (pipelined) then XREADGROUP + XACK in batches of 1,000, no HTTP;
2. throughput: N SMS jobs enqueued with the producer, from the first enqueue to the last
   outcome, and the pod's CPU seconds per 1,000 messages;
3. OTP latency: FLASHCALL jobs enqueued one every 10 ms while an N-SMS campaign flows,
   from enqueue to arrival at the sandbox (p50, p99).
All parts run in one go on the same machine, so their ratios are comparable.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from statistics import quantiles
from typing import Any

import httpx
import orjson
import redis

from bench.report import report
from devenv.processes import sandbox_process
from devenv.redis_server import ensure_redis
from tasks.contract import ContractContext
from tasks.keys import CONSUMER_GROUP, JOB_FIELD, Keys
from tasks.producer import Producer

TOKEN = "bench-token"
SCRIPT = str(Path(sys.executable).with_name("revicom-dispatch"))


def sms_jobs(n: int, tag: str) -> list[dict[str, Any]]:
    return [
        {
            "jobId": f"{tag}-{i}",
            "message": {
                "channelType": "SMS",
                "senderName": "SENDER",
                "destination": f"1408{i:07d}",
                "content": f"Your order {i} has shipped, track it at https://example.com/t/{i}",
                "tags": ["campaign"],
            },
        }
        for i in range(n)
    ]


def ceiling(client: redis.Redis, keys: Keys, n: int) -> dict[str, Any]:
    stream = keys.jobs("CEILING")
    payloads = [orjson.dumps(job).decode() for job in sms_jobs(n, "ceiling")]
    started = time.perf_counter()
    for i in range(0, n, 1000):
        pipe = client.pipeline(transaction=False)
        for payload in payloads[i : i + 1000]:
            pipe.xadd(stream, {JOB_FIELD: payload})
        pipe.execute()
    produced = time.perf_counter()
    client.xgroup_create(stream, CONSUMER_GROUP, id="0")
    consumed = 0
    while consumed < n:
        reply: Any = client.xreadgroup(CONSUMER_GROUP, "c", {stream: ">"}, count=1000)
        ids = [entry_id for entry_id, _ in reply[0][1]]
        pipe = client.pipeline(transaction=False)
        pipe.xack(stream, CONSUMER_GROUP, *ids)
        pipe.xdel(stream, *ids)
        pipe.execute()
        consumed += len(ids)
    finished = time.perf_counter()
    client.delete(stream)
    return {
        "messages": n,
        "xadd_seconds": round(produced - started, 3),
        "read_ack_seconds": round(finished - produced, 3),
        "messages_per_second": round(n / (finished - started)),
    }


class Pod:
    """`revicom-dispatch worker` in its own session; its CPU is read from /proc."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self._sink = log.open("ab")
        self.process = subprocess.Popen(
            [SCRIPT, "worker", "--loglevel", "WARNING"],
            env=env,
            stdout=self._sink,
            stderr=self._sink,
            start_new_session=True,
        )

    def cpu_seconds(self) -> float:
        total = 0
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == self.process.pid:  # process group of the pod's session
                total += int(fields[11]) + int(fields[12])
        return total / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        os.killpg(self.process.pid, signal.SIGTERM)
        self.process.wait(timeout=60)
        self._sink.close()


def wait_for(client: redis.Redis, keys: Keys, count: int, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while client.xlen(keys.results) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {client.xlen(keys.results)} of {count} outcomes")
        time.sleep(0.01)
    return time.perf_counter()


def throughput(client: redis.Redis, keys: Keys, pod: Pod, n: int) -> dict[str, Any]:
    producer = Producer(client, keys, context=ContractContext())
    jobs = sms_jobs(n, "campaign")
    cpu_before = pod.cpu_seconds()
    started = time.perf_counter()
    producer.enqueue_many(jobs)
    enqueued = time.perf_counter()
    finished = wait_for(client, keys, n, timeout=600)
    cpu = pod.cpu_seconds() - cpu_before
    return {
        "messages": n,
        "enqueue_seconds": round(enqueued - started, 3),
        "seconds": round(finished - started, 3),
        "messages_per_second": round(n / (finished - started)),
        "worker_cpu_seconds": round(cpu, 2),
        "worker_cpu_seconds_per_1000": round(cpu / (n / 1000), 4),
    }


def enqueue_campaign(url: str, prefix: str, n: int) -> None:
    """Run in its own process, so the codes' producer never waits for its GIL."""
    client = redis.Redis.from_url(url)
    Producer(client, Keys(prefix), context=ContractContext()).enqueue_many(sms_jobs(n, "bulk"))


def otp_latency(url: str, keys: Keys, sandbox: str, n: int) -> dict[str, Any]:
    client = redis.Redis.from_url(url)
    producer = Producer(client, keys, context=ContractContext())
    already = client.xlen(keys.results)
    campaign = multiprocessing.get_context("spawn").Process(
        target=enqueue_campaign, args=(url, keys.prefix, n)
    )
    enqueued_at: dict[str, float] = {}
    campaign.start()
    started = time.monotonic()
    i = 0
    while campaign.is_alive() or client.xlen(keys.results) < already + n:
        destination = f"1999{i:07d}"
        job = {
            "jobId": f"otp-{i}",
            "message": {
                "channelType": "FLASHCALL",
                "senderName": "bench",
                "destination": destination,
                "content": "1234",
            },
        }
        enqueued_at[destination] = time.time()
        producer.enqueue(job)
        i += 1
        time.sleep(max(0.0, started + i * 0.01 - time.monotonic()))
    campaign.join()
    wait_for(client, keys, already + n + i, timeout=120)
    arrivals = httpx.get(
        f"{sandbox}/_sandbox/received", params={"channelType": "FLASHCALL"}, timeout=60
    ).json()
    latencies = sorted(
        (r["receivedAt"] - enqueued_at[r["message"]["destination"]]) * 1000 for r in arrivals
    )
    cuts = quantiles(latencies, n=100)
    return {
        "codes": len(latencies),
        "campaign_messages": n,
        "p50_ms": round(cuts[49], 1),
        "p99_ms": round(cuts[98], 1),
        "max_ms": round(latencies[-1], 1),
    }


def run(n: int) -> dict[str, Any]:
    with ensure_redis(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")) as url:
        client = redis.Redis.from_url(url)
        keys = Keys(f"bench-{int(time.time())}")
        try:
            results: dict[str, Any] = {"ceiling": ceiling(client, keys, n)}
            with sandbox_process(["--token", TOKEN]) as sandbox:
                env = {
                    **os.environ,
                    "REDIS_URL": url,
                    "DISPATCH_KEY_PREFIX": keys.prefix,
                    "REVICOM_API_URL": sandbox.url,
                    "REVICOM_API_TOKEN": TOKEN,
                }
                pod = Pod(env, Path("bench-results/pod.log"))
                try:
                    time.sleep(3)  # both nodes up
                    results["throughput"] = throughput(client, keys, pod, n)
                    httpx.delete(f"{sandbox.url}/_sandbox/received")
                    results["otp_latency"] = otp_latency(url, keys, sandbox.url, n)
                finally:
                    pod.stop()
        finally:
            stale = list(client.scan_iter(match=f"{keys.prefix}:*", count=1000))
            for i in range(0, len(stale), 1000):
                client.delete(*stale[i : i + 1000])
    results["throughput"]["share_of_ceiling"] = round(
        results["throughput"]["messages_per_second"] / results["ceiling"]["messages_per_second"],
        3,
    )
    results["machine"] = f"{os.cpu_count()} cores, everything on this machine"
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--out", type=Path, default=Path("bench-results/pipeline.json"))
    args = parser.parse_args()
    results = run(args.messages)
    report(results, args.out, width=32)


if __name__ == "__main__":
    main()
