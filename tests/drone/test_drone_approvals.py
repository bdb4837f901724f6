"""Permission modes and approvals, at the agent level: the scripted model, real tools, a person."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from gadget.drone.agent.approvals import ApprovalRequest, PermissionGate, SessionGrants
from gadget.drone.agent.loop import Agent, AgentRun
from gadget.drone.agent.model import OpenAIModel
from gadget.drone.agent.tools import ToolResult, default_toolbox
from gadget.drone.agent.workspace import Workspace
from gadget.protocol import ApprovalDecision, PermissionMode
from tests.drone.helpers import RecordedEvents, drone_settings
from tests.fakes.llm_server import Reply, ScriptedLLM, text_reply, tool_reply

pytestmark = pytest.mark.timeout(20)

WRITE = ("w1", "write_file", {"path": "new.txt", "content": "hello\n"})
RUN = ("r1", "run_command", {"command": "echo ran > ran.txt"})
READ = ("c1", "read_file", {"path": "calc.py"})


class Person:
    """The IDE side of the asker: requests queue up until the test answers them."""

    def __init__(self) -> None:
        self.asked: asyncio.Queue[ApprovalRequest] = asyncio.Queue()
        self.answers: dict[str, asyncio.Future[ApprovalDecision]] = {}
        self.forgotten: list[str] = []  # requests whose wait ended without an answer

    async def __call__(self, request: ApprovalRequest) -> ApprovalDecision:
        answer = self.answers.setdefault(request.call_id, asyncio.Future())
        await self.asked.put(request)
        try:
            return await answer
        except asyncio.CancelledError:
            self.forgotten.append(request.call_id)
            raise

    async def next(self) -> ApprovalRequest:
        return await asyncio.wait_for(self.asked.get(), 10)

    def answer(self, call_id: str, decision: ApprovalDecision) -> None:
        self.answers.setdefault(call_id, asyncio.Future()).set_result(decision)


class Turn:
    """One agent turn under a gate, running as a task."""

    def __init__(self, ws: Path, llm: ScriptedLLM, gate: PermissionGate, **over: Any) -> None:
        self.settings = drone_settings(ws, llm.base_url, **over)
        self.model = OpenAIModel(self.settings)
        self.events = RecordedEvents()
        self.agent = Agent(
            self.model, default_toolbox(), Workspace(ws), self.settings, self.events, gate=gate
        )
        self.task = asyncio.ensure_future(self.agent.run("go"))

    async def result(self) -> AgentRun:
        try:
            return await asyncio.wait_for(self.task, 15)
        finally:
            await self.model.close()

    def results(self) -> dict[str, ToolResult]:
        return {e[1]: e[4] for e in self.events.of("tool_finished")}


def gate(mode: PermissionMode, person: Person | None = None, **kw: Any) -> PermissionGate:
    return PermissionGate(mode, turn_id="turn-1", asker=person, **kw)


async def test_auto_runs_everything_unasked(ws: Path) -> None:
    person = Person()
    script = [tool_reply(WRITE), tool_reply(RUN), text_reply("done")]
    async with ScriptedLLM(script) as llm:
        turn = Turn(ws, llm, gate(PermissionMode.AUTO, person))
        await turn.result()
    assert (ws / "new.txt").exists() and (ws / "ran.txt").exists()
    assert person.asked.empty()


async def test_read_only_runs_reading_tools_and_refuses_the_rest(ws: Path) -> None:
    script = [tool_reply(READ, WRITE, RUN), text_reply("I may only read.")]
    async with ScriptedLLM(script) as llm:
        turn = Turn(ws, llm, gate(PermissionMode.READ_ONLY))
        await turn.result()
    results = turn.results()
    assert results["c1"].ok
    for call_id in ("w1", "r1"):
        assert not results[call_id].ok and results[call_id].refused
        assert "read-only mode" in results[call_id].output
        assert json.loads(results[call_id].to_json())["refused"] is True
    assert not (ws / "new.txt").exists() and not (ws / "ran.txt").exists()
    tool_messages = [m for m in llm.requests[1]["messages"] if m["role"] == "tool"]
    assert tool_messages[1]["content"].startswith("ERROR: the chat session is in read-only mode")


async def test_ask_waits_for_allow_and_shows_the_exact_call(ws: Path) -> None:
    person = Person()
    script = [tool_reply(READ, RUN), text_reply("done")]
    async with ScriptedLLM(script) as llm:
        turn = Turn(ws, llm, gate(PermissionMode.ASK, person))
        request = await person.next()  # read_file did not ask
        assert request.to_json() == {
            "turnId": "turn-1",
            "callId": "r1",
            "name": "run_command",
            "parameters": json.dumps({"command": "echo ran > ran.txt"}),
        }
        assert not (ws / "ran.txt").exists()
        person.answer("r1", ApprovalDecision.ALLOW)
        await turn.result()
    assert (ws / "ran.txt").read_text() == "ran\n" and person.asked.empty()


async def test_deny_tells_the_model_the_person_refused(ws: Path) -> None:
    person = Person()
    script = [tool_reply(WRITE), text_reply("OK, I will not.")]
    async with ScriptedLLM(script) as llm:
        turn = Turn(ws, llm, gate(PermissionMode.ASK, person))
        person.answer((await person.next()).call_id, ApprovalDecision.DENY)
        assert (await turn.result()).answer == "OK, I will not."
    assert not (ws / "new.txt").exists()
    told = llm.requests[1]["messages"][-1]["content"]
    assert told.startswith("ERROR: write_file was not run: the person denied it.")
    assert turn.results()["w1"].refused


async def test_allow_session_is_remembered_across_a_drone_restart(ws: Path) -> None:
    person = Person()
    script = [
        tool_reply(RUN),
        tool_reply(("r2", "run_command", {"command": "echo again >> ran.txt"})),
        text_reply("done"),
    ]
    async with ScriptedLLM(script) as llm:
        grants = SessionGrants(ws, "chat-1")
        turn = Turn(ws, llm, gate(PermissionMode.ASK, person, grants=grants))
        person.answer((await person.next()).call_id, ApprovalDecision.ALLOW_SESSION)
        await turn.result()
        assert (ws / "ran.txt").read_text() == "ran\nagain\n" and person.asked.empty()
        # a new drone process: the grant is read back from .gadget/
        assert json.loads((ws / ".gadget/approvals/chat-1.json").read_text()) == {
            "allowed": ["run_command"]
        }
        llm.add(tool_reply(("r3", "run_command", {"command": "true"})), tool_reply(WRITE))
        llm.add(text_reply("done"))
        later = Turn(ws, llm, gate(PermissionMode.ASK, person, grants=SessionGrants(ws, "chat-1")))
        assert (await person.next()).name == "write_file"  # run_command did not ask
        person.answer("w1", ApprovalDecision.ALLOW)
        await later.result()
    other_chat = SessionGrants(ws, "chat-2")
    assert not await other_chat.allows("run_command")


async def test_cancel_ends_the_wait_and_runs_nothing(ws: Path) -> None:
    person = Person()
    async with ScriptedLLM([tool_reply(RUN)]) as llm:
        turn = Turn(ws, llm, gate(PermissionMode.ASK, person))
        await person.next()
        turn.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await turn.result()
    assert person.forgotten == ["r1"] and not (ws / "ran.txt").exists()
    assert turn.events.of("tool_finished") == []


@pytest.mark.parametrize(
    ("new_mode", "ran"), [(PermissionMode.AUTO, True), (PermissionMode.READ_ONLY, False)]
)
async def test_a_mode_change_decides_a_waiting_call(
    ws: Path, new_mode: PermissionMode, ran: bool
) -> None:
    person = Person()
    the_gate = gate(PermissionMode.ASK, person)
    async with ScriptedLLM([tool_reply(RUN), text_reply("done")]) as llm:
        turn = Turn(ws, llm, the_gate)
        await person.next()
        the_gate.set_mode(new_mode)  # the person switched modes instead of answering
        await turn.result()
    assert person.forgotten == ["r1"] and the_gate.mode == new_mode
    assert (ws / "ran.txt").exists() == ran
    assert turn.results()["r1"].refused == (not ran)


async def test_an_unanswered_approval_can_time_out(ws: Path) -> None:
    person = Person()
    script = [tool_reply(RUN), text_reply("nobody answered")]
    async with ScriptedLLM(script) as llm:
        turn = Turn(ws, llm, gate(PermissionMode.ASK, person, timeout_s=0.2))
        await turn.result()
    assert "no one answered the approval request within 0.2s" in turn.results()["r1"].output
    assert not (ws / "ran.txt").exists()


async def test_without_an_asker_ask_mode_refuses(ws: Path) -> None:
    async with ScriptedLLM([tool_reply(RUN), text_reply("ok")]) as llm:
        turn = Turn(ws, llm, gate(PermissionMode.ASK))
        await turn.result()
    assert "no IDE can be asked" in turn.results()["r1"].output


async def test_a_subagents_calls_ask_too_with_their_agent_id(ws: Path) -> None:
    person = Person()
    script: list[Reply] = [
        tool_reply(("t1", "task", {"description": "d", "prompt": "write it"})),
        tool_reply(("s1", "write_file", {"path": "new.txt", "content": "sub\n"})),
        text_reply("child done"),
        text_reply("parent done"),
    ]
    async with ScriptedLLM(script) as llm:
        turn = Turn(ws, llm, gate(PermissionMode.ASK, person))
        request = await person.next()  # the task itself did not ask
        assert (request.call_id, request.name, request.agent_id) == ("s1", "write_file", "t1")
        assert request.to_json()["agentId"] == "t1"
        person.answer("s1", ApprovalDecision.ALLOW)
        await turn.result()
    assert (ws / "new.txt").read_text() == "sub\n"
