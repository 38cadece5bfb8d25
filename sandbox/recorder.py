"""What the sandbox received: every created message, and counters of every request."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Recorder:
    received: list[tuple[int, str, str, Any, float]] = field(default_factory=list)
    by_status: Counter[str] = field(default_factory=Counter)
    by_channel: Counter[str] = field(default_factory=Counter)
    requests: int = 0
    largest_request: int = 0

    def next_request(self) -> int:
        """The index of a request that reached an API endpoint, in arrival order."""
        index = self.requests
        self.requests += 1
        return index

    def count(self, outcome: str) -> None:
        self.by_status[outcome] += 1

    def sized(self, objects: list[Any], channels: set[str]) -> None:
        self.largest_request = max(self.largest_request, len(objects))
        for channel in channels:
            self.by_channel[channel] += 1

    def record(
        self, request: int, path: str, uuids: list[str], objects: list[Any], arrived: float
    ) -> None:
        self.received.extend(
            (request, path, uuid, obj, arrived) for uuid, obj in zip(uuids, objects, strict=True)
        )

    def received_page(
        self, offset: int, limit: int | None, channel: str | None = None
    ) -> list[dict[str, Any]]:
        records = self.received
        if channel is not None:
            records = [r for r in records if r[3].get("channelType") == channel]
        end = None if limit is None else offset + limit
        return [
            {
                "requestIndex": request,
                "endpoint": path,
                "messageUuid": uuid,
                "message": obj,
                "receivedAt": arrived,
            }
            for request, path, uuid, obj, arrived in records[offset:end]
        ]

    def stats(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "requestsByStatus": dict(self.by_status),
            "messagesRecorded": len(self.received),
            "requestsPerChannel": dict(self.by_channel),
            "largestRequest": self.largest_request,
        }

    def clear_received(self) -> None:
        self.received.clear()

    def clear_stats(self) -> None:
        self.by_status.clear()
        self.by_channel.clear()
        self.requests = 0
        self.largest_request = 0
