"""Running the hub with uvicorn, tuned for the relay path (docs/performance.md)."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import signal
import socket
from collections.abc import Iterator

import uvicorn

from gadget.config import Settings
from gadget.hub.app import create_app
from gadget.hub.exceptions import AddressInUse, HubError
from gadget.hub.transport import WebSocketProtocol

logger = logging.getLogger(__name__)

#: Connections the kernel queues before the hub accepts them (uvicorn's default).
BACKLOG = 2048

#: Seconds an idle HTTP/1.1 connection is kept open (uvicorn's default is 5).
KEEP_ALIVE_S = 20


def uvicorn_config(settings: Settings, **overrides: object) -> uvicorn.Config:
    """uvicorn settings that matter for token relay: no permessage-deflate, no access log.

    uvicorn's own logging setup is off (`log_config=None`): its records go through the
    process's handler (gadget.logs), so they are JSON too when GADGET_LOG_FORMAT=json.
    """
    options: dict[str, object] = {
        "host": settings.host,
        "port": settings.port,
        "ws": WebSocketProtocol,  # uvicorn's sans-I/O protocol, keeping less (hub/transport)
        "ws_ping_interval": None,  # engine.io pings every socket already
        "ws_per_message_deflate": False,
        "access_log": False,
        "log_config": None,
        "log_level": "warning",
        "lifespan": "on",
        "timeout_graceful_shutdown": 5,
        # Idle HTTP connections are kept longer than clients keep theirs (httpx: 5 s, the
        # same as uvicorn's default): at equal times a client could send a request on a
        # connection the hub was closing, and get a read error instead of an answer.
        "timeout_keep_alive": KEEP_ALIVE_S,
        "backlog": BACKLOG,
    }
    options.update(overrides)
    return uvicorn.Config(create_app(settings), **options)  # type: ignore[arg-type]


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on `host`:`port`, bound before the hub is built.

    Raises:
        AddressInUse: another process listens there ("port 8420 is in use: try --port").
        HubError: the host does not resolve or the address cannot be bound.
    """
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise HubError(f"cannot listen on host {host!r}: {exc.strerror}; check --host") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a restart within TIME_WAIT
        sock.bind(address)
        sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise AddressInUse(f"port {port} is in use: try --port") from None
        raise HubError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    return sock


class Server(uvicorn.Server):
    """uvicorn without its own signal handling: the caller decides what a signal stops."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def start(
    server: uvicorn.Server, sockets: list[socket.socket] | None = None
) -> asyncio.Task[None]:
    """Serve in a task, returned once listening (or serving ended: startup failed).

    With `sockets` (from :func:`listen`) uvicorn serves those instead of binding itself.
    """
    serving = asyncio.create_task(_serve(server, sockets))
    while not server.started:  # uvicorn sets a flag, it has no event to wait on
        if serving.done():
            break
        await asyncio.sleep(0.02)
    return serving


async def _serve(server: uvicorn.Server, sockets: list[socket.socket] | None) -> None:
    try:
        await server.serve(sockets=sockets)
    except SystemExit:
        # uvicorn exits the process when the app's startup fails (it logged why); a task
        # must not, or the caller's clean-up never runs.
        raise HubError("the hub could not start: see the error logged above") from None


async def serve(settings: Settings) -> None:
    """Serve until SIGINT/SIGTERM, then stop gracefully (buffered text written).

    Raises:
        AddressInUse: the port is taken (nothing was started).
    """
    sock = listen(settings.host, settings.port)
    server = Server(uvicorn_config(settings))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, setattr, server, "should_exit", True)
    serving = await start(server, [sock])
    if server.started:
        logger.info("hub listening on http://%s:%d", settings.host, settings.port)
    await serving
