"""The batcher: a worker bootstep reading the channels' streams and cutting batches.

It reads each of its channels' streams through the consumer group (XREADGROUP), keeps one
buffer per channel, and cuts a batch when it is full or when its first job has waited the
channel's linger; each batch becomes one `send_batch` task on the channel's queue. Every
`reclaim_idle/4` it takes over entries a dead worker read but never finished (XAUTOCLAIM).
On shutdown it stops reading and sends what it holds itself, within the grace period.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import redis
from celery import Celery, bootsteps

from config import Settings, get_settings
from tasks.channels import CHANNELS, Channel
from tasks.keys import CONSUMER_GROUP, JOB_FIELD, SEND_BATCH, Keys, as_text
from worker.batch import StreamEntry, process_batch
from worker.resources import Resources

log = logging.getLogger(__name__)

MAX_BLOCK_MS = 100
STALE_CONSUMER_MS = 3_600_000


@dataclass
class Buffer:
    channel: Channel
    size: int
    linger_s: float
    entries: list[tuple[StreamEntry, float]] = field(default_factory=list)  # and when read

    def due(self, now: float) -> bool:
        return bool(self.entries) and (
            len(self.entries) >= self.size or now - self.entries[0][1] >= self.linger_s
        )

    def wait_s(self, now: float) -> float:
        """How long until this buffer is due (for the read's BLOCK)."""
        if not self.entries:
            return float("inf")
        return max(0.0, self.entries[0][1] + self.linger_s - now)

    def take(self) -> list[StreamEntry]:
        batch, self.entries = self.entries[: self.size], self.entries[self.size :]
        return [entry for entry, _ in batch]


class Batcher:
    def __init__(
        self, app: Celery, settings: Settings, channels: list[Channel], consumer: str
    ) -> None:
        self._app = app
        self._settings = settings
        self._keys = Keys(settings.dispatch_key_prefix)
        self._consumer = consumer
        self._redis = redis.Redis.from_url(
            settings.redis_url, socket_connect_timeout=5, socket_timeout=30
        )
        self._buffers = {
            c.name: Buffer(
                c, settings.tuning(c.name).batch_size, settings.tuning(c.name).linger_ms / 1000
            )
            for c in channels
        }
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="batcher", daemon=True)
        self._next_reclaim = 0.0

    def start(self) -> None:
        log.info("batcher %s reads %s", self._consumer, ", ".join(self._buffers))
        self._thread.start()

    def stop(self) -> None:
        """Stop reading; send what was read, within the grace period; the rest stays pending
        (and is reclaimed by a live worker)."""
        self._stopping.set()
        self._thread.join(timeout=5)
        self._drain(time.monotonic() + self._settings.shutdown_grace_s)

    # -- the loop ----------------------------------------------------------------------------

    def _run(self) -> None:
        for name in self._buffers:
            self._create_group(self._keys.jobs(name))
        while not self._stopping.is_set():
            try:
                self._tick()
            except redis.RedisError as error:
                log.warning("batcher: Redis error, retrying in 1 s: %s", error)
                self._stopping.wait(1)
            except Exception:
                # Never let the thread die: a pod without its batcher would sit idle.
                log.exception("batcher: unexpected error, retrying in 1 s")
                self._stopping.wait(1)

    def _tick(self) -> None:
        now = time.monotonic()
        self._dispatch_due(now)
        if now >= self._next_reclaim:
            self._reclaim(now)
            self._next_reclaim = now + self._settings.reclaim_idle_ms / 4000
        readable = [b for b in self._buffers.values() if not self._queue_full(b.channel)]
        if not readable:
            self._stopping.wait(0.01)
            return
        wait_s = min([MAX_BLOCK_MS / 1000, *(b.wait_s(now) for b in self._buffers.values())])
        block_ms = max(1, int(wait_s * 1000))
        reply: Any = self._redis.xreadgroup(
            CONSUMER_GROUP,
            self._consumer,
            {self._keys.jobs(b.channel.name): ">" for b in readable},
            count=max(b.size for b in readable),
            block=block_ms,
        )
        seen = time.monotonic()
        for stream, entries in reply or []:
            channel = as_text(stream).rsplit(":", 1)[1]
            self._buffers[channel].entries += [
                (StreamEntry(as_text(entry_id), _job_field(fields)), seen)
                for entry_id, fields in entries
            ]

    def _dispatch_due(self, now: float) -> None:
        for buffer in self._buffers.values():
            while buffer.due(now):
                batch = buffer.take()
                try:
                    self._dispatch(buffer.channel, batch)
                except Exception:
                    # The broker is unreachable: keep the batch and try again next tick.
                    buffer.entries[:0] = [(entry, now) for entry in batch]
                    raise

    def _dispatch(self, channel: Channel, batch: list[StreamEntry]) -> None:
        self._app.send_task(
            SEND_BATCH,
            args=[channel.name, [[e.entry_id, e.raw, e.deliveries] for e in batch]],
            queue=channel.queue,
            argsrepr=f"({channel.name!r}, <{len(batch)} jobs>)",
        )

    def _queue_full(self, channel: Channel) -> bool:
        waiting = self._redis.llen(self._keys.celery + channel.queue)
        return int(waiting) >= self._settings.max_queued_batches

    # -- recovery ----------------------------------------------------------------------------

    def _reclaim(self, now: float) -> None:
        """Take over entries idle longer than reclaim_idle: their reader died (or is slow;
        the ledger tells them apart when the batch runs)."""
        for buffer in self._buffers.values():
            stream = self._keys.jobs(buffer.channel.name)
            reply: Any = self._redis.xautoclaim(
                stream,
                CONSUMER_GROUP,
                self._consumer,
                min_idle_time=self._settings.reclaim_idle_ms,
                start_id="0-0",
                count=1000,
            )
            claimed, deleted = reply[1], reply[2] if len(reply) > 2 else []
            live = [(e, f) for e, f in claimed if f is not None]
            gone = [e for e, f in claimed if f is None] + list(deleted)
            if gone:
                self._redis.xack(stream, CONSUMER_GROUP, *gone)
            if live:
                log.warning(
                    "reclaimed %d %s entries idle > %d ms",
                    len(live),
                    buffer.channel.name,
                    self._settings.reclaim_idle_ms,
                )
                deliveries = self._deliveries(stream, [as_text(e) for e, _ in live])
                overdue = now - buffer.linger_s
                buffer.entries += [
                    (StreamEntry(as_text(e), _job_field(f), deliveries.get(as_text(e), 1)), overdue)
                    for e, f in live
                ]
            self._forget_stale_consumers(stream)

    def _deliveries(self, stream: str, entry_ids: list[str]) -> dict[str, int]:
        """How often each entry was handed to a consumer: the batch gives up on one that
        never finishes however often it is retried (a poison job)."""
        pending: Any = self._redis.xpending_range(
            stream,
            CONSUMER_GROUP,
            min=entry_ids[0],
            max=entry_ids[-1],
            count=len(entry_ids) + 10_000,
            consumername=self._consumer,
        )
        return {as_text(p["message_id"]): int(p["times_delivered"]) for p in pending}

    def _forget_stale_consumers(self, stream: str) -> None:
        """Consumers of pods long gone, with nothing pending, only clutter XINFO."""
        consumers: Any = self._redis.xinfo_consumers(stream, CONSUMER_GROUP)
        for consumer in consumers:
            if consumer["pending"] == 0 and consumer["idle"] > STALE_CONSUMER_MS:
                self._redis.xgroup_delconsumer(stream, CONSUMER_GROUP, consumer["name"])

    def _create_group(self, stream: str) -> None:
        try:
            self._redis.xgroup_create(stream, CONSUMER_GROUP, id="0", mkstream=True)
        except redis.ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise

    # -- shutdown ----------------------------------------------------------------------------

    def _drain(self, deadline: float) -> None:
        for buffer in self._buffers.values():
            while buffer.entries and time.monotonic() < deadline:
                try:
                    process_batch(Resources.current(), buffer.channel.name, buffer.take())
                except Exception:
                    log.exception(
                        "draining a %s batch failed; it stays pending", buffer.channel.name
                    )
            if buffer.entries:
                log.warning(
                    "grace period over: %d %s entries stay pending for another worker",
                    len(buffer.entries),
                    buffer.channel.name,
                )


class BatcherStep(bootsteps.StartStopStep):
    """Starts and stops a Batcher with the worker, for the channels of the queues it consumes."""

    requires = ("celery.worker.components:Pool",)

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self.batcher: Batcher | None = None

    def start(self, worker: Any) -> None:
        queues = set(worker.app.amqp.queues.consume_from)
        channels = [c for c in CHANNELS.values() if c.queue in queues]
        if not channels:
            return
        consumer = f"{worker.hostname}-{os.getpid()}"
        self.batcher = Batcher(worker.app, get_settings(), channels, consumer)
        self.batcher.start()

    def stop(self, worker: Any) -> None:
        if self.batcher is not None:
            self.batcher.stop()
            self.batcher = None


def _job_field(fields: dict[bytes, bytes] | None) -> str | None:
    raw = (fields or {}).get(JOB_FIELD.encode())
    return None if raw is None else raw.decode("utf-8", errors="replace")
