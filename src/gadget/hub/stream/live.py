"""One live turn: the in-memory mirror of everything applied, and the writes it owes.

A stream event is applied at most once, in order: :meth:`LiveTurn.accept` drops a
seq at or below the turn's `seq` (a resend) and refuses a gap. Applying updates
the mirror (so a snapshot is exact without a database read) and queues typed
writes (store/batch.py) carrying the event's seq. A growing text block's new text
is held until the turn is sealed (every flush tick, or at `flush_bytes`), so one
block is one INSERT and then `content || delta` UPDATEs.

The mirror is rebuilt from the stored turn after a restart or on another node:
the stored rows are exactly the stream up to the stored `seq`, and applying the
same events after it gives the same blocks (the last text block of the current
attempt keeps growing).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any

from gadget.hub.stream.approvals import Asked, Asking, TurnApprovals
from gadget.protocol import (
    BlockMode,
    BlockOut,
    FileChange,
    ToolApproval,
    ToolCallOut,
    TurnOut,
    TurnStatus,
    Usage,
)
from gadget.store import batch
from gadget.store.repository import merge_agent_event
from gadget.store.tables import utcnow


class Verdict(Enum):
    """What to do with an incoming stream event."""

    APPLY = "apply"
    DUPLICATE = "duplicate"
    GAP = "gap"


@dataclass(eq=False)
class _TextBlock:
    idx: int
    attempt: int
    mode: BlockMode
    created_at: datetime
    parts: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)
    pending_len: int = 0
    #: The seq of the last event whose text is in `pending`.
    pending_seq: int = 0
    stored: bool = False

    def content(self) -> str:
        if len(self.parts) > 1:
            self.parts[:] = ["".join(self.parts)]
        return self.parts[0] if self.parts else ""


@dataclass(eq=False)
class _ToolBlock:
    idx: int
    attempt: int
    created_at: datetime
    call_id: str


@dataclass
class UsageSums:
    """A turn's model calls summed (the `usage` events applied)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    model_calls: int = 0
    duration_ms: int = 0
    cost: float | None = None

    @classmethod
    def of(cls, stats: dict[str, Any]) -> UsageSums:
        """The sums in a stored turn's `stats`."""
        cost = stats.get("cost")
        return cls(
            int(stats.get("promptTokens", 0)),
            int(stats.get("completionTokens", 0)),
            int(stats.get("modelCalls", 0)),
            int(stats.get("durationMs", 0)),
            float(cost) if cost is not None else None,
        )

    def stats(self) -> dict[str, Any]:
        """The `turn.stats` fields (none before the first model call is reported)."""
        if not self.model_calls:
            return {}
        out: dict[str, Any] = {
            "promptTokens": self.prompt_tokens,
            "completionTokens": self.completion_tokens,
            "modelCalls": self.model_calls,
            "durationMs": self.duration_ms,
        }
        if self.cost is not None:
            out["cost"] = round(self.cost, 6)
        return out


@dataclass(eq=False)
class LiveTurn:
    """The live state of one turn on the node recording it."""

    base: TurnOut
    drone_id: str
    attempt: int
    next_idx: int
    #: The last applied stream event.
    seq: int = 0
    cancel_requested: bool = False
    ended: bool = False
    blocks: list[_TextBlock | _ToolBlock] = field(default_factory=list)
    calls: dict[str, ToolCallOut] = field(default_factory=dict)
    growing: _TextBlock | None = None
    #: The stream of each subagent still running, by agentId.
    agents: dict[str, list[list[Any]]] = field(default_factory=dict)
    #: Writes applied to the mirror but not yet sealed for the writer.
    ops: list[batch.TurnOp] = field(default_factory=list)
    pending_bytes: int = 0
    #: Bytes of events applied since the last seal, as the recorder counts them.
    unsealed_bytes: int = 0
    approvals: TurnApprovals = field(default_factory=TurnApprovals)
    usage: UsageSums = field(default_factory=UsageSums)
    changes: list[FileChange] | None = None

    @property
    def id(self) -> str:
        """The turn's id."""
        return self.base.id

    @property
    def chat_session_id(self) -> str:
        """The chat session the turn belongs to."""
        return self.base.chatSession

    # -- building --------------------------------------------------------------
    @classmethod
    def resume(cls, turn: TurnOut, drone_id: str, cancel_requested: bool = False) -> LiveTurn:
        """The live turn continuing a stored one (new, restarted, or taken over)."""
        live = cls(
            base=turn.model_copy(
                update={
                    "blocks": [],
                    "toolCalls": [],
                    "agentStreams": None,
                    "pendingApproval": None,
                    "changes": None,
                    "decisions": None,
                }
            ),
            drone_id=drone_id,
            attempt=turn.retries + 1,
            next_idx=len(turn.blocks),
            seq=turn.seq,
            cancel_requested=cancel_requested,
            approvals=TurnApprovals.of(turn),
            usage=UsageSums.of(turn.stats),
            changes=list(turn.changes) if turn.changes is not None else None,
        )
        live.calls = {call.callId: call for call in turn.toolCalls}
        for i, b in enumerate(turn.blocks):
            if b.mode is BlockMode.TOOL and isinstance(b.content, dict):
                live.blocks.append(_ToolBlock(i, b.attempt, b.createdAt, str(b.content["callId"])))
            else:
                live.blocks.append(
                    _TextBlock(i, b.attempt, b.mode, b.createdAt, [str(b.content)], stored=True)
                )
        last = live.blocks[-1] if live.blocks else None
        if isinstance(last, _TextBlock) and last.attempt == live.attempt:
            live.growing = last
        live.agents = {k: [list(e) for e in v] for k, v in (turn.agentStreams or {}).items()}
        return live

    # -- the stream ------------------------------------------------------------
    def accept(self, seq: int | None) -> tuple[Verdict, int]:
        """Whether to apply an event numbered `seq` (None: unnumbered), and the seq it gets."""
        if seq is None:
            return Verdict.APPLY, self.seq + 1
        if seq <= self.seq:
            return Verdict.DUPLICATE, seq
        if seq != self.seq + 1:
            return Verdict.GAP, self.seq + 1
        return Verdict.APPLY, seq

    def text(self, seq: int, mode: BlockMode, delta: str, flush_bytes: int) -> None:
        """Append a thinking or responding delta to the growing block."""
        self.seq = seq
        block = self.growing
        if block is None or block.mode is not mode:
            self._close_growing()
            block = _TextBlock(self.next_idx, self.attempt, mode, utcnow())
            self.next_idx += 1
            self.blocks.append(block)
            self.growing = block
        block.parts.append(delta)
        block.pending.append(delta)
        block.pending_len += len(delta)
        block.pending_seq = seq
        self.pending_bytes += len(delta)
        if block.pending_len >= flush_bytes:
            self._flush_text()

    def tool_call(self, seq: int, call: ToolCallOut) -> None:
        """Close the growing block and append a tool block with its tool call."""
        self._close_growing()
        self.seq = seq
        idx, at = self.next_idx, utcnow()
        self.next_idx += 1
        answer, was_pending = self.approvals.called(call.callId)
        if answer is not None:
            call = call.model_copy(update={"approval": answer})
        self.calls[call.callId] = call
        self.blocks.append(_ToolBlock(idx, self.attempt, at, call.callId))
        self._op(batch.InsertToolCall(seq, idx, self.attempt, at, call, was_pending))

    def ask(self, seq: int, request: ToolApproval) -> Asking:
        """A tool call waits for the person (or gets the answer given before a restart)."""
        self.seq = seq
        asking = self.approvals.ask(request, self.calls)
        if asking.kind is Asked.ANSWERED:
            old = asking.answered_as or ""
            self._op(batch.ReuseAnswer(seq, request.callId, asking.data, old))
        else:
            self._op(batch.AskApproval(seq, asking.data))
        return asking

    def answered(self, call_id: str, record: dict[str, Any]) -> None:
        """The person's answer to `call_id` is stored (the mirror follows the database)."""
        self.approvals.answered(call_id, record)
        if call_id in self.calls:  # the call ran first (its mode changed while asking)
            self.calls[call_id] = self.calls[call_id].model_copy(
                update={"approval": self.approvals.called(call_id)[0]}
            )

    def add_usage(self, seq: int, usage: Usage) -> None:
        """One model call's tokens, time and cost."""
        self.seq = seq
        sums = self.usage
        sums.model_calls += 1
        sums.prompt_tokens += usage.promptTokens or 0
        sums.completion_tokens += usage.completionTokens or 0
        sums.duration_ms += usage.durationMs
        if usage.cost is not None:
            sums.cost = (sums.cost or 0.0) + usage.cost
        self._op(
            batch.AddUsage(
                seq,
                usage.promptTokens or 0,
                usage.completionTokens or 0,
                usage.durationMs,
                usage.cost,
            )
        )

    def set_changes(self, seq: int, changes: list[FileChange]) -> None:
        """The files the turn changed, as its drone reports them at the end."""
        self.seq = seq
        self.changes = changes
        self._op(batch.SetChanges(seq, [c.model_dump(exclude_none=True) for c in changes]))

    def agent_event(self, seq: int, agent_id: str, event: str, payload: dict[str, Any]) -> None:
        """Keep a subagent's event (consecutive text deltas merged in the mirror)."""
        self.seq = seq
        data = {k: v for k, v in payload.items() if k != "agentId"}
        merge_agent_event(self.agents.setdefault(agent_id, []), event, data)
        self._op(batch.InsertAgentEvent(seq, agent_id, event, data))

    def complete_tool(
        self, seq: int, call_id: str, response: str | None, subagent: dict[str, Any] | None
    ) -> bool:
        """Set a (subagent) tool call's final response and summary; False if no such call."""
        self.seq = seq
        if call_id not in self.calls:
            return False
        stream = self.agents.pop(call_id, None)
        if stream:
            subagent = {**(subagent or {}), "stream": stream}
        update: dict[str, Any] = {}
        if response is not None:
            update["response"] = response
        if subagent is not None:
            update["subagent"] = subagent
        self.calls[call_id] = self.calls[call_id].model_copy(update=update)
        self._op(batch.CompleteToolCall(seq, call_id, response, subagent))
        return True

    def end(
        self, seq: int, status: TurnStatus, error: str | None, *, cancelled: bool = False
    ) -> bool:
        """The turn's last event: its status (a cancel asked for makes an error a cancel);
        whether it ended as a cancel."""
        self._close_growing()
        self.seq = seq
        cancelled = status is TurnStatus.ERROR and (cancelled or self.cancel_requested)
        self.ended = True
        self.approvals.ended()
        self.base = self.base.model_copy(
            update={"status": status, "errorMessage": error, "cancelled": cancelled or None}
        )
        self._op(batch.EndTurn(seq, status, error, cancelled))
        return cancelled

    def new_attempt(self) -> None:
        """A retry starts: what the drone streams next belongs to a new attempt."""
        self._close_growing()
        self.agents.clear()
        self.attempt += 1
        self.base = self.base.model_copy(update={"retries": self.base.retries + 1})

    # -- writes ----------------------------------------------------------------
    def seal(self, epoch: int) -> batch.TurnWrite | None:
        """Everything owed so far, as one write up to `seq` (None when nothing is owed)."""
        self._flush_text()
        if not self.ops:
            return None
        ops, self.ops, self.pending_bytes = self.ops, [], 0
        return batch.TurnWrite(self.id, self.drone_id, epoch, self.seq, ops)

    def _op(self, op: batch.TurnOp) -> None:
        self.ops.append(op)
        self.pending_bytes += 256

    def _close_growing(self) -> None:
        self._flush_text()
        self.growing = None

    def _flush_text(self) -> None:
        block = self.growing
        if block is None or not block.pending:
            return
        delta = "".join(block.pending)
        seq = block.pending_seq
        block.pending.clear()
        block.pending_len = 0
        if block.stored:
            self.ops.append(batch.AppendBlock(seq, block.idx, delta))
        else:
            block.stored = True
            self.ops.append(
                batch.InsertBlock(
                    seq, block.idx, block.attempt, block.mode, block.created_at, delta
                )
            )

    # -- reading ---------------------------------------------------------------
    def snapshot(self) -> TurnOut:
        """The whole turn so far (everything applied, stored or not), with its seq."""
        blocks = []
        for b in self.blocks:
            if isinstance(b, _ToolBlock):
                content: str | dict[str, Any] = self.calls[b.call_id].tool_block_content()
                blocks.append(
                    BlockOut(
                        mode=BlockMode.TOOL,
                        createdAt=b.created_at,
                        content=content,
                        attempt=b.attempt,
                    )
                )
            else:
                blocks.append(
                    BlockOut(
                        mode=b.mode, createdAt=b.created_at, content=b.content(), attempt=b.attempt
                    )
                )
        calls = list(self.calls.values())
        stats = {"toolCallCount": len(calls), "blockCount": len(blocks), **self.usage.stats()}
        streams = {k: [list(e) for e in v] for k, v in self.agents.items()} or None
        return self.base.model_copy(
            update={
                "blocks": blocks,
                "toolCalls": calls,
                "stats": stats,
                "agentStreams": streams,
                "seq": self.seq,
                "pendingApproval": self.approvals.pending,
                "changes": self.changes,
                "decisions": dict(self.approvals.answers) or None,
            }
        )
