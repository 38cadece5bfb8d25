"""What the dispatcher needs to know of each channel besides its message model.

Adding a channel (VK, say) is a model in `tasks/contract/` plus one line here and its two
batching settings in `config/`.
"""

from __future__ import annotations

from dataclasses import dataclass

OTP_QUEUE = "otp"
BULK_QUEUE = "bulk"
MESSAGE_ENDPOINT = "/api/v1/message"
CONVERSION_ENDPOINT = "/api/v1/flashcall-conversion"
STOP_ENDPOINT = "/api/v1/message/stop"
#: uuids one stop request may carry (notes.md, Stopping messages).
MAX_STOP_UUIDS = 10_000


@dataclass(frozen=True)
class Channel:
    name: str
    endpoint: str
    otp: bool  # one-time codes: their own Celery queue, short linger

    @property
    def queue(self) -> str:
        """The Celery queue of its batches: a bulk campaign never delays a code."""
        return OTP_QUEUE if self.otp else BULK_QUEUE


CHANNELS: dict[str, Channel] = {
    c.name: c
    for c in (
        Channel("SMS", MESSAGE_ENDPOINT, otp=False),
        Channel("WHATSAPP", MESSAGE_ENDPOINT, otp=False),
        Channel("FLASHCALL", MESSAGE_ENDPOINT, otp=True),
        Channel("VOICECODE", MESSAGE_ENDPOINT, otp=True),
        Channel("FLASHCALL_CONVERSION", CONVERSION_ENDPOINT, otp=True),
    )
}
