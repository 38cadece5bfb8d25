"""Run the sandbox on uvicorn."""

from __future__ import annotations

import logging

import uvicorn

from sandbox.app import Sandbox, create_app

DEFAULT_TOKEN = "sandbox-token"


class _QuietDrops(logging.Filter):
    """A dropped connection is a fault asked for, not an error worth a traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "DroppedConnection" not in str(
            record.exc_info[1].__class__ if record.exc_info else ""
        )


def serve(sandbox: Sandbox, host: str, port: int, access_log: bool = False) -> None:
    logging.getLogger("uvicorn.error").addFilter(_QuietDrops())
    config = uvicorn.Config(
        create_app(sandbox),
        host=host,
        port=port,
        access_log=access_log,
        log_level="info",
        timeout_graceful_shutdown=1,  # hung requests never finish; do not wait for them
        timeout_keep_alive=75,  # above the client's 70 s read timeout, like a real API
    )
    uvicorn.Server(config).run()
