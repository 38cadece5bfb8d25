"""`status`, `check` and `replay`: what is queued where, whether the deployment can send,
and sending dead letters again."""

from __future__ import annotations

import json
from typing import Annotated

import redis
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from config import get_settings
from ops.check import failed
from ops.check import run as run_checks
from ops.replay import replay as replay_dead
from ops.status import Balance, snapshot
from tasks.channels import CHANNELS
from tasks.keys import Keys
from worker.rate_limits.state import Rates

out = Console()


def _connect() -> tuple[redis.Redis, Keys]:
    settings = get_settings()
    client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=5)
    return client, Keys(settings.dispatch_key_prefix)


def status(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object, for scripts.")] = False,
) -> None:
    """Per channel: stream length, unread, pending, consumers, oldest pending age."""
    client, keys = _connect()
    try:
        state = snapshot(client, keys, get_settings())
    except redis.RedisError as error:
        typer.echo(f"Redis error: {error}", err=True)
        raise typer.Exit(2) from None
    if as_json:
        typer.echo(json.dumps(state.to_dict()))
        return
    table = Table(title=f"revicom-dispatch ({keys.prefix})")
    for column in (
        "channel",
        "queue",
        "stream",
        "unread",
        "pending",
        "consumers",
        "oldest pending",
    ):
        table.add_column(column, justify="left" if column in ("channel", "queue") else "right")
    for c in state.channels:
        age = "-" if c.oldest_pending_age_s is None else f"{c.oldest_pending_age_s:.1f} s"
        unread = "?" if c.unread is None else str(c.unread)
        table.add_row(
            c.channel, c.queue, str(c.length), unread, str(c.pending), str(c.consumers), age
        )
    out.print(table)
    out.print(
        f"results stream: {state.results} ({state.results_bytes // 1024} KiB)   "
        f"dead letters: {state.dead} ({state.dead_bytes // 1024} KiB)"
    )
    t = state.tracking
    out.print(
        f"statuses stream: {t.statuses}   awaiting a final status: {t.awaiting_final} "
        f"(lookups overdue: {t.overdue})   parked callbacks: {t.parked}"
    )
    if state.circuit.open:
        out.print(
            f"[red bold]circuit OPEN for {state.circuit.open_for_s} s: {state.circuit.reason}[/]"
            " — no pod sends; jobs wait in their streams; a probe tests the API after a cooldown"
        )
    else:
        out.print("circuit: closed (sending)")
    _print_balance(state.balance)
    if state.rates is not None:
        _print_rates(state.rates)
    for stray in state.stray:
        out.print(
            f"[yellow]warning: {stray.stream} holds {stray.length} entries that no worker reads "
            f"(channels: {', '.join(CHANNELS)}); they get no outcome until moved[/]"
        )


def _print_balance(balance: Balance) -> None:
    amounts = ", ".join(f"{c} {a:.2f}" for c, a in balance.amounts.items()) or "never read"
    age = "" if balance.age_s is None else f" ({balance.age_s:.0f} s ago)"
    error = f"; last refresh failed: {balance.error}" if balance.error else ""
    out.print(f"balance: {escape(amounts)}{age}{escape(error)}")
    if balance.bulk_paused:
        out.print(
            f"[red bold]bulk channels PAUSED: {escape(balance.reason)}[/] — their jobs wait; "
            "codes go on; bulk resumes by itself once the balance is back"
        )
    elif balance.min_balance is None:
        out.print("balance guard: off (MIN_BALANCE unset)")
    elif balance.stale:
        out.print(
            f"[yellow]balance guard: no fresh balance, not applied (MIN_BALANCE "
            f"{balance.min_balance:g})[/]"
        )
    else:
        out.print(f"balance guard: bulk sending (MIN_BALANCE {balance.min_balance:g})")


def _print_rates(rates: Rates) -> None:
    limits = [
        f"{limit.bucket} {limit.configured:g}/s"
        + (f" (now {limit.effective:g}/s)" if limit.effective != limit.configured else "")
        for limit in rates.limits
        if limit.configured or limit.effective
    ]
    adaptive = ", adaptive" if rates.adaptive else ""
    out.print(
        f"rate limits ({rates.unit}s, burst {rates.burst_s:g} s{adaptive}): "
        + (", ".join(limits) or "none")
    )
    for pause in rates.pauses:
        if pause.remaining_s > 0:
            out.print(
                f"[yellow bold]POST {pause.endpoint} PAUSED for {pause.remaining_s:.1f} s[/] "
                "by a 429 — every pod waits it out"
            )


def check() -> None:
    """Check a deployment: Redis (version, eviction policy, what its persistence loses), the
    API circuit, streams without a reader, the API. Exit 1 if something stops sending."""
    settings = get_settings()
    client, keys = _connect()
    findings = run_checks(client, keys, settings)
    colours = {"ok": "green", "warning": "yellow", "error": "red"}
    for f in findings:
        fix = f" — {f.fix}" if f.fix else ""
        line = f"[{colours[f.level]}]{f.level:7}[/] {f.what}: {escape(f.detail)}{escape(fix)}"
        out.print(line, soft_wrap=True)
    if failed(findings):
        raise typer.Exit(1)


def replay(
    channel: Annotated[
        str | None, typer.Option(help=f"Only this channel: {', '.join(CHANNELS)}.")
    ] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="At most this many jobs.")] = None,
) -> None:
    """Move dead-lettered jobs back to their streams (same jobIds) to be sent again."""
    if channel is not None and channel not in CHANNELS:
        typer.echo(f"--channel: must be one of {', '.join(CHANNELS)}", err=True)
        raise typer.Exit(2)
    client, keys = _connect()
    moved = replay_dead(client, keys, channel, limit)
    for name, count in sorted(moved.items()):
        out.print(f"{name}: {count} job(s) replayed")
    out.print(f"total: {sum(moved.values())}")
