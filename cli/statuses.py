"""`revicom-dispatch statuses` (the statuses stream as JSON Lines) and `track` (one job)."""

from __future__ import annotations

import sys
from typing import Annotated

import orjson
import redis
import typer

from cli.results import print_stream
from config import get_settings
from tasks.keys import Keys
from tasks.statuses import history, iter_statuses
from tasks.untrusted import quote


def statuses(
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Wait for new entries.")] = False,
    group: Annotated[
        str | None,
        typer.Option(
            help="Read through this consumer group, so a reader resumes where the group "
            "stopped and several readers share the entries."
        ),
    ] = None,
    consumer: Annotated[
        str | None, typer.Option(help="Consumer name in the group (default: the host name).")
    ] = None,
) -> None:
    """Print every delivery status change on the statuses stream as one JSON line."""
    print_stream(iter_statuses, lambda e: e.model_dump_json(), follow, group, consumer)


def track(
    job_ids: Annotated[list[str], typer.Argument(help="jobIds to look up.", show_default=False)],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON line per job.")] = False,
) -> None:
    """Print each job's outcome and delivery status history (kept LEDGER_TTL_S). Exit
    status 1 when a jobId is unknown."""
    settings = get_settings()
    client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=5)
    keys = Keys(settings.dispatch_key_prefix)
    unknown = 0
    try:
        for job_id in job_ids:
            found = history(client, keys, job_id)
            unknown += not found.known
            if as_json:
                line = {
                    "jobId": job_id,
                    "outcomes": [o.model_dump(mode="json") for o in found.outcomes],
                    "statuses": [c.model_dump(mode="json") for c in found.statuses],
                    "trimmed": found.trimmed,
                }
                sys.stdout.write(orjson.dumps(line).decode() + "\n")
                continue
            typer.echo(f"{quote(job_id)}:" if found.known else f"{quote(job_id)}: unknown")
            if found.trimmed:
                typer.echo(f"  ({found.trimmed} older entries trimmed from the streams)")
            for o in found.outcomes:
                error = f" {o.error.code} {o.error.msg}" if o.error else ""
                uuid = f" {o.messageUuid}" if o.messageUuid else ""
                typer.echo(f"  {o.finishedAt:%Y-%m-%d %H:%M:%S}  {o.status}{uuid}{error}")
            for c in found.statuses:
                mark = " (final)" if c.final else ""
                price = f" price {c.price.totalPrice} {c.price.currency}" if c.price else ""
                code = f" error {c.errorCode}" if c.errorCode is not None else ""
                typer.echo(
                    f"  {c.statusTime or '-'}  {c.status}{mark}{code}{price}  "
                    f"[{c.source} {c.event}]"
                )
    except redis.RedisError as error:
        typer.echo(f"Redis error: {error}", err=True)
        raise typer.Exit(2) from None
    if unknown:
        raise typer.Exit(1)
