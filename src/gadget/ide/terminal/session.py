"""One chat over Socket.IO: lock a drone for a session, submit prompts, show the stream.

Hub events are dispatched by a table (`_event_table`; a turn's numbered stream
events by `stream.SessionStream`'s), typed `/commands` by another
(`repl.Repl.commands`). While a lock is being taken, events are held and shown
after the session's history, so a mid-turn snapshot follows the older turns.

A dropped connection is not the end: `reconnect.Reconnector` opens a new
socket and locks the same session again; each turn's seq cursor knows what is
on screen, so the hub's snapshot (or the stored turn, when it finished
meanwhile) adds only the rest. Events held beyond a gap that nothing fills
are mended from the stored turn (`GET /api/turns/{id}`) after `GAP_WAIT_S`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import socketio
from pydantic import ValidationError

from gadget.ide.terminal.api import HubApi, Json
from gadget.ide.terminal.choose import drone_warnings
from gadget.ide.terminal.controls import Controls
from gadget.ide.terminal.exceptions import HubRefused, HubUnreachable, TerminalError
from gadget.ide.terminal.reconnect import Reconnector
from gadget.ide.terminal.render import TurnRenderer
from gadget.ide.terminal.screen import Screen
from gadget.ide.terminal.stream import SessionStream
from gadget.protocol import (
    ArgsError,
    DroneEvent,
    HubEvent,
    IdeEvent,
    LogArgs,
    TurnOut,
    TurnStatus,
    parse_args,
    split_mark,
)

logger = logging.getLogger(__name__)

#: Seconds to wait for the hub's answer to a request.
CALL_TIMEOUT = 15
#: Stored turns shown when a session is resumed.
HISTORY_TURNS = 20
#: Seconds an event may wait beyond a gap before the stored turn is fetched to mend it.
GAP_WAIT_S = 1.0
_IDE_EVENTS = {e.value for e in IdeEvent}


async def _discard(sio: socketio.AsyncClient) -> None:
    """Close what a socket that is not connected still holds (its aiohttp session).

    A failed `connect` leaves the session open, and aiohttp then logs
    "Unclosed client session" when it is collected.
    """
    await sio.eio.disconnect(abort=True)


def ack(result: Any) -> tuple[bool, Any]:
    """An ack `(success, value?)` as python-socketio returns it (a bare value when alone)."""
    if isinstance(result, list | tuple):
        return (bool(result) and result[0] is True, result[1] if len(result) > 1 else None)
    return (result is True, None)


class ChatClient:
    """The IDE socket of one terminal: its lock, its running turn and what it shows."""

    def __init__(self, api: HubApi, screen: Screen, drone: Json, project: Json) -> None:
        self.api = api
        self.screen = screen
        self.view = TurnRenderer(screen)
        self.stream = SessionStream(self.view)
        self.idle = self.stream.idle
        self.drone = drone
        self.project = project
        self.sio = socketio.AsyncClient(reconnection=False)
        self.chat_id: str | None = None
        #: Set when the chat cannot go on (`error` says why, e.g. an expired token).
        self.gone = asyncio.Event()
        self.error: TerminalError | None = None
        self.reconnector = Reconnector(self)
        self._held: list[tuple[str, tuple[Any, ...]]] | None = None
        self._quitting = False
        self._mender: asyncio.Task[None] | None = None
        self.controls = Controls(self)
        self._table = {**self._event_table(), **self.controls.events()}

    @property
    def turn_id(self) -> str | None:
        """The running turn of this session, if any."""
        return self.stream.turn_id

    def _event_table(self) -> dict[str, Callable[..., None]]:
        return {
            DroneEvent.STATUS: lambda message: self.view.note(f"· {message}"),
            DroneEvent.LOG: self.on_log,
            DroneEvent.WORKSPACE_MODE_CHANGED: lambda m: self.view.note(f"· workspace mode: {m}"),
            HubEvent.TURN_STARTED: self.on_turn_started,
            HubEvent.TURN_SNAPSHOT: self.on_snapshot,
            HubEvent.DRONE_STATE: self.on_drone_state,
            HubEvent.ERROR: self.on_error,
        }

    @property
    def connected(self) -> bool:
        """Whether the socket is connected now."""
        return bool(self.sio.connected)

    async def connect(self) -> None:
        """Connect with the user's token (`HubUnreachable` when refused)."""
        await self.open_socket()

    async def open_socket(self) -> None:
        """A new socket with the event table, connected with the user's token."""
        sio = socketio.AsyncClient(reconnection=False)
        for event in {*self._table, *self.stream.events()}:
            sio.on(event, handler=self._entry(sio, event))
        sio.on("*", handler=self._other(sio))
        sio.on("disconnect", handler=lambda *_: self._on_disconnect(sio))
        self.sio = sio
        try:
            await sio.connect(
                self.api.url,
                auth={"token": self.api.token},
                transports=["websocket"],
                wait_timeout=10,
            )
        except (socketio.exceptions.ConnectionError, OSError, TimeoutError) as exc:
            await _discard(sio)
            raise HubUnreachable(
                f"cannot open the Socket.IO connection to {self.api.url}: {exc}"
            ) from None
        except asyncio.CancelledError:
            await _discard(sio)
            raise

    async def close(self) -> None:
        """Stop reconnecting, release the lock when idle, and disconnect."""
        self._quitting = True
        await self.reconnector.stop()
        if self._mender is not None:
            self._mender.cancel()
        if self.sio.connected:
            if self.chat_id is not None and self.turn_id is None:
                try:
                    await self.call(IdeEvent.RELEASE_SESSION_LOCK)
                except HubRefused as exc:
                    logger.debug("release on exit: %s", exc)
            await self.sio.disconnect()
        await _discard(self.sio)

    def fail(self, error: TerminalError) -> None:
        """End the chat with `error` (shown by the caller of the read-eval loop)."""
        self.error = error
        self.gone.set()

    def _on_disconnect(self, sio: socketio.AsyncClient) -> None:
        if self._quitting or sio is not self.sio:
            return
        self.view.note("connection lost — reconnecting… (/quit to exit)", "yellow")
        self.reconnector.start()

    def _entry(self, sio: socketio.AsyncClient, event: str) -> Callable[..., None]:
        def entry(*args: Any) -> None:
            if sio is not self.sio:
                return  # a late event of a socket that was replaced
            if self._held is not None:
                self._held.append((event, args))
            else:
                self._dispatch(event, args)

        return entry

    def _other(self, sio: socketio.AsyncClient) -> Callable[..., None]:
        """Events of no table: a numbered one (a newer hub's) still moves its turn's cursor."""

        def other(event: str, *args: Any) -> None:
            if split_mark(args)[1] is not None:
                self._entry(sio, event)(*args)

        return other

    def _dispatch(self, event: str, args: tuple[Any, ...]) -> None:
        try:
            if event in self._table:
                self._table[event](*args)
            else:
                self.stream.dispatch(event, args)
        except (ArgsError, ValidationError, TypeError) as exc:
            self.view.note(f"ignored a malformed {event} event: {exc}", "yellow")
        except Exception:
            logger.exception("showing %s failed", event)
        if self.stream.turns.gapped() and (self._mender is None or self._mender.done()):
            self._mender = asyncio.ensure_future(self._mend())

    async def _mend(self) -> None:
        """Events wait beyond a gap that nothing filled: the stored turn is the snapshot."""
        wait = GAP_WAIT_S
        while gapped := self.stream.turns.gapped():
            await asyncio.sleep(wait)
            wait = min(wait * 2, 8 * GAP_WAIT_S)
            if self._held is not None or not self.connected:
                continue  # a lock under way brings its own snapshot
            for turn_id in gapped:
                if turn_id in self.stream.turns.gapped():
                    await self._catch_up_stored(turn_id)

    async def call(self, event: IdeEvent, *args: Any) -> Any:
        """Emit with an ack; a refusal or no answer raises `HubRefused`."""
        try:
            result = await self.sio.call(event, args, timeout=CALL_TIMEOUT)
        except socketio.exceptions.TimeoutError:
            raise HubRefused(f"the hub did not answer {event} within {CALL_TIMEOUT} s") from None
        except socketio.exceptions.BadNamespaceError:
            raise HubRefused("not connected to the hub (reconnecting…)") from None
        ok, value = ack(result)
        if not ok:
            reason = str(value or "no reason given")
            raise HubRefused(f"{event} refused: {reason}", reason)
        return value

    async def _request_lock(self, chat_id: str | None) -> str:
        ref = {"_id": chat_id} if chat_id else None
        value = await self.call(
            IdeEvent.REQUEST_SESSION_LOCK,
            {"_id": self.drone["_id"]},
            {"_id": self.project["_id"]},
            ref,
        )
        return str(value)

    async def lock(self, chat_id: str | None) -> None:
        """Lock the drone for a new (`None`) or resumed session and show its history."""
        self._held = []
        try:
            self.chat_id = await self._request_lock(chat_id)
            self.stream.reset()
            await self.controls.refresh()
            self.view.note(
                f"session {self.chat_id} · drone {self.drone['name']} · project {self.project['name']}",
                "bold blue",
            )
            self.view.note(self.controls.header(), "blue")
            for warning in drone_warnings(self.drone):
                self.view.note(warning, "bold yellow")
            if chat_id is not None:
                await self._show_history()
        finally:
            self._release_held()

    async def relock(self) -> None:
        """After a reconnect: lock the same session again and catch up on the running turn."""
        if self.chat_id is None:
            self.view.note("reconnected", "green")
            return
        self._held = []
        try:
            await self._request_lock(self.chat_id)
            self.view.note("reconnected", "green")
            try:
                await self.controls.refresh()  # the mode or model may have changed meanwhile
            except TerminalError as exc:
                logger.debug("reading the session again: %s", exc)
            snapshots = {
                str(args[0].get("_id"))
                for event, args in self._held
                if event == HubEvent.TURN_SNAPSHOT and args and isinstance(args[0], dict)
            }
            if self.turn_id is not None and self.turn_id not in snapshots:
                await self._catch_up_stored(self.turn_id)
        finally:
            self._release_held()

    async def _catch_up_stored(self, turn_id: str) -> None:
        """The stored turn as a snapshot: its rest (by seq), and its end when it ended."""
        try:
            turn = TurnOut.model_validate(await self.api.turn(turn_id))
        except (TerminalError, ValidationError) as exc:
            self.view.note(f"could not fetch turn {turn_id}: {exc}", "yellow")
            return
        if turn.chatSession != self.chat_id:
            self.stream.turns.forget(turn_id)  # a late event of the session shown before
            return
        self.stream.turn(turn)

    def _release_held(self) -> None:
        held, self._held = self._held or [], None
        for event, args in held:
            self._dispatch(event, args)

    async def _show_history(self) -> None:
        assert self.chat_id is not None
        turns = [TurnOut.model_validate(t) for t in await self.api.turns(self.chat_id)]
        done = [t for t in turns if t.status is not TurnStatus.PROCESSING]
        if len(done) > HISTORY_TURNS:
            self.view.note(f"… {len(done) - HISTORY_TURNS} earlier turns")
        for turn in done[-HISTORY_TURNS:]:
            self.view.turn(turn)

    async def submit(self, prompt: str) -> None:
        """Start a turn with `prompt` (one turn at a time)."""
        if self.turn_id is not None:
            self.view.note("a turn is running: wait for it, or /cancel it", "yellow")
            return
        self.stream.submitted = prompt
        try:
            turn_id = str(await self.call(IdeEvent.SUBMIT_PROMPT, prompt))
        except HubRefused as exc:
            self.stream.submitted = None
            raise HubRefused(f"not sent: {exc.reason}", exc.reason) from None
        if turn_id not in self.stream.finished:
            self.stream.turn_id = turn_id

    async def cancel(self) -> str | None:
        """Ask the drone to stop the running turn; its id (`None` when none runs)."""
        turn_id = self.turn_id
        if turn_id is not None:
            # Marked before asking: the drone may end the turn before the hub's answer.
            self.stream.cancelled.add(turn_id)
            try:
                await self.call(IdeEvent.CANCEL_WORK_ORDER, turn_id)
            except HubRefused:
                self.stream.cancelled.discard(turn_id)
                raise
        return turn_id

    # Hub events -----------------------------------------------------------------------

    def on_log(self, *args: Any) -> None:
        """Drone log lines: only warnings and errors are shown."""
        log = parse_args(LogArgs, args)
        if log.level.lower() in {"warning", "error", "critical"}:
            self.view.note(f"· {log.component} {log.level}: {log.message}", "yellow")

    def on_turn_started(self, payload: Any) -> None:
        """A turn of this session started (ours, or another IDE's: then its prompt is shown)."""
        self.stream.started(TurnOut.model_validate(payload))

    def on_snapshot(self, payload: Any) -> None:
        """The running turn so far (after a lock, or a retry): print what is beyond the cursor."""
        self.stream.turn(TurnOut.model_validate(payload))

    def on_drone_state(self, payload: Any) -> None:
        """A drone changed: say when ours goes offline or comes back."""
        if not isinstance(payload, dict) or payload.get("_id") != self.drone["_id"]:
            return
        online = bool(payload.get("online"))
        if online != bool(self.drone.get("online", True)):
            self.view.note(f"· drone {self.drone['name']} is {'online' if online else 'offline'}")
        before = set(drone_warnings(self.drone))
        self.drone = {**self.drone, **payload}
        for warning in drone_warnings(self.drone):
            if warning not in before:
                self.view.note(warning, "bold yellow")

    def on_error(self, payload: Any) -> None:
        """A refused event; refusals of our own requests are reported by their ack."""
        if isinstance(payload, dict) and payload.get("event") in _IDE_EVENTS:
            return
        self.view.note(f"hub error: {payload}", "red")
