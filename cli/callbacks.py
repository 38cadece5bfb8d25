"""`revicom-dispatch callbacks`: the callback receiver."""

from __future__ import annotations

from typing import Annotated

import typer

from config import get_settings
from receiver.server import serve


def callbacks(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8090,
    access_log: Annotated[bool, typer.Option(help="Log every request.")] = False,
) -> None:
    """Receive the API's delivery callbacks on HOST:PORT/callbacks (probes: /healthz,
    /readyz; metrics: /metrics) and record them in Redis."""
    serve(get_settings(), host, port, access_log)
