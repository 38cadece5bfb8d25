"""The benchmarks' worker pods, and CPU time as they read it: a process's or a process group's
from /proc, Redis's from INFO cpu; and their keys deleted afterwards."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import redis

SCRIPT = str(Path(sys.executable).with_name("revicom-dispatch"))


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process `pid`, all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def group_cpu_seconds(pgid: int) -> float:
    """User + system CPU seconds of every live process of process group `pgid` (a process
    started in its own session and its children: a pod, a Celery node and its pool)."""
    total = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == pgid:
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def redis_cpu_seconds(client: redis.Redis) -> float:
    """Redis's own CPU seconds so far (all its clients', not only the benchmark's)."""
    info: dict[str, Any] = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


class Pod:
    """`revicom-dispatch worker` in its own session; its CPU is read from /proc."""

    def __init__(
        self,
        env: dict[str, str],
        log: Path,
        celery_args: tuple[str, ...] = (),
        loglevel: str = "WARNING",
    ) -> None:
        self._log = log
        self._sink = log.open("ab")
        self._log_start = self._sink.tell()  # the log is appended to: this run's lines follow
        self.process = subprocess.Popen(
            [SCRIPT, "worker", "--loglevel", loglevel, *celery_args],
            env=env,
            stdout=self._sink,
            stderr=self._sink,
            start_new_session=True,
        )

    def ready(self) -> bool:
        """Both nodes logged ` ready.` (Celery logs it at INFO: start the pod with that level);
        raises if the pod exited."""
        if self.process.poll() is not None:
            raise RuntimeError(f"a pod exited while starting: see {self._log}")
        with self._log.open("rb") as log:
            log.seek(self._log_start)
            return log.read().count(b" ready.") >= 2

    def cpu_seconds(self) -> float:
        return group_cpu_seconds(self.process.pid)  # the process group of the pod's session

    def cpu_by_process(self) -> dict[str, float]:
        """CPU seconds of the pod's parts: the pod itself, each node's main process (its
        batcher, its broker consumer) and each node's pool (the batch tasks)."""
        parts: dict[str, float] = {}
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                command = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if int(fields[3]) != self.process.pid:
                continue
            if int(pid) == self.process.pid:
                part = "pod"
            else:
                node = "otp" if b"otp@" in command else "bulk"
                part = f"{node} main" if int(fields[1]) == self.process.pid else f"{node} pool"
            ticks = int(fields[11]) + int(fields[12])
            parts[part] = parts.get(part, 0.0) + ticks / os.sysconf("SC_CLK_TCK")
        return parts

    def stop(self) -> None:
        os.killpg(self.process.pid, signal.SIGTERM)
        self.process.wait(timeout=60)
        self._sink.close()


def wait_ready(pods: list[Pod], timeout: float = 120.0) -> None:
    """Until every node of every pod is ready (the pods started at INFO)."""
    deadline = time.monotonic() + timeout
    while not all(pod.ready() for pod in pods):
        if time.monotonic() > deadline:
            raise RuntimeError(f"pods not ready after {timeout:g} s")
        time.sleep(0.1)


def machine_busy_seconds() -> float:
    """Busy CPU seconds of every core together since boot, from /proc/stat: what the machine
    spent, whoever spent it (iowait counts as idle, guest time is inside user)."""
    fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    busy = sum(fields[:8]) - fields[3] - fields[4]  # user ... steal, less idle and iowait
    return busy / os.sysconf("SC_CLK_TCK")


def delete_prefix(client: redis.Redis, prefix: str) -> None:
    """Drop every key a benchmark wrote under its own prefix (another run may be going)."""
    stale = list(client.scan_iter(match=f"{prefix}:*", count=1000))
    for i in range(0, len(stale), 1000):
        client.delete(*stale[i : i + 1000])
