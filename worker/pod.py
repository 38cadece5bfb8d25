"""A worker pod: one Celery node for the OTP queue and one for bulk, side by side.

Celery cannot reserve pool processes for one queue, so a pod that consumed both queues with
one pool could have every process busy with a campaign while a code waits. Two nodes, each
with its own pool and its own batcher, keep OTP capacity free. The pod forwards SIGTERM and
SIGINT to both and exits when both have; if one node dies the other is stopped too, so the
orchestrator restarts the pod whole.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from types import FrameType

from config import Settings
from tasks.channels import BULK_QUEUE, OTP_QUEUE


def node_commands(settings: Settings, extra: Sequence[str]) -> list[list[str]]:
    celery = [sys.executable, "-m", "celery", "-A", "worker.app", "worker"]
    return [
        [*celery, "-Q", OTP_QUEUE, "-c", str(settings.otp_concurrency), "-n", "otp@%h", *extra],
        [*celery, "-Q", BULK_QUEUE, "-c", str(settings.bulk_concurrency), "-n", "bulk@%h", *extra],
    ]


def run_pod(settings: Settings, extra: Sequence[str] = ()) -> int:
    nodes = [subprocess.Popen(command) for command in node_commands(settings, extra)]
    stopping = False

    def forward(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for node in nodes:
            if node.poll() is None:
                node.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    while any(node.poll() is None for node in nodes):
        if not stopping and any(node.poll() is not None for node in nodes):
            forward(signal.SIGTERM, None)  # one node died: stop the other, exit non-zero
        time.sleep(0.2)
    codes = [node.returncode for node in nodes]
    return 0 if stopping and all(c == 0 for c in codes) else max(abs(c) for c in codes) or 1
