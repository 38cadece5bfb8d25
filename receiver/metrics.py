"""The receiver's Prometheus metrics, served on its own `/metrics` (one registry a process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

from tasks.tracking.metrics import StatusMetrics

REGISTRY = CollectorRegistry()

REQUESTS = Counter(
    "revicom_callback_requests",
    "Callback requests, by how they were answered: ok, unauthorized (401), forbidden (403, "
    "source network), malformed (400), too_large (413), unavailable (503, Redis).",
    ["outcome"],
    registry=REGISTRY,
)
STATUS = StatusMetrics.create(REGISTRY)
