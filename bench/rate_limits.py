"""Send-rate limits (worker/rate_limits/) as the sandbox measures them: three worker pods
(`revicom-dispatch worker`, each its bulk and OTP nodes), one sandbox, a real Redis.

1. limit: SMS_RATE_LIMIT=2000, a 60,000-SMS campaign enqueued at once and FLASHCALL codes
   enqueued meanwhile at a steady 20 a second. The SMS rate is counted in per-second buckets
   of the sandbox's `receivedAt` from the first arrival, the first and last TRIM_S buckets
   left out (the burst, the tail): mean, min and max, and the mean against the limit. The
   codes are timed from enqueue to `receivedAt` (p50, p99, max).
2. operator: the sandbox plays the operator (fault `rateLimit` 1000/s, burst 1000) for a
   60,000-SMS campaign, in three setups: `adaptive` (ADAPTIVE_RATE=true, no limit), `pause`
   (no limit, ADAPTIVE_RATE=false: only the shared pause a 429 sets) and `configured`
   (SMS_RATE_LIMIT=950, ADAPTIVE_RATE=false, the recommended setup). The sandbox's counters
   are sampled every SAMPLE_S, so the 429s' share of all requests is given overall, after the
   first LEARNT_AFTER_S seconds and over the second half of the campaign (by time, first to
   last arrival); the accepted rate as in part 1, and overall and over that second half.

Every job must get exactly one outcome, `accepted`, and the sandbox must hold exactly one
message per job (no double sends): each part reports what it found, and the benchmark exits
non-zero after writing its figures if any part did not. The pods run the default settings
but for the rates above, METRICS_PORT=0 (three pods on one host) and BALANCE_REFRESH_S=0
(the sandbox's request counters then hold the sends alone).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from itertools import pairwise
from pathlib import Path
from statistics import fmean, quantiles
from typing import Any, NamedTuple

import httpx
import orjson
import redis

from bench import otp
from bench.jobs import sms_jobs
from bench.proc import delete_prefix
from bench.report import report
from config import Settings
from devenv.processes import sandbox_process
from devenv.redis_server import ensure_redis
from tasks.contract import ContractContext
from tasks.keys import OUTCOME_FIELD, Keys
from tasks.producer import Producer
from tasks.stream_reader import iter_stream
from worker.rate_limits.state import read_rates

TOKEN = "bench-token"
SCRIPT = str(Path(sys.executable).with_name("revicom-dispatch"))
LOGS = Path("bench-results")
#: Worker pods, each its own `revicom-dispatch worker` (a bulk and an OTP node).
PODS = 3
#: Part 1's SMS_RATE_LIMIT (messages a second, every pod together).
LIMIT = 2000
#: The operator of part 2: the sandbox's `rateLimit` fault.
OPERATOR = {"perSecond": 1000, "burst": 1000}
#: Part 2's configured limit, a little under the operator's rate (the recommended setup).
CONFIGURED = 950
#: Seconds left out at each end of the arrivals when the steady rate is counted.
TRIM_S = 3
#: Part 2: 429s from this many seconds after the first arrival are "once learnt".
LEARNT_AFTER_S = 10
#: Seconds between two samples of the sandbox's counters and the effective rate.
SAMPLE_S = 0.2
#: Longest wait for a part's outcomes (s).
TIMEOUT_S = 900
#: Part 2's setups: each one's pod settings beyond the defaults.
SETUPS: dict[str, dict[str, str]] = {
    "adaptive": {"ADAPTIVE_RATE": "true"},
    "pause": {"ADAPTIVE_RATE": "false"},
    "configured": {"ADAPTIVE_RATE": "false", "SMS_RATE_LIMIT": str(CONFIGURED)},
}


class Pods:
    """PODS worker pods in their own sessions, each logging at INFO to its own file; started
    together and waited for until every node logged ` ready.`."""

    def __init__(self, env: Mapping[str, str], name: str) -> None:
        self._logs = [LOGS / f"rate-{name}-pod{i}.log" for i in range(PODS)]
        self._sinks = [log.open("wb") for log in self._logs]
        self._processes = [
            subprocess.Popen(
                [SCRIPT, "worker", "--loglevel", "INFO"],
                env=dict(env),
                stdout=sink,
                stderr=sink,
                start_new_session=True,
            )
            for sink in self._sinks
        ]
        deadline = time.monotonic() + 120
        while not all(log.read_bytes().count(b" ready.") >= 2 for log in self._logs):
            if any(p.poll() is not None for p in self._processes):
                raise RuntimeError(f"a pod exited while starting: see {LOGS}/rate-{name}-*")
            if time.monotonic() > deadline:
                raise RuntimeError(f"pods not ready after 120 s: see {LOGS}/rate-{name}-*")
            time.sleep(0.1)

    def throttled(self) -> int:
        """The 429s the pods logged (each a pause for every pod)."""
        return sum(log.read_bytes().count(b"429 on POST") for log in self._logs)

    def stop(self) -> None:
        for process in self._processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self._processes:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        for sink in self._sinks:
            sink.close()


@contextmanager
def running_pods(env: Mapping[str, str], name: str) -> Iterator[Pods]:
    pods = Pods(env, name)
    try:
        yield pods
    finally:
        pods.stop()


class Sample(NamedTuple):
    at: float  # unix time
    requests: int  # every request to an API endpoint so far
    throttled: int  # of them answered 429
    effective: float  # SMS's effective rate (ADAPTIVE_RATE: as learnt); 0: none


class Sampler:
    """The sandbox's counters and SMS's effective rate every SAMPLE_S, in a thread: when the
    429s came, and what the pods had learnt by then."""

    def __init__(self, sandbox: str, client: redis.Redis, keys: Keys, settings: Settings) -> None:
        self.samples: list[Sample] = []
        self._sandbox, self._client, self._keys, self._settings = sandbox, client, keys, settings
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with httpx.Client(base_url=self._sandbox, timeout=30) as http:
            while True:
                self.samples.append(self._take(http))
                if self._done.wait(SAMPLE_S):
                    self.samples.append(self._take(http))
                    return

    def _take(self, http: httpx.Client) -> Sample:
        stats = http.get("/_sandbox/stats").json()
        rates = read_rates(self._client, self._keys, self._settings)
        sms = next(limit for limit in rates.limits if limit.bucket == "channel:SMS")
        by_status = stats["requestsByStatus"]
        return Sample(time.time(), stats["requests"], by_status.get("429", 0), sms.effective)

    def stop(self) -> list[Sample]:
        self._done.set()
        self._thread.join()
        return self.samples


def pod_env(url: str, keys: Keys, sandbox: str, settings: Mapping[str, str]) -> dict[str, str]:
    return {
        **os.environ,
        "REDIS_URL": url,
        "DISPATCH_KEY_PREFIX": keys.prefix,
        "REVICOM_API_URL": sandbox,
        "REVICOM_API_TOKEN": TOKEN,
        "METRICS_PORT": "0",
        "BALANCE_REFRESH_S": "0",
        **settings,
    }


def received(sandbox: str, channel: str) -> list[dict[str, Any]]:
    """Every message of `channel` the sandbox created, in arrival order."""
    records: list[dict[str, Any]] = []
    page = 20_000
    while True:
        batch = httpx.get(
            f"{sandbox}/_sandbox/received",
            params={"channelType": channel, "offset": len(records), "limit": page},
            timeout=120,
        ).json()
        records += batch
        if len(batch) < page:
            return records


def wait_outcomes(client: redis.Redis, keys: Keys, count: int) -> None:
    """Until `count` outcomes, then a second more: an outcome too many would show."""
    deadline = time.monotonic() + TIMEOUT_S
    while client.xlen(keys.results) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {client.xlen(keys.results)} of {count} outcomes")
        time.sleep(0.05)
    time.sleep(1)


def delivery_checks(
    client: redis.Redis, keys: Keys, records: list[dict[str, Any]], jobs: Mapping[str, str]
) -> dict[str, Any]:
    """Every job (jobId → destination) exactly one outcome, `accepted`, and exactly one
    message at the sandbox; `problems` lists what is not so."""
    outcomes: Counter[str] = Counter()
    statuses: Counter[str] = Counter()
    for _, outcome in iter_stream(client, keys.results, OUTCOME_FIELD, orjson.loads, count=10_000):
        outcomes[outcome["jobId"]] += 1
        statuses[outcome["status"]] += 1
    sent = Counter(r["message"]["destination"] for r in records)
    expected = Counter(jobs.values())
    problems = []
    if set(outcomes) != set(jobs) or max(outcomes.values(), default=0) > 1:
        missing = len(set(jobs) - set(outcomes))
        several = sum(1 for n in outcomes.values() if n > 1)
        problems.append(f"{missing} jobs without an outcome, {several} with several")
    if set(statuses) != {"accepted"}:
        problems.append(f"outcomes not all accepted: {dict(statuses)}")
    if sent != expected:
        problems.append(
            f"the sandbox holds {len(records)} messages for {len(jobs)} jobs, "
            f"{sum(1 for n in sent.values() if n > 1)} destinations twice"
        )
    return {
        "jobs": len(jobs),
        "outcomes": sum(outcomes.values()),
        "outcomes_by_status": dict(statuses),
        "sandbox_received": len(records),
        "sent_twice": sum(n - 1 for n in sent.values() if n > 1),
        "problems": problems,
    }


def rate_figures(times: list[float], reference: float) -> dict[str, Any]:
    """Per-second buckets of arrival times from the first one, the first and last TRIM_S
    left out; the mean against `reference` (a limit or the operator's rate)."""
    start = times[0]
    buckets = Counter(int(t - start) for t in times)
    steady = [buckets.get(s, 0) for s in range(TRIM_S, max(buckets) + 1 - TRIM_S)]
    if not steady:
        return {"seconds": round(times[-1] - start, 2), "steady_buckets": 0}
    fives = [sum(steady[i : i + 5]) / 5 for i in range(0, len(steady) - 4, 5)]
    mean = fmean(steady)
    return {
        "seconds": round(times[-1] - start, 2),
        "steady_buckets": len(steady),
        "steady_mean_per_s": round(mean, 1),
        "steady_min_bucket": min(steady),
        "steady_max_bucket": max(steady),
        "steady_min_max_5s_windows_per_s": [min(fives, default=0), max(fives, default=0)],
        "steady_mean_vs_reference": round(mean / reference, 4),
    }


def campaign_jobs(n: int) -> list[dict[str, Any]]:
    """The campaign's jobs, as otp.enqueue_campaign writes them."""
    return sms_jobs(n, otp.CAMPAIGN_TAG)


def limit_part(url: str, keys: Keys, n: int, codes_per_s: float) -> dict[str, Any]:
    """Part 1 (see the module's docstring)."""
    client = redis.Redis.from_url(url)
    with (
        sandbox_process(["--token", TOKEN], log=LOGS / "rate-limit-sandbox.log") as sandbox,
        running_pods(pod_env(url, keys, sandbox.url, {"SMS_RATE_LIMIT": str(LIMIT)}), "limit"),
    ):
        trickled = otp.trickle(url, keys, n, codes_per_s)
        wait_outcomes(client, keys, n + trickled.codes)
        sms, codes = received(sandbox.url, "SMS"), received(sandbox.url, "FLASHCALL")
    jobs = {job["jobId"]: job["message"]["destination"] for job in campaign_jobs(n)}
    checks = delivery_checks(client, keys, sms + codes, jobs | trickled.jobs())
    latencies = trickled.latencies_ms(codes)
    cuts = quantiles(latencies, n=100, method="inclusive")
    return {
        "pods": PODS,
        "sms_rate_limit": LIMIT,
        "campaign_sms": n,
        **rate_figures(sorted(r["receivedAt"] for r in sms), LIMIT),
        "codes": len(latencies),
        "codes_per_s_enqueued": codes_per_s,
        "code_p50_ms": round(cuts[49], 1),
        "code_p99_ms": round(cuts[98], 1),
        "code_max_ms": round(latencies[-1], 1),
        **checks,
    }


def counts_at(samples: list[Sample], at: float) -> Sample:
    """The last sample taken at or before `at` (the first one if none was)."""
    before = [s for s in samples if s.at <= at]
    return before[-1] if before else samples[0]


def share_after(samples: list[Sample], at: float) -> float | None:
    """The 429s' share of the requests after `at`."""
    then, last = counts_at(samples, at), samples[-1]
    requests = last.requests - then.requests
    return round((last.throttled - then.throttled) / requests, 4) if requests else None


def operator_part(url: str, keys: Keys, n: int, setup: str) -> dict[str, Any]:
    """Part 2 in one setup (see the module's docstring)."""
    client = redis.Redis.from_url(url)
    settings = SETUPS[setup]
    observed = Settings(
        adaptive_rate=settings["ADAPTIVE_RATE"] == "true",
        sms_rate_limit=float(settings.get("SMS_RATE_LIMIT", "0")),
    )
    log = LOGS / f"rate-{setup}-sandbox.log"
    with sandbox_process(["--token", TOKEN], log=log) as sandbox:
        httpx.put(f"{sandbox.url}/_sandbox/faults", json={"rateLimit": OPERATOR}).raise_for_status()
        with running_pods(pod_env(url, keys, sandbox.url, settings), setup) as pods:
            sampler = Sampler(sandbox.url, client, keys, observed)
            Producer(client, keys, context=ContractContext()).enqueue_many(campaign_jobs(n))
            wait_outcomes(client, keys, n)
            samples = sampler.stop()
            logged_429s = pods.throttled()
        stats = httpx.get(f"{sandbox.url}/_sandbox/stats", timeout=30).json()
        sms = received(sandbox.url, "SMS")
    jobs = {job["jobId"]: job["message"]["destination"] for job in campaign_jobs(n)}
    checks = delivery_checks(client, keys, sms, jobs)
    times = sorted(r["receivedAt"] for r in sms)
    first, last = times[0], times[-1]
    middle = (first + last) / 2
    by_status = stats["requestsByStatus"]
    throttled_at = [
        round(s.at - first, 1) for before, s in pairwise(samples) if s.throttled > before.throttled
    ]
    learnt = [s.effective for s in samples if s.at >= first + LEARNT_AFTER_S and s.effective]
    rate = OPERATOR["perSecond"]
    return {
        "pods": PODS,
        "operator": OPERATOR,
        "settings": settings,
        "campaign_sms": n,
        "requests": stats["requests"],
        "requests_by_status": by_status,
        "share_429_overall": round(by_status.get("429", 0) / stats["requests"], 4),
        f"share_429_after_first_{LEARNT_AFTER_S}_s": share_after(samples, first + LEARNT_AFTER_S),
        "share_429_second_half": share_after(samples, middle),
        "429_seen_at_s_after_first_arrival": throttled_at,
        "429s_logged_by_pods": logged_429s,
        "accepted_per_s_overall": round(n / (last - first), 1),
        "accepted_per_s_second_half": round(sum(1 for t in times if t > middle) / (last - middle)),
        **rate_figures(times, rate),
        "effective_rate_after_first_s_min_max": [
            round(min(learnt, default=0), 1),
            round(max(learnt, default=0), 1),
        ],
        "effective_rate_at_end": round(samples[-1].effective, 1),
        **checks,
    }


PARTS = ("limit", *SETUPS)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=60_000)
    parser.add_argument("--codes-per-second", type=float, default=20.0)
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--out", type=Path, default=LOGS / "rate_limits.json")
    args = parser.parse_args()
    LOGS.mkdir(exist_ok=True)
    results: dict[str, Any] = {}
    with ensure_redis(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")) as url:
        for part in args.parts:
            keys = Keys(f"bench-rate-{part}-{int(time.time())}")
            try:
                if part == "limit":
                    results[part] = limit_part(url, keys, args.messages, args.codes_per_second)
                else:
                    results[f"operator_{part}"] = operator_part(url, keys, args.messages, part)
            finally:
                delete_prefix(redis.Redis.from_url(url), keys.prefix)
    results["machine"] = f"{os.cpu_count()} cores, everything on this machine"
    report(results, args.out, width=44)
    failed = [part for part, f in results.items() if isinstance(f, dict) and f["problems"]]
    if failed:
        sys.exit(f"jobs lost, sent twice or not accepted in: {', '.join(failed)}")


if __name__ == "__main__":
    main()
