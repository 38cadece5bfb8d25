"""FLASHCALL conversion report (`flashcall.md`): whether the user entered the right code.

Not a message: it has no channelType and goes to its own endpoint. It travels as the
pseudo-channel FLASHCALL_CONVERSION so it is batched and routed like one.
"""

import re
from typing import Annotated, ClassVar, Literal

from pydantic import AfterValidator, Field

from tasks.contract.base import ApiObject
from tasks.contract.fields import documented, rule_error

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def _check_uuid(value: str) -> str:
    if not _UUID.fullmatch(value):
        raise rule_error("uuid", "must be a message UUID like 063474ec-a34f-4558-90c5-984395000004")
    return value


class FlashcallConversion(ApiObject):
    channel: ClassVar[str] = "FLASHCALL_CONVERSION"

    messageUuid: Annotated[
        str, AfterValidator(_check_uuid), documented(pattern=f"^{_UUID.pattern}$")
    ]
    # The page's table spells NUMBER_VERIFIERD; its example and the result reference say
    # NUMBER_VERIFIED, which is what the server takes.
    result: Literal["NUMBER_VERIFIED", "WRONG_CODE"]
    code: Annotated[str, Field(min_length=1)] | None = None
