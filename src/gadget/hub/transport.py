"""What each connection costs below the hub's own state: uvicorn's and engine.io's per socket.

At 1,000 drone + IDE pairs the hub's own state is under 3 KiB a pair; most of the rest
is what the transport keeps for every socket (docs/performance.md, "Memory per pair").
This module trims what it keeps after the handshake, without changing what goes on the
wire:

- :class:`LeanQueue` stands in for the two `asyncio.Queue` of every socket (uvicorn's
  received messages, engine.io's packets to send): one deque and the waiters it has,
  about 0.9 KiB instead of 3.3 KiB.
- :class:`WebSocketProtocol` is uvicorn's sans-I/O websocket protocol that forgets the
  handshake's request and response (their headers) once the socket is accepted, and
  receives through a :class:`LeanQueue`.
- :class:`EngineServer` is engine.io's server with :class:`LeanQueue` queues and no
  request-body reader kept for a websocket's lifetime (engine.io's ASGI driver defines
  a class per request for it, kept alive by the socket's environ).
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

import engineio
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

__all__ = ["EngineServer", "LeanQueue", "WebSocketProtocol"]


class LeanQueue:
    """An unbounded FIFO with `asyncio.Queue`'s methods that engine.io and uvicorn use.

    `get` may be cancelled (engine.io waits with `asyncio.wait_for`); an item is never
    lost to a cancelled getter. `task_done`/`join` count as in `asyncio.Queue`.
    """

    __slots__ = ("_getters", "_items", "_joined", "_unfinished")

    def __init__(self) -> None:
        self._items: deque[Any] = deque()
        self._getters: list[asyncio.Future[None]] | None = None
        self._unfinished = 0
        self._joined: asyncio.Future[None] | None = None

    def qsize(self) -> int:
        return len(self._items)

    def empty(self) -> bool:
        return not self._items

    def put_nowait(self, item: Any) -> None:
        self._items.append(item)
        self._unfinished += 1
        self._wake_one()

    async def put(self, item: Any) -> None:
        self.put_nowait(item)

    def get_nowait(self) -> Any:
        if not self._items:
            raise asyncio.QueueEmpty
        return self._items.popleft()

    async def get(self) -> Any:
        while not self._items:
            waiter = asyncio.get_running_loop().create_future()
            if self._getters is None:
                self._getters = []
            self._getters.append(waiter)
            try:
                await waiter
            except BaseException:
                if waiter in self._getters:
                    self._getters.remove(waiter)
                if self._items and not waiter.cancelled():
                    self._wake_one()  # woken, then cancelled: the item is the next getter's
                raise
        return self._items.popleft()

    def task_done(self) -> None:
        if self._unfinished <= 0:
            raise ValueError("task_done() called too many times")
        self._unfinished -= 1
        if self._unfinished == 0 and self._joined is not None:
            if not self._joined.done():
                self._joined.set_result(None)
            self._joined = None

    async def join(self) -> None:
        if self._unfinished == 0:
            return
        if self._joined is None:
            self._joined = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._joined)

    def _wake_one(self) -> None:
        while self._getters:
            waiter = self._getters.pop(0)
            if not waiter.done():
                waiter.set_result(None)
                return


class WebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's sans-I/O websocket protocol, keeping less once the socket is open."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue = LeanQueue()  # type: ignore[assignment]

    def start_keepalive(self) -> None:
        # uvicorn calls this once, right after writing the accept response: from here on
        # the handshake's request and response (headers) are never read again. (Done here
        # rather than in `send`, which runs for every event sent.)
        del self.request, self.response
        super().start_keepalive()


class EngineServer(engineio.AsyncServer):  # type: ignore[misc]
    """engine.io's ASGI server with :class:`LeanQueue` queues and lean websocket environs."""

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

    def create_queue(self, *args: Any, **kwargs: Any) -> LeanQueue:
        return LeanQueue()
