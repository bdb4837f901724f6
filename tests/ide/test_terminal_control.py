"""`gadget chat` with the agent under the person's control (issue 10).

Real `gadget chat` processes in a pseudo-terminal (read through a VT100 emulator)
against a real hub and a real drone on the scripted model: the approval prompt
(the exact command or diff, allow / deny / allow for the session, the first answer
wins, a card answered in another IDE goes away), `/permissions`, `/diff`, `/undo`
(a conflict listed, again re-applies), `/model`, usage per turn and `/usage`; and a
scripted drone socket for a card answered elsewhere while the terminal was away.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from rich.panel import Panel
from rich.text import Text

from gadget.ide.terminal.approval import HINT, Approvals, parse_answer
from gadget.ide.terminal.usage import Tally
from gadget.protocol import ApprovalDecision, ToolApproval
from tests.drone.e2e import Session, new_session, running_drone
from tests.fakes.llm_server import ScriptedLLM, text_reply, tool_reply, usage
from tests.harness import Client, HubHarness
from tests.ide.pty import Terminal, next_turn, user_with_drone

pytestmark = pytest.mark.timeout(120)

CHAT = ("--drone", "box", "--project", "calc", "--session", "new")
FIX = ("    return a - b\n", "    return a + b\n")


def _ack(value: Any) -> tuple[Any, ...]:
    return value if isinstance(value, tuple) else (value,)


async def _second_ide(s: Session, chat_id: str) -> Client:
    """Another IDE of the same user showing the terminal's session (as a web tab would)."""
    ide = await s.hub.ide(s.token)
    ok, value = await ide.call(
        "requestSessionLock", {"_id": s.drone_id}, {"_id": s.project_id}, {"_id": chat_id}
    )
    assert ok is True, value
    return ide


async def _chat_id(s: Session) -> str:
    chats = await s.hub.http.get(
        "/api/chat-sessions", params={"project": s.project_id}, headers=s.hub.bearer(s.token)
    )
    return str(chats.json()[0]["_id"])


async def test_the_approval_prompt_allows_denies_and_allows_for_the_session(
    hub: HubHarness, ws: Path
) -> None:
    run = ("r1", "run_command", {"command": "echo ran >> ran.txt"})
    edit = ("e1", "edit_file", {"path": "calc.py", "old": FIX[0], "new": FIX[1]})
    again = ("r2", "run_command", {"command": "echo again >> ran.txt"})
    more = ("r3", "run_command", {"command": "echo more >> ran.txt"})
    script = [tool_reply(run), tool_reply(edit), tool_reply(again), tool_reply(more)]
    async with ScriptedLLM([*script, text_reply("All done.")]) as llm:
        s = await new_session(hub, llm, ws)
        async with running_drone(s.settings):
            term = Terminal("--hub", hub.url, *CHAT, token=s.token)
            try:
                await term.expect("type a prompt")
                term.send("/permissions ask")
                await term.expect("· permissions: ask (commands, writes, edits")
                term.send("fix calc.py and log it")
                await term.expect("$ echo ran >> ran.txt")  # the exact command, on its card
                await term.expect("allow? a(llow) / d(eny) / s(ession)")
                other = await _second_ide(s, await _chat_id(s))
                (pending,) = [a[0] for a in other.log.of("turnSnapshot")]
                assert pending["pendingApproval"]["name"] == "run_command"
                term.send("a")
                await term.expect("✓ allowed by ann")
                await term.expect("⚙ run_command")
                # The second IDE's answer comes too late: the first one won.
                turn_id, call_id = pending["_id"], pending["pendingApproval"]["callId"]
                late = await other.call("answerApproval", turn_id, call_id, "deny")
                assert _ack(late) == (False, "already answered")
                # The edit's card shows its diff; the other IDE denies it first.
                await term.expect("+     return a + b")
                asked = await other.log.wait_for(
                    "toolApproval", lambda a: a[0]["name"] == "edit_file"
                )
                denied = await other.call("answerApproval", turn_id, asked[0]["callId"], "deny")
                assert _ack(denied) == (True,)
                await term.expect("✗ denied by ann")
                await term.expect("refused")  # the edit's panel: refused, not run
                await term.expect("$ echo again >> ran.txt")
                term.send("s")
                await term.expect("✓ allowed for the session by ann")
                await term.expect("All done.")  # the last command ran unasked
                await term.expect("turn finished")
                term.send("/quit")
                assert await term.exit_status() == 0
            finally:
                term.close()
    screen = term.screen()
    assert (ws / "ran.txt").read_text() == "ran\nagain\nmore\n"
    assert "a - b" in (ws / "calc.py").read_text()  # the denied edit did not run
    # A card and then the panel for each asked command; the panel alone for the last one.
    assert screen.count("$ echo ran >> ran.txt") == 2 and screen.count("$ echo again") == 2
    assert screen.count("$ echo more >> ran.txt") == 1
    assert "Traceback" not in screen


async def test_diff_and_undo_show_and_revert_the_last_turn_with_a_conflict_then_reapply(
    hub: HubHarness, ws: Path
) -> None:
    write = ("w1", "write_file", {"path": "notes.md", "content": "# Notes\n\nfixed add\n"})
    read = ("c1", "read_file", {"path": "calc.py"})
    edit = ("e1", "edit_file", {"path": "calc.py", "old": FIX[0], "new": FIX[1]})
    run = ("r1", "run_command", {"command": "printf 'x = 1\\n' > made_by_command.py"})
    script = [tool_reply(t) for t in (write, read, edit, run)] + [text_reply("Fixed.")]
    async with ScriptedLLM(script) as llm:
        s = await new_session(hub, llm, ws)
        async with running_drone(s.settings):
            term = Terminal("--hub", hub.url, *CHAT, token=s.token)
            try:
                await term.expect("type a prompt")
                term.send("/permissions auto")
                await term.expect("· permissions: auto (every tool runs unasked)")
                term.send("fix it")
                await term.expect("turn finished")
                await term.expect("changed 3 files")
                term.send("/diff")
                await term.expect("changes of the turn > fix it (3 files)")
                await term.expect("-    return a - b")
                await term.expect("+    return a + b")
                term.send("/diff 1")
                await term.expect("1) ")
                # Changed by the person since: an undo leaves it, lists it, restores the rest.
                (ws / "calc.py").write_text("def add(a, b):\n    return b + a  # mine\n")
                term.send("/undo")
                await term.expect("↶ undid the turn > fix it: 2 files restored")
                await term.expect("⚠ calc.py left as it is")
                assert not (ws / "notes.md").exists() and not (ws / "made_by_command.py").exists()
                term.send("/diff")
                await term.expect("this turn is undone: /undo re-applies it")
                term.send("/undo")
                await term.expect("↷ re-applied the turn > fix it: 2 files restored")
                term.send("/quit")
                assert await term.exit_status() == 0
            finally:
                term.close()
    assert (ws / "notes.md").read_text() == "# Notes\n\nfixed add\n"
    assert (ws / "made_by_command.py").exists()
    assert "# mine" in (ws / "calc.py").read_text()
    assert "Traceback" not in term.screen()


async def test_model_choice_and_usage_per_turn_and_per_session(hub: HubHarness, ws: Path) -> None:
    script = [
        text_reply("One.", usage=usage(120, 7)),
        text_reply("Two.", usage=usage(300, 11)),
    ]
    async with ScriptedLLM(script, models=("scripted", "bigger-model")) as llm:
        s = await new_session(hub, llm, ws)
        async with running_drone(s.settings):
            term = Terminal("--hub", hub.url, *CHAT, token=s.token)
            try:
                await term.expect("model scripted (the drone's default)")
                term.send("first")
                await term.expect("turn finished")
                await term.expect("· 120 tokens in · 7 out · 1 model call · ")
                await term.expect("(scripted)")
                term.send("/model")
                await term.expect("2) bigger-model")
                term.send("/model 2")
                await term.expect("· model: bigger-model, from the next turn")
                term.send("/model nonesuch")
                await term.expect("✗ model nonesuch refused")
                term.send("second")
                await term.expect("Two.")
                await term.expect("· 300 tokens in · 11 out · 1 model call · ")
                await term.expect("(bigger-model)")
                term.send("/usage")
                await term.expect("usage of this session: 420 tokens in · 18 out · 2 model calls")
                await term.expect("(over 2 turns)")
                term.send("/quit")
                assert await term.exit_status() == 0
            finally:
                term.close()
        assert [r["model"] for r in llm.requests] == ["scripted", "bigger-model"]
    assert "Traceback" not in term.screen()


async def test_a_card_answered_elsewhere_while_away_goes_away_and_a_resumed_one_comes_back(
    hub: HubHarness,
) -> None:
    token, drone_id, drone = await user_with_drone(hub)
    assert drone is not None
    args = ("--drone", "buzz", "--project", "p", "--session", "new")
    term = Terminal("--hub", hub.url, *args, token=token)
    try:
        await term.expect("type a prompt")
        term.send("delete the logs")
        turn_id = await next_turn(drone)
        chat_id = str(drone.log.of("processWorkOrder")[0][2]["_id"])
        project_id = str(drone.log.of("processWorkOrder")[0][1]["_id"])
        ask = {
            "turnId": turn_id,
            "callId": "k1",
            "name": "run_command",
            "parameters": json.dumps({"command": "rm -rf logs/"}),
        }
        await drone.emit("toolApproval", ask, {"turnId": turn_id, "seq": 1})
        await term.expect("$ rm -rf logs/")
        for sid in hub.hub.ides.sids():  # the terminal is cut off…
            await hub.hub.sio.disconnect(sid)
        other = await hub.ide(token)  # …and the call is answered in another IDE meanwhile
        ok, _ = await other.call(
            "requestSessionLock", {"_id": drone_id}, {"_id": project_id}, {"_id": chat_id}
        )
        assert ok is True
        assert _ack(await other.call("answerApproval", turn_id, "k1", "deny")) == (True,)
        await term.expect("reconnected", timeout=30)
        await term.expect("answered elsewhere")
        term.send("a")  # no card waits: a prompt, refused while the turn runs
        await term.expect("a turn is running")
        # The drone asks about another call; the terminal answers it.
        ask2 = {**ask, "callId": "k2", "parameters": json.dumps({"command": "ls logs/"})}
        await drone.emit("toolApproval", ask2, {"turnId": turn_id, "seq": 2})
        await term.expect("$ ls logs/")
        term.send("maybe")
        await term.expect("expected allow? a(llow)")
        term.send("allow")
        await drone.log.wait_for("approvalDecision", lambda a: a[0]["callId"] == "k2")
        await term.expect("✓ allowed by ann")
        await drone.emit("workOrderComplete", turn_id, True, {"turnId": turn_id, "seq": 3})
        await term.expect("turn finished")
        term.send("/quit")
        assert await term.exit_status() == 0
    finally:
        term.close()
    decisions = [a[0] for a in drone.log.of("approvalDecision")]
    assert [(d["callId"], d["decision"]) for d in decisions] == [("k1", "deny"), ("k2", "allow")]
    assert "Traceback" not in term.screen()


class _Cards:
    """Records what `Approvals` shows (it draws on a `render.TurnRenderer` in the client)."""

    def __init__(self) -> None:
        self.shown: list[str] = []
        self.hints: list[str | None] = []

    def card(self, panel: Panel) -> None:
        console = Console(width=100, color_system=None, record=True)
        console.print(panel)
        self.shown.append(console.export_text())

    def line(self, text: Text) -> None:
        self.shown.append(text.plain)

    def hint(self, text: str | None) -> None:
        self.hints.append(text)


def test_one_card_per_call_until_its_answer_and_a_restarted_drone_asking_again() -> None:
    cards = _Cards()
    approvals = Approvals(cards)
    params = json.dumps({"command": "make clean"})
    ask = {"turnId": "t", "callId": "c1", "name": "run_command", "parameters": params}
    approvals.asked(ToolApproval.model_validate(ask))
    approvals.asked(ToolApproval.model_validate(ask))  # the same request again: one card
    assert len(cards.shown) == 1 and "$ make clean" in cards.shown[0]
    assert approvals.pending is not None and cards.hints == [HINT]
    approvals.asked(ToolApproval.model_validate({**ask, "callId": "c2"}))  # after a restart
    assert cards.shown[-1] == "· the drone asks again about the same call (it restarted)"
    approvals.decided({"turnId": "t", "callId": "c2", "decision": "deny", "by": "bob"})
    assert cards.shown[-1] == "✗ denied by bob" and approvals.pending is None
    assert cards.hints[-1] is None
    assert parse_answer(" S ") is ApprovalDecision.ALLOW_SESSION and parse_answer("ok") is None


def test_usage_lines_leave_out_what_is_not_known() -> None:
    tally = Tally.of({"promptTokens": 1200, "completionTokens": 34, "modelCalls": 2})
    tally.merge(Tally.of({"modelCalls": 1, "durationMs": 2500, "cost": 0.0125}))
    assert tally.parts() == [
        "1,200 tokens in",
        "34 out",
        "3 model calls",
        "2.5 s",
        "$0.0125",
    ]
    assert Tally.of({"modelCalls": 1, "promptTokens": True}).parts() == ["1 model call"]
    assert Tally.of(None).parts() == []
