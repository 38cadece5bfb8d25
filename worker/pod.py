"""A worker pod: one Celery node for the OTP queue and one for bulk, side by side.

Celery cannot reserve pool processes for one queue, so a pod that consumed both queues with
one pool could have every process busy with a campaign while a code waits. Two nodes, each
with its own pool and its own batcher, keep OTP capacity free. The pod forwards SIGTERM and
SIGINT to both and exits when both have.

A node that exits without being asked to is started again (after 1 s, doubling while it keeps
dying, at most 30 s), and the other node goes on working meanwhile: whatever killed it (a
broker error Celery could not recover from, the kernel's OOM killer) should not cost the
pod its other node's running batches. A node that dies more than `MAX_RESTARTS` times within
`RESTART_WINDOW_S` is crash-looping: then the pod stops the other one too and exits non-zero,
so the orchestrator restarts the pod whole and shows it.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import FrameType

from config import Settings
from tasks.channels import BULK_QUEUE, OTP_QUEUE

log = logging.getLogger(__name__)

#: Gossip and mingle are for nodes that talk to each other (elections, revoked-task sync);
#: these nodes share nothing but Redis. Both also restart with every broker reconnection,
#: mingle waiting a second for neighbours, and Gossip's restart after a lost connection is
#: where Celery's "'NoneType' object has no attribute ..." errors come from (celery/kombu#582).
NODE_FLAGS = ("--without-gossip", "--without-mingle")

#: A node dying more often than this within the window is crash-looping.
MAX_RESTARTS = 5
RESTART_WINDOW_S = 600.0
RESTART_DELAY_S = 1.0
RESTART_MAX_DELAY_S = 30.0
POLL_S = 0.2


def node_commands(settings: Settings, extra: Sequence[str]) -> list[list[str]]:
    celery = [sys.executable, "-m", "celery", "-A", "worker.app", "worker", *NODE_FLAGS]
    # Codes wait on the API, not on CPU: threads let many OTP requests overlap.
    otp = ["-Q", OTP_QUEUE, "-P", "threads", "-c", str(settings.otp_concurrency), "-n", "otp@%h"]
    return [
        [*celery, *otp, *extra],
        [*celery, "-Q", BULK_QUEUE, "-c", str(settings.bulk_concurrency), "-n", "bulk@%h", *extra],
    ]


@dataclass
class Node:
    """One Celery node of the pod, started again when it exits unasked."""

    name: str
    command: list[str]
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    deaths: list[float] = field(default_factory=list)
    restart_at: float | None = None  # when a dead node is due to start again

    def start(self) -> None:
        self.process = subprocess.Popen(self.command, env=self.env)
        self.restart_at = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def returncode(self) -> int:
        code = self.process.returncode if self.process is not None else None
        return 1 if code is None else code

    def signal(self, signum: int) -> None:
        if self.running and self.process is not None:
            self.process.send_signal(signum)

    def died(self, now: float) -> bool:
        """Note an unasked exit; False when the node is crash-looping."""
        self.deaths = [t for t in self.deaths if now - t < RESTART_WINDOW_S] + [now]
        if len(self.deaths) > MAX_RESTARTS:
            return False
        delay = min(RESTART_MAX_DELAY_S, RESTART_DELAY_S * 2 ** (len(self.deaths) - 1))
        self.restart_at = now + delay
        log.error(
            "pod: node %s exited with %s unasked; starting it again in %.0f s",
            self.name,
            self.returncode,
            delay,
        )
        return True


def run_pod(settings: Settings, extra: Sequence[str] = ()) -> int:
    nodes: list[Node] = []
    asked_to_stop = False

    def forward(signum: int, frame: FrameType | None) -> None:
        nonlocal asked_to_stop
        asked_to_stop = True
        for node in nodes:
            node.signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    with tempfile.TemporaryDirectory(prefix="revicom-metrics-") as metrics_dir:
        # One exporter, here, for both nodes and all their processes.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        env = {**os.environ, "METRICS_PORT": "0"}
        for name, command in zip(("otp", "bulk"), node_commands(settings, extra), strict=True):
            nodes.append(Node(name, command, env))
            nodes[-1].start()
        _serve_metrics(settings)
        crash_loop = _supervise(nodes, lambda: asked_to_stop)
    codes = [node.returncode for node in nodes]
    if asked_to_stop and not crash_loop and all(c == 0 for c in codes):
        return 0
    return max(abs(c) for c in codes) or 1


def _supervise(nodes: list[Node], stop_requested: Callable[[], bool]) -> bool:
    """Run until every node has exited for good; True if one was crash-looping."""
    crash_loop = False
    while True:
        stopping = stop_requested() or crash_loop
        if stopping and not any(node.running for node in nodes):
            return crash_loop
        now = time.monotonic()
        for node in nodes:
            if stopping or node.running:
                continue
            if node.restart_at is None:
                if not node.died(now):
                    log.error(
                        "pod: node %s died %d times within %.0f s; stopping the pod",
                        node.name,
                        len(node.deaths),
                        RESTART_WINDOW_S,
                    )
                    crash_loop = True
                    for other in nodes:
                        other.signal(signal.SIGTERM)
                    break
            elif now >= node.restart_at:
                node.start()
                if stop_requested():  # the signal came between the check and the start
                    node.signal(signal.SIGTERM)
        time.sleep(POLL_S)


def _serve_metrics(settings: Settings) -> None:
    if not settings.metrics_port:
        return
    from worker import metrics  # noqa: PLC0415 - after the multiprocess directory is set

    try:
        metrics.serve(settings)
    except OSError as error:
        logging.getLogger(__name__).error(
            "metrics: cannot listen on port %d: %s", settings.metrics_port, error
        )
