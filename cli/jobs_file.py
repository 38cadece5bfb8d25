"""Read jobs from JSON Lines: one message object or `{"jobId": ..., "message": ...}` a line.

The file is untrusted and may be of any size, so it is read as bytes, one bounded line at a
time, and every line yields either a job (validated, in its stream form) or its errors, never
an exception:

- each line is decoded by `tasks.untrusted.load` (UTF-8 only; no lone surrogates, NaN, numbers
  beyond a double, nesting deeper than 32);
- a line longer than `max_line_bytes` is skipped without being held in memory;
- a job whose stream form is over MAX_JOB_BYTES is refused, as the worker would;
- a UTF-8 byte order mark at the very start of the file is ignored (Windows editors write
  one); a file in UTF-16 is reported once, on its first line.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from tasks.contract import ContractContext, FieldError
from tasks.jobs import InvalidJobError, parse_job
from tasks.producer import WireJob, wire_job
from tasks.untrusted import UntrustedJsonError, load, quote

#: A line may be longer than its job's stream form (indentation, `\u` escapes), but not by
#: more than this factor of MAX_JOB_BYTES; longer lines are skipped unread.
LINE_BYTES_PER_JOB_BYTE = 4
#: Longest error text printed for a line (a rule's message may quote the user's value).
ERROR_CHARS = 300

_READ_BYTES = 1 << 16
_UTF8_BOM = b"\xef\xbb\xbf"
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
_JSON_BLANK = b" \t\r\n"
UTF16_ERROR = "the file looks like UTF-16; save it as UTF-8"


class UnreadableFileError(OSError):
    """Reading the file itself failed (not a problem of its content)."""


@dataclass(frozen=True)
class JobLine:
    number: int
    job: WireJob | None
    errors: list[FieldError] = field(default_factory=list)

    def describe_errors(self) -> Iterator[str]:
        for error in self.errors:
            yield f"line {self.number}: {quote(str(error), ERROR_CHARS)}"


@dataclass(frozen=True)
class RawLine:
    """A line's bytes without its end of line; `data` is None when it was over the bound."""

    number: int
    data: bytes | None
    size: int


def max_line_bytes(max_job_bytes: int) -> int:
    return LINE_BYTES_PER_JOB_BYTE * max_job_bytes


def read_raw_lines(source: BinaryIO, max_bytes: int) -> Iterator[RawLine]:
    """Every line of `source` (split on LF), never holding more than `max_bytes` + 1 of one.

    A line over `max_bytes` is read through to its end in bounded pieces and dropped; only its
    size is kept. Raises UnreadableFileError if reading fails.
    """
    number = 0
    while True:
        piece = _read(source, max_bytes + 1)
        if not piece:
            return
        number += 1
        if piece.endswith(b"\n") or len(piece) <= max_bytes:
            data = piece.removesuffix(b"\n")
            yield RawLine(number, data, len(data))
            continue
        size = len(piece)  # over the bound: count the rest of the line, keep none of it
        while not piece.endswith(b"\n"):
            piece = _read(source, _READ_BYTES)
            if not piece:
                break
            size += len(piece)
        yield RawLine(number, None, size - int(piece.endswith(b"\n")))


def _read(source: BinaryIO, limit: int) -> bytes:
    try:
        return source.readline(limit)
    except OSError as error:
        raise UnreadableFileError(error.errno, error.strerror) from None


def read_job_lines(
    source: BinaryIO,
    *,
    max_job_bytes: int,
    context: ContractContext | None = None,
) -> Iterator[JobLine]:
    """Blank lines are skipped; every other line yields a job or its errors."""
    bound = max_line_bytes(max_job_bytes)
    first = True
    for line in read_raw_lines(source, bound):
        data = line.data
        if data is None:
            rule = (
                f"is over {bound} bytes ({line.size} bytes); a job may be at most "
                f"MAX_JOB_BYTES ({max_job_bytes}) as JSON"
            )
            first = False
            yield JobLine(line.number, None, [FieldError("", rule)])
            continue
        if line.number == 1:
            data = data.removeprefix(_UTF8_BOM)
        if not data.strip(_JSON_BLANK):
            continue
        if first:
            first = False
            if looks_like_utf16(data):
                yield JobLine(line.number, None, [FieldError("", UTF16_ERROR)])
                continue
        yield parse_job_line(line.number, data, max_job_bytes=max_job_bytes, context=context)


def parse_job_line(
    number: int,
    data: bytes,
    *,
    max_job_bytes: int,
    context: ContractContext | None = None,
) -> JobLine:
    """One line's job or its errors; never raises (an unexpected failure is an error too)."""
    try:
        value = load(data)
        return JobLine(number, wire_job(parse_job(value, context), max_job_bytes))
    except UntrustedJsonError as error:
        return JobLine(number, None, [FieldError("", str(error))])
    except InvalidJobError as invalid:
        return JobLine(number, None, invalid.errors)
    except Exception as error:  # a line must never stop the command: report it, go on
        rule = f"could not be validated ({type(error).__name__}: {quote(str(error))})"
        return JobLine(number, None, [FieldError("", rule)])


def looks_like_utf16(data: bytes) -> bool:
    """A UTF-16 byte order mark, or ASCII text with a NUL byte beside each character."""
    if data.startswith(_UTF16_BOMS):
        return True
    sample = data[:64]
    if len(sample) < 2:
        return False
    even = sample[0::2].count(0)
    odd = sample[1::2].count(0)
    return (even == 0) != (odd == 0) and max(even, odd) * 4 >= len(sample)
