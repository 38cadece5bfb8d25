"""The API as the operator's commands (`balance`, `check`) ask it: one request, no retries, no
circuit, a short timeout; an operator wants the answer now, not the workers' patience. What a
refusal means and how to fix it is said here once, for both commands. The token is sent, never
shown.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
import orjson

from config import Settings
from tasks.balance_state import BALANCE_ENDPOINT, BALANCE_TIMEOUT_S, parse_balance

PING_ENDPOINT = "/api/v1/ping"

#: The API's refusals of a key (notes.md), and the fix of each.
REFUSALS = {
    4010: (
        "the API could not read the key",
        "set REVICOM_API_TOKEN to the key exactly as issued (no 'Basic ' prefix, no spaces)",
    ),
    4012: (
        "the API does not know the key",
        "set REVICOM_API_TOKEN to a valid key of the account (TOKEN_1, from the Revicom dashboard)",
    ),
    4030: (
        "the key is of the wrong type",
        "set REVICOM_API_TOKEN to the account's TOKEN_1 (messages and dispatches) key",
    ),
}
NO_TOKEN = ("REVICOM_API_TOKEN is not set", "set it to the account's TOKEN_1 key")


@dataclass(frozen=True)
class Reply:
    status: int | None  # None: no answer
    body: Any  # JSON, or the text
    problem: str = ""  # the network error, when there was no answer

    @property
    def code(self) -> int | None:
        error = self.body.get("error") if isinstance(self.body, dict) else None
        code = error.get("code") if isinstance(error, dict) else None
        return code if isinstance(code, int) and not isinstance(code, bool) else None


def ask(settings: Settings, path: str, *, token: bool = True) -> Reply:
    """GET `path` of the API once, within its connect timeout and BALANCE_TIMEOUT_S."""
    headers = {}
    if token and settings.revicom_api_token is not None:
        headers["Authorization"] = f"Basic {settings.revicom_api_token.get_secret_value()}"
    timeout = httpx.Timeout(BALANCE_TIMEOUT_S, connect=settings.connect_timeout_s)
    try:
        with httpx.Client(base_url=settings.revicom_api_url, timeout=timeout) as client:
            response = client.get(path, headers=headers)
    except httpx.HTTPError as error:
        return Reply(None, None, type(error).__name__)
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        body = response.text[:200]
    return Reply(response.status_code, body)


def ping(settings: Settings) -> Reply:
    return ask(settings, PING_ENDPOINT, token=False)


def balance(settings: Settings) -> tuple[dict[str, Decimal] | None, str, str]:
    """The balance, or None with what went wrong and its fix (one line each)."""
    if settings.revicom_api_token is None or not settings.revicom_api_token.get_secret_value():
        return None, *NO_TOKEN
    where = settings.revicom_api_url
    reply = ask(settings, BALANCE_ENDPOINT)
    if reply.status is None:
        return (
            None,
            f"the API is unreachable at {where} ({reply.problem})",
            ("check REVICOM_API_URL and the network to it"),
        )
    if reply.status in (401, 403):
        what, fix = REFUSALS.get(
            reply.code or 0, ("the API refused the key", "check REVICOM_API_TOKEN")
        )
        return None, f"{what} ({reply.status} {reply.code})", fix
    if reply.status != 200:
        return (
            None,
            f"{where}{BALANCE_ENDPOINT} answered HTTP {reply.status}",
            ("retry later; if it lasts, check REVICOM_API_URL"),
        )
    amounts = parse_balance(reply.body)
    if amounts is None:
        shape = type(reply.body).__name__
        return (
            None,
            f"the balance answer is not currency → amount (a {shape})",
            ("check REVICOM_API_URL points at the Revicom Direct API"),
        )
    return amounts, "", ""
