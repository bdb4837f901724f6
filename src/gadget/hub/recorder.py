"""The stream → blocks: turns each active turn's events into stored blocks.

Per active turn the recorder keeps an in-memory mirror of the whole turn (so a
reloaded IDE gets an exact snapshot without a database read). Database writes
leave the relay path: they are queued as typed operations (store/batch.py) and
one writer task applies everything queued, in order, in one transaction per
batch, whatever the number of live turns.

Flush policy of a growing text block (thinking or responding): a block starts at
a mode change and ends at the next one (or a tool call, or completion), as in
the reference. While it grows, its new text is queued at the next flush tick
(every `flush_interval_ms`, for all turns at once) or as soon as `flush_bytes`
are pending: an INSERT for the first piece, `content || delta` UPDATEs after.
So at most ~250 ms / 16 KiB of a block live only in memory, and it stays one block.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from gadget.protocol import BlockMode, BlockOut, ToolCallOut, TurnOut, TurnStatus
from gadget.store import batch
from gadget.store.repository import Store
from gadget.store.tables import utcnow

logger = logging.getLogger(__name__)

#: The text field of each subagent text event (merged across consecutive deltas).
_AGENT_TEXT = {"agent:thinking": "thinking", "agent:response": "chunk"}


class _Writer:
    """Applies queued writes in order, a whole batch per transaction; failures are retried alone."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._ops: list[batch.WriteOp] = []
        self._waiters: list[asyncio.Future[None]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def put(self, op: batch.WriteOp) -> None:
        self._ops.append(op)
        self._wake.set()
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="recorder-writer")

    async def sync(self) -> None:
        """Wait until every write queued so far is applied."""
        if self._task is None:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self._wake.set()
        await waiter

    async def close(self) -> None:
        """Apply everything queued, then stop."""
        await self.sync()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            ops, waiters = self._ops, self._waiters
            self._ops, self._waiters = [], []
            if ops:
                await self._write(ops)
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    async def _write(self, ops: list[batch.WriteOp]) -> None:
        try:
            await self._store.write_batch(ops)
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("a batch of %d writes failed; retrying one by one", len(ops))
        for op in ops:
            for attempt in range(3):
                try:
                    await self._store.write_batch([op])
                    break
                except asyncio.CancelledError:
                    raise
                except Exception:
                    logger.exception("write %r failed (attempt %d)", op, attempt + 1)
                    await asyncio.sleep(0.05 * (attempt + 1))


@dataclass(eq=False)
class _TextBlock:
    idx: int
    attempt: int
    mode: BlockMode
    created_at: datetime
    parts: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)
    pending_len: int = 0
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


@dataclass(eq=False)
class TurnRecord:
    """The live state of one turn being recorded."""

    base: TurnOut
    attempt: int
    next_idx: int
    blocks: list[_TextBlock | _ToolBlock] = field(default_factory=list)
    calls: dict[str, ToolCallOut] = field(default_factory=dict)
    growing: _TextBlock | None = None
    #: The stream of each subagent still running, by agentId (see `agent_event`).
    agents: dict[str, list[list[Any]]] = field(default_factory=dict)


class Recorder:
    """Records the stream of every active turn (see the module docstring)."""

    def __init__(self, store: Store, flush_interval_ms: int, flush_bytes: int) -> None:
        self._interval = flush_interval_ms / 1000
        self._bytes = flush_bytes
        self._writer = _Writer(store)
        self._turns: dict[str, TurnRecord] = {}
        #: Turns just finished whose last writes are still being applied (served from memory).
        self._finishing: dict[str, TurnRecord] = {}
        self._dirty: dict[str, TurnRecord] = {}
        self._tick: asyncio.TimerHandle | None = None
        self._closing: set[asyncio.Task[None]] = set()

    # -- lifecycle -------------------------------------------------------------
    def start(self, turn: TurnOut, attempt: int = 1, resume_growing: bool = False) -> TurnRecord:
        """Begin recording a turn (from its stored state: blocks already there are kept).

        Args:
            resume_growing: keep growing the turn's last text block (a hub restarted
                mid-turn) instead of starting a new block with the next delta.
        """
        rec = TurnRecord(
            base=turn.model_copy(update={"blocks": [], "toolCalls": []}),
            attempt=attempt,
            next_idx=len(turn.blocks),
        )
        rec.calls = {call.callId: call for call in turn.toolCalls}
        for i, b in enumerate(turn.blocks):
            if b.mode is BlockMode.TOOL and isinstance(b.content, dict):
                rec.blocks.append(_ToolBlock(i, b.attempt, b.createdAt, str(b.content["callId"])))
            else:
                rec.blocks.append(
                    _TextBlock(i, b.attempt, b.mode, b.createdAt, [str(b.content)], stored=True)
                )
        last = rec.blocks[-1] if rec.blocks else None
        if resume_growing and isinstance(last, _TextBlock) and last.attempt == attempt:
            rec.growing = last
        self._turns[turn.id] = rec
        return rec

    def active(self, turn_id: str) -> bool:
        """Whether this turn is being recorded now."""
        return turn_id in self._turns

    def new_attempt(self, turn_id: str) -> None:
        """Close the growing block: what the drone streams next belongs to a new attempt."""
        rec = self._turns.get(turn_id)
        if rec is not None:
            self._close_growing(rec)
            rec.agents.clear()
            rec.attempt += 1
            rec.base = rec.base.model_copy(update={"retries": rec.base.retries + 1})

    def finish(
        self, turn_id: str, status: TurnStatus, error: str | None = None, cancelled: bool = False
    ) -> None:
        """Flush the turn, store its final status, and stop recording it once written."""
        rec = self._turns.pop(turn_id, None)
        if rec is None:
            return
        self._close_growing(rec)
        self._dirty.pop(turn_id, None)
        rec.base = rec.base.model_copy(
            update={
                "status": status,
                "errorMessage": error,
                "cancelled": True if cancelled else None,
            }
        )
        self._writer.put(batch.SetStatus(turn_id, status, error, cancelled))
        self._finishing[turn_id] = rec

        async def written() -> None:
            await self._writer.sync()
            if self._finishing.get(turn_id) is rec:
                del self._finishing[turn_id]

        task = asyncio.create_task(written(), name=f"recorder-finish:{turn_id}")
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def drain(self) -> None:
        """Write everything buffered and wait until it is stored (hub shutdown, tests)."""
        self._flush_dirty()
        await self._writer.sync()
        while self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    async def close(self) -> None:
        """Write everything buffered and stop; live turns stay processing in the database."""
        await self.drain()
        self._turns.clear()
        await self._writer.close()

    # -- the stream ------------------------------------------------------------
    def text(self, turn_id: str, mode: BlockMode, delta: str) -> None:
        """Append a thinking or responding delta to the turn's growing block."""
        rec = self._turns.get(turn_id)
        if rec is None:
            return
        block = rec.growing
        if block is None or block.mode is not mode:
            self._close_growing(rec)
            block = _TextBlock(rec.next_idx, rec.attempt, mode, utcnow())
            rec.next_idx += 1
            rec.blocks.append(block)
            rec.growing = block
        block.parts.append(delta)
        block.pending.append(delta)
        block.pending_len += len(delta)
        if block.pending_len >= self._bytes:
            self._flush(rec)
            return
        self._dirty[turn_id] = rec
        if self._tick is None:
            self._tick = asyncio.get_running_loop().call_later(self._interval, self._flush_dirty)

    def tool_call(self, turn_id: str, call: ToolCallOut) -> None:
        """Close the growing block and append a tool block with its tool call."""
        rec = self._turns.get(turn_id)
        if rec is None:
            return
        self._close_growing(rec)
        idx, at = rec.next_idx, utcnow()
        rec.next_idx += 1
        rec.calls[call.callId] = call
        rec.blocks.append(_ToolBlock(idx, rec.attempt, at, call.callId))
        self._writer.put(batch.InsertToolCall(turn_id, idx, rec.attempt, at, call))

    def agent_event(self, turn_id: str, agent_id: str, event: str, payload: dict[str, Any]) -> None:
        """Keep a subagent's event; consecutive text deltas are merged into one entry."""
        rec = self._turns.get(turn_id)
        if rec is None:
            return
        stream = rec.agents.setdefault(agent_id, [])
        data = {k: v for k, v in payload.items() if k != "agentId"}
        key = _AGENT_TEXT.get(event)
        last = stream[-1] if stream else None
        if (
            key is not None
            and last is not None
            and last[0] == event
            and isinstance(data.get(key), str)
        ):
            last[1] = {**last[1], key: last[1][key] + data[key]}
        else:
            stream.append([event, data])

    def complete_tool(
        self, turn_id: str, call_id: str, response: str | None, subagent: dict[str, Any] | None
    ) -> bool:
        """Set a (subagent) tool call's final response and summary; False if no such call."""
        rec = self._turns.get(turn_id)
        if rec is None or call_id not in rec.calls:
            return False
        stream = rec.agents.pop(call_id, None)
        if stream:
            subagent = {**(subagent or {}), "stream": stream}
        update: dict[str, Any] = {}
        if response is not None:
            update["response"] = response
        if subagent is not None:
            update["subagent"] = subagent
        rec.calls[call_id] = rec.calls[call_id].model_copy(update=update)
        self._writer.put(batch.CompleteToolCall(turn_id, call_id, response, subagent))
        return True

    def snapshot(self, turn_id: str) -> TurnOut | None:
        """The whole turn so far, including text not yet written, or None if not active."""
        rec = self._turns.get(turn_id) or self._finishing.get(turn_id)
        if rec is None:
            return None
        blocks = []
        for b in rec.blocks:
            if isinstance(b, _ToolBlock):
                content: str | dict[str, Any] = rec.calls[b.call_id].tool_block_content()
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
        calls = list(rec.calls.values())
        stats = {"toolCallCount": len(calls), "blockCount": len(blocks)}
        streams = {k: [list(e) for e in v] for k, v in rec.agents.items()} or None
        return rec.base.model_copy(
            update={"blocks": blocks, "toolCalls": calls, "stats": stats, "agentStreams": streams}
        )

    # -- writes ----------------------------------------------------------------
    def _close_growing(self, rec: TurnRecord) -> None:
        self._flush(rec)
        rec.growing = None

    def _flush_dirty(self) -> None:
        if self._tick is not None:
            self._tick.cancel()
            self._tick = None
        dirty, self._dirty = self._dirty, {}
        for rec in dirty.values():
            self._flush(rec)

    def _flush(self, rec: TurnRecord) -> None:
        block = rec.growing
        if block is None or not block.pending:
            return
        delta = "".join(block.pending)
        block.pending.clear()
        block.pending_len = 0
        turn_id = rec.base.id
        if block.stored:
            self._writer.put(batch.AppendBlock(turn_id, block.idx, delta))
        else:
            block.stored = True
            self._writer.put(
                batch.InsertBlock(
                    turn_id, block.idx, block.attempt, block.mode, block.created_at, delta
                )
            )
