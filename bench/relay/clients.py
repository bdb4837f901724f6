"""The same Socket.IO clients for both servers: N drone → IDE streams.

Each stream is one drone socket and one IDE socket (`bench.relay.wire.Socket`:
raw Engine.IO/Socket.IO framing over `websockets`, so the load generator stays
far cheaper per event than the servers). On the hub the IDE locks the drone
for a chat session and submits a prompt, so the drone is streaming a real turn
(recorded); on the bare relay the pair shares a room named in auth.

Every token is `"<perf_counter at send> <sequence number>"`: the IDE computes
its latency and checks that each stream's tokens arrive complete and in order.
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

from bench.relay.wire import Socket

CONCURRENT_SETUPS = 10


@dataclass
class Stream:
    """One drone → IDE pair and its counters (the IDE counts what it receives)."""

    drone: Socket = field(default_factory=Socket)
    ide: Socket = field(default_factory=Socket)
    window: int = 64
    sent: int = 0
    received: int = 0
    #: Tokens whose sequence number was not the one expected next (a loss or a reordering).
    misordered: int = 0
    space: asyncio.Event = field(default_factory=asyncio.Event)
    #: (send time, latency) of each received token while recording, else None.
    latencies: list[tuple[float, float]] | None = None
    #: The turn the drone streams (tokens mode numbers its events), and its last seq.
    turn_id: str = ""
    seq: int = 0

    def __post_init__(self) -> None:
        self.ide.on_event = self.on_ide_event

    def on_ide_event(self, name: str, args: list[Any]) -> None:
        """Count `response` tokens; the hub's other events (status, turnStarted, ...) pass."""
        if name != "response":
            return None
        stamp, seq = args[0].split(" ", 1)
        if int(seq) != self.received:
            self.misordered += 1
        self.received += 1
        if self.latencies is not None:
            sent_at = float(stamp)
            self.latencies.append((sent_at, perf_counter() - sent_at))
        if self.sent - self.received <= self.window // 2:
            self.space.set()
        return None

    def send(self) -> None:
        """Emit one `response` token carrying its send time and sequence number."""
        self.drone.emit("response", f"{perf_counter():.6f} {self.sent}")
        self.sent += 1

    @property
    def connected(self) -> bool:
        return self.drone.connected and self.ide.connected

    async def close(self) -> None:
        for sock in (self.drone, self.ide):
            with contextlib.suppress(Exception):
                await sock.close()


async def _bounded(jobs: list[Callable[[], Awaitable[Stream]]]) -> list[Stream]:
    sem = asyncio.Semaphore(CONCURRENT_SETUPS)

    async def run(job: Callable[[], Awaitable[Stream]]) -> Stream:
        async with sem:
            return await job()

    return list(await asyncio.gather(*(run(j) for j in jobs)))


async def bare_streams(url: str, n: int, window: int) -> list[Stream]:
    """N connected pairs on the bare relay (room `s<i>`)."""

    async def one(i: int) -> Stream:
        s = Stream(window=window, turn_id=f"t{i}")
        await s.ide.connect(url, {"room": f"s{i}"})
        await s.drone.connect(url, {"room": f"s{i}", "drone": True})
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
    got_order = asyncio.Event()

    def on_drone_event(name: str, args: list[Any]) -> list[Any] | None:
        if name != "processWorkOrder":
            return None
        got_order.set()
        return [True]  # the hub fails the turn unless the drone acks within 30 s

    s = Stream(drone=Socket(on_drone_event))
    await s.drone.connect(url, {"registrationId": drone[0], "key": drone[1]})
    await s.ide.connect(url, {"token": token})
    ok, chat_id = await s.ide.call(
        "requestSessionLock", {"_id": drone[0]}, {"_id": project_id}, None
    )
    assert ok is True, chat_id
    ok, turn_id = await s.ide.call("submitPrompt", "stream tokens")
    assert ok is True, turn_id
    async with asyncio.timeout(30):
        await got_order.wait()
    s.turn_id = turn_id
    return s


async def hub_streams(url: str, n: int, window: int) -> list[Stream]:
    """N drones of one user, each locked by its own IDE socket and streaming a turn."""
    token, project_id, drones = await _register(url, n)
    jobs = [functools.partial(_hub_stream, url, token, project_id, d) for d in drones]
    streams = await _bounded(jobs)
    for s in streams:
        s.window = window
    return streams
