"""Serves a Celery node's metrics when it runs on its own (a pod serves its nodes' itself)."""

from __future__ import annotations

import logging
from typing import Any

from celery import bootsteps

from config import get_settings

log = logging.getLogger(__name__)


class MetricsStep(bootsteps.StartStopStep):
    def start(self, worker: Any) -> None:
        settings = get_settings()
        if not settings.metrics_port:
            return
        from worker import metrics  # noqa: PLC0415 - sets up multiprocess mode first

        try:
            metrics.serve(settings)
        except OSError as error:
            # Sending matters more than being watched: say so loudly and keep working.
            log.error("metrics: cannot listen on port %d: %s", settings.metrics_port, error)
            return
        log.info("metrics on :%d/metrics", settings.metrics_port)
