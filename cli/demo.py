"""`revicom-dispatch demo` (what `make demo` runs)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from devenv.demo import enqueue_only as enqueue_only_demo
from devenv.demo import run_demo


def demo(
    keep_running: Annotated[
        bool, typer.Option(help="Leave everything running after the summary, until Ctrl-C.")
    ] = False,
    enqueue_only: Annotated[
        bool,
        typer.Option(
            help="Start nothing: enqueue the load at REDIS_URL (under "
            "DISPATCH_KEY_PREFIX) for running workers, and follow the outcomes."
        ),
    ] = False,
) -> None:
    """Run the whole pipeline locally: Redis, sandbox, a worker pod, Flower and a mixed load."""
    console = Console()
    try:
        code = enqueue_only_demo(console) if enqueue_only else run_demo(console, keep_running)
    except KeyboardInterrupt:
        console.print("\nstopped")
        code = 130
    raise typer.Exit(code)
