"""`revicom-dispatch balance`, run as the installed console script against the sandbox."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import httpx
import redis

from tasks.balance_state import write_balance
from tasks.keys import Keys
from tests.conftest import SANDBOX_TOKEN

SCRIPT = Path(sys.executable).with_name("revicom-dispatch")
WRONG = "wrong-but-secret-token"


def run(*args: str, command: str = "balance", **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k != "REVICOM_API_TOKEN"}
    return subprocess.run(
        [str(SCRIPT), command, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**base, "COLUMNS": "200", **env},
        check=False,
    )


def test_the_balance_is_printed(sandbox: httpx.Client, sandbox_url: str) -> None:
    sandbox.put("/_sandbox/balance", json={"USD": 1200, "RUB": 12.5}).raise_for_status()
    done = run(REVICOM_API_URL=sandbox_url, REVICOM_API_TOKEN=SANDBOX_TOKEN)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["RUB 12.50", "USD 1200.00"]
    scripted = run("--json", REVICOM_API_URL=sandbox_url, REVICOM_API_TOKEN=SANDBOX_TOKEN)
    assert scripted.returncode == 0
    assert json.loads(scripted.stdout) == {"USD": 1200.0, "RUB": 12.5}


def test_a_refused_key_is_one_line_with_its_fix(sandbox: httpx.Client, sandbox_url: str) -> None:
    done = run(REVICOM_API_URL=sandbox_url, REVICOM_API_TOKEN=WRONG)
    assert done.returncode == 1
    assert done.stdout == ""
    [line] = done.stderr.splitlines()
    assert "the API does not know the key (401 4012)" in line
    assert "REVICOM_API_TOKEN" in line
    assert WRONG not in done.stderr
    scripted = run("--json", REVICOM_API_URL=sandbox_url, REVICOM_API_TOKEN=WRONG)
    assert scripted.returncode == 1
    assert "401 4012" in json.loads(scripted.stdout)["error"]
    assert WRONG not in scripted.stdout


def test_no_key_and_an_unreachable_api_are_one_line_each() -> None:
    unset = run(REVICOM_API_URL="http://127.0.0.1:1")
    assert unset.returncode == 1
    assert unset.stderr.splitlines() == [
        "balance: REVICOM_API_TOKEN is not set — set it to the account's TOKEN_1 key"
    ]
    down = run(REVICOM_API_URL="http://127.0.0.1:1", REVICOM_API_TOKEN=WRONG)
    assert down.returncode == 1
    [line] = down.stderr.splitlines()
    assert "the API is unreachable at http://127.0.0.1:1 (ConnectError)" in line
    assert "Traceback" not in down.stderr
    assert WRONG not in down.stderr


def test_status_says_the_bulk_channels_are_paused(
    redis_url: str, redis_client: redis.Redis, keys: Keys
) -> None:
    write_balance(redis_client, keys.balance, {"RUB": Decimal("12.5")})
    env = {"REDIS_URL": redis_url, "DISPATCH_KEY_PREFIX": keys.prefix, "MIN_BALANCE": "100"}
    data = json.loads(run("--json", command="status", **env).stdout)["balance"]
    assert data["amounts"] == {"RUB": 12.5}
    assert (data["bulk_paused"], data["stale"], data["min_balance"]) == (True, False, 100.0)
    assert data["reason"] == "balance RUB 12.5 below MIN_BALANCE 100"
    shown = run(command="status", **env).stdout
    assert "balance: RUB 12.50" in shown
    assert "bulk channels PAUSED: balance RUB 12.5 below MIN_BALANCE 100" in shown
    unguarded = run(command="status", REDIS_URL=redis_url, DISPATCH_KEY_PREFIX=keys.prefix)
    assert "balance guard: off (MIN_BALANCE unset)" in unguarded.stdout
