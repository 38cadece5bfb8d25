"""Hostile input to the client's contract: any JSON value, or a valid message with one part
replaced by any value, gives a model or a validation error; never another exception, never an
error message that echoes a huge value, never an accepted message that cannot be sent.

`HYPOTHESIS_EXAMPLES` sets the examples per property (default 200, a few seconds in all;
`make soak` raises it).
"""

from __future__ import annotations

import copy
import os
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from tasks.contract import field_errors, parse_message, to_api_json
from tasks.contract.base import ApiObject
from tasks.jobs import InvalidJobError, Job, parse_job
from tests.contract_cases import variant
from tests.vectors import CTX, VALID


def examples(default: int = 200) -> int:
    """Examples per property: `HYPOTHESIS_EXAMPLES` from the environment, else `default`."""
    return int(os.environ.get("HYPOTHESIS_EXAMPLES", default))


HOSTILE = settings(
    max_examples=examples(),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Words the API knows, so that generated objects often reach deep into the validators.
FIELD_NAMES = [
    *("channelType", "senderName", "destination", "content", "tags", "callbackUrl"),
    *("callbackEvents", "useLocalTime", "localSendTime", "localCompletionTime", "ttl"),
    *("hours", "days", "shortUrl", "externalMessageId", "contentType", "text", "header"),
    *("footer", "buttons", "imageUrl", "imageName", "documentUrl", "documentName", "url"),
    *("phone", "payload", "messageUuid", "result", "code", "jobId", "message"),
]
WORDS = [
    *("SMS", "FLASHCALL", "VOICECODE", "WHATSAPP", "VK", "FLASHCALL_CONVERSION", "VIBER"),
    "text",
    *("image", "document", "voicecode", "sent", "delivered", "read", "price", "click"),
    *("NUMBER_VERIFIED", "WRONG_CODE", "14085553911", "1234", "https://revicom.ltd"),
    *("HTTPS://revicom.ltd", "http://", "2026-11-22 12:00:00", "Код авторизации от A: 1234."),
    *("", " ", "\ufeff", "hi \ud83d", "\udc00"),
]
HUGE_INTS = [2**63, 2**64, -(2**63) - 1, 10**400, 10**4000]

any_text = st.text(st.characters(exclude_categories=()), max_size=30)  # lone surrogates too
texts = any_text | st.sampled_from(WORDS) | st.sampled_from(FIELD_NAMES)
numbers = (
    st.integers()
    | st.sampled_from(HUGE_INTS)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.integers(-2, 100_000)
)
scalars = st.none() | st.booleans() | numbers | texts
keys = st.sampled_from(FIELD_NAMES) | any_text
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=5),
    max_leaves=24,
)


def _places(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place inside a message (object keys and array indexes), the root excluded."""
    if not isinstance(value, dict | list):
        return []
    found = []
    for key, child in value.items() if isinstance(value, dict) else enumerate(value):
        found.append((*path, key))
        found.extend(_places(child, (*path, key)))
    return found


DELETE = object()


@st.composite
def mutated_messages(draw: st.DrawFn, *, extra_keys: bool = True) -> dict[str, Any]:
    """A valid vector with one value replaced by any value, dropped, or (with `extra_keys`) a
    field added to one of its objects."""
    _, valid = draw(st.sampled_from(VALID))
    message: dict[str, Any] = copy.deepcopy(valid)
    place = draw(st.sampled_from(_places(message)))
    *parents, leaf = place
    target: Any = message
    for step in parents:
        target = target[step]
    if extra_keys and isinstance(target, dict) and draw(st.integers(0, 5)) == 0:
        target[draw(keys)] = draw(json_values)
        return message
    replacement = draw(json_values | st.just(DELETE))
    if replacement is DELETE:
        del target[leaf]
    else:
        target[leaf] = replacement
    return message


def _checked_errors(error: ValidationError) -> None:
    """What a user reads: short lines that can be printed and written as UTF-8."""
    for line in map(str, field_errors(error)):
        line.encode("utf-8")
        assert len(line) < 500, line


def check_message(value: Any) -> None:
    try:
        message = parse_message(value, CTX)
    except ValidationError as error:
        _checked_errors(error)
        return
    assert isinstance(message, ApiObject)
    wire = orjson.loads(orjson.dumps(to_api_json(message)))  # what is accepted can be sent
    assert to_api_json(parse_message(wire, CTX)) == wire


def check_job(value: Any) -> None:
    try:
        job = parse_job(value, CTX)
    except InvalidJobError as error:
        refused = error
    else:
        assert isinstance(job, Job)
        orjson.dumps(job.to_wire())
        return
    assert all(len(str(e)) < 500 for e in refused.errors), refused.errors
    str(refused).encode("utf-8")


@HOSTILE
@given(json_values)
def test_any_json_value_is_a_message_or_a_validation_error(value: Any) -> None:
    check_message(value)
    check_job(value)


@HOSTILE
@given(st.dictionaries(keys, json_values, max_size=8))
def test_any_object_is_a_message_or_a_validation_error(value: dict[str, Any]) -> None:
    check_message(value)
    check_job(value)
    check_job({"jobId": "j-1", "message": value})


@HOSTILE
@given(mutated_messages())
def test_a_valid_message_with_one_part_replaced_is_validated_without_crashing(
    value: dict[str, Any],
) -> None:
    check_message(value)
    check_job(value)
    check_job({"jobId": "j-1", "message": value})


@HOSTILE
@given(st.sampled_from(VALID), any_text, st.data())
def test_a_lone_surrogate_anywhere_is_refused(
    case: tuple[str, dict[str, Any]], text: str, data: st.DataObject
) -> None:
    """Every text, and every key, of a valid message: with a lone surrogate it is invalid."""
    message: dict[str, Any] = copy.deepcopy(case[1])
    place = data.draw(st.sampled_from(_places(message)))
    *parents, leaf = place
    target: Any = message
    for step in parents:
        target = target[step]
    bad = text + "\ud83d"
    if isinstance(target, dict) and data.draw(st.booleans()):
        target[bad] = target.pop(leaf)  # the key
    else:
        target[leaf] = bad
    with pytest.raises(ValidationError) as caught:
        parse_message(message, CTX)
    _checked_errors(caught.value)


# -- the defects seen by testers, each at its cause -------------------------------------------


@pytest.mark.parametrize(
    "channel_type",
    [["SMS"], {"a": 1}, {"SMS": "SMS"}, [], 1, 1.5, True, None],
    ids=repr,
)
def test_an_unhashable_or_odd_channel_type_is_a_validation_error(channel_type: Any) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_message(variant("SMS", channelType=channel_type), CTX)
    assert [(e.path, e.rule[:12]) for e in field_errors(caught.value)] == [
        ("channelType", "must be one ")
    ]


@pytest.mark.parametrize(
    ("field", "value", "path", "rule"),
    [
        ("callbackEvents", [{}], "callbackEvents[0]", "must be a string"),
        ("callbackEvents", [["sent"]], "callbackEvents[0]", "must be a string"),
        ("tags", [[]], "tags[0]", "must be a string"),
        ("tags", {"a": 1}, "tags", "must be an array"),
        ("hours", [[1]], "hours[0]", "must be an integer"),
        ("days", [{"d": 1}], "days[0]", "must be an integer"),
        ("callbackUrl", ["http://a.com"], "callbackUrl", "must be a string"),
        ("destination", {"n": "1"}, "destination", "must be a string"),
        ("localSendTime", [], "localSendTime", "must be a string"),
    ],
)
def test_wrongly_typed_fields_are_validation_errors(
    field: str, value: Any, path: str, rule: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_message(variant("SMS", **{field: value}), CTX)
    assert [(e.path, e.rule) for e in field_errors(caught.value)] == [(path, rule)]


@pytest.mark.parametrize(
    ("channel", "patch", "path"),
    [
        ("SMS", {"content": "hi \ud83d"}, "content"),
        ("SMS", {"senderName": "\udc00"}, "senderName"),
        ("SMS", {"tags": ["ok", "\ud83d"]}, "tags[1]"),
        ("SMS", {"callbackEvents": ["sent", "\ud83d"]}, "callbackEvents[1]"),
        ("WHATSAPP", {"content__text": "x\ud83d"}, "content.text"),
        ("WHATSAPP", {"content__footer": {"text": "\ud83d"}}, "content.footer.text"),
        (
            "WHATSAPP",
            {
                "content__buttons": [
                    {"text": "a", "payload": "p"},
                    {"text": "b\ud83d", "payload": "p"},
                ]
            },
            "content.buttons[1].text",
        ),
        ("VOICECODE", {"externalMessageId": "\ud83d"}, "externalMessageId"),
        ("FLASHCALL_CONVERSION", {"code": "12\ud83d"}, "code"),
    ],
)
def test_text_that_utf8_cannot_carry_is_refused_where_it_is(
    channel: str, patch: dict[str, Any], path: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_message(variant(channel, **patch), CTX)
    assert [(e.path, e.rule) for e in field_errors(caught.value)] == [
        (path, "must be text that can be encoded as UTF-8 (it holds a lone surrogate)")
    ]


def test_a_key_that_utf8_cannot_carry_is_refused_and_shown_escaped() -> None:
    with pytest.raises(ValidationError) as caught:
        parse_message({**variant("SMS"), "x\ud83d": 1}, CTX)
    [error] = field_errors(caught.value)
    assert error.path == "x\\ud83d"
    assert "UTF-8" in error.rule


def test_error_messages_quote_huge_values_cut_short() -> None:
    huge = "a b" * 3_500_000  # 10 MB
    cases = [
        variant("SMS", tags=[huge]),
        variant("SMS", callbackEvents=[huge]),
        {**variant("SMS"), huge: 1},  # an unknown field: its name is the path
    ]
    for message in cases:
        with pytest.raises(ValidationError) as caught:
            parse_message(message, CTX)
        lines = [str(e) for e in field_errors(caught.value)]
        assert all(len(line) < 200 for line in lines), [line[:300] for line in lines]
        assert any("(10500000 characters)" in line for line in lines), lines


def test_huge_numbers_are_range_errors() -> None:
    for value in (10**5000, -(10**5000), 2**64):
        with pytest.raises(ValidationError) as caught:
            parse_message(variant("SMS", ttl=value, hours=[value]), CTX)
        assert sorted(e.path for e in field_errors(caught.value)) == ["hours[0]", "ttl"]
