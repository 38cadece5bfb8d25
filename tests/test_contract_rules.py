"""Every documented rule, with a case that passes and a case that fails with a clear error."""

from __future__ import annotations

import re
from typing import Any

import pytest
from pydantic import ValidationError

from tasks.contract import ContractContext, field_errors, parse_message, to_api_json
from tests.contract_cases import DROP, NOW, variant
from tests.vectors import CTX, INVALID, VALID

#: The documented destination normalisation (README, "destination format"), written here
#: from the README rather than taken from the code under test.
_FORMATTING = re.compile(r"[+ \-.()]")


@pytest.mark.parametrize(("case", "message"), VALID, ids=[c for c, _ in VALID])
def test_valid(case: str, message: dict[str, Any]) -> None:
    """A valid message is sent as given, every field of it, with only the documented
    normalisation: a field dropped, renamed or altered on the way fails here."""
    expected = dict(message)
    if "destination" in message:
        expected["destination"] = _FORMATTING.sub("", message["destination"])
    assert to_api_json(parse_message(message, CTX)) == expected


@pytest.mark.parametrize(("case", "message", "path", "rule"), INVALID, ids=[c[0] for c in INVALID])
def test_invalid(case: str, message: dict[str, Any], path: str, rule: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_message(message, CTX)
    errors = field_errors(caught.value)
    assert [(e.path, rule in e.rule) for e in errors] == [(path, True)], errors


def test_destination_is_normalised_to_digits() -> None:
    parsed = parse_message(variant("SMS", destination="+7 (812) 426-99-88"), CTX)
    assert to_api_json(parsed)["destination"] == "78124269988"


def test_longer_flashcall_codes_need_the_account_setting() -> None:
    six = variant("FLASHCALL", content="123456")
    with pytest.raises(ValidationError, match="4 digits"):
        parse_message(six, CTX)
    wide = ContractContext(now=NOW, flashcall_code_max_digits=6)
    assert parse_message(six, wide).content == "123456"  # type: ignore[union-attr]
    with pytest.raises(ValidationError, match="4 to 6 digits"):
        parse_message(variant("FLASHCALL", content="1234567"), wide)


def test_all_field_errors_are_reported_at_once() -> None:
    message = variant("SMS", senderName=DROP, destination="x", ttl=1, tags=["a b"])
    with pytest.raises(ValidationError) as caught:
        parse_message(message, CTX)
    assert sorted(e.path for e in field_errors(caught.value)) == [
        "destination",
        "senderName",
        "tags[0]",
        "ttl",
    ]


def test_every_invalid_vector_says_what_the_api_answers() -> None:
    from tests.vectors import API_ERRORS

    assert sorted(API_ERRORS) == sorted(case for case, *_ in INVALID)
