"""The account balance as stored in Redis, and the guard it drives, for whoever needs to look:
the refresher that writes it (worker/balance.py), the batchers and batches that obey the
guard, `status`, `check`, `balance` and the metrics exporter.

The hash `{prefix}:balance` holds `amounts` (JSON: currency → amount as a decimal string),
`at` (Redis time, ms, of the last successful refresh), `error` (why the last refresh failed,
removed by a success) and `paused` (the guard's last decision, so that its changes are logged
once across pods).

The guard: with MIN_BALANCE set, the bulk channels pause while **any** currency the API
reports is below it (an account has one currency in practice; with several, each must hold
the threshold, since nothing says which one a message is charged in). A balance older than
STALE_REFRESHES refreshes (plus one request's time) no longer pauses anything: the guard
keeps money for the codes, it must not become a second way for an outage of one endpoint to
stop every campaign, and the API itself refuses to send what the account cannot pay for.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import orjson
import redis

from tasks.keys import as_text

BALANCE_ENDPOINT = "/api/v1/balance"
#: A stored balance older than this many refresh periods is stale: the guard lifts.
STALE_REFRESHES = 3
#: The balance request's timeout (s), also the slack of the staleness limit.
BALANCE_TIMEOUT_S = 5.0
#: The answer's limits: ISO 4217 codes, a handful of them, amounts a real account can hold.
CURRENCY = re.compile(r"[A-Z]{3}")
MAX_CURRENCIES = 16
MAX_AMOUNT = Decimal(10) ** 12


def parse_balance(body: Any) -> dict[str, Decimal] | None:
    """`{"USD": 1200.00}` as currency → amount; None for any other shape (never raises): a
    non-object, no currency, a key that is not a currency code, an amount that is not a finite
    number within ±MAX_AMOUNT (bools, strings, NaN, nested objects)."""
    if not isinstance(body, dict) or not 0 < len(body) <= MAX_CURRENCIES:
        return None
    amounts: dict[str, Decimal] = {}
    for currency, value in body.items():
        if not isinstance(currency, str) or not CURRENCY.fullmatch(currency):
            return None
        amount = _amount(value)
        if amount is None:
            return None
        amounts[currency] = amount
    return amounts


def _amount(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, int) and abs(value) > MAX_AMOUNT:  # before str(): 10**5000 is slow
        return None
    amount = Decimal(str(value))  # the shortest text of a float: 1200.5, not 1200.4999...
    return amount if abs(amount) <= MAX_AMOUNT else None


def stale_after_s(refresh_s: float) -> float:
    return STALE_REFRESHES * refresh_s + BALANCE_TIMEOUT_S


@dataclass(frozen=True)
class BalanceState:
    amounts: dict[str, Decimal]  # as last refreshed; empty if never
    age_s: float | None  # since the last successful refresh; None: never refreshed
    error: str  # why the last refresh failed ('' after a success)
    paused: bool  # the guard's last decision, as the refresher logged it


def read_balance(client: redis.Redis, key: str) -> BalanceState:
    fields: Any = client.hgetall(key)
    stored = {as_text(k): as_text(v) for k, v in fields.items()}
    age_s = None
    if stored.get("at", "").isdigit():
        seconds, micros = client.time()
        now_ms = int(seconds) * 1000 + int(micros) // 1000
        age_s = max(0.0, (now_ms - int(stored["at"])) / 1000)
    return BalanceState(
        _stored_amounts(stored.get("amounts", "")),
        age_s,
        stored.get("error", ""),
        stored.get("paused") == "1",
    )


def _stored_amounts(text: str) -> dict[str, Decimal]:
    try:
        data = orjson.loads(text) if text else {}
    except orjson.JSONDecodeError:
        return {}
    if not isinstance(data, dict):
        return {}
    amounts = {}
    for currency, amount in data.items():
        try:
            amounts[str(currency)] = Decimal(str(amount))
        except ArithmeticError:
            continue
    return {c: a for c, a in amounts.items() if a.is_finite()}


def write_balance(client: redis.Redis, key: str, amounts: dict[str, Decimal]) -> None:
    """A successful refresh, stamped with Redis's clock (every pod ages it with the same)."""
    seconds, micros = client.time()
    at = int(seconds) * 1000 + int(micros) // 1000
    text = orjson.dumps({c: str(a) for c, a in amounts.items()})
    pipe = client.pipeline(transaction=True)
    pipe.hset(key, mapping={"amounts": text, "at": at})
    pipe.hdel(key, "error")
    pipe.execute()


def write_error(client: redis.Redis, key: str, reason: str) -> None:
    client.hset(key, "error", reason)


def swap_paused(client: redis.Redis, key: str, paused: bool) -> bool:
    """Store the guard's decision; whether it changed (the refresher then logs it)."""
    pipe = client.pipeline(transaction=True)
    pipe.hget(key, "paused")
    pipe.hset(key, "paused", int(paused))
    before, _ = pipe.execute()
    return (before is not None and as_text(before) == "1") != paused


@dataclass(frozen=True)
class Guard:
    paused: bool  # the bulk channels wait
    reason: str  # why they wait ('' when they do not): the amounts below the threshold
    stale: bool  # no fresh balance: the guard does not apply


def bulk_guard(state: BalanceState, min_balance: Decimal | None, stale_s: float) -> Guard:
    stale = state.age_s is None or state.age_s > stale_s
    if min_balance is None or stale:
        return Guard(paused=False, reason="", stale=stale)
    low = [f"{c} {a}" for c, a in sorted(state.amounts.items()) if a < min_balance]
    if not low:
        return Guard(paused=False, reason="", stale=False)
    return Guard(True, f"balance {', '.join(low)} below MIN_BALANCE {min_balance}", False)
