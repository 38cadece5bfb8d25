"""Cancel jobs: a queued job is never sent (its one outcome is `cancelled`), an accepted message
not yet final is stopped at the API (its final `unsent` comes as a status).

Queued jobs are found by reading the job streams once (a campaign of 100,000 is read in pages
and cancelled in chunks of one script call each, so workers wait milliseconds at a time). The
ledger decides each job atomically (`cancel.lua`): one no live batch holds is cancelled; one a
batch is sending is waited for, and stopped if it was accepted. Nothing here sends a message.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import orjson
import redis

from config import Settings
from tasks import untrusted
from tasks.channels import CHANNELS, MAX_STOP_UUIDS
from tasks.jobs import is_job_id, outcome_json
from tasks.keys import CONSUMER_GROUP, JOB_FIELD, Keys, as_text
from tasks.segments import SMS, sms_segments
from tasks.untrusted import quote
from worker.api_client import Answer, ApiClient, listed_messages

T = TypeVar("T")
_CANCEL = (Path(__file__).with_name("cancel.lua")).read_text(encoding="utf-8")
#: Stream entries read per XRANGE.
PAGE = 10_000
#: Jobs per script call: a few milliseconds of Redis, so workers never wait long behind it.
CHUNK = 500
#: Messages per page of the API's listing of a tag (page * per_page <= 10,000, notes.md).
LIST_PAGE = 1_000
LIST_DEPTH = 10_000
#: How often a job a batch is sending is asked about again.
POLL_S = 0.2
#: Per stop item code (notes.md, Stopping messages): the report's result, and why.
STOP_CODES = {
    200: ("stop requested", ""),
    202: ("not stopped", "the API may not be able to stop it (202)"),
    403: ("not stopped", "already sent (403)"),
    404: ("not found", "the API does not know this message (404)"),
}
#: Why a job that finished before the cancel was not stopped, by its ledger state.
FINISHED = {
    "rejected": "rejected before: never sent",
    "failed": "failed before: never sent (in the dead letters; do not replay it)",
    "expired": "expired before: never sent",
    "cancelled": "cancelled before",
}
BEING_SENT = "being sent: run cancel again once its outcome is in"
#: The report's results, in the order its table shows them.
RESULTS = ("cancelled", "stop requested", "not stopped", "not found")
DRY = {"cancelled": "would cancel", "stop requested": "would request a stop"}


@dataclass(frozen=True)
class Row:
    """What became of one job (or of one message the API listed for a tag)."""

    result: str  # one of RESULTS
    job_id: str | None
    message_uuid: str | None = None
    why: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "result": self.result,
            "jobId": self.job_id,
            "messageUuid": self.message_uuid,
            "why": self.why,
        }


@dataclass
class CancelReport:
    rows: list[Row] = field(default_factory=list)
    dry_run: bool = False

    def count(self) -> dict[tuple[str, str], int]:
        """Jobs per (result, why), in the order of RESULTS."""
        counts: dict[tuple[str, str], int] = {}
        for row in sorted(self.rows, key=lambda r: RESULTS.index(r.result)):
            counts[row.result, row.why] = counts.get((row.result, row.why), 0) + 1
        return counts


@dataclass(frozen=True)
class Queued:
    """A stream entry whose job is to be cancelled, and the outcome it would get."""

    channel: str
    entry_id: str
    job_id: str
    outcome: str


class Canceller:
    """One cancel run: `Canceller(...).run(job_ids, tag)`."""

    def __init__(
        self,
        client: redis.Redis,
        api: ApiClient | None,
        keys: Keys,
        *,
        ledger_ttl_s: int,
        max_job_bytes: int,
        wait_s: float = 30.0,
        dry_run: bool = False,
    ) -> None:
        self._client, self._api, self._keys = client, api, keys
        self._ttl_s, self._wait_s, self._dry = ledger_ttl_s, wait_s, dry_run
        self._max_job_bytes = max_job_bytes
        self._outcomes = CancelledOutcomes()
        self._script = client.register_script(_CANCEL)
        self.report = CancelReport(dry_run=dry_run)
        self._stop: dict[str, str | None] = {}  # messageUuid → jobId, to stop
        self._settled_ids: set[str] = set()  # a jobId is reported once (it may have 2 entries)

    def run(self, job_ids: Iterable[str] = (), tag: str | None = None) -> CancelReport:
        wanted = set(job_ids)
        found: set[str] = set()
        queued = list(self._queued(wanted, tag))
        found.update(q.job_id for q in queued)
        self._cancel(queued)
        for job_id in sorted(wanted - found):
            self._settled(job_id, self._state(job_id))
        if tag is not None:
            self._listed(tag)
        self._request_stops()
        return self.report

    # -- queued jobs -----------------------------------------------------------------------

    def _queued(self, wanted: set[str], tag: str | None) -> Iterator[Queued]:
        """Entries of every stream whose jobId is wanted or whose message carries `tag`."""
        for channel in CHANNELS:
            stream = self._keys.jobs(channel)
            start = "-"
            while True:
                page: Any = self._client.xrange(stream, min=start, count=PAGE)
                for raw_id, fields in page:
                    entry_id = as_text(raw_id)
                    job = _job(fields.get(JOB_FIELD.encode()), self._max_job_bytes)
                    job_id = _job_id(job, entry_id)
                    if job_id in wanted or (tag is not None and _tagged(job, tag)):
                        outcome = self._outcomes.of(channel, job, job_id, entry_id)
                        yield Queued(channel, entry_id, job_id, outcome)
                if len(page) < PAGE:
                    break
                start = "(" + as_text(page[-1][0])

    def _cancel(self, queued: list[Queued]) -> None:
        """Each queued job cancelled, or settled once the batch sending it has finished."""
        deadline = time.monotonic() + self._wait_s
        while queued:
            sending: list[Queued] = []
            for channel in {q.channel for q in queued}:
                rows = [q for q in queued if q.channel == channel]
                for chunk in _chunks(rows, CHUNK):
                    for q, state in zip(chunk, self._decide(channel, chunk), strict=True):
                        if state == "sending":
                            sending.append(q)
                        else:
                            self._settled(q.job_id, state)
            queued = sending
            if queued and (self._dry or time.monotonic() >= deadline):
                for q in queued:
                    self._settled(q.job_id, "inflight:")
                return
            if queued:
                time.sleep(POLL_S)

    def _decide(self, channel: str, chunk: list[Queued]) -> list[str]:
        if self._dry:
            return [self._peek(q.job_id) for q in chunk]
        reply: Any = self._script(
            keys=[self._keys.jobs(channel), self._keys.results],
            args=[
                CONSUMER_GROUP,
                self._keys.ledger(""),
                self._keys.lease(""),
                self._ttl_s,
                self._keys.track(""),
                orjson.dumps([[q.entry_id, q.job_id, q.outcome] for q in chunk]),
            ],
        )
        return [as_text(state) for state in reply]

    def _peek(self, job_id: str) -> str:
        """What the script would say, without changing anything (a dry run)."""
        state = self._state(job_id)
        if state is None:
            return "now"
        if state.startswith("inflight:"):
            live = self._client.exists(self._keys.lease(state.removeprefix("inflight:")))
            return "sending" if live else "now"
        return state

    def _state(self, job_id: str) -> str | None:
        value: Any = self._client.get(self._keys.ledger(job_id))
        return None if value is None else as_text(value)

    def _settled(self, job_id: str, state: str | None) -> None:
        """A job whose fate the ledger knows (or a jobId it does not)."""
        if job_id in self._settled_ids:
            return
        self._settled_ids.add(job_id)
        rows = self.report.rows
        if state == "now":
            rows.append(Row("cancelled", job_id))
        elif state is None or state == "gone":
            rows.append(Row("not found", job_id, why="no such job queued or finished"))
        elif state.startswith("accepted:"):
            self._accepted(job_id, state.removeprefix("accepted:"))
        elif state.startswith("inflight:"):
            rows.append(Row("not stopped", job_id, why=BEING_SENT))
        else:
            rows.append(Row("not stopped", job_id, why=FINISHED.get(state, state)))

    # -- accepted messages -----------------------------------------------------------------

    def _accepted(self, job_id: str | None, message_uuid: str) -> None:
        """An accepted message is stopped unless its status is final already."""
        status: Any = self._client.hmget(self._keys.message(message_uuid), "final", "status")
        if status[0] == b"1":
            why = f"already final ({as_text(status[1])})"
            self.report.rows.append(Row("not stopped", job_id, message_uuid, why))
        elif message_uuid not in self._stop:
            self._stop[message_uuid] = job_id

    def _listed(self, tag: str) -> None:
        """Messages the API lists for `tag` still `sending`: jobs finished before the cancel
        (or sent by anyone else with that tag), page by page as deep as the API allows."""
        api = self._require_api()
        for page in range(1, LIST_DEPTH // LIST_PAGE + 1):
            answer = api.messages(
                {"tags": tag, "status": "sending", "page": page, "per_page": LIST_PAGE},
                timeout_s=70.0,
            )
            items = listed_messages(answer.body) if answer.status == 200 else None
            if items is None:
                raise CancelError(f"listing the tag's messages failed: {_problem(answer)}")
            for item in items:
                uuid = item.get("messageUuid") if isinstance(item, dict) else None
                if isinstance(uuid, str) and uuid not in self._stop:
                    self._stop[uuid] = self._job_of(uuid)
            if len(items) < LIST_PAGE:
                return

    def _job_of(self, message_uuid: str) -> str | None:
        job: Any = self._client.hget(self._keys.message(message_uuid), "job")
        return None if job is None else as_text(job)

    def _request_stops(self) -> None:
        uuids = list(self._stop)
        if self._dry:
            self.report.rows += [Row("stop requested", self._stop[u], u) for u in uuids]
            return
        if uuids:
            api = self._require_api()
        for chunk in _chunks(uuids, MAX_STOP_UUIDS):
            answer = api.stop(chunk)
            codes = _item_codes(answer)
            for uuid in chunk:
                code = codes.get(uuid)
                if code is None:
                    why = f"the stop request failed: {_problem(answer)}"
                    self.report.rows.append(Row("not stopped", self._stop[uuid], uuid, why))
                    continue
                result, why = STOP_CODES.get(code, ("not stopped", f"item code {code}"))
                self.report.rows.append(Row(result, self._stop[uuid], uuid, why))

    def _require_api(self) -> ApiClient:
        if self._api is None:
            raise CancelError("stopping sent messages needs the API (REVICOM_API_URL)")
        return self._api


def cancel(
    settings: Settings,
    job_ids: Iterable[str] = (),
    tag: str | None = None,
    *,
    dry_run: bool = False,
    wait_s: float = 30.0,
) -> CancelReport:
    """Cancel from Python, as `revicom-dispatch cancel` does: the report has one row per job."""
    client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=5)
    api = ApiClient(settings)
    try:
        canceller = Canceller(
            client,
            api,
            Keys(settings.dispatch_key_prefix),
            ledger_ttl_s=settings.ledger_ttl_s,
            max_job_bytes=settings.max_job_bytes,
            wait_s=wait_s,
            dry_run=dry_run,
        )
        return canceller.run(job_ids, tag)
    finally:
        api.close()
        client.close()


class CancelError(RuntimeError):
    """The cancel could not go on (the API refused the listing); said in one line."""


def _job(raw: bytes | None, max_bytes: int) -> dict[str, Any] | None:
    """The entry's job as a batch would read it (worker/batch.py `parse_entry`); None when a
    batch could not read it, which then goes by its entry id."""
    if not raw or len(raw) > max_bytes:
        return None
    try:
        job = untrusted.load(raw)
    except untrusted.UntrustedJsonError:
        return None
    return job if isinstance(job, dict) else None


def _job_id(job: dict[str, Any] | None, entry_id: str) -> str:
    """The jobId a batch would give the entry (worker/batch.py `parse_entry`)."""
    job_id = job.get("jobId") if job is not None else None
    return job_id if isinstance(job_id, str) and is_job_id(job_id) else entry_id


def _message(job: dict[str, Any] | None) -> dict[str, Any]:
    message = job.get("message") if job is not None else None
    return message if isinstance(message, dict) else {}


def _tagged(job: dict[str, Any] | None, tag: str) -> bool:
    tags = _message(job).get("tags")
    return isinstance(tags, list) and tag in tags


class CancelledOutcomes:
    """The `cancelled` outcome of each job, written as a batch writes its outcomes
    (`outcome_json`): a campaign of 100,000 costs no model each."""

    def of(self, channel: str, job: dict[str, Any] | None, job_id: str, entry_id: str) -> str:
        message = _message(job)
        destination, external = message.get("destination"), message.get("externalMessageId")
        content = message.get("content") if channel == SMS else None
        return outcome_json(
            job_id,
            entry_id,
            "cancelled",
            channel,  # the stream's, as a batch's outcome says
            destination=destination if isinstance(destination, str) else None,
            error=(None, "cancelled before it was sent"),
            external_id=external if isinstance(external, str) else None,
            segments=sms_segments(content) if isinstance(content, str) else None,
        )


def _item_codes(answer: Answer) -> dict[str, int]:
    """messageUuid → item code of a stop answer; empty when it is no readable answer."""
    items = answer.body.get("items") if isinstance(answer.body, dict) else None
    if answer.status != 200 or not isinstance(items, list):
        return {}
    return {
        item["messageUuid"]: item["code"]
        for item in items
        if isinstance(item, dict)
        and isinstance(item.get("messageUuid"), str)
        and type(item.get("code")) is int
    }


def _problem(answer: Answer) -> str:
    code, msg = answer.error
    status = "no answer" if answer.status is None else f"HTTP {answer.status}"
    return f"{status} {'' if code is None else code} {quote(msg, 200)}".replace("  ", " ")


def _chunks(items: list[T], size: int) -> Iterator[list[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def read_job_ids(lines: Iterable[str], on_bad: Callable[[int, str], None]) -> list[str]:
    """jobIds, one per line (blank lines and `#` comments skipped); a line that is no jobId
    is told to `on_bad` (its number and why), not guessed at."""
    ids: list[str] = []
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        if is_job_id(text):
            ids.append(text)
        else:
            on_bad(number, "not a jobId (1 to 128 visible ASCII characters)")
    return ids
