"""Field types shared by several channels, each carrying the documented rule and its message."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, Field
from pydantic_core import PydanticCustomError

from tasks.api_terms import CALLBACK_EVENTS
from tasks.untrusted import quote

# E.164 allows at most 15 digits; 7 is the shortest number with a country code in use.
MSISDN_PATTERN = r"^[1-9][0-9]{6,14}$"
# Formatting people paste with a number; removed before the digit check.
_NUMBER_FORMATTING = re.compile(r"[\s\-().]")
TAG_PATTERN = r"^[A-Za-z0-9_]+$"
BOM = "\ufeff"
# An http(s) URL: the scheme in any ASCII case (schemes are case-insensitive; not `(?i)`,
# which lets U+017F, the long s, pass for 's'), `://`, optional user info up to the
# authority's last `@`, a host (a name, or an IPv6 literal in brackets), an optional port,
# then nothing or a path, query or fragment. Spaces and control characters are refused on
# their own (`_UNPRINTABLE`): the API gets the string as it is.
_HTTP_URL = re.compile(
    r"[Hh][Tt][Tt][Pp][Ss]?://"
    r"(?:[^/?#]*@)?"
    r"(?:\[[0-9A-Fa-f:.]+\]|[^/?#@:\[\]]+)"
    r"(?::(?P<port>[0-9]{0,5}))?"
    r"(?:[/?#].*)?",
    re.DOTALL,
)
_UNPRINTABLE = re.compile(r"[\s\x00-\x1f\x7f-\x9f]")
MAX_PORT = 65_535


def rule_error(kind: str, message: str, **ctx: object) -> PydanticCustomError:
    """An error whose message is shown to users as-is after the field path."""
    return PydanticCustomError(kind, message, ctx or None)


def documented(**schema: Any) -> Any:
    """The rule as JSON Schema keywords, for the published schema files."""
    return Field(json_schema_extra=schema)


def object_like(example: str) -> Any:
    """Refuse anything but an object with the shape the user must send, shown by example
    (a string where an object belongs is a common mistake; "must be an object" alone, or an
    error about a field inside it, does not say what to send)."""

    def check(value: object) -> object:
        if isinstance(value, dict | BaseModel):
            return value
        raise rule_error("object_like", "must be an object like " + example)

    return BeforeValidator(check)


def array_like(example: str) -> Any:
    """The same for an array."""

    def check(value: object) -> object:
        if isinstance(value, list):
            return value
        raise rule_error("array_like", "must be an array like " + example)

    return BeforeValidator(check)


def _normalise_destination(value: object) -> object:
    # Most numbers arrive clean; isascii first, as isdigit is also true of non-ASCII digits.
    if isinstance(value, str) and not (value.isascii() and value.isdigit()):
        return _NUMBER_FORMATTING.sub("", value).removeprefix("+")
    return value


def _check_destination(value: str) -> str:
    if not re.fullmatch(MSISDN_PATTERN, value):
        raise rule_error(
            "msisdn",
            "must be a phone number in international format: 7 to 15 digits with the country "
            "code, not starting with 0 ('+', spaces, dashes, dots and brackets are removed)",
        )
    return value


def _check_not_blank(value: str) -> str:
    if not value.strip():
        raise rule_error("blank", "must not be blank")
    return value


def _check_no_bom(value: str) -> str:
    if value.startswith(BOM):
        raise rule_error("bom", "must not start with a byte-order mark (U+FEFF)")
    return value


def _check_tag(value: str) -> str:
    if not re.fullmatch(TAG_PATTERN, value):
        raise rule_error(
            "tag", "must contain only ASCII letters, digits and '_' (got '{tag}')", tag=quote(value)
        )
    return value


def _check_http_url(value: str) -> str:
    if _UNPRINTABLE.search(value):
        raise rule_error("http_url", "must be a URL without spaces or control characters")
    match = _HTTP_URL.fullmatch(value)
    port = match and match["port"]
    if match is None or (port and int(port) > MAX_PORT):
        raise rule_error(
            "http_url",
            "must be an http:// or https:// URL with a host (and a port up to 65535, if any)",
        )
    return value


def _check_callback_event(value: str) -> str:
    if value not in CALLBACK_EVENTS:
        raise rule_error(
            "callback_event",
            "unknown callback event '{event}'; known events: " + ", ".join(CALLBACK_EVENTS),
            event=quote(value),
        )
    return value


def _check_unique(values: list[int]) -> list[int]:
    if len(set(values)) != len(values):
        raise rule_error("unique", "values must be unique")
    return values


Destination = Annotated[
    str,
    BeforeValidator(_normalise_destination),
    AfterValidator(_check_destination),
    documented(pattern=MSISDN_PATTERN, description="Subscriber number, digits only (E.164)."),
]
NonBlankText = Annotated[str, AfterValidator(_check_not_blank), documented(pattern=r"\S")]
SenderName = NonBlankText
Utf8Text = Annotated[
    str,
    AfterValidator(_check_no_bom),
    AfterValidator(_check_not_blank),
    documented(pattern=r"^(?!\ufeff)[\s\S]*\S"),
]
Tag = Annotated[str, AfterValidator(_check_tag), documented(pattern=TAG_PATTERN)]
Tags = list[Tag]
HttpUrl = Annotated[
    str,
    AfterValidator(_check_http_url),
    documented(format="uri", pattern="^[Hh][Tt][Tt][Pp][Ss]?://"),
]
CallbackEvent = Annotated[
    str, AfterValidator(_check_callback_event), documented(enum=list(CALLBACK_EVENTS))
]
CallbackEvents = Annotated[list[CallbackEvent], Field(min_length=1)]
Ttl = Annotated[int, Field(ge=60, le=86_400)]
Hours = Annotated[
    list[Annotated[int, Field(ge=0, le=23)]],
    Field(min_length=1),
    AfterValidator(_check_unique),
    documented(uniqueItems=True),
]
Days = Annotated[
    list[Annotated[int, Field(ge=1, le=7)]],
    Field(min_length=1),
    AfterValidator(_check_unique),
    documented(uniqueItems=True),
]
