"""Callbacks: events POSTed to each message's callbackUrl as a provider sends them.

Events due together for one URL go in one POST (a JSON array, at most 100), at most 4 POSTs in
flight per URL, one shared client. A POST that fails (non-2xx, or no connection) is retried,
then its events are given up. What happens to each event (dropped, duplicated, held back) was
drawn at the message's creation (`CallbackPlan`); here it is only carried out and counted.
"""

from __future__ import annotations

import asyncio
import base64
from collections import Counter, deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from sandbox.messages import Message, utc

#: A provider's batch: at most this many events in one POST.
MAX_EVENTS_PER_POST = 100
#: POSTs in flight to one URL at a time.
MAX_IN_FLIGHT_PER_URL = 4
#: A URL's first POST waits this long, so events due at about the same time share it.
GROUP_WINDOW_S = 0.02
#: A receiver that does not answer in time counts as a failed POST.
TIMEOUT = httpx.Timeout(10.0, connect=3.0)
#: The order of a message's events within one step.
EVENT_ORDER = ("sent", "delivered", "price", "read")
#: The counters of `GET /_sandbox/callbacks`, in the order shown (`pending` follows them).
STAT_NAMES = (
    "postsAttempted",
    "postsOk",
    "postsFailed",
    "eventsSent",
    "duplicatesSent",
    "dropped",
    "givenUp",
    "notAllowed",
)


@dataclass(eq=False)
class Route:
    """One callbackUrl: where its POSTs go, with the credentials its userinfo carried."""

    host: str
    target: httpx.URL
    headers: dict[str, str]
    queue: deque[Event] = field(default_factory=deque)
    workers: int = 0


@dataclass(eq=False, slots=True)
class Event:
    """One event to POST; `followers` are queued once the POST carrying it has ended, so they
    travel in a later POST (a duplicate's copy, a held-back `sent` event)."""

    body: dict[str, Any]
    copy: bool = False
    followers: list[Event] = field(default_factory=list)


@dataclass(eq=False, slots=True)
class CallbackPlan:
    """A message's callbacks, drawn at creation: the events it will send (dropped ones are
    not among them), which are sent twice, and whether its `sent` event is held back until
    its final event has been POSTed."""

    route: Route
    events: frozenset[str]
    dropped: frozenset[str]
    duplicated: frozenset[str]
    hold_sent: bool
    held: Event | None = None


class Callbacks:
    """The sender: a route per callbackUrl with its queue and POSTs in flight, and the counters."""

    def __init__(self) -> None:
        self.stats: Counter[str] = Counter()
        #: Events drawn at creation and not yet acknowledged or given up: a gauge, 0 once
        #: every callback of every message has been dealt with.
        self.pending = 0
        self.retries = 0
        self.retry_delay_s = 0.0
        self._routes: dict[str, Route | None] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._client: httpx.AsyncClient | None = None

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """The shared client, for the app's lifetime. No proxy or netrc from the environment:
        a callback goes straight where the message said."""
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
        async with httpx.AsyncClient(timeout=TIMEOUT, limits=limits, trust_env=False) as client:
            self._client = client
            try:
                yield
            finally:
                tasks = list(self._tasks)
                self.clear()
                await asyncio.gather(*tasks, return_exceptions=True)
                self._client = None

    def clear(self) -> None:
        """Forget every queued event and stop every POST (a reset)."""
        for task in self._tasks:
            task.cancel()
        self._routes = {}
        self.stats.clear()
        self.pending = 0

    def clear_stats(self) -> None:
        """Zero the counters; `pending` is a gauge of events still to come and stays."""
        self.stats.clear()

    def report(self) -> dict[str, int]:
        return {name: self.stats[name] for name in STAT_NAMES} | {"pending": self.pending}

    def route(self, url: str) -> Route | None:
        """The route of a callbackUrl (parsed once per URL), None if httpx cannot read it."""
        if url not in self._routes:
            self._routes[url] = _parse_route(url)
        return self._routes[url]

    def expect(self, events: int) -> None:
        self.pending += events

    def withdraw(self, message: Message, names: frozenset[str]) -> None:
        """Events of `message` that will never happen now (it was stopped before being sent):
        out of its plan, and out of the events still to come."""
        plan = message.callback
        if plan is None:
            return
        gone = plan.events & names
        self.pending -= len(gone) + len(plan.duplicated & gone)
        plan.events -= gone
        plan.duplicated -= gone

    def refuse(self) -> None:
        """A message whose callbackUrl's host is not allowed: its events are never sent."""
        self.stats["notAllowed"] += 1

    def fire(self, message: Message, names: tuple[str, ...], at: float, final: bool) -> None:
        """The events `names` of `message`, as of its status at `at`; with its final status,
        also the `sent` event held back, after the final ones."""
        plan = message.callback
        if plan is None:
            return
        last: Event | None = None
        for name in names:
            if name in plan.dropped:
                self.stats["dropped"] += 1
            if name not in plan.events:
                continue
            event = Event(_event_body(message, name, at))
            if name in plan.duplicated:
                event.followers.append(Event(event.body, copy=True))
            if name == "sent" and plan.hold_sent:
                plan.held = event
                continue
            self._queue(plan.route, event)
            last = event
        if final and plan.held is not None:
            if last is None:
                self._queue(plan.route, plan.held)
            else:
                last.followers.append(plan.held)
            plan.held = None

    def _queue(self, route: Route, event: Event) -> None:
        route.queue.append(event)
        client = self._client
        if (
            client is not None
            and route.workers < MAX_IN_FLIGHT_PER_URL
            and route.workers * MAX_EVENTS_PER_POST < len(route.queue)
        ):
            route.workers += 1
            task = asyncio.create_task(self._work(route, client))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _work(self, route: Route, client: httpx.AsyncClient) -> None:
        try:
            await asyncio.sleep(GROUP_WINDOW_S)
            while route.queue:
                batch = [
                    route.queue.popleft() for _ in range(min(MAX_EVENTS_PER_POST, len(route.queue)))
                ]
                delivered = await self._post(route, client, batch)
                self.pending -= len(batch)
                for event in batch:
                    if not delivered:
                        self.stats["givenUp"] += 1
                    elif event.copy:
                        self.stats["duplicatesSent"] += 1
                    else:
                        self.stats["eventsSent"] += 1
                    for follower in event.followers:
                        self._queue(route, follower)
        finally:
            route.workers -= 1

    async def _post(self, route: Route, client: httpx.AsyncClient, batch: list[Event]) -> bool:
        """POST the batch, retried `retries` times every `retry_delay_s`: whether it got a 2xx."""
        body = orjson.dumps([event.body for event in batch])
        retries, delay = self.retries, self.retry_delay_s
        for attempt in range(retries + 1):
            if attempt:
                await asyncio.sleep(delay)
            self.stats["postsAttempted"] += 1
            try:
                response = await client.post(route.target, content=body, headers=route.headers)
            except httpx.HTTPError:
                self.stats["postsFailed"] += 1
                continue
            if response.is_success:
                self.stats["postsOk"] += 1
                return True
            self.stats["postsFailed"] += 1
        return False


def _parse_route(url: str) -> Route | None:
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError):  # idna's errors (ValueError) escape for some hosts
        return None
    headers = {"Content-Type": "application/json"}
    if parsed.userinfo:  # `https://login:password@host/…`: Basic credentials, not sent in the URL
        secret = f"{parsed.username}:{parsed.password}".encode()
        headers["Authorization"] = f"Basic {base64.b64encode(secret).decode()}"
    return Route(parsed.host, parsed.copy_with(userinfo=b""), headers)


def _event_body(message: Message, name: str, at: float) -> dict[str, Any]:
    """An event as notes.md shows one (the cascade fields are optional and left out)."""
    status = "sent" if name == "sent" else "read" if name == "read" else message.final_status
    body: dict[str, Any] = {
        "message_uuid": message.uuid,
        "channel_type": message.fields["channelType"],
        "callback_event": name,
        "status": status,
        "status_time": utc(at),
    }
    if status == message.final_status and message.error_code is not None:
        body["error_code"] = message.error_code
    if name == "price":
        # Our reading: the docs list a `price` event but show none, so nothing says where its
        # amount travels; it carries the lookup's price object.
        body["price"] = message.price()
    return body
