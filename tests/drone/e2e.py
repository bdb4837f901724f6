"""A real drone (in this process or as a `python -m gadget.drone` subprocess) on a real hub."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gadget.config import DroneSettings
from gadget.drone.client import Drone
from tests.drone.helpers import drone_settings
from tests.fakes.llm_server import ScriptedLLM
from tests.harness import Client, HubHarness


@dataclass
class Session:
    """A user, a registered drone and a project on a hub, and the drone's settings."""

    hub: HubHarness
    token: str
    drone_id: str
    project_id: str
    settings: DroneSettings
    ide: Client | None = None
    chat_id: str | None = None

    async def lock(self) -> str:
        """Connect an IDE (once) and lock the drone for the (same) chat session."""
        if self.ide is None:
            self.ide = await self.hub.ide(self.token)
        chat = {"_id": self.chat_id} if self.chat_id else None
        ok, chat_id = await self.ide.call(
            "requestSessionLock", {"_id": self.drone_id}, {"_id": self.project_id}, chat
        )
        assert ok is True, chat_id
        self.chat_id = str(chat_id)
        return self.chat_id

    async def submit(self, prompt: str) -> str:
        assert self.ide is not None
        ok, turn_id = await self.ide.call("submitPrompt", prompt)
        assert ok is True, turn_id
        return str(turn_id)

    async def completion(self, turn_id: str, timeout: float = 15) -> tuple[Any, ...]:
        """The `workOrderComplete` the IDE got for `turn_id`."""
        assert self.ide is not None
        return await self.ide.log.wait_for("workOrderComplete", lambda a: a[0] == turn_id, timeout)

    async def turn(self, turn_id: str) -> dict[str, Any]:
        """The stored turn, once the hub has written everything."""
        await self.hub.settle()
        return await self.hub.get_turn(self.token, turn_id)

    def env(self) -> dict[str, str]:
        """The environment of a drone subprocess with these settings."""
        s = self.settings
        values = {
            "GADGET_HUB_URL": s.hub_url,
            "GADGET_DRONE_ID": s.drone_id or "",
            "GADGET_DRONE_KEY": s.drone_key or "",
            "GADGET_WORKSPACE": str(s.workspace),
            "GADGET_LLM_BASE_URL": s.llm_base_url,
            "GADGET_LLM_MODEL": s.llm_model,
            "GADGET_LLM_API_KEY": s.llm_api_key,
            "GADGET_LLM_RETRY_DELAY_S": str(s.llm_retry_delay_s),
            "GADGET_RECONNECT_DELAY_S": str(s.reconnect_delay_s),
            "GADGET_RECONNECT_DELAY_MAX_S": str(s.reconnect_delay_max_s),
            "GADGET_KILL_GRACE_S": str(s.kill_grace_s),
            "GADGET_SANDBOX": s.sandbox,
            "GADGET_SANDBOX_NETWORK": "on" if s.sandbox_network else "off",
        }
        return {**os.environ, **values}


async def new_session(hub: HubHarness, llm: ScriptedLLM, workspace: Path, **over: Any) -> Session:
    token = await hub.signup("ann")
    drone_id, key = await hub.create_drone(token, "box")
    project_id = await hub.create_project(token, "calc")
    settings = drone_settings(
        workspace, llm.base_url, hub_url=hub.url, drone_id=drone_id, drone_key=key, **over
    )
    return Session(hub, token, drone_id, project_id, settings)


@contextlib.asynccontextmanager
async def running_drone(settings: DroneSettings) -> AsyncIterator[tuple[Drone, asyncio.Task[int]]]:
    """A drone in this process, connected; stopped gracefully at the end."""
    drone = Drone(settings)
    task = asyncio.create_task(drone.run())
    try:
        async with asyncio.timeout(10):
            while not drone.sio.connected:
                if task.done():
                    task.result()
                await asyncio.sleep(0.02)
        yield drone, task
    finally:
        drone.stop()
        await asyncio.wait_for(task, 15)


@contextlib.asynccontextmanager
async def drone_process(session: Session) -> AsyncIterator[asyncio.subprocess.Process]:
    """`python -m gadget.drone` as a subprocess (killed at the end if still alive)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gadget.drone", env=session.env(),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
        assert proc.stderr is not None
        await proc.stderr.read()
        await proc.wait()


async def wait_online(session: Session, timeout: float = 15) -> None:
    """Until the hub sees the drone (a lock succeeds)."""
    async with asyncio.timeout(timeout):
        while True:
            if session.hub.hub.drones.here(session.drone_id) is not None:
                return
            await asyncio.sleep(0.05)


def alive(pid: int) -> bool:
    """Whether `pid` is a live (not zombie) process."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    with contextlib.suppress(OSError):
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return False
