"""`droneState` is opt-in per IDE socket (`watchDrones`); a lock's holders always get theirs."""

from __future__ import annotations

from tests.harness import HubHarness
from tests.hub.helpers import eventually, setup_session, start_turn


async def test_only_watching_sockets_get_every_drone_state(hub: HubHarness) -> None:
    s = await setup_session(hub)
    other_id, other_key = await hub.create_drone(s.token, "second")
    idle = await hub.ide(s.token)  # no lock, not watching
    watcher = await hub.ide(s.token)
    assert await watcher.call("watchDrones", True) is True
    by_auth = await hub.ide(s.token, watch_drones=True)

    await hub.drone(other_id, other_key)  # a drone nobody locked comes online
    for ide in (watcher, by_auth):
        await ide.log.wait_for("droneState", lambda a: a[0]["_id"] == other_id)
    turn_id = await start_turn(s.ide, s.drone)
    await s.drone.emit("workOrderComplete", turn_id, True)  # the locked drone's state changes
    await s.ide.log.wait_for("workOrderComplete")
    mine = await watcher.log.wait_for("droneState", lambda a: a[0]["_id"] == s.drone_id)
    # The lock holder hears about its own drone, never about the other.
    await s.ide.log.wait_for("droneState", lambda a: a[0] == mine[0])
    assert {a[0]["_id"] for a in s.ide.log.of("droneState")} == {s.drone_id}
    assert idle.log.of("droneState") == []

    assert await watcher.call("watchDrones", False) is True
    before = len(watcher.log.of("droneState"))
    await hub.clients[-1].close()  # the second drone goes offline
    await by_auth.log.wait_for("droneState", lambda a: a[0]["online"] is False)
    assert len(watcher.log.of("droneState")) == before
    assert idle.log.of("droneState") == []


async def test_a_watching_lock_holder_gets_each_state_once(hub: HubHarness) -> None:
    s = await setup_session(hub)
    assert await s.ide.call("watchDrones", True) is True
    before = len(s.ide.log.of("droneState"))
    turn_id = await start_turn(s.ide, s.drone)
    await s.drone.emit("workOrderComplete", turn_id, True)  # one droneState: no current turn
    await s.ide.log.wait_for("workOrderComplete")
    await eventually(lambda: len(s.ide.log.of("droneState")) > before)
    await s.ide.call("watchDrones", True)  # a round trip: anything sent before has arrived
    assert len(s.ide.log.of("droneState")) == before + 1, s.ide.log.of("droneState")


async def test_watch_drones_wants_a_boolean(hub: HubHarness) -> None:
    s = await setup_session(hub)
    ok, reason = await s.ide.call("watchDrones", "yes")
    assert ok is False and "boolean" in reason
