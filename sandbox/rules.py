"""The sandbox's validation of request objects, written from the API docs on its own.

Deliberately independent of `tasks.contract` (the client's models): the two are checked
against one table of test vectors, so a misreading of the docs in either shows up.
The API reports the first invalid object of a request with one error; every check here
returns that error as (code, msg), or None when the object is valid. Fields a check does not
know are ignored, as a JSON server ignores unknown properties.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

ApiError = tuple[int, str]
Obj = dict[str, Any]

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
# [0-9], never \d: \d (and str.isdigit, and strptime) also take Arabic-Indic or full-width
# digits, which are no digits to the API.
_TIME_SHAPE = re.compile(r"[0-9]{4}-[0-9][0-9]-[0-9][0-9] [0-9][0-9]:[0-9][0-9]:[0-9][0-9]")
_MSISDN = re.compile(r"[1-9][0-9]{6,14}")
_TAG = re.compile(r"[A-Za-z0-9_]+")
#: No URL holds white space (any, as str.isspace knows it) or a control character.
_UNPRINTABLE = re.compile(r"[\s\x00-\x1f\x7f-\x9f]")
_UUID = re.compile(r"[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}")
_EVENTS = frozenset({"delivered", "sent", "read", "price", "click"})
_VOICE_PREFIX = "Код авторизации от "
#: scheme :// [userinfo @] host [: port] [/ ? # rest]; the host a name or an IPv6 literal.
_URL = re.compile(
    r"[Hh][Tt][Tt][Pp][Ss]?://(?:[^/?#]*@)?(?:\[[0-9A-Fa-f:.]+\]|[^/?#@:\[\]]+)"
    r"(?::([0-9]{0,5}))?(?:[/?#].*)?",
    re.DOTALL,
)
_MAX_PORT = 65535
#: The longest VK text (notes.md, "The rest of the API": 1-2048 characters).
_VK_MAX_CHARS = 2048
#: Channels whose senderName must be an approved name (sms.md, whatsapp.md); FLASHCALL and VK
#: take any string, VOICECODE only `voicecode`. The sandbox's list of names that are not
#: approved (the `rejectSenders` fault) applies to these alone.
APPROVED_SENDER_CHANNELS = frozenset({"SMS", "WHATSAPP"})
_ASCII_DIGITS = frozenset("0123456789")
#: How deep `show` prints nested arrays/objects before it writes `...`.
_SHOW_DEPTH = 8

INVALID_MSISDN: ApiError = (4220, "Invalid msisdn")
INVALID_CONTENT: ApiError = (4220, "Invalid content")
BLANK_CONTENT: ApiError = (4220, "Blank content")


def invalid(field: str) -> ApiError:
    return (4220, f"Invalid {field}")


def show(value: Any, depth: int = 0) -> str:
    """A value as the server prints it in messages (Java's toString)."""
    if isinstance(value, list | dict):
        return _show_nested(value, depth)
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int) and value.bit_length() > 64:
        return "<a number too large>"  # JSON can hold it, a Java long cannot; nor can str()
    return str(value)


def _show_nested(value: list[Any] | dict[Any, Any], depth: int) -> str:
    if isinstance(value, list):
        inner = (show(v, depth + 1) for v in value)
        brackets = "[]"
    else:
        inner = (f"{k}={show(v, depth + 1)}" for k, v in value.items())
        brackets = "{}"
    text = "..." if depth >= _SHOW_DEPTH else ", ".join(inner)
    return brackets[0] + text + brackets[1]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _text(value: Any, low: int, high: int) -> bool:
    return isinstance(value, str) and low <= len(value) <= high


def _http_link(value: Any) -> bool:
    """`http://` or `https://` (the scheme in any case), optional `user:password@`, a host (a
    name, or an IPv6 address in brackets), an optional port up to 65535, then `/`, `?`, `#` or
    the end; no spaces or control characters anywhere."""
    if not isinstance(value, str) or _UNPRINTABLE.search(value):
        return False
    match = _URL.fullmatch(value)
    return match is not None and int(match.group(1) or 0) <= _MAX_PORT


class Validator:
    """Checks one request object at the given moment (`now`, naive UTC)."""

    def __init__(self, now: datetime, flashcall_max_digits: int = 4) -> None:
        self.now = now
        self.flashcall_max_digits = flashcall_max_digits
        self._channels: dict[str, Callable[[Obj], ApiError | None]] = {
            "SMS": self._sms,
            "FLASHCALL": self._flashcall,
            "VOICECODE": self._voicecode,
            "WHATSAPP": self._whatsapp,
            "VK": self._vk,
        }

    def message(self, obj: Any) -> ApiError | None:
        if not isinstance(obj, dict):
            return invalid("request body")
        channel = obj.get("channelType")
        check = self._channels.get(channel) if isinstance(channel, str) else None
        if check is None:
            return invalid("channelType")
        return self._common(obj) or check(obj)

    def conversion(self, obj: Any) -> ApiError | None:
        if not isinstance(obj, dict):
            return invalid("request body")
        uuid = obj.get("messageUuid")
        if not (isinstance(uuid, str) and _UUID.fullmatch(uuid)):
            return invalid("messageUuid")
        if obj.get("result") not in ("NUMBER_VERIFIED", "WRONG_CODE"):
            return invalid("result")
        code = obj.get("code")
        if code is not None and not (isinstance(code, str) and code):
            return invalid("code")
        return None

    # -- fields every channel has ------------------------------------------------------------

    def _common(self, obj: Obj) -> ApiError | None:
        sender = obj.get("senderName")
        if not isinstance(sender, str) or not sender.strip():
            return invalid("senderName")
        destination = obj.get("destination")
        if not (isinstance(destination, str) and _MSISDN.fullmatch(destination)):
            return INVALID_MSISDN
        tags = obj.get("tags")
        if tags is not None and not (
            isinstance(tags, list) and all(isinstance(t, str) and _TAG.fullmatch(t) for t in tags)
        ):
            return (4220, f"Invalid tags: {show(tags)}")
        url = obj.get("callbackUrl")
        if url is not None and not _http_link(url):
            return invalid("callbackUrl")
        events = obj.get("callbackEvents")
        if events is not None and not (
            isinstance(events, list)
            and events
            and all(isinstance(e, str) and e in _EVENTS for e in events)
        ):
            return invalid("callbackEvents")
        return None

    def _schedule(self, obj: Obj) -> ApiError | None:
        for flag in ("useLocalTime", "shortUrl"):
            if flag in obj and obj[flag] is not None and not isinstance(obj[flag], bool):
                return invalid(flag)
        ttl = obj.get("ttl")
        if ttl is not None and not (_is_int(ttl) and 60 <= ttl <= 86400):
            return (4220, f"Invalid TTL {show(ttl)}")
        for field, code, low, high in (("hours", 4222, 0, 23), ("days", 4223, 1, 7)):
            values = obj.get(field)
            if values is not None and not _unique_ints(values, low, high):
                return (code, f"Invalid {field}: {show(values)}")
        return self._times(obj.get("localSendTime"), obj.get("localCompletionTime"))

    def _times(self, send_text: Any, completion_text: Any) -> ApiError | None:
        send = completion = None
        for field, text in (("localSendTime", send_text), ("localCompletionTime", completion_text)):
            if text is None:
                continue
            moment = _moment(text)
            if moment is None:
                return invalid(field)
            if field == "localSendTime":
                send = moment
            else:
                completion = moment
        earliest = self.now - timedelta(hours=12)
        if send is not None:
            if send < earliest:
                return (4220, f"Local send time is less than minimal {_fmt(earliest)}")
            latest = self.now + timedelta(days=7)
            if send > latest:
                # "greater than minimal" is the docs' own wording for this error.
                return (4220, f"Local send time is greater than minimal {_fmt(latest)}")
        if completion is not None:
            floor = send if send is not None else earliest
            if completion < floor:
                return (4220, f"Local completion time is less than minimal {_fmt(floor)}")
            ceiling = self.now + timedelta(days=70)
            if completion > ceiling:
                return (4220, f"Local completion time is greater than maximal {_fmt(ceiling)}")
        return None

    # -- channels ----------------------------------------------------------------------------

    def _sms(self, obj: Obj) -> ApiError | None:
        return _plain_text(obj.get("content"), high=None) or self._schedule(obj)

    def _vk(self, obj: Obj) -> ApiError | None:
        """SMS's optional fields; any sender name (the common check: a non-blank string)."""
        return _plain_text(obj.get("content"), high=_VK_MAX_CHARS) or self._schedule(obj)

    def _flashcall(self, obj: Obj) -> ApiError | None:
        code = obj.get("content")
        if not (
            isinstance(code, str)
            and code.isascii()
            and code.isdigit()
            and 4 <= len(code) <= self.flashcall_max_digits
        ):
            return INVALID_CONTENT
        return None

    def _voicecode(self, obj: Obj) -> ApiError | None:
        if obj.get("senderName") != "voicecode":
            return (4220, f"No active sender name: (VOICECODE, {obj.get('senderName')})")
        content = obj.get("content")
        if not (
            isinstance(content, dict)
            and content.get("contentType") == "text"
            and _voice_text(content.get("text"))
        ):
            return INVALID_CONTENT
        ttl = obj.get("ttl")
        if ttl is not None and not (_is_int(ttl) and 30 <= ttl <= 86400):
            return (4220, f"Invalid TTL {show(ttl)}")
        external = obj.get("externalMessageId")
        if external is not None and not _text(external, 1, 100):
            return invalid("externalMessageId")
        return None

    def _whatsapp(self, obj: Obj) -> ApiError | None:
        content = obj.get("content")
        if not isinstance(content, dict):
            return INVALID_CONTENT
        kind = content.get("contentType")
        if kind == "text":
            error = _plain_text(content.get("text"), high=1000)
        elif kind == "image":
            error = _attachment(content, "imageUrl", "imageName")
        elif kind == "document":
            error = _attachment(content, "documentUrl", "documentName")
        else:
            error = INVALID_CONTENT
        return error or _decorations(content) or self._schedule(obj)


def _unique_ints(values: Any, low: int, high: int) -> bool:
    return (
        isinstance(values, list)
        and len(values) > 0
        and all(_is_int(v) and low <= v <= high for v in values)
        and len(set(values)) == len(values)
    )


def _moment(text: Any) -> datetime | None:
    if not (isinstance(text, str) and _TIME_SHAPE.fullmatch(text)):
        return None
    try:
        return datetime.strptime(text, TIME_FORMAT)
    except ValueError:
        return None


def _fmt(moment: datetime) -> str:
    return moment.strftime(TIME_FORMAT)


def _plain_text(value: Any, high: int | None) -> ApiError | None:
    """UTF-8 text without a byte-order mark, not blank, and not longer than `high`."""
    if value is None:
        return BLANK_CONTENT
    if not isinstance(value, str) or value.startswith("\ufeff"):
        return INVALID_CONTENT
    if value.strip() == "":
        return BLANK_CONTENT
    if high is not None and len(value) > high:
        return INVALID_CONTENT
    return None


def _voice_text(text: Any) -> bool:
    """`Код авторизации от {brand}: {code}.`; code digits joined, spaced or separated by one
    special character; the docs' example omits the final period, so it is optional."""
    if not (isinstance(text, str) and 1 <= len(text) <= 1000 and "\n" not in text):
        return False
    if not text.startswith(_VOICE_PREFIX):
        return False
    body = text[len(_VOICE_PREFIX) :].removesuffix(".")
    brand, sep, code = body.rpartition(": ")
    if not sep or not brand or brand != brand.strip() or not code:
        return False
    if not (code[0] in _ASCII_DIGITS and code[-1] in _ASCII_DIGITS):
        return False
    previous_was_separator = False
    for char in code:
        if char in _ASCII_DIGITS:
            previous_was_separator = False
        elif char.isalnum() or previous_was_separator:
            return False
        else:
            previous_was_separator = True
    return True


def _attachment(content: Obj, url_field: str, name_field: str) -> ApiError | None:
    name = content.get(name_field)
    if not _http_link(content.get(url_field)) or not (isinstance(name, str) and name.strip()):
        return INVALID_CONTENT
    return None


def _decorations(content: Obj) -> ApiError | None:
    if "header" in content and content["header"] is not None and not _header(content["header"]):
        return invalid("header")
    footer = content.get("footer")
    if footer is not None and not (isinstance(footer, dict) and _text(footer.get("text"), 1, 60)):
        return invalid("footer")
    buttons = content.get("buttons")
    if buttons is not None and not _buttons(buttons):
        return invalid("buttons")
    return None


def _header(header: Any) -> bool:
    if not isinstance(header, dict):
        return False
    text, doc, name, image = (
        header.get(k) for k in ("text", "documentUrl", "documentName", "imageUrl")
    )
    present = [v for v in (text, doc, image) if v is not None]
    if len(present) != 1:
        return False
    if name is not None and (doc is None or not isinstance(name, str) or not name.strip()):
        return False
    if text is not None:
        return _text(text, 1, 60)
    return _http_link(doc if doc is not None else image)


def _buttons(buttons: Any) -> bool:
    """1-3 buttons, each text (1-20) plus one action; one kind per message; one url, one
    phone at most (so at most two link buttons); payload never beside url or phone."""
    if not (isinstance(buttons, list) and 1 <= len(buttons) <= 3):
        return False
    kinds = set()
    urls = phones = 0
    for button in buttons:
        if not (isinstance(button, dict) and _text(button.get("text"), 1, 20)):
            return False
        url, phone, payload = button.get("url"), button.get("phone"), button.get("payload")
        actions = [a for a in (url, phone, payload) if a is not None]
        if len(actions) != 1 or not _text(actions[0], 1, 1000):
            return False
        if url is not None and not url.startswith("http"):
            return False
        urls += url is not None
        phones += phone is not None
        kinds.add("text" if payload is not None else "link")
    return len(kinds) == 1 and urls <= 1 and phones <= 1
