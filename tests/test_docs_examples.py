"""Every request example in the API docs parses and serialises back to the same JSON."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from tasks.contract import ContractContext, parse_message, to_api_json
from tasks.contract.common import LOCAL_TIME_FORMAT
from tests.api_docs import RequestExample, request_examples, whatsapp_content_examples

EXAMPLES = request_examples()
# The WHATSAPP page's cURL tab sends VIBER objects (`notes.md`: a copy-paste slip in the
# vendor's docs); VIBER has no send page and is not a channel of this project.
VIBER_EXAMPLE = next(e for e in EXAMPLES if e.page == "whatsapp.md" and e.kind == "curl")
SENDABLE = [e for e in EXAMPLES if e is not VIBER_EXAMPLE]


def context_for(message: dict[str, Any]) -> ContractContext:
    """The examples are dated 2020 and 2022: validate them as of their own send time."""
    send = message.get("localSendTime")
    if send is None:
        return ContractContext()
    return ContractContext(now=datetime.strptime(send, LOCAL_TIME_FORMAT))


def test_the_docs_have_an_example_for_every_channel_and_endpoint() -> None:
    pages = {(e.page, e.path, e.kind) for e in SENDABLE}
    assert len(pages) == 9  # JSON and cURL on four pages, plus the conversion endpoint twice
    assert len(whatsapp_content_examples()) == 8


@pytest.mark.parametrize("example", SENDABLE, ids=lambda e: e.name)
def test_request_example_round_trips(example: RequestExample) -> None:
    for obj in example.body:
        message = parse_message(obj, context_for(obj))
        assert to_api_json(message) == obj


@pytest.mark.parametrize("content", whatsapp_content_examples(), ids=lambda c: c["contentType"])
def test_whatsapp_content_example_round_trips(content: dict[str, Any]) -> None:
    obj = {
        "channelType": "WHATSAPP",
        "senderName": "SENDER",
        "destination": "14085553911",
        "content": content,
    }
    assert to_api_json(parse_message(obj)) == obj


def test_viber_curl_example_is_refused_with_the_reason() -> None:
    from pydantic import ValidationError

    from tasks.contract import field_errors

    for obj in VIBER_EXAMPLE.body:
        with pytest.raises(ValidationError) as caught:
            parse_message(obj, context_for(obj))
        [error] = field_errors(caught.value)
        assert error.path == "channelType"
        assert "SMS, FLASHCALL, VOICECODE, WHATSAPP" in error.rule


def test_examples_validated_today_fail_only_on_their_stale_dates() -> None:
    """Sanity check that the clock is really applied: today the 2020 SMS example is stale."""
    from pydantic import ValidationError

    from tasks.contract import field_errors

    sms = next(e for e in SENDABLE if e.page == "sms.md").body[0]
    with pytest.raises(ValidationError) as caught:
        parse_message(
            sms, ContractContext(now=datetime.strptime("2026-11-22 00:00:00", LOCAL_TIME_FORMAT))
        )
    [error] = field_errors(caught.value)
    assert error.path == "localSendTime"
    assert error.rule.startswith("must not be earlier than 2026-11-21 12:00:00")
