"""The API's words for what happens to a message after its 201 (notes.md: "Message statuses",
"Callback events"); the job contract, the settings and the status model share them.

Statuses: `sending`, `sent`, then a final one (`delivered`, `undelivered`, `unsent`; ours:
`unknown` after STATUS_GIVE_UP_S), then `read`/`unread` for VIBER, VK, WHATSAPP. The rules
that order them are in tasks/tracking/lua/status.lua.
"""

from __future__ import annotations

#: Events a message may ask callbacks for; `delivered` fires on the final status, whatever it is.
CALLBACK_EVENTS = ("delivered", "sent", "read", "price", "click")
#: Statuses that may follow the final one; before it, they mean the message was delivered.
READ_STATUSES = ("read", "unread")
