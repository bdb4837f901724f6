"""A minimal Socket.IO client: Engine.IO v4 / Socket.IO v5 framing over one websocket.

Namespace "/" only, websocket transport only, text packets only, no reconnection.
It exists so the load generator costs far less per event than the servers it
measures (python-socketio's AsyncClient costs ~100 µs per event, as much as a
relay). The websocket is `websockets`' sans-I/O `ClientProtocol` driven by an
`asyncio.Protocol`: a received frame is handled inline in `data_received` (no
task, queue or future per message) and a send is one frame written straight
to the transport. JSON is orjson on bytes.

Packets (type digits, then an optional ack id, then JSON):
    0{"sid",..}   Engine.IO open (server)      2 / 3   ping (server) / pong (client)
    40{auth}      connect to "/" (client)      40{"sid"} / 44{"message"}  accepted / refused
    42["ev",..]   event                        42N[..] event wanting ack N; 43N[..] the ack
    41 / 1        Socket.IO disconnect / Engine.IO close
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Callable
from typing import Any, cast

import orjson
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.protocol import State
from websockets.uri import parse_uri

#: Called for every event: (name, args) → the ack's args if the server asked for one.
EventHandler = Callable[[str, list[Any]], list[Any] | None]


class ConnectRefused(RuntimeError):
    """The websocket or the namespace connect was refused (`44`), or the answer was odd."""


def _ignore(name: str, args: list[Any]) -> list[Any] | None:
    return None


def split_ack_id(packet: bytes) -> tuple[int | None, bytes]:
    """A `42` / `43` packet → (ack id or None, JSON payload)."""
    end = 2
    while end < len(packet) and 48 <= packet[end] <= 57:  # ASCII digits
        end += 1
    return (int(packet[2:end]) if end > 2 else None), packet[end:]


def socket_url(http_url: str) -> str:
    """`http://host:port` → the Engine.IO v4 websocket endpoint."""
    base = http_url.replace("http://", "ws://", 1).rstrip("/")
    return f"{base}/socket.io/?EIO=4&transport=websocket"


class Socket(asyncio.Protocol):
    """One Socket.IO connection to namespace "/"; `on_event` runs inline for each event."""

    def __init__(self, on_event: EventHandler = _ignore) -> None:
        self.on_event = on_event
        self.sid = ""
        self._ws: ClientProtocol | None = None
        self._transport: asyncio.Transport | None = None
        self._acks: dict[int, asyncio.Future[list[Any]]] = {}
        self._ack_ids = itertools.count(1)
        #: Until the namespace answers: the websocket handshake, then the packets read so far.
        self._upgraded: asyncio.Future[None] | None = None
        self._setup: asyncio.Queue[bytes] | None = None
        self._lost: asyncio.Future[None] | None = None

    @property
    def connected(self) -> bool:
        return (
            self._ws is not None
            and self._ws.state is State.OPEN
            and self._transport is not None
            and not self._transport.is_closing()
        )

    async def connect(self, url: str, auth: dict[str, Any], timeout: float = 30) -> None:
        """Open the websocket, read the Engine.IO open packet, connect to "/" with `auth`."""
        uri = parse_uri(socket_url(url))
        self._ws = ClientProtocol(uri, max_size=None)
        self._ws.send_request(self._ws.connect())
        loop = asyncio.get_running_loop()
        self._upgraded, self._lost = loop.create_future(), loop.create_future()
        self._setup = setup = asyncio.Queue()
        try:
            async with asyncio.timeout(timeout):
                await loop.create_connection(lambda: self, uri.host, uri.port)
                await self._upgraded
                opening = await setup.get()
                if not opening.startswith(b"0"):
                    raise ConnectRefused(f"expected an Engine.IO open packet, got {opening[:80]!r}")
                self._send(b"40" + orjson.dumps(auth))
                early: list[bytes] = []
                answer = await setup.get()
                while answer and not answer.startswith((b"40", b"44")):
                    early.append(answer)  # the hub's connect handler emitted first
                    answer = await setup.get()
        except BaseException:
            if self._transport is not None:
                self._transport.abort()  # as a client that gave up: the socket goes away
            raise
        if not answer.startswith(b"40"):
            raise ConnectRefused(answer[:200].decode(errors="replace"))
        self.sid = orjson.loads(answer[2:]).get("sid", "")
        for packet in early:
            self._packet(packet)

    def emit(self, event: str, *args: Any) -> None:
        """Send an event without an ack: one frame written to the socket now."""
        self._send(b"42" + orjson.dumps([event, *args]))

    async def call(self, event: str, *args: Any, timeout: float = 30) -> list[Any]:
        """Send an event with an ack id and wait for the server's ack arguments."""
        ack_id = next(self._ack_ids)
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._acks[ack_id] = future
        try:
            self._send(b"42%d" % ack_id + orjson.dumps([event, *args]))
            async with asyncio.timeout(timeout):
                return await future
        finally:
            self._acks.pop(ack_id, None)

    async def close(self, timeout: float = 5) -> None:
        """Disconnect from "/", close the websocket and wait for the TCP close."""
        if self._ws is None or self._transport is None or self._lost is None:
            return
        if self.connected:
            self._send(b"41")
            self._ws.send_close()
            self._flush()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._lost), timeout)
        self._transport.abort()

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass
        self._flush()  # the HTTP upgrade request

    def data_received(self, data: bytes) -> None:
        assert self._ws is not None
        self._ws.receive_data(data)
        for event in self._ws.events_received():
            if isinstance(event, Frame):
                if event.opcode is Opcode.TEXT:
                    self._packet(bytes(event.data))
            elif (
                isinstance(event, Response)
                and self._upgraded is not None
                and not self._upgraded.done()  # a connect that timed out
            ):
                if self._ws.handshake_exc is not None:
                    self._upgraded.set_exception(ConnectRefused(str(self._ws.handshake_exc)))
                else:
                    self._upgraded.set_result(None)
        self._flush()  # websocket pongs and close frames

    def eof_received(self) -> bool | None:
        if self._ws is not None:
            self._ws.receive_eof()
            self._flush()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(None)
        if self._setup is not None:
            self._setup.put_nowait(b"")  # connect() sees the answer missing
        for future in (self._upgraded, *self._acks.values()):
            if future is not None and not future.done():
                future.set_exception(ConnectionError("socket closed"))

    # Engine.IO / Socket.IO

    def _packet(self, data: bytes) -> None:
        if data == b"2":
            self._send(b"3")
        elif self._setup is not None:
            self._setup.put_nowait(data)
            if data.startswith((b"40", b"44")):
                self._setup = None  # later events go to on_event
        elif data.startswith(b"42"):
            ack_id, payload = split_ack_id(data)
            args = orjson.loads(payload)
            reply = self.on_event(args[0], args[1:])
            if ack_id is not None:
                self._send(b"43%d" % ack_id + orjson.dumps(reply or []))
        elif data.startswith(b"43"):
            ack_id, payload = split_ack_id(data)
            future = self._acks.get(ack_id) if ack_id is not None else None
            if future is not None and not future.done():
                future.set_result(orjson.loads(payload))
        elif data in (b"41", b"1") and self._transport is not None:
            self._transport.close()  # the server disconnected us

    def _send(self, packet: bytes) -> None:
        assert self._ws is not None
        self._ws.send_text(packet)
        self._flush()

    def _flush(self) -> None:
        if self._ws is None or self._transport is None:
            return
        for chunk in self._ws.data_to_send():
            if chunk:
                self._transport.write(chunk)
            elif self._transport.can_write_eof():
                self._transport.write_eof()  # the websocket closed: half-close TCP
