"""Running the hub with uvicorn, tuned for the relay path (docs/performance.md)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Iterator

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


class Server(uvicorn.Server):
    """uvicorn without its own signal handling: the caller decides what a signal stops."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def start(server: uvicorn.Server) -> asyncio.Task[None]:
    """Serve in a task, returned once the socket is bound (or serving ended: a taken port)."""
    serving = asyncio.create_task(server.serve())
    while not server.started:  # uvicorn sets a flag, it has no event to wait on
        if serving.done():
            break
        await asyncio.sleep(0.02)
    return serving


async def serve(settings: Settings) -> None:
    """Serve until SIGINT/SIGTERM, then stop gracefully (buffered text written)."""
    server = Server(uvicorn_config(settings))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, setattr, server, "should_exit", True)
    serving = await start(server)
    if server.started:
        logger.info("hub listening on http://%s:%d", settings.host, settings.port)
    await serving
