"""One chat over Socket.IO: lock a drone for a session, submit prompts, show the stream.

Hub events are dispatched by a table (`_event_table`), typed `/commands` by
another (`repl.Repl.commands`). While a lock is being taken, events are held and
shown after the session's history, so a mid-turn snapshot follows the older turns.

A dropped connection is not the end: `reconnect.Reconnector` opens a new
socket and locks the same session again; `progress.TurnProgress` knows how much
of the running turn is on screen, so the hub's snapshot (or the stored turn,
when it finished meanwhile) adds only the rest.
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
from gadget.ide.terminal.exceptions import HubRefused, HubUnreachable, TerminalError
from gadget.ide.terminal.progress import TurnProgress
from gadget.ide.terminal.reconnect import Reconnector
from gadget.ide.terminal.render import TurnRenderer
from gadget.ide.terminal.screen import Screen
from gadget.protocol import (
    STREAM_EVENTS,
    AgentComplete,
    AgentToolCall,
    ArgsError,
    BlockMode,
    DroneEvent,
    HubEvent,
    IdeEvent,
    LogArgs,
    ToolCallArgs,
    TurnOut,
    TurnStatus,
    WorkOrderCompleteArgs,
    parse_args,
    split_mark,
)

logger = logging.getLogger(__name__)

#: Seconds to wait for the hub's answer to a request.
CALL_TIMEOUT = 15
#: Stored turns shown when a session is resumed.
HISTORY_TURNS = 20
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
        self.progress = TurnProgress(self.view)
        self.drone = drone
        self.project = project
        self.sio = socketio.AsyncClient(reconnection=False)
        self.chat_id: str | None = None
        self._turn_id: str | None = None
        self.idle = asyncio.Event()
        self.idle.set()
        #: Set when the chat cannot go on (`error` says why, e.g. an expired token).
        self.gone = asyncio.Event()
        self.error: TerminalError | None = None
        self.reconnector = Reconnector(self)
        self._submitted: str | None = None
        self._finished: set[str] = set()
        #: Turns this terminal asked to cancel: however they end, they were cancelled.
        self._cancelled: set[str] = set()
        self._held: list[tuple[str, tuple[Any, ...]]] | None = None
        self._quitting = False
        self._table = self._event_table()

    @property
    def turn_id(self) -> str | None:
        """The running turn of this session, if any."""
        return self._turn_id

    @turn_id.setter
    def turn_id(self, value: str | None) -> None:
        self._turn_id = value
        if value is None:
            self.idle.set()
        else:
            self.idle.clear()

    def _event_table(self) -> dict[str, Callable[..., None]]:
        return {
            DroneEvent.STATUS: lambda message: self.view.note(f"· {message}"),
            DroneEvent.LOG: self.on_log,
            DroneEvent.WORKSPACE_MODE_CHANGED: lambda m: self.view.note(f"· workspace mode: {m}"),
            DroneEvent.THINKING: lambda delta: self.progress.text(BlockMode.THINKING, str(delta)),
            DroneEvent.RESPONSE: lambda delta: self.progress.text(BlockMode.RESPONDING, str(delta)),
            DroneEvent.TOOL_CALL: self.on_tool_call,
            DroneEvent.WORK_ORDER_COMPLETE: self.on_complete,
            DroneEvent.AGENT_TOOL_CALL: self.on_agent_tool_call,
            DroneEvent.AGENT_COMPLETE: self.on_agent_complete,
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
        for event in self._table:
            sio.on(event, handler=self._entry(sio, event))
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

    def _dispatch(self, event: str, args: tuple[Any, ...]) -> None:
        if event in STREAM_EVENTS:
            args, _mark = split_mark(args)
        try:
            self._table[event](*args)
        except (ArgsError, ValidationError, TypeError) as exc:
            self.view.note(f"ignored a malformed {event} event: {exc}", "yellow")
        except Exception:
            logger.exception("showing %s failed", event)

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
            self.turn_id = None
            self.progress.begin(None)
            self.view.note(
                f"session {self.chat_id} · drone {self.drone['name']} · project {self.project['name']}",
                "bold blue",
            )
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
        """The turn in flight ended while we were away: show its rest and its end."""
        try:
            turn = TurnOut.model_validate(await self.api.turn(turn_id))
        except (TerminalError, ValidationError) as exc:
            self.view.note(f"could not fetch turn {turn_id}: {exc}", "yellow")
            return
        self.progress.catch_up(turn)
        if turn.status is not TurnStatus.PROCESSING:
            self._finished.add(turn.id)
            self.view.finished(
                turn.status is TurnStatus.FINISHED, turn.errorMessage, bool(turn.cancelled)
            )
            self.progress.begin(None)
            self.turn_id = None

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
        self._submitted = prompt
        try:
            turn_id = str(await self.call(IdeEvent.SUBMIT_PROMPT, prompt))
        except HubRefused as exc:
            self._submitted = None
            raise HubRefused(f"not sent: {exc.reason}", exc.reason) from None
        if turn_id not in self._finished:
            self.turn_id = turn_id

    async def cancel(self) -> str | None:
        """Ask the drone to stop the running turn; its id (`None` when none runs)."""
        turn_id = self.turn_id
        if turn_id is not None:
            await self.call(IdeEvent.CANCEL_WORK_ORDER, turn_id)
            self._cancelled.add(turn_id)
        return turn_id

    # Hub events -----------------------------------------------------------------------

    def on_log(self, *args: Any) -> None:
        """Drone log lines: only warnings and errors are shown."""
        log = parse_args(LogArgs, args)
        if log.level.lower() in {"warning", "error", "critical"}:
            self.view.note(f"· {log.component} {log.level}: {log.message}", "yellow")

    def on_tool_call(self, *args: Any) -> None:
        """toolCall(callId, name, params, response) as a panel."""
        call = parse_args(ToolCallArgs, args)
        self.progress.tool(call.callId, call.name, call.params, call.response)

    def on_complete(self, *args: Any) -> None:
        """workOrderComplete(turnId, success, message?): the turn is over."""
        done = parse_args(WorkOrderCompleteArgs, args)
        self._finished.add(done.turnId)
        self.view.finished(done.success, done.message, done.turnId in self._cancelled)
        if done.turnId == self.progress.turn_id:
            self.progress.begin(None)
        if done.turnId == self.turn_id:
            self.turn_id = None

    def on_agent_tool_call(self, payload: Any) -> None:
        """A subagent's tool call, as one dim line."""
        call = AgentToolCall.model_validate(payload)
        self.progress.agent_tool(call.agentId, call.tool)

    def on_agent_complete(self, payload: Any) -> None:
        """A subagent finished."""
        done = AgentComplete.model_validate(payload)
        self.progress.agent_done(done.agentId)

    def on_turn_started(self, payload: Any) -> None:
        """A turn of this session started (ours, or another IDE's: then its prompt is shown)."""
        turn = TurnOut.model_validate(payload)
        if turn.id not in self._finished:
            self.turn_id = turn.id
            self.progress.begin(turn.id)
        if turn.prompt != self._submitted:
            self.view.prompt(turn.prompt)
        self._submitted = None

    def on_snapshot(self, payload: Any) -> None:
        """The running turn so far (after a lock, or a retry): print what is not shown yet."""
        turn = TurnOut.model_validate(payload)
        self.turn_id = turn.id
        self.progress.catch_up(turn)

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
