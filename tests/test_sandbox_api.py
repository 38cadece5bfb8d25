"""The sandbox answers like the documented API: examples, auth, limits and every error code."""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
import pytest

from tests.api_docs import RequestExample, error_examples, request_examples
from tests.conftest import OTHER_TYPE_TOKEN
from tests.contract_cases import BASE, variant
from tests.sandbox_client import BASIC, BEARER, api_error, freeze_clock, send, set_faults

SENDABLE = [
    e for e in request_examples() if not any(m.get("channelType") == "VIBER" for m in e.body)
]


@pytest.mark.parametrize("example", SENDABLE, ids=lambda e: e.name)
def test_every_documented_example_is_accepted(
    sandbox: httpx.Client, example: RequestExample
) -> None:
    send_time = example.body[0].get("localSendTime")
    if send_time:
        freeze_clock(sandbox, send_time)
    headers = {"Authorization": f"{example.auth} test-token-1"}
    response = send(sandbox, example.body, example.path, headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["errors"] is False
    assert [item["code"] for item in body["items"]] == [201] * len(example.body)
    received = sandbox.get("/_sandbox/received").json()
    assert [r["message"] for r in received] == example.body
    assert [r["messageUuid"] for r in received] == [i["messageUuid"] for i in body["items"]]
    assert all(uuid.UUID(r["messageUuid"]) for r in received)


def test_conversions_take_basic_too(sandbox: httpx.Client) -> None:
    response = send(sandbox, [BASE["FLASHCALL_CONVERSION"]], "/api/v1/flashcall-conversion")
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, (401, 4010, "Not Authenticated")),
        ({"Authorization": ""}, (401, 4010, "Not Authenticated")),
        ({"Authorization": "test-token-1"}, (401, 4010, "Not Authenticated")),
        ({"Authorization": "Digest test-token-1"}, (401, 4010, "Not Authenticated")),
        ({"Authorization": "Basic nope"}, (401, 4012, "Bad credentials")),
        ({"Authorization": f"Basic {OTHER_TYPE_TOKEN}"}, (403, 4030, "Access Denied")),
        (BEARER, (403, 4030, "Access Denied")),  # Bearer is only documented for conversions
    ],
    ids=[
        "no header",
        "empty",
        "no scheme",
        "other scheme",
        "unknown token",
        "other type",
        "bearer on message",
    ],
)
def test_authorization(
    sandbox: httpx.Client, headers: dict[str, str], expected: tuple[int, int, str]
) -> None:
    assert api_error(send(sandbox, [BASE["SMS"]], headers=headers)) == expected
    assert sandbox.get("/_sandbox/received").json() == []


@pytest.mark.parametrize(
    "body",
    [b"not json", b'{"channelType": "SMS"}', b"[]", b"[1]"],
    ids=["not json", "object", "empty", "not objects"],
)
def test_malformed_bodies(sandbox: httpx.Client, body: bytes) -> None:
    response = sandbox.post("/api/v1/message", content=body, headers=BASIC)
    assert api_error(response) == (422, 4220, "Invalid request body")


def test_at_most_1000_objects(sandbox: httpx.Client) -> None:
    assert send(sandbox, [BASE["SMS"]] * 1000).status_code == 200
    response = send(sandbox, [BASE["SMS"]] * 1001)
    assert api_error(response) == (422, 4220, "Max count of messages is 1000")
    assert len(sandbox.get("/_sandbox/received").json()) == 1000


def test_one_invalid_object_rejects_the_whole_request(sandbox: httpx.Client) -> None:
    body = [BASE["SMS"]] * 500 + [variant("SMS", destination="12")] + [BASE["SMS"]] * 499
    assert api_error(send(sandbox, body)) == (422, 4220, "Invalid msisdn")
    assert sandbox.get("/_sandbox/received").json() == []


def test_mixed_channels_in_one_request(sandbox: httpx.Client) -> None:
    body = [BASE["SMS"], BASE["FLASHCALL"], BASE["VOICECODE"], BASE["WHATSAPP"]]
    assert send(sandbox, body).status_code == 200
    stats = sandbox.get("/_sandbox/stats").json()
    assert stats["requestsPerChannel"] == {"SMS": 1, "FLASHCALL": 1, "VOICECODE": 1, "WHATSAPP": 1}


# One request per documented error: (what to send, and under which faults/clock).
NOW = "2026-11-22 12:00:00"
ERROR_CASES: list[tuple[str, list[Any], dict[str, Any]]] = [
    ("max count", [BASE["SMS"]] * 1001, {}),
    ("send too early", [variant("SMS", localSendTime="2026-11-21 23:59:59")], {}),
    ("send too late", [variant("SMS", localSendTime="2026-11-29 12:00:01")], {}),
    (
        "completion too early",
        [
            variant(
                "SMS",
                localSendTime="2026-11-22 13:00:00",
                localCompletionTime="2026-11-22 12:59:59",
            )
        ],
        {},
    ),
    ("completion too late", [variant("WHATSAPP", localCompletionTime="2027-02-01 00:00:00")], {}),
    ("sender", [BASE["SMS"]], {"rejectSenders": "^SENDER$"}),
    ("msisdn", [variant("SMS", destination="abc")], {}),
    ("blank", [variant("SMS", content="  ")], {}),
    ("content", [variant("FLASHCALL", content="12")], {}),
    ("tags", [variant("SMS", tags=["a-b"])], {}),
    ("ttl", [variant("SMS", ttl=10)], {}),
    ("hours", [variant("SMS", hours=[25])], {}),
    ("days", [variant("SMS", days=[9])], {}),
    ("shortener", [variant("SMS", shortUrl=True)], {"shortenerDown": True}),
]


def test_every_documented_error_is_reproduced(sandbox: httpx.Client) -> None:
    freeze_clock(sandbox, NOW)
    produced = []
    for _, body, faults in ERROR_CASES:
        set_faults(sandbox, **faults)
        response = send(sandbox, body)
        status, code, msg = api_error(response)
        assert status == (503 if code == 5030 else 422)
        produced.append((code, msg))
    set_faults(sandbox)
    for auth in ({}, {"Authorization": "Basic x"}, {"Authorization": f"Basic {OTHER_TYPE_TOKEN}"}):
        _, code, msg = api_error(send(sandbox, [BASE["SMS"]], headers=auth))
        produced.append((code, msg))

    for page, code, template in error_examples():
        pattern = re.escape(template)
        pattern = re.sub(r"\\\{\w+\\\}", ".+", pattern)  # {placeholders} match any value
        assert any(c == code and re.fullmatch(pattern, m) for c, m in produced), (page, template)
    assert sandbox.get("/_sandbox/received").json() == []


def test_a_shortener_outage_only_hits_messages_asking_for_short_urls(
    sandbox: httpx.Client,
) -> None:
    set_faults(sandbox, shortenerDown=True)
    assert send(sandbox, [BASE["SMS"]]).status_code == 200
    assert send(sandbox, [variant("SMS", shortUrl=False)]).status_code == 200
