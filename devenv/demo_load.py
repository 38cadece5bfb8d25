"""The demo's load: a realistic mix of every channel and content kind, some of it bad."""

from __future__ import annotations

from typing import Any

BAD_NUMBER_PREFIX = "1999"  # the demo's sandbox refuses these with 422 Invalid msisdn

WHATSAPP_CONTENTS: list[dict[str, Any]] = [
    {"contentType": "text", "text": "Your parcel {i} is on its way"},
    {
        "contentType": "text",
        "text": "Order {i} confirmed",
        "header": {"text": "Thank you!"},
        "footer": {"text": "ACME shop"},
        "buttons": [
            {"text": "Track", "url": "https://example.com/t/{i}"},
            {"text": "Call us", "phone": "14085553912"},
        ],
    },
    {
        "contentType": "text",
        "text": "Rate delivery {i}",
        "buttons": [
            {"text": "Great", "payload": "rate=5"},
            {"text": "OK", "payload": "rate=3"},
            {"text": "Bad", "payload": "rate=1"},
        ],
    },
    {
        "contentType": "text",
        "text": "Invoice {i}",
        "header": {"documentUrl": "https://example.com/i/{i}.pdf", "documentName": "invoice.pdf"},
    },
    {
        "contentType": "text",
        "text": "New arrivals",
        "header": {"imageUrl": "https://example.com/new.png"},
    },
    {
        "contentType": "image",
        "imageUrl": "https://example.com/p/{i}.png",
        "imageName": "photo",
        "footer": {"text": "ACME shop"},
    },
    {
        "contentType": "document",
        "documentUrl": "https://example.com/d/{i}.pdf",
        "documentName": "terms.pdf",
        "buttons": [{"text": "Open", "url": "https://example.com"}],
    },
]


def _fill(value: Any, i: int) -> Any:
    if isinstance(value, str):
        return value.replace("{i}", str(i))
    if isinstance(value, list):
        return [_fill(v, i) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, i) for k, v in value.items()}
    return value


def number(i: int, bad: bool = False) -> str:
    return f"{BAD_NUMBER_PREFIX if bad else '1408'}{i:07d}"


VK_CONTENTS = [
    "Your parcel {i} is on its way",
    "Заказ {i} готов к выдаче 🎉",
    "Order {i} confirmed.\nTrack it: https://example.com/t/{i}",
]


def demo_jobs(
    *, sms: int, flashcall: int, voicecode: int, whatsapp: int, vk: int, bad_numbers: int
) -> list[dict[str, Any]]:
    """Valid jobs of every channel; `bad_numbers` SMS go to numbers the sandbox refuses."""
    jobs: list[dict[str, Any]] = []
    for i in range(sms):
        jobs.append(
            {
                "jobId": f"demo-sms-{i}",
                "message": {
                    "channelType": "SMS",
                    "senderName": "ACME",
                    "content": f"Your code is {i % 9000}",
                    "destination": number(i, bad=i < bad_numbers),
                    "tags": ["demo"],
                },
            }
        )
    for i in range(flashcall):
        jobs.append(
            {
                "jobId": f"demo-flashcall-{i}",
                "message": {
                    "channelType": "FLASHCALL",
                    "senderName": "ACME",
                    "destination": number(i),
                    "content": f"{1000 + i % 9000}",
                },
            }
        )
    for i in range(voicecode):
        jobs.append(
            {
                "jobId": f"demo-voicecode-{i}",
                "message": {
                    "channelType": "VOICECODE",
                    "senderName": "voicecode",
                    "destination": number(i),
                    "content": {
                        "contentType": "text",
                        "text": f"Код авторизации от ACME: {' '.join(f'{i % 10000:04d}')}.",
                    },
                    "externalMessageId": f"vc-{i}",
                },
            }
        )
    for i in range(whatsapp):
        content = _fill(WHATSAPP_CONTENTS[i % len(WHATSAPP_CONTENTS)], i)
        jobs.append(
            {
                "jobId": f"demo-whatsapp-{i}",
                "message": {
                    "channelType": "WHATSAPP",
                    "senderName": "ACME",
                    "destination": number(i),
                    "content": content,
                },
            }
        )
    for i in range(vk):
        jobs.append(
            {
                "jobId": f"demo-vk-{i}",
                "message": {
                    "channelType": "VK",
                    "senderName": "ACME shop",
                    "destination": number(i),
                    "content": _fill(VK_CONTENTS[i % len(VK_CONTENTS)], i),
                    "tags": ["demo"],
                },
            }
        )
    return jobs


# What a careless producer might send: the producer refuses these before they are written.
REFUSED_BY_PRODUCER: list[dict[str, Any]] = [
    {
        "jobId": "demo-bad-ttl",
        "message": {
            "channelType": "SMS",
            "senderName": "ACME",
            "destination": "14085550001",
            "content": "hi",
            "ttl": 5,
        },
    },
    {
        "jobId": "demo-bad-code",
        "message": {
            "channelType": "FLASHCALL",
            "senderName": "ACME",
            "destination": "14085550002",
            "content": "12",
        },
    },
    {
        "jobId": "demo-bad-buttons",
        "message": {
            "channelType": "WHATSAPP",
            "senderName": "ACME",
            "destination": "14085550003",
            "content": {
                "contentType": "text",
                "text": "x",
                "buttons": [
                    {"text": "a", "url": "https://a.example"},
                    {"text": "b", "payload": "p"},
                ],
            },
        },
    },
    {
        "jobId": "demo-bad-vk",
        "message": {
            "channelType": "VK",
            "senderName": "ACME shop",
            "destination": "14085550006",
            "content": "x" * 2049,
        },
    },
]

# ... and what a producer in another language might XADD directly: the worker rejects them.
WRITTEN_RAW: list[tuple[str, str]] = [
    ("SMS", "{not json"),
    (
        "SMS",
        '{"jobId": "demo-raw-blank", "message": {"channelType": "SMS", '
        '"senderName": "ACME", "destination": "14085550004", "content": "  "}}',
    ),
    (
        "VOICECODE",
        '{"jobId": "demo-raw-template", "message": {"channelType": "VOICECODE", '
        '"senderName": "voicecode", "destination": "14085550005", '
        '"content": {"contentType": "text", "text": "Your code is 1234"}}}',
    ),
]
