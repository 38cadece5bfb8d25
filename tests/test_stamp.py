"""Producer stamps (tasks/stamp.py): a stamped job is read without validation exactly as it
would be read with it, and anything a stamp does not vouch for is validated in full."""

from __future__ import annotations

import os
import re
from dataclasses import replace
from datetime import timedelta
from typing import Any

import orjson
import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks import stamp
from tasks.contract import ContractContext
from tasks.jobs import Outcome, outcome_json, parse_job
from tasks.keys import JOB_FIELD, STAMP_FIELD, Keys
from tasks.producer import Producer, wire_job
from tests.vectors import CTX, VALID
from worker.batch import EntryReader, Parsed, _finish, parse_entry
from worker.delivery import ItemResult
from worker.ownership import HeldEntry

EXAMPLES = int(os.environ.get("HYPOTHESIS_EXAMPLES", "200"))
KEY = bytes(range(32))
MAX_BYTES = 65_536
TAG = stamp.context_tag(CTX)


def channel_of(message: dict[str, Any]) -> str:
    return str(message.get("channelType", "FLASHCALL_CONVERSION"))


def job_id(case: str) -> str:
    return "job-" + re.sub(r"[^!-~]", "_", case)


def stamped(message: dict[str, Any], case: str = "x", key: bytes = KEY) -> HeldEntry:
    """The entry our producer would write for `message`, as a batch gets it."""
    record = wire_job(parse_job({"jobId": job_id(case), "message": message}, CTX), MAX_BYTES)
    assert record.stampable
    seal = stamp.seal(key, TAG, record.channel, record.segments, record.wire)
    return HeldEntry("7-1", 1, record.wire, seal)


def reader(key: bytes | None = KEY) -> EntryReader:
    return EntryReader(CTX, MAX_BYTES, key)


TIMELESS = [(case, m) for case, m in VALID if not any(f in m for f in stamp.CLOCK_FIELDS)]


@pytest.mark.parametrize(("case", "message"), TIMELESS, ids=[c for c, _ in TIMELESS])
def test_a_stamped_job_reads_as_the_validated_one(case: str, message: dict[str, Any]) -> None:
    """Same jobId, API object and segments as full validation, and the same outcome bytes."""
    entry = stamped(message, case)
    channel = channel_of(message)
    fast = reader().parse(entry, channel)
    slow = parse_entry(replace(entry, stamp=b""), channel, CTX, MAX_BYTES)
    assert fast == replace(slow, entry=entry)
    accepted = ItemResult("accepted", 1, 200, "uuid-1", 201)
    assert _strip_time(_finish(fast, channel, accepted).outcome_json) == _strip_time(
        _finish(slow, channel, accepted).outcome_json
    )


def _strip_time(outcome: str | bytes) -> dict[str, Any]:
    data: dict[str, Any] = orjson.loads(outcome)
    data.pop("finishedAt")
    return data


def test_a_job_changed_after_stamping_is_validated_and_rejected() -> None:
    """A stamp covers the job's exact bytes: an edited job (here made invalid) is validated."""
    entry = stamped(
        {
            "channelType": "FLASHCALL",
            "senderName": "x",
            "destination": "14085553911",
            "content": "1234",
        }
    )
    assert entry.raw is not None
    edited = replace(entry, raw=entry.raw.replace(b'"1234"', b'"12345678"'))
    parsed = reader().parse(edited, "FLASHCALL")
    assert parsed.api is None
    assert parsed.problem is not None
    assert "content" in parsed.problem


def test_a_stamped_job_copied_to_another_stream_is_refused() -> None:
    entry = stamped(
        {"channelType": "SMS", "senderName": "S", "destination": "14085553911", "content": "hello"}
    )
    parsed = reader().parse(entry, "FLASHCALL")
    assert (parsed.api, parsed.problem) == (None, "a SMS job on the FLASHCALL stream")


@pytest.mark.parametrize(
    "change",
    [
        {"key": None},  # no key in Redis: nothing can be verified
        {"key": bytes(32)},  # another key (Redis lost it, a producer made a new one)
        {"tag": "otherversion-4"},  # other rules
        {"tag": stamp.context_tag(ContractContext(flashcall_code_max_digits=6))},
    ],
)
def test_a_stamp_that_does_not_verify_means_full_validation(
    change: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Proved by making validation say so: the entry must reach it."""
    entry = stamped(
        {"channelType": "SMS", "senderName": "S", "destination": "14085553911", "content": "hello"}
    )
    calls: list[str] = []

    def validated(e: HeldEntry, *args: Any) -> Parsed:
        calls.append(e.entry_id)
        return Parsed(e, "v", None, "validated")

    monkeypatch.setattr("worker.batch.parse_entry", validated)
    read = reader(change.get("key", KEY))
    read.tag = change.get("tag", TAG)
    assert read.parse(entry, "SMS").problem == "validated"
    assert calls == ["7-1"]


def test_a_verified_stamp_skips_validation(monkeypatch: pytest.MonkeyPatch) -> None:
    """The converse: what the fast path is for."""
    entry = stamped(
        {"channelType": "SMS", "senderName": "S", "destination": "14085553911", "content": "hello"}
    )
    monkeypatch.setattr("worker.batch.parse_entry", lambda *a: pytest.fail("validated"))
    assert reader().parse(entry, "SMS").segments == 1


def test_a_stamped_job_over_max_job_bytes_is_refused_as_any_other() -> None:
    entry = stamped(
        {"channelType": "SMS", "senderName": "S", "destination": "14085553911", "content": "hello"}
    )
    assert entry.raw is not None
    parsed = EntryReader(CTX, len(entry.raw) - 1, KEY).parse(entry, "SMS")
    assert parsed.problem is not None
    assert "over MAX_JOB_BYTES" in parsed.problem


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.binary(max_size=120), st.binary(max_size=200))
def test_any_stamp_on_any_bytes_reads_as_without_it(seal: bytes, raw: bytes) -> None:
    entry = HeldEntry("1-0", 1, raw, seal)
    assert reader().parse(entry, "SMS") == parse_entry(entry, "SMS", CTX, MAX_BYTES)


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.text(alphabet="0123456789abcdef.-SMFLAHC", max_size=80))
def test_a_forged_stamp_of_the_right_shape_does_not_verify(forged: str) -> None:
    raw = b'{"jobId":"j","message":{}}'
    assert stamp.verify(KEY, TAG, f"{TAG}.SMS.1.{forged}".encode(), raw) is None
    assert stamp.verify(KEY, TAG, forged.encode(), raw) is None


def test_jobs_whose_rules_depend_on_the_clock_are_not_stamped() -> None:
    """A localSendTime valid when enqueued may be too old when sent: the worker checks it."""
    timed = next(m for _, m in VALID if "localSendTime" in m)
    record = wire_job(parse_job({"message": timed}, CTX), MAX_BYTES)
    assert not record.stampable


@pytest.mark.parametrize(("case", "message"), TIMELESS, ids=[c for c, _ in TIMELESS])
def test_no_other_rule_depends_on_the_clock(case: str, message: dict[str, Any]) -> None:
    """Guards CLOCK_FIELDS: a stamped job must stay valid however long it waits. A new rule
    that reads the clock on another field fails here, and belongs in CLOCK_FIELDS."""
    for later in (timedelta(days=400), -timedelta(days=400)):
        parse_job({"message": message}, replace(CTX, now=CTX.now + later))


def test_the_contract_version_changes_with_the_rules() -> None:
    assert re.fullmatch(r"[0-9a-f]{12}", stamp.CONTRACT_VERSION)
    assert stamp.context_tag(CTX).startswith(stamp.CONTRACT_VERSION + "-")


outcomes: st.SearchStrategy[dict[str, Any]] = st.builds(
    dict,
    job_id=st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1),
    entry_id=st.none() | st.just("1-0"),
    status=st.sampled_from(["accepted", "rejected", "failed", "expired", "cancelled"]),
    channel=st.none() | st.sampled_from(["SMS", "FLASHCALL"]),
    destination=st.none() | st.text(),
    message_uuid=st.none() | st.uuids().map(str),
    code=st.none() | st.integers(-(2**63), 2**63 - 1),
    error=st.none() | st.tuples(st.none() | st.integers(-(2**31), 2**31), st.text()),
    http_status=st.none() | st.integers(100, 599),
    attempts=st.integers(0, 100),
    external_id=st.none() | st.text(),
    segments=st.none() | st.integers(1, 100),
)


@settings(max_examples=EXAMPLES, deadline=None)
@given(outcomes)
def test_outcome_json_is_what_the_model_writes(fields: dict[str, Any]) -> None:
    written = outcome_json(
        fields.pop("job_id"),
        fields.pop("entry_id"),
        fields.pop("status"),
        fields.pop("channel"),
        **fields,
    )
    model = Outcome.model_validate_json(written)
    assert model.to_wire() == written


def test_the_producer_stamps_and_a_worker_verifies(redis_client: redis.Redis, keys: Keys) -> None:
    producer = Producer(redis_client, keys, context=CTX)
    sms = {
        "channelType": "SMS",
        "senderName": "S",
        "destination": "14085553911",
        "content": "hello",
    }
    producer.enqueue({"jobId": "a", "message": sms})
    timed = next(m for _, m in VALID if "localSendTime" in m and m["channelType"] == "SMS")
    producer.enqueue({"jobId": "b", "message": timed})
    entries: Any = redis_client.xrange(keys.jobs("SMS"))
    [(_, first), (_, second)] = entries
    assert STAMP_FIELD.encode() not in second
    key = stamp.read_key(redis_client, keys.stamp_key)
    assert key is not None
    assert len(key) == 32
    entry = HeldEntry("1-0", 1, first[JOB_FIELD.encode()], first[STAMP_FIELD.encode()])
    assert stamp.verify(key, TAG, entry.stamp, entry.raw or b"") == stamp.Stamp("SMS", 1)


def test_producers_share_one_key_and_replace_a_lost_one(
    redis_client: redis.Redis, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = stamp.StampKey(redis_client, keys.stamp_key)
    second = stamp.StampKey(redis_client, keys.stamp_key)
    assert first.get() == second.get() == stamp.read_key(redis_client, keys.stamp_key)
    lost = first.get()
    redis_client.delete(keys.stamp_key)
    monkeypatch.setattr(stamp, "KEY_REFRESH_S", -1.0)
    assert first.get() != lost
    assert second.get() == first.get()
