"""Move dead-lettered jobs back to their channel's stream, with their jobIds.

The ledger marks a failed jobId as sendable again, so replayed jobs are sent; a jobId that
was accepted or rejected meanwhile (enqueued again and finished) is only acknowledged.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import orjson
import redis

from tasks.channels import CHANNELS
from tasks.keys import JOB_FIELD, Keys, as_text


def replay(
    client: redis.Redis, keys: Keys, channel: str | None = None, limit: int | None = None
) -> Counter[str]:
    """Jobs moved, per channel. Each move is one transaction: XADD to the stream, XDEL from
    the dead letters, so a crash never loses or doubles one."""
    moved: Counter[str] = Counter()
    start = "-"
    while limit is None or sum(moved.values()) < limit:
        entries: Any = client.xrange(keys.dead, min=start, count=500)
        if not entries:
            break
        for entry_id, fields in entries:
            if limit is not None and sum(moved.values()) >= limit:
                break
            job_channel = _channel_of(fields.get(JOB_FIELD.encode(), b""))
            if job_channel is None or (channel is not None and job_channel != channel):
                continue
            pipe = client.pipeline(transaction=True)
            pipe.xadd(keys.jobs(job_channel), {JOB_FIELD: fields[JOB_FIELD.encode()]})
            pipe.xdel(keys.dead, entry_id)
            pipe.execute()
            moved[job_channel] += 1
        start = "(" + as_text(entries[-1][0])
    return moved


def _channel_of(raw: bytes) -> str | None:
    try:
        message = orjson.loads(raw)["message"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None
    if not isinstance(message, dict):
        return None
    name = message.get("channelType", "FLASHCALL_CONVERSION" if "messageUuid" in message else None)
    return name if name in CHANNELS else None
