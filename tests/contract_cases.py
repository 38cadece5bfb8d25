"""Valid base messages per channel, and a way to derive a variant by changing one field.

Shared by the contract's rule tests and (later) the sandbox's test vectors.
"""

from __future__ import annotations

import copy
from datetime import datetime, timedelta
from typing import Any

from tasks.contract.common import LOCAL_TIME_FORMAT

NOW = datetime(2026, 11, 22, 12, 0, 0)
DROP = object()  # a patch value meaning "remove this field"


def at(delta: timedelta) -> str:
    return (NOW + delta).strftime(LOCAL_TIME_FORMAT)


BASE: dict[str, dict[str, Any]] = {
    "SMS": {
        "channelType": "SMS",
        "senderName": "SENDER",
        "destination": "14085553911",
        "content": "Your order has shipped",
    },
    "FLASHCALL": {
        "channelType": "FLASHCALL",
        "senderName": "any sender",
        "destination": "14085553911",
        "content": "1234",
    },
    "VOICECODE": {
        "channelType": "VOICECODE",
        "senderName": "voicecode",
        "destination": "14085553911",
        "content": {"contentType": "text", "text": "Код авторизации от revicom: 3 4 5 6."},
    },
    "WHATSAPP": {
        "channelType": "WHATSAPP",
        "senderName": "SENDER",
        "destination": "14085553911",
        "content": {"contentType": "text", "text": "message text"},
    },
    "VK": {
        "channelType": "VK",
        "senderName": "ACME shop",
        "destination": "14085553911",
        "content": "Your order has shipped",
    },
    "FLASHCALL_CONVERSION": {
        "messageUuid": "063464ec-a34f-4558-90c5-984395000004",
        "result": "NUMBER_VERIFIED",
        "code": "7777",
    },
}


def variant(channel: str, **patch: Any) -> dict[str, Any]:
    """BASE[channel] with fields replaced; a key `a__b` reaches into nested object `a`."""
    message = copy.deepcopy(BASE[channel])
    for dotted, value in patch.items():
        *parents, leaf = dotted.split("__")
        target = message
        for parent in parents:
            target = target[parent]
        if value is DROP:
            target.pop(leaf, None)
        else:
            target[leaf] = value
    return message
