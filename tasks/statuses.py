"""Reading delivery statuses back: the Python side of `revicom-dispatch statuses` and `track`."""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

import redis

from tasks.jobs import Outcome
from tasks.keys import OUTCOME_FIELD, STATUS_FIELD, Keys, as_text
from tasks.stream_reader import iter_stream
from tasks.tracking.entry import StatusEntry


def iter_statuses(
    client: redis.Redis, keys: Keys, **options: Any
) -> Generator[tuple[str, StatusEntry], None, None]:
    """(entry id, status entry) in stream order; `options` as `iter_stream`'s."""
    return iter_stream(
        client, keys.statuses, STATUS_FIELD, StatusEntry.model_validate_json, **options
    )


@dataclass
class History:
    """A job's outcomes (more than one only after a replay) and status entries, oldest first.
    `trimmed` counts those listed whose stream entry is gone (older than the retention)."""

    outcomes: list[Outcome] = field(default_factory=list)
    statuses: list[StatusEntry] = field(default_factory=list)
    trimmed: int = 0

    @property
    def known(self) -> bool:
        return bool(self.outcomes or self.statuses or self.trimmed)


def history(client: redis.Redis, keys: Keys, job_id: str) -> History:
    """What `{prefix}:track:{jobId}` lists (kept LEDGER_TTL_S), read back from the results and
    statuses streams."""
    found = History()
    refs = [as_text(r) for r in client.lrange(keys.track(job_id), 0, -1)]
    pipe = client.pipeline(transaction=False)
    for ref in refs:
        stream = keys.results if ref.startswith("r") else keys.statuses
        pipe.xrange(stream, ref[1:], ref[1:], count=1)
    for ref, entries in zip(refs, pipe.execute(), strict=True):
        if not entries:
            found.trimmed += 1
        elif ref.startswith("r"):
            found.outcomes.append(
                Outcome.model_validate_json(entries[0][1][OUTCOME_FIELD.encode()])
            )
        else:
            found.statuses.append(
                StatusEntry.model_validate_json(entries[0][1][STATUS_FIELD.encode()])
            )
    return found
