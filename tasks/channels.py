"""What the dispatcher needs to know of each channel besides its message model.

Adding a channel is a model in `tasks/contract/` (named in its message union), one line here
and its four settings in `config/` (`{CHANNEL}_BATCH_SIZE`, `_LINGER_MS`, `_MAX_AGE_S`,
`_RATE_LIMIT`); then
the sandbox's own rules for it, its jobs in the demo's load and a KEDA trigger for its stream.
Everything else (error messages, schemas, status and metrics, the ops commands) follows from
these; tests/test_channels.py and tests/test_deploy.py fail until each piece is there.
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
        Channel("VK", MESSAGE_ENDPOINT, otp=False),
        Channel("FLASHCALL", MESSAGE_ENDPOINT, otp=True),
        Channel("VOICECODE", MESSAGE_ENDPOINT, otp=True),
        Channel("FLASHCALL_CONVERSION", CONVERSION_ENDPOINT, otp=True),
    )
}
