"""Several hub nodes: what each needs to reach the others, and what it refuses to start with.

Emits to rooms and sockets cross nodes through python-socketio's `AsyncRedisManager`
(every node publishes what it emits on one Redis channel and delivers what it hears to
its own sockets; acks of a hub→drone request find their way back to the asking node).
A few requests must run on one node, the one that records a drone's turn (it holds the
turn's live mirror): a snapshot for an IDE that locked the session elsewhere, a cancel
or an approval answer its mirror must know of. :class:`Cluster` carries such a
message to that node, by template method: the logic once, a backend supplies `_send`.
:class:`NodeRedisManager` is the Redis manager with one more kind of message, addressed
to one node, on the same channel (so it stays in order with the emits around it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import orjson
import redis.asyncio as aioredis
import socketio
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from gadget.config import Settings
from gadget.hub.exceptions import Misconfigured
from gadget.hub.rooms import LocalManager, RoomIndex
from gadget.hub.state.presence import MemoryPresence, Presence
from gadget.hub.state.presence_redis import RedisPresence

logger = logging.getLogger(__name__)

#: Handles one node-addressed message's payload.
NodeHandler = Callable[[dict[str, Any]], Awaitable[None]]

#: The `method` of a node-addressed message on the manager's channel.
NODE_METHOD = "gadget:node"
#: How such a message starts once encoded (orjson keeps key order and writes no spaces).
_NODE_PREFIX = b'{"method":"' + NODE_METHOD.encode() + b'"'
#: How a returned ack starts (it names the node it goes to, which may be this one).
_CALLBACK_PREFIX = b'{"method":"callback"'
#: Delivers an emit to this node's sockets in a room: (event, args, room) → whether done.
Deliver = Callable[[str, tuple[Any, ...], str | list[str]], Awaitable[bool]]
#: Messages queued for Redis past which an emit waits; messages sent in one pipeline.
PUBLISH_QUEUE_MAX = 10_000
PUBLISH_BATCH = 500
#: Seconds between two errors about messages Redis did not take.
LOST_LOG_S = 10.0


def check(settings: Settings) -> None:
    """Refuse settings several nodes cannot run with.

    Raises:
        Misconfigured: GADGET_REDIS_URL is set with an SQLite database (one node only).
    """
    if not settings.redis_url:
        return
    url = settings.resolved_database_url()
    try:
        backend = make_url(url).get_backend_name()
    except ArgumentError:
        return  # the store says what is wrong with the URL itself
    if backend == "sqlite":
        raise Misconfigured(
            "GADGET_REDIS_URL is set (several hub nodes) but the database is SQLite, which "
            "only one node can use: set GADGET_DATABASE_URL to a PostgreSQL database every "
            "node shares (postgresql+asyncpg://...), or unset GADGET_REDIS_URL for one node"
        )


def channel_of(settings: Settings) -> str:
    """The Redis pub/sub channel of this deployment's nodes."""
    return f"{settings.redis_namespace}:socketio"


class Cluster:
    """Messages addressed to one node; backends implement :meth:`_send`."""

    def __init__(self, node: str) -> None:
        self.node = node
        self._handlers: dict[str, NodeHandler] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def route(self, handlers: Mapping[str, NodeHandler]) -> None:
        """The handler of each kind of message this node answers."""
        self._handlers.update(handlers)

    async def send(self, node: str | None, kind: str, payload: dict[str, Any]) -> None:
        """Have `node` handle `kind` with `payload` (this node: at once, in this task)."""
        if node is None:
            return
        if node == self.node:
            await self.handle(kind, payload)
        else:
            await self._send(node, kind, payload)

    async def handle(self, kind: str, payload: dict[str, Any]) -> None:
        """Run the handler of `kind`; its failure is logged, never raised."""
        handler = self._handlers.get(kind)
        if handler is None:
            logger.warning("a node sent a message of unknown kind %r: ignored", kind[:60])
            return
        try:
            await handler(payload)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("handling a %s message from another node failed", kind)

    def received(self, kind: str, payload: dict[str, Any]) -> None:
        """A message for this node from another one: handled in a task of its own, so the
        channel's listener (which delivers every emit) never waits for it."""
        task = asyncio.get_running_loop().create_task(self.handle(kind, payload))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Cancel the messages still being handled."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _send(self, node: str, kind: str, payload: dict[str, Any]) -> None:
        raise NotImplementedError


class LocalCluster(Cluster):
    """One node: there is no other node to reach."""

    async def _send(self, node: str, kind: str, payload: dict[str, Any]) -> None:
        logger.warning("no node %s to send %s to: this hub is one node", node, kind)


class NodeRedisManager(RoomIndex, socketio.AsyncRedisManager):  # type: ignore[misc]
    """python-socketio's Redis manager, also carrying messages addressed to one node.

    It publishes in batches: `_publish` queues the message and returns, and one task
    sends what is queued as one pipeline of PUBLISH commands, in the order queued (so a
    drone's events stay in order, and a relay never waits a Redis round trip per event).
    Past `PUBLISH_QUEUE_MAX` queued messages an emit waits until Redis catches up.
    """

    name = "gadget-redis"

    def __init__(self, url: str, channel: str) -> None:
        super().__init__(url, channel=channel)
        self.cluster: Cluster | None = None
        #: Delivers an emit to this node's sockets in a room (the hub's bus, set by it).
        self.deliver_here: Deliver | None = None
        self._own = b'"host_id":"' + self.host_id.encode() + b'"'
        self._outgoing: deque[str] = deque()
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._publisher: asyncio.Task[None] | None = None
        self._unsent, self._said = 0, -LOST_LOG_S

    async def _publish(self, data: Any) -> None:
        # orjson whatever the server's json module: compact, so listeners can spot their
        # own emits and node messages by a few bytes (every node decodes it as JSON).
        await self._enqueue(orjson.dumps(data).decode())

    async def _enqueue(self, message: str) -> None:
        self._outgoing.append(message)
        self._idle.clear()
        if self._publisher is None or self._publisher.done():
            self._publisher = asyncio.get_running_loop().create_task(
                self._publish_loop(), name="redis-publisher"
            )
        self._wake.set()
        if len(self._outgoing) >= PUBLISH_QUEUE_MAX:
            self._room.clear()
            await self._room.wait()

    async def _publish_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._outgoing:
                count = min(len(self._outgoing), PUBLISH_BATCH)
                await self._send([self._outgoing.popleft() for _ in range(count)])
                if len(self._outgoing) < PUBLISH_QUEUE_MAX:
                    self._room.set()
            self._idle.set()

    async def _send(self, batch: list[str]) -> None:
        for attempt in (1, 2):
            try:
                if not self.connected:  # type: ignore[has-type]
                    self._redis_connect()
                async with self.redis.pipeline(transaction=False) as pipe:
                    for message in batch:
                        pipe.publish(self.channel, message)
                    await pipe.execute()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.connected = False
                if attempt == 2:
                    self._lost(len(batch), exc)

    def _lost(self, count: int, exc: Exception) -> None:
        """Count messages Redis did not take; say so at most every LOST_LOG_S seconds."""
        self._unsent += count
        now = time.monotonic()
        if now - self._said >= LOST_LOG_S:
            logger.error("could not publish %d messages to Redis (other nodes miss them): %s",
                         self._unsent, exc)  # fmt: skip
            self._unsent, self._said = 0, now

    async def drain(self, timeout: float) -> None:
        """Until every queued message is published (at most `timeout` s), then stop."""
        publisher, self._publisher = self._publisher, None
        if publisher is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout)
        publisher.cancel()
        await asyncio.gather(publisher, return_exceptions=True)

    async def to_node(self, node: str, kind: str, payload: dict[str, Any]) -> None:
        """Publish a message for `node` on the channel every node listens to."""
        await self._enqueue(orjson.dumps(
            {"method": NODE_METHOD, "node": node, "kind": kind, "data": payload,
             "host_id": self.host_id}
        ).decode())  # fmt: skip

    async def publish_emit(self, event: str, args: tuple[Any, ...], room: str | list[str]) -> None:
        """Have the other nodes deliver `event` to their sockets in `room` (JSON `args`,
        no ack: what `emit` publishes once it has delivered here)."""
        await self._publish(
            {"method": "emit", "event": event, "data": list(args), "binary": False,
             "namespace": "/", "room": room, "skip_sid": None, "callback": None,
             "host_id": self.host_id}
        )  # fmt: skip

    async def _handle_emit(self, message: dict[str, Any]) -> None:
        deliver = self.deliver_here
        if deliver is None or message.get("callback") or message.get("binary"):
            await super()._handle_emit(message)
            return
        data = message["data"]
        room = message["room"]
        rooms = [str(r) for r in room] if isinstance(room, list) else str(room)
        await deliver(str(message["event"]), tuple(data), rooms)

    async def _listen(self) -> AsyncIterator[Any]:
        async for message in super()._listen():
            if isinstance(message, bytes):
                if message.startswith(_NODE_PREFIX):
                    self._node_message(message)
                    continue
                if self._own in message and not message.startswith(_CALLBACK_PREFIX):
                    continue  # this node's own emit, heard back: delivered here already
            yield message

    def _node_message(self, raw: bytes) -> None:
        try:
            message = orjson.loads(raw)
            node, kind, data = message["node"], message["kind"], message["data"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            logger.warning("ignored a malformed node message on %s", self.channel)
            return
        cluster = self.cluster
        if cluster is not None and node == cluster.node and isinstance(data, dict):
            cluster.received(str(kind), data)


class RedisCluster(Cluster):
    """Many nodes: messages travel on the Socket.IO manager's Redis channel."""

    def __init__(self, node: str, manager: NodeRedisManager) -> None:
        super().__init__(node)
        self._manager = manager
        manager.cluster = self

    async def _send(self, node: str, kind: str, payload: dict[str, Any]) -> None:
        await self._manager.to_node(node, kind, payload)

    async def close(self) -> None:
        """Publish what is queued (a few seconds at most), then cancel what is handled."""
        await self._manager.drain(timeout=3.0)
        await super().close()


__all__ = [
    "Cluster",
    "LocalCluster",
    "NodeHandler",
    "NodeRedisManager",
    "RedisCluster",
    "backends",
    "channel_of",
    "check",
]


def backends(
    settings: Settings, node: str
) -> tuple[LocalManager | NodeRedisManager, Presence, Cluster]:
    """The Socket.IO manager (one node: the in-process one), presence and node
    messages of a hub node: Redis when `redis_url` is set, else this process's memory.

    Raises:
        Misconfigured: see :func:`check`.
    """
    check(settings)
    if not settings.redis_url:
        return LocalManager(), MemoryPresence(node), LocalCluster(node)
    manager = NodeRedisManager(settings.redis_url, channel_of(settings))
    client = aioredis.from_url(settings.redis_url)
    presence = RedisPresence(node, client, settings.redis_namespace)
    return manager, presence, RedisCluster(node, manager)
