"""Move dead-lettered jobs back to their channel's stream, with their jobIds.

Each move clears the jobId's `failed` state in the ledger (`replay.lua`), so the replayed job
is sent again; a jobId that was accepted or rejected meanwhile is only acknowledged.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import redis

from tasks.channels import CHANNELS
from tasks.keys import JOB_FIELD, OUTCOME_FIELD, Keys, as_text

_REPLAY = (Path(__file__).with_name("replay.lua")).read_text(encoding="utf-8")


def replay(
    client: redis.Redis, keys: Keys, channel: str | None = None, limit: int | None = None
) -> Counter[str]:
    """Jobs moved, per channel. Each move is one script (ledger, XADD, XDEL), so a crash
    never loses or doubles one."""
    move = client.register_script(_REPLAY)
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
            job_id = _job_id_of(fields.get(OUTCOME_FIELD.encode(), b""))
            move(
                keys=[keys.dead, keys.jobs(job_channel), keys.ledger(job_id)],
                args=[entry_id, fields[JOB_FIELD.encode()]],
            )
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


def _job_id_of(raw: bytes) -> str:
    """The jobId the ledger knows the job by: its outcome's (the entry id when it had none)."""
    try:
        job_id = orjson.loads(raw)["jobId"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return ""
    return job_id if isinstance(job_id, str) else ""
