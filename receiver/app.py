"""The callback receiver as an ASGI app: `POST /callbacks`, probes and metrics.

An event answered 200 is in Redis: the whole body is checked first (any bad event refuses the
request, nothing of it is recorded), then every event is applied in one script call, and only
its success is answered 200. Redis unreachable is a 503, so the sender retries; repeats are
recorded once. No body, however hostile, gets a 500: every failure has its 4xx or 503.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import orjson
import redis
import redis.asyncio
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from config import Settings
from receiver import metrics
from receiver.access import Access
from tasks.keys import Keys
from tasks.tracking.events import (
    BadEventError,
    CallbackEvent,
    TooManyEventsError,
    now_text,
    parse_callback,
)
from tasks.tracking.store import AsyncStatusStore

log = logging.getLogger(__name__)
CALLBACKS_PATH = "/callbacks"


class Refused(Exception):  # noqa: N818 - an answer, not an error of ours
    """A request answered without recording anything: its status, metric label and reason."""

    def __init__(self, status: int, outcome: str, reason: str) -> None:
        super().__init__(reason)
        self.status, self.outcome = status, outcome


def _answer(status: int, outcome: str, body: dict[str, Any]) -> Response:
    metrics.REQUESTS.labels(outcome).inc()
    headers = {"WWW-Authenticate": 'Basic realm="callbacks"'} if status == 401 else None
    return Response(orjson.dumps(body), status, headers, media_type="application/json")


class Receiver:
    def __init__(self, settings: Settings, client: redis.asyncio.Redis) -> None:
        self.settings = settings
        self.access = Access.from_settings(settings)
        self.client = client
        self.store = AsyncStatusStore(client, Keys(settings.dispatch_key_prefix), settings)

    async def callbacks(self, request: Request) -> Response:
        try:
            events = await self._events(request)
        except Refused as refused:
            return _answer(refused.status, refused.outcome, {"error": str(refused)})
        received = now_text()
        try:
            recorded = await self.store.record([e.row(received) for e in events])
        except (redis.RedisError, OSError) as error:
            log.warning("callbacks: %d event(s) refused, Redis: %s", len(events), error)
            return _answer(503, "unavailable", {"error": "cannot record now; retry"})
        metrics.STATUS.observe(recorded, "callback")
        counts = recorded.results
        return _answer(
            200,
            "ok",
            {
                "received": len(events),
                "recorded": counts["changed"] + counts["final"],
                "duplicates": counts["duplicate"],
                "stale": counts["stale"],
                "parked": counts["parked"],
            },
        )

    async def _events(self, request: Request) -> list[CallbackEvent]:
        """The request's events, checked whole; raises Refused."""
        caller = self.access.caller(
            request.client.host if request.client else None,
            # Every line of the header: a proxy may add its own line instead of appending.
            ", ".join(request.headers.getlist("x-forwarded-for")),
        )
        if not self.access.allowed(caller):
            raise Refused(403, "forbidden", "callbacks are not taken from here")
        if not self.access.authorized(request.headers.get("authorization")):
            raise Refused(401, "unauthorized", "bad or missing credentials")
        try:
            body = orjson.loads(await self._body(request))
        except orjson.JSONDecodeError:
            raise Refused(400, "malformed", "the body is not valid JSON") from None
        except ClientDisconnect:
            raise Refused(400, "malformed", "the body was cut short") from None
        try:
            return parse_callback(body, self.settings.callback_max_events)
        except TooManyEventsError as error:
            raise Refused(413, "too_large", str(error)) from None
        except BadEventError as error:
            raise Refused(400, "malformed", str(error)) from None

    async def _body(self, request: Request) -> bytes:
        """The body, refused as soon as it is known to be too large (its Content-Length, or
        what has arrived), so a 10 MB body is never held whole."""
        limit = self.settings.callback_max_body_bytes
        too_large = Refused(413, "too_large", f"the body is over {limit} bytes")
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise too_large
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise too_large
            chunks.append(chunk)
        return b"".join(chunks)

    async def ready(self, request: Request) -> Response:
        """Ready while Redis answers: a receiver that cannot record should get no callbacks."""
        try:
            await self.client.ping()
        except (redis.RedisError, OSError):
            return PlainTextResponse("redis unavailable", 503)
        return PlainTextResponse("ready")


async def alive(request: Request) -> Response:
    return PlainTextResponse("ok")


async def metrics_page(request: Request) -> Response:
    return Response(generate_latest(metrics.REGISTRY), media_type=CONTENT_TYPE_LATEST)


def create_app(settings: Settings) -> Starlette:
    client = redis.asyncio.Redis.from_url(
        settings.redis_url, socket_connect_timeout=2, socket_timeout=5
    )
    receiver = Receiver(settings, client)
    if receiver.access.credentials is None:
        log.warning(
            "callbacks: no CALLBACK_USERNAME/CALLBACK_PASSWORD: anyone who can reach this "
            "port%s can record delivery statuses",
            " (within CALLBACK_ALLOW_FROM)" if receiver.access.allow_from else "",
        )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await client.aclose()

    routes = [
        Route(CALLBACKS_PATH, receiver.callbacks, methods=["POST"]),
        Route("/healthz", alive, methods=["GET"]),
        Route("/readyz", receiver.ready, methods=["GET"]),
        Route("/metrics", metrics_page, methods=["GET"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan)
