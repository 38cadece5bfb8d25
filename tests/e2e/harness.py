"""Real worker processes for end-to-end tests, and waiting for what they publish."""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import redis

from tasks.jobs import Outcome
from tasks.keys import CONSUMER_GROUP, OUTCOME_FIELD, Keys

CELERY = str(Path(sys.executable).with_name("celery"))
SCRIPT = str(Path(sys.executable).with_name("revicom-dispatch"))

# Fast settings so failures and recoveries happen within seconds.
FAST = {
    "LEASE_MS": "1500",
    "OTP_LEASE_MS": "1500",
    "RETRY_BACKOFF_MS": "50",
    "RETRY_BACKOFF_MAX_MS": "200",
    "RETRY_MAX_ATTEMPTS": "3",
    "CIRCUIT_FAILURES": "3",
    "CIRCUIT_COOLDOWN_S": "0.5",
    "CIRCUIT_COOLDOWN_MAX_S": "2",
    "RETRY_MAX_SECONDS": "20",
    "SEND_TIMEOUT_S": "10",
    "SMS_LINGER_MS": "300",
    "WHATSAPP_LINGER_MS": "300",
    "VK_LINGER_MS": "300",
    "SHUTDOWN_GRACE_S": "10",
    "METRICS_PORT": "0",  # several workers run at once; the metrics test picks a port
    # No balance refresher: its GET would take the faults a test sets for the next sends
    # (they apply to every API request); the balance guard's test turns it on.
    "BALANCE_REFRESH_S": "0",
}


class WorkerProcess:
    """A worker in its own session (so a kill takes its pool too): `celery -A worker.app
    worker`, or with `pod` the `revicom-dispatch worker` pod of two nodes."""

    def __init__(
        self,
        env: dict[str, str],
        log: Path,
        name: str,
        *,
        concurrency: int = 2,
        queues: str | None = None,
        pod: bool = False,
    ) -> None:
        quiet = ["--loglevel", "INFO", "--without-mingle", "--without-gossip"]
        if pod:
            args = [SCRIPT, "worker", *quiet]
        else:
            args = [CELERY, "-A", "worker.app", "worker", *quiet, "-n", f"{name}@%h"]
            args += ["-c", str(concurrency), *(["-Q", queues] if queues else [])]
        self.log = log
        self._sink = log.open("ab")
        self.process = subprocess.Popen(
            args, env=env, stdout=self._sink, stderr=self._sink, start_new_session=True
        )
        nodes = 2 if pod else 1
        wait_until(
            lambda: log.read_bytes().count(b" ready.") >= nodes,
            30,
            f"worker {name} did not start",
            abort=lambda: self.process.poll() is not None,
        )

    def kill(self) -> None:
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)
        self._sink.close()

    def terminate(self, timeout: float = 60) -> int:
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=timeout)
        self._sink.close()
        return code

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        self._sink.close()


def wait_until(
    check: Callable[[], bool], timeout: float, what: str, abort: Callable[[], bool] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if abort is not None and abort():
            raise AssertionError(f"{what} (the process exited)")
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout} s")
        time.sleep(0.05)


class Lines:
    """The lines a process prints, each waited for until a deadline instead of a read that
    blocks for as long as the process stays silent. A thread reads the pipe: `select` on
    it would miss lines already in the text stream's buffer."""

    def __init__(self, stream: IO[str]) -> None:
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self._lines.put(line)
        self._lines.put("")  # the end of its output

    def next(self, deadline: float, what: str) -> str:
        """The next line; "" once the process closed its output."""
        try:
            return self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise AssertionError(f"{what}: nothing printed in time") from None


def outcomes(client: redis.Redis, keys: Keys) -> list[Outcome]:
    entries: Any = client.xrange(keys.results)
    return [Outcome.model_validate_json(f[OUTCOME_FIELD.encode()]) for _, f in entries]


def wait_for_outcomes(
    client: redis.Redis, keys: Keys, count: int, timeout: float = 60
) -> dict[str, Outcome]:
    """Wait for `count` outcomes and for every job stream to be fully acknowledged; then
    check that each jobId has exactly one outcome."""
    wait_until(
        lambda: client.xlen(keys.results) >= count,
        timeout,
        f"{count} outcomes (have {client.xlen(keys.results)})",
    )
    wait_until(lambda: settled(client, keys), timeout, "all job entries acknowledged")
    found = outcomes(client, keys)
    by_job: dict[str, Outcome] = {}
    for outcome in found:
        assert outcome.jobId not in by_job, f"two outcomes for {outcome.jobId}"
        by_job[outcome.jobId] = outcome
    assert len(found) == count, f"{len(found)} outcomes, expected {count}"
    return by_job


def settled(client: redis.Redis, keys: Keys) -> bool:
    """No job stream has entries left (they are deleted once acknowledged)."""
    streams = list(client.scan_iter(match=f"{keys.prefix}:jobs:*", count=1000))
    return all(client.xlen(s) == 0 for s in streams)


def pending(client: redis.Redis, keys: Keys, channel: str) -> int:
    info: Any = client.xpending(keys.jobs(channel), CONSUMER_GROUP)
    return int(info["pending"])
