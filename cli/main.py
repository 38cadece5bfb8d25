"""Entry point of the `revicom-dispatch` console script."""

import typer

from cli import demo, jobs, ops, results, sandbox, worker

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="Queue-backed bulk dispatch for the Revicom Direct API.",
)
app.command()(jobs.validate)
app.command()(jobs.enqueue)
app.command()(sandbox.sandbox)
app.command()(results.results)
app.command()(ops.status)
app.command()(ops.check)
app.command()(ops.replay)
app.command()(demo.demo)
app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(
    worker.worker
)
