"""Events from drones (the reference's DroneSession): validate, apply once, forward.

Handlers run inline in the drone socket's read loop (`async_handlers=False`), so
one drone's events are handled in the order it sent them. A stream event carries
its `{"turnId", "seq"}` mark (reference drones send none: the hub numbers them);
the live turn applies it only if it is the next one (a resend at or below the
turn's seq is dropped, a gap is refused so the drone resends), then the event is
forwarded to the turn's session with its mark. IDEs keep a cursor per turn, so
ordering between a snapshot and the stream never rests on scheduling: nothing is
shown twice or missed. Database writes happen later, in the hub's writer; the
drone is acknowledged (`streamAck`) only once they are committed.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from gadget.hub.approvals import Approvals
from gadget.hub.bus import Bus, drone_room, session_room
from gadget.hub.exceptions import Refused, Resend
from gadget.hub.recovery import Recovery
from gadget.hub.sockets.base import Handler
from gadget.hub.state.drones import Drones, DroneState
from gadget.hub.stream.live import LiveTurn, Verdict
from gadget.hub.stream.writer import Writer
from gadget.hub.turns import WorkOrders
from gadget.protocol import (
    MAX_CONTENT,
    AgentComplete,
    AgentResponse,
    AgentThinking,
    AgentToolCall,
    AgentToolResult,
    ArgsError,
    BlockMode,
    CrashRecoveryRequest,
    DroneEvent,
    ErrorCode,
    LogArgs,
    ToolApproval,
    ToolCallArgs,
    ToolCallOut,
    TurnChangesArgs,
    Usage,
    WorkOrderCompleteArgs,
    mark,
    parse_args,
    parse_mode,
    split_mark,
)

logger = logging.getLogger(__name__)

#: Seconds between two warnings about events a drone sends with no turn to go to.
_WARN_EVERY_S = 10.0


class DroneHandlers:
    """One method per drone→hub event."""

    def __init__(
        self,
        drones: Drones,
        writer: Writer,
        bus: Bus,
        turns: WorkOrders,
        recovery: Recovery,
        approvals: Approvals,
        flush_bytes: int,
    ) -> None:
        self._drones = drones
        self._writer = writer
        self._bus = bus
        self._turns = turns
        self._recovery = recovery
        self._approvals = approvals
        self._flush_bytes = flush_bytes
        self._warned = 0.0

    def table(self) -> dict[str, Handler]:
        """The dispatch table: event name → handler."""
        return {
            DroneEvent.STATUS: self.on_status,
            DroneEvent.LOG: self.on_log,
            DroneEvent.WORKSPACE_MODE_CHANGED: self.on_mode_changed,
            DroneEvent.THINKING: self.on_thinking,
            DroneEvent.RESPONSE: self.on_response,
            DroneEvent.TOOL_CALL: self.on_tool_call,
            DroneEvent.WORK_ORDER_COMPLETE: self.on_complete,
            DroneEvent.REQUEST_CRASH_RECOVERY: self.on_crash_recovery,
            DroneEvent.AGENT_THINKING: self._agent(DroneEvent.AGENT_THINKING, AgentThinking),
            DroneEvent.AGENT_RESPONSE: self._agent(DroneEvent.AGENT_RESPONSE, AgentResponse),
            DroneEvent.AGENT_TOOL_CALL: self._agent(DroneEvent.AGENT_TOOL_CALL, AgentToolCall),
            DroneEvent.AGENT_TOOL_RESULT: self._agent(
                DroneEvent.AGENT_TOOL_RESULT, AgentToolResult
            ),
            DroneEvent.AGENT_COMPLETE: self.on_agent_complete,
            DroneEvent.TOOL_APPROVAL: self.on_tool_approval,
            DroneEvent.TURN_CHANGES: self.on_turn_changes,
            DroneEvent.USAGE: self.on_usage,
        }

    def _state(self, sid: str) -> DroneState:
        state = self._drones.by_sid(sid)
        if state is None:
            raise Refused("this drone connection was replaced by a newer one")
        return state

    async def _target(
        self, sid: str, event: str, marked: tuple[str, int] | None
    ) -> tuple[DroneState, LiveTurn, int] | None:
        """The live turn a stream event goes to and the seq it gets; None when it is dropped.

        Raises:
            Resend: a gap in the drone's numbering, or the hub's memory for unstored
                writes is full: the drone resends from the expected seq.
        """
        state = self._state(sid)
        live = state.live
        if marked is not None and (live is None or live.id != marked[0]):
            live = await self._drones.adopt(state, marked[0])
            if live is None:
                if self._drones.first_stale(state, marked[0]):
                    await self._recovery.stale_event(state, *marked)
                return None
        elif live is None:
            live = await self._unmarked_turn(state, event)
            if live is None:
                return None
        verdict, seq = live.accept(marked[1] if marked else None)
        if verdict is Verdict.DUPLICATE:
            return None
        if verdict is Verdict.GAP:
            raise Resend(
                f"{event} seq {marked[1] if marked else '?'} of turn {live.id}: expected {seq}",
                ErrorCode.GAP,
                live.id,
                seq,
            )
        if self._writer.full:
            raise Resend(
                "the hub holds too much not yet stored: resend later", ErrorCode.FULL, live.id, seq
            )
        return state, live, seq

    async def _unmarked_turn(self, state: DroneState, event: str) -> LiveTurn | None:
        """The turn an unnumbered event (a reference drone) belongs to: the lease's current."""
        now = time.monotonic()
        if now < state.quiet_until:
            return None
        lease = await self._drones.lease(state.drone_id)
        if lease is not None and lease.current_turn_id is not None:
            live = await self._drones.adopt(state, lease.current_turn_id)
            if live is not None:
                return live
        state.quiet_until = now + 1.0
        if now - self._warned > _WARN_EVERY_S:
            self._warned = now
            logger.warning("dropped %s from drone %s: it has no turn", event, state.drone_id)
        return None

    async def _forward(self, live: LiveTurn, event: str, seq: int, *args: Any) -> None:
        await self._bus.to_room(
            session_room(live.chat_session_id), event, *args, mark(live.id, seq)
        )

    # -- text streaming: the hot path ------------------------------------------
    async def on_thinking(self, sid: str, *args: Any) -> None:
        """Add a reasoning delta to the growing thinking block and forward it."""
        await self._text(sid, DroneEvent.THINKING, BlockMode.THINKING, args)

    async def on_response(self, sid: str, *args: Any) -> None:
        """Add an answer delta to the growing responding block and forward it."""
        await self._text(sid, DroneEvent.RESPONSE, BlockMode.RESPONDING, args)

    async def _text(self, sid: str, event: str, mode: BlockMode, raw: tuple[Any, ...]) -> None:
        args, marked = split_mark(raw)
        # A type and size check instead of a pydantic model: this runs for every token.
        if len(args) != 1 or type(args[0]) is not str or len(args[0]) > MAX_CONTENT:
            raise ArgsError(f"{event} expects one string of at most {MAX_CONTENT} characters")
        found = await self._target(sid, event, marked)
        if found is None:
            return
        _state, live, seq = found
        live.text(seq, mode, args[0], self._flush_bytes)
        self._drones.applied(live, len(args[0]))
        await self._forward(live, event, seq, args[0])

    # -- the rest of the stream ------------------------------------------------
    async def on_tool_call(self, sid: str, *raw: Any) -> None:
        """Record a tool call (a tool block and a toolCalls entry) and forward it."""
        args, marked = split_mark(raw)
        call = parse_args(ToolCallArgs, args)
        found = await self._target(sid, DroneEvent.TOOL_CALL, marked)
        if found is None:
            return
        _state, live, seq = found
        out = ToolCallOut(
            callId=call.callId, name=call.name, parameters=call.params, response=call.response
        )
        live.tool_call(seq, out)
        self._drones.applied(live, len(call.params) + len(call.response))
        await self._forward(live, DroneEvent.TOOL_CALL, seq, *args)

    def _agent(self, event: str, model: type[Any]) -> Handler:
        async def handle(sid: str, *raw: Any) -> None:
            args, marked = split_mark(raw)
            if len(args) != 1 or not isinstance(args[0], dict):
                raise ArgsError(f"{event} expects one object")
            payload = model.model_validate(args[0])
            found = await self._target(sid, event, marked)
            if found is not None:
                _state, live, seq = found
                live.agent_event(seq, payload.agentId, event, args[0])
                self._drones.applied(live, 256)
                await self._forward(live, event, seq, args[0])

        return handle

    async def on_agent_complete(self, sid: str, *raw: Any) -> None:
        """Forward a subagent's completion and set its tool call's response and summary."""
        args, marked = split_mark(raw)
        if len(args) != 1 or not isinstance(args[0], dict):
            raise ArgsError(
                "agent:complete expects one object {agentId, response, subagent, stats}"
            )
        done = AgentComplete.model_validate(args[0])
        found = await self._target(sid, DroneEvent.AGENT_COMPLETE, marked)
        if found is None:
            return
        _state, live, seq = found
        if not live.complete_tool(seq, done.agentId, done.response, done.subagent):
            logger.warning(
                "agent:complete for unknown tool call %s of turn %s", done.agentId, live.id
            )
        self._drones.applied(live, len(done.response or "") + 512)
        await self._forward(live, DroneEvent.AGENT_COMPLETE, seq, args[0])

    async def _own_turn(
        self, sid: str, event: str, turn_id: str, marked: tuple[str, int] | None
    ) -> tuple[DroneState, LiveTurn, int] | None:
        """The target of an event that names its turn; None when it is dropped.

        Raises:
            ArgsError: the event's mark names another turn than its payload.
        """
        if marked is not None and marked[0] != turn_id:
            raise ArgsError(f"{event} for turn {turn_id} marked as turn {marked[0]}")
        found = await self._target(sid, event, marked)
        if found is not None and found[1].id != turn_id:
            logger.warning(
                "dropped %s for turn %s from drone %s: it streams turn %s",
                event,
                turn_id,
                found[0].drone_id,
                found[1].id,
            )
            return None
        return found

    async def on_tool_approval(self, sid: str, *raw: Any) -> None:
        """A tool call waits for the person: record it as the turn's pendingApproval."""
        args, marked = split_mark(raw)
        if len(args) != 1 or not isinstance(args[0], dict):
            raise ArgsError(
                "toolApproval expects one object {turnId, callId, name, parameters, server?}"
            )
        request = ToolApproval.model_validate(args[0])
        found = await self._own_turn(sid, DroneEvent.TOOL_APPROVAL, request.turnId, marked)
        if found is not None:
            await self._approvals.asked(*found, request, args[0])

    async def on_turn_changes(self, sid: str, *raw: Any) -> None:
        """The files the turn changed: record them as its `changes` and forward them."""
        args, marked = split_mark(raw)
        changes = parse_args(TurnChangesArgs, args)
        found = await self._own_turn(sid, DroneEvent.TURN_CHANGES, changes.turnId, marked)
        if found is None:
            return
        _state, live, seq = found
        live.set_changes(seq, changes.changes)
        self._drones.applied(live, 256 + sum(len(c.diff or "") for c in changes.changes))
        await self._forward(live, DroneEvent.TURN_CHANGES, seq, *args)

    async def on_usage(self, sid: str, *raw: Any) -> None:
        """One model call's usage: add it to the turn's stats and forward it."""
        args, marked = split_mark(raw)
        if len(args) != 1 or not isinstance(args[0], dict):
            raise ArgsError(
                "usage expects one object {turnId, model, promptTokens, completionTokens, "
                "durationMs, cost?}"
            )
        usage = Usage.model_validate(args[0])
        found = await self._own_turn(sid, DroneEvent.USAGE, usage.turnId, marked)
        if found is None:
            return
        _state, live, seq = found
        live.add_usage(seq, usage)
        self._drones.applied(live, 128)
        await self._forward(live, DroneEvent.USAGE, seq, args[0])

    async def on_complete(self, sid: str, *raw: Any) -> None:
        """The drone finished its current turn."""
        args, marked = split_mark(raw)
        done = parse_args(WorkOrderCompleteArgs, args)
        if marked is not None and marked[0] != done.turnId:
            raise ArgsError(f"workOrderComplete for {done.turnId} marked as turn {marked[0]}")
        state = self._state(sid)
        if marked is None and (state.live is None or state.live.id != done.turnId):
            logger.warning(
                "dropped workOrderComplete(%s) from drone %s: not its current turn",
                done.turnId,
                state.drone_id,
            )
            return
        found = await self._target(sid, DroneEvent.WORK_ORDER_COMPLETE, marked)
        if found is None:
            return
        state, live, seq = found
        await self._turns.complete(state, live, seq, args)

    async def on_status(self, sid: str, *args: Any) -> None:
        """Forward a status line to the lock's IDEs."""
        if len(args) != 1 or not isinstance(args[0], str) or len(args[0]) > 10_000:
            raise ArgsError("status expects one string of at most 10000 characters")
        await self._bus.to_room(drone_room(self._state(sid).drone_id), DroneEvent.STATUS, *args)

    async def on_log(self, sid: str, *args: Any) -> None:
        """Forward a log record to the lock's IDEs."""
        parse_args(LogArgs, args)
        await self._bus.to_room(drone_room(self._state(sid).drone_id), DroneEvent.LOG, *args)

    async def on_mode_changed(self, sid: str, *args: Any) -> None:
        """Record the drone's workspace mode and tell the IDEs."""
        state = self._state(sid)
        mode = parse_mode(args, DroneEvent.WORKSPACE_MODE_CHANGED)
        await self._drones.set_mode(state, mode)
        await self._bus.to_room(
            drone_room(state.drone_id), DroneEvent.WORKSPACE_MODE_CHANGED, *args
        )
        await self._recovery.publish(state.drone_id, state.owner_id)

    async def on_crash_recovery(self, sid: str, *args: Any) -> None:
        """A restarted drone found a cached work order: discard or retry it."""
        if len(args) != 1 or not isinstance(args[0], dict):
            raise ArgsError(
                "requestCrashRecovery expects one object {workspaceId, turnId, chatSessionId}"
            )
        req = CrashRecoveryRequest.model_validate(args[0])
        await self._recovery.crash_recovery(self._state(sid), req)


__all__ = ["DroneHandlers"]
