"""A worker pod: one Celery node for the OTP queue and one for bulk, side by side.

Celery cannot reserve pool processes for one queue, so a pod that consumed both queues with
one pool could have every process busy with a campaign while a code waits. Two nodes, each
with its own pool and its own batcher, keep OTP capacity free. The pod forwards SIGTERM and
SIGINT to both and exits when both have; if one node dies the other is stopped too, so the
orchestrator restarts the pod whole.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import tempfile
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
    nodes: list[subprocess.Popen[bytes]] = []
    asked_to_stop = False

    def forward(signum: int, frame: FrameType | None) -> None:
        nonlocal asked_to_stop
        asked_to_stop = True
        _signal_all(nodes, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    with tempfile.TemporaryDirectory(prefix="revicom-metrics-") as metrics_dir:
        # One exporter, here, for both nodes and all their processes.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        env = {**os.environ, "METRICS_PORT": "0"}
        nodes += [subprocess.Popen(c, env=env) for c in node_commands(settings, extra)]
        _serve_metrics(settings)
        node_died = False
        while any(node.poll() is None for node in nodes):
            if not (asked_to_stop or node_died) and any(n.poll() is not None for n in nodes):
                node_died = True  # stop the other one too, and exit non-zero
                _signal_all(nodes, signal.SIGTERM)
            time.sleep(0.2)
    codes = [node.returncode for node in nodes]
    if asked_to_stop and not node_died and all(c == 0 for c in codes):
        return 0
    return max(abs(c) for c in codes) or 1


def _signal_all(nodes: list[subprocess.Popen[bytes]], signum: int) -> None:
    for node in nodes:
        if node.poll() is None:
            node.send_signal(signum)


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
