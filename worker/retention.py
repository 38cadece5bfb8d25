"""Retention of the results, dead-letter and statuses streams: old entries go, unread ones
never do.

One pod at a time (the lease `{prefix}:lease:trimmer`) trims each stream to what is younger
than its retention (`RESULTS_RETENTION_S`, `DEAD_RETENTION_S`, `STATUSES_RETENTION_S`), but
never past what one of the stream's consumer groups has not read or not acknowledged: an
upstream app that reads with a group never loses an entry to the trimmer, however far behind
it is. Readers without a group are protected by the retention time alone.
"""

from __future__ import annotations

import logging
from typing import Any

import redis

from config import Settings
from tasks.keys import Keys, as_text

log = logging.getLogger(__name__)

#: How often the trimmer looks (s); the lease lives as long, so one pod trims per period.
TRIM_EVERY_S = 60.0
TRIMMER = "trimmer"


def trim_bound(client: redis.Redis, stream: str, cutoff_ms: int) -> str:
    """The MINID to trim `stream` to: the cutoff, or the oldest entry a group still needs."""
    bound = (cutoff_ms, 0)
    groups: Any = client.xinfo_groups(stream) if client.exists(stream) else []
    for group in groups:
        needed = _id(as_text(group["last-delivered-id"]))
        needed = (needed[0], needed[1] + 1)  # the first entry this group has not read
        if int(group["pending"]):
            summary: Any = client.xpending(stream, as_text(group["name"]))
            needed = min(needed, _id(as_text(summary["min"])))
        bound = min(bound, needed)
    return f"{bound[0]}-{bound[1]}"


def trim(client: redis.Redis, keys: Keys, settings: Settings) -> dict[str, int]:
    """Trim the streams if this process holds the trimmer lease; entries removed per stream."""
    if not client.set(keys.lease(TRIMMER), 1, nx=True, px=int(TRIM_EVERY_S * 1000)):
        return {}
    seconds, micros = client.time()
    now_ms = int(seconds) * 1000 + int(micros) // 1000
    removed: dict[str, int] = {}
    for stream, retention_s in (
        (keys.results, settings.results_retention_s),
        (keys.dead, settings.dead_retention_s),
        (keys.statuses, settings.statuses_retention_s),
    ):
        bound = trim_bound(client, stream, now_ms - int(retention_s * 1000))
        removed[stream] = int(client.xtrim(stream, minid=bound, approximate=False))
        if removed[stream]:
            log.info("trimmed %d entries older than %s from %s", removed[stream], bound, stream)
    return removed


def _id(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)
