"""A lean FIFO for the transport's per-socket queues (uvicorn's received messages, engine.io's
packets to send): one deque and the waiters it has, about 0.9 KiB instead of the 3.3 KiB of
an `asyncio.Queue` (three deques and an Event)."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

__all__ = ["LeanQueue"]


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
