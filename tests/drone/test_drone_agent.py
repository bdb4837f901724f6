"""The agent loop with real tools and the scripted model: turns, subagents, limits, memory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gadget.drone.agent.loop import Agent
from gadget.drone.agent.model import OpenAIModel
from gadget.drone.agent.tools import default_toolbox
from gadget.drone.agent.workspace import Workspace
from gadget.drone.exceptions import LimitsExceeded
from gadget.drone.history import ChatHistory, fit_context
from tests.drone.helpers import RecordedEvents, drone_settings
from tests.fakes.llm_server import ScriptedLLM, text_reply, tool_reply

pytestmark = pytest.mark.timeout(20)


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    root.mkdir()
    (root / "calc.py").write_text("def add(a, b):\n    return a - b\n")
    (root / "README.md").write_text("# Calc\nA tiny calculator.\n")
    return root


async def run_agent(
    ws: Path, llm: ScriptedLLM, prompt: str, **over: object
) -> tuple[Agent, RecordedEvents, str]:
    settings = drone_settings(ws, llm.base_url, **over)
    model = OpenAIModel(settings)
    events = RecordedEvents()
    agent = Agent(model, default_toolbox(), Workspace(ws), settings, events)
    try:
        run = await agent.run(prompt)
    finally:
        await model.close()
    return agent, events, run.answer


async def test_a_turn_reads_edits_runs_and_answers(ws: Path) -> None:
    script = [
        tool_reply(("c1", "read_file", {"path": "calc.py"}), reasoning_text="Look first."),
        tool_reply(("c2", "edit_file", {"path": "calc.py", "old": "a - b", "new": "a + b"})),
        tool_reply(
            ("c3", "run_command", {"command": "python3 -c 'import calc; print(calc.add(2, 3))'"})
        ),
        text_reply("Fixed: add now adds (prints 5).", reasoning_text="Done."),
    ]
    async with ScriptedLLM(script) as llm:
        agent, events, answer = await run_agent(ws, llm, "fix add")
    assert answer == "Fixed: add now adds (prints 5)."
    assert (ws / "calc.py").read_text() == "def add(a, b):\n    return a + b\n"
    finished = events.of("tool_finished")
    assert [(e[1], e[2], json.loads(e[3])) for e in finished] == [
        ("c1", "read_file", {"path": "calc.py"}),
        ("c2", "edit_file", {"path": "calc.py", "old": "a - b", "new": "a + b"}),
        ("c3", "run_command", {"command": "python3 -c 'import calc; print(calc.add(2, 3))'"}),
    ]
    assert finished[0][4].output == "     1\tdef add(a, b):\n     2\t    return a - b"
    assert finished[2][4].output.endswith("\n5\n[exit code: 0]")
    assert events.text("thinking") == "Look first.Done."
    assert ("status", "running: python3 -c 'import calc; print(calc.add(2, 3))'") in events.log
    # the model saw the tool results and the system prompt's overview
    last = llm.requests[-1]["messages"]
    assert last[0]["role"] == "system" and "Head of README.md:\n# Calc" in last[0]["content"]
    assert [m["role"] for m in last[1:]] == ["user", "assistant", "tool"] * 1 + [
        "assistant",
        "tool",
    ] * 2
    assert {t["function"]["name"] for t in llm.requests[0]["tools"]} == {
        "read_file", "write_file", "edit_file", "list_dir", "search", "run_command", "task",
    }  # fmt: skip


async def test_tool_errors_go_back_to_the_model(ws: Path) -> None:
    script = [
        tool_reply(("c1", "read_file", {"path": "../../etc/passwd"})),
        text_reply("I may not read that."),
    ]
    async with ScriptedLLM(script) as llm:
        _, events, answer = await run_agent(ws, llm, "read /etc/passwd")
    assert answer == "I may not read that."
    tool_message = llm.requests[1]["messages"][-1]
    assert tool_message["role"] == "tool" and tool_message["content"].startswith("ERROR: ")
    assert "outside the workspace" in tool_message["content"]
    assert not events.of("tool_finished")[0][4].ok


async def test_subagent_streams_under_the_call_id_and_answers_the_task(ws: Path) -> None:
    script = [
        tool_reply(("t1", "task", {"description": "inspect calc", "prompt": "What does add do?"})),
        tool_reply(("s1", "read_file", {"path": "calc.py"}), reasoning_text="Child looks."),
        text_reply("add subtracts.", reasoning_text="Seen."),
        text_reply("The subagent says add subtracts."),
    ]
    async with ScriptedLLM(script) as llm:
        _, events, answer = await run_agent(ws, llm, "investigate")
    assert answer == "The subagent says add subtracts."
    child = [e for e in events.log if e[0] == "t1"]
    kinds = [e[1] for e in child if e[1] not in ("status", "usage")]
    assert [k for i, k in enumerate(kinds) if i == 0 or kinds[i - 1] != k] == [
        "thinking", "tool_started", "tool_finished", "thinking", "response",
    ]  # fmt: skip
    assert "".join(e[2] for e in child if e[1] == "response") == "add subtracts."
    task = events.of("tool_finished")[0]
    assert task[1:3] == ("t1", "task")
    result = task[4]
    assert result.output == "add subtracts." and result.subagent["toolCalls"] == ["read_file"]
    assert result.subagent["description"] == "inspect calc" and result.stats["steps"] == 2
    # the child had a fresh context and no task tool
    child_request = llm.requests[1]
    assert [m["role"] for m in child_request["messages"]] == ["system", "user"]
    assert "task" not in {t["function"]["name"] for t in child_request["tools"]}
    assert "You are a subagent" in child_request["messages"][0]["content"]


async def test_step_limit_ends_the_run(ws: Path) -> None:
    script = [tool_reply((f"c{i}", "list_dir", {})) for i in range(3)]
    async with ScriptedLLM(script) as llm:
        with pytest.raises(LimitsExceeded, match="GADGET_AGENT_MAX_STEPS"):
            await run_agent(ws, llm, "loop", agent_max_steps=3)


async def test_history_persists_and_trims_oldest_turns_first(tmp_path: Path) -> None:
    history = ChatHistory(tmp_path, "chat-1")
    for i in range(5):
        history.append(
            f"t{i}",
            [
                {"role": "user", "content": f"q{i} " + "x" * 400},
                {"role": "assistant", "content": f"a{i}"},
            ],
        )
    history.append(
        "t1", [{"role": "user", "content": "q1 retried"}, {"role": "assistant", "content": "a1"}]
    )
    turns = ChatHistory(tmp_path, "chat-1").load()
    assert [t[0]["content"][:2] for t in turns] == ["q0", "q2", "q3", "q4", "q1"]
    system = {"role": "system", "content": "sys"}
    current = [{"role": "user", "content": "now"}]
    fitted = fit_context(system, turns, current, budget=300)
    assert fitted[0] == system and fitted[-1] == current[0]
    assert [m["content"][:2] for m in fitted[1:-1]] == ["q4", "a4", "q1", "a1"]
