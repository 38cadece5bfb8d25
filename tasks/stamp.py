"""A producer's seal on a job it validated, so that a worker need not validate it again.

Validating a job with the contract's models costs more than everything else a worker does
for it; a job our own producer wrote was validated already, by the same rules. So the
producer writes a `stamp` field beside the `job` field: the contract's version and context it
validated under, the job's channel and SMS segments, and a keyed BLAKE2b MAC over those and
the job's exact bytes. A worker that verifies the stamp takes the job as it is; any other
entry (a foreign producer's, a replayed dead letter, an older contract, a job edited or
copied to another stream, a stamp of a key that is gone) is validated in full as before.

The key (`{prefix}:stamp-key`, 32 random bytes) is made by the first producer that needs one
(SET NX) and read by workers once per batch. It guards against mistakes, not against whoever
can write to Redis (they could read the key as well). Losing it costs speed, never a wrong
send: a stamp that does not verify only means the job is validated.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from pathlib import Path
from typing import Any, NamedTuple

import redis

import tasks.contract
import tasks.jobs
from tasks.contract import ContractContext

#: Bytes of MAC kept (128 bits).
MAC_BYTES = 16
#: Fields whose rules depend on the clock (tasks/contract/common.py `Scheduling`): a job
#: that has one is not stamped, so the worker checks it against its own clock when it sends.
CLOCK_FIELDS = ("localSendTime", "localCompletionTime")
#: A producer re-reads the key at most this often (s), so a key Redis lost is replaced soon.
KEY_REFRESH_S = 1.0


def _contract_version() -> str:
    """A digest of the code that holds the rules (the contract package and the job model):
    a job stamped by a producer running other rules is validated again, with no version
    number for anyone to forget to raise."""
    files = sorted(Path(tasks.contract.__file__).parent.glob("*.py"))
    digest = hashlib.sha256()
    for path in [*files, Path(tasks.jobs.__file__)]:
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


#: See `_contract_version`.
CONTRACT_VERSION = _contract_version()


def context_tag(context: ContractContext | None) -> str:
    """The contract version and the settings its rules depend on."""
    digits = (context or ContractContext()).flashcall_code_max_digits
    return f"{CONTRACT_VERSION}-{digits}"


class Stamp(NamedTuple):
    """What a verified stamp vouches for, beside the job's bytes."""

    channel: str
    segments: int | None  # SMS only


def _mac(key: bytes, head: bytes, job: bytes) -> bytes:
    digest = hashlib.blake2b(head + b"\n" + job, key=key, digest_size=MAC_BYTES)
    return digest.hexdigest().encode("ascii")


def seal(key: bytes, tag: str, channel: str, segments: int | None, job: bytes) -> bytes:
    """The `stamp` field: `{tag}.{channel}.{segments or -}.{mac}`."""
    head = f"{tag}.{channel}.{'-' if segments is None else segments}".encode("ascii")
    return head + b"." + _mac(key, head, job)


def verify(key: bytes | None, tag: str, stamp: bytes | None, job: bytes) -> Stamp | None:
    """What the stamp vouches for, or None when it does not (or there is none): then the
    job is validated. Never raises, whatever the field holds."""
    if not key or not stamp or len(stamp) > 200:
        return None
    head, _, mac = stamp.rpartition(b".")
    if not hmac.compare_digest(mac, _mac(key, head, job)):
        return None
    # Only our producer could have written this head (or one of another contract): still
    # read without trusting its shape.
    parts = head.decode("ascii", "replace").split(".")
    if len(parts) != 3 or parts[0] != tag or not parts[1]:
        return None
    channel, segments = parts[1], parts[2]
    if segments == "-":
        return Stamp(channel, None)
    return Stamp(channel, int(segments)) if segments.isdigit() and segments.isascii() else None


class StampKey:
    """The key as a producer holds it: created when missing, re-read now and then."""

    def __init__(self, client: redis.Redis, name: str) -> None:
        self._redis = client
        self._name = name
        self._key: bytes | None = None
        self._read_at = 0.0

    def get(self) -> bytes:
        now = time.monotonic()
        if self._key is None or now - self._read_at > KEY_REFRESH_S:
            # Ours if none was there, else the one there: one round trip.
            pipe = self._redis.pipeline(transaction=False)
            pipe.set(self._name, os.urandom(32), nx=True)
            pipe.get(self._name)
            stored: Any = pipe.execute()[1]
            self._key = bytes(stored)
            self._read_at = now
        return self._key


def read_key(client: redis.Redis, name: str) -> bytes | None:
    """The key as a worker reads it (once per batch); None before any producer made one."""
    value: Any = client.get(name)
    return None if value is None else bytes(value)


__all__ = [
    "CLOCK_FIELDS",
    "CONTRACT_VERSION",
    "Stamp",
    "StampKey",
    "context_tag",
    "read_key",
    "seal",
    "verify",
]
