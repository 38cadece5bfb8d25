"""The producer against a real Redis: what lands in a stream is what a consumer reads back."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from tasks.contract import ContractContext
from tasks.jobs import InvalidJobError, Job, parse_job
from tasks.keys import CONSUMER_GROUP, JOB_FIELD, Keys
from tasks.producer import Enqueued, Producer, Refused
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
