"""Building blocks of the hub tests: a user with a drone locked by an IDE, and a turn."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tests.harness import Client, HubHarness

#: Events the hub originates to IDEs on its own (not forwarded from the drone).
HUB_ONLY = {"droneState", "turnStarted", "turnSnapshot", "error"}


@dataclass
class Session:
    """A user, their drone (connected) and project, and an IDE holding the lock."""

    token: str
    ide: Client
    drone: Client
    chat_id: str
    drone_id: str
    key: str
    project_id: str


async def setup_session(hub: HubHarness, user: str = "ann", drone_ack: Any = True) -> Session:
    """Sign `user` up, register and connect a drone, and lock it from a new IDE socket."""
    token = await hub.signup(user)
    drone_id, key = await hub.create_drone(token)
    project_id = await hub.create_project(token)
    drone = await hub.drone(drone_id, key, ack=drone_ack)
    ide = await hub.ide(token)
    ok, chat_id = await ide.call("requestSessionLock", {"_id": drone_id}, {"_id": project_id}, None)
    assert ok is True, chat_id
    return Session(token, ide, drone, chat_id, drone_id, key, project_id)


async def lock(s: Session, ide: Client, chat_id: str | None = None) -> Any:
    """requestSessionLock from `ide` for the session's drone and project (its chat by default)."""
    chat = {"_id": chat_id or s.chat_id}
    return await ide.call("requestSessionLock", {"_id": s.drone_id}, {"_id": s.project_id}, chat)


async def start_turn(ide: Client, drone: Client, prompt: str = "hello") -> str:
    """Submit a prompt and wait until the drone got its work order; returns the turn id."""
    ok, turn_id = await ide.call("submitPrompt", prompt)
    assert ok is True, turn_id
    await drone.log.wait_for("processWorkOrder", lambda a: a[3]["_id"] == turn_id)
    return str(turn_id)


async def drone_state(hub: HubHarness, token: str, drone_id: str) -> dict[str, Any]:
    """The drone as GET /api/drones shows it to `token`'s user."""
    r = await hub.http.get("/api/drones", headers=hub.bearer(token))
    assert r.status_code == 200, r.text
    (found,) = [d for d in r.json() if d["_id"] == drone_id]
    return dict(found)


async def eventually(check: Callable[[], Any], timeout: float = 5) -> Any:
    """Poll `check` (sync or async) until it returns a truthy value; returns it."""
    async with asyncio.timeout(timeout):
        while True:
            value = check()
            if asyncio.iscoroutine(value):
                value = await value
            if value:
                return value
            await asyncio.sleep(0.02)


def forwarded_since(client: Client, start: int) -> list[tuple[str, tuple[Any, ...]]]:
    """Events `client` received after index `start`, without the hub's own ones."""
    return [(e, a) for e, a in client.log.events[start:] if e not in HUB_ONLY]
