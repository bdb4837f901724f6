"""The drone's outbox: every drone→hub event, in order, kept while the hub is unreachable.

Consecutive text deltas of one kind (and one subagent) are merged for up to a short
window before they become one event; any other event first flushes the pending text,
so the order across kinds is kept.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any

import socketio

from gadget.protocol import DroneEvent

__all__ = ["Outbox"]

logger = logging.getLogger(__name__)

#: Text events that are merged, and the payload field of the subagent ones.
TEXT_FIELD: dict[str, str | None] = {
    DroneEvent.THINKING: None,
    DroneEvent.RESPONSE: None,
    DroneEvent.AGENT_THINKING: "thinking",
    DroneEvent.AGENT_RESPONSE: "chunk",
}
#: Pending text larger than this is sent at once.
MAX_PENDING_CHARS = 64 * 1024


class Outbox:
    """Ordered, never-dropping queue of events, sent while the socket is connected."""

    def __init__(self, sio: socketio.AsyncClient, coalesce_ms: float) -> None:
        """Queue for `sio`; `coalesce_ms` is the text merge window (0 sends every delta)."""
        self.sio = sio
        self.window = coalesce_ms / 1000
        self._queue: deque[tuple[str, tuple[Any, ...]]] = deque()
        self._pending: tuple[str, str | None, list[str]] | None = None
        self._pending_chars = 0
        self._timer: asyncio.TimerHandle | None = None
        self._online = False
        self._wake = asyncio.Event()
        self._empty = asyncio.Event()
        self._empty.set()

    def __len__(self) -> int:
        """Events waiting to be sent (pending text counts as one)."""
        return len(self._queue) + (self._pending is not None)

    def emit(self, event: str, *args: Any) -> None:
        """Queue one event with its positional arguments."""
        self._flush_text()
        self._push(event, args)

    def text(self, event: str, content: str, agent_id: str | None = None) -> None:
        """Queue a text delta, merged with the previous one of the same kind."""
        if not content:
            return
        pending = self._pending
        if pending is not None and (pending[0], pending[1]) == (event, agent_id):
            pending[2].append(content)
        else:
            self._flush_text()
            self._pending = (event, agent_id, [content])
            if self.window > 0:
                self._timer = asyncio.get_running_loop().call_later(self.window, self._flush_text)
        self._pending_chars += len(content)
        if self.window <= 0 or self._pending_chars >= MAX_PENDING_CHARS:
            self._flush_text()

    def online(self) -> None:
        """The socket connected: start sending."""
        self._online = True
        self._wake.set()

    def offline(self) -> None:
        """The socket dropped: keep queueing."""
        self._online = False

    async def drain(self) -> None:
        """Wait until everything queued so far was handed to the socket."""
        self._flush_text()
        await self._empty.wait()

    async def run(self) -> None:
        """Send queued events in order for as long as the drone lives."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            sent = 0
            while self._online and self._queue:
                event, args = self._queue[0]
                try:
                    await self.sio.emit(event, args)
                except (socketio.exceptions.BadNamespaceError, socketio.exceptions.ConnectionError):
                    self._online = False
                    break
                except Exception:  # an event that can never be sent must not block the rest
                    logger.exception("dropping unsendable %s event", event)
                self._queue.popleft()
                sent += 1
                if sent % 64 == 0:
                    await asyncio.sleep(0)  # let the transport write
            if not self._queue and self._pending is None:
                self._empty.set()

    def _push(self, event: str, args: tuple[Any, ...]) -> None:
        self._queue.append((event, args))
        self._empty.clear()
        self._wake.set()

    def _flush_text(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        pending, self._pending, self._pending_chars = self._pending, None, 0
        if pending is None:
            return
        event, agent_id, parts = pending
        content = "".join(parts)
        field = TEXT_FIELD.get(event)
        self._push(event, (content,) if field is None else ({"agentId": agent_id, field: content},))
