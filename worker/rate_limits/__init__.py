"""Send-rate limits every pod shares, and the pause a 429 sets for them all.

One idea per module: `buckets` (what a channel's request draws on), `adaptive` (AIMD after a
429), `scripts` (the Lua next to them), `limiter` (what the API client calls around each
attempt), `state` (what `status` and the metrics read).
"""
