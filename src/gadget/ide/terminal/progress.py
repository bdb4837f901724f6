"""What the screen shows of one turn, so a snapshot ahead of the cursor prints only its rest.

The cursor (`cursor.py`) decides by seq *whether* a snapshot or a stored turn
adds anything: only one whose seq is beyond the last event applied. Since every
event up to the cursor was applied exactly once and in order, what the screen
shows is then exactly the hub's turn at that seq, a prefix of the snapshot. The
extent of that prefix is kept here with the hub's own block rules
(hub/stream/live.py): a text block grows while deltas of its mode come and ends
at a mode change, a tool call, a new attempt or the end; each tool call is a
block. So the rest is: the tail of the block that was growing, then every later
block, then the subagent tool calls not shown yet.
"""

from __future__ import annotations

from typing import Any

from gadget.ide.terminal.render import TurnRenderer
from gadget.ide.terminal.usage import Tally
from gadget.protocol import BlockMode, BlockOut, FileChange, ToolCallOut, TurnOut, TurnStatus

_AGENT_TOOL_CALL = "agent:tool-call"


class TurnProgress:
    """One turn as far as it is printed: prints its events, and the rest of a newer snapshot."""

    def __init__(self, view: TurnRenderer, turn_id: str) -> None:
        self.view = view
        self.turn_id = turn_id
        #: Blocks printed in full or in part; the last of them may still grow.
        self.blocks = 0
        #: Characters printed of the last of them, when it is a text block.
        self.chars = 0
        #: The mode of the hub's growing text block (the next delta of it continues it).
        self.growing: BlockMode | None = None
        self.attempt = 1
        self.agent_calls: dict[str, int] = {}
        self.agents_done: set[str] = set()
        #: Whether the turn's end was shown.
        self.ended = False
        #: Its model calls so far, and the files it changed (reported just before its end).
        self.usage = Tally()
        self.changes: list[FileChange] | None = None

    # Live events ------------------------------------------------------------------------

    def text(self, mode: BlockMode, delta: str) -> None:
        """A thinking or response delta."""
        if self.growing is not mode:
            self.blocks, self.chars, self.growing = self.blocks + 1, 0, mode
            self.view.end_block()  # a new block, even of the same mode (a new attempt)
        self.chars += len(delta)
        self._print_text(mode, delta)

    def tool(self, call_id: str, name: str, params: str, result: str) -> None:
        """A tool call: a block of its own."""
        self.blocks, self.chars, self.growing = self.blocks + 1, 0, None
        self.view.tool_call(call_id, name, params, result)

    def agent_tool(self, agent_id: str, tool: str) -> None:
        """A subagent's tool call, as one dim line."""
        self.agent_calls[agent_id] = self.agent_calls.get(agent_id, 0) + 1
        self.view.note(f"  ↳ subagent {agent_id}: {tool}")

    def agent_done(self, agent_id: str) -> None:
        """A subagent finished."""
        if agent_id not in self.agents_done:
            self.agents_done.add(agent_id)
            self.view.note(f"  ↳ subagent {agent_id} finished")

    def end(self) -> None:
        """The turn ended: its last block is closed."""
        self.growing = None
        self.ended = True

    def new_attempt(self, attempt: int) -> None:
        """A snapshot says a retry started: the next text begins a new block."""
        if attempt > self.attempt:
            self.attempt, self.growing = attempt, None

    # Catching up ------------------------------------------------------------------------

    def catch_up(self, turn: TurnOut) -> None:
        """Print what `turn` adds to the screen; the caller knows by seq that it is ahead."""
        if not self._is_prefix_of(turn):
            self.view.note("· the hub's copy of this turn differs from the screen: shown again")
            self.blocks, self.chars, self.growing = 0, 0, None
            self.view.prompt(turn.prompt)
        if self.growing is not None:
            tail = turn.blocks[self.blocks - 1]
            if isinstance(tail.content, str) and tail.content[self.chars :]:
                self._print_text(tail.mode, tail.content[self.chars :])
        for block in turn.blocks[self.blocks :]:
            self._print_block(block)
        self._catch_up_agents(turn)
        self._resync(turn)
        model, self.usage = self.usage.model, Tally.of(turn.stats)  # it counts all up to its seq
        self.usage.model = model
        if turn.changes is not None:
            self.changes = list(turn.changes)

    def _is_prefix_of(self, turn: TurnOut) -> bool:
        """Whether the screen's extent fits in `turn` (it does unless the hub lost events)."""
        if self.blocks > len(turn.blocks):
            return False
        if self.blocks and self.growing is not None:
            tail = turn.blocks[self.blocks - 1]
            return isinstance(tail.content, str) and len(tail.content) >= self.chars
        return True

    def _print_block(self, block: BlockOut) -> None:
        if isinstance(block.content, dict):
            call = ToolCallOut.model_validate(block.content)
            self.view.tool_call(
                call.callId, call.name, call.parameters, call.response, call.approval
            )
            return
        self.view.end_block()
        if block.content:
            self._print_text(block.mode, block.content)

    def _resync(self, turn: TurnOut) -> None:
        self.blocks = len(turn.blocks)
        self.attempt = max(self.attempt, turn.retries + 1)
        last = turn.blocks[-1] if turn.blocks else None
        if last is None or isinstance(last.content, dict):
            self.chars, self.growing = 0, None
            return
        self.chars = len(last.content)
        growing = turn.status is TurnStatus.PROCESSING and last.attempt == turn.retries + 1
        self.growing = last.mode if growing else None

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
            self.agent_done(call.callId)

    def _print_text(self, mode: BlockMode, text: str) -> None:
        if mode is BlockMode.THINKING:
            self.view.thinking(text)
        elif mode is BlockMode.RESPONDING:
            self.view.response(text)
