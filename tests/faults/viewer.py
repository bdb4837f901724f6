"""What an IDE shows of a chat session, built the way the web IDE builds it, for fault tests.

A :class:`Viewer` is one IDE socket that locks a drone's chat session and keeps it
locked: after any disconnect (a hub killed, a connection cut) it connects again and
re-locks the same session, until the test closes it. Each turn it sees is a
:class:`TurnView`: `turnSnapshot` (or, when the turn ended while the socket was away, the
stored turn from REST, when newer) replaces the view, and every numbered stream event moves the
turn's cursor by its trailing `{"turnId", "seq"}`: a seq at or below the cursor is a
resend and is ignored, one beyond the next is held until the missing ones arrive (or a
snapshot covers them). So what the view holds is exactly what a person would see, and a
token lost or shown twice on the way counts in ``count_tokens(view.text(), N)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import socketio

from gadget.protocol import STREAM_EVENTS, DroneEvent, HubEvent, split_mark
from tests.harness import HubClient

__all__ = ["TurnView", "Viewer"]

logger = logging.getLogger(__name__)

#: Seconds between two attempts to connect or lock while the hub or drone is away.
RETRY_S = 0.1
#: Seconds a gap in a turn's numbering may stay open before the stored turn fills it.
GAP_FILL_S = 1.0


@dataclass
class Block:
    """One block as shown: its mode, the attempt it belongs to, and its text."""

    mode: str
    attempt: int
    text: str = ""


@dataclass
class TurnView:
    """One turn as the IDE shows it, and how the view was built."""

    turn_id: str
    #: The last stream event shown (the turn's seq as this IDE knows it).
    cursor: int = 0
    attempt: int = 1
    blocks: list[Block] = field(default_factory=list)
    #: Events beyond a gap, by seq, waiting for the missing ones.
    held: dict[int, tuple[str, tuple[Any, ...]]] = field(default_factory=dict)
    held_since: float | None = None
    #: `(success, message)` once the turn ended.
    done: tuple[bool, str | None] | None = None
    status: str = "processing"
    #: Numbered events applied, resends ignored, events that arrived beyond a gap.
    applied: int = 0
    resends: int = 0
    gaps: int = 0
    #: Snapshots received on the socket (applied or older than the view), stored turns
    #: applied from REST.
    snapshots: int = 0
    rest_fills: int = 0
    #: `(monotonic time, response characters)` of every response delta applied.
    deltas: list[tuple[float, int]] = field(default_factory=list)

    def text(self, mode: str = "responding", attempt: int | None = None) -> str:
        """The shown text of `mode` blocks (of one attempt, or all)."""
        return "".join(
            b.text for b in self.blocks if b.mode == mode and attempt in (None, b.attempt)
        )

    def deltas_between(self, start: float, end: float) -> int:
        """Response deltas applied between two `time.monotonic()` instants."""
        return sum(1 for at, _ in self.deltas if start <= at <= end)

    # -- what arrives ----------------------------------------------------------
    def replace(self, turn: dict[str, Any], *, from_rest: bool = False) -> bool:
        """A whole turn replaces the view: a snapshot always (as the web IDE does: the
        stream after it continues it exactly), a stored turn only when it is newer."""
        seq = int(turn.get("seq", 0))
        if from_rest and seq < self.cursor:
            return False
        self.cursor, self.attempt = seq, int(turn.get("retries", 0)) + 1
        self.blocks = [
            Block(b["mode"], int(b.get("attempt", 1)), b["content"])
            for b in turn.get("blocks", [])
            if isinstance(b.get("content"), str)
        ]
        self.status = str(turn.get("status", "processing"))
        if self.status != "processing":
            self.done = (self.status == "finished", turn.get("errorMessage"))
        self.held = {s: e for s, e in self.held.items() if s > seq}
        self.rest_fills += from_rest
        self._drain()
        return True

    def numbered(self, event: str, args: tuple[Any, ...], seq: int) -> None:
        """A stream event with its seq: shown once, in order."""
        if seq <= self.cursor:
            self.resends += 1
            return
        if seq > self.cursor + 1:
            self.gaps += seq not in self.held
            self.held[seq] = (event, args)
            self.held_since = self.held_since or time.monotonic()
            return
        self._show(event, args)
        self.cursor = seq
        self._drain()

    def ended(self, success: bool, message: str | None) -> None:
        """The hub ended the turn without a number (a turn its drone no longer ran)."""
        self.done = (success, message)
        self.status = "finished" if success else "error"

    def _drain(self) -> None:
        while self.cursor + 1 in self.held:
            event, args = self.held.pop(self.cursor + 1)
            self._show(event, args)
            self.cursor += 1
        self.held_since = time.monotonic() if self.held else None

    def _show(self, event: str, args: tuple[Any, ...]) -> None:
        self.applied += 1
        if event in (DroneEvent.RESPONSE, DroneEvent.THINKING) and args:
            mode = "responding" if event == DroneEvent.RESPONSE else "thinking"
            last = self.blocks[-1] if self.blocks else None
            if last is None or (last.mode, last.attempt) != (mode, self.attempt):
                last = Block(mode, self.attempt)
                self.blocks.append(last)
            last.text += str(args[0])
            if event == DroneEvent.RESPONSE:
                self.deltas.append((time.monotonic(), len(str(args[0]))))
        elif event == DroneEvent.TOOL_CALL:
            self.blocks.append(Block("tool", self.attempt, ""))
        elif event == DroneEvent.WORK_ORDER_COMPLETE and len(args) >= 2:
            self.ended(bool(args[1]), args[2] if len(args) > 2 else None)


class Viewer:
    """One IDE socket holding a drone's chat session (see the module docstring)."""

    def __init__(self, url: str, rest: HubClient, token: str, drone_id: str, project_id: str):
        """Connect to `url` (the hub, or a proxy in front of it); `rest` reads stored turns."""
        self.url, self.rest, self.token = url, rest, token
        self.drone_id, self.project_id = drone_id, project_id
        self.chat_id: str | None = None
        self.turns: dict[str, TurnView] = {}
        #: Successful locks (the first, then one per reconnect), and connections made.
        self.locks = 0
        self.connects = 0
        #: The `status` lines the hub sent (e.g. "drone box disconnected").
        self.statuses: list[str] = []
        self.sio: socketio.AsyncClient | None = None
        self._gone = asyncio.Event()
        self._locked = asyncio.Event()
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    def turn(self, turn_id: str) -> TurnView:
        """The view of `turn_id` (empty until something of it arrives)."""
        return self.turns.setdefault(turn_id, TurnView(turn_id))

    # -- life cycle ------------------------------------------------------------
    async def open(self, timeout: float = 60) -> str:
        """Connect and lock a new chat session; returns its id (kept locked until close)."""
        self._task = asyncio.create_task(self._stay(), name="viewer")
        async with asyncio.timeout(timeout):
            await self._locked.wait()
        assert self.chat_id is not None
        return self.chat_id

    async def close(self) -> None:
        """Disconnect for good."""
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self.sio is not None:
            with contextlib.suppress(Exception):
                await self.sio.disconnect()

    async def wait_locked(self, count: int, timeout: float = 60) -> None:
        """Until the session was locked `count` times in all (re-locks after reconnects)."""
        await self._until(lambda: self.locks >= count, timeout)

    async def prompt(self, text: str) -> str:
        """Submit a prompt in the locked session; the new turn's id."""
        assert self.sio is not None
        ok, turn_id = await self.sio.call("submitPrompt", (text,), timeout=30)
        assert ok is True, turn_id
        self.turn(turn_id)
        return str(turn_id)

    async def call(self, event: str, *args: Any) -> Any:
        """Emit `event` with an ack on the current socket; the ack's arguments."""
        assert self.sio is not None
        return await self.sio.call(event, args, timeout=30)

    async def wait(self, pred: Callable[[], bool], timeout: float = 60) -> None:
        """Until `pred()` holds (checked on every event; gaps are filled meanwhile)."""
        await self._until(pred, timeout)

    async def wait_done(self, turn_id: str, timeout: float = 120) -> TurnView:
        """The view of `turn_id` once it ended."""
        view = self.turn(turn_id)
        await self._until(lambda: view.done is not None and not view.held, timeout)
        return view

    async def _until(self, pred: Callable[[], bool], timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while not pred():
                if self._task is not None and self._task.done():
                    self._task.result()  # the viewer's loop failed: say why
                    raise RuntimeError("the viewer was closed")
                self._changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), GAP_FILL_S / 2)
                await self._fill_old_gaps()

    # -- the socket ------------------------------------------------------------
    async def _stay(self) -> None:
        """Connect and lock, wait for the socket to drop, again, until closed."""
        while not self._closing:
            self._gone.clear()
            sio = socketio.AsyncClient(reconnection=False, logger=False, engineio_logger=False)
            sio.on("*", handler=self._event)
            sio.on("disconnect", handler=self._disconnected)
            self.sio = sio
            try:
                await sio.connect(
                    self.url, auth={"token": self.token}, transports=["websocket"], wait_timeout=5
                )
                self.connects += 1
                await self._lock(sio)
            except Exception as exc:  # a hub that is down, starting or going away
                logger.info("viewer: %r; again in %.1fs", exc, RETRY_S)
                with contextlib.suppress(Exception):
                    await sio.disconnect()
                await asyncio.sleep(RETRY_S)
                continue
            await self._gone.wait()
            with contextlib.suppress(Exception):
                await sio.disconnect()

    async def _lock(self, sio: socketio.AsyncClient) -> None:
        """Lock the session (a new one the first time), retrying while the drone is away."""
        while sio.connected:
            chat = {"_id": self.chat_id} if self.chat_id else None
            ack = await sio.call(
                "requestSessionLock",
                ({"_id": self.drone_id}, {"_id": self.project_id}, chat),
                timeout=15,
            )
            if ack and ack[0] is True:
                self.chat_id = str(ack[1])
                self.locks += 1
                self._locked.set()
                await self._after_relock()
                return
            await asyncio.sleep(RETRY_S)  # the drone is not back yet (offline), or a DB hiccup
        raise socketio.exceptions.ConnectionError("disconnected while locking")

    async def _after_relock(self) -> None:
        """A turn that ended while away got no snapshot: the stored turn fills it (as the
        web IDE's history does)."""
        for view in list(self.turns.values()):
            if view.done is None:
                before = view.snapshots
                await asyncio.sleep(0)  # a snapshot sent before the lock's ack is handled first
                if view.snapshots == before:
                    await self._fill(view)
        self._changed.set()

    async def _disconnected(self, *_: Any) -> None:
        self._gone.set()
        self._changed.set()

    async def _event(self, event: str, *raw: Any) -> None:
        if event == DroneEvent.STATUS and raw:
            self.statuses.append(str(raw[0]))
        if event in (HubEvent.TURN_SNAPSHOT, HubEvent.TURN_STARTED) and raw:
            turn = raw[0]
            view = self.turn(str(turn["_id"]))
            if event == HubEvent.TURN_SNAPSHOT:
                view.snapshots += 1
                view.replace(turn)
        elif event in STREAM_EVENTS:
            args, marked = split_mark(raw)
            if marked is not None:
                self.turn(marked[0]).numbered(event, args, marked[1])
            elif event == DroneEvent.WORK_ORDER_COMPLETE and len(args) >= 2:
                self.turn(str(args[0])).ended(bool(args[1]), args[2] if len(args) > 2 else None)
        self._changed.set()

    # -- the stored turn -------------------------------------------------------
    async def _fill(self, view: TurnView) -> None:
        """Apply the stored turn if it is ahead of the view (the hub may be away: skip)."""
        try:
            r = await self.rest.http.get(
                f"/api/turns/{view.turn_id}", headers=self.rest.bearer(self.token)
            )
        except httpx.TransportError:
            return
        if r.status_code == 200:
            turn = r.json()
            if int(turn.get("seq", 0)) > view.cursor or (
                turn.get("status") != "processing" and view.done is None
            ):
                view.replace(turn, from_rest=True)

    async def _fill_old_gaps(self) -> None:
        now = time.monotonic()
        for view in list(self.turns.values()):
            if view.held_since is not None and now - view.held_since > GAP_FILL_S:
                await self._fill(view)
