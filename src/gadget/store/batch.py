"""The recorder's writes as small typed operations, applied many at a time in one transaction.

Each operation appends to a turn: a new block, a few more characters of a
growing block (`content || delta`, addressed by `(turn_id, idx)`, so it needs
no read and no row id), a tool call, a subagent's completion, a final status.
None of them reads or rewrites the rest of the turn: O(1) whatever its length.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, Text, bindparam, insert, update
from sqlalchemy.ext.asyncio import AsyncSession

from gadget.protocol import BlockMode, ToolCallOut, TurnStatus
from gadget.store.tables import ChatTurn, ToolCall, TurnBlock, utcnow

_blocks = cast(Table, TurnBlock.__table__)
_appends = (
    update(_blocks)
    .where(_blocks.c.turn_id == bindparam("b_turn"), _blocks.c.idx == bindparam("b_idx"))
    .values(content=_blocks.c.content + bindparam("b_delta", type_=Text()))
)


@dataclass(frozen=True)
class InsertBlock:
    """A new text block with its first text."""

    turn_id: str
    idx: int
    attempt: int
    mode: BlockMode
    created_at: datetime
    content: str


@dataclass(frozen=True)
class AppendBlock:
    """More text for a growing block."""

    turn_id: str
    idx: int
    delta: str


@dataclass(frozen=True)
class InsertToolCall:
    """A tool call and the tool block that points at it."""

    turn_id: str
    idx: int
    attempt: int
    created_at: datetime
    call: ToolCallOut


@dataclass(frozen=True)
class CompleteToolCall:
    """A subagent's final response and summary for its tool call."""

    turn_id: str
    call_id: str
    response: str | None
    subagent: dict[str, Any] | None


@dataclass(frozen=True)
class SetStatus:
    """A turn's final status."""

    turn_id: str
    status: TurnStatus
    error: str | None
    cancelled: bool = False


WriteOp = InsertBlock | AppendBlock | InsertToolCall | CompleteToolCall | SetStatus


async def apply(session: AsyncSession, ops: Sequence[WriteOp]) -> None:
    """Execute `ops` in order in `session`; consecutive appends go as one executemany."""
    i = 0
    while i < len(ops):
        op = ops[i]
        if isinstance(op, AppendBlock):
            j = i
            while j < len(ops) and isinstance(ops[j], AppendBlock):
                j += 1
            params = [{"b_turn": a.turn_id, "b_idx": a.idx, "b_delta": a.delta} for a in ops[i:j]]  # type: ignore[union-attr]
            await session.execute(_appends, params)
            i = j
            continue
        await _apply_one(session, op)
        i += 1


async def _apply_one(session: AsyncSession, op: WriteOp) -> None:
    if isinstance(op, InsertBlock):
        await session.execute(
            insert(_blocks).values(
                turn_id=op.turn_id,
                idx=op.idx,
                attempt=op.attempt,
                mode=op.mode.value,
                created_at=op.created_at,
                content=op.content,
            )
        )
    elif isinstance(op, AppendBlock):
        await session.execute(
            _appends, [{"b_turn": op.turn_id, "b_idx": op.idx, "b_delta": op.delta}]
        )
    elif isinstance(op, InsertToolCall):
        await _insert_tool_call(session, op)
    elif isinstance(op, CompleteToolCall):
        await _complete_tool_call(session, op)
    else:
        await session.execute(
            update(ChatTurn)
            .where(ChatTurn.id == op.turn_id)
            .values(
                status=op.status.value,
                error_message=op.error,
                cancelled=op.cancelled,
                updated_at=utcnow(),
            )
        )


async def _insert_tool_call(session: AsyncSession, op: InsertToolCall) -> None:
    row = ToolCall(
        turn_id=op.turn_id,
        call_id=op.call.callId,
        name=op.call.name,
        parameters=op.call.parameters,
        response=op.call.response,
    )
    session.add(row)
    await session.flush()
    session.add(
        TurnBlock(
            turn_id=op.turn_id,
            idx=op.idx,
            attempt=op.attempt,
            mode=BlockMode.TOOL.value,
            created_at=op.created_at,
            content="",
            tool_call_id=row.id,
        )
    )
    await session.flush()


async def _complete_tool_call(session: AsyncSession, op: CompleteToolCall) -> None:
    values: dict[str, Any] = {}
    if op.response is not None:
        values["response"] = op.response
    if op.subagent is not None:
        values["subagent"] = json.dumps(op.subagent)
    if values:
        await session.execute(
            update(ToolCall)
            .where(ToolCall.turn_id == op.turn_id, ToolCall.call_id == op.call_id)
            .values(**values)
        )
