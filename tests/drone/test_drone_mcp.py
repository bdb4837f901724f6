"""MCP tool servers (stdio and streamable HTTP, written with the SDK) offered to the agent."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gadget.drone.agent.approvals import ApprovalRequest, PermissionGate
from gadget.drone.agent.loop import Agent
from gadget.drone.agent.mcp import McpServers
from gadget.drone.agent.model import OpenAIModel
from gadget.drone.agent.tools import ToolResult, default_toolbox
from gadget.drone.agent.workspace import Workspace
from gadget.protocol import ApprovalDecision, PermissionMode
from tests.drone.helpers import RecordedEvents, drone_settings
from tests.fakes.llm_server import Reply, ScriptedLLM, text_reply, tool_reply

pytestmark = pytest.mark.timeout(60)

FAKE = str(Path(__file__).parents[1] / "fakes" / "mcp_server.py")
STDIO = {"command": sys.executable, "args": [FAKE], "env": {"FAKE_TOKEN": "t0k"}}


class Watched(RecordedEvents):
    """Records, and sets :attr:`seen` when a given status arrives."""

    def __init__(self, status: str) -> None:
        super().__init__()
        self.wanted, self.seen = status, asyncio.Event()

    def status(self, message: str) -> None:
        super().status(message)
        if message == self.wanted:
            self.seen.set()


def config(tmp_path: Path, servers: dict[str, Any]) -> Path:
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps({"mcpServers": servers}))
    return path


@pytest.fixture
async def http_url() -> AsyncIterator[str]:
    """The fake server over streamable HTTP, as a subprocess."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, FAKE, "--http", stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.stdout is not None
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 20)
        yield line.decode().split()[1]
    finally:
        proc.terminate()
        await proc.wait()


async def run_turn(
    ws: Path, mcp: McpServers, script: list[Reply], gate: PermissionGate | None = None
) -> tuple[dict[str, ToolResult], ScriptedLLM]:
    async with ScriptedLLM([*script, text_reply("done")]) as llm:
        settings = drone_settings(ws, llm.base_url)
        model = OpenAIModel(settings)
        events = RecordedEvents()
        tools = default_toolbox(mcp.tools())
        agent = Agent(model, tools, Workspace(ws), settings, events, gate=gate)
        try:
            await agent.run("use the tools")
        finally:
            await model.close()
    return {e[1]: e[4] for e in events.of("tool_finished")}, llm


async def test_a_stdio_servers_tools_are_offered_and_called(
    ws: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GADGET_DRONE_KEY", "sekrit")
    settings = drone_settings(ws, mcp_config=config(tmp_path, {"fake": STDIO}))
    async with McpServers(settings) as mcp:
        assert mcp.status() == [{"name": "fake", "ok": True, "tools": 8}]
        by_name = {t.name: t for t in mcp.tools()}
        assert by_name["fake__add"].read_only and not by_name["fake__write_note"].read_only
        script = [
            tool_reply(("m1", "fake__add", {"a": 2, "b": 3})),
            tool_reply(("m2", "fake__write_note", {"text": "from the agent"})),
            tool_reply(("m3", "fake__env", {"name": "FAKE_TOKEN"})),
            tool_reply(("m4", "fake__env", {"name": "GADGET_DRONE_KEY"})),
            tool_reply(("m5", "fake__fail", {"message": "no such record"})),
        ]
        results, llm = await run_turn(ws, mcp, script)
    assert results["m1"].output == "5" and results["m1"].ok
    assert json.loads(results["m1"].to_json()) == {"ok": True, "output": "5", "server": "fake"}
    assert (ws / "notes.txt").read_text() == "from the agent\n"  # it runs in the workspace
    assert results["m3"].output == "t0k"
    assert results["m4"].output == "(unset)"  # the drone's secrets stay with the drone
    assert not results["m5"].ok and "no such record" in results["m5"].output
    offered = {t["function"]["name"]: t["function"] for t in llm.requests[0]["tools"]}
    assert {"read_file", "run_command", "fake__add", "fake__crash"} <= offered.keys()
    add = offered["fake__add"]
    assert add["parameters"]["properties"].keys() == {"a", "b"}
    assert add["description"] == "Add two integers. (tool 'add' of MCP server fake)"
    assert mcp.status() == [{"name": "fake", "ok": False, "tools": 8, "error": "stopped"}]


async def test_a_streamable_http_server_with_headers(
    ws: Path, tmp_path: Path, http_url: str
) -> None:
    servers = {"remote": {"url": http_url, "headers": {"X-Api-Key": "k-123"}}}
    settings = drone_settings(ws, mcp_config=config(tmp_path, servers))
    async with McpServers(settings) as mcp:
        assert mcp.status() == [{"name": "remote", "ok": True, "tools": 8}]
        script = [
            tool_reply(("h1", "remote__add", {"a": 40, "b": 2})),
            tool_reply(("h2", "remote__header", {"name": "x-api-key"})),
        ]
        results, _ = await run_turn(ws, mcp, script)
    assert results["h1"].output == "42" and results["h1"].server == "remote"
    assert results["h2"].output == "k-123"


async def test_ask_mode_asks_only_for_tools_not_marked_read_only(ws: Path, tmp_path: Path) -> None:
    asked: list[ApprovalRequest] = []

    async def person(request: ApprovalRequest) -> ApprovalDecision:
        asked.append(request)
        return ApprovalDecision.DENY

    settings = drone_settings(ws, mcp_config=config(tmp_path, {"fake": STDIO}))
    gate = PermissionGate(PermissionMode.ASK, turn_id="t", asker=person)
    async with McpServers(settings) as mcp:
        script = [
            tool_reply(("m1", "fake__add", {"a": 1, "b": 1})),
            tool_reply(("m2", "fake__write_note", {"text": "x"})),
        ]
        results, _ = await run_turn(ws, mcp, script, gate)
    assert [(r.call_id, r.name) for r in asked] == [("m2", "fake__write_note")]
    assert results["m1"].output == "2" and results["m2"].refused
    assert not (ws / "notes.txt").exists()


async def test_broken_servers_are_reported_and_the_rest_work(ws: Path, tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    exits = "import sys; sys.stderr.write('bad token for the API\\n'); sys.exit(2)"
    servers = {
        "missing": {"command": "/nonexistent/mcp-server"},
        "exits": {"command": sys.executable, "args": ["-c", exits]},
        "silent": {"command": "sleep", "args": ["30"]},
        "dead": {"url": f"http://127.0.0.1:{closed_port}/mcp"},
        "bad name!": {"command": "x"},
        "neither": {"args": []},
        "old": {"type": "sse", "url": "http://127.0.0.1:1/sse"},
        "off": {"command": "/nonexistent", "disabled": True},
        "fake": STDIO,
    }
    settings = drone_settings(ws, mcp_config=config(tmp_path, servers), mcp_start_timeout_s=10)
    async with McpServers(settings) as mcp:
        status = {s["name"]: s for s in mcp.status()}
        assert status.keys() == set(servers) - {"off"}
        assert status["fake"] == {"name": "fake", "ok": True, "tools": 8}
        broken = {name: s["error"] for name, s in status.items() if not s["ok"]}
        assert broken.keys() == status.keys() - {"fake"}
        assert "/nonexistent/mcp-server" in broken["missing"]
        assert broken["dead"].endswith(f"(at http://127.0.0.1:{closed_port}/mcp)")
        assert "bad token for the API" in broken["exits"]  # the tail of its stderr
        assert broken["silent"] == "did not start and list its tools within 10s"
        assert broken["bad name!"].startswith("a server name may only hold")
        assert broken["neither"].startswith("expected command")
        assert broken["old"].startswith("the SSE transport is not supported")
        assert all(s["tools"] == 0 for name, s in status.items() if name != "fake")
        assert {t.name.split("__")[0] for t in mcp.tools()} == {"fake"}
        results, _ = await run_turn(ws, mcp, [tool_reply(("m1", "fake__add", {"a": 1, "b": 2}))])
    assert results["m1"].output == "3"
    assert (ws / ".gadget" / "mcp" / "exits.log").read_text() == "bad token for the API\n"


@pytest.mark.parametrize(
    ("content", "error"),
    [
        ("{not json", "is not JSON"),
        ('{"servers": {}}', 'to hold {"mcpServers"'),
        (None, "cannot read"),
    ],
)
async def test_an_unusable_config_file_is_reported(
    ws: Path, tmp_path: Path, content: str | None, error: str
) -> None:
    path = tmp_path / "mcp.json"
    if content is not None:
        path.write_text(content)
    async with McpServers(drone_settings(ws, mcp_config=path)) as mcp:
        [status] = mcp.status()
        assert status["name"] == str(path) and not status["ok"] and error in status["error"]
        assert mcp.tools() == []


async def test_a_server_that_dies_is_reported_and_its_calls_fail_cleanly(
    ws: Path, tmp_path: Path
) -> None:
    settings = drone_settings(ws, mcp_config=config(tmp_path, {"fake": STDIO}))
    async with McpServers(settings) as mcp:
        script = [
            tool_reply(("m1", "fake__crash", {})),
            tool_reply(("m2", "fake__add", {"a": 1, "b": 2})),
        ]
        results, _ = await run_turn(ws, mcp, script)
        [status] = mcp.status()
    assert not results["m1"].ok and results["m1"].output.startswith("MCP server fake: crash failed")
    assert not results["m2"].ok and "MCP server fake" in results["m2"].output
    assert not status["ok"] and status["error"]


async def test_a_cancelled_turn_ends_a_slow_call_and_the_server_keeps_working(
    ws: Path, tmp_path: Path
) -> None:
    settings = drone_settings(ws, mcp_config=config(tmp_path, {"fake": STDIO}))
    async with McpServers(settings) as mcp:
        async with ScriptedLLM([tool_reply(("m1", "fake__slow", {"seconds": 30}))]) as llm:
            turn_settings = drone_settings(ws, llm.base_url)
            model = OpenAIModel(turn_settings)
            events = Watched("MCP fake: slow")
            agent = Agent(model, default_toolbox(mcp.tools()), Workspace(ws), turn_settings, events)
            task = asyncio.ensure_future(agent.run("wait"))
            await asyncio.wait_for(events.seen.wait(), 10)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await asyncio.wait_for(task, 10)
            await model.close()
        results, _ = await run_turn(ws, mcp, [tool_reply(("m2", "fake__add", {"a": 2, "b": 2}))])
        assert results["m2"].output == "4" and mcp.status()[0]["ok"]


class Marker:
    """A stand-in sandbox: wraps the argv with `env WRAPPED=yes`, as bwrap would wrap it."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], Path]] = []

    def wrap(
        self, argv: list[str], cwd: Path, env: dict[str, str]
    ) -> tuple[list[str], dict[str, str]]:
        self.calls.append((argv, cwd))
        return ["/usr/bin/env", "WRAPPED=yes", *argv], env


async def test_stdio_servers_start_through_the_sandbox_seam(ws: Path, tmp_path: Path) -> None:
    sandbox = Marker()
    settings = drone_settings(ws, mcp_config=config(tmp_path, {"fake": STDIO}))
    async with McpServers(settings, sandbox=sandbox) as mcp:
        results, _ = await run_turn(ws, mcp, [tool_reply(("m1", "fake__env", {"name": "WRAPPED"}))])
    assert results["m1"].output == "yes"
    assert sandbox.calls == [([sys.executable, FAKE], Workspace(ws).root)]
