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
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import orjson
import redis.asyncio as aioredis
import socketio
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from gadget.config import Settings
from gadget.hub.exceptions import Misconfigured
from gadget.hub.state.presence import MemoryPresence, Presence
from gadget.hub.state.presence_redis import RedisPresence

logger = logging.getLogger(__name__)

#: Handles one node-addressed message's payload.
NodeHandler = Callable[[dict[str, Any]], Awaitable[None]]

#: The `method` of a node-addressed message on the manager's channel.
NODE_METHOD = "gadget:node"
#: How such a message starts once encoded (orjson keeps key order and writes no spaces).
_NODE_PREFIX = b'{"method":"' + NODE_METHOD.encode() + b'"'


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


class NodeRedisManager(socketio.AsyncRedisManager):  # type: ignore[misc]
    """python-socketio's Redis manager, also carrying messages addressed to one node."""

    name = "gadget-redis"

    def __init__(self, url: str, channel: str) -> None:
        super().__init__(url, channel=channel)
        self.cluster: Cluster | None = None

    async def to_node(self, node: str, kind: str, payload: dict[str, Any]) -> None:
        """Publish a message for `node` on the channel every node listens to."""
        await self._publish(
            {"method": NODE_METHOD, "node": node, "kind": kind, "data": payload,
             "host_id": self.host_id}
        )  # fmt: skip

    async def _listen(self) -> AsyncIterator[Any]:
        async for message in super()._listen():
            if isinstance(message, bytes) and message.startswith(_NODE_PREFIX):
                self._node_message(message)
                continue
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


def backends(settings: Settings, node: str) -> tuple[NodeRedisManager | None, Presence, Cluster]:
    """The Socket.IO manager (None: python-socketio's in-process one), presence and node
    messages of a hub node: Redis when `redis_url` is set, else this process's memory.

    Raises:
        Misconfigured: see :func:`check`.
    """
    check(settings)
    if not settings.redis_url:
        return None, MemoryPresence(node), LocalCluster(node)
    manager = NodeRedisManager(settings.redis_url, channel_of(settings))
    client = aioredis.from_url(settings.redis_url)
    presence = RedisPresence(node, client, settings.redis_namespace)
    return manager, presence, RedisCluster(node, manager)
