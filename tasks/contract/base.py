"""The base of every API object: strict types, unknown fields refused, JSON names as-is, and
only text that UTF-8 can carry."""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, model_validator
from pydantic_core import PydanticCustomError

from tasks.untrusted import quote

NOT_UTF8 = "must be text that can be encoded as UTF-8 (it holds a lone surrogate)"


class ApiObject(BaseModel):
    """Strict so that `"ttl": "60"` or `"shortUrl": "true"` is an error here rather than a
    guess about the server's coercion; unknown fields are refused so a misspelt optional
    (`calbackUrl`) is caught instead of silently dropped.

    Every key and every text of the object (also inside its arrays) must be encodable as
    UTF-8: a Python str may hold a lone surrogate (`"hi \\ud83d"`), which no JSON encoder can
    send. Checked here once for all fields; objects nested in this one check their own.
    """

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _only_utf8_text(cls, data: Any) -> Any:
        if isinstance(data, dict):
            where = first_unencodable(data)
            if where is not None:
                raise PydanticCustomError("utf8", NOT_UTF8, {"field": where})
        return data


def encodable(text: str) -> bool:
    """Whether `text` can be written as UTF-8 (holds no lone surrogate)."""
    if text.isascii():  # O(1) in CPython: the common case costs nothing
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def first_unencodable(data: dict[Any, Any]) -> str | None:
    """The path below `data` (`content`, `tags[2]`) of its first key or text that UTF-8 cannot
    carry, or None. Arrays are searched to any depth without recursion; objects are left to the
    model that validates them."""
    try:
        orjson.dumps(data)  # C-fast, and it refuses lone surrogates: the common case
    except (orjson.JSONEncodeError, TypeError):
        pass  # a surrogate, or a number/nesting/type orjson does not write: look closer
    else:
        return None
    for key, value in data.items():
        if isinstance(key, str) and not encodable(key):
            return quote(key)
        if isinstance(value, str):
            if not encodable(value):
                return quote(key)
        elif isinstance(value, list):
            found = _in_array(value)
            if found is not None:
                return quote(key) + found
    return None


def _in_array(items: list[Any]) -> str | None:
    """The `[i][j]` suffix of the first text in `items` that UTF-8 cannot carry."""
    stack: list[tuple[list[Any], str]] = [(items, "")]
    while stack:
        array, path = stack.pop()
        for index, item in enumerate(array):
            if isinstance(item, str):
                if not encodable(item):
                    return f"{path}[{index}]"
            elif isinstance(item, list):
                stack.append((item, f"{path}[{index}]"))
    return None
