"""Every event's route and argument order: IDE→hub→drone, drone→hub→IDE, and their acks."""

from __future__ import annotations

from typing import Any

from tests.harness import HubHarness
from tests.hub.helpers import drone_state, forwarded_since, lock, setup_session, start_turn


async def test_lock_acks_success_and_chat_session_id_and_resumes_it(hub: HubHarness) -> None:
    s = await setup_session(hub)
    assert isinstance(s.chat_id, str) and s.chat_id
    state = await drone_state(hub, s.token, s.drone_id)
    assert state["lockedBy"]["username"] == "ann"
    assert state["chatSession"] == s.chat_id
    # The lock told the IDE the drone's mode and announced itself.
    assert s.ide.log.of("workspaceModeChanged") == [("idle",)]
    assert s.ide.log.of("status") == [("drone locked by ann",)]
    # A resumed session keeps its id.
    assert tuple(await lock(s, s.ide)) == (True, s.chat_id)
    # An empty object also asks for a new one.
    ok, new_chat = await s.ide.call(
        "requestSessionLock", {"_id": s.drone_id}, {"_id": s.project_id}, {}
    )
    assert ok is True and new_chat != s.chat_id


async def test_workspace_mode_request_goes_to_the_drone_and_its_answer_to_the_ide(
    hub: HubHarness,
) -> None:
    s = await setup_session(hub)
    assert await s.ide.call("requestWorkspaceMode", "agent") is True
    assert await s.drone.log.wait_for("requestWorkspaceMode") == ("agent",)
    await s.drone.emit("workspaceModeChanged", "agent")
    await s.ide.log.wait_for("workspaceModeChanged", lambda a: a == ("agent",))
    assert (await drone_state(hub, s.token, s.drone_id))["workspaceMode"] == "agent"
    # The owner's drone list updates live too.
    await s.ide.log.wait_for("droneState", lambda a: a[0]["workspaceMode"] == "agent")


async def test_release_acks_and_frees_the_drone(hub: HubHarness) -> None:
    s = await setup_session(hub)
    assert await s.ide.call("releaseSessionLock") is True
    assert (await drone_state(hub, s.token, s.drone_id))["lockedBy"] is None
    await s.ide.log.wait_for("status", lambda a: a == ("session lock released by ann",))
    # Without a lock, a prompt is refused with the reason.
    ok, reason = await s.ide.call("submitPrompt", "hi")
    assert ok is False and "requestSessionLock" in reason


async def test_cancel_is_acked_and_forwarded_to_the_drone_with_the_turn_id(
    hub: HubHarness,
) -> None:
    s = await setup_session(hub)
    turn_id = await start_turn(s.ide, s.drone)
    assert await s.ide.call("cancelWorkOrder", turn_id) is True
    assert await s.drone.log.wait_for("cancelWorkOrder") == (turn_id,)
    # The drone ends the turn; the IDE sees it and the turn is stored as error.
    await s.drone.emit("workOrderComplete", turn_id, False, "cancelled")
    assert await s.ide.log.wait_for("workOrderComplete") == (turn_id, False, "cancelled")
    await hub.settle()
    turn = await hub.get_turn(s.token, turn_id)
    assert (turn["status"], turn["errorMessage"]) == ("error", "cancelled")
    assert turn["cancelled"] is True


async def test_a_turn_that_failed_on_its_own_is_not_marked_cancelled(hub: HubHarness) -> None:
    s = await setup_session(hub)
    turn_id = await start_turn(s.ide, s.drone)
    await s.drone.emit("workOrderComplete", turn_id, False, "the model is unreachable")
    await s.ide.log.wait_for("workOrderComplete")
    await hub.settle()
    turn = await hub.get_turn(s.token, turn_id)
    assert turn["status"] == "error" and "cancelled" not in turn


async def test_a_refused_workspace_mode_acks_the_drones_reason(hub: HubHarness) -> None:
    token = await hub.signup("ann")
    drone_id, key = await hub.create_drone(token)
    project_id = await hub.create_project(token)
    await hub.drone(drone_id, key, mode_ack=(False, "agent mode starts with a work order"))
    ide = await hub.ide(token)
    ok, _ = await ide.call("requestSessionLock", {"_id": drone_id}, {"_id": project_id}, None)
    assert ok is True
    ok, reason = await ide.call("requestWorkspaceMode", "agent")
    assert ok is False
    assert reason == "agent mode starts with a work order"


async def test_a_prompt_in_user_mode_is_refused_without_a_turn(hub: HubHarness) -> None:
    s = await setup_session(hub)
    await s.drone.emit("workspaceModeChanged", "user")
    await s.ide.log.wait_for("workspaceModeChanged", lambda a: a == ("user",))
    ok, reason = await s.ide.call("submitPrompt", "hi")
    assert ok is False and reason.startswith("the workspace is in user mode")
    assert s.drone.log.of("processWorkOrder") == []
    r = await hub.http.get(f"/api/chat-sessions/{s.chat_id}/turns", headers=hub.bearer(s.token))
    assert r.json() == []


async def test_drone_state_says_when_it_was_last_seen_and_its_sandbox(hub: HubHarness) -> None:
    token = await hub.signup("ann")
    drone_id, key = await hub.create_drone(token)
    watcher = await hub.ide(token, watch_drones=True)
    drone = await hub.connect({"registrationId": drone_id, "key": key, "sandbox": "none"})
    online = await watcher.log.wait_for("droneState", lambda a: a[0]["online"] is True)
    assert online[0]["sandbox"] == "none" and online[0]["lastSeen"]
    await drone.close()
    offline = await watcher.log.wait_for("droneState", lambda a: a[0]["online"] is False)
    assert offline[0]["lastSeen"] >= online[0]["lastSeen"]
    state = await drone_state(hub, token, drone_id)
    assert state["online"] is False and state["lastSeen"] == offline[0]["lastSeen"]


async def test_cancel_of_a_turn_that_is_not_running_is_refused(hub: HubHarness) -> None:
    s = await setup_session(hub)
    ok, reason = await s.ide.call("cancelWorkOrder", "no-such-turn")
    assert ok is False and "not running" in reason
    assert s.drone.log.of("cancelWorkOrder") == []


async def test_termination_asks_the_drone_and_acks_its_answer(hub: HubHarness) -> None:
    s = await setup_session(hub)
    assert await s.ide.call("requestTermination", s.drone_id) is True
    assert await s.drone.log.wait_for("requestTermination") == ()


async def test_termination_refused_by_the_drone_acks_false(hub: HubHarness) -> None:
    s = await setup_session(hub)
    s.drone.sio.on("requestTermination", handler=lambda *a: False)
    assert await s.ide.call("requestTermination", s.drone_id) is False


async def test_every_drone_event_reaches_the_ide_with_its_arguments_in_order(
    hub: HubHarness,
) -> None:
    s = await setup_session(hub)
    turn_id = await start_turn(s.ide, s.drone)
    start = len(s.ide.log.events)
    sent: list[tuple[str, tuple[Any, ...]]] = [
        ("status", ("reading files",)),
        ("log", ("2026-01-01T00:00:00Z", "agent", "info", "step 1", {"k": [1, 2]})),
        ("log", (1767225600000, "drone", "warn", "no metadata")),
        ("workspaceModeChanged", ("agent",)),
        ("thinking", ("think",)),
        ("response", ("answer",)),
        ("toolCall", ("c1", "task", '{"prompt": "p"}', '"r"')),
        ("agent:thinking", ({"agentId": "c1", "thinking": "sub-think"},)),
        ("agent:response", ({"agentId": "c1", "chunk": "sub-answer"},)),
        ("agent:tool-call", ({"agentId": "c1", "tool": "grep", "args": {"q": "x"}},)),
        ("agent:tool-result", ({"agentId": "c1", "tool": "grep", "result": ["a.py"]},)),
        ("agent:complete", ({"agentId": "c1", "response": "done", "subagent": {"n": 1}},)),
        ("workOrderComplete", (turn_id, True, "all good")),
    ]
    for event, args in sent:
        await s.drone.emit(event, *args)
    await s.ide.log.wait_for("workOrderComplete")
    assert forwarded_since(s.ide, start) == sent
    # Nothing of it went back to the drone.
    assert [e for e, _ in s.drone.log.events if e in {e for e, _ in sent}] == []


async def test_events_of_a_drone_without_a_lock_reach_no_ide(hub: HubHarness) -> None:
    s = await setup_session(hub)
    assert await s.ide.call("releaseSessionLock") is True
    start = len(s.ide.log.events)
    await s.drone.emit("status", "nobody listens")
    await s.drone.emit("thinking", "lost")
    # A round trip on the same socket: everything before it was handled.
    await s.drone.sio.call("status", ("ping",), timeout=5)
    assert [e for e, _ in s.ide.log.events[start:] if e in {"status", "thinking"}] == []


async def test_the_drones_model_report_reaches_the_drone_list(hub: HubHarness) -> None:
    token = await hub.signup("mo")
    drone_id, key = await hub.create_drone(token)
    model = {
        "name": "qwen3:8b",
        "baseUrl": "http://127.0.0.1:9/v1",
        "reachable": False,
        "error": "set GADGET_LLM_BASE_URL",
    }
    ide = await hub.ide(token, watch_drones=True)
    await hub.connect({"registrationId": drone_id, "key": key, "model": model, "hostname": "box"})
    drones = (await hub.http.get("/api/drones", headers=hub.bearer(token))).json()
    assert drones[0]["model"] == model and drones[0]["hostname"] == "box"
    state = await ide.log.wait_for("droneState", lambda a: a[0]["online"])
    assert state[0]["model"] == model


async def test_a_malformed_model_report_is_ignored_not_refused(hub: HubHarness) -> None:
    token = await hub.signup("mo")
    drone_id, key = await hub.create_drone(token)
    await hub.connect({"registrationId": drone_id, "key": key, "model": {"name": 5}})
    drones = (await hub.http.get("/api/drones", headers=hub.bearer(token))).json()
    assert drones[0]["online"] is True and drones[0]["model"] is None
