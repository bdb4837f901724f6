"""The stream → blocks: turns each active turn's events into stored blocks.

Per active turn the recorder keeps an in-memory mirror of the whole turn (so a
reloaded IDE gets an exact snapshot without a database read) and a writer task
that applies the turn's database writes strictly in order, off the relay path.

Flush policy of a growing text block (thinking or responding): a block starts at
a mode change and ends at the next one (or a tool call, or completion), as in
the reference; while it grows, its new text is written at most
`flush_interval_ms` after it arrived or as soon as `flush_bytes` are pending, as
one INSERT for the first piece and `content || delta` UPDATEs after that. So at
most ~250 ms / 16 KiB of a block live only in memory, and it stays one block.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from gadget.protocol import BlockMode, BlockOut, ToolCallOut, TurnOut, TurnStatus
from gadget.store.repository import Store
from gadget.store.tables import utcnow

logger = logging.getLogger(__name__)

Op = Callable[[], Awaitable[None]]


class _Writer:
    """Applies one turn's database writes in order; a failed write is retried, then logged."""

    def __init__(self, turn_id: str) -> None:
        self._turn_id = turn_id
        self._queue: asyncio.Queue[Op | None] = asyncio.Queue()
        self._task = asyncio.create_task(self._run(), name=f"recorder:{turn_id}")

    def put(self, op: Op) -> None:
        self._queue.put_nowait(op)

    async def sync(self) -> None:
        """Wait until every write queued so far is applied."""
        done = asyncio.Event()

        async def mark() -> None:
            done.set()

        self.put(mark)
        await done.wait()

    async def close(self) -> None:
        """Apply every queued write, then stop."""
        self._queue.put_nowait(None)
        await self._task

    async def _run(self) -> None:
        while (op := await self._queue.get()) is not None:
            for attempt in range(3):
                try:
                    await op()
                    break
                except asyncio.CancelledError:
                    raise
                except Exception:
                    logger.exception("write %d of turn %s failed", attempt + 1, self._turn_id)
                    await asyncio.sleep(0.05 * (attempt + 1))


@dataclass
class _TextBlock:
    idx: int
    attempt: int
    mode: BlockMode
    created_at: datetime
    parts: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)
    pending_len: int = 0
    row_id: int | None = None
    insert_queued: bool = False

    def content(self) -> str:
        if len(self.parts) > 1:
            self.parts[:] = ["".join(self.parts)]
        return self.parts[0] if self.parts else ""


@dataclass
class _ToolBlock:
    idx: int
    attempt: int
    created_at: datetime
    call_id: str


@dataclass
class TurnRecord:
    """The live state of one turn being recorded."""

    base: TurnOut
    attempt: int
    next_idx: int
    writer: _Writer
    blocks: list[_TextBlock | _ToolBlock] = field(default_factory=list)
    calls: dict[str, ToolCallOut] = field(default_factory=dict)
    growing: _TextBlock | None = None
    timer: asyncio.TimerHandle | None = None


class Recorder:
    """Records the stream of every active turn (see the module docstring)."""

    def __init__(self, store: Store, flush_interval_ms: int, flush_bytes: int) -> None:
        self._store = store
        self._interval = flush_interval_ms / 1000
        self._bytes = flush_bytes
        self._turns: dict[str, TurnRecord] = {}
        self._closing: set[asyncio.Task[None]] = set()
        #: Turns just finished whose last writes are still being applied (served from memory).
        self._finishing: dict[str, TurnRecord] = {}

    # -- lifecycle -------------------------------------------------------------
    def start(self, turn: TurnOut, attempt: int = 1, growing_row: int | None = None) -> TurnRecord:
        """Begin recording a turn (from its stored state: blocks already there are kept).

        Args:
            growing_row: row id of the turn's last text block, to keep growing it
                (a hub restarted mid-turn) instead of starting a new block.
        """
        rec = TurnRecord(
            base=turn.model_copy(update={"blocks": [], "toolCalls": []}),
            attempt=attempt,
            next_idx=len(turn.blocks),
            writer=_Writer(turn.id),
        )
        for call in turn.toolCalls:
            rec.calls[call.callId] = call
        for i, b in enumerate(turn.blocks):
            if b.mode is BlockMode.TOOL and isinstance(b.content, dict):
                rec.blocks.append(_ToolBlock(i, b.attempt, b.createdAt, str(b.content["callId"])))
            else:
                rec.blocks.append(_TextBlock(i, b.attempt, b.mode, b.createdAt, [str(b.content)]))
        last = rec.blocks[-1] if rec.blocks else None
        if growing_row is not None and isinstance(last, _TextBlock) and last.attempt == attempt:
            last.row_id, last.insert_queued = growing_row, True
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
            rec.attempt += 1
            rec.base = rec.base.model_copy(update={"retries": rec.base.retries + 1})

    def finish(self, turn_id: str, status: TurnStatus, error: str | None = None) -> None:
        """Flush the turn, store its final status, and stop recording it once written."""
        rec = self._turns.pop(turn_id, None)
        if rec is None:
            return
        self._close_growing(rec)
        rec.base = rec.base.model_copy(update={"status": status, "errorMessage": error})
        rec.writer.put(lambda: self._store.set_turn_status(turn_id, status, error))
        self._finishing[turn_id] = rec
        task = asyncio.create_task(rec.writer.close(), name=f"recorder-close:{turn_id}")
        self._closing.add(task)

        def done(t: asyncio.Task[None]) -> None:
            self._closing.discard(t)
            if self._finishing.get(turn_id) is rec:
                del self._finishing[turn_id]

        task.add_done_callback(done)

    async def drain(self) -> None:
        """Write everything buffered and wait for every writer (hub shutdown, tests)."""
        for rec in list(self._turns.values()):
            self._flush(rec)
        await asyncio.gather(*(rec.writer.sync() for rec in list(self._turns.values())))
        while self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    async def close(self) -> None:
        """Flush and stop every writer; turns stay processing in the database."""
        for turn_id in list(self._turns):
            rec = self._turns.pop(turn_id)
            self._close_growing(rec)
            await rec.writer.close()
        await self.drain()

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
        elif rec.timer is None:
            rec.timer = asyncio.get_running_loop().call_later(self._interval, self._flush, rec)

    def tool_call(self, turn_id: str, call: ToolCallOut) -> None:
        """Close the growing block and append a tool block with its tool call."""
        rec = self._turns.get(turn_id)
        if rec is None:
            return
        self._close_growing(rec)
        idx, attempt, at = rec.next_idx, rec.attempt, utcnow()
        rec.next_idx += 1
        rec.calls[call.callId] = call
        rec.blocks.append(_ToolBlock(idx, attempt, at, call.callId))
        rec.writer.put(lambda: self._store.insert_tool_call(turn_id, idx, attempt, at, call))

    def complete_tool(
        self, turn_id: str, call_id: str, response: str | None, subagent: dict[str, Any] | None
    ) -> bool:
        """Set a (subagent) tool call's final response and summary; False if no such call."""
        rec = self._turns.get(turn_id)
        if rec is None or call_id not in rec.calls:
            return False
        update: dict[str, Any] = {}
        if response is not None:
            update["response"] = response
        if subagent is not None:
            update["subagent"] = subagent
        rec.calls[call_id] = rec.calls[call_id].model_copy(update=update)
        rec.writer.put(lambda: self._store.complete_tool_call(turn_id, call_id, response, subagent))
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
        return rec.base.model_copy(update={"blocks": blocks, "toolCalls": calls, "stats": stats})

    # -- writes ----------------------------------------------------------------
    def _close_growing(self, rec: TurnRecord) -> None:
        self._flush(rec)
        rec.growing = None

    def _flush(self, rec: TurnRecord) -> None:
        if rec.timer is not None:
            rec.timer.cancel()
            rec.timer = None
        block = rec.growing
        if block is None or not block.pending:
            return
        delta = "".join(block.pending)
        block.pending.clear()
        block.pending_len = 0
        turn_id = rec.base.id
        if not block.insert_queued:
            block.insert_queued = True

            async def insert() -> None:
                block.row_id = await self._store.insert_block(
                    turn_id, block.idx, block.attempt, block.mode, block.created_at, delta
                )

            rec.writer.put(insert)
        else:

            async def append() -> None:
                assert block.row_id is not None
                await self._store.append_block(block.row_id, delta)

            rec.writer.put(append)
