"""Stale-edit refusal: write_file and edit_file only change files as the agent last read them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gadget.drone.agent.approvals import ApprovalRequest, PermissionGate
from gadget.drone.agent.loop import Agent
from gadget.drone.agent.model import OpenAIModel, ToolCallRequest
from gadget.drone.agent.reads import FileReads
from gadget.drone.agent.tools import ToolContext, ToolResult, default_toolbox
from gadget.drone.agent.workspace import Workspace
from gadget.protocol import ApprovalDecision, PermissionMode
from tests.drone.helpers import RecordedEvents, drone_settings
from tests.fakes.llm_server import ScriptedLLM, text_reply, tool_reply

pytestmark = pytest.mark.timeout(20)


async def call(ws: Path, reads: FileReads, name: str, **args: object) -> ToolResult:
    ctx = ToolContext(Workspace(ws), drone_settings(ws), RecordedEvents(), "c", reads=reads)
    return await default_toolbox().execute(ToolCallRequest("c", name, json.dumps(args)), ctx)


async def test_a_file_changed_since_it_was_read_is_not_overwritten(ws: Path) -> None:
    reads = FileReads()
    assert (await call(ws, reads, "read_file", path="calc.py")).ok
    (ws / "calc.py").write_text("def add(a, b):\n    return a - b  # the person's note\n")
    for name, args in [
        ("edit_file", {"old": "a - b", "new": "a + b"}),
        ("write_file", {"content": "def add(a, b):\n    return a + b\n"}),
    ]:
        result = await call(ws, reads, name, path="calc.py", **args)
        assert not result.ok
        assert result.output.startswith("calc.py changed on disk since you last read it")
        assert "read_file it again" in result.output
    assert "the person's note" in (ws / "calc.py").read_text()
    # reading again makes the change possible, on the current content
    assert (await call(ws, reads, "read_file", path="calc.py")).ok
    assert (await call(ws, reads, "edit_file", path="calc.py", old="a - b", new="a + b")).ok
    assert (ws / "calc.py").read_text().endswith("return a + b  # the person's note\n")


async def test_own_writes_count_as_seen_but_a_command_s_change_does_not(ws: Path) -> None:
    reads = FileReads()
    assert (await call(ws, reads, "write_file", path="notes.md", content="one\n")).ok
    assert (await call(ws, reads, "edit_file", path="notes.md", old="one", new="two")).ok
    assert (await call(ws, reads, "run_command", command="echo three >> notes.md")).ok
    stale = await call(ws, reads, "edit_file", path="notes.md", old="two", new="2")
    assert not stale.ok and "changed on disk" in stale.output


async def test_an_unread_existing_file_is_refused_a_new_one_is_created(ws: Path) -> None:
    reads = FileReads()
    for name, args in [
        ("write_file", {"content": "x\n"}),
        ("edit_file", {"old": "a - b", "new": "a + b"}),
    ]:
        result = await call(ws, reads, name, path="calc.py", **args)
        assert not result.ok
        assert result.output.startswith("calc.py exists and you have not read it in this turn")
    assert (ws / "calc.py").read_text() == "def add(a, b):\n    return a - b\n"
    assert (await call(ws, reads, "write_file", path="new.py", content="x = 1\n")).ok


async def test_a_deleted_file_must_be_looked_at_again_before_it_is_recreated(ws: Path) -> None:
    reads = FileReads()
    assert (await call(ws, reads, "read_file", path="calc.py")).ok
    (ws / "calc.py").unlink()
    gone = await call(ws, reads, "write_file", path="calc.py", content="x\n")
    assert not gone.ok and gone.output.startswith("calc.py was deleted since you last read it")
    assert not (await call(ws, reads, "read_file", path="calc.py")).ok  # "does not exist"
    assert (await call(ws, reads, "write_file", path="calc.py", content="x\n")).ok


async def test_the_model_is_told_to_read_again_within_a_turn(ws: Path) -> None:
    """A real turn: the person edits the file while the agent waits for an approval."""
    script = [
        tool_reply(("c1", "read_file", {"path": "calc.py"})),
        tool_reply(("c2", "run_command", {"command": "true"})),
        tool_reply(("c3", "edit_file", {"path": "calc.py", "old": "a - b", "new": "a + b"})),
        tool_reply(("c4", "read_file", {"path": "calc.py"})),
        tool_reply(("c5", "edit_file", {"path": "calc.py", "old": "a - b", "new": "a + b"})),
        text_reply("Fixed."),
    ]

    async def person(request: ApprovalRequest) -> ApprovalDecision:
        if request.name == "run_command":  # edits the file while the card is shown
            (ws / "calc.py").write_text(
                "# edited by the person\ndef add(a, b):\n    return a - b\n"
            )
        return ApprovalDecision.ALLOW

    async with ScriptedLLM(script) as llm:
        settings = drone_settings(ws, llm.base_url)
        model = OpenAIModel(settings)
        events = RecordedEvents()
        gate = PermissionGate(PermissionMode.ASK, turn_id="t", asker=person)
        agent = Agent(model, default_toolbox(), Workspace(ws), settings, events, gate=gate)
        try:
            assert (await agent.run("fix add")).answer == "Fixed."
        finally:
            await model.close()
    results = {e[1]: e[4] for e in events.of("tool_finished")}
    assert not results["c3"].ok and "changed on disk" in results["c3"].output
    assert results["c5"].ok
    assert llm.requests[3]["messages"][-1]["content"].startswith("ERROR: calc.py changed on disk")
    assert (ws / "calc.py").read_text() == (
        "# edited by the person\ndef add(a, b):\n    return a + b\n"
    )
