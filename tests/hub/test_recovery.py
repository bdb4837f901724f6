"""Crash recovery, retries and grace periods: no turn stays processing forever."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from tests.harness import Client, HubHarness
from tests.hub.helpers import Session, drone_state, eventually, lock, setup_session, start_turn

HubFactory = Callable[..., AbstractAsyncContextManager[HubHarness]]


async def crash(hub: HubHarness, s: Session) -> Client:
    """The drone's process dies and comes back: a new socket with the same id and key."""
    before = len(s.ide.log.of("status"))
    await s.drone.close()
    await s.ide.log.wait_for("status", lambda a: a == ("drone drone disconnected",))
    await eventually(lambda: len(s.ide.log.of("status")) > before)
    s.drone = await hub.drone(s.drone_id, s.key)
    return s.drone


async def ask_recovery(drone: Client, turn_id: str, chat_id: str) -> dict[str, Any]:
    """requestCrashRecovery for `turn_id`; returns the hub's crashRecoveryResponse."""
    await drone.emit(
        "requestCrashRecovery", {"workspaceId": "ws", "turnId": turn_id, "chatSessionId": chat_id}
    )
    (answer,) = await drone.log.wait_for(
        "crashRecoveryResponse", lambda a: a[0]["turnId"] == turn_id
    )
    return dict(answer)


async def test_unknown_turn_is_discarded(hub: HubHarness) -> None:
    s = await setup_session(hub)
    answer = await ask_recovery(s.drone, "no-such-turn", s.chat_id)
    assert answer == {"turnId": "no-such-turn", "action": "discard"}


async def test_finished_and_failed_turns_are_discarded(hub: HubHarness) -> None:
    s = await setup_session(hub)
    done = await start_turn(s.ide, s.drone, "one")
    await s.drone.emit("workOrderComplete", done, True)
    await s.ide.log.wait_for("workOrderComplete", lambda a: a[0] == done)
    failed = await start_turn(s.ide, s.drone, "two")
    await s.drone.emit("workOrderComplete", failed, False, "boom")
    await s.ide.log.wait_for("workOrderComplete", lambda a: a[0] == failed)
    await hub.settle()
    assert await ask_recovery(s.drone, done, s.chat_id) == {"turnId": done, "action": "discard"}
    assert await ask_recovery(s.drone, failed, s.chat_id) == {"turnId": failed, "action": "discard"}
    await asyncio.sleep(0.3)  # longer than retry_delay_ms: nothing is re-sent
    assert len(s.drone.log.of("processWorkOrder")) == 2
    assert (await hub.get_turn(s.token, done))["status"] == "finished"
    assert (await hub.get_turn(s.token, failed))["status"] == "error"


async def test_processing_turn_is_retried_after_the_delay(hub: HubHarness) -> None:
    s = await setup_session(hub)
    turn_id = await start_turn(s.ide, s.drone)
    await s.drone.emit("response", "first try")
    drone = await crash(hub, s)
    answer = await ask_recovery(drone, turn_id, s.chat_id)
    assert answer == {"turnId": turn_id, "action": "retry", "retryDelay": 100}
    assert drone.log.of("processWorkOrder") == []  # not before the delay
    registration, project, chat, turn = await drone.log.wait_for("processWorkOrder", timeout=3)
    assert (registration["_id"], project["_id"], chat["_id"]) == (
        s.drone_id,
        s.project_id,
        s.chat_id,
    )
    assert (turn["_id"], turn["status"], turn["retries"]) == (turn_id, "processing", 1)
    await s.ide.log.wait_for("status", lambda a: a == ("retrying turn (attempt 2)",))
    stored = await hub.hub.store.get_turn(turn_id)
    assert stored is not None and (stored.status, stored.retries) == ("processing", 1)

    await drone.emit("response", "second try")
    await drone.emit("workOrderComplete", turn_id, True)
    await s.ide.log.wait_for("workOrderComplete")
    await hub.settle()
    out = await hub.get_turn(s.token, turn_id)
    assert (out["status"], out["retries"]) == ("finished", 1)
    assert [(b["content"], b["attempt"]) for b in out["blocks"]] == [
        ("first try", 1),
        ("second try", 2),
    ]


async def test_after_max_retries_the_turn_ends_as_error(hub: HubHarness) -> None:
    s = await setup_session(hub)  # max_retries=2
    turn_id = await start_turn(s.ide, s.drone)
    for attempt in (1, 2):
        drone = await crash(hub, s)
        assert (await ask_recovery(drone, turn_id, s.chat_id))["action"] == "retry"
        turn = (await drone.log.wait_for("processWorkOrder", timeout=3))[3]
        assert turn["retries"] == attempt
    drone = await crash(hub, s)
    answer = await ask_recovery(drone, turn_id, s.chat_id)
    assert answer == {"turnId": turn_id, "action": "discard"}
    reason = "drone crashed 3 times; gave up after 2 retries"
    assert await s.ide.log.wait_for("workOrderComplete") == (turn_id, False, reason)
    await hub.settle()
    out = await hub.get_turn(s.token, turn_id)
    assert (out["status"], out["errorMessage"], out["retries"]) == ("error", reason, 2)
    await asyncio.sleep(0.3)
    assert drone.log.of("processWorkOrder") == []
    assert (await drone_state(hub, s.token, s.drone_id))["currentTurn"] is None


async def test_recovery_of_another_drones_turn_is_discarded(hub: HubHarness) -> None:
    s = await setup_session(hub)
    turn_id = await start_turn(s.ide, s.drone)
    other_id, other_key = await hub.create_drone(s.token, "other")
    other = await hub.drone(other_id, other_key)
    answer = await ask_recovery(other, turn_id, s.chat_id)
    assert answer == {"turnId": turn_id, "action": "discard"}
    await asyncio.sleep(0.3)
    assert other.log.of("processWorkOrder") == []
    assert (await drone_state(hub, s.token, other_id))["currentTurn"] is None
    # The owner's turn goes on untouched.
    await s.drone.emit("workOrderComplete", turn_id, True)
    assert await s.ide.log.wait_for("workOrderComplete") == (turn_id, True)


async def test_drone_gone_longer_than_grace_fails_its_turn(hub_factory: HubFactory) -> None:
    async with hub_factory(drone_grace_s=0.3) as hub:
        s = await setup_session(hub)
        turn_id = await start_turn(s.ide, s.drone)
        await s.drone.close()
        await s.ide.log.wait_for("status", lambda a: a == ("drone drone disconnected",))
        await s.ide.log.wait_for("droneState", lambda a: a[0]["online"] is False)
        assert await s.ide.log.wait_for("workOrderComplete", timeout=3) == (
            turn_id,
            False,
            "drone disconnected",
        )
        await hub.settle()
        turn = await hub.get_turn(s.token, turn_id)
        assert (turn["status"], turn["errorMessage"]) == ("error", "drone disconnected")


async def test_drone_back_within_grace_keeps_its_turn(hub_factory: HubFactory) -> None:
    async with hub_factory(drone_grace_s=0.5) as hub:
        s = await setup_session(hub)
        turn_id = await start_turn(s.ide, s.drone)
        await s.drone.emit("response", "before ")
        await s.drone.close()
        await s.ide.log.wait_for("status", lambda a: a == ("drone drone disconnected",))
        drone = await hub.drone(s.drone_id, s.key)
        await s.ide.log.wait_for("status", lambda a: a == ("drone drone reconnected",))
        await asyncio.sleep(0.7)  # past the grace period
        assert s.ide.log.of("workOrderComplete") == []
        await drone.emit("response", "after")
        await drone.emit("workOrderComplete", turn_id, True)
        assert await s.ide.log.wait_for("workOrderComplete") == (turn_id, True)
        await hub.settle()
        turn = await hub.get_turn(s.token, turn_id)
        assert turn["status"] == "finished"
        assert [(b["mode"], b["content"]) for b in turn["blocks"]] == [
            ("responding", "before after")
        ]


async def test_ide_away_longer_than_grace_loses_the_lock(hub_factory: HubFactory) -> None:
    async with hub_factory(drone_grace_s=0.3) as hub:
        s = await setup_session(hub)
        # Another socket of the user, not in the session, showing the drone list.
        watcher = await hub.ide(s.token, watch_drones=True)
        await s.ide.close()
        await asyncio.sleep(0.1)
        assert (await drone_state(hub, s.token, s.drone_id))["lockedBy"] is not None
        await watcher.log.wait_for("droneState", lambda a: a[0]["lockedBy"] is None, timeout=3)
        assert (await drone_state(hub, s.token, s.drone_id))["lockedBy"] is None
        # The drone can be locked again, for the same chat session.
        assert tuple(await lock(s, watcher)) == (True, s.chat_id)


async def test_ide_back_within_grace_keeps_the_lock(hub_factory: HubFactory) -> None:
    async with hub_factory(drone_grace_s=0.4) as hub:
        s = await setup_session(hub)
        await s.ide.close()
        ide = await hub.ide(s.token)
        assert tuple(await lock(s, ide)) == (True, s.chat_id)
        await asyncio.sleep(0.6)
        state = await drone_state(hub, s.token, s.drone_id)
        assert (state["lockedBy"]["username"], state["chatSession"]) == ("ann", s.chat_id)
        turn_id = await start_turn(ide, s.drone)
        assert turn_id
