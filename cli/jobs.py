"""`validate` and `enqueue`: check a JSON Lines file of jobs, and put it on the streams."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Annotated, TextIO

import redis
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn
from rich.table import Table

from cli.jobs_file import JobLine, read_job_lines
from config import get_settings
from tasks.jobs import Job
from tasks.keys import Keys
from tasks.producer import Enqueued, Producer

PROGRESS_FROM = 1000  # jobs; smaller files finish before a bar would be read

out = Console()
err = Console(stderr=True)

FileArg = Annotated[str, typer.Argument(help="JSON Lines file of jobs, or '-' for standard input.")]


def _open(path: str) -> TextIO:
    if path == "-":
        return sys.stdin
    try:
        return Path(path).open(encoding="utf-8")
    except OSError as error:
        err.print(f"[red]cannot read {path}: {error.strerror}[/]")
        raise typer.Exit(2) from None


def _check(path: str) -> tuple[list[JobLine], list[JobLine]]:
    """(valid lines, invalid lines); every error is printed as it is found."""
    with _open(path) as lines:
        valid: list[JobLine] = []
        invalid: list[JobLine] = []
        for line in read_job_lines(lines):
            if line.job is None:
                invalid.append(line)
                for text in line.describe_errors():
                    typer.echo(text, err=True)  # one unwrapped line per error, for grep
            else:
                valid.append(line)
        return valid, invalid


def validate(file: FileArg) -> None:
    """Check every line against the API's rules; print `line N: field: rule` per error."""
    valid, invalid = _check(file)
    out.print(f"{len(valid)} valid, {len(invalid)} invalid")
    if invalid:
        raise typer.Exit(1)


def enqueue(
    file: FileArg,
    skip_invalid: Annotated[
        bool,
        typer.Option(help="Enqueue the valid lines even when some are invalid."),
    ] = False,
    ids: Annotated[
        Path | None,
        typer.Option(help="Write one JSON line per job: line, jobId, channelType, entryId."),
    ] = None,
) -> None:
    """Validate the whole file, then put its jobs on the streams.

    If any line is invalid nothing is enqueued (unless --skip-invalid), so the corrected file
    can be enqueued again without sending anything twice.
    """
    valid, invalid = _check(file)
    if invalid and not skip_invalid:
        err.print(
            f"[red]{len(invalid)} invalid line(s): nothing enqueued[/] (--skip-invalid "
            "enqueues the valid ones)"
        )
        raise typer.Exit(1)
    settings = get_settings()
    client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=5)
    producer = Producer(client, Keys(settings.dispatch_key_prefix))
    enqueued = _enqueue_with_progress(producer, [line.job for line in valid if line.job])
    if ids is not None:
        _write_ids(ids, valid, enqueued)
    _summary(enqueued, len(invalid))
    if invalid:
        raise typer.Exit(1)


def _enqueue_with_progress(producer: Producer, jobs: list[Job]) -> list[Enqueued]:
    enqueued: list[Enqueued] = []
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        disable=len(jobs) < PROGRESS_FROM,
    ) as progress:
        task = progress.add_task("enqueueing", total=len(jobs))
        try:
            for result in producer.iter_enqueue(jobs):
                assert isinstance(result, Enqueued)  # the jobs were validated already
                enqueued.append(result)
                progress.advance(task)
        except redis.RedisError as error:
            err.print(f"[red]Redis error after {len(enqueued)} job(s): {error}[/]")
            raise typer.Exit(2) from None
    return enqueued


def _write_ids(path: Path, valid: list[JobLine], enqueued: list[Enqueued]) -> None:
    with path.open("w", encoding="utf-8") as sink:
        for result in enqueued:
            record = {
                "line": valid[result.index].number,
                "jobId": result.jobId,
                "channelType": result.channel,
                "entryId": result.entryId,
            }
            sink.write(json.dumps(record) + "\n")


def _summary(enqueued: list[Enqueued], invalid: int) -> None:
    per_channel = Counter(r.channel for r in enqueued)
    table = Table(title="enqueued")
    table.add_column("channel")
    table.add_column("jobs", justify="right")
    for channel, count in sorted(per_channel.items()):
        table.add_row(channel, str(count))
    table.add_row("[bold]total[/]", f"[bold]{len(enqueued)}[/]")
    out.print(table)
    if invalid:
        err.print(f"{invalid} invalid line(s) skipped")
