"""The Celery task: one batch of one channel's jobs, run by whichever pod takes it."""

from __future__ import annotations

from typing import Any

from tasks.keys import SEND_BATCH
from worker.app import app
from worker.batch import process_batch
from worker.resources import Resources


@app.task(name=SEND_BATCH)
def send_batch(channel: str, batch: str, probe: bool = False) -> dict[str, Any]:
    """`batch` names the entries to send (their holder in the consumer group): the broker,
    Flower and `celery inspect` see that reference, never a job's number or text. A `probe`
    batch tests the API while the circuit is open."""
    report = process_batch(Resources.current(), channel, batch, probe=probe)
    if report is None:
        return {"channel": channel, "stale": True}
    return {
        "channel": channel,
        "size": report.size,
        "accepted": report.accepted,
        "rejected": report.rejected,
        "failed": report.failed,
        "expired": report.expired,
        "returned": report.returned,
        "requests": report.requests,
        "splits": report.splits,
        "busy": report.busy,
        "duplicates": report.finished_before,
    }
