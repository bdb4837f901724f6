"""`gadget up` as a person runs it: a subprocess that serves the IDE and stops on Ctrl-C."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import sys
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


async def test_up_serves_the_ide_with_a_local_drone_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    workspace = tmp_path / "myproject"
    workspace.mkdir()
    port = free_port()
    env = {
        **os.environ,
        "GADGET_HOME": str(tmp_path / "home"),
        "GADGET_LLM_BASE_URL": f"http://127.0.0.1:{free_port()}/v1",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gadget.cli",
        "up",
        "--port",
        str(port),
        cwd=workspace,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        assert proc.stdout is not None
        banner = await read_until(proc.stdout, r"Ctrl-C stops")
        creds = re.search(r"log in as (\S+) with password (\S+)", banner)
        assert creds, banner
        url = f"http://127.0.0.1:{port}"
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
            async with asyncio.timeout(20):
                while True:
                    drones = (await http.get("/api/drones", headers=headers)).json()
                    if drones and drones[0]["online"]:
                        break
                    await asyncio.sleep(0.2)
        family = descendants(proc.pid)
        assert family, "the drone should run as a child process"
        proc.send_signal(signal.SIGINT)
        async with asyncio.timeout(30):
            code = await proc.wait()
        assert code == 0
        await asyncio.sleep(0.2)
        assert not [p for p in family if alive(p)], "a process outlived gadget up"
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
