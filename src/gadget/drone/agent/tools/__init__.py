"""The agent's tools: a registry of typed tools and the context they run in.

A tool is a name, a description, a pydantic model of its parameters and an async
function. Failures a model can fix raise :class:`~gadget.drone.exceptions.ToolError`;
:meth:`ToolBox.execute` turns them into an error result, so they never end a turn.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import BaseModel, ValidationError

from gadget.config import DroneSettings
from gadget.drone.agent.model import DeltaSink, ToolCallRequest
from gadget.drone.agent.reads import FileReads
from gadget.drone.agent.usage import UsageReport
from gadget.drone.agent.workspace import Workspace
from gadget.drone.exceptions import ToolError

__all__ = [
    "AgentEvents",
    "Tool",
    "ToolBox",
    "ToolContext",
    "ToolResult",
    "default_toolbox",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ToolResult:
    """What a tool produced; `subagent`/`stats` are set by the `task` tool only.

    `server` names the MCP server that ran the call; `refused` says the permission
    gate did not let the call run (read-only mode, or the person denied it).
    """

    output: str
    ok: bool = True
    subagent: dict[str, Any] | None = None
    stats: dict[str, Any] | None = None
    server: str | None = None
    refused: bool = False

    def to_json(self) -> str:
        """The result as sent in `toolCall`: `{"ok": bool, "output": str(, "server", "refused")}`."""
        out: dict[str, Any] = {"ok": self.ok, "output": self.output}
        if self.server is not None:
            out["server"] = self.server
        if self.refused:
            out["refused"] = True
        return json.dumps(out, ensure_ascii=False)

    def for_model(self) -> str:
        """The tool message content the model reads next."""
        return self.output if self.ok else f"ERROR: {self.output}"


class AgentEvents(DeltaSink, Protocol):
    """Where an agent reports progress (the top-level turn, or a subagent's stream)."""

    def status(self, message: str) -> None:
        """A milestone ("calling model", "running: pytest -q")."""

    def tool_started(self, call: ToolCallRequest) -> None:
        """A tool is about to run."""

    def tool_finished(self, call: ToolCallRequest, params: str, result: ToolResult) -> None:
        """A tool ran; `params` is its arguments as JSON text."""

    def usage(self, report: UsageReport) -> None:
        """One model call ended: its tokens and time."""

    def child(self, agent_id: str) -> AgentEvents:
        """The events of a subagent started by tool call `agent_id`."""
        ...


#: Runs a subagent: (call id, description, prompt) → its result.
Spawner = Callable[[str, str, str], Awaitable[ToolResult]]


@dataclass
class ToolContext:
    """What a running tool may use."""

    workspace: Workspace
    settings: DroneSettings
    events: AgentEvents
    call_id: str = ""
    spawn: Spawner | None = None
    #: What this agent has read in its turn (shared by all its calls).
    reads: FileReads = field(default_factory=FileReads)


Handler = Callable[[Any, ToolContext], Awaitable[str | ToolResult]]


@dataclass(frozen=True)
class Tool:
    """One tool: its parameters are validated with `params` before `run` sees them.

    `read_only` tools change nothing by themselves, so they run unasked in "ask" and
    "read-only" mode (`task` counts: its subagent's calls pass the same gate). `schema`
    replaces the JSON schema derived from `params` (MCP tools bring their own).
    """

    name: str
    description: str
    params: type[BaseModel]
    run: Handler
    read_only: bool = False
    schema: dict[str, Any] | None = None
    #: The MCP server that serves the tool (None: a built-in one).
    server: str | None = None

    def spec(self) -> dict[str, Any]:
        """The Chat Completions `tools` entry."""
        schema = dict(self.schema) if self.schema is not None else self.params.model_json_schema()
        schema.pop("title", None)
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": schema},
        }


@dataclass
class ToolBox:
    """The tools an agent may call, by name."""

    tools: dict[str, Tool] = field(default_factory=dict)

    @classmethod
    def of(cls, tools: Iterable[Tool]) -> ToolBox:
        """A toolbox holding `tools`."""
        return cls({tool.name: tool for tool in tools})

    def without(self, name: str) -> ToolBox:
        """The same tools but `name` (subagents get no `task`)."""
        return ToolBox({k: v for k, v in self.tools.items() if k != name})

    def specs(self) -> list[dict[str, Any]]:
        """The `tools` list for the model."""
        return [tool.spec() for tool in self.tools.values()]

    async def execute(self, call: ToolCallRequest, ctx: ToolContext) -> ToolResult:
        """Run one call; a bad name, bad arguments or a ToolError become an error result."""
        try:
            tool = self.tools.get(call.name)
            if tool is None:
                raise ToolError(
                    f"unknown tool {call.name!r}; the tools are {', '.join(self.tools)}"
                )
            params = _parse(tool, call.arguments)
            out = await tool.run(params, ctx)
        except ToolError as exc:
            return ToolResult(str(exc), ok=False)
        except OSError as exc:
            return ToolResult(f"{call.name} failed: {exc}", ok=False)
        return out if isinstance(out, ToolResult) else ToolResult(out)


def _parse(tool: Tool, arguments: str) -> BaseModel:
    try:
        data = json.loads(arguments or "{}")
    except ValueError as exc:
        raise ToolError(
            f"expected JSON arguments for {tool.name}, got {arguments!r:.200}: {exc}"
        ) from None
    try:
        return tool.params.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'arguments'}: {e['msg']}" for e in exc.errors()
        )
        raise ToolError(f"bad arguments for {tool.name}: {problems}") from None


def default_toolbox(extra: Iterable[Tool] = ()) -> ToolBox:
    """The built-in tools (files, search, shell and task), then `extra` ones (MCP servers')."""
    from gadget.drone.agent.tools import files, search, shell, task

    return ToolBox.of([*files.TOOLS, search.TOOL, shell.TOOL, task.TOOL, *extra])
