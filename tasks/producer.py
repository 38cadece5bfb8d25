"""Put jobs on their channel's stream: the Python side of the wire format in the README.

Every job is validated before it is written; an invalid one is never written. That includes
its size: a job whose stream form (`Job.to_wire()`, UTF-8) is over MAX_JOB_BYTES would only be
rejected by the worker, so it is refused here.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any

import redis

from config import get_settings
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


@dataclass(frozen=True)
class WireJob:
    """A validated job in its stream form: the `job` field's bytes, its jobId and channel.

    Made by `wire_job` (or `Producer.prepare`), which checks the size; `Producer.enqueue_wire`
    writes it as it is, without validating again.
    """

    jobId: str
    channel: str
    wire: bytes


def wire_job(job: Job, max_job_bytes: int) -> WireJob:
    """The job's stream form; InvalidJobError if the worker would refuse it as too large."""
    try:
        wire = job.to_wire().encode("utf-8")
    except ValueError:  # pydantic's serialization error, or UnicodeEncodeError
        rule = "holds text that cannot be UTF-8 (a lone surrogate)"
        raise InvalidJobError([FieldError("job", rule)]) from None
    if len(wire) > max_job_bytes:
        rule = f"is {len(wire)} bytes as JSON, over MAX_JOB_BYTES ({max_job_bytes})"
        raise InvalidJobError([FieldError("job", rule)])
    return WireJob(job.jobId, job.channel, wire)


class WriteError(redis.RedisError):
    """Redis refused some XADDs of a pipeline (e.g. OOM, WRONGTYPE); the others landed.

    `enqueued` lists those that landed (indexes as in the failed call), `error` is the first
    refusal. A connection error raises the plain redis error instead: then what the pipeline
    wrote is unknown.
    """

    def __init__(self, enqueued: list[Enqueued], error: Exception) -> None:
        super().__init__(str(error))
        self.enqueued = enqueued
        self.error = error


class Producer:
    """Writes jobs to `{prefix}:jobs:{CHANNEL}` with XADD, pipelined in chunks.

    `max_job_bytes` defaults to the MAX_JOB_BYTES setting (65536 unless set), the limit the
    workers of the same environment apply, so a job this producer writes is one they read.
    """

    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        *,
        chunk_size: int = 1000,
        context: ContractContext | None = None,
        max_job_bytes: int | None = None,
    ) -> None:
        self._redis = client
        self._keys = keys
        self._chunk_size = chunk_size
        self._context = context
        self.max_job_bytes = (
            get_settings().max_job_bytes if max_job_bytes is None else max_job_bytes
        )

    @property
    def chunk_size(self) -> int:
        return self._chunk_size

    def enqueue(self, item: Job | dict[str, Any]) -> Enqueued:
        """Enqueue one job (a Job, a `{jobId, message}` dict or a bare message dict).

        Raises InvalidJobError, listing every broken rule, and writes nothing in that case.
        """
        record = self.prepare(item)
        entry_id = self._redis.xadd(self._keys.jobs(record.channel), {JOB_FIELD: record.wire})
        return Enqueued(0, record.jobId, record.channel, as_text(entry_id))

    def enqueue_many(self, items: Iterable[Job | dict[str, Any]]) -> list[EnqueueResult]:
        return list(self.iter_enqueue(items))

    def iter_enqueue(self, items: Iterable[Job | dict[str, Any]]) -> Iterator[EnqueueResult]:
        """Results in input order as each chunk lands, so a caller can show progress."""
        numbered = enumerate(items)
        while chunk := list(islice(numbered, self._chunk_size)):
            yield from self._enqueue_chunk(chunk)

    def prepare(self, item: Job | dict[str, Any]) -> WireJob:
        """Validate (a Job is valid already) and check the size; raises InvalidJobError."""
        job = item if isinstance(item, Job) else parse_job(item, self._context)
        return wire_job(job, self.max_job_bytes)

    def enqueue_wire(self, records: Sequence[WireJob]) -> list[Enqueued]:
        """Write already-prepared jobs in one pipeline, in order; `index` is the position.

        For callers that validated before (the CLI validates a whole file, then writes it).
        Raises WriteError if Redis refused some of them, a redis error if the connection failed.
        """
        entry_ids = self._xadd_all(records)
        enqueued = [
            Enqueued(i, r.jobId, r.channel, as_text(e))
            for i, (r, e) in enumerate(zip(records, entry_ids, strict=True))
            if not isinstance(e, Exception)
        ]
        refusal = next((e for e in entry_ids if isinstance(e, Exception)), None)
        if refusal is not None:
            raise WriteError(enqueued, refusal)
        return enqueued

    def _enqueue_chunk(self, chunk: list[tuple[int, Job | dict[str, Any]]]) -> list[EnqueueResult]:
        results: list[EnqueueResult | None] = []
        valid: list[tuple[int, WireJob]] = []
        for index, item in chunk:
            try:
                valid.append((len(results), self.prepare(item)))
                results.append(None)
            except InvalidJobError as invalid:
                results.append(Refused(index, invalid.errors))
        try:
            written = self.enqueue_wire([record for _, record in valid])
        except WriteError as partial:
            partial.enqueued = [
                Enqueued(chunk[valid[e.index][0]][0], e.jobId, e.channel, e.entryId)
                for e in partial.enqueued
            ]
            raise
        for e in written:
            slot = valid[e.index][0]
            results[slot] = Enqueued(chunk[slot][0], e.jobId, e.channel, e.entryId)
        return [r for r in results if r is not None]

    def _xadd_all(self, records: Sequence[WireJob]) -> list[Any]:
        if not records:
            return []
        pipe = self._redis.pipeline(transaction=False)
        for record in records:
            pipe.xadd(self._keys.jobs(record.channel), {JOB_FIELD: record.wire})
        return pipe.execute(raise_on_error=False)
