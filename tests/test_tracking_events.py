"""Events as they reach us (tasks/tracking/events.py), in process: the exact rows the status
model gets, every bound, and the exact words of a refusal."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from tasks.tracking.events import (
    BadEventError,
    TooManyEventsError,
    lookup_row,
    now_text,
    parse_callback,
    status_time,
)

EVENT: dict[str, Any] = {
    "message_uuid": "9f0c1e8e-4b1f-4f1e-9a55-5c2d1d6a8b10",
    "channel_type": "WHATSAPP",
    "callback_event": "price",
    "status": "delivered",
    "status_time": "2026-11-24T13:00:00+03:00",
}
AT = "2026-11-24T10:00:01.000Z"
PRICE = '{"currency":"RUB","final":true,"invoicedParts":2,"totalPrice":3.25}'


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("2026-11-24T10:00:00Z", "2026-11-24T10:00:00Z"),
        ("2026-11-24T13:00:00+03:00", "2026-11-24T10:00:00Z"),
        ("2026-11-24T10:00:00", "2026-11-24T10:00:00Z"),
        ("2026-11-24 10:00:00", "2026-11-24T10:00:00Z"),
        ("2026-11-24T10:00", "2026-11-24T10:00:00Z"),
        ("2026-11-24T10:00:00.5Z", "2026-11-24T10:00:00.500000Z"),
        ("2026-11-24T10:00:00.000Z", "2026-11-24T10:00:00Z"),
        ("2026-11-24T10:00:00.123456789+00:00"[:32], "2026-11-24T10:00:00.123456Z"),
    ],
)
def test_a_status_time_has_one_spelling(given: str, kept: str) -> None:
    assert status_time(given) == kept


@pytest.mark.parametrize(
    ("given", "says"),
    [
        ("2026-11-24T10:0", "must be a UTC time like 2020-10-16T18:51:13Z"),
        ("2026-11-24", "must be a UTC time like 2020-10-16T18:51:13Z"),
        ("yesterday at ten", "must be a UTC time like 2020-10-16T18:51:13Z"),
        ("0001-01-01T00:00:00+14:00", "must be a UTC time like 2020-10-16T18:51:13Z"),
        ("2026-11-24T10:00:00.00000000000000000000Z", "is too long for a time"),
    ],
)
def test_a_status_time_is_refused_with_its_reason(given: str, says: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(says)}$"):
        status_time(given)


def test_forty_characters_are_still_a_time() -> None:
    given = "2026-11-24T10:00:00.12345678901234+00:00"
    assert len(given) == 40
    assert status_time(given) == "2026-11-24T10:00:00.123456Z"


def test_a_status_time_is_utc_whatever_the_machines_zone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        assert status_time("2026-11-24T13:00:00+03:00") == "2026-11-24T10:00:00Z"
        utc = datetime.now(UTC).replace(tzinfo=None)
        stamp = datetime.fromisoformat(now_text().removesuffix("Z"))
        assert abs((stamp - utc).total_seconds()) < 5  # not Tokyo's time
    finally:
        monkeypatch.undo()
        time.tzset()


def test_now_is_utc_to_the_millisecond() -> None:
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", now_text())


def test_an_event_becomes_the_row_the_model_applies() -> None:
    price = {"totalPrice": 3.25, "currency": "RUB", "invoicedParts": 2, "final": True}
    [event] = parse_callback([{**EVENT, "error_code": 6969, "price": price, "x": 1}], 10)
    assert event.row(AT) == [
        EVENT["message_uuid"],
        "price",
        "delivered",
        "2026-11-24T10:00:00Z",
        "6969",
        PRICE,
        "WHATSAPP",
        "callback",
        AT,
    ]
    [bare] = parse_callback([EVENT], 10)
    assert bare.row(AT)[4:6] == ["", ""]


@pytest.mark.parametrize(
    ("field", "value", "ok"),
    [
        ("error_code", 2**31 - 1, True),
        ("error_code", 2**31, False),
        ("error_code", -(2**31), True),
        ("error_code", -(2**31) - 1, False),
        ("error_code", True, False),
        ("error_code", "6969", False),
        ("cascade_step", 1000, True),
        ("cascade_step", 1001, False),
        ("cascade_step", -1, False),
        ("cascade_message_uuid", "u" * 64, True),
        ("cascade_message_uuid", "u" * 65, False),
        ("message_uuid", "a" * 64, True),
        ("message_uuid", "a" * 65, False),
        ("message_uuid", "A9-_.", True),
        ("message_uuid", "-a", False),
        ("message_uuid", "a b", False),
        ("message_uuid", "a:b", False),
        ("message_uuid", "a\n", False),
        ("channel_type", "A" * 32, True),
        ("channel_type", "A" * 33, False),
        ("channel_type", "Sms", False),
        ("channel_type", "", False),
        ("status", "s" * 32, True),
        ("status", "s" * 33, False),
        ("status", "Sent", False),
        ("status", "", False),
        ("callback_event", "a_b", True),
        ("callback_event", "a-b", False),
        ("status_time", "2026-11-24T10:00:00Z".ljust(41), False),
        ("price", {"totalPrice": 1e12}, True),
        ("price", {"totalPrice": 1.000001e12}, False),
        ("price", {"totalPrice": 0}, True),
        ("price", {"totalPrice": -0.01}, False),
        ("price", {"totalPrice": "1.5"}, False),
        ("price", {"currency": "ABCDEFGH"}, True),
        ("price", {"currency": "ABCDEFGHI"}, False),
        ("price", {"invoicedParts": 1_000_000}, True),
        ("price", {"invoicedParts": 1_000_001}, False),
        ("price", {"invoicedParts": -1}, False),
        ("price", {"final": 1}, False),
        ("price", [], False),
    ],
)
def test_every_bound_of_an_event(field: str, value: Any, ok: bool) -> None:
    body = [EVENT, {**EVENT, field: value}]
    if ok:
        assert len(parse_callback(body, 2)) == 2
        return
    with pytest.raises(BadEventError, match=f"^event 1: {field}"):
        parse_callback(body, 2)


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"events": []}, "the body must be a JSON array of events"),
        ([EVENT, 7], "event 1: event: Input should be a valid dictionary"),
        ([{k: v for k, v in EVENT.items() if k != "status"}], "event 0: status: Field required"),
        ([{**EVENT, "status_time": "soon"}], "event 0: status_time: must be a UTC time like"),
        ([{**EVENT, "price": {"totalPrice": "x"}}], "event 0: price.totalPrice: Input should"),
    ],
)
def test_a_refusal_names_the_event_and_the_field(body: Any, says: str) -> None:
    with pytest.raises(BadEventError) as refused:
        parse_callback(body, 10)
    assert str(refused.value).startswith(says)


def test_the_event_limit() -> None:
    assert len(parse_callback([EVENT] * 3, 3)) == 3
    with pytest.raises(TooManyEventsError, match=r"^4 events, over the limit of 3$"):
        parse_callback([EVENT] * 4, 3)
    assert parse_callback([], 3) == []


LOOKED_UP: dict[str, Any] = {
    "messageUuid": "u-1",
    "status": "undelivered",
    "statusTime": "2026-11-24T10:00:00+00:00",
    "errorCode": 6969,
    "channelType": "SMS",
    "price": {"totalPrice": 3.25, "currency": "RUB", "invoicedParts": 2, "final": True},
}


def test_a_looked_up_message_becomes_a_poll_row() -> None:
    assert lookup_row(LOOKED_UP, AT) == [
        "u-1",
        "poll",
        "undelivered",
        "2026-11-24T10:00:00Z",
        "6969",
        PRICE,
        "SMS",
        "poll",
        AT,
    ]
    bare = {"messageUuid": "u-1", "status": "sent", "statusTime": "2026-11-24T10:00:00Z"}
    assert lookup_row(bare, AT) == [
        "u-1",
        "poll",
        "sent",
        "2026-11-24T10:00:00Z",
        "",
        "",
        "",
        "poll",
        AT,
    ]


@pytest.mark.parametrize(
    "change",
    [
        {"messageUuid": None},
        {"messageUuid": 7},
        {"messageUuid": "u 1"},
        {"messageUuid": "u-1\n"},
        {"status": None},
        {"status": "Sent"},
        {"status": "sent\n"},
        {"statusTime": None},
        {"statusTime": 1700000000},
        {"statusTime": "later"},
    ],
)
def test_an_unusable_looked_up_message_is_skipped(change: dict[str, Any]) -> None:
    assert lookup_row({**LOOKED_UP, **change}, AT) is None


def test_a_lookup_keeps_each_part_within_bounds() -> None:
    assert lookup_row([LOOKED_UP], AT) is None

    def kept(**change: Any) -> list[str]:
        row = lookup_row({**LOOKED_UP, **change}, AT)
        assert row is not None
        return row[4:6]

    assert kept(errorCode=2**31 - 1)[0] == str(2**31 - 1)
    assert kept(errorCode=2**31)[0] == ""
    assert kept(errorCode=-(2**31))[0] == str(-(2**31))
    assert kept(errorCode=-(2**31) - 1)[0] == ""
    assert kept(errorCode=True)[0] == ""
    assert kept(errorCode="6969")[0] == ""
    assert kept(price=None)[1] == ""
    assert kept(price={})[1] == ""
    assert kept(price="3.25")[1] == ""
    assert kept(price={"totalPrice": "3.25", "final": "yes"})[1] == ""
    nulls = '{"currency":null,"final":null,"invoicedParts":null,"totalPrice":%s}'
    assert kept(price={"totalPrice": 3})[1] == nulls % "3"
    assert kept(price={"totalPrice": 0})[1] == nulls % "0"
    assert kept(price={"totalPrice": 0.5})[1] == nulls % "0.5"
    assert kept(price={"invoicedParts": 0})[1] == (
        '{"currency":null,"final":null,"invoicedParts":0,"totalPrice":null}'
    )
    assert kept(price={"totalPrice": 1e12})[1] == nulls % "1000000000000.0"
    assert kept(price={"totalPrice": 1.5e12, "final": False})[1] == (
        '{"currency":null,"final":false,"invoicedParts":null,"totalPrice":null}'
    )
    for bad in (-1, float("nan"), float("inf"), True):
        assert kept(price={"totalPrice": bad, "final": True})[1] == (
            '{"currency":null,"final":true,"invoicedParts":null,"totalPrice":null}'
        )
    assert kept(price={"currency": "ABCDEFGH"})[1] == (
        '{"currency":"ABCDEFGH","final":null,"invoicedParts":null,"totalPrice":null}'
    )
    assert kept(price={"currency": "ABCDEFGHI"})[1] == ""
    assert kept(price={"invoicedParts": 1_000_000})[1] == (
        '{"currency":null,"final":null,"invoicedParts":1000000,"totalPrice":null}'
    )
    for bad_parts in (1_000_001, -1, True, 1.0):
        assert kept(price={"invoicedParts": bad_parts})[1] == ""
