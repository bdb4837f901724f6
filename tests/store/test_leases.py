"""Drone leases: every transition is conditional, deadlines are swept exactly once."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from gadget.protocol import TurnStatus
from gadget.store import leases
from gadget.store.repository import Store
from gadget.store.tables import utcnow
from tests.store.helpers import NODE, new_turn


async def test_a_drone_has_one_current_turn_and_only_it_ends(store: Store) -> None:
    m = await new_turn(store)
    async with store.transaction() as s:
        assert await leases.claim_turn(s, m.drone_id, m.chat_id, m.user_id, "second") is None
        assert not await leases.end_turn(
            s, m.drone_id, "another-turn", TurnStatus.ERROR, "x", False
        )
        assert not await leases.unlock(s, m.drone_id, m.chat_id)  # never mid-turn
        assert await leases.end_turn(s, m.drone_id, m.turn_id, TurnStatus.ERROR, "gone", False)
        assert not await leases.end_turn(s, m.drone_id, m.turn_id, TurnStatus.ERROR, "again", False)
        assert await leases.claim_turn(s, m.drone_id, m.chat_id, m.user_id, "second") is not None
    turn = await store.turn_out(m.turn_id)
    assert turn is not None and (turn.status, turn.errorMessage) == (TurnStatus.ERROR, "gone")


async def test_a_lock_is_the_users_and_follows_the_turn(store: Store) -> None:
    m = await new_turn(store)
    other = await new_turn(store)
    async with store.transaction() as s:
        assert not await leases.lock(s, m.drone_id, other.chat_id, other.user_id)  # another user
        assert not await leases.lock(s, m.drone_id, "chat-2", m.user_id)  # busy with a turn
        assert await leases.lock(s, m.drone_id, m.chat_id, m.user_id)  # the same session again


async def test_taking_a_drone_moves_its_epoch(store: Store) -> None:
    m = await new_turn(store)
    async with store.transaction() as s:
        before = await leases.take(s, m.drone_id, "node-b", store.lock_rows)
        after = await leases.read(s, m.drone_id)
    assert (before.owner_node, before.epoch) == (NODE, m.epoch)
    assert after is not None and (after.owner_node, after.epoch) == ("node-b", m.epoch + 1)
    assert after.current_turn_id == m.turn_id  # the turn goes with the drone


async def test_a_passed_deadline_is_claimed_once_and_held(store: Store) -> None:
    m = await new_turn(store)
    past = utcnow() - timedelta(seconds=1)
    async with store.transaction() as s:
        assert await leases.set_drone_deadline(s, m.drone_id, m.turn_id, past, "grace")
    hold = timedelta(seconds=30)

    async def claim(node: str) -> list[leases.Lease]:
        async with store.transaction() as s:
            return await leases.claim_due(s, utcnow(), node, hold, lock_rows=store.lock_rows)

    first, second = await asyncio.gather(claim("node-a"), claim("node-b"))
    claimed = [lease.drone_id for lease in [*first, *second] if lease.drone_id == m.drone_id]
    assert claimed == [m.drone_id]  # one node handles it
    async with store.session() as s:
        lease = await leases.read(s, m.drone_id)
    assert lease is not None and lease.drone_deadline is not None
    assert lease.drone_deadline > utcnow() + timedelta(seconds=20)  # held for the handler


async def test_leases_of_dead_nodes_are_orphaned_with_a_grace_period(store: Store) -> None:
    m = await new_turn(store)
    async with store.transaction() as s:
        found = await leases.owned_by_others(s, ["node-b"], lock_rows=store.lock_rows)
        assert [lease.drone_id for lease in found if lease.drone_id == m.drone_id] == [m.drone_id]
        assert await leases.orphan(s, found[0], utcnow() + timedelta(seconds=5))
        assert await leases.owned_by_others(s, ["node-b"], lock_rows=store.lock_rows) == []
        lease = await leases.read(s, m.drone_id)
    assert lease is not None and lease.owner_node is None and lease.drone_deadline is not None
