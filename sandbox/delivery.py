"""What becomes of a created message: the delivery plan (the control API's and the command
line's format), each message's fate drawn at creation with the seeded RNG, and the steps that
take it there (sending → sent → final, then read for some) and fire its callbacks.

Everything random is drawn when the message is created, so the truth is fixed at once and the
same seed, plan and requests give the same truth, whatever the receiver or the clock does.
"""

from __future__ import annotations

import math
import random
import time
from functools import partial
from typing import Annotated, Any, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from sandbox.callbacks import EVENT_ORDER, CallbackPlan, Callbacks
from sandbox.messages import NOT_FINAL, Message
from sandbox.timeline import Timeline

#: Channels with read statuses (notes.md, Message statuses).
READ_CHANNELS = frozenset({"VIBER", "VK", "WHATSAPP"})
#: The events of a message with a callbackUrl and no callbackEvents (the channel pages).
DEFAULT_EVENTS = ("delivered",)
#: How long a stop request takes to reach the operator: a message planned to be sent sooner
#: "may not be stopped" (202, and it is sent); the others become `unsent` that much later.
STOP_TAKES_S = 0.1
#: Item codes of `POST /api/v1/message/stop` (notes.md, Stopping messages).
STOPPED, MAY_NOT_BE_STOPPED, ALREADY_SENT = 200, 202, 403
#: How far the fractions of final statuses may sum away from 1.
SUM_TOLERANCE = 1e-9
#: The longest a step may be planned ahead: a day.
MAX_AFTER_MS = 86_400_000

Fraction = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]


class Delivery(BaseModel):
    """The delivery plan: applies to the messages created after it is set."""

    model_config = ConfigDict(extra="forbid")

    delivered: Fraction = 1.0
    undelivered: Fraction = 0.0
    unsent: Fraction = 0.0
    sentAfterMs: int = Field(50, ge=0, le=MAX_AFTER_MS)
    finalAfterMs: int = Field(200, ge=0, le=MAX_AFTER_MS)
    readFraction: Fraction = Field(0.0, description="Of delivered VIBER/VK/WHATSAPP: read.")
    price: float = Field(1.5, ge=0.0, le=1_000_000.0, allow_inf_nan=False)
    duplicateFraction: Fraction = 0.0
    reorderFraction: Fraction = 0.0
    dropFraction: Fraction = 0.0
    retries: int = Field(5, ge=0, le=100, description="Callback retries after the first POST.")
    retryDelayMs: int = Field(1000, ge=0, le=600_000)
    callbackHosts: list[str] = Field(
        default_factory=lambda: ["127.0.0.1", "localhost", "::1"],
        max_length=100,
        description="Hosts callbacks may be POSTed to; events for others are only counted.",
    )

    @field_validator("callbackHosts")
    @classmethod
    def _lower(cls, hosts: list[str]) -> list[str]:
        return [host.lower() for host in hosts]

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        total = self.delivered + self.undelivered + self.unsent
        if not math.isclose(total, 1.0, rel_tol=0.0, abs_tol=SUM_TOLERANCE):
            raise ValueError(f"delivered + undelivered + unsent must be 1, not {total}")
        if self.finalAfterMs < self.sentAfterMs:
            raise ValueError("finalAfterMs must not be less than sentAfterMs")
        return self


class Deliverer:
    """Draws each new message's fate and schedules its steps on the timeline."""

    def __init__(
        self, callbacks: Callbacks, plan: Delivery | None = None, seed: int | None = None
    ) -> None:
        self.callbacks = callbacks
        self.timeline = Timeline()
        self._seed = seed
        self.set(plan or Delivery())

    def set(self, plan: Delivery) -> None:
        """Take a plan, and restart the RNG: the same plan and requests give the same truth."""
        self.plan = plan
        self._random = random.Random(self._seed)
        self._hosts = frozenset(plan.callbackHosts)
        self.callbacks.retries = plan.retries
        self.callbacks.retry_delay_s = plan.retryDelayMs / 1000

    def create(self, uuids: list[str], objects: list[dict[str, Any]]) -> list[Message]:
        """The messages of one request, their fates drawn; one timeline entry per step.
        On the hot path of every request: a few µs a message."""
        now, plan, draw = time.time(), self.plan, self._random.random
        delivered, undelivered = plan.delivered, plan.delivered + plan.undelivered
        messages: list[Message] = []
        for uuid, fields in zip(uuids, objects, strict=True):
            fate = draw()
            if fate < delivered:
                final = "delivered"
                read = plan.readFraction > 0 and fields["channelType"] in READ_CHANNELS
            else:
                final = "undelivered" if fate < undelivered else "unsent"
                read = False
            message = Message(uuid, fields, now, final, plan.price)
            if read:
                message.read = draw() < plan.readFraction
            url = fields.get("callbackUrl")
            if url is not None:
                message.callback = self._callback_plan(message, url)
            messages.append(message)
        sent_at, final_at = now + plan.sentAfterMs / 1000, now + plan.finalAfterMs / 1000
        for message in messages:
            message.sent_due = sent_at
        sending = [m for m in messages if m.final_status != "unsent"]  # unsent: never sent
        if sending:
            self.timeline.schedule(sent_at, partial(self._sent, sending))
        self.timeline.schedule(final_at, partial(self._final, messages))
        reading = [m for m in messages if m.read]
        if reading:  # read as long after the final status as that took
            read_at = final_at + plan.finalAfterMs / 1000
            self.timeline.schedule(read_at, partial(self._read, reading))
        return messages

    def _callback_plan(self, message: Message, url: str) -> CallbackPlan | None:
        route = self.callbacks.route(url)
        if route is None or route.host not in self._hosts:
            self.callbacks.refuse()
            return None
        wanted = message.fields.get("callbackEvents") or DEFAULT_EVENTS
        names = [
            name
            for name in EVENT_ORDER
            if name in wanted
            and (name != "sent" or message.final_status != "unsent")
            and (name != "read" or message.read)
        ]
        if not names:
            return None
        plan, draw = self.plan, self._random.random
        # Drawn in EVENT_ORDER, never by iterating a set: its order changes with the hash seed.
        dropped = [n for n in names if plan.dropFraction and draw() < plan.dropFraction]
        events = [n for n in names if n not in dropped]
        duplicated = [
            n for n in events if plan.duplicateFraction and draw() < plan.duplicateFraction
        ]
        hold_sent = (
            "sent" in events and bool(plan.reorderFraction) and draw() < plan.reorderFraction
        )
        self.callbacks.expect(len(events) + len(duplicated))
        return CallbackPlan(
            route, frozenset(events), frozenset(dropped), frozenset(duplicated), hold_sent
        )

    def stop(self, message: Message) -> int:
        """One message's item code for a stop request. A message still `sending` is stopped
        (final `unsent`, its callback as for any final status) unless it is about to be sent;
        one `unsent` already stays so (200 again); one sent or final cannot be."""
        if message.status == "unsent" or message.final_status == "unsent":
            return STOPPED
        if message.status != "sending":
            return ALREADY_SENT
        now = time.time()
        if message.sent_due - now < STOP_TAKES_S:
            return MAY_NOT_BE_STOPPED
        message.final_status = "unsent"
        message.read = False
        self.callbacks.withdraw(message, frozenset({"sent", "read"}))
        self.timeline.schedule(now + STOP_TAKES_S, partial(self._final, [message]))
        return STOPPED

    def _sent(self, messages: list[Message], at: float) -> None:
        for message in messages:
            if message.final_status == "unsent":  # stopped meanwhile
                continue
            message.status = "sent"
            message.status_time = message.sent_time = at
            self.callbacks.fire(message, ("sent",), at, final=False)

    def _final(self, messages: list[Message], at: float) -> None:
        for message in messages:
            if message.status not in NOT_FINAL:  # stopped: its final status came earlier
                continue
            message.status = message.final_status
            message.status_time = at
            self.callbacks.fire(message, ("delivered", "price"), at, final=True)

    def _read(self, messages: list[Message], at: float) -> None:
        for message in messages:
            if not message.read:  # stopped meanwhile
                continue
            message.status = "read"
            message.status_time = at
            self.callbacks.fire(message, ("read",), at, final=False)
