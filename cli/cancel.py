"""`revicom-dispatch cancel`: jobs not sent yet are never sent, accepted messages are stopped."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import redis
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from config import get_settings
from ops.cancel import DRY, CancelError, CancelReport, read_job_ids
from ops.cancel import cancel as cancel_jobs
from tasks.jobs import is_job_id
from tasks.untrusted import quote

out = Console()
#: Lines of a jobs file that are no jobId, shown before giving up.
SHOWN_BAD_LINES = 5


def cancel(
    job: Annotated[
        list[str] | None, typer.Option("--job", help="A jobId to cancel (repeatable).")
    ] = None,
    jobs_file: Annotated[
        Path | None,
        typer.Option(help="A file of jobIds, one per line ('#' comments, blank lines skipped)."),
    ] = None,
    tag: Annotated[
        str | None,
        typer.Option(
            help="Every queued job whose message carries this tag, and every message the API "
            "lists with it still `sending`."
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what would be done; change nothing.")
    ] = False,
    wait: Annotated[
        float,
        typer.Option(min=0, max=3600, help="Seconds to wait for jobs a batch is sending now."),
    ] = 30.0,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON line per job, for scripts.")
    ] = False,
) -> None:
    """Cancel jobs: queued ones get the outcome `cancelled` and are never sent; accepted ones
    not yet final are stopped at the API (their final `unsent` comes as a status). Exit 1
    when a job could not be cancelled or stopped, or was not found."""
    job_ids = _job_ids(job or [], jobs_file)
    if not job_ids and tag is None:
        _usage("give --job, --jobs-file or --tag")
    try:
        report = cancel_jobs(get_settings(), job_ids, tag, dry_run=dry_run, wait_s=wait)
    except CancelError as error:
        typer.echo(f"cancel: {error}", err=True)
        raise typer.Exit(2) from None
    except redis.RedisError as error:
        typer.echo(f"Redis error: {error}", err=True)
        raise typer.Exit(2) from None
    if as_json:
        for row in report.rows:
            typer.echo(json.dumps(row.to_dict()))
    else:
        _table(report)
    if any(row.result in ("not stopped", "not found") for row in report.rows):
        raise typer.Exit(1)


def _job_ids(given: list[str], jobs_file: Path | None) -> list[str]:
    bad = [j for j in given if not is_job_id(j)]
    if bad:
        _usage(f"--job {quote(bad[0], 60)}: not a jobId (1 to 128 visible ASCII characters)")
    ids = list(given)
    if jobs_file is not None:
        problems: list[str] = []
        try:
            with jobs_file.open(encoding="utf-8", errors="replace") as lines:
                ids += read_job_ids(lines, lambda n, why: problems.append(f"line {n}: {why}"))
        except OSError as error:
            _usage(f"--jobs-file: {error.strerror or error}")
        if problems:
            shown = "; ".join(problems[:SHOWN_BAD_LINES])
            more = len(problems) - SHOWN_BAD_LINES
            _usage(f"--jobs-file: {shown}" + (f" (and {more} more)" if more > 0 else ""))
    return list(dict.fromkeys(ids))


def _usage(message: str) -> None:
    typer.echo(f"cancel: {message}", err=True)
    raise typer.Exit(2)


def _table(report: CancelReport) -> None:
    title = "cancel (dry run: nothing changed)" if report.dry_run else "cancel"
    table = Table(title=title)
    table.add_column("result")
    table.add_column("why")
    table.add_column("jobs", justify="right")
    for (result, why), count in report.count().items():
        shown = DRY.get(result, result) if report.dry_run else result
        table.add_row(shown, escape(why), str(count))
    if not report.rows:
        table.add_row("nothing to do", "", "0")
    out.print(table)
