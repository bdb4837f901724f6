"""Shared pieces of the drone tests: settings for a scripted model, and a recording event sink."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gadget.config import DroneSettings
from gadget.drone.agent.model import ToolCallRequest
from gadget.drone.agent.tools import AgentEvents, ToolResult
from gadget.drone.agent.usage import UsageReport


def drone_settings(
    workspace: Path, base_url: str = "http://127.0.0.1:9/v1", **over: Any
) -> DroneSettings:
    """Fast settings: short retries, short kill grace, no coalescing delay to wait for."""
    values: dict[str, Any] = {
        "workspace": workspace,
        "llm_base_url": base_url,
        "llm_model": "scripted",
        "llm_api_key": "test",
        "llm_retries": 2,
        "llm_retry_delay_s": 0.01,
        "llm_timeout_s": 10,
        "kill_grace_s": 0.3,
        "reconnect_delay_s": 0.05,
        "reconnect_delay_max_s": 0.2,
        "drone_id": "drone-under-test",
        "drone_key": "key",
    }
    values.update(over)
    return DroneSettings(**values)


class RecordedEvents:
    """An AgentEvents that records everything, tagging a subagent's events with its id."""

    def __init__(
        self, log: list[tuple[Any, ...]] | None = None, agent_id: str | None = None
    ) -> None:
        self.log: list[tuple[Any, ...]] = [] if log is None else log
        self.agent_id = agent_id

    def _add(self, *item: Any) -> None:
        self.log.append((self.agent_id, *item) if self.agent_id else item)

    def thinking(self, text: str) -> None:
        self._add("thinking", text)

    def response(self, text: str) -> None:
        self._add("response", text)

    async def room(self) -> None:
        return None

    def status(self, message: str) -> None:
        self._add("status", message)

    def tool_started(self, call: ToolCallRequest) -> None:
        self._add("tool_started", call.name)

    def tool_finished(self, call: ToolCallRequest, params: str, result: ToolResult) -> None:
        self._add("tool_finished", call.id, call.name, params, result)

    def usage(self, report: UsageReport) -> None:
        self._add("usage", report)

    def child(self, agent_id: str) -> AgentEvents:
        return RecordedEvents(self.log, agent_id)

    def text(self, kind: str) -> str:
        """All top-level deltas of `kind` joined."""
        return "".join(e[1] for e in self.log if e[0] == kind)

    def of(self, kind: str) -> list[tuple[Any, ...]]:
        return [e for e in self.log if e[0] == kind]
