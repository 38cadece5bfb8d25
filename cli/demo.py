"""`revicom-dispatch demo` (what `make demo` runs)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from devenv.demo import run_demo


def demo(
    keep_running: Annotated[
        bool, typer.Option(help="Leave everything running after the summary, until Ctrl-C.")
    ] = False,
) -> None:
    """Run the whole pipeline locally: Redis, sandbox, a worker pod, Flower and a mixed load."""
    console = Console()
    try:
        code = run_demo(console, keep_running)
    except KeyboardInterrupt:
        console.print("\nstopped")
        code = 130
    raise typer.Exit(code)
