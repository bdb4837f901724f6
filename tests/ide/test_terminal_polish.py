"""`gadget chat` as a new user meets it (issue 12): tool results, Markdown, typing, mode refusals.

Real `gadget chat` processes in a pseudo-terminal read through a VT100 emulator,
against a real hub, and a real drone on the scripted model where the drone's own
output matters (tool results, refusals).
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from gadget.ide.terminal.choose import drone_label, drone_warnings, seen
from gadget.ide.terminal.screen import PROMPT
from gadget.ide.terminal.tty import wrap_offsets
from tests.drone.e2e import new_session, running_drone
from tests.fakes.llm_server import ScriptedLLM, text_reply, tool_reply
from tests.harness import HubHarness
from tests.ide.pty import ROOT, Terminal, next_turn, user_with_drone

NEW_CHAT = ("--drone", "buzz", "--project", "p", "--session", "new")


async def test_tool_results_are_shown_as_output_numbered_lines_and_a_diff(
    hub: HubHarness, ws: Path
) -> None:
    rows = "import sys; [print(f'row {i}') for i in range(60)]; sys.exit(3)"
    check = f'{sys.executable} -c "{rows}"'
    old, new = "    return a - b\n", "    return a + b\n"
    script = [
        tool_reply(("c1", "read_file", {"path": "calc.py"}), reasoning_text="Let me look."),
        tool_reply(("c2", "run_command", {"command": check})),
        tool_reply(("c3", "edit_file", {"path": "calc.py", "old": old, "new": new})),
        text_reply("Fixed the sign."),
    ]
    async with ScriptedLLM(script) as llm:
        session = await new_session(hub, llm, ws)
        async with running_drone(session.settings):
            args = ("--drone", "box", "--project", "calc", "--session", "new")
            term = Terminal("--hub", hub.url, *args, token=session.token)
            try:
                await term.expect("type a prompt")
                term.send("fix calc.py")
                await term.expect("turn finished", timeout=30)
                term.send("/quit")
                assert await term.exit_status() == 0
            finally:
                term.close()
    screen = term.screen()
    # The file read: numbered lines, not `{"ok": true, "output": "     1\tdef add…"}`.
    assert "⚙ read_file  calc.py" in screen
    assert "1 def add(a, b):" in screen and "2     return a - b" in screen
    # The command: its output as text, its middle left out, its end and exit code kept.
    assert "⚙ run_command" in screen and " exit 3 " in screen
    assert "row 0" in screen and "row 59" in screen and "row 30" not in screen
    assert "lines left out" in screen and "[exit code: 3]" in screen
    # The edit: a diff.
    assert "-     return a - b" in screen and "+     return a + b" in screen
    assert "edited calc.py at line 2" in screen
    assert '"ok"' not in screen and '"output"' not in screen
    assert "\\n" not in screen and "\\t" not in screen
    assert "Fixed the sign." in screen and "Traceback" not in screen


async def test_markdown_with_html_is_shown_inert_and_in_place(hub: HubHarness) -> None:
    token, _, drone = await user_with_drone(hub)
    assert drone is not None
    term = Terminal("--hub", hub.url, *NEW_CHAT, token=token)
    try:
        await term.expect("type a prompt")
        term.send("show me")
        turn_id = await next_turn(drone)
        answer = [
            "See ![logo](http://x.test/a.png) and <b>bold</b> here.",
            "Then <script>alert(1)</script> and [the docs](http://x.test/docs), <http://x.test>.",
            "Colour \x1b[31mred\x1b[0m and \x1b]0;title\x07 end.",
            '<div onclick="x()">a block</div>',
            "Last.",
        ]
        await drone.emit("response", "\n\n".join(answer))
        await drone.emit("workOrderComplete", turn_id, True)
        await term.expect("turn finished")
        term.send("/quit")
        assert await term.exit_status() == 0
    finally:
        term.close()
    lines = [line.strip() for line in term.screen().split("\n")]
    assert "See [image: logo] (http://x.test/a.png) and <b>bold</b> here." in lines
    assert (
        "Then <script>alert(1)</script> and the docs (http://x.test/docs), http://x.test." in lines
    )
    assert "Colour ␛[31mred␛[0m and ␛]0;title␇ end." in lines
    assert '<div onclick="x()">a block</div>' in lines  # an HTML block, as a code block
    screen = term.screen()
    assert screen.index("See [image") < screen.index("Then <script>") < screen.index("Last.")
    assert "![" not in screen and "](" not in screen and "🌆" not in screen
    assert "\x1b[31m" not in term.raw.getvalue()  # the model's escape never reached the pty


async def test_typing_while_a_thought_streams_never_splits_a_word(hub: HubHarness) -> None:
    token, _, drone = await user_with_drone(hub)
    assert drone is not None
    term = Terminal("--hub", hub.url, *NEW_CHAT, token=token)
    try:
        await term.expect("type a prompt")
        term.send("think aloud")
        turn_id = await next_turn(drone)
        await drone.emit("thinking", "Thin")
        await term.expect("Thin")
        term.child.send("/he")  # typed mid-word, no Enter yet
        await term.expect("/he")
        await drone.emit("thinking", "king about the whole")
        await term.expect("king about the whole", anywhere=True)  # above the input line
        term.send("lp")
        await term.expect("/cancel", anywhere=True)  # the help, committed above the thought
        await drone.emit("thinking", " problem at once.")
        await drone.emit("response", "Done thinking.")
        await drone.emit("workOrderComplete", turn_id, True)
        await term.expect("turn finished")
        term.send("/quit")
        assert await term.exit_status() == 0
    finally:
        term.close()
    lines = [line.strip() for line in term.screen().split("\n")]
    assert "Thinking about the whole problem at once." in lines
    assert f"{PROMPT}/help" in lines
    thought = "Thinking about the whole problem at once."
    assert [line for line in lines if "Thin" in line] == [thought]  # one line, whole
    assert lines.index(f"{PROMPT}/help") < lines.index(thought)  # typed while it grew


async def test_failed_reconnects_and_quit_leave_no_unclosed_session(
    hub_factory: Callable[..., AbstractAsyncContextManager[HubHarness]],
) -> None:
    async with hub_factory() as hub:
        token, _, _ = await user_with_drone(hub)
        # The whole `gadget` command: its logging shows asyncio's "Unclosed client session".
        term = Terminal("--hub", hub.url, *NEW_CHAT, token=token, full_cli=True)
        await term.expect("type a prompt")
    try:
        await term.expect("connection lost — reconnecting")
        await asyncio.sleep(3)  # several refused attempts (after 0.25-0.5 s, 0.5-1 s, 1-2 s)
        term.send("/quit")
        assert await term.exit_status() == 0
    finally:
        term.close()
    raw = term.raw.getvalue()
    assert "Unclosed" not in raw and "ERROR" not in raw and "Traceback" not in raw


async def test_mode_refusals_and_a_prompt_in_user_mode_say_the_drones_reason(
    hub: HubHarness, ws: Path
) -> None:
    async with ScriptedLLM([]) as llm:
        session = await new_session(hub, llm, ws)
        async with running_drone(session.settings):
            args = ("--drone", "box", "--project", "calc", "--session", "new")
            term = Terminal("--hub", hub.url, *args, token=session.token)
            try:
                await term.expect("type a prompt")
                term.send("/mode agent")
                await term.expect(
                    "✗ workspace mode agent refused: agent mode starts with a work order"
                )
                term.send("/mode user")
                await term.expect("workspace mode: user")
                term.send("change nothing")
                await term.expect("not sent: ")
                await term.expect("user mode")
                term.send("/quit")
                assert await term.exit_status() == 0
            finally:
                term.close()
        chats = await hub.http.get(
            "/api/chat-sessions",
            params={"project": session.project_id},
            headers=hub.bearer(session.token),
        )
        for chat in chats.json():
            turns = await hub.http.get(
                f"/api/chat-sessions/{chat['_id']}/turns", headers=hub.bearer(session.token)
            )
            assert turns.json() == []  # the refused prompt created no turn
    assert "Traceback" not in term.screen()


async def test_a_cancelled_turn_is_shown_cancelled_live_and_in_the_history(
    hub: HubHarness,
) -> None:
    token, _, drone = await user_with_drone(hub)
    assert drone is not None
    term = Terminal("--hub", hub.url, *NEW_CHAT, token=token)
    try:
        await term.expect("type a prompt")
        term.send("a long job")
        turn_id = await next_turn(drone)
        await drone.emit("response", "Starting")
        term.send("/cancel")
        await drone.log.wait_for("cancelWorkOrder", lambda a: a == (turn_id,))
        # Whatever the drone says, a turn ended after a cancel was cancelled (the hub's
        # stored turn says "cancelled": true; this message alone would not).
        await drone.emit("workOrderComplete", turn_id, False, "stopped by the user")
        await term.expect("⊘ turn cancelled: stopped by the user")
        term.send("/sessions 1")  # the same session again: its history
        await term.expect("> a long job")
        await term.expect("⊘ turn cancelled: stopped by the user")
        term.send("/quit")
        assert await term.exit_status() == 0
    finally:
        term.close()
    assert "failed" not in term.screen()


async def test_piped_input_is_read_line_by_line_and_printed_plainly(hub: HubHarness) -> None:
    """Not a terminal (a script, CI): no input line to keep apart, lines come from stdin."""
    token, _, _ = await user_with_drone(hub)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GADGET_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gadget.ide.terminal", "--hub", hub.url, *NEW_CHAT,
        cwd=str(ROOT), env={**env, "GADGET_TOKEN": token},
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(b"/help\n/quit\n"), 30)
    assert await proc.wait() == 0
    text = out.decode()
    assert "type a prompt" in text and "/cancel" in text
    assert "\x1b" not in text and PROMPT not in text  # no colours, no prompt sign: not a tty


async def test_the_drone_menu_says_when_offline_drones_were_seen_and_warns_of_no_sandbox(
    hub: HubHarness,
) -> None:
    token = await hub.signup("ann")
    gone_id, gone_key = await hub.create_drone(token, "buzz")
    await (await hub.drone(gone_id, gone_key)).close()  # it was seen, then went away
    fizz_id, fizz_key = await hub.create_drone(token, "fizz")
    await hub.connect({"registrationId": fizz_id, "key": fizz_key, "sandbox": "none"})
    async with asyncio.timeout(10):
        while True:
            drones = (await hub.http.get("/api/drones", headers=hub.bearer(token))).json()
            if {d["name"]: d["online"] for d in drones} == {"buzz": False, "fizz": True}:
                break
            await asyncio.sleep(0.05)
    term = Terminal("--hub", hub.url, "--project", "p", "--session", "new", token=token)
    try:
        await term.expect("drone number: ")
        menu = {m[2]: (m[1], m[3]) for m in re.finditer(r"(\d)\) (\w+)  \((.*)\)", term.screen())}
        assert menu["buzz"][1] == "offline, seen just now"
        assert menu["fizz"][1] == "online, idle, no sandbox"
        term.send(menu["fizz"][0])
        await term.expect("drone fizz runs the agent's commands without a sandbox")
        await term.expect("type a prompt")
        term.send("/quit")
        assert await term.exit_status() == 0
    finally:
        term.close()


def test_offline_drones_say_when_they_were_seen_and_unsafe_ones_warn() -> None:
    now = datetime(2026, 1, 2, 12, 0, tzinfo=UTC)
    assert seen((now - timedelta(minutes=7)).isoformat(), now) == "seen 7 min ago"
    assert seen((now - timedelta(hours=3)).isoformat(), now) == "seen 3 h ago"
    assert seen("not a time", now) == ""
    offline = {"name": "buzz", "online": False, "lastSeen": now.isoformat(), "lockedBy": None}
    assert "offline, seen" in drone_label(offline) and "locked" not in drone_label(offline)
    unsafe = {"name": "buzz", "online": True, "workspaceMode": "idle", "sandbox": "none"}
    assert "no sandbox" in drone_label(unsafe)
    assert any("without a sandbox" in w for w in drone_warnings(unsafe))
    assert drone_warnings({**unsafe, "sandbox": "bwrap"}) == []
    conflict = {**unsafe, "sandbox": "bwrap", "conflict": {"hostname": "box", "pid": 42}}
    assert drone_warnings(conflict) == [
        "⚠ drone buzz: another process took over its id (hostname box, pid 42)"
    ]
    mcp = [{"name": "docs", "ok": True, "tools": 3}, {"name": "db", "ok": False, "error": "boom"}]
    with_mcp = {**unsafe, "sandbox": "bwrap", "mcp": mcp}
    assert "2 MCP servers (1 failed)" in drone_label(with_mcp)
    assert drone_warnings(with_mcp) == [
        "⚠ drone buzz: MCP server db is not running: boom (its tools are not offered)"
    ]


def test_a_long_thought_wraps_at_words_and_folds_long_words() -> None:
    text = "aaa bbb ccc " + "x" * 25
    breaks = wrap_offsets(text, 10, len)
    assert [text[i:j] for i, j in zip([0, *breaks], [*breaks, len(text)], strict=True)] == [
        "aaa bbb ",
        "ccc ",
        "x" * 10,
        "x" * 10,
        "x" * 5,
    ]
    assert wrap_offsets("short one ", 10, len) == []
