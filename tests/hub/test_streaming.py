"""The stream of one turn: routing, argument order and exactly persisted blocks."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from tests.harness import HubHarness
from tests.hub.helpers import eventually, lock, setup_session, start_turn


async def test_work_order_carries_registration_project_session_and_turn(hub: HubHarness) -> None:
    s = await setup_session(hub)
    drone, chat_id, drone_id = s.drone, s.chat_id, s.drone_id
    turn_id = await start_turn(s.ide, drone, "fix the bug")
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
    s = await setup_session(hub)
    token, ide, drone = s.token, s.ide, s.drone
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


async def stored_blocks(hub: HubHarness, turn_id: str) -> list[tuple[str, Any]]:
    """(mode, content) of every block of the turn as the database holds it now."""
    turn = await hub.hub.store.turn_out(turn_id)
    assert turn is not None
    return [(b.mode.value, b.content) for b in turn.blocks]


async def test_growing_block_is_stored_while_it_grows_as_one_block(hub: HubHarness) -> None:
    s = await setup_session(hub)
    turn_id = await start_turn(s.ide, s.drone)
    await s.drone.emit("response", "Hello ")
    await s.drone.emit("response", "world")
    await s.ide.log.wait_for("response", lambda a: a == ("world",))
    # flush_interval_ms is 250: past it, without completion, the text is stored.
    await asyncio.sleep(0.4)
    assert await stored_blocks(hub, turn_id) == [("responding", "Hello world")]
    await s.drone.emit("response", ", again")
    await asyncio.sleep(0.4)
    assert await stored_blocks(hub, turn_id) == [("responding", "Hello world, again")]
    await s.drone.emit("workOrderComplete", turn_id, True)
    await s.ide.log.wait_for("workOrderComplete")
    await hub.settle()
    assert await stored_blocks(hub, turn_id) == [("responding", "Hello world, again")]


async def test_pending_bytes_past_the_threshold_trigger_a_write(
    hub_factory: Callable[..., AbstractAsyncContextManager[HubHarness]],
) -> None:
    async with hub_factory(flush_interval_ms=60_000) as hub:
        s = await setup_session(hub)
        turn_id = await start_turn(s.ide, s.drone)
        first = "a" * 10_000
        await s.drone.emit("thinking", first)
        await s.ide.log.wait_for("thinking")
        await asyncio.sleep(0.2)
        assert await stored_blocks(hub, turn_id) == []  # below 16 KiB and no timer yet
        second = "b" * 7_000  # now 17,000 pending >= 16,384
        await s.drone.emit("thinking", second)
        await eventually(
            lambda: _has_blocks(hub, turn_id, [("thinking", first + second)]), timeout=3
        )
        await s.drone.emit("thinking", "c" * 1_000)
        await s.ide.log.wait_for("thinking", lambda a: a[0].startswith("c"))
        await asyncio.sleep(0.2)
        assert await stored_blocks(hub, turn_id) == [("thinking", first + second)]
        await s.drone.emit("workOrderComplete", turn_id, True)
        await s.ide.log.wait_for("workOrderComplete")
        await hub.settle()
        assert await stored_blocks(hub, turn_id) == [("thinking", first + second + "c" * 1_000)]


async def _has_blocks(hub: HubHarness, turn_id: str, expected: list[tuple[str, Any]]) -> bool:
    return await stored_blocks(hub, turn_id) == expected


SUBAGENT_STREAM: list[tuple[str, dict[str, Any]]] = [
    ("agent:thinking", {"thinking": "hm"}),
    ("agent:thinking", {"thinking": "m"}),
    ("agent:tool-call", {"tool": "read_file", "args": {"path": "a.py"}}),
    ("agent:tool-result", {"tool": "read_file", "result": "1: x"}),
    ("agent:response", {"chunk": "found "}),
    ("agent:response", {"chunk": "it"}),
]
#: What the hub keeps of it: consecutive text merged, agentId left out.
SUBAGENT_STORED = [
    ["agent:thinking", {"thinking": "hmm"}],
    ["agent:tool-call", {"tool": "read_file", "args": {"path": "a.py"}}],
    ["agent:tool-result", {"tool": "read_file", "result": "1: x"}],
    ["agent:response", {"chunk": "found it"}],
]


async def test_a_running_subagents_stream_is_in_the_snapshot_of_a_reload(hub: HubHarness) -> None:
    s = await setup_session(hub)
    turn_id = await start_turn(s.ide, s.drone)
    for event, payload in SUBAGENT_STREAM:
        await s.drone.emit(event, {"agentId": "task-1", **payload})
    await s.ide.log.wait_for("agent:response", lambda a: a[0]["chunk"] == "it")
    reloaded = await hub.ide(s.token)
    ok, _ = await reloaded.call(
        "requestSessionLock", {"_id": s.drone_id}, {"_id": s.project_id}, {"_id": s.chat_id}
    )
    assert ok is True
    (snapshot,) = await reloaded.log.wait_for("turnSnapshot")
    assert snapshot["_id"] == turn_id
    assert snapshot["agentStreams"] == {"task-1": SUBAGENT_STORED}


async def test_subagent_completion_updates_the_tool_call_and_its_block(hub: HubHarness) -> None:
    s = await setup_session(hub)
    turn_id = await start_turn(s.ide, s.drone)
    params = json.dumps({"prompt": "look around"})
    # The drone's order: the subagent streams, then the parent's toolCall, then agent:complete.
    for event, payload in SUBAGENT_STREAM:
        await s.drone.emit(event, {"agentId": "task-1", **payload})
    await s.drone.emit("toolCall", "task-1", "task", params, '"started"')
    summary = {"steps": 3, "toolCalls": [{"name": "read_file"}]}
    done = {"agentId": "task-1", "response": "found it", "subagent": summary, "stats": {"n": 1}}
    await s.drone.emit("agent:complete", done)
    await s.ide.log.wait_for("agent:complete")
    assert s.ide.log.of("agent:complete") == [(done,)]

    expected_call = {
        "callId": "task-1",
        "name": "task",
        "parameters": params,
        "response": "found it",
        "subagent": {**summary, "stream": SUBAGENT_STORED},
    }
    live = await hub.get_turn(s.token, turn_id)  # from the recorder's mirror
    assert live["toolCalls"] == [expected_call]
    assert [(b["mode"], b["content"]) for b in live["blocks"]] == [("tool", expected_call)]

    await s.drone.emit("workOrderComplete", turn_id, True)
    await s.ide.log.wait_for("workOrderComplete")
    await hub.settle()
    stored = await hub.hub.store.turn_out(turn_id)
    assert stored is not None
    wire = stored.wire()
    assert wire["toolCalls"] == [expected_call]
    assert [(b["mode"], b["content"]) for b in wire["blocks"]] == [("tool", expected_call)]


async def test_two_ide_sockets_of_one_session_both_get_the_stream(hub: HubHarness) -> None:
    s = await setup_session(hub)
    second = await hub.ide(s.token)
    ok, chat_id = await lock(s, second)
    assert (ok, chat_id) == (True, s.chat_id)
    turn_id = await start_turn(s.ide, s.drone)
    sent: list[tuple[str, tuple[Any, ...]]] = [
        ("thinking", ("t",)),
        ("response", ("r1",)),
        ("toolCall", ("c1", "ls", "{}", '"[]"')),
        ("response", ("r2",)),
        ("workOrderComplete", (turn_id, True)),
    ]
    for event, args in sent:
        await s.drone.emit(event, *args)
    for ide in (s.ide, second):
        await ide.log.wait_for("workOrderComplete")
        got = [(e, a) for e, a in ide.log.events if e in {e for e, _ in sent}]
        assert got == sent
        assert [a[0]["_id"] for a in ide.log.of("turnStarted")] == [turn_id]
