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
5. baseline: issue 13's yardstick, the design a Celery user would write first (one plain
   Celery task per job, bench/baseline.py) draining N SMS jobs on the same Redis; part 2's
   throughput against it is `targets`' ratio, beside the issue's other targets.
6. scaling: issue 13's scaling figure (bench/scaling.py): 1, 2 and 4 pods, each count
   draining a backlog of N SMS jobs (put before them at once when they are ready) against a
   sandbox answering every request 50 ms late: msg/s, the speed-up against 1 pod beside the
   latency ceiling (pods x BULK_CONCURRENCY x 1,000 messages / 50 ms), and the CPU of the
   pods, Redis and the sandbox as cores, beside the machine's busy cores.
All parts run in one go on the same machine, so their ratios are comparable; part 2 runs
without callbacks, as before they existed.

`--profile` runs part 2 alone instead, twice, on a Redis of its own, with each pool process
of the pod measuring its SMS batches (bench/worker_profile.py): by phases, while Redis's
SLOWLOG keeps every command (Redis's own time per script and command), then under cProfile;
and the per-message steps timed alone. Where the worker's CPU and Redis's time go per
message; the measuring slows both, so those runs' throughput is not a figure to compare.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import time
from datetime import datetime
from pathlib import Path
from statistics import quantiles
from typing import Any, NamedTuple

import httpx
import orjson
import redis

from bench import baseline, otp, scaling, worker_profile
from bench.jobs import sms_jobs
from bench.proc import Pod, cpu_seconds, delete_prefix, redis_cpu_seconds
from bench.report import report
from devenv.processes import RunningServer, receiver_process, sandbox_process
from devenv.redis_server import RedisServer, ensure_redis
from tasks.contract import ContractContext
from tasks.keys import CONSUMER_GROUP, JOB_FIELD, STATUS_FIELD, Keys
from tasks.producer import Producer
from tasks.stream_reader import iter_stream
from tasks.tracking.store import with_status_model
from worker import ownership
from worker.rate_limits import scripts as rate_scripts

TOKEN = "bench-token"
#: Part 4's delivery plan: every message delivered, its final status due 1 s after creation.
DELIVERY = {"sentAfterMs": 200, "finalAfterMs": 1000}
CALLBACK_USER, CALLBACK_PASSWORD = "bench", "bench-callback-password"
#: Part 3's codes a second.
CODES_PER_S = 100.0
#: Issue 13's targets: the ratio to the baseline (at least), worker CPU-s per 1,000 messages
#: and OTP p99 in ms (at most).
TARGET_RATIO, TARGET_CPU_PER_1000, TARGET_OTP_P99_MS = 25.0, 0.015, 250.0


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
    parts_before, redis_before = pod.cpu_by_process(), redis_cpu_seconds(client)
    started = time.perf_counter()
    producer.enqueue_many(jobs)
    enqueued = time.perf_counter()
    finished = wait_for(client, keys, already + n, timeout=600)
    cpu = pod.cpu_seconds() - cpu_before
    sandbox_cpu = cpu_seconds(sandbox_pid) - sandbox_before
    redis_cpu = redis_cpu_seconds(client) - redis_before
    parts = {
        part: round((seconds - parts_before.get(part, 0.0)) / (n / 1000), 4)
        for part, seconds in sorted(pod.cpu_by_process().items())
    }
    return {
        "messages": n,
        "enqueue_seconds": round(enqueued - started, 3),
        "seconds": round(finished - started, 3),
        "messages_per_second": round(n / (finished - started)),
        "worker_cpu_seconds": round(cpu, 2),
        "worker_cpu_seconds_per_1000": round(cpu / (n / 1000), 4),
        "worker_cpu_seconds_per_1000_by_process": parts,
        "sandbox_cpu_seconds": round(sandbox_cpu, 2),
        "redis_cpu_seconds_per_1000": round(redis_cpu / (n / 1000), 4),
    }


def otp_latency(url: str, keys: Keys, sandbox: str, n: int) -> dict[str, Any]:
    client = redis.Redis.from_url(url)
    already = client.xlen(keys.results)
    codes = otp.trickle(url, keys, n, CODES_PER_S)
    wait_for(client, keys, already + n + codes.codes, timeout=120)
    arrivals = httpx.get(
        f"{sandbox}/_sandbox/received", params={"channelType": "FLASHCALL"}, timeout=60
    ).json()
    latencies = codes.latencies_ms(arrivals)
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
    for entry_id, status in iter_stream(
        client, keys.statuses, STATUS_FIELD, orjson.loads, count=10_000
    ):
        if status["final"]:
            at = int(entry_id.split("-")[0]) / 1000
            received = datetime.fromisoformat(status["receivedAt"]).timestamp()
            finals.setdefault(status["jobId"], []).append(
                Final(at, status["status"], status["messageUuid"], received)
            )
    return finals


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
            results["baseline"] = baseline.measure(
                url,
                Keys(f"{keys.prefix}:baseline"),
                sms_jobs(n, "baseline"),
                log=Path("bench-results/baseline.log"),
            )
            results["scaling"] = scaling.measure(url, f"{keys.prefix}:scaling", n)
        finally:
            delete_prefix(client, keys.prefix)
    results["throughput"]["share_of_ceiling"] = round(
        results["throughput"]["messages_per_second"] / results["ceiling"]["messages_per_second"],
        3,
    )
    results["time_to_final"]["throughput_vs_part_2"] = round(
        results["time_to_final"]["messages_per_second"]
        / results["throughput"]["messages_per_second"],
        3,
    )
    results["targets"] = targets(results)
    results["machine"] = f"{os.cpu_count()} cores, everything on this machine"
    return results


def targets(results: dict[str, Any]) -> dict[str, Any]:
    """Issue 13's figures side by side, each with its target."""
    product = results["throughput"]["messages_per_second"]
    yardstick = results["baseline"]["messages_per_second"]
    ratio = product / yardstick
    cpu = results["throughput"]["worker_cpu_seconds_per_1000"]
    p99 = results["otp_latency"]["p99_ms"]
    return {
        "product_messages_per_second": product,
        "baseline_messages_per_second": yardstick,
        "product_vs_baseline": f"{ratio:.1f}x (target >= {TARGET_RATIO:g}x)",
        "worker_cpu_seconds_per_1000": f"{cpu} (target <= {TARGET_CPU_PER_1000})",
        "otp_p99_ms": f"{p99} (target <= {TARGET_OTP_P99_MS:g})",
        "met": ratio >= TARGET_RATIO and cpu <= TARGET_CPU_PER_1000 and p99 <= TARGET_OTP_P99_MS,
    }


def profile(n: int) -> dict[str, Any]:
    """Part 2 twice, its pool processes measured (bench/worker_profile.py): by phases, with
    Redis's SLOWLOG keeping every command, then under cProfile; on a Redis of its own."""
    worker_profile.clear()
    results: dict[str, Any] = {}
    options = {"slowlog-log-slower-than": "0", "slowlog-max-len": "2000000"}
    with (
        RedisServer(options, log=Path("bench-results/profile-redis.log")) as server,
        sandbox_process(["--token", TOKEN]) as sandbox,
    ):
        client = server.client(timeout_s=60)
        for mode in ("phases", "cprofile"):
            keys = Keys(f"bench-{mode}-{int(time.time())}")
            env = {
                **os.environ,
                "REDIS_URL": server.url,
                "DISPATCH_KEY_PREFIX": keys.prefix,
                "REVICOM_API_URL": sandbox.url,
                "REVICOM_API_TOKEN": TOKEN,
                worker_profile.MODE_VARIABLE: mode,
            }
            include = ("--include", "bench.worker_profile")
            pod = Pod(env, Path(f"bench-results/pod-{mode}.log"), celery_args=include)
            try:
                time.sleep(3)  # both nodes up
                client.slowlog_reset()
                figures = throughput(client, keys, pod, n, sandbox_pid=sandbox.pid)
                time.sleep(1)  # the last task's figures are written after its outcomes
            finally:
                pod.stop()
            results[f"throughput ({mode})"] = figures
            if mode == "phases":
                results["worker_phases_us_per_message"] = worker_profile.phases(n)
                results["redis_us_per_message"] = redis_time(client, keys, n)
            else:
                results["cprofile"] = worker_profile.table(n)
    results["worker_steps_alone_us_per_message"] = worker_profile.steps(sms_jobs(1, "steps")[0])
    return results


def redis_time(client: redis.Redis, keys: Keys, n: int) -> dict[str, float]:
    """Redis's own time per message (µs) by command, a script by its file (SLOWLOG holds each
    call's duration inside Redis; the commands a script runs are logged before it, from the
    client `?:0`, and are counted in its time)."""
    names = script_names()
    spent: dict[str, float] = {}
    within: dict[str, dict[str, float]] = {}  # script → the commands it ran
    ran: dict[str, float] = {}
    for entry in sorted(client.slowlog_get(client.slowlog_len()), key=lambda e: e["id"]):
        args = bytes(entry["command"]).decode("utf-8", "replace").split(" ")  # binary keys
        command = args[0].lower()
        if entry["client_address"] == b"?:0":
            ran[command] = ran.get(command, 0.0) + entry["duration"]
            continue
        if command == "evalsha":
            command = names.get(args[1], f"script {args[1][:8]}")
        spent[command] = spent.get(command, 0.0) + entry["duration"]
        inside = within.setdefault(command, {})
        for called, us in ran.items():
            inside[called] = inside.get(called, 0.0) + us
        ran = {}
    per: dict[str, float] = {"total_us_per_message": round(sum(spent.values()) / n, 2)}
    for command, us in sorted(spent.items(), key=lambda item: -item[1]):
        if us / n < 0.01:  # below the table's precision
            break
        per[command] = round(us / n, 2)
        for called, inner in sorted(within[command].items(), key=lambda item: -item[1])[:5]:
            per[f"  {command}: {called}"] = round(inner / n, 2)
    return per


def script_names() -> dict[str, str]:
    """The sha1 of every Lua script the worker loads → its file's name."""
    names = {}
    for path in sorted(Path(ownership.__file__).with_name("lua").glob("*.lua")):
        text = ownership.source(path.stem)
        names[hashlib.sha1(text.encode()).hexdigest()] = path.name
        names[hashlib.sha1(with_status_model(text).encode()).hexdigest()] = path.name
    for path in sorted(Path(rate_scripts.__file__).parent.glob("*.lua")):
        text = rate_scripts.source(path.stem)
        names[hashlib.sha1(text.encode()).hexdigest()] = f"rate_limits/{path.name}"
    return names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--out", type=Path, default=Path("bench-results/pipeline.json"))
    parser.add_argument("--profile", action="store_true", help="profile part 2 instead (see above)")
    args = parser.parse_args()
    Path("bench-results").mkdir(exist_ok=True)  # the logs of the parts go there first
    if args.profile:
        out = args.out.with_name("pipeline-profile.json")
        report(profile(args.messages), out, width=48)
        return
    results = run(args.messages)
    report(results, args.out, width=40)


if __name__ == "__main__":
    main()
