"""The drone's outbox: every drone→hub event in order, and every stream event until it is stored.

Consecutive text deltas of one kind (and one subagent) are merged for up to a short
window before they become one event; any other event first flushes the pending text,
so the order across kinds is kept. Then each stream event of the running turn is
numbered (`{"turnId", "seq"}` as a trailing argument, seq = 1, 2, 3… per turn, after
coalescing: the unit the hub deduplicates is the event actually sent).

A numbered event is kept after it is sent, until the hub's `streamAck(turnId, seq)`
says it is stored; after a reconnect (or when the hub asks, for a gap) every kept
event is sent again, in order, and the hub applies each once. Other events (status,
logs, modes) are sent once. Kept events are bounded in bytes: past the bound,
:meth:`Outbox.room` makes the model stream wait instead of growing or dropping.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import socketio

from gadget.protocol import STREAM_EVENTS, DroneEvent, mark

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


@dataclass(eq=False)
class _Entry:
    event: str
    args: tuple[Any, ...]
    turn_id: str | None = None
    seq: int = 0
    size: int = 0


def _size(args: Iterable[Any]) -> int:
    return 64 + sum(len(a) if isinstance(a, str) else 64 for a in args)


class Outbox:
    """Ordered queue of the drone's events; stream events kept until acknowledged."""

    def __init__(
        self, sio: socketio.AsyncClient, coalesce_ms: float, max_unacked_bytes: int = 32 << 20
    ) -> None:
        """Queue for `sio`; `coalesce_ms` is the text merge window (0 sends every delta)."""
        self.sio = sio
        self.window = coalesce_ms / 1000
        self.max_unacked_bytes = max_unacked_bytes
        self._pending: deque[_Entry] = deque()  # not yet sent on this connection
        self._unacked: deque[_Entry] = deque()  # sent, numbered, not yet acknowledged
        self._acked: dict[str, int] = {}
        self._text: tuple[str, str | None, list[str]] | None = None
        self._text_chars = 0
        self._timer: asyncio.TimerHandle | None = None
        self._turn: str | None = None
        self._seq = 0
        self.unacked_bytes = 0
        self._online = False
        self._paused = False
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._room = asyncio.Event()
        self._room.set()
        self._ack_waiters: list[tuple[str, int, asyncio.Future[None]]] = []

    def __len__(self) -> int:
        """Events not yet acknowledged or sent (pending text counts as one)."""
        return len(self._pending) + len(self._unacked) + (self._text is not None)

    # -- the turn being numbered ----------------------------------------------
    def begin_turn(self, turn_id: str, applied_seq: int) -> None:
        """Number the stream events that follow as turn `turn_id`, after `applied_seq`."""
        self._flush_text()
        self._turn, self._seq = turn_id, applied_seq
        self._acked[turn_id] = max(self._acked.get(turn_id, 0), applied_seq)

    def end_turn(self) -> tuple[str, int] | None:
        """Stop numbering; the turn and the seq of its last event (None: it sent none)."""
        self._flush_text()
        ended = (self._turn, self._seq) if self._turn is not None else None
        self._turn = None
        return ended

    def holding(self) -> tuple[str, int] | None:
        """The turn whose events the drone still holds (running, or not all acknowledged),
        and its last seq: what the drone says it runs when it connects."""
        if self._turn is not None:
            return self._turn, self._seq
        for entry in reversed([*self._unacked, *self._pending]):
            if entry.turn_id is not None:
                return entry.turn_id, entry.seq
        return None

    # -- queueing --------------------------------------------------------------
    def emit(self, event: str, *args: Any) -> None:
        """Queue one event with its positional arguments."""
        self._flush_text()
        self._push(event, args)

    def text(self, event: str, content: str, agent_id: str | None = None) -> None:
        """Queue a text delta, merged with the previous one of the same kind."""
        if not content:
            return
        pending = self._text
        if pending is not None and (pending[0], pending[1]) == (event, agent_id):
            pending[2].append(content)
        else:
            self._flush_text()
            self._text = (event, agent_id, [content])
            if self.window > 0:
                self._timer = asyncio.get_running_loop().call_later(self.window, self._flush_text)
        self._text_chars += len(content)
        if self.window <= 0 or self._text_chars >= MAX_PENDING_CHARS:
            self._flush_text()

    async def room(self) -> None:
        """Wait while the events kept for acknowledgement exceed their bound (backpressure)."""
        while not self._room.is_set():
            await self._room.wait()

    def _push(self, event: str, args: tuple[Any, ...]) -> None:
        entry = _Entry(event, args)
        if event in STREAM_EVENTS and self._turn is not None:
            self._seq += 1
            entry.turn_id, entry.seq, entry.size = self._turn, self._seq, _size(args)
            entry.args = (*args, mark(self._turn, self._seq))
            self.unacked_bytes += entry.size
            if self.unacked_bytes > self.max_unacked_bytes:
                self._room.clear()
        self._pending.append(entry)
        self._idle.clear()
        self._wake.set()

    def _flush_text(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        pending, self._text, self._text_chars = self._text, None, 0
        if pending is None:
            return
        event, agent_id, parts = pending
        content = "".join(parts)
        field = TEXT_FIELD.get(event)
        self._push(event, (content,) if field is None else ({"agentId": agent_id, field: content},))

    # -- the hub's answers -----------------------------------------------------
    def ack(self, turn_id: str, seq: int) -> None:
        """The hub stored every event of `turn_id` up to `seq`: forget them."""
        self._acked[turn_id] = max(self._acked.get(turn_id, 0), seq)
        self._release()

    def discard(self, turn_id: str) -> None:
        """The hub will never take these: forget every event of `turn_id`."""
        self._acked[turn_id] = 2**62
        for queue in (self._pending, self._unacked):
            kept = [e for e in queue if e.turn_id != turn_id]
            self.unacked_bytes -= sum(e.size for e in queue if e.turn_id == turn_id)
            queue.clear()
            queue.extend(kept)
        if self._turn == turn_id:
            self._turn = None
        self._release()

    def resend(self, turn_id: str, expected: int, delay: float) -> None:
        """The hub did not apply an event (a gap, or it is full): send the kept ones again
        after `delay` seconds, from the oldest not acknowledged."""
        if self._paused:
            return
        self._paused = True
        logger.info(
            "the hub expects turn %s from seq %d: resending in %.1fs", turn_id, expected, delay
        )

        def again() -> None:
            self._paused = False
            self._rewind()

        asyncio.get_running_loop().call_later(delay, again)

    async def acked(self, turn_id: str, seq: int) -> None:
        """Wait until the hub acknowledged `turn_id` up to `seq`."""
        if self._acked.get(turn_id, 0) >= seq:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._ack_waiters.append((turn_id, seq, waiter))
        await waiter

    def _release(self) -> None:
        for queue in (self._unacked, self._pending):
            while queue and queue[0].turn_id is not None:
                entry = queue[0]
                if entry.seq > self._acked.get(entry.turn_id or "", 0):
                    break
                queue.popleft()
                self.unacked_bytes -= entry.size
        if self.unacked_bytes <= self.max_unacked_bytes:
            self._room.set()
        ready = [w for w in self._ack_waiters if self._acked.get(w[0], 0) >= w[1]]
        for item in ready:
            self._ack_waiters.remove(item)
            if not item[2].done():
                item[2].set_result(None)
        self._settle()

    # -- the connection --------------------------------------------------------
    def online(self) -> None:
        """The socket connected: send every kept event again, then the rest."""
        self._online = True
        self._rewind()

    def offline(self) -> None:
        """The socket dropped: keep queueing."""
        self._online = False

    def _rewind(self) -> None:
        if self._unacked:
            self._pending.extendleft(reversed(self._unacked))
            self._unacked.clear()
        self._wake.set()

    async def drain(self) -> None:
        """Wait until every event queued so far is sent, and every stream event stored."""
        self._flush_text()
        await self._idle.wait()

    def _settle(self) -> None:
        if not self._pending and not self._unacked and self._text is None:
            self._idle.set()

    async def run(self) -> None:
        """Send queued events in order for as long as the drone lives."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            sent = 0
            while self._online and not self._paused and self._pending:
                entry = self._pending[0]
                try:
                    await self.sio.emit(entry.event, entry.args)
                except (socketio.exceptions.BadNamespaceError, socketio.exceptions.ConnectionError):
                    self._online = False
                    break
                except Exception:  # an event that can never be sent must not block the rest
                    logger.exception("dropping unsendable %s event", entry.event)
                    if self._pending and self._pending[0] is entry:
                        self._pending.popleft()
                        self.unacked_bytes -= entry.size
                    continue
                if self._pending and self._pending[0] is entry:
                    self._pending.popleft()
                    if entry.turn_id is not None:
                        self._unacked.append(entry)
                sent += 1
                if sent % 64 == 0:
                    await asyncio.sleep(0)  # let the transport write
            self._settle()
