"""`gadget chat` keeps a seq cursor per turn (issue 7): nothing shown twice, nothing lost.

Real `gadget chat` processes in a pseudo-terminal (read through a VT100 emulator)
against a real hub: scripted drone sockets that number their events themselves,
emits injected where the hub forwards (a resend, an event out of order), a room
the terminal is taken out of for a while (events it never gets), and real hub and
drone subprocesses where the hub is killed mid-stream.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gadget.hub.bus import session_room
from gadget.protocol import mark
from tests.drone.helpers import drone_settings
from tests.fakes.llm_server import ScriptedLLM, count_tokens, numbered_reply
from tests.fakes.processes import Processes, procs  # noqa: F401 (the fixture)
from tests.harness import Client, HubHarness
from tests.ide.pty import Terminal, next_turn, user_with_drone

NEW_CHAT = ("--drone", "buzz", "--project", "p", "--session", "new")


async def _started(hub: HubHarness, token: str, drone: Client) -> tuple[Terminal, str, str]:
    """A terminal with a new session whose first turn has just reached the drone."""
    term = Terminal("--hub", hub.url, *NEW_CHAT, token=token)
    await term.expect("type a prompt")
    term.send("spell it out")
    turn_id = await next_turn(drone)
    chat_id = str(drone.log.of("processWorkOrder")[0][2]["_id"])
    return term, turn_id, chat_id


async def _applied(hub: HubHarness, token: str, turn_id: str, seq: int) -> None:
    """Wait until the hub has applied the turn's events up to `seq`."""
    async with asyncio.timeout(10):
        while True:
            if (await hub.get_turn(token, turn_id))["seq"] >= seq:
                return
            await asyncio.sleep(0.02)


async def test_a_resend_is_shown_once_and_an_early_event_waits_for_the_missing_one(
    hub: HubHarness,
) -> None:
    token, _, drone = await user_with_drone(hub)
    assert drone is not None
    term, turn_id, chat_id = await _started(hub, token, drone)

    async def say(seq: int, text: str) -> None:
        await drone.emit("response", text, mark(turn_id, seq))

    async def inject(seq: int, text: str) -> None:
        """The hub forwards an event the terminal may already have (as another node could)."""
        data = (text, mark(turn_id, seq))
        await hub.hub.sio.emit("response", data, room=session_room(chat_id))

    try:
        await say(1, "Alpha ")
        await say(2, "Bravo ")
        await term.expect("Bravo")
        await say(2, "Bravo ")  # the drone resends (the hub drops it)
        await inject(2, "Bravo ")  # a resend reaches the terminal: ignored
        await inject(4, "Delta ")  # before 3: held
        await say(3, "Charlie ")  # 3, then the held 4
        await say(4, "Delta ")  # forwarded again: ignored
        await say(5, "Echo.")
        await drone.emit("workOrderComplete", turn_id, True, mark(turn_id, 6))
        await term.expect("turn finished")
        term.send("/quit")
        assert await term.exit_status() == 0
    finally:
        term.close()
    lines = [line.strip() for line in term.screen().split("\n")]
    assert "Alpha Bravo Charlie Delta Echo." in lines, term.screen()
    assert term.screen().count("Bravo") == 1 and term.screen().count("Delta") == 1
    assert "Traceback" not in term.screen()


async def test_events_the_terminal_never_got_come_from_the_stored_turn(hub: HubHarness) -> None:
    token, _, drone = await user_with_drone(hub)
    assert drone is not None
    term, turn_id, chat_id = await _started(hub, token, drone)

    async def say(seq: int, event: str, *args: object) -> None:
        await drone.emit(event, *args, mark(turn_id, seq))

    try:
        await say(1, "thinking", "Thinking first.")
        await say(2, "response", "Alpha ")
        await term.expect("Alpha")
        (sid,) = hub.hub.ides.sids()
        await hub.hub.sio.leave_room(sid, session_room(chat_id))  # lost on the way
        await say(3, "response", "Bravo ")
        await say(4, "toolCall", "c1", "read_file", '{"path": "a.py"}', '"1: a = 1"')
        await say(5, "response", "Charlie ")
        await _applied(hub, token, turn_id, 5)
        await hub.hub.sio.enter_room(sid, session_room(chat_id))
        await say(6, "response", "Delta ")  # beyond the gap: held until the stored turn
        await term.expect("Delta")
        await say(7, "response", "Echo.")
        await say(8, "workOrderComplete", turn_id, True)
        await term.expect("turn finished")
        term.send("/quit")
        assert await term.exit_status() == 0
    finally:
        term.close()
    screen = term.screen()
    parts = ["Thinking first.", "Alpha Bravo", "read_file", "1: a = 1", "Charlie Delta Echo."]
    assert [screen.count(p) for p in parts] == [1] * len(parts), screen
    assert [screen.index(p) for p in parts] == sorted(screen.index(p) for p in parts)
    assert "Traceback" not in screen


TOKENS = 1200
KILLS = 2


@pytest.mark.timeout(300)
async def test_hub_kills_mid_turn_show_every_token_once(
    procs: Processes,  # noqa: F811 (the fixture)
    ws: Path,
) -> None:
    hub = await procs.hub(drone_grace_s=60.0, sweep_interval_s=0.2, retry_delay_ms=300)
    api = procs.client(hub.url)
    token = await api.signup("ann")
    drone_id, key = await api.create_drone(token, "buzz")
    reply = numbered_reply(TOKENS, per_chunk=2, chunk_delay_s=0.05)
    async with ScriptedLLM([reply]) as llm:
        settings = drone_settings(
            ws, llm.base_url, hub_url=hub.url, drone_id=drone_id, drone_key=key, sandbox="none"
        )
        await procs.drone(settings, api, token)
        term = Terminal("--hub", hub.url, *NEW_CHAT, token=token)
        try:
            await term.expect("type a prompt", timeout=30)
            term.send("count")
            for kill in range(KILLS):
                # A token of the paragraph in progress: the preview shows it, mid-stream.
                await term.expect(f"t{(kill + 1) * TOKENS // (KILLS + 2):04d}", timeout=60)
                await hub.kill()
                await term.expect("connection lost — reconnecting", timeout=30, anywhere=True)
                await hub.start()
                await term.expect("reconnected", timeout=90)
            await term.expect("turn finished", timeout=120)
            term.send("/quit")
            assert await term.exit_status() == 0
        finally:
            term.close()
    screen = term.screen()
    answer = screen[screen.index("› count") :]  # noqa: RUF001 (the prompt sign)
    print(f"hub kills: {KILLS}, tokens: {TOKENS}, on screen: {count_tokens(answer, TOKENS)}")
    assert count_tokens(answer, TOKENS) == (0, 0), screen
    assert screen.count("turn finished") == 1 and "Traceback" not in screen
