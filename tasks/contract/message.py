"""The message union: any API object a job can carry, told apart by its channel."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator, Discriminator, Tag, TypeAdapter

from tasks.contract.base import ApiObject
from tasks.contract.context import ContractContext
from tasks.contract.conversion import FlashcallConversion
from tasks.contract.fields import rule_error
from tasks.contract.flashcall import FlashcallMessage
from tasks.contract.sms import SmsMessage
from tasks.contract.vk import VkMessage
from tasks.contract.voicecode import VoicecodeMessage
from tasks.contract.whatsapp import WhatsappMessage

CHANNEL_MODELS: dict[str, type[ApiObject]] = {
    model.channel: model
    for model in (
        SmsMessage,
        FlashcallMessage,
        VoicecodeMessage,
        WhatsappMessage,
        VkMessage,
        FlashcallConversion,
    )
}
CONVERSION_FIELDS = ("messageUuid", "result")
#: The channelTypes a message may name, in the words of the union's error.
MESSAGE_CHANNELS = tuple(c for c in CHANNEL_MODELS if c != FlashcallConversion.channel)


def _channel(value: Any) -> str | None:
    """A conversion report has no channelType: it is recognised by either of its required
    fields, so that one without the other is told what it misses (`result: is required`)."""
    if isinstance(value, dict):
        if "channelType" in value:
            kind = value["channelType"]
        elif any(f in value for f in CONVERSION_FIELDS):
            kind = FlashcallConversion.channel
        else:
            return None
    else:
        kind = getattr(value, "channel", None)
    # Any JSON value may stand here: a list or an object is unhashable, so no `in` on a dict.
    return f"channelType={kind}" if isinstance(kind, str) and kind in CHANNEL_MODELS else None


def _an_object(value: Any) -> Any:
    if isinstance(value, dict | ApiObject):
        return value
    raise rule_error(
        "message_type",
        "must be an object: an API message with its channelType, or a FLASHCALL conversion "
        "report with messageUuid and result",
    )


# Written out for the type checker; tests/test_channels.py checks it holds every model above.
Message = Annotated[
    Annotated[SmsMessage, Tag("channelType=SMS")]
    | Annotated[FlashcallMessage, Tag("channelType=FLASHCALL")]
    | Annotated[VoicecodeMessage, Tag("channelType=VOICECODE")]
    | Annotated[WhatsappMessage, Tag("channelType=WHATSAPP")]
    | Annotated[VkMessage, Tag("channelType=VK")]
    | Annotated[FlashcallConversion, Tag("channelType=FLASHCALL_CONVERSION")],
    Discriminator(
        _channel,
        custom_error_type="channel",
        custom_error_context={"field": "channelType"},
        custom_error_message=f"must be one of {', '.join(MESSAGE_CHANNELS)} "
        "(or the object must be a FLASHCALL conversion report with messageUuid and result)",
    ),
    BeforeValidator(_an_object),
]
MESSAGE_ADAPTER: TypeAdapter[Message] = TypeAdapter(Message)


def parse_message(data: Any, context: ContractContext | None = None) -> Message:
    """Validate one API object (a dict) against its channel's rules."""
    return MESSAGE_ADAPTER.validate_python(data, context=context)


def to_api_json(message: ApiObject) -> dict[str, Any]:
    """The object exactly as the API takes it: its field names, unset optionals left out."""
    return message.model_dump(mode="json", exclude_none=True)
