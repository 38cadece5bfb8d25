"""Put jobs on their channel's stream: the Python side of the wire format in the README.

Every job is validated before it is written; an invalid one is never written.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from typing import Any

import redis

from tasks.contract import ContractContext, FieldError
from tasks.jobs import InvalidJobError, Job, parse_job
from tasks.keys import JOB_FIELD, Keys, as_text


@dataclass(frozen=True)
class Enqueued:
    index: int
    jobId: str
    channel: str
    entryId: str


@dataclass(frozen=True)
class Refused:
    index: int
    errors: list[FieldError]


EnqueueResult = Enqueued | Refused


class Producer:
    """Writes jobs to `{prefix}:jobs:{CHANNEL}` with XADD, pipelined in chunks."""

    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        *,
        chunk_size: int = 1000,
        context: ContractContext | None = None,
    ) -> None:
        self._redis = client
        self._keys = keys
        self._chunk_size = chunk_size
        self._context = context

    def enqueue(self, item: Job | dict[str, Any]) -> Enqueued:
        """Enqueue one job (a Job, a `{jobId, message}` dict or a bare message dict).

        Raises InvalidJobError, listing every broken rule, and writes nothing in that case.
        """
        job = self._validate(item)
        entry_id = self._redis.xadd(self._keys.jobs(job.channel), {JOB_FIELD: job.to_wire()})
        return Enqueued(0, job.jobId, job.channel, as_text(entry_id))

    def enqueue_many(self, items: Iterable[Job | dict[str, Any]]) -> list[EnqueueResult]:
        return list(self.iter_enqueue(items))

    def iter_enqueue(self, items: Iterable[Job | dict[str, Any]]) -> Iterator[EnqueueResult]:
        """Results in input order as each chunk lands, so a caller can show progress."""
        numbered = enumerate(items)
        while chunk := list(islice(numbered, self._chunk_size)):
            yield from self._enqueue_chunk(chunk)

    def _enqueue_chunk(self, chunk: list[tuple[int, Job | dict[str, Any]]]) -> list[EnqueueResult]:
        results: list[EnqueueResult | None] = []
        valid: list[tuple[int, Job]] = []
        for index, item in chunk:
            try:
                valid.append((len(results), self._validate(item)))
                results.append(None)
            except InvalidJobError as invalid:
                results.append(Refused(index, invalid.errors))
        pipe = self._redis.pipeline(transaction=False)
        for _, job in valid:
            pipe.xadd(self._keys.jobs(job.channel), {JOB_FIELD: job.to_wire()})
        for (slot, job), entry_id in zip(valid, pipe.execute(), strict=True):
            results[slot] = Enqueued(chunk[slot][0], job.jobId, job.channel, as_text(entry_id))
        return [r for r in results if r is not None]

    def _validate(self, item: Job | dict[str, Any]) -> Job:
        return item if isinstance(item, Job) else parse_job(item, self._context)
