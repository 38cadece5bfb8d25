"""The metrics of final statuses, counted where they are recorded: in the receiver (callbacks)
and in a worker pod (lookups, and callbacks parked before their outcome)."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram

from tasks.tracking.store import Recorded


@dataclass(frozen=True)
class StatusMetrics:
    final: Counter
    time_to_final: Histogram
    events: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry = REGISTRY) -> StatusMetrics:
        return cls(
            Counter(
                "revicom_final_statuses",
                "Jobs that reached a final status, by channel, status and source (callback "
                "or poll).",
                ["channel", "status", "source"],
                registry=registry,
            ),
            Histogram(
                "revicom_time_to_final_seconds",
                "From the API's 201 to the final status on the statuses stream.",
                ["channel"],
                buckets=(1, 5, 15, 60, 300, 900, 3600, 14_400, 86_400),
                registry=registry,
            ),
            Counter(
                "revicom_status_events",
                "Delivery events recorded, by source and result: changed, final, duplicate, "
                "stale (nothing new), parked (its message not known yet).",
                ["source", "result"],
                registry=registry,
            ),
        )

    def observe(self, recorded: Recorded, source: str) -> None:
        for result, count in recorded.results.items():
            self.events.labels(source, result).inc(count)
        for channel, status, seconds in recorded.finals:
            self.final.labels(channel, status, source).inc()
            self.time_to_final.labels(channel).observe(seconds)
