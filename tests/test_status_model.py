"""The status model (tasks/tracking/lua/status.lua) on a real Redis: the mapping written with
the `accepted` outcome, events applied by its rules, parked events, the lookup schedule."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import orjson
import pytest
import redis
import redis.asyncio

from config import Settings
from tasks.jobs import Outcome
from tasks.keys import Keys, as_text
from tasks.statuses import history, iter_statuses
from tasks.tracking.events import Row
from tasks.tracking.store import AsyncStatusStore, Recorded, StatusStore
from tests.test_finish_script import CHANNEL, running
from worker.ledger import Finished, Ledger
from worker.ownership import LeaseTimes, Ownership

LEASE_MS = 5000
T0 = "2026-11-24T10:00:00Z"
T1 = "2026-11-24T10:00:05Z"
T2 = "2026-11-24T10:00:09Z"


@pytest.fixture
def settings() -> Settings:
    return Settings(
        callback_park_s=60,
        status_poll_after_s=0.2,
        status_poll_max_interval_s=0.5,
        status_give_up_s=86_400,
    )


@pytest.fixture
def store(redis_client: redis.Redis, keys: Keys, settings: Settings) -> StatusStore:
    return StatusStore(redis_client, keys, settings)


@pytest.fixture
def ledger(redis_client: redis.Redis, keys: Keys, settings: Settings) -> Ledger:
    return Ledger(
        redis_client,
        keys,
        ttl_s=3600,
        leases=LeaseTimes(LEASE_MS, LEASE_MS),
        first_lookup_ms=int(settings.status_poll_after_s * 1000),
    )


def accept(
    client: redis.Redis, keys: Keys, own: Ownership, ledger: Ledger, job: str, *, uuid: str
) -> int:
    """Finish `job` as accepted with messageUuid `uuid`; the parked callbacks applied."""
    [entry] = running(client, keys, own, f"b-{job}", orjson.dumps({"jobId": job}).decode())
    assert ledger.claim(f"b-{job}", [job]) == ["claimed"]
    accepted = Outcome(jobId=job, status="accepted", channelType=CHANNEL, messageUuid=uuid)
    row = Finished(entry, job, f"accepted:{uuid}", accepted.to_wire())
    return ledger.finish(CHANNEL, f"b-{job}", [row]).unparked


def event(uuid: str, status: str, when: str = T0, name: str = "delivered", **extra: str) -> Row:
    return [
        uuid,
        name,
        status,
        when,
        extra.get("code", ""),
        extra.get("price", ""),
        "SMS",
        "callback",
        "2026-11-24T10:00:10.000Z",
    ]


SCHEMA = jsonschema.Draft202012Validator(
    orjson.loads((Path(__file__).parents[1] / "schemas" / "status.schema.json").read_bytes())
)


def entries(client: redis.Redis, keys: Keys) -> list[dict[str, Any]]:
    """The statuses stream, each entry as the script wrote it, checked against the schema."""
    raw: Any = client.xrange(keys.statuses)
    written = [orjson.loads(fields[b"status"]) for _, fields in raw]
    for entry in written:
        SCHEMA.validate(entry)
    parsed = [e.model_dump() for _, e in iter_statuses(client, keys)]
    assert parsed == [{**e, "price": e["price"] and {**e["price"]}} for e in written]
    return parsed


def test_accepted_maps_the_message_and_schedules_its_lookup(
    redis_client: redis.Redis, keys: Keys, own: Ownership, ledger: Ledger
) -> None:
    accept(redis_client, keys, own, ledger, "j1", uuid="u-1")
    mapping: Any = redis_client.hgetall(keys.message("u-1"))
    assert mapping[b"job"] == b"j1"
    assert mapping[b"channel"] == b"SMS"
    assert 0 < int(redis_client.ttl(keys.message("u-1"))) <= 3600
    due_at = redis_client.zscore(keys.tracking, "u-1")
    assert due_at is not None
    assert due_at - int(mapping[b"accepted"]) == 200
    found = history(redis_client, keys, "j1")
    assert [o.jobId for o in found.outcomes] == ["j1"]
    assert found.statuses == []
    assert found.trimmed == 0
    assert 0 < int(redis_client.ttl(keys.track("j1"))) <= 3600


def test_a_conversion_has_no_delivery_status(
    redis_client: redis.Redis, keys: Keys, ledger: Ledger
) -> None:
    redis_client.xgroup_create(keys.jobs("FLASHCALL_CONVERSION"), "dispatch", id="0", mkstream=True)
    ledger.finish("FLASHCALL_CONVERSION", "b-c", [Finished("1-1", "c1", "accepted:u-c", "{}")])
    assert not redis_client.exists(keys.message("u-c"))
    assert redis_client.zcard(keys.tracking) == 0


def test_sent_then_delivered_makes_two_entries_the_last_final(
    redis_client: redis.Redis, keys: Keys, own: Ownership, ledger: Ledger, store: StatusStore
) -> None:
    accept(redis_client, keys, own, ledger, "j1", uuid="u-1")
    first = store.record([event("u-1", "sent", T0, "sent")])
    second = store.record([event("u-1", "delivered", T1)])
    assert dict(first.results) == {"changed": 1}
    assert dict(second.results) == {"final": 1}
    assert second.finals[0][:2] == ("SMS", "delivered")
    assert 0 <= second.finals[0][2] < 1  # just accepted
    found = entries(redis_client, keys)
    assert [(e["status"], e["final"], e["event"]) for e in found] == [
        ("sent", False, "sent"),
        ("delivered", True, "delivered"),
    ]
    assert found[1]["jobId"] == "j1"
    assert found[1]["statusTime"] == T1
    assert found[1]["source"] == "callback"
    assert found[1]["channelType"] == "SMS"
    assert redis_client.zscore(keys.tracking, "u-1") is None  # final: no more lookups
    assert [s.status for s in history(redis_client, keys, "j1").statuses] == ["sent", "delivered"]
    redis_client.xtrim(keys.results, maxlen=0)
    trimmed = history(redis_client, keys, "j1")
    assert (trimmed.outcomes, trimmed.trimmed, len(trimmed.statuses)) == ([], 1, 2)


def test_delivered_before_sent_is_final_once_and_sent_is_stale(
    redis_client: redis.Redis, keys: Keys, own: Ownership, ledger: Ledger, store: StatusStore
) -> None:
    accept(redis_client, keys, own, ledger, "j1", uuid="u-1")
    report = store.record([event("u-1", "delivered", T1), event("u-1", "sent", T0, "sent")])
    assert dict(report.results) == {"final": 1, "stale": 1}
    assert [(e["status"], e["final"]) for e in entries(redis_client, keys)] == [("delivered", True)]


def test_a_repeated_event_counts_once(
    redis_client: redis.Redis, keys: Keys, own: Ownership, ledger: Ledger, store: StatusStore
) -> None:
    accept(redis_client, keys, own, ledger, "j1", uuid="u-1")
    sent = event("u-1", "sent", T0, "sent")
    assert dict(store.record([sent, sent]).results) == {"changed": 1, "duplicate": 1}
    assert dict(store.record([sent]).results) == {"duplicate": 1}
    assert len(entries(redis_client, keys)) == 1


def test_a_final_status_never_regresses_and_only_read_follows_it(
    redis_client: redis.Redis, keys: Keys, own: Ownership, ledger: Ledger, store: StatusStore
) -> None:
    accept(redis_client, keys, own, ledger, "j1", uuid="u-1")
    accepted = int(redis_client.hget(keys.message("u-1"), "accepted") or 0)
    redis_client.hset(keys.message("u-1"), "accepted", accepted - 1_000_000)
    first = store.record([event("u-1", "undelivered", T1, code="6969")])
    [(channel, status, age_s)] = first.finals
    assert (channel, status) == ("SMS", "undelivered")
    assert 1000 <= age_s < 1001  # since the 201, in seconds
    later = store.record(
        [
            event("u-1", "sending", T2, "sent"),
            event("u-1", "sent", T2, "sent"),
            event("u-1", "delivered", T2),
            event("u-1", "read", T2, "read"),
            event("u-1", "unread", T2, "read"),
        ]
    )
    assert dict(later.results) == {"stale": 3, "changed": 2}
    found = entries(redis_client, keys)
    assert [(e["status"], e["final"], e["errorCode"]) for e in found] == [
        ("undelivered", True, 6969),
        ("read", False, 6969),
        ("unread", False, 6969),
    ]
    assert sum(e["final"] for e in found) == 1


def test_pending_statuses_only_move_forward(
    redis_client: redis.Redis, keys: Keys, own: Ownership, ledger: Ledger, store: StatusStore
) -> None:
    accept(redis_client, keys, own, ledger, "j1", uuid="u-1")
    report = store.record(
        [
            event("u-1", "sending", T0, "sent"),
            event("u-1", "sent", T1, "sent"),
            event("u-1", "sending", T2, "sent"),
            event("u-1", "sent", T2, "sent"),
            event("u-1", "unsent", T2),
            event("u-1", "sent", T0, "sent"),
        ]
    )
    assert report.results["stale"] == 3
    assert [e["status"] for e in entries(redis_client, keys)] == ["sending", "sent", "unsent"]


def test_a_price_is_an_entry_once(
    redis_client: redis.Redis, keys: Keys, own: Ownership, ledger: Ledger, store: StatusStore
) -> None:
    accept(redis_client, keys, own, ledger, "j1", uuid="u-1")
    price = '{"currency":"RUB","final":true,"invoicedParts":1,"totalPrice":1.5}'
    store.record([event("u-1", "delivered", T1)])
    first = store.record([event("u-1", "delivered", T1, "price", price=price)])
    again = store.record([event("u-1", "delivered", T2, "price", price=price)])
    assert dict(first.results) == {"changed": 1}
    assert dict(again.results) == {"stale": 1}
    last = entries(redis_client, keys)[-1]
    assert last["price"] == {
        "totalPrice": 1.5,
        "currency": "RUB",
        "invoicedParts": 1,
        "final": True,
    }
    assert (last["status"], last["final"]) == ("delivered", False)


def test_an_event_before_its_mapping_is_parked_then_published_with_the_outcome(
    redis_client: redis.Redis, keys: Keys, own: Ownership, ledger: Ledger, store: StatusStore
) -> None:
    early = store.record([event("u-1", "sent", T0, "sent"), event("u-1", "delivered", T1)])
    assert dict(early.results) == {"parked": 2}
    assert entries(redis_client, keys) == []
    assert redis_client.llen(keys.parked("u-1")) == 2
    assert redis_client.zscore(keys.parked_index, "u-1") is not None
    assert accept(redis_client, keys, own, ledger, "j1", uuid="u-1") == 2
    assert [(e["status"], e["final"]) for e in entries(redis_client, keys)] == [
        ("sent", False),
        ("delivered", True),
    ]
    assert not redis_client.exists(keys.parked("u-1"))
    assert redis_client.zcard(keys.parked_index) == 0
    assert redis_client.zscore(keys.tracking, "u-1") is None


def test_parked_events_never_matched_are_swept_and_counted(
    redis_client: redis.Redis, keys: Keys, store: StatusStore
) -> None:
    store.record([event("u-x", "sent", T0, "sent"), event("u-x", "delivered", T1)])
    store.record([event("u-y", "delivered", T1)])
    assert store.sweep() == (0, 0)  # still waiting
    redis_client.zadd(keys.parked_index, {"u-x": 0})  # u-x's wait is over
    assert store.sweep() == (1, 2)
    assert not redis_client.exists(keys.parked("u-x"))
    assert redis_client.exists(keys.parked("u-y"))
    left: Any = redis_client.zrange(keys.parked_index, 0, -1)
    assert [as_text(u) for u in left] == ["u-y"]


def test_lookups_back_off_then_give_up(
    *,
    redis_client: redis.Redis,
    keys: Keys,
    own: Ownership,
    ledger: Ledger,
    store: StatusStore,
    settings: Settings,
) -> None:
    accept(redis_client, keys, own, ledger, "j1", uuid="u-1")
    assert store.due(100).lookup == []  # not due before STATUS_POLL_AFTER_S
    redis_client.zadd(keys.tracking, {"u-1": 0})
    assert store.due(100).lookup == ["u-1"]
    accepted = int(redis_client.hget(keys.message("u-1"), "accepted") or 0)
    first = redis_client.zscore(keys.tracking, "u-1") or 0
    redis_client.zadd(keys.tracking, {"u-1": 0})
    assert store.due(100).lookup == ["u-1"]
    second = redis_client.zscore(keys.tracking, "u-1") or 0
    # 0.2 s doubled per lookup (0.4, then 0.8 capped at 0.5), counted from each lookup.
    assert 350 <= first - accepted <= 1000
    assert 450 <= second - accepted <= 1500
    assert redis_client.hget(keys.message("u-1"), "polls") == b"2"
    # Past STATUS_GIVE_UP_S: the final status `unknown`, in the same step.
    redis_client.hset(keys.message("u-1"), "accepted", accepted - 86_400_000)
    accept(redis_client, keys, own, ledger, "j2", uuid="u-2")
    redis_client.hset(keys.message("u-2"), "accepted", accepted - 86_400_000)
    redis_client.zadd(keys.tracking, {"u-1": 0, "u-2": 0})
    due = store.due(100)
    assert due.lookup == []
    assert dict(due.given_up.results) == {"final": 2}
    assert [f[:2] for f in due.given_up.finals] == [("SMS", "unknown")] * 2
    assert 86_400 <= due.given_up.finals[0][2] < 86_500  # seconds since the 201
    assert redis_client.zcard(keys.tracking) == 0
    only, _ = entries(redis_client, keys)
    assert (only["status"], only["final"], only["source"], only["event"]) == (
        "unknown",
        True,
        "poll",
        "give_up",
    )
    assert only["statusTime"] == only["receivedAt"]


def test_the_next_lookup_is_never_after_the_give_up_time(
    redis_client: redis.Redis, keys: Keys, own: Ownership, ledger: Ledger, redis_url: str
) -> None:
    settings = Settings(
        status_poll_after_s=100, status_poll_max_interval_s=3000, status_give_up_s=500
    )
    store = StatusStore(redis_client, keys, settings)
    accept(redis_client, keys, own, ledger, "j1", uuid="u-1")
    accepted = int(redis_client.hget(keys.message("u-1"), "accepted") or 0)
    for _ in range(4):  # pauses 200, 400, 800 (capped by the give-up at 500 s), ...
        redis_client.zadd(keys.tracking, {"u-1": 0})
        store.due(100)
    assert redis_client.zscore(keys.tracking, "u-1") == accepted + 500_000


def test_while_the_circuit_is_open_only_give_ups_happen(
    redis_client: redis.Redis, keys: Keys, own: Ownership, ledger: Ledger, store: StatusStore
) -> None:
    accept(redis_client, keys, own, ledger, "j-old", uuid="u-old")
    accept(redis_client, keys, own, ledger, "j-new", uuid="u-new")
    redis_client.hset(keys.message("u-old"), "accepted", 0)
    redis_client.zadd(keys.tracking, {"u-old": 0, "u-new": 0})
    due = store.due(100, lookups=False)
    assert due.lookup == []
    assert len(due.given_up.finals) == 1
    assert redis_client.zscore(keys.tracking, "u-new") == 0  # still due, not looked up
    assert redis_client.hget(keys.message("u-new"), "polls") is None
    assert [e["jobId"] for e in entries(redis_client, keys)] == ["j-old"]


def test_a_final_message_and_a_forgotten_one_leave_the_schedule(
    redis_client: redis.Redis, keys: Keys, own: Ownership, ledger: Ledger, store: StatusStore
) -> None:
    accept(redis_client, keys, own, ledger, "j1", uuid="u-1")
    redis_client.hset(keys.message("u-1"), "final", "1")
    redis_client.zadd(keys.tracking, {"u-1": 0, "u-gone": 0})
    due = store.due(100)
    assert (due.lookup, due.vanished, due.given_up.finals) == ([], 1, [])
    assert redis_client.zcard(keys.tracking) == 0


@pytest.mark.parametrize("status", ["read", "unread"])
def test_read_before_any_final_status_means_delivered(
    *,
    redis_client: redis.Redis,
    keys: Keys,
    own: Ownership,
    ledger: Ledger,
    store: StatusStore,
    status: str,
) -> None:
    accept(redis_client, keys, own, ledger, "j1", uuid="u-1")
    store.record([event("u-1", "sent", T0, "sent")])
    report = store.record([event("u-1", status, T1, "poll")])
    assert dict(report.results) == {"final": 1}
    assert report.finals[0][:2] == ("SMS", "delivered")
    late = store.record([event("u-1", "delivered", T2), event("u-1", "undelivered", T2)])
    assert dict(late.results) == {"stale": 2}
    assert [(e["status"], e["final"], e["statusTime"]) for e in entries(redis_client, keys)] == [
        ("sent", False, T0),
        ("delivered", True, T1),
        (status, False, T1),
    ]
    assert redis_client.zscore(keys.tracking, "u-1") is None


def test_a_status_the_api_adds_one_day_changes_nothing(
    redis_client: redis.Redis, keys: Keys, own: Ownership, ledger: Ledger, store: StatusStore
) -> None:
    accept(redis_client, keys, own, ledger, "j1", uuid="u-1")
    report = store.record([event("u-1", "expired", T0, "expired"), event("u-1", "sent", T1)])
    assert dict(report.results) == {"stale": 1, "changed": 1}
    assert [e["status"] for e in entries(redis_client, keys)] == ["sent"]


def test_a_final_status_brought_by_parked_callbacks_is_reported_by_the_finish(
    redis_client: redis.Redis, keys: Keys, own: Ownership, ledger: Ledger, store: StatusStore
) -> None:
    store.record([event("u-1", "sent", T0, "sent"), event("u-1", "undelivered", T1)])
    [entry] = running(redis_client, keys, own, "b-j1", '{"jobId": "j1"}')
    assert ledger.claim("b-j1", ["j1"]) == ["claimed"]
    accepted = Outcome(jobId="j1", status="accepted", channelType=CHANNEL, messageUuid="u-1")
    report = ledger.finish(
        CHANNEL, "b-j1", [Finished(entry, "j1", "accepted:u-1", accepted.to_wire())]
    )
    assert (report.unparked, report.unparked_finals) == (2, ("undelivered",))


def test_the_receivers_store_applies_like_the_pollers(
    *,
    redis_client: redis.Redis,
    keys: Keys,
    own: Ownership,
    ledger: Ledger,
    settings: Settings,
    redis_url: str,
) -> None:
    accept(redis_client, keys, own, ledger, "j1", uuid="u-1")

    async def record() -> tuple[Recorded, Recorded]:
        client = redis.asyncio.Redis.from_url(redis_url)
        try:
            store = AsyncStatusStore(client, keys, settings)
            return await store.record([event("u-1", "delivered", T1)]), await store.record([])
        finally:
            await client.aclose()

    done, nothing = asyncio.run(record())
    assert dict(done.results) == {"final": 1}
    assert done.finals[0][:2] == ("SMS", "delivered")
    assert nothing.results == {}
    assert [e["status"] for e in entries(redis_client, keys)] == ["delivered"]


def test_parked_callbacks_among_many_messages_are_applied_with_their_rows_only(
    redis_client: redis.Redis, keys: Keys, own: Ownership, ledger: Ledger, store: StatusStore
) -> None:
    """finish.lua looks for parked callbacks by halving the batch's uuids: each message with
    some, at a chunk's edges too, gets them in its row's order, and only when its outcome is
    published; the other messages' lookups are scheduled, and callbacks of others stay."""
    n = 1100
    jobs = [f"j{i}" for i in range(n)]
    early = {0: ["sent"], 499: ["sent", "undelivered"], 500: ["sent"], 501: ["delivered"]}
    early |= {n - 1: ["sent"], 2: ["sent"]}
    store.record([event(f"u-{i}", s, T0, s) for i, found in early.items() for s in found])
    store.record([event("u-other", "sent", T0, "sent")])
    ids = running(redis_client, keys, own, "b-1", *(f'{{"jobId": "{j}"}}' for j in jobs))
    ledger.claim("b-1", jobs)
    redis_client.set(keys.ledger("j2"), "rejected")  # final before: nothing published
    rows = [
        Finished(e, j, f"accepted:u-{i}", orjson.dumps({"jobId": j}).decode())
        for i, (e, j) in enumerate(zip(ids, jobs, strict=True))
    ]
    report = ledger.finish(CHANNEL, "b-1", rows)
    assert (report.published, report.acknowledged) == (n - 1, n)
    assert (report.unparked, report.unparked_finals) == (6, ("undelivered", "delivered"))
    assert [(e["jobId"], e["status"]) for e in entries(redis_client, keys)] == [
        ("j0", "sent"),
        ("j499", "sent"),
        ("j499", "undelivered"),
        ("j500", "sent"),
        ("j501", "delivered"),
        (f"j{n - 1}", "sent"),
    ]
    left: Any = redis_client.zrange(keys.parked_index, 0, -1)
    assert sorted(as_text(u) for u in left) == ["u-2", "u-other"]
    assert redis_client.exists(*(keys.parked(f"u-{i}") for i in early)) == 1  # u-2's
    assert redis_client.zcard(keys.tracking) == n - 3  # not j2's, nor the two now final
    assert redis_client.zscore(keys.tracking, "u-499") is None
    assert redis_client.zscore(keys.tracking, "u-500") is not None
