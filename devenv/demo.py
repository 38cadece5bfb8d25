"""`make demo`: the whole pipeline on this machine, with nothing but Python.

Redis (the one at REDIS_URL, or one started here), the sandbox (delivering, and calling back),
the callback receiver, one worker pod and Flower; a mixed load of every channel with a few bad
jobs; outcomes, then final delivery statuses, followed live; a summary per channel.
Everything started here is stopped at the end, Ctrl-C included. The demo always sends to the
local sandbox, never to the real API.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any, TypeVar

import httpx
import redis
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from config import get_settings
from devenv.demo_load import (
    BAD_NUMBER_PREFIX,
    REFUSED_BY_PRODUCER,
    WRITTEN_RAW,
    demo_jobs,
)
from devenv.processes import (
    SCRIPT,
    answers_http,
    free_port,
    receiver_process,
    sandbox_process,
    service,
)
from devenv.redis_server import ensure_redis
from tasks.jobs import Outcome
from tasks.keys import JOB_FIELD, Keys
from tasks.producer import Enqueued, Producer
from tasks.results import iter_outcomes
from tasks.statuses import iter_statuses

TOKEN = "demo-token"
CELERY = str(Path(sys.executable).with_name("celery"))
FOLLOW_TIMEOUT_S = 90
T = TypeVar("T")
#: The sandbox's delivery in the demo: most delivered, some not, in a second or two.
DELIVERY = {
    "delivered": 0.9,
    "undelivered": 0.07,
    "unsent": 0.03,
    "sentAfterMs": 300,
    "finalAfterMs": 1500,
    "readFraction": 0.5,
}
CALLBACK_USER = "demo"
FINAL = ("delivered", "undelivered", "unsent", "unknown")


def enqueue_only(console: Console) -> int:
    """The demo's load against a running deployment (REDIS_URL, DISPATCH_KEY_PREFIX)."""
    settings = get_settings()
    client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=5)
    keys = Keys(settings.dispatch_key_prefix)
    started, since = time.time(), _last_result(client, keys)
    statuses_since = _last_status(client, keys)
    expected = _enqueue(console, client, keys)
    outcomes = _follow(console, client, keys, expected, since)
    finals = _follow_statuses(console, client, keys, outcomes, statuses_since)
    _summary(console, outcomes, started, {}, finals)
    return 0 if len(outcomes) == expected else 1


def run_demo(console: Console, keep_running: bool = False) -> int:
    settings = get_settings()
    logs = Path(tempfile.mkdtemp(prefix="revicom-demo-"))
    with ExitStack() as stack:
        console.print("[bold]revicom-dispatch demo[/] (logs in " + str(logs) + ")")
        url = stack.enter_context(ensure_redis(settings.redis_url))
        keys = Keys(f"demo-{int(time.time())}")
        client = redis.Redis.from_url(url)
        stack.callback(_forget, client, keys)
        console.print(f"  redis    {url.split('@')[-1]} (keys under {keys.prefix}:)")

        faults = json.dumps({"rejectDestinations": f"^{BAD_NUMBER_PREFIX}"})
        sandbox = stack.enter_context(
            sandbox_process(
                ["--token", TOKEN, "--faults", faults, "--delivery", json.dumps(DELIVERY)],
                log=logs / "sandbox.log",
            )
        )
        console.print(f"  sandbox  {sandbox.url} (refuses numbers starting {BAD_NUMBER_PREFIX})")

        password = secrets.token_hex(8)
        env = {
            **os.environ,
            "REDIS_URL": url,
            "DISPATCH_KEY_PREFIX": keys.prefix,
            "CALLBACK_USERNAME": CALLBACK_USER,
            "CALLBACK_PASSWORD": password,
        }
        receiver = stack.enter_context(receiver_process(env, log=logs / "receiver.log"))
        console.print(f"  receiver {receiver.url}/callbacks (Basic auth)")

        metrics_port, flower_port = free_port(), free_port()
        host = receiver.url.removeprefix("http://")
        env |= {
            "REVICOM_API_URL": sandbox.url,
            "REVICOM_API_TOKEN": TOKEN,
            "METRICS_PORT": str(metrics_port),
            "CALLBACK_URL": f"http://{CALLBACK_USER}:{password}@{host}/callbacks",
            "CALLBACK_EVENTS": "sent,delivered,read,price",
        }
        stack.enter_context(
            service(
                [SCRIPT, "worker", "--loglevel", "INFO"],
                _pod_ready(logs / "worker.log"),
                env=env,
                log=logs / "worker.log",
                grace_s=40,
            )
        )
        console.print(f"  worker   one pod (otp + bulk nodes), metrics on :{metrics_port}")
        flower = f"http://127.0.0.1:{flower_port}"
        stack.enter_context(
            service(
                [
                    CELERY,
                    "-A",
                    "worker.app",
                    "flower",
                    f"--port={flower_port}",
                    "--address=127.0.0.1",
                ],
                answers_http(f"{flower}/healthcheck"),
                env=env,
                log=logs / "flower.log",
            )
        )
        console.print(f"  flower   [link={flower}]{flower}[/link]\n")

        started, since = time.time(), _last_result(client, keys)
        statuses_since = _last_status(client, keys)
        expected = _enqueue(console, client, keys)
        outcomes = _follow(console, client, keys, expected, since)
        finals = _follow_statuses(console, client, keys, outcomes, statuses_since)
        _summary(console, outcomes, started, _batches(metrics_port), finals)
        console.print(f"\nFlower: {flower}   metrics: http://127.0.0.1:{metrics_port}/metrics")
        if len(outcomes) < expected:
            console.print(f"[red]{expected - len(outcomes)} outcome(s) missing[/]")
        if keep_running:
            console.print("Everything keeps running; Ctrl-C stops it.")
            while True:
                time.sleep(3600)
        return 0 if len(outcomes) == expected else 1


def _pod_ready(log: Path) -> Any:
    return lambda: log.exists() and log.read_bytes().count(b" ready.") >= 2


def _enqueue(console: Console, client: redis.Redis, keys: Keys) -> int:
    """Enqueue the load; returns how many outcomes to expect."""
    jobs = demo_jobs(sms=20_000, flashcall=200, voicecode=200, whatsapp=500, vk=500, bad_numbers=5)
    producer = Producer(client, keys)
    written = 0
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=console
    ) as progress:
        task = progress.add_task("enqueue", total=len(jobs) + len(REFUSED_BY_PRODUCER))
        for result in producer.iter_enqueue([*jobs, *REFUSED_BY_PRODUCER]):
            written += isinstance(result, Enqueued)
            if not isinstance(result, Enqueued):
                progress.console.print(f"  refused by the producer: {result.errors[0]}")
            progress.advance(task)
    for channel, raw in WRITTEN_RAW:  # as a producer in another language might
        client.xadd(keys.jobs(channel), {JOB_FIELD: raw})
    console.print(
        f"  {written} jobs enqueued, {len(WRITTEN_RAW)} written raw by 'another "
        f"producer' (the worker will reject them)\n"
    )
    return written + len(WRITTEN_RAW)


def _follow(
    console: Console, client: redis.Redis, keys: Keys, expected: int, since: str
) -> list[Outcome]:
    """Outcomes published after `since` (a shared results stream may hold older ones)."""
    outcomes: list[Outcome] = []

    def labels() -> Iterator[str | None]:
        for outcome in _tail(iter_outcomes, client, keys, since):
            if outcome is not None:
                outcomes.append(outcome)
            yield outcome.status if outcome else None

    _progress(console, "outcomes", expected, labels())
    return outcomes


def _follow_statuses(
    console: Console, client: redis.Redis, keys: Keys, outcomes: list[Outcome], since: str
) -> dict[str, str]:
    """jobId -> final status, for the accepted messages (conversions have none)."""
    waiting = {
        o.jobId
        for o in outcomes
        if o.status == "accepted" and o.channelType != "FLASHCALL_CONVERSION"
    }
    finals: dict[str, str] = {}

    def labels() -> Iterator[str | None]:
        for entry in _tail(iter_statuses, client, keys, since):
            if entry is not None and entry.final and entry.jobId in waiting and entry.status:
                finals[entry.jobId] = entry.status
                yield entry.status
            else:
                yield None

    _progress(console, "final statuses", len(waiting), labels())
    return finals


def _tail(
    reader: Callable[..., Iterator[tuple[str, T]]], client: redis.Redis, keys: Keys, since: str
) -> Iterator[T | None]:
    """A stream's entries after `since`, and None whenever there is nothing new (so that the
    caller can give up at its deadline)."""
    last = since
    while True:
        for entry_id, entry in reader(client, keys, start=last):
            last = entry_id
            yield entry
        yield None
        time.sleep(0.2)


def _progress(console: Console, what: str, total: int, labels: Iterator[str | None]) -> None:
    """A progress bar of `total`, advanced by each label (None: nothing to count), counting
    the labels, until all came or FOLLOW_TIMEOUT_S passed."""
    deadline = time.monotonic() + FOLLOW_TIMEOUT_S
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[counts]}"),
        console=console,
    ) as progress:
        task = progress.add_task(what, total=total, counts="")
        counts: Counter[str] = Counter()
        for label in labels if total else ():
            if label is not None:
                counts[label] += 1
                progress.update(
                    task,
                    advance=1,
                    counts="  ".join(f"{k} {v}" for k, v in sorted(counts.items())),
                )
            if counts.total() >= total or time.monotonic() > deadline:
                break


def _batches(metrics_port: int) -> dict[str, int]:
    text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
    return {
        sample.labels["channel"]: int(sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "revicom_batches_total"
    }


def _summary(
    console: Console,
    outcomes: list[Outcome],
    started: float,
    batches: dict[str, int],
    finals: dict[str, str],
) -> None:
    by_channel: dict[str, list[Outcome]] = defaultdict(list)
    for outcome in outcomes:
        by_channel[outcome.channelType or "?"].append(outcome)
    table = Table(title="outcomes and final delivery statuses")
    columns = ("accepted", "rejected", "failed", *FINAL, "batches", "messages/s")
    table.add_column("channel")
    for column in columns:
        table.add_column(column, justify="right")
    for channel, items in sorted(by_channel.items()):
        statuses = Counter(o.status for o in items)
        delivery = Counter(finals[o.jobId] for o in items if o.jobId in finals)
        last = max(o.finishedAt.timestamp() for o in items)
        rate = len(items) / max(last - started, 1e-3)
        table.add_row(
            channel,
            *(str(statuses[s]) for s in ("accepted", "rejected", "failed")),
            *(str(delivery[s]) for s in FINAL),
            str(batches.get(channel, 0)),
            f"{rate:,.0f}",
        )
    console.print(table)
    for outcome in outcomes:
        if outcome.status != "accepted" and outcome.error is not None:
            console.print(f"  {outcome.status}: {outcome.jobId}: {outcome.error.msg}")


def _last_result(client: redis.Redis, keys: Keys) -> str:
    return _last_id(client, keys.results)


def _last_status(client: redis.Redis, keys: Keys) -> str:
    return _last_id(client, keys.statuses)


def _last_id(client: redis.Redis, stream: str) -> str:
    last: Any = client.xrevrange(stream, count=1)
    return last[0][0].decode() if last else "0"


def _forget(client: redis.Redis, keys: Keys) -> None:
    stale = list(client.scan_iter(match=f"{keys.prefix}:*", count=1000))
    for i in range(0, len(stale), 1000):
        client.delete(*stale[i : i + 1000])
