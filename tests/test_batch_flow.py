"""`process_batch` from start to finish, in process: the real Lua scripts on a real Redis and
the real sandbox over HTTP, so each row of the README's failure table is checked where a
batch decides it (the outcome, the dead letter, what stays pending, the ledger, the sandbox,
the report and the metrics)."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest
import redis
from prometheus_client import REGISTRY

from config import Settings
from tasks.contract import ContractContext
from tasks.jobs import Job
from tasks.keys import CONSUMER_GROUP, Keys, as_text
from tasks.tracking.store import StatusStore
from tests.conftest import OTHER_TYPE_TOKEN, SANDBOX_TOKEN
from tests.contract_cases import BASE, variant
from tests.e2e.sandbox_view import received
from tests.sandbox_client import set_faults
from worker.api_client import ApiClient
from worker.batch import BatchReport, isolate, parse_entry, process_batch
from worker.ownership import HeldEntry
from worker.resources import Resources

CHANNEL = "SMS"
LEASE_MS = 10_000
MAX_DELIVERIES = 12  # the least the settings allow with batches of up to 1,000

Entry = dict[str, Any] | str | bytes | None  # a job, its raw `job` field, or no `job` field
Build = Callable[..., Resources]


@pytest.fixture
def build(redis_url: str, sandbox_url: str, keys: Keys) -> Iterator[Build]:
    """Resources under the test's prefix, sending to the sandbox with fast retries; their
    clients are closed after the test."""
    made: list[Resources] = []

    def make(
        api_url: str | None = None,
        token: str = SANDBOX_TOKEN,
        transport: httpx.BaseTransport | None = None,
        **overrides: Any,
    ) -> Resources:
        settings = Settings.model_validate(
            {
                "redis_url": redis_url,
                "revicom_api_url": api_url or sandbox_url,
                "revicom_api_token": token,
                "dispatch_key_prefix": keys.prefix,
                "retry_backoff_ms": 1,
                "retry_backoff_max_ms": 5,
                "retry_max_attempts": 3,
                "circuit_failures": 3,
                "retry_max_seconds": 10,
                "send_timeout_s": 10,
                "lease_ms": LEASE_MS,
                "otp_lease_ms": LEASE_MS,
                "max_deliveries": MAX_DELIVERIES,
                **overrides,
            }
        )
        res = Resources.create(settings)
        if transport is not None:
            res.api.close()
            res.api = ApiClient(settings, transport=transport)
        made.append(res)
        return res

    yield make
    for res in made:
        res.api.close()
        res.redis.close()


def job(job_id: str, n: int = 0, **patch: Any) -> dict[str, Any]:
    """A valid SMS job; `n` picks its destination."""
    fields = {"destination": f"1408555{n:04d}", **patch}
    return {"jobId": job_id, "message": variant("SMS", **fields)}


def queue(
    res: Resources,
    entries: Sequence[Entry],
    *,
    batch: str = "b-1",
    channel: str = CHANNEL,
    ids: Sequence[str] | None = None,
    deliveries: Sequence[int] | None = None,
) -> list[str]:
    """Enqueue, read as a live reader and hand over to `batch` (queued), as the batcher does;
    `deliveries` raises each entry's delivery count (XCLAIM RETRYCOUNT) as takeovers would."""
    client, stream = res.redis, res.keys.jobs(channel)
    with contextlib.suppress(redis.ResponseError):  # the group exists already
        client.xgroup_create(stream, CONSUMER_GROUP, id="0", mkstream=True)
    entry_ids = []
    for i, entry in enumerate(entries):
        fields: dict[Any, Any]
        if entry is None:
            fields = {"other": "x"}
        elif isinstance(entry, dict):
            fields = {"job": orjson.dumps(entry)}
        else:
            fields = {"job": entry}
        entry_ids.append(as_text(client.xadd(stream, fields, id=ids[i] if ids else "*")))
    reader = f"r-{batch}"
    res.ownership.new_reader(reader, LEASE_MS)
    client.xreadgroup(CONSUMER_GROUP, reader, {stream: ">"})
    assert res.ownership.hand_over(channel, reader, batch, entry_ids)
    res.ownership.end(reader)
    for entry_id, count in zip(entry_ids, deliveries or [], strict=False):
        client.xclaim(stream, CONSUMER_GROUP, batch, 0, [entry_id], retrycount=count, justid=True)
    return entry_ids


def outcomes(res: Resources) -> list[dict[str, Any]]:
    rows: Any = res.redis.xrange(res.keys.results)
    return [orjson.loads(f[b"outcome"]) for _, f in rows]


def dead_letters(res: Resources) -> list[tuple[bytes, dict[str, Any]]]:
    """The dead-letter stream: each job as it was enqueued, with its outcome."""
    rows: Any = res.redis.xrange(res.keys.dead)
    return [(f[b"job"], orjson.loads(f[b"outcome"])) for _, f in rows]


def pending(res: Resources, channel: str = CHANNEL) -> dict[str, str]:
    """Entry id -> its holder."""
    rows: Any = res.redis.xpending_range(res.keys.jobs(channel), CONSUMER_GROUP, "-", "+", 1000)
    return {as_text(p["message_id"]): as_text(p["consumer"]) for p in rows}


def ledger(res: Resources, job_id: str) -> str | None:
    value = res.redis.get(res.keys.ledger(job_id))
    return None if value is None else as_text(value)


def lease(res: Resources, holder: str) -> str | None:
    value = res.redis.get(res.keys.lease(holder))
    return None if value is None else as_text(value)


def counters(channel: str = CHANNEL) -> dict[str, float]:
    """What `_count` adds to, for one channel."""

    def value(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, {"channel": channel, **labels}) or 0.0

    seen = {s: value("revicom_jobs_total", status=s) for s in ("accepted", "rejected")}
    seen |= {s: value("revicom_jobs_total", status=s) for s in ("failed", "expired")}
    seen["returned"] = value("revicom_jobs_returned_total")
    seen["busy"] = value("revicom_jobs_skipped_total", reason="busy")
    seen["duplicate"] = value("revicom_jobs_skipped_total", reason="duplicate")
    seen["batches"] = value("revicom_batches_total")
    seen["size_sum"] = value("revicom_batch_size_sum")
    seen["size_count"] = value("revicom_batch_size_count")
    seen["splits"] = value("revicom_422_splits_total")
    return seen


@contextlib.contextmanager
def counted(channel: str = CHANNEL) -> Iterator[dict[str, float]]:
    """The counters' increments during the block (non-zero ones)."""
    before, delta = counters(channel), dict[str, float]()
    yield delta
    after = counters(channel)
    delta.update({k: after[k] - before[k] for k in after if after[k] != before[k]})


def run(res: Resources, batch: str = "b-1", channel: str = CHANNEL) -> BatchReport:
    report = process_batch(res, channel, batch)
    assert report is not None
    return report


def by_destination(sandbox: httpx.Client) -> dict[str, str]:
    """messageUuid of each message the sandbox created, by destination."""
    return {r["message"]["destination"]: r["messageUuid"] for r in received(sandbox)}


def failing(call: Callable[..., Any], errors: Sequence[Exception], calls: list[Any]) -> Any:
    """`call`, raising `errors` first, one per call."""
    left = list(errors)

    def wrapper(*args: Any) -> Any:
        calls.append(args)
        if left:
            raise left.pop(0)
        return call(*args)

    return wrapper


def test_accepted_jobs_carry_what_the_sandbox_answered(build: Build, sandbox: httpx.Client) -> None:
    res = build()
    ids = queue(res, [job("a", 1), job("b", destination="+1 (408) 555-0002"), job("c", 3)])
    started = datetime.now(UTC)
    with counted() as delta:
        report = run(res)
    created = by_destination(sandbox)
    assert sorted(created) == ["14085550001", "14085550002", "14085550003"]
    assert (report.size, report.accepted, report.requests, report.splits) == (3, 3, 1, 0)
    assert (report.published, report.rejected, report.failed, report.returned) == (3, 0, 0, 0)
    assert 0 < report.seconds < 10
    assert delta == {"accepted": 3, "batches": 1, "size_sum": 3, "size_count": 1}
    published = outcomes(res)
    assert [o["jobId"] for o in published] == ["a", "b", "c"]
    for outcome, entry_id, n in zip(published, ids, (1, 2, 3), strict=True):
        destination = f"1408555{n:04d}"
        assert outcome == {
            "jobId": outcome["jobId"],
            "entryId": entry_id,
            "status": "accepted",
            "channelType": "SMS",
            "destination": destination,
            "messageUuid": created[destination],
            "code": 201,
            "error": None,
            "httpStatus": 200,
            "attempts": 1,
            "externalMessageId": None,
            "segments": 1,
            "finishedAt": outcome["finishedAt"],
        }
        assert started <= datetime.fromisoformat(outcome["finishedAt"]) <= datetime.now(UTC)
        assert ledger(res, outcome["jobId"]) == f"accepted:{created[destination]}"
    assert res.redis.xlen(res.keys.jobs(CHANNEL)) == 0  # acknowledged and deleted
    assert pending(res) == {}
    assert dead_letters(res) == []
    assert lease(res, "b-1") is None
    assert not res.leases.current("b-1")


def test_voicecode_outcomes_carry_its_external_message_id(
    build: Build, sandbox: httpx.Client
) -> None:
    res = build()
    message = variant("VOICECODE", externalMessageId="ext-42")
    queue(res, [{"jobId": "v", "message": message}], channel="VOICECODE")
    with counted("VOICECODE") as delta:
        report = run(res, channel="VOICECODE")
    assert report.accepted == 1
    (outcome,) = outcomes(res)
    assert (outcome["channelType"], outcome["externalMessageId"]) == ("VOICECODE", "ext-42")
    assert outcome["messageUuid"] == received(sandbox)[0]["messageUuid"]
    assert delta == {"accepted": 1, "batches": 1, "size_sum": 1, "size_count": 1}


def test_invalid_entries_are_rejected_with_the_reason_and_their_neighbours_go_on(
    build: Build, sandbox: httpx.Client
) -> None:
    res = build(max_job_bytes=1024)
    flashcall = {"jobId": "fc", "message": BASE["FLASHCALL"]}
    big = job("big", 9, content="x" * 1100)
    entries: list[Entry] = [
        job("ok-1", 1),
        job("bad-number", 2, destination="12", content=""),
        b'{"jobId": "x", ',
        None,
        b"[1, 2]",
        b'{"jobId": 42, "message": {}}',
        flashcall,
        orjson.dumps(big),
        {"message": BASE["SMS"]},  # no jobId: known by its entry id
        job("ok-2", 3),
    ]
    ids = queue(res, entries)
    with counted() as delta:
        report = run(res)
    assert sorted(by_destination(sandbox)) == ["14085550001", "14085550003", "14085553911"]
    assert (report.size, report.accepted, report.rejected, report.published) == (10, 3, 7, 10)
    assert report.requests == 1
    assert delta == {"accepted": 3, "rejected": 7, "batches": 1, "size_sum": 10, "size_count": 1}
    rejected = {o["entryId"]: o for o in outcomes(res) if o["status"] == "rejected"}
    size = len(orjson.dumps(big))
    assert {e: (o["jobId"], o["error"]["msg"]) for e, o in rejected.items()} == {
        ids[1]: ("bad-number", rejected[ids[1]]["error"]["msg"]),
        ids[2]: (ids[2], rejected[ids[2]]["error"]["msg"]),
        ids[3]: (ids[3], "the entry has no 'job' field"),
        ids[4]: (ids[4], "the job is not a JSON object"),
        ids[5]: (
            ids[5],
            "jobId: must be a string of 1 to 128 visible ASCII characters, got 42 "
            "(this outcome carries the entry id instead)",
        ),
        ids[6]: ("fc", "a FLASHCALL job on the SMS stream"),
        ids[7]: (ids[7], f"the job is {size} bytes, over MAX_JOB_BYTES (1024)"),
    }
    two = rejected[ids[1]]["error"]["msg"].split("; ")  # every problem, one by one
    assert [p.split(":")[0] for p in two] == ["message.destination", "message.content"]
    assert rejected[ids[2]]["error"]["msg"].startswith("the job is not valid JSON")
    for outcome in rejected.values():
        assert outcome["error"]["code"] is None
        assert (outcome["httpStatus"], outcome["attempts"], outcome["code"]) == (None, 0, None)
        assert outcome["messageUuid"] is None
        assert outcome["channelType"] == "SMS"  # the stream's, even when unreadable
        assert ledger(res, outcome["jobId"]) == "rejected"
    assert rejected[ids[1]]["destination"] is None  # never validated: no destination
    accepted = {o["entryId"]: o["jobId"] for o in outcomes(res) if o["status"] == "accepted"}
    assert accepted == {ids[0]: "ok-1", ids[8]: ids[8], ids[9]: "ok-2"}
    assert dead_letters(res) == []
    assert pending(res) == {}


def test_isolate_sends_the_most_delivered_half_per_crash() -> None:
    def entries(*deliveries: int) -> list[HeldEntry]:
        return [HeldEntry(f"{i}-0", d, b"") for i, d in enumerate(deliveries)]

    fresh = entries(1, 1, 1)
    assert isolate(fresh, 2) is fresh  # never crashed: everything goes, as it came
    assert isolate([], 8) == []
    assert [e.entry_id for e in isolate(entries(1, 2, 1, 1), 8)] == ["1-0", "0-0", "2-0", "3-0"]
    assert [e.entry_id for e in isolate(entries(1, 3, 2, 1, 3), 8)] == ["1-0", "4-0"]
    assert [e.entry_id for e in isolate(entries(2, 1, 4, 1), 8)] == ["2-0"]
    assert [e.entry_id for e in isolate(entries(1, 9, 1), 1000)] == ["1-0", "0-0", "2-0"]
    assert [e.entry_id for e in isolate(entries(1, 9, 1), 512)] == ["1-0", "0-0"]
    assert len(isolate(entries(*[2] * 10), 8)) == 4
    assert [e.entry_id for e in isolate(entries(5, 1), 4)] == ["0-0"]  # never none


def test_a_batch_back_from_a_crash_sends_half_and_sets_the_rest_aside(
    build: Build, sandbox: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The half not sent waits under its own holder before the request goes, so a crash
    while sending counts no delivery for it."""
    res = build(sms_batch_size=8)
    ids = queue(res, [job(f"j{n}", n) for n in range(4)], deliveries=[1, 3, 2, 1])
    holders_when_sent: list[dict[str, str]] = []
    post = res.api.post

    def spy(*args: Any, **kwargs: Any) -> Any:
        holders_when_sent.append(pending(res))
        return post(*args, **kwargs)

    monkeypatch.setattr(res.api, "post", spy)
    with counted() as delta:
        report = run(res)
    assert sorted(by_destination(sandbox)) == ["14085550001", "14085550002"]
    assert (report.size, report.accepted, report.returned, report.published) == (2, 2, 0, 2)
    assert delta == {"accepted": 2, "batches": 1, "size_sum": 2, "size_count": 1}
    assert [o["entryId"] for o in outcomes(res)] == [ids[1], ids[2]]
    assert holders_when_sent == [{ids[0]: "w-1", ids[1]: "b-1", ids[2]: "b-1", ids[3]: "w-1"}]
    assert pending(res) == {ids[0]: "w-1", ids[3]: "w-1"}  # no outcome: a later batch
    assert lease(res, "w-1") == "waiting"
    assert ledger(res, "j0") is None
    assert ledger(res, "j3") is None


def test_the_poison_limit_is_max_deliveries_exactly(build: Build, sandbox: httpx.Client) -> None:
    res = build()
    raw = orjson.dumps(job("last-chance", 1))
    (sent,) = queue(res, [raw], batch="b-1", deliveries=[MAX_DELIVERIES])
    assert run(res, "b-1").accepted == 1
    poison = b'{"jobId": "poison",  "message": ' + orjson.dumps(BASE["SMS"]) + b"}"
    (given_up,) = queue(res, [poison], batch="b-2", deliveries=[MAX_DELIVERIES + 1])
    with counted() as delta:
        report = run(res, "b-2")
    assert (report.failed, report.requests, report.published) == (1, 0, 1)
    assert delta == {"failed": 1, "batches": 1, "size_sum": 1, "size_count": 1}
    assert sorted(by_destination(sandbox)) == ["14085550001"]  # the poison job is not sent
    first, failed = outcomes(res)
    assert (first["entryId"], first["status"]) == (sent, "accepted")
    assert (failed["jobId"], failed["entryId"], failed["status"]) == ("poison", given_up, "failed")
    assert failed["error"] == {
        "code": None,
        "msg": f"gave up after {MAX_DELIVERIES + 1} deliveries without an outcome",
    }
    assert (failed["httpStatus"], failed["attempts"]) == (None, 0)
    assert dead_letters(res) == [(poison, failed)]  # as enqueued, for replay
    assert ledger(res, "poison") == "failed"
    assert pending(res) == {}


def test_messages_older_than_max_age_expire_unsent(build: Build, sandbox: httpx.Client) -> None:
    res = build(sms_max_age_s=3600)
    seconds, micros = res.redis.time()
    now_ms = seconds * 1000 + micros // 1000
    ages_ms = [7_200_000, 3_601_800, 3_601_000, 3_598_000]  # MAX_AGE 3,600,000 ms
    entries: list[Entry] = [
        job("old", 1),
        job("just-too-old", 2),
        job("bad", 3, content=""),
        job("young", 4),
    ]
    ids = queue(res, entries, ids=[f"{now_ms - age}-0" for age in ages_ms])
    with counted() as delta:
        report = run(res)
    assert sorted(by_destination(sandbox)) == ["14085550004"]
    assert (report.expired, report.rejected, report.accepted, report.published) == (2, 1, 1, 4)
    assert delta == {
        "expired": 2,
        "rejected": 1,
        "accepted": 1,
        "batches": 1,
        "size_sum": 4,
        "size_count": 1,
    }
    status = {o["entryId"]: o for o in outcomes(res)}
    for entry_id, job_id in ((ids[0], "old"), (ids[1], "just-too-old")):
        outcome = status[entry_id]
        assert (outcome["jobId"], outcome["status"], outcome["attempts"]) == (job_id, "expired", 0)
        assert outcome["error"] == {
            "code": None,
            "msg": "older than its channel's MAX_AGE: not sent",
        }
        assert ledger(res, job_id) == "expired"
    assert status[ids[2]]["status"] == "rejected"  # invalid first, whatever its age
    assert dead_letters(res) == []


def test_a_jobid_twice_or_already_final_is_sent_once_and_only_acknowledged(
    build: Build, sandbox: httpx.Client
) -> None:
    res = build()
    res.redis.set(res.keys.ledger("done"), "failed")  # final: a replay would clear it
    entries: list[Entry] = [job("twice", 1), job("twice", 2), job("done", 3), job("new", 4)]
    ids = queue(res, [*entries, job("twice", 5)])
    with counted() as delta:
        report = run(res)
    assert sorted(by_destination(sandbox)) == ["14085550001", "14085550004"]
    assert (report.size, report.accepted, report.finished_before, report.published) == (5, 2, 3, 2)
    assert delta == {"accepted": 2, "duplicate": 3, "batches": 1, "size_sum": 5, "size_count": 1}
    assert [(o["jobId"], o["entryId"]) for o in outcomes(res)] == [
        ("twice", ids[0]),
        ("new", ids[3]),
    ]
    assert ledger(res, "done") == "failed"
    assert pending(res) == {}  # the duplicates acknowledged too, after the outcome
    assert res.redis.xlen(res.keys.jobs(CHANNEL)) == 0


def test_a_job_another_live_batch_holds_is_left_pending(
    build: Build, sandbox: httpx.Client
) -> None:
    res = build()
    res.redis.set(res.keys.lease("b-other"), "running", px=LEASE_MS)
    assert res.ledger.claim("b-other", ["busy", "busy-2"]) == ["claimed", "claimed"]
    ids = queue(res, [job("free", 1), job("busy", 2), job("busy-2", 3)])
    with counted() as delta:
        report = run(res)
    assert sorted(by_destination(sandbox)) == ["14085550001"]
    assert (report.accepted, report.busy, report.published) == (1, 2, 1)
    assert delta == {"accepted": 1, "busy": 2, "batches": 1, "size_sum": 3, "size_count": 1}
    assert [o["jobId"] for o in outcomes(res)] == ["free"]
    assert pending(res) == {ids[1]: "w-1", ids[2]: "w-1"}
    assert lease(res, "w-1") == "waiting"
    assert ledger(res, "busy") == "inflight:b-other"


def test_an_entry_deleted_while_queued_is_only_acknowledged(
    build: Build, sandbox: httpx.Client
) -> None:
    res = build()
    ids = queue(res, [job("kept", 1), job("gone", 2)])
    res.redis.xdel(res.keys.jobs(CHANNEL), ids[1])
    report = run(res)
    assert (report.size, report.accepted, report.published) == (2, 1, 1)
    assert [o["jobId"] for o in outcomes(res)] == ["kept"]
    assert sorted(by_destination(sandbox)) == ["14085550001"]
    assert pending(res) == {}
    assert lease(res, "w-1") is None  # nothing was left to wait


def test_an_open_circuit_gives_every_entry_back_unsent(
    build: Build, sandbox: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given back as it starts: not a jobId claimed, not a request tried."""
    res = build()
    res.circuit.failure("test", at_once=True)
    assert res.circuit.state().open
    claims: list[Any] = []
    monkeypatch.setattr(res.ledger, "claim", failing(res.ledger.claim, [], claims))
    ids = queue(res, [job("a", 1), job("b", 2)])
    with counted() as delta:
        report = process_batch(res, CHANNEL, "b-1")
    assert claims == []
    assert report == BatchReport(CHANNEL, 2, returned=2)
    assert delta == {"returned": 2, "batches": 1, "size_sum": 2, "size_count": 1}
    assert received(sandbox) == []
    assert outcomes(res) == []
    assert dead_letters(res) == []
    assert pending(res) == {ids[0]: "w-1", ids[1]: "w-1"}
    assert lease(res, "w-1") == "waiting"
    assert lease(res, "b-1") is None
    assert not res.leases.current("b-1")


def test_the_probe_sends_while_the_circuit_is_open_and_gives_the_token_back(
    build: Build, sandbox: httpx.Client
) -> None:
    res = build()
    res.circuit.failure("test", at_once=True)
    res.redis.set(res.keys.circuit_probe, "b-1")
    queue(res, [job("a", 1)])
    report = process_batch(res, CHANNEL, "b-1", probe=True)
    assert report is not None
    assert (report.accepted, report.returned) == (1, 0)
    assert sorted(by_destination(sandbox)) == ["14085550001"]
    assert not res.circuit.state().open  # its success closed the circuit
    assert not res.redis.exists(res.keys.circuit_probe)


@pytest.mark.parametrize("probe", [False, True])
def test_a_stale_batch_does_nothing(build: Build, sandbox: httpx.Client, probe: bool) -> None:
    res = build()
    ids = queue(res, [job("a", 1), job("b", 2)])
    res.redis.delete(res.keys.lease("b-1"))  # its batcher died while it waited...
    res.ownership.new_reader("r-2", LEASE_MS)
    assert res.ownership.reclaim(CHANNEL, "b-1", "r-2", 10) == ids  # ...and it was taken over
    res.redis.set(res.keys.circuit_probe, "b-1")
    assert process_batch(res, CHANNEL, "b-1", probe=probe) is None
    assert received(sandbox) == []
    assert outcomes(res) == []
    assert pending(res) == {ids[0]: "r-2", ids[1]: "r-2"}
    assert lease(res, "b-1") is None
    assert res.redis.exists(res.keys.circuit_probe) == (0 if probe else 1)


@pytest.mark.parametrize(("token", "status"), [("wrong-token", 401), (OTHER_TYPE_TOKEN, 403)])
def test_a_refused_key_opens_the_circuit_and_the_jobs_wait(
    build: Build, sandbox: httpx.Client, token: str, status: int
) -> None:
    res = build(token=token)
    ids = queue(res, [job("a", 1), job("b", 2)])
    with counted() as delta:
        report = run(res)
    assert (report.returned, report.requests, report.published) == (2, 1, 0)
    assert (report.rejected, report.failed, report.accepted) == (0, 0, 0)
    assert delta == {"returned": 2, "batches": 1, "size_sum": 2, "size_count": 1}
    assert sandbox.get("/_sandbox/stats").json()["requestsByStatus"] == {str(status): 1}
    assert res.circuit.state().open
    assert outcomes(res) == []
    assert dead_letters(res) == []
    assert pending(res) == {ids[0]: "w-1", ids[1]: "w-1"}
    assert ledger(res, "a") is None
    assert ledger(res, "b") is None


def test_an_answer_the_docs_do_not_list_fails_and_dead_letters_the_job(
    build: Build, sandbox_url: str, sandbox: httpx.Client
) -> None:
    res = build(api_url=f"{sandbox_url}/not-the-api")  # the sandbox answers 404
    raw = b'{ "jobId" : "j404", "message": ' + orjson.dumps(BASE["SMS"]) + b" }"
    (entry_id,) = queue(res, [raw])
    with counted() as delta:
        report = run(res)
    assert (report.failed, report.requests, report.published) == (1, 1, 1)
    assert delta == {"failed": 1, "batches": 1, "size_sum": 1, "size_count": 1}
    (outcome,) = outcomes(res)
    assert (outcome["jobId"], outcome["entryId"], outcome["status"]) == ("j404", entry_id, "failed")
    assert outcome["error"] == {"code": None, "msg": "HTTP 404: Not Found"}
    assert (outcome["httpStatus"], outcome["attempts"], outcome["code"]) == (404, 1, None)
    assert outcome["destination"] == "14085553911"
    assert dead_letters(res) == [(raw, outcome)]
    assert ledger(res, "j404") == "failed"
    assert received(sandbox) == []
    assert pending(res) == {}


def items(n: int) -> httpx.Response:
    return httpx.Response(
        200, json={"errors": False, "items": [{"code": 201, "messageUuid": "u"}] * n}
    )


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (
            httpx.Response(400, json={"error": {"code": 4000, "msg": "Bad"}}),
            {"code": 4000, "msg": "Bad"},
        ),
        (items(1), None),
        (items(3), None),
    ],
)
def test_a_400_or_a_200_without_one_item_per_message_fails(
    build: Build, answer: httpx.Response, error: dict[str, Any] | None
) -> None:
    """The sandbox never answers these, so a transport plays the API."""
    res = build(transport=httpx.MockTransport(lambda request: answer))
    queue(res, [job("a", 1), job("b", 2)])
    report = run(res)
    assert (report.failed, report.published) == (2, 2)
    for outcome in outcomes(res):
        assert (outcome["status"], outcome["httpStatus"]) == ("failed", answer.status_code)
        if error is None:
            assert outcome["error"]["msg"].startswith("a 200 answer without one item per message")
        else:
            assert outcome["error"] == error
    assert [orjson.loads(j)["jobId"] for j, _ in dead_letters(res)] == ["a", "b"]


def test_422_halves_until_the_bad_job_is_rejected_and_the_rest_accepted(
    build: Build, sandbox: httpx.Client
) -> None:
    res = build()
    set_faults(sandbox, rejectDestinations="^1408555000[3]")
    queue(res, [job(f"j{n}", n) for n in range(4)])
    with counted() as delta:
        report = run(res)
    assert sorted(by_destination(sandbox)) == [f"1408555000{n}" for n in (0, 1, 2)]
    # [0 1 2 3] -> [0 1] + [2 3] -> [2] + [3]
    assert (report.accepted, report.rejected, report.requests, report.splits) == (3, 1, 5, 2)
    assert delta == {
        "accepted": 3,
        "rejected": 1,
        "splits": 2,
        "batches": 1,
        "size_sum": 4,
        "size_count": 1,
    }
    bad = next(o for o in outcomes(res) if o["status"] == "rejected")
    assert (bad["jobId"], bad["code"], bad["httpStatus"], bad["attempts"]) == ("j3", 4220, 422, 3)
    assert bad["error"] == {"code": 4220, "msg": "Invalid msisdn"}
    assert ledger(res, "j3") == "rejected"
    assert dead_letters(res) == []


def test_an_item_code_other_than_201_rejects_that_job_only(
    build: Build, sandbox: httpx.Client
) -> None:
    res = build()
    set_faults(sandbox, itemCodes=[{"destination": "^14085550002", "code": 4041}])
    queue(res, [job("a", 1), job("b", 2), job("c", 3)])
    report = run(res)
    assert (report.accepted, report.rejected, report.requests) == (2, 1, 1)
    status = {o["jobId"]: o for o in outcomes(res)}
    assert [status[j]["status"] for j in "abc"] == ["accepted", "rejected", "accepted"]
    assert status["b"]["error"] == {"code": 4041, "msg": "item refused with code 4041"}
    assert (status["b"]["code"], status["b"]["httpStatus"], status["b"]["messageUuid"]) == (
        4041,
        200,
        None,
    )
    assert dead_letters(res) == []


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Sleeps of this thread, recorded instead of slept, so waiting out Redis costs nothing
    (the lease keeper's thread still sleeps for real)."""
    real, me, seen = time.sleep, threading.get_ident(), []

    def sleep(seconds: float) -> None:
        if threading.get_ident() == me:
            seen.append(seconds)
        else:
            real(seconds)

    monkeypatch.setattr(time, "sleep", sleep)
    return seen


def test_outcomes_are_published_once_after_redis_comes_back(
    build: Build,
    sandbox: httpx.Client,
    waits: list[float],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """However long the outage (here 6 refused attempts), the outcome is published once: the
    waits grow from 0.2 s (plus up to 1 s of jitter), doubling, and stop growing at 5 s."""
    res = build()
    queue(res, [job("a", 1)])
    calls: list[Any] = []
    down = [redis.ConnectionError("down")] * 5 + [redis.ConnectionError("still down")]
    monkeypatch.setattr(res.ledger, "finish", failing(res.ledger.finish, down, calls))
    with caplog.at_level(logging.WARNING):
        report = run(res)
    assert len(calls) == 7
    assert report.published == 1
    assert [(o["jobId"], o["status"]) for o in outcomes(res)] == [("a", "accepted")]
    assert len(received(sandbox)) == 1  # sent once: the batch kept its jobs meanwhile
    assert 0.2 <= waits[0] <= 1.2
    assert 0.4 <= waits[1] <= 1.4
    assert 3.2 <= waits[4] <= 4.2
    assert waits[5] == 5  # 6.4 s and more, capped
    assert len(waits) == 6
    assert "publishing outcomes failed, retrying: still down" in caplog.messages
    assert pending(res) == {}
    assert res.redis.xlen(res.keys.jobs(CHANNEL)) == 0


@pytest.mark.usefixtures("waits")
@pytest.mark.parametrize(
    "case",
    [
        ("ownership.start", redis.TimeoutError("slow"), "starting a batch"),
        ("ledger.claim", redis.exceptions.OutOfMemoryError("full"), "claiming jobIds"),
        ("ownership.set_aside", redis.exceptions.ReadOnlyError("replica"), "setting entries aside"),
    ],
)
def test_every_step_waits_out_a_redis_that_refuses(
    build: Build,
    sandbox: httpx.Client,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    case: tuple[str, Exception, str],
) -> None:
    """Starting, claiming and setting aside are Lua scripts Redis refuses before they write:
    each is called again until Redis takes it, and the batch goes on."""
    step, error, what = case
    res = build(sms_batch_size=2)
    owner, name = step.split(".")
    target = getattr(res, owner)
    calls: list[Any] = []
    monkeypatch.setattr(target, name, failing(getattr(target, name), [error], calls))
    ids = queue(res, [job("a", 1), job("b", 2)], deliveries=[2, 1])  # one is set aside
    with caplog.at_level(logging.WARNING):
        report = run(res)
    assert len(calls) == 2
    assert (report.accepted, report.published) == (1, 1)
    assert sorted(by_destination(sandbox)) == ["14085550001"]
    assert pending(res) == {ids[1]: "w-1"}
    assert f"{what} failed, retrying: {error}" in caplog.messages


def test_a_batch_that_cannot_finish_gives_its_claims_back(
    build: Build, sandbox: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not an outage (a script error): nothing is waited out, the batch ends without an
    outcome and its jobIds can be claimed by whoever takes its entries over."""
    res = build()
    ids = queue(res, [job("a", 1), job("b", 2)])
    calls: list[Any] = []
    broken = [redis.ResponseError("script error")]
    monkeypatch.setattr(res.ledger, "finish", failing(res.ledger.finish, broken, calls))
    renewing_at_release: list[bool] = []
    release = res.ledger.release

    def spy(batch: str, job_ids: Sequence[str]) -> None:
        renewing_at_release.append(res.leases.current(batch))  # else renewed again
        release(batch, job_ids)

    monkeypatch.setattr(res.ledger, "release", spy)
    with pytest.raises(redis.ResponseError):
        process_batch(res, CHANNEL, "b-1")
    assert len(calls) == 1
    assert renewing_at_release == [False]
    assert ledger(res, "a") is None
    assert ledger(res, "b") is None
    assert lease(res, "b-1") is None  # taken over at once
    assert not res.leases.current("b-1")
    assert pending(res) == {ids[0]: "b-1", ids[1]: "b-1"}
    assert outcomes(res) == []


def test_a_batch_taken_over_before_it_finished_publishes_nothing(
    build: Build,
    sandbox: httpx.Client,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Its lease lapsed while it sent (a stall): another batch took its entries and claimed
    their jobs, so the slow one's outcomes are not published and nothing is acknowledged."""
    res = build()
    ids = queue(res, [job("a", 1), job("b", 2)])
    finish = res.ledger.finish

    def late(channel: str, batch: str, rows: Any) -> Any:
        assert res.leases.current(batch)  # held while it sent
        res.redis.delete(res.keys.lease(batch))
        res.ownership.new_reader("r-2", LEASE_MS)
        assert res.ownership.reclaim(CHANNEL, batch, "r-2", 10) == ids
        assert res.ownership.hand_over(CHANNEL, "r-2", "b-2", ids)
        assert res.ownership.start(CHANNEL, "b-2") is not None
        assert res.ledger.claim("b-2", ["a", "b"]) == ["claimed", "claimed"]
        return finish(channel, batch, rows)

    monkeypatch.setattr(res.ledger, "finish", late)
    with caplog.at_level(logging.WARNING):
        report = run(res)
    assert report.published == 0
    assert report.accepted == 2
    assert len(received(sandbox)) == 2
    assert outcomes(res) == []
    assert pending(res) == {ids[0]: "b-2", ids[1]: "b-2"}  # nothing acknowledged
    assert ledger(res, "a") == "inflight:b-2"
    assert (
        "batch channel=SMS id=b-1: 2 outcome(s) not published: this batch's lease lapsed"
        in caplog.text
    )
    assert "another batch had finished" not in caplog.text


def test_outcomes_of_jobs_another_batch_finished_meanwhile_are_not_published(
    build: Build,
    sandbox: httpx.Client,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    res = build()
    queue(res, [job("a", 1)])
    finish = res.ledger.finish

    def late(channel: str, batch: str, rows: Any) -> Any:
        res.redis.set(res.keys.ledger("a"), "rejected")
        return finish(channel, batch, rows)

    monkeypatch.setattr(res.ledger, "finish", late)
    with caplog.at_level(logging.WARNING):
        report = run(res)
    assert report.published == 0
    assert outcomes(res) == []
    assert pending(res) == {}
    assert "channel=SMS id=b-1: 1 outcome(s) not published: another batch had" in caplog.text
    assert "lease lapsed" not in caplog.text


def test_the_batch_deadline_covers_every_422_half(build: Build, sandbox: httpx.Client) -> None:
    """One deadline for the batch: a half whose turn comes after it is not sent, and fails
    (dead-lettered for replay) rather than keeping the batch past RETRY_MAX_SECONDS."""
    res = build(retry_max_seconds=0.5)
    set_faults(sandbox, latencyMs=300, rejectDestinations="^14085550002")
    queue(res, [job("first", 1), job("bad", 2)])
    report = run(res)  # [1 2] -> 422 at 0.3 s; [1] sent before 0.5 s; [2] would start at 0.6 s
    assert sorted(by_destination(sandbox)) == ["14085550001"]
    status = {o["jobId"]: o for o in outcomes(res)}
    assert status["first"]["status"] == "accepted"
    late = status["bad"]
    assert (late["status"], late["attempts"]) == ("failed", 1)
    assert late["error"] == {"code": None, "msg": "the batch's deadline (RETRY_MAX_SECONDS) passed"}
    assert [orjson.loads(j)["jobId"] for j, _ in dead_letters(res)] == ["bad"]
    assert (report.accepted, report.failed, report.splits) == (1, 1, 1)


def test_a_batch_that_lost_its_lease_stops_sending(
    build: Build, sandbox: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Taken over while its first request was out (a stall past its lease): its lease is not
    renewed, so the 422 halves are not sent; the jobs are given back, no outcome."""
    res = build(lease_ms=500, otp_lease_ms=500)
    set_faults(sandbox, latencyMs=450, rejectDestinations="^14085550002")
    ids = queue(res, [job("a", 1), job("b", 2)])
    claim = res.ledger.claim

    def then_taken_over(batch: str, job_ids: Sequence[str]) -> Any:
        claimed = claim(batch, job_ids)
        res.redis.delete(res.keys.lease(batch))
        res.ownership.new_reader("r-2", LEASE_MS)
        assert res.ownership.reclaim(CHANNEL, batch, "r-2", 10) == ids
        return claimed

    monkeypatch.setattr(res.ledger, "claim", then_taken_over)
    report = run(res)
    assert (report.returned, report.requests, report.splits, report.published) == (2, 1, 1, 0)
    assert received(sandbox) == []  # the first request was refused; no half went
    assert outcomes(res) == []
    assert pending(res) == {ids[0]: "r-2", ids[1]: "r-2"}
    assert ledger(res, "a") is None  # its claims given back


def test_the_flashcall_code_length_is_the_settings_not_the_default(
    build: Build, sandbox: httpx.Client
) -> None:
    """FLASHCALL_CODE_MAX_DIGITS reaches the worker's validation: a 6-digit code is sent
    (here the sandbox's account allows 4, so the API refuses it, not the worker)."""
    res = build(flashcall_code_max_digits=6)
    message = {**BASE["FLASHCALL"], "content": "123456"}
    queue(res, [{"jobId": "code", "message": message}], channel="FLASHCALL")
    report = run(res, channel="FLASHCALL")
    assert (report.rejected, report.requests) == (1, 1)
    (outcome,) = outcomes(res)
    assert (outcome["attempts"], outcome["httpStatus"]) == (1, 422)


def test_a_poison_entry_with_nothing_to_replay_fails_without_a_dead_letter(
    build: Build, sandbox: httpx.Client
) -> None:
    """No `job` field, or bytes that are not text: the outcome says it failed, and the dead
    letters get nothing, since a replay would have nothing to send."""
    res = build()
    for batch, entry in (("b-1", None), ("b-2", b"\xff\xfe{}")):
        (entry_id,) = queue(res, [entry], batch=batch, deliveries=[MAX_DELIVERIES + 1])
        report = run(res, batch)
        assert (report.failed, report.published) == (1, 1)
        assert (outcomes(res)[-1]["entryId"], outcomes(res)[-1]["status"]) == (entry_id, "failed")
    assert dead_letters(res) == []
    assert received(sandbox) == []


def test_a_conversion_report_has_no_destination(build: Build, sandbox: httpx.Client) -> None:
    res = build()
    message = BASE["FLASHCALL_CONVERSION"]
    queue(res, [{"jobId": "conv", "message": message}], channel="FLASHCALL_CONVERSION")
    assert run(res, channel="FLASHCALL_CONVERSION").accepted == 1
    (outcome,) = outcomes(res)
    assert (outcome["channelType"], outcome["status"]) == ("FLASHCALL_CONVERSION", "accepted")
    assert outcome["destination"] is None
    assert outcome["messageUuid"] == received(sandbox)[0]["messageUuid"]


def test_the_log_line_names_every_count() -> None:
    report = BatchReport("SMS", 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 1.23456, 11)
    assert report.log_line() == (
        "batch channel=SMS size=1 accepted=2 rejected=3 failed=4 expired=5 returned=6 "
        "attempts=9 splits=10 busy=7 duplicates=8 seconds=1.235"
    )


def test_a_job_of_exactly_max_job_bytes_is_read() -> None:
    raw = orjson.dumps(job("edge", 1))
    context = ContractContext()
    exact = parse_entry(HeldEntry("1-0", 1, raw), CHANNEL, context, len(raw))
    assert exact.problem is None
    assert exact.api is not None
    over = parse_entry(HeldEntry("1-0", 1, raw), CHANNEL, context, len(raw) - 1)
    assert over.problem == f"the job is {len(raw)} bytes, over MAX_JOB_BYTES ({len(raw) - 1})"


def test_a_contract_bug_costs_one_job_not_its_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    """Validation that raises (a bug, never the job's fault) rejects that job, and says so."""

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("bug")

    monkeypatch.setattr(Job, "model_validate", broken)
    parsed = parse_entry(
        HeldEntry("1-0", 1, orjson.dumps(job("j", 1))), CHANNEL, ContractContext(), 65_536
    )
    assert (parsed.entry.entry_id, parsed.job_id, parsed.api) == ("1-0", "j", None)
    assert parsed.problem == "could not be validated (RuntimeError)"


def test_messages_ask_for_our_callbacks_unless_their_job_names_its_own(
    build: Build, sandbox: httpx.Client
) -> None:
    url = "https://dlr:pa55@callbacks.example.com/callbacks"
    res = build(callback_url=url, callback_events="sent,delivered,price")
    own = "https://app.example.com/dlr"
    queue(
        res,
        [
            job("ours", 1),
            job("theirs", 2, callbackUrl=own),
            job("events", 3, callbackEvents=["read"]),
        ],
    )
    run(res)
    sent = {r["message"]["destination"]: r["message"] for r in received(sandbox)}
    assert sent["14085550001"]["callbackUrl"] == url
    assert sent["14085550001"]["callbackEvents"] == ["sent", "delivered", "price"]
    assert sent["14085550002"]["callbackUrl"] == own
    assert "callbackEvents" not in sent["14085550002"]
    assert sent["14085550003"]["callbackUrl"] == url
    assert sent["14085550003"]["callbackEvents"] == ["read"]  # the job's own are kept


def test_without_callback_url_nothing_is_added(build: Build, sandbox: httpx.Client) -> None:
    res = build()
    queue(res, [job("plain", 1)])
    run(res)
    [record] = received(sandbox)
    assert "callbackUrl" not in record["message"]
    assert "callbackEvents" not in record["message"]


def test_conversions_never_ask_for_callbacks(build: Build, sandbox: httpx.Client) -> None:
    res = build(callback_url="https://dlr:pa55@callbacks.example.com/callbacks")
    conversion = {"jobId": "c1", "message": variant("FLASHCALL_CONVERSION")}
    queue(res, [conversion], channel="FLASHCALL_CONVERSION")
    run(res, channel="FLASHCALL_CONVERSION")
    [record] = received(sandbox)
    assert set(record["message"]) == set(variant("FLASHCALL_CONVERSION")) - {"channelType"}


def test_callbacks_that_came_before_the_outcome_are_counted_as_final_statuses(
    build: Build,
) -> None:
    answer = httpx.Response(
        200,
        json={
            "errors": False,
            "items": [
                {"messageUuid": "u-read", "code": 201},
                {"messageUuid": "u-lost", "code": 201},
            ],
        },
    )
    res = build(transport=httpx.MockTransport(lambda request: answer))
    at = "2026-11-24T10:00:00Z"
    early = [
        ["u-read", "read", "read", at, "", "", "SMS", "callback", at],
        ["u-lost", "delivered", "undelivered", at, "6969", "", "SMS", "callback", at],
    ]
    assert dict(StatusStore(res.redis, res.keys, res.settings).record(early).results) == {
        "parked": 2
    }

    def final(status: str) -> float:
        labels = {"channel": CHANNEL, "status": status, "source": "callback"}
        return REGISTRY.get_sample_value("revicom_final_statuses_total", labels) or 0.0

    def time_to_final() -> tuple[float, float]:
        labels = {"channel": CHANNEL}
        count = REGISTRY.get_sample_value("revicom_time_to_final_seconds_count", labels) or 0.0
        total = REGISTRY.get_sample_value("revicom_time_to_final_seconds_sum", labels) or 0.0
        return count, total

    before = final("delivered"), final("undelivered"), time_to_final()
    queue(res, [job("a", 1), job("b", 2)])
    run(res)
    after = final("delivered"), final("undelivered"), time_to_final()
    assert (after[0] - before[0], after[1] - before[1]) == (1, 1)
    assert (after[2][0] - before[2][0], after[2][1] - before[2][1]) == (2, 0.0)


def test_sms_outcomes_count_their_segments(build: Build, sandbox: httpx.Client) -> None:
    res = build()
    texts = {"gsm": "a" * 200, "ucs2": "ж" * 71, "escapes": "€" * 80, "short": "hi"}
    queue(res, [job(i, n, content=t) for n, (i, t) in enumerate(texts.items())])
    queue(res, [job("bad", 9, destination="not a number")], batch="b-2")
    assert run(res).accepted == 4
    assert run(res, "b-2").rejected == 1
    segments = {o["jobId"]: (o["status"], o["segments"]) for o in outcomes(res)}
    assert segments == {
        "gsm": ("accepted", 2),
        "ucs2": ("accepted", 2),
        "escapes": ("accepted", 1),
        "short": ("accepted", 1),
        "bad": ("rejected", None),  # no valid message to count
    }
    assert [r["message"]["content"] for r in received(sandbox)] == list(texts.values())


def test_other_channels_have_no_segments(build: Build, sandbox: httpx.Client) -> None:
    res = build()
    queue(res, [{"jobId": "f", "message": variant("FLASHCALL")}], channel="FLASHCALL")
    assert run(res, channel="FLASHCALL").accepted == 1
    (outcome,) = outcomes(res)
    assert (outcome["channelType"], outcome["segments"]) == ("FLASHCALL", None)
