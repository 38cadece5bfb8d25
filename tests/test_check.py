"""`revicom-dispatch check` names each broken setting, and exits non-zero when jobs would not
be sent. Misconfigured Redis servers are started for the test, never the shared one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from devenv.redis_server import RedisServer
from tasks.keys import Keys
from tasks.producer import Producer
from tests.contract_cases import BASE

SCRIPT = Path(sys.executable).with_name("revicom-dispatch")


def check(redis_url: str, prefix: str, api_url: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "DISPATCH_KEY_PREFIX": prefix,
        "REVICOM_API_URL": api_url,  # never the real API from a test
        "COLUMNS": "200",
    }
    return subprocess.run(
        [str(SCRIPT), "check"], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_a_healthy_deployment_passes(sandbox_url: str) -> None:
    aof = {"appendonly": "yes", "appendfsync": "always", "maxmemory-policy": "noeviction"}
    with RedisServer(aof) as server:
        done = check(server.url, "healthy", sandbox_url)
    assert done.returncode == 0, done.stdout
    assert "error" not in done.stdout
    assert "a crash loses nothing acknowledged" in done.stdout
    assert "API circuit: closed" in done.stdout


def test_each_broken_setting_is_named() -> None:
    with RedisServer({"maxmemory-policy": "allkeys-lru"}) as server, server.client() as client:
        client.hset(
            Keys("broken").circuit,
            mapping={"state": "open", "until": 0, "reason": "POST answered 401 4012 bad key"},
        )
        client.xadd("broken:jobs:VIBER", {"job": "{}"})
        Producer(client, Keys("broken"), durability=None).enqueue(BASE["SMS"])
        done = check(server.url, "broken", "http://127.0.0.1:1")
    assert done.returncode == 1
    lines = done.stdout.splitlines()

    def line(name: str) -> str:
        return next(text for text in lines if name in text)

    assert line("maxmemory-policy").startswith("error")
    assert "CONFIG SET maxmemory-policy noeviction" in line("maxmemory-policy")
    assert line("persistence").startswith("warning")
    assert "a restart loses every job" in line("persistence")
    assert line("API circuit").startswith("error")
    assert "401 4012" in line("API circuit")
    assert line("broken:jobs:VIBER").startswith("warning")
    assert line("stream SMS").startswith("warning")
    assert line("API:").startswith("error")


def test_an_unreachable_redis_is_an_error(sandbox_url: str) -> None:
    done = check("redis://127.0.0.1:1/0", "x", sandbox_url)
    assert done.returncode == 1
    assert "Redis: unreachable" in done.stdout
