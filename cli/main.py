"""Entry point of the `revicom-dispatch` console script."""

import typer

from cli import jobs, sandbox

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="Queue-backed bulk dispatch for the Revicom Direct API.",
)
app.command()(jobs.validate)
app.command()(jobs.enqueue)
app.command()(sandbox.sandbox)
