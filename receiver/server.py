"""Run the receiver on uvicorn."""

from __future__ import annotations

import uvicorn

from config import Settings
from receiver.app import create_app


def serve(settings: Settings, host: str, port: int, access_log: bool = False) -> None:
    config = uvicorn.Config(
        create_app(settings),
        host=host,
        port=port,
        access_log=access_log,
        log_level="info",
        # Behind a proxy the peer is the proxy: the app reads X-Forwarded-For itself, from
        # trusted proxies only (CALLBACK_TRUSTED_PROXIES), so uvicorn must not rewrite it.
        proxy_headers=False,
        timeout_graceful_shutdown=5,
    )
    uvicorn.Server(config).run()
