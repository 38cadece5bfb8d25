"""Fields every channel shares, and the scheduling fields of SMS, WHATSAPP and VK."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Annotated, Self

from pydantic import AfterValidator, ValidationInfo, model_validator

from tasks.contract.base import ApiObject
from tasks.contract.context import context_of
from tasks.contract.fields import (
    CallbackEvents,
    Days,
    Destination,
    Hours,
    HttpUrl,
    SenderName,
    Tags,
    Ttl,
    documented,
    rule_error,
)

LOCAL_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
# ASCII: `\d` would also take full-width or Arabic-Indic digits (so would strptime),
# which the API cannot read as a date. The published pattern keeps `\d`: JSON Schema's
# regex dialect (ECMA-262) reads it as [0-9].
_LOCAL_TIME = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}", re.ASCII)
SEND_TIME_PAST = timedelta(hours=12)
SEND_TIME_FUTURE = timedelta(days=7)
COMPLETION_TIME_FUTURE = timedelta(days=70)


def _check_local_time(value: str) -> str:
    if _LOCAL_TIME.fullmatch(value):
        try:
            datetime.strptime(value, LOCAL_TIME_FORMAT)
        except ValueError:
            pass
        else:
            return value
    raise rule_error("local_time", "must be a date and time 'YYYY-MM-DD hh:mm:ss'")


LocalTime = Annotated[
    str,
    AfterValidator(_check_local_time),
    documented(pattern=f"^{_LOCAL_TIME.pattern}$", description="YYYY-MM-DD hh:mm:ss"),
]


class Addressing(ApiObject):
    """Who sends, to whom, and where delivery reports go: the same on every channel."""

    senderName: SenderName
    destination: Destination
    tags: Tags | None = None
    callbackUrl: HttpUrl | None = None
    callbackEvents: CallbackEvents | None = None


class Scheduling(ApiObject):
    """When the API may deliver an SMS, WHATSAPP or VK message.

    The windows are checked against UTC `now` as the docs state, although the times are read
    in the subscriber's (or Moscow) time zone: the server compares the strings as given.
    """

    useLocalTime: bool | None = None
    localSendTime: LocalTime | None = None
    localCompletionTime: LocalTime | None = None
    ttl: Ttl | None = None
    hours: Hours | None = None
    days: Days | None = None
    shortUrl: bool | None = None

    @model_validator(mode="after")
    def _check_windows(self, info: ValidationInfo) -> Self:
        now = context_of(info).now
        send = _parse(self.localSendTime)
        if send is not None:
            _within(
                "localSendTime",
                send,
                low=(now - SEND_TIME_PAST, "now - 12 h"),
                high=(now + SEND_TIME_FUTURE, "now + 7 days"),
            )
        completion = _parse(self.localCompletionTime)
        if completion is not None:
            # Without a send time the message goes out at once; a completion time may still be
            # as early as the earliest allowed send time (local clocks trail UTC by <= 12 h).
            low = (send, "localSendTime") if send else (now - SEND_TIME_PAST, "now - 12 h")
            _within(
                "localCompletionTime",
                completion,
                low=low,
                high=(now + COMPLETION_TIME_FUTURE, "now + 70 days"),
            )
        return self


def _parse(value: str | None) -> datetime | None:
    return None if value is None else datetime.strptime(value, LOCAL_TIME_FORMAT)


Bound = tuple[datetime, str]  # the limit, and how the docs name it


def _within(field: str, value: datetime, *, low: Bound, high: Bound) -> None:
    for (limit, name), broken, word in (
        (low, value < low[0], "earlier"),
        (high, value > high[0], "later"),
    ):
        if broken:
            raise rule_error(
                "time_window",
                "must not be " + word + " than {bound} ({name}, UTC)",
                field=field,
                bound=limit.strftime(LOCAL_TIME_FORMAT),
                name=name,
            )
