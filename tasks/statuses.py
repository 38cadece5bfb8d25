"""Reading delivery statuses back: the Python side of `revicom-dispatch statuses` and `track`."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import orjson
import redis

from tasks.jobs import Outcome
from tasks.keys import STATUS_FIELD, Keys
from tasks.stream_reader import iter_stream
from tasks.tracking.entry import StatusEntry


def iter_statuses(
    client: redis.Redis, keys: Keys, **options: Any
) -> Generator[tuple[str, StatusEntry], None, None]:
    """(entry id, status entry) in stream order; `options` as `iter_stream`'s."""
    return iter_stream(
        client, keys.statuses, STATUS_FIELD, StatusEntry.model_validate_json, **options
    )


def history(
    client: redis.Redis, keys: Keys, job_id: str
) -> tuple[list[Outcome], list[StatusEntry]]:
    """A job's outcome (more than one only after a replay) and its status entries, oldest
    first; empty when unknown or older than LEDGER_TTL_S."""
    outcomes: list[Outcome] = []
    statuses: list[StatusEntry] = []
    for raw in client.lrange(keys.track(job_id), 0, -1):
        data = orjson.loads(raw)
        if "messageUuid" in data and "source" in data:
            statuses.append(StatusEntry.model_validate(data))
        else:
            outcomes.append(Outcome.model_validate(data))
    return outcomes, statuses
