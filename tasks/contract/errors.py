"""Turn pydantic's errors into `field path: rule` lines a user can act on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from tasks.untrusted import quote

# Built-in pydantic error types, in the words of the API docs' users; `{...}` is the error's ctx.
_RULES: dict[str, str] = {
    "missing": "is required",
    "extra_forbidden": "is not a field of this object in the API",
    "string_type": "must be a string",
    "int_type": "must be an integer",
    "bool_type": "must be true or false",
    "list_type": "must be an array",
    "model_type": "must be an object",
    "dict_type": "must be an object",
    "model_attributes_type": "must be an object",
    "literal_error": "must be {expected}",
    "greater_than_equal": "must be at least {ge}",
    "less_than_equal": "must be at most {le}",
    "string_too_short": "must have at least {min_length} characters",
    "string_too_long": "must have at most {max_length} characters",
    "too_short": "must have at least {min_length} items",
    "too_long": "must have at most {max_length} items",
}
# A length rule applied after a text's own checks is reported as `too_short`/`too_long`
# (pydantic's words for arrays); for a text they are about characters.
_TEXT_RULES: dict[str, str] = {
    "too_short": _RULES["string_too_short"],
    "too_long": _RULES["string_too_long"],
}


# How the message and WHATSAPP content unions tag a branch in an error's location.
_UNION_TAGS = ("channelType=", "contentType=")


@dataclass(frozen=True)
class FieldError:
    path: str
    rule: str

    def __str__(self) -> str:
        return f"{self.path}: {self.rule}" if self.path else self.rule


def field_errors(error: ValidationError) -> list[FieldError]:
    return [FieldError(_path(e), _rule(e)) for e in error.errors(include_url=False)]


def _path(error: ErrorDetails) -> str:
    """`content.buttons[1].text`; union tags (`channelType=SMS`) are not part of the path.

    A name from the input (an unknown field) is quoted cut short: it may be megabytes long.
    """
    loc: list[Any] = [
        quote(p) if isinstance(p, str) else p
        for p in error["loc"]
        if not (isinstance(p, str) and p.startswith(_UNION_TAGS))
    ]
    field = (error.get("ctx") or {}).get("field")
    if field:
        loc.append(field)
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _rule(error: ErrorDetails) -> str:
    kind = error["type"]
    template = (
        _TEXT_RULES.get(kind) if isinstance(error.get("input"), str) else None
    ) or _RULES.get(kind)
    return template.format(**(error.get("ctx") or {})) if template else error["msg"]
