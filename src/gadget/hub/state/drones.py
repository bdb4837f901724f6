"""The owner of every drone's state: the only code that changes a lease, a drone's
presence, or which live turn a drone's socket streams into.

A drone is in one of five phases, derived from whether its socket is connected and
from its lease row (store/leases.py):

    offline ──connect──▶ idle ──lock──▶ locked ──claim──▶ busy
       ▲                  ▲  ◀─release──  ▲  ◀───end────   │
       │                  │               │                │ disconnect
       └──── grace expires (the turn ends "drone disconnected") ◀── grace ◀┘
                                                         (connect: busy again)

Each transition is one method here: a conditional UPDATE of the lease run by the
hub's writer (so it lands after the stream it follows), and its in-memory side,
applied the moment it commits. The services (sessions, work orders, recovery) ask
for transitions and never edit state themselves; nothing here assumes the other
end of a lease is on this node (leases and presence are shared backends).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from gadget.config import Settings
from gadget.hub.exceptions import Refused, Unavailable
from gadget.hub.sockets.rate import Bucket
from gadget.hub.state.presence import Presence
from gadget.hub.stream.live import LiveTurn
from gadget.hub.stream.recorder import Recorder
from gadget.hub.stream.writer import Writer
from gadget.protocol import TurnOut, TurnStatus, WorkspaceMode
from gadget.store import leases
from gadget.store.leases import Lease
from gadget.store.repository import Store, fresh_turn_out, touch_drone
from gadget.store.tables import ChatSession, ChatTurn, utcnow

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Most usernames kept for drone views (past it the cache starts again).
MAX_NAMES = 100_000


class Phase(StrEnum):
    """Where a drone is in its life cycle."""

    OFFLINE = "offline"
    IDLE = "idle"
    LOCKED = "locked"
    BUSY = "busy"
    GRACE = "grace"


def phase_of(online: bool, lease: Lease | None) -> Phase:
    """The phase of a drone from its presence and its lease."""
    turn = lease is not None and lease.current_turn_id is not None
    if not online:
        return Phase.GRACE if turn else Phase.OFFLINE
    if turn:
        return Phase.BUSY
    return Phase.LOCKED if lease is not None and lease.chat_session_id else Phase.IDLE


@dataclass(frozen=True)
class Hello:
    """What a drone said about itself when it connected (its handshake `auth`)."""

    #: A random id of the drone process: two processes with one drone id differ here.
    instance: str | None = None
    pid: int | None = None
    hostname: str | None = None
    #: Whether the drone says what it runs at all (reference drones do not).
    says_running: bool = False
    #: The turn whose events the drone still holds (running, or unacknowledged), and its seq.
    running: tuple[str, int] | None = None
    #: A turn a crashed process of this drone left in its cache (it will ask to recover it).
    recovering: str | None = None
    #: What the IDE shows about it: model, sandbox...
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(eq=False)
class Hold:
    """What this node holds of a drone whether or not its socket is here now.

    The lease epoch it took (0: none; what it applied is written while the lease still
    names it at this epoch) and the live turn it records for the drone.
    """

    epoch: int = 0
    live: LiveTurn | None = None


@dataclass(eq=False)
class DroneState:
    """A drone whose socket is connected to this node."""

    drone_id: str
    owner_id: str
    name: str
    sid: str
    hello: Hello
    hold: Hold
    mode: WorkspaceMode = WorkspaceMode.IDLE
    #: Its socket's event rate (sockets/base.py creates it at the first event).
    bucket: Bucket | None = None

    @property
    def epoch(self) -> int:
        """The lease epoch this node holds for the drone."""
        return self.hold.epoch

    @property
    def live(self) -> LiveTurn | None:
        """The turn this drone streams into, recorded here."""
        return self.hold.live

    @live.setter
    def live(self, value: LiveTurn | None) -> None:
        self.hold.live = value

    #: Turns the drone sent stale events for, already answered (ack or discard).
    stale: set[str] = field(default_factory=set)
    #: Until when unnumbered events with no turn are dropped without a lease lookup.
    quiet_until: float = 0.0


@dataclass(frozen=True)
class Taken:
    """The result of a drone connecting: its state, and its lease as it was before."""

    state: DroneState
    before: Lease
    #: The socket of another process with this drone's id that it replaced (on this node).
    replaced_sid: str | None


class Drones:
    """The owner of drone state (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        writer: Writer,
        recorder: Recorder,
        presence: Presence,
    ) -> None:
        self._settings = settings
        self._store = store
        self._writer = writer
        self._recorder = recorder
        self.presence = presence
        self.node = presence.node
        self._by_sid: dict[str, DroneState] = {}
        self._here: dict[str, DroneState] = {}
        #: Each drone's hold, kept after its socket leaves until another node takes it.
        self._holds: dict[str, Hold] = {}
        #: Usernames by user id, for the lock's holder in each drone's view.
        self._names: dict[str, str] = {}
        recorder.bind(self.epoch_of)

    # -- lookups (no I/O) ------------------------------------------------------
    def by_sid(self, sid: str) -> DroneState | None:
        """The drone whose socket is `sid` on this node."""
        return self._by_sid.get(sid)

    def here(self, drone_id: str) -> DroneState | None:
        """The drone `drone_id` if its socket is on this node."""
        return self._here.get(drone_id)

    def epoch_of(self, drone_id: str) -> int | None:
        """The lease epoch this node holds for `drone_id`, or None."""
        hold = self._holds.get(drone_id)
        return hold.epoch if hold is not None and hold.epoch else None

    def lost(self, drone_id: str, epoch: int) -> None:
        """A write at `epoch` was fenced: another node took the drone's lease."""
        hold = self._holds.get(drone_id)
        if hold is not None and hold.epoch == epoch:
            hold.epoch = 0
            if hold.live is not None:
                self._recorder.drop(hold.live.id, "another node took its drone")
                hold.live = None

    def __len__(self) -> int:
        return len(self._by_sid)

    def live(self, turn_id: str) -> LiveTurn | None:
        """The live turn `turn_id` if this node records it."""
        return self._recorder.get(turn_id)

    def live_of(self, chat_session_id: str) -> dict[str, TurnOut]:
        """Snapshots of the live turns of `chat_session_id` recorded here, by id."""
        return self._recorder.snapshots_of(chat_session_id)

    async def lease(self, drone_id: str) -> Lease | None:
        """The drone's lease as stored now."""
        async with self._store.connect() as conn:
            return await leases.read(conn, drone_id)

    async def leases(self, drone_ids: list[str]) -> dict[str, Lease]:
        """Several drones' leases."""
        async with self._store.connect() as conn:
            return await leases.read_many(conn, drone_ids)

    # -- transitions -----------------------------------------------------------
    async def _run(
        self,
        fn: Callable[[AsyncSession], Awaitable[T]],
        on_commit: Callable[[T], None] | None = None,
        *,
        keep: bool = False,
    ) -> T:
        return await self._writer.transact(
            fn, timeout=self._settings.db_timeout_s, on_commit=on_commit, keep=keep
        )

    def seen(self, drone_id: str, hostname: str | None = None) -> None:
        """Store, best effort and without waiting, that the drone was seen now."""
        self._writer.later(lambda s: touch_drone(s, drone_id, hostname))

    async def connect(
        self, drone_id: str, owner_id: str, name: str, sid: str, hello: Hello
    ) -> Taken:
        """offline/grace → idle/locked/busy: the drone's socket `sid` is on this node.

        The lease names this node at a new epoch; a live turn this node still records
        for the drone is kept only if no other node held the drone in between.
        """
        old = self._here.get(drone_id)
        replaced = old.sid if old is not None and old.sid != sid else None
        if old is not None:
            self._by_sid.pop(old.sid, None)
        hold = self._holds.setdefault(drone_id, Hold())
        state = DroneState(drone_id, owner_id, name, sid, hello, hold)
        if old is not None:
            state.mode = old.mode
        self._here[drone_id] = state
        self._by_sid[sid] = state
        held = hold.epoch

        def taken(before: Lease) -> None:
            hold.epoch = before.epoch + 1
            if hold.live is not None and not (
                before.owner_node == self.node and before.epoch == held
            ):
                self._recorder.drop(hold.live.id, "another node held the drone meanwhile")
                hold.live = None

        try:
            before = await self._run(
                lambda s: leases.take(s, drone_id, self.node, self._store.lock_rows), taken
            )
        except BaseException:
            self._forget(state)
            raise
        record = {
            **hello.info,
            "instance": hello.instance,
            "pid": hello.pid,
            "hostname": hello.hostname,
        }
        record.update(mode=state.mode.value, lastSeen=utcnow().isoformat())
        await self.presence.drone_connected(drone_id, sid, record)
        return Taken(state, before, replaced)

    async def disconnect(self, sid: str) -> DroneState | None:
        """busy → grace (or idle/locked → offline): the socket `sid` closed.

        The lease keeps naming this node (what it applied is still written); a current
        turn waits `drone_grace_s` for the drone to come back, to any node.
        """
        state = self._by_sid.pop(sid, None)
        if state is None:
            return None
        if self._here.get(state.drone_id) is not state:
            return None  # replaced by a newer socket of the drone
        del self._here[state.drone_id]
        seen = utcnow().isoformat()
        await self.presence.drone_gone(state.drone_id, sid, lastSeen=seen)
        if state.epoch:
            deadline = utcnow() + timedelta(seconds=self._settings.drone_grace_s)
            epoch = state.epoch
            try:  # kept until stored: else a turn whose drone never returns stays processing
                await self._run(
                    lambda s: leases.away(s, state.drone_id, self.node, epoch, deadline),
                    keep=True,
                )
            except Unavailable:
                logger.warning(
                    "drone %s left while the database is unavailable: its grace period "
                    "is stored once the database is back",
                    state.drone_id,
                )
        return state

    def _forget(self, state: DroneState) -> None:
        if self._by_sid.get(state.sid) is state:
            del self._by_sid[state.sid]
        if self._here.get(state.drone_id) is state:
            del self._here[state.drone_id]

    async def set_mode(self, state: DroneState, mode: WorkspaceMode) -> None:
        """The drone says its workspace mode changed."""
        state.mode = mode
        await self.presence.drone_changed(state.drone_id, state.sid, mode=mode.value)

    async def lock(
        self,
        drone_id: str,
        user_id: str,
        chat: ChatSession | None,
        project_id: str,
        permission_mode: str = "ask",
    ) -> tuple[ChatSession, Lease, Lease | None]:
        """idle/locked → locked: the drone serves `chat` (a new one of `project_id` in
        `permission_mode` when None, created only if the lock is granted) of `user_id`.

        Returns the chat session, the lease, and the lease as it was before.

        Raises:
            Refused: another user holds it, or it is busy with a turn of another session.
        """

        async def fn(s: AsyncSession) -> tuple[ChatSession, Lease, Lease | None]:
            before = await leases.read(s, drone_id, lock_row=self._store.lock_rows)
            target = chat
            if target is None:
                target = ChatSession(
                    user_id=user_id,
                    project_id=project_id,
                    drone_id=drone_id,
                    permission_mode=permission_mode,
                )
                s.add(target)
                await s.flush()
            if not await leases.lock(s, drone_id, target.id, user_id):
                if before is not None and before.user_id not in (None, user_id):
                    raise Refused("the drone is locked by another user")
                raise Refused("the drone is busy with a turn of another session")
            if target.drone_id != drone_id:
                await leases.bind_session(s, target.id, drone_id)
            lease = await leases.read(s, drone_id)
            assert lease is not None  # locked just above
            return target, lease, before

        return await self._run(fn)

    async def release(self, drone_id: str, chat_session_id: str) -> bool:
        """locked → idle; False when a turn is current or the lock is another session's."""
        return await self._run(lambda s: leases.unlock(s, drone_id, chat_session_id))

    async def ides_away(self, drone_id: str, chat_session_id: str) -> None:
        """Every IDE of the lock left: the lock ends after the grace period (never mid-turn)."""
        when = utcnow() + timedelta(seconds=self._settings.drone_grace_s)
        await self._run(lambda s: leases.set_ide_deadline(s, drone_id, chat_session_id, when))

    async def claim(
        self, drone_id: str, chat_session_id: str, user_id: str, prompt: str
    ) -> TurnOut:
        """locked → busy: a new turn for `prompt` is the drone's current one.

        Raises:
            Refused: a turn is already current, or the lock is not this session's.
        """

        async def fn(s: AsyncSession) -> ChatTurn | None:
            return await leases.claim_turn(s, drone_id, chat_session_id, user_id, prompt)

        row = await self._run(fn)
        if row is None:
            held = await self.lease(drone_id)
            if held is not None and held.chat_session_id != chat_session_id:
                raise Refused("no session lock: call requestSessionLock first")
            current = held.current_turn_id if held is not None else None
            raise Refused(f"a turn is already processing ({current}); wait or cancel it")
        turn = fresh_turn_out(row)  # nothing of it to read back: it has no blocks yet
        state = self._here.get(drone_id)
        if state is not None:
            self.attach(state, LiveTurn.resume(turn, drone_id))
        return turn

    def attach(self, state: DroneState, live: LiveTurn) -> LiveTurn:
        """The drone's socket streams into `live`, recorded here from now on."""
        if state.live is not None and state.live.id != live.id and not state.live.ended:
            self._recorder.drop(state.live.id, f"its drone moved on to turn {live.id}")
        state.live = self._recorder.add(live)
        return live

    async def adopt(self, state: DroneState, turn_id: str) -> LiveTurn | None:
        """Record here a turn the lease makes current but this node has no mirror of
        (claimed on another node, or stored before a restart); None if it is not current."""
        lease = await self.lease(state.drone_id)
        if lease is None or lease.current_turn_id != turn_id or lease.owner_node != self.node:
            return None
        if lease.drone_deadline is not None:
            await self._run(lambda s: leases.clear_drone_deadline(s, state.drone_id, turn_id))
        existing = self._recorder.get(turn_id)
        if existing is not None and not existing.ended:
            return self.attach(state, existing)
        turn = await self._store.turn_out(turn_id)
        row = await self._store.get_turn(turn_id)
        if turn is None or row is None or turn.status is not TurnStatus.PROCESSING:
            return None
        return self.attach(state, LiveTurn.resume(turn, state.drone_id, row.cancel_requested))

    def first_stale(self, state: DroneState, turn_id: str) -> bool:
        """Whether this is the first stale event of `turn_id` from this socket."""
        if turn_id in state.stale:
            return False
        state.stale.add(turn_id)
        return True

    def applied(self, live: LiveTurn, size: int) -> None:
        """An event was applied to `live` (it owes writes)."""
        self._recorder.applied(live, size)

    def end(
        self,
        state: DroneState,
        live: LiveTurn,
        seq: int,
        status: TurnStatus,
        error: str | None,
        *,
        cancelled: bool = False,
    ) -> bool:
        """busy → locked: the drone ended its turn (stored with its last events); whether
        it ended as a cancel."""
        cancelled = live.end(seq, status, error, cancelled=cancelled)
        self._recorder.applied(live, 128)
        if state.live is live:
            state.live = None
        return cancelled

    async def end_away(
        self, drone_id: str | None, turn_id: str, message: str, *, cancelled: bool = False
    ) -> bool:
        """busy/grace → locked/offline: end a turn no drone is streaming (it is away, it never
        took the work order, or it waits for a retry); whether this call ended it."""
        hold = self._holds.get(drone_id or "")
        live = hold.live if hold is not None and hold.epoch else None
        if hold is not None and live is not None and live.id == turn_id and not live.ended:
            live.end(live.seq + 1, TurnStatus.ERROR, message, cancelled=cancelled)
            self._recorder.applied(live, 128)
            hold.live = None
            return True
        self._recorder.drop(turn_id, "ended while its drone was away")
        return await self._run(
            lambda s: leases.end_turn(s, drone_id, turn_id, TurnStatus.ERROR, message, cancelled)
        )

    async def request_cancel(self, turn_id: str) -> None:
        """Remember durably that the turn is being cancelled (its end will say so)."""
        self.cancel_seen(turn_id)
        await self._run(lambda s: leases.request_cancel(s, turn_id))

    def cancel_seen(self, turn_id: str) -> None:
        """The turn is being cancelled: if this node records it, its end says so."""
        live = self._recorder.get(turn_id)
        if live is not None:
            live.cancel_requested = True

    async def retry_later(self, drone_id: str, turn_id: str, delay_s: float) -> bool:
        """The crashed drone's turn is sent again after `delay_s` (a swept deadline)."""
        when = utcnow() + timedelta(seconds=delay_s)
        return await self._run(lambda s: leases.set_retry(s, drone_id, turn_id, when))

    async def start_attempt(self, state: DroneState, turn_id: str) -> LiveTurn | None:
        """A due retry: one more attempt of the current turn, recorded here; None if the
        turn is no longer current (cancelled or ended meanwhile)."""
        if not await self._run(lambda s: leases.start_attempt(s, state.drone_id, turn_id)):
            return None
        live = state.live if state.live is not None and state.live.id == turn_id else None
        if live is None:
            turn = await self._store.turn_out(turn_id)
            row = await self._store.get_turn(turn_id)
            if turn is None or row is None:
                return None
            live = self.attach(state, LiveTurn.resume(turn, state.drone_id, row.cancel_requested))
            live.attempt = turn.retries + 1
            live.growing = None
            return live
        live.new_attempt()
        return live

    async def unclaimed(self, drone_id: str, turn_id: str, within_s: float) -> None:
        """The drone's current turn ends after `within_s` unless the drone claims it."""
        when = utcnow() + timedelta(seconds=within_s)
        await self._run(
            lambda s: leases.set_drone_deadline(s, drone_id, turn_id, when, "unclaimed")
        )

    async def note(self, drone_id: str, **fields: Any) -> None:
        """Keep a fact about the drone for the IDE's drone list (a conflict)."""
        await self.presence.drone_note(drone_id, **fields)

    # -- views -----------------------------------------------------------------
    async def views(self, drone_ids: list[str]) -> dict[str, dict[str, Any]]:
        """What the IDE's drone list shows of each drone (`droneState`, REST)."""
        records = await self.presence.drones(drone_ids)
        held = await self.leases(drone_ids)
        names = await self._usernames({lease.user_id for lease in held.values() if lease.user_id})
        return {d: _view(d, records.get(d), held.get(d), names) for d in drone_ids}

    async def view(self, drone_id: str) -> dict[str, Any]:
        """One drone's view."""
        return (await self.views([drone_id]))[drone_id]

    async def _usernames(self, user_ids: set[str]) -> dict[str, str]:
        """Usernames by id (a username never changes, so once read it is kept)."""
        out = {}
        for user_id in user_ids:
            name = self._names.get(user_id)
            if name is None:
                user = await self._store.get_user(user_id)
                if user is None:
                    continue
                if len(self._names) >= MAX_NAMES:
                    self._names.clear()
                name = self._names[user_id] = user.username
            out[user_id] = name
        return out


def _view(
    drone_id: str,
    record: dict[str, Any] | None,
    lease: Lease | None,
    usernames: dict[str, str],
) -> dict[str, Any]:
    record = record or {}
    online = bool(record.get("online"))
    locked_by = None
    if lease is not None and lease.user_id is not None and lease.chat_session_id is not None:
        locked_by = {"_id": lease.user_id, "username": usernames.get(lease.user_id, "?")}
    return {
        "_id": drone_id,
        "online": online,
        "phase": phase_of(online, lease).value,
        "workspaceMode": record.get("mode", WorkspaceMode.IDLE.value),
        "lockedBy": locked_by,
        "chatSession": lease.chat_session_id if lease is not None and locked_by else None,
        "currentTurn": lease.current_turn_id if lease is not None else None,
        "model": record.get("model"),
        "sandbox": record.get("sandbox"),
        "models": record.get("models"),
        "mcp": record.get("mcp"),
        "lastSeen": record.get("lastSeen"),
        "conflict": record.get("conflict"),
    }


def node_id() -> str:
    """A fresh id for this hub process (a node)."""
    return f"{os.uname().nodename[:40]}-{os.getpid()}-{os.urandom(3).hex()}"


__all__ = ["DroneState", "Drones", "Hello", "Phase", "Taken", "node_id", "phase_of"]
