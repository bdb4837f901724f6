"""The sandbox around run_command: real commands through the real tool, under real bwrap.

Each attack runs as the model would run it (a `run_command` call) and must be refused or
cleaned up; the unsandboxed runs show that the same command does leak, so the test
would notice a sandbox that stopped working.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gadget.drone.agent.mcp import McpServers
from gadget.drone.agent.model import ToolCallRequest
from gadget.drone.agent.tools import ToolBox, ToolContext, ToolResult, default_toolbox
from gadget.drone.agent.workspace import Workspace
from gadget.drone.exceptions import SandboxError
from gadget.drone.sandbox import Sandbox
from tests.drone.e2e import drone_process, new_session, running_drone, wait_online
from tests.drone.helpers import RecordedEvents, drone_settings
from tests.fakes.llm_server import ScriptedLLM, tool_reply
from tests.harness import HubHarness

pytestmark = pytest.mark.timeout(60)

FAKE_KEY = "fake-drone-key-7Hq2"


@pytest.fixture
async def bwrap(ws: Path) -> Sandbox:
    """The machine's bubblewrap sandbox; the test is skipped (saying why) when it cannot run."""
    sandbox = await Sandbox.detect(drone_settings(ws))
    if sandbox.kind != "bwrap":
        pytest.skip(f"bubblewrap cannot run on this machine: {sandbox.reason}")
    return sandbox


@pytest.fixture
def broken_bwrap(tmp_path: Path) -> str:
    """A bwrap that fails the way it does where user namespaces are refused."""
    path = tmp_path / "bwrap"
    path.write_text(
        "#!/bin/sh\necho 'bwrap: No permissions to creating new namespace' >&2\nexit 1\n"
    )
    path.chmod(0o755)
    return str(path)


@pytest.fixture
def home_secret() -> Iterator[Path]:
    """A file in the drone user's real home folder, removed afterwards."""
    path = Path.home() / f".gadget-sandbox-test-{os.getpid()}"
    path.write_text("home secret 41\n")
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


async def run(ws: Path, command: str, timeout: float | None = None, **over: Any) -> ToolResult:
    """`command` through the run_command tool, with drone settings changed by `over`."""
    ctx = ToolContext(Workspace(ws), drone_settings(ws, **over), RecordedEvents(), "c")
    args: dict[str, Any] = {"command": command, **({"timeout": timeout} if timeout else {})}
    call = ToolCallRequest("c", "run_command", json.dumps(args))
    return await default_toolbox().execute(call, ctx)


def lines(result: ToolResult) -> list[str]:
    """The command's output lines (without the echoed command line)."""
    return result.output.splitlines()[1:]


def sleepers(marker: str) -> list[int]:
    """Live processes of this machine that are exactly `sleep <marker>`."""
    wanted = b"sleep\x00" + marker.encode() + b"\x00"
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "cmdline").read_bytes() == wanted:
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
                found += [int(entry.name)] if state != "Z" else []
        except OSError:
            continue
    return found


async def until(check: Any, timeout: float = 10) -> None:
    async with asyncio.timeout(timeout):
        while not check():  # noqa: ASYNC110 (a process ending elsewhere has no event to wait on)
            await asyncio.sleep(0.05)


def marker(n: int) -> str:
    """A sleep duration no other test process uses."""
    return f"{9000 + n}.{os.getpid()}"


async def test_writes_outside_the_workspace_never_land(ws: Path, bwrap: Sandbox) -> None:
    name = f"gadget-probe-{os.getpid()}"
    command = (
        f"echo x > {ws.parent}/outside.txt; echo x > ~/{name}; touch /usr/{name}; "
        f"touch /etc/{name}; echo ok > inside.txt; mkdir -p src && echo ok > src/deep.txt"
    )
    result = await run(ws, command)
    assert f"touch: cannot touch '/usr/{name}': Read-only file system" in lines(result)
    assert f"touch: cannot touch '/etc/{name}': Read-only file system" in lines(result)
    assert not (ws.parent / "outside.txt").exists()  # went to the sandbox's private /tmp
    assert not (Path.home() / name).exists()  # went to its private, empty home
    assert (ws / "inside.txt").read_text() == (ws / "src" / "deep.txt").read_text() == "ok\n"


async def test_the_drone_users_home_and_secrets_are_not_visible(
    ws: Path, home_secret: Path, bwrap: Sandbox
) -> None:
    state = ws / "state"  # GADGET_HOME and the key file inside the workspace: hidden anyway
    state.mkdir()
    (state / "secret_key").write_text("hub signing key\n")
    (ws / "drone.key").write_text(FAKE_KEY)
    command = (
        f"cat {home_secret}; ls -A ~ /home; cat state/secret_key drone.key; ls -A .gadget; "
        "umount /root; grep CapEff /proc/self/status"
    )
    over = {"home": state, "drone_key_file": ws / "drone.key"}
    result = await run(ws, command, **over)
    assert f"cat: {home_secret}: No such file or directory" in lines(result)
    assert "cat: state/secret_key: No such file or directory" in lines(result)
    assert "home secret" not in result.output and "hub signing key" not in result.output
    assert FAKE_KEY not in result.output and "work-order" not in result.output
    assert "umount: /root: must be superuser to unmount." in lines(result)
    assert "CapEff:\t0000000000000000" in lines(result)
    unconfined = await run(ws, f"cat {home_secret} state/secret_key", sandbox="none", **over)
    assert "home secret 41" in unconfined.output and "hub signing key" in unconfined.output


async def test_the_drones_key_cannot_be_read_from_proc_or_ps(
    ws: Path, bwrap: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GADGET_DRONE_KEY", FAKE_KEY)
    # Stands for a drone started as `GADGET_DRONE_KEY=... gadget drone --key ...`.
    drone = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "import time; time.sleep(60)", "--key", FAKE_KEY,
        env={**os.environ, "GADGET_DRONE_KEY": FAKE_KEY},
    )  # fmt: skip
    try:
        command = (
            "cat /proc/*/environ | tr '\\0' '\\n' | grep -c GADGET_DRONE_KEY; "
            f"ps -eo args= | sed 's/^/ps: /'; cat /proc/{drone.pid}/environ; "
            "echo key=$GADGET_DRONE_KEY"
        )
        confined = await run(ws, command)
        unconfined = await run(ws, command, sandbox="none")
    finally:
        drone.kill()
        await drone.wait()
    assert FAKE_KEY not in "\n".join(lines(confined))
    assert lines(confined)[0] == "0" and "key=" in lines(confined)
    assert f"cat: /proc/{drone.pid}/environ: No such file or directory" in lines(confined)
    ps = [line for line in lines(confined) if line.startswith("ps: ")]
    assert len(ps) <= 4 and not any("sleep(60)" in line for line in ps), ps  # bwrap, bash, ps, sed
    assert FAKE_KEY in "\n".join(lines(unconfined))  # what the sandbox keeps from the agent


async def test_network_off_cannot_reach_a_loopback_port(ws: Path, bwrap: Sandbox) -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        probe = f"exec 3<>/dev/tcp/127.0.0.1/{port} && echo connected"
        on = await run(ws, probe)
        off = await run(ws, probe, sandbox_network=False)
    assert lines(on) == ["connected", "[exit code: 0]"]
    assert "Connection refused" in off.output and "connected" not in lines(off)
    assert (await Sandbox.detect(drone_settings(ws, sandbox_network=False))).network is False


async def test_background_processes_do_not_outlive_the_command(ws: Path, bwrap: Sandbox) -> None:
    a, b, c = marker(1), marker(2), marker(3)
    command = f"sleep {a} & setsid sleep {b} & nohup sleep {c} >/dev/null 2>&1 & disown; echo left"
    result = await run(ws, command)
    assert lines(result) == ["left", "[exit code: 0]"]
    await until(lambda: not (sleepers(a) or sleepers(b) or sleepers(c)))


async def test_a_timeout_ends_everything_in_the_sandbox(ws: Path, bwrap: Sandbox) -> None:
    a, b = marker(4), marker(5)
    command = f"trap '' TERM; setsid sleep {a} & sleep {b}"
    result = await run(ws, command, timeout=0.5)
    assert lines(result) == ["[timed out after 0.5s; its process group was killed]"]
    await until(lambda: not (sleepers(a) or sleepers(b)))


async def test_cancel_gives_the_command_its_grace_then_ends_it(ws: Path, bwrap: Sandbox) -> None:
    a = marker(6)
    command = f"trap 'echo cleaned > cleaned.txt; exit 1' TERM; sleep {a} & wait"
    task = asyncio.create_task(run(ws, command, kill_grace_s=5))
    await until(lambda: bool(sleepers(a)))
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (ws / "cleaned.txt").read_text() == "cleaned\n"  # SIGTERM reached bash inside
    await until(lambda: not sleepers(a))


async def test_tools_keep_working_inside(ws: Path, bwrap: Sandbox) -> None:
    (ws / "Makefile").write_text("build:\n\tpython3 -m compileall -q . && echo built\n")
    command = (
        "python3 -c 'import calc; print(calc.add(2, 3))' && "
        "git init -q && git add calc.py && "
        "git -c user.name=agent -c user.email=agent@example.invalid commit -qm first && "
        "git log --format=%s && make -s build && "
        "t=$(mktemp) && echo scratch > $t && cat $t && echo ok > ~/.cache-probe"
    )
    result = await run(ws, command)
    assert lines(result) == ["-1", "first", "built", "scratch", "[exit code: 0]"]
    assert (ws / ".git").is_dir() and any((ws / "__pycache__").glob("calc.*.pyc"))


async def test_read_only_paths_show_inside_hidden_folders(
    ws: Path, home_secret: Path, bwrap: Sandbox
) -> None:
    command = f"cat {home_secret}; echo more >> {home_secret}"
    result = await run(ws, command, sandbox_read_only=f"/nonexistent:{home_secret}")
    assert lines(result)[:2] == [
        "home secret 41",
        f"bash: line 1: {home_secret}: Read-only file system",
    ]
    assert await asyncio.to_thread(home_secret.read_text) == "home secret 41\n"


async def test_the_drone_reports_its_sandbox_at_connect(
    hub: HubHarness, ws: Path, bwrap: Sandbox
) -> None:
    async with ScriptedLLM() as llm:
        s = await new_session(hub, llm, ws, sandbox_network=False)
        async with running_drone(s.settings) as (drone, _):
            auth = drone.sio.connection_auth
    assert auth["sandbox"] == "bwrap" and auth["sandboxNetwork"] is False


async def test_a_killed_drones_sandboxed_command_dies_with_it(
    hub: HubHarness, ws: Path, bwrap: Sandbox
) -> None:
    a = marker(7)
    script = [tool_reply(("c1", "run_command", {"command": f"sleep {a}"}))]
    async with ScriptedLLM(script) as llm:
        s = await new_session(hub, llm, ws)
        async with drone_process(s) as proc:
            await wait_online(s)
            await s.lock()
            await s.submit("sleep")
            await until(lambda: bool(sleepers(a)), timeout=20)
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
            await until(lambda: not sleepers(a))  # --die-with-parent: no restart needed


async def test_none_runs_commands_unconfined_and_warns(
    ws: Path, home_secret: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sandbox = await Sandbox.detect(drone_settings(ws, sandbox="none"))
    assert (sandbox.kind, sandbox.network) == ("none", True)
    argv, env = sandbox.wrap(["bash", "-c", "true"], ws, {"GADGET_DRONE_KEY": "k", "A": "1"})
    assert argv == ["bash", "-c", "true"] and env == {"A": "1"}
    with caplog.at_level(logging.WARNING, "gadget.drone.sandbox"):
        sandbox.announce()
    assert "no sandbox (GADGET_SANDBOX=none): the agent's commands run as" in caplog.text
    a = marker(8)
    result = await run(ws, f"cat {home_secret}; sleep {a} & echo left", sandbox="none")
    assert lines(result) == ["home secret 41", "left", "[exit code: 0]"]
    await until(lambda: not sleepers(a))  # its background processes still end with it


async def test_auto_falls_back_to_none_when_bwrap_cannot_run(ws: Path, broken_bwrap: str) -> None:
    sandbox = await Sandbox.detect(drone_settings(ws, sandbox_bwrap=broken_bwrap))
    assert sandbox.kind == "none"
    assert sandbox.reason == (
        "bubblewrap does not work here: a trial run failed: "
        "bwrap: No permissions to creating new namespace"
    )
    result = await run(ws, "echo still runs", sandbox_bwrap=broken_bwrap)
    assert lines(result) == ["still runs", "[exit code: 0]"]
    missing = await Sandbox.detect(drone_settings(ws, sandbox_bwrap="no-such-bwrap"))
    assert missing.kind == "none" and "no-such-bwrap is not installed" in missing.reason


@pytest.mark.parametrize(
    ("over", "wanted"),
    [({"sandbox": "bwrap"}, "GADGET_SANDBOX=bwrap"), ({"sandbox_network": False}, "NETWORK=off")],
)
async def test_a_required_sandbox_that_cannot_run_is_an_error(
    ws: Path, broken_bwrap: str, over: dict[str, Any], wanted: str
) -> None:
    with pytest.raises(SandboxError, match=f"{wanted} needs bubblewrap, which does not work"):
        await Sandbox.detect(drone_settings(ws, sandbox_bwrap=broken_bwrap, **over))
    with pytest.raises(SandboxError):  # and the command does not run unconfined instead
        await run(ws, "echo ran > ran.txt", sandbox_bwrap=broken_bwrap, **over)
    assert not (ws / "ran.txt").exists()


def test_gadget_drone_stops_at_start_when_the_required_sandbox_fails(
    ws: Path, broken_bwrap: str
) -> None:
    env = {
        **os.environ,
        "GADGET_SANDBOX": "bwrap",
        "GADGET_SANDBOX_BWRAP": broken_bwrap,
        "GADGET_HUB_URL": "http://127.0.0.1:9",
        "GADGET_DRONE_ID": "d",
        "GADGET_DRONE_KEY": "k",
        "GADGET_WORKSPACE": str(ws),
    }
    done = subprocess.run(
        [sys.executable, "-m", "gadget.drone"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("gadget drone: GADGET_SANDBOX=bwrap needs bubblewrap")
    assert "Traceback" not in done.stderr


@pytest.mark.timeout(90)
async def test_a_drone_without_sandbox_warns_once_and_reports_none(
    hub: HubHarness, ws: Path, broken_bwrap: str
) -> None:
    async with ScriptedLLM() as llm:
        s = await new_session(hub, llm, ws, sandbox_bwrap=broken_bwrap)
        async with running_drone(s.settings) as (drone, _):
            auth = drone.sio.connection_auth
        env = {**s.env(), "GADGET_SANDBOX_BWRAP": broken_bwrap}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gadget.drone", env=env, stderr=asyncio.subprocess.PIPE
        )
        assert proc.stderr is not None
        log = b""
        try:
            async with asyncio.timeout(45):  # a loaded machine starts Python slowly
                while b"connected to the hub" not in log:
                    line = await proc.stderr.readline()
                    assert line, f"the drone ended: {log.decode()}"
                    log += line
            proc.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(30):
                    log += await proc.stderr.read()
                    assert await proc.wait() == 0, log.decode()
            except TimeoutError:
                raise AssertionError(f"no exit 30 s after SIGTERM: {log.decode()}") from None
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    assert auth["sandbox"] == "none" and auth["sandboxNetwork"] is True
    assert log.count(b"no sandbox (bubblewrap does not work here: a trial run failed") == 1


async def test_an_mcp_stdio_server_runs_inside_the_sandbox(
    ws: Path, tmp_path: Path, home_secret: Path, bwrap: Sandbox
) -> None:
    # A copy in the workspace: the clone itself may lie in a folder the sandbox hides (/tmp).
    fake = str(ws / "mcp_server.py")
    shutil.copy(Path(__file__).parents[1] / "fakes" / "mcp_server.py", fake)
    config = tmp_path / "mcp.json"
    config.write_text(
        json.dumps({"mcpServers": {"fake": {"command": sys.executable, "args": [fake]}}})
    )
    settings = drone_settings(ws, mcp_config=config)
    ctx = ToolContext(Workspace(ws), settings, RecordedEvents(), "m")
    async with McpServers(settings, sandbox=await Sandbox.detect(settings)) as mcp:
        box = ToolBox.of(mcp.tools())
        add = await box.execute(ToolCallRequest("m", "fake__add", '{"a": 2, "b": 3}'), ctx)
        note = await box.execute(ToolCallRequest("m", "fake__write_note", '{"text": "hi"}'), ctx)
        tmp = await box.execute(ToolCallRequest("m", "fake__env", '{"name": "TMPDIR"}'), ctx)
        secret = json.dumps({"path": str(home_secret)})
        home = await box.execute(ToolCallRequest("m", "fake__read", secret), ctx)
        assert mcp.status() == [{"name": "fake", "ok": True, "tools": 8}]
    assert (add.output, note.ok) == ("5", True)
    assert (ws / "notes.txt").read_text() == "hi\n"
    assert tmp.output in ("/tmp", "(unset)")
    assert home.output == "cannot read: No such file or directory"  # the home is hidden
