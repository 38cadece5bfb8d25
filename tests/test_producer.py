"""The producer against a real Redis: what lands in a stream is what a consumer reads back."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from config import get_settings
from tasks.contract import ContractContext
from tasks.jobs import InvalidJobError, Job, parse_job
from tasks.keys import CONSUMER_GROUP, JOB_FIELD, Keys
from tasks.producer import Enqueued, Producer, Refused, WriteError
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
    assert list(redis_client.scan_iter(match=f"{keys.prefix}:*")) == []


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
