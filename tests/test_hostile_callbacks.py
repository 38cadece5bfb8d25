"""Hostile callback bodies, in process: every event is an event or a 400 naming its index and
field, never an exception of another kind (the receiver would answer 500), and what is kept is
in one spelling. The receiver process itself is tested with such bodies in test_receiver.

`HYPOTHESIS_EXAMPLES` sets the examples per property (default 200; `make soak` raises it).
"""

from __future__ import annotations

import re
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from tasks.tracking.events import (
    BadEventError,
    TooManyEventsError,
    lookup_row,
    parse_callback,
    status_time,
)
from tests.test_hostile_contract import HOSTILE, any_text, json_values

EVENT = {
    "message_uuid": "9f0c1e8e-4b1f-4f1e-9a55-5c2d1d6a8b10",
    "channel_type": "SMS",
    "callback_event": "delivered",
    "status": "delivered",
    "status_time": "2026-11-24T10:00:00Z",
    "error_code": 6969,
    "price": {"totalPrice": 1.5, "currency": "RUB", "invoicedParts": 1, "final": True},
}
FIELDS = [*EVENT, "cascade_message_uuid", "cascade_step"]
TIMES = (
    st.sampled_from(
        [
            "2026-11-24T10:00:00Z",
            "2026-11-24T10:00:00+14:00",
            "0001-01-01T00:00:00+14:00",
            "9999-12-31T23:59:59-14:00",
            "2026-02-30T10:00:00Z",
            "2026-11-24 10:00:00",
            "2026-11-24T10:00",
            "2026-11-24",
            "２０２６-11-24T10:00:00Z",
        ]
    )
    | any_text
)
ONE_SPELLING = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{6})?Z$")


def check(body: Any) -> None:
    refused = ""
    try:
        events = parse_callback(body, max_events=10)
    except TooManyEventsError:
        return
    except BadEventError as error:
        refused = str(error)
    if refused:
        assert re.match(r"^(event \d+: \S|the body must be a JSON array)", refused), refused
        return
    for event in events:
        row = event.row("2026-11-24T10:00:01.000Z")
        assert ONE_SPELLING.match(row[3]), row
        assert row[0] == event.message_uuid


@HOSTILE
@given(json_values)
def test_any_json_value_is_an_event_list_or_a_400(body: Any) -> None:
    check(body)
    check([body])


@HOSTILE
@given(st.sampled_from(FIELDS), json_values | TIMES)
def test_any_value_in_any_field(field: str, value: Any) -> None:
    check([EVENT, {**EVENT, field: value}])


@HOSTILE
@given(TIMES)
def test_a_status_time_is_one_spelling_or_refused(value: str) -> None:
    try:
        kept = status_time(value)
    except ValueError:
        return
    assert ONE_SPELLING.match(kept)
    assert status_time(kept) == kept


@HOSTILE
@given(json_values)
def test_a_lookup_answer_item_is_a_row_or_skipped(item: Any) -> None:
    for candidate in (item, {**EVENT, "messageUuid": "u", "statusTime": item, "status": "sent"}):
        row = lookup_row(candidate, "2026-11-24T10:00:01.000Z")
        if row is not None:
            assert ONE_SPELLING.match(row[3])
            assert all(isinstance(cell, str) for cell in row)


def test_a_lookup_keeps_only_what_a_callback_could_carry() -> None:
    item = {
        "messageUuid": "u-1",
        "status": "delivered",
        "statusTime": "2026-11-24T10:00:00Z",
        "errorCode": 2**63,
        "price": {"totalPrice": True, "currency": "RUB" * 9, "invoicedParts": 1, "final": True},
    }
    row = lookup_row(item, "2026-11-24T10:00:01.000Z")
    assert row is not None
    assert row[4] == ""  # beyond 32 bits: left out
    assert row[5] == '{"currency":null,"final":true,"invoicedParts":1,"totalPrice":null}'
    assert lookup_row({**item, "status": "Delivered"}, "") is None
    assert lookup_row({**item, "messageUuid": "u 1"}, "") is None
