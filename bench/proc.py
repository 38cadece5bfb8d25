"""CPU time as the benchmarks read it: a process's or a process group's from /proc, Redis's
from INFO cpu."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import redis


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
