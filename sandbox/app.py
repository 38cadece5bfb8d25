"""The sandbox as an ASGI app: the API's endpoints, and `/_sandbox/` controls.

Starlette rather than FastAPI: the API's bodies are validated by the sandbox's own rules
(`sandbox.rules`), so a model layer would only cost time on the hot path.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from sandbox.auth import Credentials
from sandbox.balance import DEFAULT_BALANCE, Amounts, Balance, any_key_type
from sandbox.callbacks import Callbacks
from sandbox.delivery import STOPPED, Deliverer, Delivery
from sandbox.faults import FaultPlan, Faults
from sandbox.messages import Messages, parse_query
from sandbox.recorder import Recorder
from sandbox.rules import APPROVED_SENDER_CHANNELS, TIME_FORMAT, ApiError, Validator, invalid

MESSAGE_PATH = "/api/v1/message"
BALANCE_PATH = "/api/v1/balance"
CONVERSION_PATH = "/api/v1/flashcall-conversion"
MAX_OBJECTS = 1000
STOP_PATH = "/api/v1/message/stop"
#: uuids one stop request may carry (notes.md, Stopping messages).
MAX_STOP_UUIDS = 10_000
#: The stop item code of a uuid the sandbox never created.
NOT_FOUND = 404
# Arrays and objects nested more than this many levels make the body invalid. The API's
# deepest container (array → message → content → buttons → button) is level 5; a JSON server
# refuses absurd nesting too (Jackson's default limit is 1000), and nothing deeper than this
# reaches a validator, an error message or the recorder (orjson writes at most 254 levels).
MAX_DEPTH = 32
LOG = logging.getLogger("sandbox")
# The text a proxy in front of the API answers for a status of its own.
STATUS_TEXT = {
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    504: "Gateway Timeout",
}


class DroppedConnection(Exception):  # noqa: N818 - what happened, not an error of the app
    """Raised after the response started: the server closes the socket mid-answer."""


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status, headers, media_type="application/json")


def error_response(status: int, code: int, msg: str) -> Response:
    return json_response(status, {"error": {"code": code, "msg": msg}})


def invalid_plan(error: ValidationError) -> Response:
    """400 with pydantic's errors. An input JSON cannot carry (the bytes of an unreadable
    body, an integer beyond 64 bits) is left out rather than failing the answer."""
    errors = [
        {key: value for key, value in item.items() if key != "input" or _jsonable(value)}
        for item in error.errors(include_url=False, include_context=False)
    ]
    return json_response(400, {"errors": errors})


def _jsonable(value: Any) -> bool:
    try:
        orjson.dumps(value)
    except TypeError:
        return False
    return True


class Sandbox:
    """All state of one sandbox process."""

    def __init__(
        self,
        credentials: Credentials,
        faults: Faults | None = None,
        flashcall_max_digits: int = 4,
        seed: int | None = None,
        delivery: Delivery | None = None,
        *,
        balance: float = DEFAULT_BALANCE,
    ) -> None:
        self.credentials = credentials
        self.plan = FaultPlan(faults, seed)
        self.recorder = Recorder()
        self.messages = Messages()
        self.callbacks = Callbacks()
        self.delivery = Deliverer(self.callbacks, delivery, seed)
        self.balance = Balance(balance)
        self.flashcall_max_digits = flashcall_max_digits
        self.frozen_now: datetime | None = None
        #: Bodies whose validation raised: answered 422, and a bug of the sandbox to fix.
        self.unexpected_errors = 0

    def now(self) -> datetime:
        return self.frozen_now or datetime.now(UTC).replace(tzinfo=None)

    @asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        """The callbacks' client, and the one task that moves every message through its
        statuses, for as long as the app serves."""
        async with self.callbacks.running():
            timeline = asyncio.create_task(self.delivery.timeline.run())
            try:
                yield
            finally:
                timeline.cancel()
                with suppress(asyncio.CancelledError):
                    await timeline

    async def api(self, request: Request) -> Response:
        arrived = time.time()
        index = self.recorder.next_request()
        body = await request.body()
        response = await self._answer(
            request.url.path, request.headers.get("authorization"), body, (index, arrived)
        )
        delay = self.plan.faults.answerDelayMs
        if delay and response.status_code == 200:
            await asyncio.sleep(delay / 1000)
        return response

    async def _answer(
        self, path: str, authorization: str | None, body: bytes, request: tuple[int, float]
    ) -> Response:
        injected = await self._injected_fault()
        if isinstance(injected, _DropResponse):
            return injected  # counted as dropped
        if injected is not None:
            return self._counted(injected)
        schemes = ("Basic",) if path == MESSAGE_PATH else ("Basic", "Bearer")
        auth_error = self.credentials.check(authorization, schemes)
        if auth_error is not None:
            return self._counted(error_response(*auth_error))
        return self._counted(self._create(path, body, request))

    async def _injected_fault(self) -> Response | None:
        """The faults asked for, on sends and lookups alike (an outage takes both)."""
        plan = self.plan
        if plan.faults.latencyMs:
            await asyncio.sleep(plan.faults.latencyMs / 1000)
        if plan.take_drop():
            self.recorder.count("dropped")
            return _DropResponse()
        if plan.take_hang():
            self.recorder.count("hung")
            await asyncio.Event().wait()
        fault = plan.take_status()
        return None if fault is None else _fault_response(fault.status, fault.retryAfter)

    def _counted(self, response: Response) -> Response:
        self.recorder.count(str(response.status_code))
        return response

    def _create(self, path: str, body: bytes, request: tuple[int, float]) -> Response:
        """Every body gets a documented answer: 200, or 422 (503 5030 for the shortener; 429
        over the rate limit)."""
        try:
            return self._validated_create(path, body, request)
        except Exception:
            # Last resort: a real server answers a body it cannot handle, it does not crash.
            # The known causes are fixed in the rules; the hostile tests check this stays 0.
            self.unexpected_errors += 1
            LOG.exception("validation of a %d-byte body to %s raised", len(body), path)
            return error_response(422, *invalid("request body"))

    def _validated_create(self, path: str, body: bytes, request: tuple[int, float]) -> Response:
        try:
            # orjson refuses invalid UTF-8, lone surrogates (`"\ud83d"`), NaN and numbers
            # beyond a double; all are unreadable bodies.
            objects = orjson.loads(body)
        except orjson.JSONDecodeError:
            return error_response(422, *invalid("request body"))
        if not isinstance(objects, list) or not objects or _too_deep(objects, MAX_DEPTH):
            return error_response(422, *invalid("request body"))
        self.recorder.sized(objects, _channels(objects) if path == MESSAGE_PATH else {"CONVERSION"})
        if len(objects) > MAX_OBJECTS:
            return error_response(422, 4220, "Max count of messages is 1000")
        retry_after = self.plan.take_tokens(len(objects))
        if retry_after is not None:
            return _fault_response(429, retry_after)
        error = self._first_error(path, objects)
        if error is not None:
            return error_response(503 if error[0] == 5030 else 422, *error)
        return self._created(path, objects, request)

    def _first_error(self, path: str, objects: list[Any]) -> ApiError | None:
        validator = Validator(self.now(), self.flashcall_max_digits)
        check = validator.message if path == MESSAGE_PATH else validator.conversion
        for obj in objects:
            error = check(obj) or self._injected_error(path, obj)
            if error is not None:
                return error
        return None

    def _injected_error(self, path: str, obj: dict[str, Any]) -> ApiError | None:
        if path != MESSAGE_PATH:
            return None
        plan = self.plan
        if plan.reject_destination and plan.reject_destination.search(obj["destination"]):
            return (4220, "Invalid msisdn")
        approved_names = obj["channelType"] in APPROVED_SENDER_CHANNELS
        if approved_names and plan.reject_sender and plan.reject_sender.search(obj["senderName"]):
            return (4220, f"No active sender name: ({obj['channelType']}, {obj['senderName']})")
        if plan.faults.shortenerDown and obj.get("shortUrl") is True:
            return (5030, "Url shortener is unavailable")
        return None

    def _created(self, path: str, objects: list[Any], request: tuple[int, float]) -> Response:
        items: list[dict[str, Any]] = []
        created_uuids: list[str] = []
        created: list[Any] = []
        item_codes = self.plan.item_codes if path == MESSAGE_PATH else []
        for obj in objects:
            code = next((c for rx, c in item_codes if rx.search(obj["destination"])), 201)
            if code == 201:
                message_uuid = str(uuid.uuid4())
                items.append({"messageUuid": message_uuid, "code": 201})
                created_uuids.append(message_uuid)
                created.append(obj)
            else:
                items.append({"code": code})
        self.recorder.record(request[0], path, created_uuids, created, request[1])
        if path == MESSAGE_PATH:
            self.messages.add(self.delivery.create(created_uuids, created))
            self.balance.charge(len(created), self.delivery.plan.price)
        return json_response(200, {"errors": len(created) != len(objects), "items": items})

    async def lookup(self, request: Request) -> Response:
        """`GET /api/v1/message`. The docs show no answer; the page is titled "Getting array
        of messages", so it answers a bare JSON array of message objects. Faults apply (not
        counted in the stats, which count sends)."""
        refused = await self._refused(request)
        if refused is not None:
            return refused
        query = parse_query(request.query_params)
        if isinstance(query, tuple):
            return error_response(422, *query)
        return json_response(200, [m.api_view() for m in self.messages.find(query)])

    async def stop(self, request: Request) -> Response:
        """`POST /api/v1/message/stop` with `{"uuids": [...]}`: one item per uuid, in order,
        as /message answers (`errors` when any item is not 200). Faults apply, as to lookups;
        an unknown uuid is 404 (another account's too: the API cannot tell them apart)."""
        refused = await self._refused(request)
        if refused is not None:
            return refused
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            return error_response(422, *invalid("request body"))
        uuids = body.get("uuids") if isinstance(body, dict) else None
        if not isinstance(uuids, list) or not uuids or not all(type(u) is str for u in uuids):
            return error_response(422, *invalid("uuids"))
        if len(uuids) > MAX_STOP_UUIDS:
            return error_response(422, 4220, f"Max count of uuids is {MAX_STOP_UUIDS}")
        items = []
        for message_uuid in uuids:
            message = self.messages.by_uuid.get(message_uuid)
            code = NOT_FOUND if message is None else self.delivery.stop(message)
            items.append({"messageUuid": message_uuid, "code": code})
        return json_response(
            200, {"errors": any(i["code"] != STOPPED for i in items), "items": items}
        )

    async def account_balance(self, request: Request) -> Response:
        """`GET /api/v1/balance`: any key type; faults apply as they do to lookups."""
        refused = await self._refused(request, any_key=True)
        if refused is not None:
            return refused
        return json_response(200, self.balance.view())

    async def _refused(self, request: Request, *, any_key: bool = False) -> Response | None:
        """The answer of a call other than a send when a fault or the key refuses it: faults
        apply to every call (an outage takes them all), not counted in the stats of sends."""
        injected = await self._injected_fault()
        if injected is not None:
            return injected
        header = request.headers.get("authorization")
        if any_key:
            auth_error = any_key_type(self.credentials, header)
        else:
            auth_error = self.credentials.check(header, ("Basic",))
        return None if auth_error is None else error_response(*auth_error)

    # -- controls ----------------------------------------------------------------------------

    async def balance_control(self, request: Request) -> Response:
        if request.method == "PUT":
            try:
                self.balance.set(Amounts.model_validate_json(await request.body()).root)
            except ValidationError as error:
                return invalid_plan(error)
        elif request.method == "DELETE":
            self.balance.restore()
        return json_response(200, self.balance.view())

    async def received(self, request: Request) -> Response:
        if request.method == "DELETE":
            self.recorder.clear_received()
            return Response(status_code=204)
        params = request.query_params
        offset, limit = params.get("offset", "0"), params.get("limit")
        if not _count(offset) or not (limit is None or _count(limit)):
            return PlainTextResponse("offset and limit must be whole numbers", 400)
        channel = params.get("channelType")
        page = self.recorder.received_page(
            int(offset), None if limit is None else int(limit), channel
        )
        for record in page:
            record.update(self.messages.progress(record["messageUuid"]))
        return json_response(200, page)

    async def stats(self, request: Request) -> Response:
        if request.method == "DELETE":
            self.recorder.clear_stats()
            return Response(status_code=204)
        return json_response(200, self.recorder.stats())

    async def faults(self, request: Request) -> Response:
        if request.method == "PUT":
            try:
                self.plan.set(Faults.model_validate_json(await request.body()))
            except ValidationError as error:
                return invalid_plan(error)
        elif request.method == "DELETE":
            self.plan.set(Faults())
        return json_response(200, self.plan.faults.model_dump(mode="json"))

    async def delivery_plan(self, request: Request) -> Response:
        if request.method == "PUT":
            try:
                self.delivery.set(Delivery.model_validate_json(await request.body()))
            except ValidationError as error:
                return invalid_plan(error)
        elif request.method == "DELETE":
            self.delivery.set(Delivery())
        return json_response(200, self.delivery.plan.model_dump(mode="json"))

    async def callback_stats(self, request: Request) -> Response:
        if request.method == "DELETE":
            self.callbacks.clear_stats()
            return Response(status_code=204)
        return json_response(200, self.callbacks.report())

    async def clock(self, request: Request) -> Response:
        """Freeze `now` (`{"now": "YYYY-MM-DD hh:mm:ss"}`, UTC) so time windows are testable."""
        if request.method == "PUT":
            try:
                text = orjson.loads(await request.body())["now"]
                self.frozen_now = datetime.strptime(text, TIME_FORMAT)
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                return PlainTextResponse('expected {"now": "YYYY-MM-DD hh:mm:ss"}', 400)
        elif request.method == "DELETE":
            self.frozen_now = None
        return json_response(
            200, {"now": self.now().strftime(TIME_FORMAT), "frozen": self.frozen_now is not None}
        )

    async def reset(self, request: Request) -> Response:
        self.recorder = Recorder()
        self.plan.set(Faults())
        self.frozen_now = None
        self.messages = Messages()
        self.delivery.timeline.clear()
        self.callbacks.clear()
        self.delivery.set(Delivery())
        self.balance.restore()
        return Response(status_code=204)


def _channels(objects: list[Any]) -> set[str]:
    """The channels named in a request, for the stats (any JSON value may stand there)."""
    named = (o.get("channelType") if isinstance(o, dict) else None for o in objects)
    return {c if isinstance(c, str) else "?" for c in named}


def _too_deep(value: Any, limit: int) -> bool:
    """Whether arrays/objects nest more than `limit` levels (`[[]]` is 2), level by level
    without recursion; only containers are kept, so a 1,000-message body costs ~0.4 ms."""
    level = [value]
    for _ in range(limit):
        level = [
            child
            for item in level
            for child in (item.values() if type(item) is dict else item)
            if type(child) is dict or type(child) is list
        ]
        if not level:
            return False
    return True


def _count(text: str) -> bool:
    return text.isascii() and text.isdigit() and len(text) <= 9


async def ping(request: Request) -> Response:
    return PlainTextResponse("PONG")


class _DropResponse(Response):
    """Starts an answer, then fails: uvicorn closes the connection with the body unsent."""

    def __init__(self) -> None:
        super().__init__(status_code=200)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", b"1000")],
            }
        )
        raise DroppedConnection


def _fault_response(status: int, retry_after: int | None) -> Response:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    if status == 503:
        return json_response(
            503, {"error": {"code": 5030, "msg": "Url shortener is unavailable"}}, headers
        )
    return PlainTextResponse(STATUS_TEXT[status], status, headers)


def create_app(sandbox: Sandbox) -> Starlette:
    routes = [
        Route(MESSAGE_PATH, sandbox.api, methods=["POST"]),
        Route(MESSAGE_PATH, sandbox.lookup, methods=["GET"]),
        Route(STOP_PATH, sandbox.stop, methods=["POST"]),
        Route(CONVERSION_PATH, sandbox.api, methods=["POST"]),
        Route("/api/v1/ping", ping, methods=["GET"]),
        Route(BALANCE_PATH, sandbox.account_balance, methods=["GET"]),
        Route("/_sandbox/balance", sandbox.balance_control, methods=["GET", "PUT", "DELETE"]),
        Route("/_sandbox/received", sandbox.received, methods=["GET", "DELETE"]),
        Route("/_sandbox/stats", sandbox.stats, methods=["GET", "DELETE"]),
        Route("/_sandbox/faults", sandbox.faults, methods=["GET", "PUT", "DELETE"]),
        Route("/_sandbox/clock", sandbox.clock, methods=["GET", "PUT", "DELETE"]),
        Route("/_sandbox/delivery", sandbox.delivery_plan, methods=["GET", "PUT", "DELETE"]),
        Route("/_sandbox/callbacks", sandbox.callback_stats, methods=["GET", "DELETE"]),
        Route("/_sandbox/reset", sandbox.reset, methods=["POST"]),
    ]
    app = Starlette(routes=routes, lifespan=sandbox.lifespan)
    app.state.sandbox = sandbox
    return app
