"""Several hub nodes on PostgreSQL and Redis: any node serves everything, IDE and drone apart.

Real `gadget hub` subprocesses on one fresh database and one Redis namespace, a real
`gadget drone` on the scripted model, IDE sockets on other nodes than the drone's.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gadget.config import Settings
from gadget.hub.cluster import check
from gadget.hub.exceptions import Misconfigured
from tests.cluster.nodes import (
    REDIS_URL,
    TurnView,
    drones_seen,
    finished_turn,
    hub_nodes,
    redis_or_skip,
    responding,
    wait_count,
    wait_streamed,
)
from tests.drone.helpers import drone_settings
from tests.fakes.llm_server import ScriptedLLM, count_tokens, numbered_reply
from tests.fakes.processes import ManagedProcess, Processes

TOKENS = 300


def test_redis_with_sqlite_is_refused_by_the_settings_check(tmp_path: Path) -> None:
    with pytest.raises(Misconfigured, match="only one node can use: set GADGET_DATABASE_URL"):
        check(Settings(home=tmp_path, redis_url=REDIS_URL))
    check(Settings(home=tmp_path))  # one node on SQLite
    check(Settings(redis_url=REDIS_URL, database_url="postgresql+asyncpg://h/db"))


async def test_gadget_hub_refuses_redis_with_sqlite_in_one_line(procs: Processes) -> None:
    hub = await procs.hub("hub", start=False, redis_url=REDIS_URL)
    await ManagedProcess.start(hub)  # not HubProcess.start: it never becomes healthy
    assert await hub.wait() == 1
    printed = [line for line in hub.output.lines if not line.startswith("---")]
    assert printed == [
        "gadget hub: GADGET_REDIS_URL is set (several hub nodes) but the database is SQLite, "
        "which only one node can use: set GADGET_DATABASE_URL to a PostgreSQL database every "
        "node shares (postgresql+asyncpg://...), or unset GADGET_REDIS_URL for one node"
    ], hub.output.text()


@pytest.mark.postgres
async def test_an_ide_on_one_node_drives_a_drone_on_another(procs: Processes, ws: Path) -> None:
    await redis_or_skip()
    script = [
        numbered_reply(TOKENS, per_chunk=3),
        numbered_reply(2000, chunk_delay_s=0.01),  # cancelled
        numbered_reply(2000, chunk_delay_s=0.01),  # its drone is killed
        numbered_reply(TOKENS, per_chunk=3),  # the retry, swept by either node
    ]
    # The drone killed below takes seconds to start again: its turn waits that long.
    async with ScriptedLLM(script) as llm, hub_nodes(procs, 2, drone_grace_s=30) as nodes:
        hub1, hub2 = nodes.hubs
        api1, api2 = procs.client(hub1.url), procs.client(hub2.url)
        token = await api1.signup("ann")
        bob = await api2.signup("bob")  # a token of one node is valid on the other
        drone_id, key = await api2.create_drone(token, "box")
        project_id = await api1.create_project(token, "calc")
        watcher = await api2.ide(
            token, watch_drones=True
        )  # another IDE of ann, on the drone's node
        settings = drone_settings(ws, llm.base_url, hub_url=hub2.url, drone_id=drone_id,
                                  drone_key=key)  # fmt: skip
        drone = await procs.drone(settings, api1, token)  # listed online by node 1
        assert [h.name for h in await nodes.holding_drones()] == ["hub2"]
        for hub in nodes.hubs:
            health = await nodes.health(hub)
            assert (health["status"], health["redis"]["ok"]) == ("ok", True), health

        listed = [await drones_seen(api, token) for api in (api1, api2)]
        assert listed[0] == listed[1] and listed[0][0]["online"] is True, listed

        ide = await api1.ide(token)
        ok, chat = await ide.call("requestSessionLock", {"_id": drone_id}, {"_id": project_id},
                                  None)  # fmt: skip
        assert ok is True, chat
        for api in (api1, api2):  # another user is refused on every node, as on one
            other = await api.ide(bob)
            refused = await other.call("requestSessionLock", {"_id": drone_id},
                                       {"_id": project_id}, None)  # fmt: skip
            assert refused == (False, f"unknown drone {drone_id}")
        # droneState reached ann's IDEs on both nodes, and REST says the same everywhere.
        for log in (ide.log, watcher.log):
            await log.wait_for("droneState", lambda a: (a[0]["lockedBy"] or {}).get("username")
                               == "ann")  # fmt: skip
        listed = [await drones_seen(api, token) for api in (api1, api2)]
        assert listed[0] == listed[1] and listed[0][0]["chatSession"] == chat

        # The workspace mode: asked on node 1, answered by the drone on node 2.
        assert await ide.call("requestWorkspaceMode", "user") is True
        await ide.log.wait_for("workspaceModeChanged", lambda a: a[0] == "user")
        await watcher.log.wait_for("droneState", lambda a: a[0]["workspaceMode"] == "user")
        assert (await drones_seen(api1, token))[0]["workspaceMode"] == "user"
        refused = await ide.call("submitPrompt", "count")
        assert refused[0] is False and "user mode" in refused[1]
        idles = ide.log.of("workspaceModeChanged").count(("idle",))  # one at the lock
        assert await ide.call("requestWorkspaceMode", "idle") is True
        await wait_count(ide.log, "workspaceModeChanged", ("idle",), idles + 1)

        # A prompt: the stream reaches node 1 in order with its marks, recorded once.
        ok, turn_id = await ide.call("submitPrompt", "count")
        assert ok is True, turn_id
        await ide.log.wait_for("workOrderComplete", lambda a: a[0] == turn_id, 60)
        marked = [m for _, m in ide.log.marked("response")]
        assert [m[1] for m in marked if m] == sorted({m[1] for m in marked if m})
        assert all(m is not None and m[0] == turn_id for m in marked)
        shown = "".join(a[0] for a in ide.log.of("response"))
        assert count_tokens(shown, TOKENS) == (0, 0)
        for api in (api1, api2):
            turn = await finished_turn(api, token, turn_id)
            assert turn["status"] == "finished"
            assert count_tokens(responding(turn), TOKENS) == (0, 0)
        assert (await api1.get_turn(token, turn_id)) == (await api2.get_turn(token, turn_id))

        # A cancel from node 1 of a turn recorded on node 2.
        ok, second = await ide.call("submitPrompt", "count slowly")
        assert ok is True, second
        await wait_streamed(ide.log, second, 20)
        busy = await ide.call("requestWorkspaceMode", "user")
        assert busy == (False, "an agent turn is running")  # the drone's words, across nodes
        assert await ide.call("cancelWorkOrder", second) is True
        await ide.log.wait_for("workOrderComplete", lambda a: a[0] == second, 30)
        cancelled = await finished_turn(api1, token, second)
        assert (cancelled["status"], cancelled.get("cancelled")) == ("error", True), cancelled
        assert TurnView.of([ide.log], second).held == {}

        # The drone crashes mid-turn and comes back: the retry, a deadline any node may
        # sweep, is sent by the node holding the drone.
        ok, third = await ide.call("submitPrompt", "count again")
        assert ok is True, third
        await wait_streamed(ide.log, third, 10)
        await drone.kill()
        await drone.start()
        await ide.log.wait_for("workOrderComplete", lambda a: a[0] == third, 60)
        retried = await finished_turn(api1, token, third)
        assert (retried["status"], retried["retries"]) == ("finished", 1), retried
        again = {**retried, "blocks": [b for b in retried["blocks"] if b.get("attempt") == 2]}
        assert count_tokens(responding(again), TOKENS) == (0, 0)  # the second attempt's

        # Termination asked on node 1: the drone on node 2 exits.
        assert await ide.call("requestTermination", drone_id) is True
        assert await drone.wait(30) == 0
        async with asyncio.timeout(30):
            while True:  # polled over REST
                if not (await drones_seen(api1, token))[0]["online"]:
                    break
                await asyncio.sleep(0.05)
        assert (await drones_seen(api2, token))[0]["online"] is False
