"""`check`: what an operator runs on a new deployment, one finding per line with its fix.

An `error` means jobs will not be sent (or not safely), or their callbacks cannot arrive: the
command then exits non-zero. Secrets (the API token, CALLBACK_URL's credentials) are used,
never shown.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import httpx
import redis

from config import Settings
from ops import account
from ops.status import snapshot
from tasks.keys import Keys

Level = Literal["ok", "warning", "error"]

#: Oldest Redis the workers run on (XAUTOCLAIM, XPENDING IDLE); WAITAOF needs 7.2.
MIN_REDIS = (6, 2)
DURABLE_REDIS = (7, 2)

#: What a crash of the Redis server loses, per persistence setting (the README's table).
LOSES = {
    "none": "a restart loses every job, outcome and ledger entry",
    "rdb": "a crash loses everything since the last RDB snapshot",
    "no": "a crash loses what the OS had not yet written (appendfsync no: up to ~30 s)",
    "everysec": "a crash loses up to the last second of writes (appendfsync everysec)",
    "always": "a crash loses nothing acknowledged (appendfsync always)",
}


#: What the receiver's answer to an empty callback says: level, detail, fix.
RECEIVER_ANSWERS: dict[int, tuple[Level, str, str]] = {
    200: ("ok", "takes callbacks", ""),
    401: (
        "error",
        "refused CALLBACK_URL's credentials ({}): it would refuse every callback",
        "the user:password in CALLBACK_URL must be CALLBACK_USERNAME:CALLBACK_PASSWORD",
    ),
    403: (
        "warning",
        "refused this host ({}, CALLBACK_ALLOW_FROM): expected when only the vendor's "
        "address is allowed",
        "make sure CALLBACK_ALLOW_FROM takes 185.203.96.7",
    ),
    503: ("warning", "answered {}: it cannot reach its Redis", "check the receiver's REDIS_URL"),
}
NOT_A_RECEIVER: tuple[Level, str, str] = (
    "error",
    "answered HTTP {}: not a receiver's callbacks path",
    "CALLBACK_URL must be the receiver's public URL ending in /callbacks",
)


@dataclass(frozen=True)
class Finding:
    level: Level
    what: str
    detail: str
    fix: str = ""


def run(client: redis.Redis, keys: Keys, settings: Settings) -> list[Finding]:
    api = [*_api(settings), _receiver(settings)]
    try:
        client.ping()
    except redis.RedisError as error:
        return [Finding("error", "Redis", f"unreachable: {error}", "check REDIS_URL"), *api]
    return [*_redis(client, settings), *_streams(client, keys, settings), *api]


def failed(findings: list[Finding]) -> bool:
    return any(f.level == "error" for f in findings)


def _redis(client: redis.Redis, settings: Settings) -> Iterator[Finding]:
    info: Any = client.info("server")
    version = str(info.get("redis_version", "0"))
    numbers = tuple(int(part) for part in version.split(".")[:2] if part.isdigit())
    if numbers < MIN_REDIS:
        yield Finding("error", "Redis version", f"{version} < 6.2", "upgrade Redis to 6.2+")
    else:
        yield Finding("ok", "Redis version", version)
    if settings.durable_enqueue != "none" and numbers < DURABLE_REDIS:
        yield Finding(
            "error",
            "DURABLE_ENQUEUE",
            f"{settings.durable_enqueue} needs WAITAOF (Redis >= 7.2); this one is {version}",
            "upgrade Redis, or set DURABLE_ENQUEUE=none",
        )
    try:
        config: Any = client.config_get("maxmemory-policy")
        policy = str(config.get("maxmemory-policy", "?"))
    except redis.ResponseError:
        policy = "?"
    if policy == "noeviction":
        yield Finding("ok", "maxmemory-policy", policy)
    elif policy == "?":
        yield Finding(
            "warning",
            "maxmemory-policy",
            "cannot be read (CONFIG is disabled)",
            "make sure it is noeviction",
        )
    else:
        yield Finding(
            "error",
            "maxmemory-policy",
            f"{policy}: an evicted stream entry is a lost job, an evicted ledger key a second send",
            "CONFIG SET maxmemory-policy noeviction (and in redis.conf)",
        )
    yield _persistence(client, settings)


def _persistence(client: redis.Redis, settings: Settings) -> Finding:
    info: Any = client.info("persistence")
    if int(info.get("aof_enabled", 0)):
        try:
            config: Any = client.config_get("appendfsync")
            fsync = str(config.get("appendfsync", "everysec"))
        except redis.ResponseError:
            fsync = "everysec"
        lost = LOSES.get(fsync, LOSES["everysec"])
        if fsync == "everysec" and settings.durable_enqueue in ("local", "both"):
            return Finding("ok", "persistence", f"AOF; {lost}; enqueue waits for the fsync")
        level: Level = "ok" if fsync == "always" else "warning"
        fix = "" if fsync == "always" else "DURABLE_ENQUEUE=local (Redis >= 7.2) protects jobs"
        return Finding(level, "persistence", f"AOF; {lost}", fix)
    try:
        config = client.config_get("save")
        snapshots = bool(str(config.get("save", "")).strip())
    except redis.ResponseError:
        snapshots = True  # cannot tell: assume the common default
    lost = LOSES["rdb"] if snapshots else LOSES["none"]
    return Finding("warning", "persistence", lost, "turn on AOF (appendonly yes)")


def _streams(client: redis.Redis, keys: Keys, settings: Settings) -> Iterator[Finding]:
    state = snapshot(client, keys, settings)
    if state.circuit.open:
        yield Finding(
            "error",
            "API circuit",
            f"OPEN for {state.circuit.open_for_s} s: {state.circuit.reason}; no pod sends",
            "fix REVICOM_API_TOKEN (401/403) or wait for the API; a probe resumes sending",
        )
    else:
        yield Finding("ok", "API circuit", "closed")
    for channel in state.channels:
        waiting = channel.length
        if waiting and channel.consumers == 0:
            yield Finding(
                "warning",
                f"stream {channel.channel}",
                f"{waiting} jobs wait and no worker has read this stream",
                f"start a worker for the {channel.queue} queue",
            )
    for stray in state.stray:
        yield Finding(
            "warning",
            stray.stream,
            f"{stray.length} entries that no worker reads: they get no outcome",
            "move them to a channel's stream (jobs:SMS, jobs:FLASHCALL, ...)",
        )
    balance = state.balance
    if balance.bulk_paused:
        yield Finding(
            "warning",
            "balance guard",
            f"bulk channels paused: {balance.reason}; their jobs wait, codes go on",
            "top up the account (bulk resumes by itself), or lower MIN_BALANCE",
        )
    elif settings.min_balance is not None and balance.stale:
        yield Finding(
            "warning",
            "balance guard",
            "no fresh balance in Redis: the guard does not apply"
            + (f" (last refresh: {balance.error})" if balance.error else ""),
            "run a worker (it refreshes the balance every BALANCE_REFRESH_S)",
        )
    yield Finding(
        "ok",
        "results",
        f"{state.results} outcomes ({state.results_bytes // 1024} KiB), "
        f"{state.dead} dead letters ({state.dead_bytes // 1024} KiB)",
    )


def _api(settings: Settings) -> Iterator[Finding]:
    """The API answers its ping, and takes the key (the balance takes any valid key)."""
    url = settings.revicom_api_url.rstrip("/") + account.PING_ENDPOINT
    reply = account.ping(settings)
    if reply.status is None:
        yield Finding("error", "API", f"{url}: {reply.problem}", "check REVICOM_API_URL")
    elif reply.status != 200:
        yield Finding("error", "API", f"{url} answered {reply.status}", "check REVICOM_API_URL")
    else:
        yield Finding("ok", "API", f"{url} answers")
    if reply.status != 200 and settings.revicom_api_token is not None:
        yield Finding("warning", "API key", "not checked: the API does not answer")
        return
    amounts, problem, fix = account.balance(settings)
    if amounts is None:
        yield Finding("error", "API key", problem, fix)
        return
    shown = ", ".join(f"{c} {a:.2f}" for c, a in sorted(amounts.items()))
    low = settings.min_balance is not None and any(
        a < settings.min_balance for a in amounts.values()
    )
    if low:
        yield Finding(
            "warning",
            "API key",
            f"accepted; balance {shown}, below MIN_BALANCE {settings.min_balance}: bulk "
            "channels pause",
            "top up the account",
        )
    else:
        yield Finding("ok", "API key", f"accepted; balance {shown}")


def _receiver(settings: Settings) -> Finding:
    """POST an empty array to CALLBACK_URL, as the API posts its callbacks: the receiver
    checks where it comes from and its credentials, and records nothing."""
    if settings.callback_url is None:
        return Finding(
            "ok", "receiver", "CALLBACK_URL not set: statuses are looked up (STATUS_POLL_AFTER_S)"
        )
    url = httpx.URL(settings.callback_url.get_secret_value())
    auth = (url.username, url.password) if url.username or url.password else None
    shown = f"{url.scheme}://{url.netloc.decode().rpartition('@')[2]}{url.path}"
    fix = "start the receiver (revicom-dispatch callbacks), or fix CALLBACK_URL"
    try:
        response = httpx.post(
            url.copy_with(username=None, password=None),
            content=b"[]",
            headers={"Content-Type": "application/json"},
            auth=auth,
            timeout=settings.connect_timeout_s,
        )
    except httpx.HTTPError as error:
        return Finding("error", "receiver", f"{shown} unreachable: {type(error).__name__}", fix)
    level, detail, fix = RECEIVER_ANSWERS.get(response.status_code, NOT_A_RECEIVER)
    return Finding(level, "receiver", f"{shown} {detail.format(response.status_code)}", fix)
