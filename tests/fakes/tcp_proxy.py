"""A loopback TCP proxy that breaks connections on demand, for fault tests.

It forwards bytes both ways between a listening port and a target, so it carries anything
TCP: Socket.IO over WebSocket (drone or IDE to hub), PostgreSQL (hub to database), HTTP.
Faults are what a network or a server outage does to a peer:

- :meth:`TcpProxy.abort_all` resets (RST) both sides of every live connection, mid-stream,
  dropping whatever the proxy held in flight;
- :meth:`TcpProxy.refuse_for` (or :meth:`refuse` / :meth:`accept`) resets every new
  connection as soon as it is accepted, then lets them through again;
- :meth:`TcpProxy.outage` is both: live connections die and new ones fail for a while;
- :meth:`TcpProxy.pause` / :meth:`resume` stop forwarding without closing anything (the
  kernel buffers fill and the peers see a stalled link).

:attr:`TcpProxy.stats` counts connections accepted, aborted, refused and failed (target
unreachable). In a test::

    async with TcpProxy("127.0.0.1", 5432) as proxy:
        url = f"postgresql+asyncpg://postgres@127.0.0.1:{proxy.port}/test"
        ...
        proxy.outage(3)             # a 3-second database outage, starting now
        await proxy.wait_accepted(proxy.stats.accepted + 1)   # a peer came back

From a shell::

    python -m tests.fakes.tcp_proxy --listen 0 --target 127.0.0.1:5432

prints ``listening on 127.0.0.1:PORT`` and serves until SIGINT/SIGTERM. SIGUSR1 aborts every
live connection; lines on stdin are commands: ``abort``, ``refuse SECONDS``, ``outage
SECONDS``, ``accept``, ``pause``, ``resume``, ``stats`` (each answers one line).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import signal
import socket
import struct
import sys
from dataclasses import asdict, dataclass

__all__ = ["ProxyStats", "TcpProxy", "main"]

_CHUNK = 64 * 1024
# SO_LINGER on, 0 s: close() then sends RST instead of FIN, as a crashed peer or a cut does.
_LINGER_RESET = struct.pack("ii", 1, 0)


@dataclass
class ProxyStats:
    """Connection counters of a proxy since it started."""

    #: Connections accepted and forwarded to the target.
    accepted: int = 0
    #: Forwarded connections reset by :meth:`TcpProxy.abort_all`.
    aborted: int = 0
    #: Connections reset on arrival because the proxy was refusing.
    refused: int = 0
    #: Connections reset because the target could not be reached.
    failed: int = 0


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close `writer`'s socket with an RST, discarding anything unsent."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    writer.transport.abort()


class _Link:
    """One proxied connection: a client socket, its upstream socket, and the two pumps."""

    def __init__(self, client: asyncio.StreamWriter, upstream: asyncio.StreamWriter) -> None:
        self.client = client
        self.upstream = upstream
        self.pumps: list[asyncio.Task[None]] = []
        self.was_reset = False

    def reset(self) -> None:
        """Stop both pumps and reset both sockets."""
        self.was_reset = True
        for pump in self.pumps:
            pump.cancel()  # first, so no pump acts on the EOF the reset causes
        _reset(self.client)
        _reset(self.upstream)


class TcpProxy:
    """Forward ``host:port`` (0: any free port) to ``target_host:target_port``, with faults."""

    def __init__(
        self, target_host: str, target_port: int, *, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        """A proxy to the target; it listens once started (``async with`` or :meth:`start`)."""
        self.target = (target_host, target_port)
        self.host, self.port = host, port
        self.stats = ProxyStats()
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._refuse_until = 0.0
        self._changed = asyncio.Condition()

    @property
    def address(self) -> str:
        """``host:port`` the proxy listens on."""
        return f"{self.host}:{self.port}"

    @property
    def live(self) -> int:
        """Connections being forwarded now."""
        return len(self._links)

    @property
    def refusing(self) -> bool:
        """Whether new connections are reset on arrival."""
        return asyncio.get_running_loop().time() < self._refuse_until

    @property
    def paused(self) -> bool:
        """Whether forwarding is stopped (:meth:`pause`)."""
        return not self._flowing.is_set()

    async def start(self) -> None:
        """Listen (the port is known afterwards)."""
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening and reset every live connection (not counted as aborted)."""
        if self._server is not None:
            self._server.close()
        for link in list(self._links):
            link.reset()
        # Handlers end once their pumps are cancelled (cancelling a handler itself would make
        # asyncio's server log its CancelledError).
        await asyncio.gather(*self._handlers, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def __aenter__(self) -> TcpProxy:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- faults ----------------------------------------------------------------
    def abort_all(self) -> int:
        """Reset both sides of every live connection now; how many there were."""
        links = list(self._links)
        for link in links:
            self._links.discard(link)
            link.reset()
        self.stats.aborted += len(links)
        return len(links)

    def refuse_for(self, seconds: float) -> None:
        """Reset every connection that arrives in the next `seconds`, then accept again."""
        self._refuse_until = asyncio.get_running_loop().time() + seconds

    def refuse(self) -> None:
        """Reset every connection that arrives until :meth:`accept`."""
        self._refuse_until = math.inf

    def accept(self) -> None:
        """Forward new connections again (ends :meth:`refuse` or :meth:`refuse_for` early)."""
        self._refuse_until = 0.0

    def outage(self, seconds: float) -> int:
        """The target "goes away" for `seconds`: live connections reset, new ones refused."""
        self.refuse_for(seconds)
        return self.abort_all()

    def pause(self) -> None:
        """Stop forwarding bytes (connections stay open; peers see a stalled link)."""
        self._flowing.clear()

    def resume(self) -> None:
        """Forward again what :meth:`pause` held back, and what follows."""
        self._flowing.set()

    async def wait_accepted(self, count: int, timeout: float = 30) -> None:
        """Wait until `count` connections have been accepted since the start."""
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: self.stats.accepted >= count)

    # -- forwarding ------------------------------------------------------------
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None  # a handler always runs in a task
        self._handlers.add(task)
        try:
            await self._serve(reader, writer)
        finally:
            self._handlers.discard(task)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refusing:
            self.stats.refused += 1
            _reset(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            self.stats.failed += 1
            _reset(writer)
            return
        link = _Link(writer, up_writer)
        self._links.add(link)
        async with self._changed:
            self.stats.accepted += 1
            self._changed.notify_all()
        try:
            await self._forward(link, reader, up_reader)
        finally:
            self._links.discard(link)

    async def _forward(
        self, link: _Link, client: asyncio.StreamReader, upstream: asyncio.StreamReader
    ) -> None:
        """Pump both ways until both sides are done; a reset on one side resets the other."""
        try:
            async with asyncio.TaskGroup() as pumps:
                link.pumps = [
                    pumps.create_task(self._pump(client, link.upstream)),
                    pumps.create_task(self._pump(upstream, link.client)),
                ]
        except* OSError:  # ConnectionResetError and friends: pass the reset on
            link.reset()
        if link.was_reset:
            return
        for w in (link.client, link.upstream):
            w.close()
            with contextlib.suppress(OSError):
                await w.wait_closed()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(_CHUNK):
            await self._flowing.wait()
            writer.write(data)
            await writer.drain()
        # Pass a half-close on: the other direction may still be talking.
        if writer.can_write_eof() and not writer.is_closing():
            writer.write_eof()


# -- command line --------------------------------------------------------------
def _host_port(text: str, default_host: str = "127.0.0.1") -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    try:
        return (host if sep else default_host), int(port)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected PORT or HOST:PORT, got {text!r}") from None


def _command(proxy: TcpProxy, line: str) -> str:
    """Run one stdin command; the line it answers."""
    word, _, arg = line.strip().partition(" ")
    try:
        seconds = float(arg) if arg else 0.0
    except ValueError:
        return f"error: expected seconds, got {arg!r}"
    if word == "abort":
        return f"aborted {proxy.abort_all()}"
    if word in ("refuse", "outage") and seconds > 0:
        if word == "refuse":
            proxy.refuse_for(seconds)
            return f"refusing for {seconds:g} s"
        return f"outage for {seconds:g} s: aborted {proxy.outage(seconds)}"
    simple = {"accept": proxy.accept, "pause": proxy.pause, "resume": proxy.resume}
    if word in simple:
        simple[word]()
        return word
    if word == "stats":
        return json.dumps({**asdict(proxy.stats), "live": proxy.live})
    return "error: commands are abort, refuse S, outage S, accept, pause, resume, stats"


async def _read_commands(proxy: TcpProxy) -> None:
    """Answer stdin commands until stdin ends (then keep serving)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    try:
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    except (OSError, ValueError):
        return  # stdin is a file or closed: signals only
    while line := await reader.readline():
        if line.strip():
            print(_command(proxy, line.decode()), flush=True)


async def _serve_forever(listen: tuple[str, int], target: tuple[str, int]) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    async with TcpProxy(*target, host=listen[0], port=listen[1]) as proxy:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(signal.SIGUSR1, proxy.abort_all)
        print(f"listening on {proxy.address}", flush=True)
        commands = asyncio.create_task(_read_commands(proxy))
        await stop.wait()
        commands.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await commands


def main() -> None:
    """Serve a proxy until SIGINT/SIGTERM."""
    parser = argparse.ArgumentParser(
        prog="python -m tests.fakes.tcp_proxy", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--listen", type=_host_port, default=("127.0.0.1", 0),
                        help="PORT or HOST:PORT to listen on (default 127.0.0.1:0, any port)")  # fmt: skip
    parser.add_argument("--target", type=_host_port, required=True, help="HOST:PORT to forward to")
    args = parser.parse_args()
    asyncio.run(_serve_forever(args.listen, args.target))


if __name__ == "__main__":
    main()
