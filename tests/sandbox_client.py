"""Small helpers for talking to the sandbox in tests."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from devenv.processes import free_port
from tests.conftest import SANDBOX_TOKEN

BASIC = {"Authorization": f"Basic {SANDBOX_TOKEN}"}
BEARER = {"Authorization": f"Bearer {SANDBOX_TOKEN}"}


def send(
    client: httpx.Client,
    body: Any,
    path: str = "/api/v1/message",
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    return client.post(path, json=body, headers=BASIC if headers is None else headers)


def api_error(response: httpx.Response) -> tuple[int, int, str]:
    error = response.json()["error"]
    return response.status_code, error["code"], error["msg"]


def set_faults(client: httpx.Client, **faults: Any) -> None:
    client.put("/_sandbox/faults", json=faults).raise_for_status()


def freeze_clock(client: httpx.Client, now: str) -> None:
    client.put("/_sandbox/clock", json={"now": now}).raise_for_status()


def set_delivery(client: httpx.Client, **plan: Any) -> None:
    client.put("/_sandbox/delivery", json=plan).raise_for_status()


def lookup(client: httpx.Client, params: Any = None) -> httpx.Response:
    """`GET /api/v1/message`; `params` as httpx takes them (a list of pairs repeats a name)."""
    return client.get("/api/v1/message", params=params, headers=BASIC)


def wait_until(check: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"not true after {timeout_s} s"
        time.sleep(0.01)


def callback_stats(client: httpx.Client) -> dict[str, int]:
    stats: dict[str, int] = client.get("/_sandbox/callbacks").json()
    return stats


def callbacks_done(client: httpx.Client, timeout_s: float = 10.0) -> dict[str, int]:
    """The callback counters once no event is pending (all acknowledged or given up)."""
    wait_until(lambda: callback_stats(client)["pending"] == 0, timeout_s)
    return callback_stats(client)


def all_final(client: httpx.Client, timeout_s: float = 10.0) -> list[dict[str, Any]]:
    """The received records once every message has reached its final status (or was read
    after it)."""
    records: list[dict[str, Any]] = []

    def final() -> bool:
        records[:] = client.get("/_sandbox/received").json()
        return all(r["status"] in (r["finalStatus"], "read") for r in records)

    wait_until(final, timeout_s)
    return records


@dataclass(frozen=True)
class Post:
    """One callback POST as the receiver got it, and the status it answered."""

    path: str
    authorization: str | None
    events: list[dict[str, Any]]
    status: int


class Receiver:
    """A callback receiver on 127.0.0.1 (a thread): records every POST, answers the
    `statuses` given in turn, then 200. `start()` again after `stop()` listens on the same
    port: a receiver that was down and came back."""

    def __init__(self, statuses: Iterable[int] = (), port: int | None = None) -> None:
        self.port = port or free_port()
        self.posts: list[Post] = []
        self._statuses = list(statuses)
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    def url(self, userinfo: str = "", path: str = "/callbacks") -> str:
        return f"http://{userinfo}{'@' if userinfo else ''}127.0.0.1:{self.port}{path}"

    def accepted(self) -> list[Post]:
        with self._lock:
            return [post for post in self.posts if post.status == 200]

    def events(self) -> list[dict[str, Any]]:
        """Every event of the POSTs answered 200, in arrival order."""
        return [event for post in self.accepted() for event in post.events]

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver._lock:
                    status = receiver._statuses.pop(0) if receiver._statuses else 200
                    events = json.loads(body)
                    receiver.posts.append(
                        Post(self.path, self.headers["Authorization"], events, status)
                    )
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
