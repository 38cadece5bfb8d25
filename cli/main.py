"""Entry point of the `revicom-dispatch` console script."""

import sys

import typer
from pydantic import ValidationError

from cli import balance, callbacks, cancel, demo, jobs, ops, results, sandbox, statuses, worker

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="Queue-backed bulk dispatch for the Revicom Direct API.",
)
app.command()(jobs.validate)
app.command()(jobs.enqueue)
app.command()(sandbox.sandbox)
app.command()(results.results)
app.command()(statuses.statuses)
app.command()(statuses.track)
app.command()(callbacks.callbacks)
app.command()(ops.status)
app.command()(ops.check)
app.command()(balance.balance)
app.command()(ops.replay)
app.command()(cancel.cancel)
app.command()(demo.demo)
app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(
    worker.worker
)


def main() -> None:
    """The console script: a bad setting is one line per problem and exit status 2, not a
    traceback (settings are read when a command first needs them)."""
    try:
        app()
    except ValidationError as error:
        if error.title != "Settings":
            raise
        for problem in error.errors(include_url=False, include_input=False):
            where = ".".join(map(str, problem["loc"])).upper()
            print(
                f"configuration: {where + ': ' if where else ''}{problem['msg']}", file=sys.stderr
            )
        sys.exit(2)
