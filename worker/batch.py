"""One batch of one channel, top to bottom.

entries read from the channel's stream
  → each re-validated (an invalid or malformed one is rejected, never sent)
  → jobIds claimed in the ledger (finished ones are only acknowledged; ones another live
    batch holds are left pending)
  → POSTed (retries, 422 splitting: worker/delivery.py)
  → outcomes published to the results stream with the ledger updated, atomically
  → stream entries acknowledged and deleted.
A crash anywhere before the last step leaves the entries pending; a live worker reclaims them
and the ledger keeps finished jobs from being sent again.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import redis
from pydantic import ValidationError
from tenacity import (
    Retrying,
    retry_if_exception_type,
    stop_never,
    wait_exponential_jitter,
)

from tasks.channels import CHANNELS
from tasks.contract import ContractContext, field_errors, to_api_json
from tasks.jobs import ApiError, Job, Outcome
from tasks.keys import CONSUMER_GROUP
from worker import metrics
from worker.delivery import ItemResult, Status, deliver
from worker.ledger import Finished
from worker.resources import Resources

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StreamEntry:
    entry_id: str
    raw: str | None  # the entry's `job` field; None when it has none
    deliveries: int = 1  # times the group handed it to a consumer (known when reclaimed)


@dataclass(frozen=True)
class Parsed:
    entry: StreamEntry
    job_id: str
    job: Job | None
    problem: str | None  # why the entry cannot be sent
    give_up: bool = False  # delivered too often without an outcome: failed, dead-lettered


@dataclass
class BatchReport:
    channel: str
    size: int
    accepted: int = 0
    rejected: int = 0
    failed: int = 0
    busy: int = 0  # held by another live batch: left pending
    finished_before: int = 0  # duplicates of finished jobs: acknowledged only
    requests: int = 0
    splits: int = 0
    seconds: float = 0.0
    published: int = 0

    def log_line(self) -> str:
        return (
            f"batch channel={self.channel} size={self.size} accepted={self.accepted} "
            f"rejected={self.rejected} failed={self.failed} attempts={self.requests} "
            f"splits={self.splits} busy={self.busy} duplicates={self.finished_before} "
            f"seconds={self.seconds:.3f}"
        )


def process_batch(res: Resources, channel: str, entries: list[StreamEntry]) -> BatchReport:
    started = time.monotonic()
    report = BatchReport(channel, len(entries))
    context = ContractContext(flashcall_code_max_digits=res.settings.flashcall_code_max_digits)
    parsed = [
        _give_up(
            parse_entry(e, channel, context, res.settings.max_job_bytes),
            res.settings.max_deliveries,
        )
        for e in entries
    ]

    done_entries: list[str] = []
    with res.ledger.owner() as owner:
        first: dict[str, Parsed] = {}
        for p in parsed:
            if p.job_id in first:
                report.finished_before += 1  # same jobId twice in one batch: sent once
                done_entries.append(p.entry.entry_id)
            else:
                first[p.job_id] = p
        claims = res.ledger.claim(owner, list(first))
        mine: list[Parsed] = []
        for p, claim in zip(first.values(), claims, strict=True):
            if claim == "claimed":
                mine.append(p)
            elif claim == "done":
                report.finished_before += 1
                done_entries.append(p.entry.entry_id)
            else:
                report.busy += 1
        try:
            finished = _send_and_judge(res, channel, mine, report)
            report.published = _publish(res, owner, finished)
            if report.published < len(finished):
                log.warning(
                    "batch channel=%s: %d outcome(s) not published: this batch's lease lapsed "
                    "and another worker took those jobs over (they may have been sent twice)",
                    channel,
                    len(finished) - report.published,
                )
        except BaseException:
            res.ledger.release(owner, [p.job_id for p in mine])
            raise
        done_entries += [p.entry.entry_id for p in mine]
    _acknowledge(res, channel, done_entries)
    report.seconds = time.monotonic() - started
    _count(report)
    log.info(report.log_line())
    return report


def _count(report: BatchReport) -> None:
    channel = report.channel
    for status in ("accepted", "rejected", "failed"):
        if getattr(report, status):
            metrics.JOBS.labels(channel, status).inc(getattr(report, status))
    if report.busy:
        metrics.SKIPPED.labels(channel, "busy").inc(report.busy)
    if report.finished_before:
        metrics.SKIPPED.labels(channel, "duplicate").inc(report.finished_before)
    metrics.BATCHES.labels(channel).inc()
    metrics.BATCH_SIZE.labels(channel).observe(report.size)
    if report.splits:
        metrics.SPLITS.labels(channel).inc(report.splits)


def parse_entry(
    entry: StreamEntry, channel: str, context: ContractContext, max_bytes: int
) -> Parsed:
    """The job, or why it cannot be sent; its jobId, or the entry id when it has none."""
    data = _decode(entry, max_bytes)
    if isinstance(data, str):
        return Parsed(entry, entry.entry_id, None, data)
    job_id = data.get("jobId")
    if not isinstance(job_id, str) or not job_id:
        data["jobId"] = job_id = entry.entry_id
    try:
        job = Job.model_validate(data, context=context)
    except ValidationError as error:
        return Parsed(entry, job_id, None, "; ".join(map(str, field_errors(error))))
    if job.channel != channel:
        return Parsed(entry, job_id, None, f"a {job.channel} job on the {channel} stream")
    return Parsed(entry, job_id, job, None)


def _give_up(p: Parsed, max_deliveries: int) -> Parsed:
    """A job handed out more than `max_deliveries` times and still unfinished: something
    kills whoever processes it. It fails (and is dead-lettered) instead of looping forever."""
    if p.entry.deliveries <= max_deliveries:
        return p
    problem = f"gave up after {p.entry.deliveries} deliveries without an outcome"
    return Parsed(p.entry, p.job_id, None, problem, give_up=True)


def _decode(entry: StreamEntry, max_bytes: int) -> dict[str, Any] | str:
    """The entry's job as a dict, or what is wrong with it."""
    if entry.raw is None:
        return "the entry has no 'job' field"
    if len(entry.raw) > max_bytes:
        return f"the entry is larger than {max_bytes} bytes"
    try:
        data = orjson.loads(entry.raw)
    except orjson.JSONDecodeError as error:
        return f"the job is not valid JSON: {error}"
    return data if isinstance(data, dict) else "the job is not a JSON object"


def _send_and_judge(
    res: Resources, channel: str, mine: list[Parsed], report: BatchReport
) -> list[Finished]:
    finished: list[Finished] = []
    sendable: list[Parsed] = []
    for p in mine:
        if p.job is None:
            status: Status = "failed" if p.give_up else "rejected"
            result = ItemResult(status, error=(None, p.problem or "invalid job"))
            finished.append(_finish(p, channel, result))
        else:
            sendable.append(p)
    if sendable:
        objects = [to_api_json(p.job.message) for p in sendable if p.job is not None]
        results, stats = deliver(res.api, CHANNELS[channel].endpoint, objects, channel)
        report.requests, report.splits = stats.requests, stats.splits
        finished += [_finish(p, channel, r) for p, r in zip(sendable, results, strict=True)]
    for f in finished:
        final = f.state.split(":", 1)[0]
        setattr(report, final, getattr(report, final) + 1)
    return finished


def _finish(p: Parsed, channel: str, result: ItemResult) -> Finished:
    message: Any = p.job.message if p.job else None
    outcome = Outcome(
        jobId=p.job_id,
        status=result.status,
        channelType=channel,
        destination=getattr(message, "destination", None),
        messageUuid=result.message_uuid,
        code=result.code,
        error=ApiError(code=result.error[0], msg=result.error[1]) if result.error else None,
        httpStatus=result.http_status,
        attempts=result.attempts,
        externalMessageId=getattr(message, "externalMessageId", None),
        finishedAt=datetime.now(UTC),
    )
    state = f"accepted:{result.message_uuid}" if result.status == "accepted" else result.status
    dead = (p.entry.raw or "") if result.status == "failed" else ""
    return Finished(p.job_id, state, outcome.to_wire(), dead)


_REDIS_DOWN = (redis.ConnectionError, redis.TimeoutError)


def _publish(res: Resources, owner: str, finished: list[Finished]) -> int:
    """Outcomes are never dropped: a Redis outage is waited out, however long it lasts."""
    retrying = Retrying(
        retry=retry_if_exception_type(_REDIS_DOWN),
        wait=wait_exponential_jitter(multiplier=0.2, max=5),
        stop=stop_never,
        before_sleep=lambda s: log.warning(
            "publishing outcomes failed, retrying: %s", s.outcome.exception() if s.outcome else ""
        ),
    )
    return retrying(res.ledger.finish, owner, finished)


def _acknowledge(res: Resources, channel: str, entry_ids: list[str]) -> None:
    if not entry_ids:
        return
    stream = res.keys.jobs(channel)
    retrying = Retrying(
        retry=retry_if_exception_type(_REDIS_DOWN),
        wait=wait_exponential_jitter(multiplier=0.2, max=5),
        stop=stop_never,
    )

    def ack() -> None:
        pipe = res.redis.pipeline(transaction=False)
        pipe.xack(stream, CONSUMER_GROUP, *entry_ids)
        pipe.xdel(stream, *entry_ids)
        pipe.execute()

    retrying(ack)
