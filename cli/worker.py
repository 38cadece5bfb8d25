"""`revicom-dispatch worker`: run one worker pod (an OTP node and a bulk node)."""

from __future__ import annotations

from typing import Annotated

import typer

from config import get_settings
from worker.pod import run_pod


def worker(
    celery_args: Annotated[
        list[str] | None,
        typer.Argument(help="Passed to both `celery worker` nodes, e.g. --loglevel INFO."),
    ] = None,
) -> None:
    """Run a worker pod: OTP_CONCURRENCY processes for codes, BULK_CONCURRENCY for campaigns."""
    raise typer.Exit(run_pod(get_settings(), celery_args or []))
