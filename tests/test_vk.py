"""VK (notes.md, "The rest of the API"): what sets it apart from SMS, in the client's model,
the published job schema and the sandbox. The rules shared with SMS are in tests/vectors.py,
judged by both the model and the sandbox."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import jsonschema  # type: ignore[import-untyped]
import orjson
import pytest
from pydantic import ValidationError

from tasks.contract import VkMessage, field_errors, parse_message, to_api_json
from tests.contract_cases import variant
from tests.sandbox_client import (
    all_final,
    api_error,
    lookup,
    send,
    set_delivery,
    set_faults,
)
from tests.vectors import CTX, INVALID, VALID

JOB_SCHEMA = jsonschema.Draft202012Validator(
    orjson.loads((Path(__file__).parents[1] / "schemas" / "job.schema.json").read_bytes())
)
FAST = {"sentAfterMs": 20, "finalAfterMs": 60}
VK_VALID = [message for case, message in VALID if message.get("channelType") == "VK"]


def vk(count: int, **fields: Any) -> list[dict[str, Any]]:
    return [variant("VK", content=f"vk {i}", **fields) for i in range(count)]


# -- the client's model -----------------------------------------------------------------------


def test_a_vk_message_is_its_own_model_sent_as_given() -> None:
    message = variant("VK", tags=["vk"], ttl=600, callbackUrl="https://c.com/cb")
    parsed = parse_message(message, CTX)
    assert isinstance(parsed, VkMessage)
    assert to_api_json(parsed) == message


def test_the_text_limit_is_vks_own() -> None:
    """SMS has no documented length limit; VK stops at 2,048 characters."""
    long_text = "x" * 2049
    assert parse_message(variant("SMS", content=long_text), CTX)
    with pytest.raises(ValidationError) as caught:
        parse_message(variant("VK", content=long_text), CTX)
    assert [str(e) for e in field_errors(caught.value)] == [
        "content: must have at most 2048 characters"
    ]


def test_any_sender_name_but_voicecodes_fixed_one() -> None:
    """VK takes any non-empty sender (VOICECODE only `voicecode`), so "voicecode" too."""
    assert parse_message(variant("VK", senderName="voicecode"), CTX)
    with pytest.raises(ValidationError):
        parse_message(variant("VOICECODE", senderName="ACME shop"), CTX)


# -- the published job schema -----------------------------------------------------------------


@pytest.mark.parametrize("message", VK_VALID, ids=range(len(VK_VALID)))
def test_the_job_schema_accepts_vk_jobs(message: dict[str, Any]) -> None:
    JOB_SCHEMA.validate({"jobId": "vk-1", "message": message})


@pytest.mark.parametrize(
    "case", ["vk content 2049 chars", "vk content BOM", "vk senderName empty", "vk ttl 59"]
)
def test_the_job_schema_refuses_broken_vk_jobs(case: str) -> None:
    [message] = [m for c, m, *_ in INVALID if c == case]
    assert not JOB_SCHEMA.is_valid({"jobId": "vk-1", "message": message})


# -- the sandbox ------------------------------------------------------------------------------


def test_the_sandbox_creates_vk_messages(sandbox: httpx.Client) -> None:
    response = send(sandbox, [*vk(3), variant("VK", content="x" * 2048)])
    assert response.status_code == 200, response.text
    assert [i["code"] for i in response.json()["items"]] == [201] * 4
    stats = sandbox.get("/_sandbox/stats").json()
    assert stats["requestsPerChannel"] == {"VK": 1}
    found = lookup(sandbox, {"channel_type": "VK"}).json()
    assert [m["content"] for m in found] == ["vk 0", "vk 1", "vk 2", "x" * 2048]


def test_one_invalid_vk_object_rejects_the_whole_request(sandbox: httpx.Client) -> None:
    body = [*vk(5), variant("VK", content="x" * 2049), *vk(5)]
    assert api_error(send(sandbox, body)) == (422, 4220, "Invalid content")
    assert sandbox.get("/_sandbox/received").json() == []


def test_the_sms_sender_list_does_not_apply_to_vk(sandbox: httpx.Client) -> None:
    """The sandbox's unapproved names (`rejectSenders`) are SMS/WHATSAPP names: a VK sender
    is any string, so the same name passes there."""
    set_faults(sandbox, rejectSenders="^ACME")
    refused = send(sandbox, [variant("SMS", senderName="ACME shop")])
    assert api_error(refused) == (422, 4220, "No active sender name: (SMS, ACME shop)")
    refused = send(sandbox, [variant("WHATSAPP", senderName="ACME shop")])
    assert api_error(refused) == (422, 4220, "No active sender name: (WHATSAPP, ACME shop)")
    assert send(sandbox, vk(2, senderName="ACME shop")).status_code == 200


def test_delivered_vk_messages_are_read_like_whatsapp(sandbox: httpx.Client) -> None:
    """notes.md: read statuses exist for VIBER, VK and WHATSAPP, not for SMS."""
    set_delivery(sandbox, readFraction=1.0, **FAST)
    send(sandbox, vk(10) + [variant("SMS", content=f"s{i}") for i in range(5)])
    records = all_final(sandbox)
    assert all(r["finalStatus"] == "delivered" for r in records)

    def statuses() -> Counter[tuple[str, str]]:
        received = sandbox.get("/_sandbox/received").json()
        return Counter((r["message"]["channelType"], r["status"]) for r in received)

    deadline = time.monotonic() + 5
    while statuses()[("VK", "read")] < 10 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert statuses() == {("VK", "read"): 10, ("SMS", "delivered"): 5}
