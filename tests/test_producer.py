"""The producer against a real Redis: what lands in a stream is what a consumer reads back."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from config import Settings, get_settings
from devenv.redis_server import RedisServer
from tasks import producer as producer_module
from tasks.contract import ContractContext, FieldError
from tasks.jobs import InvalidJobError, Job, parse_job
from tasks.keys import CONSUMER_GROUP, JOB_FIELD, Keys
from tasks.producer import Durability, Enqueued, EnqueueResult, Producer, Refused, WriteError
from tests.contract_cases import BASE, NOW, variant


@pytest.fixture
def producer(redis_client: redis.Redis, keys: Keys) -> Producer:
    return Producer(redis_client, keys, chunk_size=3, context=ContractContext(now=NOW))


def read_group(client: redis.Redis, stream: str, count: int = 100) -> list[tuple[str, Job]]:
    """Consume as the worker will: one consumer group, XREADGROUP, parse the `job` field."""
    client.xgroup_create(stream, CONSUMER_GROUP, id="0", mkstream=True)
    reply: Any = client.xreadgroup(CONSUMER_GROUP, "reader", {stream: ">"}, count=count)
    if not reply:
        return []
    [(_, entries)] = reply
    return [
        (entry_id.decode(), Job.model_validate_json(fields[JOB_FIELD.encode()]))
        for entry_id, fields in entries
    ]


def test_enqueue_one_lands_on_its_channel_stream(
    producer: Producer, redis_client: redis.Redis, keys: Keys
) -> None:
    result = producer.enqueue({"jobId": "otp-1", "message": BASE["FLASHCALL"]})
    assert result.channel == "FLASHCALL"
    [(entry_id, job)] = read_group(redis_client, keys.jobs("FLASHCALL"))
    assert entry_id == result.entryId
    assert job == parse_job({"jobId": "otp-1", "message": BASE["FLASHCALL"]})
    assert redis_client.exists(keys.jobs("SMS")) == 0


def test_an_invalid_job_raises_and_writes_nothing(
    producer: Producer, redis_client: redis.Redis, keys: Keys
) -> None:
    with pytest.raises(InvalidJobError) as caught:
        producer.enqueue(variant("SMS", destination="nope"))
    assert [e.path for e in caught.value.errors] == ["destination"]
    assert list(redis_client.scan_iter(match=f"{keys.prefix}:*", count=1000)) == []


def test_enqueue_many_reports_each_item_and_skips_invalid_ones(
    producer: Producer, redis_client: redis.Redis, keys: Keys
) -> None:
    items: list[dict[str, Any]] = [
        {"jobId": f"sms-{i}", "message": variant("SMS", content=f"hello {i}")} for i in range(7)
    ]
    items.insert(2, variant("SMS", ttl=5))  # invalid
    items.insert(5, {"jobId": "wa-1", "message": BASE["WHATSAPP"]})
    items.append({"jobId": "bad id", "message": BASE["SMS"]})  # invalid

    results = producer.enqueue_many(items)

    assert [r.index for r in results] == list(range(len(items)))
    refused = [r for r in results if isinstance(r, Refused)]
    assert [(r.index, r.errors[0].path) for r in refused] == [(2, "ttl"), (9, "jobId")]
    enqueued = [r for r in results if isinstance(r, Enqueued)]
    sms = read_group(redis_client, keys.jobs("SMS"))
    assert [job.jobId for _, job in sms] == [f"sms-{i}" for i in range(7)]
    assert [job.message.model_dump()["content"] for _, job in sms] == [
        f"hello {i}" for i in range(7)
    ]
    assert [entry for entry, _ in sms] == [r.entryId for r in enqueued if r.channel == "SMS"]
    [(_, whatsapp)] = read_group(redis_client, keys.jobs("WHATSAPP"))
    assert whatsapp.jobId == "wa-1"


def test_the_same_job_id_may_be_enqueued_twice(
    producer: Producer, redis_client: redis.Redis, keys: Keys
) -> None:
    """The producer does not deduplicate: the worker's ledger sends a jobId once."""
    job = {"jobId": "same", "message": BASE["SMS"]}
    producer.enqueue(job)
    producer.enqueue(job)
    assert redis_client.xlen(keys.jobs("SMS")) == 2


def test_every_channel_has_its_own_stream(
    producer: Producer, redis_client: redis.Redis, keys: Keys
) -> None:
    results = producer.enqueue_many([BASE[c] for c in BASE])
    assert {r.channel for r in results if isinstance(r, Enqueued)} == set(BASE)
    for channel, message in BASE.items():
        [(_, job)] = read_group(redis_client, keys.jobs(channel))
        assert job.message.model_dump(mode="json", exclude_none=True) == message


def test_a_job_over_max_job_bytes_is_refused_and_never_written(
    redis_client: redis.Redis, keys: Keys
) -> None:
    """The worker rejects an entry over MAX_JOB_BYTES, so the producer does not write one."""
    producer = Producer(redis_client, keys, context=ContractContext(now=NOW), max_job_bytes=2000)
    big = {"jobId": "big", "message": variant("SMS", content="x" * 2000)}
    with pytest.raises(InvalidJobError) as caught:
        producer.enqueue(big)
    [error] = caught.value.errors
    size = len(parse_job(big).to_wire().encode())
    assert str(error) == f"job: is {size} bytes as JSON, over MAX_JOB_BYTES (2000)"

    results = producer.enqueue_many([BASE["SMS"], big, BASE["SMS"]])
    assert [type(r) for r in results] == [Enqueued, Refused, Enqueued]
    assert redis_client.xlen(keys.jobs("SMS")) == 2
    entries: Any = redis_client.xrange(keys.jobs("SMS"))
    for _, fields in entries:
        assert len(fields[JOB_FIELD.encode()]) <= 2000


def test_the_size_limit_counts_utf8_bytes(redis_client: redis.Redis, keys: Keys) -> None:
    producer = Producer(redis_client, keys, context=ContractContext(now=NOW), max_job_bytes=1100)
    cyrillic = variant("SMS", content="ж" * 500)  # 500 characters, 1,000 bytes
    with pytest.raises(InvalidJobError, match="over MAX_JOB_BYTES"):
        producer.enqueue(cyrillic)


def test_the_size_limit_defaults_to_the_setting(redis_client: redis.Redis, keys: Keys) -> None:
    assert Producer(redis_client, keys).max_job_bytes == get_settings().max_job_bytes


def test_a_lone_surrogate_is_refused_not_a_crash(
    producer: Producer, redis_client: redis.Redis, keys: Keys
) -> None:
    results = producer.enqueue_many([BASE["SMS"], variant("SMS", content="hi \ud83d")])
    assert isinstance(results[0], Enqueued)
    assert isinstance(results[1], Refused)
    assert "lone surrogate" in str(results[1].errors[0])
    assert redis_client.xlen(keys.jobs("SMS")) == 1


def test_prepared_jobs_are_written_as_they_are(
    producer: Producer, redis_client: redis.Redis, keys: Keys
) -> None:
    records = [
        producer.prepare({"jobId": f"w{i}", "message": BASE[channel]})
        for i, channel in enumerate(["SMS", "FLASHCALL", "SMS"])
    ]
    enqueued = producer.enqueue_wire(records)
    assert [(e.index, e.jobId, e.channel) for e in enqueued] == [
        (0, "w0", "SMS"),
        (1, "w1", "FLASHCALL"),
        (2, "w2", "SMS"),
    ]
    sms = read_group(redis_client, keys.jobs("SMS"))
    assert [entry for entry, _ in sms] == [enqueued[0].entryId, enqueued[2].entryId]
    raw: Any = redis_client.xrange(keys.jobs("FLASHCALL"))
    assert raw[0][1][JOB_FIELD.encode()] == records[1].wire
    assert producer.enqueue_wire([]) == []


def test_a_partial_pipeline_says_which_jobs_landed(
    producer: Producer, redis_client: redis.Redis, keys: Keys
) -> None:
    """Redis refusing some XADDs (here WRONGTYPE) must not hide the ones that landed."""
    redis_client.set(keys.jobs("FLASHCALL"), "not a stream")
    items = [BASE["SMS"], BASE["FLASHCALL"], BASE["SMS"]]
    with pytest.raises(WriteError) as caught:
        producer.enqueue_many(items)
    assert "WRONGTYPE" in str(caught.value)
    assert [(e.index, e.channel) for e in caught.value.enqueued] == [(0, "SMS"), (2, "SMS")]
    assert redis_client.xlen(keys.jobs("SMS")) == 2


def raw_entries(client: redis.Redis, stream: str) -> list[tuple[str, dict[str, Any]]]:
    """Each entry as any consumer sees it: its id and its fields, the `job` field's JSON
    decoded by the standard library (not by the code under test). Our producer adds a
    `stamp` (tests/test_stamp.py) beside it, which consumers of the wire format ignore."""
    entries: Any = client.xrange(stream)
    out = []
    for entry_id, fields in entries:
        assert set(fields) == {b"job", b"stamp"}, "the job in `job`, and our stamp"
        out.append((entry_id.decode(), json.loads(fields[b"job"].decode("utf-8"))))
    return out


def test_what_lands_is_the_documented_wire_format(
    producer: Producer, redis_client: redis.Redis, keys: Keys
) -> None:
    """README "Wire format": one stream per channel, `{prefix}:jobs:{CHANNEL}`, one entry per
    job with a field `job` holding the job as JSON; the destination normalised, and a UUID
    for a jobId when the caller gives none. Besides the streams, only the stamps' key."""
    readme = {"channelType": "SMS", "senderName": "SENDER", "destination": "14085553911"}
    given = {**readme, "destination": "+1 (408) 555-3911", "content": "Hello"}
    first = producer.enqueue({"jobId": "c1", "message": given})
    second = producer.enqueue(given)
    code = producer.enqueue(parse_job({"jobId": "otp-9", "message": BASE["FLASHCALL"]}))

    written = sorted(redis_client.scan_iter(match=f"{keys.prefix}:*", count=1000))
    streams = [f"{keys.prefix}:jobs:{c}".encode() for c in ["FLASHCALL", "SMS"]]
    assert written == [*streams, keys.stamp_key.encode()]
    sms = raw_entries(redis_client, f"{keys.prefix}:jobs:SMS")
    assert sms == [
        (first.entryId, {"jobId": "c1", "message": {**readme, "content": "Hello"}}),
        (second.entryId, {"jobId": second.jobId, "message": {**readme, "content": "Hello"}}),
    ]
    assert uuid.UUID(second.jobId).version == 4
    assert (first.jobId, first.channel, second.channel) == ("c1", "SMS", "SMS")
    flashcall = raw_entries(redis_client, f"{keys.prefix}:jobs:FLASHCALL")
    assert flashcall == [(code.entryId, {"jobId": "otp-9", "message": BASE["FLASHCALL"]})]
    assert (code.jobId, code.channel) == ("otp-9", "FLASHCALL")


def test_jobs_are_validated_with_the_producers_context(
    redis_client: redis.Redis, keys: Keys
) -> None:
    """FLASHCALL_CODE_MAX_DIGITS (4 unless support raised it) as the producer is told."""
    six_digits = variant("FLASHCALL", content="123456")
    with pytest.raises(InvalidJobError, match="content"):
        Producer(redis_client, keys).enqueue(six_digits)
    context = ContractContext(now=NOW, flashcall_code_max_digits=6)
    producer = Producer(redis_client, keys, context=context)
    assert producer.enqueue(six_digits).channel == "FLASHCALL"
    [result] = producer.enqueue_many([six_digits])
    assert isinstance(result, Enqueued)
    assert redis_client.xlen(keys.jobs("FLASHCALL")) == 2


def test_a_job_of_exactly_max_job_bytes_is_written(redis_client: redis.Redis, keys: Keys) -> None:
    """The limit is inclusive, as the worker's: a job the worker reads is never refused."""
    job = parse_job({"jobId": "edge", "message": BASE["SMS"]})
    size = len(job.to_wire().encode())
    assert Producer(redis_client, keys, max_job_bytes=size).enqueue(job).jobId == "edge"
    with pytest.raises(InvalidJobError, match=f"is {size} bytes as JSON"):
        Producer(redis_client, keys, max_job_bytes=size - 1).enqueue(job)
    assert redis_client.xlen(keys.jobs("SMS")) == 1


def test_an_unvalidated_job_that_is_not_utf8_is_refused_not_a_crash(
    producer: Producer, redis_client: redis.Redis, keys: Keys
) -> None:
    """A Job built without validation (`model_construct`) may hold a lone surrogate, which no
    stream entry can carry: it is refused like an invalid job, and nothing is written."""
    message = parse_job(BASE["SMS"]).message
    broken = Job.model_construct(jobId="bad-\ud83d", message=message)
    with pytest.raises(InvalidJobError) as caught:
        producer.enqueue(broken)
    assert caught.value.errors == [
        FieldError("job", "holds text that cannot be UTF-8 (a lone surrogate)")
    ]
    assert redis_client.exists(keys.jobs("SMS")) == 0


def test_chunks_land_in_turn_and_a_refusal_keeps_the_input_indexes(
    producer: Producer, redis_client: redis.Redis, keys: Keys
) -> None:
    """Pipelined by `chunk_size` (3 here): the first chunk's results come before the second
    is written, and a WriteError in a later chunk names what landed by input index."""
    assert Producer(redis_client, keys).chunk_size == 1000
    redis_client.set(keys.jobs("FLASHCALL"), "not a stream")
    items: list[dict[str, Any]] = [
        {"jobId": "a0", "message": BASE["SMS"]},
        {"jobId": "a1", "message": BASE["SMS"]},
        {"jobId": "a2", "message": BASE["SMS"]},
        variant("SMS", ttl=5),  # invalid
        {"jobId": "b4", "message": BASE["FLASHCALL"]},  # refused by Redis
        {"jobId": "b5", "message": BASE["SMS"]},
    ]
    results: list[EnqueueResult] = []
    with pytest.raises(WriteError) as caught:
        results.extend(producer.iter_enqueue(items))
    sms = raw_entries(redis_client, keys.jobs("SMS"))
    assert [(r.index, r.jobId, r.entryId) for r in results if isinstance(r, Enqueued)] == [
        (0, "a0", sms[0][0]),
        (1, "a1", sms[1][0]),
        (2, "a2", sms[2][0]),
    ]
    assert len(results) == 3  # the second chunk's refusal comes as the error
    assert caught.value.enqueued == [Enqueued(5, "b5", "SMS", sms[3][0])]
    assert isinstance(caught.value.error, redis.ResponseError)
    assert "WRONGTYPE" in str(caught.value.error)
    assert [job["jobId"] for _, job in sms] == ["a0", "a1", "a2", "b5"]


@pytest.fixture
def full_redis() -> Iterator[redis.Redis]:
    """A Redis of its own at `maxmemory` with noeviction, as the README asks to run it: it
    refuses writes with OOM once full."""
    with RedisServer({"maxmemory-policy": "noeviction"}) as server, server.client() as client:
        used = int(client.info("memory")["used_memory"])
        client.config_set("maxmemory", used + 256 * 1024)
        yield client


def test_a_full_redis_refuses_midway_and_the_error_lists_what_landed(
    full_redis: redis.Redis,
) -> None:
    """README failure table: Redis at maxmemory (noeviction) — "The producer gets the refusal
    (`WriteError` lists what landed)": exactly the entries on the stream, by input index."""
    keys = Keys("full")
    producer = Producer(full_redis, keys, chunk_size=50, durability=None)
    items = [
        {"jobId": f"j{i}", "message": variant("SMS", content=f"{i} " + "x" * 1500)}
        for i in range(400)
    ]
    items[1] = variant("SMS", ttl=5)  # invalid: refused, never written
    landed: list[EnqueueResult] = []
    with pytest.raises(WriteError) as caught:
        landed.extend(producer.iter_enqueue(items))
    assert isinstance(caught.value.error, redis.exceptions.OutOfMemoryError)
    written = [r for r in landed if isinstance(r, Enqueued)] + caught.value.enqueued
    on_stream = raw_entries(full_redis, keys.jobs("SMS"))
    assert 0 < len(on_stream) < len(items) - 1
    assert [(e.entryId, e.jobId) for e in written] == [(i, j["jobId"]) for i, j in on_stream]
    assert [e.index for e in written] == [0, *range(2, len(written) + 1)]
    assert [e.jobId for e in written] == [f"j{e.index}" for e in written]


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("none", None),
        ("local", Durability(local=True, replicas=0, timeout_ms=1234)),
        ("replicas", Durability(local=False, replicas=2, timeout_ms=1234)),
        ("both", Durability(local=True, replicas=2, timeout_ms=1234)),
    ],
)
def test_durable_enqueue_modes(mode: str, expected: Durability | None) -> None:
    """DURABLE_ENQUEUE: `local` waits for the AOF fsync, `replicas` for DURABLE_REPLICAS
    replicas, `both` for both, each within DURABLE_TIMEOUT_MS."""
    settings = Settings.model_validate(
        {"durable_enqueue": mode, "durable_replicas": 2, "durable_timeout_ms": 1234}
    )
    assert Durability.from_settings(settings) == expected


def test_a_producer_takes_durability_from_the_settings_unless_told(
    redis_client: redis.Redis, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DURABLE_ENQUEUE (and MAX_JOB_BYTES) of the process's settings are the defaults."""
    settings = Settings.model_validate(
        {"durable_enqueue": "replicas", "durable_replicas": 3, "durable_timeout_ms": 250}
    )
    monkeypatch.setattr(producer_module, "get_settings", lambda: settings)
    assert Producer(redis_client, keys).durability == Durability(False, 3, 250)
    assert Producer(redis_client, keys, durability=None).durability is None
    wanted = Durability(local=True)
    assert Producer(redis_client, keys, durability=wanted).durability is wanted
