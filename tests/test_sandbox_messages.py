"""`GET /api/v1/message` over real HTTP: the message objects, every filter, paging and its
limit, auth; and the lifecycle fields of `/_sandbox/received`."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import OTHER_TYPE_TOKEN
from tests.contract_cases import BASE, variant
from tests.sandbox_client import (
    BASIC,
    BEARER,
    all_final,
    api_error,
    lookup,
    send,
    set_delivery,
)
from tests.test_hostile_contract import HOSTILE

FAST = {"sentAfterMs": 20, "finalAfterMs": 60}
STATE_KEYS = [
    "messageUuid",
    "externalMessageId",
    "status",
    "statusTime",
    "sentTime",
    "errorCode",
    "price",
]


def uuids(response: httpx.Response) -> list[str]:
    return [item["messageUuid"] for item in response.json()["items"]]


def ask(sandbox: httpx.Client, params: object) -> list[str]:
    response = lookup(sandbox, params)
    assert response.status_code == 200, response.text
    return [m["messageUuid"] for m in response.json()]


def test_a_message_object_while_sending_and_once_final(sandbox: httpx.Client) -> None:
    set_delivery(sandbox, delivered=0, undelivered=1, price=0.75, **FAST)
    sent = variant("VOICECODE", externalMessageId="order-17", tags=["otp"])
    (uuid,) = uuids(send(sandbox, [sent]))
    (sending,) = lookup(sandbox, {"message_uuid": uuid}).json()
    assert list(sending)[: len(STATE_KEYS)] == STATE_KEYS
    assert {k: sending[k] for k in STATE_KEYS if k != "statusTime"} == {
        "messageUuid": uuid,
        "externalMessageId": "order-17",
        "status": "sending",
        "sentTime": None,
        "errorCode": None,
        "price": None,
    }
    assert {k: sending[k] for k in sent} == sent
    assert set(sending) == {*STATE_KEYS, *sent}
    all_final(sandbox)
    (final,) = lookup(sandbox, {"message_uuid": uuid}).json()
    assert (final["status"], final["errorCode"]) == ("undelivered", 6969)
    assert final["price"] == {
        "totalPrice": 0.75,
        "currency": "RUB",
        "invoicedParts": 1,
        "final": True,
    }
    sent_time = datetime.strptime(final["sentTime"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert abs(sent_time - datetime.now(UTC)) < timedelta(seconds=5)
    assert final["statusTime"] >= final["sentTime"] >= sending["statusTime"]


def test_the_price_is_not_final_until_the_final_status(sandbox: httpx.Client) -> None:
    set_delivery(sandbox, sentAfterMs=0, finalAfterMs=2000)
    (uuid,) = uuids(send(sandbox, [BASE["SMS"]]))
    time.sleep(0.1)
    (message,) = lookup(sandbox, {"message_uuid": uuid}).json()
    assert message["status"] == "sent"
    assert message["sentTime"] is not None
    assert message["price"] == {
        "totalPrice": 1.5,
        "currency": "RUB",
        "invoicedParts": 1,
        "final": False,
    }


def test_uuids_are_answered_in_creation_order(sandbox: httpx.Client) -> None:
    created = uuids(send(sandbox, [variant("SMS", content=f"m{i}") for i in range(5)]))
    unknown = "063464ec-a34f-4558-90c5-984395000004"
    params = [("message_uuid", u) for u in [created[3], unknown, created[0], created[3]]]
    assert ask(sandbox, params) == [created[0], created[3]]
    assert ask(sandbox, {"message_uuid": unknown}) == []


def test_filters(sandbox: httpx.Client) -> None:
    set_delivery(sandbox, delivered=0, undelivered=1, **FAST)
    first = uuids(
        send(
            sandbox,
            [
                variant("SMS", destination="14085550001", tags=["a", "b"]),
                variant("SMS", destination="14085550002", senderName="OTHER", tags=["b"]),
                variant("WHATSAPP", destination="14085550001"),
            ],
        )
    )
    all_final(sandbox)
    set_delivery(sandbox, sentAfterMs=5000, finalAfterMs=5000)
    (last,) = uuids(send(sandbox, [variant("FLASHCALL", destination="14085550003")]))
    everything = [*first, last]
    assert ask(sandbox, {}) == everything
    assert ask(sandbox, {"destination": "14085550001"}) == [first[0], first[2]]
    destinations = [("destination", "14085550002"), ("destination", "14085550003")]
    assert ask(sandbox, destinations) == [first[1], last]
    assert ask(sandbox, {"channel_type": "WHATSAPP"}) == [first[2]]
    assert ask(sandbox, [("channel_type", "SMS"), ("channel_type", "FLASHCALL")]) == [
        first[0],
        first[1],
        last,
    ]
    assert ask(sandbox, {"sender_name": "OTHER"}) == [first[1]]
    assert ask(sandbox, {"tags": "b"}) == first[:2]
    assert ask(sandbox, [("tags", "a"), ("tags", "zzz")]) == [first[0]]
    assert ask(sandbox, {"status": "sending"}) == [last]
    assert ask(sandbox, [("status", "undelivered"), ("status", "delivered")]) == first
    assert ask(sandbox, {"destination": "14085550001", "channel_type": "SMS"}) == [first[0]]
    assert ask(sandbox, {"unknown_filter": "x"}) == everything


def test_time_filters_compare_the_creation_time(sandbox: httpx.Client) -> None:
    (early,) = uuids(send(sandbox, [BASE["SMS"]]))
    boundary = math.floor(time.time()) + 1  # the next whole second
    time.sleep(boundary - time.time() + 0.05)
    (late,) = uuids(send(sandbox, [BASE["SMS"]]))
    at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(boundary))
    assert ask(sandbox, {"time_from": at}) == [late]
    assert ask(sandbox, {"time_to": at}) == [early]
    assert ask(sandbox, {"time_from": "2020-01-01T00:00:00Z", "time_to": at}) == [early]
    assert ask(sandbox, {"time_from": "2999-01-01T00:00:00Z"}) == []


def test_paging_in_creation_order(sandbox: httpx.Client) -> None:
    created = uuids(send(sandbox, [variant("SMS", content=f"m{i}") for i in range(250)]))
    assert ask(sandbox, {}) == created[:100]  # per_page 100 by default
    assert ask(sandbox, {"page": 3}) == created[200:]
    assert ask(sandbox, {"page": 2, "per_page": 30}) == created[30:60]
    assert ask(sandbox, {"page": 4}) == []
    assert ask(sandbox, {"per_page": 10_000}) == created
    assert ask(sandbox, {"page": 2, "per_page": 5000}) == []
    assert ask(sandbox, {"status": "sending", "page": 2, "per_page": 100}) == created[100:200]


@pytest.mark.parametrize(
    ("params", "msg"),
    [
        ({"page": 2, "per_page": 5001}, "page * per_page must not exceed 10000"),
        ({"per_page": 10_001}, "page * per_page must not exceed 10000"),
        ({"page": 0}, "Invalid page: 0"),
        ({"page": "-1"}, "Invalid page: -1"),
        ({"page": "one"}, "Invalid page: one"),
        ({"per_page": "1.5"}, "Invalid per_page: 1.5"),
        ({"per_page": "9999999999"}, "Invalid per_page: 9999999999"),
        ({"per_page": ""}, "Invalid per_page: "),
        ({"time_from": "yesterday"}, "Invalid time_from: yesterday"),
        ({"time_to": "2020-13-01T00:00:00Z"}, "Invalid time_to: 2020-13-01T00:00:00Z"),
    ],
)
def test_bad_paging_or_times_get_422(
    sandbox: httpx.Client, params: dict[str, object], msg: str
) -> None:
    assert api_error(lookup(sandbox, params)) == (422, 4220, msg)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, (401, 4010, "Not Authenticated")),
        ({"Authorization": "Basic nope"}, (401, 4012, "Bad credentials")),
        ({"Authorization": f"Basic {OTHER_TYPE_TOKEN}"}, (403, 4030, "Access Denied")),
        (BEARER, (403, 4030, "Access Denied")),
    ],
    ids=["no header", "unknown key", "other key type", "bearer"],
)
def test_the_lookup_takes_basic_auth_like_sending(
    sandbox: httpx.Client, headers: dict[str, str], expected: tuple[int, int, str]
) -> None:
    send(sandbox, [BASE["SMS"]])
    assert api_error(sandbox.get("/api/v1/message", headers=headers)) == expected
    assert api_error(sandbox.get("/api/v1/message", params={"page": 0}, headers=headers)) == (
        expected
    )


def test_conversions_have_no_lifecycle(sandbox: httpx.Client) -> None:
    set_delivery(sandbox, **FAST)
    send(sandbox, [BASE["FLASHCALL_CONVERSION"]], "/api/v1/flashcall-conversion")
    (message,) = uuids(send(sandbox, [BASE["FLASHCALL"]]))
    records = all_final(sandbox)
    assert [(r["status"], r["finalStatus"], r["statusTime"]) for r in records[:1]] == [
        (None, None, None)
    ]
    assert (records[1]["status"], records[1]["finalStatus"]) == ("delivered", "delivered")
    assert records[1]["statusTime"] - records[1]["receivedAt"] == pytest.approx(0.06, abs=0.05)
    assert ask(sandbox, {}) == [message]


def test_received_records_keep_their_fields_and_gain_the_lifecycle(sandbox: httpx.Client) -> None:
    set_delivery(sandbox, sentAfterMs=5000, finalAfterMs=5000, delivered=0, unsent=1)
    send(sandbox, [BASE["SMS"]] * 3)
    page = sandbox.get("/_sandbox/received", params={"offset": 1, "limit": 1}).json()
    assert list(page[0]) == [
        "requestIndex",
        "endpoint",
        "messageUuid",
        "message",
        "receivedAt",
        "status",
        "finalStatus",
        "statusTime",
    ]
    assert (page[0]["status"], page[0]["finalStatus"]) == ("sending", "unsent")


def test_a_reset_forgets_the_messages(sandbox: httpx.Client) -> None:
    send(sandbox, [BASE["SMS"]] * 2)
    assert len(ask(sandbox, {})) == 2
    sandbox.post("/_sandbox/reset").raise_for_status()
    assert ask(sandbox, {}) == []


def test_a_hundred_uuids_among_many_messages_are_found_quickly(sandbox: httpx.Client) -> None:
    """A poller asks for 100 uuids at a time: each is a dict lookup, not a scan."""
    body = [variant("SMS", content=f"m{i}") for i in range(1000)]
    created = [u for _ in range(20) for u in uuids(send(sandbox, body))]
    wanted = created[::200]
    started = time.perf_counter()
    for _ in range(20):
        assert ask(sandbox, [("message_uuid", u) for u in reversed(wanted)]) == wanted
    assert time.perf_counter() - started < 2


FILTERS = ["message_uuid", "destination", "status", "channel_type", "tags", "sender_name"]
QUERY_NAMES = st.sampled_from([*FILTERS, "time_from", "time_to", "page", "per_page"]) | st.text(
    max_size=10
)


def test_any_query_gets_200_or_422(sandbox_url: str) -> None:
    with httpx.Client(base_url=sandbox_url, headers=BASIC) as client:

        @HOSTILE
        @given(st.lists(st.tuples(QUERY_NAMES, st.text(max_size=30)), max_size=6))
        def check(params: list[tuple[str, str]]) -> None:
            response = client.get("/api/v1/message", params=tuple(params))
            assert response.status_code in (200, 422), response.text
            if response.status_code == 422:
                assert api_error(response)[1] == 4220

        check()
