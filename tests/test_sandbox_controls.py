"""The control endpoints agree with what was sent."""

from __future__ import annotations

import httpx

from tests.contract_cases import BASE, variant
from tests.sandbox_client import BEARER, freeze_clock, send


def test_received_and_stats_match_the_traffic(sandbox: httpx.Client) -> None:
    sms = [variant("SMS", content=f"m{i}") for i in range(5)]
    send(sandbox, sms[:3])
    send(sandbox, [BASE["FLASHCALL"]])
    send(sandbox, [variant("SMS", ttl=1)])  # 422
    send(sandbox, [BASE["SMS"]], headers={})  # 401
    send(sandbox, [*sms[3:], BASE["WHATSAPP"]])
    send(sandbox, [BASE["FLASHCALL_CONVERSION"]], "/api/v1/flashcall-conversion", BEARER)

    received = sandbox.get("/_sandbox/received").json()
    assert [(r["requestIndex"], r["message"]) for r in received] == [
        (0, sms[0]),
        (0, sms[1]),
        (0, sms[2]),
        (1, BASE["FLASHCALL"]),
        (4, sms[3]),
        (4, sms[4]),
        (4, BASE["WHATSAPP"]),
        (5, BASE["FLASHCALL_CONVERSION"]),
    ]
    assert received[-1]["endpoint"] == "/api/v1/flashcall-conversion"
    assert len({r["messageUuid"] for r in received}) == 8
    assert sandbox.get("/_sandbox/stats").json() == {
        "requests": 6,
        "requestsByStatus": {"200": 4, "422": 1, "401": 1},
        "messagesRecorded": 8,
        "requestsPerChannel": {"SMS": 3, "FLASHCALL": 1, "WHATSAPP": 1, "CONVERSION": 1},
        "largestRequest": 3,
    }
    page = sandbox.get("/_sandbox/received", params={"offset": 2, "limit": 3}).json()
    assert page == received[2:5]


def test_clearing(sandbox: httpx.Client) -> None:
    send(sandbox, [BASE["SMS"]] * 3)
    assert sandbox.delete("/_sandbox/received").status_code == 204
    assert sandbox.get("/_sandbox/received").json() == []
    assert sandbox.get("/_sandbox/stats").json()["requests"] == 1
    assert sandbox.delete("/_sandbox/stats").status_code == 204
    assert sandbox.get("/_sandbox/stats").json()["requests"] == 0


def test_the_clock_can_be_frozen_and_released(sandbox: httpx.Client) -> None:
    old = variant("SMS", localSendTime="2020-01-01 18:00:00")
    assert send(sandbox, [old]).status_code == 422
    freeze_clock(sandbox, "2020-01-01 18:00:00")
    assert send(sandbox, [old]).status_code == 200
    assert sandbox.delete("/_sandbox/clock").json()["frozen"] is False
    assert send(sandbox, [old]).status_code == 422
    assert sandbox.put("/_sandbox/clock", json={"now": "yesterday"}).status_code == 400


def test_controls_are_not_under_the_api(sandbox: httpx.Client) -> None:
    assert sandbox.get("/api/v1/_sandbox/stats").status_code == 404
    assert sandbox.get("/_sandbox/stats").status_code == 200
