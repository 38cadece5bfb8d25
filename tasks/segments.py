"""How many SMS parts (segments) a text is sent as: operators bill and throttle an account per
part, not per message, so a limit counted in messages lets long or Unicode texts overrun it.

GSM 03.38 / 3GPP TS 23.038: a text every character of which the GSM 7-bit default alphabet
holds is sent in GSM-7 (a character of the extension table costs two septets, ESC and itself);
any other text in UCS-2, counted in UTF-16 code units (a character beyond the BMP is a
surrogate pair, 2 units). One part holds 160 septets or 70 units; a longer text is
concatenated, and each part's 6-byte User Data Header leaves 153 septets or 67 units. Neither
an escape pair nor a surrogate pair is split between parts: the pair moves to the next part.
An empty text is 1 part: it still travels as one SMS-SUBMIT (user data length 0).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

#: The basic table in code order, 0x00-0x7F; 0x1B (ESC) escapes to the extension table and
#: stands for no character.
GSM7_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)
#: The extension table's characters (form feed, ^ { } \ [ ~ ] | €): ESC + character.
GSM7_EXTENSION = "\f^{}\\[~]|€"
#: Septets in (one part alone, each part of a concatenated message).
GSM7_LIMITS = (160, 153)
#: UTF-16 code units in (one part alone, each part of a concatenated message).
UCS2_LIMITS = (70, 67)
#: The channel whose messages are counted in parts.
SMS = "SMS"

_ESC = "\x1b"
_SEPTETS = {c: 1 for c in GSM7_BASIC if c != _ESC} | dict.fromkeys(GSM7_EXTENSION, 2)
# Regular expressions count at C speed what a loop over characters would (a producer counts
# every SMS it stamps): a character outside GSM-7, the escape pairs, the surrogate pairs.
_NOT_GSM7 = re.compile(f"[^{re.escape(''.join(_SEPTETS))}]")
_ESCAPED = re.compile(f"[{re.escape(GSM7_EXTENSION)}]")
_ASTRAL = re.compile("[\U00010000-\U0010ffff]")


def sms_segments(text: str) -> int:
    """Parts an SMS of `text` is sent (and billed) as."""
    gsm7 = _NOT_GSM7.search(text) is None
    single, each = GSM7_LIMITS if gsm7 else UCS2_LIMITS
    pairs = len((_ESCAPED if gsm7 else _ASTRAL).findall(text))
    total = len(text) + pairs
    if total <= single:
        return 1
    if not pairs:  # no pair to keep whole
        return -(-total // each)
    costs = _gsm7_costs(text) if gsm7 else [2 if ord(c) > 0xFFFF else 1 for c in text]
    segments, used = 1, 0
    for cost in costs:
        if used + cost > each:
            segments, used = segments + 1, 0
        used += cost
    return segments


def message_units(channel: str, obj: Mapping[str, Any], unit: Literal["message", "segment"]) -> int:
    """Units one API object costs: 1 per message, or with unit "segment" an SMS's segments
    (other channels: 1)."""
    if unit == "segment" and channel == SMS:
        content = obj.get("content")
        if isinstance(content, str):
            return sms_segments(content)
    return 1


def _gsm7_costs(text: str) -> list[int]:
    """Septets per character of a GSM-7 text."""
    return [_SEPTETS[char] for char in text]
