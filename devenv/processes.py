"""Start a real server process for a local run or a test, and wait until it answers."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
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
def service(
    args: Sequence[str],
    ready: Callable[[], bool],
    *,
    env: dict[str, str] | None = None,
    log: Path | None = None,
    timeout_s: float = 30.0,
    grace_s: float = 5.0,
    cpus: set[int] | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run `args` in its own session until the block ends; wait until `ready()` first."""
    sink = log.open("ab") if log else subprocess.DEVNULL
    process = subprocess.Popen(
        list(args),
        env=env,
        stdout=sink,
        stderr=sink,
        start_new_session=True,
        preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None,  # noqa: PLW1509
    )
    try:
        deadline = time.monotonic() + timeout_s
        while not ready():
            where = f"; see {log}" if log else ""
            if process.poll() is not None:
                raise RuntimeError(f"{Path(args[0]).name} exited with {process.returncode}{where}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{Path(args[0]).name} did not start in {timeout_s} s{where}")
            time.sleep(0.05)
        yield process
    finally:
        stop(process, grace_s)
        if log:
            sink.close()  # type: ignore[union-attr]


def answers_http(url: str) -> Callable[[], bool]:
    def check() -> bool:
        try:
            return httpx.get(url, timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    return check


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
    url = f"http://127.0.0.1:{port}"
    command = [SCRIPT, "sandbox", "--host", "127.0.0.1", "--port", str(port), *args]
    with service(
        command, answers_http(f"{url}/api/v1/ping"), log=log, timeout_s=timeout_s, cpus=cpus
    ) as process:
        yield RunningServer(url, process.pid)


@contextmanager
def receiver_process(
    env: dict[str, str], port: int | None = None, log: Path | None = None
) -> Iterator[RunningServer]:
    """Run `revicom-dispatch callbacks` on 127.0.0.1 with the settings in `env`."""
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    command = [SCRIPT, "callbacks", "--host", "127.0.0.1", "--port", str(port)]
    with service(command, answers_http(f"{url}/healthz"), env=env, log=log) as process:
        yield RunningServer(url, process.pid)
