"""CPU time as the benchmarks read it: a process's from /proc, Redis's from INFO cpu."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import redis


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process `pid`, all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def redis_cpu_seconds(client: redis.Redis) -> float:
    """Redis's own CPU seconds so far (all its clients', not only the benchmark's)."""
    info: dict[str, Any] = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
