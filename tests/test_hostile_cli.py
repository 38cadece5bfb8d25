"""Hostile job files: every line yields a job or `line N: ...` errors, never a traceback.

Property tests feed arbitrary bytes and arbitrary JSON (lone surrogates, huge numbers, deep
nesting, NaN) to the CLI's line reader; the command tests run the installed
`revicom-dispatch` on each file that once crashed it, and check that `enqueue` leaves the
streams untouched when any line is bad.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

from cli.jobs_file import (
    UTF16_ERROR,
    JobLine,
    RawLine,
    looks_like_utf16,
    parse_job_line,
    read_job_lines,
    read_raw_lines,
)
from tasks.keys import Keys
from tasks.untrusted import UntrustedJsonError, load
from tests.contract_cases import BASE

SCRIPT = Path(sys.executable).with_name("revicom-dispatch")
EXAMPLES = int(os.environ.get("HYPOTHESIS_EXAMPLES", "200"))
MAX_JOB_BYTES = 65_536
SUMMARY = re.compile(r"^(\d+) valid, (\d+) invalid$", re.MULTILINE)


# --- the line parser, property-based ----------------------------------------------------------

SURROGATES = st.integers(0xD800, 0xDFFF).map(chr)
TEXT = st.text(st.one_of(st.characters(), SURROGATES), max_size=30)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=10**300, max_value=10**4000),  # beyond a double
    st.floats(allow_nan=True, allow_infinity=True),
    TEXT,
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(TEXT, children, max_size=4)
    ),
    max_leaves=20,
)


def nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


DEEP_VALUES = st.integers(0, 100).map(nested)  # json.dumps can still write these


def deep_text(depth: int, opener: str = "[", closer: str = "]") -> str:
    return opener * depth + ("1" if opener != "[" else "") + closer * depth


@st.composite
def hostile_jobs(draw: st.DrawFn) -> Any:
    """A job whose field (or the job, or the message) is replaced by an arbitrary value."""
    value = draw(st.one_of(JSON_VALUES, DEEP_VALUES))
    channel = draw(st.sampled_from(sorted(BASE)))
    message = dict(BASE[channel])
    shape = draw(st.sampled_from(["as it is", "field", "new field", "message", "job", "jobId"]))
    if shape == "as it is":  # so that valid lines are drawn too
        return draw(st.sampled_from([message, {"jobId": "x", "message": message}]))
    if shape == "field":
        message[draw(st.sampled_from(sorted(message)))] = value
    elif shape == "new field":
        message[draw(TEXT)] = value
    elif shape == "message":
        return {"jobId": "x", "message": value}
    elif shape == "job":
        return value
    return {"jobId": value if shape == "jobId" else "x", "message": message}


@st.composite
def json_lines(draw: st.DrawFn) -> bytes:
    """A hostile job as JSON text, as a file may hold it (lone surrogates as raw bytes too)."""
    if draw(st.integers(0, 4)):
        job = draw(hostile_jobs())
        text = json.dumps(job, ensure_ascii=draw(st.booleans()), allow_nan=True)
    else:  # nesting deeper than any encoder here would write
        depth = draw(st.integers(0, 3000))
        deep = deep_text(depth, *draw(st.sampled_from([("[", "]"), ('{"a":', "}")])))
        sms = json.dumps(BASE["SMS"])
        text = draw(st.sampled_from([deep, f'{sms[:-1]}, "tags": {deep}}}']))
    return text.encode("utf-8", "surrogatepass")


def check_line(result: JobLine, number: int) -> None:
    assert result.number == number
    if result.job is None:
        assert result.errors, "an invalid line must say why"
        for text in result.describe_errors():
            assert text.startswith(f"line {number}: ")
            assert len(text) < 400, "an error must never echo a huge value"
            text.encode("utf-8")  # printable: no lone surrogate reaches the terminal
    else:
        assert not result.errors
        assert len(result.job.wire) <= MAX_JOB_BYTES
        json.loads(result.job.wire)


@settings(max_examples=EXAMPLES, deadline=None)
@given(json_lines())
def test_any_json_line_yields_a_job_or_errors(line: bytes) -> None:
    check_line(parse_job_line(7, line, max_job_bytes=MAX_JOB_BYTES), 7)


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.lists(st.one_of(st.binary(max_size=200), json_lines()), max_size=8))
def test_any_bytes_yield_one_result_per_non_blank_line(lines: list[bytes]) -> None:
    data = b"\n".join(lines)
    results = list(read_job_lines(io.BytesIO(data), max_job_bytes=1024))
    expected = [
        number
        for number, raw in enumerate(data.split(b"\n"), start=1)
        if (raw.removeprefix(b"\xef\xbb\xbf") if number == 1 else raw).strip(b" \t\r\n")
    ]
    assert [r.number for r in results] == expected
    for result in results:
        check_line(result, result.number)


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.binary(max_size=400), st.integers(1, 50))
def test_the_reader_splits_like_bytes_split_and_bounds_each_line(data: bytes, bound: int) -> None:
    lines = list(read_raw_lines(io.BytesIO(data), bound))
    parts = data.split(b"\n")
    if parts[-1] == b"":
        parts.pop()  # a final newline ends the last line, it does not start one
    assert [line.number for line in lines] == list(range(1, len(parts) + 1))
    for line, part in zip(lines, parts, strict=True):
        assert line.size == len(part)
        assert line.data == (part if len(part) <= bound else None)


class Spy(io.BytesIO):
    """Records the longest piece the reader asked for at once."""

    largest = 0

    def readline(self, size: int | None = -1, /) -> bytes:
        piece = super().readline(size)
        self.largest = max(self.largest, len(piece))
        return piece


def test_a_huge_line_is_skipped_without_being_held() -> None:
    source = Spy(b'{"a": 1}\n' + b"x" * 5_000_000 + b"\n" + b"[]")
    lines = list(read_raw_lines(source, 1000))
    assert lines == [RawLine(1, b'{"a": 1}', 8), RawLine(2, None, 5_000_000), RawLine(3, b"[]", 2)]
    assert source.largest <= 1 << 16


def test_utf16_is_recognised_with_or_without_a_byte_order_mark() -> None:
    line = json.dumps(BASE["SMS"])
    for encoding in ("utf-16", "utf-16-le", "utf-16-be"):
        assert looks_like_utf16(line.encode(encoding)), encoding
    assert not looks_like_utf16(line.encode("utf-8"))
    assert not looks_like_utf16(b'{"a": "\x00"}')


def test_only_a_byte_order_mark_at_the_start_of_the_file_is_ignored() -> None:
    line = json.dumps(BASE["SMS"]).encode()
    data = b"\xef\xbb\xbf" + line + b"\n\xef\xbb\xbf" + line + b"\n"
    first, second = read_job_lines(io.BytesIO(data), max_job_bytes=MAX_JOB_BYTES)
    assert first.job is not None
    assert second.job is None
    assert "byte order mark" in str(second.errors[0])


def test_an_unexpected_exception_is_a_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(*_: object) -> None:
        raise RecursionError("maximum recursion depth exceeded" + "!" * 10_000)

    monkeypatch.setattr("cli.jobs_file.parse_job", explode)
    [error] = parse_job_line(3, b"{}", max_job_bytes=MAX_JOB_BYTES).describe_errors()
    assert error.startswith("line 3: could not be validated (RecursionError: maximum recursion")
    assert len(error) < 200


# --- the commands on hostile files ------------------------------------------------------------

GOOD = json.dumps(BASE["SMS"])


def sms(**patch: Any) -> str:
    return json.dumps({**BASE["SMS"], **patch})


# name -> (file bytes, the bad line's number, what its error says)
HOSTILE: dict[str, tuple[bytes, int, str]] = {
    "a list as channelType": (
        b"%s\n%s\n%s\n"
        % (
            GOOD.encode(),
            json.dumps({"jobId": "x", "message": {**BASE["SMS"], "channelType": ["SMS"]}}).encode(),
            GOOD.encode(),
        ),
        2,
        "",
    ),
    "a lone surrogate": (
        (GOOD + "\n" + sms(content="hi \ud83d") + "\n").encode(),
        2,
        "not valid JSON: text that cannot be UTF-8 (a lone surrogate)",
    ),
    "a byte that is not UTF-8": (
        GOOD.encode()
        + b"\n"
        + json.dumps({**BASE["SMS"], "content": "caf\xe9"}, ensure_ascii=False).encode("latin-1")
        + b"\n",
        2,
        "not valid JSON: bytes that are not UTF-8 (0xe9",
    ),
    "UTF-16 with a byte order mark": ((GOOD + "\n" + GOOD + "\n").encode("utf-16"), 1, UTF16_ERROR),
    "UTF-16 without a byte order mark": (
        (GOOD + "\n" + GOOD + "\n").encode("utf-16-be"),
        1,
        UTF16_ERROR,
    ),
    "a 5,000-digit number": (
        (GOOD + "\n" + GOOD[:-1] + ', "ttl": 1' + "0" * 5000 + "}\n").encode(),
        2,
        "not valid JSON: a number too large for JSON",
    ),
    "nesting 1,000 deep": (
        (GOOD + "\n" + GOOD[:-1] + ', "tags": ' + deep_text(1000) + "}\n").encode(),
        2,
        "nested deeper than 32 levels",
    ),
    "NaN": ((GOOD + "\n" + GOOD[:-1] + ', "ttl": NaN}\n').encode(), 2, "not valid JSON"),
    "a 10 MB SMS": (
        (GOOD + "\n" + sms(content="x" * 10_000_000) + "\n" + GOOD + "\n").encode(),
        2,
        "is over 262144 bytes (10000",
    ),
    "an SMS over MAX_JOB_BYTES as JSON": (
        (GOOD + "\n" + sms(content="x" * 70_000) + "\n" + GOOD + "\n").encode(),
        2,
        "job: is 70",
    ),
}


def run(
    *args: str, stdin: bytes | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(SCRIPT), *args],
        input=stdin,
        capture_output=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
        check=False,
    )
    return subprocess.CompletedProcess(
        result.args,
        result.returncode,
        result.stdout.decode("utf-8", "replace"),
        result.stderr.decode("utf-8", "replace"),
    )


def reason(line: bytes) -> str:
    """What tasks.untrusted says of a line it refuses (its wording is its own)."""
    with pytest.raises(UntrustedJsonError) as refused:
        load(line)
    return str(refused.value)


def keys_under(client: redis.Redis, keys: Keys) -> list[bytes]:
    return list(client.scan_iter(match=f"{keys.prefix}:*", count=1000))


def check_reported(result: subprocess.CompletedProcess[str], line: int, says: str) -> None:
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    errors = [text for text in result.stderr.splitlines() if text.startswith(f"line {line}: ")]
    assert errors, result.stderr
    assert says in errors[0]
    assert all(len(text) < 400 for text in result.stderr.splitlines()), "a huge value echoed"


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_validate_reports_the_line_and_ends_with_its_summary(tmp_path: Path, name: str) -> None:
    data, line, says = HOSTILE[name]
    file = tmp_path / "jobs.jsonl"
    file.write_bytes(data)
    result = run("validate", str(file))
    check_reported(result, line, says)
    summary = SUMMARY.search(result.stdout)
    assert summary, result.stdout
    assert int(summary[2]) >= 1
    if name.startswith("UTF-16"):
        assert result.stderr.count(UTF16_ERROR) == 1
    else:  # the good lines around the bad one are still read
        assert int(summary[1]) == data.count(b"\n") - 1


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_enqueue_reports_the_line_and_writes_nothing(
    tmp_path: Path, name: str, redis_url: str, redis_client: redis.Redis, keys: Keys
) -> None:
    data, line, says = HOSTILE[name]
    file = tmp_path / "jobs.jsonl"
    file.write_bytes(data)
    ids = tmp_path / "ids.jsonl"
    env = {"REDIS_URL": redis_url, "DISPATCH_KEY_PREFIX": keys.prefix}
    result = run("enqueue", str(file), "--ids", str(ids), env=env)
    check_reported(result, line, says)
    assert "nothing enqueued" in result.stderr
    assert keys_under(redis_client, keys) == []
    assert not ids.exists()


def test_hostile_bytes_on_standard_input() -> None:
    garbage, deep = b"\xff\xfe\x00garbage", b"[" * 100_000
    data = GOOD.encode() + b"\n" + garbage + b"\n" + deep + b"\n" + GOOD.encode()
    result = run("validate", "-", stdin=data)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"line 2: {reason(garbage)}",
        f"line 3: {reason(deep)}",
    ]
    assert "bytes that are not UTF-8 (0xff at byte 1)" in result.stderr
    assert "2 valid, 2 invalid" in result.stdout


def test_skip_invalid_enqueues_the_lines_around_a_hostile_one(
    tmp_path: Path, redis_url: str, redis_client: redis.Redis, keys: Keys
) -> None:
    data, _, _ = HOSTILE["a 10 MB SMS"]
    file = tmp_path / "jobs.jsonl"
    file.write_bytes(data)
    env = {"REDIS_URL": redis_url, "DISPATCH_KEY_PREFIX": keys.prefix}
    result = run("enqueue", str(file), "--skip-invalid", env=env)
    assert result.returncode == 1
    assert "1 invalid line(s) skipped" in result.stderr
    assert redis_client.xlen(keys.jobs("SMS")) == 2
    entries: Any = redis_client.xrange(keys.jobs("SMS"))
    for _, fields in entries:
        assert len(fields[b"job"]) <= MAX_JOB_BYTES


def test_a_utf8_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    file = tmp_path / "jobs.jsonl"
    file.write_text(GOOD + "\n" + GOOD + "\n", encoding="utf-8-sig")
    result = run("validate", str(file))
    assert result.returncode == 0, result.stderr
    assert "2 valid, 0 invalid" in result.stdout


def test_windows_line_ends_and_blank_lines_are_fine() -> None:
    data = GOOD.encode() + b"\r\n\r\n \t\r\n" + GOOD.encode() + b"\r\n"
    results = list(read_job_lines(io.BytesIO(data), max_job_bytes=MAX_JOB_BYTES))
    assert [(r.number, r.job is not None) for r in results] == [(1, True), (4, True)]
