"""The sandbox's clock: one task and a heap of due actions.

Each step of a request's messages (sent, final, read) is one heap entry holding the whole
request, so 100,000 messages in flight cost a few heap entries per request, not a task or a
timer each.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import time
from collections.abc import Callable
from contextlib import suppress

LOG = logging.getLogger("sandbox")
#: An action gets the time it was due at (unix), which is the time it records.
Action = Callable[[float], None]


class Timeline:
    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Action]] = []
        self._order = itertools.count()  # equal due times run in the order scheduled
        self._wake: asyncio.Event | None = None

    def schedule(self, due: float, action: Action) -> None:
        entry = (due, next(self._order), action)
        heapq.heappush(self._heap, entry)
        if self._wake is not None and self._heap[0] is entry:
            self._wake.set()  # it is due before what the task sleeps for

    def clear(self) -> None:
        self._heap.clear()

    async def run(self) -> None:
        """Run each action at its due time, until cancelled (the app's lifespan)."""
        self._wake = wake = asyncio.Event()  # created here: bound to the app's event loop
        try:
            while True:
                wake.clear()
                delay = self._heap[0][0] - time.time() if self._heap else None
                if delay is None or delay > 0:
                    with suppress(TimeoutError):
                        await asyncio.wait_for(wake.wait(), delay)
                    continue
                due, _, action = heapq.heappop(self._heap)
                try:
                    action(due)
                except Exception:
                    # A bug in one step must not stop every message's lifecycle for good.
                    LOG.exception("a step due at %.3f raised", due)
                await asyncio.sleep(0)  # requests get their turn between big steps
        finally:
            self._wake = None
