"""Events from drones (the reference's DroneSession): validate, record in memory, forward.

Handlers run inline in the drone socket's read loop (`async_handlers=False`),
so one drone's events are handled strictly in the order it sent them, and the
only await before a forward is the forward itself: tokens reach the IDEs in the
drone's order. Database writes happen later, in the recorder's writer tasks.

The in-memory mirror is updated *before* the forward, with no await between
them: the forward yields while its packets are queued, and an IDE that locks
the session in that moment takes a snapshot. Mirror-then-forward makes each
delta land either in that snapshot or in the stream after it, never in both or
neither (tests/hub/test_reload.py).
"""

from __future__ import annotations

import logging
from typing import Any

from gadget.hub.bus import Bus
from gadget.hub.exceptions import Refused
from gadget.hub.recorder import Recorder
from gadget.hub.recovery import Recovery
from gadget.hub.routing import DroneLink, Router
from gadget.hub.sessions import Sessions
from gadget.hub.sockets.base import Handler
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
    LogArgs,
    ToolCallArgs,
    ToolCallOut,
    WorkOrderCompleteArgs,
    parse_args,
    parse_mode,
)

logger = logging.getLogger(__name__)


class DroneHandlers:
    """One method per drone→hub event."""

    def __init__(
        self,
        router: Router,
        bus: Bus,
        recorder: Recorder,
        turns: WorkOrders,
        sessions: Sessions,
        recovery: Recovery,
    ) -> None:
        self._router = router
        self._bus = bus
        self._recorder = recorder
        self._turns = turns
        self._sessions = sessions
        self._recovery = recovery

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
        }

    def _link(self, sid: str) -> DroneLink:
        return self._router.drone_sids[sid]

    def _streaming(self, sid: str, event: str) -> tuple[DroneLink, str] | None:
        """The drone and its current turn, or None (dropped with a warning) when it has none."""
        link = self._router.drone_sids[sid]
        if link.lock is None or link.current_turn_id is None:
            logger.warning(
                "dropped %s from drone %s: no locked session with a turn", event, link.drone_id
            )
            return None
        return link, link.current_turn_id

    # -- text streaming: the hot path ------------------------------------------
    async def on_thinking(self, sid: str, *args: Any) -> None:
        """Add a reasoning delta to the growing thinking block and forward it."""
        await self._text(sid, DroneEvent.THINKING, BlockMode.THINKING, args)

    async def on_response(self, sid: str, *args: Any) -> None:
        """Add an answer delta to the growing responding block and forward it."""
        await self._text(sid, DroneEvent.RESPONSE, BlockMode.RESPONDING, args)

    async def _text(self, sid: str, event: str, mode: BlockMode, args: tuple[Any, ...]) -> None:
        # A type and size check instead of a pydantic model: this runs for every token.
        if len(args) != 1 or type(args[0]) is not str or len(args[0]) > MAX_CONTENT:
            raise ArgsError(f"{event} expects one string of at most {MAX_CONTENT} characters")
        found = self._streaming(sid, event)
        if found is None:
            return
        link, turn_id = found
        assert link.lock is not None
        self._recorder.text(turn_id, mode, args[0])
        await self._bus.to_room(link.lock.room, event, args[0])

    # -- the rest of the stream ------------------------------------------------
    async def on_tool_call(self, sid: str, *args: Any) -> None:
        """Record a tool call (a tool block and a toolCalls entry) and forward it."""
        call = parse_args(ToolCallArgs, args)
        found = self._streaming(sid, DroneEvent.TOOL_CALL)
        if found is None:
            return
        link, turn_id = found
        assert link.lock is not None
        out = ToolCallOut(
            callId=call.callId, name=call.name, parameters=call.params, response=call.response
        )
        self._recorder.tool_call(turn_id, out)
        await self._bus.to_room(link.lock.room, DroneEvent.TOOL_CALL, *args)

    def _agent(self, event: str, model: type[Any]) -> Handler:
        async def handle(sid: str, *args: Any) -> None:
            if len(args) != 1 or not isinstance(args[0], dict):
                raise ArgsError(f"{event} expects one object")
            payload = model.model_validate(args[0])
            found = self._streaming(sid, event)
            if found is not None:
                link, turn_id = found
                assert link.lock is not None
                self._recorder.agent_event(turn_id, payload.agentId, event, args[0])
                await self._bus.to_room(link.lock.room, event, args[0])

        return handle

    async def on_agent_complete(self, sid: str, *args: Any) -> None:
        """Forward a subagent's completion and set its tool call's response and summary."""
        if len(args) != 1 or not isinstance(args[0], dict):
            raise ArgsError(
                "agent:complete expects one object {agentId, response, subagent, stats}"
            )
        done = AgentComplete.model_validate(args[0])
        found = self._streaming(sid, DroneEvent.AGENT_COMPLETE)
        if found is None:
            return
        link, turn_id = found
        assert link.lock is not None
        if not self._recorder.complete_tool(turn_id, done.agentId, done.response, done.subagent):
            logger.warning(
                "agent:complete for unknown tool call %s of turn %s", done.agentId, turn_id
            )
        await self._bus.to_room(link.lock.room, DroneEvent.AGENT_COMPLETE, args[0])

    async def on_complete(self, sid: str, *args: Any) -> None:
        """The drone finished its current turn."""
        done = parse_args(WorkOrderCompleteArgs, args)
        link = self._link(sid)
        if done.turnId != link.current_turn_id:
            logger.warning(
                "dropped workOrderComplete(%s) from drone %s: its current turn is %s",
                done.turnId,
                link.drone_id,
                link.current_turn_id,
            )
            return
        await self._turns.complete(link, done.turnId, done.success, done.message)

    async def on_status(self, sid: str, *args: Any) -> None:
        """Forward a status line to the session's IDEs."""
        if len(args) != 1 or not isinstance(args[0], str) or len(args[0]) > 10_000:
            raise ArgsError("status expects one string of at most 10000 characters")
        await self._forward(sid, DroneEvent.STATUS, args)

    async def on_log(self, sid: str, *args: Any) -> None:
        """Forward a log record to the session's IDEs."""
        parse_args(LogArgs, args)
        await self._forward(sid, DroneEvent.LOG, args)

    async def on_mode_changed(self, sid: str, *args: Any) -> None:
        """Record the drone's workspace mode and tell the IDEs."""
        link = self._link(sid)
        link.workspace_mode = parse_mode(args, DroneEvent.WORKSPACE_MODE_CHANGED)
        await self._forward(sid, DroneEvent.WORKSPACE_MODE_CHANGED, args)
        await self._sessions.publish(link)

    async def _forward(self, sid: str, event: str, args: tuple[Any, ...]) -> None:
        link = self._link(sid)
        if link.lock is None:
            logger.info("drone %s sent %s with no locked session", link.drone_id, event)
            return
        await self._bus.to_room(link.lock.room, event, *args)

    async def on_crash_recovery(self, sid: str, *args: Any) -> None:
        """A restarted drone found a cached work order: discard or retry it."""
        if len(args) != 1 or not isinstance(args[0], dict):
            raise ArgsError(
                "requestCrashRecovery expects one object {workspaceId, turnId, chatSessionId}"
            )
        req = CrashRecoveryRequest.model_validate(args[0])
        link = self._link(sid)
        if link.sid != sid:
            raise Refused("this drone connection was replaced by a newer one")
        await self._recovery.crash_recovery(link, req)
