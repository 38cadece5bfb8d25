"""Properties over generated inputs: normalisation, tags, and round trips."""

from __future__ import annotations

import re
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from tasks.contract import parse_message, to_api_json
from tests.contract_cases import variant

digits = st.text(alphabet=string.digits, min_size=6, max_size=14).map(lambda d: "7" + d)
formatting = st.sampled_from([" ", "-", "(", ")", ".", ""])


@given(digits, st.lists(formatting, min_size=16, max_size=16), st.booleans())
def test_formatted_numbers_normalise_to_their_digits(
    number: str, separators: list[str], plus: bool
) -> None:
    formatted = ("+" if plus else "") + "".join(
        d + sep for d, sep in zip(number, separators, strict=False)
    )
    parsed = parse_message(variant("SMS", destination=formatted))
    assert to_api_json(parsed)["destination"] == number


@given(st.text(min_size=1, max_size=20))
def test_a_tag_is_accepted_exactly_when_it_is_ascii_word_characters(tag: str) -> None:
    message = variant("SMS", tags=[tag])
    if re.fullmatch(r"[A-Za-z0-9_]+", tag):
        assert parse_message(message).tags == [tag]  # type: ignore[union-attr]
    else:
        with pytest.raises(ValidationError, match="ASCII letters"):
            parse_message(message)


sms_text = st.text(min_size=1, max_size=200).filter(
    lambda t: t.strip() != "" and not t.startswith("\ufeff")
)


@given(
    sms_text,
    st.lists(st.integers(0, 23), unique=True, min_size=1) | st.none(),
    st.lists(st.integers(1, 7), unique=True, min_size=1) | st.none(),
    st.integers(60, 86_400) | st.none(),
    st.booleans() | st.none(),
)
def test_valid_sms_round_trips(
    content: str,
    hours: list[int] | None,
    days: list[int] | None,
    ttl: int | None,
    short_url: bool | None,
) -> None:
    optional = {"hours": hours, "days": days, "ttl": ttl, "shortUrl": short_url}
    message = variant(
        "SMS", content=content, **{k: v for k, v in optional.items() if v is not None}
    )
    assert to_api_json(parse_message(message)) == message


@given(st.text(alphabet=string.digits, min_size=1, max_size=8), st.sampled_from(" -*#/"))
def test_voicecode_codes_joined_spaced_or_separated(code: str, separator: str) -> None:
    for shown in (code, separator.join(code)):
        text = f"Код авторизации от Acme: {shown}."
        assert parse_message(variant("VOICECODE", content__text=text))
