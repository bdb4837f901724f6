"""Per-socket abuse limits: event rate, message size, IDE sockets per user.

Each limit is shown to stop an abusive client (an `error` reply, then a disconnect)
while everyone else is served; the default limits are shown not to throttle a drone
that streams as fast as it can.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import socketio

from gadget.protocol import mark
from tests.drone.e2e import new_session, running_drone
from tests.fakes.llm_server import ScriptedLLM, count_tokens, numbered_reply
from tests.harness import Client, HubHarness
from tests.hub.helpers import eventually, setup_session, start_turn
from tests.hub.test_auth import refused

HubFactory = Callable[..., AbstractAsyncContextManager[HubHarness]]


def _limit_errors(client: Client) -> list[dict[str, Any]]:
    return [a[0] for a in client.log.of("error") if a and a[0].get("code") == "limit"]


async def test_an_ide_flood_is_refused_then_disconnected_while_others_stream(
    hub_factory: HubFactory,
) -> None:
    async with hub_factory(ide_events_per_s=20, ide_events_burst=40, flood_strikes=30) as hub:
        bob = await setup_session(hub, "bob")
        turn_id = await start_turn(bob.ide, bob.drone)
        ann = await hub.signup("ann")
        flood = await hub.ide(ann)
        for _ in range(300):
            await flood.emit("setWorkspaceMode", "user")
        await eventually(lambda: not flood.sio.connected)
        errors = _limit_errors(flood)
        assert 1 <= len(errors) <= 31, len(errors)  # refused, then disconnected
        assert "events a second" in errors[0]["message"]
        for seq in range(1, 101):  # bob's stream went on meanwhile, and goes on
            await bob.drone.emit("response", f"r{seq} ", mark(turn_id, seq))
        await bob.ide.log.wait_for("response", lambda a: a[0] == "r100 ")
        assert len(bob.ide.log.of("response")) == 100
        assert not _limit_errors(bob.drone) and not _limit_errors(bob.ide)
        again = await hub.ide(ann)  # the user is not locked out: a new socket is served
        ok, _ = await again.call("setWorkspaceMode", "user")
        assert ok is False  # refused for holding no lock, not for its rate
        assert not _limit_errors(again)


async def test_default_limits_let_an_unpaced_drone_through(hub: HubHarness) -> None:
    s = await setup_session(hub)
    turn_id = await start_turn(s.ide, s.drone)
    events = 5_000
    for seq in range(1, events + 1):
        await s.drone.emit("response", "x", mark(turn_id, seq))
    await eventually(lambda: len(s.ide.log.of("response")) >= events, timeout=30)
    seqs = [m[1] for _, m in s.ide.log.marked("response") if m is not None]
    assert seqs == list(range(1, events + 1))
    assert not _limit_errors(s.drone)


async def test_a_drone_over_its_rate_resends_and_nothing_is_lost(
    hub_factory: HubFactory, ws: Path
) -> None:
    tokens = 300
    async with (
        ScriptedLLM([numbered_reply(tokens, per_chunk=1, chunk_delay_s=0.002)]) as llm,
        hub_factory(drone_events_per_s=15, drone_events_burst=8, flood_strikes=10_000) as hub,
    ):
        session = await new_session(hub, llm, ws)
        async with running_drone(session.settings):
            await session.lock()
            turn_id = await session.submit("count")
            done = await session.completion(turn_id, timeout=60)
            assert done[1] is True, done
            turn = await session.turn(turn_id)
        assert session.ide is not None
        shown = "".join(a[0] for a, m in session.ide.log.marked("response") if m is not None)
        text = "".join(b["content"] for b in turn["blocks"] if b["mode"] == "responding")
    assert count_tokens(text, tokens) == (0, 0)
    assert turn["status"] == "finished"
    assert count_tokens(shown, tokens) == (0, 0)  # each forwarded once, in order


async def test_ide_sockets_per_user_are_capped(hub_factory: HubFactory) -> None:
    async with hub_factory(max_ide_sockets_per_user=3) as hub:
        ann, bob = await hub.signup("ann"), await hub.signup("bob")
        tabs = [await hub.ide(ann) for _ in range(3)]
        assert "3 IDE connections to this hub already" in await refused(hub, {"token": ann})
        await hub.ide(bob)  # another user is not affected
        await tabs[0].close()
        await _connect_when_counted(hub, ann)


async def _connect_when_counted(hub: HubHarness, token: str) -> None:
    """A new socket of the user once the hub has forgotten a closed one."""
    async with asyncio.timeout(5):
        while True:
            try:
                await hub.ide(token)
                return
            except socketio.exceptions.ConnectionError:
                await asyncio.sleep(0.05)


async def test_an_oversized_message_disconnects_only_its_sender(hub_factory: HubFactory) -> None:
    async with hub_factory(max_event_bytes=100_000) as hub:
        s = await setup_session(hub)
        big = await hub.ide(s.token)
        await big.emit("submitPrompt", "x" * 200_000)
        await eventually(lambda: not big.sio.connected)
        ok, turn_id = await s.ide.call("submitPrompt", "y" * 50_000)  # under the limit
        assert ok is True, turn_id
