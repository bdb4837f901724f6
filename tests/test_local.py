"""`gadget up` as a person runs it: a subprocess that serves the IDE and stops on Ctrl-C."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import sys
from collections.abc import Callable
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def descendants(pid: int) -> set[int]:
    """Every live process below `pid`, read from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


async def read_until(stream: asyncio.StreamReader, pattern: str, timeout: float = 30) -> str:
    seen = ""
    async with asyncio.timeout(timeout):
        while not re.search(pattern, seen):
            line = await stream.readline()
            if not line:
                raise AssertionError(f"gadget up ended before printing {pattern!r}:\n{seen}")
            seen += line.decode()
    return seen


async def eventually(check: Callable[[], bool], timeout: float) -> bool:
    """Whether `check()` becomes true within `timeout` seconds (polled: processes have no events)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if check():
            return True
        await asyncio.sleep(0.1)
    return check()


async def start_up(tmp_path: Path) -> tuple[asyncio.subprocess.Process, str, str]:
    """`gadget up` in its own session (as from a terminal): (process, url, banner)."""
    workspace = tmp_path / "myproject"
    workspace.mkdir(exist_ok=True)
    port = free_port()
    env = {
        **os.environ,
        "GADGET_HOME": str(tmp_path / "home"),
        "GADGET_LLM_BASE_URL": f"http://127.0.0.1:{free_port()}/v1",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gadget.cli", "up", "--port", str(port),
        cwd=workspace, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    assert proc.stdout is not None
    banner = await read_until(proc.stdout, r"Ctrl-C stops")
    return proc, f"http://127.0.0.1:{port}", banner


async def wait_drone_online(http: httpx.AsyncClient, headers: dict[str, str]) -> None:
    async with asyncio.timeout(20):
        while True:
            drones = (await http.get("/api/drones", headers=headers)).json()
            if drones and drones[0]["online"]:
                return
            await asyncio.sleep(0.2)


async def stop(proc: asyncio.subprocess.Process) -> str:
    """Ctrl-C as a terminal sends it (to the whole foreground group); the rest of the output."""
    os.killpg(proc.pid, signal.SIGINT)
    assert proc.stdout is not None
    async with asyncio.timeout(30):
        rest = (await proc.stdout.read()).decode()
        code = await proc.wait()
    assert code == 0, rest
    return rest


async def test_up_serves_the_ide_with_a_local_drone_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    proc, url, banner = await start_up(tmp_path)
    try:
        creds = re.search(r"log in as (\S+) with password (\S+)", banner)
        assert creds, banner
        assert "cannot reach the model" in banner + (await read_until(proc.stdout, "note:"))  # type: ignore[arg-type]
        async with httpx.AsyncClient(base_url=url, timeout=10) as http:
            page = await http.get("/")
            assert page.status_code == 200 and "<html" in page.text.lower()
            login = await http.post(
                "/api/auth/login", json={"username": creds[1], "password": creds[2]}
            )
            assert login.status_code == 200, login.text
            headers = {"Authorization": f"Bearer {login.json()['token']}"}
            projects = (await http.get("/api/projects", headers=headers)).json()
            assert [p["name"] for p in projects] == ["myproject"]
            await wait_drone_online(http, headers)
        family = descendants(proc.pid)
        assert family, "the drone should run as a child process"
        rest = await stop(proc)
        assert "again" not in rest, rest  # the drone was stopped once, gracefully
        await asyncio.sleep(0.2)
        assert not [p for p in family if alive(p)], "a process outlived gadget up"
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()

    # A second run reuses the user, the drone and the project.
    proc, url, banner = await start_up(tmp_path)
    try:
        assert "password in" in banner and "with password" not in banner
        async with httpx.AsyncClient(base_url=url, timeout=10) as http:
            login = await http.post(
                "/api/auth/login", json={"username": creds[1], "password": creds[2]}
            )
            headers = {"Authorization": f"Bearer {login.json()['token']}"}
            await wait_drone_online(http, headers)
            assert len((await http.get("/api/drones", headers=headers)).json()) == 1
            assert len((await http.get("/api/projects", headers=headers)).json()) == 1
        await stop(proc)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_a_killed_up_takes_its_drone_with_it(tmp_path: Path) -> None:
    proc, _, _ = await start_up(tmp_path)
    try:
        assert await eventually(lambda: bool(descendants(proc.pid)), 20)
        family = descendants(proc.pid)
        proc.kill()
        await proc.wait()
        assert await eventually(lambda: not [p for p in family if alive(p)], 15), (
            "the drone outlived it"
        )
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
