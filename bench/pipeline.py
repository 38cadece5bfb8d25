"""The product's benchmark: one worker pod, the sandbox validating, a real Redis.

1. ceiling: raw XADD (pipelined) then XREADGROUP + XACK in batches of 1,000, no HTTP;
2. throughput: N SMS jobs enqueued with the producer, from the first enqueue to the last
   outcome, and the pod's CPU seconds per 1,000 messages;
3. OTP latency: FLASHCALL jobs enqueued one every 10 ms while an N-SMS campaign flows,
   from enqueue to arrival at the sandbox (p50, p99);
4. time to final: part 2 again with delivery tracking on: the sandbox delivers every message
   (`sent` 200 ms, `delivered` 1 s after its creation) and calls back a receiver process
   (`revicom-dispatch callbacks`), a second pod asking for `sent` and `delivered` callbacks
   (CALLBACK_URL). Its throughput (enqueue to last outcome) against part 2's, and for every
   job the delay from the message's creation at the sandbox to its final entry on the statuses
   stream (the entry id's time), less the plan's finalAfterMs: p50, p99, max. Every job must
   get exactly one final entry, or the benchmark fails.
All parts run in one go on the same machine, so their ratios are comparable; part 2 runs
without callbacks, as before they existed.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from statistics import quantiles
from typing import Any, NamedTuple

import httpx
import orjson
import redis

from bench.proc import cpu_seconds, redis_cpu_seconds
from bench.report import report
from devenv.processes import RunningServer, receiver_process, sandbox_process
from devenv.redis_server import ensure_redis
from tasks.contract import ContractContext
from tasks.keys import CONSUMER_GROUP, JOB_FIELD, STATUS_FIELD, Keys
from tasks.producer import Producer

TOKEN = "bench-token"
#: Part 4's delivery plan: every message delivered, its final status due 1 s after creation.
DELIVERY = {"sentAfterMs": 200, "finalAfterMs": 1000}
CALLBACK_USER, CALLBACK_PASSWORD = "bench", "bench-callback-password"
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


def throughput(
    client: redis.Redis, keys: Keys, pod: Pod, n: int, *, sandbox_pid: int, tag: str = "campaign"
) -> dict[str, Any]:
    producer = Producer(client, keys, context=ContractContext())
    jobs = sms_jobs(n, tag)
    already = client.xlen(keys.results)
    cpu_before, sandbox_before = pod.cpu_seconds(), cpu_seconds(sandbox_pid)
    started = time.perf_counter()
    producer.enqueue_many(jobs)
    enqueued = time.perf_counter()
    finished = wait_for(client, keys, already + n, timeout=600)
    cpu = pod.cpu_seconds() - cpu_before
    sandbox_cpu = cpu_seconds(sandbox_pid) - sandbox_before
    return {
        "messages": n,
        "enqueue_seconds": round(enqueued - started, 3),
        "seconds": round(finished - started, 3),
        "messages_per_second": round(n / (finished - started)),
        "worker_cpu_seconds": round(cpu, 2),
        "worker_cpu_seconds_per_1000": round(cpu / (n / 1000), 4),
        "sandbox_cpu_seconds": round(sandbox_cpu, 2),
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


def created_at(sandbox: str) -> dict[str, float]:
    """messageUuid → when the sandbox created it (unix time), for every message it holds."""
    created: dict[str, float] = {}
    page = 20_000
    while True:
        records = httpx.get(
            f"{sandbox}/_sandbox/received",
            params={"offset": len(created), "limit": page},
            timeout=120,
        ).json()
        created |= {r["messageUuid"]: r["receivedAt"] for r in records}
        if len(records) < page:
            return created


class Final(NamedTuple):
    at: float  # the entry's time (its id), unix
    status: str
    message_uuid: str
    received: float  # when the receiver had read the request carrying it (receivedAt), unix


def final_entries(client: redis.Redis, keys: Keys) -> dict[str, list[Final]]:
    """jobId → its final entries on the statuses stream."""
    finals: dict[str, list[Final]] = {}
    start = "-"
    while True:
        batch: Any = client.xrange(keys.statuses, min=start, count=10_000)
        if not batch:
            return finals
        for entry_id, fields in batch:
            status = orjson.loads(fields[STATUS_FIELD.encode()])
            if status["final"]:
                at = int(entry_id.split(b"-")[0]) / 1000
                received = datetime.fromisoformat(status["receivedAt"]).timestamp()
                finals.setdefault(status["jobId"], []).append(
                    Final(at, status["status"], status["messageUuid"], received)
                )
        start = f"({batch[-1][0].decode()}"


def delay_figures(firsts: list[Final], created: dict[str, float]) -> dict[str, float]:
    """How long after the sandbox's plan each first final entry came (ms): p50, p99, max,
    and the p50 of the first and the last tenth of the messages (is the path falling behind?)."""
    final_after = DELIVERY["finalAfterMs"] / 1000
    by_creation = sorted(
        (created[f.message_uuid], f.at - created[f.message_uuid] - final_after) for f in firsts
    )
    delays = sorted(delay * 1000 for _, delay in by_creation)
    cuts = quantiles(delays, n=100)
    tenth = max(1, len(by_creation) // 10)
    first = quantiles([d * 1000 for _, d in by_creation[:tenth]], n=100)
    last = quantiles([d * 1000 for _, d in by_creation[-tenth:]], n=100)
    return {
        "final_delay_p50_ms": round(cuts[49], 1),
        "final_delay_p99_ms": round(cuts[98], 1),
        "final_delay_max_ms": round(delays[-1], 1),
        "final_delay_p50_ms_first_tenth": round(first[49], 1),
        "final_delay_p50_ms_last_tenth": round(last[49], 1),
    }


def wait_callbacks(sandbox: str, timeout: float) -> dict[str, Any]:
    """The sandbox's callback counters once nothing is pending (every event acknowledged or
    given up)."""
    deadline = time.monotonic() + timeout
    while True:
        stats: dict[str, Any] = httpx.get(f"{sandbox}/_sandbox/callbacks", timeout=30).json()
        if stats["pending"] == 0:
            return stats
        if time.monotonic() > deadline:
            raise RuntimeError(f"callbacks still pending after {timeout} s: {stats}")
        time.sleep(0.1)


def time_to_final(
    url: str, keys: Keys, server: RunningServer, env: dict[str, str], n: int
) -> dict[str, Any]:
    """Part 4 (see the module's docstring)."""
    sandbox = server.url
    client = redis.Redis.from_url(url)
    httpx.post(f"{sandbox}/_sandbox/reset").raise_for_status()
    httpx.put(f"{sandbox}/_sandbox/delivery", json=DELIVERY).raise_for_status()
    env = {**env, "CALLBACK_USERNAME": CALLBACK_USER, "CALLBACK_PASSWORD": CALLBACK_PASSWORD}
    with receiver_process(env, log=Path("bench-results/receiver.log")) as receiver:
        host = receiver.url.removeprefix("http://")
        callback_url = f"http://{CALLBACK_USER}:{CALLBACK_PASSWORD}@{host}/callbacks"
        pod = Pod(
            {**env, "CALLBACK_URL": callback_url, "CALLBACK_EVENTS": "sent,delivered"},
            Path("bench-results/pod-callbacks.log"),
        )
        try:
            time.sleep(3)  # both nodes up
            receiver_before, redis_before = cpu_seconds(receiver.pid), redis_cpu_seconds(client)
            started = time.time()
            figures = throughput(client, keys, pod, n, sandbox_pid=server.pid, tag="tracked")
            callbacks = wait_callbacks(sandbox, timeout=600)
            drained = time.time()
            receiver_cpu = cpu_seconds(receiver.pid) - receiver_before
            redis_cpu = redis_cpu_seconds(client) - redis_before
        finally:
            pod.stop()
    created = created_at(sandbox)
    finals = final_entries(client, keys)
    problems = []
    jobs = [job["jobId"] for job in sms_jobs(n, "tracked")]
    missing = [job for job in jobs if job not in finals]
    several = [job for job in jobs if len(finals.get(job, ())) > 1]
    undelivered = [job for job in jobs if any(f.status != "delivered" for f in finals.get(job, ()))]
    if missing or several or undelivered or len(finals) != n:
        problems.append(
            f"{len(missing)} jobs without a final entry, {len(several)} with several, "
            f"{len(undelivered)} not delivered, {len(finals)} jobs with finals for {n} jobs"
        )
    if callbacks["givenUp"] or callbacks["dropped"]:
        problems.append(f"the sandbox gave up or dropped callbacks: {callbacks}")
    if problems:
        raise RuntimeError("time to final: " + "; ".join(problems))
    firsts = [entries[0] for entries in finals.values()]
    # From the receiver reading the request to the entry: the part spent in the receiver.
    inside = quantiles([(f.at - f.received) * 1000 for f in firsts], n=100)
    last_final = max(f.at for f in firsts)
    events = callbacks["eventsSent"]
    figures |= {
        "delivery_plan": DELIVERY,
        "jobs_with_one_final": len(finals),
        **delay_figures(firsts, created),
        "of_which_in_receiver_p50_ms": round(inside[49], 1),
        "of_which_in_receiver_p99_ms": round(inside[98], 1),
        "seconds_to_last_final": round(last_final - started, 3),
        "callback_events": events,
        "callback_posts": callbacks["postsAttempted"],
        "callback_posts_failed": callbacks["postsFailed"],
        "receiver_cpu_seconds": round(receiver_cpu, 2),
        "receiver_cpu_seconds_per_10000_events": round(receiver_cpu / (events / 10_000), 3),
        "receiver_cpu_share": round(receiver_cpu / (drained - started), 2),
        "redis_cpu_share": round(redis_cpu / (drained - started), 2),
    }
    return figures


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
                    results["throughput"] = throughput(
                        client, keys, pod, n, sandbox_pid=sandbox.pid
                    )
                    httpx.delete(f"{sandbox.url}/_sandbox/received")
                    results["otp_latency"] = otp_latency(url, keys, sandbox.url, n)
                finally:
                    pod.stop()
                results["time_to_final"] = time_to_final(url, keys, sandbox, env, n)
        finally:
            stale = list(client.scan_iter(match=f"{keys.prefix}:*", count=1000))
            for i in range(0, len(stale), 1000):
                client.delete(*stale[i : i + 1000])
    results["throughput"]["share_of_ceiling"] = round(
        results["throughput"]["messages_per_second"] / results["ceiling"]["messages_per_second"],
        3,
    )
    results["time_to_final"]["throughput_vs_part_2"] = round(
        results["time_to_final"]["messages_per_second"]
        / results["throughput"]["messages_per_second"],
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
    report(results, args.out, width=40)


if __name__ == "__main__":
    main()
