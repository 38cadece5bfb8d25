"""One batch of one channel, top to bottom.

the batch starts: it gets the entries it holds (worker/ownership.py), or nothing when stale;
    while the API circuit is open (worker/circuit.py), or the balance guard pauses its bulk
    channel (worker/balance.py), it gives them all back unsent
  → each entry parsed: taken as it is when our producer's stamp vouches for it (tasks/stamp.py),
    else validated (an invalid or malformed one is rejected, never sent)
  → jobIds claimed in the ledger (finished ones are only acknowledged; ones another live
    batch holds are left pending)
  → jobs older than their channel's MAX_AGE expire instead of being sent late
  → POSTed (retries, 422 splitting, one deadline for the batch: worker/delivery.py); jobs
    the circuit stops are given back unsent
  → one Lua step publishes the outcomes with the ledger and acknowledges and deletes the
    entries whose job is final (worker/ledger.py).
A crash anywhere before the last step leaves the entries with the batch; when its lease
lapses a live reader takes them over, and the ledger keeps finished jobs from being sent
again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
import redis
from pydantic import ValidationError
from tenacity import (
    Retrying,
    retry_if_exception_type,
    stop_never,
    wait_exponential_jitter,
)

from config import Settings
from tasks import stamp, untrusted
from tasks.api_terms import READ_STATUSES
from tasks.channels import CHANNELS, MESSAGE_ENDPOINT
from tasks.contract import ContractContext, SmsMessage, field_errors, to_api_json
from tasks.jobs import Job, is_job_id, outcome_json
from tasks.segments import sms_segments
from worker import metrics
from worker.balance import guard_now
from worker.delivery import ItemResult, Sending, Status, deliver
from worker.ledger import Finished, FinishReport
from worker.ownership import HeldEntry, Started
from worker.resources import Resources

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(slots=True)  # not frozen: a thousand a batch, and frozen __init__ is slow
class Parsed:
    entry: HeldEntry
    job_id: str
    api: dict[str, Any] | None  # the object to send, as the API takes it; None: not sent
    problem: str | None  # why the entry cannot be sent
    segments: int | None = None  # SMS only
    give_up: bool = False  # delivered too often without an outcome: failed, dead-lettered
    expire: bool = False  # too old to send: expired


@dataclass
class BatchReport:
    channel: str
    size: int
    accepted: int = 0
    rejected: int = 0
    failed: int = 0
    expired: int = 0
    returned: int = 0  # given back unsent: the circuit is open, or the balance guard holds
    busy: int = 0  # held by another live batch: left pending
    finished_before: int = 0  # duplicates of finished jobs: acknowledged only
    requests: int = 0
    splits: int = 0
    seconds: float = 0.0
    published: int = 0

    def log_line(self) -> str:
        return (
            f"batch channel={self.channel} size={self.size} accepted={self.accepted} "
            f"rejected={self.rejected} failed={self.failed} expired={self.expired} "
            f"returned={self.returned} attempts={self.requests} "
            f"splits={self.splits} busy={self.busy} duplicates={self.finished_before} "
            f"seconds={self.seconds:.3f}"
        )


def process_batch(
    res: Resources, channel: str, batch: str, *, probe: bool = False
) -> BatchReport | None:
    """Send a queued batch; None when it is stale (taken over while it waited). A `probe`
    sends even while the circuit is open: it is the one request that tests the API."""
    started = _wait_out("starting a batch", res.ownership.start, channel, batch)
    if started is None:
        log.info("batch channel=%s id=%s is stale: taken over while it waited", channel, batch)
        if probe:
            res.circuit.probe_done(batch)
        return None
    res.leases.add(channel, batch)
    try:
        if not probe and res.circuit.state().open:
            return _give_back(res, channel, batch, len(started.entries))
        if not CHANNELS[channel].otp and guard_now(res.redis, res.keys, res.settings).paused:
            return _give_back(res, channel, batch, len(started.entries))
        return _process(res, channel, batch, started, probe)
    finally:
        res.leases.remove(batch)
        if probe:
            res.circuit.probe_done(batch)


def _give_back(res: Resources, channel: str, batch: str, size: int) -> BatchReport:
    """The circuit is open, or the balance low: every entry waits, unsent and without an
    outcome, and no delivery is counted against MAX_DELIVERIES."""
    _finish_batch(res, channel, batch, [])
    report = BatchReport(channel, size, returned=size)
    _count(report)
    log.info(report.log_line())
    return report


def _process(
    res: Resources, channel: str, batch: str, started: Started, probe: bool
) -> BatchReport:
    clock = time.monotonic()
    settings = res.settings
    held = isolate(started.entries, settings.tuning(channel).batch_size)
    if len(held) < len(started.entries):
        sending = {e.entry_id for e in held}
        later = [e.entry_id for e in started.entries if e.entry_id not in sending]
        _wait_out("setting entries aside", res.ownership.set_aside, channel, batch, later)
    report = BatchReport(channel, len(held))
    reader = EntryReader(
        ContractContext(flashcall_code_max_digits=settings.flashcall_code_max_digits),
        settings.max_job_bytes,
        stamp.read_key(res.redis, res.keys.stamp_key),
    )
    acks: list[Finished] = [Finished(e.entry_id, "") for e in held if e.raw is None]
    parsed = [reader.parse(e, channel) for e in held if e.raw is not None]
    first: dict[str, Parsed] = {}
    for p in parsed:
        if p.job_id in first:
            report.finished_before += 1  # the same jobId twice in one batch: sent once
            acks.append(Finished(p.entry.entry_id, p.job_id))
        else:
            first[p.job_id] = p
    mine: list[Parsed] = []
    oldest_ms = started.redis_ms - int(settings.tuning(channel).max_age_s * 1000)
    claims = _wait_out("claiming jobIds", res.ledger.claim, batch, list(first))
    for p, claim in zip(first.values(), claims, strict=True):
        if claim == "claimed":
            mine.append(_expire(_give_up(p, settings.max_deliveries), oldest_ms))
        elif claim == "done":
            report.finished_before += 1
            acks.append(Finished(p.entry.entry_id, p.job_id))
        else:
            report.busy += 1
    how = Sending(
        CHANNELS[channel].endpoint,
        channel,
        deadline=clock + settings.retry_max_seconds,
        circuit=res.circuit,
        probe=probe,
        still_held=lambda: res.leases.current(batch),
    )
    try:
        outcomes = _send_and_judge(res, how, mine, report)
        # Acknowledgements after the outcomes: a duplicate's entry is acknowledged once the
        # outcome of its jobId is in.
        finish = _finish_batch(res, channel, batch, outcomes + acks)
    except BaseException:
        res.leases.remove(batch)  # first, or a renewal could set the released lease again
        res.ledger.release(batch, [p.job_id for p in mine])
        raise
    report.published = finish.published
    _warn_unpublished(channel, batch, finish)
    for status in finish.unparked_finals:  # callbacks that came before the 201 was in
        final = "delivered" if status in READ_STATUSES else status
        metrics.STATUS.final.labels(channel, final, "callback").inc()
        metrics.STATUS.time_to_final.labels(channel).observe(0.0)
    report.seconds = time.monotonic() - clock
    _count(report)
    log.info(report.log_line())
    return report


def isolate(entries: list[HeldEntry], batch_size: int) -> list[HeldEntry]:
    """The entries this run of the batch sends; the others are set aside before it sends (no
    delivery counted for them, whatever becomes of this run) for a later batch.

    Entries a process died with come back with their delivery count raised. Each time, the
    part sent is halved (the most suspect first), so a poison job is alone after
    log2(batch size) crashes and its innocent neighbours go on in the other halves, never
    reaching MAX_DELIVERIES with it.
    """
    most = max((e.deliveries for e in entries), default=1)
    if most <= 1:
        return entries
    limit = max(1, batch_size >> (most - 1))
    return sorted(entries, key=lambda e: -e.deliveries)[:limit]


def _warn_unpublished(channel: str, batch: str, finish: FinishReport) -> None:
    if finish.taken:
        log.warning(
            "batch channel=%s id=%s: %d outcome(s) not published: this batch's lease lapsed "
            "and another live batch holds those jobs now (they may be sent twice)",
            channel,
            batch,
            finish.taken,
        )
    if finish.already:
        log.warning(
            "batch channel=%s id=%s: %d outcome(s) not published: another batch had "
            "finished those jobs (they may have been sent twice)",
            channel,
            batch,
            finish.already,
        )


def _count(report: BatchReport) -> None:
    channel = report.channel
    for status in ("accepted", "rejected", "failed", "expired"):
        if getattr(report, status):
            metrics.JOBS.labels(channel, status).inc(getattr(report, status))
    if report.returned:
        metrics.RETURNED.labels(channel).inc(report.returned)
    if report.busy:
        metrics.SKIPPED.labels(channel, "busy").inc(report.busy)
    if report.finished_before:
        metrics.SKIPPED.labels(channel, "duplicate").inc(report.finished_before)
    metrics.BATCHES.labels(channel).inc()
    metrics.BATCH_SIZE.labels(channel).observe(report.size)
    if report.splits:
        metrics.SPLITS.labels(channel).inc(report.splits)


class EntryReader:
    """Reads a batch's entries: a stamped one as it is, any other validated in full."""

    def __init__(
        self, context: ContractContext, max_bytes: int, stamp_key: bytes | None = None
    ) -> None:
        self.context, self.max_bytes, self.stamp_key = context, max_bytes, stamp_key
        self.tag = stamp.context_tag(context)

    def parse(self, entry: HeldEntry, channel: str) -> Parsed:
        """The job, or why it cannot be sent; never raises, whatever the entry holds."""
        raw = entry.raw
        if raw and self.stamp_key is not None and len(raw) <= self.max_bytes:
            sealed = stamp.verify(self.stamp_key, self.tag, entry.stamp, raw)
            if sealed is not None:
                return _sealed(entry, channel, sealed, raw)
        return parse_entry(entry, channel, self.context, self.max_bytes)


def _sealed(entry: HeldEntry, channel: str, sealed: stamp.Stamp, raw: bytes) -> Parsed:
    """A job our producer validated and wrote as `{"jobId", "message"}` (the API object)."""
    data = orjson.loads(raw)
    job_id, api = data["jobId"], data["message"]
    if sealed.channel != channel:
        return Parsed(entry, job_id, None, f"a {sealed.channel} job on the {channel} stream")
    return Parsed(entry, job_id, api, None, sealed.segments)


def parse_entry(entry: HeldEntry, channel: str, context: ContractContext, max_bytes: int) -> Parsed:
    """The job validated in full, or why it cannot be sent; never raises, whatever the entry
    holds.

    Its jobId is the job's own when usable; the entry id when the job has none (then the
    job has no idempotency key: the same job XADDed twice is sent twice) or an unusable one
    (then it is rejected, and its outcome says why).
    """
    data = _decode(entry, max_bytes)
    if isinstance(data, str):
        return Parsed(entry, entry.entry_id, None, data)
    if "jobId" in data and not is_job_id(data["jobId"]):
        problem = (
            f"jobId: must be a string of 1 to 128 visible ASCII characters, got "
            f"{untrusted.quote(data['jobId'])} (this outcome carries the entry id instead)"
        )
        return Parsed(entry, entry.entry_id, None, problem)
    job_id = data.setdefault("jobId", entry.entry_id)
    try:
        job = Job.model_validate(data, context=context)
    except ValidationError as error:
        return Parsed(entry, job_id, None, "; ".join(map(str, field_errors(error))))
    except Exception as error:
        # A contract bug must cost one job, not its batch: the bug is logged (never the job).
        log.exception("entry %s: validation raised %s", entry.entry_id, type(error).__name__)
        return Parsed(entry, job_id, None, f"could not be validated ({type(error).__name__})")
    if job.channel != channel:
        return Parsed(entry, job_id, None, f"a {job.channel} job on the {channel} stream")
    message = job.message
    segments = sms_segments(message.content) if isinstance(message, SmsMessage) else None
    return Parsed(entry, job_id, to_api_json(message), None, segments)


def _give_up(p: Parsed, max_deliveries: int) -> Parsed:
    """A job handed out more than `max_deliveries` times and still unfinished: something
    kills whoever processes it. It fails (and is dead-lettered) instead of looping forever."""
    if p.entry.deliveries <= max_deliveries:
        return p
    problem = f"gave up after {p.entry.deliveries} deliveries without an outcome"
    return Parsed(p.entry, p.job_id, None, problem, give_up=True)


def _expire(p: Parsed, oldest_ms: int) -> Parsed:
    """A message enqueued before `oldest_ms` (its channel's MAX_AGE ago) is not sent late."""
    if p.api is None or p.entry.enqueued_ms >= oldest_ms:
        return p
    return Parsed(
        p.entry, p.job_id, None, "older than its channel's MAX_AGE: not sent", expire=True
    )


def _decode(entry: HeldEntry, max_bytes: int) -> dict[str, Any] | str:
    """The entry's job as a dict, or what is wrong with it."""
    if not entry.raw:
        return "the entry has no 'job' field"
    if len(entry.raw) > max_bytes:
        return f"the job is {len(entry.raw)} bytes, over MAX_JOB_BYTES ({max_bytes})"
    try:
        data = untrusted.load(entry.raw)
    except untrusted.UntrustedJsonError as error:
        return f"the job {error}"
    return data if isinstance(data, dict) else "the job is not a JSON object"


def _send_and_judge(
    res: Resources, how: Sending, mine: list[Parsed], report: BatchReport
) -> list[Finished]:
    finished: list[Finished] = []
    sendable: list[Parsed] = []
    for p in mine:
        if p.api is None:
            status: Status = "failed" if p.give_up else "expired" if p.expire else "rejected"
            result = ItemResult(status, error=(None, p.problem or "invalid job"))
            finished.append(_finish(p, how.label, result))
        else:
            sendable.append(p)
    if sendable:
        objects = [p.api for p in sendable if p.api is not None]
        if how.endpoint == MESSAGE_ENDPOINT:
            ask_for_callbacks(res.settings, objects)
        results, stats = deliver(res.api, how, objects)
        report.requests, report.splits = stats.requests, stats.splits
        finished += [_finish(p, how.label, r) for p, r in zip(sendable, results, strict=True)]
    for f in finished:
        final = f.state.split(":", 1)[0]
        setattr(report, final, getattr(report, final) + 1)
    return finished


def ask_for_callbacks(settings: Settings, objects: list[dict[str, Any]]) -> None:
    """With CALLBACK_URL set, messages ask for our receiver's callbacks, but not those whose
    job names a callbackUrl of its own: its app takes them (we poll for their status). A job's
    own callbackEvents are kept (the poller completes what they leave out)."""
    if settings.callback_url is None:
        return
    url = settings.callback_url.get_secret_value()
    events = settings.callback_event_list
    for obj in objects:
        if "callbackUrl" not in obj:
            obj["callbackUrl"] = url
            obj.setdefault("callbackEvents", events)


def _finish(p: Parsed, channel: str, result: ItemResult) -> Finished:
    if result.status == "returned":
        return Finished(p.entry.entry_id, p.job_id, "returned")
    api = p.api or {}
    outcome = outcome_json(
        p.job_id,
        p.entry.entry_id,
        result.status,
        channel,
        destination=api.get("destination"),
        message_uuid=result.message_uuid,
        code=result.code,
        error=result.error,
        http_status=result.http_status,
        attempts=result.attempts,
        external_id=api.get("externalMessageId"),
        segments=p.segments,
    )
    state = f"accepted:{result.message_uuid}" if result.status == "accepted" else result.status
    dead = _dead_letter(p) if result.status == "failed" else ""
    return Finished(p.entry.entry_id, p.job_id, state, outcome, dead)


def _dead_letter(p: Parsed) -> str:
    """What `replay` puts back on the stream: the job as it was enqueued. A given-up entry
    whose job is not UTF-8 text has nothing to replay: its `failed` outcome is all there is."""
    try:
        return (p.entry.raw or b"").decode("utf-8")
    except UnicodeDecodeError:
        return ""


#: Redis answers that pass: unreachable or restarting (loading), full (maxmemory with
#: noeviction: memory comes back as readers trim or an operator raises the limit), or a replica
#: during a failover. Publishing waits them out; giving up would resend the batch.
_REDIS_DOWN = (
    redis.ConnectionError,
    redis.TimeoutError,
    redis.exceptions.OutOfMemoryError,
    redis.exceptions.ReadOnlyError,
)


def _wait_out(what: str, call: Callable[..., T], *args: Any) -> T:
    """`call(*args)`, again and again while Redis is down or refuses writes: each call is a
    Lua script, which Redis refuses before it writes anything, or which is safe to repeat."""
    retrying = Retrying(
        retry=retry_if_exception_type(_REDIS_DOWN),
        wait=wait_exponential_jitter(multiplier=0.2, max=5),
        stop=stop_never,
        before_sleep=lambda s: log.warning(
            "%s failed, retrying: %s", what, s.outcome.exception() if s.outcome else ""
        ),
    )
    return retrying(call, *args)


def _finish_batch(res: Resources, channel: str, batch: str, rows: list[Finished]) -> FinishReport:
    """Outcomes are never dropped: a Redis outage (or a full Redis) is waited out, however
    long it lasts; the batch's lease is kept meanwhile, so nobody sends its jobs again."""
    return _wait_out("publishing outcomes", res.ledger.finish, channel, batch, rows)
