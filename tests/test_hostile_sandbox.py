"""Hostile bodies to the sandbox, in process: every answer is 200 or a documented 4xx with the
API's error shape, never a 5xx or a dropped connection, and the last-resort guard never fires
(a crash it would hide is a bug to fix in `sandbox/rules.py`). On the way, valid messages with
one part replaced by any value show that the client's contract and the sandbox agree.

`HYPOTHESIS_EXAMPLES` sets the examples per property (default 200; `make soak` raises it).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError
from starlette.exceptions import StarletteDeprecationWarning

from sandbox.app import CONVERSION_PATH, MESSAGE_PATH, Sandbox, create_app
from sandbox.auth import Credentials
from tasks.contract import field_errors, parse_message, to_api_json
from tests.contract_cases import NOW, variant
from tests.test_hostile_contract import HOSTILE, json_values, mutated_messages
from tests.vectors import CTX

with warnings.catch_warnings():  # starlette 1.x would rather have httpx2 under its TestClient
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

TOKEN = "hostile-token"
AUTH = {"Authorization": f"Basic {TOKEN}", "Content-Type": "application/json"}
PATHS = (MESSAGE_PATH, CONVERSION_PATH)
NOT_A_FIELD = "is not a field of this object in the API"

SANDBOX = Sandbox(Credentials(TOKEN, frozenset({"other-token"})), seed=1)
SANDBOX.frozen_now = NOW  # the vectors' clock


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with TestClient(create_app(SANDBOX), raise_server_exceptions=True) as client:
        yield client


def post(client: TestClient, path: str, body: bytes) -> tuple[int, Any]:
    """The status and JSON body of an answer, checked against the documented shapes."""
    before = SANDBOX.unexpected_errors
    response = client.post(path, content=body, headers=AUTH)
    assert SANDBOX.unexpected_errors == before, "the sandbox's validation raised (see the log)"
    assert response.status_code in (200, 422), (response.status_code, response.text[:500])
    answer = response.json()
    if response.status_code == 200:
        assert set(answer) == {"errors", "items"}
        assert all(item["code"] == 201 for item in answer["items"])
    else:
        assert set(answer) == {"error"}
        assert set(answer["error"]) == {"code", "msg"}
        assert answer["error"]["code"] in (4220, 4222, 4223)
        assert isinstance(answer["error"]["msg"], str)
    SANDBOX.recorder.clear_received()
    return response.status_code, answer


def as_json(value: Any) -> bytes:
    """JSON text of any Python value: a lone surrogate becomes the escape `\\ud83d`, NaN the
    literal `NaN`, as a careless producer would send them."""
    return json.dumps(value, ensure_ascii=True, allow_nan=True).encode()


# -- any bytes, any JSON ----------------------------------------------------------------------


@HOSTILE
@given(st.binary(max_size=300), st.sampled_from(PATHS))
def test_any_bytes_get_a_documented_answer(client: TestClient, body: bytes, path: str) -> None:
    post(client, path, body)


@HOSTILE
@given(json_values, st.sampled_from(PATHS))
def test_any_json_body_gets_a_documented_answer(client: TestClient, value: Any, path: str) -> None:
    post(client, path, as_json(value))


@HOSTILE
@given(st.lists(json_values, min_size=1, max_size=4), st.sampled_from(PATHS))
def test_any_array_of_values_gets_a_documented_answer(
    client: TestClient, values: list[Any], path: str
) -> None:
    post(client, path, as_json(values))


@HOSTILE
@given(st.lists(mutated_messages(), min_size=1, max_size=3), st.sampled_from(PATHS))
def test_mutated_valid_bodies_get_a_documented_answer(
    client: TestClient, messages: list[dict[str, Any]], path: str
) -> None:
    post(client, path, as_json(messages))


# -- the client and the sandbox agree on every mutation ---------------------------------------


def _client_verdict(message: dict[str, Any]) -> list[str] | None:
    """None when the client accepts the message, else its rules."""
    try:
        parse_message(message, CTX)
    except ValidationError as error:
        return [e.rule for e in field_errors(error)]
    return None


@HOSTILE
@given(mutated_messages(extra_keys=False))
def test_client_and_sandbox_agree_on_mutated_messages(
    client: TestClient, message: dict[str, Any]
) -> None:
    """What the client accepts the sandbox accepts; what the sandbox accepts the client
    accepts too, unless the client only objects to fields the API does not know."""
    check_agreement(client, message)


# Characters that trip validators: digits of other scripts, Unicode spaces and controls, URL
# delimiters, letters that fold to ASCII under re.IGNORECASE (long s, Kelvin sign), a BOM,
# a lone surrogate (sent as the escape `\ud83d`, which the sandbox must refuse).
TRICKY = (
    "0123456789aZz_-+ ./:?#@[]()%*"
    "\t\n\r\x00\x1f\x7f\x85\xa0\u2028\u200b\ufeff"
    "\u0661\u0662\uff11\uff12\u0969\u00b2\u017f\u212aI\u0130"
    "КодА\ud83d"
)


@st.composite
def edits_of(draw: st.DrawFn, valid: str) -> str:
    """`valid` with one to three characters replaced, inserted or deleted."""
    text = valid
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(text)))
        char = draw(st.sampled_from(TRICKY))
        how = draw(st.sampled_from(["replace", "insert", "delete"]))
        if how == "insert" or at == len(text):
            text = text[:at] + char + text[at:]
        elif how == "replace":
            text = text[:at] + char + text[at + 1 :]
        else:
            text = text[:at] + text[at + 1 :]
    return text


def _mostly(good: list[str], odd: list[str]) -> st.SearchStrategy[str]:
    """One of `good` four times in five, else one of `odd`."""
    return st.sampled_from(good * (4 * len(odd) // len(good) + 1) + odd)


def _urls() -> st.SearchStrategy[str]:
    """URL-shaped strings around the rule's edges, about one in four valid."""
    pieces = st.tuples(
        _mostly(["http", "https", "HTTPS", "HtTp"], ["ftp", "httpſ", "https\u212a", ""]),
        _mostly(["://"], [":/", ":", "//", ":///"]),
        _mostly(["", "u:p@", "a@b@"], ["@", "[x]@"]),
        _mostly(["c.com", "[::1]", "ü.рф", "1.2.3.4"], ["", "[::1", "[]", "[g::]", "a b", "c]"]),
        _mostly(["", ":", ":80", ":65535"], [":65536", ":123456", ":abc", ":٨٠", ":8:0"]),
        _mostly(["", "/", "/p?q#f", "?x", "#"], ["/ x", "x", "\t", "/\x85"]),
    ).map("".join)
    return pieces | pieces.flatmap(edits_of)


Build = Callable[[Any], dict[str, Any]]
FIELDS: dict[str, tuple[Build, st.SearchStrategy[Any]]] = {
    "callbackUrl": (lambda v: variant("SMS", callbackUrl=v), _urls()),
    "content.imageUrl": (
        lambda v: variant(
            "WHATSAPP", content={"contentType": "image", "imageUrl": v, "imageName": "i"}
        ),
        _urls(),
    ),
    "header.documentUrl": (
        lambda v: variant("WHATSAPP", content__header={"documentUrl": v}),
        _urls(),
    ),
    "buttons[0].url": (
        lambda v: variant("WHATSAPP", content__buttons=[{"text": "b", "url": v}]),
        _urls(),
    ),
    "destination": (lambda v: variant("SMS", destination=v), edits_of("+1 (408) 555-3911")),
    "localSendTime": (lambda v: variant("SMS", localSendTime=v), edits_of("2026-11-22 13:00:00")),
    "tags": (lambda v: variant("SMS", tags=[v]), edits_of("Campaign_1")),
    "callbackEvents": (lambda v: variant("SMS", callbackEvents=[v]), edits_of("delivered")),
    "senderName": (lambda v: variant("SMS", senderName=v), edits_of(" ")),
    "sms content": (lambda v: variant("SMS", content=v), edits_of(" ")),
    "flashcall code": (lambda v: variant("FLASHCALL", content=v), edits_of("1234")),
    "voicecode text": (
        lambda v: variant("VOICECODE", content__text=v),
        edits_of("Код авторизации от ACME: 1-2-3-4."),
    ),
    "whatsapp footer": (lambda v: variant("WHATSAPP", content__footer={"text": v}), edits_of("")),
    "messageUuid": (
        lambda v: variant("FLASHCALL_CONVERSION", messageUuid=v),
        edits_of("063464ec-a34f-4558-90c5-984395000004"),
    ),
}


@pytest.mark.parametrize("field", FIELDS)
@HOSTILE
@given(data=st.data())
def test_client_and_sandbox_agree_on_tricky_values(
    client: TestClient, field: str, data: st.DataObject
) -> None:
    build, values = FIELDS[field]
    check_agreement(client, build(data.draw(values, label=field)))


def check_agreement(client: TestClient, message: dict[str, Any]) -> None:
    refused = _client_verdict(message)
    path = CONVERSION_PATH if "channelType" not in message else MESSAGE_PATH
    wire = message if refused else to_api_json(parse_message(message, CTX))
    status, answer = post(client, path, as_json([wire]))
    if refused is None:
        assert status == 200, answer
    elif status == 200:
        assert set(refused) == {NOT_A_FIELD}, refused


# -- the defects seen by testers, each at its cause -------------------------------------------

HOSTILE_BODIES = {
    "5000-digit number": b'[{"channelType": "SMS", "ttl": ' + b"9" * 5000 + b"}]",
    "5000-digit number alone": b"9" * 5000,
    "20-digit number": b'[{"channelType": "SMS", "senderName": "S", "destination": '
    b'"14085553911", "content": "x", "ttl": 99999999999999999999}]',
    "1e400": b"[1e400]",
    "NaN": b'[{"ttl": NaN}]',
    "escaped lone surrogate": b'[{"channelType": "SMS", "content": "hi \\ud83d"}]',
    "escaped lone low surrogate": b'[{"channelType": "SMS", "content": "\\udc00"}]',
    "escaped surrogate key": b'[{"\\ud83d": 1}]',
    "invalid UTF-8": b'[{"channelType": "SMS", "content": "\xff\xfe"}]',
    "overlong UTF-8": b'[{"content": "\xc0\xaf"}]',
    "UTF-8 surrogate bytes": b'[{"content": "\xed\xa0\xbd"}]',
    "BOM before the body": b'\xef\xbb\xbf[{"channelType": "SMS"}]',
    "nested 10,000 deep": b"[" * 10_000 + b"]" * 10_000,
    "nested 1,000 deep in tags": b'[{"channelType": "SMS", "senderName": "S", "destination": '
    b'"14085553911", "content": "x", "tags": ' + b"[" * 1000 + b"]" * 1000 + b"}]",
    "nested 1,000 deep in a VOICECODE sender": b'[{"channelType": "VOICECODE", "senderName": '
    + b'{"a": ' * 1000
    + b"1"
    + b"}" * 1000
    + b', "destination": "14085553911"}]',
    "empty": b"",
    "null": b"null",
    "object channelType": b'[{"channelType": {"a": 1}}]',
    "array channelType": b'[{"channelType": ["SMS"]}]',
    "null channelType": b'[{"channelType": null}]',
    "array contentType": b'[{"channelType": "WHATSAPP", "senderName": "S", "destination": '
    b'"14085553911", "content": {"contentType": ["text"], "text": "x"}}]',
    "array callbackEvents item": b'[{"channelType": "SMS", "senderName": "S", "destination": '
    b'"14085553911", "content": "x", "callbackEvents": [["sent"]]}]',
    "object callbackEvents item": b'[{"channelType": "SMS", "senderName": "S", "destination": '
    b'"14085553911", "content": "x", "callbackEvents": [{}]}]',
    "array result": b'[{"messageUuid": "063464ec-a34f-4558-90c5-984395000004", "result": []}]',
}


@pytest.mark.parametrize("body", HOSTILE_BODIES.values(), ids=HOSTILE_BODIES.keys())
@pytest.mark.parametrize("path", PATHS)
def test_hostile_bodies_get_a_documented_answer(client: TestClient, path: str, body: bytes) -> None:
    status, _ = post(client, path, body)
    assert status == 422


@pytest.mark.parametrize(
    "body",
    [b"[1e400]", b'[{"content": "\\ud83d"}]', b'["\xff"]', b"[" * 100 + b"]" * 100],
    ids=["huge number", "escaped surrogate", "invalid UTF-8", "nested 100 deep"],
)
def test_unreadable_bodies_are_invalid_request_bodies(client: TestClient, body: bytes) -> None:
    _, answer = post(client, MESSAGE_PATH, body)
    assert answer == {"error": {"code": 4220, "msg": "Invalid request body"}}


def test_nesting_is_limited_to_32_levels(client: TestClient) -> None:
    """An unknown field is ignored however it is made, up to the nesting limit: the array is
    level 1, the message 2, so 30 arrays in a field make 32 levels, 31 too many."""

    def nested(levels: int) -> Any:
        value: Any = "x"
        for _ in range(levels):
            value = [value]
        return value

    status, _ = post(client, MESSAGE_PATH, as_json([variant("SMS", extra=nested(30))]))
    assert status == 200
    _, answer = post(client, MESSAGE_PATH, as_json([variant("SMS", extra=nested(31))]))
    assert answer == {"error": {"code": 4220, "msg": "Invalid request body"}}


def test_what_is_recorded_can_be_read_back(client: TestClient) -> None:
    SANDBOX.recorder.clear_received()
    deep: Any = {"k": "v"}
    for _ in range(29):
        deep = {"k": deep}
    client.post(MESSAGE_PATH, content=as_json([variant("SMS", extra=deep)]), headers=AUTH)
    received = client.get("/_sandbox/received")
    assert received.status_code == 200
    assert received.json()[0]["message"]["extra"] == deep


def test_the_stats_survive_odd_channel_types(client: TestClient) -> None:
    for channel in ([["SMS"]], {"a": 1}, None, 1):
        post(client, MESSAGE_PATH, as_json([{"channelType": channel}]))
    stats = client.get("/_sandbox/stats")
    assert stats.status_code == 200
    assert stats.json()["requestsPerChannel"]["?"] >= 4


@pytest.mark.parametrize("query", ["offset=x", "limit=-1", "offset=١", "limit=1e3"])
def test_received_refuses_odd_paging(client: TestClient, query: str) -> None:
    assert client.get(f"/_sandbox/received?{query}").status_code == 400


def test_a_crash_in_validation_is_answered_422_and_counted(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The last-resort guard: never relied on for known causes (each test above checks it did
    not fire), but a real server answers rather than crashes."""

    def broken(*args: Any) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(SANDBOX, "_first_error", broken)
    before = SANDBOX.unexpected_errors
    response = client.post(MESSAGE_PATH, content=as_json([variant("SMS")]), headers=AUTH)
    assert (response.status_code, response.json()) == (
        422,
        {"error": {"code": 4220, "msg": "Invalid request body"}},
    )
    assert SANDBOX.unexpected_errors == before + 1
