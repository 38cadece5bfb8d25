"""Start a real server process for a local run or a test, and wait until it answers."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

SCRIPT = str(Path(sys.executable).with_name("revicom-dispatch"))


@dataclass(frozen=True)
class RunningServer:
    url: str
    pid: int


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def stop(process: subprocess.Popen[bytes], grace_s: float = 5.0) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def sandbox_process(
    args: Sequence[str] = (),
    port: int | None = None,
    log: Path | None = None,
    timeout_s: float = 20.0,
    cpus: set[int] | None = None,
) -> Iterator[RunningServer]:
    """Run `revicom-dispatch sandbox` on 127.0.0.1, pinned to `cpus` if given."""
    port = port or free_port()
    sink = log.open("ab") if log else subprocess.DEVNULL
    process = subprocess.Popen(
        [SCRIPT, "sandbox", "--host", "127.0.0.1", "--port", str(port), *args],
        stdout=sink,
        stderr=sink,
        preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None,  # noqa: PLW1509
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the sandbox exited with {process.returncode}")
            try:
                if httpx.get(f"{url}/api/v1/ping", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the sandbox did not answer on {url}")
            time.sleep(0.05)
        yield RunningServer(url, process.pid)
    finally:
        stop(process)
        if log:
            sink.close()  # type: ignore[union-attr]
