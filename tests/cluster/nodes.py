"""Several real `gadget hub` nodes on one fresh PostgreSQL database and one Redis server.

Each test gets its own database (tests/postgres.py) and its own Redis namespace
(`GADGET_REDIS_NAMESPACE`), whose keys are deleted afterwards; nothing else in Redis is
touched. :class:`TurnView` reads what an IDE received the way the IDEs do (a cursor per
turn), so a test counts what a person would see. In a test::

    async with hub_nodes(procs, 2) as nodes:
        hub1, hub2 = nodes.hubs
        api = procs.client(hub1.url)
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from tests.fakes.processes import HubProcess, Processes
from tests.harness import EventLog, HubClient
from tests.postgres import fresh_database

REDIS_URL = "redis://127.0.0.1:6379/0"


async def redis_or_skip() -> None:
    """Skip, saying why, when the local Redis server does not answer."""
    client = aioredis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        await client.ping()
    except (RedisError, OSError) as exc:
        pytest.skip(f"Redis not reachable at {REDIS_URL}: {exc}")
    finally:
        await client.aclose()


@contextlib.asynccontextmanager
async def redis_namespace() -> AsyncIterator[str]:
    """A namespace of its own; its keys (and only those) are deleted afterwards."""
    await redis_or_skip()
    namespace = f"gadget-test-{secrets.token_hex(5)}"
    try:
        yield namespace
    finally:
        client = aioredis.from_url(REDIS_URL)
        try:
            keys = [k async for k in client.scan_iter(match=f"{namespace}:*", count=500)]
            if keys:
                await client.delete(*keys)
        finally:
            await client.aclose()


@dataclass
class Nodes:
    """The hub nodes of a test and what they share."""

    hubs: list[HubProcess]
    database_url: str
    namespace: str

    async def health(self, hub: HubProcess) -> dict[str, Any]:
        """`GET /healthz` of one node."""
        async with httpx.AsyncClient(base_url=hub.url, timeout=10) as http:
            body: dict[str, Any] = (await http.get("/healthz")).json()
            return body

    async def holding_drones(self) -> list[HubProcess]:
        """The nodes a drone socket is connected to now."""
        counts = [(await self.health(h))["drones"] for h in self.hubs if h.running]
        return [h for h, n in zip([h for h in self.hubs if h.running], counts, strict=True) if n]


@contextlib.asynccontextmanager
async def hub_nodes(procs: Processes, count: int, **settings: Any) -> AsyncIterator[Nodes]:
    """`count` started hub nodes (hub1, hub2...) sharing a fresh database and a namespace."""
    async with redis_namespace() as namespace, fresh_database() as url:
        shared = {"database_url": url, "redis_url": REDIS_URL, "redis_namespace": namespace}
        hubs = [
            await procs.hub(f"hub{i}", start=False, **shared, **settings)
            for i in range(1, count + 1)
        ]
        await hubs[0].start()  # the first migrates the database; the others then together
        await asyncio.gather(*(h.start() for h in hubs[1:]))
        try:
            yield Nodes(hubs, url, namespace)
        finally:
            await procs.close()  # the hubs let go of the database before it is dropped


async def drones_seen(api: HubClient, token: str) -> list[dict[str, Any]]:
    """`GET /api/drones` of the node `api` talks to."""
    r = await api.http.get("/api/drones", headers=api.bearer(token))
    r.raise_for_status()
    drones: list[dict[str, Any]] = r.json()
    return drones


async def finished_turn(api: HubClient, token: str, turn_id: str) -> dict[str, Any]:
    """The stored turn once it is no longer processing."""
    async with asyncio.timeout(60):
        while True:
            turn = await api.get_turn(token, turn_id)
            if turn["status"] != "processing":
                return turn
            await asyncio.sleep(0.05)


def responding(turn: dict[str, Any]) -> str:
    """The answer text of a turn (REST or snapshot JSON)."""
    return "".join(b["content"] for b in turn["blocks"] if b["mode"] == "responding")


@dataclass
class TurnView:
    """One turn as an IDE shows it: a cursor over the numbered stream (docs/protocol.md).

    A snapshot replaces the view when it is at or past the cursor; an event is applied
    when its seq is the cursor's next, dropped at or below it, held above it until the
    missing ones come.
    """

    turn_id: str
    cursor: int = 0
    text: str = ""
    snapshots: int = 0
    #: Events at or below the cursor when they came (resends, or held by a snapshot).
    dropped: int = 0
    held: dict[int, tuple[str, tuple[Any, ...]]] = field(default_factory=dict)
    #: The seq of every event applied, in order (a snapshot counts as its seq).
    applied: list[int] = field(default_factory=list)

    @classmethod
    def of(cls, logs: list[EventLog], turn_id: str) -> TurnView:
        """The view built from the logs of one IDE's successive sockets, in order."""
        view = cls(turn_id)
        for log in logs:
            for (event, args), marked in zip(log.events, log.marks, strict=True):
                if event == "turnSnapshot" and args and args[0].get("_id") == turn_id:
                    view.snapshot(args[0])
                elif marked is not None and marked[0] == turn_id:
                    view.event(event, args, marked[1])
        return view

    def snapshot(self, turn: dict[str, Any]) -> None:
        """A `turnSnapshot` of this turn."""
        if turn["seq"] < self.cursor:
            return
        self.snapshots += 1
        self.text, self.cursor = responding(turn), turn["seq"]
        self.applied.append(turn["seq"])
        self.held = {s: e for s, e in self.held.items() if s > self.cursor}
        self._drain()

    def event(self, event: str, args: tuple[Any, ...], seq: int) -> None:
        """A numbered stream event of this turn."""
        if seq <= self.cursor:
            self.dropped += 1
        elif seq == self.cursor + 1:
            self._apply(event, args, seq)
            self._drain()
        else:
            self.held[seq] = (event, args)

    def _apply(self, event: str, args: tuple[Any, ...], seq: int) -> None:
        if event == "response":
            self.text += args[0]
        self.cursor = seq
        self.applied.append(seq)

    def _drain(self) -> None:
        while self.cursor + 1 in self.held:
            event, args = self.held.pop(self.cursor + 1)
            self._apply(event, args, self.cursor + 1)


async def wait_streamed(log: EventLog, turn_id: str, count: int, timeout: float = 30) -> None:
    """Until `log` holds `count` numbered `response` events of `turn_id`."""
    async with asyncio.timeout(timeout):
        while True:  # polled: the log's own wait is per event, not per count
            if sum(1 for _, m in log.marked("response") if m and m[0] == turn_id) >= count:
                return
            await asyncio.sleep(0.02)


async def wait_said(log: EventLog, turn_id: str, text: str, timeout: float = 30) -> None:
    """Until the `response` events of `turn_id` in `log` hold `text`."""
    async with asyncio.timeout(timeout):
        while True:  # polled, as above
            said = "".join(a[0] for a, m in log.marked("response") if m and m[0] == turn_id)
            if text in said:
                return
            await asyncio.sleep(0.02)


async def wait_count(log: EventLog, event: str, args: tuple[Any, ...], count: int) -> None:
    """Until `log` holds `count` `event`s with exactly `args`."""
    async with asyncio.timeout(30):
        while True:  # polled, as above
            if log.of(event).count(args) >= count:
                return
            await asyncio.sleep(0.02)
