"""FLASHCALL (`flashcall.md`): the code is the last digits of the calling number."""

from typing import Annotated, ClassVar, Literal

from pydantic import ValidationInfo, field_validator

from tasks.contract.common import Addressing
from tasks.contract.context import context_of
from tasks.contract.fields import documented, rule_error


class FlashcallMessage(Addressing):
    channel: ClassVar[str] = "FLASHCALL"

    channelType: Literal["FLASHCALL"]
    content: Annotated[str, documented(pattern=r"^[0-9]{4,}$")]

    @field_validator("content")
    @classmethod
    def _check_code(cls, value: str, info: ValidationInfo) -> str:
        longest = context_of(info).flashcall_code_max_digits
        if not (value.isascii() and value.isdigit() and 4 <= len(value) <= longest):
            if longest == 4:
                raise rule_error("flashcall_code", "must be a numeric code of 4 digits")
            raise rule_error(
                "flashcall_code",
                "must be a numeric code of 4 to {longest} digits",
                longest=longest,
            )
        return value
