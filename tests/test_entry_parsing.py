"""The worker's parsing of stream entries: whatever an entry holds, a job or a reason, never an
exception (an exception would fail the whole batch, and then again at every takeover)."""

from __future__ import annotations

import json
import os
import re
import sys
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.contract import ContractContext
from tests.contract_cases import BASE
from tests.vectors import CTX as VECTORS_CTX
from tests.vectors import INVALID, VALID
from worker.batch import parse_entry
from worker.ownership import HeldEntry

EXAMPLES = int(os.environ.get("HYPOTHESIS_EXAMPLES", "200"))
CTX = ContractContext()
MAX_BYTES = 65_536

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner),
    max_leaves=30,
)
messages = st.sampled_from([m for _, m in VALID] + [m for _, m, _, _ in INVALID])
fields = st.sampled_from(sorted({f for m in BASE.values() for f in m} | {"jobId", "message"}))


def dumps(value: Any) -> bytes:
    """JSON as a hostile producer may write it: numbers of any length (a vector has a
    5,000-digit ttl, past Python's default limit on int-to-text conversion)."""
    limit = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)
    try:
        return json.dumps(value).encode()
    finally:
        sys.set_int_max_str_digits(limit)


def parse(raw: bytes) -> Any:
    return parse_entry(HeldEntry("1-0", 1, raw), "SMS", CTX, MAX_BYTES)


def check(raw: bytes) -> None:
    parsed = parse(raw)
    assert (parsed.api is None) != (parsed.problem is None)
    if parsed.problem is not None:
        assert len(parsed.problem) < 2000  # a hostile value is quoted cut short
    assert parsed.job_id


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes(raw: bytes) -> None:
    check(raw)


@settings(max_examples=EXAMPLES, deadline=None)
@given(json_values, json_values)
def test_arbitrary_json_jobs(job_id: Any, message: Any) -> None:
    check(dumps({"jobId": job_id, "message": message}))
    check(dumps(message))


@settings(max_examples=EXAMPLES, deadline=None)
@given(messages, fields, json_values)
def test_messages_with_one_field_replaced_by_anything(
    message: dict[str, Any], field: str, value: Any
) -> None:
    check(dumps({"jobId": "j", "message": {**message, field: value}}))
    check(dumps({"jobId": "j", "message": message, field: value}))


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF))
def test_lone_surrogates_anywhere(surrogates: str) -> None:
    job = {"jobId": "j", "message": {**BASE["SMS"], "content": "hi " + surrogates}}
    parsed = parse(json.dumps(job).encode())
    assert parsed.api is None
    assert parsed.problem is not None
    assert "surrogate" in parsed.problem


def test_the_job_id_rule() -> None:
    sms = BASE["SMS"]
    assert parse(orjson.dumps({"message": sms})).job_id == "1-0"  # none: the entry id
    for bad in (42, "", "a b", None, ["x"], "x" * 129):
        parsed = parse(orjson.dumps({"jobId": bad, "message": sms}))
        assert (parsed.job_id, parsed.api) == ("1-0", None)
        assert parsed.problem is not None
        assert parsed.problem.startswith("jobId: must be a string")
    assert parse(orjson.dumps({"jobId": "ok-1", "message": sms})).job_id == "ok-1"


def test_size_is_checked_before_parsing() -> None:
    parsed = parse(b"{" + b" " * MAX_BYTES + b"}")
    assert parsed.problem == f"the job is {MAX_BYTES + 2} bytes, over MAX_JOB_BYTES ({MAX_BYTES})"


#: The documented destination normalisation (README, "destination format").
_FORMATTING = re.compile(r"[+ \-.()]")


@pytest.mark.parametrize(("case", "message"), VALID, ids=[c for c, _ in VALID])
def test_a_valid_entry_is_the_job_that_was_given(case: str, message: dict[str, Any]) -> None:
    """What the worker sends is what the producer was given, field for field, normalised only
    as documented; on the stream of its own channel, under its own jobId."""
    channel = message.get("channelType", "FLASHCALL_CONVERSION")
    job_id = "job-" + re.sub(r"[^!-~]", "_", case)
    raw = orjson.dumps({"jobId": job_id, "message": message})
    parsed = parse_entry(HeldEntry("7-1", 1, raw), channel, VECTORS_CTX, MAX_BYTES)
    assert parsed.problem is None
    assert parsed.api is not None
    expected = dict(message)
    if "destination" in message:
        expected["destination"] = _FORMATTING.sub("", message["destination"])
    assert (parsed.job_id, parsed.api) == (job_id, expected)
    other = "SMS" if channel != "SMS" else "FLASHCALL"
    wrong = parse_entry(HeldEntry("7-1", 1, raw), other, VECTORS_CTX, MAX_BYTES)
    assert wrong.api is None
    assert wrong.problem == f"a {channel} job on the {other} stream"
