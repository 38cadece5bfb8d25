"""Prometheus metrics of the workers, safe across Celery's pool processes.

prometheus-client's multiprocess mode: every process writes its counters to files in
PROMETHEUS_MULTIPROC_DIR and the exporter adds them up. The directory must be known before
prometheus_client is first imported in a process, hence the environment is set here, first;
a pod sets it for its nodes so that one exporter sees them all. Stream depths are not counted
by anyone: the exporter reads them from Redis at each scrape.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="revicom-metrics-")
    os.environ["REVICOM_METRICS_DIR_OWNER"] = str(os.getpid())  # see _remove_own_directory

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import redis
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    start_http_server,
    values,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from config import Settings
from tasks.keys import Keys
from tasks.tracking.metrics import StatusMetrics


def _remove_own_directory() -> None:
    """A process that had to make its metrics directory (a lone worker, a command) removes it
    when it exits; its forked pool children, with another pid, leave it."""
    if os.environ.get("REVICOM_METRICS_DIR_OWNER") == str(os.getpid()):
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)


atexit.register(_remove_own_directory)

if TYPE_CHECKING:
    from ops.status import Balance
    from worker.rate_limits.state import Rates

# `celery worker` loads Flower's CLI plugin, which imports prometheus_client before this module
# sets the directory; the value class is chosen at that import, so choose it again before the
# first metric of ours is made (prometheus_client reads `values.ValueClass` per metric).
values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]

JOBS = Counter(
    "revicom_jobs", "Jobs finished, by channel and outcome status.", ["channel", "status"]
)
SKIPPED = Counter(
    "revicom_jobs_skipped",
    "Stream entries not sent by a batch: already "
    "finished (duplicates) or held by another live batch (busy).",
    ["channel", "reason"],
)
BATCHES = Counter("revicom_batches", "Batches processed.", ["channel"])
BATCH_SIZE = Histogram(
    "revicom_batch_size",
    "Jobs per batch.",
    ["channel"],
    buckets=(1, 10, 50, 100, 250, 500, 750, 1000),
)
API_SECONDS = Histogram(
    "revicom_api_request_seconds",
    "Duration of one API request.",
    ["endpoint", "status"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 70),
)
RETRIES = Counter("revicom_api_retries", "API requests retried, by reason.", ["reason"])
SPLITS = Counter("revicom_422_splits", "Requests split in two after a 422.", ["channel"])
CIRCUIT_OPENED = Counter(
    "revicom_circuit_opened",
    "Times the API circuit opened (sending paused for every pod), by reason: auth or unavailable.",
    ["reason"],
)
RETURNED = Counter(
    "revicom_jobs_returned",
    "Jobs a batch gave back unsent because the circuit was open or the balance guard paused "
    "their channel: they wait in their stream.",
    ["channel"],
)
RATE_WAIT = Histogram(
    "revicom_rate_wait_seconds",
    "Seconds one request waited for its rate budget (or out a 429's pause) before it went, "
    "by channel.",
    ["channel"],
    buckets=(0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
RATE_PAUSES = Counter(
    "revicom_rate_pauses",
    "Pauses set for every pod by a 429, by endpoint.",
    ["endpoint"],
)
THROTTLED = Counter(
    "revicom_api_throttled",
    "API answers 429 Too Many Requests to a send, by endpoint.",
    ["endpoint"],
)
BALANCE_REFRESHES = Counter(
    "revicom_balance_refreshes",
    "GET /api/v1/balance requests of the balance refresher, by result: ok or error.",
    ["result"],
)

STATUS = StatusMetrics.create()
POLLS = Counter(
    "revicom_status_lookups",
    "GET /api/v1/message requests of the status poller, by result: ok or error.",
    ["result"],
)
FORGOTTEN = Counter(
    "revicom_status_forgotten",
    "Accepted messages whose record expired before a final status (LEDGER_TTL_S, or Redis "
    "lost it): no final status can be published for them.",
)
UNMATCHED = Counter(
    "revicom_callbacks_unmatched",
    "Callback events dropped after CALLBACK_PARK_S: their messageUuid never became known.",
)


class StreamCollector(Collector):
    """Stream length, unread, pending and the oldest pending age per channel, read at scrape."""

    def __init__(self, client: redis.Redis, keys: Keys, settings: Settings | None = None) -> None:
        self._redis = client
        self._keys = keys
        self._settings = settings

    def collect(self) -> Iterator[Metric]:
        from ops.status import snapshot  # noqa: PLC0415 - ops depends on nothing of ours here

        try:
            state = snapshot(self._redis, self._keys, self._settings)
        except redis.RedisError:
            return
        families: dict[str, GaugeMetricFamily] = {
            name: GaugeMetricFamily(f"revicom_stream_{name}", text, labels=["channel"])
            for name, text in (
                ("length", "Entries in the channel's stream."),
                ("unread", "Entries no worker has read yet (Redis >= 7)."),
                ("pending", "Entries read by a worker and not yet finished."),
                ("oldest_pending_seconds", "Age of the oldest pending entry."),
                ("consumers", "Consumers in the dispatch group."),
            )
        }
        for c in state.channels:
            values: dict[str, Any] = {
                "length": c.length,
                "unread": c.unread,
                "pending": c.pending,
                "oldest_pending_seconds": c.oldest_pending_age_s,
                "consumers": c.consumers,
            }
            for name, value in values.items():
                if value is not None:
                    families[name].add_metric([c.channel], value)
        yield from families.values()
        yield GaugeMetricFamily(
            "revicom_results_length", "Outcomes on the results stream.", value=state.results
        )
        yield GaugeMetricFamily(
            "revicom_dead_letters", "Jobs in the dead-letter stream.", value=state.dead
        )
        yield GaugeMetricFamily(
            "revicom_results_bytes", "Memory of the results stream.", value=state.results_bytes
        )
        yield GaugeMetricFamily(
            "revicom_dead_letters_bytes", "Memory of the dead letters.", value=state.dead_bytes
        )
        tracking = state.tracking
        for name, text, value in (
            ("statuses_length", "Entries on the statuses stream.", tracking.statuses),
            (
                "messages_awaiting_final",
                "Accepted messages without a final status yet.",
                tracking.awaiting_final,
            ),
            (
                "status_lookups_overdue",
                "Messages due for a status lookup now: the poller is behind or not running.",
                tracking.overdue,
            ),
            (
                "callbacks_parked",
                "Messages whose callbacks came before their outcome, waiting for it.",
                tracking.parked,
            ),
        ):
            yield GaugeMetricFamily(f"revicom_{name}", text, value=value)
        yield GaugeMetricFamily(
            "revicom_circuit_open",
            "1 while the API circuit is open: no pod sends, jobs wait.",
            value=int(state.circuit.open),
        )
        yield from _balance(state.balance)
        if state.rates is not None:
            yield from _rates(state.rates)


def _rates(rates: Rates) -> Iterator[Metric]:
    """Read from Redis at scrape, like the streams: the same on every pod."""
    effective = GaugeMetricFamily(
        "revicom_rate_limit",
        "Units a second a bucket allows now (ADAPTIVE_RATE: as learnt from 429s); 0: none.",
        labels=["bucket"],
    )
    configured = GaugeMetricFamily(
        "revicom_rate_limit_configured", "Units a second as configured; 0: none.", labels=["bucket"]
    )
    for limit in rates.limits:
        effective.add_metric([limit.bucket], limit.effective)
        configured.add_metric([limit.bucket], limit.configured)
    paused = GaugeMetricFamily(
        "revicom_rate_paused_seconds",
        "Seconds an endpoint is still paused for every pod by a 429; 0: sending.",
        labels=["endpoint"],
    )
    for pause in rates.pauses:
        paused.add_metric([pause.endpoint], pause.remaining_s)
    yield from (effective, configured, paused)


def _balance(balance: Balance) -> Iterator[Metric]:
    """Every pod's exporter shows what is stored (like the streams), not only the refresher's:
    whichever pod is scraped, or holds the lease, the numbers are the same."""
    amounts = GaugeMetricFamily(
        "revicom_balance", "The account balance as last refreshed.", labels=["currency"]
    )
    for currency, amount in balance.amounts.items():
        amounts.add_metric([currency], amount)
    yield amounts
    if balance.age_s is not None:
        yield GaugeMetricFamily(
            "revicom_balance_age_seconds",
            "Since the balance was last refreshed (stale: the guard no longer applies).",
            value=balance.age_s,
        )
    paused = GaugeMetricFamily(
        "revicom_bulk_paused",
        "1 while the bulk channels wait, by reason (balance: below MIN_BALANCE).",
        labels=["reason"],
    )
    paused.add_metric(["balance"], int(balance.bulk_paused))
    yield paused


def serve(settings: Settings) -> None:
    """The exporter: every process's counters plus the streams, on METRICS_PORT."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=2, socket_timeout=5)
    registry.register(StreamCollector(client, Keys(settings.dispatch_key_prefix), settings))
    start_http_server(settings.metrics_port, registry=registry)
