"""The API's words for what happens to a message after its 201 (notes.md: "Message statuses",
"Callback events"); the job contract, the settings and the status model share them."""

from __future__ import annotations

#: Events a message may ask callbacks for; `delivered` fires on the final status, whatever it is.
CALLBACK_EVENTS = ("delivered", "sent", "read", "price", "click")
#: Statuses before the final one, in the order a message goes through them.
PENDING_STATUSES = ("sending", "sent")
#: Final statuses; `unknown` is ours: no status came before STATUS_GIVE_UP_S.
FINAL_STATUSES = ("delivered", "undelivered", "unsent", "unknown")
#: Statuses that may follow the final one (VIBER, VK, WHATSAPP).
READ_STATUSES = ("read", "unread")
#: Every status the API reports.
API_STATUSES = (*PENDING_STATUSES, "delivered", "undelivered", "unsent", *READ_STATUSES)
