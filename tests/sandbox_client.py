"""Small helpers for talking to the sandbox in tests."""

from __future__ import annotations

from typing import Any

import httpx

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
