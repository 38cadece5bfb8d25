"""`POST /api/v1/message/stop` in the sandbox (notes.md, Stopping messages)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.contract_cases import variant
from tests.sandbox_client import (
    BASIC,
    Receiver,
    api_error,
    callbacks_done,
    lookup,
    send,
    set_delivery,
    set_faults,
    wait_until,
)

STOP = "/api/v1/message/stop"


def created(sandbox: httpx.Client, count: int, **fields: Any) -> list[str]:
    body = [variant("SMS", content=f"m{i}", **fields) for i in range(count)]
    return [item["messageUuid"] for item in send(sandbox, body).json()["items"]]


def stop(
    sandbox: httpx.Client, uuids: Any, headers: dict[str, str] | None = None
) -> httpx.Response:
    return sandbox.post(STOP, json={"uuids": uuids}, headers=BASIC if headers is None else headers)


def status_of(sandbox: httpx.Client, uuid: str) -> str:
    status: str = lookup(sandbox, {"message_uuid": uuid}).json()[0]["status"]
    return status


def test_each_stop_code_for_its_case(sandbox: httpx.Client) -> None:
    set_delivery(sandbox, sentAfterMs=60_000, finalAfterMs=60_000)
    waiting = created(sandbox, 2)
    set_delivery(sandbox, sentAfterMs=0, finalAfterMs=60_000)
    sent = created(sandbox, 1)
    wait_until(lambda: status_of(sandbox, sent[0]) == "sent")
    set_delivery(sandbox, sentAfterMs=50, finalAfterMs=60_000)
    imminent = created(sandbox, 1)  # sent sooner than a stop reaches the operator
    answer = stop(sandbox, [*waiting, sent[0], imminent[0], "no-such-uuid"])
    assert answer.status_code == 200
    assert answer.json() == {
        "errors": True,
        "items": [
            {"messageUuid": waiting[0], "code": 200},
            {"messageUuid": waiting[1], "code": 200},
            {"messageUuid": sent[0], "code": 403},
            {"messageUuid": imminent[0], "code": 202},
            {"messageUuid": "no-such-uuid", "code": 404},
        ],
    }
    wait_until(lambda: status_of(sandbox, waiting[0]) == "unsent")
    message = lookup(sandbox, {"message_uuid": waiting[0]}).json()[0]
    assert message["errorCode"] == 6001
    assert message["price"]["totalPrice"] == 0
    assert message["sentTime"] is None
    wait_until(lambda: status_of(sandbox, imminent[0]) == "sent")  # it could not be stopped
    again = stop(sandbox, waiting[:1]).json()
    assert again == {"errors": False, "items": [{"messageUuid": waiting[0], "code": 200}]}


def test_a_stopped_message_sends_its_final_callback_and_no_other(sandbox: httpx.Client) -> None:
    set_delivery(sandbox, sentAfterMs=2_000, finalAfterMs=3_000, readFraction=1.0)
    with Receiver() as receiver:
        url = receiver.url()
        events = ["sent", "delivered", "read", "price"]
        uuids = created(sandbox, 2, callbackUrl=url, callbackEvents=events)
        assert stop(sandbox, uuids[:1]).json()["items"][0]["code"] == 200
        stats = callbacks_done(sandbox, timeout_s=15)
        seen = receiver.events()
    stopped = [(e["callback_event"], e["status"]) for e in seen if e["message_uuid"] == uuids[0]]
    assert sorted(stopped) == [("delivered", "unsent"), ("price", "unsent")]
    other = [e["callback_event"] for e in seen if e["message_uuid"] == uuids[1]]
    assert sorted(other) == ["delivered", "price", "sent"]  # SMS: never read
    assert stats["pending"] == 0


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"uuids": []}',
        b'{"uuids": "a"}',
        b'{"uuids": [1]}',
        b'{"other": ["a"]}',
        b'{"uuids": [["a"]]}',
    ],
)
def test_a_bad_body_is_422(sandbox: httpx.Client, body: bytes) -> None:
    answer = sandbox.post(STOP, content=body, headers=BASIC)
    assert answer.status_code == 422
    assert api_error(answer)[1] == 4220


def test_more_than_ten_thousand_uuids_are_refused(sandbox: httpx.Client) -> None:
    answer = stop(sandbox, [f"u{i}" for i in range(10_001)])
    assert api_error(answer) == (422, 4220, "Max count of uuids is 10000")
    assert stop(sandbox, [f"u{i}" for i in range(10_000)]).status_code == 200


def test_auth_and_faults_apply(sandbox: httpx.Client) -> None:
    assert api_error(stop(sandbox, ["a"], headers={})) == (401, 4010, "Not Authenticated")
    wrong = {"Authorization": "Basic nope"}
    assert api_error(stop(sandbox, ["a"], headers=wrong)) == (401, 4012, "Bad credentials")
    set_faults(sandbox, status={"status": 500, "next": 1})
    assert stop(sandbox, ["a"]).status_code == 500
    assert stop(sandbox, ["a"]).status_code == 200
