"""Cancelling jobs: the ledger decides each one, against a real Redis and the real sandbox."""

from __future__ import annotations

import contextlib
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import hypothesis
import orjson
import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from cli.main import app
from ops.cancel import CancelledOutcomes, Canceller, CancelReport, Row, _job, _job_id
from tasks.jobs import Outcome
from tasks.keys import CONSUMER_GROUP, Keys, as_text
from tests.e2e.sandbox_view import received
from tests.sandbox_client import set_delivery
from tests.test_batch_flow import (
    LEASE_MS,
    Build,
    build,
    by_destination,
    job,
    ledger,
    outcomes,
    pending,
    queue,
    run,
)
from worker.resources import Resources

__all__ = ["build"]  # the fixture, used by name


def json_jobs() -> st.SearchStrategy[bytes]:
    """Job-shaped JSON with hostile values where the cancel looks: jobId, destination."""
    anything = (
        st.none()
        | st.integers(-(2**63), 2**63 - 1)
        | st.text(max_size=8)
        | st.lists(st.text(max_size=3))
    )
    message = st.fixed_dictionaries(
        {},
        optional={"tags": anything, "destination": anything, "x": anything},
    )
    job = st.fixed_dictionaries(
        {}, optional={"jobId": anything | st.sampled_from(["a", "b"]), "message": message}
    )
    return job.map(orjson.dumps)


def canceller(res: Resources, *, wait_s: float = 0.0, dry_run: bool = False) -> Canceller:
    return Canceller(
        res.redis,
        res.api,
        res.keys,
        ledger_ttl_s=3600,
        max_job_bytes=res.settings.max_job_bytes,
        wait_s=wait_s,
        dry_run=dry_run,
    )


def results(report: CancelReport) -> dict[str | None, tuple[str, str]]:
    return {row.job_id: (row.result, row.why) for row in report.rows}


def enqueue(res: Resources, *jobs: dict[str, Any] | bytes, channel: str = "SMS") -> list[str]:
    """XADDed only: no reader has seen them yet."""
    stream = res.keys.jobs(channel)
    with contextlib.suppress(redis.ResponseError):  # the group exists already
        res.redis.xgroup_create(stream, CONSUMER_GROUP, id="0", mkstream=True)
    ids = []
    for j in jobs:
        raw = j if isinstance(j, bytes) else orjson.dumps(j)
        ids.append(as_text(res.redis.xadd(stream, {"job": raw})))
    return ids


def test_queued_jobs_get_one_cancelled_outcome_and_leave_the_stream(build: Build) -> None:
    res = build()
    enqueue(res, job("a", 1), job("b", 2), job("kept", 3))
    report = canceller(res).run(["a", "b"])
    assert results(report) == {"a": ("cancelled", ""), "b": ("cancelled", "")}
    cancelled = outcomes(res)
    assert [(o["jobId"], o["status"], o["channelType"]) for o in cancelled] == [
        ("a", "cancelled", "SMS"),
        ("b", "cancelled", "SMS"),
    ]
    assert cancelled[0]["destination"] == "14085550001"
    assert cancelled[0]["error"] == {"code": None, "msg": "cancelled before it was sent"}
    assert (ledger(res, "a"), ledger(res, "kept")) == ("cancelled", None)
    left: Any = res.redis.xrange(res.keys.jobs("SMS"))
    assert [orjson.loads(f[b"job"])["jobId"] for _, f in left] == ["kept"]
    track: Any = res.redis.lrange(res.keys.track("a"), 0, -1)
    assert as_text(track[0]).startswith("r")
    # Again: nothing more is published, and it says why.
    again = canceller(res).run(["a"])
    assert results(again) == {"a": ("not stopped", "cancelled before")}
    assert len(outcomes(res)) == 2


def test_a_batch_holding_a_cancelled_entry_sends_nothing_and_publishes_nothing(
    build: Build, sandbox: httpx.Client
) -> None:
    res = build()
    ids = queue(res, [job("cancel-me", 1), job("send-me", 2)])  # handed over to batch b-1
    report = canceller(res).run(["cancel-me"])
    assert results(report) == {"cancel-me": ("cancelled", "")}
    assert ids[0] not in pending(res)
    batch = run(res)
    assert (batch.accepted, batch.published) == (1, 1)
    assert sorted(by_destination(sandbox)) == ["14085550002"]
    assert sorted((o["jobId"], o["status"]) for o in outcomes(res)) == [
        ("cancel-me", "cancelled"),
        ("send-me", "accepted"),
    ]


def test_a_job_a_live_batch_holds_is_waited_for_then_cancelled_when_given_back(
    build: Build,
) -> None:
    res = build()
    enqueue(res, job("held", 1))
    res.redis.set(res.keys.lease("b-live"), "running", px=LEASE_MS)
    assert res.ledger.claim("b-live", ["held"]) == ["claimed"]
    report = canceller(res, wait_s=0.0).run(["held"])
    assert results(report) == {
        "held": ("not stopped", "being sent: run cancel again once its outcome is in")
    }
    assert outcomes(res) == []
    res.ledger.release("b-live", ["held"])  # the batch gave it back unsent (circuit open)
    assert results(canceller(res).run(["held"])) == {"held": ("cancelled", "")}


def test_a_claim_whose_batch_died_is_cancelled(build: Build) -> None:
    res = build()
    enqueue(res, job("orphan", 1))
    assert res.ledger.claim("b-dead", ["orphan"]) == ["claimed"]  # no lease: the batch died
    assert results(canceller(res).run(["orphan"])) == {"orphan": ("cancelled", "")}


def test_accepted_messages_are_stopped_and_each_stop_code_is_reported(
    build: Build, sandbox: httpx.Client
) -> None:
    res = build()
    set_delivery(sandbox, sentAfterMs=60_000, finalAfterMs=60_000)
    queue(res, [job("slow", 1)])
    run(res)
    set_delivery(sandbox, sentAfterMs=0, finalAfterMs=60_000)
    queue(res, [job("sent", 2)], batch="b-2")
    run(res, "b-2")
    uuids = by_destination(sandbox)
    report = canceller(res).run(["slow", "sent", "never-heard-of"])
    assert results(report) == {
        "slow": ("stop requested", ""),
        "sent": ("not stopped", "already sent (403)"),
        "never-heard-of": ("not found", "no such job queued or finished"),
    }
    rows = {r.job_id: r for r in report.rows}
    assert rows["slow"].message_uuid == uuids["14085550001"]
    status = {m["destination"]: m["status"] for m in lookup_all(sandbox)}
    assert status["14085550001"] in ("sending", "unsent")  # unsent within 0.1 s
    assert len(outcomes(res)) == 2  # a stop publishes no outcome: its status comes later


def lookup_all(sandbox: httpx.Client) -> list[dict[str, Any]]:
    from tests.sandbox_client import BASIC

    answer = sandbox.get("/api/v1/message", headers=BASIC, params={"per_page": 1000})
    answer.raise_for_status()
    body: list[dict[str, Any]] = answer.json()
    return body


def test_a_message_already_final_is_not_stopped(build: Build, sandbox: httpx.Client) -> None:
    res = build()
    queue(res, [job("done", 1)])
    run(res)
    uuid = by_destination(sandbox)["14085550001"]
    res.redis.hset(res.keys.message(uuid), mapping={"final": "1", "status": "delivered"})
    assert results(canceller(res).run(["done"])) == {
        "done": ("not stopped", "already final (delivered)")
    }


def test_a_tag_cancels_queued_jobs_and_stops_listed_messages(
    build: Build, sandbox: httpx.Client
) -> None:
    res = build()
    set_delivery(sandbox, sentAfterMs=60_000, finalAfterMs=60_000)
    queue(res, [job("sent-tagged", 1, tags=["spring"]), job("sent-other", 2, tags=["x"])])
    run(res)
    enqueue(res, job("q-tagged", 3, tags=["spring"]), job("q-untagged", 4))
    report = canceller(res).run(tag="spring")
    assert results(report) == {"q-tagged": ("cancelled", ""), "sent-tagged": ("stop requested", "")}
    assert {r.message_uuid for r in report.rows} >= {by_destination(sandbox)["14085550001"]}
    assert [o["jobId"] for o in outcomes(res) if o["status"] == "cancelled"] == ["q-tagged"]
    left: Any = res.redis.xrange(res.keys.jobs("SMS"))
    assert [orjson.loads(f[b"job"])["jobId"] for _, f in left] == ["q-untagged"]


def test_a_dry_run_changes_nothing(build: Build, sandbox: httpx.Client) -> None:
    res = build()
    set_delivery(sandbox, sentAfterMs=60_000, finalAfterMs=60_000)
    queue(res, [job("sent", 1)])
    run(res)
    enqueue(res, job("queued", 2))
    report = canceller(res, dry_run=True).run(["sent", "queued"])
    assert report.dry_run
    assert results(report) == {"queued": ("cancelled", ""), "sent": ("stop requested", "")}
    assert ledger(res, "queued") is None
    assert [o["jobId"] for o in outcomes(res)] == ["sent"]
    assert {m["status"] for m in lookup_all(sandbox)} == {"sending"}


def test_a_jobid_queued_twice_gets_one_outcome(build: Build) -> None:
    res = build()
    enqueue(res, job("twice", 1), job("twice", 1))
    assert results(canceller(res).run(["twice"])) == {"twice": ("cancelled", "")}
    assert len(outcomes(res)) == 1
    assert res.redis.xlen(res.keys.jobs("SMS")) == 0


def test_hostile_entries_do_not_stop_a_cancel_and_go_by_their_entry_id(build: Build) -> None:
    res = build()
    ids = enqueue(
        res,
        b"\xff\xfe not json",
        b"[1, 2]",
        orjson.dumps({"jobId": "bad id with spaces", "message": {}}),
        orjson.dumps({"jobId": "ok", "message": {"tags": "not a list", "destination": 5}}),
        b"x" * (res.settings.max_job_bytes + 1),
    )
    report = canceller(res).run([ids[0], ids[2], ids[4], "ok"], tag="t")
    assert results(report) == dict.fromkeys([ids[0], ids[2], ids[4], "ok"], ("cancelled", ""))
    by_job = {o["jobId"]: o for o in outcomes(res)}
    assert by_job["ok"]["destination"] is None
    assert by_job["ok"]["channelType"] == "SMS"  # the stream's, as a batch would say


def test_a_cancel_of_many_jobs_uses_chunks_and_pages(
    build: Build, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("ops.cancel.PAGE", 7)
    monkeypatch.setattr("ops.cancel.CHUNK", 3)
    res = build()
    enqueue(res, *(job(f"j{i}", i) for i in range(20)))
    report = canceller(res).run([f"j{i}" for i in range(0, 20, 2)])
    assert sorted(r.job_id or "" for r in report.rows) == sorted(f"j{i}" for i in range(0, 20, 2))
    assert {r.result for r in report.rows} == {"cancelled"}
    assert res.redis.xlen(res.keys.jobs("SMS")) == 10


def test_a_cancelled_outcome_is_what_the_model_would_write() -> None:
    job = {"jobId": "j", "message": {"destination": "79001234567", "externalMessageId": "e"}}
    built = Outcome.model_validate_json(CancelledOutcomes().of("VOICECODE", job, "j", "1-0"))
    assert built.model_dump(exclude={"finishedAt"}) == {
        "jobId": "j",
        "entryId": "1-0",
        "status": "cancelled",
        "channelType": "VOICECODE",
        "destination": "79001234567",
        "messageUuid": None,
        "code": None,
        "error": {"code": None, "msg": "cancelled before it was sent"},
        "httpStatus": None,
        "attempts": 0,
        "externalMessageId": "e",
        "segments": None,
    }
    assert abs((datetime.now(UTC) - built.finishedAt).total_seconds()) < 5
    hostile = Outcome.model_validate_json(CancelledOutcomes().of("SMS", None, "1-0", "1-0"))
    assert (hostile.destination, hostile.externalMessageId) == (None, None)
    assert hostile.segments is None


def test_a_cancelled_sms_counts_the_segments_of_its_text() -> None:
    outcomes = CancelledOutcomes()

    def segments(channel: str, content: object) -> int | None:
        job = {"jobId": "j", "message": {"content": content}}
        return Outcome.model_validate_json(outcomes.of(channel, job, "j", "1-0")).segments

    assert segments("SMS", "a" * 200) == 2
    assert segments("SMS", "ж" * 70) == 1
    assert segments("SMS", "") == 1
    assert segments("SMS", ["not", "text"]) is None
    assert segments("VK", "a" * 200) is None


def test_rows_count_by_result_then_reason() -> None:
    report = CancelReport(
        [
            Row("not found", "x", why="w"),
            Row("cancelled", "a"),
            Row("cancelled", "b"),
            Row("not stopped", "c", why="already sent (403)"),
        ]
    )
    assert list(report.count().items()) == [
        (("cancelled", ""), 2),
        (("not stopped", "already sent (403)"), 1),
        (("not found", "w"), 1),
    ]


# -- the command ------------------------------------------------------------------------------


@pytest.fixture
def cli_env(build: Build, monkeypatch: pytest.MonkeyPatch) -> Resources:
    res = build()
    s = res.settings
    monkeypatch.setenv("REDIS_URL", s.redis_url)
    monkeypatch.setenv("REVICOM_API_URL", s.revicom_api_url)
    monkeypatch.setenv("DISPATCH_KEY_PREFIX", res.keys.prefix)
    token = s.revicom_api_token
    assert token is not None
    monkeypatch.setenv("REVICOM_API_TOKEN", token.get_secret_value())
    from config import get_settings

    get_settings.cache_clear()
    return res


def test_the_command_prints_a_table_and_exits_1_when_something_was_not_found(
    cli_env: Resources, tmp_path: Path
) -> None:
    enqueue(cli_env, job("a", 1), job("b", 2))
    jobs_file = tmp_path / "ids.txt"
    jobs_file.write_text("# campaign 7\nb\n\nmissing\n")
    result = CliRunner().invoke(app, ["cancel", "--job", "a", "--jobs-file", str(jobs_file)])
    assert result.exit_code == 1, result.output
    assert "cancelled" in result.output
    assert "not found" in result.output
    assert ledger(cli_env, "b") == "cancelled"


def test_the_command_speaks_json_and_exits_0_when_all_went_well(cli_env: Resources) -> None:
    enqueue(cli_env, job("a", 1))
    result = CliRunner().invoke(app, ["cancel", "--job", "a", "--json"])
    assert result.exit_code == 0, result.output
    assert [orjson.loads(line) for line in result.output.splitlines()] == [
        {"result": "cancelled", "jobId": "a", "messageUuid": None, "why": ""}
    ]


@pytest.mark.parametrize(
    ("args", "said"),
    [
        ([], "give --job, --jobs-file or --tag"),
        (["--job", "has space"], "not a jobId"),
        (["--jobs-file", "/nonexistent/ids"], "--jobs-file:"),
    ],
)
def test_bad_arguments_are_one_line_and_exit_2(
    cli_env: Resources, args: list[str], said: str
) -> None:
    result = CliRunner().invoke(app, ["cancel", *args])
    assert result.exit_code == 2
    assert said in result.output
    assert "Traceback" not in result.output


def test_a_jobs_file_of_garbage_is_refused_with_its_line_numbers(
    cli_env: Resources, tmp_path: Path
) -> None:
    garbage = tmp_path / "ids.bin"
    garbage.write_bytes(b"ok-id\n\xff\xfe\x00bad\n" + b"a b\n" * 10)
    result = CliRunner().invoke(app, ["cancel", "--jobs-file", str(garbage)])
    assert result.exit_code == 2
    assert "line 2: not a jobId" in result.output
    assert "(and 6 more)" in result.output
    assert outcomes(cli_env) == []


def test_nothing_is_received_by_the_sandbox_for_a_cancelled_job(
    build: Build, sandbox: httpx.Client
) -> None:
    res = build()
    queue(res, [job("c", 1)])
    canceller(res).run(["c"])
    run(res)
    assert received(sandbox) == []


@hypothesis.settings(max_examples=40, deadline=None)
@given(st.lists(st.binary(max_size=200) | json_jobs(), min_size=1, max_size=8))
def test_any_entry_is_cancelled_by_its_jobid_or_entry_id(redis_url: str, raw: list[bytes]) -> None:
    client = redis.Redis.from_url(redis_url)
    keys = Keys(f"test-{uuid.uuid4().hex[:12]}")
    try:
        stream = keys.jobs("SMS")
        client.xgroup_create(stream, CONSUMER_GROUP, id="0", mkstream=True)
        ids = [as_text(client.xadd(stream, {"job": r})) for r in raw]
        wanted = [_job_id(_job(r, 65_536), i) for r, i in zip(raw, ids, strict=True)]
        report = Canceller(client, None, keys, ledger_ttl_s=60, max_job_bytes=65_536).run(wanted)
        assert {r.job_id for r in report.rows} == set(wanted)
        assert {r.result for r in report.rows} == {"cancelled"}
        assert client.xlen(stream) == 0
        assert client.xlen(keys.results) == len(set(wanted))
    finally:
        stale = list(client.scan_iter(match=f"{keys.prefix}:*", count=1000))
        if stale:
            client.delete(*stale)
        client.close()
