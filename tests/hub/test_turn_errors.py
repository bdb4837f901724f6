"""Turns that end in error: reported by the drone, refused work orders, a busy drone."""

from __future__ import annotations

from tests.harness import HubHarness
from tests.hub.helpers import drone_state, setup_session, start_turn


async def test_failed_completion_stores_error_and_message(hub: HubHarness) -> None:
    s = await setup_session(hub)
    turn_id = await start_turn(s.ide, s.drone)
    await s.drone.emit("response", "partial")
    await s.drone.emit("workOrderComplete", turn_id, False, "model unreachable")
    assert await s.ide.log.wait_for("workOrderComplete") == (turn_id, False, "model unreachable")
    await hub.settle()
    turn = await hub.get_turn(s.token, turn_id)
    assert (turn["status"], turn["errorMessage"]) == ("error", "model unreachable")
    assert [(b["mode"], b["content"]) for b in turn["blocks"]] == [("responding", "partial")]
    assert (await drone_state(hub, s.token, s.drone_id))["currentTurn"] is None


async def test_failed_completion_without_message_gets_a_default_reason(hub: HubHarness) -> None:
    s = await setup_session(hub)
    turn_id = await start_turn(s.ide, s.drone)
    await s.drone.emit("workOrderComplete", turn_id, False)
    assert await s.ide.log.wait_for("workOrderComplete") == (turn_id, False)
    await hub.settle()
    turn = await hub.get_turn(s.token, turn_id)
    assert (turn["status"], turn["errorMessage"]) == ("error", "the drone reported a failure")


async def test_work_order_refused_by_the_drone_ends_the_turn_with_its_reason(
    hub: HubHarness,
) -> None:
    s = await setup_session(hub, drone_ack=(False, "workspace is busy"))
    ok, turn_id = await s.ide.call("submitPrompt", "do it")
    assert ok is True
    reason = "drone refused the work order: workspace is busy"
    assert await s.ide.log.wait_for("workOrderComplete") == (turn_id, False, reason)
    await hub.settle()
    turn = await hub.get_turn(s.token, turn_id)
    assert (turn["status"], turn["errorMessage"]) == ("error", reason)
    # The drone is free again: the next prompt is dispatched.
    ok, second = await s.ide.call("submitPrompt", "again")
    assert ok is True and second != turn_id
    await s.drone.log.wait_for("processWorkOrder", lambda a: a[3]["_id"] == second)


async def test_second_prompt_while_processing_is_refused_with_the_reason(hub: HubHarness) -> None:
    s = await setup_session(hub)
    turn_id = await start_turn(s.ide, s.drone)
    ok, reason = await s.ide.call("submitPrompt", "another")
    assert ok is False
    assert reason == f"a turn is already processing ({turn_id}); wait or cancel it"
    assert len(s.drone.log.of("processWorkOrder")) == 1
    # Only one turn exists in the session.
    r = await hub.http.get(f"/api/chat-sessions/{s.chat_id}/turns", headers=hub.bearer(s.token))
    assert [t["_id"] for t in r.json()] == [turn_id]


async def test_completion_of_another_turn_id_is_ignored(hub: HubHarness) -> None:
    s = await setup_session(hub)
    turn_id = await start_turn(s.ide, s.drone)
    await s.drone.emit("workOrderComplete", "not-the-turn", True)
    await s.drone.emit("response", "still going")
    await s.drone.emit("workOrderComplete", turn_id, True)
    assert await s.ide.log.wait_for("workOrderComplete") == (turn_id, True)
    assert s.ide.log.of("workOrderComplete") == [(turn_id, True)]
    await hub.settle()
    turn = await hub.get_turn(s.token, turn_id)
    assert turn["status"] == "finished"
    assert [b["content"] for b in turn["blocks"]] == ["still going"]
