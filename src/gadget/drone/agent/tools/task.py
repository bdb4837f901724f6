"""The task tool: hand a self-contained piece of work to a subagent with a fresh context."""

from __future__ import annotations

from pydantic import BaseModel, Field

from gadget.drone.agent.tools import Tool, ToolContext, ToolResult
from gadget.drone.exceptions import ToolError

__all__ = ["TOOL"]


class TaskParams(BaseModel):
    """task arguments."""

    description: str = Field(min_length=1, description="A few words naming the task")
    prompt: str = Field(min_length=1, description="Everything the subagent needs to know and do")


async def task(p: TaskParams, ctx: ToolContext) -> ToolResult:
    """Run a subagent; its final answer is the result."""
    if ctx.spawn is None:
        raise ToolError("a subagent cannot start subagents; do the work with the other tools")
    return await ctx.spawn(ctx.call_id, p.description, p.prompt)


TOOL = Tool(
    "task",
    "Start a subagent with a fresh context and the same tools (but task) for a "
    "self-contained job, e.g. researching the code base; returns its final answer.",
    TaskParams,
    task,
    # the subagent's own calls pass the same permission gate
    read_only=True,
)
