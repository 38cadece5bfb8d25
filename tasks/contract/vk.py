"""VK (`notes.md`, "The rest of the API"): SMS's fields, any sender name, a shorter text.

Unlike SMS, the sender is not an approved name: any non-empty string (not blank, as on every
channel here). The text is capped at 2,048 characters, counted as Python counts them (code
points), as the WHATSAPP text's 1,000 are.
"""

from typing import Annotated, ClassVar, Literal

from pydantic import Field

from tasks.contract.common import Addressing, Scheduling
from tasks.contract.fields import Utf8Text

#: The longest VK text (notes.md: 1-2048 characters).
CONTENT_MAX_CHARS = 2048


class VkMessage(Addressing, Scheduling):
    channel: ClassVar[str] = "VK"

    channelType: Literal["VK"]
    content: Annotated[Utf8Text, Field(min_length=1, max_length=CONTENT_MAX_CHARS)]
