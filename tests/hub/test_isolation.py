"""A second user can neither see nor touch the first user's drones, projects, sessions, turns."""

from __future__ import annotations

from typing import Any

from tests.harness import HubHarness
from tests.hub.helpers import Session, drone_state, setup_session, start_turn


async def two_users(hub: HubHarness) -> tuple[Session, Session, str]:
    """Ann with a running turn, and Bob with his own locked drone; returns them and Ann's turn."""
    ann = await setup_session(hub, "ann")
    turn_id = await start_turn(ann.ide, ann.drone, "ann's secret prompt")
    await ann.drone.emit("response", "ann's secret answer")
    bob = await setup_session(hub, "bob")
    return ann, bob, turn_id


async def test_rest_hides_the_other_users_objects(hub: HubHarness) -> None:
    ann, bob, turn_id = await two_users(hub)
    auth = hub.bearer(bob.token)
    for method, path in [
        ("GET", f"/api/turns/{turn_id}"),
        ("GET", f"/api/chat-sessions/{ann.chat_id}/turns"),
        ("POST", f"/api/drones/{ann.drone_id}/terminate"),
        ("DELETE", f"/api/drones/{ann.drone_id}"),
    ]:
        r = await hub.http.request(method, path, headers=auth)
        assert r.status_code == 404, (method, path, r.text)
        assert "secret" not in r.text
    lists: dict[str, Any] = {
        p: (await hub.http.get(p, headers=auth)).json()
        for p in (
            "/api/projects",
            "/api/drones",
            "/api/chat-sessions",
            f"/api/chat-sessions?project={ann.project_id}",
        )
    }
    assert [p["_id"] for p in lists["/api/projects"]] == [bob.project_id]
    assert [d["_id"] for d in lists["/api/drones"]] == [bob.drone_id]
    assert [c["_id"] for c in lists["/api/chat-sessions"]] == [bob.chat_id]
    assert lists[f"/api/chat-sessions?project={ann.project_id}"] == []
    # Ann still sees all of hers; her drone was not deleted.
    assert (await hub.get_turn(ann.token, turn_id))["prompt"] == "ann's secret prompt"
    assert (await drone_state(hub, ann.token, ann.drone_id))["online"] is True
    assert ann.drone.log.of("requestTermination") == []


async def test_sockets_refuse_the_other_users_drone_project_session_and_turn(
    hub: HubHarness,
) -> None:
    ann, bob, turn_id = await two_users(hub)
    start = len(bob.ide.log.events)
    cases = [
        ({"_id": ann.drone_id}, {"_id": bob.project_id}, None),  # her drone
        ({"_id": bob.drone_id}, {"_id": ann.project_id}, None),  # her project
        ({"_id": bob.drone_id}, {"_id": bob.project_id}, {"_id": ann.chat_id}),  # her session
    ]
    for registration, project, chat in cases:
        ok, reason = await bob.ide.call("requestSessionLock", registration, project, chat)
        assert ok is False and reason.startswith("unknown "), reason
    ok, reason = await bob.ide.call("requestTermination", ann.drone_id)
    assert ok is False and reason == f"unknown drone {ann.drone_id}"
    ok, reason = await bob.ide.call("cancelWorkOrder", turn_id)
    assert ok is False
    assert ann.drone.log.of("requestTermination") == []
    assert ann.drone.log.of("cancelWorkOrder") == []
    # Ann keeps her lock and her stream; Bob saw none of it.
    state = await drone_state(hub, ann.token, ann.drone_id)
    assert state["lockedBy"]["username"] == "ann"
    await ann.drone.emit("workOrderComplete", turn_id, True)
    await ann.ide.log.wait_for("workOrderComplete")
    await bob.drone.sio.call("status", ("ping",), timeout=5)
    # (The "error" replies only echo the ids Bob sent.)
    seen = repr([(e, a) for e, a in bob.ide.log.events[start:] if e != "error"])
    assert "secret" not in seen and turn_id not in seen and ann.drone_id not in seen
    assert bob.ide.log.of("workOrderComplete") == []


async def test_drone_events_reach_only_their_own_session(hub: HubHarness) -> None:
    ann, bob, turn_id = await two_users(hub)
    bob_turn = await start_turn(bob.ide, bob.drone, "bob's prompt")
    await bob.drone.emit("response", "bob's answer")
    await bob.drone.emit("workOrderComplete", bob_turn, True)
    await ann.drone.emit("workOrderComplete", turn_id, True)
    await bob.ide.log.wait_for("workOrderComplete")
    await ann.ide.log.wait_for("workOrderComplete")
    assert bob.ide.log.of("response") == [("bob's answer",)]
    assert ann.ide.log.of("response") == [("ann's secret answer",)]
    # Ann's drone list updates never go to Bob.
    assert all(a[0]["_id"] == bob.drone_id for a in bob.ide.log.of("droneState"))
