"""The locked session's turns on screen: each stream event through its turn's cursor.

Every stream event the hub forwards ends with `{"turnId", "seq"}`. `SessionStream`
strips it, offers the event to that turn's `Cursor`, and shows what the cursor
lets through, in seq order, from a dispatch table. `turnStarted`, `turnSnapshot`
and a stored turn (REST, after a reconnect or to mend a gap) say where a turn is:
a snapshot ahead of the cursor prints its rest (`progress.TurnProgress`), then the
held events that follow it. Events without a mark (the hub's own failures of a
turn, a reference hub) are shown as they come.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from gadget.ide.terminal.approval import Approvals
from gadget.ide.terminal.cursor import TurnStream, TurnStreams
from gadget.ide.terminal.progress import TurnProgress
from gadget.ide.terminal.render import TurnRenderer
from gadget.protocol import (
    STREAM_EVENTS,
    AgentComplete,
    AgentToolCall,
    BlockMode,
    DroneEvent,
    ToolApproval,
    ToolCallArgs,
    TurnChangesArgs,
    TurnOut,
    TurnStatus,
    Usage,
    WorkOrderCompleteArgs,
    parse_args,
    split_mark,
)

logger = logging.getLogger(__name__)

#: An event as it came: its name and arguments (without the mark).
Item = tuple[str, tuple[Any, ...]]
Stream = TurnStream[Item, TurnProgress]
#: A shown stream event: the turn's stream, then the event's arguments.
StreamHandler = Callable[..., None]


def _ignore(stream: Stream, *args: Any) -> None:
    """A stream event that is counted (its seq) but not shown, e.g. a subagent's deltas."""


class SessionStream:
    """The turns of one chat session as they stream: cursors, what is shown, the running turn."""

    def __init__(self, view: TurnRenderer) -> None:
        self.view = view
        self.turns: TurnStreams[Item, TurnProgress] = TurnStreams(
            lambda turn_id: TurnProgress(view, turn_id)
        )
        self._turn_id: str | None = None
        self.idle = asyncio.Event()
        self.idle.set()
        #: The prompt this terminal submitted and whose turnStarted has not come yet.
        self.submitted: str | None = None
        #: Turns this terminal asked to cancel: however they end, they were cancelled.
        self.cancelled: set[str] = set()
        #: Turns shown as ended.
        self.finished: set[str] = set()
        self.approvals = Approvals(view)
        self.table: dict[str, StreamHandler] = {
            DroneEvent.THINKING: self.on_thinking,
            DroneEvent.RESPONSE: self.on_response,
            DroneEvent.TOOL_CALL: self.on_tool_call,
            DroneEvent.WORK_ORDER_COMPLETE: self.on_complete,
            DroneEvent.AGENT_TOOL_CALL: self.on_agent_tool_call,
            DroneEvent.AGENT_COMPLETE: self.on_agent_complete,
            DroneEvent.AGENT_THINKING: _ignore,
            DroneEvent.AGENT_RESPONSE: _ignore,
            DroneEvent.AGENT_TOOL_RESULT: _ignore,
            DroneEvent.TOOL_APPROVAL: self.on_approval,
            DroneEvent.TURN_CHANGES: self.on_changes,
            DroneEvent.USAGE: self.on_usage,
        }

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

    def events(self) -> set[str]:
        """The events this stream handles (every numbered one)."""
        return {*STREAM_EVENTS, *self.table}

    def reset(self) -> None:
        """Another session is shown: forget the turns of the last one."""
        self.turns.clear()
        self.turn_id = None
        self.submitted = None
        self.approvals.reset()

    # Entry ------------------------------------------------------------------------------

    def dispatch(self, event: str, args: tuple[Any, ...]) -> None:
        """A stream event as it came: through its turn's cursor when it is numbered.

        Raises what its handler raises for malformed arguments (the caller reports it).
        """
        args, marked = split_mark(args)
        if marked is None:
            self._unmarked(event, args)
            return
        turn_id, seq = marked
        stream = self.turns.get(turn_id)
        for name, held in stream.cursor.offer(seq, (event, args)):
            self._apply(stream, name, held)

    def _unmarked(self, event: str, args: tuple[Any, ...]) -> None:
        if event == DroneEvent.WORK_ORDER_COMPLETE:
            turn_id = args[0] if args and isinstance(args[0], str) else None
        else:
            turn_id = self.turn_id
        if turn_id is None:
            logger.debug("dropped %s: no turn to show it in", event)
            return
        self._apply(self.turns.get(turn_id), event, args)

    def _apply(self, stream: Stream, event: str, args: tuple[Any, ...]) -> None:
        handler: StreamHandler = self.table.get(event) or _ignore
        handler(stream, *args)

    def turn(self, turn: TurnOut) -> None:
        """A snapshot or stored turn: print what it adds, then the held events after it."""
        stream = self.turns.get(turn.id)
        new = not stream.cursor.known
        behind = stream.cursor.seq is not None and turn.seq < stream.cursor.seq
        ahead, follow = stream.cursor.reset(turn.seq)
        if new:
            self.view.prompt(turn.prompt)
        if ahead:
            stream.shown.catch_up(turn)
        else:
            stream.shown.new_attempt(turn.retries + 1)
        if not behind:  # an answer is not numbered: a snapshot at the cursor may know of one
            self.approvals.snapshot(turn)
        if turn.status is not TurnStatus.PROCESSING and turn.id not in self.finished:
            if turn.cancelled:
                self.cancelled.add(turn.id)
            self._ended(stream, turn.status is TurnStatus.FINISHED, turn.errorMessage)
        elif turn.id not in self.finished:
            self.turn_id = turn.id
        for name, held in follow:
            self._apply(stream, name, held)

    def started(self, turn: TurnOut) -> None:
        """turnStarted: a turn of this session began (ours, or another IDE's: its prompt is shown)."""
        stream = self.turns.get(turn.id)
        if not stream.cursor.known and turn.prompt != self.submitted:
            self.view.prompt(turn.prompt)
        self.submitted = None
        _, follow = stream.cursor.reset(turn.seq)
        if turn.id not in self.finished:
            self.turn_id = turn.id
        for name, held in follow:
            self._apply(stream, name, held)

    # Stream events ----------------------------------------------------------------------

    def on_thinking(self, stream: Stream, delta: Any) -> None:
        """A reasoning delta."""
        stream.shown.text(BlockMode.THINKING, _text(delta))

    def on_response(self, stream: Stream, delta: Any) -> None:
        """An answer delta."""
        stream.shown.text(BlockMode.RESPONDING, _text(delta))

    def on_tool_call(self, stream: Stream, *args: Any) -> None:
        """toolCall(callId, name, params, response) as a panel."""
        call = parse_args(ToolCallArgs, args)
        stream.shown.tool(call.callId, call.name, call.params, call.response)

    def on_agent_tool_call(self, stream: Stream, payload: Any) -> None:
        """A subagent's tool call, as one dim line."""
        call = AgentToolCall.model_validate(payload)
        stream.shown.agent_tool(call.agentId, call.tool)

    def on_agent_complete(self, stream: Stream, payload: Any) -> None:
        """A subagent finished."""
        stream.shown.agent_done(AgentComplete.model_validate(payload).agentId)

    def on_approval(self, stream: Stream, payload: Any) -> None:
        """toolApproval: a call waits for the person's answer."""
        self.approvals.asked(ToolApproval.model_validate(payload))

    def on_changes(self, stream: Stream, *args: Any) -> None:
        """turnChanges(turnId, changes): the files the turn changed (shown at its end)."""
        stream.shown.changes = list(parse_args(TurnChangesArgs, args).changes)

    def on_usage(self, stream: Stream, payload: Any) -> None:
        """usage: one model call's tokens and time (added up, shown at the turn's end)."""
        stream.shown.usage.add(Usage.model_validate(payload))

    def on_complete(self, stream: Stream, *args: Any) -> None:
        """workOrderComplete(turnId, success, message?): the turn is over."""
        done = parse_args(WorkOrderCompleteArgs, args)
        if done.turnId in self.finished:
            return  # already ended (e.g. by the stored turn after a reconnect)
        self._ended(self.turns.get(done.turnId), done.success, done.message)

    def _ended(self, stream: Stream, success: bool, message: str | None) -> None:
        self.finished.add(stream.turn_id)
        stream.shown.end()
        self.approvals.ended(stream.turn_id)
        self.view.finished(success, message, stream.turn_id in self.cancelled)
        self.view.epilogue(stream.shown.changes, stream.shown.usage)
        if stream.turn_id == self.turn_id:
            self.turn_id = None


def _text(delta: Any) -> str:
    if not isinstance(delta, str):
        raise TypeError(f"expected a text delta, got {type(delta).__name__}")
    return delta
