"""Several hub nodes when IDEs move, a node dies, or a node restarts mid-turn.

Counted as a person would see it: the stored turn and each IDE's view (a cursor per
turn, tests/cluster/nodes.py TurnView) hold every numbered token once, in order.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from gadget.store import leases
from gadget.store.batch import AppendBlock, Outcome, TurnWrite, apply_writes
from gadget.store.database import make_engine
from gadget.store.leases import Lease
from tests.cluster.haproxy import haproxy_binary, start_haproxy
from tests.cluster.nodes import (
    Nodes,
    TurnView,
    finished_turn,
    hub_nodes,
    redis_or_skip,
    responding,
    wait_said,
    wait_streamed,
)
from tests.drone.helpers import drone_settings
from tests.fakes.llm_server import ScriptedLLM, count_tokens, numbered_reply
from tests.fakes.processes import Processes
from tests.fakes.tcp_proxy import TcpProxy
from tests.harness import Client, HubClient

pytestmark = pytest.mark.postgres


async def read_lease(nodes: Nodes, drone_id: str) -> Lease:
    """The drone's lease row as stored now."""
    engine = make_engine(nodes.database_url)
    try:
        async with AsyncSession(engine) as s:
            lease = await leases.read(s, drone_id)
    finally:
        await engine.dispose()
    assert lease is not None
    return lease


async def lock(ide: Client, drone_id: str, project_id: str, chat: str | None = None) -> str:
    """requestSessionLock; the chat session id."""
    ok, chat_id = await ide.call(
        "requestSessionLock", {"_id": drone_id}, {"_id": project_id},
        {"_id": chat} if chat else None,
    )  # fmt: skip
    assert ok is True, chat_id
    return str(chat_id)


async def setup(api: HubClient) -> tuple[str, str, str]:
    """A user and a drone registration: (token, drone id, key)."""
    token = await api.signup("ann")
    drone_id, key = await api.create_drone(token, "box")
    return token, drone_id, key


async def test_an_ide_then_its_drone_moving_nodes_mid_turn_miss_nothing_and_double_nothing(
    procs: Processes, ws: Path
) -> None:
    await redis_or_skip()
    tokens = 1500
    async with (
        ScriptedLLM([numbered_reply(tokens, chunk_delay_s=0.006)]) as llm,
        hub_nodes(procs, 2) as nodes,
    ):
        hub1, hub2 = nodes.hubs
        api1, api2 = procs.client(hub1.url), procs.client(hub2.url)
        token, drone_id, key = await setup(api1)
        project_id = await api1.create_project(token, "calc")
        async with TcpProxy("127.0.0.1", hub2.settings.port) as link:  # the drone's network
            settings = drone_settings(ws, llm.base_url, hub_url=f"http://{link.address}",
                                      drone_id=drone_id, drone_key=key)  # fmt: skip
            await procs.drone(settings, api1, token)
            first = await api2.ide(token)
            chat = await lock(first, drone_id, project_id)
            ok, turn_id = await first.call("submitPrompt", "count")
            assert ok is True, turn_id
            await wait_streamed(first.log, turn_id, 100)
            await first.close()  # the IDE moves from the node recording the turn to the other
            moved = await api1.ide(token)
            assert await lock(moved, drone_id, project_id, chat) == chat
            await wait_streamed(moved.log, turn_id, 50)  # the stream, through Redis
            # Then the drone: its connection breaks and comes back to node 1, node 2 alive.
            before = await read_lease(nodes, drone_id)
            link.target = ("127.0.0.1", hub1.settings.port)
            link.abort_all()
            assert not moved.log.of("workOrderComplete"), "the turn ended before the drone moved"
            await moved.log.wait_for("workOrderComplete", lambda a: a[0] == turn_id, 60)

        snapshots = [a[0] for a in moved.log.of("turnSnapshot") if a[0]["_id"] == turn_id]
        assert len(snapshots) == 1 and snapshots[0]["seq"] > 0, snapshots
        seen = TurnView.of([first.log], turn_id).cursor
        assert snapshots[0]["seq"] >= seen  # the recording node's mirror, not the store
        alone = TurnView.of([moved.log], turn_id)  # what the moved IDE shows
        assert count_tokens(alone.text, tokens) == (0, 0), alone.text[-200:]
        assert alone.held == {}
        after = alone.applied[alone.applied.index(snapshots[0]["seq"]) :]
        assert after == list(range(after[0], after[0] + len(after)))  # no gap, none twice
        both = TurnView.of([first.log, moved.log], turn_id)
        assert count_tokens(both.text, tokens) == (0, 0)
        stored = await finished_turn(api2, token, turn_id)
        assert stored["status"] == "finished"
        assert count_tokens(responding(stored), tokens) == (0, 0)
        # Node 2 lost the drone: it records nothing of it any more, and cannot write for it.
        health = await nodes.health(hub2)
        assert (health["drones"], health["liveTurns"]) == (0, 0), health
        lease = await read_lease(nodes, drone_id)
        assert lease.owner_node == (await nodes.health(hub1))["node"]
        assert lease.epoch > before.epoch and before.owner_node == health["node"]
        assert await fenced_write(nodes, before, turn_id) is Outcome.FENCED


async def test_sigkill_of_the_drones_node_mid_stream_loses_and_doubles_nothing(
    procs: Processes, ws: Path
) -> None:
    await redis_or_skip()
    haproxy_binary()  # skips with the reason when it is not installed
    tokens = 1500
    async with (
        ScriptedLLM([numbered_reply(tokens, chunk_delay_s=0.004)]) as llm,
        hub_nodes(procs, 2) as nodes,
    ):
        lb = await start_haproxy(procs, [h.settings.port for h in nodes.hubs])
        await lb.wait_status({"hub1": "UP", "hub2": "UP"})
        api = procs.client(lb.url)
        token, drone_id, key = await setup(api)
        project_id = await api.create_project(token, "calc")
        settings = drone_settings(ws, llm.base_url, hub_url=lb.url, drone_id=drone_id,
                                  drone_key=key)  # fmt: skip
        await procs.drone(settings, api, token)
        (holder,) = await nodes.holding_drones()
        (other,) = [h for h in nodes.hubs if h is not holder]
        ide = await procs.client(other.url).ide(token)  # on the node that will survive
        await lock(ide, drone_id, project_id)
        ok, turn_id = await ide.call("submitPrompt", "count")
        assert ok is True, turn_id
        await wait_streamed(ide.log, turn_id, 300)
        before = await read_lease(nodes, drone_id)
        await holder.kill()
        assert not ide.log.of("workOrderComplete"), "the turn ended before the kill"
        await ide.log.wait_for("workOrderComplete", lambda a: a[0] == turn_id, 90)

        stored = await finished_turn(api, token, turn_id)
        assert stored["status"] == "finished", stored.get("error")
        assert count_tokens(responding(stored), tokens) == (0, 0)
        view = TurnView.of([ide.log], turn_id)
        assert count_tokens(view.text, tokens) == (0, 0) and view.held == {}
        after = await read_lease(nodes, drone_id)
        survivor = (await nodes.health(other))["node"]
        assert after.owner_node == survivor
        assert after.epoch > before.epoch  # taken over by the lease's epoch
        assert await fenced_write(nodes, before, turn_id) is Outcome.FENCED
        print(f"sigkill: {view.dropped} resent events dropped by the IDE's cursor")


async def fenced_write(nodes: Nodes, lease: Lease, turn_id: str) -> Outcome:
    """What becomes of a write of the killed node at the epoch it held (rolled back)."""
    engine = make_engine(nodes.database_url)
    write = TurnWrite(turn_id, lease.drone_id, lease.epoch, 10**6,
                      [AppendBlock(10**6, 0, "late text")])  # fmt: skip
    try:
        async with AsyncSession(engine) as s:
            outcome = await apply_writes(s, [write], lease.owner_node or "", lock_rows=True)
            await s.rollback()
    finally:
        await engine.dispose()
    return outcome[turn_id]


async def test_a_node_restarting_leaves_a_turn_another_node_records_alone(
    procs: Processes, ws: Path
) -> None:
    await redis_or_skip()
    tokens = 300
    reply = numbered_reply(tokens, chunk_delay_s=0.002, hang=True)
    reply.chunks = reply.chunks[:-1]  # no finish: the turn runs until it is cancelled
    async with (
        ScriptedLLM([reply]) as llm,
        hub_nodes(procs, 2) as nodes,
    ):
        hub1, hub2 = nodes.hubs
        api1, api2 = procs.client(hub1.url), procs.client(hub2.url)
        token, drone_id, key = await setup(api2)
        project_id = await api2.create_project(token, "calc")
        settings = drone_settings(ws, llm.base_url, hub_url=hub2.url, drone_id=drone_id,
                                  drone_key=key, llm_timeout_s=300)  # fmt: skip
        await procs.drone(settings, api2, token)
        ide = await api2.ide(token)
        chat = await lock(ide, drone_id, project_id)
        ok, turn_id = await ide.call("submitPrompt", "count")
        assert ok is True, turn_id
        await wait_said(ide.log, turn_id, f"t{tokens:04d}")
        before = await read_lease(nodes, drone_id)

        await hub1.restart()  # SIGKILL, then a new node id starting with a sweep
        await asyncio.sleep(3 * hub1.settings.drone_grace_s)  # an orphaned turn would end
        held = await read_lease(nodes, drone_id)
        assert (held.owner_node, held.epoch, held.current_turn_id) == (
            before.owner_node, before.epoch, turn_id,
        ), held  # fmt: skip
        assert not ide.log.of("workOrderComplete"), "the turn ended while node 1 restarted"
        assert (await api1.get_turn(token, turn_id))["status"] == "processing"

        # An IDE on the restarted node re-locks the session and cancels the turn there.
        late = await api1.ide(token)
        assert await lock(late, drone_id, project_id, chat) == chat
        await late.log.wait_for("turnSnapshot", lambda a: a[0]["_id"] == turn_id)
        assert await late.call("cancelWorkOrder", turn_id) is True
        await ide.log.wait_for("workOrderComplete", lambda a: a[0] == turn_id, 30)
        stored = await finished_turn(api1, token, turn_id)
        assert (stored["status"], stored.get("cancelled")) == ("error", True), stored
        assert count_tokens(responding(stored), tokens) == (0, 0)
        for view in (TurnView.of([ide.log], turn_id), TurnView.of([late.log], turn_id)):
            assert count_tokens(view.text, tokens) == (0, 0) and view.held == {}
