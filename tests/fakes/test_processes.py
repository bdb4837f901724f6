"""Hub and drone subprocesses: started as a person starts them, killed, restarted, reported."""

from __future__ import annotations

import asyncio
import socket
import sys
from pathlib import Path
from typing import Any

import pytest

from gadget.config import Settings
from tests.drone.helpers import drone_settings
from tests.fakes.llm_server import ScriptedLLM, count_tokens, numbered_reply
from tests.fakes.processes import ManagedProcess, ProcessError, Processes, settings_env
from tests.harness import HubClient, hub_settings

TOKENS = 300


async def finished_turn(api: HubClient, token: str, turn_id: str) -> dict[str, Any]:
    """The stored turn once it is no longer processing."""
    while True:
        turn = await api.get_turn(token, turn_id)
        if turn["status"] != "processing":
            return turn
        await asyncio.sleep(0.05)


def responding(turn: dict[str, Any]) -> str:
    return "".join(b["content"] for b in turn["blocks"] if b["mode"] == "responding")


async def test_settings_become_exactly_the_environment_the_child_reads(tmp_path: Path) -> None:
    settings = hub_settings(tmp_path, port=4321, allow_signup=False, flush_interval_ms=7)
    env = settings_env(settings, {"EXTRA": "1"})
    assert (env["GADGET_PORT"], env["GADGET_ALLOW_SIGNUP"], env["EXTRA"]) == ("4321", "false", "1")
    script = "from gadget.config import Settings; print(Settings().model_dump_json())"
    child = ManagedProcess("settings", [sys.executable, "-c", script], env, tmp_path / "s.log")
    await child.start()
    assert await child.wait() == 0, child.output.text()
    printed = [line for line in child.output.lines if not line.startswith("---")]
    assert Settings.model_validate_json(printed[0]) == settings


async def test_a_hub_survives_sigkill_and_restarts_on_its_port_and_data(procs: Processes) -> None:
    hub = await procs.hub()
    api = procs.client(hub.url)
    await api.signup("ann", "pw-secret")
    assert await hub.kill() == -9 and not hub.running
    await hub.start()  # same port and home: the user is still there
    login = await api.http.post(
        "/api/auth/login", json={"username": "ann", "password": "pw-secret"}
    )
    assert login.status_code == 200, login.text
    assert await hub.terminate() == 0
    out = hub.output.text()
    assert out.count("hub listening on") == 2 and "sending SIGKILL" in out, out
    assert "start #2" in out and "exited with code 0" in out


async def test_a_drone_streams_numbered_tokens_and_comes_back_after_a_hub_restart(
    procs: Processes, ws: Path
) -> None:
    async with ScriptedLLM([numbered_reply(TOKENS, per_chunk=3)]) as llm:
        hub = await procs.hub()
        api = procs.client(hub.url)
        token = await api.signup("ann")
        drone_id, key = await api.create_drone(token, "box")
        project_id = await api.create_project(token, "calc")
        settings = drone_settings(ws, llm.base_url, hub_url=hub.url, drone_id=drone_id,
                                  drone_key=key)  # fmt: skip
        drone = await procs.drone(settings, api, token)
        ide = await api.ide(token)
        ok, _ = await ide.call("requestSessionLock", {"_id": drone_id}, {"_id": project_id}, None)
        assert ok is True
        ok, turn_id = await ide.call("submitPrompt", "count")
        assert ok is True, turn_id
        await ide.log.wait_for("workOrderComplete", lambda a: a[0] == turn_id, 60)
        turn = await finished_turn(api, token, turn_id)
        assert turn["status"] == "finished"
        assert count_tokens(responding(turn), TOKENS) == (0, 0)
        shown = "".join(a[0] for a in ide.log.of("response"))
        assert count_tokens(shown, TOKENS) == (0, 0)

        await hub.restart()
        await drone.wait_online()  # it reconnected by itself
        assert await drone.terminate() == 0


async def test_a_process_that_never_gets_ready_says_why_with_its_output(
    procs: Processes, ws: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(ProcessError, match=r"exited with code [1-9]\d* before /healthz") as err:
            await procs.hub("busy", port=taken.getsockname()[1])
    assert "in use" in str(err.value)  # the end of its output says why

    hub = await procs.hub()
    api = procs.client(hub.url)
    token = await api.signup("ann")
    drone_id, _ = await api.create_drone(token, "box")
    settings = drone_settings(ws, hub_url=hub.url, drone_id=drone_id, drone_key="gdk_wrong")
    drone = await procs.drone(settings, api, token, wait_online=False)
    await drone.output.wait_for("wrong key", timeout=60)
    with pytest.raises(ProcessError, match=r"not listed online by the hub within 0\.5 s") as err:
        await drone.wait_online(timeout=0.5)
    assert "wrong key" in str(err.value)  # the end of its output says why


async def test_output_travels_with_an_error_outside_the_fixture(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError) as err:
        async with Processes(tmp_path) as group:
            argv = ["/bin/sh", "-c", "echo hello; exec sleep 60"]
            echo = group.add(ManagedProcess("echo", argv, {}, group.log("echo")))
            await echo.start()
            await echo.output.wait_for("hello")
            raise RuntimeError("the test failed")
    assert not echo.running  # stopped on the way out
    notes = "\n".join(getattr(err.value, "__notes__", []))
    assert "--- output of echo ---" in notes and "hello" in notes
    assert [title for title, _ in group.sections()] == ["output of echo"]
