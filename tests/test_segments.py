"""SMS parts: the GSM 03.38 alphabet, each boundary, the pairs that move whole, and properties
any count must keep."""

from __future__ import annotations

import math
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tasks.segments import GSM7_BASIC, GSM7_EXTENSION, message_units, sms_segments

#: 3GPP TS 23.038 6.2.1, by Unicode name: the basic table's positions that are not the ASCII
#: character of the same code (0x1B is the escape, no character).
NOT_ASCII = {
    0x00: "COMMERCIAL AT",
    0x01: "POUND SIGN",
    0x02: "DOLLAR SIGN",
    0x03: "YEN SIGN",
    0x04: "LATIN SMALL LETTER E WITH GRAVE",
    0x05: "LATIN SMALL LETTER E WITH ACUTE",
    0x06: "LATIN SMALL LETTER U WITH GRAVE",
    0x07: "LATIN SMALL LETTER I WITH GRAVE",
    0x08: "LATIN SMALL LETTER O WITH GRAVE",
    0x09: "LATIN CAPITAL LETTER C WITH CEDILLA",
    0x0B: "LATIN CAPITAL LETTER O WITH STROKE",
    0x0C: "LATIN SMALL LETTER O WITH STROKE",
    0x0E: "LATIN CAPITAL LETTER A WITH RING ABOVE",
    0x0F: "LATIN SMALL LETTER A WITH RING ABOVE",
    0x10: "GREEK CAPITAL LETTER DELTA",
    0x11: "LOW LINE",
    0x12: "GREEK CAPITAL LETTER PHI",
    0x13: "GREEK CAPITAL LETTER GAMMA",
    0x14: "GREEK CAPITAL LETTER LAMDA",
    0x15: "GREEK CAPITAL LETTER OMEGA",
    0x16: "GREEK CAPITAL LETTER PI",
    0x17: "GREEK CAPITAL LETTER PSI",
    0x18: "GREEK CAPITAL LETTER SIGMA",
    0x19: "GREEK CAPITAL LETTER THETA",
    0x1A: "GREEK CAPITAL LETTER XI",
    0x1C: "LATIN CAPITAL LETTER AE",
    0x1D: "LATIN SMALL LETTER AE",
    0x1E: "LATIN SMALL LETTER SHARP S",
    0x1F: "LATIN CAPITAL LETTER E WITH ACUTE",
    0x24: "CURRENCY SIGN",
    0x40: "INVERTED EXCLAMATION MARK",
    0x5B: "LATIN CAPITAL LETTER A WITH DIAERESIS",
    0x5C: "LATIN CAPITAL LETTER O WITH DIAERESIS",
    0x5D: "LATIN CAPITAL LETTER N WITH TILDE",
    0x5E: "LATIN CAPITAL LETTER U WITH DIAERESIS",
    0x5F: "SECTION SIGN",
    0x60: "INVERTED QUESTION MARK",
    0x7B: "LATIN SMALL LETTER A WITH DIAERESIS",
    0x7C: "LATIN SMALL LETTER O WITH DIAERESIS",
    0x7D: "LATIN SMALL LETTER N WITH TILDE",
    0x7E: "LATIN SMALL LETTER U WITH DIAERESIS",
    0x7F: "LATIN SMALL LETTER A WITH GRAVE",
}
#: The extension table (6.2.1.1), each sent as ESC + its code.
EXTENSION = (
    "FORM FEED",
    "CIRCUMFLEX ACCENT",
    "LEFT CURLY BRACKET",
    "RIGHT CURLY BRACKET",
    "REVERSE SOLIDUS",
    "LEFT SQUARE BRACKET",
    "TILDE",
    "RIGHT SQUARE BRACKET",
    "VERTICAL LINE",
    "EURO SIGN",
)
CYRILLIC = "ж"  # UCS-2, one unit
EMOJI = "\U0001f600"  # beyond the BMP: a surrogate pair, two units


def _name(char: str) -> str:
    return "FORM FEED" if char == "\f" else unicodedata.name(char)


def test_the_basic_table_is_the_standards() -> None:
    expected = {
        code: unicodedata.lookup(NOT_ASCII[code]) if code in NOT_ASCII else chr(code)
        for code in range(128)
    }
    assert dict(enumerate(GSM7_BASIC)) == expected
    assert [_name(c) for c in GSM7_EXTENSION] == list(EXTENSION)


@pytest.mark.parametrize("char", list("@£$¥èéùìòÇØøÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉÄÖÑÜ§¿äöñüà \n\r"))
def test_the_basic_characters_cost_one_septet(char: str) -> None:
    assert sms_segments(char * 160) == 1
    assert sms_segments(char * 161) == 2


@pytest.mark.parametrize("char", list("^{}\\[~]|€\f"))
def test_the_extension_characters_cost_two_septets(char: str) -> None:
    assert sms_segments(char * 80) == 1
    assert sms_segments(char * 80 + "a") == 2


@pytest.mark.parametrize("char", ["ç", "`", "\t", "á", "\u2126", "’", "—", "ё"])
def test_one_character_outside_the_alphabet_makes_the_text_ucs2(char: str) -> None:
    assert sms_segments("a" * 69 + char) == 1
    assert sms_segments("a" * 70 + char) == 2
    assert sms_segments("a" * 159 + char) == 3  # 160 units, 67 a part
    assert sms_segments("a" * 159 + "Ç") == 1


@pytest.mark.parametrize(
    ("septets", "segments"),
    [(1, 1), (160, 1), (161, 2), (306, 2), (307, 3), (459, 3), (460, 4), (153 * 10, 10)],
)
def test_gsm7_boundaries(septets: int, segments: int) -> None:
    assert sms_segments("a" * septets) == segments


@pytest.mark.parametrize("k", range(2, 8))
def test_gsm7_parts_hold_153_septets(k: int) -> None:
    assert sms_segments("x" * 153 * k) == k
    assert sms_segments("x" * 153 * k + "x") == k + 1


def test_an_escape_pair_never_ends_a_part() -> None:
    assert sms_segments("a" * 152 + "€" + "a" * 152) == 3  # 306 septets: the pair moves
    assert sms_segments("a" * 151 + "€" + "a" * 153) == 2  # 306 septets: it fits
    assert sms_segments("€" + "a" * 304) == 2
    assert sms_segments("a" * 152 + "€" + "a" * 6) == 1  # 160: one part alone holds it
    assert sms_segments("a" * 152 + "€" + "a" * 7) == 2
    assert sms_segments("a" * 158 + "€") == 1
    assert sms_segments("a" * 159 + "€") == 2


@pytest.mark.parametrize(
    ("units", "segments"),
    [(1, 1), (70, 1), (71, 2), (134, 2), (135, 3), (67 * 5, 5), (67 * 5 + 1, 6)],
)
def test_ucs2_boundaries(units: int, segments: int) -> None:
    assert sms_segments(CYRILLIC * units) == segments


def test_a_character_beyond_the_bmp_is_two_units() -> None:
    assert sms_segments(EMOJI * 35) == 1
    assert sms_segments(EMOJI * 35 + "a") == 2
    assert sms_segments(EMOJI * 66) == 2  # 132 units: 33 pairs a part
    assert sms_segments(EMOJI * 67) == 3  # 134 units, but a part of 67 holds only 33 pairs


def test_a_surrogate_pair_never_ends_a_part() -> None:
    assert sms_segments(CYRILLIC * 66 + EMOJI + CYRILLIC * 66) == 3  # 134 units: the pair moves
    assert sms_segments(CYRILLIC * 65 + EMOJI + CYRILLIC * 67) == 2  # 134 units: it fits


def test_an_empty_text_is_one_part() -> None:
    assert sms_segments("") == 1


def test_message_units() -> None:
    long_sms = {"channelType": "SMS", "content": "a" * 200}
    assert message_units("SMS", long_sms, "segment") == 2
    assert message_units("SMS", long_sms, "message") == 1
    assert message_units("SMS", {"content": CYRILLIC * 71}, "segment") == 2
    assert message_units("VK", {"content": "a" * 1000}, "segment") == 1
    assert message_units("FLASHCALL", {"content": "1234"}, "segment") == 1
    assert message_units("SMS", {"content": None}, "segment") == 1
    assert message_units("SMS", {}, "segment") == 1


GSM_BASIC = [c for c in GSM7_BASIC if c != "\x1b"]
ANY_CHAR = st.sampled_from([*GSM_BASIC, *GSM7_EXTENSION, "ç", "`", CYRILLIC, EMOJI])
TEXTS = st.text(alphabet=ANY_CHAR, max_size=700)


@given(TEXTS, ANY_CHAR)
def test_appending_never_lowers_the_count(text: str, char: str) -> None:
    assert sms_segments(text + char) >= sms_segments(text)


@given(st.text(alphabet=st.sampled_from([*GSM_BASIC, *GSM7_EXTENSION]), max_size=700))
def test_gsm7_counts(text: str) -> None:
    septets = sum(2 if c in GSM7_EXTENSION else 1 for c in text)
    segments = sms_segments(text)
    if septets <= 160:
        assert segments == 1
    else:  # each part but the last holds 153 septets, or 152 when a pair moved on
        assert math.ceil(septets / 153) <= segments <= math.ceil(septets / 152)
    if not set(text) & set(GSM7_EXTENSION):
        assert segments == max(1, math.ceil(len(text) / (160 if len(text) <= 160 else 153)))


@given(st.text(alphabet=st.sampled_from([CYRILLIC, EMOJI, "a", "€", "ç"]), max_size=400))
def test_ucs2_counts(text: str) -> None:
    if not set(text) & {CYRILLIC, EMOJI, "ç"}:
        return
    units = len(text.encode("utf-16-le")) // 2
    segments = sms_segments(text)
    if units <= 70:
        assert segments == 1
    else:
        assert math.ceil(units / 67) <= segments <= math.ceil(units / 66)
    if EMOJI not in text:
        assert segments == max(1, math.ceil(units / (70 if units <= 70 else 67)))
