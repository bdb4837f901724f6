"""End to end: a real drone, a real hub, the scripted model, and an IDE socket."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest

from gadget.drone.requests import HubRequests
from tests.drone.e2e import alive, drone_process, new_session, running_drone, wait_online
from tests.drone.helpers import drone_settings
from tests.fakes.llm_server import ScriptedLLM, text_reply, tool_reply
from tests.harness import HubHarness

pytestmark = pytest.mark.timeout(40)


def ok(output: str) -> str:
    return json.dumps({"ok": True, "output": output})


async def test_turn_reads_edits_runs_and_answers(hub: HubHarness, ws: Path) -> None:
    check = "python3 -c 'import calc; print(calc.add(2, 3))'"
    script = [
        tool_reply(("c1", "read_file", {"path": "calc.py"}), reasoning_text="Let me look."),
        tool_reply(
            ("c2", "edit_file", {"path": "calc.py", "old": "a - b", "new": "a + b"}), text="Fixing."
        ),
        tool_reply(("c3", "run_command", {"command": check})),
        text_reply("Fixed: add(2, 3) is 5.", reasoning_text="It works."),
    ]
    async with ScriptedLLM(script) as llm:
        s = await new_session(hub, llm, ws)
        async with running_drone(s.settings):
            await s.lock()
            turn_id = await s.submit("fix add")
            assert await s.completion(turn_id) == (turn_id, True)
            turn = await s.turn(turn_id)
    assert (ws / "calc.py").read_text() == "def add(a, b):\n    return a + b\n"
    assert not (ws / ".gadget" / "work-order.json").exists()
    assert turn["status"] == "finished"
    calls = [
        (
            "c1",
            "read_file",
            {"path": "calc.py"},
            "     1\tdef add(a, b):\n     2\t    return a - b",
        ),
        (
            "c2",
            "edit_file",
            {"path": "calc.py", "old": "a - b", "new": "a + b"},
            "edited calc.py at line 2",
        ),
        ("c3", "run_command", {"command": check}, f"$ {check}\n5\n[exit code: 0]"),
    ]
    tool_calls = [
        {"callId": i, "name": n, "parameters": json.dumps(p), "response": ok(out)}
        for i, n, p, out in calls
    ]
    assert [
        {k: c[k] for k in ("callId", "name", "parameters", "response")} for c in turn["toolCalls"]
    ] == tool_calls
    blocks = [(b["mode"], b["content"]) for b in turn["blocks"]]
    assert [(m, c if m != "tool" else {k: c[k] for k in tool_calls[0]}) for m, c in blocks] == [
        ("thinking", "Let me look."),
        ("tool", tool_calls[0]),
        ("responding", "Fixing."),
        ("tool", tool_calls[1]),
        ("tool", tool_calls[2]),
        ("thinking", "It works."),
        ("responding", "Fixed: add(2, 3) is 5."),
    ]
    assert s.ide is not None
    modes = [a[0] for a in s.ide.log.of("workspaceModeChanged")]
    assert modes[-2:] == ["agent", "idle"]
    statuses = [a[0] for a in s.ide.log.of("status")]
    assert "calling model" in statuses and f"running: {check}" in statuses
    logs = [(a[1], a[2], a[3]) for a in s.ide.log.of("log")]
    assert ("drone", "info", f"turn {turn_id} started") in logs


async def test_subagent_turn(hub: HubHarness, ws: Path) -> None:
    script = [
        tool_reply(("t1", "task", {"description": "inspect", "prompt": "What does add do?"})),
        tool_reply(("s1", "read_file", {"path": "calc.py"}), reasoning_text="Child reads."),
        text_reply("add subtracts.", reasoning_text="Seen it."),
        text_reply("The subagent found that add subtracts."),
    ]
    async with ScriptedLLM(script) as llm:
        s = await new_session(hub, llm, ws)
        async with running_drone(s.settings):
            await s.lock()
            turn_id = await s.submit("investigate add")
            assert await s.completion(turn_id) == (turn_id, True)
            turn = await s.turn(turn_id)
    assert s.ide is not None
    log = s.ide.log
    names = [e for e, _ in log.events if e.startswith("agent:") or e == "toolCall"]
    assert names[0] == "agent:thinking" and names[-2:] == ["toolCall", "agent:complete"]
    assert {a[0]["agentId"] for e, a in log.events if e.startswith("agent:")} == {"t1"}
    assert "".join(a[0]["chunk"] for a in log.of("agent:response")) == "add subtracts."
    assert log.of("agent:tool-call")[0][0]["args"] == {"path": "calc.py"}
    assert log.of("agent:tool-result")[0][0]["result"]["ok"] is True
    complete = log.of("agent:complete")[0][0]
    assert complete["response"] == "add subtracts." and complete["subagent"]["toolCalls"] == [
        "read_file"
    ]
    (task,) = turn["toolCalls"]
    assert task["callId"] == "t1" and task["name"] == "task"
    assert task["response"] == "add subtracts." and task["subagent"]["description"] == "inspect"
    assert turn["blocks"][-1] == {**turn["blocks"][-1], "mode": "responding",
                                  "content": "The subagent found that add subtracts."}  # fmt: skip


async def test_unreachable_model_fails_the_turn_clearly(hub: HubHarness, ws: Path) -> None:
    async with ScriptedLLM() as llm:
        url = llm.base_url  # closed right away: nothing listens there any more
    s = await new_session(hub, ScriptedLLM(), ws, llm_base_url=url, llm_retries=1)
    async with running_drone(s.settings):
        await s.lock()
        turn_id = await s.submit("hello")
        done = await s.completion(turn_id)
        turn = await s.turn(turn_id)
    assert done[:2] == (turn_id, False)
    assert (
        done[2].startswith(f"cannot reach the model at {url}: ")
        and "GADGET_LLM_BASE_URL" in done[2]
    )
    assert turn["status"] == "error" and turn["errorMessage"] == done[2]


async def test_cancel_kills_the_commands_process_group(hub: HubHarness, ws: Path) -> None:
    # Unsandboxed, so the pids the command writes are this machine's (test_sandbox.py: bwrap).
    command = "sleep 60 & echo $! > bg.pid; trap '' TERM; sleep 60"
    script = [tool_reply(("c1", "run_command", {"command": command}))]
    async with ScriptedLLM(script) as llm:
        s = await new_session(hub, llm, ws, kill_grace_s=0.5, sandbox="none")
        async with running_drone(s.settings):
            await s.lock()
            turn_id = await s.submit("run it")
            assert s.ide is not None
            await s.ide.log.wait_for("status", lambda a: a[0] == f"running: {command}")
            await _until(lambda: (ws / "bg.pid").exists())
            started = time.monotonic()
            assert await s.ide.call("cancelWorkOrder", turn_id) in (True, [True])
            done = await s.completion(turn_id)
            took = time.monotonic() - started
            turn = await s.turn(turn_id)
    assert done == (turn_id, False, "cancelled") and took < 2, took
    assert not alive(int((ws / "bg.pid").read_text()))
    assert turn["status"] == "error" and turn["errorMessage"] == "cancelled"


async def test_cancel_closes_the_model_stream(hub: HubHarness, ws: Path) -> None:
    script = [text_reply("I am still talk", hang=True)]
    async with ScriptedLLM(script) as llm:
        s = await new_session(hub, llm, ws)
        async with running_drone(s.settings):
            await s.lock()
            turn_id = await s.submit("talk")
            assert s.ide is not None
            await s.ide.log.wait_for("response")
            await s.ide.call("cancelWorkOrder", turn_id)
            await llm.wait_for_disconnect(timeout=2)
            assert await s.completion(turn_id, timeout=2) == (turn_id, False, "cancelled")


async def test_busy_and_user_mode_refusals(hub: HubHarness, ws: Path) -> None:
    async with ScriptedLLM([text_reply("slow", hang=True)]) as llm:
        s = await new_session(hub, llm, ws)
        async with running_drone(s.settings) as (drone, _):
            await s.lock()
            assert s.ide is not None
            # user mode: the drone refuses work orders until it is idle again
            await s.ide.call("requestWorkspaceMode", "user")
            await s.ide.log.wait_for("workspaceModeChanged", lambda a: a[0] == "user")
            refused = await HubRequests(drone).on_process_work_order(
                {"_id": s.drone_id}, {"_id": "p"}, {"_id": "c"}, {}
            )
            assert refused == (False, "the workspace is in user mode; set it back to idle first")
            await s.ide.call("requestWorkspaceMode", "idle")
            await s.ide.log.wait_for("workspaceModeChanged", lambda a: a[0] == "idle")
            # busy: a second work order while a turn runs
            turn_id = await s.submit("one")
            await s.ide.log.wait_for("response")
            busy = await HubRequests(drone).on_process_work_order(
                {"_id": s.drone_id}, {"_id": "p"}, {"_id": "c"}, {}
            )
            assert busy == (False, f"the drone is busy with turn {turn_id}")
            # and no mode change while the agent works
            await s.ide.call("requestWorkspaceMode", "user")
            await asyncio.sleep(0.1)
            assert drone.mode == "agent"
            await s.ide.call("cancelWorkOrder", turn_id)
            await s.completion(turn_id)


async def test_termination_ends_the_turn_and_exits_zero(hub: HubHarness, ws: Path) -> None:
    async with ScriptedLLM([text_reply("forever", hang=True)]) as llm:
        s = await new_session(hub, llm, ws)
        async with running_drone(s.settings) as (_, task):
            await s.lock()
            turn_id = await s.submit("work")
            assert s.ide is not None
            await s.ide.log.wait_for("response")
            assert await s.ide.call("requestTermination", s.drone_id) in (True, [True])
            assert await s.completion(turn_id) == (turn_id, False, "drone terminated")
            assert await asyncio.wait_for(task, 5) == 0


async def test_sigkill_mid_turn_then_restart_completes_through_crash_recovery(
    hub_factory: Callable[..., AbstractAsyncContextManager[HubHarness]], ws: Path
) -> None:
    script = [
        tool_reply(("c1", "run_command", {"command": "echo $$ > cmd.pid; sleep 60"})),
        text_reply("Recovered and done."),
    ]
    async with hub_factory(drone_grace_s=20) as hub, ScriptedLLM(script) as llm:
        s = await new_session(hub, llm, ws, sandbox="none")  # pids as this machine sees them
        async with drone_process(s) as first:
            await wait_online(s)
            await s.lock()
            turn_id = await s.submit("long job")
            assert s.ide is not None
            await s.ide.log.wait_for(
                "status", lambda a: a[0].startswith("running: echo"), timeout=15
            )
            # The command runs, and the drone has recorded its group.
            await _until(
                lambda: (ws / "cmd.pid").exists() and (ws / ".gadget/commands.json").exists()
            )
            first.send_signal(signal.SIGKILL)
            await first.wait()
        assert (ws / ".gadget" / "work-order.json").exists()
        orphan = int((ws / "cmd.pid").read_text())
        assert _group_alive(orphan)  # the killed drone could not stop its command
        async with drone_process(s) as second:
            await _until(lambda: not _group_alive(orphan), timeout=15)  # the new drone ends it
            done = await s.completion(turn_id, timeout=25)
            turn = await s.turn(turn_id)
            second.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(second.wait(), 10) == 0
    assert done == (turn_id, True)
    assert turn["status"] == "finished" and turn["retries"] == 1
    assert turn["blocks"][-1]["content"] == "Recovered and done."
    assert not (ws / ".gadget" / "work-order.json").exists()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    state = (
        Path(f"/proc/{pgid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        if Path(f"/proc/{pgid}/stat").exists()
        else "Z"
    )
    return state != "Z"


async def _until(condition: Callable[[], bool], timeout: float = 5) -> None:
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 (a file appearing has no event to wait on)
            await asyncio.sleep(0.02)


async def test_memory_survives_a_drone_restart(hub: HubHarness, ws: Path) -> None:
    script = [text_reply("Nice to meet you, Ann."), text_reply("Your name is Ann.")]
    async with ScriptedLLM(script) as llm:
        s = await new_session(hub, llm, ws)
        async with running_drone(s.settings):
            await s.lock()
            first = await s.submit("My name is Ann.")
            assert await s.completion(first) == (first, True)
        async with running_drone(s.settings):
            await wait_online(s)
            await s.lock()
            second = await s.submit("What is my name?")
            assert await s.completion(second) == (second, True)
    messages: list[dict[str, Any]] = llm.requests[1]["messages"]
    assert [(m["role"], m["content"]) for m in messages[1:]] == [
        ("user", "My name is Ann."),
        ("assistant", "Nice to meet you, Ann."),
        ("user", "What is my name?"),
    ]


async def test_a_dropped_connection_mid_turn_loses_nothing(hub: HubHarness, ws: Path) -> None:
    script = [
        tool_reply(("c1", "run_command", {"command": "sleep 0.6; echo slept"}), text="Sleeping."),
        text_reply("Awake again."),
    ]
    async with ScriptedLLM(script) as llm:
        s = await new_session(hub, llm, ws)
        async with running_drone(s.settings) as (drone, _):
            await s.lock()
            turn_id = await s.submit("sleep")
            assert s.ide is not None
            await s.ide.log.wait_for("status", lambda a: a[0].startswith("running: sleep"))
            state = hub.hub.drones.here(s.drone_id)
            assert state is not None
            await hub.hub.sio.disconnect(state.sid)
            assert await s.completion(turn_id) == (turn_id, True)
            turn = await s.turn(turn_id)
            assert drone.sio.connected
    assert [b["mode"] for b in turn["blocks"]] == ["responding", "tool", "responding"]
    assert turn["toolCalls"][0]["response"] == ok("$ sleep 0.6; echo slept\nslept\n[exit code: 0]")
    assert turn["blocks"][-1]["content"] == "Awake again."


async def test_register_prints_an_id_and_key_that_connect(hub: HubHarness, ws: Path) -> None:
    from gadget.drone.cli import register_drone

    await hub.signup("bob", "pw-secret")
    reg_id, key = await register_drone(hub.url, "laptop", username="bob", password="pw-secret")
    async with ScriptedLLM() as llm:
        settings = drone_settings(ws, llm.base_url, hub_url=hub.url, drone_id=reg_id, drone_key=key)
        async with running_drone(settings) as (drone, _):
            assert drone.sio.connected
