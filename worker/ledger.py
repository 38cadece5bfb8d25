"""The idempotency ledger: a jobId is sent by one batch at a time and finishes once.

Per jobId, `{prefix}:ledger:{jobId}` holds `inflight:{owner}` while a batch sends it, then its
final status: `accepted:{messageUuid}` or `rejected` (never sent again), or `failed` (replay
may send it again). A batch's owner key lives while the batch is being sent, renewed by a
heartbeat thread; a claim on a job whose owner key lapsed (its worker died) is taken over.
Claim and finish are Lua scripts, so two workers never both win a jobId and an outcome is
published exactly when the ledger records it.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import redis

from tasks.keys import Keys

Claim = Literal["claimed", "busy", "done"]

# KEYS: ledger keys. ARGV: owner, owner key prefix, ttl (s). Returns one Claim per key.
_CLAIM = """
local claim = 'inflight:' .. ARGV[1]
local out = {}
for i, key in ipairs(KEYS) do
  local state = redis.call('GET', key)
  if not state or state == 'failed' or state == claim then
    redis.call('SET', key, claim, 'EX', ARGV[3])
    out[i] = 'claimed'
  elseif string.sub(state, 1, 9) == 'inflight:' then
    if redis.call('EXISTS', ARGV[2] .. string.sub(state, 10)) == 1 then
      out[i] = 'busy'
    else
      redis.call('SET', key, claim, 'EX', ARGV[3])
      out[i] = 'claimed'
    end
  else
    out[i] = 'done'
  end
end
return out
"""

# KEYS: results stream, dead-letter stream, then ledger keys.
# ARGV: owner, ttl (s), then per ledger key: final state, outcome JSON, job JSON to
# dead-letter ('' for none). Publishes only what this owner still holds; returns that count.
_FINISH = """
local claim = 'inflight:' .. ARGV[1]
local published = 0
for i = 3, #KEYS do
  local at = 3 + (i - 3) * 3
  if redis.call('GET', KEYS[i]) == claim then
    redis.call('SET', KEYS[i], ARGV[at], 'EX', ARGV[2])
    redis.call('XADD', KEYS[1], '*', 'outcome', ARGV[at + 1])
    if ARGV[at + 2] ~= '' then
      redis.call('XADD', KEYS[2], '*', 'job', ARGV[at + 2], 'outcome', ARGV[at + 1])
    end
    published = published + 1
  end
end
return published
"""

# KEYS: ledger keys. ARGV: owner. Gives back claims a batch could not finish.
_RELEASE = """
for _, key in ipairs(KEYS) do
  if redis.call('GET', key) == 'inflight:' .. ARGV[1] then redis.call('DEL', key) end
end
return 0
"""


@dataclass(frozen=True)
class Finished:
    job_id: str
    state: str  # accepted:{uuid} | rejected | failed
    outcome_json: str
    dead_job_json: str = ""


class Ledger:
    def __init__(self, client: redis.Redis, keys: Keys, ttl_s: int, lease_ms: int) -> None:
        self._redis = client
        self._keys = keys
        self._ttl_s = ttl_s
        self._lease_ms = lease_ms
        self._claim = client.register_script(_CLAIM)
        self._finish = client.register_script(_FINISH)
        self._release = client.register_script(_RELEASE)
        self._heartbeat = _Heartbeat(client, lease_ms)

    @contextmanager
    def owner(self) -> Iterator[str]:
        """A fresh owner id, alive (lease renewed) for the duration of the block."""
        owner = uuid.uuid4().hex
        key = self._keys.owner_prefix + owner
        self._redis.set(key, 1, px=self._lease_ms)
        self._heartbeat.add(key)
        try:
            yield owner
        finally:
            self._heartbeat.remove(key)
            self._redis.delete(key)

    def claim(self, owner: str, job_ids: Sequence[str]) -> list[Claim]:
        if not job_ids:
            return []
        keys = [self._keys.ledger(j) for j in job_ids]
        result = self._claim(keys=keys, args=[owner, self._keys.owner_prefix, self._ttl_s])
        return [_as_claim(r) for r in result]

    def finish(self, owner: str, finished: Sequence[Finished]) -> int:
        if not finished:
            return 0
        keys = [
            self._keys.results,
            self._keys.dead,
            *(self._keys.ledger(f.job_id) for f in finished),
        ]
        args: list[str | int] = [owner, self._ttl_s]
        for f in finished:
            args += [f.state, f.outcome_json, f.dead_job_json]
        return int(self._finish(keys=keys, args=args))

    def release(self, owner: str, job_ids: Sequence[str]) -> None:
        if job_ids:
            self._release(keys=[self._keys.ledger(j) for j in job_ids], args=[owner])


def _as_claim(reply: bytes | str) -> Claim:
    text = reply.decode() if isinstance(reply, bytes) else reply
    if text not in ("claimed", "busy", "done"):
        raise ValueError(f"unexpected claim reply {text!r}")
    return text  # type: ignore[return-value]


class _Heartbeat:
    """One daemon thread per process renewing the lease of every live owner key."""

    def __init__(self, client: redis.Redis, lease_ms: int) -> None:
        self._redis = client
        self._lease_ms = lease_ms
        self._live: set[str] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def add(self, key: str) -> None:
        with self._lock:
            self._live.add(key)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="lease", daemon=True)
                self._thread.start()

    def remove(self, key: str) -> None:
        with self._lock:
            self._live.discard(key)

    def _run(self) -> None:
        interval = self._lease_ms / 3000
        while True:
            time.sleep(interval)
            with self._lock:
                live = list(self._live)
            if not live:
                continue
            try:
                pipe = self._redis.pipeline(transaction=False)
                for key in live:
                    pipe.pexpire(key, self._lease_ms)
                pipe.execute()
            except redis.RedisError:
                continue  # the next beat tries again; a lapse only allows a takeover
