"""An IDE that reloads mid-turn, and a hub that restarts mid-turn: nothing missing or doubled."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest

from gadget.hub.bus import Bus
from tests.harness import Client, HubHarness
from tests.hub.helpers import Session, lock, setup_session, start_turn

HubFactory = Callable[..., AbstractAsyncContextManager[HubHarness]]
Blocks = list[tuple[str, str]]
MODES = {"thinking": "thinking", "response": "responding"}


def replay(client: Client) -> tuple[Blocks, int]:
    """The text blocks `client` can rebuild: its turnSnapshot, then the deltas after it.

    Returns the blocks and how many deltas arrived after the snapshot.
    """
    names = [e for e, _ in client.log.events]
    start = names.index("turnSnapshot")
    assert not any(e in MODES for e in names[:start]), "deltas before the snapshot"
    snapshot = client.log.events[start][1][0]
    blocks: Blocks = [(b["mode"], b["content"]) for b in snapshot["blocks"]]
    deltas = [(e, a) for e, a in client.log.events[start + 1 :] if e in MODES]
    for event, (text,) in deltas:
        if blocks and blocks[-1][0] == MODES[event]:
            blocks[-1] = (blocks[-1][0], blocks[-1][1] + text)
        else:
            blocks.append((MODES[event], text))
    return blocks, len(deltas)


async def stream(drone: Client, count: int) -> list[tuple[str, str]]:
    """Emit `count` deltas, switching thinking/response every 40; returns what was sent."""
    sent = []
    for i in range(count):
        event = "thinking" if (i // 40) % 2 == 0 else "response"
        sent.append((event, f"w{i} "))
        await drone.emit(event, f"w{i} ")
        if i % 10 == 0:  # paced, so that locks taken meanwhile land mid-stream
            await asyncio.sleep(0.005)
    return sent


def as_blocks(sent: list[tuple[str, str]]) -> Blocks:
    blocks: Blocks = []
    for event, text in sent:
        if blocks and blocks[-1][0] == MODES[event]:
            blocks[-1] = (blocks[-1][0], blocks[-1][1] + text)
        else:
            blocks.append((MODES[event], text))
    return blocks


async def test_reload_mid_turn_gets_a_snapshot_then_the_rest(hub: HubHarness) -> None:
    s = await setup_session(hub)
    turn_id = await start_turn(s.ide, s.drone)
    streaming = asyncio.create_task(stream(s.drone, 1500))
    await s.ide.log.wait_for("response")  # well into the turn
    await s.ide.close()  # the page reloads
    # The reloaded page, then more tabs of the same user joining while tokens flow.
    joined: list[Client] = []
    for _ in range(4):
        ide = await hub.ide(s.token)
        assert tuple(await lock(s, ide)) == (True, s.chat_id)
        joined.append(ide)
        await asyncio.sleep(0.01)
    sent = await streaming
    await s.drone.emit("workOrderComplete", turn_id, True)
    expected = as_blocks(sent)
    for ide in joined:
        await ide.log.wait_for("workOrderComplete")
        rebuilt, after = replay(ide)
        assert rebuilt == expected
        (snapshot,) = ide.log.of("turnSnapshot")
        assert (snapshot[0]["_id"], snapshot[0]["status"]) == (turn_id, "processing")
    assert 0 < replay(joined[0])[1] < len(sent), "the reload should land mid-stream"
    await hub.settle()
    stored = await hub.get_turn(s.token, turn_id)
    assert [(b["mode"], b["content"]) for b in stored["blocks"]] == expected


async def test_reload_while_forwards_are_in_flight_misses_nothing(
    hub: HubHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A bus whose sends take a while (as through Redis): each forward yields to the
    # loop after its recipients are fixed, so a lock lands between forward and record
    # unless the mirror is updated first.
    real_to_room = Bus.to_room

    async def slow_to_room(bus: Bus, room: str, event: str, *args: Any) -> None:
        await real_to_room(bus, room, event, *args)
        await asyncio.sleep(0.002)

    monkeypatch.setattr(Bus, "to_room", slow_to_room)
    s = await setup_session(hub)
    turn_id = await start_turn(s.ide, s.drone)
    streaming = asyncio.create_task(stream(s.drone, 240))
    await s.ide.log.wait_for("thinking")
    joined: list[Client] = []
    for _ in range(4):
        ide = await hub.ide(s.token)
        assert tuple(await lock(s, ide)) == (True, s.chat_id)
        joined.append(ide)
    sent = await streaming
    await s.drone.emit("workOrderComplete", turn_id, True)
    for ide in joined:
        await ide.log.wait_for("workOrderComplete")
        rebuilt, after = replay(ide)
        assert rebuilt == as_blocks(sent)
        assert 0 < after < len(sent)


async def test_lock_after_the_turn_ended_gets_no_snapshot(hub: HubHarness) -> None:
    s = await setup_session(hub)
    turn_id = await start_turn(s.ide, s.drone)
    await s.drone.emit("workOrderComplete", turn_id, True)
    await s.ide.log.wait_for("workOrderComplete")
    ide = await hub.ide(s.token)
    assert tuple(await lock(s, ide)) == (True, s.chat_id)
    assert ide.log.of("turnSnapshot") == []


async def _first_run(hub: HubHarness) -> tuple[Session, str]:
    s = await setup_session(hub)
    turn_id = await start_turn(s.ide, s.drone)
    await s.drone.emit("thinking", "plan")
    await s.drone.emit("response", "part one, ")
    await s.drone.emit("response", "still one; ")
    await s.ide.log.wait_for("response", lambda a: a == ("still one; ",))
    return s, turn_id


async def test_hub_restart_mid_turn_resumes_the_same_block(hub_factory: HubFactory) -> None:
    async with hub_factory() as first:
        s, turn_id = await _first_run(first)
    # The graceful stop wrote the buffered text; the turn is still processing.
    async with hub_factory() as hub:
        stored = await hub.hub.store.turn_out(turn_id)
        assert stored is not None and stored.status.value == "processing"
        assert [(b.mode.value, b.content) for b in stored.blocks] == [
            ("thinking", "plan"),
            ("responding", "part one, still one; "),
        ]
        drone = await hub.drone(s.drone_id, s.key)
        ide = await hub.ide(s.token)  # the token outlives the restart
        assert tuple(await lock(s, ide)) == (True, s.chat_id)
        (snapshot,) = await_snapshot(ide)
        assert snapshot["_id"] == turn_id
        assert [(b["mode"], b["content"]) for b in snapshot["blocks"]] == [
            ("thinking", "plan"),
            ("responding", "part one, still one; "),
        ]
        await drone.emit("response", "part two")
        await drone.emit("workOrderComplete", turn_id, True)
        assert await ide.log.wait_for("workOrderComplete") == (turn_id, True)
        assert ide.log.of("response") == [("part two",)]
        await hub.settle()
        turn = await hub.get_turn(s.token, turn_id)
        assert turn["status"] == "finished"
        assert [(b["mode"], b["content"]) for b in turn["blocks"]] == [
            ("thinking", "plan"),
            ("responding", "part one, still one; part two"),
        ]
        await asyncio.sleep(1.2)  # past the orphan timer: the finished turn stays finished
        assert (await hub.get_turn(s.token, turn_id))["status"] == "finished"


async def test_hub_restart_without_the_drone_fails_the_turn_after_grace(
    hub_factory: HubFactory,
) -> None:
    async with hub_factory() as first:
        s, turn_id = await _first_run(first)
    async with hub_factory(drone_grace_s=0.3) as hub:
        ide = await hub.ide(s.token)
        await asyncio.sleep(0.6)
        turn = await hub.get_turn(s.token, turn_id)
        assert (turn["status"], turn["errorMessage"]) == ("error", "drone disconnected")
        assert ide.log.of("workOrderComplete") == []  # it held no lock: nobody to tell live


def await_snapshot(ide: Client) -> list[Any]:
    """The snapshots `ide` got (the lock's ack comes after it, so it is already here)."""
    return [a[0] for a in ide.log.of("turnSnapshot")]
