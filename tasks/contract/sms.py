"""SMS (`sms.md`)."""

from typing import ClassVar, Literal

from tasks.contract.common import Addressing, Scheduling
from tasks.contract.fields import Utf8Text


class SmsMessage(Addressing, Scheduling):
    channel: ClassVar[str] = "SMS"

    channelType: Literal["SMS"]
    content: Utf8Text
