"""The stream of one turn: routing, argument order and exactly persisted blocks."""

from __future__ import annotations

import json
from typing import Any

from tests.harness import Client, HubHarness


async def setup_session(hub: HubHarness, user: str = "ann") -> tuple[str, Client, Client, str, str]:
    """A user with a connected drone locked by an IDE: (token, ide, drone, chat id, drone id)."""
    token = await hub.signup(user)
    drone_id, key = await hub.create_drone(token)
    project_id = await hub.create_project(token)
    drone = await hub.drone(drone_id, key)
    ide = await hub.ide(token)
    ok, chat_id = await ide.call("requestSessionLock", {"_id": drone_id}, {"_id": project_id}, None)
    assert ok is True, chat_id
    return token, ide, drone, chat_id, drone_id


async def start_turn(ide: Client, drone: Client, prompt: str = "hello") -> str:
    ok, turn_id = await ide.call("submitPrompt", prompt)
    assert ok is True, turn_id
    await drone.log.wait_for("processWorkOrder", lambda a: a[3]["_id"] == turn_id)
    return str(turn_id)


async def test_work_order_carries_registration_project_session_and_turn(hub: HubHarness) -> None:
    token, ide, drone, chat_id, drone_id = await setup_session(hub)
    turn_id = await start_turn(ide, drone, "fix the bug")
    registration, project, chat, turn = drone.log.of("processWorkOrder")[0]
    assert (
        registration["_id"] == drone_id
        and "key" not in registration
        and "key_hash" not in registration
    )
    assert project["name"] == "proj"
    assert chat["_id"] == chat_id
    assert turn == {
        **turn,
        "_id": turn_id,
        "prompt": "fix the bug",
        "status": "processing",
        "chatSession": chat_id,
    }


async def test_interleaved_stream_is_forwarded_in_order_and_stored_as_blocks(
    hub: HubHarness,
) -> None:
    token, ide, drone, chat_id, _ = await setup_session(hub)
    turn_id = await start_turn(ide, drone)
    sent: list[tuple[str, tuple[Any, ...]]] = [
        ("thinking", ("Let me ",)),
        ("thinking", ("think.",)),
        ("response", ("Reading ",)),
        ("response", ("the file.",)),
        ("toolCall", ("c1", "read_file", json.dumps({"path": "a.py"}), json.dumps("1: x = 1"))),
        ("thinking", ("Now edit.",)),
        ("toolCall", ("c2", "edit_file", "{}", '"ok"')),
        ("response", ("Done",)),
        ("response", ("!",)),
    ]
    for event, args in sent:
        await drone.emit(event, *args)
    await drone.emit("workOrderComplete", turn_id, True)
    await ide.log.wait_for("workOrderComplete")
    forwarded = [(e, a) for e, a in ide.log.events if e in {"thinking", "response", "toolCall"}]
    assert forwarded == sent
    assert ide.log.of("workOrderComplete") == [(turn_id, True)]

    await hub.settle()
    turn = await hub.get_turn(token, turn_id)
    assert turn["status"] == "finished"
    assert [(b["mode"], b["content"]) for b in turn["blocks"]] == [
        ("thinking", "Let me think."),
        ("responding", "Reading the file."),
        (
            "tool",
            {
                "callId": "c1",
                "name": "read_file",
                "parameters": '{"path": "a.py"}',
                "response": '"1: x = 1"',
            },
        ),
        ("thinking", "Now edit."),
        ("tool", {"callId": "c2", "name": "edit_file", "parameters": "{}", "response": '"ok"'}),
        ("responding", "Done!"),
    ]
    assert [c["callId"] for c in turn["toolCalls"]] == ["c1", "c2"]
    assert turn["stats"]["toolCallCount"] == 2
    # The stored record and the live record agree.
    stored = await hub.hub.store.turn_out(turn_id)
    assert stored is not None and stored.wire()["blocks"] == turn["blocks"]
