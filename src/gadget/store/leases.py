"""Drone leases: the lock, the current turn and the serving node of each drone, as one row.

Every change is a conditional UPDATE inside a transaction the caller runs (the hub's
writer, hub/stream/writer.py): it names the state it expects (the epoch it read, the
current turn it ends, no current turn to claim one) and reports whether the row was
in that state. Deadlines are columns, swept by whichever node is alive
(hub/state/sweeper.py), so a restart loses none of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, and_, bindparam, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from gadget.protocol import TurnStatus
from gadget.store.tables import ChatSession, ChatTurn, DroneLease, new_id, utcnow

_leases = cast(Table, DroneLease.__table__)
_turns = cast(Table, ChatTurn.__table__)


@dataclass(frozen=True)
class Lease:
    """One drone's lease row as read."""

    drone_id: str
    chat_session_id: str | None = None
    user_id: str | None = None
    current_turn_id: str | None = None
    owner_node: str | None = None
    epoch: int = 0
    drone_deadline: datetime | None = None
    drone_deadline_reason: str | None = None
    ide_deadline: datetime | None = None
    retry_at: datetime | None = None

    @classmethod
    def of(cls, row: Any) -> Lease:
        """A lease from a result row of the whole table."""
        return cls(
            drone_id=row.drone_id,
            chat_session_id=row.chat_session_id,
            user_id=row.user_id,
            current_turn_id=row.current_turn_id,
            owner_node=row.owner_node,
            epoch=int(row.epoch),
            drone_deadline=_aware(row.drone_deadline),
            drone_deadline_reason=row.drone_deadline_reason,
            ide_deadline=_aware(row.ide_deadline),
            retry_at=_aware(row.retry_at),
        )


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _changed(result: Any) -> bool:
    return bool(result.rowcount)


#: Statements built once (a statement built per call costs more CPU than running it).
_ONE = select(_leases).where(_leases.c.drone_id == bindparam("drone_id"))
_ONE_LOCKED = _ONE.with_for_update()
_MANY = select(_leases).where(_leases.c.drone_id.in_(bindparam("ids", expanding=True)))


async def read(
    session: AsyncSession | AsyncConnection, drone_id: str, *, lock_row: bool = False
) -> Lease | None:
    """The drone's lease, if it has one (locked for this transaction when `lock_row`)."""
    stmt = _ONE_LOCKED if lock_row else _ONE
    row = (await session.execute(stmt, {"drone_id": drone_id})).first()
    return Lease.of(row) if row is not None else None


async def read_many(
    session: AsyncSession | AsyncConnection, drone_ids: Sequence[str]
) -> dict[str, Lease]:
    """The leases of these drones, by drone id (drones without one are absent)."""
    if not drone_ids:
        return {}
    rows = await session.execute(_MANY, {"ids": list(drone_ids)})
    return {row.drone_id: Lease.of(row) for row in rows}


async def ensure(session: AsyncSession, drone_id: str) -> None:
    """Create the drone's (empty) lease row unless it exists."""
    dialect = session.bind.dialect.name if session.bind is not None else "sqlite"
    values = {"drone_id": drone_id, "epoch": 0, "updated_at": utcnow()}
    stmt: Any
    if dialect == "postgresql":
        stmt = postgresql.insert(_leases).values(**values).on_conflict_do_nothing()
    else:
        stmt = sqlite.insert(_leases).values(**values).on_conflict_do_nothing()
    await session.execute(stmt)


async def take(session: AsyncSession, drone_id: str, node: str, lock_row: bool) -> Lease:
    """The drone's socket is now on `node`: the lease names it, at the next epoch.

    Returns the lease as it was before (its owner and epoch say who held it).
    """
    await ensure(session, drone_id)
    before = await read(session, drone_id, lock_row=lock_row)
    assert before is not None  # ensured just above, in this transaction
    params = {"d": drone_id, "e": before.epoch, "node": node, "next": before.epoch + 1}
    await session.execute(_TAKE, {**params, "at": utcnow()})
    return before


_TAKE = (
    update(_leases)
    .where(_leases.c.drone_id == bindparam("d"), _leases.c.epoch == bindparam("e"))
    .values(
        owner_node=bindparam("node"),
        epoch=bindparam("next"),
        drone_deadline=None,
        drone_deadline_reason=None,
        updated_at=bindparam("at"),
    )
)


async def away(
    session: AsyncSession, drone_id: str, node: str, epoch: int, deadline: datetime
) -> bool:
    """The drone's socket left `node`, which still owns it: a current turn waits until
    `deadline` for the drone to come back (to any node, which then takes the lease).

    The owner stays: what `node` applied before the drone left is still written, and
    only a takeover (a higher epoch) fences it.
    """
    params = {"d": drone_id, "node": node, "e": epoch, "until": deadline, "at": utcnow()}
    return _changed(await session.execute(_AWAY, params))


_AWAY = (
    update(_leases)
    .where(
        _leases.c.drone_id == bindparam("d"),
        _leases.c.owner_node == bindparam("node"),
        _leases.c.epoch == bindparam("e"),
        _leases.c.current_turn_id.is_not(None),
    )
    .values(
        drone_deadline=bindparam("until"), drone_deadline_reason="grace", updated_at=bindparam("at")
    )
)


async def set_drone_deadline(
    session: AsyncSession, drone_id: str, turn_id: str | None, when: datetime, reason: str
) -> bool:
    """The current turn (`turn_id`, or whichever there is) ends at `when` unless it is claimed."""
    cond = [_leases.c.drone_id == drone_id, _leases.c.current_turn_id.is_not(None)]
    if turn_id is not None:
        cond.append(_leases.c.current_turn_id == turn_id)
    result = await session.execute(
        update(_leases)
        .where(*cond)
        .values(drone_deadline=when, drone_deadline_reason=reason, updated_at=utcnow())
    )
    return _changed(result)


async def clear_drone_deadline(session: AsyncSession, drone_id: str, turn_id: str) -> bool:
    """The drone claimed its current turn: it no longer ends by deadline."""
    result = await session.execute(
        update(_leases)
        .where(_leases.c.drone_id == drone_id, _leases.c.current_turn_id == turn_id)
        .values(drone_deadline=None, drone_deadline_reason=None, updated_at=utcnow())
    )
    return _changed(result)


async def lock(session: AsyncSession, drone_id: str, chat_session_id: str, user_id: str) -> bool:
    """Lock the drone for a chat session of `user_id`: free, the user's own, and not busy
    with a turn of another session."""
    await ensure(session, drone_id)
    result = await session.execute(
        update(_leases)
        .where(
            _leases.c.drone_id == drone_id,
            or_(_leases.c.user_id.is_(None), _leases.c.user_id == user_id),
            or_(
                _leases.c.current_turn_id.is_(None),
                _leases.c.chat_session_id == chat_session_id,
            ),
        )
        .values(
            chat_session_id=chat_session_id,
            user_id=user_id,
            ide_deadline=None,
            updated_at=utcnow(),
        )
    )
    return _changed(result)


async def bind_session(session: AsyncSession, chat_session_id: str, drone_id: str) -> None:
    """The chat session is served by `drone_id` from now on."""
    await session.execute(
        update(ChatSession).where(ChatSession.id == chat_session_id).values(drone_id=drone_id)
    )


async def unlock(session: AsyncSession, drone_id: str, chat_session_id: str) -> bool:
    """Release the lock of `chat_session_id` (never while a turn is current)."""
    result = await session.execute(
        update(_leases)
        .where(
            _leases.c.drone_id == drone_id,
            _leases.c.chat_session_id == chat_session_id,
            _leases.c.current_turn_id.is_(None),
        )
        .values(chat_session_id=None, user_id=None, ide_deadline=None, updated_at=utcnow())
    )
    return _changed(result)


async def set_ide_deadline(
    session: AsyncSession, drone_id: str, chat_session_id: str, when: datetime | None
) -> bool:
    """The lock of `chat_session_id` is released at `when` (None: its IDE is back)."""
    result = await session.execute(
        update(_leases)
        .where(_leases.c.drone_id == drone_id, _leases.c.chat_session_id == chat_session_id)
        .values(ide_deadline=when, updated_at=utcnow())
    )
    return _changed(result)


async def claim_turn(
    session: AsyncSession, drone_id: str, chat_session_id: str, user_id: str, prompt: str
) -> ChatTurn | None:
    """Create a processing turn and make it the drone's current one, or None if it is busy."""
    turn_id = new_id()
    result = await session.execute(
        update(_leases)
        .where(
            _leases.c.drone_id == drone_id,
            _leases.c.chat_session_id == chat_session_id,
            _leases.c.user_id == user_id,
            _leases.c.current_turn_id.is_(None),
        )
        .values(current_turn_id=turn_id, retry_at=None, updated_at=utcnow())
    )
    if not _changed(result):
        return None
    turn = ChatTurn(
        id=turn_id,
        chat_session_id=chat_session_id,
        user_id=user_id,
        prompt=prompt,
        status=TurnStatus.PROCESSING.value,
    )
    session.add(turn)
    await session.flush()
    await session.execute(
        update(ChatSession)
        .where(ChatSession.id == chat_session_id, ChatSession.title == "")
        .values(title=" ".join(prompt.split())[:80])
    )
    return turn


async def set_retry(session: AsyncSession, drone_id: str, turn_id: str, when: datetime) -> bool:
    """Crash recovery: the current turn `turn_id` is sent again at `when`."""
    result = await session.execute(
        update(_leases)
        .where(_leases.c.drone_id == drone_id, _leases.c.current_turn_id == turn_id)
        .values(retry_at=when, drone_deadline=None, drone_deadline_reason=None)
    )
    return _changed(result)


async def start_attempt(session: AsyncSession, drone_id: str, turn_id: str) -> bool:
    """The retry is due: count one more attempt (only if the turn is still current)."""
    result = await session.execute(
        update(_leases)
        .where(
            _leases.c.drone_id == drone_id,
            _leases.c.current_turn_id == turn_id,
            _leases.c.retry_at.is_not(None),
        )
        .values(retry_at=None, updated_at=utcnow())
    )
    if not _changed(result):
        return False
    await session.execute(
        update(_turns)
        .where(_turns.c.id == turn_id, _turns.c.status == TurnStatus.PROCESSING.value)
        .values(retries=_turns.c.retries + 1, updated_at=utcnow())
    )
    return True


async def request_cancel(session: AsyncSession, turn_id: str) -> None:
    """Remember that an IDE asked to cancel this turn (its end is then a cancel)."""
    await session.execute(
        update(_turns)
        .where(_turns.c.id == turn_id, _turns.c.status == TurnStatus.PROCESSING.value)
        .values(cancel_requested=True)
    )


async def end_turn(
    session: AsyncSession,
    drone_id: str | None,
    turn_id: str,
    status: TurnStatus,
    error: str | None,
    cancelled: bool,
) -> bool:
    """End a turn that no node is recording (its drone is away, or it waits for a retry).

    The turn must still be processing; its drone's lease (if any) loses it as current turn.
    Whether the turn was ended by this call.
    """
    result = await session.execute(
        update(_turns)
        .where(_turns.c.id == turn_id, _turns.c.status == TurnStatus.PROCESSING.value)
        .values(
            status=status.value,
            error_message=error,
            cancelled=cancelled,
            pending_approval=None,
            pending_call_id=None,
            updated_at=utcnow(),
        )
    )
    if drone_id is not None:
        await session.execute(
            update(_leases)
            .where(_leases.c.drone_id == drone_id, _leases.c.current_turn_id == turn_id)
            .values(
                current_turn_id=None,
                drone_deadline=None,
                drone_deadline_reason=None,
                retry_at=None,
                updated_at=utcnow(),
            )
        )
    return _changed(result)


async def claim_due(
    session: AsyncSession,
    now: datetime,
    node: str,
    hold: timedelta,
    *,
    lock_rows: bool,
    limit: int = 100,
) -> list[Lease]:
    """Leases with a deadline that has passed, as they were; each passed deadline is
    pushed back by `hold`, so no other node handles it meanwhile, and a node that dies
    before handling it leaves it to another one once `hold` is over.

    Retries are due only on the node that owns the drone (it records the new attempt).
    With `lock_rows` (PostgreSQL) rows another node is sweeping are skipped
    (`FOR UPDATE SKIP LOCKED`).
    """
    stmt = (
        select(_leases)
        .where(
            or_(
                _leases.c.drone_deadline <= now,
                _leases.c.ide_deadline <= now,
                and_(_leases.c.retry_at <= now, _leases.c.owner_node == node),
            )
        )
        .limit(limit)
    )
    if lock_rows:
        stmt = stmt.with_for_update(skip_locked=True)
    later = now + hold
    claimed = []
    for lease in [Lease.of(row) for row in await session.execute(stmt)]:
        # Conditional on the deadlines still being those read, so that two sweeps (SQLite
        # takes no row locks) never both claim one.
        values: dict[str, Any] = {}
        cond = [_leases.c.drone_id == lease.drone_id]
        for column, seen in (
            ("drone_deadline", lease.drone_deadline),
            ("ide_deadline", lease.ide_deadline),
            ("retry_at", lease.retry_at if lease.owner_node == node else None),
        ):
            if seen is not None and seen <= now:
                values[column] = later
                cond.append(_leases.c[column] == seen)
        result = await session.execute(update(_leases).where(*cond).values(**values))
        if _changed(result):
            claimed.append(lease)
    return claimed


async def owned_by_others(
    session: AsyncSession, live_nodes: Sequence[str], *, lock_rows: bool, limit: int = 500
) -> list[Lease]:
    """Leases whose owner node is not among `live_nodes` (it died without letting go)."""
    stmt = (
        select(_leases)
        .where(and_(_leases.c.owner_node.is_not(None), _leases.c.owner_node.not_in(live_nodes)))
        .limit(limit)
    )
    if lock_rows:
        stmt = stmt.with_for_update(skip_locked=True)
    return [Lease.of(row) for row in await session.execute(stmt)]


async def orphan(session: AsyncSession, lease: Lease, deadline: datetime) -> bool:
    """A dead node's lease: no owner; its current turn waits until `deadline` for the drone."""
    result = await session.execute(
        update(_leases)
        .where(
            _leases.c.drone_id == lease.drone_id,
            _leases.c.owner_node == lease.owner_node,
            _leases.c.epoch == lease.epoch,
        )
        .values(owner_node=None, updated_at=utcnow())
    )
    if _changed(result) and lease.current_turn_id is not None:
        await set_drone_deadline(session, lease.drone_id, lease.current_turn_id, deadline, "grace")
    return _changed(result)
