"""The agent loop: ask the model, run the tools it calls, append, repeat until it answers."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from gadget.config import DroneSettings
from gadget.drone.agent.approvals import PermissionGate
from gadget.drone.agent.model import Model, ToolCallRequest
from gadget.drone.agent.prompt import system_prompt
from gadget.drone.agent.reads import FileReads
from gadget.drone.agent.tools import AgentEvents, ToolBox, ToolContext, ToolResult
from gadget.drone.agent.usage import UsageTotals
from gadget.drone.agent.workspace import Workspace
from gadget.drone.exceptions import LimitsExceeded
from gadget.drone.history import Message, fit_context

__all__ = ["Agent", "AgentRun"]

#: Tokens kept free in the context for the model's reply.
REPLY_RESERVE = 4096


@dataclass
class AgentRun:
    """How a run ended: the final answer and what it took."""

    answer: str
    steps: int
    tool_calls: list[str] = field(default_factory=list)
    usage: UsageTotals = field(default_factory=UsageTotals)


class Agent:
    """One agent (the turn's, or a subagent) with its own context.

    `model_name` overrides the drone's default model (the chat session's choice);
    `gate` decides which calls run (None: all of them, as in "auto"); `agent_id` is
    the `task` call's id for a subagent. :attr:`usage` sums its model calls, its
    subagents' included.
    """

    def __init__(
        self,
        model: Model,
        tools: ToolBox,
        workspace: Workspace,
        settings: DroneSettings,
        events: AgentEvents,
        *,
        subagent: bool = False,
        model_name: str | None = None,
        gate: PermissionGate | None = None,
        agent_id: str | None = None,
    ) -> None:
        """Set up the agent; `run` does the work."""
        self.model, self.tools, self.workspace = model, tools, workspace
        self.settings, self.events, self.subagent = settings, events, subagent
        self.model_name, self.gate, self.agent_id = model_name, gate, agent_id
        self.messages: list[Message] = []
        self.steps = 0
        self.called: list[str] = []
        self.usage = UsageTotals()
        self.reads = FileReads()

    async def run(self, prompt: str, past: list[list[Message]] | None = None) -> AgentRun:
        """Work on `prompt`, with `past` turns (oldest first) as memory."""
        system = {
            "role": "system",
            "content": system_prompt(self.workspace, self.tools, subagent=self.subagent),
        }
        budget = max(
            self.settings.llm_context_tokens - REPLY_RESERVE, self.settings.llm_context_tokens // 2
        )
        self.messages = [{"role": "user", "content": prompt}]
        specs = self.tools.specs()
        while self.steps < self.settings.agent_max_steps:
            self.steps += 1
            self.events.status("calling model")
            context = fit_context(system, past or [], self.messages, budget)
            reply = await self.model.complete(context, specs, self.events, model=self.model_name)
            if reply.usage is not None:
                self.usage.add(reply.usage)
                self.events.usage(reply.usage)
            self.messages.append(reply.as_message())
            if not reply.tool_calls:
                return AgentRun(reply.content, self.steps, self.called, self.usage)
            for call in reply.tool_calls:
                await self._call(call)
        raise LimitsExceeded(
            f"the agent took {self.steps} steps without a final answer — "
            "raise GADGET_AGENT_MAX_STEPS or ask for a smaller piece of work"
        )

    async def _call(self, call: ToolCallRequest) -> None:
        """Run one tool call, report it, and append its result for the model."""
        self.events.tool_started(call)
        params = _normalized(call.arguments)
        refused = None
        if self.gate is not None:
            tool = self.tools.tools.get(call.name)
            refused = await self.gate.check(call, tool, params, self.agent_id)
        if refused is not None:
            result = refused
        else:
            ctx = ToolContext(
                self.workspace,
                self.settings,
                self.events,
                call.id,
                spawn=None if self.subagent else self._spawn,
                reads=self.reads,
            )
            result = await self.tools.execute(call, ctx)
        self.called.append(call.name)
        self.events.tool_finished(call, params, result)
        self.messages.append(
            {"role": "tool", "tool_call_id": call.id, "content": result.for_model()}
        )

    async def _spawn(self, call_id: str, description: str, prompt: str) -> ToolResult:
        """Run a subagent for the `task` call `call_id` and sum it up."""
        child = Agent(
            self.model,
            self.tools.without("task"),
            self.workspace,
            self.settings,
            self.events.child(call_id),
            subagent=True,
            model_name=self.model_name,
            gate=self.gate,
            agent_id=call_id,
        )
        started = time.monotonic()
        try:
            run = await child.run(prompt)
            answer, ok = run.answer, True
        except LimitsExceeded as exc:
            answer, ok = f"the subagent stopped: {exc}", False
        finally:
            self.usage.merge(child.usage)
        summary: dict[str, Any] = {
            "description": description,
            "prompt": prompt,
            "steps": child.steps,
            "toolCalls": child.called,
            "ok": ok,
        }
        stats = {
            "steps": child.steps,
            "toolCallCount": len(child.called),
            "durationMs": round((time.monotonic() - started) * 1000),
        }
        return ToolResult(answer, ok=ok, subagent=summary, stats=stats)

    def transcript(self, note: str | None = None) -> list[Message]:
        """This run's messages, well-formed for a later request even if the run was cut short."""
        out = list(self.messages)
        answered = {m.get("tool_call_id") for m in out if m.get("role") == "tool"}
        for message in [m for m in out if m.get("tool_calls")]:
            for call in message["tool_calls"]:
                if call["id"] not in answered:
                    out.append(
                        {
                            "role": "tool",
                            "tool_call_id": call["id"],
                            "content": "ERROR: not run (turn ended)",
                        }
                    )
        if note:
            out.append({"role": "assistant", "content": note})
        return out


def _normalized(arguments: str) -> str:
    """The call's arguments as compact JSON (unparsable text is kept as a JSON string)."""
    try:
        return json.dumps(json.loads(arguments or "{}"), ensure_ascii=False)
    except ValueError:
        return json.dumps(arguments)
