"""How much of the running turn the screen shows, counted in the hub's blocks.

The hub stores a turn as blocks: a text block grows while deltas of one mode
arrive and ends at a mode change, a tool call or a new attempt; each tool call
is a block of its own. `TurnProgress` mirrors that count from the live events,
so when a reconnect brings the turn back whole (`turnSnapshot`, or the stored
turn when it finished meanwhile), only what the screen does not show yet is
printed: the blocks after the last one shown, the rest of the block that was
growing, tool calls not shown yet (by callId), and subagent tool calls.
"""

from __future__ import annotations

from typing import Any

from gadget.ide.terminal.render import TurnRenderer
from gadget.protocol import BlockMode, BlockOut, ToolCallOut, TurnOut, TurnStatus

_AGENT_TOOL_CALL = "agent:tool-call"


class TurnProgress:
    """The running turn as far as it is printed; prints live events and catches up on a turn."""

    def __init__(self, view: TurnRenderer) -> None:
        self.view = view
        self.begin(None)

    def begin(self, turn_id: str | None) -> None:
        """Start counting a new turn (nothing of it printed yet)."""
        self.turn_id = turn_id
        #: Blocks printed in full or in part; the last of them may still grow.
        self.blocks = 0
        #: Characters printed of the last of them, when it is a text block.
        self.chars = 0
        #: The mode of the hub's growing text block (the next delta of it continues it).
        self.open: BlockMode | None = None
        self.calls: set[str] = set()
        self.agent_calls: dict[str, int] = {}
        self.agents_done: set[str] = set()

    # Live events ------------------------------------------------------------------------

    def text(self, mode: BlockMode, delta: str) -> None:
        """A thinking or response delta of the running turn."""
        if self.open is not mode:
            self.blocks, self.chars, self.open = self.blocks + 1, 0, mode
        self.chars += len(delta)
        self._print_text(mode, delta)

    def tool(self, call_id: str, name: str, params: str, result: str) -> None:
        """A tool call of the running turn: a block of its own."""
        self.blocks, self.chars, self.open = self.blocks + 1, 0, None
        self.calls.add(call_id)
        self.view.tool_call(call_id, name, params, result)

    def agent_tool(self, agent_id: str, tool: str) -> None:
        """A subagent's tool call, as one dim line."""
        self.agent_calls[agent_id] = self.agent_calls.get(agent_id, 0) + 1
        self.view.note(f"  ↳ subagent {agent_id}: {tool}")

    def agent_done(self, agent_id: str) -> None:
        """A subagent finished."""
        self.agents_done.add(agent_id)
        self.view.note(f"  ↳ subagent {agent_id} finished")

    # Catching up ------------------------------------------------------------------------

    def catch_up(self, turn: TurnOut) -> None:
        """Print what `turn` (a snapshot or the stored turn) adds to what is shown of it."""
        if turn.id != self.turn_id:
            self.begin(turn.id)
            self.view.prompt(turn.prompt)
        for index, block in enumerate(turn.blocks):
            self._catch_up_block(index, block)
        self._catch_up_agents(turn)
        self._resync(turn)

    def _catch_up_block(self, index: int, block: BlockOut) -> None:
        if isinstance(block.content, dict):
            call = ToolCallOut.model_validate(block.content)
            if index >= self.blocks and call.callId not in self.calls:
                self.calls.add(call.callId)
                self.view.tool_call(call.callId, call.name, call.parameters, call.response)
            return
        if index < self.blocks - 1:
            return
        if index == self.blocks - 1:
            rest = block.content[self.chars :]
        else:
            self.view.end_block()  # a new block, even of the same mode (a new attempt)
            rest = block.content
        if rest:
            self._print_text(block.mode, rest)

    def _resync(self, turn: TurnOut) -> None:
        self.blocks = len(turn.blocks)
        last = turn.blocks[-1] if turn.blocks else None
        if last is None or isinstance(last.content, dict):
            self.chars, self.open = 0, None
            return
        self.chars = len(last.content)
        growing = turn.status is TurnStatus.PROCESSING and last.attempt == turn.retries + 1
        self.open = last.mode if growing else None

    def _catch_up_agents(self, turn: TurnOut) -> None:
        streams: dict[str, list[Any]] = dict(turn.agentStreams or {})
        finished = [c for c in turn.toolCalls if c.subagent is not None]
        for call in finished:
            stream = (call.subagent or {}).get("stream")
            if isinstance(stream, list):
                streams.setdefault(call.callId, stream)
        for agent_id, stream in streams.items():
            tools = [
                str(e[1].get("tool", "?"))
                for e in stream
                if isinstance(e, list) and len(e) == 2 and e[0] == _AGENT_TOOL_CALL
                if isinstance(e[1], dict)
            ]
            for tool in tools[self.agent_calls.get(agent_id, 0) :]:
                self.agent_tool(agent_id, tool)
        for call in finished:
            if call.callId not in self.agents_done:
                self.agent_done(call.callId)

    def _print_text(self, mode: BlockMode, text: str) -> None:
        if mode is BlockMode.THINKING:
            self.view.thinking(text)
        elif mode is BlockMode.RESPONDING:
            self.view.response(text)
