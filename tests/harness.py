"""A real hub on a loopback port, and real Socket.IO clients that talk to it.

Used by every test that needs the hub: `hub` (conftest.py) starts one per test
with its own SQLite file; `EventLog` records what a client receives so tests can
wait for and assert on events in order.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import socketio
import uvicorn

from gadget.config import Settings
from gadget.hub.app import Hub
from gadget.hub.server import start, uvicorn_config
from gadget.protocol import STREAM_EVENTS, split_mark


@dataclass
class EventLog:
    """Every event a client received, in order, with a way to wait for one.

    A stream event's trailing `{"turnId", "seq"}` mark is kept apart (`marks`, same
    index as `events`), so assertions on arguments read as the reference's events.
    """

    events: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)
    marks: list[tuple[str, int] | None] = field(default_factory=list)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def attach(self, sio: socketio.AsyncClient) -> None:
        """Record every event `sio` receives (handlers registered later take precedence)."""

        async def catch_all(event: str, *args: Any) -> None:
            self.add(event, args)

        sio.on("*", handler=catch_all)

    def add(self, event: str, args: tuple[Any, ...]) -> None:
        marked = None
        if event in STREAM_EVENTS:
            args, marked = split_mark(args)
        self.events.append((event, args))
        self.marks.append(marked)
        self._changed.set()

    def marked(self, event: str) -> list[tuple[tuple[Any, ...], tuple[str, int] | None]]:
        """Each `event` received so far with its mark (None when it had none)."""
        return [(a, m) for (e, a), m in zip(self.events, self.marks, strict=True) if e == event]

    def of(self, event: str) -> list[tuple[Any, ...]]:
        """The argument tuples of every `event` received so far."""
        return [a for e, a in self.events if e == event]

    async def wait_for(
        self,
        event: str,
        pred: Callable[[tuple[Any, ...]], bool] = lambda _: True,
        timeout: float = 10,
    ) -> tuple[Any, ...]:
        """The first `event` whose arguments satisfy `pred`, waiting up to `timeout` s."""
        async with asyncio.timeout(timeout):
            while True:
                for e, a in self.events:
                    if e == event and pred(a):
                        return a
                self._changed.clear()
                await self._changed.wait()


@dataclass
class Client:
    """A connected Socket.IO client and what it received."""

    sio: socketio.AsyncClient
    log: EventLog

    async def call(self, event: str, *args: Any, timeout: float = 10) -> Any:
        """Emit with an ack and return the ack's arguments."""
        return await self.sio.call(event, args, timeout=timeout)

    async def emit(self, event: str, *args: Any) -> None:
        """Emit without an ack."""
        await self.sio.emit(event, args)

    async def close(self) -> None:
        """Disconnect once everything emitted so far is written to the socket.

        (engine.io's client closes its websocket without waiting for its send queue, so an
        emit right before a disconnect could otherwise be lost on the way.)
        """
        if self.sio.connected:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.sio.eio.queue.join(), 5)
        await self.sio.disconnect()


class HubClient:
    """Helpers that act as a user of the hub at `url` (in this process or not): REST, sockets."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = httpx.AsyncClient(base_url=url, timeout=30)
        self.clients: list[Client] = []

    async def close(self) -> None:
        """Disconnect every client and close the HTTP client."""
        for c in self.clients:
            with contextlib.suppress(Exception):
                await c.sio.disconnect()
        await self.http.aclose()

    async def signup(self, username: str, password: str = "pw-secret") -> str:
        """Register a user; returns its token."""
        r = await self.http.post(
            "/api/auth/register", json={"username": username, "password": password}
        )
        assert r.status_code == 201, r.text
        token: str = r.json()["token"]
        return token

    def bearer(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    async def create_project(self, token: str, name: str = "proj") -> str:
        r = await self.http.post("/api/projects", json={"name": name}, headers=self.bearer(token))
        assert r.status_code == 201, r.text
        project_id: str = r.json()["_id"]
        return project_id

    async def create_drone(self, token: str, name: str = "drone") -> tuple[str, str]:
        """Register a drone; returns (registration id, key)."""
        r = await self.http.post("/api/drones", json={"name": name}, headers=self.bearer(token))
        assert r.status_code == 201, r.text
        body = r.json()
        return body["registration"]["_id"], body["key"]

    async def get_turn(self, token: str, turn_id: str) -> dict[str, Any]:
        r = await self.http.get(f"/api/turns/{turn_id}", headers=self.bearer(token))
        assert r.status_code == 200, r.text
        turn: dict[str, Any] = r.json()
        return turn

    async def connect(
        self, auth: dict[str, Any], setup: Callable[[socketio.AsyncClient], None] | None = None
    ) -> Client:
        """A connected client with `auth`; `setup` registers handlers before connecting."""
        sio = socketio.AsyncClient(reconnection=False)
        log = EventLog()
        log.attach(sio)
        if setup is not None:
            setup(sio)
        try:
            await sio.connect(self.url, auth=auth, transports=["websocket"], wait_timeout=10)
        except socketio.exceptions.ConnectionError:
            await sio.disconnect()  # else a refused client keeps its HTTP session open
            raise
        client = Client(sio, log)
        self.clients.append(client)
        return client

    async def ide(self, token: str, watch_drones: bool = False) -> Client:
        """A connected IDE socket (`watch_drones`: it gets every drone's `droneState`)."""
        auth: dict[str, Any] = {"token": token}
        if watch_drones:
            auth["watchDrones"] = True
        return await self.connect(auth)

    async def drone(
        self,
        registration_id: str,
        key: str,
        ack: Any = True,
        mode_ack: Any = True,
        revert_ack: Any = (True, {"reverted": True, "conflicts": [], "restored": []}),
    ) -> Client:
        """A scripted drone: records work orders, mode and revert requests, acknowledges them."""
        log_ref: list[EventLog] = []

        def setup(sio: socketio.AsyncClient) -> None:
            async def process(*args: Any) -> Any:
                log_ref[0].add("processWorkOrder", args)
                return ack

            async def terminate(*args: Any) -> Any:
                log_ref[0].add("requestTermination", args)
                return True

            async def mode(*args: Any) -> Any:
                log_ref[0].add("requestWorkspaceMode", args)
                return mode_ack

            async def revert(*args: Any) -> Any:
                log_ref[0].add("revertTurn", args)
                return revert_ack

            sio.on("processWorkOrder", handler=process)
            sio.on("requestTermination", handler=terminate)
            sio.on("requestWorkspaceMode", handler=mode)
            sio.on("revertTurn", handler=revert)

        sio = socketio.AsyncClient(reconnection=False)
        log = EventLog()
        log_ref.append(log)
        log.attach(sio)
        setup(sio)
        await sio.connect(
            self.url,
            auth={"registrationId": registration_id, "key": key},
            transports=["websocket"],
            wait_timeout=10,
        )
        client = Client(sio, log)
        self.clients.append(client)
        return client


class HubHarness(HubClient):
    """A hub running in this process, and helpers that act as a user of it."""

    def __init__(self, server: uvicorn.Server, hub: Hub, url: str) -> None:
        super().__init__(url)
        self.server = server
        self.hub = hub
        self.settings = hub.settings

    async def settle(self) -> None:
        """Wait until every buffered block and queued write is in the database."""
        await self.hub.settle()


@contextlib.asynccontextmanager
async def running_hub(settings: Settings, port: int = 0) -> AsyncIterator[HubHarness]:
    """Serve a hub with `settings` on loopback `port` (0: a free one) until the block ends."""
    config = uvicorn_config(settings, host="127.0.0.1", port=port, log_level="error")
    server = uvicorn.Server(config)
    task = await start(server)
    if not server.started:
        task.result()  # raises what stopped it
    port = server.servers[0].sockets[0].getsockname()[1]
    app: Any = config.app
    harness = HubHarness(server, app.hub, f"http://127.0.0.1:{port}")
    try:
        yield harness
    finally:
        await harness.close()
        server.should_exit = True
        await task


def hub_settings(home: Path, **overrides: Any) -> Settings:
    """Settings for a test hub: its own home and SQLite file, fast timers.

    New chat sessions start in "auto" here (the product's default is "ask"), so tests of
    everything but approvals run tools unasked; approval tests set their mode.
    """
    values: dict[str, Any] = {
        "default_permission_mode": "auto",
        "home": home,
        "secret_key": "test-secret-key-0123456789abcdef0123456789",
        "allow_signup": True,
        "retry_delay_ms": 100,
        "max_retries": 2,
        "drone_grace_s": 1.0,
        "work_order_ack_timeout_s": 5,
    }
    values.update(overrides)
    return Settings(**values)
