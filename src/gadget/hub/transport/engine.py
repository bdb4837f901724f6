"""engine.io's server with lean queues, lean websocket environs and lean websocket sockets.

engine.io (4.x) runs five tasks for every websocket: the connection's own (the ASGI
handler, reading), a writer task, a task around each read (`ensure_future` for its
`wait_for` timeout), one around each wait for a packet to send (`wait_for` again: a task
and a timer per packet sent) and one sleeping until the next ping. At 1,000 pairs that
is 10,000 tasks and their timers, and every event relayed pays for two tasks made and a
writer woken. :class:`LeanSocket` keeps the connection's task only:

- reads are awaited in the connection's task, with no timeout of their own: a peer that
  stops answering pings is closed by engine.io's service task (`check_ping_timeout`, as
  for polling sockets), and closing a socket now also ends its websocket;
- packets are written as they are sent (`WebSocketProtocol.send_now`), in the order
  queued; only when the peer reads slower than we write (the transport is paused) does
  a writer task take the rest, so a slow peer never holds up a sender;
- the next ping is a timer, not a sleeping task.

What goes on the wire is unchanged. A socket that starts on long-polling and upgrades
keeps engine.io's own handler (our clients connect with websockets only).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import engineio
from engineio import async_socket, packet
from engineio import exceptions as eio_exceptions

from gadget.hub.transport.queue import LeanQueue
from gadget.hub.transport.websocket import WebSocketProtocol

__all__ = ["EngineServer", "LeanSocket"]


class LeanSocket(async_socket.AsyncSocket):  # type: ignore[misc]
    """engine.io's socket, writing inline and reading in its connection's task."""

    last_ping: float | None  # engine.io's own attributes that this class sets
    connected: bool
    upgraded: bool

    _proto: WebSocketProtocol | None = None  # while the lean websocket is open
    _ws: Any = None  # engine.io's ASGI websocket wrapper
    _writer: asyncio.Future[None] | None = None  # only while the transport is paused
    _ping_timer: asyncio.TimerHandle | None = None

    def push(self, pkt: Any) -> None:
        """Queue `pkt` and write what is queued if the websocket can take it now.

        Without a coroutine: the hub's relay (`hub/bus.py`) queues one encoded packet to
        every socket of a room with it. Polling sockets only queue (their GET takes it).
        """
        self.queue.put_nowait(pkt)
        if self._proto is not None:
            self._pump()

    async def send(self, pkt: Any) -> None:
        if not await self.check_ping_timeout():
            return
        self.push(pkt)
        logger = self.server.logger
        if logger.isEnabledFor(logging.INFO):
            logger.info("%s: Sending packet %s", self.sid, packet.packet_names[pkt.packet_type])

    def schedule_ping(self) -> None:
        if self.last_ping:  # as engine.io: only once the previous ping was answered
            self.last_ping = None
            loop = asyncio.get_running_loop()
            self._ping_timer = loop.call_later(self.server.ping_interval, self._ping)

    def _ping(self) -> None:
        self._ping_timer = None
        if self.closing or self.closed:
            return
        self.last_ping = time.time()
        self.push(packet.Packet(packet.PING))

    async def close(self, wait: bool = True, abort: bool = False, reason: Any = None) -> None:
        await super().close(wait=wait, abort=abort, reason=reason)
        if self.closed and self._proto is not None:
            # engine.io's reader and writer would end the websocket at their timeouts;
            # without them, closing the socket ends it (after what is queued, CLOSE too).
            self._end_after_queued()
            if self._writer is not None and not self._proto.writable.is_set():
                # a peer that reads nothing never lets the close out: drop it after a while
                loop = asyncio.get_running_loop()
                loop.call_later(self.server.ping_timeout, self._proto.transport.abort)
        if self._ping_timer is not None:
            self._ping_timer.cancel()
            self._ping_timer = None

    async def _websocket_handler(self, ws: Any) -> Any:
        proto = getattr(ws.asgi_send, "__self__", None)
        if self.connected or not isinstance(proto, WebSocketProtocol):
            return await super()._websocket_handler(ws)  # an upgrade from polling
        self.connected = self.upgraded = True
        self._proto, self._ws = proto, ws
        self._pump()  # what was queued before: OPEN, what the connect handler sent
        await self._read(ws, proto)
        await self._end(ws)
        await self.close(wait=False, abort=True, reason=self.server.reason.TRANSPORT_CLOSE)

    async def _read(self, ws: Any, proto: WebSocketProtocol) -> None:
        """Receive packets until the peer goes, as engine.io's reader (less its timeout)."""
        limit = self.server.max_http_buffer_size
        received = proto.queue  # uvicorn's messages, that `ws.wait()` takes
        while True:
            if not received.empty():
                # One packet at a time, as engine.io's reader (a task per read): a peer's
                # burst never holds the loop, and what its last packet woke (an ack's
                # waiter) runs before the next packet is handled.
                await asyncio.sleep(0)
            try:
                data = await ws.wait()
            except (Exception, asyncio.CancelledError):  # disconnected, or shutting down
                return  # (engine.io's reader also ends on either)
            if data is None or len(data) > limit:
                return
            try:
                pkt = packet.Packet(encoded_packet=data)
            except Exception:  # not an engine.io packet: end the connection
                self.server.logger.info("%s: undecodable packet, closing", self.sid)
                return
            try:
                await self.receive(pkt)
            except eio_exceptions.UnknownPacketError:
                pass
            except eio_exceptions.SocketIsClosedError:
                return
            except Exception:
                self.server.logger.exception("Unknown receive error")

    async def _end(self, ws: Any) -> None:
        """The reader is done: send what is queued if the peer still reads, then close."""
        if self._proto is None:  # a writer already closed the websocket
            return
        self._end_after_queued()
        if self._writer is not None:
            await self._writer

    def _end_after_queued(self) -> None:
        """Close the websocket once what is queued is written (`None` ends the queue)."""
        self.queue.put_nowait(None)
        self._pump()

    def _pump(self) -> None:
        """Write what is queued, in order, until empty or the transport pushes back."""
        if self._writer is not None or self._proto is None:
            return  # a writer is waiting for the transport: it sends these next
        queue, proto = self.queue, self._proto
        while not queue.empty():
            pkt = queue.get_nowait()
            queue.task_done()
            if pkt is None or not proto.send_now(pkt.encode()):
                self._writer = asyncio.ensure_future(self._write_from(pkt))
                return

    async def _write_from(self, pkt: Any) -> None:
        """engine.io's writer for a while: send `pkt` and what follows, then go back inline."""
        ws, proto, queue = self._ws, self._proto, self.queue
        assert proto is not None
        try:
            while pkt is not None:
                try:
                    await ws.send(pkt.encode())
                except Exception:  # the peer is gone
                    break
                if queue.empty() and proto.writable.is_set():
                    return  # caught up: the next packets are written inline again
                pkt = await queue.get()
                queue.task_done()
            self._proto = None  # from here on packets only queue, as after engine.io's writer
            await ws.close()
        finally:
            self._writer = None


class _SocketTable(dict[str, Any]):
    """engine.io's `sockets` map: each socket it makes becomes a :class:`LeanSocket`."""

    def __setitem__(self, sid: str, sock: Any) -> None:
        if type(sock) is async_socket.AsyncSocket:
            sock.__class__ = LeanSocket  # same layout; it only adds behaviour
        super().__setitem__(sid, sock)


class EngineServer(engineio.AsyncServer):  # type: ignore[misc]
    """engine.io's ASGI server with :class:`LeanQueue` queues and :class:`LeanSocket` sockets."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        drivers: dict[str, Any] = self.__dict__["_async"]  # the ASGI driver's functions
        translate = drivers["translate_request"]

        async def translate_request(scope: Any, receive: Any, send: Any) -> dict[str, Any]:
            environ: dict[str, Any] = await translate(scope, receive, send)
            if scope.get("type") == "websocket" and environ:
                environ["wsgi.input"] = None  # only a polling POST reads a body
            return environ

        self.__dict__["_async"] = {**drivers, "translate_request": translate_request}

    @property
    def sockets(self) -> dict[str, Any]:
        return self._sockets

    @sockets.setter
    def sockets(self, value: dict[str, Any]) -> None:  # engine.io assigns a new {} on shutdown
        self._sockets = _SocketTable(value)

    def create_queue(self, *args: Any, **kwargs: Any) -> LeanQueue:
        return LeanQueue()
