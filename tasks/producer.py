"""Put jobs on their channel's stream: the Python side of the wire format in the README.

Every job is validated before it is written; an invalid one is never written. That includes
its size: a job whose stream form (`Job.to_wire()`, UTF-8) is over MAX_JOB_BYTES would only be
rejected by the worker, so it is refused here. Each is written with a stamp (tasks/stamp.py)
so that workers need not validate it again, unless its rules depend on the clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from operator import attrgetter
from typing import Any, Literal

import redis

from config import Settings, get_settings
from tasks import stamp
from tasks.contract import ContractContext, FieldError, SmsMessage
from tasks.jobs import InvalidJobError, Job, parse_job
from tasks.keys import JOB_FIELD, STAMP_FIELD, Keys, as_text
from tasks.segments import sms_segments


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
    writes it as it is, without validating again, stamped when `stampable`.
    """

    jobId: str
    channel: str
    wire: bytes
    stampable: bool = False
    segments: int | None = None  # SMS only


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
    message = job.message
    timeless = all(getattr(message, name, None) is None for name in stamp.CLOCK_FIELDS)
    segments = sms_segments(message.content) if isinstance(message, SmsMessage) else None
    return WireJob(job.jobId, job.channel, wire, timeless, segments)


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


@dataclass(frozen=True)
class Durability:
    """What an enqueue waits for before it returns (WAITAOF, Redis >= 7.2): the AOF fsynced
    on the server (`local`) and/or written by `replicas` replicas, within `timeout_ms`."""

    local: bool = False
    replicas: int = 0
    timeout_ms: int = 1000

    @classmethod
    def from_settings(cls, settings: Settings) -> Durability | None:
        mode = settings.durable_enqueue
        if mode == "none":
            return None
        replicas = settings.durable_replicas if mode in ("replicas", "both") else 0
        return cls(mode in ("local", "both"), replicas, settings.durable_timeout_ms)


class NotDurableError(redis.RedisError):
    """The jobs were written, but Redis did not confirm them durable in time (`acks`:
    [fsynced locally, replicas]); `enqueued` lists them. Enqueueing them again is safe when
    they carry jobIds of their own (each jobId is sent once)."""

    def __init__(self, enqueued: list[Enqueued], message: str) -> None:
        super().__init__(message)
        self.enqueued = enqueued


class Producer:
    """Writes jobs to `{prefix}:jobs:{CHANNEL}` with XADD, pipelined in chunks.

    `max_job_bytes` defaults to the MAX_JOB_BYTES setting (65536 unless set), the limit the
    workers of the same environment apply, so a job this producer writes is one they read.
    `durability` defaults to DURABLE_ENQUEUE: with it, a call returns only once Redis says
    the jobs are durable, and raises NotDurableError otherwise.
    """

    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        *,
        chunk_size: int = 1000,
        context: ContractContext | None = None,
        max_job_bytes: int | None = None,
        durability: Durability | Literal["settings"] | None = "settings",
    ) -> None:
        self._redis = client
        self._keys = keys
        self._chunk_size = chunk_size
        self._context = context
        self._stamp_key = stamp.StampKey(client, keys.stamp_key)
        self._tag = stamp.context_tag(context)
        settings = get_settings()
        self.max_job_bytes = settings.max_job_bytes if max_job_bytes is None else max_job_bytes
        self.durability = (
            Durability.from_settings(settings) if durability == "settings" else durability
        )

    @property
    def chunk_size(self) -> int:
        return self._chunk_size

    def enqueue(self, item: Job | dict[str, Any]) -> Enqueued:
        """Enqueue one job (a Job, a `{jobId, message}` dict or a bare message dict).

        Raises InvalidJobError, listing every broken rule, and writes nothing in that case.
        """
        return self.enqueue_wire([self.prepare(item)])[0]

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
        return self._land(records, range(len(records)))

    def _enqueue_chunk(self, chunk: list[tuple[int, Job | dict[str, Any]]]) -> list[EnqueueResult]:
        results: list[EnqueueResult] = []
        valid: list[WireJob] = []
        indexes: list[int] = []
        for index, item in chunk:
            try:
                valid.append(self.prepare(item))
                indexes.append(index)
            except InvalidJobError as invalid:
                results.append(Refused(index, invalid.errors))
        results += self._land(valid, indexes)
        return sorted(results, key=attrgetter("index")) if len(results) > len(valid) else results

    def _land(self, records: Sequence[WireJob], indexes: Sequence[int]) -> list[Enqueued]:
        """`enqueue_wire`, each record numbered by `indexes` (the caller's input positions,
        which a WriteError's `enqueued` carries too)."""
        entry_ids, acks = self._xadd_all(records)
        enqueued = [
            Enqueued(i, r.jobId, r.channel, as_text(e))
            for i, r, e in zip(indexes, records, entry_ids, strict=True)
            if not isinstance(e, Exception)
        ]
        refusal = next((e for e in entry_ids if isinstance(e, Exception)), None)
        if refusal is not None:
            raise WriteError(enqueued, refusal)
        self._check_durable(enqueued, acks)
        return enqueued

    def _xadd_all(self, records: Sequence[WireJob]) -> tuple[list[Any], Any]:
        """Entry ids (or refusals) in order, and WAITAOF's reply when durability is asked."""
        if not records:
            return [], None
        key = self._stamp_key.get() if any(r.stampable for r in records) else b""
        pipe = self._redis.pipeline(transaction=False)
        for record in records:
            fields = {JOB_FIELD: record.wire}
            if record.stampable:
                seal = stamp.seal(key, self._tag, record.channel, record.segments, record.wire)
                fields[STAMP_FIELD] = seal
            pipe.xadd(self._keys.jobs(record.channel), fields)  # type: ignore[arg-type]
        wanted = self.durability
        if wanted is not None:
            # WAITAOF waits for every write this connection made before it: the XADDs above.
            pipe.waitaof(int(wanted.local), wanted.replicas, wanted.timeout_ms)
        replies = pipe.execute(raise_on_error=False)
        return (replies[:-1], replies[-1]) if wanted is not None else (replies, None)

    def _check_durable(self, enqueued: list[Enqueued], acks: Any) -> None:
        wanted = self.durability
        if wanted is None or not enqueued:
            return
        if isinstance(acks, Exception):
            reason = str(acks)
            if "unknown command" in reason.lower():
                version = self._redis.info("server").get("redis_version", "?")
                reason = f"DURABLE_ENQUEUE needs Redis >= 7.2 (WAITAOF); this one is {version}"
            raise NotDurableError(enqueued, f"jobs written, durability unknown: {reason}")
        local, replicas = int(acks[0]), int(acks[1])
        if local < int(wanted.local) or replicas < wanted.replicas:
            raise NotDurableError(
                enqueued,
                f"jobs written but not durable within {wanted.timeout_ms} ms: fsynced locally "
                f"{bool(local)}, on {replicas} of {wanted.replicas} replica(s)",
            )
