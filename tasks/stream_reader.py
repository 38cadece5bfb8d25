"""Reading a stream the dispatcher publishes (outcomes, statuses) back, with or without a group.

Without a group, a reader sees the whole stream from `start`. With a consumer group, readers
share the entries and resume where the group left off: a consumer first gets back what it was
given but never acknowledged, then new entries. Entries are acknowledged once the caller has
gone past them, so a reader that crashes sees them again (at least once).
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any, TypeVar

import redis

T = TypeVar("T")


def iter_stream(
    client: redis.Redis,
    stream: str,
    field: str,
    parse: Callable[[bytes], T],
    *,
    follow: bool = False,
    group: str | None = None,
    consumer: str = "reader",
    start: str = "0",
    block_ms: int = 1000,
    count: int = 500,
) -> Generator[tuple[str, T], None, None]:
    """(entry id, parsed `field`) in stream order; ends at the stream's end unless `follow`."""
    if group is not None:
        _ensure_group(client, stream, group)
    last = start
    unacked: list[bytes] = []
    replaying = group is not None  # a group consumer starts with its unacknowledged history
    while True:
        if group is None:
            reply: Any = client.xread(
                {stream: last}, count=count, block=block_ms if follow else None
            )
        else:
            if unacked:
                client.xack(stream, group, *unacked)
                unacked = []
            reply = client.xreadgroup(
                group,
                consumer,
                {stream: "0" if replaying else ">"},
                count=count,
                block=block_ms if follow and not replaying else None,
            )
        entries = reply[0][1] if reply else []
        if replaying and not entries:
            replaying = False
            continue
        if not entries and not follow:
            return
        for entry_id, fields in entries:
            last = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
            yield last, parse(fields[field.encode()])
            if group is not None:
                unacked.append(entry_id)


def _ensure_group(client: redis.Redis, stream: str, group: str) -> None:
    try:
        client.xgroup_create(stream, group, id="0", mkstream=True)
    except redis.ResponseError as error:
        if "BUSYGROUP" not in str(error):
            raise
