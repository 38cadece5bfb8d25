"""How many messages per second the sandbox accepts on one core, validating 1000-item requests.

The sandbox is pinned to CPU 0 and the load generator to the others, so the figure is the
sandbox's own; its CPU seconds are read from /proc, which also gives messages per CPU-second
(the one-core ceiling even if the load generator cannot saturate it).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import orjson

from devenv.processes import sandbox_process

TOKEN = "bench-token"
BATCH = 1000


def sms_body(batch: int) -> bytes:
    messages = [
        {
            "channelType": "SMS",
            "senderName": "SENDER",
            "destination": f"1408555{i % 10000:04d}",
            "content": f"Your order {i} has shipped, track it at https://example.com/t/{i}",
            "tags": ["campaign_2026", "bench"],
            "ttl": 3600,
            "callbackUrl": "https://company.com/callback",
        }
        for i in range(batch)
    ]
    return orjson.dumps(messages)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(requests: int, concurrency: int) -> dict[str, Any]:
    cpus = sorted(os.sched_getaffinity(0))
    sandbox_cpu, load_cpus = {cpus[0]}, set(cpus[1:]) or {cpus[0]}
    os.sched_setaffinity(0, load_cpus)
    body = sms_body(BATCH)
    headers = {"Authorization": f"Basic {TOKEN}", "Content-Type": "application/json"}
    with sandbox_process(["--token", TOKEN], cpus=sandbox_cpu) as server:
        url, pid = server.url, server.pid
        clients = [httpx.Client(base_url=url, timeout=70) for _ in range(concurrency)]

        def post(i: int) -> int:
            response = clients[i % concurrency].post(
                "/api/v1/message", content=body, headers=headers
            )
            response.raise_for_status()
            return len(response.json()["items"])

        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(post, range(concurrency * 2)))  # warm-up
            httpx.delete(f"{url}/_sandbox/received")
            cpu_before, started = cpu_seconds(pid), time.perf_counter()
            accepted = sum(pool.map(post, range(requests)))
            elapsed, cpu = time.perf_counter() - started, cpu_seconds(pid) - cpu_before
        recorded = httpx.get(f"{url}/_sandbox/stats").json()["messagesRecorded"]
        for client in clients:
            client.close()
    return {
        "messages": accepted,
        "recorded": recorded,
        "requests": requests,
        "batch": BATCH,
        "concurrency": concurrency,
        "seconds": round(elapsed, 3),
        "messages_per_second": round(accepted / elapsed),
        "sandbox_cpu_seconds": round(cpu, 3),
        "messages_per_sandbox_cpu_second": round(accepted / cpu) if cpu else None,
        "machine": f"{os.cpu_count()} cores",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--out", type=Path, default=Path("bench-results/sandbox.json"))
    args = parser.parse_args()
    result = run(args.requests, args.concurrency)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"sandbox, one core, {BATCH}-item SMS requests with validation:")
    for key, value in result.items():
        print(f"  {key:34} {value}")


if __name__ == "__main__":
    main()
