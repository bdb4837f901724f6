"""The cost of appending a block to a turn that has 10 blocks against one with 10,000.

Straight on gadget.store (Store, make_engine, migrate) over a temporary SQLite
file, with the recorder's own writes of a text block (`Store.write` of a
`TurnWrite`, as its writer task does): the block's first flush (`InsertBlock`) and a later one
(`AppendBlock`, `content || delta` addressed by turn and index). Both turns live in the same table,
so they differ only in how many blocks the turn already has; the timed appends
alternate between them and each timed block is deleted again (untimed), so
every sample is the append of block 10 or of block 10,000.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path
from time import perf_counter

from sqlalchemy import delete, insert

from gadget.protocol import BlockMode, TurnStatus
from gadget.store.batch import AppendBlock, InsertBlock, TurnWrite
from gadget.store.database import make_engine, migrate
from gadget.store.repository import Store
from gadget.store.tables import ChatTurn, TurnBlock, new_id, utcnow

SMALL, LARGE = 10, 10_000


@dataclass
class AppendCost:
    """Median time (ms) of one block's first and second flush at block SMALL and LARGE."""

    small_ms: float
    large_ms: float
    reps: int

    @property
    def ratio(self) -> float:
        return self.large_ms / self.small_ms


#: The last seq written per turn: the store applies each seq of a turn once.
_SEQ: dict[str, int] = {}


async def _turn(store: Store, owner: str, project: str, drone: str) -> str:
    chat = await store.create_chat_session(owner, project, drone)
    turn = ChatTurn(
        id=new_id(),
        chat_session_id=chat.id,
        user_id=owner,
        prompt="prompt",
        status=TurnStatus.PROCESSING.value,
    )
    async with store.transaction() as session:
        session.add(turn)
    return turn.id


async def _write(store: Store, turn_id: str, op: InsertBlock | AppendBlock) -> None:
    await store.write([TurnWrite(turn_id, None, 0, op.seq, [op])], "bench")


def _next_seq(turn_id: str) -> int:
    _SEQ[turn_id] = _SEQ.get(turn_id, 0) + 1
    return _SEQ[turn_id]


async def _fill(store: Store, turn_id: str, count: int) -> None:
    """Blocks 0..count-1 of a turn in one executemany (setup, untimed)."""
    at = utcnow()
    rows = [
        {"turn_id": turn_id, "idx": i, "attempt": 1, "mode": "responding", "created_at": at}
        | {"content": f"block {i} " * 8}
        for i in range(count)
    ]
    async with store.engine.begin() as conn:
        await conn.execute(insert(TurnBlock), rows)


async def _append(store: Store, turn_id: str, idx: int) -> float:
    """Seconds for the recorder's writes of one new text block (then delete it, untimed)."""
    t0 = perf_counter()
    first = InsertBlock(_next_seq(turn_id), idx, 1, BlockMode.RESPONDING, utcnow(), "Hello")
    await _write(store, turn_id, first)
    await _write(store, turn_id, AppendBlock(_next_seq(turn_id), idx, ", world"))
    elapsed = perf_counter() - t0
    async with store.engine.begin() as conn:
        await conn.execute(
            delete(TurnBlock).where(TurnBlock.turn_id == turn_id, TurnBlock.idx == idx)
        )
    return elapsed


async def append_cost(workdir: Path, reps: int) -> AppendCost:
    """Median append time at block SMALL and LARGE of a turn, `reps` alternating samples each."""
    url = f"sqlite+aiosqlite:///{workdir / 'blocks.db'}"
    await migrate(url)
    store = Store(make_engine(url))
    try:
        user = await store.create_user("bench", "not-a-hash")
        project = await store.create_project(user.id, "bench", "")
        drone = await store.create_drone(user.id, "d", "host", "sha256$0")
        small = await _turn(store, user.id, project.id, drone.id)
        large = await _turn(store, user.id, project.id, drone.id)
        await _fill(store, small, SMALL)
        await _fill(store, large, LARGE)
        for _ in range(10):  # warm the connection and statement caches
            await _append(store, small, SMALL)
        times: dict[str, list[float]] = {small: [], large: []}
        for rep in range(reps):  # alternate which goes first: no order bias
            pair = [(small, SMALL), (large, LARGE)]
            for turn_id, idx in pair if rep % 2 == 0 else pair[::-1]:
                times[turn_id].append(await _append(store, turn_id, idx))
    finally:
        await store.close()
    return AppendCost(
        statistics.median(times[small]) * 1e3, statistics.median(times[large]) * 1e3, reps
    )
