"""Events as they reach us, checked and turned into the rows `lua/status.lua` applies.

Callbacks are checked strictly (the receiver answers 400 naming the event and field of the
first problem); lookup answers come from the API we called, so a malformed item there is
skipped, never fatal.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Annotated, Any, TypeGuard

import orjson
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

#: What a messageUuid may be: the API's are UUIDs; anything else is stored as a key name.
MESSAGE_UUID = r"[A-Za-z0-9][A-Za-z0-9\-_.]{0,63}"

Row = list[str]  # see lua/status.lua: uuid, event, status, statusTime, errorCode, price, ...
#: Bounds of what an event may carry, callbacks and lookups alike.
INT32 = (-(2**31), 2**31 - 1)
MAX_PRICE = 1e12
MAX_PARTS = 1_000_000
#: A status or event the API may add one day: taken, and changing nothing (a 400 would lose
#: the other events of its body).
WORD = r"[a-z_]{1,32}"


def status_time(value: str) -> str:
    """A status time in one spelling (`2020-10-16T18:51:13Z`), so a repeated event is found
    however its sender wrote the time; a time without a zone is UTC, as the docs say."""
    if len(value) > 40:
        raise ValueError("is too long for a time")
    try:
        if len(value) < 16:  # a date alone, or no minutes
            raise ValueError
        moment = datetime.fromisoformat(value)
        if moment.tzinfo is not None:
            moment = moment.astimezone(UTC).replace(tzinfo=None)
    except (ValueError, OverflowError):  # OverflowError: year 1 at +14:00 is before year 1
        raise ValueError("must be a UTC time like 2020-10-16T18:51:13Z") from None
    spec = "microseconds" if moment.microsecond else "seconds"
    return moment.isoformat(timespec=spec) + "Z"


def now_text() -> str:
    return datetime.now(UTC).replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


class CallbackPrice(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    totalPrice: Annotated[float, Field(ge=0, le=MAX_PRICE, allow_inf_nan=False)] | None = None
    currency: Annotated[str, StringConstraints(max_length=8)] | None = None
    invoicedParts: Annotated[int, Field(ge=0, le=MAX_PARTS)] | None = None
    final: bool | None = None


class CallbackEvent(BaseModel):
    """One event of a callback body (notes.md: "Callback events"). Unknown fields are
    ignored and unknown statuses or events change nothing (a provider adds them); `price` is
    our reading: the docs do not show where a `price` event carries its amount, so an object
    like a lookup's `price` is taken."""

    model_config = ConfigDict(extra="ignore", strict=True)

    # Anchored: pydantic searches a pattern (its `$` is the text's end, as `\Z`).
    message_uuid: Annotated[str, StringConstraints(pattern=f"^{MESSAGE_UUID}$")]
    channel_type: Annotated[str, StringConstraints(pattern=r"^[A-Z_]{1,32}$")]
    callback_event: Annotated[str, StringConstraints(pattern=f"^{WORD}$")]
    status: Annotated[str, StringConstraints(pattern=f"^{WORD}$")]
    status_time: Annotated[str, StringConstraints(max_length=40)]
    error_code: Annotated[int, Field(ge=INT32[0], le=INT32[1])] | None = None
    cascade_message_uuid: Annotated[str, StringConstraints(max_length=64)] | None = None
    cascade_step: Annotated[int, Field(ge=0, le=1000)] | None = None
    price: CallbackPrice | None = None

    def row(self, received_at: str) -> Row:
        return [
            self.message_uuid,
            self.callback_event,
            self.status,
            status_time(self.status_time),
            "" if self.error_code is None else str(self.error_code),
            _price_json(self.price.model_dump() if self.price else None),
            self.channel_type,
            "callback",
            received_at,
        ]


class BadEventError(ValueError):
    """A callback body the receiver refuses (400); `str()` names the event and field."""


def parse_callback(body: Any, max_events: int) -> list[CallbackEvent]:
    """The events of a decoded callback body; raises BadEventError (or TooMany)."""
    if not isinstance(body, list):
        raise BadEventError("the body must be a JSON array of events")
    if len(body) > max_events:
        raise TooManyEventsError(f"{len(body)} events, over the limit of {max_events}")
    events = []
    for index, item in enumerate(body):
        try:
            event = CallbackEvent.model_validate(item)
            status_time(event.status_time)
        except ValidationError as error:
            first = error.errors(include_url=False, include_input=False)[0]
            field = ".".join(map(str, first["loc"])) or "event"
            raise BadEventError(f"event {index}: {field}: {first['msg']}") from None
        except ValueError as error:
            raise BadEventError(f"event {index}: status_time: {error}") from None
        events.append(event)
    return events


class TooManyEventsError(ValueError):
    """More events in one body than CALLBACK_MAX_EVENTS (413)."""


def lookup_row(item: Any, received_at: str) -> Row | None:
    """A message of a GET /api/v1/message answer as an event (`poll`); None when unusable."""
    if not isinstance(item, dict):
        return None
    uuid, status, when = item.get("messageUuid"), item.get("status"), item.get("statusTime")
    if not isinstance(uuid, str) or not re.fullmatch(MESSAGE_UUID, uuid):
        return None
    if not isinstance(status, str) or not re.fullmatch(WORD, status) or not isinstance(when, str):
        return None
    try:
        when = status_time(when)
    except ValueError:
        return None
    code = item.get("errorCode")
    code = code if _integer(code) and INT32[0] <= code <= INT32[1] else None
    price = item.get("price")
    return [
        uuid,
        "poll",
        status,
        when,
        "" if code is None else str(code),
        _price_json(price if isinstance(price, dict) else None),
        str(item.get("channelType") or ""),
        "poll",
        received_at,
    ]


def _price_json(price: dict[str, Any] | None) -> str:
    """The price in one spelling (sorted keys) so that an unchanged price compares equal; a
    part out of the callbacks' bounds (CallbackPrice) is left out, as is a price of none."""
    if not price:
        return ""
    amount, parts = price.get("totalPrice"), price.get("invoicedParts")
    currency, final = price.get("currency"), price.get("final")
    kept = {
        "totalPrice": amount if _number(amount) and 0 <= amount <= MAX_PRICE else None,
        "currency": currency if isinstance(currency, str) and len(currency) <= 8 else None,
        "invoicedParts": parts if _integer(parts) and 0 <= parts <= MAX_PARTS else None,
        "final": final if isinstance(final, bool) else None,
    }
    if not any(v is not None for v in kept.values()):
        return ""
    return orjson.dumps(kept, option=orjson.OPT_SORT_KEYS).decode()


def _number(value: object) -> TypeGuard[float]:
    return _integer(value) or (isinstance(value, float) and math.isfinite(value))


def _integer(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)
