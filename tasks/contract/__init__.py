"""One pydantic model per API message kind, enforcing every rule of `shared/revicom-api/*.md`.

A message these models accept is one the API accepts; `to_api_json` is the exact object the
API takes (its field names, unset optionals omitted).
"""

from tasks.contract.context import ContractContext
from tasks.contract.conversion import FlashcallConversion
from tasks.contract.errors import FieldError, field_errors
from tasks.contract.flashcall import FlashcallMessage
from tasks.contract.message import (
    CHANNEL_MODELS,
    MESSAGE_ADAPTER,
    MESSAGE_CHANNELS,
    Message,
    parse_message,
    to_api_json,
)
from tasks.contract.sms import SmsMessage
from tasks.contract.vk import VkMessage
from tasks.contract.voicecode import VoicecodeMessage
from tasks.contract.whatsapp import WhatsappMessage

__all__ = [
    "CHANNEL_MODELS",
    "MESSAGE_ADAPTER",
    "MESSAGE_CHANNELS",
    "ContractContext",
    "FieldError",
    "FlashcallConversion",
    "FlashcallMessage",
    "Message",
    "SmsMessage",
    "VkMessage",
    "VoicecodeMessage",
    "WhatsappMessage",
    "field_errors",
    "parse_message",
    "to_api_json",
]
