"""The callback path alone: sandbox → receiver → Redis, without a worker pod or the producer.

SMS are POSTed straight to the sandbox, 1000 a request, paced at --rate messages per second,
each asking for `sent` and `delivered` callbacks to a receiver process; each answer's
messageUuids are mapped at once as finish.lua maps them (the hash `{prefix}:message:{uuid}`).
With the delivery plan of bench/pipeline.py's part 4, each message's final entry on the
statuses stream is timed from the message's creation at the sandbox, less finalAfterMs, as
in that part: comparing the two tells how much of part 4's delay is the path itself and how
much the machine's two cores shared with the pod and the producer. Every message must get
exactly one final entry, or the benchmark fails.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import httpx
import redis

from bench.pipeline import DELIVERY, created_at, delay_figures, final_entries, wait_callbacks
from bench.proc import cpu_seconds, delete_prefix, redis_cpu_seconds
from bench.report import report
from devenv.processes import receiver_process, sandbox_process
from devenv.redis_server import ensure_redis
from tasks.keys import Keys

TOKEN = "bench-token"
USER, PASSWORD = "bench", "bench-callback-password"
BATCH = 1000


def send(
    client: redis.Redis, keys: Keys, sandbox: str, callback_url: str, *, n: int, rate: float
) -> float:
    """POST n SMS to the sandbox at `rate` messages/s, mapping each answer's uuids; returns
    when the first request went out."""
    headers = {"Authorization": f"Basic {TOKEN}"}
    with httpx.Client(base_url=sandbox, timeout=60) as http:
        started = time.time()
        for i in range(0, n, BATCH):
            body = [
                {
                    "channelType": "SMS",
                    "senderName": "SENDER",
                    "destination": f"1408{j:07d}",
                    "content": f"Your order {j} has shipped",
                    "callbackUrl": callback_url,
                    "callbackEvents": ["sent", "delivered"],
                }
                for j in range(i, min(n, i + BATCH))
            ]
            response = http.post("/api/v1/message", json=body, headers=headers)
            response.raise_for_status()
            now = int(time.time() * 1000)
            pipe = client.pipeline(transaction=False)
            for j, item in enumerate(response.json()["items"], start=i):
                pipe.hset(
                    keys.message(item["messageUuid"]),
                    mapping={"job": f"path-{j}", "channel": "SMS", "accepted": now},
                )
            pipe.execute()
            time.sleep(max(0.0, started + (i + BATCH) / rate - time.time()))
    return started


def run(n: int, rate: float) -> dict[str, Any]:
    with ensure_redis(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")) as url:
        client = redis.Redis.from_url(url)
        keys = Keys(f"bench-path-{int(time.time())}")
        env = {
            **os.environ,
            "REDIS_URL": url,
            "DISPATCH_KEY_PREFIX": keys.prefix,
            "CALLBACK_USERNAME": USER,
            "CALLBACK_PASSWORD": PASSWORD,
        }
        Path("bench-results").mkdir(exist_ok=True)
        try:
            with (
                sandbox_process(["--token", TOKEN, "--delivery", json.dumps(DELIVERY)]) as sandbox,
                receiver_process(env, log=Path("bench-results/receiver.log")) as receiver,
            ):
                host = receiver.url.removeprefix("http://")
                callback_url = f"http://{USER}:{PASSWORD}@{host}/callbacks"
                before = cpu_seconds(sandbox.pid), cpu_seconds(receiver.pid)
                redis_before = redis_cpu_seconds(client)
                started = send(client, keys, sandbox.url, callback_url, n=n, rate=rate)
                sent = time.time()
                callbacks = wait_callbacks(sandbox.url, timeout=600)
                drained = time.time()
                sandbox_cpu = cpu_seconds(sandbox.pid) - before[0]
                receiver_cpu = cpu_seconds(receiver.pid) - before[1]
                redis_cpu = redis_cpu_seconds(client) - redis_before
                created = created_at(sandbox.url)
            finals = final_entries(client, keys)
        finally:
            delete_prefix(client, keys.prefix)
    several = sum(len(entries) > 1 for entries in finals.values())
    if len(finals) != n or several or callbacks["givenUp"]:
        raise RuntimeError(
            f"callback path: {len(finals)} of {n} messages have a final entry, {several} have "
            f"several; sandbox: {callbacks}"
        )
    firsts = [entries[0] for entries in finals.values()]
    events = callbacks["eventsSent"]
    return {
        "path": {
            "messages": n,
            "rate_asked": rate,
            "send_seconds": round(sent - started, 2),
            "delivery_plan": DELIVERY,
            "jobs_with_one_final": len(finals),
            **delay_figures(firsts, created),
            "seconds_after_last_send_to_drained": round(drained - sent, 2),
            "callback_events": events,
            "sandbox_cpu_seconds": round(sandbox_cpu, 2),
            "receiver_cpu_seconds": round(receiver_cpu, 2),
            "receiver_cpu_seconds_per_10000_events": round(receiver_cpu / (events / 10_000), 3),
            "redis_cpu_share": round(redis_cpu / (drained - started), 2),
        },
        "machine": f"{os.cpu_count()} cores, everything on this machine",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--rate", type=float, default=5000, help="messages per second")
    parser.add_argument("--out", type=Path, default=Path("bench-results/callback_path.json"))
    args = parser.parse_args()
    report(run(args.messages, args.rate), args.out, width=40)


if __name__ == "__main__":
    main()
