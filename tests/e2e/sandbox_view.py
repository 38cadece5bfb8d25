"""What the sandbox saw, grouped by request."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import httpx


def received(sandbox: httpx.Client) -> list[dict[str, Any]]:
    return list(sandbox.get("/_sandbox/received").json())


def requests(sandbox: httpx.Client) -> dict[int, list[dict[str, Any]]]:
    """Created messages per request index (requests that created nothing are absent)."""
    grouped: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for record in received(sandbox):
        grouped[record["requestIndex"]].append(record["message"])
    return dict(grouped)


def stats(sandbox: httpx.Client) -> dict[str, Any]:
    return dict(sandbox.get("/_sandbox/stats").json())
