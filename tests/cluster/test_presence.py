"""Presence backends by one template: the same logic over memory (one node) and Redis (many).

The Redis tests use a namespace of their own on the local server (skipped without one)
and two RedisPresence objects standing for two nodes; the sweep test a fresh PostgreSQL
database.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import redis.asyncio as aioredis

from gadget.hub.state.presence import MemoryPresence, Presence
from gadget.hub.state.presence_redis import RedisPresence
from gadget.hub.state.sweeper import Sweeper
from gadget.hub.stream.recorder import Recorder
from gadget.hub.stream.writer import Writer
from gadget.store import leases
from gadget.store.database import make_engine, migrate
from gadget.store.leases import Lease
from gadget.store.repository import Store
from tests.cluster.nodes import REDIS_URL, redis_namespace
from tests.postgres import fresh_database


@asynccontextmanager
async def two_nodes() -> AsyncIterator[tuple[RedisPresence, RedisPresence]]:
    async with redis_namespace() as namespace:
        a = RedisPresence("node-a", aioredis.from_url(REDIS_URL), namespace)
        b = RedisPresence("node-b", aioredis.from_url(REDIS_URL), namespace)
        try:
            yield a, b
        finally:
            await a.close()
            await b.close()


async def drone_life(here: Presence, there: Presence) -> None:
    """A drone moves from `here` to `there`; both see the same records throughout."""
    await here.heartbeat()
    await there.heartbeat()
    await here.drone_connected("d1", "sid-1", {"mode": "idle", "model": None})
    await here.drone_changed("d1", "sid-1", mode="user")
    for node in (here, there):
        record = await node.drone("d1")
        assert record is not None
        assert (record["online"], record["node"], record["mode"]) == (True, here.node, "user")
    await there.drone_connected("d1", "sid-2", {"mode": "user"})
    # The old socket's late news changes nothing: the record is the new socket's.
    assert await here.drone_gone("d1", "sid-1", lastSeen="x") is False
    await here.drone_changed("d1", "sid-1", mode="idle")
    record = await here.drone("d1")
    assert record is not None and (record["sid"], record["mode"]) == ("sid-2", "user")
    assert await there.drone_gone("d1", "sid-2", lastSeen="y") is True
    record = await here.drone("d1")
    assert record is not None and (record["online"], record["lastSeen"]) == (False, "y")
    await here.drone_note("d2", conflict={"pid": 1})
    assert await there.drone("d2") == {"online": False, "conflict": {"pid": 1}}
    assert await there.drone("never") is None


async def test_memory_presence_is_one_node() -> None:
    node = MemoryPresence("solo")
    await drone_life(node, node)
    await node.ide_joined("c1", "ide-1")
    assert (await node.ides("c1"), await node.live_nodes()) == (1, ["solo"])
    assert node.health()["ok"] is True and node.dead_after_s == 0


async def test_redis_presence_is_shared_by_nodes() -> None:
    async with two_nodes() as (a, b):
        await drone_life(a, b)
        await a.ide_joined("c1", "ide-1")
        await b.ide_joined("c1", "ide-9")
        assert (await a.ides("c1"), await b.ides("c1")) == (2, 2)
        await b.ide_left("c1", "ide-9")
        assert await a.ides("c1") == 1
        assert sorted(await a.live_nodes()) == ["node-a", "node-b"]
        assert a.health()["ok"] is True and a.dead_after_s > 0


async def test_a_node_whose_heartbeat_expired_is_dead_and_its_sockets_offline() -> None:
    async with two_nodes() as (a, b):
        await a.heartbeat()
        await b._beat(b.node, 0.2)  # a node that beat once, briefly, then died
        await b.drone_connected("d1", "sid-1", {"mode": "idle"})
        await b.ide_joined("c1", "ide-1")
        record = await a.drone("d1")
        assert record is not None and record["online"] is True
        assert await a.ides("c1") == 1
        await asyncio.sleep(0.3)
        assert await a.live_nodes() == ["node-a"]
        record = await a.drone("d1")
        assert record is not None and (record["online"], record["sid"]) == (False, None)
        assert await a.ides("c1") == 0


async def test_changes_to_one_record_from_two_nodes_are_never_lost() -> None:
    async with two_nodes() as (a, b):
        await a.drone_connected("d1", "sid-1", {"mode": "idle"})

        async def note(node: Presence, i: int) -> None:
            await node.drone_note("d1", **{f"k{i}": i})

        await asyncio.gather(*(note(a if i % 2 else b, i) for i in range(40)))
        record = await a.drone("d1")
        assert record is not None
        assert all(record[f"k{i}"] == i for i in range(40)), record


async def test_a_node_writes_its_sockets_again_when_redis_lost_them() -> None:
    async with two_nodes() as (a, b):
        await a.heartbeat()
        await a.drone_connected("d1", "sid-1", {"mode": "idle"})
        await a.drone_changed("d1", "sid-1", mode="user")
        await a.drone_connected("d2", "sid-2", {"mode": "idle"})
        await a.drone_gone("d2", "sid-2")
        await a.ide_joined("c1", "ide-1")
        raw = aioredis.from_url(REDIS_URL)
        try:  # what a Redis restart without persistence does to the namespace
            await raw.delete(*[k async for k in raw.scan_iter(match=f"{a._ns}:*")])
        finally:
            await raw.aclose()
        assert await b.drone("d1") is None and await b.ides("c1") == 0
        await a.heartbeat()  # its beat was gone: it writes its own sockets again
        record = await b.drone("d1")
        assert record is not None and (record["online"], record["mode"]) == (True, "user")
        assert await b.drone("d2") is None  # gone before: not brought back
        assert await b.ides("c1") == 1


async def test_a_closed_node_is_gone_at_once() -> None:
    async with redis_namespace() as namespace:
        a = RedisPresence("node-a", aioredis.from_url(REDIS_URL), namespace)
        b = RedisPresence("node-b", aioredis.from_url(REDIS_URL), namespace)
        await a.heartbeat()
        await b.heartbeat()
        await b.close()
        assert await a.live_nodes() == ["node-a"]
        await a.close()


class _NoDeadlines:
    """Deadlines are not what these sweeps are about."""

    async def drone_stayed_away(self, lease: Lease) -> None:
        raise AssertionError(f"no deadline was set, yet {lease} came due")

    ides_stayed_away = retry_due = drone_stayed_away


@pytest.mark.postgres
async def test_a_lease_is_orphaned_only_once_its_nodes_heartbeat_has_expired() -> None:
    async with fresh_database() as url, two_nodes() as (a, b):
        await migrate(url)
        store = Store(make_engine(url))
        writer = Writer(store, a.node, Recorder(16_384), 0.05, 1 << 20)
        writer.start()
        sweeper = Sweeper(store, writer, a, 1.0, 0.5, 5.0)
        try:
            user = await store.create_user("ann", "x")
            drones = [await store.create_drone(user.id, f"d{i}", "", "x") for i in (1, 2)]
            async with store.session() as s, s.begin():
                await leases.take(s, drones[0].id, b.node, lock_row=True)  # b beats
                await leases.take(s, drones[1].id, "node-gone", lock_row=True)  # never did
            await b.heartbeat()
            a.dead_after_s = 0.3  # (10 s in production: Redis's own TTL of a heartbeat)

            async def owners() -> list[str | None]:
                async with store.session() as s:
                    held = await leases.read_many(s, [d.id for d in drones])
                return [held[d.id].owner_node for d in drones]

            await sweeper.sweep(_NoDeadlines())  # a restarting node's first sweep
            assert await owners() == [b.node, "node-gone"]
            await asyncio.sleep(0.35)
            await b.heartbeat()
            await sweeper.sweep(_NoDeadlines())
            assert await owners() == [b.node, None]  # only the silent node's lease
        finally:
            await writer.close(grace_s=1)
            await store.close()
