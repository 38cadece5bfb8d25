"""The API circuit's state as stored in Redis, for whoever needs to look: the workers (which
also change it, see worker/circuit.py), `status`, and the metrics exporter."""

from __future__ import annotations

from dataclasses import dataclass

import redis

from tasks.keys import as_text


@dataclass(frozen=True)
class CircuitState:
    open: bool
    probe_due: bool = False  # open, and the cooldown is over: one batch may test the API
    reason: str = ""
    opened_ms: int | None = None  # Redis time it opened


CLOSED = CircuitState(open=False)


def read_state(client: redis.Redis, key: str) -> CircuitState:
    """The circuit as stored (also read by `status` and the metrics exporter)."""
    state, until, reason, opened = client.hmget(key, ["state", "until", "reason", "opened"])
    if state is None or as_text(state) != "open":
        return CLOSED
    seconds, micros = client.time()
    now_ms = int(seconds) * 1000 + int(micros) // 1000
    return CircuitState(
        open=True,
        probe_due=until is None or now_ms >= int(until),
        reason=as_text(reason or b""),
        opened_ms=int(opened) if opened is not None else None,
    )
