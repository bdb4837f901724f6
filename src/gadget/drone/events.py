"""Agent progress as drone→hub events: the turn's own stream, a subagent's, and log records."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from datetime import UTC, datetime
from typing import Any

from gadget.drone.agent.model import ToolCallRequest
from gadget.drone.agent.tools import AgentEvents, ToolResult
from gadget.drone.agent.usage import UsageReport
from gadget.drone.outbox import Outbox
from gadget.protocol import AgentComplete, AgentToolCall, AgentToolResult, DroneEvent

__all__ = ["LogForwarder", "SubagentEvents", "TurnEvents"]

logger = logging.getLogger(__name__)


class TurnEvents:
    """The turn's agent: thinking / response / toolCall, plus agent:complete after a task."""

    def __init__(self, outbox: Outbox, turn_id: str) -> None:
        """Send through `outbox`, for turn `turn_id`."""
        self.outbox = outbox
        self.turn_id = turn_id

    def thinking(self, text: str) -> None:
        """Reasoning delta → `thinking`."""
        self.outbox.text(DroneEvent.THINKING, text)

    def response(self, text: str) -> None:
        """Answer delta → `response`."""
        self.outbox.text(DroneEvent.RESPONSE, text)

    async def room(self) -> None:
        """Wait while the outbox holds too much the hub has not stored."""
        await self.outbox.room()

    def status(self, message: str) -> None:
        """Milestone → `status`."""
        self.outbox.emit(DroneEvent.STATUS, message)

    def tool_started(self, call: ToolCallRequest) -> None:
        """Nothing: the hub records a tool when it has ended."""

    def tool_finished(self, call: ToolCallRequest, params: str, result: ToolResult) -> None:
        """`toolCall`, then (for a subagent) `agent:complete`, which updates the stored call."""
        self.outbox.emit(DroneEvent.TOOL_CALL, call.id, call.name, params, result.to_json())
        if result.subagent is not None:
            done = AgentComplete(
                agentId=call.id,
                response=result.output,
                subagent=result.subagent,
                stats=result.stats,
            )
            self.outbox.emit(DroneEvent.AGENT_COMPLETE, done.model_dump(exclude_none=True))

    def usage(self, report: UsageReport) -> None:
        """One model call's usage → `usage {turnId, model, promptTokens, ...}`."""
        self.outbox.emit(DroneEvent.USAGE, {"turnId": self.turn_id, **report.to_json()})

    def child(self, agent_id: str) -> AgentEvents:
        """A subagent's events, tagged with the `task` call's id."""
        return SubagentEvents(self.outbox, agent_id, self.turn_id)


class SubagentEvents:
    """A subagent's stream as `agent:*` events with `agentId` = the parent's tool call id."""

    def __init__(self, outbox: Outbox, agent_id: str, turn_id: str) -> None:
        """Send through `outbox` under `agent_id`, for turn `turn_id`."""
        self.outbox = outbox
        self.agent_id = agent_id
        self.turn_id = turn_id

    def thinking(self, text: str) -> None:
        """→ `agent:thinking {agentId, thinking}`."""
        self.outbox.text(DroneEvent.AGENT_THINKING, text, self.agent_id)

    def response(self, text: str) -> None:
        """→ `agent:response {agentId, chunk}`."""
        self.outbox.text(DroneEvent.AGENT_RESPONSE, text, self.agent_id)

    async def room(self) -> None:
        """Wait while the outbox holds too much the hub has not stored."""
        await self.outbox.room()

    def status(self, message: str) -> None:
        """→ `status`, marked as the subagent's."""
        self.outbox.emit(DroneEvent.STATUS, f"subagent: {message}")

    def tool_started(self, call: ToolCallRequest) -> None:
        """→ `agent:tool-call {agentId, tool, args}`."""
        started = AgentToolCall(agentId=self.agent_id, tool=call.name, args=_parsed(call.arguments))
        self.outbox.emit(DroneEvent.AGENT_TOOL_CALL, started.model_dump())

    def tool_finished(self, call: ToolCallRequest, params: str, result: ToolResult) -> None:
        """→ `agent:tool-result {agentId, tool, result}`."""
        done = AgentToolResult(
            agentId=self.agent_id, tool=call.name, result={"ok": result.ok, "output": result.output}
        )
        self.outbox.emit(DroneEvent.AGENT_TOOL_RESULT, done.model_dump())

    def usage(self, report: UsageReport) -> None:
        """One of the subagent's model calls → `usage` with its `agentId` (it counts for the turn)."""
        payload = {"turnId": self.turn_id, **report.to_json(), "agentId": self.agent_id}
        self.outbox.emit(DroneEvent.USAGE, payload)

    def child(self, agent_id: str) -> AgentEvents:
        """Subagents start no subagents; their events would be their parent's."""
        return self


def _parsed(arguments: str) -> Any:
    try:
        return json.loads(arguments or "{}")
    except ValueError:
        return arguments


class LogForwarder(logging.Handler):
    """Sends the drone's and agent's log records as `log` events while a turn runs."""

    def __init__(self, outbox: Outbox, level: int = logging.INFO) -> None:
        """Forward through `outbox` once :attr:`enabled` is set (build it in the event loop)."""
        super().__init__(level)
        self.outbox = outbox
        self.enabled = False
        self._loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()

    def emit(self, record: logging.LogRecord) -> None:
        """Queue one record (never raises)."""
        if not self.enabled:
            return
        try:
            component = "agent" if record.name.startswith("gadget.drone.agent") else "drone"
            metadata: dict[str, Any] = {"logger": record.name}
            if record.exc_info:
                metadata["exception"] = logging.Formatter().formatException(record.exc_info)
            stamp = datetime.fromtimestamp(record.created, UTC).isoformat()
            args = (stamp, component, record.levelname.lower(), record.getMessage(), metadata)
            if threading.get_ident() == self._thread:
                self.outbox.emit(DroneEvent.LOG, *args)
            else:  # a record from a worker thread (asyncio.to_thread)
                self._loop.call_soon_threadsafe(self.outbox.emit, DroneEvent.LOG, *args)
        except Exception:
            self.handleError(record)
