"""Callback events per second into ONE receiver process (`revicom-dispatch callbacks`).

M messages are mapped first as finish.lua maps an accepted message (the hash
`{prefix}:message:{uuid}`: job, channel, accepted), so every event is applied, not parked. Then
each message gets a `sent` and a `delivered` event (2·M events) in JSON arrays of 100 events,
POSTed with Basic auth by several client processes, each with a few threads (every thread its
own keep-alive connection), all released at once. Reported: events per second, the receiver's
CPU seconds per 10,000 events (/proc), Redis's (INFO cpu: every client of that Redis, not only
ours), request latency. Afterwards the statuses stream must hold exactly one final entry per
message (and one `sent` entry), or the benchmark fails. The same load is then sent for M
messages that are not mapped (every event parked), with the same receiver.

A fresh key prefix on the Redis at REDIS_URL (or one started here), deleted afterwards.
"""

from __future__ import annotations

import argparse
import base64
import multiprocessing
import os
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.synchronize import Event as EventType
from pathlib import Path
from statistics import quantiles
from typing import Any

import httpx
import orjson
import redis

from bench.proc import cpu_seconds, delete_prefix, redis_cpu_seconds
from bench.report import report
from devenv.processes import receiver_process
from devenv.redis_server import ensure_redis
from tasks.keys import STATUS_FIELD, Keys, as_text
from tasks.stream_reader import iter_stream

EVENTS_PER_REQUEST = 100
USER, PASSWORD = "bench", "bench-callback-password"
SENT_AT, DELIVERED_AT = "2026-11-24T10:00:00Z", "2026-11-24T10:00:05Z"
TARGET_EVENTS_PER_SECOND = 10_000


def bodies(uuids: list[str]) -> list[bytes]:
    """`sent` for every message, then `delivered` for every message, 100 events a body: a
    message's two events are hundreds of requests apart, so they never race."""
    out: list[bytes] = []
    for event, status_time in (("sent", SENT_AT), ("delivered", DELIVERED_AT)):
        for i in range(0, len(uuids), EVENTS_PER_REQUEST):
            out.append(
                orjson.dumps(
                    [
                        {
                            "message_uuid": u,
                            "channel_type": "SMS",
                            "callback_event": event,
                            "status": event,
                            "status_time": status_time,
                        }
                        for u in uuids[i : i + EVENTS_PER_REQUEST]
                    ]
                )
            )
    return out


def client_process(url: str, payloads: list[bytes], threads: int, go: EventType, out: Any) -> None:
    """One client process: waits for `go`, POSTs its bodies with `threads` threads."""
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    headers = {"Authorization": f"Basic {token}", "Content-Type": "application/json"}
    local = threading.local()
    clients: list[httpx.Client] = []

    def post(body: bytes) -> tuple[float, dict[str, int]]:
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = httpx.Client(base_url=url, timeout=60)
            clients.append(client)
        started = time.perf_counter()
        response = client.post("/callbacks", content=body, headers=headers)
        if response.status_code != 200:
            raise RuntimeError(f"receiver answered {response.status_code}: {response.text}")
        answer: dict[str, int] = response.json()
        return time.perf_counter() - started, answer

    go.wait()
    started, cpu = time.time(), time.process_time()
    with ThreadPoolExecutor(threads) as pool:
        answers = list(pool.map(post, payloads))
    finished = time.time()
    for client in clients:
        client.close()
    counts: Counter[str] = Counter()
    for _, answer in answers:
        counts.update(answer)
    out.put(
        {
            "started": started,
            "finished": finished,
            "latencies": [seconds for seconds, _ in answers],
            "counts": dict(counts),
            "cpu": time.process_time() - cpu,
        }
    )


def load(
    url: str, receiver_pid: int, client: redis.Redis, uuids: list[str], *, procs: int, threads: int
) -> dict[str, Any]:
    """POST `sent` + `delivered` for every uuid; the figures of that load."""
    ctx = multiprocessing.get_context("spawn")
    go, out = ctx.Event(), ctx.Queue()
    share = -(-len(uuids) // procs)
    workers = [
        ctx.Process(
            target=client_process,
            args=(url, bodies(uuids[k * share : (k + 1) * share]), threads, go, out),
        )
        for k in range(procs)
    ]
    for worker in workers:
        worker.start()
    time.sleep(2)  # every client process started and its bodies built
    cpu_before, redis_before = cpu_seconds(receiver_pid), redis_cpu_seconds(client)
    go.set()
    parts = [out.get(timeout=600) for _ in workers]
    cpu = cpu_seconds(receiver_pid) - cpu_before
    redis_cpu = redis_cpu_seconds(client) - redis_before
    for worker in workers:
        worker.join(timeout=30)
        if worker.exitcode != 0:
            raise RuntimeError(f"a client process exited with {worker.exitcode}")
    events = 2 * len(uuids)
    seconds = max(p["finished"] for p in parts) - min(p["started"] for p in parts)
    latencies = sorted(ms * 1000 for p in parts for ms in p["latencies"])
    cuts = quantiles(latencies, n=100)
    counts: Counter[str] = Counter()
    for p in parts:
        counts.update(p["counts"])
    return {
        "events": events,
        "requests": len(latencies),
        "events_per_request": EVENTS_PER_REQUEST,
        "clients": f"{procs} processes x {threads} threads ({procs * threads} connections)",
        "seconds": round(seconds, 3),
        "events_per_second": round(events / seconds),
        "receiver_cpu_seconds": round(cpu, 2),
        "receiver_cpu_seconds_per_10000_events": round(cpu / (events / 10_000), 3),
        "events_per_receiver_cpu_second": round(events / cpu) if cpu else None,
        "receiver_cpu_share": round(cpu / seconds, 2),
        "redis_cpu_seconds_per_10000_events": round(redis_cpu / (events / 10_000), 3),
        "redis_cpu_share": round(redis_cpu / seconds, 2),
        "clients_cpu_seconds": round(sum(p["cpu"] for p in parts), 2),
        "request_p50_ms": round(cuts[49], 1),
        "request_p99_ms": round(cuts[98], 1),
        "answers": dict(sorted(counts.items())),
    }


def map_messages(client: redis.Redis, keys: Keys, uuids: list[str]) -> None:
    """What finish.lua writes for an accepted message (the tracking schedule left out)."""
    now = int(time.time() * 1000)
    for i in range(0, len(uuids), 1000):
        pipe = client.pipeline(transaction=False)
        for j, u in enumerate(uuids[i : i + 1000], start=i):
            pipe.hset(keys.message(u), mapping={"job": f"ingest-{j}", "channel": "SMS"})
            pipe.hset(keys.message(u), "accepted", now)
            pipe.expire(keys.message(u), 3600)
        pipe.execute()


def check_statuses(client: redis.Redis, keys: Keys, since: str, messages: int) -> dict[str, Any]:
    """Exactly one final (delivered) and one sent entry per message, nothing else; raises."""
    finals: Counter[str] = Counter()
    by_status: Counter[str] = Counter()
    statuses = iter_stream(
        client, keys.statuses, STATUS_FIELD, orjson.loads, start=since, count=10_000
    )
    for _, status in statuses:
        by_status[status["status"]] += 1
        if status["final"]:
            finals[status["jobId"]] += 1
    problems = []
    if len(finals) != messages:
        problems.append(f"{len(finals)} of {messages} jobs have a final entry")
    if any(count != 1 for count in finals.values()):
        problems.append(f"{sum(c > 1 for c in finals.values())} jobs have several finals")
    if by_status != Counter({"sent": messages, "delivered": messages}):
        problems.append(f"entries by status {dict(by_status)}, expected {messages} of each")
    if problems:
        raise RuntimeError("statuses stream wrong: " + "; ".join(problems))
    return {"jobs_with_one_final": len(finals), "entries": sum(by_status.values())}


def check_answers(answers: dict[str, int], events: int, parked: bool) -> None:
    expected = {"parked": events} if parked else {"recorded": events}
    got = {k: v for k, v in answers.items() if k != "received" and v}
    if answers.get("received") != events or got != expected:
        raise RuntimeError(f"receiver answered {answers}, expected {expected}")


def run(messages: int, procs: int, threads: int, parked: bool) -> dict[str, Any]:
    with ensure_redis(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")) as url:
        client = redis.Redis.from_url(url)
        keys = Keys(f"bench-ingest-{int(time.time())}")
        try:
            warm = [str(uuid.uuid4()) for _ in range(1000)]
            uuids = [str(uuid.uuid4()) for _ in range(messages)]
            map_messages(client, keys, warm + uuids)
            env = {
                **os.environ,
                "REDIS_URL": url,
                "DISPATCH_KEY_PREFIX": keys.prefix,
                "CALLBACK_USERNAME": USER,
                "CALLBACK_PASSWORD": PASSWORD,
            }
            results: dict[str, Any] = {}
            Path("bench-results").mkdir(exist_ok=True)
            with receiver_process(env, log=Path("bench-results/receiver.log")) as receiver:
                # Warm-up: the script loaded, connections open; its entries come before `since`.
                load(receiver.url, receiver.pid, client, warm, procs=1, threads=2)
                last: Any = client.xrevrange(keys.statuses, count=1)
                since = as_text(last[0][0])
                applied = load(
                    receiver.url, receiver.pid, client, uuids, procs=procs, threads=threads
                )
                check_answers(applied["answers"], 2 * messages, parked=False)
                applied["check"] = check_statuses(client, keys, since, messages)
                target = applied["events_per_second"] / TARGET_EVENTS_PER_SECOND
                applied["target"] = (
                    f">= {TARGET_EVENTS_PER_SECOND} events/s: "
                    f"{'met' if target >= 1 else 'NOT met'} ({target:.2f}x)"
                )
                results["applied"] = applied
                if parked:
                    length = client.xlen(keys.statuses)
                    strangers = [str(uuid.uuid4()) for _ in range(messages)]
                    results["parked"] = load(
                        receiver.url, receiver.pid, client, strangers, procs=procs, threads=threads
                    )
                    check_answers(results["parked"]["answers"], 2 * messages, parked=True)
                    waiting = client.zcard(keys.parked_index)
                    if client.xlen(keys.statuses) != length or waiting != messages:
                        raise RuntimeError(
                            f"parked run: {waiting} messages parked of {messages}, "
                            f"{client.xlen(keys.statuses) - length} status entries written"
                        )
                    results["parked"]["check"] = {"messages_parked": waiting}
        finally:
            delete_prefix(client, keys.prefix)
    results["machine"] = (
        f"{os.cpu_count()} cores shared by the receiver, Redis and the clients (and other work)"
    )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=50_000, help="each gets 2 events")
    parser.add_argument("--clients", type=int, default=2, help="client processes")
    parser.add_argument("--threads", type=int, default=4, help="threads per client process")
    parser.add_argument("--no-parked", action="store_true", help="skip the parked run")
    parser.add_argument("--out", type=Path, default=Path("bench-results/receiver.json"))
    args = parser.parse_args()
    results = run(args.messages, args.clients, args.threads, not args.no_parked)
    report(results, args.out, width=40)


if __name__ == "__main__":
    main()
