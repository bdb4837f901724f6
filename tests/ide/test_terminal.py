"""`gadget chat` as a real subprocess in a pseudo-terminal, against a real hub and a scripted drone."""

from __future__ import annotations

import io
import json
import socket
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

from rich.console import Console

from gadget.ide.terminal.cursor import Cursor
from gadget.ide.terminal.lines import LineReader
from gadget.ide.terminal.render import TurnRenderer, split_paragraphs, truncate
from gadget.ide.terminal.screen import PlainScreen
from gadget.ide.terminal.stream import SessionStream
from gadget.protocol import TurnOut, mark
from tests.harness import HubHarness
from tests.ide.pty import Terminal, next_turn, user_with_drone


async def test_turn_streams_thinking_markdown_and_tool_panel_and_cancel_reaches_drone(
    hub: HubHarness,
) -> None:
    token, _, drone = await user_with_drone(hub)
    assert drone is not None
    term = Terminal(
        "--hub",
        hub.url,
        "--drone",
        "buzz",
        "--project",
        "demo",
        "--session",
        "new",
        token=token,
        full_cli=True,
    )
    try:
        await term.expect("type a prompt")
        term.send("fix the bug")
        turn_id = await next_turn(drone)
        await drone.emit("thinking", "Pondering the ")
        await drone.emit("thinking", "failing test")
        await term.expect("failing test")
        params, result = json.dumps({"path": "a.py"}), json.dumps("1: x = 1")
        await drone.emit("toolCall", "call-1", "read_file", params, result)
        await term.expect("1: x = 1")
        await drone.emit("response", "The bug is **fixed**.\n\n")
        await term.expect("fixed")
        await drone.emit("response", "Bye for now")
        term.send("/cancel")
        await drone.log.wait_for("cancelWorkOrder", lambda a: a == (turn_id,))
        await term.expect(f"cancelling turn {turn_id}")
        await drone.emit("workOrderComplete", turn_id, False, "cancelled by the user")
        await term.expect("cancelled by the user")
        term.send("/quit")
        assert await term.exit_status() == 0
    finally:
        term.close()
    screen = term.screen()
    assert "Pondering the failing test" in screen
    assert "read_file" in screen and '"path": "a.py"' in screen
    assert "The bug is fixed." in screen and "**" not in screen
    assert screen.index("failing test") < screen.index("read_file") < screen.index("Bye for now")
    assert "Traceback" not in screen


async def test_menus_mode_new_session_and_resume_with_history(hub: HubHarness) -> None:
    token, drone_id, drone = await user_with_drone(hub)
    assert drone is not None
    await hub.create_project(token, "alpha")
    term = Terminal("--hub", hub.url, token=token)
    try:
        # One drone: chosen without asking. Projects: a menu where a new name creates one.
        await term.expect("project number, or a new name: ")
        term.send("beta")
        await term.expect("created project beta")
        await term.expect("type a prompt")
        term.send("/mode agent")
        await drone.log.wait_for("requestWorkspaceMode", lambda a: a == ("agent",))
        await drone.emit("workspaceModeChanged", "agent")
        await term.expect("workspace mode: agent")
        term.send("first question")
        turn_id = await next_turn(drone)
        await drone.emit("response", "first answer")
        await drone.emit("workOrderComplete", turn_id, True)
        await term.expect("turn finished")
        term.send("/new")
        await term.expect("project beta")
        term.send("/sessions")
        await term.expect("first question")  # listed as the older session
        term.send("/sessions 2")
        await term.expect("first question")  # its history, replayed
        await term.expect("first answer")
        term.send("/quit")
        assert await term.exit_status() == 0
    finally:
        term.close()
    screen = term.screen()
    assert "* 1) (untitled)" in screen and "  2) first question" in screen
    assert "> first question" in screen
    assert "Traceback" not in screen
    drones = (await hub.http.get("/api/drones", headers=hub.bearer(token))).json()
    assert drones[0]["_id"] == drone_id and drones[0]["lockedBy"] is None


async def test_login_prompt_refuses_a_wrong_password_and_accepts_the_right_one(
    hub: HubHarness,
) -> None:
    await user_with_drone(hub)
    wrong = Terminal("--hub", hub.url, "--drone", "buzz", "--project", "p")
    try:
        await wrong.expect("username: ")
        wrong.send("ann")
        await wrong.expect("password: ")
        wrong.send("not-her-password")
        await wrong.expect("wrong username or password")
        assert await wrong.exit_status() == 1
    finally:
        wrong.close()
    assert "Traceback" not in wrong.screen() and "not-her-password" not in wrong.screen()

    right = Terminal("--hub", hub.url, "--drone", "buzz", "--project", "p", "--username", "ann")
    try:
        await right.expect("password: ")
        right.send("pw-secret")
        await right.expect("type a prompt")
        right.child.sendeof()
        assert await right.exit_status() == 0
    finally:
        right.close()


async def test_a_refused_lock_is_one_clear_line(hub: HubHarness) -> None:
    token, _, _ = await user_with_drone(hub, online=False)
    term = Terminal("--hub", hub.url, "--drone", "buzz", "--project", "p", token=token)
    try:
        await term.expect("drone buzz is offline")
        assert await term.exit_status() == 1
    finally:
        term.close()
    assert "Traceback" not in term.screen()


async def test_an_unreachable_hub_is_one_clear_line() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    term = Terminal("--hub", f"http://127.0.0.1:{port}", token="whatever")
    try:
        await term.expect("cannot reach the hub")
        assert await term.exit_status() == 1
    finally:
        term.close()
    assert "Traceback" not in term.screen()


def test_paragraphs_are_cut_outside_code_fences() -> None:
    assert split_paragraphs("one\n\ntwo") == ("one", "two")
    assert split_paragraphs("one\n\n```\na\n\nb") == ("one", "```\na\n\nb")
    assert split_paragraphs("no break yet") == ("", "no break yet")


def test_long_tool_results_are_truncated_with_a_count() -> None:
    text = "\n".join(f"line {n}" for n in range(100))
    shown = truncate(text, lines=3)
    assert shown.startswith("line 0\nline 1\nline 2\n…") and "(97 more lines)" in shown
    assert truncate("short") == "short"


async def test_joining_mid_turn_shows_the_turn_so_far_and_ctrl_c_cancels_it(
    hub: HubHarness,
) -> None:
    token, drone_id, drone = await user_with_drone(hub)
    assert drone is not None
    project_id = await hub.create_project(token, "proj")
    ide = await hub.ide(token)
    ok, chat_id = await ide.call("requestSessionLock", {"_id": drone_id}, {"_id": project_id}, None)
    assert ok is True, chat_id
    ok, turn_id = await ide.call("submitPrompt", "the earlier prompt")
    assert ok is True, turn_id
    await next_turn(drone)
    await drone.emit("thinking", "halfway through")
    await ide.log.wait_for("thinking")
    term = Terminal(
        "--hub", hub.url, "--drone", "buzz", "--project", "proj", "--session", chat_id, token=token
    )
    try:
        await term.expect("halfway through")
        await drone.emit("thinking", " and onwards")
        await term.expect("and onwards")
        term.child.sendintr()
        await drone.log.wait_for("cancelWorkOrder", lambda a: a == (turn_id,))
        await drone.emit("workOrderComplete", turn_id, False, "cancelled")
        await term.expect("⊘ turn cancelled")
        term.send("/quit")
        assert await term.exit_status() == 0
    finally:
        term.close()
    screen = term.screen()
    assert screen.count("the earlier prompt") == 1
    assert screen.index("the earlier prompt") < screen.index("halfway through")
    assert screen.index("halfway through") < screen.index("and onwards")


async def test_end_of_input_lets_the_running_turn_finish(hub: HubHarness) -> None:
    token, _, drone = await user_with_drone(hub)
    assert drone is not None
    term = Terminal("--hub", hub.url, "--drone", "buzz", "--project", "p", token=token)
    try:
        await term.expect("type a prompt")
        term.send("a long job")
        turn_id = await next_turn(drone)
        term.child.sendeof()
        await term.expect("waiting for the turn to finish")
        await drone.emit("response", "all done")
        await drone.emit("workOrderComplete", turn_id, True)
        await term.expect("turn finished")
        assert await term.exit_status() == 0
    finally:
        term.close()
    assert "all done" in term.screen()


def _port(hub: HubHarness) -> int:
    return int(hub.url.rsplit(":", 1)[1])


async def test_a_hub_restart_mid_turn_reconnects_and_shows_the_turn_exactly_once(
    hub_factory: Callable[..., AbstractAsyncContextManager[HubHarness]],
) -> None:
    async with hub_factory() as hub:
        token = await hub.signup("ann")
        drone_id, key = await hub.create_drone(token, "buzz")
        drone = await hub.drone(drone_id, key)
        term = Terminal("--hub", hub.url, "--drone", "buzz", "--project", "p", token=token)
        port = _port(hub)
        await term.expect("type a prompt")
        term.send("a long job")
        turn_id = await next_turn(drone)
        await drone.emit("thinking", "Pondering before the restart")
        await drone.emit("response", "Alpha paragraph.\n\nBravo is ")
        await term.expect("Alpha paragraph")
    try:
        await term.expect("connection lost — reconnecting")
        async with hub_factory(port=port, drone_grace_s=10) as hub:
            # The socket is back but the drone is not: the lock is retried, not given up.
            await term.expect("is offline")
            await term.expect("retrying the lock")
            drone = await hub.drone(drone_id, key)
            await drone.emit("response", "still growing")  # usually before the re-lock
            await term.expect("reconnected")
            await term.expect("still growing")
            await drone.emit("response", " and done.")
            await drone.emit("workOrderComplete", turn_id, True)
            await term.expect("turn finished")
            term.send("/quit")
            assert await term.exit_status() == 0
    finally:
        term.close()
    screen = term.screen()
    parts = ["Pondering before the restart", "Alpha paragraph", "Bravo is", "still growing"]
    parts += ["and done.", "turn finished"]
    assert [screen.count(p) for p in parts] == [1] * len(parts), screen
    assert [screen.index(p) for p in parts] == sorted(screen.index(p) for p in parts)
    assert screen.index("connection lost") < screen.index("reconnected")
    assert screen.index("reconnected") < screen.index("still growing")
    assert "Traceback" not in screen


async def test_a_turn_that_ends_while_disconnected_shows_its_rest_after_reconnecting(
    hub: HubHarness,
) -> None:
    token, _, drone = await user_with_drone(hub)
    assert drone is not None
    term = Terminal("--hub", hub.url, "--drone", "buzz", "--project", "p", token=token)
    try:
        await term.expect("type a prompt")
        term.send("a short job")
        turn_id = await next_turn(drone)
        await drone.emit("thinking", "First thoughts")
        await term.expect("First thoughts")
        for sid in hub.hub.ides.sids():  # drop the terminal's socket
            await hub.hub.sio.disconnect(sid)
        # While it is away: the thinking block grows, a tool runs, the answer comes, the end.
        await drone.emit("thinking", " and second thoughts")
        params, result = json.dumps({"path": "b.py"}), json.dumps("2: y = 2")
        await drone.emit("toolCall", "call-7", "read_file", params, result)
        await drone.emit("response", "The answer is 42.")
        await drone.emit("workOrderComplete", turn_id, True)
        await term.expect("connection lost", anywhere=True)  # above "First thoughts", still growing
        await term.expect("reconnected")
        await term.expect("turn finished")
        term.send("/quit")
        assert await term.exit_status() == 0
    finally:
        term.close()
    screen = term.screen()
    parts = ["First thoughts", "and second thoughts", "2: y = 2", "The answer is 42."]
    parts += ["turn finished"]
    assert [screen.count(p) for p in parts] == [1] * len(parts), screen
    assert [screen.index(p) for p in parts] == sorted(screen.index(p) for p in parts)
    assert screen.index("connection lost") < screen.index("and second thoughts")
    assert "Traceback" not in screen


async def test_quit_works_while_reconnecting_and_a_refused_token_ends_the_chat(
    hub_factory: Callable[..., AbstractAsyncContextManager[HubHarness]],
) -> None:
    async with hub_factory() as hub:
        token, _, _ = await user_with_drone(hub)
        args = ("--hub", hub.url, "--drone", "buzz", "--project", "p", "--session", "new")
        quitter, expired = Terminal(*args, token=token), Terminal(*args, token=token)
        port = _port(hub)
        await quitter.expect("type a prompt")
        await expired.expect("type a prompt")
    try:
        await quitter.expect("connection lost — reconnecting")
        quitter.send("/quit")  # the hub is down: nothing to wait for
        assert await quitter.exit_status() == 0
        # A hub with another secret key refuses the old token: a clear line, exit 1.
        async with hub_factory(port=port, secret_key="another-secret-key-0123456789abcdef01"):
            await expired.expect("log in again")
            assert await expired.exit_status() == 1
    finally:
        quitter.close()
        expired.close()
    assert "expired or was revoked" in expired.screen()
    assert "Traceback" not in quitter.screen() + expired.screen()


def _turn(
    *blocks: tuple[str, object], seq: int, retries: int = 0, status: str = "processing"
) -> TurnOut:
    now = "2026-01-01T00:00:00Z"
    return TurnOut.model_validate(
        {
            "_id": "t1",
            "chatSession": "c",
            "user": "u",
            "prompt": "p",
            "status": status,
            "createdAt": now,
            "retries": retries,
            "seq": seq,
            "blocks": [
                {"mode": m, "content": c, "createdAt": now, "attempt": 1} for m, c in blocks
            ],
        }
    )


def _plain_stream() -> tuple[SessionStream, io.StringIO]:
    out = io.StringIO()
    console = Console(file=out, width=100, color_system=None)
    return SessionStream(TurnRenderer(PlainScreen(console, LineReader(0)))), out


def test_the_cursor_applies_in_order_ignores_resends_and_holds_beyond_a_gap() -> None:
    cursor: Cursor[str] = Cursor()
    assert cursor.offer(1, "a") == []  # the turn's place is not known yet: held
    assert cursor.reset(0) == (True, ["a"])
    assert cursor.offer(1, "a again") == []
    assert cursor.offer(3, "c") == [] and cursor.offer(4, "d") == []
    assert cursor.offer(2, "b") == ["b", "c", "d"] and cursor.seq == 4
    assert cursor.offer(6, "f") == []
    assert cursor.reset(3) == (False, [])  # an older snapshot changes nothing
    assert cursor.reset(5) == (True, ["f"]) and cursor.seq == 6 and not cursor.held


def test_a_snapshot_prints_only_what_is_beyond_the_cursor() -> None:
    stream, out = _plain_stream()
    stream.started(_turn(seq=0))
    call = {"callId": "c1", "name": "read_file", "parameters": "{}", "response": '"x"'}
    stream.dispatch("thinking", ("one ", mark("t1", 1)))
    stream.dispatch("toolCall", ("c1", "read_file", "{}", '"x"', mark("t1", 2)))
    stream.dispatch("thinking", ("two", mark("t1", 3)))
    stream.dispatch("thinking", ("two", mark("t1", 3)))  # a resend
    stream.dispatch("thinking", (" four", mark("t1", 5)))  # beyond a gap: held
    assert out.getvalue().count("two") == 1 and "four" not in out.getvalue()
    blocks = (("thinking", "one "), ("tool", call), ("thinking", "two three"))
    stream.turn(_turn(*blocks, seq=4))
    assert out.getvalue().endswith("\ntwo three four")
    # A retry's snapshot (same seq, a new attempt) prints nothing; the next text is a new block.
    grown = (*blocks[:2], ("thinking", "two three four"))
    stream.turn(_turn(*grown, seq=5, retries=1))
    stream.dispatch("thinking", ("again", mark("t1", 6)))
    assert out.getvalue().count("read_file") == 1 and out.getvalue().count("three") == 1
    assert out.getvalue().endswith("two three four\nagain")
    progress = stream.turns.get("t1").shown
    assert progress.blocks == 4 and progress.chars == len("again")
    stream.dispatch("workOrderComplete", ("t1", True, mark("t1", 7)))
    stream.turn(_turn(*grown, ("thinking", "again"), seq=7, status="finished"))  # REST, later
    assert out.getvalue().count("turn finished") == 1 and stream.turn_id is None
