"""Reserved and unknown event names never reach a handler and never address another socket."""

from __future__ import annotations

from typing import Any

import pytest

from tests.harness import Client, HubHarness
from tests.hub.helpers import Session, eventually, setup_session, start_turn

#: Names python-socketio or the hub use internally, and names no table has.
RESERVED = ["connect", "disconnect", "*", "connect_error", "message", "ping?", ""]


async def _sid_of(hub: HubHarness, client: Client) -> str:
    sid = client.sio.get_sid()
    assert isinstance(sid, str)
    return sid


@pytest.mark.parametrize("sender", ["ide", "drone"])
@pytest.mark.parametrize("name", RESERVED)
async def test_reserved_name_gets_an_error_reply_and_changes_nothing(
    hub: HubHarness, sender: str, name: str
) -> None:
    s = await setup_session(hub)
    other = await setup_session(hub, user="bob")
    turn_id = await start_turn(s.ide, s.drone)
    client = s.ide if sender == "ide" else s.drone
    victim_sid = await _sid_of(hub, other.ide)
    before_victim = len(other.ide.log.events)
    args: tuple[Any, ...] = (victim_sid, {"auth": "forged"}, "x")
    reply = await client.sio.call(name, args, timeout=10)
    assert reply[0] is False and isinstance(reply[1], str) and reply[1]
    assert client.log.of("error")[-1][0]["message"] == reply[1]
    # The lifecycle handlers did not run: the drone is still connected and streaming,
    # the IDE still holds its lock.
    await s.drone.emit("response", "still recorded")
    await s.drone.emit("workOrderComplete", turn_id, True)
    assert await s.ide.log.wait_for("workOrderComplete") == (turn_id, True)
    await hub.settle()
    turn = await hub.get_turn(s.token, turn_id)
    assert turn["status"] == "finished"
    assert [b["content"] for b in turn["blocks"]] == ["still recorded"]
    # Nothing was sent to the other user's socket named in the arguments.
    await eventually(lambda: True)
    assert other.ide.log.events[before_victim:] == []


@pytest.mark.parametrize("sender", ["ide", "drone"])
async def test_events_of_the_other_side_are_refused(hub: HubHarness, sender: str) -> None:
    s: Session = await setup_session(hub)
    client = s.ide if sender == "ide" else s.drone
    name = "thinking" if sender == "ide" else "submitPrompt"
    reply = await client.sio.call(name, ("x",), timeout=10)
    assert tuple(reply) == (False, f"{name} is not accepted from this client")


async def test_an_event_without_a_string_name_is_refused(hub: HubHarness) -> None:
    s = await setup_session(hub)
    await s.ide.sio.eio.send('2[42,"x"]')
    error = await s.ide.log.wait_for("error")
    assert error[0]["message"] == "expected an event name (a string)"
