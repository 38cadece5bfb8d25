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

import orjson
import redis

from tasks.keys import Keys

Claim = Literal["claimed", "busy", "done"]

# The scripts take the jobIds as one JSON argument and build the keys from the prefix: packing
# thousands of separate arguments cost more than the rest of a batch. (So they name keys they
# were not given, which standalone Redis allows; a Redis Cluster deployment would need a hash
# tag per batch.)

# ARGV: ledger key prefix, owner key prefix, owner, ttl (s), JSON array of jobIds.
# Returns one Claim per jobId.
_CLAIM = """
local claim = 'inflight:' .. ARGV[3]
local out = {}
for i, job in ipairs(cjson.decode(ARGV[5])) do
  local key = ARGV[1] .. job
  local state = redis.call('GET', key)
  if not state or state == 'failed' or state == claim then
    redis.call('SET', key, claim, 'EX', ARGV[4])
    out[i] = 'claimed'
  elseif string.sub(state, 1, 9) == 'inflight:' then
    if redis.call('EXISTS', ARGV[2] .. string.sub(state, 10)) == 1 then
      out[i] = 'busy'
    else
      redis.call('SET', key, claim, 'EX', ARGV[4])
      out[i] = 'claimed'
    end
  else
    out[i] = 'done'
  end
end
return out
"""

# ARGV: ledger key prefix, results stream, dead-letter stream, owner, ttl (s), JSON array of
# [jobId, final state, outcome JSON, job JSON to dead-letter or ""]. Publishes only what this
# owner still holds; returns that count.
_FINISH = """
local claim = 'inflight:' .. ARGV[4]
local published = 0
for _, f in ipairs(cjson.decode(ARGV[6])) do
  local key = ARGV[1] .. f[1]
  if redis.call('GET', key) == claim then
    redis.call('SET', key, f[2], 'EX', ARGV[5])
    redis.call('XADD', ARGV[2], '*', 'outcome', f[3])
    if f[4] ~= '' then
      redis.call('XADD', ARGV[3], '*', 'job', f[4], 'outcome', f[3])
    end
    published = published + 1
  end
end
return published
"""

# ARGV: ledger key prefix, owner, JSON array of jobIds. Gives back claims a batch could not
# finish.
_RELEASE = """
for _, job in ipairs(cjson.decode(ARGV[3])) do
  local key = ARGV[1] .. job
  if redis.call('GET', key) == 'inflight:' .. ARGV[2] then redis.call('DEL', key) end
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
        args: list[str | int | bytes] = [
            self._keys.ledger(""),
            self._keys.owner_prefix,
            owner,
            self._ttl_s,
            orjson.dumps(list(job_ids)),
        ]
        return [_as_claim(r) for r in self._claim(args=args)]

    def finish(self, owner: str, finished: Sequence[Finished]) -> int:
        if not finished:
            return 0
        rows = [[f.job_id, f.state, f.outcome_json, f.dead_job_json] for f in finished]
        args: list[str | int | bytes] = [
            self._keys.ledger(""),
            self._keys.results,
            self._keys.dead,
            owner,
            self._ttl_s,
            orjson.dumps(rows),
        ]
        return int(self._finish(args=args))

    def release(self, owner: str, job_ids: Sequence[str]) -> None:
        if job_ids:
            self._release(args=[self._keys.ledger(""), owner, orjson.dumps(list(job_ids))])


_CLAIMS: dict[str, Claim] = {"claimed": "claimed", "busy": "busy", "done": "done"}


def _as_claim(reply: bytes | str) -> Claim:
    text = reply.decode() if isinstance(reply, bytes) else reply
    if text not in _CLAIMS:
        raise ValueError(f"unexpected claim reply {text!r}")
    return _CLAIMS[text]


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
