"""The Celery task: one batch of one channel's jobs, run by whichever pod takes it."""

from __future__ import annotations

from typing import Any

from tasks.keys import SEND_BATCH
from worker.app import app
from worker.batch import StreamEntry, process_batch
from worker.resources import Resources


@app.task(name=SEND_BATCH)
def send_batch(channel: str, entries: list[list[Any]]) -> dict[str, Any]:
    """`entries`: [stream entry id, the entry's `job` field, deliveries] in stream order (a
    task from before deliveries were counted has two items per entry)."""
    report = process_batch(Resources.current(), channel, [StreamEntry(*e) for e in entries])
    return {
        "channel": channel,
        "size": report.size,
        "accepted": report.accepted,
        "rejected": report.rejected,
        "failed": report.failed,
        "requests": report.requests,
        "splits": report.splits,
        "busy": report.busy,
        "duplicates": report.finished_before,
    }
