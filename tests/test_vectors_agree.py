"""The shared vectors: the client's models and the sandbox's own rules must agree."""

from __future__ import annotations

import json
import sys
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from tasks.contract import parse_message, to_api_json
from tests.contract_cases import NOW
from tests.sandbox_client import BASIC, api_error, freeze_clock
from tests.vectors import API_ERRORS, CTX, INVALID, VALID

CONVERSION_PATH = "/api/v1/flashcall-conversion"


def path_for(message: dict[str, Any]) -> str:
    """Where the message goes: a conversion report (no channelType, either of its fields) has
    its own endpoint, as the client routes it."""
    conversion = "channelType" not in message and ("messageUuid" in message or "result" in message)
    return CONVERSION_PATH if conversion else "/api/v1/message"


def send(client: httpx.Client, body: list[Any], path: str) -> httpx.Response:
    """POST the body as a careless producer writes it: a lone surrogate as its escape
    (`\\ud83d`, which httpx's own encoder cannot write), numbers of any length."""
    limit = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)
    try:
        content = json.dumps(body, ensure_ascii=True).encode()
    finally:
        sys.set_int_max_str_digits(limit)
    return client.post(path, content=content, headers={**BASIC, "Content-Type": "application/json"})


@pytest.fixture
def frozen(sandbox: httpx.Client) -> httpx.Client:
    freeze_clock(sandbox, NOW.strftime("%Y-%m-%d %H:%M:%S"))
    return sandbox


@pytest.mark.parametrize(("case", "message"), VALID, ids=[c for c, _ in VALID])
def test_what_the_client_accepts_the_sandbox_accepts(
    frozen: httpx.Client, case: str, message: dict[str, Any]
) -> None:
    wire = to_api_json(parse_message(message, CTX))
    response = send(frozen, [wire], path_for(message))
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(("case", "message", "path", "rule"), INVALID, ids=[c[0] for c in INVALID])
def test_what_the_client_refuses_the_sandbox_refuses_alike(
    frozen: httpx.Client, case: str, message: dict[str, Any], path: str, rule: str
) -> None:
    with pytest.raises(ValidationError):
        parse_message(message, CTX)
    response = send(frozen, [message], path_for(message))
    expected = API_ERRORS[case]
    if expected is None:  # the client is stricter: a server ignores unknown fields
        assert response.status_code == 200, response.text
    else:
        assert api_error(response)[1:] == expected
