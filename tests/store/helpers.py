"""Building blocks of the store tests: a user with a locked drone and a processing turn."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event

from gadget.store import leases
from gadget.store.repository import Store
from gadget.store.tables import TurnBlock, utcnow

NODE = "node-a"


@dataclass
class Made:
    """What :func:`new_turn` made."""

    user_id: str
    drone_id: str
    chat_id: str
    turn_id: str
    epoch: int


async def new_turn(store: Store, prompt: str = "hello world") -> Made:
    """A user, project, drone (its lease held by NODE) and chat session with a processing turn."""
    user = await store.create_user(f"u{utcnow().timestamp()}", "hash")
    project = await store.create_project(user.id, "p", "")
    drone = await store.create_drone(user.id, "d", "host", "sha256$x")
    chat = await store.create_chat_session(user.id, project.id, drone.id)
    async with store.transaction() as s:
        before = await leases.take(s, drone.id, NODE, store.lock_rows)
        assert await leases.lock(s, drone.id, chat.id, user.id)
        turn = await leases.claim_turn(s, drone.id, chat.id, user.id, prompt)
        assert turn is not None
    return Made(user.id, drone.id, chat.id, turn.id, before.epoch + 1)


@contextmanager
def statements(store: Store) -> Iterator[list[str]]:
    """Every SQL statement the store's engine runs inside the block."""
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    event.listen(store.engine.sync_engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(store.engine.sync_engine, "before_cursor_execute", record)


async def add_filler_blocks(store: Store, turn_id: str, count: int) -> None:
    """`count` stored text blocks at indexes 0..count-1, in one transaction."""
    async with store.session() as s:
        s.add_all(
            TurnBlock(turn_id=turn_id, idx=i, mode="thinking", content=f"b{i}")
            for i in range(count)
        )
        await s.commit()
