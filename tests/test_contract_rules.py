"""Every documented rule, with a case that passes and a case that fails with a clear error."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from tasks.contract import ContractContext, field_errors, parse_message, to_api_json
from tests.contract_cases import DROP, NOW, at, variant

CTX = ContractContext(now=NOW, flashcall_code_max_digits=4)
H = timedelta(hours=1)
S = timedelta(seconds=1)
D = timedelta(days=1)

LINK = {"text": "site", "url": "https://revicom.ltd"}
CALL = {"text": "call", "phone": "14085553912"}
REPLY = {"text": "yes", "payload": "id=1"}

# (case id, message) that must be accepted
VALID: list[tuple[str, dict[str, Any]]] = [
    ("sms plain", variant("SMS")),
    ("destination with + and spaces", variant("SMS", destination="+1 408 555-3911")),
    ("destination with brackets", variant("SMS", destination="+7 (812) 426-99-88")),
    ("destination 7 digits", variant("SMS", destination="6834002")),
    ("destination 15 digits", variant("SMS", destination="123456789012345")),
    ("tags", variant("SMS", tags=["tag1", "Campaign_2026", "_"])),
    ("no tags", variant("SMS", tags=[])),
    ("callback http", variant("SMS", callbackUrl="http://company.com/cb")),
    ("callback with credentials", variant("SMS", callbackUrl="https://u:p@company.com/cb")),
    (
        "callback events",
        variant(
            "SMS",
            callbackUrl="https://c.com",
            callbackEvents=["sent", "delivered", "read", "price", "click"],
        ),
    ),
    ("useLocalTime false", variant("SMS", useLocalTime=False)),
    ("send time now-12h", variant("SMS", localSendTime=at(-12 * H))),
    ("send time now+7d", variant("SMS", localSendTime=at(7 * D))),
    ("completion = send", variant("SMS", localSendTime=at(H), localCompletionTime=at(H))),
    ("completion now+70d", variant("SMS", localCompletionTime=at(70 * D))),
    ("completion alone now-12h", variant("SMS", localCompletionTime=at(-12 * H))),
    ("ttl 60", variant("SMS", ttl=60)),
    ("ttl 86400", variant("WHATSAPP", ttl=86400)),
    ("hours 0 and 23", variant("SMS", hours=[0, 23])),
    ("days 1 and 7", variant("WHATSAPP", days=[7, 1])),
    ("shortUrl", variant("SMS", shortUrl=True)),
    ("sms unicode content", variant("SMS", content="Привет, 👋")),
    ("flashcall any sender", variant("FLASHCALL", senderName="Любой отправитель 42")),
    ("flashcall 0000", variant("FLASHCALL", content="0000")),
    ("voicecode joined", variant("VOICECODE", content__text="Код авторизации от ACME: 1234.")),
    ("voicecode dashed", variant("VOICECODE", content__text="Код авторизации от ACME: 1-2-3-4.")),
    ("voicecode no period", variant("VOICECODE", content__text="Код авторизации от A: 1 2 3 4")),
    (
        "voicecode brand with spaces",
        variant("VOICECODE", content__text="Код авторизации от Acme Bank: 12*34."),
    ),
    ("voicecode ttl 30", variant("VOICECODE", ttl=30)),
    ("voicecode externalMessageId 100", variant("VOICECODE", externalMessageId="x" * 100)),
    ("whatsapp text 1000", variant("WHATSAPP", content__text="x" * 1000)),
    ("whatsapp header text 60", variant("WHATSAPP", content__header={"text": "h" * 60})),
    (
        "whatsapp header document",
        variant(
            "WHATSAPP",
            content__header={"documentUrl": "https://e.com/d.pdf", "documentName": "d.pdf"},
        ),
    ),
    (
        "whatsapp header document no name",
        variant("WHATSAPP", content__header={"documentUrl": "https://e.com/d.pdf"}),
    ),
    ("whatsapp header image", variant("WHATSAPP", content__header={"imageUrl": "https://e.com/i"})),
    ("whatsapp footer 60", variant("WHATSAPP", content__footer={"text": "f" * 60})),
    ("whatsapp 3 text buttons", variant("WHATSAPP", content__buttons=[REPLY, REPLY, REPLY])),
    ("whatsapp url + phone", variant("WHATSAPP", content__buttons=[LINK, CALL])),
    ("whatsapp one url", variant("WHATSAPP", content__buttons=[LINK])),
    (
        "whatsapp button text 20",
        variant("WHATSAPP", content__buttons=[{"text": "b" * 20, "payload": "p"}]),
    ),
    (
        "whatsapp image",
        variant(
            "WHATSAPP",
            content={
                "contentType": "image",
                "imageUrl": "https://e.com/i.png",
                "imageName": "Image",
                "buttons": [LINK],
            },
        ),
    ),
    (
        "whatsapp document",
        variant(
            "WHATSAPP",
            content={
                "contentType": "document",
                "documentUrl": "https://e.com/d.pdf",
                "documentName": "Document",
                "footer": {"text": "f"},
            },
        ),
    ),
    ("conversion", variant("FLASHCALL_CONVERSION")),
    ("conversion without code", variant("FLASHCALL_CONVERSION", code=DROP, result="WRONG_CODE")),
]

# (case id, message, expected path, a fragment of the expected rule)
INVALID: list[tuple[str, dict[str, Any], str, str]] = [
    ("unknown channel", variant("SMS", channelType="VIBER"), "channelType", "must be one of"),
    ("no channel", variant("SMS", channelType=DROP), "channelType", "must be one of"),
    ("unknown field", variant("SMS", calbackUrl="https://c.com"), "calbackUrl", "not a field"),
    ("senderName missing", variant("SMS", senderName=DROP), "senderName", "is required"),
    ("senderName blank", variant("SMS", senderName="  "), "senderName", "must not be blank"),
    ("destination missing", variant("FLASHCALL", destination=DROP), "destination", "required"),
    (
        "destination letters",
        variant("SMS", destination="1408555391a"),
        "destination",
        "7 to 15 digits",
    ),
    ("destination 6 digits", variant("SMS", destination="123456"), "destination", "7 to 15"),
    (
        "destination 16 digits",
        variant("SMS", destination="1234567890123456"),
        "destination",
        "7 to 15",
    ),
    (
        "destination leading 0",
        variant("SMS", destination="04085553911"),
        "destination",
        "not starting with 0",
    ),
    (
        "destination number",
        variant("SMS", destination=14085553911),
        "destination",
        "must be a string",
    ),
    ("tag with space", variant("SMS", tags=["ok", "a b"]), "tags[1]", "ASCII letters"),
    ("tag cyrillic", variant("SMS", tags=["тег"]), "tags[0]", "ASCII letters"),
    ("tag empty", variant("SMS", tags=[""]), "tags[0]", "ASCII letters"),
    ("tag dash", variant("FLASHCALL", tags=["a-b"]), "tags[0]", "ASCII letters"),
    ("callback ftp", variant("SMS", callbackUrl="ftp://c.com"), "callbackUrl", "http://"),
    ("callback no host", variant("SMS", callbackUrl="https://"), "callbackUrl", "with a host"),
    (
        "callback event unknown",
        variant("SMS", callbackEvents=["opened"]),
        "callbackEvents[0]",
        "unknown callback event 'opened'",
    ),
    (
        "callback events empty",
        variant("SMS", callbackEvents=[]),
        "callbackEvents",
        "at least 1 items",
    ),
    ("useLocalTime string", variant("SMS", useLocalTime="true"), "useLocalTime", "true or false"),
    (
        "send time format",
        variant("SMS", localSendTime="2026-11-22T12:00:00"),
        "localSendTime",
        "YYYY-MM-DD hh:mm:ss",
    ),
    (
        "send time impossible date",
        variant("SMS", localSendTime="2026-02-30 12:00:00"),
        "localSendTime",
        "YYYY-MM-DD hh:mm:ss",
    ),
    (
        "send time too early",
        variant("SMS", localSendTime=at(-12 * H - S)),
        "localSendTime",
        "earlier than 2026-11-22 00:00:00 (now - 12 h",
    ),
    (
        "send time too late",
        variant("WHATSAPP", localSendTime=at(7 * D + S)),
        "localSendTime",
        "later than 2026-11-29 12:00:00 (now + 7 days",
    ),
    (
        "completion before send",
        variant("SMS", localSendTime=at(2 * H), localCompletionTime=at(H)),
        "localCompletionTime",
        "earlier than 2026-11-22 14:00:00",
    ),
    (
        "completion too late",
        variant("SMS", localCompletionTime=at(70 * D + S)),
        "localCompletionTime",
        "later than 2027-01-31 12:00:00 (now + 70 days",
    ),
    (
        "completion alone too early",
        variant("SMS", localCompletionTime=at(-13 * H)),
        "localCompletionTime",
        "earlier than",
    ),
    ("ttl 59", variant("SMS", ttl=59), "ttl", "at least 60"),
    ("ttl 86401", variant("WHATSAPP", ttl=86401), "ttl", "at most 86400"),
    ("ttl string", variant("SMS", ttl="60"), "ttl", "must be an integer"),
    ("ttl bool", variant("SMS", ttl=True), "ttl", "must be an integer"),
    ("hour 24", variant("SMS", hours=[23, 24]), "hours[1]", "at most 23"),
    ("hour -1", variant("SMS", hours=[-1]), "hours[0]", "at least 0"),
    ("hours repeated", variant("SMS", hours=[9, 9]), "hours", "unique"),
    ("hours empty", variant("SMS", hours=[]), "hours", "at least 1 items"),
    ("day 0", variant("SMS", days=[0]), "days[0]", "at least 1"),
    ("day 8", variant("WHATSAPP", days=[8]), "days[0]", "at most 7"),
    ("days repeated", variant("SMS", days=[1, 1]), "days", "unique"),
    ("shortUrl string", variant("SMS", shortUrl="yes"), "shortUrl", "true or false"),
    ("sms content blank", variant("SMS", content=" \n"), "content", "blank"),
    ("sms content empty", variant("SMS", content=""), "content", "blank"),
    ("sms content BOM", variant("SMS", content="\ufeffhello"), "content", "byte-order mark"),
    ("sms content object", variant("SMS", content={"text": "x"}), "content", "string"),
    ("flashcall 3 digits", variant("FLASHCALL", content="123"), "content", "4 digits"),
    ("flashcall 5 digits", variant("FLASHCALL", content="12345"), "content", "4 digits"),
    ("flashcall letters", variant("FLASHCALL", content="12a4"), "content", "numeric"),
    ("flashcall arabic digits", variant("FLASHCALL", content="١٢٣٤"), "content", "numeric"),
    ("flashcall scheduling", variant("FLASHCALL", ttl=60), "ttl", "not a field"),
    ("voicecode sender", variant("VOICECODE", senderName="revicom"), "senderName", "'voicecode'"),
    (
        "voicecode content string",
        variant("VOICECODE", content="Код авторизации от A: 1."),
        "content",
        "must be an object",
    ),
    (
        "voicecode contentType",
        variant("VOICECODE", content__contentType="audio"),
        "content.contentType",
        "'text'",
    ),
    (
        "voicecode template",
        variant("VOICECODE", content__text="Your code is 1234"),
        "content.text",
        "template",
    ),
    (
        "voicecode letters in code",
        variant("VOICECODE", content__text="Код авторизации от A: 12ab."),
        "content.text",
        "template",
    ),
    (
        "voicecode double separator",
        variant("VOICECODE", content__text="Код авторизации от A: 1--2."),
        "content.text",
        "template",
    ),
    (
        "voicecode no brand",
        variant("VOICECODE", content__text="Код авторизации от : 12."),
        "content.text",
        "template",
    ),
    (
        "voicecode 1001 chars",
        variant("VOICECODE", content__text="Код авторизации от " + "A" * 1000 + ": 1."),
        "content.text",
        "at most 1000 characters",
    ),
    ("voicecode ttl 29", variant("VOICECODE", ttl=29), "ttl", "at least 30"),
    ("voicecode ttl 86401", variant("VOICECODE", ttl=86401), "ttl", "at most 86400"),
    (
        "voicecode externalMessageId 101",
        variant("VOICECODE", externalMessageId="x" * 101),
        "externalMessageId",
        "at most 100",
    ),
    ("voicecode hours", variant("VOICECODE", hours=[1]), "hours", "not a field"),
    (
        "whatsapp contentType",
        variant("WHATSAPP", content__contentType="video"),
        "content.contentType",
        "text, image, document",
    ),
    (
        "whatsapp text 1001",
        variant("WHATSAPP", content__text="x" * 1001),
        "content.text",
        "at most 1000",
    ),
    ("whatsapp text blank", variant("WHATSAPP", content__text=" "), "content.text", "blank"),
    ("whatsapp text missing", variant("WHATSAPP", content__text=DROP), "content.text", "required"),
    (
        "whatsapp image no name",
        variant("WHATSAPP", content={"contentType": "image", "imageUrl": "https://e.com/i.png"}),
        "content.imageName",
        "required",
    ),
    (
        "whatsapp image bad url",
        variant(
            "WHATSAPP", content={"contentType": "image", "imageUrl": "image.png", "imageName": "i"}
        ),
        "content.imageUrl",
        "http",
    ),
    (
        "whatsapp document no url",
        variant("WHATSAPP", content={"contentType": "document", "documentName": "d"}),
        "content.documentUrl",
        "required",
    ),
    (
        "whatsapp image with text",
        variant(
            "WHATSAPP",
            content={
                "contentType": "image",
                "imageUrl": "https://e.com/i",
                "imageName": "i",
                "text": "t",
            },
        ),
        "content.text",
        "not a field",
    ),
    ("header empty", variant("WHATSAPP", content__header={}), "content.header", "exactly one of"),
    (
        "header two kinds",
        variant("WHATSAPP", content__header={"text": "t", "imageUrl": "https://e.com/i"}),
        "content.header",
        "exactly one of",
    ),
    (
        "header documentName alone",
        variant("WHATSAPP", content__header={"text": "t", "documentName": "d"}),
        "content.header",
        "only allowed with documentUrl",
    ),
    (
        "header text 61",
        variant("WHATSAPP", content__header={"text": "h" * 61}),
        "content.header.text",
        "at most 60",
    ),
    (
        "footer 61",
        variant("WHATSAPP", content__footer={"text": "f" * 61}),
        "content.footer.text",
        "at most 60",
    ),
    (
        "footer without text",
        variant("WHATSAPP", content__footer={}),
        "content.footer.text",
        "required",
    ),
    ("no buttons", variant("WHATSAPP", content__buttons=[]), "content.buttons", "at least 1 items"),
    (
        "4 buttons",
        variant("WHATSAPP", content__buttons=[REPLY] * 4),
        "content.buttons",
        "at most 3 items",
    ),
    (
        "button text 21",
        variant("WHATSAPP", content__buttons=[{"text": "b" * 21, "payload": "p"}]),
        "content.buttons[0].text",
        "at most 20",
    ),
    (
        "button without text",
        variant("WHATSAPP", content__buttons=[{"payload": "p"}]),
        "content.buttons[0].text",
        "required",
    ),
    (
        "button without action",
        variant("WHATSAPP", content__buttons=[{"text": "b"}]),
        "content.buttons[0]",
        "needs url or phone",
    ),
    (
        "button url not http",
        variant("WHATSAPP", content__buttons=[{"text": "b", "url": "www.revicom.ltd"}]),
        "content.buttons[0].url",
        "begin with http",
    ),
    (
        "payload beside url",
        variant("WHATSAPP", content__buttons=[{**LINK, "payload": "p"}]),
        "content.buttons[0]",
        "payload is not allowed beside url or phone",
    ),
    (
        "url and phone in one",
        variant("WHATSAPP", content__buttons=[{**LINK, "phone": "1"}]),
        "content.buttons[0]",
        "not both",
    ),
    (
        "mixed button kinds",
        variant("WHATSAPP", content__buttons=[LINK, REPLY]),
        "content.buttons",
        "one kind",
    ),
    (
        "two url buttons",
        variant("WHATSAPP", content__buttons=[LINK, LINK]),
        "content.buttons",
        "at most one button may have a url",
    ),
    (
        "two phone buttons",
        variant("WHATSAPP", content__buttons=[CALL, CALL]),
        "content.buttons",
        "at most one button may have a phone",
    ),
    (
        "conversion result typo",
        variant("FLASHCALL_CONVERSION", result="NUMBER_VERIFIERD"),
        "result",
        "'NUMBER_VERIFIED' or 'WRONG_CODE'",
    ),
    (
        "conversion uuid",
        variant("FLASHCALL_CONVERSION", messageUuid="abc"),
        "messageUuid",
        "message UUID",
    ),
    ("conversion empty code", variant("FLASHCALL_CONVERSION", code=""), "code", "at least 1"),
    (
        "conversion extra",
        variant("FLASHCALL_CONVERSION", destination="14085553911"),
        "destination",
        "not a field",
    ),
]


@pytest.mark.parametrize(("case", "message"), VALID, ids=[c for c, _ in VALID])
def test_valid(case: str, message: dict[str, Any]) -> None:
    parsed = parse_message(message, CTX)
    if "destination" in message:
        assert parsed.destination.isdigit()  # type: ignore[union-attr]
    else:
        assert to_api_json(parsed) == message


@pytest.mark.parametrize(("case", "message", "path", "rule"), INVALID, ids=[c[0] for c in INVALID])
def test_invalid(case: str, message: dict[str, Any], path: str, rule: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_message(message, CTX)
    errors = field_errors(caught.value)
    assert [(e.path, rule in e.rule) for e in errors] == [(path, True)], errors


def test_destination_is_normalised_to_digits() -> None:
    parsed = parse_message(variant("SMS", destination="+7 (812) 426-99-88"), CTX)
    assert to_api_json(parsed)["destination"] == "78124269988"


def test_longer_flashcall_codes_need_the_account_setting() -> None:
    six = variant("FLASHCALL", content="123456")
    with pytest.raises(ValidationError, match="4 digits"):
        parse_message(six, CTX)
    wide = ContractContext(now=NOW, flashcall_code_max_digits=6)
    assert parse_message(six, wide).content == "123456"  # type: ignore[union-attr]
    with pytest.raises(ValidationError, match="4 to 6 digits"):
        parse_message(variant("FLASHCALL", content="1234567"), wide)


def test_all_field_errors_are_reported_at_once() -> None:
    message = variant("SMS", senderName=DROP, destination="x", ttl=1, tags=["a b"])
    with pytest.raises(ValidationError) as caught:
        parse_message(message, CTX)
    assert sorted(e.path for e in field_errors(caught.value)) == [
        "destination",
        "senderName",
        "tags[0]",
        "ttl",
    ]
