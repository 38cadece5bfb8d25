"""VOICECODE (`voicecode.md`): a code read aloud from a fixed template."""

import re
from typing import Annotated, ClassVar, Literal

from pydantic import AfterValidator, Field

from tasks.contract.base import ApiObject
from tasks.contract.common import Addressing
from tasks.contract.fields import documented, object_like, rule_error

# `Код авторизации от {brand}: {code}.` with the code's digits joined (1234), spaced
# (1 2 3 4) or separated by one special character (1-2-3-4). The page's own example ends
# without the period; a real server plainly accepts the vendor's example, so the final period
# is optional here.
TEMPLATE = re.compile(
    r"Код авторизации от (?P<brand>\S(?:.*\S)?): (?P<code>[0-9](?:(?:[^\w\n]|_)?[0-9])*)\.?"
)


def _check_template(value: str) -> str:
    if not TEMPLATE.fullmatch(value):
        raise rule_error(
            "voicecode_template",
            "must match the template 'Код авторизации от <brand>: <code>.' where the code "
            "is digits, joined (1234), spaced (1 2 3 4) or separated by one special "
            "character (1-2-3-4)",
        )
    return value


class VoicecodeContent(ApiObject):
    contentType: Literal["text"]
    text: Annotated[
        str,
        Field(min_length=1, max_length=1000),
        AfterValidator(_check_template),
        documented(pattern=f"^{TEMPLATE.pattern}$"),
    ]


class VoicecodeMessage(Addressing):
    channel: ClassVar[str] = "VOICECODE"

    channelType: Literal["VOICECODE"]
    senderName: Literal["voicecode"]
    content: Annotated[
        VoicecodeContent,
        object_like('{"contentType": "text", "text": "Код авторизации от <brand>: <code>."}'),
    ]
    ttl: Annotated[int, Field(ge=30, le=86_400)] | None = None
    externalMessageId: Annotated[str, Field(min_length=1, max_length=100)] | None = None
