"""`gadget up` as a person runs it: a subprocess that serves the IDE and stops on Ctrl-C."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx

from gadget.config import Settings
from gadget.store.database import make_engine
from gadget.store.repository import Store


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


def gadget_command() -> list[str]:
    """The installed `gadget` console script (as a person runs it), else `python -m gadget.cli`."""
    script = Path(sys.executable).with_name("gadget")
    return [str(script)] if script.exists() else [sys.executable, "-m", "gadget.cli"]


def up_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "GADGET_HOME": str(tmp_path / "home"),
        "GADGET_LLM_BASE_URL": f"http://127.0.0.1:{free_port()}/v1",
        **extra,
    }


async def launch_up(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None, apart: bool = False
) -> asyncio.subprocess.Process:
    """`gadget up ARGS` in tmp_path/myproject, in its own session (as from a terminal).

    stderr goes with stdout unless `apart`.
    """
    workspace = tmp_path / "myproject"
    workspace.mkdir(exist_ok=True)
    return await asyncio.create_subprocess_exec(
        *gadget_command(), "up", *args,
        cwd=workspace, env=env or up_env(tmp_path), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE if apart else asyncio.subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip


async def start_up(
    tmp_path: Path, env: dict[str, str] | None = None, apart: bool = False
) -> tuple[asyncio.subprocess.Process, str, str]:
    """`gadget up` on a free port, once its banner is out: (process, url, banner)."""
    port = free_port()
    proc = await launch_up(tmp_path, "--port", str(port), env=env, apart=apart)
    assert proc.stdout is not None
    banner = await read_until(proc.stdout, r"Ctrl-C stops")
    return proc, f"http://127.0.0.1:{port}", banner


async def wait_drone_online(
    http: httpx.AsyncClient, headers: dict[str, str], online: bool = True
) -> None:
    async with asyncio.timeout(30):
        while True:
            drones = (await http.get("/api/drones", headers=headers)).json()
            if drones and drones[0]["online"] is online:
                return
            await asyncio.sleep(0.2)


async def log_in(http: httpx.AsyncClient, banner: str) -> dict[str, str]:
    """Authorization headers of the user whose credentials the first banner showed."""
    creds = re.search(r"log in as (\S+) with password (\S+)", banner)
    assert creds, banner
    login = await http.post("/api/auth/login", json={"username": creds[1], "password": creds[2]})
    assert login.status_code == 200, login.text
    return {"Authorization": f"Bearer {login.json()['token']}"}


def the_drone(proc: asyncio.subprocess.Process) -> int:
    """The pid of the one drone below `gadget up`."""
    (pid,) = descendants(proc.pid)
    return pid


async def stop(proc: asyncio.subprocess.Process, expect: int = 0) -> str:
    """Ctrl-C as a terminal sends it (to the whole foreground group); the rest of the output."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGINT)
    assert proc.stdout is not None
    async with asyncio.timeout(30):
        rest = (await proc.stdout.read()).decode()
        code = await proc.wait()
    assert code == expect, rest
    return rest


@contextlib.asynccontextmanager
async def killed_at_exit(proc: asyncio.subprocess.Process) -> AsyncIterator[None]:
    """Kill `proc`'s whole session if the test ends with it still running."""
    try:
        yield
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()


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
        # No library chatter on the console (httpx's request lines, uvicorn's banners).
        assert "HTTP Request" not in banner + rest and "uvicorn" not in banner + rest, rest
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
            drones = (await http.get("/api/drones", headers=headers)).json()
            assert len(drones) == 1
            assert len((await http.get("/api/projects", headers=headers)).json()) == 1
        await stop(proc)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    await print_and_forget_the_drone(tmp_path, drones[0]["_id"])


async def up_once(tmp_path: Path, *args: str) -> tuple[int, str]:
    """`gadget up ARGS` that exits by itself: (exit code, what it printed)."""
    proc = await launch_up(tmp_path, *args)
    async with killed_at_exit(proc), asyncio.timeout(60):
        assert proc.stdout is not None
        out = (await proc.stdout.read()).decode()
        return await proc.wait(), out


async def print_and_forget_the_drone(tmp_path: Path, drone_id: str) -> None:
    """The README's way to run `gadget up`'s drone by hand, and to forget it."""
    state = json.loads((tmp_path / "home" / "local.json").read_text())
    key = state["drones"][str(tmp_path / "myproject")]["key"]
    code, out = await up_once(tmp_path, "--print-drone")
    assert code == 0, out
    assert (
        f"GADGET_DRONE_KEY={key} gadget drone --id {drone_id} --workspace {tmp_path / 'myproject'}"
        in out
    )

    code, out = await up_once(tmp_path, "--forget-drone")
    assert code == 0 and f"forgot the drone of {tmp_path / 'myproject'} ({drone_id})" in out
    store = Store(make_engine(Settings(home=tmp_path / "home").resolved_database_url()))
    try:
        assert await store.get_drone(drone_id) is None  # its key no longer works
    finally:
        await store.close()
    code, out = await up_once(tmp_path, "--print-drone")
    assert code == 1 and out.startswith(f"gadget up: no drone is registered for {tmp_path}")


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


async def test_up_restarts_a_drone_that_dies_and_says_why(tmp_path: Path) -> None:
    proc, url, banner = await start_up(tmp_path)
    async with killed_at_exit(proc), httpx.AsyncClient(base_url=url, timeout=10) as http:
        headers = await log_in(http, banner)
        await wait_drone_online(http, headers)
        first = the_drone(proc)
        os.kill(first, signal.SIGKILL)
        assert proc.stdout is not None
        said = await read_until(proc.stdout, "restarting it in")
        assert "the drone was killed by SIGKILL; restarting it in 1s. Its last lines:" in said
        await read_until(proc.stdout, r"\n    .*connected to the hub")  # its stderr's tail
        await wait_drone_online(http, headers, online=False)
        await wait_drone_online(http, headers)
        assert the_drone(proc) != first
        await stop(proc)


async def test_up_stops_with_the_message_of_a_drone_that_cannot_start(tmp_path: Path) -> None:
    proc, url, banner = await start_up(tmp_path)
    async with killed_at_exit(proc), httpx.AsyncClient(base_url=url, timeout=10) as http:
        await wait_drone_online(http, await log_in(http, banner))
        shutil.rmtree(tmp_path / "myproject")  # the folder goes away under the drone
        os.kill(the_drone(proc), signal.SIGKILL)
        assert proc.stdout is not None
        async with asyncio.timeout(60):
            rest = (await proc.stdout.read()).decode()
            assert await proc.wait() == 1, rest
    assert (
        f"the drone cannot start: the workspace {tmp_path / 'myproject'} does not exist" in rest
    ), rest
    assert "Traceback" not in rest, rest


async def test_up_refuses_a_missing_workspace_before_registering_anything(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    for args, expected in (
        (("--workspace", str(missing)), f"gadget up: the workspace {missing} does not exist"),
        (("--workspace", __file__), f"gadget up: the workspace {__file__} is not a folder"),
    ):
        proc = await launch_up(tmp_path, "--port", str(free_port()), *args)
        async with killed_at_exit(proc):
            assert proc.stdout is not None
            out = (await proc.stdout.read()).decode()
            assert await proc.wait() == 1
        assert out.splitlines() == [out.splitlines()[0]] and out.startswith(expected), out
    assert not (tmp_path / "home").exists()  # no database, no user, no drone


async def test_up_on_a_busy_port_says_so_in_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = await launch_up(tmp_path, "--port", str(port))
        async with killed_at_exit(proc):
            assert proc.stdout is not None
            out = (await proc.stdout.read()).decode()
            assert await proc.wait() == 1
    assert out == f"gadget up: port {port} is in use: try --port\n"


async def test_up_logs_json_lines_with_the_drone_and_user_ids(tmp_path: Path) -> None:
    env = up_env(tmp_path, GADGET_LOG_FORMAT="json")
    proc, url, banner = await start_up(tmp_path, env=env, apart=True)
    assert proc.stderr is not None
    errors = asyncio.create_task(proc.stderr.read())
    async with killed_at_exit(proc), httpx.AsyncClient(base_url=url, timeout=10) as http:
        headers = await log_in(http, banner)
        await wait_drone_online(http, headers)
        user_id = (await http.get("/api/auth/me", headers=headers)).json()["_id"]
        drone_id = (await http.get("/api/drones", headers=headers)).json()[0]["_id"]
        os.kill(the_drone(proc), signal.SIGKILL)
        await wait_drone_online(http, headers, online=False)
        await wait_drone_online(http, headers)
        await stop(proc)
    entries = [json.loads(line) for line in (await errors).decode().splitlines()]
    restarts = [e for e in entries if "restarting it in" in e["message"]]
    assert len(restarts) == 1 and restarts[0]["logger"] == "gadget.supervisor"
    assert (restarts[0]["drone"], restarts[0]["user"]) == (drone_id, user_id)
    drone_lines = [e for e in entries if e["logger"].startswith("gadget.drone")]
    assert drone_lines and all(e["drone"] == drone_id for e in drone_lines)
