"""A turn's approvals in the database: the pending one, and every answer by callId.

`chat_turns.pending_approval` holds the card (protocol.PendingApproval as JSON) and
`pending_call_id` its callId apart: an answer is a conditional UPDATE on that column,
so the first answer wins whichever node and socket it comes from. `approvals` maps each
answered callId to `{"decision", "by", "at", "name", "parameters"}`; a turn's tool
calls show their answer from it (store/repository.py).
"""

from __future__ import annotations

import json
from typing import Any, cast

from sqlalchemy import Table, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from gadget.protocol import TurnStatus
from gadget.store.tables import ChatTurn, utcnow

_turns = cast(Table, ChatTurn.__table__)

#: What an answer may find instead of its call pending.
NotPending = str


async def answer(
    session: AsyncSession, turn_id: str, call_id: str, decision: str, by: str, *, lock_row: bool
) -> dict[str, Any] | NotPending:
    """Record `decision` (by the user `by`) as the answer to `call_id` if it is the turn's
    pending call; the answer as stored.

    Otherwise says why not: "answered" (an answer came first), "replaced" (the drone asks
    about another call now), "ended" (the turn is over), "none" (nothing of that call).
    """
    query = select(
        _turns.c.status, _turns.c.pending_call_id, _turns.c.pending_approval, _turns.c.approvals
    ).where(_turns.c.id == turn_id)
    if lock_row:
        query = query.with_for_update()
    row = (await session.execute(query)).one_or_none()
    if row is None:
        return "none"
    answers = _load(row.approvals)
    if call_id in answers:
        return "answered"
    if row.status != TurnStatus.PROCESSING.value:
        return "ended"
    if row.pending_call_id != call_id:
        return "replaced" if row.pending_call_id is not None else "none"
    pending = json.loads(row.pending_approval or "{}")
    result = await session.execute(
        update(_turns)
        .where(_turns.c.id == turn_id, _turns.c.pending_call_id == call_id)
        .values(pending_approval=None, pending_call_id=None)
    )
    if cast(Any, result).rowcount != 1:
        return "answered"
    record = {
        "decision": decision,
        "by": by,
        "at": utcnow().isoformat(),
        "name": pending.get("name", ""),
        "parameters": pending.get("parameters", ""),
    }
    answers[call_id] = record
    await session.execute(
        update(_turns).where(_turns.c.id == turn_id).values(approvals=json.dumps(answers))
    )
    return record


async def merge(
    session: AsyncSession,
    turn_id: str,
    add: dict[str, dict[str, Any]],
    drop: str | None = None,
    *,
    lock_row: bool,
) -> None:
    """Add answers to the turn's `approvals` (and forget the one of callId `drop`)."""
    query = select(_turns.c.approvals).where(_turns.c.id == turn_id)
    if lock_row:
        query = query.with_for_update()
    data = _load(await session.scalar(query))
    if drop is not None:
        data.pop(drop, None)
    data.update(add)
    await session.execute(
        update(_turns).where(_turns.c.id == turn_id).values(approvals=json.dumps(data))
    )


def _load(text: str | None) -> dict[str, dict[str, Any]]:
    loaded = json.loads(text) if text else {}
    return loaded if isinstance(loaded, dict) else {}


def decisions(text: str | None) -> dict[str, dict[str, Any]]:
    """A stored `approvals` column as a dict (empty when none)."""
    return _load(text)
