"""Permission modes and approvals end to end: the real hub, a real drone, the scripted model.

Each mode; allow / deny / allow-session; an approval pending while a second IDE socket
joins, across a hub restart and across a drone restart (the answer afterwards works);
the first of two answers wins; a cancel ends the wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest

from tests.drone.control import asked, call, result, set_mode, tool_call
from tests.drone.e2e import drone_process, new_session, running_drone, wait_online
from tests.fakes.llm_server import ScriptedLLM, text_reply, tool_reply
from tests.harness import HubHarness

pytestmark = pytest.mark.timeout(60)

WRITE = ("w1", "write_file", {"path": "new.txt", "content": "hello\n"})
RUN = ("r1", "run_command", {"command": "echo ran >> ran.txt"})
READ = ("c1", "read_file", {"path": "calc.py"})

HubFactory = Callable[..., AbstractAsyncContextManager[HubHarness]]


def params(call: tuple[str, str, dict[str, Any]]) -> str:
    """A call's parameters as the drone sends them (compact JSON of the model's arguments)."""
    return json.dumps(call[2])


async def test_new_sessions_start_in_ask_and_the_default_is_a_user_setting(
    hub_factory: HubFactory, ws: Path
) -> None:
    async with hub_factory(default_permission_mode="ask") as hub, ScriptedLLM() as llm:
        s = await new_session(hub, llm, ws)
        headers = hub.bearer(s.token)
        assert (await hub.http.get("/api/settings", headers=headers)).json() == {
            "defaultPermissionMode": "ask"
        }
        async with running_drone(s.settings):
            first = await s.lock()
            r = await hub.http.patch(
                "/api/settings", json={"defaultPermissionMode": "read-only"}, headers=headers
            )
            assert r.status_code == 200 and r.json() == {"defaultPermissionMode": "read-only"}
            bad = await hub.http.patch(
                "/api/settings", json={"defaultPermissionMode": "yolo"}, headers=headers
            )
            assert bad.status_code == 422
            s.chat_id = None  # a new chat session
            second = await s.lock()
        chats = (await hub.http.get("/api/chat-sessions", headers=headers)).json()
    modes = {c["_id"]: c["permissionMode"] for c in chats}
    assert modes == {first: "ask", second: "read-only"}


async def test_each_permission_mode(hub: HubHarness, ws: Path) -> None:
    script = [
        tool_reply(WRITE),  # auto: runs unasked
        text_reply("wrote it"),
        tool_reply(READ),  # read-only: reads run, the rest is refused
        tool_reply(RUN),
        text_reply("could not run it"),
        tool_reply(READ),  # ask: reads run unasked, the command asks
        tool_reply(RUN),
        text_reply("ran it"),
    ]
    async with ScriptedLLM(script) as llm:
        s = await new_session(hub, llm, ws)
        async with running_drone(s.settings) as (drone, _):
            sent = _spy_orders(drone)
            await set_mode(s, "auto")
            assert s.ide is not None
            auto = await s.submit("write")
            assert await s.completion(auto) == (auto, True)

            await set_mode(s, "read-only")
            readonly = await s.submit("run in read-only")
            assert await s.completion(readonly) == (readonly, True)

            await set_mode(s, "ask")
            ask = await s.submit("run, asking")
            request = await asked(s.ide, ask, "run_command")
            assert (ws / "ran.txt").exists() is False
            assert await call(s.ide, "answerApproval", ask, request["callId"], "allow") == (True,)
            assert await s.completion(ask) == (ask, True)
            turns = {t: await s.turn(t) for t in (auto, readonly, ask)}
            orders = [a[2] for a in sent]
    assert (ws / "new.txt").read_text() == "hello\n"
    assert (ws / "ran.txt").read_text() == "ran\n"  # once: in "ask", not in "read-only"
    assert [o["permissionMode"] for o in orders] == ["auto", "read-only", "ask"]
    approvals = [a[0] for a in s.ide.log.of("toolApproval")]
    assert approvals == [request]
    assert request == {"turnId": ask, "callId": "r1", "name": "run_command",
                       "parameters": params(RUN)}  # fmt: skip
    refused = result(turns[readonly], "r1")
    assert refused["ok"] is False and refused["refused"] is True
    assert "read-only mode" in refused["output"]
    assert result(turns[readonly], "c1")["ok"] is True
    assert "approval" not in tool_call(turns[auto], "w1")
    approval = tool_call(turns[ask], "r1")["approval"]
    assert approval["decision"] == "allow" and approval["by"] == "ann" and approval["at"]
    assert "approval" not in tool_call(turns[ask], "c1")
    (block,) = [b for b in turns[ask]["blocks"] if b["mode"] == "tool" and
                b["content"]["callId"] == "r1"]  # fmt: skip
    assert block["content"]["approval"] == approval
    assert "pendingApproval" not in turns[ask]


def _spy_orders(drone: Any) -> list[tuple[Any, ...]]:
    """Every work order the in-process drone gets from now on, as the hub sent it."""
    orders: list[tuple[Any, ...]] = []
    handlers = drone.sio.handlers["/"]
    original = handlers["processWorkOrder"]

    async def spy(*args: Any) -> Any:
        orders.append(args)
        return await original(*args)

    handlers["processWorkOrder"] = spy
    return orders


async def test_allow_deny_and_allow_for_the_session(hub: HubHarness, ws: Path) -> None:
    run_again = ("r2", "run_command", RUN[2])
    script = [
        tool_reply(WRITE),
        tool_reply(RUN),
        text_reply("one denied, one allowed for the session"),
        tool_reply(run_again),  # next turn: the same tool runs unasked
        text_reply("ran again"),
    ]
    async with ScriptedLLM(script) as llm:
        s = await new_session(hub, llm, ws)
        async with running_drone(s.settings):
            await set_mode(s, "ask")
            assert s.ide is not None
            first = await s.submit("write, then run")
            write = await asked(s.ide, first, "write_file")
            assert await call(s.ide, "answerApproval", first, write["callId"], "deny") == (True,)
            run = await asked(s.ide, first, "run_command")
            decision = await call(s.ide, "answerApproval", first, run["callId"], "allow-session")
            assert decision == (True,)
            assert await s.completion(first) == (first, True)
            second = await s.submit("run again")
            assert await s.completion(second) == (second, True)
            one, two = await s.turn(first), await s.turn(second)
    assert not (ws / "new.txt").exists()
    assert (ws / "ran.txt").read_text() == "ran\nran\n"
    denied = result(one, "w1")
    assert denied == {**denied, "ok": False, "refused": True}
    assert "the person denied it" in denied["output"]
    assert tool_call(one, "w1")["approval"]["decision"] == "deny"
    assert tool_call(one, "r1")["approval"]["decision"] == "allow-session"
    assert "approval" not in tool_call(two, "r2")
    assert [a[0]["callId"] for a in s.ide.log.of("toolApproval")] == ["w1", "r1"]
    decisions = [a[0] for a in s.ide.log.of("approvalDecision")]
    assert decisions == [
        {"turnId": first, "callId": "w1", "decision": "deny", "by": "ann"},
        {"turnId": first, "callId": "r1", "decision": "allow-session", "by": "ann"},
    ]
    # The model read the refusal as the tool's result.
    tool_messages = [m for m in llm.requests[1]["messages"] if m["role"] == "tool"]
    assert tool_messages[-1]["content"].startswith("ERROR: write_file was not run")


async def test_a_second_ide_sees_the_card_and_the_first_answer_wins(
    hub: HubHarness, ws: Path
) -> None:
    async with ScriptedLLM([tool_reply(RUN), text_reply("done")]) as llm:
        s = await new_session(hub, llm, ws)
        async with running_drone(s.settings):
            await set_mode(s, "ask")
            assert s.ide is not None
            turn_id = await s.submit("run")
            request = await asked(s.ide, turn_id, "run_command")
            tab = await hub.ide(s.token)
            ok = await call(
                tab, "requestSessionLock", {"_id": s.drone_id}, {"_id": s.project_id},
                {"_id": s.chat_id},
            )  # fmt: skip
            assert ok == (True, s.chat_id)
            (snapshot,) = await _snapshots(tab, turn_id)
            pending = snapshot["pendingApproval"]
            assert {k: pending[k] for k in request if k != "turnId"} == {
                k: v for k, v in request.items() if k != "turnId"
            }
            assert pending["askedAt"]
            rest = await hub.get_turn(s.token, turn_id)
            assert rest["pendingApproval"] == pending
            answers = await asyncio.gather(
                call(tab, "answerApproval", turn_id, request["callId"], "allow"),
                call(s.ide, "answerApproval", turn_id, request["callId"], "deny"),
            )
            assert sorted(answers) == [(False, "already answered"), (True,)]
            won = "allow" if answers[0] == (True,) else "deny"
            assert await s.completion(turn_id) == (turn_id, True)
            turn = await s.turn(turn_id)
            for ide in (s.ide, tab):
                await ide.log.wait_for("approvalDecision", lambda a: a[0]["turnId"] == turn_id)
                assert [a[0]["decision"] for a in ide.log.of("approvalDecision")] == [won]
    assert tool_call(turn, "r1")["approval"]["decision"] == won
    assert (ws / "ran.txt").exists() is (won == "allow")
    assert "pendingApproval" not in turn


async def _snapshots(client: Any, turn_id: str) -> list[dict[str, Any]]:
    await client.log.wait_for("turnSnapshot", lambda a: a[0]["_id"] == turn_id)
    return [a[0] for a in client.log.of("turnSnapshot") if a[0]["_id"] == turn_id]


async def test_cancel_ends_the_wait(hub: HubHarness, ws: Path) -> None:
    async with ScriptedLLM([tool_reply(RUN)]) as llm:
        s = await new_session(hub, llm, ws)
        async with running_drone(s.settings):
            await set_mode(s, "ask")
            assert s.ide is not None
            turn_id = await s.submit("run")
            request = await asked(s.ide, turn_id, "run_command")
            assert await call(s.ide, "cancelWorkOrder", turn_id) == (True,)
            assert await s.completion(turn_id) == (turn_id, False, "cancelled")
            turn = await s.turn(turn_id)
            late = await call(s.ide, "answerApproval", turn_id, request["callId"], "allow")
    assert turn["status"] == "error" and turn["cancelled"] is True
    assert "pendingApproval" not in turn
    assert late == (False, f"turn {turn_id} has ended: no call of it waits for an answer")
    assert not (ws / "ran.txt").exists()


async def test_a_mode_change_decides_a_waiting_call(hub: HubHarness, ws: Path) -> None:
    async with ScriptedLLM([tool_reply(RUN), text_reply("ran")]) as llm:
        s = await new_session(hub, llm, ws)
        async with running_drone(s.settings):
            await set_mode(s, "ask")
            assert s.ide is not None
            turn_id = await s.submit("run")
            await asked(s.ide, turn_id, "run_command")
            await set_mode(s, "auto")
            assert await s.completion(turn_id) == (turn_id, True)
            turn = await s.turn(turn_id)
    assert (ws / "ran.txt").read_text() == "ran\n"
    assert "pendingApproval" not in turn and "approval" not in tool_call(turn, "r1")
    changed = [a[0] for a in s.ide.log.of("permissionModeChanged")]
    assert changed[-1] == {"chatSession": s.chat_id, "mode": "auto"}


async def test_pending_across_a_hub_restart(hub_factory: HubFactory, ws: Path) -> None:
    async with ScriptedLLM([tool_reply(RUN), text_reply("ran")]) as llm:
        stack = contextlib.AsyncExitStack()
        async with stack:
            first = await stack.enter_async_context(hub_factory(drone_grace_s=20))
            s = await new_session(first, llm, ws)
            port = int(first.url.rsplit(":", 1)[1])
            async with running_drone(s.settings) as (drone, _):
                await set_mode(s, "ask")
                assert s.ide is not None
                turn_id = await s.submit("run")
                request = await asked(s.ide, turn_id, "run_command")
                await stack.aclose()  # the hub stops; the drone waits on, and reconnects
                async with hub_factory(port=port, drone_grace_s=20) as second:
                    s.hub, s.ide = second, None
                    await wait_online(s)
                    await s.lock()
                    assert s.ide is not None
                    (snapshot,) = await _snapshots(s.ide, turn_id)
                    assert snapshot["pendingApproval"]["callId"] == request["callId"]
                    ack = await call(s.ide, "answerApproval", turn_id, request["callId"], "allow")
                    assert ack == (True,)
                    assert await s.completion(turn_id) == (turn_id, True)
                    turn = await s.turn(turn_id)
                    assert drone.sio.connected
    assert (ws / "ran.txt").read_text() == "ran\n"
    assert tool_call(turn, "r1")["approval"]["decision"] == "allow"


async def test_pending_across_a_drone_restart(hub_factory: HubFactory, ws: Path) -> None:
    again = ("r1b", "run_command", RUN[2])  # the retried attempt asks with a new call id
    script = [tool_reply(RUN), tool_reply(again), text_reply("ran after the restart")]
    async with hub_factory(drone_grace_s=20) as hub, ScriptedLLM(script) as llm:
        s = await new_session(hub, llm, ws, sandbox="none")
        async with drone_process(s) as first:
            await wait_online(s)
            await set_mode(s, "ask")
            assert s.ide is not None
            turn_id = await s.submit("run")
            before = await asked(s.ide, turn_id, "run_command")
            pending = (await hub.get_turn(s.token, turn_id))["pendingApproval"]
            first.send_signal(signal.SIGKILL)
            await first.wait()
        async with drone_process(s) as second:
            retried = await asked(s.ide, turn_id, "run_command", index=1)
            assert retried["callId"] == "r1b" and retried["parameters"] == before["parameters"]
            now = (await hub.get_turn(s.token, turn_id))["pendingApproval"]
            assert now == {**pending, "callId": "r1b"}  # the same card, asked since then
            ack = await call(s.ide, "answerApproval", turn_id, "r1b", "allow")
            assert ack == (True,)
            assert await s.completion(turn_id, timeout=30) == (turn_id, True)
            turn = await s.turn(turn_id)
            second.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(second.wait(), 10) == 0
    assert (ws / "ran.txt").read_text() == "ran\n"
    assert turn["retries"] == 1
    assert tool_call(turn, "r1b")["approval"]["decision"] == "allow"


async def test_an_answer_while_the_drone_is_down_reaches_its_retry(
    hub_factory: HubFactory, ws: Path
) -> None:
    again = ("r1b", "run_command", RUN[2])
    script = [tool_reply(RUN), tool_reply(again), text_reply("ran after the restart")]
    async with hub_factory(drone_grace_s=20) as hub, ScriptedLLM(script) as llm:
        s = await new_session(hub, llm, ws, sandbox="none")
        async with drone_process(s) as first:
            await wait_online(s)
            await set_mode(s, "ask")
            assert s.ide is not None
            turn_id = await s.submit("run")
            await asked(s.ide, turn_id, "run_command")
            first.send_signal(signal.SIGKILL)
            await first.wait()
        assert await call(s.ide, "answerApproval", turn_id, "r1", "allow") == (True,)
        async with drone_process(s):
            assert await s.completion(turn_id, timeout=30) == (turn_id, True)
            turn = await s.turn(turn_id)
    assert (ws / "ran.txt").read_text() == "ran\n"
    # The retry asked again; the hub answered it at once with the stored answer.
    assert [a[0]["callId"] for a in s.ide.log.of("toolApproval")] == ["r1", "r1b"]
    assert [a[0]["callId"] for a in s.ide.log.of("approvalDecision")] == ["r1", "r1b"]
    assert tool_call(turn, "r1b")["approval"]["decision"] == "allow"
