"""The batcher: a worker bootstep reading the channels' streams and cutting batches.

It reads its channels' streams through the consumer group (XREADGROUP) as a *reader* with a
lease of its own, keeps one buffer of entry ids per channel, and cuts a batch when it is full
or when its first job has waited the channel's linger: the entries are handed over to the
new batch (their holder from then on, see worker/ownership.py) and one `send_batch` task
naming the batch goes on the channel's queue. While the batch waits there, the batcher keeps
its lease alive; the process that runs it takes over from there. Entries of holders whose
lease lapsed (their process died) are taken over as soon as that is seen. On shutdown it
stops reading and sends what it holds itself, within the grace period.

While the API circuit is open (worker/circuit.py) it reads nothing and cuts nothing: jobs wait
in their streams. When the cooldown is over, the batcher that takes the probe token cuts one
batch as the probe; when the probe succeeds the circuit closes and every batcher reads again.
Likewise, while the balance guard (worker/balance.py) pauses the bulk channels, it neither
reads nor cuts theirs: what it has read waits in its buffers, under its lease.
"""

from __future__ import annotations

import itertools
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
from tasks.circuit_state import CircuitState
from tasks.keys import CONSUMER_GROUP, SEND_BATCH, Keys, as_text
from worker import retention
from worker.balance import BalanceGuard
from worker.batch import process_batch
from worker.circuit import Circuit
from worker.ownership import READER_PREFIX, Lease, LeaseTimes, Ownership, new_batch_id
from worker.resources import Resources

log = logging.getLogger(__name__)

#: Longest XREADGROUP block, so leases, reclaims and shutdown are looked at this often.
MAX_BLOCK_MS = 100
#: Entries taken over from a dead holder per script call (the call repeats while it fills).
RECLAIM_COUNT = 1000


@dataclass
class Buffer:
    channel: Channel
    size: int
    linger_s: float
    entries: list[tuple[str, float]] = field(default_factory=list)  # entry id, when read

    def due(self, now: float) -> bool:
        return bool(self.entries) and (
            len(self.entries) >= self.size or now - self.entries[0][1] >= self.linger_s
        )

    def wait_s(self, now: float) -> float:
        """How long until this buffer is due (for the read's BLOCK)."""
        if not self.entries:
            return float("inf")
        return max(0.0, self.entries[0][1] + self.linger_s - now)

    def take(self) -> list[str]:
        batch, self.entries = self.entries[: self.size], self.entries[self.size :]
        return [entry_id for entry_id, _ in batch]

    def peek(self) -> list[str]:
        """The next batch's entry ids, left in the buffer until `drop`."""
        return [entry_id for entry_id, _ in self.entries[: self.size]]

    def drop(self, count: int) -> None:
        del self.entries[:count]


@dataclass
class Queued:
    """A batch this batcher cut that no process has started yet."""

    channel: Channel
    size: int
    since: float
    probe: bool = False
    on_broker: bool = False
    maybe_lost: bool = False  # the broker connection broke since its task was sent


class Batcher:
    def __init__(self, app: Celery, settings: Settings, channels: list[Channel], node: str) -> None:
        self._app = app
        self._settings = settings
        self._keys = Keys(settings.dispatch_key_prefix)
        self._redis = redis.Redis.from_url(
            settings.redis_url, socket_connect_timeout=5, socket_timeout=30
        )
        # The reader needs only entry ids: redis-py's parsing of each entry's fields into a
        # dict was a fifth of the node's main process's CPU.
        self._redis.set_response_callback("XREADGROUP", _unparsed)
        self._ownership = Ownership(self._redis, self._keys, LeaseTimes.from_settings(settings))
        #: A reader holds entries of all its channels: the shortest of their leases.
        self._lease_ms = min(self._ownership.leases.of(c.name) for c in channels)
        self._circuit = Circuit(self._redis, self._keys, settings)
        self._paused_reason: str | None = None
        self._guard = BalanceGuard(self._redis, self._keys, settings)
        self._bulk_paused = False
        self._names = (f"{READER_PREFIX}{node}-{os.getpid()}-{n}" for n in itertools.count())
        self.reader = next(self._names)
        self._buffers = {
            c.name: Buffer(
                c, settings.tuning(c.name).batch_size, settings.tuning(c.name).linger_ms / 1000
            )
            for c in channels
        }
        self._queued: dict[str, Queued] = {}
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="batcher", daemon=True)
        self._next_renewal = 0.0
        self._next_reclaim = 0.0
        self._next_trim = 0.0
        self._connected_since: float | None = float("-inf")  # None while Redis fails
        self._resync = False  # a Redis error: a read or takeover may have lost its reply

    def broker_reconnected(self) -> None:
        """The node's broker connection broke and was made again: a task the node had
        received but not started is lost with the old connection (kombu cannot put it back
        on a closed one), so every batch sent to the broker is offered again. A second task
        for a batch that started finds it started and does nothing."""
        for queued in list(self._queued.values()):
            queued.maybe_lost = queued.on_broker

    def start(self) -> None:
        log.info("batcher %s reads %s", self.reader, ", ".join(self._buffers))
        self._thread.start()

    def stop(self) -> None:
        """Stop reading; send what was read, within the grace period; the rest is taken
        over by a live reader at once (this reader's lease ends)."""
        self._stopping.set()
        self._thread.join(timeout=5)
        self._drain(time.monotonic() + self._settings.shutdown_grace_s)

    # -- the loop ----------------------------------------------------------------------------

    def _run(self) -> None:
        started = False
        while not self._stopping.is_set():
            try:
                if not started:
                    for name in self._buffers:
                        self._create_group(self._keys.jobs(name))
                    self._ownership.new_reader(self.reader, self._lease_ms)
                    started = True
                self._tick()
                if self._connected_since is None:
                    self._connected_since = time.monotonic()
            except redis.ResponseError as error:
                self._connected_since = None
                self._resync = True
                if _stream_gone(error):
                    # Redis came back without its data (no AOF, or a replica that lacked it):
                    # create the streams and groups again, under a fresh reader lease.
                    log.warning("batcher: %s; creating the job streams' groups again", error)
                    started = False
                else:
                    log.warning("batcher: Redis error, retrying in 1 s: %s", error)
                self._stopping.wait(1)
            except redis.RedisError as error:
                self._connected_since = None
                self._resync = True
                log.warning("batcher: Redis error, retrying in 1 s: %s", error)
                self._stopping.wait(1)
            except Exception:
                # Never let the thread die: a pod without its batcher would sit idle.
                log.exception("batcher: unexpected error, retrying in 1 s")
                self._stopping.wait(1)

    def _tick(self) -> None:
        now = time.monotonic()
        if self._resync:
            self._recover_read(now)
            self._resync = False
        if now >= self._next_renewal:
            self._renew(now)
            self._next_renewal = now + self._lease_ms / 4000
        if now >= self._next_reclaim:
            self._reclaim(now)
            self._next_reclaim = now + self._lease_ms / 4000
        if now >= self._next_trim:
            retention.trim(self._redis, self._keys, self._settings)
            self._next_trim = now + retention.TRIM_EVERY_S
        held = self._held_back()
        circuit = self._circuit.state()
        if circuit.open:
            self._paused(now, circuit, held)
            return
        if self._paused_reason is not None:
            log.warning("batcher %s reads again: the circuit closed", self.reader)
            self._paused_reason = None
        self._dispatch_due(now, held)
        readable = [
            b
            for b in self._buffers.values()
            if b.channel.name not in held and not self._queue_full(b.channel)
        ]
        if not readable:
            self._stopping.wait(MAX_BLOCK_MS / 1000 if held else 0.01)
            return
        # A buffer whose queue is full cannot be cut however due it is: it sets no deadline.
        wait_s = min([MAX_BLOCK_MS / 1000, *(b.wait_s(now) for b in readable)])
        self._read(readable, block_ms=max(1, int(wait_s * 1000)))

    def _read(self, buffers: list[Buffer], block_ms: int) -> None:
        reply: Any = self._redis.xreadgroup(
            CONSUMER_GROUP,
            self.reader,
            {self._keys.jobs(b.channel.name): ">" for b in buffers},
            count=max(b.size for b in buffers),
            block=block_ms,
        )
        seen = time.monotonic()
        # RESP3 answers a map of streams, RESP2 a list of [stream, entries] pairs.
        for stream, entries in reply.items() if isinstance(reply, dict) else reply or []:
            channel = as_text(stream).rsplit(":", 1)[1]
            self._buffers[channel].entries += [(as_text(e[0]), seen) for e in entries]

    def _recover_read(self, now: float) -> None:
        """A reply lost with a Redis error (XREADGROUP's, a takeover's) leaves entries pending
        under this reader that its buffers do not know: nobody else would take them over
        while the reader lives, so they are looked up in its pending list."""
        for buffer in self._buffers.values():
            known = {entry_id for entry_id, _ in buffer.entries}
            pending: Any = self._redis.xpending_range(
                self._keys.jobs(buffer.channel.name),
                CONSUMER_GROUP,
                min="-",
                max="+",
                count=100_000,
                consumername=self.reader,
            )
            missing = [as_text(p["message_id"]) for p in pending]
            missing = [entry_id for entry_id in missing if entry_id not in known]
            if missing:
                log.warning(
                    "batcher %s: %d read %s entries recovered after a Redis error",
                    self.reader,
                    len(missing),
                    buffer.channel.name,
                )
                buffer.entries += [(entry_id, now - buffer.linger_s) for entry_id in missing]

    def _held_back(self) -> frozenset[str]:
        """This batcher's bulk channels while the balance guard pauses them."""
        bulk = frozenset(name for name, b in self._buffers.items() if not b.channel.otp)
        guard = self._guard.current() if bulk else None
        paused = guard is not None and guard.paused
        if paused != self._bulk_paused:
            self._bulk_paused = paused
            if guard is not None and guard.paused:
                log.info(
                    "batcher %s holds %s back: %s",
                    self.reader,
                    ", ".join(sorted(bulk)),
                    guard.reason,
                )
            else:
                log.info("batcher %s reads %s again", self.reader, ", ".join(sorted(bulk)))
        return bulk if paused else frozenset()

    def _paused(
        self, now: float, circuit: CircuitState, held: frozenset[str] = frozenset()
    ) -> None:
        """Nothing is read or cut while the circuit is open, but the one probe batch."""
        if self._paused_reason != circuit.reason:
            log.warning("batcher %s paused, circuit open: %s", self.reader, circuit.reason)
            self._paused_reason = circuit.reason
        for batch, queued in list(self._queued.items()):
            if queued.probe and not queued.on_broker:
                self._put_on_broker(batch, queued)  # a probe the broker refused: again
        probe_due = circuit.probe_due and self._circuit.take_probe(self.reader)
        if probe_due and not self._probe(now, held):
            self._circuit.probe_done(self.reader)  # nothing to send here: another may probe
        self._stopping.wait(MAX_BLOCK_MS / 1000)

    def _probe(self, now: float, held: frozenset[str] = frozenset()) -> bool:
        """Cut one batch to test the API with; False if this batcher has no job to send (but
        of channels the balance guard holds back)."""
        buffers = [b for b in self._buffers.values() if b.channel.name not in held]
        if not buffers:
            return False
        if not any(b.entries for b in buffers):
            self._read(buffers, block_ms=1)
        buffer = next((b for b in buffers if b.entries), None)
        if buffer is None:
            return False
        log.warning("batcher %s sends a probe batch of %s", self.reader, buffer.channel.name)
        return self._cut(buffer, now, probe=True)

    def _renew(self, now: float) -> None:
        """Keep this reader and its batches waiting on the broker alive. A batch that waited
        longer than `QUEUED_BATCH_TIMEOUT_S` (its task was lost with the broker, say) is let go:
        its entries are taken over and the task, should it still come, does nothing."""
        timeout = self._settings.queued_batch_timeout_s
        for batch, queued in list(self._queued.items()):
            if now - queued.since > timeout:
                log.warning("batch %s waited over %.0f s unstarted: let go", batch, timeout)
                del self._queued[batch]
        leases = {self.reader: Lease("reader", self._lease_ms)}
        for batch, queued in self._queued.items():
            name = queued.channel.name
            leases[batch] = Lease("queued", self._ownership.leases.of(name), name)
        alive = self._ownership.renew(leases)
        for batch in self._queued.keys() & {h for h, ok in alive.items() if not ok}:
            del self._queued[batch]  # started (or stale): no longer this batcher's to keep
        if not alive[self.reader]:
            self._lost_reader()

    def _lost_reader(self) -> None:
        """This reader's lease lapsed (the thread stalled, Redis lost it): what it read may
        be someone else's now, so it forgets all of it and reads on under a new name."""
        dropped = sum(len(b.entries) for b in self._buffers.values())
        log.warning(
            "batcher %s lost its lease; %d read entries left to others", self.reader, dropped
        )
        for buffer in self._buffers.values():
            buffer.entries.clear()
        self._queued = {b: q for b, q in self._queued.items() if q.on_broker}
        self.reader = next(self._names)
        self._ownership.new_reader(self.reader, self._lease_ms)

    def _dispatch_due(self, now: float, held: frozenset[str] = frozenset()) -> None:
        for batch, queued in list(self._queued.items()):
            if not queued.on_broker or queued.maybe_lost:
                self._put_on_broker(batch, queued)
        for buffer in self._buffers.values():
            if buffer.channel.name in held:
                continue
            while buffer.due(now) and not self._queue_full(buffer.channel):
                if not self._cut(buffer, now):
                    return

    def _cut(self, buffer: Buffer, now: float, probe: bool = False) -> bool:
        """Hand the buffer's next batch over to a new batch and offer it to the broker;
        False if this reader lost its lease (and with it what it had read)."""
        # Taken out of the buffer only once handed over: a Redis error (down, or refusing
        # writes at maxmemory) leaves them to be cut again on the next tick. Dropped, they
        # would stay pending under this live reader, which nobody takes over from.
        entry_ids = buffer.peek()
        batch = new_batch_id()
        if not self._ownership.hand_over(buffer.channel.name, self.reader, batch, entry_ids):
            self._lost_reader()
            return False
        buffer.drop(len(entry_ids))
        if probe:
            self._circuit.hand_probe(self.reader, batch)
        queued = Queued(buffer.channel, len(entry_ids), now, probe=probe)
        self._queued[batch] = queued
        self._put_on_broker(batch, queued)
        return True

    def _put_on_broker(self, batch: str, queued: Queued) -> None:
        """A broker that refuses a task (unreachable, out of memory) holds up that batch only:
        it is offered again on the next tick while its lease is kept."""
        try:
            self._app.send_task(
                SEND_BATCH,
                args=[queued.channel.name, batch],
                kwargs={"probe": True} if queued.probe else None,
                queue=queued.channel.queue,
                argsrepr=f"({queued.channel.name!r}, <{queued.size} jobs>)",
            )
        except Exception as error:
            log.warning("batch %s not accepted by the broker, offered again: %s", batch, error)
        else:
            queued.on_broker = True
            queued.maybe_lost = False

    def _queue_full(self, channel: Channel) -> bool:
        unsent = sum(1 for q in self._queued.values() if q.channel == channel and not q.on_broker)
        waiting = int(self._redis.llen(self._keys.celery + channel.queue)) + unsent
        return waiting >= self._settings.max_queued_batches

    # -- recovery ----------------------------------------------------------------------------

    def _reclaim(self, now: float) -> None:
        """Take over the entries of every holder whose lease is gone, as fast as batches of
        them can be cut; forget holders that hold nothing."""
        if not self._settled(now):
            return
        for buffer in self._buffers.values():
            name = buffer.channel.name
            for dead in self._ownership.dead_holders(name, exclude=self.reader):
                while len(buffer.entries) < 2 * buffer.size:
                    taken = self._ownership.reclaim(name, dead, self.reader, RECLAIM_COUNT)
                    if not taken:
                        break
                    log.warning(
                        "took over %d %s entries of %s (lease lapsed)", len(taken), name, dead
                    )
                    overdue = now - buffer.linger_s
                    buffer.entries += [(entry_id, overdue) for entry_id in taken]
                    if len(taken) < RECLAIM_COUNT:
                        break

    def _settled(self, now: float) -> bool:
        """After Redis restarted, or this batcher was cut off from it, every lease may have
        lapsed while its holder lives: holders get two leases' time to renew (`renew.lua`
        sets their leases again) before their entries count as abandoned."""
        grace_s = 2 * self._ownership.leases.longest_ms / 1000
        if self._connected_since is None or now - self._connected_since < grace_s:
            return False
        uptime: Any = self._redis.info("server")["uptime_in_seconds"]
        return int(uptime) >= grace_s

    def _create_group(self, stream: str) -> None:
        try:
            self._redis.xgroup_create(stream, CONSUMER_GROUP, id="0", mkstream=True)
        except redis.ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise

    # -- shutdown ----------------------------------------------------------------------------

    def _drain(self, deadline: float) -> None:
        res = Resources.current()
        for batch, queued in list(self._queued.items()):
            if not queued.on_broker and time.monotonic() < deadline:
                self._send_here(res, queued.channel, batch)
        for buffer in self._buffers.values():
            while buffer.entries and time.monotonic() < deadline:
                self._ownership.renew({self.reader: Lease("reader", self._lease_ms)})
                batch = new_batch_id()
                entry_ids = buffer.take()
                if self._ownership.hand_over(buffer.channel.name, self.reader, batch, entry_ids):
                    self._send_here(res, buffer.channel, batch)
            if buffer.entries:
                log.warning(
                    "grace period over: %d %s entries left to another worker",
                    len(buffer.entries),
                    buffer.channel.name,
                )
        self._ownership.end(self.reader)

    def _send_here(self, res: Resources, channel: Channel, batch: str) -> None:
        try:
            process_batch(res, channel.name, batch)
        except Exception:
            log.exception("draining a %s batch failed; another worker takes it over", channel.name)


def _unparsed(response: Any, **options: Any) -> Any:
    return response


def _stream_gone(error: redis.ResponseError) -> bool:
    """XREADGROUP's NOGROUP, XINFO's "no such key": a job stream or its group is missing."""
    text = str(error)
    return text.startswith("NOGROUP") or "no such key" in text.lower()


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
        self.batcher = Batcher(worker.app, get_settings(), channels, worker.hostname)
        self.batcher.start()

    def stop(self, worker: Any) -> None:
        if self.batcher is not None:
            self.batcher.stop()
            self.batcher = None


class BrokerReconnectStep(bootsteps.StartStopStep):
    """A consumer step: started again each time the node's broker connection is made again,
    which it passes on to the node's batcher."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self._connected_before = False

    def start(self, parent: Any) -> None:
        if self._connected_before:
            for step in parent.controller.steps:
                if isinstance(step, BatcherStep) and step.batcher is not None:
                    log.warning("broker connection made again: queued batches offered again")
                    step.batcher.broker_reconnected()
        self._connected_before = True
