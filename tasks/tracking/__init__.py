"""Delivery tracking: what becomes of a message after the API accepted it.

The status model. The `accepted` outcome records the message's messageUuid → jobId (worker/
lua/finish.lua). Events come from callbacks (the receiver) and lookups (the poller); every
event is applied in Redis by `lua/status.lua`, so both sources follow one rule:
- an event seen before (same messageUuid, event, status and status time) counts once;
- pending statuses only move forward (`sending` → `sent`); a final status (`delivered`,
  `undelivered`, `unsent`, or our `unknown` after STATUS_GIVE_UP_S) is reached once and never
  left: later events only add `read`/`unread` (VIBER, VK, WHATSAPP) or a price;
- each change (a new status, or a price) is one entry on `{prefix}:statuses`, and exactly one
  entry per job says `final: true`;
- an event whose messageUuid is not known yet (the API may call back before our outcome script
  ran) is parked under it and applied the moment the mapping appears; one never matched is
  dropped after CALLBACK_PARK_S and counted.
"""
