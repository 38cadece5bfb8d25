"""Decoding JSON from outside (a file line, a stream entry): a value, or one short reason.

Every way a hostile document can fail is turned into `UntrustedJsonError` with a message fit
for a user: bytes that are not UTF-8, lone surrogates (`"\\ud83d"`, which no UTF-8 encoder can
write), NaN/Infinity, numbers beyond a double, nesting deeper than any API object needs, and
documents over the size limit. orjson refuses the first four itself; depth and size are ours,
both checked without recursion so that no input can exhaust the stack.
"""

from __future__ import annotations

from typing import Any

import orjson

#: The API's deepest object (WHATSAPP content → buttons → button) is 4 levels below a job;
#: 32 leaves ample room and keeps every validator's recursion shallow.
MAX_DEPTH = 32
#: Longest excerpt of a user's value quoted back in an error message.
QUOTE_CHARS = 40


class UntrustedJsonError(ValueError):
    """The document cannot be used; `str()` is the reason, short and safe to print, worded
    to follow a subject: "the job is not valid JSON: …", "line 3 is 70000 bytes, …"."""


def load(raw: bytes | str, max_bytes: int | None = None) -> Any:
    """The decoded value; raises UntrustedJsonError."""
    size = len(raw) if isinstance(raw, bytes) else _utf8_size(raw)
    if max_bytes is not None and size > max_bytes:
        raise UntrustedJsonError(f"is {size} bytes, over the limit of {max_bytes} bytes")
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        if "depth" in error.msg:  # orjson's own limit (1024): the same rule as ours
            raise UntrustedJsonError(f"is nested deeper than {MAX_DEPTH} levels") from None
        raise UntrustedJsonError(f"is not valid JSON: {_reason(raw, error)}") from None
    # Only a document with more brackets than the limit can nest that deep: a C-speed count
    # spares the walk for every ordinary job.
    data = raw if isinstance(raw, bytes) else raw.encode("utf-8", "surrogatepass")
    brackets = data.count(b"[") + data.count(b"{")
    if brackets > MAX_DEPTH and too_deep(value, MAX_DEPTH):
        raise UntrustedJsonError(f"is nested deeper than {MAX_DEPTH} levels")
    return value


def too_deep(value: Any, limit: int) -> bool:
    """Whether arrays/objects nest deeper than `limit` (iterative: any depth is safe)."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth >= limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def quote(value: object, limit: int = QUOTE_CHARS) -> str:
    """A value as it may be echoed in an error: cut short, never a 10 MB line."""
    text = value if isinstance(value, str) else repr(value)
    if len(text) > limit:
        text = f"{text[:limit]}… ({len(text)} characters)"
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _utf8_size(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def _reason(raw: bytes | str, error: orjson.JSONDecodeError) -> str:
    """orjson's message without the echo of the document (`doc`), which may be huge."""
    message = error.msg
    if isinstance(raw, bytes) and "UTF-8" in message:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as bad:
            return f"bytes that are not UTF-8 (0x{raw[bad.start]:02x} at byte {bad.start + 1})"
    if "surrogate" in message:
        return f"text that cannot be UTF-8 (a lone surrogate) at column {error.colno}"
    if "infinity" in message:
        return f"a number too large for JSON at column {error.colno}"
    return f"{message} (column {error.colno})"


__all__ = ["MAX_DEPTH", "UntrustedJsonError", "load", "quote", "too_deep"]
