"""`revicom-dispatch check` names each broken setting, and exits non-zero when jobs would not
be sent. Misconfigured Redis servers are started for the test, never the shared one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx

from devenv.processes import free_port, receiver_process
from devenv.redis_server import RedisServer
from tasks.keys import Keys
from tasks.producer import Producer
from tests.conftest import SANDBOX_TOKEN
from tests.contract_cases import BASE

SCRIPT = Path(sys.executable).with_name("revicom-dispatch")


def check(
    redis_url: str, prefix: str, api_url: str, **settings: str
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("REVICOM_API_TOKEN", "CALLBACK_URL")}
    env = {
        **base,
        "REDIS_URL": redis_url,
        "DISPATCH_KEY_PREFIX": prefix,
        "REVICOM_API_URL": api_url,  # never the real API from a test
        "REVICOM_API_TOKEN": SANDBOX_TOKEN,
        "COLUMNS": "200",
        **settings,
    }
    env = {name: value for name, value in env.items() if value}  # "": unset
    return subprocess.run(
        [str(SCRIPT), "check"], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def line(done: subprocess.CompletedProcess[str], name: str) -> str:
    """The finding about `name` (its level first)."""
    return next(text for text in done.stdout.splitlines() if f" {name}:" in text)


def receiver_env(redis_url: str, **settings: str) -> dict[str, str]:
    return {**os.environ, "REDIS_URL": redis_url, **settings}


def test_a_healthy_deployment_passes(sandbox: httpx.Client, sandbox_url: str) -> None:
    aof = {"appendonly": "yes", "appendfsync": "always", "maxmemory-policy": "noeviction"}
    with (
        RedisServer(aof) as server,
        receiver_process({**os.environ, "REDIS_URL": server.url}) as rx,
    ):
        callback = rx.url.replace("http://", "http://user:pass-word@") + "/callbacks"
        done = check(server.url, "healthy", sandbox_url, CALLBACK_URL=callback)
    assert done.returncode == 0, done.stdout
    assert "error" not in done.stdout
    assert "a crash loses nothing acknowledged" in done.stdout
    assert "API circuit: closed" in done.stdout
    assert line(done, "API key").startswith("ok")
    assert "accepted; balance RUB 1000000.00" in line(done, "API key")
    assert line(done, "receiver").startswith("ok")
    assert f"{rx.url}/callbacks takes callbacks" in line(done, "receiver")
    assert "pass-word" not in done.stdout
    assert SANDBOX_TOKEN not in done.stdout


def test_a_wrong_token_a_closed_receiver_and_eviction_are_each_named(
    sandbox: httpx.Client, sandbox_url: str
) -> None:
    with RedisServer({"maxmemory-policy": "allkeys-lru"}) as server:
        done = check(
            server.url,
            "misconfigured",
            sandbox_url,
            REVICOM_API_TOKEN="wrong-secret-token",
            CALLBACK_URL=f"http://user:pass-word@127.0.0.1:{free_port()}/callbacks",
        )
    assert done.returncode == 1
    assert line(done, "API").startswith("ok")  # reachable: only the key is wrong
    key = line(done, "API key")
    assert key.startswith("error")
    assert "the API does not know the key (401 4012)" in key
    assert "set REVICOM_API_TOKEN" in key
    receiver = line(done, "receiver")
    assert receiver.startswith("error")
    assert "unreachable: ConnectError" in receiver
    assert "revicom-dispatch callbacks" in receiver
    assert line(done, "maxmemory-policy").startswith("error")
    assert "wrong-secret-token" not in done.stdout
    assert "pass-word" not in done.stdout


def test_no_token_and_a_receiver_refusing_the_checker(
    sandbox: httpx.Client, sandbox_url: str, redis_url: str
) -> None:
    refusing = receiver_env(redis_url, CALLBACK_ALLOW_FROM="10.9.8.7/32")
    with RedisServer() as server, receiver_process(refusing) as rx:
        done = check(
            server.url,
            "refusing",
            sandbox_url,
            REVICOM_API_TOKEN="",
            CALLBACK_URL=f"{rx.url}/callbacks",
        )
    assert done.returncode == 1
    assert line(done, "API key").startswith("error")
    assert "REVICOM_API_TOKEN is not set" in line(done, "API key")
    receiver = line(done, "receiver")
    assert receiver.startswith("warning")
    assert "refused this host (403, CALLBACK_ALLOW_FROM)" in receiver


def test_a_balance_below_min_balance_is_a_warning(sandbox: httpx.Client, sandbox_url: str) -> None:
    sandbox.put("/_sandbox/balance", json={"RUB": 12.5}).raise_for_status()
    aof = {"appendonly": "yes", "appendfsync": "always", "maxmemory-policy": "noeviction"}
    with RedisServer(aof) as server:
        done = check(server.url, "low", sandbox_url, MIN_BALANCE="100")
    assert done.returncode == 0, done.stdout
    key = line(done, "API key")
    assert key.startswith("warning")
    assert "balance RUB 12.50, below MIN_BALANCE 100: bulk channels pause" in key


def test_each_broken_setting_is_named() -> None:
    with RedisServer({"maxmemory-policy": "allkeys-lru"}) as server, server.client() as client:
        client.hset(
            Keys("broken").circuit,
            mapping={"state": "open", "until": 0, "reason": "POST answered 401 4012 bad key"},
        )
        client.xadd("broken:jobs:VIBER", {"job": "{}"})
        Producer(client, Keys("broken"), durability=None).enqueue(BASE["SMS"])
        done = check(server.url, "broken", "http://127.0.0.1:1", REVICOM_API_TOKEN="t")
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
    assert line("API key").startswith("warning")  # not checked: the API does not answer


def test_an_unreachable_redis_is_an_error(sandbox_url: str) -> None:
    done = check("redis://127.0.0.1:1/0", "x", sandbox_url)
    assert done.returncode == 1
    assert "Redis: unreachable" in done.stdout
