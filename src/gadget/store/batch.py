"""The stream's writes: typed operations per turn, applied many turns at a time, exactly once.

Each operation appends to a turn: a new block, more characters of a growing block
(`content || delta`, addressed by `(turn_id, idx)`, so it needs no read and no row
id), a tool call, a subagent event or completion, the turn's end. None of them reads
or rewrites the rest of the turn: O(1) whatever its length.

Every operation carries the `seq` of the stream event it comes from. A
:class:`TurnWrite` holds one turn's operations up to `to_seq`; :func:`apply_writes`
applies many of them in one transaction and sets each turn's `applied_seq` in it, so
the stored turn is always exactly the stream up to `applied_seq`. Applying is
idempotent (operations at or below the stored `applied_seq` are skipped: a batch
retried after a commit whose answer was lost writes nothing twice) and fenced (a
turn is written only while its drone's lease names this node, at the epoch the
node holds, with this turn current).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, cast

from sqlalchemy import Table, Text, and_, bindparam, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from gadget.protocol import BlockMode, ToolCallOut, TurnStatus
from gadget.store import approvals
from gadget.store.tables import (
    ChatTurn,
    DroneLease,
    ToolCall,
    TurnAgentEvent,
    TurnBlock,
    utcnow,
)

_blocks = cast(Table, TurnBlock.__table__)
_calls = cast(Table, ToolCall.__table__)
_turns = cast(Table, ChatTurn.__table__)
_agents = cast(Table, TurnAgentEvent.__table__)
_leases = cast(Table, DroneLease.__table__)

_appends = (
    update(_blocks)
    .where(_blocks.c.turn_id == bindparam("b_turn"), _blocks.c.idx == bindparam("b_idx"))
    .values(content=_blocks.c.content + bindparam("b_delta", type_=Text()))
)
_set_seq = (
    update(_turns).where(_turns.c.id == bindparam("t_id")).values(applied_seq=bindparam("t_seq"))
)


@dataclass(frozen=True)
class InsertBlock:
    """A new text block with its first text."""

    seq: int
    idx: int
    attempt: int
    mode: BlockMode
    created_at: datetime
    content: str


@dataclass(frozen=True)
class AppendBlock:
    """More text for a growing block."""

    seq: int
    idx: int
    delta: str


@dataclass(frozen=True)
class InsertToolCall:
    """A tool call and the tool block that points at it."""

    seq: int
    idx: int
    attempt: int
    created_at: datetime
    call: ToolCallOut
    #: The call is the one the turn's pending approval asked about: it is no longer pending.
    clears_pending: bool = False


@dataclass(frozen=True)
class CompleteToolCall:
    """A subagent's final response and summary for its tool call; its events are dropped."""

    seq: int
    call_id: str
    response: str | None
    subagent: dict[str, Any] | None


@dataclass(frozen=True)
class InsertAgentEvent:
    """One event of a running subagent (kept until its completion)."""

    seq: int
    agent_id: str
    event: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class AskApproval:
    """A tool call waits for the person: the turn's pending approval (a PendingApproval)."""

    seq: int
    pending: dict[str, Any]


@dataclass(frozen=True)
class ReuseAnswer:
    """A retried attempt asked again for a call already answered: the answer is its too."""

    seq: int
    call_id: str
    record: dict[str, Any]
    old_call_id: str


@dataclass(frozen=True)
class AddUsage:
    """One model call's usage added to the turn's sums."""

    seq: int
    prompt_tokens: int
    completion_tokens: int
    duration_ms: int
    cost: float | None


@dataclass(frozen=True)
class SetChanges:
    """The files the turn changed (a JSON list of protocol.FileChange)."""

    seq: int
    changes: list[dict[str, Any]]


@dataclass(frozen=True)
class EndTurn:
    """The turn's final status; its drone's lease no longer has a current turn."""

    seq: int
    status: TurnStatus
    error: str | None
    cancelled: bool = False


TurnOp = (
    InsertBlock
    | AppendBlock
    | InsertToolCall
    | CompleteToolCall
    | InsertAgentEvent
    | EndTurn
    | AskApproval
    | ReuseAnswer
    | AddUsage
    | SetChanges
)


class Outcome(StrEnum):
    """What became of one turn's write."""

    APPLIED = "applied"
    #: Everything in it was already stored (a retry after a lost commit answer).
    ALREADY = "already"
    #: The lease no longer names this node at this epoch with this turn: nothing written.
    FENCED = "fenced"


@dataclass
class TurnWrite:
    """One turn's operations up to `to_seq`, and the lease they are fenced by."""

    turn_id: str
    drone_id: str | None
    epoch: int
    to_seq: int
    ops: list[TurnOp] = field(default_factory=list)

    def size(self) -> int:
        """Rough bytes held by the operations (for the uncommitted-memory bound)."""
        return sum(_op_size(op) for op in self.ops)


def _op_size(op: TurnOp) -> int:
    if isinstance(op, AppendBlock):
        return len(op.delta) + 64
    if isinstance(op, InsertBlock):
        return len(op.content) + 128
    if isinstance(op, InsertToolCall):
        return len(op.call.parameters) + len(op.call.response) + 256
    if isinstance(op, InsertAgentEvent | CompleteToolCall | AskApproval | ReuseAnswer):
        return 512
    if isinstance(op, SetChanges):
        return 256 + sum(len(c.get("diff") or "") + 128 for c in op.changes)
    return 128


async def apply_writes(
    session: AsyncSession, writes: Sequence[TurnWrite], node: str, *, lock_rows: bool
) -> dict[str, Outcome]:
    """Apply `writes` in `session` (the caller commits); the outcome of each turn.

    Args:
        node: this hub node's id, which the drone leases must name.
        lock_rows: take row locks (`FOR UPDATE`) on the turns and leases read, so that a
            takeover by another node waits for this transaction (PostgreSQL).
    """
    applied_seq, fences = await _read_state(session, writes, lock_rows)
    outcomes: dict[str, Outcome] = {}
    todo: list[tuple[TurnWrite, list[TurnOp]]] = []
    for w in writes:
        lease = fences.get(w.drone_id or "")
        if w.drone_id is not None and lease != (node, w.epoch, w.turn_id):
            outcomes[w.turn_id] = Outcome.FENCED
            continue
        done = applied_seq.get(w.turn_id, 0)
        ops = [op for op in w.ops if op.seq > done]
        if not ops and done >= w.to_seq:
            outcomes[w.turn_id] = Outcome.ALREADY
            continue
        todo.append((w, ops))
        outcomes[w.turn_id] = Outcome.APPLIED
    # New text blocks first and appends last, each kind in one executemany (a statement
    # per row costs ~1 ms of the event loop's time: seconds at 1,000 live turns).
    inserts, rest, appends = _split(todo)
    if inserts:
        await session.execute(insert(_blocks), inserts)
    for w, op in rest:
        await _apply_one(session, w, op)
    if appends:
        await session.execute(_appends, appends)
    seqs = [{"t_id": w.turn_id, "t_seq": w.to_seq} for w, _ in todo]
    if seqs:
        await session.execute(_set_seq, seqs)
    return outcomes


async def _read_state(
    session: AsyncSession, writes: Sequence[TurnWrite], lock_rows: bool
) -> tuple[dict[str, int], dict[str, tuple[str | None, int, str | None]]]:
    turn_ids = [w.turn_id for w in writes]
    drone_ids = sorted({w.drone_id for w in writes if w.drone_id is not None})
    turns_q = select(_turns.c.id, _turns.c.applied_seq).where(_turns.c.id.in_(turn_ids))
    leases_q = select(
        _leases.c.drone_id, _leases.c.owner_node, _leases.c.epoch, _leases.c.current_turn_id
    ).where(_leases.c.drone_id.in_(drone_ids))
    if lock_rows:
        turns_q, leases_q = turns_q.with_for_update(), leases_q.with_for_update()
    applied = {row.id: int(row.applied_seq) for row in await session.execute(turns_q)}
    fences: dict[str, tuple[str | None, int, str | None]] = {}
    if drone_ids:
        for row in await session.execute(leases_q):
            fences[row.drone_id] = (row.owner_node, int(row.epoch), row.current_turn_id)
    return applied, fences


def _split(
    todo: list[tuple[TurnWrite, list[TurnOp]]],
) -> tuple[list[dict[str, Any]], list[tuple[TurnWrite, TurnOp]], list[dict[str, Any]]]:
    """(new text blocks' rows, the other operations in order, appends' parameters)."""
    inserts: list[dict[str, Any]] = []
    rest: list[tuple[TurnWrite, TurnOp]] = []
    appends: list[dict[str, Any]] = []
    for w, ops in todo:
        for op in ops:
            if isinstance(op, AppendBlock):
                appends.append({"b_turn": w.turn_id, "b_idx": op.idx, "b_delta": op.delta})
            elif isinstance(op, InsertBlock):
                inserts.append(_block_row(w.turn_id, op))
            else:
                rest.append((w, op))
    return inserts, rest, appends


def _block_row(turn_id: str, op: InsertBlock) -> dict[str, Any]:
    return {
        "turn_id": turn_id,
        "idx": op.idx,
        "attempt": op.attempt,
        "mode": op.mode.value,
        "created_at": op.created_at,
        "content": op.content,
    }


async def _apply_one(session: AsyncSession, w: TurnWrite, op: TurnOp) -> None:
    """Every operation but new text blocks and appends (applied together, before and after).

    New text blocks are inserted before everything else and appends run last, so a
    block inserted in this batch exists before its appends; appends of one block keep
    their order, and no other operation reads or removes a text block, so the result
    is the stream's order.
    """
    if isinstance(op, InsertToolCall):
        await _insert_tool_call(session, w.turn_id, op)
    elif isinstance(op, CompleteToolCall):
        await _complete_tool_call(session, w.turn_id, op)
    elif isinstance(op, InsertAgentEvent):
        await session.execute(
            insert(_agents).values(
                turn_id=w.turn_id,
                agent_id=op.agent_id,
                event=op.event,
                payload=json.dumps(op.payload, ensure_ascii=False),
            )
        )
    elif isinstance(op, EndTurn):
        await _end_turn(session, w, op)
    else:
        await _apply_control(session, w.turn_id, op)


async def _apply_control(session: AsyncSession, turn_id: str, op: TurnOp) -> None:
    """Approvals, usage and changes: updates of the turn's own row."""
    turn = _turns.c.id == turn_id
    if isinstance(op, AskApproval):
        pending = json.dumps(op.pending, ensure_ascii=False)
        values: dict[str, Any] = {
            "pending_approval": pending,
            "pending_call_id": op.pending["callId"],
        }
        await session.execute(update(_turns).where(turn).values(**values))
    elif isinstance(op, ReuseAnswer):
        await approvals.merge(
            session, turn_id, {op.call_id: op.record}, op.old_call_id, lock_row=False
        )
    elif isinstance(op, AddUsage):
        c = _turns.c
        values = {
            "prompt_tokens": c.prompt_tokens + op.prompt_tokens,
            "completion_tokens": c.completion_tokens + op.completion_tokens,
            "model_calls": c.model_calls + 1,
            "model_ms": c.model_ms + op.duration_ms,
        }
        if op.cost is not None:
            values["cost"] = func.coalesce(c.cost, 0.0) + op.cost
        await session.execute(update(_turns).where(turn).values(**values))
    elif isinstance(op, SetChanges):
        changes = json.dumps(op.changes, ensure_ascii=False)
        await session.execute(update(_turns).where(turn).values(changes=changes))


async def _insert_tool_call(session: AsyncSession, turn_id: str, op: InsertToolCall) -> None:
    call_row = await session.execute(
        insert(_calls)
        .values(
            turn_id=turn_id,
            call_id=op.call.callId,
            name=op.call.name,
            parameters=op.call.parameters,
            response=op.call.response,
        )
        .returning(_calls.c.id)
    )
    await session.execute(
        insert(_blocks).values(
            turn_id=turn_id,
            idx=op.idx,
            attempt=op.attempt,
            mode=BlockMode.TOOL.value,
            created_at=op.created_at,
            content="",
            tool_call_id=call_row.scalar_one(),
        )
    )
    if op.clears_pending:
        await session.execute(
            update(_turns)
            .where(_turns.c.id == turn_id, _turns.c.pending_call_id == op.call.callId)
            .values(pending_approval=None, pending_call_id=None)
        )


async def _complete_tool_call(session: AsyncSession, turn_id: str, op: CompleteToolCall) -> None:
    values: dict[str, Any] = {}
    if op.response is not None:
        values["response"] = op.response
    if op.subagent is not None:
        values["subagent"] = json.dumps(op.subagent, ensure_ascii=False)
    if values:
        await session.execute(
            update(_calls)
            .where(_calls.c.turn_id == turn_id, _calls.c.call_id == op.call_id)
            .values(**values)
        )
    await session.execute(
        delete(_agents).where(_agents.c.turn_id == turn_id, _agents.c.agent_id == op.call_id)
    )


async def _end_turn(session: AsyncSession, w: TurnWrite, op: EndTurn) -> None:
    await session.execute(
        update(_turns)
        .where(_turns.c.id == w.turn_id, _turns.c.status == TurnStatus.PROCESSING.value)
        .values(
            status=op.status.value,
            error_message=op.error,
            cancelled=op.cancelled,
            pending_approval=None,
            pending_call_id=None,
            updated_at=utcnow(),
        )
    )
    if w.drone_id is not None:
        await session.execute(
            update(_leases)
            .where(and_(_leases.c.drone_id == w.drone_id, _leases.c.current_turn_id == w.turn_id))
            .values(
                current_turn_id=None,
                drone_deadline=None,
                drone_deadline_reason=None,
                retry_at=None,
                updated_at=utcnow(),
            )
        )
