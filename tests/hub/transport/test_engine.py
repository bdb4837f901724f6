"""hub/transport/engine.py: one task per websocket, packets written in order as they are sent.

Most tests serve a bare :class:`EngineServer` with uvicorn and the hub's websocket
protocol, and talk to it with a raw websocket client speaking engine.io's wire format
(`0` open, `1` close, `2` ping, `3` pong, `4` message), so what the peer does (read
nothing, answer no ping, send too much) is up to the test.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import engineio
import pytest
import uvicorn
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from gadget.hub.server import start
from gadget.hub.transport import EngineServer, LeanQueue, LeanSocket, WebSocketProtocol
from tests.harness import HubHarness

#: Tasks engine.io would run for every websocket (its reader's, writer's and ping's).
_PER_SOCKET_TASKS = ("websocket_wait", "writer", "_send_ping", "AsyncSocket.poll")


@dataclass
class Engine:
    eio: EngineServer
    url: str
    events: asyncio.Queue[tuple[Any, ...]] = field(default_factory=asyncio.Queue)
    ticks: int = 0  # loop iterations seen by a ticker task

    async def next(self, kind: str) -> tuple[Any, ...]:
        async with asyncio.timeout(10):
            while True:
                event = await self.events.get()
                if event[0] == kind:
                    return event

    def socket(self, sid: str) -> LeanSocket:
        sock = self.eio.sockets[sid]
        assert isinstance(sock, LeanSocket)
        return sock


@asynccontextmanager
async def serving(**options: Any) -> AsyncIterator[Engine]:
    eio = EngineServer(async_mode="asgi", **options)
    config = uvicorn.Config(
        engineio.ASGIApp(eio),
        host="127.0.0.1",
        port=0,
        ws=WebSocketProtocol,
        ws_ping_interval=None,
        ws_per_message_deflate=False,  # as the hub (gadget.hub.server)
        log_config=None,
        lifespan="off",
    )
    server = uvicorn.Server(config)
    serve = await start(server)
    assert server.started, serve.result()
    port = server.servers[0].sockets[0].getsockname()[1]
    engine = Engine(eio, f"ws://127.0.0.1:{port}/engine.io/?EIO=4&transport=websocket")

    @eio.on("connect")  # type: ignore[misc]
    async def on_connect(sid: str, environ: Any) -> None:
        engine.events.put_nowait(("connect", sid))

    @eio.on("disconnect")  # type: ignore[misc]
    async def on_disconnect(sid: str, reason: Any = None) -> None:
        engine.events.put_nowait(("disconnect", sid))

    @eio.on("message")  # type: ignore[misc]
    async def on_message(sid: str, data: Any) -> None:
        engine.events.put_nowait(("message", sid, data, engine.ticks))

    async def tick() -> None:
        while True:
            engine.ticks += 1
            await asyncio.sleep(0)

    ticker = asyncio.create_task(tick())
    try:
        yield engine
    finally:
        ticker.cancel()
        server.should_exit = True
        await serve


async def opened(
    engine: Engine, receive_buffer: int | None = None, **client: Any
) -> tuple[ClientConnection, str]:
    """A raw websocket client, open; `receive_buffer` fixes its kernel buffer (no autotuning)."""
    if receive_buffer is not None:
        raw = socket.socket()
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        raw.setblocking(False)
        port = int(engine.url.split(":")[2].split("/")[0])
        await asyncio.get_running_loop().sock_connect(raw, ("127.0.0.1", port))
        client["sock"] = raw
    ws = await connect(engine.url, **client)
    first = await ws.recv()
    assert isinstance(first, str) and first.startswith("0")
    (_, sid) = await engine.next("connect")
    assert json.loads(first[1:])["sid"] == sid
    return ws, sid


def engine_tasks() -> list[str]:
    names = [t.get_coro().__qualname__ for t in asyncio.all_tasks()]  # type: ignore[union-attr]
    return [n for n in names if any(part in n for part in _PER_SOCKET_TASKS)]


async def test_packets_go_out_in_order_with_no_task_of_their_own() -> None:
    async with serving() as engine:
        ws, sid = await opened(engine)
        for i in range(200):
            await engine.eio.send(sid, f"m{i}")
        assert [await ws.recv() for _ in range(200)] == [f"4m{i}" for i in range(200)]
        assert engine.socket(sid)._writer is None
        assert engine_tasks() == []
        await ws.close()
        await engine.next("disconnect")


async def test_a_peer_that_stops_reading_holds_up_no_sender_and_loses_nothing() -> None:
    async with serving() as engine:
        slow, slow_sid = await opened(engine, receive_buffer=16384, max_queue=1)
        fast, fast_sid = await opened(engine)
        payload = "x" * 8192
        for i in range(2000):  # 16 MB: more than the kernel's buffers hold (4 MB sending)
            await engine.eio.send(slow_sid, f"{i}:{payload}")
        sock = engine.socket(slow_sid)
        writer = sock._writer
        assert writer is not None  # the transport pushed back: a writer waits for it
        await engine.eio.send(fast_sid, "meanwhile")  # the sender was not held up...
        assert await fast.recv() == "4meanwhile"  # ...nor the other peer
        got = [await slow.recv() for _ in range(2000)]
        assert got == [f"4{i}:{payload}" for i in range(2000)]
        await engine.eio.send(slow_sid, "after")
        assert await slow.recv() == "4after"
        await asyncio.wait_for(writer, 10)  # caught up: written inline from here on
        assert sock._writer is None
        await engine.eio.send(slow_sid, "inline")
        assert sock._writer is None and await slow.recv() == "4inline"
        await slow.close()
        await fast.close()


async def test_a_peer_that_answers_no_ping_is_closed() -> None:
    async with serving(ping_interval=0.2, ping_timeout=0.2) as engine:
        ws, sid = await opened(engine)
        assert await ws.recv() == "2"  # a ping, never answered
        await engine.next("disconnect")
        with pytest.raises(ConnectionClosed):
            async with asyncio.timeout(10):
                while True:
                    await ws.recv()
        assert engine_tasks() == []


async def test_a_peer_that_answers_pings_stays() -> None:
    async with serving(ping_interval=0.1, ping_timeout=0.5) as engine:
        ws, sid = await opened(engine)
        for _ in range(8):  # eight intervals, each ping answered
            assert await asyncio.wait_for(ws.recv(), 5) == "2"
            await ws.send("3")
        assert sid in engine.eio.sockets and engine.events.empty()
        await ws.send("4still here")
        assert (await engine.next("message"))[2] == "still here"
        await ws.close()
        await engine.next("disconnect")


async def test_closing_a_socket_sends_close_then_ends_its_websocket() -> None:
    async with serving() as engine:
        ws, sid = await opened(engine)
        await engine.eio.send(sid, "last")
        await engine.eio.disconnect(sid)
        assert await ws.recv() == "4last"
        assert await ws.recv() == "1"
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 10)
        await engine.next("disconnect")
        assert engine.events.empty()  # one disconnect


async def test_a_burst_is_handled_one_packet_per_turn_of_the_loop() -> None:
    async with serving() as engine:
        ws, sid = await opened(engine)
        for i in range(50):  # one write each; the server reads them in a few reads
            await ws.send(f"4b{i}")
        got = [await engine.next("message") for _ in range(50)]
        assert [g[2] for g in got] == [f"b{i}" for i in range(50)]
        ticks = [g[3] for g in got]
        assert all(a < b for a, b in itertools.pairwise(ticks)), ticks
        await ws.close()


async def test_a_packet_over_the_limit_ends_the_connection() -> None:
    async with serving(max_http_buffer_size=1000) as engine:
        ws, sid = await opened(engine)
        await ws.send("4" + "x" * 2000)
        await engine.next("disconnect")
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 10)


async def test_an_open_hub_socket_is_lean(hub: HubHarness) -> None:
    token = await hub.signup("ada")
    ide = await hub.ide(token)
    try:
        protocols = [
            c for c in hub.server.server_state.connections if isinstance(c, WebSocketProtocol)
        ]
        assert len(protocols) == 1
        (proto,) = protocols
        assert not hasattr(proto, "request") and not hasattr(proto, "response")
        assert isinstance(proto.queue, LeanQueue)
        eio = hub.hub.sio.eio
        assert isinstance(eio, EngineServer)
        (sock,) = eio.sockets.values()
        assert isinstance(sock, LeanSocket) and isinstance(sock.queue, LeanQueue)
        assert hub.hub.sio.environ[sock.sid]["wsgi.input"] is None
        assert await hub.create_project(token)  # REST on the same server still answers
        assert await ide.call("noSuchEvent") is not None  # the socket carries events both ways
        assert engine_tasks() == []
    finally:
        await ide.close()
