"""Running the hub with uvicorn, tuned for the relay path (docs/performance.md)."""

from __future__ import annotations

import logging

import uvicorn

from gadget.config import Settings
from gadget.hub.app import create_app

logger = logging.getLogger(__name__)


def uvicorn_config(settings: Settings, **overrides: object) -> uvicorn.Config:
    """uvicorn settings that matter for token relay: no permessage-deflate, no access log."""
    options: dict[str, object] = {
        "host": settings.host,
        "port": settings.port,
        "ws": "auto",
        "ws_per_message_deflate": False,
        "access_log": False,
        "log_level": "warning",
        "lifespan": "on",
        "timeout_graceful_shutdown": 5,
    }
    options.update(overrides)
    return uvicorn.Config(create_app(settings), **options)  # type: ignore[arg-type]


async def serve(settings: Settings) -> None:
    """Serve until SIGINT/SIGTERM."""
    server = uvicorn.Server(uvicorn_config(settings))
    logger.info("hub listening on http://%s:%d", settings.host, settings.port)
    await server.serve()
