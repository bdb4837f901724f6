"""Drone + IDE pairs on one hub: register, connect, lock, submit; stream; reconnect; idle drones.

Every socket is a `bench.relay.wire.Socket` (raw Engine.IO/Socket.IO, far cheaper than the
hub per event), so one load-generator process holds thousands. A pair is set up as a person
and a drone would: the drone registered over REST (`POST /api/drones`), the drone socket
authenticated by its key, the IDE socket by the user's JWT, `requestSessionLock`,
`submitPrompt`, the drone acknowledging `processWorkOrder`. Users are either distinct (one
per pair; seeded straight into the hub's database before it starts, with tokens signed by
the hub's key: a thousand argon2 sign-ups would take minutes of CPU and measure nothing
here) or one user with every drone (signed up over REST).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from time import perf_counter
from typing import Any, TypeVar

import httpx

from bench.relay.serve import SECRET_KEY
from bench.relay.wire import Socket

T = TypeVar("T")


@dataclass(eq=False)
class Pair:
    """One drone and the IDE socket that locked it, and the IDE's counters."""

    token: str
    project_id: str
    drone_id: str = ""
    key: str = ""
    turn_id: str = ""
    drone: Socket = field(default_factory=Socket)
    ide: Socket = field(default_factory=Socket)
    sent: int = 0
    received: int = 0
    #: As a drone process' `instance`: the same across its reconnects.
    instance: str = field(default_factory=lambda: os.urandom(8).hex())
    misordered: int = 0
    latencies: list[float] | None = None

    def on_ide_event(self, name: str, args: list[Any]) -> list[Any] | None:
        if name != "response" or not args or not isinstance(args[0], str):
            return None
        stamp, seq = args[0].split(" ", 1)
        if int(seq) != self.received:
            self.misordered += 1
        self.received += 1
        if self.latencies is not None:
            self.latencies.append(perf_counter() - float(stamp))
        return None

    def send(self) -> None:
        self.drone.emit("response", f"{perf_counter():.6f} {self.sent}")
        self.sent += 1


def _drone_events(name: str, args: list[Any]) -> list[Any] | None:
    return [True] if name == "processWorkOrder" else None


async def bounded(jobs: list[Callable[[], Awaitable[T]]], concurrency: int) -> list[T]:
    sem = asyncio.Semaphore(concurrency)

    async def run(job: Callable[[], Awaitable[T]]) -> T:
        async with sem:
            return await job()

    return list(await asyncio.gather(*(run(j) for j in jobs)))


# -- users -----------------------------------------------------------------------
async def seed_users(home: Path, n: int) -> list[str]:
    """N users written straight into the hub's (not yet started) database; their JWTs."""
    from gadget.config import Settings
    from gadget.hub.auth import Auth
    from gadget.store.database import make_engine, migrate
    from gadget.store.repository import Store

    settings = Settings(home=home, secret_key=SECRET_KEY)
    settings.ensure_home()
    await migrate(settings.resolved_database_url())
    store = Store(make_engine(settings.resolved_database_url()))
    auth = Auth(SECRET_KEY, settings.token_ttl_s)
    tokens = []
    try:
        for i in range(n):
            user = await store.create_user(f"u{i}", "argon2-not-used-by-the-bench")
            tokens.append(auth.issue_token(user.id))
    finally:
        await store.close()
        auth.close()
    return tokens


async def signup(http: httpx.AsyncClient, username: str) -> str:
    r = await http.post("/api/auth/register", json={"username": username, "password": "pw"})
    r.raise_for_status()
    token: str = r.json()["token"]
    return token


async def project(http: httpx.AsyncClient, token: str) -> str:
    r = await http.post("/api/projects", json={"name": "p"}, headers=_bearer(token))
    r.raise_for_status()
    project_id: str = r.json()["_id"]
    return project_id


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def register(http: httpx.AsyncClient, pair: Pair, name: str) -> None:
    """`POST /api/drones`: the pair's drone id and key."""
    r = await http.post("/api/drones", json={"name": name}, headers=_bearer(pair.token))
    r.raise_for_status()
    body = r.json()
    pair.drone_id, pair.key = body["registration"]["_id"], body["key"]


# -- sockets ---------------------------------------------------------------------
async def connect_drone(url: str, pair: Pair, timeout: float = 30) -> float:
    """Connect the pair's drone socket as `gadget drone` does; the seconds it took.

    Its auth says what it runs (`running`: the turn and the last event sent, which the
    hub numbered) and its process' `instance`, as the drone's client does on a reconnect.
    """
    auth: dict[str, Any] = {
        "registrationId": pair.drone_id,
        "key": pair.key,
        "instance": pair.instance,
        "hostname": "bench",
        "pid": os.getpid(),
        "running": {"turnId": pair.turn_id, "seq": pair.sent} if pair.turn_id else None,
    }
    pair.drone = Socket(_drone_events)
    began = perf_counter()
    await pair.drone.connect(url, auth, timeout)
    return perf_counter() - began


async def start_pair(url: str, pair: Pair) -> None:
    """Drone socket, IDE socket, lock, prompt; returns once the drone got its work order."""
    await connect_drone(url, pair)
    pair.ide = Socket(pair.on_ide_event)
    await pair.ide.connect(url, {"token": pair.token})
    ok, chat = await pair.ide.call(
        "requestSessionLock", {"_id": pair.drone_id}, {"_id": pair.project_id}, None
    )
    if ok is not True:
        raise RuntimeError(f"lock refused: {chat}")
    ok, turn = await pair.ide.call("submitPrompt", "stream")
    if ok is not True:
        raise RuntimeError(f"prompt refused: {turn}")
    pair.turn_id = turn


async def close_all(pairs: list[Pair]) -> None:
    async def close(sock: Socket) -> None:
        with contextlib.suppress(Exception):
            await sock.close(timeout=2)

    await asyncio.gather(*(close(s) for p in pairs for s in (p.drone, p.ide)))


# -- measurements ----------------------------------------------------------------
def rss_kib(pid: int) -> int:
    """The process' resident set, KiB."""
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def settle_rss(pid: int, seconds: float = 1.0) -> int:
    """RSS after a short pause (the hub finishes what the last requests started)."""
    await asyncio.sleep(seconds)
    return rss_kib(pid)


async def stream(pairs: list[Pair], rate: float, warmup: float, duration: float) -> list[float]:
    """Every pair sends `rate` events/s, phases spread; latencies after the warm-up."""
    step = 1 / rate / len(pairs)
    begin = perf_counter() + 0.1
    total, done, recording = int((warmup + duration) / step), 0, False
    while done < total:
        await asyncio.sleep(max(begin + done * step - perf_counter(), 0.001))
        if not recording and perf_counter() >= begin + warmup:
            recording = True
            for p in pairs:
                p.latencies = []
        due = min(total, max(done + 1, int((perf_counter() - begin) / step) + 1))
        for k in range(done, due):
            pairs[k % len(pairs)].send()
        done = due
    for _ in range(500):
        if all(p.received >= p.sent for p in pairs):
            break
        await asyncio.sleep(0.01)
    out = [x for p in pairs for x in (p.latencies or [])]
    for p in pairs:
        p.latencies = None
    return out


async def reconnect_storm(
    url: str, pairs: list[Pair], spread: float, wait_timeout: float
) -> tuple[list[float], int]:
    """Drop every drone socket, then reconnect all within `spread` s; (durations, failures).

    A connect fails when the hub has not accepted it within `wait_timeout` seconds
    (python-socketio's client gives the namespace 1 s by default) or refused it.
    """
    await asyncio.gather(*(_abort(p.drone) for p in pairs))
    await asyncio.sleep(1.0)  # as a drone's first reconnect delay
    began = perf_counter()

    async def one(i: int, pair: Pair) -> float | None:
        await asyncio.sleep(max(0.0, began + spread * i / len(pairs) - perf_counter()))
        try:
            return await connect_drone(url, pair, timeout=wait_timeout)
        except Exception as exc:
            errors[type(exc).__name__ + ": " + str(exc)[:120]] = (
                errors.get(type(exc).__name__ + ": " + str(exc)[:120], 0) + 1
            )
            return None

    errors: dict[str, int] = {}
    results = await asyncio.gather(*(one(i, p) for i, p in enumerate(pairs)))
    took = [r for r in results if r is not None]
    for text, n in errors.items():
        print(f"reconnect failures: {n} x {text}", file=sys.stderr)
    return took, len(results) - len(took)


async def _abort(sock: Socket) -> None:
    transport = getattr(sock, "_transport", None)
    if transport is not None:
        transport.abort()
    await asyncio.sleep(0)


def now() -> float:
    return time.monotonic()
