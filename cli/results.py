"""`revicom-dispatch results`: print outcomes as JSON Lines."""

from __future__ import annotations

import socket
import sys
from collections.abc import Callable, Iterator
from typing import Annotated, TypeVar

import redis
import typer

from config import get_settings
from tasks.keys import Keys
from tasks.results import iter_outcomes

T = TypeVar("T")


def results(
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Wait for new outcomes.")] = False,
    group: Annotated[
        str | None,
        typer.Option(
            help="Read through this consumer group, so a reader resumes where the "
            "group stopped and several readers share the outcomes."
        ),
    ] = None,
    consumer: Annotated[
        str | None,
        typer.Option(
            help="Consumer name in the group (default: the host name); a restarted "
            "reader with the same name gets back what it had not finished."
        ),
    ] = None,
) -> None:
    """Print every outcome on the results stream as one JSON line."""
    print_stream(iter_outcomes, lambda o: o.to_wire(), follow, group, consumer)


def print_stream(
    reader: Callable[..., Iterator[tuple[str, T]]],
    to_line: Callable[[T], str],
    follow: bool,
    group: str | None,
    consumer: str | None,
) -> None:
    """Print a stream's entries as JSON Lines (`results`, `statuses`); exit 2 on Redis errors."""
    settings = get_settings()
    client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=5)
    name = consumer or socket.gethostname()
    try:
        for _, entry in reader(
            client, Keys(settings.dispatch_key_prefix), follow=follow, group=group, consumer=name
        ):
            sys.stdout.write(to_line(entry) + "\n")
            sys.stdout.flush()
    except KeyboardInterrupt:
        pass
    except redis.RedisError as error:
        typer.echo(f"Redis error: {error}", err=True)
        raise typer.Exit(2) from None
