"""The same Socket.IO clients for both servers: N drone → IDE streams.

Each stream is one drone socket and one IDE socket (python-socketio AsyncClient,
websocket transport). On the hub the IDE locks the drone for a chat session and
submits a prompt, so the drone is streaming a real turn (recorded); on the bare
relay the pair shares a room named in auth.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from time import perf_counter
from typing import Any

import httpx
import socketio

from gadget.hub import fastjson

CONCURRENT_SETUPS = 10


def new_client() -> socketio.AsyncClient:
    """A client as a drone or IDE would have: no reconnection, orjson."""
    return socketio.AsyncClient(reconnection=False, json=fastjson, handle_sigint=False)


async def connect(sio: socketio.AsyncClient, url: str, auth: dict[str, Any]) -> None:
    await sio.connect(url, auth=auth, transports=["websocket"], wait_timeout=30)
    # The client gives up on a socket that queued nothing for pingInterval + 5 s: an idle
    # socket whose pong is late because the load generator is saturated (or the machine is
    # shared) would drop. Tolerate that client-side lag; the server's own timeouts still apply.
    sio.eio.ping_timeout = max(sio.eio.ping_timeout, 120)


@dataclass
class Stream:
    """One drone → IDE pair and its counters (the IDE counts what it receives)."""

    drone: socketio.AsyncClient = field(default_factory=new_client)
    ide: socketio.AsyncClient = field(default_factory=new_client)
    window: int = 64
    sent: int = 0
    received: int = 0
    space: asyncio.Event = field(default_factory=asyncio.Event)
    #: (send time, latency) of each received token while recording, else None.
    latencies: list[tuple[float, float]] | None = None

    def __post_init__(self) -> None:
        self.ide.on("response", handler=self.on_token)

    def on_token(self, text: str) -> None:
        """The IDE got a token: count it, note its latency, reopen the sender's window."""
        self.received += 1
        if self.latencies is not None:
            sent_at = float(text[: text.index(" ")])
            self.latencies.append((sent_at, perf_counter() - sent_at))
        if self.sent - self.received <= self.window // 2:
            self.space.set()

    async def send(self) -> None:
        """Emit one `response` token carrying its send time."""
        await self.drone.emit("response", f"{perf_counter():.6f} tok")
        self.sent += 1

    async def close(self) -> None:
        for sio in (self.drone, self.ide):
            with contextlib.suppress(Exception):
                await sio.disconnect()


async def _bounded(jobs: list[Callable[[], Awaitable[Stream]]]) -> list[Stream]:
    sem = asyncio.Semaphore(CONCURRENT_SETUPS)

    async def run(job: Callable[[], Awaitable[Stream]]) -> Stream:
        async with sem:
            return await job()

    return list(await asyncio.gather(*(run(j) for j in jobs)))


async def bare_streams(url: str, n: int, window: int) -> list[Stream]:
    """N connected pairs on the bare relay (room `s<i>`)."""

    async def one(i: int) -> Stream:
        s = Stream(window=window)
        await connect(s.ide, url, {"room": f"s{i}"})
        await connect(s.drone, url, {"room": f"s{i}", "drone": True})
        return s

    return await _bounded([functools.partial(one, i) for i in range(n)])


async def _register(url: str, n: int) -> tuple[str, str, list[tuple[str, str]]]:
    """A user, a project and N drones over REST: (token, project id, [(drone id, key)])."""
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        r = await http.post("/api/auth/register", json={"username": "bench", "password": "pw"})
        r.raise_for_status()
        token = r.json()["token"]
        auth = {"Authorization": f"Bearer {token}"}
        r = await http.post("/api/projects", json={"name": "bench"}, headers=auth)
        r.raise_for_status()
        project_id = r.json()["_id"]
        drones = []
        for i in range(n):
            r = await http.post("/api/drones", json={"name": f"d{i}"}, headers=auth)
            r.raise_for_status()
            drones.append((r.json()["registration"]["_id"], r.json()["key"]))
    return token, project_id, drones


async def _hub_stream(url: str, token: str, project_id: str, drone: tuple[str, str]) -> Stream:
    s = Stream()
    got_order = asyncio.Event()

    def process_work_order(*_: Any) -> bool:
        got_order.set()
        return True

    s.drone.on("processWorkOrder", handler=process_work_order)
    await connect(s.drone, url, {"registrationId": drone[0], "key": drone[1]})
    await connect(s.ide, url, {"token": token})
    lock = ({"_id": drone[0]}, {"_id": project_id}, None)
    ok, chat_id = await s.ide.call("requestSessionLock", lock, timeout=30)
    assert ok is True, chat_id
    ok, turn_id = await s.ide.call("submitPrompt", "stream tokens", timeout=30)
    assert ok is True, turn_id
    async with asyncio.timeout(30):
        await got_order.wait()
    return s


async def hub_streams(url: str, n: int, window: int) -> list[Stream]:
    """N drones of one user, each locked by its own IDE socket and streaming a turn."""
    token, project_id, drones = await _register(url, n)
    jobs = [functools.partial(_hub_stream, url, token, project_id, d) for d in drones]
    streams = await _bounded(jobs)
    for s in streams:
        s.window = window
    return streams
