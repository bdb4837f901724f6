"""The writer groups consecutive transitions: one commit, each still isolated from another's
failure (on SQLite and, when reachable, PostgreSQL: the `store` fixture of tests/conftest.py)."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import event, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from gadget.hub.exceptions import Refused
from gadget.hub.stream.recorder import Recorder
from gadget.hub.stream.writer import MAX_GROUP, Writer
from gadget.store.repository import Store
from gadget.store.tables import User


def _commits(store: Store) -> list[int]:
    count = [0]

    @event.listens_for(store.engine.sync_engine, "commit")
    def _commit(_conn: Any) -> None:
        count[0] += 1

    return count


def _add_user(name: str, refuse: bool = False) -> Any:
    async def fn(s: AsyncSession) -> str:
        s.add(User(username=name, password_hash="x"))
        await s.flush()
        if refuse:
            raise Refused(f"{name} is refused")
        return name

    return fn


async def _names(store: Store) -> set[str]:
    async with store.session() as s:
        return set((await s.scalars(select(User.username))).all())


async def test_transitions_queued_together_commit_once_and_settle_in_order(store: Store) -> None:
    writer = Writer(store, "node-a", Recorder(16_384), 0.05, 1 << 20)
    commits = _commits(store)
    settled: list[str] = []
    try:
        jobs = [
            writer.transact(_add_user(f"u{i}"), timeout=10, on_commit=settled.append)
            for i in range(20)
        ]
        tasks = [asyncio.ensure_future(j) for j in jobs]
        await asyncio.sleep(0)  # all queued before the writer runs
        writer.start()
        assert await asyncio.gather(*tasks) == [f"u{i}" for i in range(20)]
    finally:
        await writer.close(5)
    assert settled == [f"u{i}" for i in range(20)]
    assert commits[0] == 1
    assert await _names(store) == {f"u{i}" for i in range(20)}


async def test_one_refusal_in_a_group_is_its_own_and_leaves_no_row(store: Store) -> None:
    writer = Writer(store, "node-a", Recorder(16_384), 0.05, 1 << 20)
    try:
        tasks = [
            asyncio.ensure_future(writer.transact(_add_user(f"u{i}", refuse=i == 2), timeout=10))
            for i in range(5)
        ]
        await asyncio.sleep(0)
        writer.start()
        results = await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        await writer.close(5)
    assert [r for i, r in enumerate(results) if i != 2] == ["u0", "u1", "u3", "u4"]
    assert isinstance(results[2], Refused)
    assert await _names(store) == {"u0", "u1", "u3", "u4"}


async def test_a_long_queue_is_committed_in_groups_of_at_most_max_group(store: Store) -> None:
    writer = Writer(store, "node-a", Recorder(16_384), 0.05, 1 << 20)
    commits = _commits(store)
    n = MAX_GROUP * 2 + 5
    try:
        tasks = [
            asyncio.ensure_future(writer.transact(_add_user(f"u{i}"), timeout=10)) for i in range(n)
        ]
        await asyncio.sleep(0)
        writer.start()
        await asyncio.gather(*tasks)
    finally:
        await writer.close(5)
    assert commits[0] == 3
    async with store.session() as s:
        assert await s.scalar(select(func.count()).select_from(User)) == n
