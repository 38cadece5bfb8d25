"""The messages the sandbox created, where each one is in its lifecycle, and the API's lookup
(`GET /api/v1/message`): filters, paging and the message objects it answers."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sandbox.rules import ApiError

if TYPE_CHECKING:
    from starlette.datastructures import QueryParams

    from sandbox.callbacks import CallbackPlan

#: Status times as the callbacks show them (notes.md): UTC, to the second.
STATUS_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
#: errorCode of a message that ends undelivered or unsent (6969 is the docs' example; the
#: code list is not published, 6001 is a stand-in).
ERROR_CODES = {"undelivered": 6969, "unsent": 6001}
#: Statuses before the final one: no errorCode yet, and the price is not final.
NOT_FINAL = frozenset({"sending", "sent"})
#: The lookup's limit on how deep paging reaches (notes.md, Getting messages).
MAX_PAGE_DEPTH = 10_000
#: Repeatable filters on a field as sent: query parameter → field of the message object.
FIELD_FILTERS = {
    "destination": "destination",
    "channel_type": "channelType",
    "sender_name": "senderName",
}


def utc(moment: float) -> str:
    return time.strftime(STATUS_TIME_FORMAT, time.gmtime(moment))


class Message:
    """One created message: the object as sent, the truth it will reach (drawn at creation),
    and its status now. Slots: 100,000 of them stay small."""

    __slots__ = (
        "callback",
        "charge",
        "created",
        "fields",
        "final_status",
        "index",
        "read",
        "sent_due",
        "sent_time",
        "status",
        "status_time",
        "uuid",
    )

    def __init__(
        self,
        uuid: str,
        fields: dict[str, Any],
        created: float,
        final_status: str,
        charge: float,
    ) -> None:
        self.uuid = uuid
        self.fields = fields
        self.created = created
        self.final_status = final_status
        self.charge = charge
        self.read = False  # whether it will be read after being delivered
        self.index = 0
        self.status = "sending"
        self.status_time = created
        self.sent_time: float | None = None
        self.sent_due = created  # when its `sent` step is planned
        self.callback: CallbackPlan | None = None

    def price(self) -> dict[str, Any] | None:
        """None until sent; final with the final status. An unsent message costs nothing."""
        if self.status == "sending":
            return None
        if self.status == "unsent":
            return {"totalPrice": 0, "currency": "RUB", "invoicedParts": 0, "final": True}
        return {
            "totalPrice": self.charge,
            "currency": "RUB",
            "invoicedParts": 1,
            "final": self.status not in NOT_FINAL,
        }

    @property
    def error_code(self) -> int | None:
        """The errorCode of its final status (shown once it has that status)."""
        return ERROR_CODES.get(self.final_status)

    def current_error(self) -> int | None:
        return None if self.status in NOT_FINAL else self.error_code

    def api_view(self) -> dict[str, Any]:
        """The lookup's message object: its state first, then the fields as sent (a sent field
        never hides a state field of the same name)."""
        view: dict[str, Any] = {
            "messageUuid": self.uuid,
            "externalMessageId": self.fields.get("externalMessageId"),
            "status": self.status,
            "statusTime": utc(self.status_time),
            "sentTime": None if self.sent_time is None else utc(self.sent_time),
            "errorCode": self.current_error(),
            "price": self.price(),
        }
        for key, value in self.fields.items():
            view.setdefault(key, value)
        return view


@dataclass(frozen=True)
class Query:
    """A lookup: every filter given must match (values of one filter are alternatives)."""

    uuids: tuple[str, ...]
    fields: dict[str, frozenset[str]]
    statuses: frozenset[str] | None
    tags: frozenset[str] | None
    time_from: float | None
    time_to: float | None
    page: int
    per_page: int

    def matches(self, message: Message) -> bool:
        sent = message.fields
        return (
            all(sent.get(field) in values for field, values in self.fields.items())
            and (self.statuses is None or message.status in self.statuses)
            and (self.tags is None or not self.tags.isdisjoint(sent.get("tags") or ()))
            and (self.time_from is None or message.created >= self.time_from)
            and (self.time_to is None or message.created <= self.time_to)
        )


def parse_query(params: QueryParams) -> Query | ApiError:
    """The lookup's query string, or the API's 422 error for it. Unknown parameters are
    ignored, as the API ignores unknown fields."""
    page, per_page = _positive(params.get("page", "1")), _positive(params.get("per_page", "100"))
    if page is None:
        return (4220, f"Invalid page: {params['page']}")
    if per_page is None:
        return (4220, f"Invalid per_page: {params['per_page']}")
    if page * per_page > MAX_PAGE_DEPTH:
        return (4220, f"page * per_page must not exceed {MAX_PAGE_DEPTH}")
    moments: list[float | None] = []
    for name in ("time_from", "time_to"):
        text = params.get(name)
        moment = None if text is None else _moment(text)
        if text is not None and moment is None:
            return (4220, f"Invalid {name}: {text}")
        moments.append(moment)
    fields = {
        field: frozenset(params.getlist(name))
        for name, field in FIELD_FILTERS.items()
        if name in params
    }
    return Query(
        uuids=tuple(params.getlist("message_uuid")),
        fields=fields,
        statuses=frozenset(params.getlist("status")) if "status" in params else None,
        tags=frozenset(params.getlist("tags")) if "tags" in params else None,
        time_from=moments[0],
        time_to=moments[1],
        page=page,
        per_page=per_page,
    )


def _positive(text: str) -> int | None:
    if not (text.isascii() and text.isdigit() and len(text) <= 9) or int(text) < 1:
        return None
    return int(text)


def _moment(text: str) -> float | None:
    """UTC ISO time (`2020-01-01T00:00:00Z`); without an offset it is read as UTC."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


class Messages:
    """Every message created since the last reset, by uuid (a poller asks for 100 uuids at a
    time among 100,000: each is a dict lookup) and in creation order."""

    def __init__(self) -> None:
        self.by_uuid: dict[str, Message] = {}
        self.ordered: list[Message] = []

    def add(self, messages: list[Message]) -> None:
        for message in messages:
            message.index = len(self.ordered)
            self.ordered.append(message)
            self.by_uuid[message.uuid] = message

    def find(self, query: Query) -> list[Message]:
        """One page of the matching messages, in creation order."""
        candidates = self.ordered
        if query.uuids:
            found = {m.index: m for u in query.uuids if (m := self.by_uuid.get(u)) is not None}
            candidates = [found[i] for i in sorted(found)]
        skip = (query.page - 1) * query.per_page
        page: list[Message] = []
        for message in candidates:
            if not query.matches(message):
                continue
            if skip:
                skip -= 1
                continue
            page.append(message)
            if len(page) == query.per_page:
                break
        return page

    def progress(self, uuid: str) -> dict[str, Any]:
        """For `/_sandbox/received`: status now, the final status it will reach, and the unix
        time of the status now; all null for what has no lifecycle (conversions)."""
        message = self.by_uuid.get(uuid)
        if message is None:
            return {"status": None, "finalStatus": None, "statusTime": None}
        return {
            "status": message.status,
            "finalStatus": message.final_status,
            "statusTime": message.status_time,
        }
